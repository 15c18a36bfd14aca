//! Pod binding and the disruption controller: `pods/binding` assigns a pod to a node, and the
//! disruption controller (upstream's `pkg/controller/disruption`) keeps each
//! PodDisruptionBudget's status — what `kubectl get pdb` prints and what evictions
//! (`eviction.rs`) spend. A budget's expected pods are its pods' controllers' scale (a
//! Deployment counted once across its ReplicaSets) for a percentage or `maxUnavailable`, its
//! pods for an integer `minAvailable`; its healthy pods are the Ready ones not being deleted
//! and not just evicted (`status.disruptedPods`, kept until the pod is deleted or two minutes
//! pass).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use timonier_api::resources::ResourceDef;
use timonier_api::selector::LabelSelector;

use crate::error::{ApiError, ApiResult};
use crate::eviction::is_ready;
use crate::rest::{meta_str, now_rfc3339, Mode, WriteOptions};
use crate::state::ApiState;

/// Upstream's `DeletionTimeout`: how long an eviction's record keeps its pod out of the
/// healthy count if the pod is not deleted.
const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// Upstream's `UpdateDisruptionAllowedCondition` on a status object: the condition follows
/// `disruptionsAllowed`; its transition time moves only when its status does.
pub(crate) fn set_allowed_condition(status: &mut Value) {
    let allowed = status.get("disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0) > 0;
    let generation = status.get("observedGeneration").cloned().unwrap_or(json!(0));
    let (st, reason) = if allowed { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let Some(conds) = status["conditions"].as_array_mut() else { return };
    let old = conds.iter().position(|c| c.get("type") == Some(&json!("DisruptionAllowed")));
    let transition = match old.map(|i| &conds[i]) {
        Some(c) if c.get("status") == Some(&json!(st)) => c.get("lastTransitionTime").cloned().unwrap_or_else(|| json!(now_rfc3339())),
        _ => json!(now_rfc3339()),
    };
    let cond = json!({"type": "DisruptionAllowed", "status": st, "observedGeneration": generation, "lastTransitionTime": transition, "reason": reason, "message": ""});
    match old {
        Some(i) => conds[i] = cond,
        None => conds.push(cond),
    }
}

/// The object's managing controller reference.
fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")?.as_array()?.iter().find(|o| o.get("controller") == Some(&json!(true)))
}

/// How the disruption controller finds the scale of a pod's controller.
pub(crate) trait Controllers {
    /// The object `kind` (of `api_version`) named `name` in `ns`, if any.
    fn find(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Arc<Value>>;
}

impl Controllers for ApiState {
    fn find(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let registry = self.registry();
        let def = registry.all.iter().find(|d| d.group == group && d.kind == kind && d.namespaced)?;
        self.cache_of(def).ok()?.get(&def.key(ns, name))
    }
}

/// The controller (uid, scale) behind a controller reference: a ReplicaSet run by a
/// Deployment stands for that Deployment (upstream's finders: ReplicationController,
/// Deployment, ReplicaSet, StatefulSet, then anything with a scale).
fn controller_scale(found: &dyn Controllers, ns: &str, cref: &Value) -> Option<(String, i64)> {
    let s = |k: &str| cref.get(k).and_then(Value::as_str).unwrap_or("");
    let obj = found.find(s("apiVersion"), s("kind"), ns, s("name")).filter(|o| meta_str(o, "uid") == s("uid"))?;
    let replicas = |o: &Value| o.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    if s("kind") == "ReplicaSet" {
        if let Some(dref) = controller_ref(&obj).filter(|d| d.get("kind") == Some(&json!("Deployment"))) {
            let ds = |k: &str| dref.get(k).and_then(Value::as_str).unwrap_or("");
            let dep = found.find(ds("apiVersion"), "Deployment", ns, ds("name")).filter(|d| meta_str(d, "uid") == ds("uid"))?;
            return Some((ds("uid").to_string(), replicas(&dep)));
        }
    }
    Some((s("uid").to_string(), replicas(&obj)))
}

/// Upstream's `getExpectedScale`: the sum of the scales of the pods' controllers (each once);
/// pods without a controller are left out.
fn expected_scale(found: &dyn Controllers, ns: &str, pods: &[&Arc<Value>]) -> Result<i64, String> {
    let mut scales: HashMap<String, i64> = HashMap::new();
    for pod in pods {
        let Some(cref) = controller_ref(pod) else { continue };
        if cref.get("uid").and_then(Value::as_str).is_some_and(|u| scales.contains_key(u)) {
            continue;
        }
        let (uid, scale) = controller_scale(found, ns, cref).ok_or_else(|| format!("found no controllers for pod {:?}", meta_str(pod, "name")))?;
        scales.insert(uid, scale);
    }
    Ok(scales.values().sum())
}

/// An int-or-percent against `total`, rounded up (upstream's `GetScaledValueFromIntOrPercent`).
fn scaled(v: &Value, total: i64) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((pct * total + 99) / 100)
        }
        _ => None,
    }
}

