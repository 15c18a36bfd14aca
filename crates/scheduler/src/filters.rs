//! Where a pod may go and where it fits best: kube-scheduler's default filter plugins, in its
//! order (NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit), each
//! node stopping at its first failing plugin as upstream's framework does, and its
//! NodeResourcesFit (least allocated) and NodeResourcesBalancedAllocation scores. Pure
//! functions over typed objects; the loop in `lib.rs` feeds them its caches.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use timonier_api::printers::quantity_value;

/// What scoring assumes a container without requests uses (upstream's
/// `DefaultMilliCPURequest` and `DefaultMemoryRequest`), so that best-effort pods spread.
const DEFAULT_CPU: f64 = 0.1;
const DEFAULT_MEMORY: f64 = 200.0 * 1024.0 * 1024.0;

/// The resources a pod asks for, or a node has room for.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    pub cpu: f64,
    pub memory: f64,
    pub ephemeral_storage: f64,
    pub pods: f64,
    /// cpu and memory with upstream's defaults for containers that request none (scoring only).
    pub score_cpu: f64,
    pub score_memory: f64,
}

impl Resources {
    pub fn add(&mut self, o: &Resources) {
        self.cpu += o.cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.pods += o.pods;
        self.score_cpu += o.score_cpu;
        self.score_memory += o.score_memory;
    }
}

fn value(q: Option<&Quantity>) -> Option<f64> {
    q.and_then(|q| quantity_value(&q.0))
}

/// A pod's effective requests as upstream computes them: the larger of the app containers'
/// sum and the largest init container, plus the pod overhead. A container with limits but no
/// requests requests its limits (API defaulting does the same).
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = &pod.spec else { return Resources::default() };
    let container = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref();
        let get = |name: &str| value(r.and_then(|r| r.requests.as_ref()).and_then(|m| m.get(name))).or_else(|| value(r.and_then(|r| r.limits.as_ref()).and_then(|m| m.get(name))));
        let (cpu, memory) = (get("cpu"), get("memory"));
        Resources {
            cpu: cpu.unwrap_or(0.0),
            memory: memory.unwrap_or(0.0),
            ephemeral_storage: get("ephemeral-storage").unwrap_or(0.0),
            pods: 0.0,
            score_cpu: cpu.unwrap_or(DEFAULT_CPU),
            score_memory: memory.unwrap_or(DEFAULT_MEMORY),
        }
    };
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&container(c));
    }
    for c in spec.init_containers.iter().flatten() {
        let i = container(c);
        sum.cpu = sum.cpu.max(i.cpu);
        sum.memory = sum.memory.max(i.memory);
        sum.ephemeral_storage = sum.ephemeral_storage.max(i.ephemeral_storage);
    }
    if let Some(o) = &spec.overhead {
        sum.cpu += value(o.get("cpu")).unwrap_or(0.0);
        sum.memory += value(o.get("memory")).unwrap_or(0.0);
    }
    sum.pods = 1.0;
    sum
}

/// A node's allocatable resources.
pub fn allocatable(node: &Node) -> Resources {
    let a = node.status.as_ref().and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
    let get = |name: &str| value(a.and_then(|a| a.get(name)));
    let (cpu, memory) = (get("cpu").unwrap_or(0.0), get("memory").unwrap_or(0.0));
    Resources { cpu, memory, ephemeral_storage: get("ephemeral-storage").unwrap_or(f64::MAX), pods: get("pods").unwrap_or(110.0), score_cpu: cpu, score_memory: memory }
}

/// What is already on a node: the requests of the pods bound to it and their host ports.
#[derive(Debug, Default, Clone)]
pub struct NodeUsage {
    pub requested: Resources,
    pub host_ports: HashSet<(String, String, i32)>,
}

impl NodeUsage {
    pub fn add(&mut self, pod: &Pod) {
        self.requested.add(&pod_requests(pod));
        self.host_ports.extend(host_ports(pod));
    }
}

/// (protocol, hostIP, hostPort) of every container port that takes a host port.
fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let Some(spec) = &pod.spec else { return vec![] };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|hp| *hp > 0)?;
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into()), hp))
        })
        .collect()
}

fn ports_conflict(want: &[(String, String, i32)], used: &HashSet<(String, String, i32)>) -> bool {
    want.iter().any(|(proto, ip, port)| used.iter().any(|(p, i, n)| p == proto && n == port && (i == ip || i == "0.0.0.0" || ip == "0.0.0.0")))
}

