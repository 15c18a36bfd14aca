//! The ReplicaSet controller: each ReplicaSet owns (adopting orphans, releasing strays) the
//! pods its selector matches, creates pods from its template or deletes the least valuable
//! ones until the active count is `spec.replicas`, and reports replicas, fullyLabeled, ready
//! and available counts (`minReadySeconds`) in its status, with upstream's events
//! (`SuccessfulCreate`, `SuccessfulDelete`, `FailedCreate`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;
use timonier_client::{watch, EventType, Recorder};

use crate::{active, available, controller_uid, owner_reference, selector, selects, sooner, EXPECTATION_TIMEOUT};

/// At most this many pods created or deleted per ReplicaSet per pass (upstream's burst).
const BURST: usize = 500;

/// Writes a pass made that the pod cache does not show yet.
struct Expectation {
    /// Names of pods created.
    adds: HashSet<String>,
    /// Uids of pods deleted.
    deletes: HashSet<String>,
    until: Instant,
}

impl Expectation {
    /// The writes expected for ReplicaSet `uid`, waited for from now on.
    fn renew(all: &mut HashMap<String, Expectation>, uid: String) -> &mut Expectation {
        let exp = all.entry(uid).or_insert_with(|| Expectation { adds: HashSet::new(), deletes: HashSet::new(), until: Instant::now() });
        exp.until = Instant::now() + EXPECTATION_TIMEOUT;
        exp
    }
}

/// `informers` feeds the watch caches; `client` (the controller's own identity) writes.
pub async fn run(informers: Client, client: Client) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let (rss, _t1) = watch::<ReplicaSet>(Api::all(informers.clone()), wake.clone());
    let (pods, _t2) = watch::<Pod>(Api::all(informers), wake.clone());
    let _ = rss.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let mut c = Controller { recorder: Recorder::new(client.clone(), "replicaset-controller", None), client, expectations: HashMap::new() };
    loop {
        let again = c.pass(&rss, &pods).await;
        let _ = tokio::time::timeout(again.unwrap_or(Duration::from_secs(60)), wake.notified()).await;
    }
}

struct Controller {
    client: Client,
    recorder: Recorder,
    expectations: HashMap<String, Expectation>,
}

impl Controller {
    /// Syncs every ReplicaSet; returns when a pass is needed again without any change
    /// (a pod becoming available after `minReadySeconds`).
    async fn pass(&mut self, rss: &Store<ReplicaSet>, pods: &Store<Pod>) -> Option<Duration> {
        let all_pods = pods.state();
        let mut by_ns: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for p in &all_pods {
            by_ns.entry(p.namespace().unwrap_or_default()).or_default().push(p.clone());
        }
        let names: HashSet<(String, String)> = all_pods.iter().map(|p| (p.namespace().unwrap_or_default(), p.name_any())).collect();
        let live: HashMap<String, bool> = all_pods.iter().map(|p| (p.uid().unwrap_or_default(), p.metadata.deletion_timestamp.is_some())).collect();
        let all_rss = rss.state();
        let known: HashSet<String> = all_rss.iter().filter_map(|r| r.uid()).collect();
        self.expectations.retain(|uid, _| known.contains(uid));
        let mut again = None;
        for rs in all_rss {
            let ns = rs.namespace().unwrap_or_default();
            let empty = vec![];
            let ns_pods = by_ns.get(&ns).unwrap_or(&empty);
            let uid = rs.uid().unwrap_or_default();
            let satisfied = self.expectations.get(&uid).is_none_or(|e| {
                Instant::now() > e.until
                    || (e.adds.iter().all(|n| names.contains(&(ns.clone(), n.clone()))) && e.deletes.iter().all(|u| live.get(u).is_none_or(|deleting| *deleting)))
            });
            if satisfied {
                self.expectations.remove(&uid);
            }
            again = sooner(again, self.sync(&rs, ns_pods, satisfied).await);
        }
        again
    }

