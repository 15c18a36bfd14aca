//! The taint eviction controller (upstream's `pkg/controller/tainteviction`, the
//! NoExecuteTaintManager): a pod on a node with NoExecute taints is deleted at once if one of
//! them is not tolerated, after the smallest `tolerationSeconds` of the tolerations used if
//! all are, and never if those tolerate forever. Before the delete it gets the
//! `DisruptionTarget` condition (reason `DeletionByTaintManager`) and a `TaintManagerEviction`
//! event; a scheduled deletion whose reason goes away is cancelled with another.
//!
//! The countdown of a pod starts when this controller first sees it under the taints (as
//! upstream), or earlier — at the newest of the taints' `timeAdded` and the pod's binding —
//! so that a restarted controller resumes the countdowns instead of starting them over.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition, Taint};
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};
use timonier_client::{EventType, Recorder};
use tokio::time::Instant;

use super::{matching_tolerations, patch_pod_status, set_pod_condition, since, taints_of, Snapshot};

/// How a pod's taints and tolerations decide its fate.
#[derive(Debug, PartialEq)]
pub(super) enum Fate {
    /// No NoExecute taint, or tolerated forever.
    Stay,
    /// Deleted `after` this long from when the countdown started.
    DeleteAfter(Duration),
}

/// Upstream's `processPodOnNode` decision: `taints` are the node's NoExecute taints.
pub(super) fn fate(pod: &Pod, taints: &[Taint]) -> Fate {
    if taints.is_empty() {
        return Fate::Stay;
    }
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
    let Some(used) = matching_tolerations(taints, tolerations) else { return Fate::DeleteAfter(Duration::ZERO) };
    // getMinTolerationTime: the smallest tolerationSeconds (≤ 0 is at once), none is forever.
    let mut min: Option<i64> = None;
    for t in used {
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return Fate::DeleteAfter(Duration::ZERO);
            }
            min = Some(min.map_or(s, |m: i64| m.min(s)));
        }
    }
    match min {
        None => Fate::Stay,
        Some(s) => Fate::DeleteAfter(Duration::from_secs(s as u64)),
    }
}

/// When a pod's countdown starts if this controller has not started it yet: now, less the
/// time since the node's newest NoExecute taint was added or since the pod was bound,
/// whichever is more recent.
pub(super) fn countdown_start(pod: &Pod, taints: &[Taint], now: jiff::Timestamp) -> Duration {
    let tainted = taints.iter().filter_map(|t| t.time_added.as_ref().map(|t| t.0)).max();
    let bound = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled" && c.status == "True"))
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let start = match (tainted, bound) {
        (Some(t), Some(b)) => t.max(b),
        (Some(t), None) => t,
        // A taint without its time: from now, as upstream.
        (None, _) => return Duration::ZERO,
    };
    // The timestamps are whole seconds: the latest moment of that second, so that a pod is
    // never deleted before its toleration has run out.
    since(now, start.checked_add(jiff::SignedDuration::from_secs(1)).unwrap_or(start))
}

struct Scheduled {
    uid: String,
    fire_at: Instant,
}

pub(super) struct TaintEviction {
    client: Client,
    recorder: Recorder,
    /// Pending deletions by `namespace/name` (upstream's timed worker queue).
    scheduled: HashMap<String, Scheduled>,
    /// Uids of pods this controller deleted: not deleted twice.
    fired: HashSet<String>,
}

impl TaintEviction {
    pub fn new(client: Client) -> TaintEviction {
        let recorder = Recorder::new(client.clone(), "taint-eviction-controller", None);
        TaintEviction { client, recorder, scheduled: HashMap::new(), fired: HashSet::new() }
    }

    async fn emit(&self, pod: &Pod, message: String) {
        self.recorder.pod_event(pod, None, EventType::Normal, "TaintManagerEviction", &message).await;
    }

