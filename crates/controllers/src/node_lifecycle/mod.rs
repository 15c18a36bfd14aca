//! What kube-controller-manager does about nodes that come and go, as three controllers sharing
//! one set of watch caches (Nodes, their Leases in `kube-node-lease`, Pods):
//!
//! - `health.rs` and `taints.rs`: the node lifecycle controller (upstream's
//!   `pkg/controller/nodelifecycle`). A node whose Lease and Ready heartbeat stop for the grace
//!   period gets its Ready (and pressure) conditions set to Unknown, `NodeStatusUnknown`; nodes
//!   not Ready get the `node.kubernetes.io/not-ready` or `unreachable` NoExecute taint (at a
//!   rate-limited pace per zone, none at all when every zone is down), the NoSchedule taints of
//!   their conditions and of `spec.unschedulable` (TaintNodesByCondition), and their pods
//!   `Ready=False` so that Services stop sending them traffic.
//! - `taint_eviction.rs`: the taint eviction controller (upstream's NoExecuteTaintManager):
//!   pods on a node with a NoExecute taint they do not tolerate are deleted, at once or after
//!   their `tolerationSeconds`.
//! - `podgc.rs`: the pod garbage collector: terminated pods past a threshold, terminating pods
//!   on out-of-service nodes, pods of deleted nodes, terminating pods never scheduled.
//!
//! One level-triggered loop runs them: any change in the caches wakes a pass, and each part
//! says when it wants the next one (health checks every monitor period, a toleration running
//! out, the next eviction token).

mod health;
mod podgc;
mod taint_eviction;
mod taints;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;
use timonier_client::watch;
use tokio::time::Instant;

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// kube-controller-manager's settings for these controllers (its flags of the same names).
#[derive(Clone, Debug)]
pub struct Config {
    /// How often node health is checked (`--node-monitor-period`).
    pub monitor_period: Duration,
    /// How long a node may go without renewing its Lease or Ready heartbeat before it is
    /// Unknown (`--node-monitor-grace-period`). Must exceed the agents' 10 s renewal.
    pub grace_period: Duration,
    /// The same for a node that never posted a status (`--node-startup-grace-period`).
    pub startup_grace_period: Duration,
    /// Nodes tainted NoExecute per second and zone (`--node-eviction-rate`).
    pub eviction_rate: f64,
    /// The same in a partly disrupted large zone (`--secondary-node-eviction-rate`).
    pub secondary_eviction_rate: f64,
    /// A zone bigger than this keeps tainting, slowly, when partly disrupted
    /// (`--large-cluster-size-threshold`).
    pub large_cluster_threshold: usize,
    /// The share of not-Ready nodes (at least 3) that makes a zone partly disrupted
    /// (`--unhealthy-zone-threshold`).
    pub unhealthy_zone_threshold: f64,
    /// Terminated pods kept before the oldest are deleted (`--terminated-pod-gc-threshold`).
    pub terminated_pod_gc_threshold: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(40),
            startup_grace_period: Duration::from_secs(60),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            large_cluster_threshold: 50,
            unhealthy_zone_threshold: 0.55,
            terminated_pod_gc_threshold: 12500,
        }
    }
}

/// What one pass sees: the caches' current contents.
pub(crate) struct Snapshot {
    pub nodes: Vec<Arc<Node>>,
    /// The nodes by name: passes look a node up for every pod.
    by_name: HashMap<String, Arc<Node>>,
    pub leases: HashMap<String, Arc<Lease>>,
    pub pods: Vec<Arc<Pod>>,
    /// Pods by `spec.nodeName` (upstream's pod indexer), made on first use: most passes,
    /// with every node healthy and untainted, need none.
    by_node: std::sync::OnceLock<HashMap<String, Vec<Arc<Pod>>>>,
}

impl Snapshot {
    fn take(nodes: &Store<Node>, leases: &Store<Lease>, pods: &Store<Pod>) -> Snapshot {
        let leases = leases.state().into_iter().map(|l| (l.name_any(), l)).collect();
        Snapshot::new(nodes.state(), leases, pods.state())
    }

