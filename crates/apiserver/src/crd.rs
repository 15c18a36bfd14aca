//! CustomResourceDefinitions: each established CRD adds its kind to the registry (so
//! discovery, the REST store, the watch cache and RBAC serve it like any other), its objects
//! are validated against the CRD's `openAPIV3Schema` and pruned of unknown fields, and
//! `kubectl get` prints its `additionalPrinterColumns`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use timonier_api::resources::{self, ResourceDef, Subresource, ALL_VERBS};

use crate::error::{ApiResult, FieldError};
use crate::rest::{meta_str, now_rfc3339, Mode, WriteOptions};
use crate::state::{ApiState, Registry};

pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The resources one CRD defines: one per served version.
pub fn defs_of(crd: &Value) -> Vec<ResourceDef> {
    let spec = crd.get("spec").unwrap_or(&Value::Null);
    let group = spec.get("group").and_then(Value::as_str).unwrap_or("");
    let names = spec.get("names").unwrap_or(&Value::Null);
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let list = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
    };
    let kind = s(names.get("kind"));
    let plural = s(names.get("plural"));
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return vec![];
    }
    let singular = names.get("singular").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_string).unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let versions = spec.get("versions").and_then(Value::as_array).cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))
        .map(|v| {
            let version = s(v.get("name"));
            let mut subresources = Vec::new();
            if v.pointer("/subresources/status").is_some() {
                subresources.push(Subresource { name: "status".into(), group: group.into(), version: version.clone(), kind: kind.clone(), verbs: vec!["get".into(), "patch".into(), "update".into()] });
            }
            if v.pointer("/subresources/scale").is_some() {
                subresources.push(Subresource { name: "scale".into(), group: "autoscaling".into(), version: "v1".into(), kind: "Scale".into(), verbs: vec!["get".into(), "patch".into(), "update".into()] });
            }
            ResourceDef {
                group: group.into(),
                version,
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                short_names: list(names.get("shortNames")),
                categories: list(names.get("categories")),
                namespaced,
                verbs: ALL_VERBS.iter().map(|v| v.to_string()).collect(),
                subresources,
                storage_resource: format!("{group}/{plural}"),
            }
        })
        .collect()
}

/// The CRD's schema and printer columns for one version.
pub fn version_of<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    crd.pointer("/spec/versions")?.as_array()?.iter().find(|v| v.get("name").and_then(Value::as_str) == Some(version))
}

impl ApiState {
    /// The CRD behind a custom resource, from the cache.
    pub fn crd_for(&self, def: &ResourceDef) -> Option<Arc<Value>> {
        let crds = self.def("apiextensions.k8s.io", "v1", "customresourcedefinitions").ok()?;
        self.cache_of(&crds).ok()?.get(&crds.key("", &format!("{}.{}", def.plural, def.group)))
    }

    /// Brings the registry and the caches in line with the established CRDs.
    pub async fn sync_crds(&self) -> ApiResult<()> {
        let crds_def = self.def("apiextensions.k8s.io", "v1", "customresourcedefinitions")?;
        let cache = self.cache_of(&crds_def)?;
        let crds: Vec<Arc<Value>> = cache.list(&crds_def.key_prefix()).into_iter().map(|(_, v)| v).collect();
        let mut custom = Vec::new();
        for crd in &crds {
            if !meta_str(crd, "deletionTimestamp").is_empty() {
                continue;
            }
            for d in defs_of(crd) {
                custom.push(Arc::new(d));
            }
        }
        for d in &custom {
            if self.cache.resource(&d.key_prefix()).is_none() {
                self.cache.add_resource(&d.key_prefix()).await.map_err(crate::error::ApiError::from_store)?;
            }
        }
        let current = self.registry();
        let builtin = resources::builtin();
        let wanted: Vec<Arc<ResourceDef>> = builtin.into_iter().chain(custom.iter().cloned()).collect();
        if current.all.iter().map(|d| &**d).ne(wanted.iter().map(|d| &**d)) {
            *self.registry.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Registry::new(wanted));
        }
        let live: HashSet<String> = custom.iter().map(|d| d.key_prefix()).collect();
        let stale: Vec<String> = current.all.iter().filter(|d| d.storage_resource.contains('/') && d.group.contains('.') && !live.contains(&d.key_prefix())).map(|d| d.key_prefix()).collect();
        for p in stale {
            if !resources::builtin().iter().any(|b| b.key_prefix() == p) {
                self.cache.remove_resource(&p);
            }
        }
        Ok(())
    }
}

