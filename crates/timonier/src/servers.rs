//! The local cluster's several servers (`timonier start --servers N`), as `minikube start --ha`
//! gives several control planes: a local etcd cluster of N members on loopback that every
//! server shares (unless `--datastore` names one), the first server as a one-server cluster has
//! it (with the node agent), and N−1 more that join it with its server token (`server --server
//! URL --token T`), each with its own data directory and port (the first's + 1, + 2, …) and no
//! node agent (they share this machine with the first node). Leader election makes one
//! scheduler and one controller manager act; clients and agents can use any server.
//!
//! On disk, under the cluster's directory: `servers/settings.json` (how many, the datastore,
//! the token's secret, the etcd ports and member count), `servers/<i>/` for i ≥ 2 (the
//! server's data directory, with `server.pid`, `server.log`), `etcd/m<i>/` (member i's data,
//! `m<i>.pid`, `m<i>.log`).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::cluster::{StartArgs, SERVER, STEP_TIMEOUT};

const ETCD: &[&str] = &["etcd", "--initial-cluster-token=timonier"];

/// The several servers of a cluster, as its first `start --servers` decided them.
pub struct Settings {
    /// How many servers (the first included).
    pub count: u8,
    /// What every server's `--datastore` is.
    pub datastore: String,
    /// The server token's secret, which the first server starts with.
    pub secret: String,
    /// The local etcd: its first member's client port (member i: + 2i, its peer port
    /// + 2i + 1) and how many members it has (fixed when it is made: servers added later share
    /// it); none when `--datastore` named an etcd of the user's.
    etcd: Option<(u16, u8)>,
}

/// One member of the local etcd.
struct Member {
    data: PathBuf,
    pid: PathBuf,
    log: PathBuf,
    client: u16,
}

fn servers_dir(dir: &Path) -> PathBuf {
    dir.join("servers")
}

fn settings_file(dir: &Path) -> PathBuf {
    servers_dir(dir).join("settings.json")
}

fn etcd_dir(dir: &Path) -> PathBuf {
    dir.join("etcd")
}

/// Server `i`'s (≥ 2) data directory.
fn server_dir(dir: &Path, i: u8) -> PathBuf {
    servers_dir(dir).join(i.to_string())
}

fn load(dir: &Path) -> Option<Settings> {
    let v: Value = serde_json::from_slice(&std::fs::read(settings_file(dir)).ok()?).ok()?;
    Some(Settings {
        count: u8::try_from(v.get("count")?.as_u64()?).ok()?,
        datastore: v.get("datastore")?.as_str()?.to_string(),
        secret: v.get("secret")?.as_str()?.to_string(),
        etcd: v.get("etcdPort").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).zip(v.get("etcdMembers").and_then(Value::as_u64).and_then(|n| u8::try_from(n).ok())),
    })
}

fn save(dir: &Path, s: &Settings) -> anyhow::Result<()> {
    let v = json!({"count": s.count, "datastore": s.datastore, "secret": s.secret, "etcdPort": s.etcd.map(|e| e.0), "etcdMembers": s.etcd.map(|e| e.1)});
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(servers_dir(dir))?;
    // The token's secret is in there.
    let path = settings_file(dir);
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(&serde_json::to_vec_pretty(&v)?)?;
    Ok(())
}

/// The cluster's servers: those of its first `start --servers` (more when `--servers` now asks
/// for more), or none for a one-server cluster.
pub fn prepare(dir: &Path, args: &StartArgs) -> anyhow::Result<Option<Settings>> {
    if let Some(mut s) = load(dir) {
        if args.servers > s.count {
            s.count = args.servers;
            save(dir, &s)?;
        }
        return Ok(Some(s));
    }
    if args.servers < 2 {
        return Ok(None);
    }
    if dir.join("server").exists() {
        bail!(
            "this cluster was made with one server, whose state only it can read; to run several, recreate it: `timonier delete --data-dir {0} && timonier start --data-dir {0} --servers {1}`",
            dir.display(),
            args.servers
        );
    }
    let (datastore, etcd) = if args.datastore == "sqlite" {
        let ports = (0..args.servers).map(|i| format!("127.0.0.1:{}", client_port(args.etcd_port, i)));
        (format!("etcd://{}", ports.collect::<Vec<_>>().join(",")), Some((args.etcd_port, args.servers)))
    } else {
        (args.datastore.clone(), None)
    };
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let s = Settings { count: args.servers, datastore, secret, etcd };
    save(dir, &s)?;
    Ok(Some(s))
}

