//! The filter plugins that look at one node and the pod alone, in the default profile's order:
//! NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit. Each returns
//! upstream's status — its reasons and whether preemption could help (`Unschedulable`) or not
//! (`UnschedulableAndUnresolvable`) — the words the FailedScheduling message counts.

use std::borrow::Cow;
use std::collections::HashSet;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};

use crate::node_info::{NodeInfo, Usage};
use crate::pod_info::PodInfo;

/// Reasons are upstream's fixed strings but for a taint's: a status costs no allocation, as
/// most nodes a cycle looks at may fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Could evicting lower-priority pods help? (`Unschedulable` yes, `…AndUnresolvable` no.)
    pub resolvable: bool,
    /// NodeResourcesFit names up to four shortfalls; the other plugins one reason.
    reasons: [Option<Cow<'static, str>>; 4],
}

impl Status {
    fn new(resolvable: bool, reason: impl Into<Cow<'static, str>>) -> Status {
        Status { resolvable, reasons: [Some(reason.into()), None, None, None] }
    }

    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(true, reason)
    }

    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(false, reason)
    }

    pub fn reasons(&self) -> impl Iterator<Item = &str> {
        self.reasons.iter().flatten().map(|r| r.as_ref())
    }
}

pub const ERR_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ERR_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    if t.key.as_deref().is_some_and(|k| !k.is_empty() && k != taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first NoSchedule/NoExecute taint the pod does not tolerate.
pub fn untolerated_taint<'a>(pod: &PodInfo, node: &'a NodeInfo) -> Option<&'a Taint> {
    node.taints.iter().find(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(&pod.tolerations, t))
}

pub fn node_unschedulable(pod: &PodInfo, node: &NodeInfo) -> Option<Status> {
    if !node.unschedulable {
        return None;
    }
    let taint = Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
    (!tolerated(&pod.tolerations, &taint)).then(|| Status::unresolvable(ERR_UNSCHEDULABLE))
}

pub fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> Option<Status> {
    untolerated_taint(pod, node).map(|t| Status::unresolvable(format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.as_deref().unwrap_or(""))))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((value.and_then(|v| number(v)), values.first().and_then(|x| number(x))), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((value.and_then(|v| number(v)), values.first().and_then(|x| number(x))), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

/// A node selector term: its expressions on labels and its fields (only `metadata.name`)
/// ANDed; a term with neither matches nothing, as upstream.
pub fn term_matches(t: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or_default();
    let fields = t.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, node.labels.get(&r.key)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&node.name)))
}

/// nodeSelector and required node affinity (upstream's `GetRequiredNodeAffinity(pod).Match`).
pub fn required_node_affinity(pod: &PodInfo, labels_node: &NodeInfo) -> bool {
    let Some(spec) = &pod.pod.spec else { return true };
    if let Some(sel) = &spec.node_selector {
        if !sel.iter().all(|(k, v)| labels_node.labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, labels_node)))
}

/// Whether the pod has a nodeSelector or required node affinity at all.
pub fn has_required_node_affinity(pod: &PodInfo) -> bool {
    let Some(spec) = &pod.pod.spec else { return false };
    spec.node_selector.as_ref().is_some_and(|s| !s.is_empty())
        || spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref()).is_some()
}

pub fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> Option<Status> {
    (!required_node_affinity(pod, node)).then(|| Status::unresolvable(ERR_NODE_AFFINITY))
}

/// NodeAffinity's PreFilter: when every required term names nodes by `metadata.name In`, only
/// those nodes are candidates (`Ok(Some)`); terms that name disjoint nodes match none
/// (`Err`, upstream's "pod affinity terms conflict").
pub fn node_names(pod: &PodInfo) -> Result<Option<HashSet<String>>, String> {
    let required = pod.pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).and_then(|a| a.node_affinity.as_ref()).and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    let Some(terms) = required.map(|r| &r.node_selector_terms).filter(|t| !t.is_empty()) else { return Ok(None) };
    let mut names: HashSet<String> = HashSet::new();
    for t in terms {
        let mut term_names: Option<HashSet<String>> = None;
        for r in t.match_fields.iter().flatten().filter(|r| r.key == "metadata.name" && r.operator == "In") {
            let s: HashSet<String> = r.values.iter().flatten().cloned().collect();
            term_names = Some(match term_names {
                None => s,
                Some(prev) => prev.intersection(&s).cloned().collect(),
            });
        }
        match term_names {
            // A term without a name requirement admits every node: the terms are ORed.
            None => return Ok(None),
            Some(n) => names.extend(n),
        }
    }
    if names.is_empty() {
        return Err("pod affinity terms conflict".into());
    }
    Ok(Some(names))
}