/// Sets the CRD status upstream reports once the names are accepted: `kubectl wait
/// --for condition=established` waits for it.
pub fn prepare_crd(obj: &mut Value) {
    let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let now = now_rfc3339();
    let stored: Vec<Value> = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| vs.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).filter_map(|v| v.get("name").cloned()).collect())
        .unwrap_or_default();
    if let Some(m) = obj.as_object_mut() {
        m.insert(
            "status".into(),
            json!({
                "acceptedNames": names,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
                    {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
                ],
                "storedVersions": stored,
            }),
        );
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            let fins = meta.entry("finalizers").or_insert_with(|| json!([]));
            if let Some(f) = fins.as_array_mut() {
                if !f.iter().any(|x| x == CLEANUP_FINALIZER) {
                    f.push(json!(CLEANUP_FINALIZER));
                }
            }
        }
    }
}

/// CRD validation: the names and versions a CRD needs to be served.
pub fn validate_crd(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let group = spec.get("group").and_then(Value::as_str).unwrap_or("");
    let plural = spec.pointer("/names/plural").and_then(Value::as_str).unwrap_or("");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid("spec.group", &json!(group), "should be a domain with at least one dot"));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if spec.pointer("/names/kind").and_then(Value::as_str).unwrap_or("").is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    let name = meta_str(obj, "name");
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid("metadata.name", &json!(name), "must be spec.names.plural+\".\"+spec.group"));
    }
    match spec.get("versions").and_then(Value::as_array) {
        Some(vs) if !vs.is_empty() => {
            let storage = vs.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).count();
            if storage != 1 {
                errs.push(FieldError::invalid("spec.versions", &json!(vs), "must have exactly one version marked as storage version"));
            }
        }
        _ => errs.push(FieldError::required("spec.versions", "")),
    }
    match spec.get("scope").and_then(Value::as_str) {
        Some("Namespaced") | Some("Cluster") => {}
        other => errs.push(FieldError::not_supported("spec.scope", &json!(other.unwrap_or("")), &["Cluster", "Namespaced"])),
    }
    errs
}

/// The CRD lifecycle: keeps the registry in step with the CRDs, and when one is deleted,
/// deletes its custom resources before letting it go.
pub async fn controller(state: Arc<ApiState>) {
    let revision = |state: &ApiState| crate::bootstrap::changes_while_deleting(state, ("apiextensions.k8s.io", "v1", "customresourcedefinitions"));
    crate::bootstrap::on_change_by(state, Duration::from_millis(200), "CRD", revision, |state| async move {
        state.sync_crds().await?;
        cleanup_deleted(&state).await
    })
    .await
}

async fn cleanup_deleted(state: &Arc<ApiState>) -> ApiResult<()> {
    let crds_def = state.def("apiextensions.k8s.io", "v1", "customresourcedefinitions")?;
    let cache = state.cache_of(&crds_def)?;
    for (_, crd) in cache.list(&crds_def.key_prefix()) {
        if meta_str(&crd, "deletionTimestamp").is_empty() {
            continue;
        }
        let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("").to_string();
        let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("").to_string();
        let prefix = format!("/registry/{group}/{plural}/");
        // The objects are read from the store: the kind is already gone from the registry.
        let page = state.store.list(&prefix, timonier_store::ListOptions::default()).await.map_err(crate::error::ApiError::from_store)?;
        for kv in page.items {
            if let Err(e) = state.store.delete(&kv.key, None).await {
                tracing::debug!(key = %kv.key, error = %e, "CR cleanup");
            }
        }
        let name = meta_str(&crd, "name").to_string();
        let r = state
            .guaranteed_update(&crds_def, "", &name, None, &WriteOptions::default(), |old| {
                let mut new = old.clone();
                if let Some(f) = new.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
                    f.retain(|x| x != CLEANUP_FINALIZER);
                }
                Ok(new)
            }, Mode::Main)
            .await;
        crate::rest::ignore_not_found(r)?;
    }
    Ok(())
}

