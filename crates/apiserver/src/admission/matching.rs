//! Which requests a webhook or policy applies to: rules, namespaceSelector and objectSelector,
//! as upstream's `admission/plugin/webhook/predicates` and `policy/matching`.
//!
//! `matchPolicy: Equivalent` (the default): when no rule names the request's own group and
//! version, a rule naming another group/version of the same resource matches — the served
//! resources that share its storage, as upstream's equivalent resource mapper (keyed by the
//! storage prefix): `v1` and `events.k8s.io/v1` Events, `autoscaling/v1` and
//! `autoscaling/v2` HorizontalPodAutoscalers, the versions of a CustomResourceDefinition.
//! The webhook or policy then sees the object in the version its rule names ([`convert`]),
//! `kind`/`resource` of that version and `requestKind`/`requestResource` of the request's.
//! Versions upstream 1.33 no longer serves (`extensions/v1beta1` Deployments, …) are no
//! equivalents: upstream's mapper only knows served resources.

use std::sync::Arc;

use serde_json::{json, Value};
use timonier_api::resources::ResourceDef;
use timonier_api::selector::LabelSelector;

use super::Attributes;

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn any_is(list: &[&str], want: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == want)
}

/// What a list of rules matched.
#[derive(Debug, Clone)]
pub(crate) enum RuleMatch {
    No,
    /// The request's own resource.
    Exact,
    /// An equivalent resource, in another group or version (`matchPolicy: Equivalent`).
    Equivalent(Arc<ResourceDef>),
}

impl RuleMatch {
    pub(crate) fn matched(&self) -> bool {
        !matches!(self, RuleMatch::No)
    }

    /// The resource matched, when it is not the request's own.
    pub(crate) fn equivalent(&self) -> Option<&ResourceDef> {
        match self {
            RuleMatch::Equivalent(d) => Some(d),
            _ => None,
        }
    }
}

/// One `RuleWithOperations` (or `NamedRuleWithOperations`) against the request, as if it
/// were made to `def`: operations, apiGroups, apiVersions, resources with subresources,
/// scope, and (policies) resourceNames.
fn rule_matches_as(rule: &Value, attrs: &Attributes, def: &ResourceDef) -> bool {
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

/// Whether `rules` match under `matchPolicy` (`Equivalent`, or anything else for `Exact`):
/// upstream's order — any rule for the request's own resource, then each rule in turn
/// against each equivalent resource.
pub(crate) fn match_rules(rules: Option<&Value>, attrs: &Attributes, match_policy: Option<&Value>) -> RuleMatch {
    let rules = rules.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if rules.iter().any(|r| rule_matches_as(r, attrs, attrs.def)) {
        return RuleMatch::Exact;
    }
    if match_policy.and_then(Value::as_str) != Some("Equivalent") {
        return RuleMatch::No;
    }
    for rule in rules {
        if let Some(eq) = attrs.equivalents.iter().find(|d| rule_matches_as(rule, attrs, d)) {
            return RuleMatch::Equivalent(eq.clone());
        }
    }
    RuleMatch::No
}

/// The served resources equivalent to `def` for a request to `subresource`: the other
/// groups and versions stored under the same key prefix that serve that subresource.
pub(crate) fn equivalents(all: &[Arc<ResourceDef>], def: &ResourceDef, subresource: &str) -> Vec<Arc<ResourceDef>> {
    all.iter()
        .filter(|d| d.storage_resource == def.storage_resource && (d.group != def.group || d.version != def.version))
        .filter(|d| subresource.is_empty() || d.subresource(subresource).is_some())
        .cloned()
        .collect()
}

/// An object of `from`'s version as `to`, an equivalent resource, serves it: through the
/// stored form (events, HorizontalPodAutoscalers), or — a custom resource, whose versions
/// this server does not convert otherwise — with `to`'s apiVersion, as upstream's `None`
/// conversion strategy.
pub(crate) fn convert(from: &ResourceDef, to: &ResourceDef, obj: &Value) -> Value {
    if from.group == to.group && from.version == to.version || !obj.is_object() {
        return obj.clone();
    }
    let stored = crate::convert::to_storage(from, obj.clone());
    let mut out = crate::convert::from_storage(to, &stored);
    if !crate::convert::converts(to) {
        out["apiVersion"] = json!(to.api_version());
    }
    out
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

#[cfg(test)]
mod tests {
    use super::super::Operation;
    use super::*;
    use crate::auth::UserInfo;

    fn attrs<'a>(def: &'a ResourceDef, all: &[Arc<ResourceDef>], object: Value) -> Attributes<'a> {
        Attributes {
            def,
            subresource: "",
            operation: Operation::Create,
            namespace: "ns".into(),
            name: "e".into(),
            object: Some(object),
            old: None,
            dry_run: false,
            user: UserInfo { name: "u".into(), groups: vec![] },
            namespace_object: None,
            equivalents: equivalents(all, def, ""),
        }
    }

    #[test]
    fn equivalent_resources_match_under_equivalent() {
        let all: Vec<Arc<ResourceDef>> = timonier_api::resources::builtin();
        let find = |g: &str, v: &str, r: &str| all.iter().find(|d| d.group == g && d.version == v && d.plural == r).cloned().unwrap();
        let events = find("", "v1", "events");
        let a = attrs(&events, &all, json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "reason": "Started", "message": "m", "source": {"component": "c"}}));
        let rule = json!([{"apiGroups": ["events.k8s.io"], "apiVersions": ["v1"], "resources": ["events"], "operations": ["CREATE"]}]);
        assert!(matches!(match_rules(Some(&rule), &a, Some(&json!("Exact"))), RuleMatch::No));
        let m = match_rules(Some(&rule), &a, Some(&json!("Equivalent")));
        let eq = m.equivalent().unwrap();
        assert_eq!((eq.group.as_str(), eq.version.as_str()), ("events.k8s.io", "v1"));
        let converted = convert(&events, eq, a.object.as_ref().unwrap());
        assert_eq!(converted["apiVersion"], "events.k8s.io/v1");
        assert_eq!(converted["note"], "m");
        // The request's own resource matches exactly, whatever the policy.
        let own = json!([{"apiGroups": ["*"], "apiVersions": ["*"], "resources": ["events"], "operations": ["*"]}]);
        assert!(matches!(match_rules(Some(&own), &a, Some(&json!("Equivalent"))), RuleMatch::Exact));
        // Deployments have no equivalent this server (or upstream 1.33) serves.
        let deployments = find("apps", "v1", "deployments");
        let d = attrs(&deployments, &all, json!({}));
        assert!(d.equivalents.is_empty());
        let hpa = find("autoscaling", "v2", "horizontalpodautoscalers");
        let h = attrs(&hpa, &all, json!({}));
        let v1 = json!([{"apiGroups": ["autoscaling"], "apiVersions": ["v1"], "resources": ["horizontalpodautoscalers"], "operations": ["CREATE"]}]);
        assert_eq!(match_rules(Some(&v1), &h, Some(&json!("Equivalent"))).equivalent().map(|d| d.version.clone()), Some("v1".into()));
    }
}