    pub(crate) fn new(nodes: Vec<Arc<Node>>, leases: HashMap<String, Arc<Lease>>, pods: Vec<Arc<Pod>>) -> Snapshot {
        let by_name = nodes.iter().map(|n| (n.name_any(), n.clone())).collect();
        Snapshot { nodes, by_name, leases, pods, by_node: Default::default() }
    }

    pub fn by_node(&self) -> &HashMap<String, Vec<Arc<Pod>>> {
        self.by_node.get_or_init(|| {
            let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
            for p in &self.pods {
                if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) {
                    by_node.entry(n).or_default().push(p.clone());
                }
            }
            by_node
        })
    }

    pub fn node(&self, name: &str) -> Option<&Arc<Node>> {
        self.by_name.get(name)
    }

    pub fn pods_on(&self, node: &str) -> &[Arc<Pod>] {
        self.by_node().get(node).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Runs the node lifecycle, taint eviction and pod GC controllers forever. `informers` feeds
/// the caches; `node_controller` writes for the first two (upstream's taint eviction
/// controller uses the node controller's role too), `pod_gc` for the last.
pub async fn run(informers: Client, node_controller: Client, pod_gc: Client, config: Config) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let (nodes, _t1) = watch::<Node>(Api::all(informers.clone()), wake.clone());
    // Lease renewals wake nothing: node health is looked at every monitor period, as
    // upstream's monitorNodeHealth — thousands of nodes renew every 10 s.
    let (leases, _t2) = watch::<Lease>(Api::namespaced(informers.clone(), "kube-node-lease"), Arc::default());
    let (pods, _t3) = watch::<Pod>(Api::all(informers), wake.clone());
    let _ = nodes.wait_until_ready().await;
    let _ = leases.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let mut lifecycle = health::Lifecycle::new(node_controller.clone(), config.clone());
    let mut eviction = taint_eviction::TaintEviction::new(node_controller);
    let mut gc = podgc::PodGc::new(pod_gc, config.terminated_pod_gc_threshold);
    let mut next_monitor = Instant::now();
    loop {
        let snap = Snapshot::take(&nodes, &leases, &pods);
        if Instant::now() >= next_monitor {
            lifecycle.monitor(&snap).await;
            next_monitor = Instant::now() + config.monitor_period;
        }
        lifecycle.no_schedule_pass(&snap).await;
        let mut next = next_monitor;
        if let Some(at) = lifecycle.no_execute_pass(&snap).await {
            next = next.min(at);
        }
        lifecycle.pods_pass(&snap).await;
        if let Some(at) = eviction.pass(&snap).await {
            next = next.min(at);
        }
        next = next.min(gc.pass(&snap).await);
        let _ = tokio::time::timeout_at(next, wake.notified()).await;
        // Coalesce a burst of changes (a node's status and its pods) into one pass.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn node_condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// The node's Ready status: `True`, `False`, `Unknown`, or `None` without the condition.
fn ready_status(node: &Node) -> Option<&str> {
    node_condition(node, "Ready").map(|c| c.status.as_str())
}

fn taints_of(node: &Node) -> &[Taint] {
    node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
}

/// Same key and effect (upstream's `MatchTaint`): what makes two taints the same taint.
fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint { key: key.into(), effect: effect.into(), ..Default::default() }
}

fn has_taint(node: &Node, t: &Taint) -> bool {
    taints_of(node).iter().any(|x| same_taint(x, t))
}

/// Upstream's `Toleration.ToleratesTaint`.
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Upstream's `GetMatchingTolerations`: for each taint the first toleration that tolerates
/// it, or `None` when one taint is tolerated by none.
fn matching_tolerations<'a>(taints: &[Taint], tolerations: &'a [Toleration]) -> Option<Vec<&'a Toleration>> {
    taints.iter().map(|taint| tolerations.iter().find(|t| tolerates(t, taint))).collect()
}

