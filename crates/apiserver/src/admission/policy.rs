//! ValidatingAdmissionPolicies and their bindings, as upstream's
//! `admission/plugin/policy/validating`: matchConstraints and the binding's matchResources
//! (with `matchPolicy: Equivalent`: the object is seen in the version the rule names),
//! params (`paramKind` + `paramRef`: by name or selector, `parameterNotFoundAction`),
//! matchConditions, variables, validations (`expression`, `message`, `messageExpression`,
//! `reason`), `auditAnnotations`, `failurePolicy`, the binding's `validationActions` (Deny,
//! Warn, Audit), and upstream's cost budgets. `authorizer` asks the server's RBAC authorizer
//! for the requesting user.
//!
//! Audit annotations (`<policy>/<key>`, and `validation.policy.admission.k8s.io/
//! validation_failure` for the Audit action) go where upstream's audit event would carry
//! them: this server has no audit log, so they are logged (see [`super::audit_annotation`]).
//! An annotation's evaluation error denies the request under `failurePolicy: Fail`, a value
//! neither string nor null always, as upstream.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use timonier_api::resources::ResourceDef;
use timonier_api::selector::LabelSelector;

use super::cel::{self, Budget, Vars};
use super::matching::{self, RuleMatch};
use super::{audit_annotation, forbidden, warn, Attributes, Configs};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::state::ApiState;

/// `celconfig.RuntimeCELCostBudgetMatchConditions`.
const MATCH_CONDITIONS_BUDGET: u64 = 5_000_000;
/// `celconfig.MaxEvaluatedMessageExpressionSizeBytes`.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;
/// Upstream's `maxAuditAnnotationValueLength`.
const MAX_ANNOTATION_BYTES: usize = 10 * 1024;

/// One failed validation, or an error (empty reason: it counts under `failurePolicy: Fail`
/// only). `index` is the validation's, as the Audit action's annotation reports it.
#[derive(Debug)]
struct Decision {
    message: String,
    reason: &'static str,
    index: usize,
}

