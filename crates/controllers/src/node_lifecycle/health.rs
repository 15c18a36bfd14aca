//! Node health, as upstream's `monitorNodeHealth`: a node is alive while its Lease is renewed
//! (or its Ready condition's heartbeat moves); past the grace period its Ready, MemoryPressure,
//! DiskPressure and PIDPressure conditions become Unknown. Pods of a node that stops being
//! Ready get `Ready=False` (upstream's `MarkPodsNotReady`), so endpoints drop them at once
//! rather than after the NoExecute taint evicts them.
//!
//! Times are the controller's own clock — when it *saw* a heartbeat move — never the
//! timestamps the kubelet wrote, so that clock skew between machines does not matter.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use timonier_client::{EventType, Recorder};

use super::taints::Tainter;
use super::{node_condition, ready_status, set_pod_condition, Config, Snapshot};

/// The conditions that go Unknown with the node (NetworkUnavailable is the network's to say).
const MONITORED: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What the controller last saw of a node (upstream's `nodeHealthData`).
#[derive(Clone, Debug)]
pub(super) struct NodeHealth {
    /// When a heartbeat was last seen move.
    pub probe: jiff::Timestamp,
    /// When the Ready condition was last seen change.
    pub ready_transition: jiff::Timestamp,
    /// The Ready condition as last seen.
    pub ready: Option<NodeCondition>,
    /// The Lease's renew time as last seen.
    pub lease_renewed: Option<MicroTime>,
}

/// The outcome of checking one node: its Ready condition as the node object had it, and the
/// conditions to write when they must go Unknown.
#[derive(Debug, PartialEq)]
pub(super) struct Verdict {
    pub observed_ready: NodeCondition,
    /// The whole new conditions list, when it changes.
    pub write: Option<Vec<NodeCondition>>,
}

/// Upstream's `tryUpdateNodeHealth`, without the write: updates `health` from what the node
/// and its lease show at `now`, and says what to write.
pub(super) fn check(health: &mut Option<NodeHealth>, node: &Node, lease: Option<&Lease>, config: &Config, now: jiff::Timestamp) -> Verdict {
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let current = node_condition(node, "Ready").cloned();
    let (observed, grace) = match &current {
        Some(c) => (c.clone(), config.grace_period),
        None => {
            // Never posted: a stand-in Unknown condition dated from the node's creation.
            let c = NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                last_heartbeat_time: Some(Time(created)),
                last_transition_time: Some(Time(created)),
                ..Default::default()
            };
            if health.is_none() {
                *health = Some(NodeHealth { probe: created, ready_transition: created, ready: None, lease_renewed: None });
            }
            (c, config.startup_grace_period)
        }
    };
    let fresh = |lease_renewed| NodeHealth { probe: now, ready_transition: now, ready: current.clone(), lease_renewed };
    match health.as_mut() {
        None => *health = Some(fresh(None)),
        Some(h) => match (&h.ready, &current) {
            (None, Some(_)) | (Some(_), None) => *h = fresh(h.lease_renewed.clone()),
            (Some(saved), Some(cur)) if saved.last_heartbeat_time != cur.last_heartbeat_time => {
                let transition = if saved.last_transition_time != cur.last_transition_time { now } else { h.ready_transition };
                *h = NodeHealth { probe: now, ready_transition: transition, ready: current.clone(), lease_renewed: h.lease_renewed.clone() };
            }
            _ => {}
        },
    }
    let h = health.as_mut().expect("set above");
    // A renewed Lease is a heartbeat (a kubelet may post its status only every few minutes).
    if let Some(renewed) = lease.and_then(|l| l.spec.as_ref()).and_then(|s| s.renew_time.clone()) {
        if h.lease_renewed.as_ref().is_none_or(|saved| saved.0 < renewed.0) {
            h.lease_renewed = Some(renewed);
            h.probe = now;
        }
    }
    let mut verdict = Verdict { observed_ready: observed.clone(), write: None };
    if super::since(now, h.probe) <= grace {
        return verdict;
    }
    let mut conditions: Vec<NodeCondition> = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    for type_ in MONITORED {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => conditions.push(NodeCondition {
                type_: type_.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: Some(Time(created)),
                last_transition_time: Some(Time(now)),
            }),
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
            Some(_) => {}
        }
    }
    let new_ready = conditions.iter().find(|c| c.type_ == "Ready");
    if new_ready != Some(&observed) {
        verdict.write = Some(conditions);
    }
    verdict
}

