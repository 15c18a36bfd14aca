//! Routes to the other nodes' pod ranges, as flannel's two simplest backends make them.
//!
//! - **host-gw**: `<peer podCIDR> via <peer node IP>` — the nodes must share a layer-2 segment.
//! - **vxlan**: one VXLAN device per node (VNI 1 by default, UDP 8472, no learning), holding the node's
//!   own `<podCIDR network>/32`; for each peer `<peer podCIDR> via <peer network address> dev
//!   vxlan onlink`, a permanent neighbour entry giving that address the peer's VTEP MAC, and a
//!   forwarding entry sending that MAC to the peer's node IP. Works across routed networks.
//!
//! Every route made here carries protocol [`ROUTE_PROTOCOL`], so that a pass can remove the
//! routes of nodes that are gone — even those made before an agent restart — without touching
//! anyone else's. The cluster range's blackhole stays: ranges no node owns are still dropped.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::InfoKind;
use rtnetlink::packet_route::neighbour::{NeighbourFlags, NeighbourState};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{Handle, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use crate::cidr::Ipv4Net;
use crate::error::{Error, Result};
use crate::nl::{link_by_name, ok_if_exists, ok_if_missing};

/// The `rtm_protocol` of our routes (unassigned in iproute2's `rt_protos`).
pub const ROUTE_PROTOCOL: u8 = 77;
/// flannel's VXLAN network identifier and port (the Linux default port is 4789; flannel and
/// k3s use the kernel's historical 8472). Two clusters whose nodes share a network namespace
/// (tests) need different identifiers: one port serves every device, demultiplexed by VNI.
pub const DEFAULT_VNI: u32 = 1;
const VXLAN_PORT: u16 = 8472;

/// How pod traffic reaches other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Routes through the peers' node addresses: fastest, needs a shared layer-2 segment.
    HostGw,
    /// A VXLAN overlay: works wherever the nodes reach each other over UDP.
    #[default]
    Vxlan,
}

impl Backend {
    /// The pods' MTU: a VXLAN packet carries 50 bytes of headers (outer IP, UDP, VXLAN,
    /// Ethernet) inside the nodes' 1500, so pods send at most 1450, as flannel sets them —
    /// larger packets would need path-MTU discovery on every flow, or be fragmented.
    pub fn pod_mtu(self) -> u32 {
        match self {
            Backend::HostGw => 1500,
            Backend::Vxlan => 1450,
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "host-gw" => Ok(Backend::HostGw),
            "vxlan" => Ok(Backend::Vxlan),
            other => Err(format!("unknown network backend {other:?}: use vxlan or host-gw")),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::HostGw => "host-gw",
            Backend::Vxlan => "vxlan",
        })
    }
}

/// Another node, as its Node object describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub node_ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    /// Its VXLAN device's MAC (published on its Node); without it, no overlay entry is made.
    pub vtep_mac: Option<[u8; 6]>,
}

/// The VXLAN device's name, derived from the bridge's so that two agents in one network
/// namespace (tests) do not share it.
pub fn vxlan_name(bridge: &str) -> String {
    let mut n = format!("vx-{bridge}");
    n.truncate(15);
    n
}

/// The VTEP MAC of the node with address `node_ip`: locally administered and stable, so that
/// what peers learnt stays true after a restart.
pub fn vtep_mac(node_ip: Ipv4Addr) -> [u8; 6] {
    let o = node_ip.octets();
    [0x02, 0x56, o[0], o[1], o[2], o[3]]
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s.split(':').map(|p| u8::from_str_radix(p, 16)).collect::<std::result::Result<_, _>>().ok()?;
    parts.try_into().ok()
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Creates the VXLAN device if missing (local address `node_ip`, our `pod_cidr`'s network
/// address on it), up. Returns its index.
pub(crate) async fn ensure_vxlan(h: &Handle, name: &str, vni: u32, node_ip: Ipv4Addr, pod_cidr: Ipv4Net) -> Result<u32> {
    let link = match link_by_name(h, name).await? {
        Some(l) => l,
        None => {
            // Its MTU leaves room for the 50 bytes of encapsulation in the nodes' 1500, so that
            // nothing the node itself sends through it is fragmented.
            let msg = LinkVxlan::new(name, vni)
                .local(node_ip)
                .port(VXLAN_PORT)
                .learning(false)
                .address(vtep_mac(node_ip).to_vec())
                .mtu(Backend::Vxlan.pod_mtu())
                .build();
            let r = h.link().add(msg).execute().await;
            ok_if_exists(r, &format!("create vxlan device {name}"))?;
            tracing::info!(device = name, %node_ip, "created vxlan device");
            link_by_name(h, name).await?.ok_or_else(|| Error::LinkMissing { name: name.into(), place: "right after creating it".into() })?
        }
    };
    if link.kind != Some(InfoKind::Vxlan) {
        return Err(Error::Proxy(format!("link {name:?} exists but is not a vxlan device; delete it (`ip link del {name}`)")));
    }
    let r = h.address().add(link.index, IpAddr::V4(pod_cidr.network()), 32).execute().await;
    ok_if_exists(r, &format!("add {}/32 to {name}", pod_cidr.network()))?;
    h.link()
        .set(LinkUnspec::new_with_index(link.index).up().build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("set {name} up"), e))?;
    Ok(link.index)
}

/// Deletes the VXLAN device if it exists (its routes and entries go with it).
pub(crate) async fn remove_vxlan(h: &Handle, name: &str) -> Result<()> {
    if let Some(l) = link_by_name(h, name).await? {
        ok_if_missing(h.link().del(l.index).execute().await, &format!("delete {name}"))?;
    }
    Ok(())
}

fn destination(m: &RouteMessage) -> Option<Ipv4Net> {
    let dst = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })?;
    Ipv4Net::new(dst, m.header.destination_prefix_length).ok()
}

