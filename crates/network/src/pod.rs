//! Wiring one pod: veth pair between the bridge and the pod's namespace, address, routes.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::{errno, Error, Result};
use crate::nl::{link_by_name, ok_if_exists, ok_if_missing, Link};

/// Interface name of the pod end.
pub(crate) const POD_IFNAME: &str = "eth0";

/// Creates the veth pair with its peer born inside the pod netns as `eth0` (no move, no rename), the host
/// end enslaved to the bridge and up in the same request.
pub(crate) async fn create_veth(h: &Handle, host: &str, bridge_index: u32, pid: i32, mtu: u32) -> Result<()> {
    let peer = LinkUnspec::new_with_name(POD_IFNAME).setns_by_pid(pid as u32).mtu(mtu).build();
    let msg = LinkVeth::new(host, POD_IFNAME)
        .mtu(mtu)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(bridge_index)
        .up()
        .build();
    h.link().add(msg).execute().await.map_err(|e| Error::netlink(format!("create veth {host}"), e))
}

/// Host-side settings that creation could not carry, re-applied on every attach (all idempotent).
pub(crate) async fn configure_host_end(h: &Handle, host: &Link, name: &str, bridge_index: u32) -> Result<()> {
    if host.controller != Some(bridge_index) {
        h.link()
            .set(LinkUnspec::new_with_index(host.index).controller(bridge_index).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("enslave {name}"), e))?;
    }
    // Hairpin: a pod reaching itself through a Service IP gets its packets back out of the same port.
    h.link()
        .set_port(LinkBridgePort::new(host.index).hairpin(true).build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("hairpin on {name}"), e))
}

/// Inside the pod netns: lo up, eth0 up with `ip/prefix`, default route via `gateway`. Idempotent.
pub(crate) async fn configure_pod_end(ph: &Handle, ip: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> Result<u32> {
    let eth0 = link_by_name(ph, POD_IFNAME)
        .await?
        .ok_or_else(|| Error::LinkMissing { name: POD_IFNAME.into(), place: "in the pod netns".into() })?;
    let lo_up = async {
        ph.link()
            .set(LinkUnspec::new_with_name("lo").up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink("set lo up in pod", e))
    };
    let eth_up = async {
        ph.link()
            .set(LinkUnspec::new_with_index(eth0.index).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink("set eth0 up in pod", e))
    };
    let addr = async {
        let r = ph.address().add(eth0.index, IpAddr::V4(ip), prefix).execute().await;
        ok_if_exists(r, &format!("add {ip}/{prefix} to pod eth0"))
    };
    futures::try_join!(lo_up, eth_up, addr)?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).output_interface(eth0.index).build();
    let r = ph.route().add(route).execute().await;
    ok_if_exists(r, &format!("add default route via {gateway} in pod"))?;
    Ok(eth0.index)
}

/// Deletes the pod-side `eth0` if it exists (a leftover that would block creating our peer).
pub(crate) async fn delete_pod_eth0(ph: &Handle) -> Result<()> {
    if let Some(l) = link_by_name(ph, POD_IFNAME).await? {
        let r = ph.link().del(l.index).execute().await;
        ok_if_missing(r, "delete stale eth0 in pod")?;
    }
    Ok(())
}

/// Deletes a host link by name; fine if it is already gone.
pub(crate) async fn delete_link(h: &Handle, name: &str) -> Result<bool> {
    let Some(l) = link_by_name(h, name).await? else { return Ok(false) };
    match h.link().del(l.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(Error::netlink(format!("delete {name}"), e)),
    }
}
