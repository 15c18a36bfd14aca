//! The workload controllers on the control plane alone (no node runs the pods, so none gets
//! ready): Deployments make ReplicaSets named by their template hash, ReplicaSets make,
//! adopt, replace and remove pods, with upstream's events and the columns kubectl prints.
//! Rollouts with running pods are in pods.rs (`deployments_scale_roll_out_and_roll_back`).

use std::time::{Duration, Instant};

use serde_json::Value;
use timonier_testkit::{Kubectl, Server};

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn names(k: &Kubectl, kind: &str, selector: &str) -> Vec<String> {
    let list: Value = serde_json::from_str(k.run(&["get", kind, "-l", selector, "-o", "json"]).ok()).unwrap();
    list["items"].as_array().into_iter().flatten().filter(|o| o["metadata"]["deletionTimestamp"].is_null()).filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string)).collect()
}

fn events(k: &Kubectl, name: &str) -> String {
    k.run(&["get", "events", "--field-selector", &format!("involvedObject.name={name}"), "-o", "custom-columns=REASON:.reason,FROM:.source.component,MESSAGE:.message", "--no-headers"]).ok().to_string()
}

#[test]
fn deployments_make_replicasets_and_replicasets_keep_their_pods() {
    let s = Server::start_control_plane(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let k = s.kubectl("1.33");
    k.run(&["create", "deployment", "web", "--image=busybox", "--replicas=3"]).ok();
    wait_for("3 pods", || names(&k, "pods", "app=web").len() == 3);
    let rs = names(&k, "rs", "app=web");
    assert_eq!(rs.len(), 1, "{rs:?}");
    let rs = rs[0].clone();
    let hash = rs.strip_prefix("web-").expect("rs named after the deployment").to_string();
    let pods = names(&k, "pods", "app=web");
    assert!(pods.iter().all(|p| p.starts_with(&format!("{rs}-")) && p.len() == rs.len() + 6), "{pods:?}");
    let pod: Value = serde_json::from_str(k.run(&["get", "pod", &pods[0], "-o", "json"]).ok()).unwrap();
    assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], hash.as_str());
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["name"], rs.as_str());
    assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    wait_for("deployment events", || events(&k, "web").contains(&format!("ScalingReplicaSet   deployment-controller   Scaled up replica set {rs} from 0 to 3")));
    assert!(events(&k, &rs).contains("SuccessfulCreate   replicaset-controller   Created pod: "), "{}", events(&k, &rs));
    // Nothing runs the pods: 0 of 3 ready, all 3 up to date.
    wait_for("deployment status", || {
        let row = k.run(&["get", "deployment", "web", "--no-headers"]).ok().to_string();
        row.split_whitespace().take(4).collect::<Vec<_>>() == ["web", "0/3", "3", "0"]
    });
    let out = k.run(&["rollout", "status", "deployment/web", "--timeout=2s"]);
    assert!(out.stdout.contains("Waiting for deployment \"web\" rollout to finish: 0 of 3 updated replicas are available..."), "{out:?}");
    let d: Value = serde_json::from_str(k.run(&["get", "deployment", "web", "-o", "json"]).ok()).unwrap();
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    let conds = d["status"]["conditions"].to_string();
    assert!(conds.contains("MinimumReplicasUnavailable") && conds.contains("ReplicaSetUpdated"), "{conds}");

    // Self-healing: a deleted pod is replaced; scaling down removes pods.
    k.run(&["delete", "pod", &pods[0], "--wait=false"]).ok();
    wait_for("a replacement", || {
        let now = names(&k, "pods", "app=web");
        now.len() == 3 && !now.contains(&pods[0])
    });
    k.run(&["scale", "deployment", "web", "--replicas=1"]).ok();
    wait_for("1 pod", || names(&k, "pods", "app=web").len() == 1);
    assert!(events(&k, &rs).contains("SuccessfulDelete   replicaset-controller   Deleted pod: "));

    // A new template makes a second ReplicaSet with the next revision.
    k.run(&["set", "image", "deployment/web", "busybox=busybox:2"]).ok();
    wait_for("a second replicaset", || names(&k, "rs", "app=web").len() == 2);
    let rs2 = names(&k, "rs", "app=web").into_iter().find(|n| *n != rs).unwrap();
    let rev = k.run(&["get", "rs", &rs2, "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"]).ok().to_string();
    assert_eq!(rev, "2");

    // A bare ReplicaSet adopts a matching orphan and makes only what is missing.
    k.run(&["run", "orphan", "--image=busybox", "--labels=tier=cache"]).ok();
    let yaml = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: cache}\nspec:\n  replicas: 2\n  selector: {matchLabels: {tier: cache}}\n  template:\n    metadata: {labels: {tier: cache}}\n    spec: {containers: [{name: c, image: busybox}]}\n";
    k.run_with_input(&["apply", "-f", "-"], Some(yaml)).ok();
    wait_for("cache has 2 pods", || names(&k, "pods", "tier=cache").len() == 2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(names(&k, "pods", "tier=cache").len(), 2);
    let orphan: Value = serde_json::from_str(k.run(&["get", "pod", "orphan", "-o", "json"]).ok()).unwrap();
    assert_eq!(orphan["metadata"]["ownerReferences"][0]["name"], "cache");
    // Deleting the ReplicaSet deletes its pods (garbage collection through ownerReferences).
    k.run(&["delete", "rs", "cache"]).ok();
    wait_for("cache pods gone", || names(&k, "pods", "tier=cache").is_empty());
}
