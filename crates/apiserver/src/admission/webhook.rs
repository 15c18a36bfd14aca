//! Admission webhooks: which ones a request calls, the `admission.k8s.io/v1` AdmissionReview
//! they get, and what their answers do — as upstream's `admission/plugin/webhook/{mutating,
//! validating}` dispatchers. A webhook's answer is outside input: anything malformed is a
//! call failure, handled by its `failurePolicy`, never a panic.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::client::{self, CallError};
use super::matching::{self, RuleMatch};
use super::{cel, warn, Attributes, Operation};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;
use timonier_api::resources::ResourceDef;

/// `celconfig.RuntimeCELCostBudgetMatchConditions`.
const MATCH_CONDITIONS_BUDGET: u64 = 5_000_000;

/// One webhook of a configuration.
pub(crate) struct Hook {
    pub config: String,
    pub spec: Value,
}

impl Hook {
    fn name(&self) -> &str {
        self.spec.get("name").and_then(Value::as_str).unwrap_or("")
    }

    fn fails_closed(&self) -> bool {
        self.spec.get("failurePolicy").and_then(Value::as_str) != Some("Ignore")
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.spec.get("timeoutSeconds").and_then(Value::as_u64).unwrap_or(10).clamp(1, 30))
    }

    fn reinvoke_if_needed(&self) -> bool {
        self.spec.get("reinvocationPolicy").and_then(Value::as_str) == Some("IfNeeded")
    }
}

/// Why a call did not give an answer: subject to the webhook's failurePolicy.
#[derive(Debug, thiserror::Error)]
enum HookError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("received invalid webhook response: {0}")]
    Response(String),
    #[error("{0}")]
    Other(String),
}

/// What a webhook answered.
#[derive(Debug)]
struct Answer {
    allowed: bool,
    status: Option<Value>,
    patch: Option<Vec<u8>>,
    patch_type: Option<String>,
}

/// Whether `hook` applies to the request, and as which resource: rules (under its
/// matchPolicy), selectors, then matchConditions (which see the object in the version the
/// rule named).
fn applies(state: &ApiState, hook: &Hook, attrs: &Attributes) -> Result<RuleMatch, HookError> {
    let matched = matching::match_rules(hook.spec.get("rules"), attrs, hook.spec.get("matchPolicy"));
    if !matched.matched() {
        return Ok(RuleMatch::No);
    }
    if !matching::namespace_matches(hook.spec.get("namespaceSelector"), attrs).map_err(HookError::Other)?
        || !matching::object_matches(hook.spec.get("objectSelector"), attrs).map_err(HookError::Other)?
    {
        return Ok(RuleMatch::No);
    }
    let conditions = hook.spec.get("matchConditions").and_then(Value::as_array).cloned().unwrap_or_default();
    if conditions.is_empty() {
        return Ok(matched);
    }
    // matchConditions have `authorizer` too, answered by RBAC for the requesting user.
    let check = |user: &crate::auth::UserInfo, a: &crate::rbac::Attributes| state.authorize(user, a);
    let request = request_json(attrs, "", matched.equivalent());
    let vars = cel::Vars::for_request(attrs, None, &request).with_authorizer(attrs, &check);
    // As upstream's matcher: all are evaluated (sharing `RuntimeCELCostBudgetMatchConditions`);
    // any false skips the webhook, even beside errors; otherwise an error fails the call.
    let budget = cel::Budget::with(MATCH_CONDITIONS_BUDGET);
    let mut error = None;
    for c in &conditions {
        let expr = c.get("expression").and_then(Value::as_str).unwrap_or("");
        match cel::eval_bool_in(expr, &vars, &budget) {
            Ok(true) => {}
            Ok(false) => return Ok(RuleMatch::No),
            Err(e) if budget.exhausted() => return Err(HookError::Other(e)),
            Err(e) => {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                error.get_or_insert_with(|| HookError::Other(format!("failed to evaluate match condition {name:?}: {e}")));
            }
        }
    }
    error.map_or(Ok(matched), Err)
}

