//! The local cluster's lifecycle, as `minikube start/stop/delete/status` do it: the server runs
//! detached with its state in one directory, and the user's kubeconfig gets a `timonier`
//! context.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

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
    /// Static bearer tokens: CSV lines `token,user,uid,"group1,group2"`.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Extra names or addresses for the API server's certificate.
    #[arg(long)]
    pub tls_san: Vec<String>,
    /// Where the API server listens: `0.0.0.0` (or an address of this machine) lets other
    /// machines join as nodes, and `start` then prints the command that joins them.
    #[arg(long)]
    pub bind_address: Option<std::net::IpAddr>,
    /// The address other machines reach the API server at (default: the bind address, or
    /// this machine's first non-loopback address when binding all).
    #[arg(long)]
    pub advertise_address: Option<std::net::IpAddr>,
    /// How many nodes: the first runs here with the control plane, the others each on a host
    /// of its own on this machine (a network namespace on a LAN), as `minikube start --nodes`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub nodes: u8,
    /// How many servers, as `minikube start --ha`: the first with the node agent, the others
    /// each on its own port (the first's + 1, + 2, …), all sharing a local etcd cluster of as
    /// many members (or `--datastore`'s), one of each controller acting at a time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=7))]
    pub servers: u8,
    /// The first local etcd member's client port (with --servers): member i serves clients on
    /// this + 2i and its peers on this + 2i + 1.
    #[arg(long, default_value_t = 12379)]
    pub etcd_port: u16,
    #[command(flatten)]
    pub node: crate::agent::NodeArgs,
}

/// The cluster DNS Service's address (`kube-system/kube-dns`), which pods resolve through.
const CLUSTER_DNS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 0, 10);
/// How long `start` waits for each step before it gives up and shows the server's log.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(60);

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"))
}

