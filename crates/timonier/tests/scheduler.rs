//! The scheduler end to end, against Node objects the test creates (no agent runs the pods):
//! resources, nodeSelector, cordoned nodes, spreading, other schedulers, and what kubectl
//! shows — upstream's FailedScheduling messages, `Scheduled` events from default-scheduler,
//! the PodScheduled condition.

use std::time::{Duration, Instant};

use serde_json::Value;
use timonier_testkit::{Kubectl, Server};

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn node(k: &Kubectl, name: &str, cpu: &str, memory: &str, labels: &str) {
    k.run_with_input(&["apply", "-f", "-"], Some(&format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}{labels}}}\n"))).ok();
    let status = format!(r#"{{"status":{{"capacity":{{"cpu":"{cpu}","memory":"{memory}","pods":"110"}},"allocatable":{{"cpu":"{cpu}","memory":"{memory}","pods":"110"}},"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready"}}]}}}}"#);
    k.run(&["patch", "node", name, "--subresource=status", "--type=merge", "-p", &status]).ok();
}

fn pod(k: &Kubectl, name: &str, spec_extra: &str, resources: &str) {
    let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{spec_extra}  containers:\n  - name: c\n    image: busybox\n{resources}");
    k.run_with_input(&["apply", "-f", "-"], Some(&yaml)).ok();
}

fn get(k: &Kubectl, name: &str) -> Value {
    serde_json::from_str(k.run(&["get", "pod", name, "-o", "json"]).ok()).expect("pod json")
}

fn node_of(k: &Kubectl, name: &str) -> String {
    get(k, name)["spec"]["nodeName"].as_str().unwrap_or("").to_string()
}

#[test]
fn binds_pods_where_they_fit_and_says_why_not_as_upstream() {
    let s = Server::start_control_plane(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let k = s.kubectl("1.33");
    node(&k, "big", "2", "4Gi", ", disk: ssd");
    node(&k, "small", "1", "2Gi", "");
    let cpu = |c: &str| format!("    resources: {{requests: {{cpu: \"{c}\"}}}}\n");

    // Fits only the big node; a nodeSelector only matches it too.
    pod(&k, "wide", "", &cpu("1500m"));
    pod(&k, "ssd", "  nodeSelector: {disk: ssd}\n", "");
    wait_for("wide and ssd bound", Duration::from_secs(20), || node_of(&k, "wide") == "big" && node_of(&k, "ssd") == "big");
    let p = get(&k, "wide");
    let cond = p["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned()).unwrap_or_default();
    assert_eq!(cond["status"], "True", "{p}");
    let ev = k.events_of("wide");
    assert!(ev.contains("Scheduled") && ev.contains("default-scheduler") && ev.contains("Successfully assigned default/wide to big"), "{ev}");

    // Fits nowhere: Pending, PodScheduled=False, FailedScheduling with upstream's words.
    pod(&k, "huge", "", &cpu("3"));
    // Upstream's message ends with two periods: the preemption part's own FitError ends with
    // one, and the outer message adds its own.
    let want = "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod..";
    wait_for("huge unschedulable", Duration::from_secs(20), || k.events_of("huge").contains(want));
    let p = get(&k, "huge");
    assert_eq!(p["status"]["phase"], "Pending");
    let cond = p["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned()).unwrap_or_default();
    assert_eq!((cond["status"].as_str(), cond["reason"].as_str(), cond["message"].as_str()), (Some("False"), Some("Unschedulable"), Some(want)), "{p}");
    let describe = k.run(&["describe", "pod", "huge"]).ok().to_string();
    assert!(describe.contains("FailedScheduling") && describe.contains("default-scheduler"), "{describe}");

    // Cordoned nodes take nothing new; uncordoning one lets the pod in.
    k.run(&["cordon", "big", "small"]).ok();
    pod(&k, "later", "", "");
    let want = "0/2 nodes are available: 2 node(s) were unschedulable. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling..";
    wait_for("later unschedulable", Duration::from_secs(20), || k.events_of("later").contains(want));
    k.run(&["uncordon", "small"]).ok();
    wait_for("later bound after uncordon", Duration::from_secs(20), || node_of(&k, "later") == "small");
    k.run(&["uncordon", "big"]).ok();

    // A pod for another scheduler is left alone.
    pod(&k, "other", "  schedulerName: my-scheduler\n", "");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(node_of(&k, "other"), "");
    assert_eq!(k.events_of("other"), "");

    // A pod waiting for room gets in once room is made.
    pod(&k, "waits", "", &cpu("1800m"));
    wait_for("waits unschedulable", Duration::from_secs(20), || k.events_of("waits").contains("FailedScheduling"));
    assert_eq!(node_of(&k, "waits"), "");
    k.run(&["delete", "pod", "wide", "--grace-period=0", "--force"]).ok();
    wait_for("waits bound after room was made", Duration::from_secs(20), || node_of(&k, "waits") == "big");
    // With the big node emptied, pods without requests spread over both (the emptier first).
    k.run(&["delete", "pod", "waits", "--grace-period=0", "--force"]).ok();
    for i in 0..6 {
        pod(&k, &format!("spread-{i}"), "", "");
    }
    wait_for("spread pods bound", Duration::from_secs(20), || (0..6).all(|i| !node_of(&k, &format!("spread-{i}")).is_empty()));
    let on_small = (0..6).filter(|i| node_of(&k, &format!("spread-{i}")) == "small").count();
    assert!((1..6).contains(&on_small), "{on_small} of 6 on the small node");
}

/// A Deployment `name` (pods labelled `app: <name>`) of busybox; `spec_extra` is indented
/// for the pod spec.
fn deployment(k: &Kubectl, name: &str, replicas: u32, spec_extra: &str) {
    let yaml = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n{spec_extra}      containers:\n      - name: c\n        image: busybox\n"
    );
    k.run_with_input(&["apply", "-f", "-"], Some(&yaml)).ok();
}

fn pods_of(k: &Kubectl, app: &str) -> Vec<Value> {
    let out: Value = serde_json::from_str(k.run(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]).ok()).expect("pods json");
    out["items"].as_array().cloned().unwrap_or_default()
}

/// The node of each pod labelled `app=<app>` ("" while pending), sorted.
fn nodes_of(k: &Kubectl, app: &str) -> Vec<String> {
    let mut v: Vec<String> = pods_of(k, app).iter().map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string()).collect();
    v.sort();
    v
}

