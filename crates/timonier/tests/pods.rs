//! Pods as real containers, end to end: a `timonier server` with its in-process node agent,
//! images pulled from Debian's docker-registry on loopback through registry mirrors, and the
//! stock kubectl. Needs root (CI runs as root); each test removes what it created.
//!
//! The tests share one node bridge name and pod range, so they run one at a time.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{AgentNode, TestImage, TestRegistry};
use serde_json::Value;
use timonier_testkit::{free_port, Kubectl, Registry, Server};

const BRIDGE: &str = "tmntest0";

static SERIAL: Mutex<()> = Mutex::new(());

/// The tutorial's images: busybox and both kubernetes-bootcamp versions.
const IMAGES: &[TestImage] = &[TestImage::Busybox, TestImage::Bootcamp(1), TestImage::Bootcamp(2)];

/// The shared agent node, with what these tests do to pods.
struct Node(AgentNode);

impl std::ops::Deref for Node {
    type Target = AgentNode;
    fn deref(&self) -> &AgentNode {
        &self.0
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut AgentNode {
        &mut self.0
    }
}

impl Node {
    fn start() -> Node {
        Node(AgentNode::start(BRIDGE, "node1", IMAGES, &[]))
    }

    fn pod_json(&self, name: &str) -> Value {
        serde_json::from_str(&self.kubectl.run(&["get", "pod", name, "-o", "json"]).stdout).unwrap_or(Value::Null)
    }

    fn apply(&self, yaml: &str) {
        self.kubectl.run_with_input(&["apply", "-f", "-"], Some(yaml)).ok();
    }

