//! Nodes that go away, as kube-controller-manager handles them: the node lifecycle controller
//! marks a node whose Lease stops Unknown and taints it, the taint eviction controller deletes
//! its pods after their tolerations, the ReplicaSet puts them elsewhere and the Service keeps
//! answering; PodGC removes what is left once the node is declared out of service. And nodes
//! taken away on purpose: `kubectl cordon`, `drain` (evictions within a PodDisruptionBudget,
//! also when many are issued at once) and `uncordon`.
//!
//! The first tests use Node objects the test creates and heartbeats itself (a control plane
//! with no agent); the last ones a server and two agents on hosts of their own.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::multinode::MultiNode;
use common::TestImage;
use serde_json::{json, Value};
use timonier_testkit::{Kubectl, Server};

/// The multi-host tests share their hosts' names: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[track_caller]
fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

fn get(k: &Kubectl, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json"]);
    let out = k.run(&args);
    serde_json::from_str(&out.stdout).unwrap_or(Value::Null)
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == type_)
}

fn taint_keys(node: &Value) -> Vec<String> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", t["key"].as_str().unwrap_or(""), t["effect"].as_str().unwrap_or("")))
        .collect()
}

/// Whether `name` has an event with this reason, reporting component and message.
fn has_event(k: &Kubectl, name: &str, reason: &str, from: &str, message: &str) -> bool {
    k.events_of(name).lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some(reason) && w.next() == Some(from) && w.collect::<Vec<_>>().join(" ") == message
    })
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A Node as a kubelet would register it, Ready, with its Lease.
fn fake_node(k: &Kubectl, name: &str) {
    k.run_with_input(&["apply", "-f", "-"], Some(&format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}}}\n"))).ok();
    heartbeat(k, name);
}

/// What a kubelet does every 10 s: renew its Lease and post a Ready status.
fn heartbeat(k: &Kubectl, name: &str) {
    let t = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let status = json!({"status": {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t}],
    }});
    // Not asserted: the heartbeat thread may outlive the server by a beat.
    k.run(&["patch", "node", name, "--subresource=status", "--type=merge", "-p", &status.to_string()]);
    let lease = format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {name}, namespace: kube-node-lease}}\nspec: {{holderIdentity: {name}, leaseDurationSeconds: 40, renewTime: \"{}\"}}\n",
        now()
    );
    k.run_with_input(&["apply", "-f", "-"], Some(&lease));
}

/// A pod bound to `node`, Running and Ready as its kubelet would report it.
fn running_pod(k: &Kubectl, name: &str, node: &str, labels: &str, tolerations: &str) {
    let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 30\n{tolerations}  containers: [{{name: c, image: busybox}}]\n");
    k.run_with_input(&["apply", "-f", "-"], Some(&yaml)).ok();
    let t = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
        {"type": "Ready", "status": "True", "lastTransitionTime": t},
    ]}});
    k.run(&["patch", "pod", name, "--subresource=status", "--type=merge", "-p", &status.to_string()]).ok();
}

fn control_plane(extra: &[&str]) -> Server {
    Server::start_control_plane(Path::new(env!("CARGO_BIN_EXE_timonier")), extra)
}

