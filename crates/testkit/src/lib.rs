//! Fixtures shared by the test suites and the benchmarks: real servers started on loopback in
//! temporary directories, and stopped (by PID) when their guard drops, even when a test fails.

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
            let child = Command::new(&bin)
                .arg("--name=timonier-test")
                .arg(format!("--data-dir={}", dir.path().join("data").display()))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!("--initial-cluster=timonier-test=http://127.0.0.1:{peer}"))
                // Kubernetes objects reach 1.5 MiB; etcd's default request cap is exactly that.
                .arg("--max-request-bytes=10485760")
                .arg("--quota-backend-bytes=8589934592")
                .arg("--log-level=error")
                .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
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

/// The path of a file inside the workspace's target directory, for build products of tests.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}