/// The taints the scheduler sees: the node's own, plus the ones the node lifecycle
/// controller would put on a node that is not ready (this cluster has none yet to do it).
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

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
        let exists = t.operator.as_deref() == Some("Exists");
        let key_ok = match t.key.as_deref() {
            None | Some("") => exists,
            Some(k) => k == taint.key,
        };
        let value_ok = exists || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
        effect_ok && key_ok && value_ok
    })
}

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let v = labels.get(&r.key);
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => v.is_some_and(|v| values.contains(v)),
        "NotIn" => v.is_none_or(|v| !values.contains(v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" => matches!((v.and_then(|v| number(v)), values.first().and_then(|x| number(x))), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((v.and_then(|v| number(v)), values.first().and_then(|x| number(x))), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

fn term_matches(t: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let exprs = t.match_expressions.as_deref().unwrap_or_default();
    let fields = t.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false; // an empty term matches nothing, as upstream
    }
    let mut name = BTreeMap::new();
    name.insert("metadata.name".to_string(), node.metadata.name.clone().unwrap_or_default());
    exprs.iter().all(|r| requirement_matches(r, &labels)) && fields.iter().all(|r| requirement_matches(r, &name))
}

/// nodeSelector and required node affinity.
fn affinity_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = &pod.spec else { return true };
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector {
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        Some(r) => r.node_selector_terms.iter().any(|t| term_matches(t, node)),
        None => true,
    }
}

/// Why `node` cannot take `pod` (upstream's reason strings), or `Ok` when it can.
pub fn filter(pod: &Pod, node: &Node, usage: &NodeUsage) -> Result<(), Vec<String>> {
    let spec = pod.spec.clone().unwrap_or_default();
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let unschedulable_taint = Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) && !tolerates(&tolerations, &unschedulable_taint) {
        return Err(vec!["node(s) were unschedulable".into()]);
    }
    if let Some(t) = taints(node).into_iter().find(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerates(&tolerations, t)) {
        return Err(vec![format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.unwrap_or_default())]);
    }
    if !affinity_matches(pod, node) {
        return Err(vec!["node(s) didn't match Pod's node affinity/selector".into()]);
    }
    if ports_conflict(&host_ports(pod), &usage.host_ports) {
        return Err(vec!["node(s) didn't have free ports for the requested pod ports".into()]);
    }
    let (want, have, used) = (pod_requests(pod), allocatable(node), &usage.requested);
    let mut insufficient = vec![];
    if used.pods + 1.0 > have.pods {
        insufficient.push("Too many pods".to_string());
    }
    for (name, w, h, u) in [("cpu", want.cpu, have.cpu, used.cpu), ("memory", want.memory, have.memory, used.memory), ("ephemeral-storage", want.ephemeral_storage, have.ephemeral_storage, used.ephemeral_storage)] {
        if w > 0.0 && u + w > h {
            insufficient.push(format!("Insufficient {name}"));
        }
    }
    if insufficient.is_empty() {
        Ok(())
    } else {
        Err(insufficient)
    }
}

/// How good a feasible node is, 0–200: least allocated plus balanced allocation, both on
/// cpu and memory after placing the pod.
pub fn score(pod: &Pod, node: &Node, usage: &NodeUsage) -> f64 {
    let (want, have) = (pod_requests(pod), allocatable(node));
    let frac = |used: f64, w: f64, cap: f64| if cap > 0.0 { ((used + w) / cap).min(1.0) } else { 1.0 };
    let cpu = frac(usage.requested.score_cpu, want.score_cpu, have.cpu);
    let mem = frac(usage.requested.score_memory, want.score_memory, have.memory);
    let least = ((1.0 - cpu) + (1.0 - mem)) / 2.0 * 100.0;
    let balanced = (1.0 - (cpu - mem).abs()) * 100.0;
    least + balanced
}

