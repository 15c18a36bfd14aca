//! The aggregated group versions in discovery, and the order of every group and version:
//! each non-local APIService's group version is added to `/apis` (legacy and aggregated) and
//! `/apis/GROUP` with what its extension server's discovery document says, then groups and
//! versions are sorted by the APIServices' priorities as kube-aggregator sorts them (`order`).

use serde_json::{json, Value};

use super::order::Priorities;
use crate::rest::meta_str;
use crate::state::{ApiState, Registry};

/// The group versions of the non-local APIServices (available or not: upstream lists them
/// all, and a request for an unavailable one gets a 503).
fn remote_group_versions(state: &ApiState) -> Vec<(String, String)> {
    super::all(state)
        .unwrap_or_default()
        .iter()
        .filter(|a| a.pointer("/spec/service").is_some_and(|s| !s.is_null()) && meta_str(a, "deletionTimestamp").is_empty())
        .filter_map(|a| {
            let g = a.pointer("/spec/group").and_then(Value::as_str)?;
            let v = a.pointer("/spec/version").and_then(Value::as_str)?;
            (!g.is_empty()).then(|| (g.to_string(), v.to_string()))
        })
        .collect()
}

fn version_entry(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions.iter().map(|v| version_entry(group, v)).collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

/// Completes a legacy `APIGroupList` of `/apis`: the extension servers' groups added, then
/// every group and version in upstream's order, each group's preferred version its first.
pub fn add_groups(state: &ApiState, list: &mut Value) {
    let Some(items) = list.get_mut("groups").and_then(Value::as_array_mut) else { return };
    let mut gvs: Vec<(String, String)> = Vec::new();
    for g in items.iter() {
        let name = g["name"].as_str().unwrap_or("");
        for v in g["versions"].as_array().into_iter().flatten() {
            if let Some(v) = v["version"].as_str() {
                gvs.push((name.to_string(), v.to_string()));
            }
        }
    }
    gvs.extend(remote_group_versions(state));
    *items = Priorities::of(state).legacy(gvs).iter().map(|(g, vs)| group_entry(g, vs)).collect();
}

/// `GET /apis/GROUP`: the group's versions served here and by extension servers, preferred
/// first; None when there are none.
pub fn api_group(state: &ApiState, registry: &Registry, group: &str) -> Option<Value> {
    if group.is_empty() {
        return None;
    }
    let mut gvs: Vec<(String, String)> = registry.groups().into_iter().filter(|(g, _)| g == group).flat_map(|(g, vs)| vs.into_iter().map(move |v| (g.clone(), v))).collect();
    gvs.extend(remote_group_versions(state).into_iter().filter(|(g, _)| g == group));
    let (g, vs) = Priorities::of(state).legacy(gvs).into_iter().next()?;
    let mut out = group_entry(&g, &vs);
    out["kind"] = json!("APIGroup");
    out["apiVersion"] = json!("v1");
    Some(out)
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

/// Completes an `APIGroupDiscoveryList` of `/apis`: the extension servers' group versions
/// added (those whose last discovery check failed as `Stale`, with what was last fetched, as
/// upstream), then groups and versions in upstream's order.
pub fn add_aggregated(state: &ApiState, list: &mut Value) {
    let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) else { return };
    let remote = state.aggregator.remote_versions();
    let listed = remote_group_versions(state);
    for ((g, v), r) in remote {
        if g.is_empty() || !listed.contains(&(g.clone(), v.clone())) {
            continue;
        }
        let entry = json!({"version": v, "resources": aggregated_resources(&g, &v, &r.doc), "freshness": if r.stale { "Stale" } else { "Current" }});
        let pos = items.iter().position(|i| i.pointer("/metadata/name").and_then(Value::as_str) == Some(g.as_str()));
        match pos {
            Some(i) => {
                if let Some(vs) = items[i].get_mut("versions").and_then(Value::as_array_mut) {
                    if !vs.iter().any(|x| x["version"] == v.as_str()) {
                        vs.push(entry);
                    }
                }
            }
            None => items.push(json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": [entry]})),
        }
    }
    let prio = Priorities::of(state);
    let name = |i: &Value| i.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let versions = |i: &Value| -> Vec<String> { i["versions"].as_array().into_iter().flatten().filter_map(|v| v["version"].as_str().map(str::to_string)).collect() };
    for item in items.iter_mut() {
        let g = name(item);
        if let Some(vs) = item.get_mut("versions").and_then(Value::as_array_mut) {
            prio.sort_version_objects(&g, vs);
        }
    }
    items.sort_by(|a, b| prio.aggregated_group_order((&name(a), &versions(a)), (&name(b), &versions(b))));
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