/// A budget's new status from its pods (upstream's `trySync`), given `now`: the disrupted
/// pods' record carried over from the stored status.
pub(crate) fn budget_status(found: &dyn Controllers, pdb: &Value, pods: &[Arc<Value>], now: jiff::Timestamp) -> Value {
    let ns = meta_str(pdb, "namespace");
    let generation = pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(1));
    let mut status = pdb.get("status").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    let selected: Vec<&Arc<Value>> = match pdb.pointer("/spec/selector").map(LabelSelector::from_json) {
        Some(Ok(sel)) if !sel.is_empty() => pods.iter().filter(|p| sel.matches(p.pointer("/metadata/labels").and_then(Value::as_object))).collect(),
        _ => vec![],
    };
    let min = pdb.pointer("/spec/minAvailable").filter(|v| !v.is_null());
    let max = pdb.pointer("/spec/maxUnavailable").filter(|v| !v.is_null());
    let counts: Result<(i64, i64), String> = match (min, max) {
        (_, Some(max)) => expected_scale(found, ns, &selected).map(|e| (e, (e - scaled(max, e).unwrap_or(0)).max(0))),
        (Some(Value::Number(n)), None) => Ok((selected.len() as i64, n.as_i64().unwrap_or(0))),
        (Some(min), None) => expected_scale(found, ns, &selected).map(|e| (e, scaled(min, e).unwrap_or(0))),
        (None, None) => Ok((0, 0)),
    };
    let (expected, desired) = match counts {
        Ok(c) => c,
        Err(message) => {
            // Upstream's failSafe: no disruption allowed until the count can be made.
            status["disruptionsAllowed"] = json!(0);
            status["observedGeneration"] = generation;
            set_allowed_condition(&mut status);
            if let Some(c) = status.pointer_mut("/conditions").and_then(Value::as_array_mut).and_then(|cs| cs.iter_mut().find(|c| c["type"] == "DisruptionAllowed")) {
                c["reason"] = json!("SyncFailed");
                c["message"] = json!(message);
            }
            return status;
        }
    };
    // Evictions recorded for pods still there and not yet being deleted, until they expire.
    let recorded: Map<String, Value> = status.get("disruptedPods").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut disrupted: BTreeMap<String, Value> = BTreeMap::new();
    for pod in &selected {
        let name = meta_str(pod, "name");
        let Some(at) = recorded.get(name) else { continue };
        if !meta_str(pod, "deletionTimestamp").is_empty() {
            continue;
        }
        let when: Option<jiff::Timestamp> = at.as_str().and_then(|t| t.parse().ok());
        if when.is_some_and(|w| Duration::try_from(now.duration_since(w)).unwrap_or(Duration::ZERO) < DELETION_TIMEOUT) {
            disrupted.insert(name.to_string(), at.clone());
        }
    }
    let healthy = selected
        .iter()
        .filter(|p| meta_str(p, "deletionTimestamp").is_empty() && !disrupted.contains_key(meta_str(p, "name")) && is_ready(p))
        .count() as i64;
    let allowed = if expected <= 0 { 0 } else { (healthy - desired).max(0) };
    let conditions = status.get("conditions").cloned().unwrap_or(json!([]));
    let mut new = json!({"observedGeneration": generation});
    if !disrupted.is_empty() {
        new["disruptedPods"] = json!(disrupted);
    }
    new["disruptionsAllowed"] = json!(allowed);
    new["currentHealthy"] = json!(healthy);
    new["desiredHealthy"] = json!(desired);
    new["expectedPods"] = json!(expected);
    new["conditions"] = conditions;
    set_allowed_condition(&mut new);
    new
}