/// What one (policy, binding, param) evaluation gave.
#[derive(Debug, Default)]
struct Outcome {
    decisions: Vec<Decision>,
    /// Audit annotations to publish: key and value.
    annotations: Vec<(String, String)>,
    /// Audit annotations that failed: each denies the request, whatever validationActions say.
    annotation_errors: Vec<String>,
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn arr(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

/// matchConstraints / matchResources: resource rules (under their matchPolicy) minus the
/// excluded ones, and selectors. `rules_required`: an absent rule list matches nothing
/// (policies) or everything (bindings).
fn resources_match(m: &Value, attrs: &Attributes, rules_required: bool) -> Result<RuleMatch, String> {
    let rules = m.get("resourceRules");
    let policy = m.get("matchPolicy");
    let has_rules = rules.and_then(Value::as_array).is_some_and(|r| !r.is_empty());
    let matched = if has_rules || rules_required { matching::match_rules(rules, attrs, policy) } else { RuleMatch::Exact };
    if !matched.matched() || matching::match_rules(m.get("excludeResourceRules"), attrs, policy).matched() {
        return Ok(RuleMatch::No);
    }
    if matching::namespace_matches(m.get("namespaceSelector"), attrs)? && matching::object_matches(m.get("objectSelector"), attrs)? {
        Ok(matched)
    } else {
        Ok(RuleMatch::No)
    }
}

fn reason_of(v: &Value) -> &'static str {
    match v.get("reason").and_then(Value::as_str).unwrap_or("Invalid") {
        "Unauthorized" => "Unauthorized",
        "Forbidden" => "Forbidden",
        "RequestEntityTooLarge" => "RequestEntityTooLarge",
        _ => "Invalid",
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

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Evaluates the policies that bind to this request.
pub(crate) fn validate(state: &ApiState, configs: &Configs, attrs: &Attributes) -> ApiResult<()> {
    let mut denied: Option<ApiError> = None;
    for policy in &configs.policies {
        let pname = str_at(policy, "/metadata/name");
        let spec = policy.get("spec").cloned().unwrap_or(Value::Null);
        let bindings: Vec<&Arc<Value>> = configs.bindings.iter().filter(|b| str_at(b, "/spec/policyName") == pname).collect();
        if bindings.is_empty() {
            continue;
        }
        let fails_closed = spec.get("failurePolicy").and_then(Value::as_str) != Some("Ignore");
        let matched = match resources_match(spec.get("matchConstraints").unwrap_or(&Value::Null), attrs, true) {
            Ok(RuleMatch::No) => continue,
            Ok(m) => m,
            Err(e) if fails_closed => {
                denied.get_or_insert_with(|| forbidden(attrs, 422, "Invalid", &format!("ValidatingAdmissionPolicy '{pname}' denied request: {e}")));
                continue;
            }
            Err(_) => continue,
        };
        // The request as the policy sees it: in the version its rule matched.
        let request = super::webhook::request_json(attrs, "", matched.equivalent());
        let mut annotations: Vec<(String, Vec<String>)> = Vec::new();
        for binding in bindings {
            let bname = str_at(binding, "/metadata/name");
            let bspec = binding.get("spec").cloned().unwrap_or(Value::Null);
            let outcome = match bspec.get("matchResources").filter(|m| m.is_object()).map(|m| resources_match(m, attrs, false)) {
                Some(Ok(RuleMatch::No)) => continue,
                Some(Err(e)) => Outcome { decisions: vec![Decision { message: e, reason: "Invalid", index: 0 }], ..Outcome::default() },
                _ => evaluate(state, &spec, &bspec, attrs, &request, fails_closed),
            };
            let actions: Vec<&str> = bspec.get("validationActions").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_else(|| vec!["Deny"]);
            for d in outcome.decisions.into_iter().filter(|d| fails_closed || !d.reason.is_empty()) {
                let reason = if d.reason.is_empty() { "Invalid" } else { d.reason };
                for action in &actions {
                    match *action {
                        "Deny" => {
                            let message = format!("ValidatingAdmissionPolicy '{pname}' with binding '{bname}' denied request: {}", d.message);
                            denied.get_or_insert_with(|| forbidden(attrs, code_of(reason), reason, &message));
                        }
                        "Warn" => warn(format!("Validation failed for ValidatingAdmissionPolicy '{pname}' with binding '{bname}': {}", d.message)),
                        "Audit" => {
                            let failure = json!([{"message": d.message, "policy": pname, "binding": bname, "expressionIndex": d.index, "validationActions": actions}]);
                            audit_annotation("validation.policy.admission.k8s.io/validation_failure", &failure.to_string());
                        }
                        _ => {}
                    }
                }
            }
            for e in outcome.annotation_errors {
                let message = format!("ValidatingAdmissionPolicy '{pname}' with binding '{bname}' denied request: {e}");
                denied.get_or_insert_with(|| forbidden(attrs, 422, "Invalid", &message));
            }
            // Bindings giving the same key and value publish it once; distinct values join.
            for (key, value) in outcome.annotations {
                match annotations.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, values)) if !values.contains(&value) => values.push(value),
                    Some(_) => {}
                    None => annotations.push((key, vec![value])),
                }
            }
        }
        for (key, values) in annotations {
            audit_annotation(&format!("{pname}/{key}"), &values.join(", "));
        }
    }
    denied.map_or(Ok(()), Err)
}

