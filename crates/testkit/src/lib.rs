//! Fixtures shared by the test suites and the benchmarks: real servers started on loopback in
//! temporary directories, and stopped (by PID) when their guard drops, even when a test fails.

mod etcd_cluster;
pub mod hosts;
pub mod partition;
#[cfg(feature = "images")]
pub mod images;
#[cfg(feature = "images")]
pub mod registry;
#[cfg(feature = "images")]
mod token_auth;
pub mod vm;
pub use etcd_cluster::EtcdCluster;
#[cfg(feature = "images")]
pub use registry::Registry;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (the kernel's choice; racy only against other processes).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// The first of `n` consecutive free ports on 127.0.0.1, for what numbers its ports from one
/// (`timonier start --servers`, its etcd members).
pub fn free_ports(n: u16) -> u16 {
    loop {
        let first = free_port();
        let free = (first..first.saturating_add(n)).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free && first.checked_add(n).is_some() {
            return first;
        }
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A child process killed and reaped when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real single-member etcd v3 server (Debian's `etcd-server`) on a free loopback port.
pub struct Etcd {
    pub endpoint: String,
    _child: ChildGuard,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd, or returns why it could not (typically: the `etcd` binary is missing;
    /// install Debian's `etcd-server`).
    pub fn start() -> Result<Etcd, String> {
        let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let dir = tempfile::Builder::new()
            .prefix("timonier-etcd-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        // Two ports from the kernel; retry a few times in case another process takes one.
        for _ in 0..5 {
            let client = free_port();
            let peer = free_port();
            if client == peer {
                continue;
            }
            let log = std::fs::File::create(dir.path().join("etcd.log")).map_err(|e| e.to_string())?;
            let child = etcd_cluster::etcd_command(&bin, "timonier-test", &dir.path().join("data"), client, peer, &format!("timonier-test=http://127.0.0.1:{peer}"))
                .arg("--quota-backend-bytes=8589934592")
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot run {bin:?} (install Debian's etcd-server): {e}"))?;
            let mut guard = ChildGuard(child);
            let addr: SocketAddr = ([127, 0, 0, 1], client).into();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = guard.0.try_wait() {
                    break;
                }
                if wait_for_port(addr, Duration::from_millis(100)) {
                    return Ok(Etcd { endpoint: format!("127.0.0.1:{client}"), _child: guard, dir });
                }
            }
            drop(guard);
        }
        let log = std::fs::read_to_string(dir.path().join("etcd.log")).unwrap_or_default();
        Err(format!("etcd did not start; its log:\n{log}"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A scratch directory removed on drop.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().expect("cannot create a temp dir")
}


/// A `timonier server` started on a free loopback port with its own data directory, stopped
/// (by PID) when dropped.
pub struct Server {
    pub kubeconfig: PathBuf,
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<ChildGuard>,
    bin: PathBuf,
    extra: Vec<String>,
}

impl Server {
    /// Starts the server binary `bin` (tests pass `env!("CARGO_BIN_EXE_timonier")`) as the
    /// API server alone, without its node agent, scheduler and controllers: it needs no root,
    /// touches no network, and no component writes to the objects a test creates.
    pub fn start(bin: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--disable-agent", "--disable-scheduler", "--disable-controllers"];
        args.extend_from_slice(extra);
        Server::start_with_agent(bin, &args)
    }

    /// Starts the whole control plane (API server, scheduler, controllers) but no node agent:
    /// nodes are whatever Node objects the test creates, and nothing runs the pods.
    pub fn start_control_plane(bin: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--disable-agent"];
        args.extend_from_slice(extra);
        Server::start_with_agent(bin, &args)
    }

    /// Starts the server with its in-process node agent (as root); `extra` should give the
    /// agent its own `--kubelet-port` and `--bridge`. The caller removes what the agent
    /// leaves (pods outlive it by design).
    pub fn start_with_agent(bin: &Path, extra: &[&str]) -> Server {
        let dir = temp_dir("timonier-e2e-");
        let mut s = Server {
            kubeconfig: dir.path().join("kubeconfig"),
            port: 0,
            dir,
            child: None,
            bin: bin.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.restart();
        s
    }

    /// (Re)starts the server process with the same data directory (and port, unless it was
    /// taken meanwhile: the kubeconfig is rewritten at every start).
    pub fn restart(&mut self) {
        self.stop();
        for attempt in 0..5 {
            if self.port == 0 || attempt > 0 {
                self.port = free_port();
            }
            match self.spawn() {
                Ok(()) => return,
                Err(log) if log.contains("cannot listen") && attempt < 4 => continue,
                Err(log) => panic!("timonier server did not start:\n{log}"),
            }
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("server.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(|e| e.to_string())?;
        let before = std::fs::read_to_string(&log_path).unwrap_or_default().len();
        let child = Command::new(&self.bin)
            .arg("server")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--secure-port")
            .arg(self.port.to_string())
            .arg("--write-kubeconfig")
            .arg(&self.kubeconfig)
            .args(&self.extra)
            .env("TIMONIER_LOG", std::env::var("TIMONIER_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start timonier server: {e}"))?;
        self.child = Some(ChildGuard(child));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all = std::fs::read_to_string(&log_path).unwrap_or_default();
            let log = all.get(before..).unwrap_or("").to_string();
            if log.contains("API server ready") {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.0.try_wait() {
                    self.child = None;
                    return Err(format!("exited with {status}:\n{log}"));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 30 s:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid())
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.0.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kills the server with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.0.kill();
            let _ = c.0.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `curl -s` as the admin (the cluster CA and the admin's client certificate), for raw
    /// requests; callers add their options and `self.url(path)`.
    pub fn admin_curl(&self) -> Command {
        let pki = self.dir.path().join("data/pki");
        let mut c = Command::new("curl");
        c.arg("-s").arg("--cacert").arg(pki.join("ca.crt")).arg("--cert").arg(pki.join("admin.crt")).arg("--key").arg(pki.join("admin.key"));
        c
    }

    /// The HTTPS URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// A kubectl of the given minor version (`"1.27"` … `"1.33"`) bound to this server.
    pub fn kubectl(&self, version: &str) -> Kubectl {
        Kubectl {
            bin: kubectl_bin(version),
            kubeconfig: self.kubeconfig.clone(),
            cache: self.dir.path().join(format!("kube-cache-{version}")),
            home: self.dir.path().to_path_buf(),
        }
    }
}

/// The Python of the client-compatibility tests: the virtual environment `scripts/install-deps`
/// makes (Debian 12 refuses system-wide pip installs), `$TIMONIER_PYTHON_VENV` if set.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("TIMONIER_PYTHON_VENV").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/cache/timonier-python"));
    venv.join("bin/python")
}

/// The stock kubectl binary of a minor version (from `$TIMONIER_KUBECTL_DIR`, by default where
/// the Google Cloud SDK puts them).
pub fn kubectl_bin(version: &str) -> PathBuf {
    let dir = std::env::var_os("TIMONIER_KUBECTL_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/lib/google-cloud-sdk/bin"));
    let p = dir.join(format!("kubectl.{version}"));
    if p.exists() {
        p
    } else {
        PathBuf::from("kubectl")
    }
}

/// Runs kubectl the way a user does, with its own discovery cache.
#[derive(Clone)]
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub cache: PathBuf,
    pub home: PathBuf,
}

/// What a kubectl run printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "kubectl failed: {}{}", self.stdout, self.stderr);
        &self.stdout
    }

    /// Asserts failure and returns stderr.
    #[track_caller]
    pub fn err(&self) -> &str {
        assert_ne!(self.code, 0, "kubectl unexpectedly succeeded: {}", self.stdout);
        &self.stderr
    }
}

impl Kubectl {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .env("HOME", &self.home)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, None)
    }

    /// The events about the objects named `name`, one per line: reason, reporting component
    /// and message, as tests compare them with upstream's.
    pub fn events_of(&self, name: &str) -> String {
        let selector = format!("involvedObject.name={name}");
        let columns = "custom-columns=REASON:.reason,FROM:.source.component,MESSAGE:.message";
        self.run(&["get", "events", "--field-selector", &selector, "-o", columns, "--no-headers"]).ok().to_string()
    }

    /// Runs kubectl with `input` on stdin (for `-f -`).
    pub fn run_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        use std::io::Write;
        let mut c = self.command(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().expect("cannot run kubectl");
        // Fed from a thread, so that the deadline below holds even if kubectl stops reading.
        let feeder = input.and_then(|i| {
            let mut stdin = child.stdin.take()?;
            let data = i.to_string();
            Some(std::thread::spawn(move || {
                let _ = stdin.write_all(data.as_bytes());
            }))
        });
        let out = wait_bounded(child);
        if let Some(f) = feeder {
            let _ = f.join();
        }
        out
    }

    /// Runs kubectl on a terminal of 40 rows and 100 columns (util-linux `script` gives it a
    /// pty), as a user types at a shell: for each `(expect, type)` step, waits until the
    /// output shows `expect`, then types `type`. For `exec -ti`, `run -it`, `attach -it`.
    pub fn run_in_terminal(&self, args: &[&str], steps: &[(&str, &str)]) -> Output {
        use std::io::{Read, Write};
        use std::sync::{Arc, Mutex};
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let mut words = vec![self.bin.display().to_string(), "--kubeconfig".into(), self.kubeconfig.display().to_string(), "--cache-dir".into(), self.cache.display().to_string()];
        words.extend(args.iter().map(|a| a.to_string()));
        let line = format!("stty rows 40 cols 100; exec {}", words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" "));
        let mut c = Command::new("script");
        c.args(["-qec", &line, "/dev/null"]).env("HOME", &self.home).env_remove("KUBECONFIG");
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("cannot run script(1)");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().expect("piped");
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n]);
                }
            })
        };
        // Kept open until kubectl ends: at its end of input, script(1) would type ^D.
        let mut stdin = child.stdin.take().expect("piped");
        let deadline = Instant::now() + Duration::from_secs(60);
        for (expect, typed) in steps {
            while !String::from_utf8_lossy(&seen.lock().unwrap_or_else(|e| e.into_inner())).contains(expect) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = stdin.write_all(typed.as_bytes());
        }
        let mut out = wait_bounded(child);
        drop(stdin);
        let _ = reader.join();
        out.stdout = String::from_utf8_lossy(&seen.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
        out
    }
}

/// Waits for a kubectl run, killing it after a minute: no kubectl call may hang the suite.
fn wait_bounded(mut child: std::process::Child) -> Output {
    use std::io::Read;
    // Drained while kubectl runs: an answer larger than a pipe's buffer would block it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
