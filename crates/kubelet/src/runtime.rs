//! The node as a whole: registration, heartbeats, the shared services pods use (image
//! store, pulls, pod network, events) and the dispatcher that hands each pod bound here to
//! its own worker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::watcher;
use serde_json::json;
use timonier_network::{NetworkConfig, PodNetwork};
use timonier_runtime::images::{Image, ImageStore};
use tokio::sync::{watch, Mutex};

use timonier_client::Recorder;
use crate::node::{self, NodeFacts};
use crate::{Config, Error, Result};

/// What every pod worker shares.
pub struct NodeRuntime {
    pub config: Config,
    pub facts: NodeFacts,
    pub images: ImageStore,
    pub network: PodNetwork,
    pub recorder: Recorder,
    /// What the Service proxy loop reports, for the kube-proxy and coredns mirror pods.
    pub proxy_health: Arc<crate::mirror::ProxyHealth>,
    /// Wakes the mirror pod manager when a mirror pod changes.
    mirror_wake: Arc<tokio::sync::Notify>,
    /// One pull at a time per image reference; others wait and reuse its result.
    pull_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
const IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
pub const CLUSTER_DNS: &str = "10.96.0.10";
/// Pods' cgroups live under this path in each hierarchy by default:
/// `/timonier/pod<uid>/<container>` (the kubelet's `--cgroup-root`).
pub const DEFAULT_CGROUP_ROOT: &str = "/timonier";
/// Where the agent notes its cgroup root, so that [`cleanup_node`] finds it.
const CGROUP_ROOT_FILE: &str = "cgroup-root";

impl NodeRuntime {
    pub fn pods_dir(&self) -> PathBuf {
        self.config.data_dir.join("pods")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.config.data_dir.join("logs").join("pods")
    }

    pub async fn start(config: Config) -> Result<NodeRuntime> {
        let facts = NodeFacts::gather(&config.node_name, config.node_ip, config.port, &config.data_dir, config.max_pods);
        std::fs::write(config.data_dir.join(CGROUP_ROOT_FILE), &config.cgroup_root).map_err(|e| Error::Runtime(format!("cannot write {}: {e}", config.data_dir.join(CGROUP_ROOT_FILE).display())))?;
        let images = ImageStore::open(config.data_dir.join("images")).map_err(|e| Error::Runtime(e.to_string()))?;
        let nodes: Api<Node> = Api::all(config.client.clone());
        node::register(&nodes, &facts, images_status(&images), &[]).await?;
        tracing::info!(node = %facts.name, "registered the node");
        let node_ip = match config.node_ip {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => return Err(Error::Runtime("the pod network needs an IPv4 node address (--node-ip)".into())),
        };
        crate::peers::announce(&nodes, &facts.name, node_ip, config.network_backend)
            .await
            .map_err(|e| Error::Api(format!("cannot publish the node's network parameters: {e}")))?;
        let pod_cidr = wait_pod_cidr(&nodes, &facts.name).await?;
        let network = PodNetwork::new(NetworkConfig {
            bridge: config.bridge.clone(),
            pod_cidr: pod_cidr.parse().map_err(|e| Error::Runtime(format!("the node's podCIDR {pod_cidr} is not an IPv4 range: {e}")))?,
            cluster_cidr: CLUSTER_CIDR.parse().map_err(|e| Error::Internal(format!("{e}")))?,
            service_cidr: SERVICE_CIDR.parse().map_err(|e| Error::Internal(format!("{e}")))?,
            state_dir: config.data_dir.join("network"),
            node_ip,
            backend: config.network_backend,
            vxlan_vni: config.vxlan_vni,
        })
        .await
        .map_err(|e| Error::Runtime(format!("cannot set up the pod network: {e}")))?;
        let recorder = Recorder::new(config.client.clone(), "kubelet", Some(&facts.name));
        std::fs::create_dir_all(config.data_dir.join("pods")).map_err(|e| Error::Runtime(format!("cannot create {}: {e}", config.data_dir.display())))?;
        tracing::info!(node = %facts.name, %pod_cidr, "node agent ready");
        Ok(NodeRuntime {
            config,
            facts,
            images,
            network,
            recorder,
            proxy_health: Default::default(),
            mirror_wake: Default::default(),
            pull_locks: Mutex::new(HashMap::new()),
        })
    }

