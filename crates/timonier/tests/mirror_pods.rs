//! The in-process components as mirror pods in `kube-system`, as kubeadm's static pods show:
//! a `timonier server` with its agent (as root), the stock kubectl. Each test removes what it
//! made (the server, then what the agent left: bridge, routes, nftables table, cgroups).
//!
//! The tests share one bridge name and pod range, so they run one at a time.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use common::AgentNode;

const BRIDGE: &str = "tmnmirror0";
const NODE: &str = "mirror1";

static SERIAL: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A server with its agent; on drop the server stops and what the agent left is removed.
/// The node of these tests: the shared agent node, with what they read of kube-system.
struct Node(AgentNode);

impl std::ops::Deref for Node {
    type Target = AgentNode;
    fn deref(&self) -> &AgentNode {
        &self.0
    }
}

impl Node {
    fn start(extra: &[&str]) -> Node {
        Node(AgentNode::start(BRIDGE, NODE, &[], extra))
    }

    fn system_pod(&self, name: &str) -> Value {
        serde_json::from_str(&self.kubectl.run(&["get", "pod", "-n", "kube-system", name, "-o", "json"]).stdout).unwrap_or(Value::Null)
    }

    fn ready(&self, name: &str) -> bool {
        let p = self.system_pod(name);
        p["status"]["phase"] == "Running"
            && p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    }
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pod_name(component: &str) -> String {
    format!("{component}-{NODE}")
}

#[test]
fn control_plane_components_are_mirror_pods_with_their_logs() {
    let _g = lock();
    let node = Node::start(&[]);
    let k = &node.kubectl;
    let components = ["kube-apiserver", "kube-scheduler", "kube-controller-manager", "kube-proxy", "coredns"];
    for c in components {
        node.wait(&format!("{c} Running and Ready"), Duration::from_secs(60), |_| node.ready(&pod_name(c)));
    }
    let node_uid = k.run(&["get", "node", NODE, "-o", "jsonpath={.metadata.uid}"]).ok().to_string();
    for c in components {
        let p = node.system_pod(&pod_name(c));
        let a = &p["metadata"]["annotations"];
        let hash = a["kubernetes.io/config.hash"].as_str().unwrap_or_default();
        assert_eq!(hash.len(), 32, "{p}");
        assert_eq!(a["kubernetes.io/config.mirror"], hash, "{p}");
        assert_eq!(a["kubernetes.io/config.source"], "file", "{p}");
        assert!(a["kubernetes.io/config.seen"].as_str().is_some_and(|s| s.starts_with("20")), "{p}");
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!((owner["kind"].as_str(), owner["name"].as_str(), owner["uid"].as_str(), owner["controller"].as_bool()), (Some("Node"), Some(NODE), Some(node_uid.as_str()), Some(true)), "{p}");
        assert_eq!(p["spec"]["nodeName"], NODE);
        assert_eq!(p["spec"]["hostNetwork"], true);
        let (class, priority) = if c == "coredns" { ("system-cluster-critical", 2_000_000_000) } else { ("system-node-critical", 2_000_001_000) };
        assert_eq!((p["spec"]["priorityClassName"].as_str(), p["spec"]["priority"].as_i64()), (Some(class), Some(priority)), "{p}");
        let container = &p["spec"]["containers"][0];
        assert_eq!(container["name"], c);
        assert!(container["image"].as_str().is_some_and(|i| i.starts_with("timonier:")), "{p}");
        assert!(container["command"].as_array().is_some_and(|cmd| cmd.iter().any(|a| a == "server") && cmd.iter().any(|a| a == BRIDGE)), "{p}");
        let status = &p["status"];
        assert_eq!((status["podIP"].as_str(), status["hostIP"].as_str()), (Some("127.0.0.1"), Some("127.0.0.1")), "{p}");
        let cs = &status["containerStatuses"][0];
        assert_eq!((cs["ready"].as_bool(), cs["restartCount"].as_i64()), (Some(true), Some(0)), "{p}");
        assert!(cs["state"]["running"]["startedAt"].as_str().is_some_and(|s| s.starts_with("20")), "{p}");
        if c.starts_with("kube-") && c != "kube-proxy" {
            assert_eq!((p["metadata"]["labels"]["component"].as_str(), p["metadata"]["labels"]["tier"].as_str()), (Some(c), Some("control-plane")), "{p}");
        }
    }
    // `kubectl get pods -A`: each Running 1/1.
    let all = k.run(&["get", "pods", "-A"]).ok().to_string();
    for c in components {
        let line = all.lines().find(|l| l.contains(&pod_name(c))).unwrap_or_else(|| panic!("{c} missing:\n{all}"));
        assert!(line.starts_with("kube-system") && line.contains(" 1/1 ") && line.contains("Running"), "{line}");
    }
    let describe = k.run(&["describe", "pod", "-n", "kube-system", &pod_name("kube-apiserver")]).ok().to_string();
    for want in [format!("Node:                 {NODE}/127.0.0.1"), format!("Controlled By:  Node/{NODE}"), "Priority Class Name:  system-node-critical".into(), "Status:               Running".into(), "kubernetes.io/config.source: file".into()] {
        assert!(describe.contains(&want), "describe lacks {want:?}:\n{describe}");
    }

    // Status is written when it changes, not at every resync: a quiet pod keeps its version.
    let quiet = |p: Value| p["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
    let (rv, since) = (quiet(node.system_pod(&pod_name("kube-apiserver"))), Instant::now());

    // The API server's log, with kubectl's options.
    let apiserver = pod_name("kube-apiserver");
    let logs = k.run(&["logs", "-n", "kube-system", &apiserver]).ok().to_string();
    assert!(logs.contains("API server ready"), "{logs}");
    let last = k.run(&["logs", "-n", "kube-system", &apiserver, "--tail=1"]).ok().to_string();
    assert_eq!(last.lines().count(), 1, "{last}");
    let stamped = k.run(&["logs", "-n", "kube-system", &apiserver, "--tail=2", "--timestamps"]).ok().to_string();
    assert!(stamped.lines().count() == 2 && stamped.lines().all(|l| l.starts_with("20")), "{stamped}");
    let recent = k.run(&["logs", "-n", "kube-system", &apiserver, "--since=1h"]).ok().to_string();
    assert!(recent.contains("API server ready"), "{recent}");
    std::thread::sleep(Duration::from_secs(3));
    let later = k.run(&["logs", "-n", "kube-system", &apiserver, "--since=2s"]).ok().to_string();
    assert!(!later.contains("API server ready"), "--since kept an old line:\n{later}");
    // The agent's own log is nobody's pod: the proxy's file has none of it.
    let proxy = k.run(&["logs", "-n", "kube-system", &pod_name("kube-proxy")]).ok().to_string();
    assert!(!proxy.contains("node agent ready") && !proxy.contains("API server ready"), "{proxy}");

    // The scheduler's log, followed while it binds a pod.
    let scheduler = pod_name("kube-scheduler");
    let mut follow = Child(k.command(&["logs", "-f", "-n", "kube-system", &scheduler, "--tail=0"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("kubectl logs -f"));
    let (tx, rx) = mpsc::channel::<String>();
    let out = follow.0.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    k.run_with_input(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata:\n  name: sched-me\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: main\n    image: example.invalid/none:1\n"),
    )
    .ok();
    node.wait("sched-me bound", Duration::from_secs(30), |k| k.run(&["get", "pod", "sched-me", "-o", "jsonpath={.spec.nodeName}"]).stdout == NODE);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut followed = vec![];
    while !followed.iter().any(|l: &String| l.contains("default/sched-me")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => followed.push(l),
            Err(_) => panic!("kubectl logs -f showed no binding of sched-me: {followed:?}"),
        }
    }
    drop(follow);
    let logs = k.run(&["logs", "-n", "kube-system", &scheduler]).ok().to_string();
    assert!(logs.lines().any(|l| l.contains("bound") && l.contains("default/sched-me") && l.contains(NODE)), "{logs}");
    k.run(&["delete", "pod", "sched-me", "--grace-period=0", "--force"]);

    std::thread::sleep(Duration::from_secs(11).saturating_sub(since.elapsed()));
    assert_eq!(quiet(node.system_pod(&pod_name("kube-apiserver"))), rv, "the status was rewritten without a change");

    // A user deleting a mirror pod gets it back, a new object.
    let cm_pod = pod_name("kube-controller-manager");
    let old_uid = node.system_pod(&cm_pod)["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    k.run(&["delete", "pod", "-n", "kube-system", &cm_pod, "--timeout=60s"]).ok();
    node.wait("the mirror pod back", Duration::from_secs(30), |_| {
        let p = node.system_pod(&cm_pod);
        p["metadata"]["uid"].as_str().is_some_and(|u| u != old_uid) && node.ready(&cm_pod)
    });

    // The agent is a node's kubelet: its log is not a pod's, and the files are bounded.
    let files = node.agent_dir().join("logs").join("components");
    let mut names: Vec<String> = std::fs::read_dir(&files).expect("component logs").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["coredns", "kube-apiserver", "kube-controller-manager", "kube-proxy", "kube-scheduler"]);
}

#[test]
fn only_what_runs_has_a_pod() {
    let _g = lock();
    let node = Node::start(&["--disable-scheduler"]);
    let k = &node.kubectl;
    node.wait("kube-apiserver Running and Ready", Duration::from_secs(60), |_| node.ready(&pod_name("kube-apiserver")));
    node.wait("kube-controller-manager Running and Ready", Duration::from_secs(30), |_| node.ready(&pod_name("kube-controller-manager")));
    let err = k.run(&["get", "pod", "-n", "kube-system", &pod_name("kube-scheduler")]).err().to_string();
    assert!(err.contains("NotFound"), "{err}");
    // A mirror pod nothing stands behind is deleted, as upstream deletes orphaned mirror pods.
    let orphan = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {}\n  namespace: kube-system\n  annotations:\n    kubernetes.io/config.mirror: abc\nspec:\n  nodeName: {NODE}\n  containers:\n  - name: kube-scheduler\n    image: timonier:0\n",
        pod_name("kube-scheduler")
    );
    k.run_with_input(&["apply", "-f", "-"], Some(&orphan)).ok();
    node.wait("the orphaned mirror pod deleted", Duration::from_secs(30), |k| k.run(&["get", "pod", "-n", "kube-system", &pod_name("kube-scheduler")]).stderr.contains("NotFound"));
}