pub fn node_ports(pod: &PodInfo, usage: &Usage) -> Option<Status> {
    pod.host_ports.iter().any(|p| usage.port_conflict(p)).then(|| Status::unschedulable(ERR_NODE_PORTS))
}

/// NodeResourcesFit: every shortfall named. In 1.33 a request larger than the whole node is
/// still `Unschedulable` (preemption is attempted and finds no victims).
pub fn resources_fit(pod: &PodInfo, node: &NodeInfo, usage: &Usage) -> Option<Status> {
    let (want, have, used) = (&pod.requests, &node.allocatable, &usage.requested);
    let mut reasons: [Option<Cow<'static, str>>; 4] = Default::default();
    let mut n = 0;
    let mut push = |r: &'static str| {
        reasons[n] = Some(Cow::Borrowed(r));
        n += 1;
    };
    if usage.pods + 1 > have.pods {
        push("Too many pods");
    }
    let short = |w: i64, h: i64, u: i64| w > 0 && w > h.saturating_sub(u);
    if short(want.milli_cpu, have.milli_cpu, used.milli_cpu) {
        push("Insufficient cpu");
    }
    if short(want.memory, have.memory, used.memory) {
        push("Insufficient memory");
    }
    if short(want.ephemeral_storage, have.ephemeral_storage, used.ephemeral_storage) {
        push("Insufficient ephemeral-storage");
    }
    (n > 0).then_some(Status { resolvable: true, reasons })
}