    /// Heartbeats and pod dispatching, until cancelled.
    pub async fn run(self: Arc<Self>) -> Result<()> {
        let ca: Vec<Vec<u8>> = pem_certs(&self.config.client_ca_pem);
        let addr = std::net::SocketAddr::new(self.config.node_ip, self.config.port);
        let server = self.clone();
        let store = crate::certificate::ServingStore::default();
        match &self.config.serving {
            crate::certificate::ServingCertificate::Issued(cert) => store.set(cert)?,
            // Asked for once the Node is registered: it is approved for the addresses the
            // Node reports.
            crate::certificate::ServingCertificate::Requested => {
                let (client, name, dir) = (self.config.client.clone(), self.facts.name.clone(), self.config.data_dir.clone());
                tokio::spawn(crate::certificate::serving::manage(client, name, self.config.node_ip, dir, store.clone()));
            }
        }
        tokio::spawn(async move {
            if let Err(e) = crate::server::serve(server, addr, ca, store).await {
                tracing::error!(error = %e, "the agent API is not served: logs, exec and port-forward will fail");
            }
        });
        tokio::spawn(self.clone().heartbeat());
        let proxy = crate::proxy::run(self.config.client.clone(), self.network.clone(), self.proxy_health.clone());
        tokio::spawn(self.proxy_health.running.clone().track(proxy));
        tokio::spawn(crate::mirror::run(self.clone(), self.mirror_wake.clone()));
        tokio::spawn(crate::peers::run(self.config.client.clone(), self.facts.name.clone(), self.network.clone(), self.config.network_backend));
        tokio::spawn(self.clone().image_gc());
        self.dispatch().await
    }

    async fn heartbeat(self: Arc<Self>) {
        let nodes: Api<Node> = Api::all(self.config.client.clone());
        let leases: Api<Lease> = Api::namespaced(self.config.client.clone(), "kube-node-lease");
        let mut tick = tokio::time::interval(node::LEASE_RENEW);
        loop {
            tick.tick().await;
            let uid = match nodes.get(&self.facts.name).await {
                Ok(n) => n.metadata.uid.unwrap_or_default(),
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    // Someone deleted the node: register again, as the kubelet does.
                    if let Err(e) = node::register(&nodes, &self.facts, images_status(&self.images), &[]).await {
                        tracing::warn!(error = %e, "cannot re-register the node");
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the node");
                    continue;
                }
            };
            if let Err(e) = node::renew_lease(&leases, &self.facts, &uid).await {
                tracing::warn!(error = %e, "lease renewal failed");
            }
            if let Err(e) = node::post_status(&nodes, &self.facts, images_status(&self.images)).await {
                tracing::warn!(error = %e, "node status update failed");
            }
        }
    }

    /// Removes unused images, least recently used first, when the disk holding them passes
    /// 85% (until under 80%) — upstream's imageGCHigh/LowThresholdPercent.
    async fn image_gc(self: Arc<Self>) {
        let mut tick = tokio::time::interval(IMAGE_GC_PERIOD);
        tick.tick().await;
        loop {
            tick.tick().await;
            let pods: Api<Pod> = Api::all(self.config.client.clone());
            let lp = kube::api::ListParams::default().fields(&format!("spec.nodeName={}", self.facts.name));
            let Ok(list) = pods.list(&lp).await else { continue };
            let in_use: std::collections::HashSet<String> = list
                .items
                .iter()
                .filter_map(|p| p.spec.as_ref())
                .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
                .filter_map(|c| c.image.clone())
                .flat_map(|i| [timonier_runtime::images::normalize(&i).unwrap_or_else(|_| i.clone()), i])
                .collect();
            let store = self.images.clone();
            let root = store.root().to_path_buf();
            let r = tokio::task::spawn_blocking(move || {
                timonier_runtime::images::collect_garbage(&store, &in_use, 85, 80, || timonier_runtime::images::disk_usage_percent(&root))
            })
            .await;
            match r {
                Ok(Ok(report)) if !report.deleted.is_empty() => {
                    tracing::info!(deleted = report.deleted.len(), usage_before = report.usage_before, usage_after = report.usage_after, "removed unused images");
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "image garbage collection failed"),
                _ => {}
            }
        }
    }