/// Upstream's FitError message: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) were
/// unschedulable. preemption: …`. This scheduler does not preempt: nodes short of resources
/// say that no victims were found, the others that preemption would not help.
pub fn fit_error(nodes: usize, reasons: &[(String, Vec<String>)]) -> String {
    if nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, rs) in reasons {
        for r in rs {
            *histogram.entry(r.as_str()).or_default() += 1;
        }
    }
    // Sorted as strings, counts first, as upstream's sortReasonsHistogram does.
    let mut parts: Vec<String> = histogram.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    let resource_short = reasons.iter().filter(|(_, rs)| rs.iter().any(|r| r.starts_with("Insufficient") || r == "Too many pods")).count();
    let mut post: Vec<String> = vec![];
    if resource_short > 0 {
        post.push(format!("{resource_short} No preemption victims found for incoming pod"));
    }
    if nodes > resource_short {
        post.push(format!("{} Preemption is not helpful for scheduling", nodes - resource_short));
    }
    post.sort();
    format!("0/{nodes} nodes are available: {}. preemption: 0/{nodes} nodes are available: {}.", parts.join(", "), post.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, extra: serde_json::Value) -> Node {
        let mut n = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]},
        });
        merge(&mut n, extra);
        serde_json::from_value(n).unwrap()
    }

    fn pod(extra: serde_json::Value) -> Pod {
        let mut p = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        merge(&mut p, extra);
        serde_json::from_value(p).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn with_requests(cpu: &str, memory: &str) -> Pod {
        pod(json!({"spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}))
    }

    #[test]
    fn resources_fit_and_upstream_reasons() {
        let n = node("n1", json!({}));
        let u = NodeUsage::default();
        assert_eq!(filter(&with_requests("1500m", "1Gi"), &n, &u), Ok(()));
        assert_eq!(filter(&with_requests("3", "1Gi"), &n, &u), Err(vec!["Insufficient cpu".to_string()]));
        let mut used = NodeUsage::default();
        used.add(&with_requests("1", "3Gi"));
        assert_eq!(filter(&with_requests("1500m", "2Gi"), &n, &used), Err(vec!["Insufficient cpu".to_string(), "Insufficient memory".to_string()]));
        // Limits alone count as requests; init containers as the larger of the two.
        let limits = pod(json!({"spec": {"containers": [{"name": "c", "image": "b", "resources": {"limits": {"cpu": "3"}}}]}}));
        assert_eq!(filter(&limits, &n, &u), Err(vec!["Insufficient cpu".to_string()]));
        let init = pod(json!({"spec": {"initContainers": [{"name": "i", "image": "b", "resources": {"requests": {"cpu": "2500m"}}}]}}));
        assert_eq!(pod_requests(&init).cpu, 2.5);
        let small = node("n2", json!({"status": {"allocatable": {"pods": "1"}}}));
        let mut one = NodeUsage::default();
        one.add(&pod(json!({})));
        assert_eq!(filter(&pod(json!({})), &small, &one), Err(vec!["Too many pods".to_string()]));
    }

    #[test]
    fn unschedulable_taints_selectors_and_ports() {
        let u = NodeUsage::default();
        let cordoned = node("n1", json!({"spec": {"unschedulable": true}}));
        assert_eq!(filter(&pod(json!({})), &cordoned, &u), Err(vec!["node(s) were unschedulable".to_string()]));
        let tolerant = pod(json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}));
        assert_eq!(filter(&tolerant, &cordoned, &u), Ok(()));
        let tainted = node("n1", json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}));
        assert_eq!(filter(&pod(json!({})), &tainted, &u), Err(vec!["node(s) had untolerated taint {dedicated: gpu}".to_string()]));
        let ok = pod(json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu"}]}}));
        assert_eq!(filter(&ok, &tainted, &u), Ok(()));
        let not_ready = node("n1", json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(filter(&pod(json!({})), &not_ready, &u), Err(vec!["node(s) had untolerated taint {node.kubernetes.io/not-ready: }".to_string()]));
        let n = node("n1", json!({"metadata": {"labels": {"disk": "ssd", "gen": "5"}}}));
        assert_eq!(filter(&pod(json!({"spec": {"nodeSelector": {"disk": "ssd"}}})), &n, &u), Ok(()));
        assert_eq!(filter(&pod(json!({"spec": {"nodeSelector": {"disk": "hdd"}}})), &n, &u), Err(vec!["node(s) didn't match Pod's node affinity/selector".to_string()]));
        let aff = |op: &str, values: serde_json::Value| {
            pod(json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "gen", "operator": op, "values": values}]}]}}}}}))
        };
        assert_eq!(filter(&aff("Gt", json!(["4"])), &n, &u), Ok(()));
        assert!(filter(&aff("Lt", json!(["4"])), &n, &u).is_err());
        assert_eq!(filter(&aff("In", json!(["5", "6"])), &n, &u), Ok(()));
        assert!(filter(&aff("NotIn", json!(["5"])), &n, &u).is_err());
        let hp = pod(json!({"spec": {"containers": [{"name": "c", "image": "b", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}));
        let mut used = NodeUsage::default();
        used.add(&hp);
        assert_eq!(filter(&hp, &node("n1", json!({})), &used), Err(vec!["node(s) didn't have free ports for the requested pod ports".to_string()]));
    }

    #[test]
    fn scores_prefer_the_emptier_node() {
        let n = node("n1", json!({}));
        let mut busy = NodeUsage::default();
        for _ in 0..5 {
            busy.add(&pod(json!({})));
        }
        assert!(score(&pod(json!({})), &n, &NodeUsage::default()) > score(&pod(json!({})), &n, &busy));
    }

    #[test]
    fn fit_error_as_upstream() {
        let reasons = vec![
            ("a".to_string(), vec!["Insufficient cpu".to_string()]),
            ("b".to_string(), vec!["node(s) were unschedulable".to_string()]),
            ("c".to_string(), vec!["Insufficient cpu".to_string(), "Insufficient memory".to_string()]),
        ];
        assert_eq!(
            fit_error(3, &reasons),
            "0/3 nodes are available: 1 Insufficient memory, 1 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
        assert_eq!(fit_error(0, &[]), "no nodes available to schedule pods");
    }
}
