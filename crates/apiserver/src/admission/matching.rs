//! Which requests a webhook or policy applies to: rules, namespaceSelector and objectSelector,
//! as upstream's `admission/plugin/webhook/predicates` and `policy/matching`.
//!
//! `matchPolicy: Equivalent` is matched as `Exact`: this server serves each resource at one
//! version, so there is no other served version a request could be converted to.

use serde_json::Value;
use timonier_api::selector::LabelSelector;

use super::Attributes;

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn any_is(list: &[&str], want: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == want)
}

/// One `RuleWithOperations` (or `NamedRuleWithOperations`): operations, apiGroups,
/// apiVersions, resources with subresources, scope, and (policies) resourceNames.
pub(crate) fn rule_matches(rule: &Value, attrs: &Attributes) -> bool {
    let def = attrs.def;
    if !any_is(&strings(rule.get("operations")), attrs.operation.as_str())
        || !any_is(&strings(rule.get("apiGroups")), &def.group)
        || !any_is(&strings(rule.get("apiVersions")), &def.version)
    {
        return false;
    }
    let resource_ok = strings(rule.get("resources")).iter().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == def.plural) && (sub == "*" || sub == attrs.subresource)
    });
    if !resource_ok {
        return false;
    }
    let names = strings(rule.get("resourceNames"));
    if !names.is_empty() && !names.contains(&attrs.name.as_str()) {
        return false;
    }
    match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" => !def.namespaced,
        "Namespaced" => def.namespaced,
        _ => true,
    }
}

/// Any of `rules` matches.
pub(crate) fn rules_match(rules: Option<&Value>, attrs: &Attributes) -> bool {
    rules.and_then(Value::as_array).is_some_and(|rs| rs.iter().any(|r| rule_matches(r, attrs)))
}

fn labels(obj: &Value) -> Option<&serde_json::Map<String, Value>> {
    obj.pointer("/metadata/labels").and_then(Value::as_object)
}

/// namespaceSelector: against the request's namespace; a Namespace itself is matched by its
/// own labels; other cluster-scoped objects always match.
pub(crate) fn namespace_matches(selector: Option<&Value>, attrs: &Attributes) -> Result<bool, String> {
    let Some(sel) = selector.filter(|s| !s.is_null()) else { return Ok(true) };
    let sel = LabelSelector::from_json(sel).map_err(|e| format!("invalid namespaceSelector: {}", e.0))?;
    if sel.is_empty() && !sel.is_nothing() {
        return Ok(true);
    }
    if attrs.def.group.is_empty() && attrs.def.plural == "namespaces" {
        let ns = attrs.object.as_ref().or(attrs.old);
        return Ok(sel.matches(ns.and_then(labels)));
    }
    if !attrs.def.namespaced {
        return Ok(true);
    }
    Ok(sel.matches(attrs.namespace_object.as_deref().and_then(labels)))
}

/// objectSelector: the new or the old object's labels match.
pub(crate) fn object_matches(selector: Option<&Value>, attrs: &Attributes) -> Result<bool, String> {
    let Some(sel) = selector.filter(|s| !s.is_null()) else { return Ok(true) };
    let sel = LabelSelector::from_json(sel).map_err(|e| format!("invalid objectSelector: {}", e.0))?;
    if sel.is_empty() && !sel.is_nothing() {
        return Ok(true);
    }
    Ok(attrs.objects().any(|o| sel.matches(labels(o))))
}