/// Validates a custom resource against its version's `openAPIV3Schema`, pruning fields the
/// schema does not know (as upstream does unless `x-kubernetes-preserve-unknown-fields`).
pub fn validate_and_prune(schema: &Value, obj: &mut Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        if let Some(m) = obj.as_object_mut() {
            for (k, v) in m.iter_mut() {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(s) = props.get(k) {
                    check(s, v, k, &mut errs);
                }
            }
            if schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) != Some(true) {
                m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || props.contains_key(k));
            }
        }
    }
    for r in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if obj.get(r).is_none() {
            errs.push(FieldError::required(r, ""));
        }
    }
    errs
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(schema: &Value, v: &mut Value, path: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(v);
        let ok = actual == t || (t == "number" && actual == "integer") || (int_or_string && (actual == "integer" || actual == "string"));
        if !ok {
            errs.push(FieldError::invalid(path, v, &format!("{path} in body must be of type {t}: {actual:?}")));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let names: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            errs.push(FieldError {
                reason: "FieldValueNotSupported",
                field: path.into(),
                message: format!("Unsupported value: {}: supported values: {}", v, names.join(", ")),
            });
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                errs.push(FieldError::invalid(path, v, &format!("{path} in body should be greater than or equal to {min}")));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                errs.push(FieldError::invalid(path, v, &format!("{path} in body should be less than or equal to {max}")));
            }
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                errs.push(FieldError::invalid(path, v, &format!("{path} in body should be at least {min} chars long")));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                errs.push(FieldError::too_long(path, max as usize));
            }
        }
    }
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m.iter_mut() {
                let sub = format!("{path}.{k}");
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    check(s, child, &sub, errs);
                } else if let Some(s) = additional {
                    check(s, child, &sub, errs);
                }
            }
            if let Some(props) = props {
                if !preserve && additional.is_none() && schema.get("additionalProperties") != Some(&Value::Bool(true)) {
                    m.retain(|k, _| props.contains_key(k));
                }
            }
            for r in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                if !m.contains_key(r) {
                    errs.push(FieldError::required(format!("{path}.{r}"), ""));
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    check(s, item, &format!("{path}[{i}]"), errs);
                }
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    errs.push(FieldError { reason: "FieldValueTooMany", field: path.into(), message: format!("Too many: {}: must have at most {max} items", items.len()) });
                }
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    errs.push(FieldError::invalid(path, &Value::from(items.len()), &format!("{path} in body should have at least {min} items")));
                }
            }
        }
        _ => {}
    }
}

/// Evaluates the simple JSONPath of a printer column (`.spec.replicas`, `.status.conditions[0].type`).
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    let path = path.trim().trim_start_matches('{').trim_end_matches('}').trim_start_matches('$');
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// Column definitions and cells for a custom resource: NAME, the CRD's printer columns, and
/// AGE when no column is of type date for the creation time (upstream's rule).
pub fn table_columns(crd: Option<&Value>, version: &str) -> (Vec<Value>, Vec<(String, String)>) {
    let mut defs = vec![json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names", "priority": 0})];
    let mut paths = vec![];
    let cols = crd.and_then(|c| version_of(c, version)).and_then(|v| v.get("additionalPrinterColumns")).and_then(Value::as_array).cloned();
    match cols {
        Some(cols) => {
            for c in cols {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                let ty = c.get("type").and_then(Value::as_str).unwrap_or("string").to_string();
                defs.push(json!({
                    "name": name,
                    "type": ty,
                    "format": c.get("format").and_then(Value::as_str).unwrap_or(""),
                    "description": c.get("description").and_then(Value::as_str).unwrap_or(""),
                    "priority": c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                }));
                paths.push((c.get("jsonPath").and_then(Value::as_str).unwrap_or("").to_string(), ty));
            }
        }
        None => {
            defs.push(json!({"name": "Age", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata", "priority": 0}));
            paths.push((".metadata.creationTimestamp".into(), "date".into()));
        }
    }
    (defs, paths)
}

pub fn table_cells(obj: &Value, paths: &[(String, String)]) -> Vec<Value> {
    let mut cells = vec![json!(meta_str(obj, "name"))];
    for (p, ty) in paths {
        let v = json_path(obj, p).cloned();
        cells.push(match (v, ty.as_str()) {
            (Some(Value::String(s)), "date") => match s.parse::<jiff::Timestamp>() {
                Ok(t) => json!(timonier_api::printers::human_duration(jiff::Timestamp::now().duration_since(t))),
                Err(_) => json!(s),
            },
            (Some(v), _) => v,
            (None, _) => Value::Null,
        });
    }
    cells
}

/// Upstream's SetDefaults_CustomResourceDefinitionSpec for the names: `singular` is the
/// lower-cased kind and `listKind` the kind + "List" when not given (acceptedNames copies
/// them); no conversion means `None`.
pub fn default_crd(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
        if names.get("singular").and_then(Value::as_str).is_none_or(str::is_empty) {
            names.insert("singular".into(), json!(kind.to_lowercase()));
        }
        if !kind.is_empty() && names.get("listKind").and_then(Value::as_str).is_none_or(str::is_empty) {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    if spec.get("conversion").is_none_or(Value::is_null) {
        spec.insert("conversion".into(), json!({"strategy": "None"}));
    }
}
