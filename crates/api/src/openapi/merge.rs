//! Extension API servers' OpenAPI documents joined to this server's, as kube-aggregator does:
//! an extension's Swagger 2.0 document is cut down to the paths of its APIService's group
//! version and the definitions they reach ([`filter_v2`], kube-openapi's
//! `FilterSpecByPathsWithoutSideEffects`), then merged into `/openapi/v2` ([`merge_v2`],
//! `MergeSpecsIgnorePathConflictRenamingDefinitionsAndParameters`): a path already there
//! stays as it is, a definition already there with other content is renamed `<name>_v2`
//! (`_v3`, …) in the extension's part, one equal but for its
//! `x-kubernetes-group-version-kind` list has the lists joined. An extension that serves no
//! `/openapi/v3` gets its group version's v3 document converted from the v2 one
//! ([`v2_to_v3`], as kube-openapi's `openapiconv`).
//!
//! Shared parameters (`#/parameters/…`) are written into the operations that use them, so
//! that the merged document needs none (the protobuf form carries no shared parameters).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Map, Value};

const DEFS: &str = "#/definitions/";
const PARAMS: &str = "#/parameters/";
const GVK: &str = "x-kubernetes-group-version-kind";

/// The part of an extension's v2 document that serves `prefix` (`/apis/<group>/<version>/`):
/// those paths, their parameters resolved, and the definitions they reach.
pub fn filter_v2(spec: &Value, prefix: &str) -> Value {
    let params = spec.get("parameters").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut paths = Map::new();
    for (p, item) in spec.get("paths").and_then(Value::as_object).into_iter().flatten() {
        if p.starts_with(prefix) || p.as_str() == prefix.trim_end_matches('/') {
            let mut item = item.clone();
            resolve_parameters(&mut item, &params);
            paths.insert(p.clone(), item);
        }
    }
    let all = spec.get("definitions").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut keep = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    refs(&Value::Object(paths.clone()), &mut |r| todo.push(r.to_string()));
    while let Some(name) = todo.pop() {
        if !all.contains_key(&name) || !keep.insert(name.clone()) {
            continue;
        }
        refs(&all[&name], &mut |r| todo.push(r.to_string()));
    }
    let definitions: Map<String, Value> = keep.into_iter().filter_map(|n| all.get(&n).map(|d| (n, d.clone()))).collect();
    let mut out = json!({"swagger": "2.0", "paths": paths, "definitions": definitions});
    if let Some(info) = spec.get("info") {
        out["info"] = info.clone();
    }
    out
}

/// Replaces `{"$ref": "#/parameters/x"}` in the path item's and its operations' parameter
/// lists by the shared parameter.
fn resolve_parameters(item: &mut Value, shared: &Map<String, Value>) {
    let resolve = |list: &mut Value| {
        for p in list.as_array_mut().into_iter().flatten() {
            let target = p.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(PARAMS)).and_then(|n| shared.get(n));
            if let Some(t) = target {
                *p = t.clone();
            }
        }
    };
    let Some(m) = item.as_object_mut() else { return };
    if let Some(l) = m.get_mut("parameters") {
        resolve(l);
    }
    for op in m.values_mut() {
        if let Some(l) = op.as_object_mut().and_then(|o| o.get_mut("parameters")) {
            resolve(l);
        }
    }
}

/// Calls `f` with the definition name of every `#/definitions/` reference in `v`.
fn refs(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => {
                        if let Some(n) = r.strip_prefix(DEFS) {
                            f(n);
                        }
                    }
                    _ => refs(x, f),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, f)),
        _ => {}
    }
}

/// Rewrites the `#/definitions/` references of `v` by `renames` (old name → new name).
fn rename_refs(v: &mut Value, renames: &HashMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match (k.as_str(), &mut *x) {
                    ("$ref", Value::String(r)) => {
                        if let Some(new) = r.strip_prefix(DEFS).and_then(|n| renames.get(n)) {
                            *r = format!("{DEFS}{new}");
                        }
                    }
                    _ => rename_refs(x, renames),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rename_refs(x, renames)),
        _ => {}
    }
}

/// Whether two definitions are equal but for their GVK lists.
fn equal_but_gvks(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove(GVK);
        }
        v
    };
    strip(a) == strip(b)
}

/// The names `source`'s definitions take in `dest`: those of definitions `dest` has with
/// other content, `<name>_v<i>`.
fn renames_for(dest: &Value, source: &Value) -> HashMap<String, String> {
    let empty = Map::new();
    let dest_defs = dest.get("definitions").and_then(Value::as_object).unwrap_or(&empty);
    let source_defs = source.get("definitions").and_then(Value::as_object).unwrap_or(&empty);
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut renames: HashMap<String, String> = HashMap::new();
    'defs: for (name, def) in source_defs {
        let Some(existing) = dest_defs.get(name) else { continue };
        if equal_but_gvks(existing, def) {
            continue;
        }
        let mut i = 1;
        let mut candidate;
        loop {
            i += 1;
            candidate = format!("{name}_v{i}");
            match dest_defs.get(&candidate) {
                Some(e) if equal_but_gvks(e, def) => {
                    renames.insert(name.clone(), candidate);
                    continue 'defs;
                }
                Some(_) => continue,
                None => break,
            }
        }
        while used.contains(&candidate) || dest_defs.contains_key(&candidate) || source_defs.contains_key(&candidate) {
            i += 1;
            candidate = format!("{name}_v{i}");
        }
        used.insert(candidate.clone());
        renames.insert(name.clone(), candidate);
    }
    renames
}

