//! The pod garbage collector (upstream's `pkg/controller/podgc`): force-deletes, after marking
//! them Failed, the pods nobody else will ever finish:
//! - terminated pods past `--terminated-pod-gc-threshold`, oldest first;
//! - terminating pods on a node that is not Ready and tainted
//!   `node.kubernetes.io/out-of-service` — the administrator's word that the machine is gone
//!   (upstream's non-graceful node shutdown): a pod deleted on an unreachable node otherwise
//!   stays Terminating, since only its kubelet may confirm that its containers stopped;
//! - pods bound to a node that no longer exists, once it has been missing 40 s (with the
//!   `DisruptionTarget` condition, reason `DeletionByPodGC`);
//! - terminating pods that were never scheduled.
//!
//! Upstream checks every 20 s; this runs on every change too (at most once a second), so a
//! taint or a deleted node takes effect at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::{Client, ResourceExt};
use tokio::time::Instant;

use super::{patch_pod_status, set_pod_condition, taints_of, Snapshot, TAINT_OUT_OF_SERVICE};

const CHECK_PERIOD: Duration = Duration::from_secs(20);
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How long a node must be missing from the cache before its pods are orphans.
const QUARANTINE: Duration = Duration::from_secs(40);

fn terminated(pod: &Pod) -> bool {
    !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending"), "Pending" | "Running" | "Unknown")
}

fn node_ready(node: &Node) -> bool {
    super::ready_status(node) == Some("True")
}

/// What the collector would delete now, and why (pure, for tests).
#[derive(Debug, PartialEq)]
pub(super) enum Reason {
    Terminated,
    TerminatingOutOfService,
    Orphaned,
    TerminatingUnscheduled,
}

/// The terminated pods past `threshold`: evicted ones first, then the oldest (upstream's
/// `byEvictionAndCreationTimestamp`).
pub(super) fn over_threshold(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    let mut done: Vec<Arc<Pod>> = pods.iter().filter(|p| terminated(p)).cloned().collect();
    if threshold == 0 || done.len() <= threshold {
        return vec![];
    }
    let evicted = |p: &Pod| p.status.as_ref().is_some_and(|s| s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some("Evicted"));
    done.sort_by(|a, b| {
        evicted(b)
            .cmp(&evicted(a))
            .then_with(|| a.metadata.creation_timestamp.as_ref().map(|t| t.0).cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0)))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    let excess = done.len() - threshold;
    done.truncate(excess);
    done
}

/// Terminating pods on out-of-service nodes and terminating pods never scheduled.
pub(super) fn stuck_terminating(snap: &Snapshot) -> Vec<(Arc<Pod>, Reason)> {
    let mut out = vec![];
    for pod in snap.pods.iter().filter(|p| p.metadata.deletion_timestamp.is_some()) {
        match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()) {
            None => out.push((pod.clone(), Reason::TerminatingUnscheduled)),
            Some(n) => {
                if let Some(node) = snap.node(n) {
                    if !node_ready(node) && taints_of(node).iter().any(|t| t.key == TAINT_OUT_OF_SERVICE) {
                        out.push((pod.clone(), Reason::TerminatingOutOfService));
                    }
                }
            }
        }
    }
    out
}

pub(super) struct PodGc {
    client: Client,
    threshold: usize,
    last: Option<Instant>,
    /// Node names missing from the cache, since when.
    missing: HashMap<String, Instant>,
}

impl PodGc {
    pub fn new(client: Client, threshold: usize) -> PodGc {
        PodGc { client, threshold, last: None, missing: HashMap::new() }
    }

