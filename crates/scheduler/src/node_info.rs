//! A node as the scheduler needs it (parsed once per version of the Node) and what the pods
//! bound or assumed to it add up to (upstream's `framework.NodeInfo`), kept up to date pod by
//! pod rather than summed per scheduling cycle.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::pod_info::{scaled, HostPort, PodInfo, Requests};
use crate::selector::Labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
}

#[derive(Debug)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    pub labels: Labels,
    pub unschedulable: bool,
    /// The node's taints, plus the one the node lifecycle controller would add while it is
    /// not ready (this cluster has no such controller yet).
    pub taints: Vec<Taint>,
    pub allocatable: Allocatable,
    /// Image name → size in bytes, from `status.images`.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let status = node.status.as_ref();
        let a = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let get = |name: &str, scale: f64| scaled(a.and_then(|a| a.get(name)), scale);
        // A node that does not report ephemeral storage or a pod count is not refused pods
        // for it (our agent reports both; fake nodes in tests may not).
        let allocatable = Allocatable {
            milli_cpu: get("cpu", 1000.0).unwrap_or(0),
            memory: get("memory", 1.0).unwrap_or(0),
            ephemeral_storage: get("ephemeral-storage", 1.0).unwrap_or(i64::MAX),
            pods: get("pods", 1.0).unwrap_or(110),
        };
        let mut images = HashMap::new();
        for i in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for n in i.names.iter().flatten() {
                images.insert(n.clone(), i.size_bytes.unwrap_or(0));
            }
        }
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
            taints: taints(&node),
            allocatable,
            images,
            node,
        }
    }
}

/// The node's taints, and `not-ready`/`unreachable` NoSchedule while its Ready condition is
/// False/Unknown, as the node lifecycle controller would add them.
fn taints(node: &Node) -> Vec<Taint> {
    let mut out: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let ready = node.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready")).map(|c| c.status.clone());
    let implied = match ready.as_deref() {
        Some("True") => None,
        Some("False") => Some("node.kubernetes.io/not-ready"),
        _ => Some("node.kubernetes.io/unreachable"),
    };
    if let Some(key) = implied {
        if !out.iter().any(|t| t.key == key) {
            out.push(Taint { key: key.into(), effect: "NoSchedule".into(), ..Default::default() });
        }
    }
    out
}

/// What the pods on a node add up to.
#[derive(Debug, Default, Clone)]
pub struct Usage {
    pub pods: i64,
    pub requested: Requests,
    pub nonzero: Requests,
    /// Host ports in use, counted (two pods may share a host IP's port on different
    /// protocols, and removing one must not free the other's).
    pub ports: HashMap<HostPort, u32>,
}

impl Usage {
    pub fn add(&mut self, p: &PodInfo) {
        self.pods += 1;
        self.requested.plus(&p.requests);
        self.nonzero.plus(&p.nonzero);
        for hp in &p.host_ports {
            *self.ports.entry(hp.clone()).or_default() += 1;
        }
    }

    pub fn remove(&mut self, p: &PodInfo) {
        self.pods -= 1;
        self.requested.sub(&p.requests);
        self.nonzero.sub(&p.nonzero);
        for hp in &p.host_ports {
            if let Some(n) = self.ports.get_mut(hp) {
                *n -= 1;
                if *n == 0 {
                    self.ports.remove(hp);
                }
            }
        }
    }

    /// Upstream's `HostPortInfo.CheckConflict`: 0.0.0.0 conflicts with every address.
    pub fn port_conflict(&self, want: &HostPort) -> bool {
        self.ports.keys().any(|u| u.protocol == want.protocol && u.port == want.port && (u.ip == want.ip || u.ip == "0.0.0.0" || want.ip == "0.0.0.0"))
    }
}