/// The disruption state of a zone (upstream's `ZoneState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Upstream's `ComputeZoneState`: how many nodes of a zone are not Ready, and its state.
pub(super) fn zone_state(ready: &[Option<&str>], unhealthy_threshold: f64) -> (usize, ZoneState) {
    let not_ready = ready.iter().filter(|s| **s != Some("True")).count();
    let ready_count = ready.len() - not_ready;
    let state = if ready_count == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / ready.len() as f64 >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (not_ready, state)
}

/// Upstream's `GetZoneKey`: region and zone, joined so that neither can fake the other.
pub(super) fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let get = |a: &str, b: &str| labels.get(a).or_else(|| labels.get(b)).cloned().unwrap_or_default();
    let zone = get("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    let region = get("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region");
    if zone.is_empty() && region.is_empty() {
        return String::new();
    }
    format!("{region}:\0:{zone}")
}

/// The node lifecycle controller's state across passes.
pub(super) struct Lifecycle {
    pub(super) client: Client,
    pub(super) config: Config,
    pub(super) recorder: Recorder,
    health: HashMap<String, NodeHealth>,
    /// Nodes seen, with their uid (for the RegisteredNode/RemovingNode events).
    known: HashMap<String, String>,
    pub(super) zones: HashMap<String, ZoneState>,
    pub(super) tainter: Tainter,
    /// Pods already marked not ready, by node, while that node is not Ready: each pod is
    /// marked once (upstream marks on the node's transition and on a pod's assignment, never
    /// again — a kubelet still alive behind a NotReady node is not fought).
    marked: HashMap<String, HashSet<String>>,
    /// Nodes as this controller last wrote them, until the cache shows them: the tainting
    /// that follows a health check must not act on the state from before it.
    pub(super) written: HashMap<String, Arc<Node>>,
}

impl Lifecycle {
    pub fn new(client: Client, config: Config) -> Lifecycle {
        let recorder = Recorder::new(client.clone(), "node-controller", None);
        let tainter = Tainter::new(config.eviction_rate);
        Lifecycle { client, config, recorder, health: HashMap::new(), known: HashMap::new(), zones: HashMap::new(), tainter, marked: HashMap::new(), written: HashMap::new() }
    }

    async fn node_event(&self, node: &Node, reason: &str, message: &str) {
        self.recorder.event(node, None, EventType::Normal, reason, message).await;
    }

    /// One health check of every node (upstream's `monitorNodeHealth`).
    pub async fn monitor(&mut self, snap: &Snapshot) {
        let now = jiff::Timestamp::now();
        for node in &snap.nodes {
            let name = node.name_any();
            if !self.known.contains_key(&name) {
                tracing::info!(node = %name, "node lifecycle controller observed a new node");
                self.node_event(node, "RegisteredNode", &format!("Node {name} event: Registered Node {name} in Controller")).await;
                self.known.insert(name.clone(), node.uid().unwrap_or_default());
                self.zones.entry(zone_key(node)).or_insert(ZoneState::Initial);
            }
        }
        let present: HashSet<String> = snap.nodes.iter().map(|n| n.name_any()).collect();
        let gone: Vec<(String, String)> = self.known.iter().filter(|(n, _)| !present.contains(*n)).map(|(n, u)| (n.clone(), u.clone())).collect();
        for (name, uid) in gone {
            tracing::info!(node = %name, "node lifecycle controller observed a node deletion");
            let stub = Node { metadata: kube::api::ObjectMeta { name: Some(name.clone()), uid: Some(uid), ..Default::default() }, ..Default::default() };
            self.node_event(&stub, "RemovingNode", &format!("Node {name} event: Removing Node {name} from Controller")).await;
            self.known.remove(&name);
            self.health.remove(&name);
            self.marked.remove(&name);
            self.tainter.forget(&name);
        }
        let mut zone_ready: HashMap<String, Vec<Option<String>>> = HashMap::new();
        for node in &snap.nodes {
            let name = node.name_any();
            let Some(current) = self.check_node(node, snap, now).await else { continue };
            if !node.labels().contains_key("node.kubernetes.io/exclude-disruption") {
                zone_ready.entry(zone_key(node)).or_default().push(ready_status(&current).map(str::to_string));
            }
            let observed = ready_status(node).unwrap_or("Unknown").to_string();
            let now_ready = ready_status(&current).unwrap_or("Unknown").to_string();
            self.tainter.observe(&self.client, &current, &zone_key(node)).await;
            if now_ready != "True" && observed == "True" {
                // Reported once, when this controller makes the node Unknown.
                self.node_event(node, "NodeNotReady", &format!("Node {name} status is now: NodeNotReady")).await;
                self.marked.remove(&name);
            }
            if now_ready == "True" {
                self.marked.remove(&name);
            }
        }
        self.handle_disruption(snap, zone_ready).await;
    }

