//! `timonier`: a Kubernetes-compatible cluster in one binary.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use timonier_kubelet::certificate::{KeyedCert, ServingCertificate};
use timonier_kubelet::mirror::{Component, Health, StaticComponent, TaskAlive};
use timonier_store::Datastore;

mod agent;
mod cluster;
mod detached;
mod identities;
mod image;
mod leader;
mod logging;
mod nodes;
mod node_controllers;
mod server_join;
mod servers;
mod token;

#[derive(Parser)]
#[command(name = "timonier", version, about = "A Kubernetes-compatible cluster in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane in the foreground (API server, datastore, controllers).
    Server(ServerArgs),
    /// Start a local cluster in the background and point kubectl at it.
    Start(cluster::StartArgs),
    /// Stop the local cluster (its state is kept).
    Stop(cluster::ClusterArgs),
    /// Stop the local cluster and delete its state.
    Delete(cluster::ClusterArgs),
    /// Say whether the local cluster runs.
    Status(cluster::ClusterArgs),
    /// Run a node agent that joins a cluster and runs the pods bound to this node.
    Agent(agent::AgentArgs),
    /// Manage the node's images: import, ls, rm.
    Image(image::ImageArgs),
    /// The local cluster's other nodes (each a host of its own on this machine): add, delete, list.
    Node(nodes::NodeCommandArgs),
    /// Manage bootstrap tokens, with which agents join: create, list, delete.
    Token(token::TokenArgs),
    /// A pod's shim process (started by the agent; not for direct use).
    #[command(hide = true, disable_help_flag = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// Where the cluster's state, certificates and logs live.
    #[arg(long, default_value = "/var/lib/timonier/server")]
    data_dir: PathBuf,
    /// Where the API server listens (`0.0.0.0` for other machines to join).
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// The address other machines and pods reach this server at (default: the bind address,
    /// or the first non-loopback address when binding all).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// `sqlite` (embedded) or `etcd://HOST:PORT[,HOST:PORT...]`.
    #[arg(long, default_value = "sqlite")]
    datastore: Datastore,
    /// Write an admin kubeconfig here.
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Run the control plane only, without the node agent that runs pods on this machine.
    #[arg(long)]
    disable_agent: bool,
    /// Do not run the scheduler (pods then run only where `spec.nodeName` puts them).
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run the workload controllers (Deployments and ReplicaSets then make no pods).
    #[arg(long)]
    disable_controllers: bool,
    #[command(flatten)]
    node: agent::NodeArgs,
    #[command(flatten)]
    node_lifecycle: node_controllers::NodeLifecycleArgs,
    #[command(flatten)]
    leader_election: leader::LeaderElectionArgs,
    /// Static bearer tokens: CSV lines `token,user,uid,"group1,group2"`.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// The server token of a cluster of servers on one datastore: the first server stores the
    /// cluster's CA and keys in the datastore encrypted with it (and writes the full token,
    /// `K10<CA hash>::server:<secret>`, to DATA_DIR/server-token); the next servers started
    /// with the same token use them, so every server accepts every certificate and token.
    #[arg(long, env = "TIMONIER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A server of the cluster to join (with --token, the server token): this server then
    /// shares that server's datastore (unless --datastore names one) and its CA and keys.
    #[arg(long, requires = "token")]
    server: Option<String>,
    /// Also simulate this many nodes (`fake-node-<i>`), as `timonier agent --fake --count N`
    /// does, with the server's own credentials.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=agent::MAX_FAKE_NODES))]
    fake_nodes: u32,
    /// Extra names or addresses for the serving certificate.
    #[arg(long)]
    tls_san: Vec<String>,
    /// Events kept per resource for watches that resume from a past resourceVersion.
    #[arg(long, default_value_t = timonier_apiserver::DEFAULT_WATCH_CACHE_SIZE)]
    default_watch_cache_size: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The shim must stay single-threaded: dispatch it before anything starts a thread.
    let command = match cli.command {
        Command::Shim { args } => {
            // Its stderr is the pod's shim.log. libcontainer logs from inside containers land on
            // their stderr, so it only reports errors.
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("info,libcontainer=error,libcgroups=error"))
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .init();
            std::process::exit(timonier_runtime::shim::run_shim_from_args(args))
        }
        other => other,
    };
    let logs = logging::init();
    match command {
        Command::Server(args) => runtime()?.block_on(server(args, &logs)),
        Command::Start(args) => cluster::start(args),
        Command::Stop(args) => cluster::stop(args),
        Command::Delete(args) => cluster::delete(args),
        Command::Status(args) => cluster::status(args),
        Command::Image(args) => image::run(args),
        Command::Node(args) => nodes::run(args),
        Command::Token(args) => runtime()?.block_on(token::run(args)),
        Command::Agent(args) => {
            // A joining node runs the Service proxy and cluster DNS of its own.
            logs.open(&args.data_dir, &[Component::Proxy, Component::Dns]);
            runtime()?.block_on(agent::run(args))
        }
        Command::Shim { .. } => Ok(()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// The workload and node controllers, as one leader term runs them.
#[derive(Clone)]
struct Workloads {
    kcm: kube::Client,
    url: String,
    ca: String,
    dir: PathBuf,
    lifecycle: timonier_controllers::node_lifecycle::Config,
    /// The controllers' service-account credentials, fetched by the first term (through this
    /// server, which serves only once `server` has started everything).
    clients: Arc<tokio::sync::OnceCell<timonier_controllers::Clients>>,
}

impl Workloads {
    async fn run(self) {
        let Workloads { kcm, url, ca, dir, lifecycle, clients } = self;
        match clients.get_or_try_init(|| identities::controller_clients(kcm, &url, &ca, dir)).await {
            Ok(clients) => timonier_controllers::run_with(clients.clone(), lifecycle, std::future::pending()).await,
            Err(e) => {
                tracing::error!(error = %e, "the controllers cannot get their credentials; Deployments and ReplicaSets make no pods");
                std::future::pending().await
            }
        }
    }
}

async fn server(mut args: ServerArgs, logs: &logging::ComponentLogs) -> anyhow::Result<()> {
    if let (Some(url), Some(token)) = (&args.server, &args.token) {
        args.datastore = server_join::datastore(url, token, &args.datastore).await?;
    }
    let config = timonier_apiserver::Config {
        data_dir: args.data_dir.clone(),
        bind_address: args.bind_address,
        advertise_address: args.advertise_address,
        secure_port: args.secure_port,
        datastore: args.datastore,
        write_kubeconfig: args.write_kubeconfig,
        token_auth_file: args.token_auth_file,
        tls_san: args.tls_san,
        watch_cache_size: args.default_watch_cache_size,
        identity: leader::identity(&args.data_dir)?,
        token: args.token,
    };
    let agent_dir = args.data_dir.join("agent");
    // What runs here shows as mirror pods, each with its log; they need a node, so a server
    // without its agent has none, as a control plane without a kubelet has no static pods.
    if !args.disable_agent {
        let mut components = vec![Component::ApiServer];
        if !args.disable_scheduler {
            components.push(Component::Scheduler);
        }
        if !args.disable_controllers {
            components.push(Component::ControllerManager);
        }
        components.extend([Component::Proxy, Component::Dns]);
        logs.open(&agent_dir, &components);
    }
    let started = std::time::Instant::now();
    let server = timonier_apiserver::Server::start(config).await?;
    // The API server's own line (its log file has it): the target says whose it is.
    tracing::info!(target: "timonier_apiserver", address = %server.addr, elapsed_ms = started.elapsed().as_millis() as u64, "API server ready");
    // The in-process components are API clients like any other, over loopback, each with its
    // own identity (identities.rs).
    let host = if server.addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { server.addr.ip().to_string() };
    let url_host = if host.contains(':') { format!("[{host}]") } else { host };
    let url = format!("https://{url_host}:{}", server.addr.port());
    let ca = server.pki.ca.cert_pem.clone();
    let mut control_plane = vec![StaticComponent { component: Component::ApiServer, health: Health::ApiServerReadyz }];
    let timing = args.leader_election.timing()?;
    let identity = server.identity().to_string();
    let mut singletons = leader::Singletons::default();
    if !args.disable_scheduler {
        let client = identities::component_client(&server.pki, &url, "system:kube-scheduler", &[]).await?;
        let alive = TaskAlive::default();
        let work = {
            let client = client.clone();
            move || timonier_scheduler::run(client.clone(), std::future::pending())
        };
        singletons.spawn(timing, client, "kube-scheduler", &identity, &alive, work);
        control_plane.push(StaticComponent { component: Component::Scheduler, health: Health::Task(alive) });
    }
    // kube-controller-manager's loops: the workload and node controllers (unless disabled) and
    // those inside the API server, under one Lease.
    let kcm = identities::component_client(&server.pki, &url, "system:kube-controller-manager", &[]).await?;
    let alive = TaskAlive::default();
    let loops = server.controller_loops();
    let workloads = (!args.disable_controllers).then(|| Workloads {
        kcm: kcm.clone(),
        url: url.clone(),
        ca: ca.clone(),
        dir: args.data_dir.join("controller-tokens"),
        lifecycle: args.node_lifecycle.config(),
        clients: Arc::default(),
    });
    let work = move || {
        let (loops, workloads) = (loops.clone(), workloads.clone());
        async move {
            let workloads = async move {
                match workloads {
                    Some(w) => w.run().await,
                    None => std::future::pending().await,
                }
            };
            tokio::join!(loops.run(), workloads);
        }
    };
    singletons.spawn(timing, kcm, "kube-controller-manager", &identity, &alive, work);
    if !args.disable_controllers {
        control_plane.push(StaticComponent { component: Component::ControllerManager, health: Health::Task(alive) });
    }
    if !args.disable_agent {
        let node = agent::node_name(&args.node);
        let client = identities::component_client(&server.pki, &url, &format!("system:node:{node}"), &["system:nodes"]).await?;
        let sans = [node.clone(), agent::node_ip(&args.node).to_string()];
        let serving = server.pki.issue_kubelet_serving(&node, &sans).context("cannot issue the node's serving certificate")?;
        let serving = ServingCertificate::Issued(KeyedCert { cert_pem: serving.cert_pem, key_pem: serving.key_pem });
        let mut config = agent::config(client, ca, agent_dir, &args.node, serving)?;
        config.control_plane = control_plane;
        let admin = identities::component_client(&server.pki, &url, "timonier-admin", &["system:masters"]).await?;
        tokio::spawn(identities::mark_control_plane(admin, node));
        tokio::spawn(async move {
            if let Err(e) = timonier_kubelet::run(config, std::future::pending()).await {
                tracing::error!(error = %e, "the node agent stopped; pods on this node are no longer managed");
            }
        });
    }
    if args.fake_nodes > 0 {
        let client = identities::component_client(&server.pki, &url, "timonier-fake-nodes", &["system:masters"]).await?;
        let count = args.fake_nodes;
        let fake = agent::NodeArgs { node_name: None, ..args.node.clone() };
        tokio::spawn(async move {
            if let Err(e) = agent::run_fake(client, &fake, count, std::future::pending()).await {
                tracing::error!(error = %e, "the fake nodes stopped");
            }
        });
    }
    let terminated = agent::terminated()?;
    let shutdown = async move {
        terminated.await;
        tracing::info!("shutting down");
        // Stop acting, then hand the Leases over, while this server still serves.
        singletons.stop_and_release().await;
    };
    server.run(shutdown).await;
    Ok(())
}
