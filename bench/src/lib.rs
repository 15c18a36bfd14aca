//! What the benchmark programs share: describing the machine a run happened on, starting
//! many watchers, starting and taking down the agents of multi-host clusters, medians.

use std::process::{Command, Stdio};

/// The first line a command prints, or "?" (for `uname -r`, `etcd --version`, …).
pub fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// A benchmark's exit status: success, or its error with every cause on standard error.
pub fn exit(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The CPU model, from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "?".into())
}

/// The 1, 5 and 15 minute load averages: how quiet the machine was.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_else(|_| "?".into())
}

/// Waits until `wanted` watcher tasks have signalled on `ready` that their watch is open, so
/// that the events measured afterwards reach all of them. A watcher that failed to start
/// closes the channel early; its error is returned.
pub async fn wait_watchers_started<T: 'static>(
    ready: &mut tokio::sync::mpsc::Receiver<()>,
    wanted: usize,
    deadline: std::time::Instant,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<T>>,
) -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    let mut started = 0;
    while started < wanted {
        match tokio::time::timeout_at(deadline.into(), ready.recv()).await {
            Ok(Some(())) => started += 1,
            // Every sender gone: some watcher failed to start; its error comes out below.
            Ok(None) => break,
            Err(_) => bail!("only {started} of {wanted} watches started before the deadline"),
        }
    }
    if started < wanted {
        while let Some(r) = tasks.join_next().await {
            r.context("watcher task failed")??;
        }
        bail!("only {started} of {wanted} watches started");
    }
    Ok(())
}

/// The workspace root (this crate is `bench/` in it).
pub fn workspace_root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory for this workspace: `$CARGO_TARGET_DIR` (relative to the
/// workspace, as cargo reads it) or `target`.
pub fn target_dir() -> std::path::PathBuf {
    workspace_root().join(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
}

/// The `timonier` binary to measure: `given`, or the workspace's release build (built first
/// unless `no_build`).
pub fn server_binary(given: Option<&std::path::Path>, no_build: bool) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::ensure;
    if let Some(b) = given {
        ensure!(b.exists(), "{} does not exist", b.display());
        return Ok(b.to_path_buf());
    }
    let target = target_dir();
    if no_build {
        let bin = target.join("release").join("timonier");
        ensure!(bin.exists(), "{} does not exist: run `cargo build --release -p timonier` (or pass --server-bin)", bin.display());
        return Ok(bin);
    }
    cargo_build_release(&target, &[])
}

/// Runs `cargo build --release -p timonier` into `target` with extra environment variables
/// (such as RUSTFLAGS) and returns the binary.
pub fn cargo_build_release(target: &std::path::Path, env: &[(&str, String)]) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::{ensure, Context};
    eprintln!("cargo build --release -p timonier (into {}) ...", target.display());
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "-p", "timonier"])
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .context("cannot run cargo (or pass --no-build / --server-bin)")?;
    ensure!(status.success(), "cargo build --release -p timonier failed: {status}");
    let bin = target.join("release").join("timonier");
    ensure!(bin.exists(), "{} does not exist after the build", bin.display());
    Ok(bin)
}

/// Stops an agent (SIGTERM, then half a second) and removes what it left — shims, containers,
/// mounts, cgroups, its pod network — from inside its host, where its links are.
pub fn remove_node(host: &timonier_testkit::hosts::Host, agent: Option<timonier_testkit::ChildGuard>, dir: &std::path::Path) {
    if let Some(a) = agent {
        unsafe { libc::kill(a.pid() as i32, libc::SIGTERM) };
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let dir = dir.to_path_buf();
    let _ = host.run_in(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            rt.block_on(timonier_kubelet::cleanup_node(&dir));
        }
    });
}