    /// Collects what it can; returns when it wants to run next.
    pub async fn pass(&mut self, snap: &Snapshot) -> Instant {
        let now = Instant::now();
        if let Some(last) = self.last {
            if now < last + MIN_INTERVAL {
                return last + MIN_INTERVAL;
            }
        }
        self.last = Some(now);
        for pod in over_threshold(&snap.pods, self.threshold) {
            self.force_delete(&pod, None, Reason::Terminated).await;
        }
        for (pod, reason) in stuck_terminating(snap) {
            self.force_delete(&pod, None, reason).await;
        }
        let mut next = now + CHECK_PERIOD;
        for pod in self.orphans(snap, now).await {
            let cond = PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("DeletionByPodGC".into()),
                message: Some("PodGC: node no longer exists".into()),
                ..Default::default()
            };
            self.force_delete(&pod, Some(cond), Reason::Orphaned).await;
        }
        if let Some(first) = self.missing.values().min() {
            next = next.min(*first + QUARANTINE);
        }
        next
    }

    /// Upstream's `gcOrphaned`: pods of nodes missing for the quarantine, confirmed gone by
    /// a read of the node itself (the cache may lag).
    async fn orphans(&mut self, snap: &Snapshot, now: Instant) -> Vec<Arc<Pod>> {
        let present: HashSet<&str> = snap.nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect();
        let wanted: HashSet<String> = snap.by_node().keys().filter(|n| !present.contains(n.as_str())).cloned().collect();
        self.missing.retain(|n, _| wanted.contains(n));
        for n in &wanted {
            self.missing.entry(n.clone()).or_insert(now);
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut out = vec![];
        let due: Vec<String> = self.missing.iter().filter(|(_, since)| now >= **since + QUARANTINE).map(|(n, _)| n.clone()).collect();
        for name in due {
            match nodes.get(&name).await {
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    out.extend(snap.pods_on(&name).iter().cloned());
                    self.missing.remove(&name);
                }
                Ok(_) => {
                    self.missing.remove(&name);
                }
                Err(e) => tracing::warn!(node = %name, error = %e, "cannot check whether the node exists"),
            }
        }
        out
    }

    /// Upstream's `markFailedAndDeletePodWithCondition`: phase Failed (and the condition)
    /// first, since no kubelet will ever say how the pod ended, then a delete with no grace.
    async fn force_delete(&self, pod: &Pod, condition: Option<PodCondition>, reason: Reason) {
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        tracing::info!(pod = %key, ?reason, "PodGC is force deleting the pod");
        if !terminated(pod) {
            let mut conditions: Vec<PodCondition> = vec![];
            if let Some(c) = condition {
                let mut all = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
                set_pod_condition(&mut all, c, jiff::Timestamp::now());
                conditions = all.into_iter().filter(|c| c.type_ == "DisruptionTarget").collect();
            }
            if let Err(e) = patch_pod_status(&self.client, pod, &conditions, Some("Failed")).await {
                tracing::warn!(pod = %key, error = %e, "cannot mark the pod Failed before deleting it");
                return;
            }
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let dp = DeleteParams { grace_period_seconds: Some(0), preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }), ..Default::default() };
        match api.delete(&pod.name_any(), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(pod = %key, error = %e, "cannot force delete the pod"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, v: serde_json::Value) -> Arc<Pod> {
        let mut base = json!({"metadata": {"name": name, "namespace": "default", "creationTimestamp": "2025-01-01T00:00:00Z"}, "spec": {"containers": []}});
        if let (Some(b), Some(extra)) = (base.as_object_mut(), v.as_object()) {
            for (k, val) in extra {
                if let (Some(bv), Some(ev)) = (b.get_mut(k).and_then(|x| x.as_object_mut()), val.as_object()) {
                    bv.extend(ev.clone());
                } else {
                    b.insert(k.clone(), val.clone());
                }
            }
        }
        Arc::new(serde_json::from_value(base).unwrap())
    }

    fn snapshot(nodes: Vec<serde_json::Value>, pods: Vec<Arc<Pod>>) -> Snapshot {
        Snapshot::new(nodes.into_iter().map(|n| Arc::new(serde_json::from_value(n).unwrap())).collect(), HashMap::new(), pods)
    }

    #[test]
    fn terminating_pods_go_only_from_out_of_service_nodes() {
        let dead = json!({"metadata": {"name": "dead"}, "spec": {"taints": [{"key": TAINT_OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}]}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let unreachable = json!({"metadata": {"name": "gone"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let terminating = |name: &str, node: Option<&str>| pod(name, json!({"metadata": {"deletionTimestamp": "2025-01-01T00:01:00Z"}, "spec": {"nodeName": node}}));
        let snap = snapshot(
            vec![dead, unreachable],
            vec![terminating("a", Some("dead")), terminating("b", Some("gone")), terminating("c", None), pod("d", json!({"spec": {"nodeName": "dead"}}))],
        );
        let got: Vec<(String, Reason)> = stuck_terminating(&snap).into_iter().map(|(p, r)| (p.name_any(), r)).collect();
        assert_eq!(got, vec![("a".to_string(), Reason::TerminatingOutOfService), ("c".to_string(), Reason::TerminatingUnscheduled)]);
    }

    #[test]
    fn terminated_pods_past_the_threshold_oldest_and_evicted_first() {
        let done = |name: &str, created: &str, reason: Option<&str>| pod(name, json!({"metadata": {"creationTimestamp": created}, "status": {"phase": "Failed", "reason": reason}}));
        let pods = vec![
            done("new", "2025-01-03T00:00:00Z", None),
            done("old", "2025-01-01T00:00:00Z", None),
            done("evicted", "2025-01-04T00:00:00Z", Some("Evicted")),
            pod("running", json!({"status": {"phase": "Running"}})),
        ];
        let names = |v: Vec<Arc<Pod>>| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(over_threshold(&pods, 1)), ["evicted", "old"]);
        assert!(over_threshold(&pods, 3).is_empty());
        assert!(over_threshold(&pods, 0).is_empty(), "0 turns the collection of terminated pods off");
    }
}
