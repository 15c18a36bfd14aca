//! The Deployment controller: a Deployment owns ReplicaSets, one per pod template (named
//! `<deployment>-<pod-template-hash>`, the hash also a label of its pods); the one matching
//! the current template is the new ReplicaSet, the others old. RollingUpdate scales the new
//! one up and the old ones down within `maxSurge` / `maxUnavailable`; Recreate scales the old
//! ones to zero first. Revisions (`deployment.kubernetes.io/revision`) number the templates so
//! that `kubectl rollout history` and `undo` work; `revisionHistoryLimit` old ReplicaSets are
//! kept. The status and its Available / Progressing conditions are what `kubectl rollout
//! status` and `kubectl get deployments` read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;
use timonier_client::{watch, EventType, Recorder};

use crate::{controller_uid, owner_reference, revision_of, selector, selects, EXPECTATION_TIMEOUT};

const HASH_LABEL: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// `informers` feeds the watch caches; `client` (the controller's own identity) writes.
pub async fn run(informers: Client, client: Client) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let (deployments, _t1) = watch::<Deployment>(Api::all(informers.clone()), wake.clone());
    let (rss, _t2) = watch::<ReplicaSet>(Api::all(informers), wake.clone());
    let _ = deployments.wait_until_ready().await;
    let _ = rss.wait_until_ready().await;
    let mut c = Controller { recorder: Recorder::new(client.clone(), "deployment-controller", None), client, expected: HashMap::new() };
    loop {
        let again = c.pass(&deployments, &rss).await;
        let _ = tokio::time::timeout(again.unwrap_or(Duration::from_secs(60)), wake.notified()).await;
    }
}

struct Controller {
    client: Client,
    recorder: Recorder,
    /// Per deployment uid: ReplicaSet name → the resourceVersion our last write to it made
    /// (or 0 for a create), until the cache shows it.
    expected: HashMap<String, (HashMap<String, u64>, Instant)>,
}

/// `pod-template-hash`: FNV-1a (32 bit) of the template and the collision count, written with
/// upstream's alphabet of consonants and digits that spell no words.
fn template_hash(template: &PodTemplateSpec, collision_count: i32) -> String {
    let text = serde_json::to_string(template).unwrap_or_default();
    let collisions = if collision_count > 0 { collision_count.to_string() } else { String::new() };
    let h = crate::fnv1a(text.bytes().chain(collisions.bytes()));
    h.to_string().bytes().map(|d| crate::NAME_ALPHABET[d as usize % crate::NAME_ALPHABET.len()] as char).collect()
}

/// The template without the hash label, for comparing a ReplicaSet's with the Deployment's.
fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    t
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations().get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (s.replicas, s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0))
}

/// An int-or-percent of `total`, rounded up (surge) or down (unavailable).
fn scaled(v: Option<&IntOrString>, total: i32, default: &str, round_up: bool) -> i32 {
    match v {
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => percent(s, total, round_up),
        None => percent(default, total, round_up),
    }
}

fn percent(s: &str, total: i32, round_up: bool) -> i32 {
    let p: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
    let v = p * f64::from(total) / 100.0;
    (if round_up { v.ceil() } else { v.floor() }) as i32
}

/// (maxSurge, maxUnavailable) of a RollingUpdate deployment, as upstream resolves them: both
/// zero would never progress, so unavailable becomes 1.
fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1);
    let ru = spec.strategy.and_then(|s| s.rolling_update);
    let surge = scaled(ru.as_ref().and_then(|r| r.max_surge.as_ref()), want, "25%", true);
    let mut unavailable = scaled(ru.as_ref().and_then(|r| r.max_unavailable.as_ref()), want, "25%", false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(want))
}

impl Controller {
    async fn pass(&mut self, deployments: &Store<Deployment>, rss: &Store<ReplicaSet>) -> Option<Duration> {
        let all_rss = rss.state();
        let mut by_ns: HashMap<String, Vec<Arc<ReplicaSet>>> = HashMap::new();
        for rs in &all_rss {
            by_ns.entry(rs.namespace().unwrap_or_default()).or_default().push(rs.clone());
        }
        let all = deployments.state();
        let known: std::collections::HashSet<String> = all.iter().filter_map(|d| d.uid()).collect();
        self.expected.retain(|uid, _| known.contains(uid));
        let mut again = None;
        for d in all {
            let ns = d.namespace().unwrap_or_default();
            let uid = d.uid().unwrap_or_default();
            let empty = vec![];
            let ns_rss = by_ns.get(&ns).unwrap_or(&empty);
            // Wait until the cache shows this controller's last writes for the deployment.
            if let Some((writes, until)) = self.expected.get(&uid) {
                let seen = writes.iter().all(|(name, rv)| ns_rss.iter().any(|rs| rs.name_any() == *name && revision_of(&rs.metadata) >= *rv));
                if !seen && Instant::now() < *until {
                    again = crate::sooner(again, Some(Duration::from_millis(200)));
                    continue;
                }
                self.expected.remove(&uid);
            }
            if d.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Some(t) = self.sync(&d, ns_rss).await {
                again = crate::sooner(again, Some(t));
            }
        }
        again
    }