#[test]
fn a_silent_node_goes_unknown_is_tainted_and_its_pods_evicted_then_heals() {
    let s = control_plane(&["--node-monitor-grace-period", "4s", "--node-monitor-period", "500ms"]);
    let k = s.kubectl("1.33");
    fake_node(&k, "lost");
    fake_node(&k, "alive");
    // The nodes whose "kubelet" runs: heartbeats every second.
    let alive: Arc<Mutex<Vec<&str>>> = Arc::new(Mutex::new(vec!["alive"]));
    let keep_alive = Arc::new(AtomicBool::new(true));
    let beat = {
        let (k, keep_alive, alive) = (k.clone(), keep_alive.clone(), alive.clone());
        std::thread::spawn(move || {
            while keep_alive.load(Ordering::Relaxed) {
                let nodes = alive.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for n in nodes {
                    heartbeat(&k, n);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let fast = "  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 3}]\n";
    running_pod(&k, "fast", "lost", "app: x", fast);
    running_pod(&k, "slow", "lost", "app: x", "");
    // DefaultTolerationSeconds gave the plain pod upstream's two tolerations, in upstream's form.
    let slow = get(&k, &["pod", "slow"]);
    assert_eq!(
        slow["spec"]["tolerations"],
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ])
    );

    // The lease of "lost" is not renewed any more: Unknown within the grace period (and a
    // monitor period), then tainted.
    let took = wait_for("lost Unknown", Duration::from_secs(15), || {
        condition(&get(&k, &["node", "lost"]), "Ready").is_some_and(|c| c["status"] == "Unknown")
    });
    eprintln!("node lost Unknown after {took:?}");
    let node = get(&k, &["node", "lost"]);
    let ready = condition(&node, "Ready").unwrap();
    assert_eq!((ready["reason"].as_str(), ready["message"].as_str()), (Some("NodeStatusUnknown"), Some("Kubelet stopped posting node status.")), "{node}");
    for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = condition(&node, t).unwrap_or_else(|| panic!("{t} in {node}"));
        assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("Unknown"), Some("NodeStatusNeverUpdated")), "{node}");
    }
    wait_for("lost tainted unreachable", Duration::from_secs(5), || {
        let t = taint_keys(&get(&k, &["node", "lost"]));
        t.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string()) && t.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string())
    });
    let taint = get(&k, &["node", "lost"])["spec"]["taints"].as_array().unwrap().iter().find(|t| t["effect"] == "NoExecute").cloned().unwrap();
    assert!(taint["timeAdded"].is_string(), "{taint}");
    assert_eq!(taint_keys(&get(&k, &["node", "alive"])), Vec::<String>::new(), "the node that heartbeats is left alone");
    // Its pods are not Ready any more (endpoints drop them), with upstream's events.
    wait_for("pods of lost not ready", Duration::from_secs(5), || {
        ["fast", "slow"].iter().all(|p| condition(&get(&k, &["pod", p]), "Ready").is_some_and(|c| c["status"] == "False"))
    });
    assert!(has_event(&k, "lost", "NodeNotReady", "node-controller", "Node lost status is now: NodeNotReady"), "{}", k.events_of("lost"));
    assert!(has_event(&k, "lost", "RegisteredNode", "node-controller", "Node lost event: Registered Node lost in Controller"), "{}", k.events_of("lost"));
    assert!(has_event(&k, "slow", "NodeNotReady", "node-controller", "Node is not ready"), "{}", k.events_of("slow"));

    // "fast" tolerates the taint 3 s: then deleted, marked as a disruption target first.
    let took = wait_for("fast deleted", Duration::from_secs(10), || get(&k, &["pod", "fast"])["metadata"]["deletionTimestamp"].is_string());
    eprintln!("fast deleted {took:?} after its node's pods went not ready");
    let fast = get(&k, &["pod", "fast"]);
    let target = condition(&fast, "DisruptionTarget").unwrap_or_else(|| panic!("{fast}"));
    assert_eq!((target["status"].as_str(), target["reason"].as_str(), target["message"].as_str()), (Some("True"), Some("DeletionByTaintManager"), Some("Taint manager: deleting due to NoExecute taint")));
    assert!(has_event(&k, "fast", "TaintManagerEviction", "taint-eviction-controller", "Marking for deletion Pod default/fast"), "{}", k.events_of("fast"));
    assert!(get(&k, &["pod", "slow"])["metadata"]["deletionTimestamp"].is_null(), "slow tolerates it 300 s");

    // Nobody will confirm the deletion of "fast": it stays Terminating until the node is
    // declared out of service, when PodGC force-deletes it.
    std::thread::sleep(Duration::from_secs(2));
    assert!(get(&k, &["pod", "fast"])["metadata"]["name"] == "fast", "a deleted pod on a lost node waits for its kubelet");
    k.run(&["taint", "node", "lost", "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"]).ok();
    wait_for("fast gone", Duration::from_secs(10), || k.run(&["get", "pod", "fast"]).code != 0);
    // The out-of-service taint is NoExecute too: "slow" does not tolerate it, so it goes at once.
    wait_for("slow deleted then gone", Duration::from_secs(10), || k.run(&["get", "pod", "slow"]).code != 0);
    k.run(&["taint", "node", "lost", "node.kubernetes.io/out-of-service-"]).ok();

    // The node comes back: Ready, its taints off.
    alive.lock().unwrap_or_else(|e| e.into_inner()).push("lost");
    wait_for("lost untainted", Duration::from_secs(10), || taint_keys(&get(&k, &["node", "lost"])).is_empty());
    assert_eq!(condition(&get(&k, &["node", "lost"]), "Ready").unwrap()["status"], "True");

    // A NoExecute taint a pod does not tolerate evicts it at once; a cordon taints the node.
    running_pod(&k, "victim", "alive", "app: victim", "");
    k.run(&["taint", "node", "alive", "maintenance=now:NoExecute"]).ok();
    wait_for("victim deleted", Duration::from_secs(5), || get(&k, &["pod", "victim"])["metadata"]["deletionTimestamp"].is_string());
    k.run(&["taint", "node", "alive", "maintenance-"]).ok();
    k.run(&["cordon", "alive"]).ok();
    wait_for("unschedulable taint", Duration::from_secs(5), || taint_keys(&get(&k, &["node", "alive"])) == ["node.kubernetes.io/unschedulable:NoSchedule"]);
    k.run(&["uncordon", "alive"]).ok();
    wait_for("unschedulable taint gone", Duration::from_secs(5), || taint_keys(&get(&k, &["node", "alive"])).is_empty());

    keep_alive.store(false, Ordering::Relaxed);
    let _ = beat.join();
}