/// A policy under one binding: its params, then for each, what [`evaluate_one`] decides.
fn evaluate(state: &ApiState, spec: &Value, bspec: &Value, attrs: &Attributes, request: &Value, fails_closed: bool) -> Outcome {
    let failure = |message: String| Outcome { decisions: vec![Decision { message, reason: "", index: 0 }], ..Outcome::default() };
    let params: Vec<Option<Arc<Value>>> = match spec.get("paramKind").filter(|p| p.is_object()) {
        None => vec![None],
        Some(kind) => match find_params(state, kind, bspec.get("paramRef"), attrs) {
            Ok(found) if found.is_empty() => {
                let action = str_at(bspec, "/paramRef/parameterNotFoundAction");
                if action == "Allow" {
                    return Outcome::default();
                }
                let message = "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction".into();
                return Outcome { decisions: vec![Decision { message, reason: "Invalid", index: 0 }], ..Outcome::default() };
            }
            Ok(found) => found.into_iter().map(Some).collect(),
            Err(e) => return failure(e),
        },
    };
    // `authorizer` asks the server's RBAC authorizer, as upstream's policies do.
    let check = |user: &crate::auth::UserInfo, a: &crate::rbac::Attributes| state.authorize(user, a);
    let mut out = Outcome::default();
    for p in params {
        let vars = Vars::for_request(attrs, p.as_deref(), request);
        let one = evaluate_one(spec, vars.clone().with_authorizer(attrs, &check), vars, fails_closed);
        out.decisions.extend(one.decisions);
        out.annotations.extend(one.annotations);
        out.annotation_errors.extend(one.annotation_errors);
    }
    out
}

