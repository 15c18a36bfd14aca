//! The taints the node lifecycle controller keeps on nodes:
//! - NoSchedule, from the node's conditions and `spec.unschedulable` (upstream's
//!   `doNoScheduleTaintingPass`, TaintNodesByCondition): what the scheduler filters on;
//! - NoExecute `not-ready` / `unreachable` for a node whose Ready condition is False / Unknown
//!   (upstream's `doNoExecuteTaintingPass`): what evicts its pods. These are added at a
//!   rate-limited pace per zone (a token bucket, 0.1 nodes/s with a burst of 1 by default),
//!   swapped for each other at once, and removed as soon as the node is Ready.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::time::Instant;

use super::health::{zone_key, Lifecycle};
use super::{has_taint, same_taint, taint, taints_of, Snapshot, TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE};

/// Condition type → (status → taint key), upstream's `nodeConditionToTaintKeyStatusMap`.
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("NetworkUnavailable", "True", "node.kubernetes.io/network-unavailable"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

/// The NoSchedule taints a node should have from its conditions and `spec.unschedulable`.
pub(super) fn no_schedule_taints(node: &Node) -> Vec<Taint> {
    let mut out = Vec::new();
    for c in node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or(&[]) {
        for (type_, status, key) in CONDITION_TAINTS {
            if c.type_ == type_ && c.status == status {
                out.push(taint(key, "NoSchedule"));
            }
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        out.push(taint(TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    out
}

/// The NoSchedule taints this controller manages that the node has now.
fn managed_no_schedule(node: &Node) -> Vec<Taint> {
    taints_of(node)
        .iter()
        .filter(|t| t.effect == "NoSchedule" && (t.key == TAINT_UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == t.key)))
        .cloned()
        .collect()
}

/// Upstream's `TaintSetDiff`: what to add to `current` and remove from it to get `want`.
pub(super) fn taint_diff(want: &[Taint], current: &[Taint]) -> (Vec<Taint>, Vec<Taint>) {
    let add = want.iter().filter(|w| !current.iter().any(|c| same_taint(c, w))).cloned().collect();
    let remove = current.iter().filter(|c| !want.iter().any(|w| same_taint(c, w))).cloned().collect();
    (add, remove)
}

/// `taints` with `add` added (replacing a same-key-and-effect one) and `remove` removed.
fn apply(taints: &[Taint], add: &[Taint], remove: &[Taint]) -> Vec<Taint> {
    let mut out: Vec<Taint> = taints.iter().filter(|t| !remove.iter().any(|r| same_taint(t, r))).cloned().collect();
    for a in add {
        match out.iter_mut().find(|t| same_taint(t, a)) {
            Some(t) => *t = a.clone(),
            None => out.push(a.clone()),
        }
    }
    out
}

/// Adds `add` (stamped with the time they are added) and removes `remove` from the node's
/// taints (upstream's `SwapNodeControllerTaint`): a merge patch of the whole list guarded by
/// the node's resourceVersion, retried on a fresh read after a conflict. Returns whether the
/// node now has them.
pub(super) async fn swap_taints(client: &Client, cached: &Node, add: &[Taint], remove: &[Taint]) -> bool {
    let api: Api<Node> = Api::all(client.clone());
    let name = cached.name_any();
    let now = Time(jiff::Timestamp::now());
    let add: Vec<Taint> = add.iter().map(|t| Taint { time_added: Some(now.clone()), ..t.clone() }).collect();
    let mut node = cached.clone();
    for attempt in 0..5 {
        if attempt > 0 {
            match api.get(&name).await {
                Ok(n) => node = n,
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "cannot read the node to change its taints");
                    return false;
                }
            }
        }
        let current = taints_of(&node);
        let missing = add.iter().any(|a| !current.iter().any(|t| same_taint(t, a)));
        let present = remove.iter().any(|r| current.iter().any(|t| same_taint(t, r)));
        if !missing && !present {
            return true;
        }
        let taints = apply(current, &add, remove);
        let list = if taints.is_empty() { serde_json::Value::Null } else { json!(taints) };
        let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": list}});
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                let keys = |ts: &[Taint]| ts.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>().join(",");
                tracing::info!(node = %name, added = %keys(&add), removed = %keys(remove), "node taints changed");
                return true;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(kube::Error::Api(e)) if e.code == 404 => return false,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "cannot change the node's taints");
                return false;
            }
        }
    }
    false
}