/// POSTs evictions of the pods `names` as the admin, all at once (one curl, its transfers in
/// parallel, each connection opened before any answer); the HTTP code of each.
fn evict_all(s: &Server, names: &[String]) -> BTreeMap<String, u16> {
    let pki = s.dir.path().join("data/pki");
    let mut c = std::process::Command::new("curl");
    c.args(["-s", "--parallel", "--parallel-immediate", "--parallel-max", "64"]);
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            c.arg("--next");
        }
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}});
        c.arg("--cacert").arg(pki.join("ca.crt")).arg("--cert").arg(pki.join("admin.crt")).arg("--key").arg(pki.join("admin.key"));
        c.args(["-o", "/dev/null", "-w", "%{http_code} %{url_effective}\n", "-X", "POST", "-H", "Content-Type: application/json", "-d", &body.to_string()]);
        c.arg(s.url(&format!("/api/v1/namespaces/default/pods/{name}/eviction")));
    }
    let out = c.output().expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (code, url) = l.split_once(' ')?;
            let pod = url.strip_suffix("/eviction")?.rsplit('/').next()?;
            Some((pod.to_string(), code.parse().ok()?))
        })
        .collect()
}

#[test]
fn concurrent_evictions_never_overdraw_a_disruption_budget() {
    // The test heartbeats no node: they must not go Unknown meanwhile.
    let s = control_plane(&["--node-monitor-grace-period", "1h"]);
    let k = s.kubectl("1.33");
    fake_node(&k, "n1");
    let pods: Vec<String> = (0..12).map(|i| format!("p{i}")).collect();
    for p in &pods {
        running_pod(&k, p, "n1", "app: guarded", "");
    }
    k.run_with_input(&["apply", "-f", "-"], Some("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: guard}\nspec:\n  minAvailable: 9\n  selector: {matchLabels: {app: guarded}}\n")).ok();
    wait_for("budget allows 3", Duration::from_secs(10), || get(&k, &["pdb", "guard"])["status"]["disruptionsAllowed"] == 3);

    // Twelve evictions at once, three disruptions to hand out.
    let codes = evict_all(&s, &pods);
    assert_eq!(codes.len(), 12, "{codes:?}");
    // With TIMONIER_LOG=timonier_apiserver::eviction=debug the server log shows the races.
    let conflicts = s.log().lines().filter(|l| l.contains("eviction conflicted")).count();
    eprintln!("evictions: {codes:?}, {conflicts} conflicts on the budget logged");
    let evicted: Vec<&String> = codes.iter().filter(|(_, c)| **c == 201).map(|(p, _)| p).collect();
    assert_eq!(evicted.len(), 3, "exactly the allowed disruptions pass: {codes:?}");
    assert!(codes.values().all(|c| *c == 201 || *c == 429), "the others are refused with 429: {codes:?}");
    for p in &pods {
        let deleting = get(&k, &["pod", p])["metadata"]["deletionTimestamp"].is_string();
        assert_eq!(deleting, evicted.contains(&p), "{p}: {codes:?}");
    }
    let pdb = get(&k, &["pdb", "guard"]);
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{pdb}");
    wait_for("budget counts 9 healthy", Duration::from_secs(5), || {
        let st = get(&k, &["pdb", "guard"])["status"].clone();
        st["currentHealthy"] == 9 && st["disruptionsAllowed"] == 0 && st["expectedPods"] == 12
    });

    // Refused with upstream's words; a dry run passes nothing either.
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p11"}});
    let out = s.admin_curl().args(["-X", "POST", "-H", "Content-Type: application/json", "-d", &body.to_string()]).arg(s.url("/api/v1/namespaces/default/pods/p11/eviction")).output().expect("curl");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if !evicted.contains(&&"p11".to_string()) {
        assert_eq!(status["code"], 429, "{status}");
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["message"], "Cannot evict pod as it would violate the pod's disruption budget.");
        assert_eq!(status["details"]["causes"][0], json!({"reason": "DisruptionBudget", "message": "The disruption budget guard needs 9 healthy pods and has 9 currently"}));
    }
    // The budget's status stays put once computed (no write loop with the controller).
    let rv = get(&k, &["pdb", "guard"])["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(get(&k, &["pdb", "guard"])["metadata"]["resourceVersion"], rv);
}