    /// Checks one node and writes Unknown conditions when it must; returns the node as it
    /// now is (`None` when it could not be written: no decision is made on stale state).
    async fn check_node(&mut self, node: &Arc<Node>, snap: &Snapshot, now: jiff::Timestamp) -> Option<Node> {
        let name = node.name_any();
        let mut node: Node = (**node).clone();
        let api: Api<Node> = Api::all(self.client.clone());
        for attempt in 0..5 {
            let mut health = self.health.get(&name).cloned();
            let verdict = check(&mut health, &node, snap.leases.get(&name).map(|l| &**l), &self.config, now);
            let Some(conditions) = verdict.write else {
                if let Some(h) = health {
                    self.health.insert(name.clone(), h);
                }
                return Some(node);
            };
            tracing::info!(node = %name, "node stopped posting its status; marking it Unknown");
            // Guarded by the node's resourceVersion, as upstream's UpdateStatus: a kubelet that
            // posts meanwhile wins, and the next check sees its fresh heartbeat.
            let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "status": {"conditions": conditions}});
            match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(updated) => {
                    self.written.insert(name.clone(), Arc::new(updated.clone()));
                    if let Some(mut h) = health {
                        h.ready = node_condition(&updated, "Ready").cloned();
                        h.ready_transition = now;
                        self.health.insert(name.clone(), h);
                    }
                    return Some(updated);
                }
                Err(e) => {
                    tracing::debug!(node = %name, attempt, error = %e, "cannot update the node's health; reading it again");
                    match api.get(&name).await {
                        Ok(n) => node = n,
                        Err(e) => {
                            tracing::warn!(node = %name, error = %e, "cannot read the node: skipping it this time");
                            return None;
                        }
                    }
                }
            }
        }
        None
    }

    /// The node as it is newest: the cache's, or the one this controller just wrote.
    pub(super) fn newest(&mut self, snap: &Snapshot, name: &str) -> Option<Arc<Node>> {
        let cached = snap.node(name).cloned();
        let Some(mine) = self.written.get(name).cloned() else { return cached };
        match cached {
            Some(c) if crate::revision_of(&c.metadata) >= crate::revision_of(&mine.metadata) => {
                self.written.remove(name);
                Some(c)
            }
            None => {
                self.written.remove(name);
                None
            }
            Some(_) => Some(mine),
        }
    }

    /// Upstream's `handleDisruption`: when every zone is down the fault is most likely the
    /// control plane's own view, so nothing is evicted and the taints come off; otherwise each
    /// zone's tainting rate follows its state.
    async fn handle_disruption(&mut self, snap: &Snapshot, zone_ready: HashMap<String, Vec<Option<String>>>) {
        let mut new_states: HashMap<String, ZoneState> = HashMap::new();
        let mut all_fully_disrupted = true;
        for (zone, ready) in &zone_ready {
            let statuses: Vec<Option<&str>> = ready.iter().map(Option::as_deref).collect();
            let (_, state) = zone_state(&statuses, self.config.unhealthy_zone_threshold);
            if state != ZoneState::FullDisruption {
                all_fully_disrupted = false;
            }
            new_states.insert(zone.clone(), state);
            self.zones.entry(zone.clone()).or_insert(ZoneState::Initial);
        }
        self.zones.retain(|z, _| zone_ready.contains_key(z));
        let all_were_fully_disrupted = self.zones.values().all(|s| *s == ZoneState::FullDisruption);
        if all_fully_disrupted && all_were_fully_disrupted {
            return;
        }
        if all_fully_disrupted {
            tracing::warn!("every node is not Ready: entering master disruption mode, no evictions");
            for node in &snap.nodes {
                self.tainter.mark_reachable(&self.client, node).await;
            }
            for (zone, state) in self.zones.iter_mut() {
                self.tainter.set_rate(zone, 0.0);
                *state = ZoneState::FullDisruption;
            }
            return;
        }
        if all_were_fully_disrupted {
            tracing::info!("some nodes are Ready again: leaving master disruption mode");
            // Every node gets a fresh grace period: their heartbeats may not have reached a
            // control plane that could not see anything.
            let now = jiff::Timestamp::now();
            for h in self.health.values_mut() {
                h.probe = now;
                h.ready_transition = now;
            }
        }
        let zones: Vec<String> = self.zones.keys().cloned().collect();
        for zone in zones {
            let new = new_states.get(&zone).copied().unwrap_or(ZoneState::Normal);
            if self.zones.get(&zone) == Some(&new) && !all_were_fully_disrupted {
                continue;
            }
            if self.zones.get(&zone) != Some(&new) {
                tracing::info!(zone = %zone.replace('\0', ""), state = ?new, "zone changed state");
            }
            let size = zone_ready.get(&zone).map(Vec::len).unwrap_or(0);
            let rate = match new {
                ZoneState::Normal | ZoneState::Initial | ZoneState::FullDisruption => self.config.eviction_rate,
                ZoneState::PartialDisruption if size > self.config.large_cluster_threshold => self.config.secondary_eviction_rate,
                ZoneState::PartialDisruption => 0.0,
            };
            self.tainter.set_rate(&zone, rate);
            self.zones.insert(zone, new);
        }
    }

    /// Marks not ready the pods of nodes that are not Ready which were not marked yet: pods
    /// bound after the node went (upstream's `processPod`), or all of them at the transition.
    pub async fn pods_pass(&mut self, snap: &Snapshot) {
        let now = jiff::Timestamp::now();
        for (name, health) in &self.health {
            let Some(ready) = &health.ready else { continue };
            if ready.status == "True" || snap.node(name).is_none() {
                continue;
            }
            let marked = self.marked.entry(name.clone()).or_default();
            for pod in snap.pods_on(name) {
                let uid = pod.uid().unwrap_or_default();
                if marked.contains(&uid) {
                    continue;
                }
                match mark_not_ready(&self.client, &self.recorder, pod, now).await {
                    Ok(()) => {
                        marked.insert(uid);
                    }
                    Err(e) => tracing::debug!(pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()), error = %e, "cannot mark the pod not ready; will retry"),
                }
            }
        }
    }
}

