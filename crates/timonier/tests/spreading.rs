//! The scheduler on real nodes: a server with its agent and two agents on hosts of their own
//! (network namespaces on a test LAN), the stock kubectl, busybox containers that run. A
//! Deployment's replicas spread over the nodes with no constraint of their own (upstream's
//! default topology spreading), required anti-affinity leaves the replica that fits nowhere
//! Pending with upstream's message, topologySpreadConstraints keep replicas off a node without
//! the topology label and even between the others, and required pod affinity brings replicas
//! to another app's node.

mod common;

use std::time::Duration;

use common::multinode::MultiNode;
use common::TestImage;
use serde_json::Value;
use timonier_testkit::Kubectl;

/// A Deployment `name` (pods labelled `app: <name>`) of busybox sleeping; `spec_extra` is
/// indented for the pod spec.
fn deployment(k: &Kubectl, name: &str, replicas: u32, spec_extra: &str) {
    let yaml = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n{spec_extra}      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        command: [sleep, \"3600\"]\n"
    );
    k.run_with_input(&["apply", "-f", "-"], Some(&yaml)).ok();
}

fn pods_of(k: &Kubectl, app: &str) -> Vec<Value> {
    let out = k.run(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
    serde_json::from_str::<Value>(&out.stdout).ok().and_then(|v| v["items"].as_array().cloned()).unwrap_or_default()
}

/// (node, phase) of each pod labelled `app=<app>`, sorted; node "" while pending.
fn placement(k: &Kubectl, app: &str) -> Vec<(String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut v: Vec<(String, String)> = pods_of(k, app).iter().map(|p| (s(&p["spec"]["nodeName"]), s(&p["status"]["phase"]))).collect();
    v.sort();
    v
}

fn running_on(k: &Kubectl, app: &str) -> Vec<String> {
    placement(k, app).into_iter().filter(|(_, phase)| phase == "Running").map(|(n, _)| n).collect()
}

fn pending_pod(k: &Kubectl, app: &str) -> Option<Value> {
    pods_of(k, app).into_iter().find(|p| p["spec"]["nodeName"].as_str().unwrap_or("").is_empty())
}

#[test]
fn replicas_spread_and_follow_affinity_on_real_nodes() {
    let cluster = MultiNode::start("sp", 2, &[TestImage::Busybox], "vxlan");
    let k = &cluster.kubectl;
    let (n0, n1, n2) = ("sp0".to_string(), "sp1".to_string(), "sp2".to_string());
    let count = |v: &[String], n: &str| v.iter().filter(|x| *x == n).count();

    // No constraint of its own: 2 replicas per node.
    deployment(k, "web", 6, "");
    cluster.wait("6 web replicas running", Duration::from_secs(120), |k| running_on(k, "web").len() == 6);
    let v = running_on(k, "web");
    assert_eq!((count(&v, &n0), count(&v, &n1), count(&v, &n2)), (2, 2, 2), "{v:?}");

    // Required anti-affinity, 4 replicas, 3 nodes: one per node, the fourth Pending.
    let anti = "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector: {matchLabels: {app: solo}}\n            topologyKey: kubernetes.io/hostname\n";
    deployment(k, "solo", 4, anti);
    let want = "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..";
    cluster.wait("3 solo replicas running, one unschedulable", Duration::from_secs(120), |k| {
        let pending = pending_pod(k, "solo").and_then(|p| p["metadata"]["name"].as_str().map(str::to_string));
        running_on(k, "solo").len() == 3 && pending.is_some_and(|p| k.events_of(&p).contains(want))
    });
    let v = running_on(k, "solo");
    assert_eq!((count(&v, &n0), count(&v, &n1), count(&v, &n2)), (1, 1, 1), "{v:?}");
    let pending = pending_pod(k, "solo").unwrap_or_default();
    let cond = pending["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned()).unwrap_or_default();
    assert_eq!((cond["status"].as_str(), cond["reason"].as_str(), cond["message"].as_str()), (Some("False"), Some("Unschedulable"), Some(want)), "{pending}");
    assert_eq!(pending["status"]["phase"], "Pending");

    // topologySpreadConstraints, DoNotSchedule on a `rack` label that the server's node lacks:
    // 4 replicas, 2 per rack, none on the unlabelled node.
    k.run(&["label", "node", &n1, "rack=r1"]).ok();
    k.run(&["label", "node", &n2, "rack=r2"]).ok();
    let racks = "      topologySpreadConstraints:\n      - maxSkew: 1\n        topologyKey: rack\n        whenUnsatisfiable: DoNotSchedule\n        labelSelector: {matchLabels: {app: racked}}\n";
    deployment(k, "racked", 4, racks);
    cluster.wait("4 racked replicas running", Duration::from_secs(120), |k| running_on(k, "racked").len() == 4);
    let v = running_on(k, "racked");
    assert_eq!((count(&v, &n0), count(&v, &n1), count(&v, &n2)), (0, 2, 2), "{v:?}");

    // Required pod affinity: replicas join the node running the cache pod.
    let cache = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: cache, labels: {{app: cache}}}}\nspec:\n  nodeSelector: {{kubernetes.io/hostname: {n2}}}\n  terminationGracePeriodSeconds: 1\n  containers: [{{name: c, image: busybox, command: [sleep, \"3600\"]}}]\n");
    k.run_with_input(&["apply", "-f", "-"], Some(&cache)).ok();
    let near = "      affinity:\n        podAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector: {matchLabels: {app: cache}}\n            topologyKey: kubernetes.io/hostname\n";
    deployment(k, "near", 3, near);
    cluster.wait("near replicas running beside the cache", Duration::from_secs(120), |k| running_on(k, "near").len() == 3);
    assert_eq!(running_on(k, "near"), vec![n2.clone(), n2.clone(), n2.clone()]);
}
