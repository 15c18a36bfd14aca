//! A control plane of several servers on one etcd, and an agent on a host of its own: when the
//! server the agent joined through dies, the agent goes on through another (its load balancer
//! follows the `kubernetes` Service's endpoints) — its node stays Ready, its pods untouched,
//! new pods start on it; when the leader dies in the middle of a rollout, the other server
//! finishes it without a pod made twice.

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

/// Two servers on one etcd, sharing the cluster CA through the server token, and one node
/// `<prefix>0`, an agent on a host of its own that joined through the first. Bind `etcd` first:
/// it must outlive the servers (locals drop in reverse order).
struct TwoServers {
    /// The first server (`c.server`) and the node.
    c: MultiNode,
    b: Server,
    kb: Kubectl,
    /// Where both servers listen, on the hosts' LAN.
    gateway: String,
    etcd: Etcd,
}

fn two_servers(prefix: &str) -> TwoServers {
    let etcd = Etcd::start().expect("etcd (install Debian's etcd-server)");
    let datastore = format!("etcd://{}", etcd.endpoint);
    let token = format!("{prefix}-server-token");
    let mut args = vec!["--datastore", datastore.as_str(), "--token", token.as_str()];
    args.extend(TIMING);
    let c = MultiNode::start_with(prefix, 0, &[TestImage::Busybox], "vxlan", &args);
    let token = std::fs::read_to_string(c.server.dir.path().join("data/server-token")).expect("server-token");
    let gateway = c.gateway().to_string();
    let mut b_args = vec!["--bind-address", gateway.as_str(), "--datastore", datastore.as_str(), "--token", token.as_str()];
    b_args.extend(TIMING);
    let b = Server::start_control_plane(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &b_args);
    let kb = b.kubectl("1.33");
    TwoServers { c, b, kb, gateway, etcd }
}

#[test]
fn agents_fail_over_when_their_server_dies() {
    let TwoServers { etcd: _etcd, mut c, b, kb, gateway } = two_servers("ha");

    kb.run_with_input(&["apply", "-f", "-"], Some(&pod("before", "ha0"))).ok();
    wait(&kb, "pod before Running", Duration::from_secs(60), |k| phase(k, "before") == "Running");
    // The agent learns of the second server from the kubernetes endpoints it watches.
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

/// A watch of the Deployment's `resource` (pods or replicasets) through `k`: every event as
/// `TYPE NAME FIELD`, with `FIELD` the `field` jsonpath of the object, collected by a thread
/// until the returned guard drops.
fn watch(k: &Kubectl, resource: &str, field: &str) -> (timonier_testkit::ChildGuard, std::thread::JoinHandle<Vec<String>>) {
    let output = format!("jsonpath={{.type}} {{.object.metadata.name}} {{.object.{field}}}{{\"\\n\"}}");
    let mut cmd = k.command(&["get", resource, "-l", "app=web", "-w", "--output-watch-events", "-o", &output]);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let mut child = timonier_testkit::ChildGuard(cmd.spawn().expect("kubectl get -w"));
    let stdout = child.0.stdout.take().expect("stdout");
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).collect()
    });
    (child, lines)
}

