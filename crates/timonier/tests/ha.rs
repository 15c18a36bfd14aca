//! A control plane of several servers on one etcd, and an agent on a host of its own: when the
//! server the agent joined through dies, the agent goes on through another (its load balancer
//! follows the `kubernetes` Service's endpoints) — its node stays Ready, its pods untouched,
//! new pods start on it.

mod common;

use std::time::{Duration, Instant};

use common::multinode::MultiNode;
use common::TestImage;
use timonier_testkit::{Etcd, Kubectl, Server};

/// Short leases, so that the surviving server leads soon (upstream's are 15 s, 10 s, 2 s).
const TIMING: [&str; 6] = ["--leader-elect-lease-duration", "3s", "--leader-elect-renew-deadline", "2s", "--leader-elect-retry-period", "500ms"];

fn pod(name: &str, node: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 0\n  containers: [{{name: c, image: busybox, command: [sleep, \"3600\"]}}]\n")
}

#[track_caller]
fn wait(k: &Kubectl, what: &str, within: Duration, mut f: impl FnMut(&Kubectl) -> bool) {
    let deadline = Instant::now() + within;
    while !f(k) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{}\n{}", k.run(&["get", "pods", "-o", "wide"]).stdout, k.run(&["get", "nodes"]).stdout);
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn phase(k: &Kubectl, pod: &str) -> String {
    k.run(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"]).stdout
}

#[test]
fn agents_fail_over_when_their_server_dies() {
    let etcd = Etcd::start().expect("etcd (install Debian's etcd-server)");
    let datastore = format!("etcd://{}", etcd.endpoint);
    let mut args = vec!["--datastore", datastore.as_str(), "--token", "ha-test-token"];
    args.extend(TIMING);
    let mut c = MultiNode::start_with("ha", 0, &[TestImage::Busybox], "vxlan", &args);
    let token = std::fs::read_to_string(c.server.dir.path().join("data/server-token")).expect("server-token");
    let gateway = c.gateway().to_string();
    let mut b_args = vec!["--bind-address", gateway.as_str(), "--datastore", datastore.as_str(), "--token", token.as_str()];
    b_args.extend(TIMING);
    let b = Server::start_control_plane(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &b_args);
    let kb = b.kubectl("1.33");

    kb.run_with_input(&["apply", "-f", "-"], Some(&pod("before", "ha0"))).ok();
    wait(&kb, "pod before Running", Duration::from_secs(60), |k| phase(k, "before") == "Running");
    // The agent learns of the second server from the kubernetes endpoints (every 10 s).
    let log = c.agent("ha0").log.clone();
    let b_endpoint = format!("{gateway}:{}", b.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap_or_default().lines().any(|l| l.contains("API servers") && l.contains(&b_endpoint)) {
        assert!(Instant::now() < deadline, "the agent never learnt of {b_endpoint}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The server the agent joined through dies.
    c.server.kill();
    let killed = jiff::Timestamp::now();
    // The node renews its Lease through the other server.
    wait(&kb, "the node's Lease renewed after the kill", Duration::from_secs(30), |k| {
        let renewed = k.run(&["get", "lease", "-n", "kube-node-lease", "ha0", "-o", "jsonpath={.spec.renewTime}"]).stdout;
        renewed.parse::<jiff::Timestamp>().is_ok_and(|t| t > killed)
    });
    // Its watches moved too: a new pod starts there.
    kb.run_with_input(&["apply", "-f", "-"], Some(&pod("after", "ha0"))).ok();
    wait(&kb, "pod after Running", Duration::from_secs(60), |k| phase(k, "after") == "Running");
    // The first pod was never touched, and the surviving server reaches the agent.
    assert_eq!(kb.run(&["get", "pod", "before", "-o", "jsonpath={.status.containerStatuses[0].restartCount}"]).ok(), "0");
    assert_eq!(phase(&kb, "before"), "Running");
    assert_eq!(kb.run(&["exec", "before", "--", "echo", "still here"]).ok().trim(), "still here");
    let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    assert_eq!(kb.run(&["get", "node", "ha0", "-o", ready]).ok(), "True");
}