/// Merges the (filtered) extension document `source` into `dest`.
pub fn merge_v2(dest: &mut Value, mut source: Value) {
    let renames = renames_for(dest, &source);
    rename_refs(&mut source, &renames);
    let Some(d) = dest.as_object_mut() else { return };
    let defs = d.entry("definitions").or_insert_with(|| json!({}));
    if let Some(defs) = defs.as_object_mut() {
        for (name, def) in source.get("definitions").and_then(Value::as_object).cloned().unwrap_or_default() {
            let name = renames.get(&name).cloned().unwrap_or(name);
            match defs.get_mut(&name) {
                None => {
                    defs.insert(name, def);
                }
                Some(existing) => join_gvks(existing, &def),
            }
        }
    }
    let paths = d.entry("paths").or_insert_with(|| json!({}));
    if let Some(paths) = paths.as_object_mut() {
        for (p, item) in source.get("paths").and_then(Value::as_object).cloned().unwrap_or_default() {
            paths.entry(p).or_insert(item);
        }
    }
}

/// Adds the GVKs of `other` missing from `def`'s list.
fn join_gvks(def: &mut Value, other: &Value) {
    let Some(theirs) = other.get(GVK).and_then(Value::as_array) else { return };
    let Some(m) = def.as_object_mut() else { return };
    let list = m.entry(GVK).or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        for g in theirs {
            if !list.contains(g) {
                list.push(g.clone());
            }
        }
    }
}