/// Waits for the Deployment's rollout; on failure, shows where it stands and the servers' logs.
#[track_caller]
fn rolled_out(k: &Kubectl, a: &Server, b: &Server) {
    let r = k.run(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    if r.code != 0 {
        let show = |args: &[&str]| k.run(args).stdout;
        panic!(
            "rollout stuck: {}\n{}\n{}\n--- server A ---\n{}\n--- server B ---\n{}",
            r.stdout.lines().last().unwrap_or(""),
            show(&["get", "rs", "-o", "wide"]),
            show(&["get", "events", "--sort-by=.lastTimestamp"]),
            common::tail(&a.log(), 100),
            common::tail(&b.log(), 100)
        );
    }
}

#[test]
fn leader_dies_during_a_rollout() {
    let TwoServers { etcd: _etcd, mut c, b, kb, .. } = two_servers("roll");
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 50\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers: [{name: c, image: busybox, command: [sleep, \"3600\"], env: [{name: ROUND, value: \"1\"}]}]\n";
    kb.run_with_input(&["apply", "-f", "-"], Some(deployment)).ok();
    rolled_out(&kb, &c.server, &b);

    // A rollout through the survivor-to-be; the leader dies in the middle of it.
    let (pods_watch, pods) = watch(&kb, "pods", "metadata.labels.pod-template-hash");
    let (sets_watch, sets) = watch(&kb, "replicasets", "spec.replicas");
    std::thread::sleep(Duration::from_millis(500));
    kb.run(&["set", "env", "deployment/web", "ROUND=2"]).ok();
    std::thread::sleep(Duration::from_secs(1));
    c.server.kill();
    rolled_out(&kb, &c.server, &b);
    // Acknowledged writes made through the dead server are all there.
    assert_eq!(kb.run(&["get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].env[0].value}"]).ok(), "2");
    std::thread::sleep(Duration::from_secs(2));
    drop((pods_watch, sets_watch));
    let (pods, sets) = (pods.join().expect("watch thread"), sets.join().expect("watch thread"));

    // No pod was made twice: the new ReplicaSet created exactly 50.
    let new_hash = kb.run(&["get", "rs", "-l", "app=web", "-o", "jsonpath={.items[?(@.spec.replicas==50)].metadata.labels.pod-template-hash}"]).ok().trim().to_string();
    assert!(!new_hash.is_empty());
    let created: std::collections::BTreeSet<&str> =
        pods.iter().filter_map(|e| e.split(' ').collect::<Vec<_>>().get(..3).map(|f| (f[0], f[1], f[2]))).filter(|(t, _, h)| *t == "ADDED" && *h == new_hash).map(|(_, n, _)| n).collect();
    assert_eq!(created.len(), 50, "pods of the new ReplicaSet created: {}", created.len());
    // The ReplicaSets' sizes never went past replicas + maxSurge (25 % of 50, rounded up).
    let mut sizes = std::collections::BTreeMap::new();
    let mut peak = 0;
    for e in &sets {
        let f: Vec<&str> = e.split(' ').collect();
        if let [kind, name, size] = f[..] {
            if kind == "DELETED" {
                sizes.remove(name);
            } else {
                sizes.insert(name, size.parse::<u32>().unwrap_or(0));
            }
            peak = peak.max(sizes.values().sum::<u32>());
        }
    }
    assert!(peak <= 63, "ReplicaSets of {peak} replicas at once:\n{}", sets.join("\n"));
    assert_eq!(kb.run(&["get", "pods", "-l", "app=web", "-o", "name"]).ok().lines().count(), 50);
}

/// Pods of the Deployment as `name uid containerID restarts ready`, sorted.
fn pod_states(k: &Kubectl) -> Vec<String> {
    let out = k.run(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}{\"\\n\"}{end}"]);
    let mut lines: Vec<String> = out.stdout.lines().map(String::from).collect();
    lines.sort();
    lines
}

#[test]
fn every_server_restarts_at_once() {
    let TwoServers { etcd: _etcd, mut c, mut b, kb, .. } = two_servers("rst");
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers: [{name: c, image: busybox, command: [sleep, \"3600\"]}]\n";
    kb.run_with_input(&["apply", "-f", "-"], Some(deployment)).ok();
    rolled_out(&kb, &c.server, &b);
    let before = pod_states(&kb);
    assert_eq!(before.len(), 3);

    // Both servers die at once, and come back.
    c.server.kill();
    b.kill();
    std::thread::sleep(Duration::from_secs(2));
    c.server.restart();
    b.restart();

    // The same state: the same pods, never restarted, Ready; the node Ready; one leader, who acts.
    let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    wait(&kb, "the node Ready", Duration::from_secs(30), |k| k.run(&["get", "node", "rst0", "-o", ready]).stdout == "True");
    assert_eq!(pod_states(&kb), before);
    let kcm = kb.run(&["get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}"]).ok().to_string();
    assert!(!kcm.is_empty());
    kb.run(&["scale", "deployment", "web", "--replicas=4"]).ok();
    rolled_out(&kb, &c.server, &b);
    std::thread::sleep(Duration::from_secs(1));
    let after = pod_states(&kb);
    assert_eq!(after.len(), 4);
    assert!(before.iter().all(|p| after.contains(p)), "{before:?} → {after:?}");
}