/// Upstream's `MarkPodsNotReady` for one pod: its Ready condition goes False (nothing else
/// changes), then a `NodeNotReady` warning on the pod.
async fn mark_not_ready(client: &Client, recorder: &Recorder, pod: &Pod, now: jiff::Timestamp) -> Result<(), kube::Error> {
    let mut conditions: Vec<PodCondition> = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let Some(ready) = conditions.iter().find(|c| c.type_ == "Ready").cloned() else { return Ok(()) };
    if !set_pod_condition(&mut conditions, PodCondition { status: "False".into(), ..ready }, now) {
        return Ok(());
    }
    tracing::info!(pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()), "marking the pod of a node that is not ready not ready");
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"resourceVersion": pod.metadata.resource_version}, "status": {"conditions": conditions}});
    match api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => {}
        // Gone meanwhile: nothing left to mark.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e),
    }
    recorder.pod_event(pod, None, EventType::Warning, "NodeNotReady", "Node is not ready").await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn node(conditions: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    fn lease(renew: &str) -> Lease {
        serde_json::from_value(json!({"metadata": {"name": "n1"}, "spec": {"renewTime": renew}})).unwrap()
    }

    fn ready(status: &str, heartbeat: &str) -> serde_json::Value {
        json!([
            {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": heartbeat, "lastTransitionTime": "2025-01-01T00:00:00Z"},
            {"type": "Ready", "status": status, "reason": "KubeletReady", "lastHeartbeatTime": heartbeat, "lastTransitionTime": "2025-01-01T00:00:00Z"},
        ])
    }

    #[test]
    fn a_node_whose_lease_stops_goes_unknown_after_the_grace_period() {
        let config = Config::default();
        let n = node(ready("True", "2025-01-01T00:00:10Z"));
        let mut h = None;
        // First seen: a full grace period from now, whatever the timestamps say.
        let v = check(&mut h, &n, Some(&lease("2025-01-01T00:00:10.000000Z")), &config, ts("2025-01-01T00:10:00Z"));
        assert_eq!(v.write, None);
        // The lease keeps being renewed: healthy, though the status is old.
        let v = check(&mut h, &n, Some(&lease("2025-01-01T00:10:30.000000Z")), &config, ts("2025-01-01T00:10:35Z"));
        assert_eq!(v.write, None);
        let v = check(&mut h, &n, Some(&lease("2025-01-01T00:10:30.000000Z")), &config, ts("2025-01-01T00:11:15Z"));
        assert_eq!(v.write, None, "40 s since the last renewal seen: not past the grace period yet");
        let v = check(&mut h, &n, Some(&lease("2025-01-01T00:10:30.000000Z")), &config, ts("2025-01-01T00:11:16Z"));
        let conds = v.write.expect("past the grace period");
        assert_eq!(v.observed_ready.status, "True");
        let r = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((r.status.as_str(), r.reason.as_deref(), r.message.as_deref()), ("Unknown", Some("NodeStatusUnknown"), Some("Kubelet stopped posting node status.")));
        assert_eq!(r.last_transition_time, Some(Time(ts("2025-01-01T00:11:16Z"))));
        assert_eq!(r.last_heartbeat_time, Some(Time(ts("2025-01-01T00:00:10Z"))), "the heartbeat stays the kubelet's");
        let m = conds.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(m.status, "Unknown");
        for t in ["DiskPressure", "PIDPressure"] {
            let c = conds.iter().find(|c| c.type_ == t).unwrap();
            assert_eq!((c.status.as_str(), c.reason.as_deref(), c.message.as_deref()), ("Unknown", Some("NodeStatusNeverUpdated"), Some("Kubelet never posted node status.")));
        }
        assert!(!conds.iter().any(|c| c.type_ == "NetworkUnavailable"));
        // Already Unknown: nothing more to write.
        let unknown = node(serde_json::to_value(&conds).unwrap());
        let v = check(&mut h, &unknown, Some(&lease("2025-01-01T00:10:30.000000Z")), &config, ts("2025-01-01T00:11:30Z"));
        assert_eq!(v.write, None);
        // The kubelet comes back: a new heartbeat, healthy again.
        let back = node(ready("True", "2025-01-01T00:12:00Z"));
        let v = check(&mut h, &back, Some(&lease("2025-01-01T00:12:00.000000Z")), &config, ts("2025-01-01T00:12:01Z"));
        assert_eq!((v.write, v.observed_ready.status.as_str()), (None, "True"));
    }

    #[test]
    fn a_node_that_never_posted_gets_the_startup_grace_period() {
        let config = Config::default();
        let n = node(json!([]));
        let mut h = None;
        assert_eq!(check(&mut h, &n, None, &config, ts("2025-01-01T00:00:59Z")).write, None);
        let v = check(&mut h, &n, None, &config, ts("2025-01-01T00:01:01Z"));
        let conds = v.write.expect("60 s after creation");
        assert_eq!(conds.len(), 4);
        assert!(conds.iter().all(|c| c.status == "Unknown" && c.reason.as_deref() == Some("NodeStatusNeverUpdated")));
        assert_eq!(v.observed_ready.status, "Unknown");
    }

    #[test]
    fn zones_are_disrupted_as_upstream_counts() {
        let t = Some("True");
        let f = Some("False");
        let u = Some("Unknown");
        assert_eq!(zone_state(&[t, t, u], 0.55), (1, ZoneState::Normal));
        assert_eq!(zone_state(&[u, f], 0.55), (2, ZoneState::FullDisruption));
        assert_eq!(zone_state(&[t, u, u, u], 0.55), (3, ZoneState::PartialDisruption));
        assert_eq!(zone_state(&[t, t, t, u, u, u], 0.55), (3, ZoneState::Normal), "below the threshold");
        assert_eq!(zone_state(&[t, None], 0.55), (1, ZoneState::Normal), "no Ready condition counts as not ready");
    }

    #[test]
    fn zone_keys_join_region_and_zone() {
        let mut n = node(json!([]));
        assert_eq!(zone_key(&n), "");
        n.metadata.labels = Some([("topology.kubernetes.io/zone".to_string(), "a".to_string()), ("failure-domain.beta.kubernetes.io/region".to_string(), "r".to_string())].into());
        assert_eq!(zone_key(&n), "r:\0:a");
    }
}