/// A token bucket (client-go's `NewTokenBucketRateLimiter` with burst 1); a rate of 0 never
/// lets anything through.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket { rate, tokens: 1.0, at: Instant::now() }
    }

    fn refill(&mut self, now: Instant) {
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate).min(1.0);
        self.at = now;
    }

    fn try_accept(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.rate > 0.0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }

    /// When the next token is there, if ever.
    fn next_token(&self) -> Option<Instant> {
        (self.rate > 0.0).then(|| self.at + Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0)))
    }
}

/// The nodes waiting for their NoExecute taint, per zone, in the order they went not Ready
/// (upstream's `zoneNoExecuteTainter`, a rate-limited timed queue).
pub(super) struct Tainter {
    default_rate: f64,
    zones: HashMap<String, (Bucket, VecDeque<String>)>,
}

impl Tainter {
    pub fn new(default_rate: f64) -> Tainter {
        Tainter { default_rate, zones: HashMap::new() }
    }

    fn zone(&mut self, zone: &str) -> &mut (Bucket, VecDeque<String>) {
        let rate = self.default_rate;
        self.zones.entry(zone.to_string()).or_insert_with(|| (Bucket::new(rate), VecDeque::new()))
    }

    /// Upstream's `SwapLimiter`: a new bucket at `rate` (full, as client-go's is).
    pub fn set_rate(&mut self, zone: &str, rate: f64) {
        let z = self.zone(zone);
        if z.0.rate != rate {
            z.0 = Bucket::new(rate);
        }
    }

    pub fn forget(&mut self, node: &str) {
        for (_, q) in self.zones.values_mut() {
            q.retain(|n| n != node);
        }
    }

    /// Upstream's `processTaintBaseEviction` for a node as it now is: queue it for its
    /// NoExecute taint, swap the opposite one at once, or untaint it when Ready.
    pub async fn observe(&mut self, client: &Client, node: &Node, zone: &str) {
        let name = node.name_any();
        let not_ready = taint(TAINT_NOT_READY, "NoExecute");
        let unreachable = taint(TAINT_UNREACHABLE, "NoExecute");
        let (want, opposite) = match super::ready_status(node) {
            Some("False") => (not_ready, unreachable),
            Some("Unknown") => (unreachable, not_ready),
            Some("True") => {
                self.mark_reachable(client, node).await;
                return;
            }
            _ => return,
        };
        if has_taint(node, &opposite) {
            // The node was already tainted for the other reason: no need to wait for a token.
            if !swap_taints(client, node, &[want], &[opposite]).await {
                tracing::warn!(node = %name, "cannot swap the node's NoExecute taint; will retry");
            }
            return;
        }
        if has_taint(node, &want) {
            return;
        }
        let (_, queue) = self.zone(zone);
        if !queue.contains(&name) {
            tracing::info!(node = %name, "node is not ready; queued for its NoExecute taint");
            queue.push_back(name);
        }
    }

    /// Upstream's `markNodeAsReachable`: the NoExecute taints off, out of the queue.
    pub async fn mark_reachable(&mut self, client: &Client, node: &Node) {
        let remove = [taint(TAINT_UNREACHABLE, "NoExecute"), taint(TAINT_NOT_READY, "NoExecute")];
        if remove.iter().any(|t| has_taint(node, t)) && !swap_taints(client, node, &[], &remove).await {
            tracing::warn!(node = %node.name_any(), "cannot remove the node's NoExecute taints; will retry");
            return;
        }
        self.forget(&node.name_any());
    }
}

impl Lifecycle {
    /// Upstream's `doNoScheduleTaintingPass` for every node.
    pub async fn no_schedule_pass(&mut self, snap: &Snapshot) {
        for node in &snap.nodes {
            let (add, remove) = taint_diff(&no_schedule_taints(node), &managed_no_schedule(node));
            if (!add.is_empty() || !remove.is_empty()) && !swap_taints(&self.client, node, &add, &remove).await {
                tracing::warn!(node = %node.name_any(), "cannot update the node's NoSchedule taints; will retry");
            }
        }
    }

