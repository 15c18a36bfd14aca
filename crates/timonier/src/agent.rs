//! `timonier agent` (a node joining a cluster: TLS bootstrapping with a join token, then its
//! own identity, kept and renewed) and the agent that `timonier server` runs in-process.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use timonier_kubelet::certificate::discovery::{self, JoinToken};
use timonier_kubelet::certificate::{NodeIdentity, RotatingClient, ServingCertificate};

/// Options shared by `agent` and the agent inside `server`.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// The node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address other nodes and the API server reach this node at (default: the first
    /// non-loopback IPv4 address).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Registry mirrors and credentials, in k3s' registries.yaml format
    /// (default: /etc/timonier/registries.yaml when it exists).
    #[arg(long)]
    pub registry_config: Option<PathBuf>,
    /// The port of the agent's HTTPS API (logs, exec, attach, port-forward).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// How many pods this node takes, as the kubelet's `--max-pods`; at most 250, as the
    /// node's pod range is a /24.
    #[arg(long, default_value_t = timonier_kubelet::MAX_PODS, value_parser = clap::value_parser!(u32).range(1..=250))]
    pub max_pods: u32,
    /// The node bridge pods are attached to.
    #[arg(long, default_value = "timonier0", hide = true)]
    pub bridge: String,
    /// Where pods' cgroups go in each hierarchy (`<root>/pod<uid>/<container>`).
    #[arg(long, default_value = timonier_kubelet::DEFAULT_CGROUP_ROOT)]
    pub cgroup_root: String,
    /// How pods reach other nodes' pods: `vxlan` (an overlay, works across routed networks)
    /// or `host-gw` (routes via the nodes' addresses: faster, needs one layer-2 segment).
    /// Every node of a cluster must use the same.
    #[arg(long, default_value = "vxlan")]
    pub network_backend: timonier_network::Backend,
    /// The VXLAN network identifier, the same on every node (clusters sharing a network
    /// namespace, as tests' do, need different ones).
    #[arg(long, default_value_t = timonier_network::DEFAULT_VNI, hide = true)]
    pub vxlan_vni: u32,
}

#[derive(clap::Args, Clone, Debug)]
pub struct AgentArgs {
    /// The API server's URL (with --token).
    #[arg(long, requires = "token")]
    pub server: Option<String>,
    /// The join token `timonier token create` prints (`K10<ca-hash>::<id>.<secret>`), a
    /// bootstrap token `<id>.<secret>` with --ca-cert-hash, or a static token (with --ca-file).
    /// Needed only for the first start: the node's own identity is kept in its data directory.
    #[arg(long, requires = "server")]
    pub token: Option<String>,
    /// The pin of the cluster CA for a plain bootstrap token, as kubeadm's
    /// `--discovery-token-ca-cert-hash`: `sha256:<hash of its public key>`.
    #[arg(long)]
    pub ca_cert_hash: Option<String>,
    /// The cluster CA the API server's certificate is checked against, for a static token.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Credentials to reach the API server with (instead of --server/--token): used as they
    /// are when they are this node's, else to ask for the node's own identity.
    #[arg(long, conflicts_with_all = ["server", "token"])]
    pub kubeconfig: Option<PathBuf>,
    /// Where pods, images and logs live.
    #[arg(long, default_value = "/var/lib/timonier/agent")]
    pub data_dir: PathBuf,
    /// Simulate nodes instead of running pods, as kwok does: `--count` nodes named
    /// `<--node-name>-<i>` (default `fake-node-<i>`) that register, heartbeat and report their
    /// pods Running without containers. Needs `--kubeconfig` credentials that may write every
    /// node and pod (an admin's); no root.
    #[arg(long, requires = "kubeconfig")]
    pub fake: bool,
    /// How many nodes `--fake` simulates.
    #[arg(long, default_value_t = 1, requires = "fake", value_parser = clap::value_parser!(u32).range(1..=MAX_FAKE_NODES))]
    pub count: u32,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Fake nodes beyond the cluster's pod range take a /24 each of 100.64.0.0/10.
pub const MAX_FAKE_NODES: i64 = 16384;

/// Runs `--fake` nodes (see `timonier_kubelet::fake`) until SIGTERM or Ctrl-C.
pub async fn run_fake(client: kube::Client, node: &NodeArgs, count: u32, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let config = timonier_kubelet::fake::FakeConfig {
        client,
        prefix: node.node_name.clone().unwrap_or_else(|| "fake-node".into()),
        count,
        node_ip: node.node_ip.unwrap_or(IpAddr::from([127, 0, 0, 1])),
        port: node.kubelet_port,
    };
    timonier_kubelet::fake::run(config, shutdown).await.context("the fake nodes stopped")
}

/// Resolves on SIGTERM or Ctrl-C (the handler is installed at once).
pub(crate) fn terminated() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    })
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_lowercase()).unwrap_or_else(|_| "node".into())
}

