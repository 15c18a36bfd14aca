//! ValidatingAdmissionPolicies and their bindings, as upstream's
//! `admission/plugin/policy/validating`: matchConstraints and the binding's matchResources,
//! params (`paramKind` + `paramRef`: by name or selector, `parameterNotFoundAction`),
//! matchConditions, variables, validations (`expression`, `message`, `messageExpression`,
//! `reason`), `failurePolicy`, and the binding's `validationActions` (Deny, Warn; Audit only
//! logs, as this server writes no audit log). `auditAnnotations` are compiled but not
//! evaluated (no audit log). `authorizer` asks the server's RBAC authorizer for the
//! requesting user.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use timonier_api::resources::ResourceDef;
use timonier_api::selector::LabelSelector;

use super::cel::{self, Vars};
use super::{forbidden, matching, warn, Attributes, Configs};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::state::ApiState;

/// One failed validation (or failure under `failurePolicy: Fail`).
struct Decision {
    message: String,
    reason: &'static str,
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn arr(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

/// matchConstraints / matchResources: resource rules minus the excluded ones, and selectors.
/// `rules_required`: an absent rule list matches nothing (policies) or everything (bindings).
fn resources_match(m: &Value, attrs: &Attributes, rules_required: bool) -> Result<bool, String> {
    let rules = m.get("resourceRules");
    let has_rules = rules.and_then(Value::as_array).is_some_and(|r| !r.is_empty());
    if (has_rules || rules_required) && !matching::rules_match(rules, attrs) {
        return Ok(false);
    }
    if matching::rules_match(m.get("excludeResourceRules"), attrs) {
        return Ok(false);
    }
    Ok(matching::namespace_matches(m.get("namespaceSelector"), attrs)? && matching::object_matches(m.get("objectSelector"), attrs)?)
}

fn reason_of(v: &Value) -> (&'static str, u16) {
    match v.get("reason").and_then(Value::as_str).unwrap_or("Invalid") {
        "Unauthorized" => ("Unauthorized", 401),
        "Forbidden" => ("Forbidden", 403),
        "RequestEntityTooLarge" => ("RequestEntityTooLarge", 413),
        _ => ("Invalid", 422),
    }
}

fn code_of(reason: &str) -> u16 {
    match reason {
        "Unauthorized" => 401,
        "Forbidden" => 403,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

/// Evaluates the policies that bind to this request.
pub(crate) fn validate(state: &ApiState, configs: &Configs, attrs: &Attributes) -> ApiResult<()> {
    let mut denied: Option<ApiError> = None;
    let request = super::webhook::request_json(attrs, "");
    for policy in &configs.policies {
        let pname = str_at(policy, "/metadata/name");
        let spec = policy.get("spec").cloned().unwrap_or(Value::Null);
        let bindings: Vec<&Arc<Value>> = configs.bindings.iter().filter(|b| str_at(b, "/spec/policyName") == pname).collect();
        if bindings.is_empty() {
            continue;
        }
        let fails_closed = spec.get("failurePolicy").and_then(Value::as_str) != Some("Ignore");
        let policy_matches = resources_match(spec.get("matchConstraints").unwrap_or(&Value::Null), attrs, true);
        let policy_matches = match policy_matches {
            Ok(m) => m,
            Err(e) if fails_closed => {
                denied.get_or_insert_with(|| forbidden(attrs, 422, "Invalid", &format!("ValidatingAdmissionPolicy '{pname}' denied request: {e}")));
                continue;
            }
            Err(_) => continue,
        };
        if !policy_matches {
            continue;
        }
        for binding in bindings {
            let bname = str_at(binding, "/metadata/name");
            let bspec = binding.get("spec").cloned().unwrap_or(Value::Null);
            let decisions = match bspec.get("matchResources").filter(|m| m.is_object()).map(|m| resources_match(m, attrs, false)) {
                Some(Ok(false)) => continue,
                Some(Err(e)) => vec![Decision { message: e, reason: "Invalid" }],
                _ => evaluate(state, &spec, &bspec, attrs, &request),
            };
            let decisions: Vec<Decision> = decisions.into_iter().filter(|d| fails_closed || d.reason != "") .collect();
            let actions: Vec<&str> = bspec.get("validationActions").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_else(|| vec!["Deny"]);
            for d in decisions {
                let reason = if d.reason.is_empty() { "Invalid" } else { d.reason };
                for action in &actions {
                    match *action {
                        "Deny" => {
                            let message = format!("ValidatingAdmissionPolicy '{pname}' with binding '{bname}' denied request: {}", d.message);
                            denied.get_or_insert_with(|| forbidden(attrs, code_of(reason), reason, &message));
                        }
                        "Warn" => warn(format!("Validation failed for ValidatingAdmissionPolicy '{pname}' with binding '{bname}': {}", d.message)),
                        "Audit" => tracing::info!(policy = pname, binding = bname, message = d.message, "validation failed (audit)"),
                        _ => {}
                    }
                }
            }
        }
    }
    denied.map_or(Ok(()), Err)
}

/// A policy under one binding: its params, then for each, matchConditions, variables and
/// validations. Evaluation errors and misconfigurations come back with an empty reason:
/// they count only under `failurePolicy: Fail`.
fn evaluate(state: &ApiState, spec: &Value, bspec: &Value, attrs: &Attributes, request: &Value) -> Vec<Decision> {
    let failure = |message: String| vec![Decision { message, reason: "" }];
    let params: Vec<Option<Arc<Value>>> = match spec.get("paramKind").filter(|p| p.is_object()) {
        None => vec![None],
        Some(kind) => match find_params(state, kind, bspec.get("paramRef"), attrs) {
            Ok(found) if found.is_empty() => {
                let action = str_at(bspec, "/paramRef/parameterNotFoundAction");
                if action == "Allow" {
                    return vec![];
                }
                return vec![Decision { message: "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction".into(), reason: "Invalid" }];
            }
            Ok(found) => found.into_iter().map(Some).collect(),
            Err(e) => return failure(e),
        },
    };
    // `authorizer` asks the server's RBAC authorizer, as upstream's policies do.
    let check = |user: &crate::auth::UserInfo, a: &crate::rbac::Attributes| state.authorize(user, a);
    let mut out = Vec::new();
    'params: for p in params {
        let vars = Vars::for_request(attrs, p.as_deref(), request);
        let mut vars = vars.with_authorizer(attrs, &check);
        for c in arr(spec.get("matchConditions")) {
            match cel::eval_bool(str_at(&c, "/expression"), &vars) {
                Ok(true) => {}
                Ok(false) => continue 'params,
                Err(e) => {
                    out.extend(failure(e));
                    continue 'params;
                }
            }
        }
        let mut variables = HashMap::new();
        for v in arr(spec.get("variables")) {
            // Upstream evaluates variables lazily; a failing one is left out, so that only
            // the expressions using it fail.
            vars.set_variables(&variables);
            if let Ok(value) = cel::eval_val(str_at(&v, "/expression"), &vars) {
                variables.insert(str_at(&v, "/name").to_string(), value);
            }
        }
        vars.set_variables(&variables);
        for v in arr(spec.get("validations")) {
            let expr = str_at(&v, "/expression");
            match cel::eval_bool(expr, &vars) {
                Ok(true) => {}
                Ok(false) => {
                    let from_expression = v.get("messageExpression").and_then(Value::as_str).and_then(|m| cel::eval_string(m, &vars).ok()).filter(|m| !m.trim().is_empty());
                    let message = from_expression
                        .or_else(|| v.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()).map(str::to_string))
                        .unwrap_or_else(|| format!("failed expression: {expr}"));
                    out.push(Decision { message, reason: reason_of(&v).0 });
                }
                Err(e) => out.extend(failure(e)),
            }
        }
    }
    out
}

/// The params of a binding: the object `paramRef.name`, or those `paramRef.selector` selects,
/// in `paramRef.namespace` (or the request's, for a namespaced kind).
fn find_params(state: &ApiState, kind: &Value, param_ref: Option<&Value>, attrs: &Attributes) -> Result<Vec<Arc<Value>>, String> {
    let (api_version, k) = (str_at(kind, "/apiVersion"), str_at(kind, "/kind"));
    let def: Arc<ResourceDef> = state
        .registry()
        .all
        .iter()
        .find(|d| d.api_version() == api_version && d.kind == k)
        .cloned()
        .ok_or_else(|| format!("failed to configure policy: failed to find resource referenced by paramKind: '{api_version}, Kind={k}'"))?;
    let r = param_ref.filter(|r| r.is_object()).ok_or("failed to configure binding: paramRef is required when paramKind is set")?;
    let ns = if def.namespaced {
        match str_at(r, "/namespace") {
            "" if attrs.namespace.is_empty() => return Err("failed to configure binding: cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into()),
            "" => attrs.namespace.clone(),
            n => n.to_string(),
        }
    } else {
        String::new()
    };
    let cache = state.cache_of(&def).map_err(|e| format!("failed to configure binding: {}", e.message))?;
    match str_at(r, "/name") {
        "" => {
            let sel = LabelSelector::from_json(r.get("selector").unwrap_or(&Value::Null)).map_err(|e| format!("failed to configure binding: {}", e.0))?;
            Ok(cache.list(&def.namespace_prefix(&ns)).into_iter().map(|(_, v)| v).filter(|v| sel.matches(v.pointer("/metadata/labels").and_then(Value::as_object))).collect())
        }
        name => Ok(cache.get(&def.key(&ns, name)).into_iter().collect()),
    }
}

/// Functions of Kubernetes' CEL libraries that this server's CEL lacks: a policy using them
/// is accepted (as upstream), with a typeChecking warning saying the expression will fail.
const UNSUPPORTED: &[&str] = &[
    "duration(", "timestamp(", "format.uri(", "format.uuid(", "format.byte(", "format.date(", "format.datetime(", "semver(", "isSemver(",
];

/// Checks a policy's expressions when it is written: one that does not compile is invalid
/// (422, as upstream's validation), and the status tells which expressions use functions
/// this server cannot evaluate (upstream's `status.typeChecking.expressionWarnings`).
pub(crate) fn check_policy(def: &ResourceDef, obj: &mut Value) -> ApiResult<()> {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let mut exprs: Vec<(String, String)> = Vec::new();
    for (list, fields) in [
        ("validations", &["expression", "messageExpression"][..]),
        ("matchConditions", &["expression"][..]),
        ("variables", &["expression"][..]),
        ("auditAnnotations", &["valueExpression"][..]),
    ] {
        for (i, item) in arr(spec.get(list)).iter().enumerate() {
            for f in fields {
                if let Some(e) = item.get(*f).and_then(Value::as_str) {
                    exprs.push((format!("spec.{list}[{i}].{f}"), e.to_string()));
                }
            }
        }
    }
    let mut errs = Vec::new();
    let mut warnings = Vec::new();
    for (field, expr) in &exprs {
        if let Err(e) = cel::compile(expr) {
            errs.push(FieldError::invalid(field.clone(), &json!(expr), &e));
        } else if let Some(f) = UNSUPPORTED.iter().find(|f| expr.contains(**f)) {
            let f = f.trim_matches(|c| c == '.' || c == '(');
            warnings.push(json!({"fieldRef": field, "warning": format!("{f} is not supported by this server's CEL: the expression fails when evaluated")}));
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(def, crate::rest::meta_str(obj, "name"), errs));
    }
    let generation = obj.pointer("/metadata/generation").cloned().unwrap_or(json!(1));
    if let Some(m) = obj.as_object_mut() {
        let mut type_checking = json!({});
        if !warnings.is_empty() {
            type_checking["expressionWarnings"] = json!(warnings);
        }
        m.insert("status".into(), json!({"observedGeneration": generation, "typeChecking": type_checking}));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_checked_when_written() {
        let def = timonier_api::resources::builtin().into_iter().find(|d| d.plural == "validatingadmissionpolicies").unwrap();
        let mut ok = json!({"metadata": {"name": "p", "generation": 2}, "spec": {"validations": [{"expression": "object.spec.replicas <= 5"}, {"expression": "semver(object.x).isGreaterThan(semver('1.0.0'))"}]}});
        check_policy(&def, &mut ok).unwrap();
        assert_eq!(ok["status"]["observedGeneration"], 2);
        assert_eq!(ok["status"]["typeChecking"]["expressionWarnings"][0]["fieldRef"], "spec.validations[1].expression");
        let mut bad = json!({"metadata": {"name": "p"}, "spec": {"validations": [{"expression": "object.spec.replicas <="}]}});
        let e = check_policy(&def, &mut bad).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\": compilation failed"), "{}", e.message);
    }
}
