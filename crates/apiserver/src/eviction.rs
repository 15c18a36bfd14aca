//! `POST pods/{name}/eviction` as upstream's `EvictionREST`: a pod that is terminal, pending or
//! already terminating is deleted at once; otherwise its PodDisruptionBudget (at most one)
//! must allow a disruption, and the eviction takes it: `status.disruptionsAllowed` goes down by
//! one and the pod is recorded in `status.disruptedPods`, in one write guarded by the budget's
//! resourceVersion. Two evictions racing for the last allowed disruption cannot both win: the
//! loser's write conflicts, it reads the budget again, finds nothing left and is refused
//! with 429. The disruption controller (`disruption.rs`) counts the recorded pods as gone
//! until they are (or two minutes pass), so it does not hand the disruption out again.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use timonier_api::selector::LabelSelector;

use crate::error::{ApiError, ApiResult};
use crate::request::Query;
use crate::rest::{meta_str, now_rfc3339, DeleteOptions, Mode, WriteOptions};
use crate::state::ApiState;

/// Upstream's `EvictionsRetry`: 20 tries, 500 ms apart (±10 %).
const RETRIES: usize = 20;
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Upstream's `MaxDisruptedPodSize`.
const MAX_DISRUPTED_PODS: usize = 2000;
const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

async fn pause() {
    let jitter = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) % 50) as u64;
    tokio::time::sleep(RETRY_PAUSE + Duration::from_millis(jitter)).await;
}

pub(crate) fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c.get("type") == Some(&json!("Ready")) && c.get("status") == Some(&json!("True"))))
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

fn terminating(pod: &Value) -> bool {
    !meta_str(pod, "deletionTimestamp").is_empty()
}

/// A 429 with the budget named in its cause (`retry_after` 0: none suggested).
fn too_many(cause: String, retry_after: u32) -> ApiError {
    let mut details = json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]});
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
    }
    let mut e = ApiError::too_many_requests(VIOLATION);
    e.details = Some(details);
    e
}

/// Upstream's `createTooManyRequestsError`: the budget's status is not current yet.
fn still_processing(pdb: &str) -> ApiError {
    too_many(format!("The disruption budget {pdb} is still being processed by the server."), 10)
}

fn revision(obj: &Value) -> Option<i64> {
    meta_str(obj, "resourceVersion").parse().ok()
}

