//! The official Python client's `kubernetes.stream` against a real pod, through the API server:
//! exec (stdout, stderr, exit status, stdin), attach and port-forward, all over WebSocket —
//! `v5`/`v4.channel.k8s.io` for exec and attach, `v4.channel.k8s.io` channels with `?ports=`
//! for port-forward. The script is tests/python/streaming.py.
//!
//! Needs root, like tests/pods.rs: a `timonier server` with its node agent, the bootcamp image
//! from a registry on loopback; everything the agent made is removed at the end.

mod common;

use std::time::Duration;

use common::{run_python, tail, AgentNode, TestImage};

/// Its own bridge name, so it never takes over the one of tests/pods.rs.
const BRIDGE: &str = "tmnpystr0";

#[test]
fn python_client_exec_attach_and_port_forward() {
    let node = AgentNode::start(BRIDGE, "node1", &[TestImage::Bootcamp(1)], &[]);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pybootcamp\nspec:\n  nodeName: node1\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: gcr.io/google-samples/kubernetes-bootcamp:v1\n";
    node.kubectl.run_with_input(&["apply", "-f", "-"], Some(pod)).ok();
    node.wait("pybootcamp Ready", Duration::from_secs(60), |k| k.run(&["get", "pod", "pybootcamp", "-o", "jsonpath={.status.containerStatuses[0].ready}"]).stdout == "true");

    // The script's own waits are bounded; the limit bounds a hang anywhere else.
    let (ok, stdout, stderr) = run_python("streaming.py", &[node.server.kubeconfig.as_os_str(), std::ffi::OsStr::new("pybootcamp")], Duration::from_secs(180));
    assert!(
        ok && stdout.contains("python streaming: ok"),
        "the Python client's streaming failed:\n{stdout}\n{stderr}\n--- server log ---\n{}",
        tail(&node.server.log(), 40)
    );
}