/// Upstream's `UpdatePodCondition`: sets `cond` (its transition time now, or kept when the
/// status does not change) and says whether anything changed.
fn set_pod_condition(conditions: &mut Vec<PodCondition>, mut cond: PodCondition, now: jiff::Timestamp) -> bool {
    cond.last_transition_time = Some(Time(now));
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        None => {
            conditions.push(cond);
            true
        }
        Some(old) => {
            if old.status == cond.status {
                cond.last_transition_time = old.last_transition_time.clone();
            }
            let same = old.status == cond.status
                && old.reason == cond.reason
                && old.message == cond.message
                && old.last_probe_time == cond.last_probe_time
                && old.last_transition_time == cond.last_transition_time;
            *old = cond;
            !same
        }
    }
}

/// Writes a pod's conditions (and phase) with a strategic merge patch of `pods/status` that
/// names the pod's uid (upstream's `PatchPodStatus`): conditions merge by type, so the
/// kubelet's own conditions are not overwritten.
async fn patch_pod_status(client: &Client, pod: &Pod, conditions: &[PodCondition], phase: Option<&str>) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let mut status = json!({"conditions": conditions});
    if let Some(p) = phase {
        status["phase"] = json!(p);
    }
    let patch = json!({"metadata": {"uid": pod.metadata.uid}, "status": status});
    api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(&patch)).await.map(|_| ())
}

/// How long ago `t` was, seen from `now` (zero for a time in the future).
fn since(now: jiff::Timestamp, t: jiff::Timestamp) -> Duration {
    Duration::try_from(now.duration_since(t)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let t = Taint { key: TAINT_UNREACHABLE.into(), effect: "NoExecute".into(), ..Default::default() };
        assert!(tolerates(&toleration(json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"})), &t));
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &t), "empty key with Exists tolerates everything");
        assert!(!tolerates(&toleration(json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"})), &t));
        assert!(!tolerates(&toleration(json!({"key": TAINT_NOT_READY, "operator": "Exists"})), &t));
        let valued = Taint { key: "dedicated".into(), value: Some("gpu".into()), effect: "NoExecute".into(), ..Default::default() };
        assert!(tolerates(&toleration(json!({"key": "dedicated", "value": "gpu"})), &valued), "Equal is the default operator");
        assert!(!tolerates(&toleration(json!({"key": "dedicated", "value": "cpu"})), &valued));
        let both = [t.clone(), valued.clone()];
        let tols = vec![toleration(json!({"key": "dedicated", "operator": "Exists"})), toleration(json!({"operator": "Exists", "tolerationSeconds": 5}))];
        let used = matching_tolerations(&both, &tols).expect("all tolerated");
        assert_eq!(used.len(), 2);
        assert_eq!(used[0].toleration_seconds, Some(5), "the first toleration that matches each taint");
        assert!(matching_tolerations(&both, &tols[..1]).is_none());
    }

    #[test]
    fn pod_condition_transition_time_moves_only_with_the_status() {
        let t0: jiff::Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2025-01-01T00:01:00Z".parse().unwrap();
        let mut cs = vec![PodCondition { type_: "Ready".into(), status: "True".into(), last_transition_time: Some(Time(t0)), ..Default::default() }];
        assert!(set_pod_condition(&mut cs, PodCondition { type_: "Ready".into(), status: "False".into(), ..Default::default() }, t1));
        assert_eq!(cs[0].last_transition_time, Some(Time(t1)));
        assert!(!set_pod_condition(&mut cs, PodCondition { type_: "Ready".into(), status: "False".into(), ..Default::default() }, t0));
        assert_eq!(cs[0].last_transition_time, Some(Time(t1)));
        assert!(set_pod_condition(&mut cs, PodCondition { type_: "DisruptionTarget".into(), status: "True".into(), ..Default::default() }, t1));
        assert_eq!(cs.len(), 2);
    }
}