/// The first non-loopback IPv4 address of the host, as the kubelet picks its node IP.
pub(crate) fn default_node_ip() -> IpAddr {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list we free below; we only read IPv4 entries.
    if unsafe { libc::getifaddrs(&mut addrs) } == 0 {
        let mut cur = addrs;
        while !cur.is_null() {
            let ifa = unsafe { &*cur };
            if !ifa.ifa_addr.is_null() && unsafe { (*ifa.ifa_addr).sa_family } as i32 == libc::AF_INET {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !ip.is_loopback() && !ip.is_link_local() {
                    unsafe { libc::freeifaddrs(addrs) };
                    return IpAddr::V4(ip);
                }
            }
            cur = ifa.ifa_next;
        }
        unsafe { libc::freeifaddrs(addrs) };
    }
    IpAddr::from([127, 0, 0, 1])
}

fn registries(path: Option<&Path>) -> anyhow::Result<timonier_runtime::images::RegistriesConfig> {
    let default = Path::new("/etc/timonier/registries.yaml");
    let path = match path {
        Some(p) => p,
        None if default.exists() => default,
        None => return Ok(Default::default()),
    };
    timonier_runtime::images::RegistriesConfig::load(path).with_context(|| format!("cannot read the registry configuration {}", path.display()))
}

/// The command that runs a pod shim: this very binary.
fn shim_command() -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe().context("cannot find the timonier binary to run pod shims")?;
    Ok(vec![exe.to_string_lossy().into_owned(), "shim".into()])
}

fn check_root() -> anyhow::Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("the node agent runs containers and must run as root (or pass --disable-agent to run the control plane alone)");
    }
    Ok(())
}

/// The node's name: `--node-name`, else the host name.
pub fn node_name(node: &NodeArgs) -> String {
    node.node_name.clone().unwrap_or_else(hostname)
}

/// The node's address: `--node-ip`, else the host's first non-loopback IPv4 address.
pub fn node_ip(node: &NodeArgs) -> IpAddr {
    node.node_ip.unwrap_or_else(default_node_ip)
}

/// Builds the agent configuration for a client that already reaches the API server.
pub fn config(client: kube::Client, ca_pem: String, data_dir: PathBuf, node: &NodeArgs, serving: ServingCertificate) -> anyhow::Result<timonier_kubelet::Config> {
    check_root()?;
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    Ok(timonier_kubelet::Config {
        node_name: node_name(node),
        node_ip: node_ip(node),
        data_dir,
        client,
        shim_command: shim_command()?,
        registries: registries(node.registry_config.as_deref())?,
        bridge: node.bridge.clone(),
        cgroup_root: node.cgroup_root.clone(),
        network_backend: node.network_backend,
        vxlan_vni: node.vxlan_vni,
        port: node.kubelet_port,
        max_pods: node.max_pods,
        client_ca_pem: ca_pem,
        serving,
        control_plane: Vec::new(),
    })
}

/// A client from kubeconfig text, and the CA it trusts (PEM).
pub async fn client_from_kubeconfig(text: &str) -> anyhow::Result<(kube::Client, String)> {
    let kc = kube::config::Kubeconfig::from_yaml(text).context("the kubeconfig is not valid")?;
    let ca = kc
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.clone())
        .and_then(|d| base64_decode(&d))
        .unwrap_or_default();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.context("cannot use the kubeconfig")?;
    Ok((kube::Client::try_from(cfg).context("cannot build an API client")?, ca))
}

