//! The scheduler: binds each pending pod to a node, as kube-scheduler's default profile does
//! for what this cluster supports, through the `pods/binding` subresource. A pod no node can
//! take gets `PodScheduled=False` (reason `Unschedulable`) and a `FailedScheduling` event with
//! upstream's message, and is tried again with back-off (1 s doubling to 10 s) and whenever
//! the cluster changes.
//!
//! Watch events of pods, nodes, namespaces and the workloads behind the default spreading
//! update one cache (`cache.rs`) change by change; each pass schedules the pending pods one
//! cycle at a time (`schedule.rs`), counts a pod on its node as soon as it is chosen
//! ("assumed") and binds it in the background, so that the next cycle already sees it.
//!
//! Plugins: `filters.rs` (NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts,
//! NodeResourcesFit), `spread.rs` (PodTopologySpread), `interpod.rs` (InterPodAffinity),
//! `scores.rs` (the node-local scores and the profile's weights).

mod cache;
mod feed;
mod filters;
mod index;
mod interpod;
mod metrics;
mod node_info;
mod pod_info;
mod schedule;
mod scores;
mod selector;
mod spread;
#[cfg(test)]
mod testutil;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use timonier_client::{EventType, Recorder};
use tokio::sync::{mpsc, Semaphore};

pub use cache::{Cache, OwnerKind};
use feed::{Change, Ev};
pub use pod_info::PodInfo;
pub use schedule::{schedule, Rotation};
pub use selector::Selector;

/// The `spec.schedulerName` this scheduler serves (also pods that name none).
pub const SCHEDULER_NAME: &str = "default-scheduler";

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Bindings in flight at once.
const MAX_BINDS: usize = 64;
/// Cycles between yields to the runtime during a long pass.
const CYCLES_PER_YIELD: usize = 64;

/// Runs the scheduler until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _watches = [
        feed::watch(Api::all(client.clone()), tx.clone(), Change::Pod),
        feed::watch(Api::all(client.clone()), tx.clone(), Change::Node),
        feed::watch(Api::all(client.clone()), tx.clone(), Change::Namespace),
        feed::watch(Api::all(client.clone()), tx.clone(), Change::Service),
        feed::watch(Api::all(client.clone()), tx.clone(), Change::ReplicaSet),
        feed::watch(Api::all(client.clone()), tx.clone(), Change::StatefulSet),
        feed::watch(Api::all(client.clone()), tx, Change::ReplicationController),
    ];
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let mut s = Scheduler {
        cache: Cache::default(),
        rotation: Rotation::default(),
        client: client.clone(),
        recorder: Arc::new(Recorder::new(client, SCHEDULER_NAME, None)),
        backoff: HashMap::new(),
        binds: Arc::new(Semaphore::new(MAX_BINDS)),
        done: done_tx,
    };
    let work = async {
        // Nothing is scheduled before every kind has been listed, as upstream waits for its
        // informers to sync.
        let mut synced = HashSet::new();
        while synced.len() < feed::KINDS {
            let Some(c) = rx.recv().await else { return };
            if let Some(kind) = c.relisted() {
                synced.insert(kind);
            }
            s.apply(c);
        }
        tracing::info!("scheduler ready");
        loop {
            let retry_in = s.pass().await;
            // Woken by any change or finished binding; else when the earliest back-off ends.
            tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => s.apply(c),
                    None => return,
                },
                Some(d) = done.recv() => s.bound(d),
                _ = tokio::time::sleep(retry_in.unwrap_or(Duration::from_secs(60))) => {}
            }
            while let Ok(c) = rx.try_recv() {
                s.apply(c);
            }
            while let Ok(d) = done.try_recv() {
                s.bound(d);
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = shutdown => {}
    }
}

/// A binding's outcome: the pod's uid, and whether it is bound.
struct Bound(String, bool);

struct Scheduler {
    cache: Cache,
    rotation: Rotation,
    client: Client,
    recorder: Arc<Recorder>,
    /// Unschedulable pods: uid → (attempts, not before).
    backoff: HashMap<String, (u32, Instant)>,
    binds: Arc<Semaphore>,
    done: mpsc::UnboundedSender<Bound>,
}

fn namespaced<K: kube::Resource>(o: &K) -> (String, String) {
    (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default())
}

