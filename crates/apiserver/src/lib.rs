//! The Kubernetes API server: the front door every client — kubectl, the controllers, the
//! node agents — goes through, and the only component that touches the store.
//!
//! Requests are routed (`handler`) to discovery, or to one generic REST store (`rest`) that
//! serves every resource of the registry with a per-kind strategy (`strategy`). Writes go to
//! the store; reads and watches are served from the watch cache (`cache`).

mod aggregator;
mod admission;
mod alloc;
pub mod auth;
pub mod bootstrap;
pub mod bootstrap_token;
mod builtin_admission;
mod cache;
pub mod cluster_info;
mod convert;
mod crd;
pub mod csr;
pub mod cluster_bootstrap;
mod endpoint_reconciler;
mod discovery;
mod disruption;
mod eviction;
mod ephemeral;
pub mod error;
mod gc;
mod handler;
mod health;
mod kubelet_proxy;
mod live;
pub mod metrics;
mod negotiate;
mod node_authz;
pub mod node_ipam;
mod node_restriction;
mod object_proxy;
pub mod rbac;
pub mod sa_token;
mod serviceaccount;
pub mod pki;
mod request;
mod rest;
mod server;
mod state;
mod strategy;
mod table;
mod validation;
mod volume_binding;
mod watch;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use timonier_store::{Datastore, DynStorage, EtcdConfig, EtcdStorage, SqliteConfig, SqliteStorage};

pub use cache::DEFAULT_HISTORY as DEFAULT_WATCH_CACHE_SIZE;
pub use handler::KUBE_VERSION;
pub use state::ApiState;

/// The admin kubeconfig written in the server's data directory at every start.
pub const ADMIN_KUBECONFIG: &str = "admin.kubeconfig";

/// How to run the API server (the flags of `timonier server`).
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    /// The address other machines reach this server at (the `kubernetes` Service's endpoint);
    /// by default the bind address, or the host's first non-loopback address when binding all.
    pub advertise_address: Option<IpAddr>,
    pub secure_port: u16,
    pub datastore: Datastore,
    /// Where to write the admin kubeconfig, if anywhere.
    pub write_kubeconfig: Option<PathBuf>,
    /// A static token file (`token,user,uid,"groups"`), as `--token-auth-file`.
    pub token_auth_file: Option<PathBuf>,
    /// Extra names and addresses for the serving certificate.
    pub tls_san: Vec<String>,
    /// Events kept per resource for watches resuming from the past
    /// (`--default-watch-cache-size`).
    pub watch_cache_size: usize,
    /// This server's name among the servers of one datastore (`<hostname>_<uuid>`).
    pub identity: String,
    /// The server token (`--token`): the first server stores the cluster's CA and keys in the
    /// datastore encrypted with it, the next ones read them (cluster_bootstrap.rs).
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] timonier_store::StoreError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("cannot listen on {addr}: {source} (is another API server running? choose another --secure-port)")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Config(String),
    #[error("cannot create the system objects: {0}")]
    Bootstrap(error::ApiError),
    #[error("cannot share the cluster's CA and keys through the datastore: {0}")]
    ClusterBootstrap(#[from] cluster_bootstrap::BootstrapError),
}

/// Opens the datastore the configuration names.
pub async fn open_store(config: &Config) -> Result<DynStorage, ServerError> {
    Ok(match &config.datastore {
        Datastore::Sqlite => Arc::new(SqliteStorage::open(SqliteConfig::new(config.data_dir.join("db").join("state.db")))?),
        Datastore::Etcd { endpoints } => Arc::new(EtcdStorage::connect(EtcdConfig::new(endpoints.clone())).await?),
    })
}