pub(crate) fn data_dir(args: &ClusterArgs) -> PathBuf {
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

/// What a server's command line holds (`detached::running`).
pub(crate) const SERVER: &[&str] = &["timonier", "server"];

/// The PID of the running (first) server, if it still runs.
fn running_pid(dir: &Path) -> Option<i32> {
    crate::detached::running(&pid_file(dir), SERVER)
}

/// Starts the server detached and returns once the cluster is usable — the API answering, the
/// node Ready, cluster DNS answering — printing each step with its time, as `minikube start`.
pub fn start(args: StartArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = data_dir(&args.cluster);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kubeconfig = dir.join("kubeconfig");
    // Several nodes: the server listens on the hosts' LAN (decided at the first start).
    let multi = args.nodes > 1 || crate::nodes::multi_node(&dir);
    if multi && args.bind_address.is_some() {
        anyhow::bail!("--bind-address cannot be combined with several nodes: the API server then listens on the nodes' LAN (10.250.0.1)");
    }
    if multi {
        crate::nodes::prepare(&dir, &args.node, &args.node.node_name.clone().unwrap_or_else(crate::agent::hostname))?;
    }
    let first_node = args.node.node_name.clone().unwrap_or_else(crate::agent::hostname);
    let servers = crate::servers::prepare(&dir, &args)?;
    if let Some(s) = &servers {
        crate::servers::start_etcd(&dir, s, started)?;
    }
    let host = match args.bind_address {
        _ if multi => std::net::IpAddr::V4(crate::nodes::lan().gateway()),
        Some(a) if !a.is_unspecified() => a,
        _ => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    };
    if let Some(pid) = running_pid(&dir) {
        if let Some(s) = &servers {
            crate::servers::start_others(&dir, s, &args, host, started)?;
        }
        if multi {
            start_extra_nodes(&dir, &args, &kubeconfig, &first_node, started)?;
        }
        merge_kubeconfig(&kubeconfig, &user_kubeconfig())?;
        println!("timonier is already running (pid {pid}); kubectl is configured to use \"timonier\"");
        kubectl_hint();
        return Ok(());
    }
    println!("* Starting the control plane{} (state in {})", if args.disable_agent { "" } else { " and the node agent" }, dir.display());
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the timonier binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(dir.join("server"))
        .arg("--secure-port")
        .arg(args.secure_port.to_string())
        .arg("--datastore")
        .arg(servers.as_ref().map_or(&args.datastore, |s| &s.datastore))
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .args(server_args(&args, multi))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(s) = &servers {
        // The others join with the full token it writes (`server-token`).
        cmd.env("TIMONIER_TOKEN", &s.secret);
    }
    let mut child = crate::detached::spawn(&mut cmd, &pid_file(&dir), "the server")?;
    let step = |what: &str| println!("* {what} ({:.1} s)", started.elapsed().as_secs_f64());
    let failed = |child: &mut std::process::Child, what: &str| -> anyhow::Error {
        let tail = log_tail(&log_path);
        match child.try_wait() {
            Ok(Some(status)) => anyhow::anyhow!("the server exited ({status}); the end of {}:\n{tail}", log_path.display()),
            _ => anyhow::anyhow!("{what} within {} s; the end of {}:\n{tail}", STEP_TIMEOUT.as_secs(), log_path.display()),
        }
    };

    let addr = std::net::SocketAddr::from((host, args.secure_port));
    let api_ready = || {
        std::fs::read_to_string(&log_path).unwrap_or_default().contains("API server ready")
            && std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    };
    if !wait_until(&mut child, api_ready) {
        return Err(failed(&mut child, "the API server did not become ready"));
    }
    step(&format!("API server ready at https://{addr}"));

    if !args.disable_agent {
        let text = std::fs::read_to_string(&kubeconfig).with_context(|| format!("cannot read {}", kubeconfig.display()))?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
        let client = rt.block_on(crate::agent::client_from_kubeconfig(&text))?.0;
        let mut node = None;
        let node_ready = || {
            node = rt.block_on(ready_node(&client, args.node.node_name.as_deref()));
            node.is_some()
        };
        if !wait_until(&mut child, node_ready) {
            return Err(failed(&mut child, "no node became Ready"));
        }
        step(&format!("Node {:?} Ready", node.unwrap_or_default()));
        if !wait_until(&mut child, || dns_answers(CLUSTER_DNS, "kubernetes.default.svc.cluster.local")) {
            return Err(failed(&mut child, &format!("the cluster DNS at {CLUSTER_DNS} did not answer")));
        }
        step(&format!("Cluster DNS answering at {CLUSTER_DNS}"));
    }
    if let Some(s) = &servers {
        crate::servers::start_others(&dir, s, &args, host, started)?;
    }
    if multi {
        start_extra_nodes(&dir, &args, &kubeconfig, &first_node, started)?;
    }
    merge_kubeconfig(&kubeconfig, &user_kubeconfig())?;
    step("Done! kubectl is now configured to use \"timonier\" cluster and \"default\" namespace by default");
    kubectl_hint();
    join_hint(&dir, &args)
}

/// When other machines can reach the server, the command that joins one, with a fresh join
/// token, as `kubeadm init` prints `kubeadm join …`.
fn join_hint(dir: &Path, args: &StartArgs) -> anyhow::Result<()> {
    let Some(bind) = args.bind_address.filter(|a| !a.is_loopback()) else { return Ok(()) };
    let advertise = args.advertise_address.unwrap_or(if bind.is_unspecified() { crate::agent::default_node_ip() } else { bind });
    let host = if advertise.is_ipv6() { format!("[{advertise}]") } else { advertise.to_string() };
    let token = crate::nodes::join_token(dir, "24h", "printed by timonier start")?;
    println!("\nTo add another machine as a node, run this on it as root (the token is valid for 24 hours;\n`timonier token create` makes others):\n\n    timonier agent --server https://{host}:{} --token {token}\n", args.secure_port);
    Ok(())
}

/// Starts the cluster's extra nodes — those it has, then new ones up to `--nodes` — and
/// waits until each is Ready.
fn start_extra_nodes(dir: &Path, args: &StartArgs, kubeconfig: &Path, first: &str, started: Instant) -> anyhow::Result<()> {
    let mut names: Vec<String> = Vec::new();
    for (index, name) in crate::nodes::list(dir) {
        crate::nodes::start(dir, &name, index, kubeconfig)?;
        names.push(name);
    }
    while names.len() + 1 < usize::from(args.nodes) {
        let index = crate::nodes::next_index(dir);
        let name = crate::nodes::node_name(first, index);
        crate::nodes::start(dir, &name, index, kubeconfig)?;
        names.push(name);
    }
    wait_nodes_ready(dir, kubeconfig, &names, started)
}

/// Waits until each node of `names` is Ready, printing each as it becomes so.
pub(crate) fn wait_nodes_ready(dir: &Path, kubeconfig: &Path, names: &[String], started: Instant) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(kubeconfig).with_context(|| format!("cannot read {}", kubeconfig.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let client = rt.block_on(crate::agent::client_from_kubeconfig(&text))?.0;
    for name in names {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while rt.block_on(ready_node(&client, Some(name))).is_none() {
            if Instant::now() > deadline || crate::nodes::running_pid(dir, name).is_none() {
                let log = dir.join("nodes").join(name).join("agent.log");
                anyhow::bail!("node {name} did not become Ready within {} s; the end of {}:\n{}", STEP_TIMEOUT.as_secs(), log.display(), log_tail(&log));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("* Node {name:?} Ready ({:.1} s)", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The `server` flags that `start` passes on as they are (and, for several nodes, those that
/// put the server and the first node on the hosts' LAN).
fn server_args(args: &StartArgs, multi: bool) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = Vec::new();
    let mut flag = |name: &str, value: &dyn AsRef<std::ffi::OsStr>| {
        out.push(name.into());
        out.push(value.as_ref().to_os_string());
    };
    let node = &args.node;
    if let Some(f) = &args.token_auth_file {
        flag("--token-auth-file", f);
    }
    for san in &args.tls_san {
        flag("--tls-san", san);
    }
    if let Some(n) = &node.node_name {
        flag("--node-name", n);
    }
    if multi {
        let gateway = crate::nodes::lan().gateway().to_string();
        flag("--bind-address", &gateway);
        flag("--node-ip", &gateway);
    } else if let Some(ip) = node.node_ip {
        flag("--node-ip", &ip.to_string());
    }
    if let Some(a) = args.bind_address.filter(|_| !multi) {
        flag("--bind-address", &a.to_string());
    }
    if let Some(a) = args.advertise_address {
        flag("--advertise-address", &a.to_string());
    }
    flag("--network-backend", &node.network_backend.to_string());
    if let Some(f) = &node.registry_config {
        flag("--registry-config", f);
    }
    flag("--kubelet-port", &node.kubelet_port.to_string());
    flag("--max-pods", &node.max_pods.to_string());
    flag("--bridge", &node.bridge);
    if args.disable_agent {
        out.push("--disable-agent".into());
    }
    out
}

/// Polls `ready` until it holds, the server exits, or `STEP_TIMEOUT` passes.
pub(crate) fn wait_until(child: &mut std::process::Child, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() > deadline || !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(10).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// The name of a Ready node (`name`, or any when none is given).
pub(crate) async fn ready_node(client: &kube::Client, name: Option<&str>) -> Option<String> {
    use k8s_openapi::api::core::v1::Node;
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let list = nodes.list(&Default::default()).await.ok()?;
    list.items.into_iter().find_map(|n| {
        let node_name = n.metadata.name.clone()?;
        let ready = n.status?.conditions?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && name.is_none_or(|want| want == node_name)).then_some(node_name)
    })
}

/// Whether a DNS server answers an A query for `name` with at least one address.
fn dns_answers(server: std::net::Ipv4Addr, name: &str) -> bool {
    let query = || -> std::io::Result<bool> {
        let socket = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
        socket.set_read_timeout(Some(Duration::from_millis(300)))?;
        let id = (std::process::id() as u16).to_be_bytes();
        // Header: id, recursion desired, one question.
        let mut q = vec![id[0], id[1], 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
        socket.send_to(&q, (server, 53))?;
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf)?;
        // Same id, a response, no error, at least one answer.
        Ok(n >= 12 && buf[..2] == id && buf[2] & 0x80 != 0 && buf[3] & 0x0f == 0 && u16::from_be_bytes([buf[6], buf[7]]) > 0)
    };
    query().unwrap_or(false)
}

/// A fresh machine has no kubectl: say how to get it, as minikube offers `minikube kubectl`.
fn kubectl_hint() {
    let on_path = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("kubectl").is_file()));
    if !on_path {
        println!(
            "! kubectl is not on your PATH. Install it as the Kubernetes documentation says \
             (https://kubernetes.io/docs/tasks/tools/install-kubectl-linux/):\n    \
             curl -LO https://dl.k8s.io/release/v1.33.5/bin/linux/amd64/kubectl && sudo install -m 0755 kubectl /usr/local/bin/kubectl"
        );
    }
}

pub fn stop(args: ClusterArgs) -> anyhow::Result<()> {
    let dir = data_dir(&args);
    for (_, name) in crate::nodes::list(&dir) {
        crate::nodes::stop(&dir, &name);
    }
    let was_running = running_pid(&dir).is_some();
    // The other servers, then the first, then their datastore.
    crate::servers::stop_others(&dir);
    crate::detached::stop(&[(&pid_file(&dir), SERVER)], Duration::from_secs(15));
    crate::servers::stop_etcd(&dir);
    println!("{}", if was_running { "timonier stopped" } else { "timonier is not running" });
    Ok(())
}

pub fn delete(args: ClusterArgs) -> anyhow::Result<()> {
    let dir = data_dir(&args);
    stop(args.clone())?;
    // Pods outlive the agent by design: stop them, and remove the pod network, first.
    crate::nodes::remove_all(&dir)?;
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

/// The cluster's state as `minikube status` prints it; the exit code has a bit per part that
/// is not running (1 the host process, 2 the node agent, 4 the API server), so 7 = stopped.
pub fn status(args: ClusterArgs) -> anyhow::Result<()> {
    let dir = data_dir(&args);
    let kubeconfig = dir.join("kubeconfig");
    let pid = running_pid(&dir);
    let (mut apiserver, mut kubelet, mut agent_wanted) = (false, false, true);
    let workers: Vec<String> = crate::nodes::list(&dir).into_iter().map(|(_, n)| n).collect();
    let mut workers_ready = vec![false; workers.len()];
    if pid.is_some() {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.unwrap_or_default())).unwrap_or_default();
        agent_wanted = !cmdline.split(|b| *b == 0).any(|a| a == b"--disable-agent");
        if let Ok(text) = std::fs::read_to_string(&kubeconfig) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
            rt.block_on(async {
                if let Ok((client, _)) = crate::agent::client_from_kubeconfig(&text).await {
                    apiserver = readyz(&client).await;
                    kubelet = apiserver && agent_wanted && ready_node(&client, None).await.is_some();
                    for (name, ready) in workers.iter().zip(workers_ready.iter_mut()) {
                        *ready = apiserver && ready_node(&client, Some(name)).await.is_some();
                    }
                }
            });
        }
    }
    let configured = kubeconfig_points_at(&user_kubeconfig(), &kubeconfig);
    let word = |up: bool| if up { "Running" } else { "Stopped" };
    println!("timonier");
    println!("type: Control Plane");
    println!("host: {}", word(pid.is_some()));
    println!("kubelet: {}", if pid.is_some() && !agent_wanted { "Disabled" } else { word(kubelet) });
    println!("apiserver: {}", word(apiserver));
    println!("kubeconfig: {}", if configured { "Configured" } else { "Misconfigured" });
    if let Some(pid) = pid {
        println!("pid: {pid}\ndata: {}", dir.display());
    }
    // The other nodes, each as minikube shows a worker.
    for (name, ready) in workers.iter().zip(&workers_ready) {
        println!("\n{name}\ntype: Worker\nhost: {}\nkubelet: {}", word(crate::nodes::running_pid(&dir, name).is_some()), word(*ready));
    }
    // The other servers and the local etcd, each as minikube shows a control plane.
    let (others, all_running) = crate::servers::status(&dir);
    print!("{others}");
    let code = (pid.is_none() as i32) | ((agent_wanted && !kubelet) as i32) << 1 | ((!apiserver || !all_running) as i32) << 2;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

async fn readyz(client: &kube::Client) -> bool {
    let Ok(req) = http::Request::get("/readyz").body(Vec::new()) else { return false };
    client.request_text(req).await.is_ok_and(|t| t.trim() == "ok")
}

/// Whether the API server an admin kubeconfig (its text) names is ready.
pub(crate) async fn api_ready(kubeconfig: &str) -> bool {
    match crate::agent::client_from_kubeconfig(kubeconfig).await {
        Ok((client, _)) => readyz(&client).await,
        Err(_) => false,
    }
}

/// Whether the user's kubeconfig has the `timonier` cluster with this cluster's server URL.
fn kubeconfig_points_at(user: &Path, ours: &Path) -> bool {
    let server = |cfg: &Yaml| -> Option<String> {
        cfg.get("clusters")?.as_sequence()?.iter().find(|c| c.get("name").and_then(Yaml::as_str) == Some("timonier"))?.get("cluster")?.get("server")?.as_str().map(str::to_string)
    };
    match (load_yaml(user).ok(), load_yaml(ours).ok()) {
        (Some(u), Some(o)) => server(&u).is_some() && server(&u) == server(&o),
        _ => false,
    }
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
