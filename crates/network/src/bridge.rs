//! The node bridge: the pods' layer-2 segment and, through its address, their default gateway.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::packet_route::link::InfoKind;
use rtnetlink::{Handle, LinkBridge, LinkUnspec};

use crate::error::{Error, Result};
use crate::nl::{link_by_name, ok_if_exists, ok_if_missing};

/// A fixed, locally administered MAC derived from the bridge name.
///
/// A bridge without an explicit MAC takes the lowest MAC of its ports, so it would change whenever a pod
/// comes or goes, and pods' ARP entries for the gateway would go stale. Setting one pins it.
fn bridge_mac(name: &str) -> Vec<u8> {
    let h = crate::fnv1a(name.as_bytes()).to_be_bytes();
    vec![0x02, 0x54, h[0], h[1], h[2], h[3]]
}

/// Creates the bridge if missing, gives it `gateway/prefix` and brings it up. Returns its index.
pub(crate) async fn ensure_bridge(h: &Handle, name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<u32> {
    let link = match link_by_name(h, name).await? {
        Some(l) => l,
        None => {
            let r = h.link().add(LinkBridge::new(name).address(bridge_mac(name)).build()).execute().await;
            ok_if_exists(r, &format!("create bridge {name}"))?;
            tracing::info!(bridge = name, "created bridge");
            link_by_name(h, name)
                .await?
                .ok_or_else(|| Error::LinkMissing { name: name.into(), place: "right after creating it".into() })?
        }
    };
    if link.kind != Some(InfoKind::Bridge) {
        return Err(Error::NotABridge(name.into()));
    }
    let r = h.address().add(link.index, IpAddr::V4(gateway), prefix).execute().await;
    ok_if_exists(r, &format!("add {gateway}/{prefix} to {name}"))?;
    h.link()
        .set(LinkUnspec::new_with_index(link.index).up().build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("set {name} up"), e))?;
    Ok(link.index)
}

/// Deletes the bridge if it exists (its connected route goes with it).
pub(crate) async fn remove_bridge(h: &Handle, name: &str) -> Result<()> {
    if let Some(l) = link_by_name(h, name).await? {
        let r = h.link().del(l.index).execute().await;
        ok_if_missing(r, &format!("delete bridge {name}"))?;
        tracing::info!(bridge = name, "deleted bridge");
    }
    Ok(())
}

/// Sets `net.ipv4.ip_forward=1` in the caller's network namespace, so pods can reach beyond the bridge.
pub(crate) fn enable_ip_forward() -> Result<()> {
    // /proc/sys/net resolves to the network namespace of the thread that opens the file, i.e. ours.
    let key = "/proc/sys/net/ipv4/ip_forward";
    let cur = std::fs::read_to_string(key).map_err(|source| Error::Sysctl { key: key.into(), source })?;
    if cur.trim() != "1" {
        std::fs::write(key, "1").map_err(|source| Error::Sysctl { key: key.into(), source })?;
        tracing::info!("enabled net.ipv4.ip_forward");
    }
    Ok(())
}