/// The host's own addresses, for the serving certificate.
fn host_addresses() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") {
        // Local addresses are listed as "/32 host LOCAL" after their address line.
        let lines: Vec<&str> = text.lines().collect();
        for w in lines.windows(2) {
            if w[1].contains("/32 host LOCAL") {
                if let Some(ip) = w[0].split_whitespace().last() {
                    if ip.parse::<IpAddr>().is_ok() && !out.contains(&ip.to_string()) {
                        out.push(ip.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Upstream's rule: `--advertise-address`, else the bind address, else (binding all) the
/// host's first non-loopback address.
fn advertise_address(config: &Config) -> IpAddr {
    if let Some(a) = config.advertise_address {
        return a;
    }
    if !config.bind_address.is_unspecified() {
        return config.bind_address;
    }
    host_addresses()
        .into_iter()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|a| a.is_ipv4() && !a.is_loopback())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// A running API server.
pub struct Server {
    pub state: Arc<ApiState>,
    pub addr: SocketAddr,
    pub pki: pki::Pki,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    tokens: Arc<auth::TokenFile>,
    endpoints: endpoint_reconciler::EndpointReconciler,
}

/// The garbage collector, namespace lifecycle, service accounts, disruption budgets, node IPAM,
/// volume binding, bootstrap tokens, and CSR approval and signing: kube-controller-manager's
/// loops that work on this server's state directly.
#[derive(Clone)]
pub struct ControllerLoops {
    state: Arc<ApiState>,
    ca: pki::CertPair,
}

impl ControllerLoops {
    /// Runs every loop; dropping the future stops them all.
    pub async fn run(self) {
        let ControllerLoops { state, ca } = self;
        let mut loops = tokio::task::JoinSet::new();
        loops.spawn(bootstrap::namespace_controller(state.clone()));
        loops.spawn(gc::run(state.clone()));
        loops.spawn(serviceaccount::controller(state.clone()));
        loops.spawn(disruption::controller(state.clone()));
        loops.spawn(node_ipam::controller(state.clone()));
        loops.spawn(volume_binding::controller(state.clone()));
        loops.spawn(bootstrap_token::cleaner(state.clone()));
        loops.spawn(cluster_info::signer(state.clone()));
        loops.spawn(csr::approver::controller(state.clone()));
        loops.spawn(csr::signer::controller(state, ca));
        while loops.join_next().await.is_some() {}
    }
}

impl Server {
    /// Prepares everything (PKI, store, cache, system objects, listener) without serving yet.
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| ServerError::Config(format!("cannot create the data directory {}: {e}", config.data_dir.display())))?;
        let mut sans: Vec<String> = ["127.0.0.1", "localhost", "10.96.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for a in host_addresses().into_iter().chain(config.tls_san.iter().cloned()) {
            if !sans.contains(&a) {
                sans.push(a);
            }
        }
        let advertise = advertise_address(&config);
        for a in [config.bind_address, advertise] {
            if !a.is_unspecified() && !sans.contains(&a.to_string()) {
                sans.push(a.to_string());
            }
        }
        let pki_dir = config.data_dir.join("pki");
        let store = open_store(&config).await?;
        // A server joining a cluster takes its CA and keys before making any of its own.
        let server_token = config.token.as_deref().map(cluster_bootstrap::ServerToken::parse);
        let shared_token_file = pki_dir.join("token-auth-file.csv");
        let joined = match &server_token {
            Some(t) => cluster_bootstrap::fetch(&store, t, &pki_dir, &shared_token_file).await?,
            None => false,
        };
        let pki = pki::Pki::load_or_create(&pki_dir, &sans)?;
        let tls = server::tls_config(&pki).map_err(ServerError::Config)?;
        let token_auth_file = config.token_auth_file.clone().or_else(|| (joined && shared_token_file.exists()).then(|| shared_token_file.clone()));
        let tokens = match &token_auth_file {
            Some(p) => auth::TokenFile::load(p).map_err(ServerError::Config)?,
            None => auth::TokenFile::default(),
        };
        let addr = SocketAddr::new(config.bind_address, config.secure_port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| ServerError::Listen { addr, source: e })?;
        let addr = listener.local_addr().map_err(|e| ServerError::Listen { addr, source: e })?;
        let state = ApiState::new(store.clone(), config.watch_cache_size).await?;
        let kubelet_client = pki.issue_client("kube-apiserver-kubelet-client", &["system:masters"])?;
        let kubelet_tls = kubelet_proxy::client_tls(&kubelet_client, &pki.ca.cert_pem).map_err(ServerError::Config)?;
        let _ = state.kubelet_tls.set(kubelet_tls);
        // Presented to extension API servers behind APIServices (upstream's
        // --proxy-client-cert-file), signed by the front-proxy CA they trust for it.
        let _ = state.aggregator.client_cert.set(pki.issue_front_proxy_client()?);
        let sa_key = sa_token::TokenKey::load_or_create(&pki_dir)?;
        let _ = state.sa_key.set(Arc::new(sa_key));
        if let Some(t) = &server_token {
            if !joined {
                cluster_bootstrap::store(&state.store, t, &pki_dir, config.token_auth_file.as_deref()).await?;
            }
            // What the next servers join with (k3s keeps it in server/token).
            pki::write(&config.data_dir.join("server-token"), &t.full(&pki.ca.cert_pem), true)?;
            let _ = state.server_join.set(cluster_bootstrap::JoinAnswer::new(t, &config.datastore));
        }
        let _ = state.ca_pem.set(pki.ca.cert_pem.clone());
        let tokens = Arc::new(tokens);
        let _ = state.tokens.set(tokens.clone());
        bootstrap::ensure(&state, addr.port()).await.map_err(ServerError::Bootstrap)?;
        let endpoints = endpoint_reconciler::EndpointReconciler::new(state.clone(), &config.identity, &advertise.to_string(), addr.port());
        endpoints.pass().await.map_err(ServerError::Bootstrap)?;
        bootstrap::ensure_authentication_configmap(&state, &pki.ca.cert_pem, &pki.front_proxy_ca.cert_pem)
            .await
            .map_err(ServerError::Bootstrap)?;
        rbac::ensure_bootstrap_policy(&state).await.map_err(ServerError::Bootstrap)?;
        let advertised = match advertise {
            IpAddr::V6(a) => format!("https://[{a}]:{}", addr.port()),
            IpAddr::V4(a) => format!("https://{a}:{}", addr.port()),
        };
        cluster_info::ensure(&state, &advertised, &pki.ca.cert_pem).await.map_err(ServerError::Bootstrap)?;
        state.sync_crds().await.map_err(ServerError::Bootstrap)?;
        // The system namespaces have their ServiceAccount and CA bundle before the first pod.
        serviceaccount::reconcile(&state).await.map_err(ServerError::Bootstrap)?;
        let host = if config.bind_address.is_unspecified() { "127.0.0.1".to_string() } else { config.bind_address.to_string() };
        let url_host = if host.contains(':') { format!("[{host}]") } else { host };
        // Always beside the state, as kubeadm's admin.conf: what `timonier token` uses.
        pki.write_kubeconfig(&config.data_dir.join(ADMIN_KUBECONFIG), &format!("https://{url_host}:{}", addr.port()))?;
        if let Some(path) = &config.write_kubeconfig {
            pki.write_kubeconfig(path, &format!("https://{url_host}:{}", addr.port()))?;
        }
        Ok(Server { state, addr, pki, listener, tls, tokens, endpoints })
    }

    /// This server's name among the servers of one datastore.
    pub fn identity(&self) -> &str {
        self.endpoints.identity()
    }

    /// The loops kube-controller-manager would run that live inside this server; with several
    /// servers on one datastore only the leader runs them.
    pub fn controller_loops(&self) -> ControllerLoops {
        ControllerLoops { state: self.state.clone(), ca: self.pki.ca.clone() }
    }

    /// Serves until `shutdown` resolves. The API server's own controllers (CRD names, APIService
    /// availability) run here, on every server, as in kube-apiserver; [`Server::controller_loops`]
    /// is the caller's to run.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::spawn(crd::controller(self.state.clone()));
        tokio::spawn(aggregator::controller(self.state.clone()));
        tokio::spawn(self.endpoints.clone().run());
        let endpoints = self.endpoints;
        let state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            state.shutting_down.store(true, Ordering::Release);
            // Out of the kubernetes Service while still serving, as kube-apiserver does.
            match tokio::time::timeout(std::time::Duration::from_secs(2), endpoints.remove()).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove this server from the kubernetes Service"),
                Err(_) => tracing::warn!("removing this server from the kubernetes Service timed out"),
                Ok(Ok(())) => {}
            }
        };
        self.state.ready.store(true, Ordering::Release);
        server::serve(self.state, self.listener, self.tls, self.tokens, shutdown).await;
    }
}