impl ApiState {
    fn namespace_objects(&self, group: &str, version: &str, plural: &str, ns: &str) -> ApiResult<(Arc<ResourceDef>, Vec<Arc<Value>>)> {
        let def = self.def(group, version, plural)?;
        let items = self.cache_of(&def)?.list(&def.namespace_prefix(ns)).into_iter().map(|(_, v)| v).collect();
        Ok((def, items))
    }

    /// `POST pods/{name}/binding`: assigns the pod to a node, once.
    pub async fn bind(&self, ns: &str, name: &str, binding: &Value) -> ApiResult<Value> {
        let pods = self.def("", "v1", "pods")?;
        let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
        if node.is_empty() {
            return Err(ApiError::invalid(&pods, name, vec![crate::error::FieldError::required("target.name", "")]));
        }
        let pod_name = name.to_string();
        self.guaranteed_update(&pods, ns, name, None, &WriteOptions::default(), |old| {
            if let Some(current) = old.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict(&pods, &pod_name, &format!("pod {pod_name} is already assigned to node {current:?}")));
            }
            if !meta_str(old, "deletionTimestamp").is_empty() {
                return Err(ApiError::conflict(&pods, &pod_name, &format!("pod {pod_name} is being deleted, cannot be assigned to a host")));
            }
            let mut new = old.clone();
            new["spec"]["nodeName"] = json!(node);
            let conds = new["status"].as_object_mut().map(|s| s.entry("conditions").or_insert_with(|| json!([])));
            if let Some(cs) = conds.and_then(Value::as_array_mut) {
                cs.retain(|c| c.get("type") != Some(&json!("PodScheduled")));
                cs.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()}));
            }
            Ok(new)
        }, Mode::Whole)
        .await
        .map(|_| json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}))
    }
}

/// Keeps every PodDisruptionBudget's status current.
pub async fn controller(state: Arc<ApiState>) {
    crate::bootstrap::on_change_of(state, Duration::from_millis(500), "disruption", &[("policy", "v1", "poddisruptionbudgets"), ("", "v1", "pods")], |state| async move { sync(&state).await }).await
}