/// The AdmissionRequest of `attrs` (also CEL's `request`). With `as_def`, an equivalent
/// resource a rule matched, `kind`, `resource` and the objects are of that version, and
/// `requestKind`/`requestResource` of the request's own.
pub(crate) fn request_json(attrs: &Attributes, uid: &str, as_def: Option<&ResourceDef>) -> Value {
    let def = attrs.def;
    // A CONNECT's object is its options (`PodExecOptions`, …), and its kind theirs.
    let kind_of = |d: &ResourceDef| match (attrs.operation, attrs.object.as_ref()) {
        (Operation::Connect, Some(o)) => json!({"group": "", "version": "v1", "kind": o.get("kind").cloned().unwrap_or(Value::Null)}),
        _ => json!({"group": d.group, "version": d.version, "kind": d.kind}),
    };
    let resource_of = |d: &ResourceDef| json!({"group": d.group, "version": d.version, "resource": d.plural});
    let target = as_def.unwrap_or(def);
    let version = |o: &Value| as_def.map_or_else(|| o.clone(), |to| matching::convert(def, to, o));
    let mut groups = attrs.user.groups.clone();
    groups.dedup();
    let mut r = json!({
        "uid": uid,
        "kind": kind_of(target),
        "resource": resource_of(target),
        "requestKind": kind_of(def),
        "requestResource": resource_of(def),
        "name": attrs.name,
        "operation": attrs.operation.as_str(),
        "userInfo": {"username": attrs.user.name, "groups": groups},
        "object": attrs.object.as_ref().map_or(Value::Null, version),
        "oldObject": attrs.old.map_or(Value::Null, version),
        "dryRun": attrs.dry_run,
        "options": attrs.operation.options(attrs.dry_run),
    });
    if !attrs.namespace.is_empty() {
        r["namespace"] = json!(attrs.namespace);
    }
    if !attrs.subresource.is_empty() {
        r["subResource"] = json!(attrs.subresource);
        r["requestSubResource"] = json!(attrs.subresource);
    }
    r
}