    fn wait_phase(&self, pod: &str, phase: &str) {
        self.wait(&format!("pod {pod} {phase}"), Duration::from_secs(60), |k| k.run(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"]).stdout == phase);
    }
}

fn pod_yaml(name: &str, image: &str, extra_spec: &str, container_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\nspec:\n  nodeName: node1\n  terminationGracePeriodSeconds: 2\n{extra_spec}  containers:\n  - name: main\n    image: {image}\n{container_extra}"
    )
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn bootcamp_pod_runs_serves_and_logs() {
    let _g = lock();
    let node = Node::start();
    let k = &node.kubectl;
    node.apply(&pod_yaml("bootcamp", "gcr.io/google-samples/kubernetes-bootcamp:v1", "", ""));
    node.wait_phase("bootcamp", "Running");
    node.wait("bootcamp Ready", Duration::from_secs(30), |k| k.run(&["get", "pod", "bootcamp", "-o", "jsonpath={.status.containerStatuses[0].ready}"]).stdout == "true");
    let pod = node.pod_json("bootcamp");
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.244."), "pod IP {ip}");
    assert_eq!(pod["status"]["hostIP"], "127.0.0.1");
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    let cs = &pod["status"]["containerStatuses"][0];
    assert!(cs["containerID"].as_str().unwrap().starts_with("timonier://"));
    assert!(cs["imageID"].as_str().unwrap().contains("@sha256:"), "{cs}");
    // The app answers on the pod's IP (the pod's own network namespace, on the node bridge).
    let body = http_get(&format!("{ip}:8080"));
    assert!(body.contains("Hello Kubernetes bootcamp! | Running on: bootcamp | v=1"), "{body}");
    // kubectl get / describe / logs.
    let wide = k.run(&["get", "pods", "-o", "wide"]).ok().to_string();
    assert!(wide.contains("bootcamp") && wide.contains("1/1") && wide.contains("Running") && wide.contains(&ip) && wide.contains("node1"), "{wide}");
    let logs = k.run(&["logs", "bootcamp"]).ok().to_string();
    assert!(logs.contains("Kubernetes Bootcamp App Started At:") && logs.contains("Running On:  bootcamp"), "{logs}");
    assert!(logs.contains("Total Requests: 1"), "{logs}");
    let ts = k.run(&["logs", "bootcamp", "--timestamps", "--tail=1"]).ok().to_string();
    assert!(ts.starts_with("20") && ts.lines().count() == 1, "{ts}");
    let describe = k.run(&["describe", "pod", "bootcamp"]).ok().to_string();
    for want in ["Pulling", "Pulled", "Created", "Started", "Successfully pulled image \"gcr.io/google-samples/kubernetes-bootcamp:v1\"", "Started container main", "Status:           Running"] {
        assert!(describe.contains(want), "describe lacks {want:?}:\n{describe}");
    }
    // A second pod of the same image reuses it.
    node.apply(&pod_yaml("bootcamp2", "gcr.io/google-samples/kubernetes-bootcamp:v1", "", "    imagePullPolicy: IfNotPresent\n"));
    node.wait_phase("bootcamp2", "Running");
    let describe = k.run(&["describe", "pod", "bootcamp2"]).ok().to_string();
    assert!(describe.contains("already present on machine"), "{describe}");
    // Deleting waits for the containers to stop, then the pod is gone.
    k.run(&["delete", "pod", "bootcamp", "bootcamp2", "--wait=true", "--timeout=60s"]).ok();
    assert!(k.run(&["get", "pod", "bootcamp"]).err().contains("NotFound"));
}

fn http_get(addr: &str) -> String {
    http_get_path(addr, "/")
}

fn http_get_path(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if !out.is_empty() {
                return out;
            }
        }
        assert!(Instant::now() < deadline, "no answer from {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The agent's metrics through the API server's node proxy, as `kubectl get --raw` and
/// Prometheus read them: each container's CPU and working set from its cgroup.
#[test]
fn agent_metrics_through_the_node_proxy() {
    let _g = lock();
    let node = Node::start();
    let k = &node.kubectl;
    let cmd = |c: &str| format!("    command: [\"sh\", \"-c\", \"{c}\"]\n");
    node.apply(&pod_yaml("metered", "busybox", "", &cmd("while true; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 1; done")));
    node.wait_phase("metered", "Running");
    let cpu = "container_cpu_usage_seconds_total{container=\"main\",namespace=\"default\",pod=\"metered\"} ";
    node.wait("the container's CPU in /metrics/resource", Duration::from_secs(30), |k| k.run(&["get", "--raw", "/api/v1/nodes/node1/proxy/metrics/resource"]).stdout.contains(cpu));
    let resource = k.run(&["get", "--raw", "/api/v1/nodes/node1/proxy/metrics/resource"]).ok().to_string();
    let line = resource.lines().find(|l| l.starts_with(cpu)).unwrap_or_default().to_string();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "value and timestamp: {line}");
    assert!(fields[1].parse::<f64>().is_ok_and(|v| v > 0.0), "{line}");
    for sample in [
        "# TYPE container_memory_working_set_bytes gauge",
        "container_memory_working_set_bytes{container=\"main\",namespace=\"default\",pod=\"metered\"} ",
        "container_start_time_seconds{container=\"main\",namespace=\"default\",pod=\"metered\"} ",
        "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"metered\"} ",
        "pod_memory_working_set_bytes{namespace=\"default\",pod=\"metered\"} ",
        "node_cpu_usage_seconds_total ",
        "node_memory_working_set_bytes ",
        "resource_scrape_error 0",
    ] {
        assert!(resource.contains(sample), "no {sample:?} in\n{resource}");
    }
    let cadvisor = k.run(&["get", "--raw", "/api/v1/nodes/node1/proxy/metrics/cadvisor"]).ok().to_string();
    assert!(cadvisor.lines().any(|l| l.starts_with("container_memory_working_set_bytes{container=\"main\",id=\"/timonier/pod") && l.contains("image=\"docker.io/library/busybox:latest\"")), "{cadvisor}");
    assert!(cadvisor.contains("container_cpu_usage_seconds_total{container=\"main\",cpu=\"total\","), "{cadvisor}");
    let metrics = k.run(&["get", "--raw", "/api/v1/nodes/node1/proxy/metrics"]).ok().to_string();
    assert!(metrics.contains("# TYPE process_resident_memory_bytes gauge"), "{metrics}");
    let bad = k.run(&["get", "--raw", "/api/v1/nodes/no-such-node/proxy/metrics"]);
    assert!(bad.err().contains("nodes \"no-such-node\" not found"), "{}", bad.stderr);
    k.run(&["delete", "pod", "metered", "--grace-period=0", "--force"]);
}

#[test]
fn restart_policies_exit_codes_and_crash_loop() {
    let _g = lock();
    let node = Node::start();
    let k = &node.kubectl;
    let cmd = |c: &str| format!("    command: [\"sh\", \"-c\", \"{c}\"]\n");
    node.apply(&pod_yaml("never", "busybox", "  restartPolicy: Never\n", &cmd("echo bye; exit 3")));
    node.apply(&pod_yaml("onfailure", "busybox", "  restartPolicy: OnFailure\n", &cmd("exit 0")));
    node.apply(&pod_yaml("crash", "busybox", "", &cmd("echo run; exit 1")));
    node.apply(&pod_yaml("counter", "busybox", "  restartPolicy: Never\n", &cmd("for i in 1 2 3; do echo line $i; sleep 1; done")));
    node.wait_phase("counter", "Running");
    // Follows while it runs, ends when it exits.
    assert_eq!(k.run(&["logs", "-f", "counter"]).ok(), "line 1\nline 2\nline 3\n");
    assert_eq!(k.run(&["logs", "-l", "app=counter", "--tail=1"]).ok(), "line 3\n");
    node.wait_phase("never", "Failed");
    let t = &node.pod_json("never")["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 3);
    assert_eq!(t["reason"], "Error");
    assert_eq!(k.run(&["logs", "never"]).ok(), "bye\n");
    node.wait_phase("onfailure", "Succeeded");
    assert_eq!(node.pod_json("onfailure")["status"]["containerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
    let get = k.run(&["get", "pod", "never", "onfailure"]).ok().to_string();
    assert!(get.contains("Error") && get.contains("Completed"), "{get}");
    // Always: restarted at once, then with back-off; the status says CrashLoopBackOff.
    node.wait("crash restarted and backing off", Duration::from_secs(40), |k| {
        let out = k.run(&["get", "pod", "crash", "-o", "jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state.waiting.reason}"]).stdout;
        out.split(' ').next().and_then(|n| n.parse::<i32>().ok()).is_some_and(|n| n >= 1) && out.ends_with("CrashLoopBackOff")
    });
    let pod = node.pod_json("crash");
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(k.run(&["logs", "crash", "--previous"]).ok(), "run\n");
    let get = k.run(&["get", "pod", "crash"]).ok().to_string();
    assert!(get.contains("CrashLoopBackOff"), "{get}");
    let events = k.run(&["get", "events", "--field-selector", "involvedObject.name=crash"]).ok().to_string();
    assert!(events.contains("BackOff") && events.contains("Back-off restarting failed container main"), "{events}");
}

#[test]
fn bad_images_commands_and_config_end_in_upstream_reasons() {
    let _g = lock();
    let node = Node::start();
    let k = &node.kubectl;
    node.apply(&pod_yaml("noimage", "docker.io/library/doesnotexist:1.0", "", ""));
    node.apply(&pod_yaml("nocmd", "busybox", "", "    command: [\"no-such-binary\"]\n"));
    node.apply(&pod_yaml(
        "nocm",
        "busybox",
        "",
        "    command: [\"sleep\", \"60\"]\n    env:\n    - name: X\n      valueFrom:\n        configMapKeyRef: {name: missing, key: k}\n",
    ));
    node.wait("ErrImagePull then ImagePullBackOff", Duration::from_secs(40), |k| {
        k.run(&["get", "pod", "noimage", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}"]).stdout == "ImagePullBackOff"
    });
    let events = k.run(&["describe", "pod", "noimage"]).ok().to_string();
    assert!(events.contains("Failed to pull image \"docker.io/library/doesnotexist:1.0\"") && events.contains("ErrImagePull"), "{events}");
    node.wait("StartError", Duration::from_secs(30), |k| {
        k.run(&["get", "pod", "nocmd", "-o", "jsonpath={.status.containerStatuses[0].lastState.terminated.reason}{.status.containerStatuses[0].state.terminated.reason}"]).stdout.contains("StartError")
    });
    let cs = &node.pod_json("nocmd")["status"]["containerStatuses"][0];
    let term = if cs["state"]["terminated"].is_object() { &cs["state"]["terminated"] } else { &cs["lastState"]["terminated"] };
    assert_eq!(term["exitCode"], 128);
    assert!(term["message"].as_str().unwrap_or("").contains("no-such-binary"), "{term}");
    node.wait("CreateContainerConfigError", Duration::from_secs(30), |k| {
        k.run(&["get", "pod", "nocm", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}"]).stdout == "CreateContainerConfigError"
    });
    let msg = k.run(&["get", "pod", "nocm", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.message}"]).stdout;
    assert_eq!(msg, "configmap \"missing\" not found");
    // Fixing the input lets the pod start.
    k.run(&["create", "configmap", "missing", "--from-literal=k=v"]).ok();
    node.wait_phase("nocm", "Running");
    // A volume that cannot be set up: FailedMount, and the container waits.
    node.apply(&pod_yaml(
        "nomount",
        "busybox",
        "  volumes: [{name: v, hostPath: {path: /nonexistent/timonier-test, type: Directory}}]\n",
        "    command: [\"sleep\", \"60\"]\n    volumeMounts: [{name: v, mountPath: /v}]\n",
    ));
    node.wait("FailedMount", Duration::from_secs(30), |k| k.run(&["get", "events", "--field-selector", "involvedObject.name=nomount,reason=FailedMount"]).stdout.contains("hostPath type check failed"));
    assert_eq!(k.run(&["get", "pod", "nomount", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}"]).stdout, "ContainerCreating");
    // An impossible memory limit ends in a start error, not a crashed agent.
    node.apply(&pod_yaml("tiny", "busybox", "  restartPolicy: Never\n", "    command: [\"sleep\", \"60\"]\n    resources: {limits: {memory: \"1\"}}\n"));
    node.wait("tiny fails", Duration::from_secs(30), |k| k.run(&["get", "pod", "tiny", "-o", "jsonpath={.status.phase}"]).stdout == "Failed");
    let t = &node.pod_json("tiny")["status"]["containerStatuses"][0]["state"]["terminated"];
    assert!(t["exitCode"] == 128 || t["reason"] == "OOMKilled", "{t}");
}

#[test]
fn init_containers_env_volumes_and_shared_network() {
    let _g = lock();
    let node = Node::start();
    let k = &node.kubectl;
    k.run(&["create", "configmap", "cfg", "--from-literal=greeting=hello", "--from-literal=file.txt=from-configmap"]).ok();
    k.run(&["create", "secret", "generic", "sec", "--from-literal=password=s3cret"]).ok();
    let yaml = r#"apiVersion: v1
kind: Pod
metadata:
  name: full
  labels: {tier: web}
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 2
  volumes:
  - name: shared
    emptyDir: {}
  - name: cfg
    configMap: {name: cfg}
  - name: sec
    secret: {secretName: sec}
  - name: info
    downwardAPI:
      items:
      - path: labels
        fieldRef: {fieldPath: metadata.labels}
  initContainers:
  - name: init
    image: busybox
    command: ["sh", "-c", "echo from-init > /shared/init.txt"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: web
    image: busybox
    command: ["httpd", "-f", "-p", "8080", "-h", "/shared"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: main
    image: busybox
    command: ["sh", "-c", "env > /shared/env.txt; hostname > /shared/hostname.txt; cat /etc/cfg/greeting > /shared/cfg.txt; sleep 3600"]
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: sec, key: password}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: COMBINED, value: "$(GREETING)-$(POD_NAME)"}
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: cfg, mountPath: /etc/cfg}
    - {name: sec, mountPath: /etc/sec, readOnly: true}
    - {name: info, mountPath: /etc/info}
"#;
    node.apply(yaml);
    node.wait_phase("full", "Running");
    node.wait("both containers ready", Duration::from_secs(30), |k| k.run(&["get", "pod", "full", "-o", "jsonpath={.status.containerStatuses[*].ready}"]).stdout == "true true");
    let pod = node.pod_json("full");
    assert_eq!(pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    // The init container's file, served by the web container, from the host.
    let served = http_get_path(&format!("{ip}:8080"), "/init.txt");
    assert!(served.contains("200 OK") && served.contains("from-init"), "{served}");
    let dir = node.agent_dir().join("pods").join(pod["metadata"]["uid"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(dir.join("volumes/shared/init.txt")).unwrap(), "from-init\n");
    assert_eq!(std::fs::read_to_string(dir.join("volumes/cfg/file.txt")).unwrap(), "from-configmap");
    assert_eq!(std::fs::read_to_string(dir.join("volumes/info/labels")).unwrap(), "tier=\"web\"");
    node.wait("env written", Duration::from_secs(10), |_| dir.join("volumes/shared/cfg.txt").exists());
    let env = std::fs::read_to_string(dir.join("volumes/shared/env.txt")).unwrap();
    for want in ["GREETING=hello", "PASSWORD=s3cret", "POD_NAME=full", &format!("POD_IP={ip}"), "COMBINED=hello-full", "HOSTNAME=full", "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443", "HOME=/root"] {
        assert!(env.lines().any(|l| l == want), "{want} missing from:\n{env}");
    }
    assert_eq!(std::fs::read_to_string(dir.join("volumes/shared/hostname.txt")).unwrap(), "full\n");
    assert_eq!(std::fs::read_to_string(dir.join("volumes/shared/cfg.txt")).unwrap(), "hello");
    let hosts = std::fs::read_to_string(dir.join("etc-hosts")).unwrap();
    assert!(hosts.contains(&format!("{ip}\tfull")), "{hosts}");
    // A changed ConfigMap reaches the running pod's volume.
    k.run(&["patch", "configmap", "cfg", "-p", r#"{"data":{"file.txt":"changed"}}"#]).ok();
    node.wait("configMap volume updated", Duration::from_secs(30), |_| std::fs::read_to_string(dir.join("volumes/cfg/file.txt")).unwrap_or_default() == "changed");
}

#[test]
fn deleted_pods_leave_nothing_behind() {
    let _g = lock();
    let node = Node::start();
    let k = &node.kubectl;
    let cycles: usize = std::env::var("TIMONIER_POD_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    for i in 0..cycles {
        let name = format!("cycle-{i}");
        node.apply(&pod_yaml(&name, "busybox", "", "    command: [\"sleep\", \"3600\"]\n    imagePullPolicy: IfNotPresent\n"));
        node.wait_phase(&name, "Running");
        k.run(&["delete", "pod", &name, "--wait=true", "--timeout=60s"]).ok();
    }
    // Nothing of those pods is left: no shim, no mount, no veth, no lease, no cgroup.
    let pods_dir = node.agent_dir().join("pods");
    node.wait("pod directories removed", Duration::from_secs(10), |_| std::fs::read_dir(&pods_dir).map(|d| d.count() == 0).unwrap_or(true));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&node.agent_dir().to_string_lossy().to_string()), "mounts left:\n{mounts}");
    let links = std::process::Command::new("ip").args(["-o", "link", "show", "master", BRIDGE]).output().unwrap();
    assert!(String::from_utf8_lossy(&links.stdout).trim().is_empty(), "veths left: {}", String::from_utf8_lossy(&links.stdout));
    let leases = node.agent_dir().join("network");
    let left: Vec<_> = walk_files(&leases).into_iter().filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("10.244."))).collect();
    assert!(left.is_empty(), "leases left: {left:?}");
    assert!(!Path::new("/sys/fs/cgroup/memory/timonier").exists() || std::fs::read_dir("/sys/fs/cgroup/memory/timonier").unwrap().flatten().all(|e| !e.path().is_dir()));
}

/// A graceful delete stops the containers, then shows the pod's final status (terminated,
/// not Ready, a terminal phase) before the object goes, so `kubectl wait --for=condition=
/// Ready=false` and clients watching for the exit code see it.
#[test]
fn graceful_deletion_shows_the_final_status() {
    let _g = lock();
    let node = Node::start();
    let k = &node.kubectl;
    let script = "    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 0.1; done\"]\n";
    node.apply(&pod_yaml("graceful", "busybox", "", script));
    node.wait_phase("graceful", "Running");
    node.wait("graceful Ready", Duration::from_secs(30), |k| k.run(&["get", "pod", "graceful", "-o", "jsonpath={.status.containerStatuses[0].ready}"]).stdout == "true");
    let format = "jsonpath={.status.phase} {.status.conditions[?(@.type==\"Ready\")].status} {.status.containerStatuses[0].state.terminated.exitCode}{\"\\n\"}";
    let mut watch = k.command(&["get", "pod", "graceful", "--watch", "-o", format]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    k.run(&["delete", "pod", "graceful", "--grace-period=10", "--wait=false"]).ok();
    let waited = k.run(&["wait", "--for=condition=Ready=false", "pod/graceful", "--timeout=10s"]);
    node.wait("graceful gone", Duration::from_secs(20), |k| k.run(&["get", "pod", "graceful"]).code != 0);
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    // The last state before deletion: exited 0 on SIGTERM, so Succeeded, Ready False.
    assert!(seen.lines().any(|l| l.trim() == "Succeeded False 0"), "watched:\n{seen}");
    // `kubectl wait` saw Ready=false (or, had it been late, the pod already gone).
    assert!(waited.code == 0 || waited.stderr.contains("not found"), "{}", waited.stderr);
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk_files(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn restarting_the_agent_keeps_pods_running() {
    let _g = lock();
    let mut node = Node::start();
    node.apply(&pod_yaml("steady", "busybox", "", "    command: [\"sleep\", \"3600\"]\n"));
    node.wait_phase("steady", "Running");
    let before = node.pod_json("steady")["status"]["containerStatuses"][0].clone();
    node.server.stop();
    node.server.restart();
    node.kubectl = node.server.kubectl("1.33");
    std::thread::sleep(Duration::from_secs(3));
    let after = node.pod_json("steady")["status"]["containerStatuses"][0].clone();
    assert_eq!(before["containerID"], after["containerID"], "the container was replaced");
    assert_eq!(after["restartCount"], 0);
    assert_eq!(after["state"]["running"]["startedAt"], before["state"]["running"]["startedAt"]);
    // Still managed: deleting it works.
    node.kubectl.run(&["delete", "pod", "steady", "--wait=true", "--timeout=60s"]).ok();
}

#[test]
fn probes_and_lifecycle_hooks() {
    let _g = lock();
    let node = Node::start();
    let k = &node.kubectl;
    let host_dir = timonier_testkit::temp_dir("timonier-hooks-");
    let hd = host_dir.path().to_string_lossy().into_owned();
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: probed}}
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 5
  volumes: [{{name: host, hostPath: {{path: "{hd}"}}}}]
  containers:
  - name: late
    image: busybox
    command: ["sh", "-c", "sleep 3; touch /tmp/ready; sleep 3600"]
    readinessProbe: {{exec: {{command: ["cat", "/tmp/ready"]}}, periodSeconds: 1}}
  - name: web
    image: busybox
    command: ["httpd", "-f", "-p", "8080"]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
    startupProbe: {{httpGet: {{path: /etc/hostname, port: 8080}}, periodSeconds: 1, failureThreshold: 30}}
    lifecycle:
      postStart: {{exec: {{command: ["sh", "-c", "echo started > /host/poststart"]}}}}
      preStop: {{exec: {{command: ["sh", "-c", "echo stopping > /host/prestop"]}}}}
    volumeMounts: [{{name: host, mountPath: /host}}]
  - name: dying
    image: busybox
    command: ["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 3600"]
    livenessProbe: {{exec: {{command: ["test", "-f", "/tmp/alive"]}}, periodSeconds: 1, failureThreshold: 1}}
  - name: grpc
    image: gcr.io/google-samples/kubernetes-bootcamp:v1
    command: ["grpc-health"]
    env: [{{name: PORT, value: "9090"}}, {{name: SERVING, value: app}}]
    readinessProbe: {{grpc: {{port: 9090, service: app}}, periodSeconds: 1}}
  - name: grpcdown
    image: gcr.io/google-samples/kubernetes-bootcamp:v1
    command: ["grpc-health"]
    env: [{{name: PORT, value: "9091"}}]
    readinessProbe: {{grpc: {{port: 9091, service: db}}, periodSeconds: 1}}
"#
    );
    node.apply(&yaml);
    node.wait_phase("probed", "Running");
    let ready = |k: &Kubectl, name: &str| {
        k.run(&["get", "pod", "probed", "-o", &format!("jsonpath={{.status.containerStatuses[?(@.name==\"{name}\")].ready}}")]).stdout == "true"
    };
    assert!(!ready(k, "late"), "ready before its probe passed");
    node.wait("late ready", Duration::from_secs(20), |k| ready(k, "late"));
    node.wait("web ready", Duration::from_secs(20), |k| ready(k, "web"));
    assert_eq!(std::fs::read_to_string(host_dir.path().join("poststart")).unwrap_or_default(), "started\n");
    node.wait("liveness restart", Duration::from_secs(30), |k| {
        k.run(&["get", "pod", "probed", "-o", "jsonpath={.status.containerStatuses[?(@.name==\"dying\")].restartCount}"]).stdout.parse::<i32>().is_ok_and(|n| n >= 1)
    });
    // gRPC health probes: the service that serves makes its container ready, the other not.
    node.wait("grpc ready", Duration::from_secs(20), |k| ready(k, "grpc"));
    assert!(!ready(k, "grpcdown"));
    let events = k.run(&["get", "events", "--field-selector", "involvedObject.name=probed"]).ok().to_string();
    assert!(events.contains("Liveness probe failed") && events.contains("Container dying failed liveness probe, will be restarted"), "{events}");
    assert!(events.contains("Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")"), "{events}");
    k.run(&["delete", "pod", "probed", "--wait=true", "--timeout=60s"]).ok();
    assert_eq!(std::fs::read_to_string(host_dir.path().join("prestop")).unwrap_or_default(), "stopping\n");
}

#[test]
fn exec_attach_and_port_forward_through_the_api_server() {
    let _g = lock();
    let node = Node::start();
    node.apply(&pod_yaml("bootcamp", "gcr.io/google-samples/kubernetes-bootcamp:v1", "", ""));
    node.wait_phase("bootcamp", "Running");
    for version in ["1.27", "1.33"] {
        let k = node.server.kubectl(version);
        let env = k.run(&["exec", "bootcamp", "--", "env"]).ok().to_string();
        assert!(env.contains("HOSTNAME=bootcamp") && env.contains("KUBERNETES_SERVICE_HOST=10.96.0.1") && env.contains("NODE_VERSION=6.3.1"), "{version}: {env}");
        // The service-account token, CA and namespace, as every pod gets them.
        let sa = k.run(&["exec", "bootcamp", "--", "sh", "-c", "cd /var/run/secrets/kubernetes.io/serviceaccount && cat namespace && head -c 27 ca.crt && echo && cut -c1-3 token"]).ok().to_string();
        assert_eq!(sa, "default-----BEGIN CERTIFICATE-----\neyJ\n", "{version}");
        let out = k.run(&["exec", "bootcamp", "--", "sh", "-c", "exit 3"]);
        assert_eq!(out.code, 3, "{version}: {out:?}");
        let out = k.run_with_input(&["exec", "-i", "bootcamp", "--", "cat"], Some("through stdin\n"));
        assert_eq!(out.ok(), "through stdin\n", "{version}");
        let out = k.run(&["exec", "bootcamp", "--", "sh", "-c", "echo out; echo err >&2"]);
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("out\n", "err\n"), "{version}");
        let hello = k.run(&["exec", "bootcamp", "--", "curl", "-s", "localhost:8080"]).ok().to_string();
        assert!(hello.contains("Hello Kubernetes bootcamp! | Running on: bootcamp | v=1"), "{version}: {hello}");
        // A terminal, as `kubectl exec -ti POD -- bash` gives.
        let tty = k.run_in_terminal(&["exec", "-ti", "bootcamp", "--", "bash", "-c", "tty; stty size"], &[]);
        assert!(tty.stdout.contains("/dev/pts/") && tty.stdout.contains("40 100"), "{version}: {tty:?}");
        // port-forward to the app.
        let port = free_port();
        let mut pf = k.command(&["port-forward", "pod/bootcamp", &format!("{port}:8080")]);
        pf.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let pf = timonier_testkit::ChildGuard(pf.spawn().unwrap());
        let body = http_get(&format!("127.0.0.1:{port}"));
        assert!(body.contains("Hello Kubernetes bootcamp! | Running on: bootcamp | v=1"), "{version}: {body}");
        drop(pf);
        // attach follows new output.
        let mut at = k.command(&["attach", "bootcamp"]);
        at.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
        let mut at = timonier_testkit::ChildGuard(at.spawn().unwrap());
        std::thread::sleep(Duration::from_millis(1500));
        let ip = node.pod_json("bootcamp")["status"]["podIP"].as_str().unwrap().to_string();
        http_get(&format!("{ip}:8080"));
        std::thread::sleep(Duration::from_millis(1000));
        // SIGTERM, not SIGINT: a test run started in the background by a non-interactive shell
        // inherits SIGINT ignored, and kubectl would never exit.
        unsafe { libc::kill(at.pid() as i32, libc::SIGTERM) };
        let mut out = String::new();
        use std::io::Read;
        let _ = at.0.stdout.take().unwrap().read_to_string(&mut out);
        assert!(out.contains("Running On: bootcamp | Total Requests:"), "{version}: attach printed {out:?}");
    }
}

#[test]
fn limits_security_context_and_private_registries() {
    let _g = lock();
    let node = Node::start();
    let k = &node.kubectl;
    // A memory limit is enforced: the container is OOM-killed and says so.
    node.apply(&pod_yaml(
        "hungry",
        "busybox",
        "  restartPolicy: Never\n",
        "    command: [\"sh\", \"-c\", \"head -c 200m /dev/zero | tail\"]\n    resources:\n      limits: {memory: 32Mi, cpu: 500m}\n      requests: {memory: 32Mi, cpu: 500m}\n",
    ));
    node.wait_phase("hungry", "Failed");
    let pod = node.pod_json("hungry");
    let t = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!((t["reason"].as_str(), t["exitCode"].as_i64()), (Some("OOMKilled"), Some(137)), "{t}");
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    // runAsUser / runAsGroup / readOnlyRootFilesystem.
    let yaml = r#"apiVersion: v1
kind: Pod
metadata: {name: secure}
spec:
  nodeName: node1
  restartPolicy: Never
  volumes: [{name: out, emptyDir: {}}]
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "id -u > /out/r; id -g >> /out/r; if touch /x 2>/dev/null; then echo writable >> /out/r; else echo readonly >> /out/r; fi"]
    securityContext: {runAsUser: 1000, runAsGroup: 2000, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}
    volumeMounts: [{name: out, mountPath: /out}]
"#;
    node.apply(yaml);
    node.wait_phase("secure", "Succeeded");
    let uid = node.pod_json("secure")["metadata"]["uid"].as_str().unwrap().to_string();
    let r = std::fs::read_to_string(node.agent_dir().join("pods").join(uid).join("volumes/out/r")).unwrap();
    assert_eq!(r, "1000\n2000\nreadonly\n");
    // Capabilities: dropped and added; privileged gets them all.
    let caps = r#"apiVersion: v1
kind: Pod
metadata: {name: caps}
spec:
  nodeName: node1
  restartPolicy: Never
  volumes: [{name: out, emptyDir: {}}]
  containers:
  - name: some
    image: busybox
    command: ["sh", "-c", "grep CapEff /proc/self/status > /out/some"]
    securityContext: {capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}
    volumeMounts: [{name: out, mountPath: /out}]
  - name: all
    image: busybox
    command: ["sh", "-c", "grep CapEff /proc/self/status > /out/all"]
    securityContext: {privileged: true}
    volumeMounts: [{name: out, mountPath: /out}]
"#;
    node.apply(caps);
    node.wait_phase("caps", "Succeeded");
    let uid = node.pod_json("caps")["metadata"]["uid"].as_str().unwrap().to_string();
    let out = node.agent_dir().join("pods").join(uid).join("volumes/out");
    assert_eq!(std::fs::read_to_string(out.join("some")).unwrap().split_whitespace().nth(1), Some("0000000000000400"));
    let all = u64::from_str_radix(std::fs::read_to_string(out.join("all")).unwrap().split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert!(all.count_ones() > 30, "privileged CapEff {all:x}");
    // A registry that wants credentials through the Bearer-token flow (as Docker Hub and most
    // registries do; basic auth is in the runtime's pull tests): refused without them, pulled
    // with imagePullSecrets.
    let private = Registry::start_with_token_auth("puller", "s3cret").expect("registry with token auth");
    let dir = timonier_testkit::temp_dir("timonier-private-");
    timonier_testkit::images::busybox_image(dir.path()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(timonier_testkit::images::push_with_auth(private.addr(), dir.path(), "private/busybox:1", Some(("puller", "s3cret")))).unwrap();
    let image = format!("{}/private/busybox:1", private.addr());
    k.run(&["create", "secret", "docker-registry", "regcred", &format!("--docker-server={}", private.addr()), "--docker-username=puller", "--docker-password=s3cret"]).ok();
    node.apply(&pod_yaml("nocreds", &image, "", "    command: [\"sleep\", \"3600\"]\n"));
    node.apply(&pod_yaml("withcreds", &image, "  imagePullSecrets: [{name: regcred}]\n", "    command: [\"sleep\", \"3600\"]\n"));
    node.wait_phase("withcreds", "Running");
    node.wait("nocreds refused", Duration::from_secs(30), |k| {
        let r = k.run(&["get", "pod", "nocreds", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}"]).stdout;
        r == "ErrImagePull" || r == "ImagePullBackOff"
    });
}

#[test]
fn a_separate_agent_joins_with_a_token() {
    let _g = lock();
    let images = TestRegistry::start(IMAGES);
    let dir = timonier_testkit::temp_dir("timonier-agent-");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "node-secret-token,system:node:node2,node2,\"system:masters\"\n").unwrap();
    let reg = &images.config;
    let bin = Path::new(env!("CARGO_BIN_EXE_timonier"));
    let server = Server::start(bin, &["--token-auth-file", tokens.to_str().unwrap()]);
    let agent_dir = dir.path().join("agent");
    let port = free_port().to_string();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let agent = std::process::Command::new(bin)
        .args(["agent", "--server", &format!("https://127.0.0.1:{}", server.port), "--token", "node-secret-token", "--ca-file"])
        .arg(server.dir.path().join("data/pki/ca.crt"))
        .arg("--data-dir")
        .arg(&agent_dir)
        .args(["--node-name", "node2", "--node-ip", "127.0.0.1", "--kubelet-port", &port, "--bridge", BRIDGE, "--registry-config"])
        .arg(&reg)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Cleanup(Option<timonier_testkit::ChildGuard>, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            drop(self.0.take());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(timonier_kubelet::cleanup_node(&self.1));
        }
    }
    let _cleanup = Cleanup(Some(timonier_testkit::ChildGuard(agent)), agent_dir);
    let k = server.kubectl("1.33");
    let deadline = Instant::now() + Duration::from_secs(30);
    while k.run(&["get", "node", "node2", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]).stdout != "True" {
        assert!(Instant::now() < deadline, "node2 never Ready:\n{}", std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(200));
    }
    let nodes = k.run(&["get", "nodes", "-o", "wide"]).ok().to_string();
    assert!(nodes.contains("node2") && nodes.contains("Ready") && nodes.contains("timonier://"), "{nodes}");
    let yaml = pod_yaml("joined", "busybox", "", "    command: [\"sh\", \"-c\", \"echo hello from node2; sleep 3600\"]\n").replace("nodeName: node1", "nodeName: node2");
    k.run_with_input(&["apply", "-f", "-"], Some(&yaml)).ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    while k.run(&["get", "pod", "joined", "-o", "jsonpath={.status.phase}"]).stdout != "Running" {
        assert!(Instant::now() < deadline, "pod never ran:\n{}", std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = k.run(&["logs", "joined"]).stdout;
        if logs == "hello from node2\n" {
            break;
        }
        assert!(Instant::now() < deadline, "logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let lease = k.run(&["get", "lease", "-n", "kube-node-lease", "node2", "-o", "jsonpath={.spec.holderIdentity}"]).ok().to_string();
    assert_eq!(lease, "node2");
}

#[test]
fn persistent_volume_claims_bind_and_mount() {
    let _g = lock();
    let node = Node::start();
    let k = &node.kubectl;
    let host = timonier_testkit::temp_dir("timonier-pv-");
    let yaml = format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-small}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {{path: "{}"}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  resources: {{requests: {{storage: 500Mi}}}}
"#,
        host.path().display()
    );
    node.apply(&yaml);
    node.wait("claim bound", Duration::from_secs(20), |k| k.run(&["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]).stdout == "Bound");
    let pvs = k.run(&["get", "pv"]).ok().to_string();
    assert!(pvs.contains("pv-small") && pvs.contains("Bound") && pvs.contains("default/data"), "{pvs}");
    node.apply(&pod_yaml(
        "writer",
        "busybox",
        "  restartPolicy: Never\n  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]\n",
        "    command: [\"sh\", \"-c\", \"echo persisted > /data/file\"]\n    volumeMounts: [{name: d, mountPath: /data}]\n",
    ));
    node.wait_phase("writer", "Succeeded");
    assert_eq!(std::fs::read_to_string(host.path().join("file")).unwrap(), "persisted\n");
}

#[test]
fn attach_and_run_with_stdin() {
    let _g = lock();
    let node = Node::start();
    for version in ["1.27", "1.33"] {
        let k = node.server.kubectl(version);
        let name = format!("reader-{}", version.replace('.', ""));
        node.apply(&pod_yaml(&name, "busybox", "  restartPolicy: Never\n", "    stdin: true\n    stdinOnce: true\n    command: [\"sh\", \"-c\", \"read line; echo got $line\"]\n"));
        node.wait_phase(&name, "Running");
        let out = k.run_with_input(&["attach", "-i", &name], Some("hello\n"));
        assert!(out.stdout.contains("got hello"), "{version}: {out:?}");
        node.wait_phase(&name, "Succeeded");
        // `kubectl run -i --rm`: the scheduler puts the pod on the node.
        let run = format!("run-{}", version.replace('.', ""));
        let out = k.run_with_input(
            &["run", &run, "-i", "--rm", "--restart=Never", "--image=busybox", "--", "sh", "-c", "read l; echo ran $l"],
            Some("world\n"),
        );
        assert!(out.stdout.contains("ran world"), "{version}: {out:?}");
        // `kubectl run -it --rm`: a terminal in the container, sized as the user's.
        let run = format!("tty-{}", version.replace('.', ""));
        let script = "until read -t 1 l; do echo waiting; done; echo typed $l; tty; stty size; echo $TERM";
        let out = k.run_in_terminal(
            &["run", &run, "-it", "--rm", "--restart=Never", "--image=busybox", "--", "sh", "-c", script],
            &[("waiting", "hello\r")],
        );
        for want in ["typed hello", "/dev/pts/0", "40 100", "xterm", &format!("pod \"{run}\" deleted")] {
            assert!(out.stdout.contains(want), "{version}: no {want:?} in {out:?}");
        }
        // `kubectl attach -it` to a running terminal; what it shows is in the logs too.
        let term = format!("term-{}", version.replace('.', ""));
        node.apply(&pod_yaml(&term, "busybox", "  restartPolicy: Never\n", "    stdin: true\n    tty: true\n    command: [\"sh\", \"-c\", \"while true; do printf 'ready> '; read -t 1 l && echo got:$l && [ $l = bye ] && exit 0; echo; done\"]\n"));
        node.wait_phase(&term, "Running");
        let out = k.run_in_terminal(&["attach", "-it", &term], &[("ready> ", "one\r"), ("got:one", "bye\r")]);
        assert!(out.stdout.contains("got:one") && out.stdout.contains("got:bye"), "{version}: {out:?}");
        node.wait_phase(&term, "Succeeded");
        let logs = k.run(&["logs", &term]).ok().to_string();
        assert!(logs.contains("got:one\r\n"), "{version}: {logs:?}");
    }
}

/// The seed's course on a real node: `kubectl create deployment` of the bootcamp app, the
/// ReplicaSet and its pod as `describe` shows them, scaling, a rolling update to v2, a stuck
/// rollout of an image that does not exist, and `rollout undo`.
#[test]
fn deployments_scale_roll_out_and_roll_back() {
    let _g = lock();
    let node = Node::start();
    let k = &node.kubectl;
    let app = "kubernetes-bootcamp";
    k.run(&["create", "deployment", app, "--image=gcr.io/google-samples/kubernetes-bootcamp:v1"]).ok();
    let rollout = |k: &Kubectl| k.run(&["rollout", "status", &format!("deployment/{app}"), "--timeout=90s"]);
    let out = rollout(k);
    assert!(out.ok().contains(&format!("deployment \"{app}\" successfully rolled out")), "{out:?}");
    let row = k.run(&["get", "deployments.apps"]).ok().to_string();
    assert!(row.lines().nth(1).is_some_and(|l| l.split_whitespace().take(4).collect::<Vec<_>>() == [app, "1/1", "1", "1"]), "{row}");
    let pods = |k: &Kubectl| -> Vec<Value> {
        let list: Value = serde_json::from_str(k.run(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]).ok()).unwrap();
        list["items"].as_array().cloned().unwrap_or_default().into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect()
    };
    let p = pods(k).pop().expect("a pod");
    let pod_name = p["metadata"]["name"].as_str().unwrap().to_string();
    let hash = p["metadata"]["labels"]["pod-template-hash"].as_str().unwrap().to_string();
    assert!(pod_name.starts_with(&format!("{app}-{hash}-")), "{pod_name}");
    let describe = k.run(&["describe", "pods"]).ok().to_string();
    for want in [format!("Controlled By:  ReplicaSet/{app}-{hash}"), "default-scheduler  Successfully assigned".to_string(), "kubelet            Started container".to_string()] {
        assert!(describe.contains(&want), "no {want:?} in\n{describe}");
    }
    let hello = |p: &Value| http_get(&format!("{}:8080", p["status"]["podIP"].as_str().unwrap_or("")));
    assert!(hello(&p).contains(&format!("Running on: {pod_name} | v=1")));

    // Scale up and down.
    k.run(&["scale", &format!("deployments/{app}"), "--replicas=4"]).ok();
    rollout(k).ok();
    node.wait("4 ready pods", Duration::from_secs(60), |k| pods(k).len() == 4 && pods(k).iter().all(|p| p["status"]["phase"] == "Running"));
    // A Service's endpoints are its ready pods, as `kubectl describe` and `get endpoints` show.
    k.run(&["expose", &format!("deployment/{app}"), "--type=NodePort", "--port", "8080"]).ok();
    let mut ips: Vec<String> = pods(k).iter().filter_map(|p| p["status"]["podIP"].as_str().map(|ip| format!("{ip}:8080"))).collect();
    ips.sort();
    node.wait("4 endpoints", Duration::from_secs(30), |k| {
        let eps = k.run(&["get", "endpointslices", "-l", &format!("kubernetes.io/service-name={app}"), "-o", "jsonpath={.items[0].endpoints[*].addresses[0]}"]).stdout;
        eps.split_whitespace().count() == 4
    });
    let describe = k.run(&["describe", &format!("services/{app}")]).ok().to_string();
    let line = describe.lines().find(|l| l.starts_with("Endpoints:")).unwrap_or_default().to_string();
    assert!(ips.iter().take(3).all(|ip| line.contains(ip.as_str())), "{line} vs {ips:?}\n{describe}");
    let eps = k.run(&["get", "endpoints", app, "-o", "jsonpath={.subsets[0].addresses[*].ip}"]).ok().to_string();
    assert_eq!(eps.split_whitespace().count(), 4, "{eps}");
    // The Service answers on its ClusterIP (from the node and from a pod) and on its NodePort,
    // spreading requests over the pods.
    let cluster_ip = k.run(&["get", "service", app, "-o", "jsonpath={.spec.clusterIP}"]).ok().to_string();
    let node_port = k.run(&["get", "service", app, "-o", "jsonpath={.spec.ports[0].nodePort}"]).ok().to_string();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let body = http_get(&format!("{cluster_ip}:8080"));
        assert!(body.contains("Hello Kubernetes bootcamp!"), "{body}");
        seen.insert(body.split("Running on: ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("").to_string());
    }
    assert!(seen.len() >= 2, "one pod answered every request: {seen:?}");
    let body = http_get(&format!("127.0.0.1:{node_port}"));
    assert!(body.contains("Hello Kubernetes bootcamp!"), "node port: {body}");
    let from_pod = k.run(&["exec", &pod_name, "--", "curl", "-s", &format!("{cluster_ip}:8080")]).ok().to_string();
    assert!(from_pod.contains("Hello Kubernetes bootcamp!"), "from a pod: {from_pod}");
    // `kubectl proxy`, then the pod and the Service through the API server, as the tutorial does.
    let port = free_port();
    let mut proxy = k.command(&["proxy", &format!("--port={port}")]);
    proxy.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let proxy = timonier_testkit::ChildGuard(proxy.spawn().unwrap());
    let version = http_get_path(&format!("127.0.0.1:{port}"), "/version");
    assert!(version.contains("\"gitVersion\""), "{version}");
    let via_pod = http_get_path(&format!("127.0.0.1:{port}"), &format!("/api/v1/namespaces/default/pods/{pod_name}:8080/proxy/"));
    assert!(via_pod.contains(&format!("Hello Kubernetes bootcamp! | Running on: {pod_name} | v=1")), "{via_pod}");
    let via_svc = http_get_path(&format!("127.0.0.1:{port}"), &format!("/api/v1/namespaces/default/services/{app}/proxy/"));
    assert!(via_svc.contains("Hello Kubernetes bootcamp!"), "{via_svc}");
    drop(proxy);
    // Cluster DNS: pods resolve the Service by its short and its full name.
    let full = k.run(&["exec", &pod_name, "--", "nslookup", &format!("{app}.default.svc.cluster.local")]).ok().to_string();
    assert!(full.contains(&format!("Address: {cluster_ip}")) || full.contains(&format!("Address 1: {cluster_ip}")), "{full}");
    let by_name = k.run(&["exec", &pod_name, "--", "curl", "-s", &format!("{app}:8080")]).ok().to_string();
    assert!(by_name.contains("Hello Kubernetes bootcamp!"), "by name: {by_name}");
    // The API server from a pod, as in-cluster clients reach it: kubernetes.default:443
    // (DNS, ClusterIP, DNAT to the server's address). A plain HTTP request gets its answer.
    let api = k.run(&["exec", &pod_name, "--", "curl", "-s", "http://kubernetes.default:443/version"]);
    assert!(api.stdout.contains("Client sent an HTTP request to an HTTPS server."), "the API server from a pod: {api:?}");
    let missing = k.run(&["exec", &pod_name, "--", "nslookup", "nothing-here.default.svc.cluster.local"]);
    assert!(missing.code != 0 || missing.stdout.contains("NXDOMAIN"), "{missing:?}");
    k.run(&["scale", &format!("deployments/{app}"), "--replicas=2"]).ok();
    node.wait("2 pods", Duration::from_secs(60), |k| pods(k).len() == 2);
    let events = k.run(&["describe", "deployment", app]).ok().to_string();
    assert!(events.contains(&format!("Scaled up replica set {app}-{hash} from 1 to 4")) && events.contains(&format!("Scaled down replica set {app}-{hash} from 4 to 2")), "{events}");

    // A rolling update to v2: every pod answers v=2 afterwards, the old ReplicaSet is kept at 0.
    k.run(&["set", "image", &format!("deployments/{app}"), &format!("{app}=jocatalin/kubernetes-bootcamp:v2")]).ok();
    rollout(k).ok();
    node.wait("2 v2 pods", Duration::from_secs(60), |k| {
        let ps = pods(k);
        ps.len() == 2 && ps.iter().all(|p| p["status"]["phase"] == "Running" && hello(p).contains("| v=2"))
    });
    let rss = k.run(&["get", "rs", "-l", &format!("app={app}"), "-o", "custom-columns=NAME:.metadata.name,DESIRED:.spec.replicas,REV:.metadata.annotations.deployment\\.kubernetes\\.io/revision", "--no-headers"]).ok().to_string();
    assert!(rss.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [format!("{app}-{hash}").as_str(), "0", "1"]), "{rss}");
    let history = k.run(&["rollout", "history", &format!("deployment/{app}")]).ok().to_string();
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");

    // An image that does not exist: the rollout stalls with the old pods still serving.
    k.run(&["set", "image", &format!("deployments/{app}"), &format!("{app}=gcr.io/google-samples/kubernetes-bootcamp:v10")]).ok();
    node.wait("a failing new pod", Duration::from_secs(60), |k| {
        pods(k).iter().any(|p| matches!(p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str(), Some("ErrImagePull" | "ImagePullBackOff")))
    });
    let out = k.run(&["rollout", "status", &format!("deployment/{app}"), "--timeout=3s"]);
    assert!(out.err().contains("timed out") || out.stdout.contains("Waiting for deployment"), "{out:?}");
    assert_eq!(pods(k).iter().filter(|p| p["status"]["phase"] == "Running").count(), 2);

    // Undo: back to v2, the failing pod gone.
    k.run(&["rollout", "undo", &format!("deployments/{app}")]).ok();
    rollout(k).ok();
    node.wait("back to 2 v2 pods", Duration::from_secs(60), |k| {
        let ps = pods(k);
        ps.len() == 2 && ps.iter().all(|p| p["status"]["phase"] == "Running" && hello(p).contains("| v=2"))
    });

    // Deleting the deployment deletes its ReplicaSets and pods.
    k.run(&["delete", "deployment", app]).ok();
    node.wait("pods gone", Duration::from_secs(60), |k| pods(k).is_empty() && k.run(&["get", "rs", "-o", "name"]).stdout.trim().is_empty());
}
