//! What the end-to-end tests with a node agent or a Python script share: a `timonier server`
//! with its agent and a loopback registry of test images (removed with everything the agent
//! made, even on failure), waiting with a useful failure message, and running a script with a
//! time limit. Each test binary uses part of it.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use timonier_testkit::{free_port, Kubectl, Registry, Server};

pub mod multinode;

/// An image the test registry serves, under the name a tutorial uses (through the mirrors of
/// `docker.io` and `gcr.io` set up by [`AgentNode::start`]).
#[derive(Clone, Copy)]
pub enum TestImage {
    /// Debian's busybox-static as `busybox` (`docker.io/library/busybox:latest`).
    Busybox,
    /// The kubernetes-bootcamp app: v1 as `gcr.io/google-samples/kubernetes-bootcamp:v1`, v2
    /// as `docker.io/jocatalin/kubernetes-bootcamp:v2`, as in the seed's tutorial.
    Bootcamp(u8),
}

/// A registry on loopback holding test images, and the registries.yaml (k3s' format) that
/// sends `docker.io` and `gcr.io` to it. Each test has its own: one kept in a static would
/// never be dropped, and so never stopped.
pub struct TestRegistry {
    pub registry: Registry,
    /// The `--registry-config` file.
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    pub fn start(images: &[TestImage]) -> TestRegistry {
        Self::with(Registry::start(), images)
    }

    /// A registry listening on `ip` (a test LAN's address), for hosts in other namespaces.
    pub fn start_on(ip: std::net::Ipv4Addr, images: &[TestImage]) -> TestRegistry {
        Self::with(Registry::start_on(ip), images)
    }

    fn with(registry: Result<Registry, String>, images: &[TestImage]) -> TestRegistry {
        let registry = registry.expect("cannot start docker-registry (apt-get install docker-registry)");
        let dir = timonier_testkit::temp_dir("timonier-images-");
        push_images(&registry, dir.path(), images);
        let endpoint = format!("http://{}", registry.addr());
        let config = dir.path().join("registries.yaml");
        let mirrors = format!("mirrors:\n  docker.io:\n    endpoint: [\"{endpoint}\"]\n  gcr.io:\n    endpoint: [\"{endpoint}\"]\n");
        std::fs::write(&config, mirrors).expect("write registries.yaml");
        TestRegistry { registry, config, _dir: dir }
    }
}

/// A server with its node agent; on drop the server stops and everything the agent left
/// (shims, mounts, cgroups, veths, the bridge, blackhole routes, nftables) is removed.
pub struct AgentNode {
    pub server: Server,
    pub kubectl: Kubectl,
    pub node_name: String,
    _registry: Option<TestRegistry>,
}

impl AgentNode {
    /// Starts a node named `node_name` on its own `bridge` (no two live tests share one) with
    /// `images` in a registry on loopback, and waits until the node is Ready.
    pub fn start(bridge: &str, node_name: &str, images: &[TestImage], extra: &[&str]) -> AgentNode {
        let mut args: Vec<String> = vec!["--node-name".into(), node_name.into(), "--node-ip".into(), "127.0.0.1".into()];
        args.extend(["--kubelet-port".into(), free_port().to_string(), "--bridge".into(), bridge.into()]);
        let registry = (!images.is_empty()).then(|| TestRegistry::start(images));
        if let Some(r) = &registry {
            args.extend(["--registry-config".into(), r.config.to_string_lossy().into_owned()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start_with_agent(Path::new(env!("CARGO_BIN_EXE_timonier")), &args);
        let kubectl = server.kubectl("1.33");
        let node = AgentNode { server, kubectl, node_name: node_name.into(), _registry: registry };
        let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
        node.wait("node Ready", Duration::from_secs(30), |k| k.run(&["get", "node", node_name, "-o", ready]).stdout == "True");
        node
    }

    pub fn agent_dir(&self) -> PathBuf {
        self.server.dir.path().join("data").join("agent")
    }

    /// Polls `f` until it holds; on timeout, fails with the pods, events and the server log.
    #[track_caller]
    pub fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Kubectl) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f(&self.kubectl) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let pods = self.kubectl.run(&["get", "pods", "-A", "-o", "wide"]).stdout;
        let events = self.kubectl.run(&["get", "events", "-A"]).stdout;
        panic!("timed out waiting for {what}\n{pods}\n{events}\n--- server log ---\n{}", tail(&self.server.log(), 60));
    }
}

impl Drop for AgentNode {
    fn drop(&mut self) {
        self.server.stop();
        let dir = self.agent_dir();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        rt.block_on(timonier_kubelet::cleanup_node(&dir));
    }
}

fn push_images(registry: &Registry, dir: &Path, images: &[TestImage]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    for image in images {
        let (layout, name) = match *image {
            TestImage::Busybox => {
                let layout = dir.join("busybox");
                timonier_testkit::images::busybox_image(&layout).expect("busybox image");
                (layout, "library/busybox:latest".to_string())
            }
            TestImage::Bootcamp(v) => {
                let layout = dir.join(format!("bootcamp-{v}"));
                timonier_testkit::images::bootcamp_image(&layout, v).expect("bootcamp image");
                let repo = if v == 1 { "google-samples" } else { "jocatalin" };
                (layout, format!("{repo}/kubernetes-bootcamp:v{v}"))
            }
        };
        rt.block_on(timonier_testkit::images::push(registry.addr(), &layout, &name)).expect("push a test image");
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a Python script of tests/python with the tests' environment, killed (by PID) after
/// `limit`: (success, stdout, stderr).
pub fn run_python(script: &str, args: &[&std::ffi::OsStr], limit: Duration) -> (bool, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
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