fn client_port(first: u16, member: u8) -> u16 {
    first.saturating_add(2 * u16::from(member))
}

/// The members of the local etcd cluster (none for a user's etcd).
fn members(dir: &Path, s: &Settings) -> Vec<Member> {
    let Some((first, n)) = s.etcd else { return vec![] };
    let base = etcd_dir(dir);
    (0..n)
        .map(|i| Member {
            data: base.join(format!("m{i}")),
            pid: base.join(format!("m{i}.pid")),
            log: base.join(format!("m{i}.log")),
            client: client_port(first, i),
        })
        .collect()
}

/// Whether etcd at 127.0.0.1:`port` reports itself healthy (a leader, quorum).
fn etcd_healthy(port: u16) -> bool {
    let check = || -> std::io::Result<bool> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer.contains("\"health\":\"true\""))
    };
    check().unwrap_or(false)
}

/// Starts the local etcd members that do not run, and waits until the cluster is healthy.
pub fn start_etcd(dir: &Path, s: &Settings, started: Instant) -> anyhow::Result<()> {
    let members = members(dir, s);
    let Some((first, _)) = s.etcd else { return Ok(()) };
    let initial: Vec<String> = (0..members.len()).map(|i| format!("m{i}=http://127.0.0.1:{}", client_port(first, i as u8) + 1)).collect();
    let mut spawned = false;
    for (i, Member { data, pid, log, client }) in members.iter().enumerate() {
        if crate::detached::running(pid, ETCD).is_some() {
            continue;
        }
        for port in [*client, client + 1] {
            if TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200)).is_ok() {
                bail!("port {port} is taken (another etcd?): the cluster's etcd members need ports {first}–{}; make the cluster with another --etcd-port", first + 2 * members.len() as u16 - 1);
            }
        }
        std::fs::create_dir_all(etcd_dir(dir))?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("cannot open {}", log.display()))?;
        let mut cmd = Command::new("etcd");
        cmd.arg(format!("--name=m{i}"))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", client + 1))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{}", client + 1))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            // What ETCD says this process is (detached::running), and which cluster it is.
            .arg("--initial-cluster-token=timonier")
            // Kubernetes objects reach 1.5 MiB; etcd's default request cap is exactly that.
            .arg("--max-request-bytes=10485760")
            .arg("--log-level=warn")
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        match crate::detached::spawn(&mut cmd, pid, &format!("etcd member m{i}")) {
            Ok(_) => spawned = true,
            Err(e) if e.root_cause().downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) => {
                bail!("several servers share a local etcd cluster, and etcd is not installed: `apt install etcd-server` (Debian), or pass --datastore etcd://… to use one of yours")
            }
            Err(e) => return Err(e),
        }
    }
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !members.iter().all(|m| etcd_healthy(m.client)) {
        if Instant::now() > deadline {
            let log = &members[0].log;
            bail!("the local etcd cluster did not become healthy within {} s; the end of {}:\n{}", STEP_TIMEOUT.as_secs(), log.display(), crate::cluster::log_tail(log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if spawned {
        println!("* etcd cluster of {} members healthy at {} ({:.1} s)", members.len(), s.datastore, started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Server `i`'s URL: the first's host, its port + i − 1.
fn url(host: IpAddr, first_port: u16, i: u8) -> String {
    let host = if host.is_ipv6() { format!("[{host}]") } else { host.to_string() };
    format!("https://{host}:{}", first_port + u16::from(i) - 1)
}

/// Starts servers 2… that do not run, joining the first (`host`:`args.secure_port`) with its
/// server token, and waits until each serves.
pub fn start_others(dir: &Path, s: &Settings, args: &StartArgs, host: IpAddr, started: Instant) -> anyhow::Result<()> {
    let token_file = dir.join("server").join("server-token");
    let token = std::fs::read_to_string(&token_file).with_context(|| format!("cannot read the first server's token {}", token_file.display()))?;
    let exe = std::env::current_exe().context("cannot find the timonier binary")?;
    let mut children = Vec::new();
    for i in 2..=s.count {
        let home = server_dir(dir, i);
        if crate::detached::running(&home.join("server.pid"), SERVER).is_some() {
            continue;
        }
        std::fs::create_dir_all(&home)?;
        let log_path = home.join("server.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&home)
            .args(["--secure-port", &(args.secure_port + u16::from(i) - 1).to_string()])
            .args(["--bind-address", &host.to_string()])
            .args(["--datastore", &s.datastore])
            .args(["--server", &url(host, args.secure_port, 1)])
            .arg("--disable-agent")
            .env("TIMONIER_TOKEN", token.trim());
        if let Some(a) = args.advertise_address {
            cmd.args(["--advertise-address", &a.to_string()]);
        }
        for san in &args.tls_san {
            cmd.args(["--tls-san", san]);
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        children.push((i, crate::detached::spawn(&mut cmd, &home.join("server.pid"), &format!("server {i}"))?, log_path));
    }
    for (i, mut child, log_path) in children {
        let addr = SocketAddr::new(host, args.secure_port + u16::from(i) - 1);
        let ready = || {
            std::fs::read_to_string(&log_path).unwrap_or_default().contains("API server ready") && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        };
        if !crate::cluster::wait_until(&mut child, ready) {
            bail!("server {i} did not become ready within {} s; the end of {}:\n{}", STEP_TIMEOUT.as_secs(), log_path.display(), crate::cluster::log_tail(&log_path));
        }
        println!("* Server {i} ready at https://{addr} ({:.1} s)", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Stops servers 2… (SIGTERM: each leaves the `kubernetes` Service and hands its Leases over).
pub fn stop_others(dir: &Path) {
    let Some(s) = load(dir) else { return };
    let pids: Vec<PathBuf> = (2..=s.count).map(|i| server_dir(dir, i).join("server.pid")).collect();
    crate::detached::stop(&pids.iter().map(|p| (p.as_path(), SERVER)).collect::<Vec<_>>(), Duration::from_secs(15));
}

/// Stops the local etcd members (once every server is down).
pub fn stop_etcd(dir: &Path) {
    let Some(s) = load(dir) else { return };
    let pids: Vec<PathBuf> = members(dir, &s).into_iter().map(|m| m.pid).collect();
    crate::detached::stop(&pids.iter().map(|p| (p.as_path(), ETCD)).collect::<Vec<_>>(), Duration::from_secs(15));
}

/// What `status` prints of the servers after the first and of the local etcd, and whether all
/// of them run.
pub fn status(dir: &Path) -> (String, bool) {
    let Some(s) = load(dir) else { return (String::new(), true) };
    let mut out = String::new();
    let mut all = true;
    let members = members(dir, &s);
    if !members.is_empty() {
        let up = members.iter().filter(|m| crate::detached::running(&m.pid, ETCD).is_some()).count();
        let healthy = members.iter().any(|m| etcd_healthy(m.client));
        all &= up == members.len();
        out += &format!("\netcd\ntype: Datastore\nmembers: {up}/{} running\nhealth: {}\n", members.len(), if healthy { "Healthy" } else { "Unhealthy" });
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
    for i in 2..=s.count {
        let home = server_dir(dir, i);
        let running = crate::detached::running(&home.join("server.pid"), SERVER).is_some();
        // Through its own admin kubeconfig, which names its address.
        let ready = running
            && rt.as_ref().is_ok_and(|rt| {
                let text = std::fs::read_to_string(home.join(timonier_apiserver::ADMIN_KUBECONFIG)).unwrap_or_default();
                rt.block_on(crate::cluster::api_ready(&text))
            });
        all &= ready;
        let word = |up: bool| if up { "Running" } else { "Stopped" };
        out += &format!("\nserver-{i}\ntype: Control Plane\nhost: {}\napiserver: {}\n", word(running), word(ready));
    }
    (out, all)
}
