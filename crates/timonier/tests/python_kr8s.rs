//! kr8s, a second Python client library (httpx, its own discovery and kubeconfig handling),
//! against Timonier: objects (create, get, list with selectors, patch, label, delete, wait for
//! conditions, watch), `scale` of a Deployment, a CustomResourceDefinition and its objects
//! (`new_class` and an `APIObject` subclass) against a control plane; and against a node with
//! its agent, `exec`, `logs` and `port-forward` on a real pod. The script is
//! tests/python/kr8s_client.py.
//!
//! The node test needs root, like tests/python_streaming.rs: a `timonier server` with its node
//! agent, the bootcamp image from a registry on loopback; everything the agent made is removed
//! at the end, even on failure.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{run_python, tail, AgentNode, TestImage};
use timonier_testkit::Server;

/// Its own bridge name, so it never takes over another test's.
const BRIDGE: &str = "tmnkr8s0";

#[test]
fn kr8s_objects_scale_and_custom_resources() {
    let s = Server::start_control_plane(Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let (ok, stdout, stderr) = run_python("kr8s_client.py", &[s.kubeconfig.as_os_str()], Duration::from_secs(240));
    assert!(ok && stdout.contains("kr8s client: ok"), "kr8s failed:\n{stdout}\n{stderr}\n--- server log ---\n{}", tail(&s.log(), 40));
}

#[test]
fn kr8s_exec_logs_and_port_forward() {
    let node = AgentNode::start(BRIDGE, "node1", &[TestImage::Bootcamp(1)], &[]);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kr8sbootcamp\nspec:\n  nodeName: node1\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: gcr.io/google-samples/kubernetes-bootcamp:v1\n";
    node.kubectl.run_with_input(&["apply", "-f", "-"], Some(pod)).ok();
    node.wait("kr8sbootcamp Ready", Duration::from_secs(60), |k| k.run(&["get", "pod", "kr8sbootcamp", "-o", "jsonpath={.status.containerStatuses[0].ready}"]).stdout == "true");
    let (ok, stdout, stderr) = run_python("kr8s_client.py", &[node.server.kubeconfig.as_os_str(), std::ffi::OsStr::new("kr8sbootcamp")], Duration::from_secs(300));
    assert!(
        ok && stdout.contains("kr8s client: ok"),
        "kr8s failed against a node:\n{stdout}\n{stderr}\n--- server log ---\n{}",
        tail(&node.server.log(), 40)
    );
}