fn base64_decode(s: &str) -> Option<String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok().and_then(|b| String::from_utf8(b).ok())
}

/// The node's client identity: the one kept in the data directory, or a new one asked for
/// with the bootstrap credentials given (TLS bootstrapping).
async fn identity(args: &AgentArgs, node: &str) -> anyhow::Result<NodeIdentity> {
    if let Some(id) = NodeIdentity::load(&args.data_dir) {
        if id.usable() {
            tracing::info!(node, data_dir = %args.data_dir.display(), "using the node identity kept in the data directory");
            return Ok(id);
        }
        tracing::warn!(node, "the node's kept certificate has expired: asking for a new one with the bootstrap credentials");
    }
    let (client, server, ca) = match (&args.kubeconfig, &args.server, &args.token) {
        (Some(path), _, _) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let kc = kube::config::Kubeconfig::from_yaml(&text).context("the kubeconfig is not valid")?;
            let server = kc.clusters.first().and_then(|c| c.cluster.as_ref()).and_then(|c| c.server.clone()).context("the kubeconfig names no server")?;
            let (client, ca) = client_from_kubeconfig(&text).await?;
            (client, server, ca)
        }
        (None, Some(server), Some(token)) => match discovery::parse_join_token(token, args.ca_cert_hash.as_deref())? {
            JoinToken::Bootstrap { id, secret, pin } => {
                let ca = discovery::discover_ca(server, &id, &secret, &pin).await?;
                tracing::info!(server = %server, "the cluster CA matches the join token");
                (bearer_client(server, &ca, &format!("{id}.{secret}"))?, server.clone(), ca)
            }
            JoinToken::Static(token) => {
                let ca_file = args.ca_file.clone().unwrap_or_else(|| args.data_dir.join("ca.crt"));
                let ca = std::fs::read_to_string(&ca_file).with_context(|| {
                    format!("cannot read the cluster CA {} (pass --ca-file, or join with the token `timonier token create` prints)", ca_file.display())
                })?;
                (bearer_client(server, &ca, &token)?, server.clone(), ca)
            }
        },
        _ => bail!("say how to reach the API server: --server URL --token TOKEN, or --kubeconfig FILE"),
    };
    tracing::info!(node, "asking for the node's client certificate");
    let id = NodeIdentity::bootstrap(&client, &server, &ca, node, &args.data_dir)
        .await
        .with_context(|| format!("node {node} could not get its identity from {server}"))?;
    Ok(id)
}

fn bearer_client(server: &str, ca: &str, token: &str) -> anyhow::Result<kube::Client> {
    let mut cfg = kube::Config::new(server.parse().context("--server is not a URL")?);
    cfg.root_cert = Some(timonier_kubelet::pem_certs(ca));
    cfg.auth_info.token = Some(token.to_string().into());
    kube::Client::try_from(cfg).context("cannot build an API client")
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if let (true, Some(path)) = (args.fake, &args.kubeconfig) {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let client = client_from_kubeconfig(&text).await?.0;
        return run_fake(client, &args.node, args.count, terminated()?).await;
    }
    check_root()?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let node = node_name(&args.node);
    let mut identity = identity(&args, &node).await?;
    // Every request through the load balancer, which follows the servers as they come and go.
    let lb = timonier_kubelet::api_lb::ApiLoadBalancer::start(&identity.server).await?;
    let servers = args.data_dir.join("api-servers");
    lb.remember(&servers);
    identity.via = Some(lb.url());
    let (handle, client) = RotatingClient::new(identity.client()?);
    tokio::spawn(lb.follow_endpoints(client.clone(), servers));
    tokio::spawn(timonier_kubelet::certificate::client::rotate(identity.clone(), handle, client.clone(), node, args.data_dir.clone()));
    let config = config(client, identity.ca_pem.clone(), args.data_dir.clone(), &args.node, ServingCertificate::Requested)?;
    timonier_kubelet::run(config, terminated()?).await?;
    Ok(())
}