fn int(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

/// Upstream's `checkAndDecrement`, on the budget as stored: the new budget, or why not.
pub(crate) fn check_and_decrement(pdb: &Value, pod: &str, now: &str) -> ApiResult<Value> {
    let name = meta_str(pdb, "name");
    let status = pdb.get("status").cloned().unwrap_or_else(|| json!({}));
    if int(status.get("observedGeneration")) < int(pdb.pointer("/metadata/generation")) {
        return Err(still_processing(name));
    }
    let allowed = int(status.get("disruptionsAllowed"));
    if allowed < 0 {
        return Err(ApiError::forbidden(format!("poddisruptionbudget.policy {name:?} is forbidden: pdb disruptions allowed is negative")));
    }
    if status.get("disruptedPods").and_then(Value::as_object).is_some_and(|m| m.len() > MAX_DISRUPTED_PODS) {
        return Err(ApiError::forbidden(format!(
            "poddisruptionbudget.policy {name:?} is forbidden: DisruptedPods map too big - too many evictions not confirmed by PDB controller"
        )));
    }
    if allowed == 0 {
        return Err(too_many(
            format!("The disruption budget {name} needs {} healthy pods and has {} currently", int(status.get("desiredHealthy")), int(status.get("currentHealthy"))),
            0,
        ));
    }
    let mut new = pdb.clone();
    let s = &mut new["status"];
    s["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        crate::disruption::set_allowed_condition(s);
    }
    if !s.get("disruptedPods").is_some_and(Value::is_object) {
        s["disruptedPods"] = json!({});
    }
    s["disruptedPods"][pod] = json!(now);
    Ok(new)
}

impl ApiState {
    /// `POST pods/{name}/eviction`.
    pub async fn evict(&self, ns: &str, name: &str, eviction: &Value, q: &Query) -> ApiResult<Value> {
        let body_name = meta_str(eviction, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
        }
        let pods = self.def("", "v1", "pods")?;
        let mut opts = DeleteOptions::parse(eviction.get("deleteOptions"), &Query::default())?;
        opts.dry_run |= q.get("dryRun") == Some("All");
        // A caller's own resourceVersion precondition is honoured and never retried.
        let caller_rv = opts.resource_version.is_some();
        let success = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});

        // Terminal, pending or terminating pods have disrupted nothing more by going.
        let mut pod;
        let mut tries = 0;
        loop {
            pod = (*self.get(&pods, ns, name).await?).clone();
            let ignore_pdb = matches!(phase(&pod), "Succeeded" | "Failed" | "Pending") || terminating(&pod);
            if !ignore_pdb {
                break;
            }
            let mut o = opts.clone();
            // Not racing a pod that becomes ready meanwhile (upstream's shouldEnforceResourceVersion).
            if !matches!(phase(&pod), "Succeeded" | "Failed") && !terminating(&pod) && !caller_rv {
                o.resource_version = revision(&pod);
            }
            tracing::debug!(pod = %format!("{ns}/{name}"), phase = phase(&pod), terminating = terminating(&pod), "eviction without a budget check");
            match self.delete(&pods, ns, name, &o).await {
                Ok(_) => return Ok(success),
                Err(e) if e.code == 409 && !caller_rv && tries + 1 < RETRIES => {
                    tries += 1;
                    pause().await;
                }
                Err(e) => return Err(e),
            }
        }

        let pdb_def = self.def("policy", "v1", "poddisruptionbudgets")?;
        let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
        let budgets: Vec<Arc<Value>> = self
            .cache_of(&pdb_def)?
            .list(&pdb_def.namespace_prefix(ns))
            .into_iter()
            .map(|(_, v)| v)
            .filter(|b| {
                // An empty selector selects nothing here (not everything).
                b.pointer("/spec/selector").and_then(|s| LabelSelector::from_json(s).ok()).is_some_and(|s| !s.is_empty() && s.matches(labels))
            })
            .collect();
        if budgets.len() > 1 {
            return Err(ApiError::new(500, "", "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."));
        }
        let mut guard_pod = false;
        if let Some(budget) = budgets.first() {
            let pdb_name = meta_str(budget, "name").to_string();
            let status = budget.get("status").cloned().unwrap_or(Value::Null);
            if !is_ready(&pod) {
                // An unready pod is not one of the healthy the budget protects (upstream's
                // unhealthyPodEvictionPolicy: IfHealthyBudget by default, or AlwaysAllow).
                let always = budget.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str) == Some("AlwaysAllow");
                let desired = int(status.get("desiredHealthy"));
                guard_pod = always || (int(status.get("currentHealthy")) >= desired && desired > 0);
            }
            tracing::debug!(pod = %format!("{ns}/{name}"), budget = %pdb_name, ready = is_ready(&pod), unready_allowed = guard_pod, status = %status, "eviction under a budget");
            if !guard_pod {
                self.take_disruption(ns, &pdb_name, budget, name, opts.dry_run).await?;
            }
        }
        let mut o = opts.clone();
        if guard_pod && !caller_rv {
            // The pod must still be unready when it goes (it was not counted against the budget).
            o.resource_version = revision(&pod);
        }
        match self.delete(&pods, ns, name, &o).await {
            Ok(_) => Ok(success),
            Err(e) if e.code == 409 && guard_pod && !caller_rv => {
                Err(still_processing(budgets.first().map(|b| meta_str(b, "name")).unwrap_or_default()))
            }
            Err(e) => Err(e),
        }
    }

    /// Decrements the budget's allowed disruptions for `pod`, retrying on a conflict with a
    /// fresh read (upstream's `RetryOnConflict(EvictionsRetry, checkAndDecrement)`).
    async fn take_disruption(&self, ns: &str, pdb_name: &str, cached: &Value, pod: &str, dry_run: bool) -> ApiResult<()> {
        let pdb_def = self.def("policy", "v1", "poddisruptionbudgets")?;
        let mut budget = cached.clone();
        for attempt in 0..RETRIES {
            if attempt > 0 {
                pause().await;
                budget = (*self.get(&pdb_def, ns, pdb_name).await?).clone();
            }
            let now = now_rfc3339();
            let decremented = check_and_decrement(&budget, pod, &now)?;
            if dry_run {
                return Ok(());
            }
            let opts = WriteOptions::default();
            let result = self
                .guaranteed_update(&pdb_def, ns, pdb_name, revision(&budget), &opts, |_| Ok(decremented.clone()), Mode::Status)
                .await;
            match result {
                Ok(_) => {
                    tracing::debug!(pod, budget = pdb_name, revision = ?revision(&budget), "eviction took a disruption");
                    return Ok(());
                }
                Err(e) if e.code == 409 => {
                    tracing::debug!(pod, budget = pdb_name, revision = ?revision(&budget), "eviction conflicted on the budget; reading it again");
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::new(504, "Timeout", format!("Timeout: couldn't update PodDisruptionBudget {pdb_name:?} due to conflicts"))
            .with_details(json!({"retryAfterSeconds": 10})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(status: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "generation": 1}, "spec": {"minAvailable": 2}, "status": status})
    }

    #[test]
    fn an_eviction_takes_one_allowed_disruption() {
        let b = budget(json!({"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3,
            "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": "", "observedGeneration": 1, "lastTransitionTime": "2025-01-01T00:00:00Z"}]}));
        let after = check_and_decrement(&b, "web-1", "2025-01-01T00:01:00Z").expect("allowed");
        assert_eq!(after["status"]["disruptionsAllowed"], 0);
        assert_eq!(after["status"]["disruptedPods"], json!({"web-1": "2025-01-01T00:01:00Z"}));
        let c = &after["status"]["conditions"][0];
        assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some("InsufficientPods")));
        // The next one finds nothing left.
        let e = check_and_decrement(&after, "web-2", "2025-01-01T00:01:00Z").unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (429, VIOLATION));
        assert_eq!(e.details.unwrap()["causes"][0]["message"], "The disruption budget web needs 2 healthy pods and has 3 currently");
    }

    #[test]
    fn a_budget_not_yet_observed_refuses() {
        let e = check_and_decrement(&budget(json!({})), "p", "t").unwrap_err();
        assert_eq!(e.code, 429);
        let d = e.details.unwrap();
        assert_eq!(d["retryAfterSeconds"], 10);
        assert_eq!(d["causes"][0]["message"], "The disruption budget web is still being processed by the server.");
        let negative = budget(json!({"observedGeneration": 1, "disruptionsAllowed": -1}));
        assert_eq!(check_and_decrement(&negative, "p", "t").unwrap_err().code, 403);
    }
}
