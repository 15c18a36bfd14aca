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
    let want = "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.";
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
    let want = "0/2 nodes are available: 2 node(s) were unschedulable. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
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
