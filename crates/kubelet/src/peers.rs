//! The routes to other nodes' pods (flannel's job): every Node with a podCIDR and an address
//! becomes a peer of this node's pod network, through the backend this agent was started
//! with. A Node publishes what its peers need in annotations, as flannel does in its own
//! (`flannel.alpha.coreos.com/backend-data` …): the backend, the tunnel's address and, for
//! VXLAN, its VTEP MAC.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use serde_json::json;
use timonier_network::{format_mac, parse_mac, vtep_mac, Backend, Peer, PodNetwork};

pub const BACKEND_ANNOTATION: &str = "networking.timonier.io/backend";
pub const PUBLIC_IP_ANNOTATION: &str = "networking.timonier.io/public-ip";
pub const VTEP_MAC_ANNOTATION: &str = "networking.timonier.io/vtep-mac";

/// Publishes this node's tunnel parameters on its Node object.
pub async fn announce(nodes: &Api<Node>, name: &str, node_ip: Ipv4Addr, backend: Backend) -> Result<(), kube::Error> {
    let mut annotations = json!({BACKEND_ANNOTATION: backend.to_string(), PUBLIC_IP_ANNOTATION: node_ip.to_string()});
    annotations[VTEP_MAC_ANNOTATION] = match backend {
        Backend::Vxlan => json!(format_mac(&vtep_mac(node_ip))),
        Backend::HostGw => json!(null),
    };
    let patch = json!({"metadata": {"annotations": annotations}});
    nodes.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

/// The peer a Node stands for, if it has a pod range and an address to reach it at.
fn peer_of(node: &Node, backend: Backend) -> Option<Peer> {
    let name = node.metadata.name.clone()?;
    let pod_cidr = node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
    let annotations = node.metadata.annotations.as_ref();
    let annotated = annotations.and_then(|a| a.get(PUBLIC_IP_ANNOTATION)).and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let internal = || {
        let addresses = node.status.as_ref()?.addresses.as_ref()?;
        addresses.iter().filter(|a| a.type_ == "InternalIP").find_map(|a| match a.address.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        })
    };
    let node_ip = annotated.or_else(internal)?;
    let peer_backend = annotations.and_then(|a| a.get(BACKEND_ANNOTATION)).and_then(|b| b.parse::<Backend>().ok());
    if peer_backend.is_some_and(|b| b != backend) {
        tracing::warn!(node = %name, peer = ?peer_backend, ours = %backend, "a node uses another network backend: its pods are unreachable from here");
        return None;
    }
    let vtep_mac = annotations.and_then(|a| a.get(VTEP_MAC_ANNOTATION)).and_then(|m| parse_mac(m));
    Some(Peer { name, node_ip, pod_cidr, vtep_mac })
}

/// Keeps the pod network's peer routes equal to what the Nodes say, on every Node change
/// and at least every minute (a route removed by hand comes back).
pub async fn run(client: kube::Client, me: String, network: PodNetwork, backend: Backend) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let (nodes, _task): (Store<Node>, _) = timonier_client::watch(Api::all(client), wake.clone());
    let _ = nodes.wait_until_ready().await;
    let mut applied: Option<Vec<Peer>> = None;
    let mut last_pass = tokio::time::Instant::now();
    loop {
        let mut peers: Vec<Peer> = nodes.state().iter().filter(|n| n.metadata.name.as_deref() != Some(me.as_str())).filter_map(|n| peer_of(n, backend)).collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        if applied.as_ref() != Some(&peers) || last_pass.elapsed() >= Duration::from_secs(60) {
            last_pass = tokio::time::Instant::now();
            match network.sync_peers(&peers).await {
                Ok(()) => {
                    if applied.as_ref() != Some(&peers) {
                        tracing::info!(peers = peers.len(), "routes to other nodes' pods updated");
                    }
                    applied = Some(peers);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot route to other nodes' pods; retrying");
                    applied = None;
                }
            }
        }
        let wait = if applied.is_some() { Duration::from_secs(60) } else { Duration::from_secs(2) };
        let _ = tokio::time::timeout(wait, wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    #[test]
    fn peers_from_nodes() {
        let n = node(json!({"metadata": {"name": "b", "annotations": {VTEP_MAC_ANNOTATION: "02:56:0a:fa:00:0c", BACKEND_ANNOTATION: "vxlan"}},
            "spec": {"podCIDR": "10.244.2.0/24"}, "status": {"addresses": [{"type": "Hostname", "address": "b"}, {"type": "InternalIP", "address": "10.250.0.12"}]}}));
        let p = peer_of(&n, Backend::Vxlan).expect("peer");
        assert_eq!(p.node_ip, Ipv4Addr::new(10, 250, 0, 12));
        assert_eq!(p.pod_cidr.to_string(), "10.244.2.0/24");
        assert_eq!(p.vtep_mac, Some([2, 0x56, 10, 250, 0, 12]));
        // Another backend, or no podCIDR yet: not a peer.
        assert!(peer_of(&n, Backend::HostGw).is_none());
        assert!(peer_of(&node(json!({"metadata": {"name": "c"}, "spec": {}})), Backend::Vxlan).is_none());
    }
}
