//! The node's pod network: a Linux bridge, one veth pair per pod, host-local IPAM, blackhole routes.
//!
//! Everything is done over rtnetlink (no `ip` binary), so wiring a pod costs a handful of netlink round trips.
//! Pod namespaces are reached through netlink sockets created inside them by a helper thread ([`netns`]), so
//! the (multi-threaded) tokio runtime never changes namespace.
//!
//! Layout, for a node with pod CIDR 10.244.0.0/24:
//! - bridge `timonier0` with 10.244.0.1/24 (the pods' gateway), fixed MAC, up;
//! - per pod: host `vethXXXXXXXX` (enslaved, up, hairpin) ↔ pod `eth0` 10.244.0.N/24, default via .1;
//! - blackhole routes for the cluster CIDR and the service CIDR, so unrouted traffic never leaves the host;
//! - routes to the other nodes' pod CIDRs (`peers.rs`: host-gw, or a VXLAN overlay);
//! - `net.ipv4.ip_forward=1`;
//! - the Service proxy (`proxy.rs`): nftables DNAT of ClusterIPs and NodePorts to endpoints;
//! - NetworkPolicy enforcement (`policy.rs`): a table of its own filtering what isolated pods send and receive;
//! - cluster DNS (`dns.rs`) on the gateway address, for the node's pods.

mod bridge;
mod cidr;
pub mod dns;
mod error;
pub mod ipam;
pub mod lan;
mod netns;
mod nl;
mod peers;
mod pod;
pub mod policy;
mod proxy;
mod routes;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

pub use cidr::Ipv4Net;
pub use error::{Error, Result};
pub use ipam::Ipam;
pub use peers::{format_mac, parse_mac, vtep_mac, Backend, Peer, DEFAULT_VNI};
pub use policy::{Allow, IpRange, PodPolicy, PolicyRules, PortRange, Protocol};
pub use proxy::ServicePort;

/// Configuration of the node's pod network.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Bridge name, e.g. `timonier0`.
    pub bridge: String,
    /// This node's pod range; the gateway is its first address, on the bridge.
    pub pod_cidr: Ipv4Net,
    /// The whole cluster's pod range: blackholed so unrouted pod traffic is dropped here.
    pub cluster_cidr: Ipv4Net,
    /// The service range: blackholed likewise.
    pub service_cidr: Ipv4Net,
    /// Where IPAM leases live (one file per address); must survive agent restarts.
    pub state_dir: PathBuf,
    /// The node's address other nodes reach it at (the VXLAN tunnel's local end).
    pub node_ip: Ipv4Addr,
    /// How pod traffic reaches other nodes' pods.
    pub backend: Backend,
    /// The VXLAN network identifier (every node of a cluster uses the same).
    pub vxlan_vni: u32,
}

/// What a pod got from [`PodNetwork::attach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// Host end of the pod's veth pair.
    pub host_veth: String,
}

/// 32-bit FNV-1a: stable across Rust versions and processes (unlike `DefaultHasher`), so names derived from
/// it are the same after an agent restart.
pub(crate) fn fnv1a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The host-side veth name of a pod: `veth` + 8 hex digits of a stable hash of the key (15-byte IFNAMSIZ limit
/// leaves no room for the key itself). Two keys can collide with probability ~n²/2³³; see crate docs.
pub fn veth_name(pod_key: &str) -> String {
    format!("veth{:08x}", fnv1a(pod_key.as_bytes()))
}

/// Lists the IPv4 blackhole routes of the calling thread's network namespace (diagnostics and tests).
pub async fn blackhole_routes() -> Result<Vec<Ipv4Net>> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    let task = tokio::spawn(conn);
    let r = routes::blackhole_routes(&handle).await;
    task.abort();
    r
}

const SAVED_CONFIG: &str = "network.conf";
/// The IPAM's directory under the state directory: one file per leased address.
pub const LEASES: &str = "leases";

struct Inner {
    cfg: NetworkConfig,
    handle: rtnetlink::Handle,
    conn_task: tokio::task::JoinHandle<()>,
    ipam: Arc<Ipam>,
    netns: netns::NetnsSockets,
    bridge_index: u32,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.conn_task.abort();
    }
}

