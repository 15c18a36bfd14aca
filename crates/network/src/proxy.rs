//! The Service proxy — kube-proxy's nftables mode, reduced to what this node needs: one
//! table (`ip <bridge name>`, so that two agents on one host keep apart), rewritten whole and
//! atomically (`nft -f`) whenever a Service or its endpoints change.
//!
//! - A ClusterIP port DNATs to one of its endpoints chosen at random (`numgen random`), from
//!   pods (prerouting) and from the node itself (output); a NodePort does the same for any
//!   local address of the node, 127.0.0.1 included.
//! - What is masqueraded, as kube-proxy does: traffic to node ports, traffic to ClusterIPs
//!   from outside the pod network, a pod reaching itself through its Service (hairpin), and
//!   traffic to endpoints outside the pod network (the API server), whose replies would not
//!   find a pod address. Pod-to-pod traffic through a ClusterIP keeps the client's address, so
//!   that the endpoint's NetworkPolicies judge the client pod (`policy.rs`); replies between
//!   pods of one bridge are un-NATed on the bridge (`bridge-nf-call-iptables`).
//! - A port without endpoints is rejected at once (ICMP host unreachable), as upstream.
//! - The service range stays blackholed; each allocated ClusterIP gets a /32 route on the
//!   bridge so that the node's own connections reach the output hook (a blackholed
//!   destination fails in `connect` before any hook runs), and the bridge gets
//!   `route_localnet` so that node ports answer on 127.0.0.1 — with kube-proxy's firewall
//!   rule, so that pods cannot send to the node's loopback services themselves.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol, RouteScope};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::cidr::Ipv4Net;
use crate::error::{Error, Result};
use crate::nl::{ok_if_exists, ok_if_missing};

/// Marks packets to masquerade in postrouting.
const MASQ_MARK: u32 = 0x4000;

/// One port of one Service, with its ready endpoints.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePort {
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub node_port: Option<u16>,
    /// (pod IP, target port) of each ready endpoint.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

/// The nftables script replacing the proxy's table with rules for `ports`.
pub fn render(ports: &[ServicePort], cluster_cidr: Ipv4Net, table: &str) -> String {
    let mut s = String::new();
    // Adding then deleting makes the deletion valid whether or not the table exists; the
    // whole file is one transaction, so no packet sees a half-written table.
    let _ = writeln!(s, "add table ip {table}\ndelete table ip {table}\ntable ip {table} {{");
    let mut services = String::new();
    let mut rejects = String::new();
    let mut chains = String::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.as_str();
        if p.endpoints.is_empty() {
            let _ = writeln!(rejects, "        ip daddr {} {proto} dport {} reject with icmp type host-unreachable", p.cluster_ip, p.port);
            if let Some(np) = p.node_port {
                let _ = writeln!(rejects, "        fib daddr type local {proto} dport {np} reject with icmp type host-unreachable");
            }
            continue;
        }
        let _ = writeln!(services, "        ip daddr {} {proto} dport {} jump svc-{i}", p.cluster_ip, p.port);
        if let Some(np) = p.node_port {
            let _ = writeln!(services, "        fib daddr type local {proto} dport {np} meta mark set meta mark | {MASQ_MARK:#x} jump svc-{i}");
        }
        let _ = writeln!(chains, "    chain svc-{i} {{\n        ip saddr != {cluster_cidr} meta mark set meta mark | {MASQ_MARK:#x}");
        let targets: Vec<String> = (0..p.endpoints.len()).map(|j| format!("{j} : jump ep-{i}-{j}")).collect();
        let _ = writeln!(chains, "        numgen random mod {} vmap {{ {} }}\n    }}", p.endpoints.len(), targets.join(", "));
        for (j, (ip, port)) in p.endpoints.iter().enumerate() {
            let masq = if cluster_cidr.contains(*ip) { format!("ip saddr {ip} meta mark set meta mark | {MASQ_MARK:#x}") } else { format!("meta mark set meta mark | {MASQ_MARK:#x}") };
            let _ = writeln!(chains, "    chain ep-{i}-{j} {{\n        {masq}\n        meta l4proto {proto} dnat to {ip}:{port}\n    }}");
        }
    }
    let _ = writeln!(s, "    chain services {{\n{services}    }}\n    chain no-endpoints {{\n{rejects}    }}\n{chains}");
    for (name, kind, hook, priority, body) in [
        ("prerouting", "nat", "prerouting", -100, "jump services".to_string()),
        ("output", "nat", "output", -100, "jump services".to_string()),
        ("postrouting", "nat", "postrouting", 100, format!("meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} masquerade")),
        // route_localnet also lets in packets that pods address to 127.0.0.1 themselves
        // (CVE-2020-8558): drop those, as kube-proxy does, unless DNATed here.
        ("filter-input", "filter", "input", 0, "ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state != { established, related } ct status & dnat == 0 drop\n        jump no-endpoints".to_string()),
        ("filter-output", "filter", "output", 0, "jump no-endpoints".to_string()),
        ("filter-forward", "filter", "forward", 0, "jump no-endpoints".to_string()),
    ] {
        let _ = writeln!(s, "    chain {name} {{\n        type {kind} hook {hook} priority {priority}; policy accept;\n        {body}\n    }}");
    }
    s.push_str("}\n");
    s
}