/// The pods of deployment `app`: (name, node, ready, terminating).
fn pods_of(k: &Kubectl, app: &str) -> Vec<(String, String, bool, bool)> {
    let list = get(k, &["pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let ready = condition(p, "Ready").is_some_and(|c| c["status"] == "True");
            (p["metadata"]["name"].as_str().unwrap_or("").to_string(), p["spec"]["nodeName"].as_str().unwrap_or("").to_string(), ready, p["metadata"]["deletionTimestamp"].is_string())
        })
        .collect()
}

/// A Deployment of `replicas` bootcamp pods on the nodes labelled `pool=workers`, spread by
/// their CPU requests, Ready `ready_after` seconds after they start, and a NodePort Service
/// in front.
fn bootcamp(k: &Kubectl, replicas: u32, toleration_seconds: Option<u32>, ready_after: u32) {
    let tolerations = toleration_seconds
        .map(|s| format!("      tolerations:\n      - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: {s}}}\n      - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: {s}}}\n"))
        .unwrap_or_default();
    let yaml = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeSelector: {{pool: workers}}
{tolerations}      containers:
      - name: web
        image: gcr.io/google-samples/kubernetes-bootcamp:v1
        ports: [{{containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1, initialDelaySeconds: {ready_after}}}
        resources: {{requests: {{cpu: 100m}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 8080, targetPort: 8080}}]
"#
    );
    k.run_with_input(&["apply", "-f", "-"], Some(&yaml)).ok();
}

/// One request to the Service's node port on `host`: whether the app answered.
fn answers(host: std::net::Ipv4Addr, port: &str) -> bool {
    let out = std::process::Command::new("curl").args(["-s", "--max-time", "1", &format!("http://{host}:{port}/")]).output();
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("Hello Kubernetes bootcamp!"))
}

