//! The node agent (kubelet): registers the node and keeps its Lease, watches the pods bound
//! to it and makes each one real — a sandbox (the pod's shim process holding its network,
//! IPC and UTS namespaces, wired to the node bridge), then its init and app containers from
//! OCI images — and writes their status back, level-triggered like upstream's pod workers.
//!
//! Everything the agent starts outlives it: containers are supervised by their pod's shim,
//! and the agent re-adopts them on start, so restarting the agent never restarts a pod.

pub mod api_lb;
pub mod fake;
mod authz;
mod backoff;
pub mod certificate;
pub mod component_logs;
mod env;
mod grpc_probe;
mod logs;
mod metrics;
pub mod mirror;
mod netpol;
mod node;
mod peers;
mod pods;
mod probes;
mod proxy;
mod runtime;
mod server;
mod status;
mod stream_handlers;
pub mod streaming;
mod volumes;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use node::MAX_PODS;
pub use runtime::{cleanup_node, pem_certs, DEFAULT_CGROUP_ROOT};

/// The Kubernetes version the node reports (the API server's).
pub const KUBELET_VERSION: &str = "v1.33.0";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(String),
    #[error("{0}")]
    Runtime(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Certificate(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// How to run the agent.
#[derive(Clone)]
pub struct Config {
    pub node_name: String,
    pub node_ip: IpAddr,
    /// Pods, images, logs and the IPAM leases live here.
    pub data_dir: PathBuf,
    pub client: kube::Client,
    /// The binary and arguments that run a pod shim (`timonier shim`), re-executed because
    /// containers must be created from a single-threaded process.
    pub shim_command: Vec<String>,
    /// Registry mirrors and credentials (k3s' registries.yaml format).
    pub registries: timonier_runtime::images::RegistriesConfig,
    /// The node bridge's name.
    pub bridge: String,
    /// Pods' cgroups live under this path (`<root>/pod<uid>/<container>`): two agents on
    /// one machine (the multi-host harness) each have their own.
    pub cgroup_root: String,
    /// How pod traffic reaches other nodes (`--network-backend`).
    pub network_backend: timonier_network::Backend,
    /// The VXLAN network identifier, the same on every node of the cluster.
    pub vxlan_vni: u32,
    /// The port of the agent's HTTPS API (logs, exec, attach, port-forward).
    pub port: u16,
    /// How many pods the node takes (`--max-pods`).
    pub max_pods: u32,
    /// The cluster CA (PEM): clients of the agent API must hold a certificate it signed.
    pub client_ca_pem: String,
    /// The certificate the agent API serves (which the API server checks against the CA).
    pub serving: certificate::ServingCertificate,
    /// The control-plane components this process runs (`timonier server`), shown as mirror
    /// pods next to the agent's own kube-proxy and coredns.
    pub control_plane: Vec<mirror::StaticComponent>,
}

pub(crate) use timonier_client::now_rfc3339;

/// Runs the agent until `shutdown` resolves. Pods keep running after it returns.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let node = Arc::new(runtime::NodeRuntime::start(config).await?);
    tokio::select! {
        r = node.clone().run() => r,
        _ = shutdown => {
            tracing::info!("node agent stopping; pods keep running");
            Ok(())
        }
    }
}
