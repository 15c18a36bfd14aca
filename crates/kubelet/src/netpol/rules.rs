//! From NetworkPolicies, Pods and Namespaces to what each isolated pod of this node may
//! receive and send (`timonier_network::PolicyRules`) — networking.k8s.io/v1 semantics:
//!
//! - A pod is isolated for ingress (egress) when a policy of its namespace selects it and
//!   names that direction in `policyTypes` (default: Ingress, plus Egress when the policy has
//!   egress rules). It may then receive (send) only what a rule of one such policy allows.
//! - A rule allows traffic from any of its peers (`from`/`to`; none: everyone) on any of its
//!   ports (none: every port and protocol). A peer is pods by `podSelector` in the policy's
//!   namespace, or in the namespaces `namespaceSelector` picks (both: pods of those
//!   namespaces that match), or an `ipBlock` minus its `except`s.
//! - A port is a protocol (TCP by default), a number with an optional `endPort`, or a
//!   container port's name — resolved on the pod receiving the traffic: the isolated pod for
//!   ingress, each destination pod for egress.
//!
//! Pods without an IPv4 address, terminated ones (their address may go to another pod) and
//! host-network ones (they have the node's address) are no one's peers and never isolated.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use timonier_network::policy::{merge_ranges, subtract};
use timonier_network::{Allow, IpRange, Ipv4Net, PodPolicy, PolicyRules, PortRange, Protocol};

/// The label every namespace carries with its own name (set by the API server).
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Whether `selector` selects an object with `labels` (an empty selector selects all).
pub(crate) fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if !selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // Refused by validation; select nothing rather than everything.
            _ => false,
        }
    })
}

/// A pod that can be a peer.
struct Peer<'a> {
    ns: &'a str,
    labels: &'a BTreeMap<String, String>,
    ip: Ipv4Addr,
    pod: &'a Pod,
}

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        return None;
    }
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    status.pod_ip.as_deref().into_iter().chain(listed).find_map(|ip| ip.parse().ok())
}

/// The container port of `pod` named `name` for `protocol`.
fn named_port(pod: &Pod, name: &str, protocol: Protocol) -> Option<u16> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers.iter().flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
        let proto = Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"));
        (p.name.as_deref() == Some(name) && proto == Some(protocol)).then(|| u16::try_from(p.container_port).ok()).flatten()
    })
}

/// A policy port: numbers, or a name each receiving pod resolves.
enum PortSpec {
    Range(PortRange),
    Named(Protocol, String),
}

/// A rule's ports; `None`: every port and protocol.
fn port_specs(ports: Option<&Vec<NetworkPolicyPort>>) -> Option<Vec<PortSpec>> {
    let ports = ports.filter(|p| !p.is_empty())?;
    Some(
        ports
            .iter()
            .filter_map(|p| {
                // A protocol this node cannot match allows nothing.
                let protocol = Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?;
                match &p.port {
                    None => Some(PortSpec::Range(PortRange::all(protocol))),
                    Some(IntOrString::Int(n)) => {
                        let first = u16::try_from(*n).ok().filter(|n| *n > 0)?;
                        let last = p.end_port.and_then(|e| u16::try_from(e).ok()).filter(|e| *e >= first).unwrap_or(first);
                        Some(PortSpec::Range(PortRange { protocol, first, last }))
                    }
                    Some(IntOrString::String(name)) => Some(PortSpec::Named(protocol, name.clone())),
                }
            })
            .collect(),
    )
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Direction {
    Ingress,
    Egress,
}

/// Whether `policy` isolates the pods it selects in `dir` (upstream's policyTypes default).
fn affects(policy: &NetworkPolicy, dir: Direction) -> bool {
    let Some(spec) = &policy.spec else { return false };
    match spec.policy_types.as_deref().filter(|t| !t.is_empty()) {
        Some(types) => types.iter().any(|t| t == if dir == Direction::Ingress { "Ingress" } else { "Egress" }),
        None => dir == Direction::Ingress || spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
    }
}

/// A rule's peers, resolved: the addresses (`None`: any), and the pods among them (for
/// egress named ports).
struct Resolved<'a> {
    ranges: Option<Vec<IpRange>>,
    pods: Vec<&'a Peer<'a>>,
}

struct Cluster<'a> {
    peers: Vec<Peer<'a>>,
    namespaces: HashMap<&'a str, &'a BTreeMap<String, String>>,
}

impl<'a> Cluster<'a> {
    fn namespace_selected(&self, selector: &LabelSelector, ns: &str) -> bool {
        match self.namespaces.get(ns) {
            Some(labels) => selects(selector, labels),
            // Not in the cache yet: it has at least its name label.
            None => selects(selector, &BTreeMap::from([(NAME_LABEL.to_string(), ns.to_string())])),
        }
    }