#[test]
fn a_lost_node_heals() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The agents renew their Leases every 10 s: 15 s of silence is a dead node.
    let mut cluster = MultiNode::start_with("nl", 2, &[TestImage::Bootcamp(1)], "vxlan", &["--node-monitor-grace-period", "15s", "--node-monitor-period", "1s"]);
    let k = cluster.kubectl.clone();
    for n in ["nl1", "nl2"] {
        k.run(&["label", "node", n, "pool=workers"]).ok();
    }
    bootcamp(&k, 4, Some(5), 0);
    cluster.wait("4 web pods Ready", Duration::from_secs(120), |k| pods_of(k, "web").iter().filter(|p| p.2).count() == 4);
    let before = pods_of(&k, "web");
    let doomed: Vec<String> = before.iter().filter(|p| p.1 == "nl2").map(|p| p.0.clone()).collect();
    assert!(!doomed.is_empty() && doomed.len() < 4, "pods spread over both workers: {before:?}");
    let port = k.run(&["get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"]).ok().to_string();
    let live = cluster.agent("nl1").host.ip;
    assert!(answers(live, &port));

    // Probe the Service through the live node the whole time: every 200 ms, up to 10 tries
    // (before the loss is detected a request may land on a dead pod).
    let probing = Arc::new(AtomicBool::new(true));
    let log: Arc<Mutex<Vec<(Instant, usize)>>> = Arc::default();
    let prober = {
        let (probing, log, port) = (probing.clone(), log.clone(), port.clone());
        std::thread::spawn(move || {
            while probing.load(Ordering::Relaxed) {
                let at = Instant::now();
                let tries = (1..=10).find(|_| answers(live, &port)).unwrap_or(usize::MAX);
                log.lock().unwrap_or_else(|e| e.into_inner()).push((at, tries));
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let killed = Instant::now();
    cluster.kill_host("nl2");
    cluster.wait("nl2 Unknown", Duration::from_secs(40), |k| condition(&get(k, &["node", "nl2"]), "Ready").is_some_and(|c| c["status"] == "Unknown"));
    let unknown = killed.elapsed();
    cluster.wait("nl2 tainted", Duration::from_secs(10), |k| taint_keys(&get(k, &["node", "nl2"])).contains(&"node.kubernetes.io/unreachable:NoExecute".to_string()));
    let tainted = killed.elapsed();
    cluster.wait("4 replacements Ready elsewhere", Duration::from_secs(60), |k| {
        pods_of(k, "web").iter().filter(|p| p.1 != "nl2" && p.2 && !p.3).count() == 4
    });
    let healed = killed.elapsed();
    eprintln!("node loss: Unknown after {unknown:.1?}, tainted after {tainted:.1?}, 4 pods Ready again after {healed:.1?} (grace 15 s, toleration 5 s)");
    assert!(healed < tainted + Duration::from_secs(5 + 10), "replacements within the toleration and a few seconds: {healed:?}");

    // The pods on nl2 were evicted by the taint manager and wait, Terminating, for a kubelet
    // that will not come back…
    for p in &doomed {
        let pod = get(&k, &["pod", p]);
        assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
        assert_eq!(condition(&pod, "DisruptionTarget").map(|c| c["reason"].clone()), Some(json!("DeletionByTaintManager")), "{pod}");
        assert_eq!(condition(&pod, "Ready").map(|c| c["status"].clone()), Some(json!("False")), "{pod}");
        assert!(has_event(&k, p, "TaintManagerEviction", "taint-eviction-controller", &format!("Marking for deletion Pod default/{p}")), "{}", k.events_of(p));
    }
    // …until the administrator declares the node out of service.
    k.run(&["taint", "node", "nl2", "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"]).ok();
    cluster.wait("the dead node's pods gone", Duration::from_secs(15), |k| pods_of(k, "web").iter().all(|p| p.1 != "nl2"));

    std::thread::sleep(Duration::from_secs(2));
    probing.store(false, Ordering::Relaxed);
    let _ = prober.join();
    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let failed: Vec<Duration> = log.iter().filter(|(_, t)| *t == usize::MAX).map(|(at, _)| at.duration_since(killed)).collect();
    assert!(failed.is_empty(), "the Service stopped answering at {failed:?} after the kill");
    // Once the pods were marked not ready (with the taint) every request lands on a live pod.
    let settle = tainted + Duration::from_secs(3);
    let retried: Vec<(Duration, usize)> = log.iter().filter(|(at, t)| at.duration_since(killed) > settle && *t > 1).map(|(at, t)| (at.duration_since(killed), *t)).collect();
    assert!(retried.is_empty(), "requests after {settle:?} needed retries: {retried:?}");
    eprintln!("{} probes, {} answered at the first try", log.len(), log.iter().filter(|(_, t)| *t == 1).count());
}

#[test]
fn drain_moves_pods_within_their_disruption_budget() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = MultiNode::start_with("nd", 2, &[TestImage::Bootcamp(1)], "vxlan", &[]);
    let k = cluster.kubectl.clone();
    for n in ["nd1", "nd2"] {
        k.run(&["label", "node", n, "pool=workers"]).ok();
    }
    // Replacements take 3 s to be Ready: the drain's second eviction must wait for one.
    bootcamp(&k, 4, None, 3);
    k.run_with_input(&["apply", "-f", "-"], Some("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec:\n  maxUnavailable: 1\n  selector: {matchLabels: {app: web}}\n")).ok();
    cluster.wait("4 web pods Ready", Duration::from_secs(120), |k| pods_of(k, "web").iter().filter(|p| p.2).count() == 4);
    cluster.wait("budget allows 1", Duration::from_secs(10), |k| get(k, &["pdb", "web"])["status"]["disruptionsAllowed"] == 1);
    let on = |node: &str| pods_of(&k, "web").iter().filter(|p| p.1 == node && !p.3).count();
    let target = if on("nd1") >= on("nd2") { "nd1" } else { "nd2" };
    assert!(on(target) >= 2, "{:?}", pods_of(&k, "web"));

    // While the drain runs, never fewer than 3 healthy pods (the budget's 4 - 1).
    let watching = Arc::new(AtomicBool::new(true));
    let fewest = Arc::new(Mutex::new(usize::MAX));
    let watcher = {
        let (k, watching, fewest) = (k.clone(), watching.clone(), fewest.clone());
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                let healthy = pods_of(&k, "web").iter().filter(|p| p.2 && !p.3).count();
                {
                    let mut f = fewest.lock().unwrap_or_else(|e| e.into_inner());
                    *f = (*f).min(healthy);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    k.run(&["cordon", target]).ok();
    cluster.wait("unschedulable taint", Duration::from_secs(10), |k| taint_keys(&get(k, &["node", target])).contains(&"node.kubernetes.io/unschedulable:NoSchedule".to_string()));
    let started = Instant::now();
    let out = k.run(&["drain", target, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s"]);
    let took = started.elapsed();
    watching.store(false, Ordering::Relaxed);
    let _ = watcher.join();
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, 0, "{text}");
    eprintln!("drain of {target} took {took:.1?}:\n{text}");
    assert!(text.contains(&format!("node/{target} drained")), "{text}");
    assert!(text.contains("evicting pod default/web-"), "{text}");
    let evictions: String = cluster.server.log().lines().filter(|l| l.contains("eviction")).map(|l| format!("{l}\n")).collect();
    assert!(text.contains("Cannot evict pod as it would violate the pod's disruption budget."), "the second eviction waited for the first pod's replacement: {text}\n{evictions}");
    assert!(*fewest.lock().unwrap_or_else(|e| e.into_inner()) >= 3, "the budget was overdrawn");
    cluster.wait("4 Ready off the drained node", Duration::from_secs(60), |k| {
        let pods = pods_of(k, "web");
        pods.iter().filter(|p| p.2 && !p.3 && p.1 != target).count() == 4 && pods.iter().all(|p| p.1 != target)
    });
    let nodes = k.run(&["get", "node", target]).ok().to_string();
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");

    k.run(&["uncordon", target]).ok();
    cluster.wait("schedulable again", Duration::from_secs(10), |k| {
        let n = get(k, &["node", target]);
        n["spec"]["unschedulable"].is_null() && taint_keys(&n).is_empty()
    });
}