/// Starts `timonier agent` (`bin`) as node `name` on `host`, its data in `dir` and its output in
/// `log`, with `credentials` (`--kubeconfig F`, or `--server URL --token T`) and `extra` flags;
/// its cgroups under `/timonier-bench-<name>`.
pub fn spawn_agent(
    bin: &std::path::Path,
    host: &timonier_testkit::hosts::Host,
    name: &str,
    dir: &std::path::Path,
    log: &std::path::Path,
    credentials: &[&str],
    extra: &[&str],
) -> anyhow::Result<timonier_testkit::ChildGuard> {
    use anyhow::Context;
    let log = std::fs::File::create(log)?;
    let child = host
        .command(bin)
        .arg("agent")
        .args(credentials)
        .arg("--data-dir")
        .arg(dir)
        .args(["--node-name", name, "--node-ip", &host.ip.to_string(), "--cgroup-root", &format!("/timonier-bench-{name}")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start the agent of {name}"))?;
    Ok(timonier_testkit::ChildGuard(child))
}

/// The median (the mean of the middle two for an even count; NaN for none).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// CPU time (user + system, seconds) of a process so far.
pub fn proc_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    let Some((_, rest)) = stat.rsplit_once(')') else { return f64::NAN };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15.
    let ticks: f64 = [11, 12].iter().filter_map(|&i| f.get(i)?.parse::<f64>().ok()).sum();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / if hz > 0.0 { hz } else { 100.0 }
}

/// A `VmRSS:`-like line of /proc/<pid>/status, in kB.
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// The CA and the admin certificate and key (PEM, together) of a test server: what benchmark
/// clients authenticate with.
pub fn admin_credentials(server: &timonier_testkit::Server) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let pki = server.dir.path().join("data/pki");
    let ca = std::fs::read(pki.join("ca.crt"))?;
    let identity = [std::fs::read(pki.join("admin.crt"))?, std::fs::read(pki.join("admin.key"))?].concat();
    Ok((ca, identity))
}

/// An admin client with a connection pool of its own (so its own TLS connection).
pub fn admin_client(ca: &[u8], identity: &[u8], timeout: std::time::Duration) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context;
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).context("CA certificate")?)
        .identity(reqwest::Identity::from_pem(identity).context("admin certificate and key")?)
        .no_proxy()
        .timeout(timeout)
        .build()?)
}

/// JSON over HTTPS to a test server as its administrator: what the benchmarks that drive the
/// API directly (no kubectl, no typed client) send.
pub struct Rest {
    client: reqwest::Client,
    base: String,
}

impl Rest {
    pub fn new(server: &timonier_testkit::Server) -> anyhow::Result<Rest> {
        let (ca, identity) = admin_credentials(server)?;
        Ok(Rest { client: admin_client(&ca, &identity, std::time::Duration::from_secs(120))?, base: server.url("") })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.send(self.client.get(format!("{}{path}", self.base)), path).await
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        self.send(self.client.post(format!("{}{path}", self.base)).json(body), path).await
    }

    /// A merge patch (`kubectl patch --type merge`).
    pub async fn patch(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let req = self.client.patch(format!("{}{path}", self.base)).header("content-type", "application/merge-patch+json").body(body.to_string());
        self.send(req, path).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.send(self.client.delete(format!("{}{path}", self.base)), path).await
    }

    async fn send(&self, req: reqwest::RequestBuilder, path: &str) -> anyhow::Result<serde_json::Value> {
        let r = req.send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {}", String::from_utf8_lossy(&body));
        Ok(serde_json::from_slice(&body)?)
    }

    /// Every item of a list, in pages of 500 as kubectl reads them; and how long the first
    /// page took.
    pub async fn list_all(&self, path: &str) -> anyhow::Result<(Vec<serde_json::Value>, std::time::Duration)> {
        let started = std::time::Instant::now();
        let mut first = None;
        let mut items = Vec::new();
        let mut cont = String::new();
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let more = if cont.is_empty() { String::new() } else { format!("&continue={cont}") };
            let page = self.get(&format!("{path}{sep}limit=500{more}")).await?;
            first.get_or_insert(started.elapsed());
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            cont = page["metadata"]["continue"].as_str().unwrap_or("").to_string();
            if cont.is_empty() {
                return Ok((items, first.unwrap_or_default()));
            }
        }
    }
}
