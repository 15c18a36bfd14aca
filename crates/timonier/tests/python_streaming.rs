//! The official Python client's `kubernetes.stream` against a real pod, through the API server:
//! exec (stdout, stderr, exit status, stdin), attach and port-forward, all over WebSocket —
//! `v5`/`v4.channel.k8s.io` for exec and attach, `v4.channel.k8s.io` channels with `?ports=`
//! for port-forward. The script is tests/python/streaming.py.
//!
//! Needs root, like tests/pods.rs: a `timonier server` with its node agent, the bootcamp image
//! from a registry on loopback; everything the agent made is removed at the end.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use timonier_testkit::{free_port, Kubectl, Registry, Server};

/// Its own bridge name, so it never takes over the one of tests/pods.rs.
const BRIDGE: &str = "tmnpystr0";

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

#[test]
fn python_client_exec_attach_and_port_forward() {
    let node = Node::start();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pybootcamp\nspec:\n  nodeName: node1\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: gcr.io/google-samples/kubernetes-bootcamp:v1\n";
    node.kubectl.run_with_input(&["apply", "-f", "-"], Some(pod)).ok();
    node.wait("pybootcamp Ready", |k| k.run(&["get", "pod", "pybootcamp", "-o", "jsonpath={.status.containerStatuses[0].ready}"]).stdout == "true");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/streaming.py");
    let mut cmd = std::process::Command::new(timonier_testkit::python());
    cmd.arg(&script).arg(&node.server.kubeconfig).arg("pybootcamp");
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = timonier_testkit::ChildGuard(cmd.spawn().expect("python3 (scripts/install-deps makes its environment)"));
    // The script's own waits are bounded; this bounds a hang anywhere else (killed by PID).
    let pid = child.pid();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(Duration::from_secs(180)) {
            // SAFETY: a plain kill(2) of the child we started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    // stderr on a thread: a full pipe must not block the script while we read stdout.
    let mut err_pipe = child.0.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = child.0.stdout.take().unwrap().read_to_string(&mut stdout);
    let stderr = err_reader.join().unwrap_or_default();
    // The watchdog stands down before the child is reaped, so it never kills a reused PID.
    let _ = done.send(());
    let _ = watchdog.join();
    let status = child.0.wait().unwrap();
    assert!(
        status.success() && stdout.contains("python streaming: ok"),
        "the Python client's streaming failed ({status}):\n{stdout}\n{stderr}\n--- server log ---\n{}",
        tail(&node.server.log(), 40)
    );
}
