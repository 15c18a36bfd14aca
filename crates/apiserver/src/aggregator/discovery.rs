//! The aggregated group versions in discovery: what each available extension server's
//! discovery document says, added to `/apis` (legacy and aggregated) and `/apis/GROUP`.
//! Extension groups come after the server's own, as their lower priorities order them.

use serde_json::{json, Value};

use crate::state::ApiState;

/// The aggregated group versions, grouped by group in order.
fn groups(state: &ApiState) -> Vec<(String, Vec<(String, std::sync::Arc<Value>)>)> {
    let mut out: Vec<(String, Vec<(String, std::sync::Arc<Value>)>)> = Vec::new();
    for ((g, v), doc) in state.aggregator.remote_versions() {
        if g.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(og, _)| *og == g) {
            Some((_, vs)) => vs.push((v, doc)),
            None => out.push((g, vec![(v, doc)])),
        }
    }
    // GA before beta before alpha, as kube-like version ordering prefers them.
    let stability = |v: &str| if v.contains("alpha") { 2 } else if v.contains("beta") { 1 } else { 0 };
    for (_, vs) in &mut out {
        vs.sort_by(|a, b| stability(&a.0).cmp(&stability(&b.0)).then(b.0.cmp(&a.0)));
    }
    out
}

fn version_entry(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

/// Adds the aggregated groups to a legacy `APIGroupList`.
pub fn add_groups(state: &ApiState, list: &mut Value) {
    let Some(items) = list.get_mut("groups").and_then(Value::as_array_mut) else { return };
    for (g, vs) in groups(state) {
        if items.iter().any(|i| i["name"] == g.as_str()) {
            continue;
        }
        let versions: Vec<Value> = vs.iter().map(|(v, _)| version_entry(&g, v)).collect();
        items.push(json!({"name": g, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)}));
    }
}

/// `GET /apis/GROUP` of an aggregated group.
pub fn api_group(state: &ApiState, group: &str) -> Option<Value> {
    let (g, vs) = groups(state).into_iter().find(|(g, _)| g == group)?;
    let versions: Vec<Value> = vs.iter().map(|(v, _)| version_entry(&g, v)).collect();
    Some(json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)}))
}

/// An extension server's `APIResourceList` in the aggregated (v2) form: subresources
/// (`pods/log`) folded into their resource.
fn aggregated_resources(group: &str, version: &str, doc: &Value) -> Vec<Value> {
    let list = doc.get("resources").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    for r in list.iter().filter(|r| !r["name"].as_str().unwrap_or("/").contains('/')) {
        let name = r["name"].as_str().unwrap_or("");
        let kind = r["kind"].as_str().unwrap_or("");
        let singular = r["singularName"].as_str().filter(|s| !s.is_empty()).map(str::to_string).unwrap_or_else(|| kind.to_lowercase());
        let mut e = json!({
            "resource": name,
            "responseKind": {"group": r.get("group").and_then(Value::as_str).unwrap_or(group), "version": r.get("version").and_then(Value::as_str).unwrap_or(version), "kind": kind},
            "scope": if r["namespaced"].as_bool().unwrap_or(false) { "Namespaced" } else { "Cluster" },
            "singularResource": singular,
            "verbs": r.get("verbs").cloned().unwrap_or(json!([])),
        });
        for k in ["shortNames", "categories"] {
            if r.get(k).and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
                e[k] = r[k].clone();
            }
        }
        let subs: Vec<Value> = list
            .iter()
            .filter_map(|s| {
                let (parent, sub) = s["name"].as_str()?.split_once('/')?;
                (parent == name).then(|| {
                    json!({
                        "subresource": sub,
                        "responseKind": {"group": s.get("group").and_then(Value::as_str).unwrap_or(group), "version": s.get("version").and_then(Value::as_str).unwrap_or(version), "kind": s["kind"]},
                        "verbs": s.get("verbs").cloned().unwrap_or(json!([])),
                    })
                })
            })
            .collect();
        if !subs.is_empty() {
            e["subresources"] = Value::Array(subs);
        }
        out.push(e);
    }
    out
}

/// Adds the aggregated groups to an `APIGroupDiscoveryList` of `/apis`.
pub fn add_aggregated(state: &ApiState, list: &mut Value) {
    let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) else { return };
    for (g, vs) in groups(state) {
        if items.iter().any(|i| i.pointer("/metadata/name") == Some(&json!(g))) {
            continue;
        }
        let versions: Vec<Value> = vs.iter().map(|(v, doc)| json!({"version": v, "resources": aggregated_resources(&g, v, doc), "freshness": "Current"})).collect();
        items.push(json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lists_fold_subresources() {
        let doc = json!({"resources": [
            {"name": "widgets", "singularName": "", "namespaced": true, "kind": "Widget", "verbs": ["get", "list"], "shortNames": ["wd"]},
            {"name": "widgets/status", "namespaced": true, "kind": "Widget", "verbs": ["get"]},
        ]});
        let r = aggregated_resources("x.io", "v1", &doc);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["singularResource"], "widget");
        assert_eq!(r[0]["scope"], "Namespaced");
        assert_eq!(r[0]["shortNames"], json!(["wd"]));
        assert_eq!(r[0]["subresources"][0]["subresource"], "status");
    }
}
