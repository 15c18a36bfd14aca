//! The score plugins that look at one node and the pod alone — NodeResourcesFit (least
//! allocated), NodeResourcesBalancedAllocation, TaintToleration, NodeAffinity (preferred
//! terms), ImageLocality — with upstream's integer arithmetic and normalizations, and the
//! default profile's weights.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Toleration;

use crate::filters::{term_matches, tolerates};
use crate::node_info::{NodeInfo, Usage};
use crate::pod_info::PodInfo;

pub const MAX_NODE_SCORE: i64 = 100;

/// The default profile's score weights.
pub const WEIGHT_TAINT_TOLERATION: i64 = 3;
pub const WEIGHT_NODE_AFFINITY: i64 = 2;
pub const WEIGHT_FIT: i64 = 1;
pub const WEIGHT_SPREAD: i64 = 2;
pub const WEIGHT_INTER_POD_AFFINITY: i64 = 2;
pub const WEIGHT_BALANCED: i64 = 1;
pub const WEIGHT_IMAGE_LOCALITY: i64 = 1;

/// NodeResourcesFit's LeastAllocated on cpu and memory (weights 1), with the pod's and the
/// node's requests defaulted for containers that request nothing.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo, usage: &Usage) -> i64 {
    let least = |requested: i64, capacity: i64| if requested > capacity { 0 } else { (capacity - requested) * MAX_NODE_SCORE / capacity };
    let mut sum = 0;
    let mut n = 0;
    for (requested, capacity) in [(usage.nonzero.milli_cpu + pod.nonzero.milli_cpu, node.allocatable.milli_cpu), (usage.nonzero.memory + pod.nonzero.memory, node.allocatable.memory)] {
        if capacity != 0 {
            sum += least(requested, capacity);
            n += 1;
        }
    }
    if n == 0 {
        0
    } else {
        sum / n
    }
}

/// A best-effort pod (no cpu or memory request) is not scored by BalancedAllocation, so that
/// many of them do not pile onto one node (upstream issue 129138).
pub fn balanced_applies(pod: &PodInfo) -> bool {
    pod.requests.milli_cpu != 0 || pod.requests.memory != 0
}

/// NodeResourcesBalancedAllocation: 100 × (1 − the standard deviation of the cpu and memory
/// fractions) after placing the pod, on actual requests.
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo, usage: &Usage) -> i64 {
    let mut fractions = vec![];
    for (requested, capacity) in [(usage.requested.milli_cpu + pod.requests.milli_cpu, node.allocatable.milli_cpu), (usage.requested.memory + pod.requests.memory, node.allocatable.memory)] {
        if capacity != 0 {
            fractions.push((requested as f64 / capacity as f64).min(1.0));
        }
    }
    let std = if fractions.len() == 2 { ((fractions[0] - fractions[1]) / 2.0).abs() } else { 0.0 };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// TaintToleration's raw score: the PreferNoSchedule taints the pod does not tolerate
/// (normalized reversed: fewer is better).
pub fn intolerable_prefer_no_schedule(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let counted = |tol: &&Toleration| tol.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule");
    node.taints.iter().filter(|t| t.effect == "PreferNoSchedule" && !pod.tolerations.iter().filter(counted).any(|tol| tolerates(tol, t))).count() as i64
}

/// NodeAffinity's raw score: the weights of the preferred terms the node matches.
pub fn preferred_node_affinity(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let preferred = pod.pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).and_then(|a| a.node_affinity.as_ref()).and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref());
    preferred.into_iter().flatten().filter(|t| t.weight != 0 && term_matches(&t.preference, node)).map(|t| i64::from(t.weight)).sum()
}