/// Runs `nft -f -` on `script`.
fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Proxy(format!("cannot run nft (install Debian's nftables): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(|e| Error::Proxy(format!("nft: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Proxy(format!("nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::Proxy(format!("nft refused the rules: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

/// Replaces the proxy's nftables table.
pub(crate) fn apply_rules(ports: &[ServicePort], cluster_cidr: Ipv4Net, table: &str) -> Result<()> {
    nft(&render(ports, cluster_cidr, table))
}

/// Removes the proxy's nftables table, if any.
pub(crate) fn remove_rules(table: &str) -> Result<()> {
    nft(&format!("add table ip {table}\ndelete table ip {table}\n"))
}

/// `route_localnet` on the bridge, so that DNATed 127.0.0.1 traffic may leave through it.
pub(crate) fn enable_route_localnet(bridge: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    std::fs::write(&path, "1").map_err(|e| Error::Proxy(format!("{path}: {e}")))
}

fn host_route(ip: Ipv4Addr, bridge_index: u32) -> rtnetlink::packet_route::route::RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(ip, 32)
        .output_interface(bridge_index)
        .scope(RouteScope::Link)
        .protocol(RouteProtocol::Static)
        .build()
}

/// The /32 routes on the bridge inside the service range, as they are.
async fn service_ip_routes(h: &Handle, service_cidr: Ipv4Net, bridge_index: u32) -> Result<BTreeSet<Ipv4Addr>> {
    let mut s = h.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
    let mut out = BTreeSet::new();
    while let Some(m) = s.try_next().await.map_err(|e| Error::netlink("list routes", e))? {
        if m.header.destination_prefix_length != 32 {
            continue;
        }
        let dst = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        let oif = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        if let (Some(dst), Some(oif)) = (dst, oif) {
            if oif == bridge_index && service_cidr.contains(dst) {
                out.insert(dst);
            }
        }
    }
    Ok(out)
}

/// Makes the /32 routes on the bridge exactly `ips`.
pub(crate) async fn sync_routes(h: &Handle, ips: &BTreeSet<Ipv4Addr>, service_cidr: Ipv4Net, bridge_index: u32) -> Result<()> {
    let have = service_ip_routes(h, service_cidr, bridge_index).await?;
    for ip in ips.difference(&have) {
        let r = h.route().add(host_route(*ip, bridge_index)).execute().await;
        ok_if_exists(r, &format!("add route {ip}/32"))?;
    }
    for ip in have.difference(ips) {
        let r = h.route().del(host_route(*ip, bridge_index)).execute().await;
        ok_if_missing(r, &format!("delete route {ip}/32"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_for_endpoints_node_ports_and_empty_services() {
        let ports = vec![
            ServicePort { cluster_ip: Ipv4Addr::new(10, 96, 0, 5), port: 8080, protocol: "tcp".into(), node_port: Some(31234), endpoints: vec![(Ipv4Addr::new(10, 244, 0, 5), 8080), (Ipv4Addr::new(10, 244, 0, 6), 8080)] },
            ServicePort { cluster_ip: Ipv4Addr::new(10, 96, 0, 9), port: 80, protocol: "udp".into(), node_port: None, endpoints: vec![] },
            ServicePort { cluster_ip: Ipv4Addr::new(10, 96, 0, 1), port: 443, protocol: "tcp".into(), node_port: None, endpoints: vec![(Ipv4Addr::new(192, 168, 1, 10), 6443)] },
        ];
        let s = render(&ports, Ipv4Net::new(Ipv4Addr::new(10, 244, 0, 0), 16).unwrap(), "tmn0");
        assert!(s.starts_with("add table ip tmn0\ndelete table ip tmn0\ntable ip tmn0 {"), "{s}");
        assert!(s.contains("ip daddr 10.96.0.5 tcp dport 8080 jump svc-0"), "{s}");
        assert!(s.contains("fib daddr type local tcp dport 31234 meta mark set meta mark | 0x4000 jump svc-0"), "{s}");
        assert!(s.contains("numgen random mod 2 vmap { 0 : jump ep-0-0, 1 : jump ep-0-1 }"), "{s}");
        assert!(s.contains("meta l4proto tcp dnat to 10.244.0.6:8080"), "{s}");
        // Masquerade: clients outside the pod network, and a pod reaching itself; pod
        // clients keep their address (their endpoint's policies judge them).
        assert!(s.contains("chain svc-0 {\n        ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000"), "{s}");
        assert!(s.contains("chain ep-0-1 {\n        ip saddr 10.244.0.6 meta mark set meta mark | 0x4000\n        meta l4proto tcp dnat to 10.244.0.6:8080"), "{s}");
        assert!(s.contains("chain ep-2-0 {\n        meta mark set meta mark | 0x4000\n        meta l4proto tcp dnat to 192.168.1.10:6443"), "{s}");
        assert!(s.contains("ip daddr 10.96.0.9 udp dport 80 reject with icmp type host-unreachable"), "{s}");
        assert!(!s.contains("svc-1"), "{s}");
    }
}