/// The OpenAPI v3 document of a (filtered) v2 one: schemas under `components`, references
/// rewritten, body parameters as request bodies, response schemas as JSON content.
pub fn v2_to_v3(v2: &Value) -> Value {
    let mut text = v2.clone();
    rewrite_ref_prefix(&mut text);
    let schemas = text.get("definitions").cloned().unwrap_or_else(|| json!({}));
    let mut paths = Map::new();
    for (p, item) in text.get("paths").and_then(Value::as_object).into_iter().flatten() {
        let Some(item) = item.as_object() else { continue };
        let mut out = Map::new();
        for (k, v) in item {
            match k.as_str() {
                "parameters" => {
                    out.insert(k.clone(), Value::Array(v.as_array().into_iter().flatten().filter(|p| p["in"] != "body").map(parameter_v3).collect()));
                }
                "get" | "put" | "post" | "delete" | "options" | "head" | "patch" => {
                    out.insert(k.clone(), operation_v3(v));
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        paths.insert(p.clone(), Value::Object(out));
    }
    let info = text.get("info").cloned().unwrap_or_else(|| json!({"title": "", "version": ""}));
    json!({"openapi": "3.0.0", "info": info, "paths": paths, "components": {"schemas": schemas}})
}

fn rewrite_ref_prefix(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match (k.as_str(), &mut *x) {
                    ("$ref", Value::String(r)) => {
                        if let Some(n) = r.strip_prefix(DEFS) {
                            *r = format!("#/components/schemas/{n}");
                        }
                    }
                    _ => rewrite_ref_prefix(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_ref_prefix),
        _ => {}
    }
}

/// A non-body v2 parameter in v3 form: its type and format under `schema`.
fn parameter_v3(p: &Value) -> Value {
    let Some(m) = p.as_object() else { return p.clone() };
    let mut out = Map::new();
    let mut schema = Map::new();
    for (k, v) in m {
        match k.as_str() {
            "type" | "format" | "items" | "enum" | "default" | "minimum" | "maximum" | "uniqueItems" => {
                schema.insert(k.clone(), v.clone());
            }
            "collectionFormat" | "allowEmptyValue" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if !schema.is_empty() {
        out.insert("schema".into(), Value::Object(schema));
    }
    Value::Object(out)
}

fn operation_v3(op: &Value) -> Value {
    let Some(m) = op.as_object() else { return op.clone() };
    let consumes: Vec<Value> = m.get("consumes").and_then(Value::as_array).cloned().unwrap_or_else(|| vec![json!("application/json")]);
    let produces: Vec<Value> = m.get("produces").and_then(Value::as_array).cloned().unwrap_or_else(|| vec![json!("application/json")]);
    let content = |schema: &Value, types: &[Value]| -> Value {
        let c: BTreeMap<String, Value> = types.iter().filter_map(Value::as_str).map(|t| (t.to_string(), json!({"schema": schema}))).collect();
        json!(c)
    };
    let mut out = Map::new();
    for (k, v) in m {
        match k.as_str() {
            "consumes" | "produces" | "schemes" => {}
            "parameters" => {
                let list = v.as_array().cloned().unwrap_or_default();
                if let Some(body) = list.iter().find(|p| p["in"] == "body") {
                    let mut rb = json!({"content": content(&body["schema"], &consumes)});
                    if body.get("required").and_then(Value::as_bool) == Some(true) {
                        rb["required"] = json!(true);
                    }
                    out.insert("requestBody".into(), rb);
                }
                out.insert(k.clone(), Value::Array(list.iter().filter(|p| p["in"] != "body").map(parameter_v3).collect()));
            }
            "responses" => {
                let rs: Map<String, Value> = v
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(code, r)| {
                        let mut r2 = json!({"description": r.get("description").cloned().unwrap_or(json!(""))});
                        if let Some(s) = r.get("schema") {
                            r2["content"] = content(s, &produces);
                        }
                        (code.clone(), r2)
                    })
                    .collect();
                out.insert(k.clone(), Value::Object(rs));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext() -> Value {
        json!({
            "swagger": "2.0",
            "info": {"title": "ext", "version": "v0"},
            "parameters": {"name-x": {"name": "name", "in": "path", "required": true, "type": "string"}},
            "paths": {
                "/apis/x.io/v1/things/{name}": {"get": {"responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/io.x.v1.Thing"}}}}, "parameters": [{"$ref": "#/parameters/name-x"}]},
                "/apis/x.io/v1/": {"get": {"responses": {"200": {"description": "OK"}}}},
                "/version/": {"get": {"responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/io.x.Info"}}}}},
            },
            "definitions": {
                "io.x.v1.Thing": {"type": "object", "properties": {"metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}, "size": {"type": "integer"}},
                    GVK: [{"group": "x.io", "version": "v1", "kind": "Thing"}]},
                "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object", "properties": {"name": {"type": "string", "description": "other words"}}},
                "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions": {"type": "object", GVK: [{"group": "x.io", "version": "v1", "kind": "DeleteOptions"}]},
                "io.x.Info": {"type": "object"},
            },
        })
    }

    #[test]
    fn filtered_to_the_group_version_with_what_it_reaches() {
        let f = filter_v2(&ext(), "/apis/x.io/v1/");
        let paths: Vec<&String> = f["paths"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
        assert_eq!(paths, ["/apis/x.io/v1/", "/apis/x.io/v1/things/{name}"]);
        let defs: Vec<&String> = f["definitions"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
        assert_eq!(defs, ["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "io.x.v1.Thing"]);
        assert_eq!(f["paths"]["/apis/x.io/v1/things/{name}"]["parameters"][0]["in"], "path", "shared parameters resolved");
    }

    #[test]
    fn merged_with_conflicting_definitions_renamed_and_gvks_joined() {
        let mut dest = json!({"swagger": "2.0", "paths": {"/apis/x.io/v1/": {"get": {"description": "mine"}}}, "definitions": {
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object", "properties": {"name": {"type": "string", "description": "words"}}},
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions": {"type": "object", GVK: [{"group": "", "version": "v1", "kind": "DeleteOptions"}]},
        }});
        let mut src = filter_v2(&ext(), "/apis/x.io/v1/");
        src["definitions"]["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"] = ext()["definitions"]["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"].clone();
        merge_v2(&mut dest, src);
        let d = &dest["definitions"];
        assert_eq!(d["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["name"]["description"], "words", "ours kept");
        assert_eq!(d["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta_v2"]["properties"]["name"]["description"], "other words");
        assert_eq!(d["io.x.v1.Thing"]["properties"]["metadata"]["$ref"], "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta_v2");
        assert_eq!(d["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"][GVK].as_array().map(Vec::len), Some(2));
        assert_eq!(dest["paths"]["/apis/x.io/v1/"]["get"]["description"], "mine", "a path already there stays");
        assert!(dest["paths"]["/apis/x.io/v1/things/{name}"].is_object());
        // Merging the same document again reuses the renamed definition.
        merge_v2(&mut dest, filter_v2(&ext(), "/apis/x.io/v1/"));
        assert!(dest["definitions"].get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta_v3").is_none());
    }

    #[test]
    fn converted_to_v3() {
        let mut v2 = filter_v2(&ext(), "/apis/x.io/v1/");
        v2["paths"]["/apis/x.io/v1/things/{name}"]["patch"] = json!({"consumes": ["application/merge-patch+json"], "produces": ["application/json"],
            "parameters": [{"name": "body", "in": "body", "required": true, "schema": {"type": "object"}}, {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true}],
            "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/io.x.v1.Thing"}}}});
        let v3 = v2_to_v3(&v2);
        assert_eq!(v3["components"]["schemas"]["io.x.v1.Thing"]["properties"]["metadata"]["$ref"], "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
        let patch = &v3["paths"]["/apis/x.io/v1/things/{name}"]["patch"];
        assert_eq!(patch["requestBody"]["content"]["application/merge-patch+json"]["schema"]["type"], "object");
        assert_eq!(patch["parameters"], json!([{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}]));
        assert_eq!(patch["responses"]["200"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/io.x.v1.Thing");
        assert_eq!(v3["paths"]["/apis/x.io/v1/things/{name}"]["parameters"][0]["schema"]["type"], "string");
    }
}
