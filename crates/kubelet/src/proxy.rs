//! The node's Service proxy loop (kube-proxy's job, and CoreDNS's): Services and
//! EndpointSlices from watch caches become the pod network's forwarding rules
//! (`timonier_network::PodNetwork::sync_services`) and the node's DNS records whenever what
//! they say changes. The `kube-system/kube-dns` Service (10.96.0.10, the pods' nameserver)
//! leads to this node's own DNS server on the bridge's gateway address.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use timonier_client::watch;
use timonier_network::dns::{host_resolvers, ClusterDns, ZONE};
use timonier_network::{PodNetwork, ServicePort};

use crate::mirror::ProxyHealth;

/// The port the node's DNS server listens on, on the gateway address.
const DNS_PORT: u16 = 53;

pub async fn run(client: Client, network: PodNetwork, health: Arc<ProxyHealth>) {
    // NetworkPolicies are enforced alongside (kube-router's way: proxy and firewall in one
    // agent), and end with this loop.
    let _policies = timonier_client::AbortOnDrop(tokio::spawn(crate::netpol::run(client.clone(), network.clone())));
    let gateway = network.config().pod_cidr.gateway();
    let dns = ClusterDns::default();
    let server = dns.clone();
    let dns_health = health.clone();
    tokio::spawn(async move {
        let r = server.serve(SocketAddr::from((gateway, DNS_PORT)), host_resolvers()).await;
        dns_health.dns_failed.store(true, Ordering::Relaxed);
        if let Err(e) = r {
            // The DNS server's own target: this is coredns' log, not kube-proxy's.
            tracing::error!(target: "timonier_network::dns", error = %e, "cluster DNS cannot listen on {gateway}:{DNS_PORT}; pods cannot resolve service names");
        }
    });
    let wake = Arc::new(tokio::sync::Notify::new());
    let (services, _t1) = watch::<Service>(Api::all(client.clone()), wake.clone());
    let (slices, _t2) = watch::<EndpointSlice>(Api::all(client), wake.clone());
    let _ = services.wait_until_ready().await;
    let _ = slices.wait_until_ready().await;
    let mut applied: Option<Vec<ServicePort>> = None;
    loop {
        let (ports, records) = desired(&services, &slices, gateway);
        dns.set_records(records);
        health.dns_records.store(true, Ordering::Relaxed);
        if applied.as_ref() != Some(&ports) {
            match network.sync_services(&ports).await {
                Ok(()) => {
                    tracing::debug!(ports = ports.len(), "service rules updated");
                    applied = Some(ports);
                    health.rules_synced.store(true, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "cannot update the service rules; retrying"),
            }
        }
        let wait = if applied.is_some() { Duration::from_secs(60) } else { Duration::from_secs(5) };
        let _ = tokio::time::timeout(wait, wake.notified()).await;
        // Coalesce a burst of changes (a rollout) into one rewrite.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every port of every Service with a ClusterIP, with the ready endpoints of its slices; and
/// the DNS records of the Services (a headless one's: its ready endpoints).
fn desired(services: &Store<Service>, slices: &Store<EndpointSlice>, gateway: Ipv4Addr) -> (Vec<ServicePort>, HashMap<String, Vec<Ipv4Addr>>) {
    let slices = slices.state();
    let mut out = vec![];
    let mut records = HashMap::new();
    for svc in services.state() {
        let Some(spec) = svc.spec.clone() else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
        let mine: Vec<&Arc<EndpointSlice>> = slices.iter().filter(|s| s.namespace().as_deref() == Some(ns.as_str()) && s.labels().get("kubernetes.io/service-name") == Some(&name)).collect();
        let fqdn = format!("{name}.{ns}.svc.{ZONE}");
        let Some(ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok()) else {
            if spec.cluster_ip.as_deref() == Some("None") {
                let mut ips: Vec<Ipv4Addr> = mine.iter().flat_map(|s| s.endpoints.iter()).filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false)).flat_map(|e| e.addresses.iter().filter_map(|a| a.parse().ok())).collect();
                ips.sort();
                ips.dedup();
                records.insert(fqdn, ips);
            }
            continue;
        };
        records.insert(fqdn, vec![ip]);
        let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let node_dns = ns == "kube-system" && name == "kube-dns";
        for sp in spec.ports.iter().flatten() {
            let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into()).to_lowercase();
            let mut endpoints = vec![];
            for slice in &mine {
                let port = slice.ports.iter().flatten().find(|p| p.name.clone().unwrap_or_default() == sp.name.clone().unwrap_or_default() && p.protocol.clone().unwrap_or_else(|| "TCP".into()).eq_ignore_ascii_case(&protocol));
                let Some(port) = port.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()) else { continue };
                for e in &slice.endpoints {
                    // Upstream: a missing `ready` means ready.
                    if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                        continue;
                    }
                    endpoints.extend(e.addresses.iter().filter_map(|a| a.parse().ok()).map(|a| (a, port)));
                }
            }
            if node_dns && sp.port == i32::from(DNS_PORT) {
                endpoints = vec![(gateway, DNS_PORT)];
            }
            endpoints.sort();
            endpoints.dedup();
            let node_port = if node_ports { sp.node_port.and_then(|p| u16::try_from(p).ok()) } else { None };
            let Ok(port) = u16::try_from(sp.port) else { continue };
            out.push(ServicePort { cluster_ip: ip, port, protocol, node_port, endpoints });
        }
    }
    out.sort();
    (out, records)
}