    async fn cancel(&mut self, key: &str, pod: Option<&Pod>) {
        if self.scheduled.remove(key).is_some() {
            tracing::info!(pod = %key, "cancelling the pod's taint eviction");
            if let Some(p) = pod {
                self.emit(p, format!("Cancelling deletion of Pod {key}")).await;
            }
        }
    }

    /// One pass over the pods of nodes with NoExecute taints (upstream's taint manager looks
    /// at no other): schedules, cancels and fires deletions. Returns when the next scheduled
    /// one is due.
    pub async fn pass(&mut self, snap: &Snapshot) -> Option<Instant> {
        let tainted: Vec<(&str, Vec<Taint>)> = snap
            .nodes
            .iter()
            .filter_map(|n| {
                let taints: Vec<Taint> = taints_of(n).iter().filter(|t| t.effect == "NoExecute").cloned().collect();
                Some((n.metadata.name.as_deref()?, taints)).filter(|(_, t)| !t.is_empty())
            })
            .collect();
        if tainted.is_empty() && self.scheduled.is_empty() {
            self.fired.clear();
            return None;
        }
        let now = Instant::now();
        let wall = jiff::Timestamp::now();
        let mut live: HashSet<String> = HashSet::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut due: Vec<Arc<Pod>> = Vec::new();
        for (node_name, taints) in &tainted {
            for pod in snap.pods_on(node_name) {
                let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                let uid = pod.uid().unwrap_or_default();
                live.insert(uid.clone());
                seen.insert(key.clone());
                if self.scheduled.get(&key).is_some_and(|s| s.uid != uid) {
                    // Another pod of the same name: the old one's deletion is moot.
                    self.scheduled.remove(&key);
                }
                // Already on its way out: deleting it again would only repeat the event.
                if pod.metadata.deletion_timestamp.is_some() || self.fired.contains(&uid) {
                    self.scheduled.remove(&key);
                    continue;
                }
                match fate(pod, taints) {
                    Fate::Stay => self.cancel(&key, Some(pod)).await,
                    Fate::DeleteAfter(d) if d.is_zero() => {
                        self.scheduled.remove(&key);
                        due.push(pod.clone());
                    }
                    Fate::DeleteAfter(d) => {
                        // A countdown already running keeps its start (upstream keeps the
                        // scheduled work while the pod stays tainted).
                        if !self.scheduled.contains_key(&key) {
                            let elapsed = countdown_start(pod, taints, wall);
                            let fire_at = now + d.saturating_sub(elapsed);
                            tracing::info!(pod = %key, node = node_name, in_secs = d.saturating_sub(elapsed).as_secs(), "pod tolerates its node's NoExecute taints for a while; deletion scheduled");
                            self.scheduled.insert(key.clone(), Scheduled { uid: uid.clone(), fire_at });
                        }
                        if self.scheduled.get(&key).is_some_and(|s| s.fire_at <= now) {
                            self.scheduled.remove(&key);
                            due.push(pod.clone());
                        }
                    }
                }
            }
        }
        self.fired.retain(|u| live.contains(u));
        // Countdowns of pods whose node lost its taints are cancelled (with the event); those
        // of pods deleted by someone else, or moved to a node gone from the cache, end silently.
        let untainted: Vec<String> = self.scheduled.keys().filter(|k| !seen.contains(*k)).cloned().collect();
        if !untainted.is_empty() {
            for pod in &snap.pods {
                let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                let on_a_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| snap.node(n).is_some());
                if on_a_node && untainted.contains(&key) {
                    self.cancel(&key, Some(pod)).await;
                }
            }
            self.scheduled.retain(|k, _| seen.contains(k));
        }
        for pod in due {
            self.fire(&pod).await;
        }
        self.scheduled.values().map(|s| s.fire_at).min()
    }

    /// Upstream's `deletePodHandler`: the event, then the condition and the delete, retried.
    async fn fire(&mut self, pod: &Pod) {
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        tracing::info!(pod = %key, "deleting the pod of a node tainted NoExecute");
        self.emit(pod, format!("Marking for deletion Pod {key}")).await;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        for attempt in 0..5 {
            match self.condition_and_delete(&api, pod).await {
                Ok(()) => {
                    self.fired.insert(pod.uid().unwrap_or_default());
                    return;
                }
                Err(kube::Error::Api(e)) if e.code == 404 => return,
                Err(e) => {
                    tracing::debug!(pod = %key, attempt, error = %e, "taint eviction failed; retrying");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        tracing::warn!(pod = %key, "cannot delete the pod of a node tainted NoExecute; will retry");
    }

    /// Upstream's `addConditionAndDeletePod`, on the pod as it is now.
    async fn condition_and_delete(&self, api: &Api<Pod>, cached: &Pod) -> Result<(), kube::Error> {
        let pod = api.get(&cached.name_any()).await?;
        if pod.uid() != cached.uid() {
            return Ok(());
        }
        let mut conditions: Vec<PodCondition> = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let cond = PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            ..Default::default()
        };
        if set_pod_condition(&mut conditions, cond, jiff::Timestamp::now()) {
            let only: Vec<PodCondition> = conditions.into_iter().filter(|c| c.type_ == "DisruptionTarget").collect();
            patch_pod_status(&self.client, &pod, &only, None).await?;
        }
        api.delete(&pod.name_any(), &DeleteParams::default()).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"containers": [], "nodeName": "n", "tolerations": tolerations},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:05Z"}]},
        }))
        .unwrap()
    }

    fn unreachable(added: Option<&str>) -> Taint {
        serde_json::from_value(json!({"key": super::super::TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": added})).unwrap()
    }

    #[test]
    fn fates_follow_tolerations() {
        let taints = [unreachable(None)];
        assert_eq!(fate(&pod(json!([])), &[]), Fate::Stay);
        assert_eq!(fate(&pod(json!([])), &taints), Fate::DeleteAfter(Duration::ZERO), "not tolerated: at once");
        let defaults = json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ]);
        assert_eq!(fate(&pod(defaults), &taints), Fate::DeleteAfter(Duration::from_secs(300)));
        assert_eq!(fate(&pod(json!([{"operator": "Exists"}])), &taints), Fate::Stay, "tolerated forever");
        assert_eq!(fate(&pod(json!([{"operator": "Exists", "tolerationSeconds": 0}])), &taints), Fate::DeleteAfter(Duration::ZERO));
        let other = serde_json::from_value::<Taint>(json!({"key": "maintenance", "effect": "NoExecute"})).unwrap();
        let both = [unreachable(None), other];
        assert_eq!(fate(&pod(json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 5}])), &both), Fate::DeleteAfter(Duration::ZERO), "one taint not tolerated");
        let two = json!([{"key": "maintenance", "operator": "Exists", "tolerationSeconds": 60}, {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 5}]);
        assert_eq!(fate(&pod(two), &both), Fate::DeleteAfter(Duration::from_secs(5)), "the smallest of the tolerations used");
    }

    #[test]
    fn countdowns_start_at_the_taint_or_the_binding() {
        let now: jiff::Timestamp = "2025-01-01T00:01:00Z".parse().unwrap();
        let p = pod(json!([]));
        assert_eq!(countdown_start(&p, &[unreachable(Some("2025-01-01T00:00:50Z"))], now), Duration::from_secs(9));
        assert_eq!(countdown_start(&p, &[unreachable(Some("2025-01-01T00:00:01Z"))], now), Duration::from_secs(54), "bound after the taint");
        assert_eq!(countdown_start(&p, &[unreachable(Some("2025-01-01T00:01:00Z"))], now), Duration::ZERO, "tainted this very second");
        assert_eq!(countdown_start(&p, &[unreachable(None)], now), Duration::ZERO);
    }
}