impl Scheduler {
    fn apply(&mut self, change: Change) {
        let c = &mut self.cache;
        match change {
            Change::Pod(Ev::Apply(p)) => c.apply_pod(p),
            Change::Pod(Ev::Delete(p)) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                c.delete_pod(&uid);
                self.backoff.remove(&uid);
                self.recorder.forget(&uid);
            }
            Change::Pod(Ev::Relist(all)) => c.relist_pods(all),
            Change::Node(Ev::Apply(n)) => c.apply_node(n),
            Change::Node(Ev::Delete(n)) => c.delete_node(n.metadata.name.as_deref().unwrap_or_default()),
            Change::Node(Ev::Relist(all)) => c.relist_nodes(all),
            Change::Namespace(Ev::Apply(n)) => c.apply_namespace(n.metadata.name.clone().unwrap_or_default(), n.metadata.labels.clone().unwrap_or_default()),
            Change::Namespace(Ev::Delete(n)) => c.delete_namespace(n.metadata.name.as_deref().unwrap_or_default()),
            Change::Namespace(Ev::Relist(all)) => c.relist_namespaces(all.iter().map(|n| (n.metadata.name.clone().unwrap_or_default(), n.metadata.labels.clone().unwrap_or_default())).collect()),
            Change::Service(Ev::Apply(svc)) => {
                let (ns, name) = namespaced(&*svc);
                c.apply_service(&ns, &name, svc.spec.as_ref().and_then(|s| s.selector.clone()));
            }
            Change::Service(Ev::Delete(svc)) => {
                let (ns, name) = namespaced(&*svc);
                c.apply_service(&ns, &name, None);
            }
            Change::Service(Ev::Relist(all)) => c.relist_services(
                all.iter()
                    .map(|svc| {
                        let (ns, name) = namespaced(&**svc);
                        (ns, name, svc.spec.as_ref().and_then(|s| s.selector.clone()))
                    })
                    .collect(),
            ),
            Change::ReplicaSet(ev) => owner_change(c, OwnerKind::ReplicaSet, ev, |rs| Selector::from_label_selector(rs.spec.as_ref().map(|s| &s.selector))),
            Change::StatefulSet(ev) => owner_change(c, OwnerKind::StatefulSet, ev, |ss| Selector::from_label_selector(ss.spec.as_ref().map(|s| &s.selector))),
            Change::ReplicationController(ev) => owner_change(c, OwnerKind::ReplicationController, ev, |rc| rc.spec.as_ref().and_then(|s| s.selector.as_ref()).map_or(Selector::Nothing, Selector::from_map)),
        }
    }

    /// One pass over the pending pods, highest priority then oldest first (upstream's queue
    /// order); returns how long until a backed-off pod is due.
    async fn pass(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let mut queue = self.cache.pending();
        let waiting: HashSet<&str> = queue.iter().map(|p| p.uid.as_str()).collect();
        self.backoff.retain(|uid, _| waiting.contains(uid.as_str()));
        queue.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.created.cmp(&b.created)).then_with(|| a.name.cmp(&b.name)));
        let mut retry_in: Option<Duration> = None;
        let mut cycles = 0;
        let waiting_back_off = queue.iter().filter(|p| self.backoff.get(&p.uid).is_some_and(|(_, at)| *at > now)).count();
        metrics::pending(queue.len() - waiting_back_off, waiting_back_off, 0);
        for pod in queue {
            if let Some((_, at)) = self.backoff.get(&pod.uid) {
                if *at > now {
                    let wait = *at - now;
                    retry_in = Some(retry_in.map_or(wait, |r| r.min(wait)));
                    continue;
                }
            }
            cycles += 1;
            if cycles % CYCLES_PER_YIELD == 0 {
                tokio::task::yield_now().await;
            }
            let started = Instant::now();
            match schedule(&mut self.cache, &mut self.rotation, &pod) {
                Ok(slot) => {
                    metrics::attempt("scheduled", started.elapsed());
                    let attempts = self.backoff.get(&pod.uid).map_or(0, |(n, _)| *n) + 1;
                    let created = pod.created.as_deref().and_then(|c| c.parse::<jiff::Timestamp>().ok());
                    if let Some(since) = created.and_then(|c| jiff::Timestamp::now().duration_since(c).try_into().ok()) {
                        metrics::scheduled(attempts, since);
                    }
                    let node = self.cache.node(slot).map(|n| n.name.clone()).unwrap_or_default();
                    self.cache.assume(&pod.uid, &node);
                    self.bind(pod, node);
                }
                Err(message) => {
                    metrics::attempt("unschedulable", started.elapsed());
                    let wait = self.back_off(&pod.uid, now);
                    retry_in = Some(retry_in.map_or(wait, |r| r.min(wait)));
                    self.unschedulable(pod, message);
                }
            }
        }
        // Forget the precomputed counts nobody asked for in the last thousand cycles, once
        // there are many.
        self.cache.index.trim(self.cache.stamp.saturating_sub(1000), 256);
        self.cache.groups.compact();
        retry_in
    }

    fn bound(&mut self, Bound(uid, ok): Bound) {
        if ok {
            self.backoff.remove(&uid);
        } else {
            metrics::binding_failed();
            // Deleted, or bound by someone else meanwhile: the pod's next event says which.
            // Until then it waits its back-off, so that a binding refused for good is not
            // retried in a loop.
            self.cache.forget(&uid);
            self.back_off(&uid, Instant::now());
        }
    }

    /// One more failed attempt for `uid`; returns how long it now waits.
    fn back_off(&mut self, uid: &str, now: Instant) -> Duration {
        let attempts = self.backoff.get(uid).map_or(0, |(n, _)| *n) + 1;
        let wait = (INITIAL_BACKOFF * 2u32.saturating_pow(attempts - 1)).min(MAX_BACKOFF);
        self.backoff.insert(uid.to_string(), (attempts, now + wait));
        wait
    }

    /// Binds in the background (at most `MAX_BINDS` at once); the outcome comes back as a
    /// `Bound`.
    fn bind(&self, pod: Arc<PodInfo>, node: String) {
        let (client, recorder, binds, done) = (self.client.clone(), self.recorder.clone(), self.binds.clone(), self.done.clone());
        tokio::spawn(async move {
            let _permit = binds.acquire().await;
            let (ns, name) = (pod.namespace.clone(), pod.name.clone());
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns, "uid": pod.uid}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
            let ok = match api.create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{ns}/{name}"), node, "bound");
                    true
                }
                Err(e) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), node, error = %e, "binding failed");
                    false
                }
            };
            let _ = done.send(Bound(pod.uid.clone(), ok));
            if ok {
                recorder.pod_event(&pod.pod, None, EventType::Normal, "Scheduled", &format!("Successfully assigned {ns}/{name} to {node}")).await;
            }
        });
    }

    /// `PodScheduled=False` (when it says something new) and a FailedScheduling event, in the
    /// background.
    fn unschedulable(&self, pod: Arc<PodInfo>, message: String) {
        let (client, recorder) = (self.client.clone(), self.recorder.clone());
        tokio::spawn(async move {
            let (ns, name) = (pod.namespace.clone(), pod.name.clone());
            let current = pod.pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
            if current.is_none_or(|c| c.status != "False" || c.message.as_deref() != Some(message.as_str())) {
                let patch = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": timonier_client::now_rfc3339()}]}});
                let api: Api<Pod> = Api::namespaced(client, &ns);
                if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                    tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "cannot set PodScheduled");
                }
            }
            recorder.pod_event(&pod.pod, None, EventType::Warning, "FailedScheduling", &message).await;
        });
    }
}

fn owner_change<K: kube::Resource>(c: &mut Cache, kind: OwnerKind, ev: Ev<K>, selector: impl Fn(&K) -> Selector) {
    match ev {
        Ev::Apply(o) => {
            let (ns, name) = namespaced(&*o);
            c.apply_owner(kind, &ns, &name, Some(selector(&o)));
        }
        Ev::Delete(o) => {
            let (ns, name) = namespaced(&*o);
            c.apply_owner(kind, &ns, &name, None);
        }
        Ev::Relist(all) => c.relist_owners(
            kind,
            all.iter()
                .map(|o| {
                    let (ns, name) = namespaced(&**o);
                    (ns, name, selector(o))
                })
                .collect(),
        ),
    }
}