fn gateway(m: &RouteMessage) -> Option<Ipv4Addr> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })
}

/// Our routes of the main table, by destination.
async fn our_routes(h: &Handle) -> Result<Vec<RouteMessage>> {
    let mut s = h.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
    let mut out = Vec::new();
    while let Some(m) = s.try_next().await.map_err(|e| Error::netlink("list routes", e))? {
        if m.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Makes the routes (and, for VXLAN, the neighbour and forwarding entries) to exactly the
/// peers' pod ranges; `vxlan` is the overlay device's index when the backend is VXLAN.
pub(crate) async fn sync(h: &Handle, peers: &[Peer], vxlan: Option<u32>) -> Result<()> {
    // The route each peer's range should have: its gateway and, for VXLAN, the device.
    let mut want: BTreeMap<Ipv4Net, (Ipv4Addr, &Peer)> = BTreeMap::new();
    for p in peers {
        match vxlan {
            Some(_) if p.vtep_mac.is_none() => continue,
            Some(_) => want.insert(p.pod_cidr, (p.pod_cidr.network(), p)),
            None => want.insert(p.pod_cidr, (p.node_ip, p)),
        };
    }
    for m in our_routes(h).await? {
        let keep = destination(&m).and_then(|d| want.get(&d)).is_some_and(|(gw, _)| gateway(&m) == Some(*gw));
        if !keep {
            let shown = destination(&m).map(|d| d.to_string()).unwrap_or_default();
            ok_if_missing(h.route().del(m).execute().await, &format!("delete route to {shown}"))?;
            tracing::info!(route = %shown, "removed the route of a node that is gone");
        }
    }
    for (cidr, (gw, peer)) in &want {
        if let (Some(dev), Some(mac)) = (vxlan, peer.vtep_mac) {
            let r = h.neighbours().add(dev, IpAddr::V4(*gw)).link_layer_address(&mac).state(NeighbourState::Permanent).replace().execute().await;
            ok_if_exists(r, &format!("add neighbour {gw} of {}", peer.name))?;
            let r = h.neighbours().add_bridge(dev, &mac).destination(IpAddr::V4(peer.node_ip)).flags(NeighbourFlags::Own).replace().execute().await;
            ok_if_exists(r, &format!("add forwarding entry of {} to {}", peer.name, peer.node_ip))?;
        }
        let mut route = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(cidr.network(), cidr.prefix()).gateway(*gw).protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
        if let Some(dev) = vxlan {
            route = route.output_interface(dev).onlink();
        }
        let r = h.route().add(route.build()).replace().execute().await;
        ok_if_exists(r, &format!("add route to {cidr} (node {}) via {gw}", peer.name))?;
    }
    Ok(())
}

/// Removes every route this module made (teardown).
pub(crate) async fn remove_all(h: &Handle) -> Result<()> {
    for m in our_routes(h).await? {
        ok_if_missing(h.route().del(m).execute().await, "delete a pod route")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_macs() {
        assert_eq!(vxlan_name("timonier0"), "vx-timonier0");
        assert_eq!(vxlan_name("averyverylongbridge").len(), 15);
        let m = vtep_mac(Ipv4Addr::new(10, 250, 0, 11));
        assert_eq!(format_mac(&m), "02:56:0a:fa:00:0b");
        assert_eq!(parse_mac(&format_mac(&m)), Some(m));
        assert_eq!(parse_mac("02:56:0a"), None);
        assert_eq!("host-gw".parse::<Backend>(), Ok(Backend::HostGw));
        assert!("flannel".parse::<Backend>().is_err());
    }
}
