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

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use timonier_testkit::{free_port, Kubectl, Registry, Server};

/// Its own bridge name, so it never takes over another test's.
const BRIDGE: &str = "tmnkr8s0";

/// The server and its agent; on drop the server stops and what the agent left is removed.
struct Node {
    server: Server,
    kubectl: Kubectl,
    _registry: Registry,
    _dirs: Vec<tempfile::TempDir>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.server.stop();
        let dir = self.server.dir.path().join("data").join("agent");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(timonier_kubelet::cleanup_node(&dir));
    }
}

impl Node {
    fn start() -> Node {
        let registry = Registry::start().expect("cannot start docker-registry (apt-get install docker-registry)");
        let images = timonier_testkit::temp_dir("timonier-images-");
        let layout = images.path().join("bootcamp");
        timonier_testkit::images::bootcamp_image(&layout, 1).expect("bootcamp image");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(timonier_testkit::images::push(registry.addr(), &layout, "google-samples/kubernetes-bootcamp:v1")).expect("push bootcamp");
        let cfg = timonier_testkit::temp_dir("timonier-regcfg-");
        let reg = cfg.path().join("registries.yaml");
        std::fs::write(&reg, format!("mirrors:\n  gcr.io:\n    endpoint: [\"http://{}\"]\n", registry.addr())).unwrap();
        let port = free_port().to_string();
        let server = Server::start_with_agent(
            Path::new(env!("CARGO_BIN_EXE_timonier")),
            &["--node-name", "node1", "--node-ip", "127.0.0.1", "--kubelet-port", &port, "--bridge", BRIDGE, "--registry-config", &reg.to_string_lossy()],
        );
        let kubectl = server.kubectl("1.33");
        let node = Node { server, kubectl, _registry: registry, _dirs: vec![images, cfg] };
        node.wait("node Ready", |k| k.run(&["get", "node", "node1", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]).stdout == "True");
        node
    }

    #[track_caller]
    fn wait(&self, what: &str, mut f: impl FnMut(&Kubectl) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if f(&self.kubectl) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let pods = self.kubectl.run(&["get", "pods", "-A", "-o", "wide"]).stdout;
        panic!("timed out waiting for {what}\n{pods}\n--- server log ---\n{}", tail(&self.server.log(), 60));
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs the script with `args`, killed (by PID) after `limit`; (success, stdout, stderr).
fn run_script(args: &[&std::ffi::OsStr], limit: Duration) -> (bool, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/kr8s_client.py");
    let mut cmd = std::process::Command::new(timonier_testkit::python());
    cmd.arg(&script).args(args);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = timonier_testkit::ChildGuard(cmd.spawn().expect("python3 (scripts/install-deps makes its environment)"));
    let pid = child.pid();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
            // SAFETY: a plain kill(2) of the child we started, not yet reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    // stderr on a thread: a full pipe must not block the script while we read stdout.
    let mut err_pipe = child.0.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = child.0.stdout.take().expect("piped stdout").read_to_string(&mut stdout);
    let stderr = err_reader.join().unwrap_or_default();
    // The watchdog stands down before the child is reaped, so it never kills a reused PID.
    let _ = done.send(());
    let _ = watchdog.join();
    let ok = child.0.wait().map(|s| s.success()).unwrap_or(false);
    (ok, stdout, stderr)
}

#[test]
fn kr8s_objects_scale_and_custom_resources() {
    let s = Server::start_control_plane(Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let (ok, stdout, stderr) = run_script(&[s.kubeconfig.as_os_str()], Duration::from_secs(240));
    assert!(ok && stdout.contains("kr8s client: ok"), "kr8s failed:\n{stdout}\n{stderr}\n--- server log ---\n{}", tail(&s.log(), 40));
}

#[test]
fn kr8s_exec_logs_and_port_forward() {
    let node = Node::start();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kr8sbootcamp\nspec:\n  nodeName: node1\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: gcr.io/google-samples/kubernetes-bootcamp:v1\n";
    node.kubectl.run_with_input(&["apply", "-f", "-"], Some(pod)).ok();
    node.wait("kr8sbootcamp Ready", |k| k.run(&["get", "pod", "kr8sbootcamp", "-o", "jsonpath={.status.containerStatuses[0].ready}"]).stdout == "true");
    let (ok, stdout, stderr) = run_script(&[node.server.kubeconfig.as_os_str(), std::ffi::OsStr::new("kr8sbootcamp")], Duration::from_secs(300));
    assert!(
        ok && stdout.contains("kr8s client: ok"),
        "kr8s failed against a node:\n{stdout}\n{stderr}\n--- server log ---\n{}",
        tail(&node.server.log(), 40)
    );
}
