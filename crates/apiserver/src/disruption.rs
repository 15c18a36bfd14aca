//! Pod binding, eviction and PodDisruptionBudgets: `pods/binding` assigns a pod to a node,
//! `pods/eviction` deletes a pod only if no budget forbids it, and the disruption controller
//! keeps each budget's status (what `kubectl get pdb` prints) up to date.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use timonier_api::resources::ResourceDef;
use timonier_api::selector::LabelSelector;

use crate::error::{ApiError, ApiResult};
use crate::rest::{meta_str, now_rfc3339, DeleteOptions, Mode, WriteOptions};
use crate::state::ApiState;

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c.get("type") == Some(&json!("Ready")) && c.get("status") == Some(&json!("True"))))
}

/// A budget's status computed from the pods it selects (upstream's disruption controller,
/// for budgets over plain pods: `expectedPods` is the number of selected pods).
fn budget_status(pdb: &Value, pods: &[Arc<Value>]) -> Value {
    let selector = pdb.pointer("/spec/selector").map(LabelSelector::from_json);
    let selected: Vec<&Arc<Value>> = match selector {
        Some(Ok(sel)) => pods
            .iter()
            .filter(|p| meta_str(p, "deletionTimestamp").is_empty() && sel.matches(p.pointer("/metadata/labels").and_then(Value::as_object)))
            .collect(),
        _ => vec![],
    };
    let expected = selected.len() as i64;
    let healthy = selected.iter().filter(|p| is_ready(p)).count() as i64;
    let resolve = |v: &Value| -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => {
                let pct: f64 = s.strip_suffix('%')?.parse().ok()?;
                Some((pct * expected as f64 / 100.0).ceil() as i64)
            }
            _ => None,
        }
    };
    let desired = match (pdb.pointer("/spec/minAvailable"), pdb.pointer("/spec/maxUnavailable")) {
        (Some(min), _) if !min.is_null() => resolve(min).unwrap_or(expected),
        (_, Some(max)) if !max.is_null() => expected - resolve(max).unwrap_or(0),
        _ => expected,
    }
    .max(0);
    let allowed = (healthy - desired).max(0);
    let generation = pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(1));
    json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": if allowed > 0 { "True" } else { "False" },
            "reason": if allowed > 0 { "SufficientPods" } else { "InsufficientPods" },
            "message": "",
            "observedGeneration": generation,
            "lastTransitionTime": now_rfc3339(),
        }],
    })
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

    /// `POST pods/{name}/eviction`: deletes the pod unless a disruption budget forbids it.
    pub async fn evict(&self, ns: &str, name: &str, eviction: &Value) -> ApiResult<Value> {
        let (pods_def, pods) = self.namespace_objects("", "v1", "pods", ns)?;
        let pod = pods.iter().find(|p| meta_str(p, "name") == name).cloned().ok_or_else(|| ApiError::not_found(&pods_def, name))?;
        let (_, pdbs) = self.namespace_objects("policy", "v1", "poddisruptionbudgets", ns)?;
        let terminal = matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded") | Some("Failed"));
        if !terminal {
            for pdb in &pdbs {
                let covers = pdb
                    .pointer("/spec/selector")
                    .and_then(|s| LabelSelector::from_json(s).ok())
                    .is_some_and(|s| !s.is_empty() && s.matches(pod.pointer("/metadata/labels").and_then(Value::as_object)));
                if covers && budget_status(pdb, &pods)["disruptionsAllowed"].as_i64().unwrap_or(0) < 1 {
                    let mut e = ApiError::too_many_requests("Cannot evict pod as it would violate the pod's disruption budget.");
                    e.details = Some(json!({"causes": [{"reason": "DisruptionBudget", "message": format!("The disruption budget {} needs {} healthy pods and has {} currently", meta_str(pdb, "name"), budget_status(pdb, &pods)["desiredHealthy"], budget_status(pdb, &pods)["currentHealthy"])}]}));
                    return Err(e);
                }
            }
        }
        let mut opts = DeleteOptions::parse(eviction.get("deleteOptions"), &crate::request::Query::default())?;
        opts.uid = opts.uid.or_else(|| Some(meta_str(&pod, "uid").to_string()));
        self.delete(&pods_def, ns, name, &opts).await?;
        Ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}))
    }
}

/// Keeps every PodDisruptionBudget's status current.
pub async fn controller(state: Arc<ApiState>) {
    crate::bootstrap::on_change(state, Duration::from_millis(500), "disruption", |state| async move { sync(&state).await }).await
}

async fn sync(state: &Arc<ApiState>) -> ApiResult<()> {
    let (pdb_def, pdbs) = state.namespace_objects("policy", "v1", "poddisruptionbudgets", "")?;
    for pdb in pdbs {
        let ns = meta_str(&pdb, "namespace").to_string();
        let (_, pods) = state.namespace_objects("", "v1", "pods", &ns)?;
        let status = budget_status(&pdb, &pods);
        let same = |old: &Value| {
            let mut a = old.get("status").cloned().unwrap_or(Value::Null);
            let mut b = status.clone();
            for v in [&mut a, &mut b] {
                if let Some(c) = v.pointer_mut("/conditions/0").and_then(Value::as_object_mut) {
                    c.remove("lastTransitionTime");
                }
            }
            a == b
        };
        if same(&pdb) {
            continue;
        }
        let name = meta_str(&pdb, "name").to_string();
        let updated = state
            .guaranteed_update(&pdb_def, &ns, &name, None, &WriteOptions::default(), |old| {
                let mut new = old.clone();
                if !same(old) {
                    new["status"] = status.clone();
                }
                Ok(new)
            }, Mode::Status)
            .await;
        // A budget deleted meanwhile needs no status; anything else is retried next pass.
        crate::rest::ignore_not_found(updated)?;
    }
    Ok(())
}