    fn expect(&mut self, d: &Deployment, rs: &str, rv: u64) {
        let e = self.expected.entry(d.uid().unwrap_or_default()).or_insert_with(|| (HashMap::new(), Instant::now()));
        e.0.insert(rs.to_string(), rv);
        e.1 = Instant::now() + EXPECTATION_TIMEOUT;
    }

    async fn sync(&mut self, d: &Deployment, ns_rss: &[Arc<ReplicaSet>]) -> Option<Duration> {
        let (ns, uid) = (d.namespace().unwrap_or_default(), d.uid().unwrap_or_default());
        let spec = d.spec.clone().unwrap_or_default();
        let sel = selector(Some(&spec.selector))?;
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        // Ours, and orphans our selector matches (adopted).
        let mut owned: Vec<Arc<ReplicaSet>> = vec![];
        for rs in ns_rss {
            match controller_uid(&rs.metadata) {
                Some(u) if u == uid => owned.push(rs.clone()),
                None if rs.metadata.deletion_timestamp.is_none() && selects(&sel, rs.metadata.labels.as_ref()) => {
                    let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(owner_reference("apps/v1", "Deployment", &d.metadata));
                    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.metadata.resource_version}});
                    if rs_api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                        owned.push(rs.clone());
                    }
                }
                _ => {}
            }
        }
        let template = spec.template.clone();
        let collisions = d.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
        let hash = template_hash(&template, collisions);
        let new_pos = owned
            .iter()
            .position(|rs| rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| without_hash(t) == without_hash(&template)))
            .or_else(|| owned.iter().position(|rs| rs.labels().get(HASH_LABEL) == Some(&hash)));
        let max_old_revision = owned.iter().enumerate().filter(|(i, _)| Some(*i) != new_pos).map(|(_, rs)| revision(rs)).max().unwrap_or(0);
        let want = spec.replicas.unwrap_or(1).max(0);
        let (surge, unavailable) = match spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) {
            Some("Recreate") => (0, want),
            _ => surge_and_unavailable(d),
        };
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let mut old: Vec<Arc<ReplicaSet>> = owned.iter().enumerate().filter(|(i, _)| Some(*i) != new_pos).map(|(_, rs)| rs.clone()).collect();
        old.sort_by_key(|rs| (revision(rs), rs.metadata.creation_timestamp.as_ref().map(|t| t.0)));
        let old_total: i32 = old.iter().map(|rs| replicas(rs)).sum();
        let old_pods: i32 = old.iter().map(|rs| status_of(rs).0).sum();
        let paused = spec.paused.unwrap_or(false);

        // The new ReplicaSet: found (its revision brought up to date), or made.
        let new_rs = match new_pos {
            Some(i) => {
                let rs = owned[i].clone();
                if revision(&rs) <= max_old_revision && !paused {
                    let patch = json!({"metadata": {"annotations": {REVISION: (max_old_revision + 1).to_string()}}});
                    if let Ok(updated) = rs_api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
                        self.expect(d, &rs.name_any(), revision_of(&updated.metadata));
                    }
                }
                Some(rs)
            }
            None if paused => None,
            None => {
                let initial = if recreate && old_pods > 0 { 0 } else if old_total == 0 { want } else { (want + surge - old_total).clamp(0, want) };
                self.create_new(d, &template, &hash, max_old_revision + 1, initial, surge).await;
                return Some(Duration::from_millis(200));
            }
        };
        if !paused {
            if let Some(new_rs) = &new_rs {
                if recreate {
                    for rs in &old {
                        self.scale(d, rs, 0, want, surge).await;
                    }
                    if old_pods == 0 {
                        self.scale(d, new_rs, want, want, surge).await;
                    }
                } else if old_total == 0 {
                    self.scale(d, new_rs, want, want, surge).await;
                } else {
                    self.roll(d, new_rs, &old, want, surge, unavailable).await;
                }
            }
            self.cleanup(d, &old, spec.revision_history_limit.unwrap_or(10)).await;
        }
        self.update_status(d, new_rs.as_deref(), &owned, want, unavailable).await
    }

    /// One step of a rolling update, as upstream's: scale the new ReplicaSet up within the
    /// surge, then the old ones down (their unavailable pods first, then the oldest) while
    /// enough pods stay available.
    async fn roll(&mut self, d: &Deployment, new_rs: &ReplicaSet, old: &[Arc<ReplicaSet>], want: i32, surge: i32, unavailable: i32) {
        let new_replicas = replicas(new_rs);
        let total: i32 = old.iter().map(|rs| replicas(rs)).sum::<i32>() + new_replicas;
        let max_total = want + surge;
        if total < max_total && new_replicas < want {
            let up = (max_total - total).min(want - new_replicas);
            self.scale(d, new_rs, new_replicas + up, want, surge).await;
            return;
        }
        let min_available = want - unavailable;
        let new_unavailable = new_replicas - status_of(new_rs).2;
        let mut max_down = total - min_available - new_unavailable;
        if max_down <= 0 {
            return;
        }
        // Old pods that are not available go first: they serve nothing.
        let mut targets: HashMap<String, i32> = old.iter().map(|rs| (rs.name_any(), replicas(rs))).collect();
        for rs in old {
            let unhealthy = (replicas(rs) - status_of(rs).2).max(0).min(max_down);
            if unhealthy > 0 {
                *targets.entry(rs.name_any()).or_default() -= unhealthy;
                max_down -= unhealthy;
            }
        }
        // Then available ones, oldest first, while enough stay available.
        let available: i32 = old.iter().map(|rs| status_of(rs).2).sum::<i32>() + status_of(new_rs).2;
        let mut down = (available - min_available).max(0);
        for rs in old {
            if down == 0 {
                break;
            }
            let t = targets.entry(rs.name_any()).or_default();
            let by = (*t).min(down);
            *t -= by;
            down -= by;
        }
        for rs in old {
            let target = targets.get(&rs.name_any()).copied().unwrap_or(replicas(rs)).max(0);
            if target != replicas(rs) {
                self.scale(d, rs, target, want, surge).await;
            }
        }
    }

    async fn create_new(&mut self, d: &Deployment, template: &PodTemplateSpec, hash: &str, revision: i64, replicas: i32, surge: i32) {
        let (ns, name) = (d.namespace().unwrap_or_default(), d.name_any());
        let mut t = template.clone();
        let meta = t.metadata.get_or_insert_with(Default::default);
        meta.labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.into());
        let labels = meta.labels.clone();
        let mut selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        selector.match_labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.into());
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        // The deployment's own annotations travel to its ReplicaSets (change-cause for
        // `rollout history`), except kubectl's last-applied configuration.
        let mut annotations: std::collections::BTreeMap<String, String> = d.annotations().iter().filter(|(k, _)| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration" && k.as_str() != REVISION).map(|(k, v)| (k.clone(), v.clone())).collect();
        annotations.insert(REVISION.into(), revision.to_string());
        annotations.insert(DESIRED.into(), want.to_string());
        annotations.insert(MAX_REPLICAS.into(), (want + surge).to_string());
        let rs_name = format!("{name}-{hash}");
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": ns, "labels": labels, "annotations": annotations, "ownerReferences": [owner_reference("apps/v1", "Deployment", &d.metadata)]},
            "spec": {"replicas": replicas, "minReadySeconds": d.spec.as_ref().and_then(|s| s.min_ready_seconds), "selector": selector, "template": t},
        });
        let rs: ReplicaSet = match serde_json::from_value(rs) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build a ReplicaSet");
                return;
            }
        };
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                self.expect(d, &rs_name, revision_of(&created.metadata));
                self.recorder.event(d, None, EventType::Normal, "ScalingReplicaSet", &format!("Scaled up replica set {rs_name} from 0 to {replicas}")).await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // A ReplicaSet of that name with another template: a hash collision. The next
                // pass tries the next hash.
                let existing = api.get(&rs_name).await.ok();
                let same = existing.as_ref().and_then(|rs| rs.spec.as_ref()).and_then(|s| s.template.as_ref()).is_some_and(|t| without_hash(t) == without_hash(template));
                if !same {
                    let dapi: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
                    let count = d.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0) + 1;
                    let mut status = serde_json::to_value(d.status.clone().unwrap_or_default()).unwrap_or_else(|_| json!({}));
                    status["collisionCount"] = json!(count);
                    let _ = crate::update_status(&dapi, d, status).await;
                }
            }
            Err(e) => tracing::warn!(deployment = %format!("{ns}/{name}"), error = %e, "cannot create a ReplicaSet"),
        }
    }

    async fn scale(&mut self, d: &Deployment, rs: &ReplicaSet, to: i32, want: i32, surge: i32) {
        let from = replicas(rs);
        let annotations = rs.annotations();
        let (desired, max) = (want.to_string(), (want + surge).to_string());
        if from == to && annotations.get(DESIRED) == Some(&desired) && annotations.get(MAX_REPLICAS) == Some(&max) {
            return;
        }
        let (ns, name) = (rs.namespace().unwrap_or_default(), rs.name_any());
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let patch = json!({"metadata": {"annotations": {DESIRED: desired, MAX_REPLICAS: max}, "resourceVersion": rs.metadata.resource_version}, "spec": {"replicas": to}});
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(updated) => {
                self.expect(d, &name, revision_of(&updated.metadata));
                if from != to {
                    let how = if to > from { "up" } else { "down" };
                    self.recorder.event(d, None, EventType::Normal, "ScalingReplicaSet", &format!("Scaled {how} replica set {name} from {from} to {to}")).await;
                }
            }
            Err(e) => tracing::debug!(replicaset = %format!("{ns}/{name}"), error = %e, "scale failed"),
        }
    }

    /// Deletes the oldest old ReplicaSets without pods beyond `limit`.
    async fn cleanup(&mut self, d: &Deployment, old: &[Arc<ReplicaSet>], limit: i32) {
        let idle: Vec<&Arc<ReplicaSet>> = old.iter().filter(|rs| replicas(rs) == 0 && status_of(rs).0 == 0 && rs.metadata.deletion_timestamp.is_none()).collect();
        let excess = idle.len().saturating_sub(limit.max(0) as usize);
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
        for rs in idle.into_iter().take(excess) {
            let _ = api.delete(&rs.name_any(), &DeleteParams::background()).await;
        }
    }

    /// Writes the status; returns when to look again for the progress deadline to pass.
    async fn update_status(&mut self, d: &Deployment, new_rs: Option<&ReplicaSet>, owned: &[Arc<ReplicaSet>], want: i32, unavailable: i32) -> Option<Duration> {
        let (ns, name) = (d.namespace().unwrap_or_default(), d.name_any());
        let (mut total, mut ready, mut available) = (0, 0, 0);
        for rs in owned {
            let (r, re, a) = status_of(rs);
            total += r;
            ready += re;
            available += a;
        }
        let updated = new_rs.map(|rs| status_of(rs).0).unwrap_or(0);
        let old = d.status.clone().unwrap_or_default();
        let now = crate::now_rfc3339();
        let find = |t: &str| old.conditions.iter().flatten().find(|c| c.type_ == t).cloned();
        let condition = |t: &str, status: &str, reason: &str, message: String, progress: bool| {
            let prev = find(t);
            let same = prev.as_ref().is_some_and(|c| c.status == status && c.reason.as_deref() == Some(reason));
            let transition = prev.as_ref().filter(|c| c.status == status).and_then(|c| c.last_transition_time.clone()).map(|t| t.0.to_string()).unwrap_or_else(|| now.clone());
            let update = match (same && !progress, prev.as_ref().and_then(|c| c.last_update_time.clone())) {
                (true, Some(t)) => t.0.to_string(),
                _ => now.clone(),
            };
            json!({"type": t, "status": status, "reason": reason, "message": message, "lastUpdateTime": update, "lastTransitionTime": transition})
        };
        let available_cond = if available >= want - unavailable {
            condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into(), false)
        } else {
            condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".into(), false)
        };
        let rs_name = new_rs.map(|rs| rs.name_any()).unwrap_or_default();
        let mut check_again = None;
        let complete = new_rs.is_some() && updated == want && total == want && available == want;
        let progressing = match (complete, new_rs) {
            (true, _) => condition("Progressing", "True", "NewReplicaSetAvailable", format!("ReplicaSet \"{rs_name}\" has successfully progressed."), false),
            (false, Some(rs)) if status_of(rs).0 == 0 && replicas(rs) > 0 && total == 0 => {
                condition("Progressing", "True", "NewReplicaSetCreated", format!("Created new replica set \"{rs_name}\""), true)
            }
            (false, Some(_)) => {
                let moved = old.updated_replicas.unwrap_or(0) != updated || old.available_replicas.unwrap_or(0) != available || old.replicas.unwrap_or(0) != total;
                // No progress for progressDeadlineSeconds: the rollout has timed out.
                let deadline = i64::from(d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600));
                let prev = find("Progressing");
                let since = prev.as_ref().and_then(|c| c.last_update_time.as_ref()).map(|t| t.0);
                let stalled = since.map(|t| jiff::Timestamp::now().duration_since(t).as_secs()).filter(|_| !moved);
                let timed_out = prev.as_ref().and_then(|c| c.reason.as_deref()) == Some("ProgressDeadlineExceeded") && !moved;
                if timed_out || stalled.is_some_and(|s| s >= deadline) {
                    condition("Progressing", "False", "ProgressDeadlineExceeded", format!("ReplicaSet \"{rs_name}\" has timed out progressing."), false)
                } else {
                    if let Some(s) = stalled {
                        check_again = Some(Duration::from_secs((deadline - s).max(1) as u64));
                    }
                    condition("Progressing", "True", "ReplicaSetUpdated", format!("ReplicaSet \"{rs_name}\" is progressing."), moved)
                }
            }
            (false, None) => condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into(), false),
        };
        let status = json!({
            "observedGeneration": d.metadata.generation,
            "replicas": total, "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
            "unavailableReplicas": (want - available).max(0),
            "conditions": [available_cond, progressing],
            "collisionCount": old.collision_count,
        });
        // Write only what changed (conditions compared without their timestamps).
        let current = serde_json::to_value(&old).unwrap_or_default();
        let strip = |v: &serde_json::Value| {
            let mut v = v.clone();
            for c in v.get_mut("conditions").and_then(|c| c.as_array_mut()).into_iter().flatten() {
                if let Some(o) = c.as_object_mut() {
                    o.remove("lastUpdateTime");
                    o.remove("lastTransitionTime");
                }
            }
            for k in ["readyReplicas", "availableReplicas", "unavailableReplicas", "updatedReplicas", "replicas", "collisionCount"] {
                if v.get(k).is_some_and(|x| x == 0 || x.is_null()) {
                    v.as_object_mut().map(|o| o.remove(k));
                }
            }
            v
        };
        if strip(&current) == strip(&status) {
            return check_again;
        }
        let mut annotations = serde_json::Map::new();
        if let Some(rs) = new_rs {
            let rev = revision(rs).to_string();
            if d.annotations().get(REVISION) != Some(&rev) {
                annotations.insert(REVISION.into(), json!(rev));
            }
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        // Updates of the Deployment as cached, as upstream's (the controller's role grants
        // update, not patch); a conflict means a newer Deployment, which wakes another pass.
        let mut current = d.clone();
        if !annotations.is_empty() {
            let mut updated = d.clone();
            let map = updated.metadata.annotations.get_or_insert_with(Default::default);
            for (k, v) in annotations {
                map.insert(k, v.as_str().unwrap_or("").to_string());
            }
            match api.replace(&name, &PostParams::default(), &updated).await {
                Ok(u) => current = u,
                Err(e) => {
                    tracing::debug!(deployment = %format!("{ns}/{name}"), error = %e, "revision annotation update failed");
                    return check_again;
                }
            }
        }
        if let Err(e) = crate::update_status(&api, &current, json!(status)).await {
            tracing::debug!(deployment = %format!("{ns}/{name}"), error = %e, "status update failed");
        }
        check_again
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_change_with_the_template() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}})).unwrap();
        let t2: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x:2"}]}})).unwrap();
        let h = template_hash(&t, 0);
        assert_eq!(h, template_hash(&t, 0));
        assert_ne!(h, template_hash(&t2, 0));
        assert_ne!(h, template_hash(&t, 1));
        assert!(h.len() >= 8 && h.bytes().all(|c| crate::NAME_ALPHABET.contains(&c)), "{h}");
    }

    #[test]
    fn surge_and_unavailable_round_as_upstream() {
        let d = |replicas: i32, surge: serde_json::Value, unavail: serde_json::Value| -> Deployment {
            serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"replicas": replicas, "selector": {}, "template": {}, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavail}}}})).unwrap()
        };
        assert_eq!(surge_and_unavailable(&d(4, json!("25%"), json!("25%"))), (1, 1));
        assert_eq!(surge_and_unavailable(&d(10, json!("25%"), json!("25%"))), (3, 2));
        assert_eq!(surge_and_unavailable(&d(1, json!("25%"), json!("25%"))), (1, 0));
        assert_eq!(surge_and_unavailable(&d(3, json!(0), json!(0))), (0, 1));
    }
}