/// The node-local filters in order; the first that fails decides, as upstream's framework
/// stops at a node's first failing plugin.
pub fn node_local(pod: &PodInfo, node: &NodeInfo, usage: &Usage) -> Option<Status> {
    node_unschedulable(pod, node)
        .or_else(|| taint_toleration(pod, node))
        .or_else(|| node_affinity(pod, node))
        .or_else(|| node_ports(pod, usage))
        .or_else(|| resources_fit(pod, node, usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    fn info(p: k8s_openapi::api::core::v1::Pod) -> PodInfo {
        PodInfo::new(Arc::new(p))
    }

    fn n(name: &str, extra: serde_json::Value) -> NodeInfo {
        NodeInfo::new(Arc::new(node(name, extra)))
    }

    fn with_requests(cpu: &str, memory: &str) -> PodInfo {
        info(pod(json!({"spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}})))
    }

    fn reasons(s: Option<Status>) -> Vec<String> {
        s.map(|s| s.reasons().map(str::to_string).collect()).unwrap_or_default()
    }

    #[test]
    fn resources_fit_and_upstream_reasons() {
        let node1 = n("n1", json!({}));
        let u = Usage::default();
        assert_eq!(node_local(&with_requests("1500m", "1Gi"), &node1, &u), None);
        assert_eq!(reasons(node_local(&with_requests("3", "1Gi"), &node1, &u)), ["Insufficient cpu"]);
        let mut used = Usage::default();
        used.add(&with_requests("1", "3Gi"));
        assert_eq!(reasons(node_local(&with_requests("1500m", "2Gi"), &node1, &used)), ["Insufficient cpu", "Insufficient memory"]);
        // Limits alone count as requests.
        let limits = info(pod(json!({"spec": {"containers": [{"name": "c", "image": "b", "resources": {"limits": {"cpu": "3"}}}]}})));
        assert_eq!(reasons(node_local(&limits, &node1, &u)), ["Insufficient cpu"]);
        let small = n("n2", json!({"status": {"allocatable": {"pods": "1"}}}));
        let mut one = Usage::default();
        one.add(&info(pod(json!({}))));
        assert_eq!(reasons(node_local(&info(pod(json!({}))), &small, &one)), ["Too many pods"]);
        // Resource shortfalls are for preemption to try; the rest are not.
        assert!(node_local(&with_requests("3", "1Gi"), &node1, &u).is_some_and(|s| s.resolvable));
    }

    #[test]
    fn unschedulable_taints_selectors_and_ports() {
        let u = Usage::default();
        let plain = info(pod(json!({})));
        let cordoned = n("n1", json!({"spec": {"unschedulable": true}}));
        assert_eq!(node_local(&plain, &cordoned, &u), Some(Status::unresolvable("node(s) were unschedulable")));
        let tolerant = info(pod(json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}})));
        assert_eq!(node_local(&tolerant, &cordoned, &u), None);
        let tainted = n("n1", json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}));
        assert_eq!(reasons(node_local(&plain, &tainted, &u)), ["node(s) had untolerated taint {dedicated: gpu}"]);
        let ok = info(pod(json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu"}]}})));
        assert_eq!(node_local(&ok, &tainted, &u), None);
        let wrong_value = info(pod(json!({"spec": {"tolerations": [{"key": "dedicated", "value": "cpu"}]}})));
        assert!(node_local(&wrong_value, &tainted, &u).is_some());
        let everything = info(pod(json!({"spec": {"tolerations": [{"operator": "Exists"}]}})));
        assert_eq!(node_local(&everything, &tainted, &u), None);
        let prefer = n("n1", json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "PreferNoSchedule"}]}}));
        assert_eq!(node_local(&plain, &prefer, &u), None);
        let not_ready = n("n1", json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(reasons(node_local(&plain, &not_ready, &u)), ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]);
        let labelled = n("n1", json!({"metadata": {"labels": {"disk": "ssd", "gen": "5"}}}));
        assert_eq!(node_local(&info(pod(json!({"spec": {"nodeSelector": {"disk": "ssd"}}}))), &labelled, &u), None);
        assert_eq!(node_local(&info(pod(json!({"spec": {"nodeSelector": {"disk": "hdd"}}}))), &labelled, &u), Some(Status::unresolvable(ERR_NODE_AFFINITY)));
        let aff = |op: &str, values: serde_json::Value| {
            info(pod(json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "gen", "operator": op, "values": values}]}]}}}}})))
        };
        assert_eq!(node_local(&aff("Gt", json!(["4"])), &labelled, &u), None);
        assert!(node_local(&aff("Lt", json!(["4"])), &labelled, &u).is_some());
        assert_eq!(node_local(&aff("In", json!(["5", "6"])), &labelled, &u), None);
        assert!(node_local(&aff("NotIn", json!(["5"])), &labelled, &u).is_some());
        let hp = info(pod(json!({"spec": {"containers": [{"name": "c", "image": "b", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}})));
        let mut used = Usage::default();
        used.add(&hp);
        assert_eq!(node_local(&hp, &n("n1", json!({})), &used), Some(Status::unschedulable(ERR_NODE_PORTS)));
        // Another protocol, or another host IP than a specific one, is free.
        let udp = info(pod(json!({"spec": {"containers": [{"name": "c", "image": "b", "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]}]}})));
        assert_eq!(node_local(&udp, &n("n1", json!({})), &used), None);
        let mut on_ip = Usage::default();
        on_ip.add(&info(pod(json!({"spec": {"containers": [{"name": "c", "image": "b", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]}]}}))));
        let other_ip = info(pod(json!({"spec": {"containers": [{"name": "c", "image": "b", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}]}]}})));
        assert_eq!(node_local(&other_ip, &n("n1", json!({})), &on_ip), None);
        assert!(node_local(&hp, &n("n1", json!({})), &on_ip).is_some());
        on_ip.remove(&info(pod(json!({"spec": {"containers": [{"name": "c", "image": "b", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]}]}}))));
        assert_eq!(node_local(&hp, &n("n1", json!({})), &on_ip), None);
    }

    #[test]
    fn node_names_from_match_fields() {
        let by_name = |terms: serde_json::Value| info(pod(json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}})));
        let one = by_name(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]));
        assert_eq!(node_names(&one), Ok(Some(HashSet::from(["a".to_string()]))));
        assert!(node_affinity(&one, &n("a", json!({}))).is_none());
        assert!(node_affinity(&one, &n("b", json!({}))).is_some());
        let conflict = by_name(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}, {"key": "metadata.name", "operator": "In", "values": ["b"]}]}]));
        assert_eq!(node_names(&conflict), Err("pod affinity terms conflict".to_string()));
        let mixed = by_name(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}, {"matchExpressions": [{"key": "x", "operator": "Exists"}]}]));
        assert_eq!(node_names(&mixed), Ok(None));
        assert_eq!(node_names(&info(pod(json!({})))), Ok(None));
    }
}
