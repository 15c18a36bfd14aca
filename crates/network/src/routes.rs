//! Blackhole routes for the cluster and service CIDRs.
//!
//! Without them, traffic to a pod address that no node routes (or to a service IP nobody DNATed) would follow
//! the host's default route out of the machine. The connected route of the node's own pod CIDR on the bridge is
//! more specific, so local pods are unaffected.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::cidr::Ipv4Net;
use crate::error::{Error, Result};
use crate::nl::{ok_if_exists, ok_if_missing};

fn blackhole_msg(net: Ipv4Net) -> rtnetlink::packet_route::route::RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(net.network(), net.prefix())
        .kind(RouteType::BlackHole)
        .build()
}

/// Adds a blackhole route for `net` unless one exists.
pub(crate) async fn ensure_blackhole(h: &Handle, net: Ipv4Net) -> Result<()> {
    if blackhole_routes(h).await?.contains(&net) {
        return Ok(());
    }
    let r = h.route().add(blackhole_msg(net)).execute().await;
    ok_if_exists(r, &format!("add blackhole route {net}"))?;
    tracing::info!(%net, "blackhole route in place");
    Ok(())
}

/// Removes the blackhole route for `net` if present.
pub(crate) async fn remove_blackhole(h: &Handle, net: Ipv4Net) -> Result<()> {
    let r = h.route().del(blackhole_msg(net)).execute().await;
    ok_if_missing(r, &format!("delete blackhole route {net}"))
}

/// All IPv4 blackhole routes of the main table.
pub async fn blackhole_routes(h: &Handle) -> Result<Vec<Ipv4Net>> {
    let mut s = h.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
    let mut out = Vec::new();
    while let Some(m) = s.try_next().await.map_err(|e| Error::netlink("list routes", e))? {
        if m.header.kind != RouteType::BlackHole {
            continue;
        }
        let dst = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        let dst = dst.unwrap_or(Ipv4Addr::UNSPECIFIED);
        if let Ok(n) = Ipv4Net::new(dst, m.header.destination_prefix_length) {
            out.push(n);
        }
    }
    Ok(out)
}