async fn sync(state: &Arc<ApiState>) -> ApiResult<()> {
    let (pdb_def, pdbs) = state.namespace_objects("policy", "v1", "poddisruptionbudgets", "")?;
    for pdb in pdbs {
        let ns = meta_str(&pdb, "namespace").to_string();
        let (_, pods) = state.namespace_objects("", "v1", "pods", &ns)?;
        let now = jiff::Timestamp::now();
        if budget_status(&**state, &pdb, &pods, now) == pdb.get("status").cloned().unwrap_or(Value::Null) {
            continue;
        }
        let name = meta_str(&pdb, "name").to_string();
        // Computed again on the budget as stored: an eviction may have just recorded a pod
        // that the pod cache still shows as healthy.
        let updated = state
            .guaranteed_update(&pdb_def, &ns, &name, None, &WriteOptions::default(), |old| {
                let mut new = old.clone();
                new["status"] = budget_status(&**state, old, &pods, now);
                Ok(new)
            }, Mode::Status)
            .await;
        // A budget deleted meanwhile needs no status; anything else is retried next pass.
        crate::rest::ignore_not_found(updated)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Objects(Vec<Value>);

    impl Controllers for Objects {
        fn find(&self, _: &str, kind: &str, _: &str, name: &str) -> Option<Arc<Value>> {
            self.0.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name).cloned().map(Arc::new)
        }
    }

    fn pod(name: &str, rs: &str, ready: bool, extra: Value) -> Arc<Value> {
        let mut p = json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": format!("uid-{rs}"), "controller": true}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if let Some(m) = extra.as_object() {
            for (k, v) in m {
                p["metadata"][k] = v.clone();
            }
        }
        Arc::new(p)
    }

    fn world() -> Objects {
        let rs = |name: &str, replicas: i64| json!({"kind": "ReplicaSet", "metadata": {"name": name, "uid": format!("uid-{name}"),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-web", "controller": true}]}, "spec": {"replicas": replicas}});
        Objects(vec![rs("web-a", 1), rs("web-b", 2), json!({"kind": "Deployment", "metadata": {"name": "web", "uid": "uid-web"}, "spec": {"replicas": 3}})])
    }

    fn pdb(spec: Value, status: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        json!({"metadata": {"name": "web", "namespace": "default", "generation": 1}, "spec": spec, "status": status})
    }

    #[test]
    fn expected_pods_are_the_deployments_scale_once() {
        let now: jiff::Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let pods = vec![pod("a", "web-a", true, json!({})), pod("b", "web-b", true, json!({})), pod("c", "web-b", false, json!({}))];
        let s = budget_status(&world(), &pdb(json!({"maxUnavailable": 1}), json!({})), &pods, now);
        assert_eq!((s["expectedPods"].as_i64(), s["desiredHealthy"].as_i64(), s["currentHealthy"].as_i64(), s["disruptionsAllowed"].as_i64()), (Some(3), Some(2), Some(2), Some(0)));
        let s = budget_status(&world(), &pdb(json!({"minAvailable": "50%"}), json!({})), &pods, now);
        assert_eq!((s["desiredHealthy"].as_i64(), s["disruptionsAllowed"].as_i64()), (Some(2), Some(0)), "50% of 3 rounds up");
        let s = budget_status(&world(), &pdb(json!({"minAvailable": 1}), json!({})), &pods, now);
        assert_eq!((s["expectedPods"].as_i64(), s["disruptionsAllowed"].as_i64()), (Some(3), Some(1)));
        assert_eq!(s["conditions"][0]["reason"], "SufficientPods");
        let orphan = Arc::new(json!({"metadata": {"name": "x", "labels": {"app": "web"}, "ownerReferences": [{"kind": "ReplicaSet", "name": "gone", "uid": "u", "controller": true}]}}));
        let s = budget_status(&world(), &pdb(json!({"maxUnavailable": 1}), json!({})), &[orphan], now);
        assert_eq!((s["disruptionsAllowed"].as_i64(), s["conditions"][0]["reason"].as_str()), (Some(0), Some("SyncFailed")));
    }

    #[test]
    fn evicted_pods_do_not_count_until_gone_or_expired() {
        let now: jiff::Timestamp = "2025-01-01T00:10:00Z".parse().unwrap();
        let pods = vec![pod("a", "web-a", true, json!({})), pod("b", "web-b", true, json!({})), pod("c", "web-b", true, json!({"deletionTimestamp": "2025-01-01T00:10:30Z"}))];
        let recorded = json!({"disruptedPods": {"a": "2025-01-01T00:09:30Z", "c": "2025-01-01T00:09:30Z", "gone": "2025-01-01T00:09:30Z"}});
        let s = budget_status(&world(), &pdb(json!({"minAvailable": 1}), recorded), &pods, now);
        assert_eq!(s["disruptedPods"], json!({"a": "2025-01-01T00:09:30Z"}), "kept only for a pod still there and not terminating");
        assert_eq!((s["currentHealthy"].as_i64(), s["disruptionsAllowed"].as_i64()), (Some(1), Some(0)));
        let old = json!({"disruptedPods": {"a": "2025-01-01T00:07:00Z"}});
        let s = budget_status(&world(), &pdb(json!({"minAvailable": 1}), old), &pods, now);
        assert!(s.get("disruptedPods").is_none(), "expired after two minutes");
        assert_eq!(s["currentHealthy"], 2);
    }

    #[test]
    fn the_allowed_condition_moves_its_time_only_on_change() {
        let mut s = json!({"disruptionsAllowed": 1, "observedGeneration": 2, "conditions": [{"type": "DisruptionAllowed", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}]});
        set_allowed_condition(&mut s);
        assert_eq!(s["conditions"][0]["lastTransitionTime"], "2025-01-01T00:00:00Z");
        assert_eq!(s["conditions"][0]["observedGeneration"], 2);
        s["disruptionsAllowed"] = json!(0);
        set_allowed_condition(&mut s);
        assert_ne!(s["conditions"][0]["lastTransitionTime"], "2025-01-01T00:00:00Z");
        assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
    }
}