/// Calls `hook` if it applies. `Ok(None)`: not called, or failed and ignored; with the
/// answer, the equivalent resource the call was made as (its patch is of that version).
async fn call(state: &ApiState, hook: &Hook, attrs: &Attributes<'_>) -> ApiResult<Option<(Answer, RuleMatch)>> {
    let name = hook.name();
    let outcome = match applies(state, hook, attrs) {
        Ok(RuleMatch::No) => return Ok(None),
        Ok(matched) => {
            if attrs.dry_run {
                let side_effects = hook.spec.get("sideEffects").and_then(Value::as_str).unwrap_or("Unknown");
                if side_effects != "None" && side_effects != "NoneOnDryRun" {
                    return Err(ApiError::bad_request(format!("admission webhook {name:?} does not support dry run")));
                }
            }
            exchange(state, hook, attrs, matched.equivalent()).await.map(|a| (a, matched))
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(answer) => Ok(Some(answer)),
        Err(e) if hook.fails_closed() => Err(ApiError::internal(format!("failed calling webhook {name:?}: {e}"))),
        Err(e) => {
            tracing::warn!(webhook = name, configuration = hook.config, error = %e, "failed calling webhook, failing open");
            Ok(None)
        }
    }
}

async fn exchange(state: &ApiState, hook: &Hook, attrs: &Attributes<'_>, as_def: Option<&ResourceDef>) -> Result<Answer, HookError> {
    let versions: Vec<&str> = hook.spec.get("admissionReviewVersions").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let version = ["v1", "v1beta1"]
        .into_iter()
        .find(|v| versions.contains(v))
        .ok_or_else(|| HookError::Other(format!("webhook does not accept known AdmissionReview versions: {versions:?}")))?;
    let api_version = format!("admission.k8s.io/{version}");
    let uid = uuid::Uuid::new_v4().to_string();
    let review = json!({"apiVersion": api_version, "kind": "AdmissionReview", "request": request_json(attrs, &uid, as_def)});
    let body = serde_json::to_vec(&review).map_err(|e| HookError::Other(e.to_string()))?;
    let cc = hook.spec.get("clientConfig").cloned().unwrap_or(Value::Null);
    let timeout = hook.timeout();
    let target = client::resolve(state, &cc, timeout)?;
    let ca = cc.get("caBundle").and_then(Value::as_str);
    let bytes = client::post(&target, ca, body, timeout).await?;
    parse_answer(&bytes, &api_version, &uid).map_err(HookError::Response)
}

/// Checks and reads an AdmissionReview answer, as upstream's `VerifyAdmissionResponse`.
fn parse_answer(bytes: &[u8], api_version: &str, uid: &str) -> Result<Answer, String> {
    let review: Value = serde_json::from_slice(bytes).map_err(|e| format!("cannot decode the AdmissionReview: {e}"))?;
    let (av, kind) = (review.get("apiVersion").and_then(Value::as_str).unwrap_or(""), review.get("kind").and_then(Value::as_str).unwrap_or(""));
    if av != api_version || kind != "AdmissionReview" {
        return Err(format!("expected webhook response of {api_version}, Kind=AdmissionReview, got {av}, Kind={kind}"));
    }
    let r = review.get("response").filter(|r| r.is_object()).ok_or("webhook response was absent")?;
    let got = r.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let allowed = r.get("allowed").and_then(Value::as_bool).ok_or("response.allowed is missing or not a boolean")?;
    let patch = match r.get("patch").and_then(Value::as_str) {
        Some(p) => Some(base64::engine::general_purpose::STANDARD.decode(p).map_err(|e| format!("response.patch is not base64: {e}"))?),
        None => None,
    };
    let patch_type = r.get("patchType").and_then(Value::as_str).map(str::to_string);
    if api_version.ends_with("/v1") {
        match (&patch, &patch_type) {
            (Some(_), None) => return Err("webhook returned response.patch but not response.patchType".into()),
            (None, Some(_)) => return Err("webhook returned response.patchType but not response.patch".into()),
            _ => {}
        }
    }
    for w in r.get("warnings").and_then(Value::as_array).into_iter().flatten() {
        // Upstream drops warnings a header cannot carry.
        if let Some(w) = w.as_str().filter(|w| !w.is_empty() && !w.chars().any(char::is_control)) {
            warn(w.chars().take(4096).collect());
        }
    }
    // Go's `Result` field, `status` in JSON.
    Ok(Answer { allowed, status: r.get("status").cloned(), patch, patch_type })
}

/// Upstream's `ToStatusErr`: a denial with the webhook's status (at least 400).
fn denied(name: &str, status: Option<&Value>) -> ApiError {
    let s = status.cloned().unwrap_or(Value::Null);
    let message = s.get("message").and_then(Value::as_str).filter(|m| !m.is_empty());
    let reason = s.get("reason").and_then(Value::as_str).filter(|m| !m.is_empty());
    let text = match (message, reason) {
        (Some(m), _) => format!("admission webhook {name:?} denied the request: {m}"),
        (None, Some(r)) => format!("admission webhook {name:?} denied the request: {r}"),
        (None, None) => format!("admission webhook {name:?} denied the request without explanation"),
    };
    let code = s.get("code").and_then(Value::as_u64).filter(|c| (400..600).contains(c)).unwrap_or(400) as u16;
    let err = ApiError::new(code, super::known_reason(reason.unwrap_or("")), text);
    match s.get("details").filter(|d| d.is_object()) {
        Some(d) => err.with_details(d.clone()),
        None => err,
    }
}

/// One mutating call: applies the answer's patch. Returns whether the object changed.
async fn mutate_once(state: &ApiState, hook: &Hook, attrs: &mut Attributes<'_>) -> ApiResult<Option<bool>> {
    let name = hook.name();
    let Some((answer, matched)) = call(state, hook, attrs).await? else { return Ok(None) };
    if !answer.allowed {
        return Err(denied(name, answer.status.as_ref()));
    }
    let Some(patch) = answer.patch else { return Ok(Some(false)) };
    if answer.patch_type.as_deref().unwrap_or("JSONPatch") != "JSONPatch" {
        let e = format!("unsupported patch type {:?}", answer.patch_type.unwrap_or_default());
        return if hook.fails_closed() { Err(ApiError::internal(format!("failed calling webhook {name:?}: {e}"))) } else { Ok(Some(false)) };
    }
    let Some(obj) = attrs.object.as_ref() else { return Ok(Some(false)) };
    let ops: Value = serde_json::from_slice(&patch).map_err(|e| ApiError::internal(format!("the patch of webhook {name:?} is not JSON: {e}")))?;
    // The patch is of the version the webhook was sent; the result goes back to the request's.
    let sent = matched.equivalent().map(|to| matching::convert(attrs.def, to, obj));
    let patched = timonier_api::patch::json_patch(sent.as_ref().unwrap_or(obj), &ops).map_err(|e| ApiError::internal(e.to_string()))?;
    if !patched.is_object() {
        return Err(ApiError::internal(format!("webhook {name:?} patched the object into a non-object")));
    }
    let patched = match matched.equivalent() {
        Some(from) => matching::convert(from, attrs.def, &patched),
        None => patched,
    };
    let changed = &patched != obj;
    attrs.object = Some(patched);
    Ok(Some(changed))
}

/// The mutating webhooks, in order, with one round of reinvocation for those with
/// `reinvocationPolicy: IfNeeded` that ran before a later webhook changed the object.
pub(crate) async fn mutate(state: &ApiState, hooks: &[Hook], attrs: &mut Attributes<'_>) -> ApiResult<()> {
    let mut reinvoke = vec![false; hooks.len()];
    let mut previously_invoked: Vec<usize> = Vec::new();
    for (i, hook) in hooks.iter().enumerate() {
        let Some(changed) = mutate_once(state, hook, attrs).await? else { continue };
        if changed {
            for j in previously_invoked.drain(..) {
                reinvoke[j] = true;
            }
        }
        if hook.reinvoke_if_needed() {
            previously_invoked.push(i);
        }
    }
    for (i, hook) in hooks.iter().enumerate() {
        if reinvoke[i] {
            mutate_once(state, hook, attrs).await?;
        }
    }
    Ok(())
}

/// The validating webhooks, called in parallel; the first denial or failure (in order) wins.
pub(crate) async fn validate(state: &ApiState, hooks: &[Hook], attrs: &Attributes<'_>) -> ApiResult<()> {
    let calls = hooks.iter().map(|h| async move {
        match call(state, h, attrs).await? {
            Some((a, _)) if !a.allowed => Err(denied(h.name(), a.status.as_ref())),
            _ => Ok(()),
        }
    });
    for r in futures::future::join_all(calls).await {
        r?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        let ok = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true}}"#;
        assert!(parse_answer(ok, "admission.k8s.io/v1", "u").unwrap().allowed);
        assert!(parse_answer(ok, "admission.k8s.io/v1", "other").unwrap_err().contains("expected response.uid"));
        assert!(parse_answer(b"not json", "admission.k8s.io/v1", "u").is_err());
        let no_type = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"patch":"W10="}}"#;
        assert!(parse_answer(no_type, "admission.k8s.io/v1", "u").unwrap_err().contains("patchType"));
        let bad_allowed = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":"yes"}}"#;
        assert!(parse_answer(bad_allowed, "admission.k8s.io/v1", "u").is_err());
    }

    #[test]
    fn denials_read_as_upstream() {
        let e = denied("deny.example.com", Some(&json!({"message": "no way", "code": 403, "reason": "Forbidden"})));
        assert_eq!((e.code, e.reason, e.message.as_str()), (403, "Forbidden", "admission webhook \"deny.example.com\" denied the request: no way"));
        let e = denied("d", None);
        assert_eq!((e.code, e.message.as_str()), (400, "admission webhook \"d\" denied the request without explanation"));
        let e = denied("d", Some(&json!({"code": 200, "reason": "Whatever"})));
        assert_eq!((e.code, e.reason, e.message.as_str()), (400, "", "admission webhook \"d\" denied the request: Whatever"));
    }
}
