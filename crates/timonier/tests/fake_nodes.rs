//! Simulated nodes (`server --fake-nodes N`, `agent --fake --count N`), as kwok's: they
//! register and heartbeat, the scheduler places pods on them, and their pods go Running and
//! Ready with IPs and a real node's events — or exit, or crash-loop, as annotated; a node
//! marked not-ready goes NotReady through the node lifecycle controller. No root, no
//! containers.

use std::time::{Duration, Instant};

use timonier_testkit::Server;

fn bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_timonier"))
}

/// Polls `kubectl args` until its output satisfies `done`; the last output.
fn eventually(k: &timonier_testkit::Kubectl, args: &[&str], secs: u64, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = k.run(args);
        if done(&out.stdout) {
            return out.stdout;
        }
        assert!(Instant::now() < deadline, "kubectl {args:?} never got there: {}{}", out.stdout, out.stderr);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn fake_nodes_run_pods_without_containers() {
    let server = Server::start_control_plane(bin(), &["--fake-nodes", "3", "--node-monitor-grace-period", "12s"]);
    let k = server.kubectl("1.33");
    let ready = "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}";
    eventually(&k, &["get", "nodes", "-l", "node.timonier.io/fake=true", "-o", ready], 20, |o| o.trim() == "fake-node-0=True fake-node-1=True fake-node-2=True");
    let leases = k.run(&["get", "leases", "-n", "kube-node-lease", "-o", "name"]).ok().to_string();
    assert!(leases.contains("lease.coordination.k8s.io/fake-node-2"), "{leases}");

    // A Deployment's pods are placed, Running and Ready, each with its own IP.
    k.run(&["create", "deployment", "web", "--image=nginx", "--replicas=6"]).ok();
    k.run(&["rollout", "status", "deployment/web", "--timeout=60s"]).ok();
    let ips = k.run(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}"]).ok().to_string();
    let mut unique: Vec<&str> = ips.split_whitespace().collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "{ips}");
    let nodes = k.run(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"]).ok().to_string();
    assert!(nodes.split_whitespace().all(|n| n.starts_with("fake-node-")), "{nodes}");
    let pod = k.run(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]).ok().to_string();
    let events = k.events_of(&pod);
    for line in ["Scheduled", "Pulled    kubelet   Container image \"nginx\" already present on machine", "Created   kubelet   Created container: nginx", "Started   kubelet   Started container nginx"] {
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words(&events).contains(&words(line)), "{line} in:\n{events}");
    }
    let columns = k.run(&["get", "pod", &pod, "--no-headers"]).ok().to_string();
    assert!(columns.split_whitespace().take(3).collect::<Vec<_>>() == [pod.as_str(), "1/1", "Running"], "{columns}");

    // Pods that exit, as annotated.
    k.run(&["run", "done", "--image=busybox", "--restart=Never", "--annotations=fake.timonier.io/exit-code=0"]).ok();
    k.run(&["run", "broken", "--image=busybox", "--restart=Never", "--annotations=fake.timonier.io/exit-code=3"]).ok();
    k.run(&["run", "crashing", "--image=busybox", "--annotations=fake.timonier.io/exit-code=1"]).ok();
    let phase = |p: &str| k.run(&["get", "pod", p, "-o", "jsonpath={.status.phase}"]).stdout;
    eventually(&k, &["get", "pod", "done", "-o", "jsonpath={.status.phase}"], 20, |o| o == "Succeeded");
    assert_eq!(phase("broken"), "Failed");
    let code = k.run(&["get", "pod", "broken", "-o", "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}"]).ok().to_string();
    assert_eq!(code, "3");
    let row = k.run(&["get", "pod", "crashing", "--no-headers"]).ok().to_string();
    assert!(row.contains("CrashLoopBackOff") && row.contains("0/1"), "{row}");

    // Deleted pods go at once.
    k.run(&["delete", "deployment", "web"]).ok();
    eventually(&k, &["get", "pods", "-l", "app=web", "-o", "name"], 30, |o| o.trim().is_empty());

    // A node marked not-ready stops heartbeating: the node controller marks it NotReady.
    k.run(&["annotate", "node", "fake-node-1", "fake.timonier.io/not-ready=true"]).ok();
    eventually(&k, &["get", "node", "fake-node-1", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"], 45, |o| o == "Unknown");
    k.run(&["annotate", "node", "fake-node-1", "fake.timonier.io/not-ready-"]).ok();
    eventually(&k, &["get", "node", "fake-node-1", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"], 30, |o| o == "True");
}

#[test]
fn an_agent_simulates_nodes_with_admin_credentials() {
    let server = Server::start_control_plane(bin(), &[]);
    let k = server.kubectl("1.27");
    let dir = timonier_testkit::temp_dir("timonier-fake-agent-");
    let mut agent = std::process::Command::new(bin());
    agent.args(["agent", "--fake", "--count", "2", "--node-name", "sim", "--kubeconfig"]).arg(&server.kubeconfig).arg("--data-dir").arg(dir.path());
    agent.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let _agent = timonier_testkit::ChildGuard(agent.spawn().expect("timonier agent --fake"));
    let names = "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}";
    eventually(&k, &["get", "nodes", "-o", names], 20, |o| o.trim() == "sim-0=True sim-1=True");
    k.run(&["run", "p", "--image=busybox"]).ok();
    k.run(&["wait", "--for=condition=Ready", "pod/p", "--timeout=30s"]).ok();

    // Without admin credentials there is nothing to simulate with.
    let out = std::process::Command::new(bin()).args(["agent", "--fake", "--count", "2"]).output().expect("run agent");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--kubeconfig"), "{}", String::from_utf8_lossy(&out.stderr));
}