    /// Watches the pods bound to this node and feeds each one's latest version to its worker;
    /// a pod that vanished from the API gets `None`, which tells its worker to tear it down.
    async fn dispatch(self: Arc<Self>) -> Result<()> {
        let pods: Api<Pod> = Api::all(self.config.client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.facts.name));
        let mut stream = watcher(pods, cfg).boxed();
        let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
        let mut listed: Vec<String> = Vec::new();
        while let Some(event) = stream.next().await {
            workers.retain(|_, tx| !tx.is_closed());
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "pod watch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            match event {
                // Mirror pods stand for what runs in this process: no worker runs them, the
                // mirror pod manager keeps them.
                watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) | watcher::Event::Delete(pod) if crate::mirror::is_mirror(&pod) => {
                    self.mirror_wake.notify_one();
                }
                watcher::Event::Init => listed.clear(),
                watcher::Event::InitApply(pod) => {
                    listed.push(pod.metadata.uid.clone().unwrap_or_default());
                    self.send(&mut workers, pod);
                }
                watcher::Event::InitDone => {
                    // Pods that are gone while nobody watched: tear down their workers and
                    // any leftovers on disk from an earlier run.
                    let gone: Vec<String> = workers.keys().filter(|uid| !listed.contains(uid)).cloned().collect();
                    for uid in gone {
                        if let Some(tx) = workers.get(&uid) {
                            let _ = tx.send(None);
                        }
                    }
                    self.clone().collect_orphans(listed.clone());
                }
                watcher::Event::Apply(pod) => self.send(&mut workers, pod),
                watcher::Event::Delete(pod) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if let Some(tx) = workers.get(&uid) {
                        let _ = tx.send(None);
                    }
                }
            }
        }
        Err(Error::Api("the pod watch ended".into()))
    }

    fn send(self: &Arc<Self>, workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let pod = Arc::new(pod);
        match workers.get(&uid) {
            Some(tx) if !tx.is_closed() => {
                let _ = tx.send(Some(pod));
            }
            _ => {
                let (tx, rx) = watch::channel(Some(pod));
                tokio::spawn(crate::pods::run_worker(self.clone(), uid.clone(), rx));
                workers.insert(uid, tx);
            }
        }
    }

    /// Pod directories whose pod is not bound here any more: stop what they hold.
    fn collect_orphans(self: Arc<Self>, known: Vec<String>) {
        tokio::spawn(async move {
            let Ok(entries) = std::fs::read_dir(self.pods_dir()) else { return };
            for e in entries.flatten() {
                let uid = e.file_name().to_string_lossy().into_owned();
                if known.contains(&uid) {
                    continue;
                }
                tracing::info!(%uid, "removing what is left of a pod that no longer exists");
                crate::pods::teardown_dir(&self, &uid, &e.path(), 0).await;
            }
        });
    }

    /// The image for `reference`, pulled (once, however many pods ask) if needed.
    pub async fn pull(&self, reference: &str, creds: Option<&timonier_runtime::images::Credentials>) -> std::result::Result<Image, timonier_runtime::images::PullError> {
        let lock = {
            let mut locks = self.pull_locks.lock().await;
            locks.entry(reference.to_string()).or_default().clone()
        };
        let _guard = lock.lock().await;
        timonier_runtime::images::pull(&self.images, reference, &self.config.registries, creds).await
    }
}

/// DER certificates of a PEM bundle.
pub fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    rustls_pemfile::certs(&mut pem.as_bytes()).filter_map(|c| c.ok()).map(|c| c.to_vec()).collect()
}

fn images_status(images: &ImageStore) -> serde_json::Value {
    json!(images
        .list()
        .into_iter()
        .map(|i| {
            let mut names = i.references.clone();
            if let Some(repo) = i.references.first().and_then(|r| r.rsplit_once(':').map(|(n, _)| n.to_string())) {
                names.insert(0, format!("{repo}@{}", i.manifest_digest));
            }
            json!({"names": names, "sizeBytes": i.size})
        })
        .collect::<Vec<_>>())
}

async fn wait_pod_cidr(nodes: &Api<Node>, name: &str) -> Result<String> {
    let mut waited = Duration::ZERO;
    loop {
        match nodes.get(name).await {
            Ok(n) => {
                if let Some(c) = n.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
                    return Ok(c);
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the node yet"),
        }
        if waited >= Duration::from_secs(5) && waited.as_millis() % 5000 < 100 {
            tracing::warn!("waiting for the node's pod range (spec.podCIDR), which the control plane assigns");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
}

/// Stops everything a node agent left on this machine: every pod's containers and shim, the
/// pod network and its leases. For `timonier delete` and tests; the agent must not be running.
pub async fn cleanup_node(data_dir: &Path) {
    let pods = data_dir.join("pods");
    if let Ok(entries) = std::fs::read_dir(&pods) {
        for e in entries.flatten() {
            crate::pods::cleanup_sandbox(e.path().join("sandbox")).await;
        }
    }
    // The node's cgroup root in every hierarchy, v1 or v2 (only once empty).
    let root = std::fs::read_to_string(data_dir.join(CGROUP_ROOT_FILE)).unwrap_or_else(|_| DEFAULT_CGROUP_ROOT.to_string());
    timonier_runtime::shim::remove_cgroup(root.trim());
    if let Ok(net) = PodNetwork::open_existing(&data_dir.join("network")).await {
        if let Err(e) = net.teardown().await {
            tracing::warn!(error = %e, "cannot remove the pod network");
        }
    }
}