/// The node's pod network. Cheap to clone; all clones share one netlink connection and one IPAM.
#[derive(Clone)]
pub struct PodNetwork {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PodNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodNetwork").field("cfg", &self.inner.cfg).finish_non_exhaustive()
    }
}

impl PodNetwork {
    /// Sets up the node side, idempotently: bridge (gateway address, up), `ip_forward=1`, blackhole routes,
    /// and opens the IPAM state. Must be called inside a tokio runtime, from a thread in the node's netns.
    pub async fn new(cfg: NetworkConfig) -> Result<Self> {
        if cfg.pod_cidr.size() < 4 {
            return Err(Error::CidrTooSmall(cfg.pod_cidr.to_string()));
        }
        let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
        let conn_task = tokio::spawn(conn);
        let netns = netns::NetnsSockets::start()?;
        let gateway = cfg.pod_cidr.gateway();
        let bridge_index = bridge::ensure_bridge(&handle, &cfg.bridge, gateway, cfg.pod_cidr.prefix()).await?;
        bridge::enable_ip_forward()?;
        routes::ensure_blackhole(&handle, cfg.cluster_cidr).await?;
        routes::ensure_blackhole(&handle, cfg.service_cidr).await?;
        let (pod_cidr, dir) = (cfg.pod_cidr, cfg.state_dir.join(LEASES));
        let ipam = tokio::task::spawn_blocking(move || Ipam::open(pod_cidr, dir))
            .await
            .map_err(|e| Error::HelperGone(e.to_string()))??;
        // Remembered so that `open_existing` can tear this network down without its config.
        let saved = format!("{} {} {} {} {} {}\n", cfg.bridge, cfg.pod_cidr, cfg.cluster_cidr, cfg.service_cidr, cfg.node_ip, cfg.backend);
        std::fs::write(cfg.state_dir.join(SAVED_CONFIG), saved).map_err(|source| Error::State { path: cfg.state_dir.join(SAVED_CONFIG), source })?;
        tracing::info!(bridge = %cfg.bridge, pod_cidr = %cfg.pod_cidr, leases = ipam.leases().len(), "pod network ready");
        Ok(Self { inner: Arc::new(Inner { cfg, handle, conn_task, ipam: Arc::new(ipam), netns, bridge_index }) })
    }

