//! The scheduler: binds each pending pod to a node, as kube-scheduler's default profile does
//! for what this cluster supports (see `filters.rs`), through the `pods/binding`
//! subresource. A pod no node can take gets `PodScheduled=False` (reason `Unschedulable`) and
//! a `FailedScheduling` event with upstream's message, and is tried again with back-off
//! (1 s doubling to 10 s) and whenever pods or nodes change.
//!
//! Level-triggered over two watch caches (kube-rs reflectors of pods and nodes): every
//! change wakes one pass over all pending pods. Pods bound in a pass are "assumed" on their
//! node until the cache shows the binding, so one pass never overcommits a node.

mod filters;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;
use timonier_client::{watch, EventType, Recorder};

use filters::{fit_error, NodeUsage};

/// The `spec.schedulerName` this scheduler serves (also pods that name none).
pub const SCHEDULER_NAME: &str = "default-scheduler";

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Runs the scheduler until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()>) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let pods = watch::<Pod>(Api::all(client.clone()), wake.clone());
    let nodes = watch::<Node>(Api::all(client.clone()), wake.clone());
    let mut s = Scheduler { client: client.clone(), recorder: Recorder::new(client, SCHEDULER_NAME, None), assumed: HashMap::new(), backoff: HashMap::new(), next: 0 };
    let work = async {
        let _ = pods.0.wait_until_ready().await;
        let _ = nodes.0.wait_until_ready().await;
        tracing::info!("scheduler ready");
        loop {
            let retry_in = s.pass(&pods.0, &nodes.0).await;
            // Woken by any change; else when the earliest back-off ends.
            let _ = tokio::time::timeout(retry_in.unwrap_or(Duration::from_secs(60)), wake.notified()).await;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = shutdown => {}
    }
}

struct Scheduler {
    client: Client,
    recorder: Recorder,
    /// Pods bound by us that the cache does not show bound yet: uid → node.
    assumed: HashMap<String, (String, Arc<Pod>)>,
    /// Unschedulable pods: uid → (attempts, not before).
    backoff: HashMap<String, (u32, Instant)>,
    /// Rotates among equally good nodes.
    next: usize,
}

fn pending(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let node = spec.and_then(|s| s.node_name.as_deref()).unwrap_or("");
    let name = spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or(SCHEDULER_NAME);
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    node.is_empty() && name == SCHEDULER_NAME && pod.metadata.deletion_timestamp.is_none() && !matches!(phase, "Succeeded" | "Failed")
}

fn terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

impl Scheduler {
    /// One pass over the pending pods; returns how long until a backed-off pod is due.
    async fn pass(&mut self, pods: &Store<Pod>, nodes: &Store<Node>) -> Option<Duration> {
        let all = pods.state();
        let nodes: Vec<Arc<Node>> = nodes.state();
        let by_uid: HashMap<String, &Arc<Pod>> = all.iter().map(|p| (p.uid().unwrap_or_default(), p)).collect();
        // Forget assumptions the cache has caught up with, and back-offs of pods gone.
        self.assumed.retain(|uid, _| by_uid.get(uid).is_some_and(|p| pending(p)));
        self.backoff.retain(|uid, _| by_uid.get(uid).is_some_and(|p| pending(p)));
        let mut usage: HashMap<String, NodeUsage> = HashMap::new();
        for p in all.iter().filter(|p| !terminal(p)) {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) {
                usage.entry(n).or_default().add(p);
            }
        }
        for (node, pod) in self.assumed.values() {
            usage.entry(node.clone()).or_default().add(pod);
        }
        let now = Instant::now();
        let mut queue: Vec<&Arc<Pod>> = all.iter().filter(|p| pending(p)).filter(|p| !self.assumed.contains_key(&p.uid().unwrap_or_default())).collect();
        // Higher priority first, then oldest first, as upstream's queue sorts.
        queue.sort_by_key(|p| (std::cmp::Reverse(p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)), p.metadata.creation_timestamp.clone().map(|t| t.0), p.name_any()));
        let mut retry_in: Option<Duration> = None;
        for pod in queue {
            let uid = pod.uid().unwrap_or_default();
            if let Some((_, at)) = self.backoff.get(&uid) {
                if *at > now {
                    let wait = *at - now;
                    retry_in = Some(retry_in.map_or(wait, |r| r.min(wait)));
                    continue;
                }
            }
            match self.choose(pod, &nodes, &usage) {
                Ok(node) => {
                    if self.bind(pod, &node).await {
                        usage.entry(node.clone()).or_default().add(pod);
                        self.assumed.insert(uid.clone(), (node, pod.clone()));
                        self.backoff.remove(&uid);
                    }
                }
                Err(message) => {
                    let attempts = self.backoff.get(&uid).map_or(0, |(n, _)| *n) + 1;
                    let wait = (INITIAL_BACKOFF * 2u32.saturating_pow(attempts - 1)).min(MAX_BACKOFF);
                    self.backoff.insert(uid, (attempts, now + wait));
                    retry_in = Some(retry_in.map_or(wait, |r| r.min(wait)));
                    self.unschedulable(pod, &message).await;
                }
            }
        }
        retry_in
    }

    /// The best feasible node, or upstream's message saying why there is none.
    fn choose(&mut self, pod: &Pod, nodes: &[Arc<Node>], usage: &HashMap<String, NodeUsage>) -> Result<String, String> {
        let empty = NodeUsage::default();
        let mut reasons = vec![];
        let mut best: Vec<(String, f64)> = vec![];
        for node in nodes {
            let name = node.name_any();
            let u = usage.get(&name).unwrap_or(&empty);
            match filters::filter(pod, node, u) {
                Ok(()) => best.push((name, filters::score(pod, node, u))),
                Err(r) => reasons.push((name, r)),
            }
        }
        let top = best.iter().map(|(_, s)| *s).fold(f64::MIN, f64::max);
        let mut winners: Vec<String> = best.into_iter().filter(|(_, s)| (*s - top).abs() < 1e-9).map(|(n, _)| n).collect();
        if winners.is_empty() {
            return Err(fit_error(nodes.len(), &reasons));
        }
        winners.sort();
        self.next = self.next.wrapping_add(1);
        Ok(winners.swap_remove(self.next % winners.len()))
    }

    async fn bind(&self, pod: &Pod, node: &str) -> bool {
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns, "uid": pod.uid()}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        match api.create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding).await {
            Ok(_) => {
                tracing::info!(pod = %format!("{ns}/{name}"), node, "bound");
                self.recorder.pod_event(pod, None, EventType::Normal, "Scheduled", &format!("Successfully assigned {ns}/{name} to {node}")).await;
                true
            }
            Err(e) => {
                // Bound by someone else meanwhile, or deleted: the next pass sees it.
                tracing::debug!(pod = %format!("{ns}/{name}"), node, error = %e, "binding failed");
                false
            }
        }
    }

    /// `PodScheduled=False` (when it says something new) and a FailedScheduling event.
    async fn unschedulable(&self, pod: &Pod, message: &str) {
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let current = pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
        if current.is_none_or(|c| c.status != "False" || c.message.as_deref() != Some(message)) {
            let patch = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": timonier_client::now_rfc3339()}]}});
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "cannot set PodScheduled");
            }
        }
        self.recorder.pod_event(pod, None, EventType::Warning, "FailedScheduling", message).await;
    }
}
