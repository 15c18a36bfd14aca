//! `kubectl debug`: ephemeral containers added to a running pod, run by the node agent as
//! upstream's kubelet does — started once, never restarted, in the target container's PID
//! namespace with `--target`, attachable, with logs and events, outside the pod's readiness.
//! A `timonier server` with its agent (as root), the stock kubectl, a loopback registry.

mod common;

use std::time::Duration;

use common::{AgentNode, TestImage};
use serde_json::Value;

const BRIDGE: &str = "tmndebug0";

fn pod(node: &AgentNode, name: &str) -> Value {
    serde_json::from_str(&node.kubectl.run(&["get", "pod", name, "-o", "json"]).stdout).unwrap_or(Value::Null)
}

fn ephemeral_status(node: &AgentNode, pod_name: &str, container: &str) -> Value {
    let p = pod(node, pod_name);
    p["status"]["ephemeralContainerStatuses"].as_array().and_then(|s| s.iter().find(|c| c["name"] == container).cloned()).unwrap_or(Value::Null)
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

#[test]
fn kubectl_debug_runs_ephemeral_containers() {
    let node = AgentNode::start(BRIDGE, "debug1", &[TestImage::Busybox, TestImage::Bootcamp(1)], &[]);
    let k = &node.kubectl;
    k.run(&["run", "web", "--image=gcr.io/google-samples/kubernetes-bootcamp:v1"]).ok();
    node.wait("pod web Ready", Duration::from_secs(60), |_| ready(&pod(&node, "web")));
    let web_uid = pod(&node, "web")["metadata"]["uid"].clone();

    // Non-interactive, in the target's PID namespace: its processes are visible.
    let out = k.run(&["debug", "web", "-c", "dbg", "--image=busybox", "--target=web", "--", "sleep", "3600"]);
    assert!(out.ok().contains("Targeting container \"web\"") || out.stderr.contains("Targeting container \"web\""), "{out:?}");
    node.wait("dbg running", Duration::from_secs(30), |_| !ephemeral_status(&node, "web", "dbg")["state"]["running"].is_null());
    let ps = k.run(&["exec", "web", "-c", "dbg", "--", "ps", "-o", "pid,args"]).ok().to_string();
    assert!(ps.lines().any(|l| l.split_whitespace().next() == Some("1") && l.contains("node")), "the target's process is PID 1 of the debugger's namespace:\n{ps}");
    let st = ephemeral_status(&node, "web", "dbg");
    assert_eq!(st["ready"], false, "{st}");
    assert!(st.get("started").is_none(), "upstream reports no `started` for ephemeral containers: {st}");
    assert!(st["containerID"].as_str().is_some_and(|id| !id.is_empty()), "{st}");
    assert_eq!(st["restartCount"], 0);
    let p = pod(&node, "web");
    assert!(ready(&p) && p["status"]["phase"] == "Running", "the pod stays Running and Ready: {}", p["status"]);
    assert_eq!(p["metadata"]["uid"], web_uid, "the pod is the same, not a copy");
    let events = k.run(&["get", "events", "--field-selector", "involvedObject.name=web", "-o", "json"]).ok().to_string();
    let events: Value = serde_json::from_str(&events).unwrap_or(Value::Null);
    let started = events["items"].as_array().into_iter().flatten().any(|e| {
        e["reason"] == "Started" && e["involvedObject"]["fieldPath"] == "spec.ephemeralContainers{dbg}" && e["message"] == "Started container dbg"
    });
    assert!(started, "a Started event for spec.ephemeralContainers{{dbg}}:\n{events}");

    // Interactive: `kubectl debug -i` waits for the container, attaches its stdin and
    // prints what it writes; the container ends and is not restarted.
    // kubectl reads its stdin once attached; the shell blocks on its stdin FIFO until then.
    let out = k.run_with_input(&["debug", "-i", "web", "-c", "shell", "--image=busybox", "--", "sh"], Some("echo hello-from-$((6*7))\nexit 3\n"));
    assert!(out.stdout.contains("hello-from-42"), "{out:?}");
    node.wait("shell terminated", Duration::from_secs(30), |_| !ephemeral_status(&node, "web", "shell")["state"]["terminated"].is_null());
    std::thread::sleep(Duration::from_secs(2));
    let st = ephemeral_status(&node, "web", "shell");
    assert_eq!(st["state"]["terminated"]["exitCode"], 3, "{st}");
    assert_eq!(st["state"]["terminated"]["reason"], "Error", "{st}");
    assert_eq!(st["restartCount"], 0, "never restarted: {st}");
    let logs = k.run(&["logs", "web", "-c", "shell"]).ok().to_string();
    assert!(logs.contains("hello-from-42"), "{logs}");
    assert!(ready(&pod(&node, "web")), "an ephemeral container's exit leaves the pod Ready");

    // A broken image ends in the upstream reasons on the ephemeral container only.
    k.run(&["debug", "web", "-c", "broken", "--image=busybox:no-such-tag", "--", "true"]).ok();
    node.wait("broken ErrImagePull/ImagePullBackOff", Duration::from_secs(30), |_| {
        let r = ephemeral_status(&node, "web", "broken")["state"]["waiting"]["reason"].clone();
        r == "ErrImagePull" || r == "ImagePullBackOff"
    });
    assert!(ready(&pod(&node, "web")));

    // A target that is not a container of the pod is refused by validation.
    let bad = k.run(&["debug", "web", "-c", "lost", "--image=busybox", "--target=nope", "--", "true"]);
    assert!(bad.err().contains("targetContainerName: Not found: \"nope\""), "{}", bad.stderr);

    // The pod's deletion stops its ephemeral containers with the others.
    k.run(&["delete", "pod", "web", "--grace-period=1"]).ok();
    node.wait("web gone", Duration::from_secs(30), |k| k.run(&["get", "pod", "web"]).stderr.contains("NotFound"));
}