    /// Opens the network an earlier [`PodNetwork::new`] set up with this state directory
    /// (for [`PodNetwork::teardown`] when the agent is gone).
    pub async fn open_existing(state_dir: &std::path::Path) -> Result<Self> {
        let path = state_dir.join(SAVED_CONFIG);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::State { path: path.clone(), source })?;
        let f: Vec<&str> = text.split_whitespace().collect();
        let damaged = || Error::InvalidCidr(format!("{} is damaged: {text:?}", path.display()));
        let (bridge, pod, cluster, service, rest) = match f.as_slice() {
            [b, p, c, s, rest @ ..] => (b, p, c, s, rest),
            _ => return Err(damaged()),
        };
        // Files written before the node address and backend were saved have four fields.
        let node_ip = rest.first().map(|s| s.parse()).transpose().map_err(|_| damaged())?.unwrap_or(Ipv4Addr::LOCALHOST);
        let backend = rest.get(1).map(|s| s.parse()).transpose().map_err(|_| damaged())?.unwrap_or_default();
        Self::new(NetworkConfig {
            bridge: bridge.to_string(),
            pod_cidr: pod.parse()?,
            cluster_cidr: cluster.parse()?,
            service_cidr: service.parse()?,
            state_dir: state_dir.to_path_buf(),
            node_ip,
            backend,
            // Teardown only: the device is found by name.
            vxlan_vni: peers::DEFAULT_VNI,
        })
        .await
    }

    /// The configuration this network was created with.
    pub fn config(&self) -> &NetworkConfig {
        &self.inner.cfg
    }

    /// Wires the pod whose network namespace is `/proc/<netns_pid>/ns/net`. Idempotent: a pod that is already
    /// wired (same key, its veth peer is the pod's `eth0`) is only re-checked, not re-created, so calling it
    /// again after an agent restart does not disturb traffic or change the pod's MAC.
    pub async fn attach(&self, pod_key: &str, netns_pid: i32) -> Result<PodAddress> {
        let inner = &*self.inner;
        let (ipam, key) = (inner.ipam.clone(), pod_key.to_string());
        let ip = tokio::task::spawn_blocking(move || ipam.allocate(&key))
            .await
            .map_err(|e| Error::HelperGone(e.to_string()))??;
        let res = self.wire(pod_key, netns_pid, ip).await;
        if let Err(e) = &res {
            tracing::warn!(pod = pod_key, %ip, error = %e, "attach failed");
        }
        res
    }

    async fn wire(&self, pod_key: &str, pid: i32, ip: Ipv4Addr) -> Result<PodAddress> {
        let inner = &*self.inner;
        let h = &inner.handle;
        let name = veth_name(pod_key);
        let prefix = inner.cfg.pod_cidr.prefix();
        let gateway = inner.cfg.pod_cidr.gateway();
        let fd = inner.netns.socket_in(pid).await?;
        let bridge_index = inner.bridge_index;
        let mtu = inner.cfg.backend.pod_mtu();
        let name2 = name.clone();
        netns::with_handle(fd, move |ph| async move {
            let existing = nl::link_by_name(h, &name2).await?;
            let mut reuse = None;
            if let Some(host) = existing {
                let pod_eth0 = nl::link_by_name(&ph, pod::POD_IFNAME).await?;
                let paired = matches!(&pod_eth0, Some(p) if Some(p.index) == host.peer_index && p.peer_index == Some(host.index));
                if paired {
                    reuse = Some(host);
                } else {
                    tracing::info!(veth = %name2, "veth exists but is not paired with this pod's eth0; recreating");
                    pod::delete_link(h, &name2).await?;
                }
            }
            let host = match reuse {
                Some(host) => host,
                None => {
                    if let Err(e) = pod::create_veth(h, &name2, bridge_index, pid, mtu).await {
                        // A leftover eth0 in the pod (from an earlier pair) blocks the peer name: clear and retry.
                        tracing::debug!(error = %e, "veth creation failed; clearing pod eth0 and retrying once");
                        pod::delete_pod_eth0(&ph).await?;
                        pod::delete_link(h, &name2).await?;
                        pod::create_veth(h, &name2, bridge_index, pid, mtu).await?;
                    }
                    nl::link_by_name(h, &name2).await?.ok_or_else(|| Error::LinkMissing {
                        name: name2.clone(),
                        place: "on the host right after creating it".into(),
                    })?
                }
            };
            let host_cfg = pod::configure_host_end(h, &host, &name2, bridge_index);
            let pod_cfg = pod::configure_pod_end(&ph, ip, prefix, gateway);
            futures::try_join!(host_cfg, pod_cfg)?;
            Ok(())
        })
        .await?;
        tracing::debug!(pod = pod_key, %ip, veth = %name, pid, "pod attached");
        Ok(PodAddress { ip, prefix, gateway, host_veth: name })
    }

    /// Unwires a pod, idempotently: deletes the host veth (the pod end goes with it) and releases the lease.
    pub async fn detach(&self, pod_key: &str) -> Result<()> {
        let inner = &*self.inner;
        let name = veth_name(pod_key);
        let deleted = pod::delete_link(&inner.handle, &name).await?;
        let (ipam, key) = (inner.ipam.clone(), pod_key.to_string());
        let released = tokio::task::spawn_blocking(move || ipam.release(&key))
            .await
            .map_err(|e| Error::HelperGone(e.to_string()))??;
        tracing::debug!(pod = pod_key, veth = %name, deleted, ?released, "pod detached");
        Ok(())
    }

    /// Pod keys holding leases, with their addresses: for garbage-collecting pods that vanished while the
    /// agent was down.
    pub fn leases(&self) -> Vec<(String, Ipv4Addr)> {
        self.inner.ipam.leases()
    }

    /// Makes the Service proxy forward exactly `ports` (see `proxy.rs`): nftables rules, and a
    /// route on the bridge for each ClusterIP.
    pub async fn sync_services(&self, ports: &[ServicePort]) -> Result<()> {
        let inner = &*self.inner;
        let (table, cidr, list) = (inner.cfg.bridge.clone(), inner.cfg.cluster_cidr, ports.to_vec());
        tokio::task::spawn_blocking(move || {
            proxy::enable_route_localnet(&table)?;
            proxy::apply_rules(&list, cidr, &table)
        })
        .await
        .map_err(|e| Error::HelperGone(e.to_string()))??;
        let ips = ports.iter().map(|p| p.cluster_ip).filter(|ip| inner.cfg.service_cidr.contains(*ip)).collect();
        proxy::sync_routes(&inner.handle, &ips, inner.cfg.service_cidr, inner.bridge_index).await
    }

    /// Enforces exactly `rules` (see `policy.rs`): the policy table, replaced atomically, or
    /// removed when no pod is isolated.
    pub async fn sync_policies(&self, rules: &PolicyRules) -> Result<()> {
        let (table, rules) = (policy::table_name(&self.inner.cfg.bridge), rules.clone());
        tokio::task::spawn_blocking(move || {
            if !rules.is_empty() {
                policy::enable_bridge_netfilter()?;
            }
            policy::apply(&rules, &table)
        })
        .await
        .map_err(|e| Error::HelperGone(e.to_string()))?
    }

    /// Routes exactly `peers`' pod ranges through the configured backend (creating the VXLAN
    /// device at the first peer), removing the routes of nodes no longer listed. Idempotent.
    pub async fn sync_peers(&self, peers: &[Peer]) -> Result<()> {
        let inner = &*self.inner;
        let cfg = &inner.cfg;
        let vxlan = match cfg.backend {
            Backend::Vxlan if !peers.is_empty() => Some(peers::ensure_vxlan(&inner.handle, &peers::vxlan_name(&cfg.bridge), cfg.vxlan_vni, cfg.node_ip, cfg.pod_cidr).await?),
            _ => None,
        };
        peers::sync(&inner.handle, peers, vxlan).await
    }

    /// Removes the bridge, the blackhole routes and the lease directory (`timonier delete`, tests).
    /// Pods' veths go away with their namespaces or with the bridge's ports; leftover host veths of listed
    /// leases are deleted too.
    pub async fn teardown(self) -> Result<()> {
        let inner = &*self.inner;
        let h = &inner.handle;
        for (key, _) in inner.ipam.leases() {
            pod::delete_link(h, &veth_name(&key)).await?;
        }
        let table = inner.cfg.bridge.clone();
        tokio::task::spawn_blocking(move || {
            policy::remove(&policy::table_name(&table))?;
            proxy::remove_rules(&table)
        })
        .await
        .map_err(|e| Error::HelperGone(e.to_string()))??;
        bridge::remove_bridge(h, &inner.cfg.bridge).await?;
        peers::remove_all(h).await?;
        peers::remove_vxlan(h, &peers::vxlan_name(&inner.cfg.bridge)).await?;
        routes::remove_blackhole(h, inner.cfg.cluster_cidr).await?;
        routes::remove_blackhole(h, inner.cfg.service_cidr).await?;
        let dir = inner.cfg.state_dir.clone();
        tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::State { path: dir, source }),
        })
        .await
        .map_err(|e| Error::HelperGone(e.to_string()))??;
        tracing::info!(bridge = %inner.cfg.bridge, "pod network torn down");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn veth_names_are_stable_and_short() {
        let a = super::veth_name("default/web-0/1234");
        assert_eq!(a, super::veth_name("default/web-0/1234"));
        assert_ne!(a, super::veth_name("default/web-1/1234"));
        assert_eq!(a.len(), 12);
        assert!(a.starts_with("veth") && a[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(super::veth_name(""), "veth811c9dc5");
    }
}