    /// Upstream's `doNoExecuteTaintingPass`: taints the queued nodes that are still not
    /// Ready, as far as each zone's tokens allow. Returns when to come back for the rest.
    pub async fn no_execute_pass(&mut self, snap: &Snapshot) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let zones: Vec<String> = self.tainter.zones.keys().cloned().collect();
        for zone in zones {
            loop {
                let Some(name) = self.tainter.zones.get(&zone).and_then(|(_, q)| q.front().cloned()) else { break };
                let node = self.newest(snap, &name);
                let Some((bucket, queue)) = self.tainter.zones.get_mut(&zone) else { break };
                let Some(node) = node else {
                    queue.pop_front();
                    continue;
                };
                let (want, opposite) = match super::ready_status(&node) {
                    Some("False") => (taint(TAINT_NOT_READY, "NoExecute"), taint(TAINT_UNREACHABLE, "NoExecute")),
                    Some("Unknown") => (taint(TAINT_UNREACHABLE, "NoExecute"), taint(TAINT_NOT_READY, "NoExecute")),
                    // Ready again, or moved to another zone meanwhile: nothing to do here.
                    _ => {
                        queue.pop_front();
                        continue;
                    }
                };
                if zone_key(&node) != zone {
                    queue.pop_front();
                    continue;
                }
                let now = Instant::now();
                if !bucket.try_accept(now) {
                    next = match (next, bucket.next_token()) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    break;
                }
                queue.pop_front();
                if !swap_taints(&self.client, &node, &[want], &[opposite]).await {
                    // Back of the queue, as upstream retries a failed item later.
                    if let Some((_, q)) = self.tainter.zones.get_mut(&zone) {
                        q.push_back(name);
                    }
                    next = Some(Instant::now() + Duration::from_millis(500));
                    break;
                }
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn no_schedule_taints_follow_conditions_and_cordoning() {
        let n = node(json!({
            "metadata": {"name": "n"},
            "spec": {"unschedulable": true, "taints": [
                {"key": TAINT_NOT_READY, "effect": "NoSchedule"},
                {"key": "dedicated", "value": "x", "effect": "NoSchedule"},
                {"key": TAINT_UNREACHABLE, "effect": "NoExecute"},
            ]},
            "status": {"conditions": [
                {"type": "Ready", "status": "Unknown"},
                {"type": "DiskPressure", "status": "True"},
                {"type": "MemoryPressure", "status": "False"},
            ]},
        }));
        let want = no_schedule_taints(&n);
        let keys: Vec<&str> = want.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, [TAINT_UNREACHABLE, "node.kubernetes.io/disk-pressure", TAINT_UNSCHEDULABLE]);
        let (add, remove) = taint_diff(&want, &managed_no_schedule(&n));
        assert_eq!(add.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(), keys, "the user's taint and the NoExecute one are not this pass's");
        assert_eq!(remove.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(), [TAINT_NOT_READY]);
        let after = apply(taints_of(&n), &add, &remove);
        assert_eq!(after.len(), 5);
        assert!(after.iter().any(|t| t.key == "dedicated") && !after.iter().any(|t| t.key == TAINT_NOT_READY && t.effect == "NoSchedule"));
    }

    #[test]
    fn a_bucket_lets_one_through_then_waits_for_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(0.1);
        assert!(b.try_accept(t0));
        assert!(!b.try_accept(t0 + Duration::from_secs(5)));
        let next = b.next_token().unwrap();
        assert!(next > t0 + Duration::from_secs(9) && next <= t0 + Duration::from_secs(10) + Duration::from_millis(1), "{:?}", next - t0);
        assert!(b.try_accept(t0 + Duration::from_secs(10)));
        let mut stopped = Bucket::new(0.0);
        assert!(!stopped.try_accept(t0));
        assert_eq!(stopped.next_token(), None);
    }
}