pub fn has_preferred_node_affinity(pod: &PodInfo) -> bool {
    let preferred = pod.pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).and_then(|a| a.node_affinity.as_ref()).and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref());
    preferred.is_some_and(|p| !p.is_empty())
}

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// ImageLocality: the sizes of the pod's images already on the node, each scaled by the share
/// of nodes that have it (so that an image everywhere does not pull pods to one node), between
/// 23 MB and 1000 MB per container.
pub fn image_locality(pod: &PodInfo, node: &NodeInfo, image_nodes: &HashMap<String, u32>, total_nodes: usize) -> i64 {
    if pod.images.is_empty() || total_nodes == 0 {
        return 0;
    }
    let mut sum: i64 = 0;
    for image in &pod.images {
        if let Some(size) = node.images.get(image) {
            let spread = f64::from(image_nodes.get(image).copied().unwrap_or(1)) / total_nodes as f64;
            sum += (*size as f64 * spread) as i64;
        }
    }
    let max = MAX_CONTAINER_THRESHOLD * pod.images.len() as i64;
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

/// Upstream's `helper.DefaultNormalizeScore`: scaled so that the largest is 100 (reversed:
/// the largest becomes 0; all zero: all 100).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
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

    #[test]
    fn resource_scores_as_upstream() {
        // 2 CPUs and 4 GiB, a pod asking 1 CPU and 1 GiB: cpu (2000-1000)*100/2000 = 50,
        // memory 75, averaged.
        let n = NodeInfo::new(Arc::new(node("n", json!({}))));
        let p = info(pod(json!({"spec": {"containers": [{"name": "c", "image": "b", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}})));
        assert_eq!(least_allocated(&p, &n, &Usage::default()), (50 + 75) / 2);
        // cpu 0.5 used, memory 0.25: std 0.125 → 87.
        assert_eq!(balanced_allocation(&p, &n, &Usage::default()), 87);
        let best_effort = info(pod(json!({})));
        assert!(!balanced_applies(&best_effort) && balanced_applies(&p));
        // Defaults (100m, 200Mi) count for best-effort pods in least allocated.
        assert_eq!(least_allocated(&best_effort, &n, &Usage::default()), ((1900 * 100 / 2000) + ((4096 - 200) * 100 / 4096)) / 2);
    }

    #[test]
    fn taint_and_node_affinity_scores() {
        let tainted = NodeInfo::new(Arc::new(node("n", json!({"spec": {"taints": [{"key": "a", "value": "1", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}]}}))));
        assert_eq!(intolerable_prefer_no_schedule(&info(pod(json!({}))), &tainted), 2);
        let tolerant = info(pod(json!({"spec": {"tolerations": [{"key": "a", "value": "1", "effect": "PreferNoSchedule"}, {"key": "b", "operator": "Exists", "effect": "NoSchedule"}]}})));
        assert_eq!(intolerable_prefer_no_schedule(&tolerant, &tainted), 1);
        let mut s = vec![0, 1, 2];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 50, 0]);
        let mut s = vec![0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 100]);
        let mut s = vec![0, 3, 6];
        default_normalize(&mut s, false);
        assert_eq!(s, [0, 50, 100]);
        let ssd = NodeInfo::new(Arc::new(node("n", json!({"metadata": {"labels": {"disk": "ssd", "zone": "a"}}}))));
        let p = info(pod(json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 3, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}},
            {"weight": 2, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}]}}}})));
        assert_eq!(preferred_node_affinity(&p, &ssd), 7);
    }

    #[test]
    fn image_locality_as_upstream() {
        let with_image = |size: i64| NodeInfo::new(Arc::new(node("n", json!({"status": {"images": [{"names": ["gcr.io/250:latest"], "sizeBytes": size}]}}))));
        let p = info(pod(json!({"spec": {"containers": [{"name": "c", "image": "gcr.io/250"}]}})));
        let counts: HashMap<String, u32> = [("gcr.io/250:latest".to_string(), 1)].into();
        // 250 MB on one node of one: (250-23)/(1000-23) → 23.
        assert_eq!(image_locality(&p, &with_image(250 * MB), &counts, 1), 23);
        // On one node of two: 125 MB → 10.
        assert_eq!(image_locality(&p, &with_image(250 * MB), &counts, 2), 10);
        // Small images score nothing.
        assert_eq!(image_locality(&p, &with_image(10 * MB), &counts, 1), 0);
        assert_eq!(image_locality(&info(pod(json!({}))), &with_image(250 * MB), &counts, 1), 0);
    }
}