/// A pod labelled `app=<app>` not bound to a node.
fn pending_pod(k: &Kubectl, app: &str) -> Option<String> {
    pods_of(k, app).iter().find(|p| p["spec"]["nodeName"].as_str().unwrap_or("").is_empty()).and_then(|p| p["metadata"]["name"].as_str().map(str::to_string))
}

fn scheduled_condition(k: &Kubectl, pod: &str) -> (String, String, String) {
    let p = get(k, pod);
    let c = p["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned()).unwrap_or_default();
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    (s(&c["status"]), s(&c["reason"]), s(&c["message"]))
}

#[test]
fn spreads_replicas_and_honours_pod_affinity_and_spread_constraints() {
    let s = Server::start_control_plane(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let k = s.kubectl("1.33");
    node(&k, "a", "4", "8Gi", ", zone: z1");
    node(&k, "b", "4", "8Gi", ", zone: z1");
    node(&k, "c", "4", "8Gi", ", zone: z2");
    let count = |v: &[String], n: &str| v.iter().filter(|x| *x == n).count();

    // No constraint: upstream's default spreading (its ReplicaSet's selector) puts 2 per node.
    deployment(&k, "web", 6, "");
    wait_for("6 web replicas bound", Duration::from_secs(30), || {
        let v = nodes_of(&k, "web");
        v.len() == 6 && v.iter().all(|n| !n.is_empty())
    });
    let v = nodes_of(&k, "web");
    assert_eq!((count(&v, "a"), count(&v, "b"), count(&v, "c")), (2, 2, 2), "{v:?}");

    // Required anti-affinity among 4 replicas on 3 nodes: one stays Pending, saying why.
    let anti = "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector: {matchLabels: {app: solo}}\n            topologyKey: kubernetes.io/hostname\n";
    deployment(&k, "solo", 4, anti);
    let want = "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..";
    wait_for("one solo replica unschedulable", Duration::from_secs(30), || pending_pod(&k, "solo").is_some_and(|p| k.events_of(&p).contains(want)));
    let v = nodes_of(&k, "solo");
    assert_eq!((count(&v, "a"), count(&v, "b"), count(&v, "c"), count(&v, "")), (1, 1, 1, 1), "{v:?}");
    let pending = pending_pod(&k, "solo").unwrap_or_default();
    assert_eq!(scheduled_condition(&k, &pending), ("False".into(), "Unschedulable".into(), want.into()));
    assert!(k.run(&["describe", "pod", &pending]).ok().contains("FailedScheduling"));

    // Required pod affinity: every replica joins the cache pod's node.
    k.run_with_input(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: Pod\nmetadata: {name: cache, labels: {app: cache}}\nspec:\n  nodeSelector: {kubernetes.io/hostname: b}\n  containers: [{name: c, image: busybox}]\n")).ok();
    let near = "      affinity:\n        podAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector: {matchLabels: {app: cache}}\n            topologyKey: kubernetes.io/hostname\n";
    deployment(&k, "near", 3, near);
    wait_for("near replicas bound", Duration::from_secs(30), || nodes_of(&k, "near") == ["b", "b", "b"]);

    // topologySpreadConstraints, DoNotSchedule, maxSkew 1 over zones, with zone z2's only node
    // cordoned: z1 may run one replica more than z2, so one runs and the rest wait…
    k.run(&["cordon", "c"]).ok();
    let zonal = "      topologySpreadConstraints:\n      - maxSkew: 1\n        topologyKey: zone\n        whenUnsatisfiable: DoNotSchedule\n        labelSelector: {matchLabels: {app: zonal}}\n";
    deployment(&k, "zonal", 3, zonal);
    let want = "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match pod topology spread constraints. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod..";
    wait_for("zonal replicas unschedulable", Duration::from_secs(30), || pending_pod(&k, "zonal").is_some_and(|p| k.events_of(&p).contains(want)));
    let v = nodes_of(&k, "zonal");
    assert_eq!(count(&v, ""), 2, "{v:?}");
    // …until z2 takes pods again: then 2 in one zone, 1 in the other.
    k.run(&["uncordon", "c"]).ok();
    wait_for("zonal replicas bound", Duration::from_secs(30), || nodes_of(&k, "zonal").iter().all(|n| !n.is_empty()));
    let v = nodes_of(&k, "zonal");
    assert!((1..=2).contains(&count(&v, "c")), "{v:?}");
}