    async fn sync(&mut self, rs: &ReplicaSet, ns_pods: &[Arc<Pod>], manage: bool) -> Option<Duration> {
        let (ns, name, uid) = (rs.namespace().unwrap_or_default(), rs.name_any(), rs.uid().unwrap_or_default());
        let spec = rs.spec.clone().unwrap_or_default();
        let sel = selector(Some(&spec.selector))?;
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let deleting = rs.metadata.deletion_timestamp.is_some();
        // Claim: ours if it names us; adopt orphans that match; release ours that no longer match.
        let mut owned: Vec<Arc<Pod>> = vec![];
        for p in ns_pods {
            let matches = selects(&sel, p.metadata.labels.as_ref());
            match controller_uid(&p.metadata) {
                Some(u) if u == uid => {
                    if matches {
                        owned.push(p.clone());
                    } else if !deleting {
                        let refs: Vec<_> = p.metadata.owner_references.iter().flatten().filter(|o| o.uid != uid).cloned().collect();
                        let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": p.metadata.resource_version}});
                        let _ = pods_api.patch(&p.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await;
                    }
                }
                Some(_) => {}
                None if matches && !deleting && p.metadata.deletion_timestamp.is_none() => {
                    let mut refs: Vec<_> = p.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(owner_reference("apps/v1", "ReplicaSet", &rs.metadata));
                    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": p.metadata.resource_version}});
                    if pods_api.patch(&p.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                        owned.push(p.clone());
                    }
                }
                None => {}
            }
        }
        let act: Vec<&Arc<Pod>> = owned.iter().filter(|p| active(p)).collect();
        let want = spec.replicas.unwrap_or(1).max(0) as usize;
        let mut failure = None;
        if manage && !deleting {
            if act.len() < want {
                failure = self.create_pods(rs, want - act.len()).await;
            } else if act.len() > want {
                self.delete_pods(rs, &act, act.len() - want).await;
            }
        }
        // Status, from what the cache shows now (the next pass sees this pass's writes).
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let template_labels = spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
        let mut again = None;
        let (mut ready, mut avail) = (0, 0);
        for p in &act {
            if crate::ready_since(p).is_some() {
                ready += 1;
            }
            let (ok, later) = available(p, min_ready);
            avail += i32::from(ok);
            again = sooner(again, later);
        }
        let fully_labeled = act.iter().filter(|p| template_labels.iter().all(|(k, v)| p.labels().get(k) == Some(v))).count();
        let old = rs.status.clone().unwrap_or_default();
        let mut conditions: Vec<serde_json::Value> = vec![];
        if let Some(msg) = &failure {
            conditions.push(json!({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": msg, "lastTransitionTime": crate::now_rfc3339()}));
        }
        let changed = old.replicas != act.len() as i32
            || old.fully_labeled_replicas.unwrap_or(0) != fully_labeled as i32
            || old.ready_replicas.unwrap_or(0) != ready
            || old.available_replicas.unwrap_or(0) != avail
            || old.observed_generation != rs.metadata.generation
            || old.conditions.as_ref().is_some_and(|c| !c.is_empty()) != failure.is_some();
        if changed {
            // An update of the status as cached (its resourceVersion guards it, as upstream's
            // UpdateStatus: a conflict means a newer ReplicaSet, which wakes another pass).
            let status = json!({
                "replicas": act.len(), "fullyLabeledReplicas": fully_labeled, "readyReplicas": ready, "availableReplicas": avail,
                "observedGeneration": rs.metadata.generation, "conditions": conditions,
            });
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
            if let Err(e) = crate::update_status(&api, rs, status).await {
                tracing::debug!(replicaset = %format!("{ns}/{name}"), error = %e, "status update failed");
            }
        }
        again
    }

    /// Creates `n` pods from the template; returns the first failure's message.
    async fn create_pods(&mut self, rs: &ReplicaSet, n: usize) -> Option<String> {
        let (ns, name, uid) = (rs.namespace().unwrap_or_default(), rs.name_any(), rs.uid().unwrap_or_default());
        let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
        let meta = template.metadata.unwrap_or_default();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "generateName": format!("{name}-"), "namespace": ns, "labels": meta.labels, "annotations": meta.annotations,
                "ownerReferences": [owner_reference("apps/v1", "ReplicaSet", &rs.metadata)],
            },
            "spec": template.spec,
        });
        let pod: Pod = match serde_json::from_value(pod) {
            Ok(p) => p,
            Err(e) => return Some(e.to_string()),
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let exp = Expectation::renew(&mut self.expectations, uid);
        // Upstream's slowStartBatch: batches of 1, 2, 4, … in parallel, stopping at the first
        // batch with a failure, so that a quota or webhook refusal costs one request, not n.
        let (mut left, mut batch) = (n.min(BURST), 1);
        while left > 0 {
            let size = batch.min(left);
            let post = PostParams::default();
            let results = futures::future::join_all((0..size).map(|_| api.create(&post, &pod))).await;
            let mut events = Vec::new();
            let mut failure = None;
            for r in results {
                match r {
                    Ok(created) => {
                        let pod_name = created.name_any();
                        exp.adds.insert(pod_name.clone());
                        events.push((EventType::Normal, "SuccessfulCreate", format!("Created pod: {pod_name}")));
                    }
                    Err(e) => {
                        let msg = match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            other => other.to_string(),
                        };
                        events.push((EventType::Warning, "FailedCreate", format!("Error creating: {msg}")));
                        failure.get_or_insert(msg);
                    }
                }
            }
            futures::future::join_all(events.iter().map(|(kind, reason, message)| self.recorder.event(rs, None, *kind, reason, message))).await;
            if failure.is_some() {
                return failure;
            }
            left -= size;
            batch *= 2;
        }
        None
    }

    /// Deletes the `n` least valuable active pods, in upstream's order: unscheduled before
    /// scheduled, pending before running, not ready before ready, ready more recently
    /// before longer, more restarts before fewer, newer before older.
    async fn delete_pods(&mut self, rs: &ReplicaSet, act: &[&Arc<Pod>], n: usize) {
        let (ns, uid) = (rs.namespace().unwrap_or_default(), rs.uid().unwrap_or_default());
        let mut ranked: Vec<&Arc<Pod>> = act.to_vec();
        ranked.sort_by_key(|p| {
            let spec_node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
            let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Pending") => 0,
                Some("Running") => 2,
                _ => 1,
            };
            let ready = crate::ready_since(p);
            let restarts: i32 = p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map(|cs| cs.iter().map(|c| c.restart_count).sum()).unwrap_or(0);
            let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (
                !spec_node.is_empty(),
                phase,
                ready.is_some(),
                std::cmp::Reverse(ready),
                std::cmp::Reverse(restarts),
                std::cmp::Reverse(created),
            )
        });
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let exp = Expectation::renew(&mut self.expectations, uid);
        // In parallel, as upstream deletes them.
        let victims: Vec<&Arc<Pod>> = ranked.into_iter().take(n.min(BURST)).collect();
        let dp = DeleteParams::default();
        let results = futures::future::join_all(victims.iter().map(|p| api.delete(p.metadata.name.as_deref().unwrap_or(""), &dp))).await;
        let mut events = Vec::new();
        for (p, r) in victims.iter().zip(results) {
            let pod_name = p.name_any();
            match r {
                Ok(_) => {
                    exp.deletes.insert(p.uid().unwrap_or_default());
                    events.push(format!("Deleted pod: {pod_name}"));
                }
                Err(e) => tracing::debug!(pod = %pod_name, error = %e, "delete failed"),
            }
        }
        futures::future::join_all(events.iter().map(|m| self.recorder.event(rs, None, EventType::Normal, "SuccessfulDelete", m))).await;
    }
}
