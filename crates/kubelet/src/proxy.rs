//! The node's Service proxy loop (kube-proxy's job): Services and EndpointSlices from watch
//! caches become the pod network's forwarding rules (`timonier_network::PodNetwork::
//! sync_services`) whenever what they say changes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use timonier_client::watch;
use timonier_network::{PodNetwork, ServicePort};

pub async fn run(client: Client, network: PodNetwork) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let (services, _t1) = watch::<Service>(Api::all(client.clone()), wake.clone());
    let (slices, _t2) = watch::<EndpointSlice>(Api::all(client), wake.clone());
    let _ = services.wait_until_ready().await;
    let _ = slices.wait_until_ready().await;
    let mut applied: Option<Vec<ServicePort>> = None;
    loop {
        let ports = desired(&services, &slices);
        if applied.as_ref() != Some(&ports) {
            match network.sync_services(&ports).await {
                Ok(()) => {
                    tracing::debug!(ports = ports.len(), "service rules updated");
                    applied = Some(ports);
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

/// Every port of every Service with a ClusterIP, with the ready endpoints of its slices.
fn desired(services: &Store<Service>, slices: &Store<EndpointSlice>) -> Vec<ServicePort> {
    let slices = slices.state();
    let mut out = vec![];
    for svc in services.state() {
        let Some(spec) = svc.spec.clone() else { continue };
        let Some(ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok()) else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
        let mine: Vec<&Arc<EndpointSlice>> = slices.iter().filter(|s| s.namespace().as_deref() == Some(ns.as_str()) && s.labels().get("kubernetes.io/service-name") == Some(&name)).collect();
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
            endpoints.sort();
            endpoints.dedup();
            let node_port = if node_ports { sp.node_port.and_then(|p| u16::try_from(p).ok()) } else { None };
            let Ok(port) = u16::try_from(sp.port) else { continue };
            out.push(ServicePort { cluster_ip: ip, port, protocol, node_port, endpoints });
        }
    }
    out.sort();
    out
}
