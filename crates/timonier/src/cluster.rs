//! The local cluster's lifecycle, as `minikube start/stop/delete/status` do it: the server runs
//! detached with its state in one directory, and the user's kubeconfig gets a `timonier`
//! context.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

#[derive(clap::Args, Clone)]
pub struct ClusterArgs {
    /// The cluster's directory (default: /var/lib/timonier as root, ~/.timonier otherwise).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
pub struct StartArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// `sqlite` (embedded) or `etcd://HOST:PORT[,HOST:PORT...]`.
    #[arg(long, default_value = "sqlite")]
    pub datastore: String,
    /// Run the control plane only (no pods run on this machine).
    #[arg(long)]
    pub disable_agent: bool,
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"))
}

fn data_dir(args: &ClusterArgs) -> PathBuf {
    args.data_dir.clone().unwrap_or_else(|| {
        if unsafe { libc::geteuid() } == 0 {
            PathBuf::from("/var/lib/timonier")
        } else {
            home().join(".timonier")
        }
    })
}

/// The kubeconfig kubectl reads: the first file of $KUBECONFIG, else ~/.kube/config.
fn user_kubeconfig() -> PathBuf {
    std::env::var("KUBECONFIG")
        .ok()
        .and_then(|k| k.split(':').find(|p| !p.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| home().join(".kube").join("config"))
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.join("server.pid")
}

/// The PID of the running server, if it still runs.
fn running_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file(dir)).ok()?.trim().parse().ok()?;
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    // The PID must still be ours: a recycled PID belongs to someone else.
    let ours = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("timonier") && c.contains("server"));
    (alive && ours).then_some(pid)
}

pub fn start(args: StartArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = data_dir(&args.cluster);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kubeconfig = dir.join("kubeconfig");
    if let Some(pid) = running_pid(&dir) {
        merge_kubeconfig(&kubeconfig, &user_kubeconfig())?;
        println!("timonier is already running (pid {pid}); kubectl is configured to use \"timonier\"");
        return Ok(());
    }
    let _ = std::fs::remove_file(dir.join("ready"));
    let log = std::fs::File::create(dir.join("server.log")).with_context(|| format!("cannot create {}", dir.join("server.log").display()))?;
    let exe = std::env::current_exe().context("cannot find the timonier binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(dir.join("server"))
        .arg("--secure-port")
        .arg(args.secure_port.to_string())
        .arg("--datastore")
        .arg(&args.datastore)
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .args(args.disable_agent.then_some("--disable-agent"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    {
        use std::os::unix::process::CommandExt;
        // Its own session: the server outlives this command and the terminal.
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().context("cannot start the server")?;
    std::fs::write(pid_file(&dir), child.id().to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.secure_port));
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            bail!("the server exited ({status}); the end of {}:\n{}", dir.join("server.log").display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        if log.contains("API server ready") && std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the server did not become ready within 60 s; see {}", dir.join("server.log").display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    merge_kubeconfig(&kubeconfig, &user_kubeconfig())?;
    println!("Done! kubectl is now configured to use \"timonier\" cluster (ready in {:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

pub fn stop(args: ClusterArgs) -> anyhow::Result<()> {
    let dir = data_dir(&args);
    let Some(pid) = running_pid(&dir) else {
        println!("timonier is not running");
        return Ok(());
    };
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while running_pid(&dir).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if running_pid(&dir).is_some() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = std::fs::remove_file(pid_file(&dir));
    println!("timonier stopped");
    Ok(())
}

pub fn delete(args: ClusterArgs) -> anyhow::Result<()> {
    let dir = data_dir(&args);
    stop(args.clone())?;
    // Pods outlive the agent by design: stop them, and remove the pod network, first.
    let agent_dir = dir.join("server").join("agent");
    if agent_dir.exists() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
        rt.block_on(timonier_kubelet::cleanup_node(&agent_dir));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    remove_from_kubeconfig(&user_kubeconfig())?;
    println!("timonier deleted");
    Ok(())
}

pub fn status(args: ClusterArgs) -> anyhow::Result<()> {
    let dir = data_dir(&args);
    match running_pid(&dir) {
        Some(pid) => println!("timonier: Running (pid {pid}, data in {})", dir.display()),
        None => {
            println!("timonier: Stopped");
            std::process::exit(7);
        }
    }
    Ok(())
}

type Yaml = serde_yaml::Value;

fn named_list<'a>(cfg: &'a mut Yaml, key: &str) -> anyhow::Result<&'a mut Vec<Yaml>> {
    let m = cfg.as_mapping_mut().context("the kubeconfig is not a YAML mapping")?;
    let entry = m.entry(Yaml::from(key)).or_insert_with(|| Yaml::Sequence(vec![]));
    if entry.is_null() {
        *entry = Yaml::Sequence(vec![]);
    }
    entry.as_sequence_mut().with_context(|| format!("`{key}` in the kubeconfig is not a list"))
}

fn load_yaml(path: &Path) -> anyhow::Result<Yaml> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => serde_yaml::from_str(&t).with_context(|| format!("{} is not valid YAML", path.display())),
        Ok(_) => Ok(serde_yaml::from_str("apiVersion: v1\nkind: Config\npreferences: {}\n")?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_yaml::from_str("apiVersion: v1\nkind: Config\npreferences: {}\n")?),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save_yaml(path: &Path, cfg: &Yaml) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("timonier-tmp");
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
    std::io::Write::write_all(&mut f, serde_yaml::to_string(cfg)?.as_bytes())?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Puts the cluster, user and context named `timonier` of `from` into `into`, replacing
/// entries of that name, and makes it the current context.
fn merge_kubeconfig(from: &Path, into: &Path) -> anyhow::Result<()> {
    let mut src = load_yaml(from)?;
    let mut dst = load_yaml(into)?;
    for key in ["clusters", "users", "contexts"] {
        let new: Vec<Yaml> = named_list(&mut src, key)?.clone();
        let list = named_list(&mut dst, key)?;
        list.retain(|e| e.get("name").and_then(Yaml::as_str) != Some("timonier"));
        list.extend(new);
    }
    if let Some(m) = dst.as_mapping_mut() {
        m.insert(Yaml::from("current-context"), Yaml::from("timonier"));
    }
    save_yaml(into, &dst)
}

fn remove_from_kubeconfig(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut cfg = load_yaml(path)?;
    for key in ["clusters", "users", "contexts"] {
        named_list(&mut cfg, key)?.retain(|e| e.get("name").and_then(Yaml::as_str) != Some("timonier"));
    }
    if let Some(m) = cfg.as_mapping_mut() {
        if m.get("current-context").and_then(Yaml::as_str) == Some("timonier") {
            m.insert(Yaml::from("current-context"), Yaml::from(""));
        }
    }
    save_yaml(path, &cfg)
}