    fn resolve(&self, policy_ns: &str, peers: Option<&Vec<NetworkPolicyPeer>>) -> Resolved<'_> {
        let Some(peers) = peers.filter(|p| !p.is_empty()) else {
            return Resolved { ranges: None, pods: self.peers.iter().collect() };
        };
        let mut ranges = Vec::new();
        let mut pods: Vec<&Peer> = Vec::new();
        for peer in peers {
            if let Some(block) = &peer.ip_block {
                // IPv6 blocks never match this IPv4-only pod network.
                let Ok(cidr) = block.cidr.parse::<Ipv4Net>() else { continue };
                let except: Vec<IpRange> = block.except.iter().flatten().filter_map(|e| e.parse::<Ipv4Net>().ok()).map(IpRange::net).collect();
                let allowed = subtract(IpRange::net(cidr), &except);
                pods.extend(self.peers.iter().filter(|p| allowed.iter().any(|r| r.contains(p.ip))));
                ranges.extend(allowed);
                continue;
            }
            if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
                continue;
            }
            for p in &self.peers {
                let ns_ok = match &peer.namespace_selector {
                    Some(sel) => self.namespace_selected(sel, p.ns),
                    None => p.ns == policy_ns,
                };
                let pod_ok = peer.pod_selector.as_ref().is_none_or(|sel| selects(sel, p.labels));
                if ns_ok && pod_ok {
                    ranges.push(IpRange::host(p.ip));
                    pods.push(p);
                }
            }
        }
        Resolved { ranges: Some(merge_ranges(ranges)), pods }
    }
}

/// What one rule of a policy allows `pod` (in `dir`), if anything.
fn allows(dir: Direction, pod: &Pod, peers: &Resolved, ports: Option<&Vec<NetworkPolicyPort>>) -> Vec<Allow> {
    if peers.ranges.as_ref().is_some_and(Vec::is_empty) {
        return vec![];
    }
    let Some(specs) = port_specs(ports) else {
        return vec![Allow::Peers { peers: peers.ranges.clone(), ports: None }];
    };
    let mut numeric = Vec::new();
    let mut endpoints = Vec::new();
    for spec in &specs {
        match spec {
            PortSpec::Range(r) => numeric.push(*r),
            PortSpec::Named(proto, name) if dir == Direction::Ingress => {
                numeric.extend(named_port(pod, name, *proto).map(|n| PortRange { protocol: *proto, first: n, last: n }));
            }
            PortSpec::Named(proto, name) => {
                endpoints.extend(peers.pods.iter().filter_map(|p| named_port(p.pod, name, *proto).map(|n| (p.ip, *proto, n))));
            }
        }
    }
    let mut out = Vec::new();
    if !numeric.is_empty() {
        out.push(Allow::Peers { peers: peers.ranges.clone(), ports: Some(numeric) });
    }
    if !endpoints.is_empty() {
        endpoints.sort_unstable();
        endpoints.dedup();
        out.push(Allow::Endpoints(endpoints));
    }
    out
}

/// The rules for the pods of this node (those with an address in `pod_cidr`).
pub(crate) fn compute(pod_cidr: Ipv4Net, policies: &[Arc<NetworkPolicy>], pods: &[Arc<Pod>], namespaces: &[Arc<Namespace>]) -> PolicyRules {
    let mut policies: Vec<&NetworkPolicy> = policies.iter().map(|p| p.as_ref()).collect();
    // The cache's order is arbitrary; the result must not be, so that an unchanged cluster
    // is recognised as such and not rewritten.
    policies.sort_by(|a, b| (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name)));
    let empty = BTreeMap::new();
    let mut peers: Vec<Peer> = pods
        .iter()
        .filter_map(|p| {
            let ns = p.metadata.namespace.as_deref()?;
            Some(Peer { ns, labels: p.metadata.labels.as_ref().unwrap_or(&empty), ip: pod_ip(p)?, pod: p.as_ref() })
        })
        .collect();
    peers.sort_by_key(|p| p.ip);
    let namespaces = namespaces.iter().filter_map(|n| Some((n.metadata.name.as_deref()?, n.metadata.labels.as_ref().unwrap_or(&empty)))).collect();
    let cluster = Cluster { peers, namespaces };
    let mut resolved: HashMap<(usize, Direction, usize), Resolved> = HashMap::new();
    let mut out = PolicyRules::default();
    for local in cluster.peers.iter().filter(|p| pod_cidr.contains(p.ip)) {
        for dir in [Direction::Ingress, Direction::Egress] {
            let mut isolated = false;
            let mut allow = Vec::new();
            for (i, policy) in policies.iter().enumerate() {
                let Some(spec) = &policy.spec else { continue };
                if policy.metadata.namespace.as_deref() != Some(local.ns) || !affects(policy, dir) || !spec.pod_selector.as_ref().is_none_or(|s| selects(s, local.labels)) {
                    continue;
                }
                isolated = true;
                let rules: Vec<(Option<&Vec<NetworkPolicyPeer>>, Option<&Vec<NetworkPolicyPort>>)> = match dir {
                    Direction::Ingress => spec.ingress.iter().flatten().map(|r| (r.from.as_ref(), r.ports.as_ref())).collect(),
                    Direction::Egress => spec.egress.iter().flatten().map(|r| (r.to.as_ref(), r.ports.as_ref())).collect(),
                };
                for (j, (from, ports)) in rules.into_iter().enumerate() {
                    let peers = resolved.entry((i, dir, j)).or_insert_with(|| cluster.resolve(local.ns, from));
                    allow.extend(allows(dir, local.pod, peers, ports));
                }
            }
            if isolated {
                allow.sort();
                allow.dedup();
                let list = if dir == Direction::Ingress { &mut out.ingress } else { &mut out.egress };
                list.push(PodPolicy { pod: local.ip, allow });
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