/// One evaluation of a policy (one param): matchConditions (a budget of their own), then
/// variables and validations sharing one budget, messageExpressions what is left of it,
/// and audit annotations (a budget of their own). As upstream's validator, only
/// matchConditions, variables and validations have `authorizer`: `plain` are the variables
/// without it.
fn evaluate_one<'a>(spec: &Value, vars: Vars<'a>, mut plain: Vars<'a>, fails_closed: bool) -> Outcome {
    let error = |message: String| Outcome { decisions: vec![Decision { message, reason: "", index: 0 }], ..Outcome::default() };
    // matchConditions: any false excludes, even beside errors; otherwise errors fail.
    let budget = Budget::with(MATCH_CONDITIONS_BUDGET);
    let mut errors = Vec::new();
    for c in arr(spec.get("matchConditions")) {
        match cel::eval_bool_in(str_at(&c, "/expression"), &vars, &budget) {
            Ok(true) => {}
            Ok(false) => return Outcome::default(),
            Err(_) if budget.exhausted() => return error(cel::OUT_OF_BUDGET.into()),
            Err(e) => errors.push(e),
        }
    }
    match errors.as_slice() {
        [] => {}
        [one] => return error(one.clone()),
        many => return error(format!("[{}]", many.join(", "))),
    }
    let budget = Budget::new();
    let mut vars = vars;
    let mut values = HashMap::new();
    for v in arr(spec.get("variables")) {
        // Upstream evaluates variables lazily; a failing one is left out, so that only
        // the expressions using it fail.
        vars.set_variables(&values);
        if let Ok(value) = cel::eval_val_in(str_at(&v, "/expression"), &vars, &budget) {
            values.insert(str_at(&v, "/name").to_string(), value);
        }
        if budget.exhausted() {
            return error(cel::OUT_OF_BUDGET.into());
        }
    }
    vars.set_variables(&values);
    plain.set_variables(&values);
    let mut results = Vec::new();
    for (index, v) in arr(spec.get("validations")).into_iter().enumerate() {
        let r = cel::eval_bool_in(str_at(&v, "/expression"), &vars, &budget);
        if budget.exhausted() {
            return error(cel::OUT_OF_BUDGET.into());
        }
        results.push((index, v, r));
    }
    let message_budget = budget.rest();
    let mut out = Outcome::default();
    for (index, v, r) in results {
        match r {
            Ok(true) => {}
            Ok(false) => {
                let from_expression = match v.get("messageExpression").and_then(Value::as_str) {
                    Some(m) => match cel::eval_val_in(m, &plain, &message_budget) {
                        Err(_) if message_budget.exhausted() => {
                            let message = format!("failed messageExpression: {}", cel::OUT_OF_BUDGET);
                            out.decisions.push(Decision { message, reason: "", index });
                            continue;
                        }
                        // A message that is not a string, too long or on several lines is
                        // ignored (upstream logs it), as is an error.
                        Ok(value) => cel::string_or_null(value.as_ref()).ok().flatten().map(|m| m.trim().to_string()).filter(|m| !m.is_empty() && m.len() <= MAX_MESSAGE_BYTES && !m.contains('\n')),
                        Err(_) => None,
                    },
                    None => None,
                };
                let message = from_expression
                    .or_else(|| v.get("message").and_then(Value::as_str).map(str::trim).filter(|m| !m.is_empty()).map(str::to_string))
                    .unwrap_or_else(|| format!("failed expression: {}", str_at(&v, "/expression").trim()));
                out.decisions.push(Decision { message, reason: reason_of(&v), index });
            }
            Err(e) => out.decisions.push(Decision { message: e, reason: "", index }),
        }
    }
    let budget = Budget::new();
    for a in arr(spec.get("auditAnnotations")) {
        let expr = str_at(&a, "/valueExpression");
        match cel::eval_val_in(expr, &plain, &budget).map(|v| cel::string_or_null(v.as_ref())) {
            Err(_) if budget.exhausted() => return error(cel::OUT_OF_BUDGET.into()),
            Ok(Ok(Some(value))) if !value.trim().is_empty() => out.annotations.push((str_at(&a, "/key").to_string(), truncate(value.trim(), MAX_ANNOTATION_BYTES).to_string())),
            Ok(Ok(_)) => {}
            Ok(Err(type_name)) => out.annotation_errors.push(format!("valueExpression '{expr}' resulted in unsupported return type: {type_name}. Return type must be either string or null.")),
            Err(e) if fails_closed => out.annotation_errors.push(e),
            Err(_) => {}
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

/// Checks a policy's expressions and audit annotations when it is written, as upstream's
/// validation: an expression must compile, an annotation key must make a qualified name
/// `<policy>/<key>` and be unique, a valueExpression be given and at most 5 KiB (422).
/// There is no type checker: `status.typeChecking` is empty.
pub(crate) fn check_policy(def: &ResourceDef, obj: &mut Value) -> ApiResult<()> {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let name = crate::rest::meta_str(obj, "name").to_string();
    let mut errs = Vec::new();
    let mut exprs: Vec<(String, String)> = Vec::new();
    for (list, fields) in [("validations", &["expression", "messageExpression"][..]), ("matchConditions", &["expression"][..]), ("variables", &["expression"][..])] {
        for (i, item) in arr(spec.get(list)).iter().enumerate() {
            for f in fields {
                if let Some(e) = item.get(*f).and_then(Value::as_str) {
                    exprs.push((format!("spec.{list}[{i}].{f}"), e.to_string()));
                }
            }
        }
    }
    let mut keys = Vec::new();
    for (i, a) in arr(spec.get("auditAnnotations")).iter().enumerate() {
        let field = format!("spec.auditAnnotations[{i}]");
        let key = str_at(a, "/key");
        if name.is_empty() {
            errs.push(FieldError::invalid(format!("{field}.key"), &json!(key), "requires metadata.name be non-empty"));
        } else {
            let qualified = format!("{name}/{key}");
            errs.extend(crate::validation::is_qualified_name(&qualified).iter().map(|m| FieldError::invalid(format!("{field}.key"), &json!(qualified), m)));
        }
        let value = str_at(a, "/valueExpression").trim();
        if value.is_empty() {
            errs.push(FieldError::required(format!("{field}.valueExpression"), "valueExpression is not specified"));
        } else if value.len() > 5 * 1024 {
            errs.push(FieldError::too_long(format!("{field}.valueExpression"), 5 * 1024));
        } else {
            exprs.push((format!("{field}.valueExpression"), value.to_string()));
        }
        if keys.contains(&key) {
            errs.push(FieldError::duplicate(format!("{field}.key"), &json!(key)));
        }
        keys.push(key);
    }
    for (field, expr) in &exprs {
        if let Err(e) = cel::compile(expr) {
            errs.push(FieldError::invalid(field.clone(), &json!(expr), &e));
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(def, &name, errs));
    }
    let generation = obj.pointer("/metadata/generation").cloned().unwrap_or(json!(1));
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), json!({"observedGeneration": generation, "typeChecking": {}}));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
