//! Server-side apply (`PATCH` with `application/apply-patch+yaml`) and field management
//! (`metadata.managedFields`), as upstream's `k8s.io/apimachinery/pkg/util/managedfields` with
//! `sigs.k8s.io/structured-merge-diff` do them.
//!
//! Every write records which manager owns which fields. An apply merges the user's
//! configuration into the object by schema (list-maps by key, sets by value, atomic values as a
//! whole), takes ownership of exactly the fields the configuration sets, removes the fields the
//! same manager applied last time but no longer sets (unless someone else owns them), and fails
//! with conflicts when it would change a field another manager owns (`force` takes them over).
//! Other writes (`track_update`) give their manager the fields whose values they changed.
//!
//! The upstream pipeline is followed step by step: version check, `kubectl` last-applied
//! migration (conflicts allowed on fields whose live value still matches the client-side apply
//! annotation) and annotation upkeep, "before-first-apply" ownership of objects that had no
//! managed fields, at most 10 Update entries (older ones merged into `ancient-changes`), entry
//! times, and the stripping of fields nobody may own (`apiVersion`, `kind`, `metadata.name`,
//! `uid`, `resourceVersion`, ...). Not done: converting objects between API versions (every
//! manager is compared at the request's version), and unions.

#[path = "apply_fieldpath.rs"]
mod apply_fieldpath;
#[path = "apply_managers.rs"]
mod apply_managers;
#[path = "apply_meta.rs"]
mod apply_meta;
#[path = "apply_schema.rs"]
mod apply_schema;
#[path = "apply_typed.rs"]
mod apply_typed;
#[cfg(test)]
#[path = "apply_smd_tests.rs"]
mod smd_tests;
#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;

pub use apply_schema::TypeSchema;

use apply_fieldpath::{go_json, path_string, values_equal, PathElement, Set};
use apply_managers::{
    cap_managers, decode_managed, is_reset, remove_managed_fields, set_managed_fields, strip_meta, strip_set, Entry, Managed, ManagerId, Operation,
};
use apply_schema::{Atom, TypeId};
use apply_typed as typed;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Other managers own fields the configuration changes (409 Conflict upstream).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration cannot be applied: wrong kind or version, `metadata.managedFields`
    /// set, a list item without its keys... (400 BadRequest upstream).
    #[error("{0}")]
    Invalid(String),
}

/// One field another manager owns, as upstream reports it in the Status causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owning manager's name.
    pub manager: String,
    /// The field, upstream style: `.spec.replicas`, `.spec.containers[name="nginx"].image`.
    pub field: String,
    /// `conflict with "kubectl-client-side-apply" using apps/v1`.
    pub message: String,
}

fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!("Apply failed with 1 conflict: {}: {}", c.message, c.field);
    }
    // Grouped by manager, in the (sorted) order the conflicts come in.
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for c in conflicts {
        match groups.iter_mut().find(|(m, _)| *m == c.message) {
            Some((_, fields)) => fields.push(&c.field),
            None => groups.push((&c.message, vec![&c.field])),
        }
    }
    let mut lines = Vec::new();
    for (message, fields) in groups {
        lines.push(format!("conflicts with {}:", message.strip_prefix("conflict with ").unwrap_or(message)));
        lines.extend(fields.iter().map(|f| format!("- {f}")));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

impl ApplyError {
    /// The HTTP status code upstream answers with.
    pub fn code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::Invalid(_) => 400,
        }
    }

    /// The `metav1.Status` body upstream answers with (`FieldManagerConflict` causes for
    /// conflicts, which kubectl prints before suggesting `--force-conflicts`).
    pub fn to_status(&self) -> Value {
        let (reason, details) = match self {
            ApplyError::Conflicts(cs) => {
                let causes: Vec<Value> =
                    cs.iter().map(|c| json!({"reason": "FieldManagerConflict", "message": c.message, "field": c.field})).collect();
                ("Conflict", Some(json!({ "causes": causes })))
            }
            ApplyError::Invalid(_) => ("BadRequest", None),
        };
        let mut status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.to_string(), "reason": reason, "code": self.code()});
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

/// What a write is to: the kind, the subresource, and what field management must know of it.
#[derive(Debug, Clone)]
pub struct Scope {
    /// API group ("" for core).
    pub group: String,
    /// API version of the request (`v1`): the version managers are recorded with.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// "" for the main resource, else the subresource (`status`): part of each manager's
    /// identity, so that status writers and spec writers are distinct managers.
    pub subresource: String,
    /// Fields the request's strategy resets (upstream `GetResetFields`), never owned: `status`
    /// for the main resource of a kind with a status subresource, `spec` for that subresource.
    pub reset_fields: Vec<Vec<String>>,
    /// A custom resource's schema (`TypeSchema::from_openapi_v3`); `None`: the generated table
    /// for built-in kinds, the deduced schema (maps granular, lists atomic) for others.
    pub schema: Option<Arc<TypeSchema>>,
}

impl Scope {
    /// The main resource of a kind; `status` is reset when the built-in registry gives the kind
    /// a status subresource (for custom resources, set `reset_fields` from the CRD).
    pub fn main_resource(group: &str, version: &str, kind: &str) -> Scope {
        let reset = if has_status_subresource(group, kind) { vec![vec!["status".to_string()]] } else { Vec::new() };
        Scope { group: group.into(), version: version.into(), kind: kind.into(), subresource: String::new(), reset_fields: reset, schema: None }
    }

    /// The `status` subresource of a kind: its writers own only what they change outside `spec`.
    pub fn status_subresource(group: &str, version: &str, kind: &str) -> Scope {
        Scope { subresource: "status".into(), reset_fields: vec![vec!["spec".into()]], ..Scope::main_resource(group, version, kind) }
    }

    /// The same scope with a custom resource's schema.
    pub fn with_schema(mut self, schema: Arc<TypeSchema>) -> Scope {
        self.schema = Some(schema);
        self
    }
}

fn has_status_subresource(group: &str, kind: &str) -> bool {
    static KINDS: OnceLock<HashSet<(String, String)>> = OnceLock::new();
    KINDS
        .get_or_init(|| {
            crate::resources::builtin()
                .iter()
                .filter(|r| r.subresource("status").is_some())
                .map(|r| (r.group.clone(), r.kind.clone()))
                .collect()
        })
        .contains(&(group.to_string(), kind.to_string()))
}

/// The fields one manager owns, as upstream's FieldsV1 JSON
/// (`{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{}}}}}`).
///
/// Applies `applied` (the user's configuration) for `manager` onto `live` (None = create) for
/// the main resource of `group`/`version`/`kind`. Returns the new object with
/// `metadata.managedFields` updated (entry {manager, operation:"Apply", apiVersion, time: now,
/// fieldsType:"FieldsV1", fieldsV1}), or the conflicts when another manager owns a field the
/// configuration sets to a different value and `force` is false. With force, the conflicting
/// fields move to this manager. Fields this manager applied before but omits now are removed
/// from the object unless another manager also owns them.
#[allow(clippy::too_many_arguments)]
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    group: &str,
    version: &str,
    kind: &str,
    now: &str,
) -> Result<Value, ApplyError> {
    apply_in(&Scope::main_resource(group, version, kind), live, applied, manager, force, now)
}

/// Records a non-apply write (create/update/patch by `manager`, operation "Update") to the main
/// resource: the fields whose values changed between `old` and `new` move to `manager`'s Update
/// entry (removed from others' sets), so that a later apply by someone else conflicts on them.
/// Returns `new` with `metadata.managedFields` set.
pub fn track_update(old: Option<&Value>, new: &Value, manager: &str, group: &str, version: &str, kind: &str, now: &str) -> Value {
    track_update_in(&Scope::main_resource(group, version, kind), old, new, manager, now)
}

/// `server_side_apply` for any scope (subresource, custom resource schema, reset fields).
pub fn apply_in(scope: &Scope, live: Option<&Value>, applied: &Value, manager: &str, force: bool, now: &str) -> Result<Value, ApplyError> {
    if too_deep(applied) || live.is_some_and(too_deep) {
        return Err(ApplyError::Invalid(format!("the object is nested more than {MAX_DEPTH} levels deep")));
    }
    let ctx = Ctx::new(scope);
    check_applied(&ctx, applied)?;
    let mut live_obj = live.filter(|v| v.is_object()).cloned().unwrap_or_else(|| json!({}));
    let mut managed = decode_managed(&live_obj).map_err(|e| ApplyError::Invalid(format!("failed to decode managed fields: {e}")))?;
    remove_managed_fields(&mut live_obj);
    if managed.is_empty() {
        // Fields set before anyone applied belong to "before-first-apply".
        update_pipeline(&ctx, &ctx.zero, &live_obj, &mut managed, "before-first-apply", now);
    }
    let id = ManagerId { manager: manager.into(), operation: Operation::Apply, api_version: String::new(), subresource: ctx.subresource.clone() };
    let attempt = |force: bool| {
        let mut m = managed.clone();
        updater_apply(&ctx, &live_obj, applied, &mut m, &id, force).map(|obj| (obj, m))
    };
    let (object, mut managed) = match attempt(force) {
        Ok(done) => done,
        // kubectl upgrading from client-side apply: fields whose live value still matches
        // the last-applied annotation may be taken over.
        Err(conflicts) if manager == "kubectl" => match allowed_from_last_applied(&ctx, &live_obj) {
            Some(allowed) => {
                let remaining: Vec<(ManagerId, Set)> = conflicts
                    .into_iter()
                    .map(|(m, set)| (m, Set::from_paths(set.paths().iter().filter(|p| !allowed.has(p)).map(Vec::as_slice))))
                    .filter(|(_, set)| !set.is_empty())
                    .collect();
                if !remaining.is_empty() {
                    return Err(conflicts_error(remaining));
                }
                attempt(true).map_err(conflicts_error)?
            }
            None => return Err(conflicts_error(conflicts)),
        },
        Err(conflicts) => return Err(conflicts_error(conflicts)),
    };
    strip_meta(&mut managed, &id);
    let mut object = match object {
        Some(obj) => {
            if let Some(e) = managed.get_mut(&id) {
                e.time = Some(now.to_string());
            }
            obj
        }
        None => live_obj,
    };
    if manager == "kubectl" && last_applied(&object).is_some() {
        set_last_applied(&mut object, &build_last_applied(applied));
    }
    remove_new_nulls(&mut object, live);
    set_managed_fields(&mut object, &managed);
    Ok(object)
}

/// `track_update` for any scope.
pub fn track_update_in(scope: &Scope, old: Option<&Value>, new: &Value, manager: &str, now: &str) -> Value {
    if !new.is_object() || too_deep(new) || old.is_some_and(too_deep) {
        return new.clone();
    }
    let ctx = Ctx::new(scope);
    let mut new_obj = new.clone();
    let mut old_obj = old.filter(|v| v.is_object()).cloned().unwrap_or_else(|| ctx.zero.clone());
    // Managed fields sent with the request are honoured (so clients can edit or reset them),
    // unless absent or undecodable, or the write is to a subresource.
    let mut managed = if !ctx.subresource.is_empty() {
        decode_managed(&old_obj).unwrap_or_default()
    } else if is_reset(new_obj.pointer("/metadata/managedFields")) {
        Managed::new()
    } else {
        match decode_managed(&new_obj) {
            Ok(m) if !m.is_empty() => m,
            _ => decode_managed(&old_obj).unwrap_or_default(),
        }
    };
    remove_managed_fields(&mut new_obj);
    remove_managed_fields(&mut old_obj);
    let is_create = old_obj.pointer("/metadata/uid").and_then(Value::as_str).is_none_or(str::is_empty);
    if managed.is_empty() && !is_create {
        // Objects without managed fields start being tracked at their first apply.
        return new_obj;
    }
    update_pipeline(&ctx, &old_obj, &new_obj, &mut managed, manager, now);
    set_managed_fields(&mut new_obj, &managed);
    new_obj
}

/// The deepest nesting the recursive walks accept (JSON bodies are limited to 128 by the parser;
/// YAML ones may not be).
const MAX_DEPTH: usize = 512;

fn too_deep(v: &Value) -> bool {
    let mut stack = vec![(v, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return true;
        }
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(m) => stack.extend(m.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    false
}

/// The schema and settings of one request.
struct Ctx<'a> {
    nodes: &'a [Atom],
    root: TypeId,
    /// `apps/v1`.
    gv: String,
    kind: String,
    subresource: String,
    /// The reset fields, as a set.
    ignored: Set,
    /// The kind's zero value: the "old" object of a create.
    zero: Value,
}

impl<'a> Ctx<'a> {
    fn new(scope: &'a Scope) -> Ctx<'a> {
        let (nodes, root) = match &scope.schema {
            Some(s) => (&s.nodes[..], s.root),
            None => apply_schema::builtin_root(&scope.group, &scope.version, &scope.kind),
        };
        let gv = if scope.group.is_empty() { scope.version.clone() } else { format!("{}/{}", scope.group, scope.version) };
        let paths: Vec<Vec<PathElement>> =
            scope.reset_fields.iter().map(|p| p.iter().map(|f| PathElement::Field(f.clone())).collect()).collect();
        let ignored = Set::from_paths(paths.iter().map(Vec::as_slice));
        let zero = apply_schema::zero_object(&scope.group, &scope.version, &scope.kind);
        Ctx { nodes, root, gv, kind: scope.kind.clone(), subresource: scope.subresource.clone(), ignored, zero }
    }
}

/// Upstream's version check, the ban on `metadata.managedFields` in a configuration, and the
/// typed conversion's checks of associative lists.
fn check_applied(ctx: &Ctx, applied: &Value) -> Result<(), ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid("error decoding YAML: the configuration must be an object".into()));
    }
    let api_version = applied.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = applied.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != ctx.gv || kind != ctx.kind {
        let (g, v) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        return Err(ApplyError::Invalid(format!("invalid object type: {g}/{v}, Kind={kind}")));
    }
    if applied.pointer("/metadata/managedFields").is_some_and(|v| !v.is_null()) {
        return Err(ApplyError::Invalid("metadata.managedFields must be nil".into()));
    }
    typed::validate(ctx.nodes, ctx.root, applied).map_err(|e| {
        let meta = |k: &str| applied.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or("").to_string();
        let (g, v) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        ApplyError::Invalid(format!("failed to create typed patch object ({}/{}; {g}/{v}, Kind={kind}): {e}", meta("namespace"), meta("name")))
    })
}

fn conflicts_error(mut conflicts: Vec<(ManagerId, Set)>) -> ApplyError {
    conflicts.sort_by_key(|(id, _)| id.json());
    let list = conflicts
        .iter()
        .flat_map(|(id, set)| {
            let message = format!("conflict with {}", id.display());
            set.paths().into_iter().map(move |p| Conflict { manager: id.manager.clone(), field: path_string(&p), message: message.clone() })
        })
        .collect();
    ApplyError::Conflicts(list)
}

/// Upstream `Updater.update`: the comparison of `old` and `new`; managers other than
/// `workflow` lose the fields that were removed, and (with `force`) those that were changed;
/// without `force`, changed fields others own are the conflicts.
fn updater_update(ctx: &Ctx, old: &Value, new: &Value, managers: &mut Managed, workflow: &ManagerId, force: bool) -> Result<typed::Comparison, Vec<(ManagerId, Set)>> {
    let cmp = typed::compare(ctx.nodes, ctx.root, old, new).exclude(&ctx.ignored);
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts = Vec::new();
    for (id, entry) in managers.iter() {
        if id == workflow {
            continue;
        }
        let overlap = entry.set.intersection(&changed);
        if !overlap.is_empty() {
            conflicts.push((id.clone(), overlap));
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(conflicts);
    }
    for (id, overlap) in &conflicts {
        if let Some(e) = managers.get_mut(id) {
            e.set = e.set.difference(overlap);
        }
    }
    if !cmp.removed.is_empty() {
        for (id, e) in managers.iter_mut() {
            if id != workflow {
                e.set = e.set.difference(&cmp.removed);
            }
        }
    }
    managers.retain(|_, e| !e.set.is_empty());
    Ok(cmp)
}

/// Upstream `Updater.Apply`: merges, records the configuration's fields for `id`, prunes what
/// `id` no longer applies, and settles ownership. `None` when the object is unchanged.
fn updater_apply(ctx: &Ctx, live: &Value, config: &Value, managers: &mut Managed, id: &ManagerId, force: bool) -> Result<Option<Value>, Vec<(ManagerId, Set)>> {
    let merged = typed::merge(ctx.nodes, ctx.root, Some(live), Some(config)).unwrap_or_else(|| json!({}));
    let last = managers.get(id).map(|e| e.set.clone());
    let set = typed::to_field_set(ctx.nodes, ctx.root, config).recursive_difference(&ctx.ignored);
    let time = managers.get(id).and_then(|e| e.time.clone());
    managers.insert(id.clone(), Entry { set, api_version: ctx.gv.clone(), time });
    let merged = prune(ctx, merged, managers, last.as_ref());
    updater_update(ctx, live, &merged, managers, id, force)?;
    Ok((!values_equal(live, &merged)).then_some(merged))
}

/// Upstream `Updater.prune`: removes the fields the applier set last time and not now, unless
/// another manager (or this configuration) owns them or they were never the applier's.
fn prune(ctx: &Ctx, merged: Value, managers: &Managed, last: Option<&Set>) -> Value {
    let Some(last) = last.filter(|s| !s.is_empty()) else { return merged };
    let ensure = |s: &Set| typed::ensure_named_fields_are_members(ctx.nodes, Some(ctx.root), s);
    let fields = |v: &Value| ensure(&typed::to_field_set(ctx.nodes, ctx.root, v));
    let remove = |v: &Value, s: &Set| match typed::remove_items(ctx.nodes, ctx.root, v, s) {
        Value::Null => json!({}),
        kept => kept,
    };
    let last = ensure(last);
    let pruned = remove(&merged, &last);
    // Add back what anyone owns.
    let owned = ensure(&managers.values().fold(Set::new(), |acc, e| acc.union(&e.set)));
    let merged_set = fields(&merged);
    let pruned = remove(&merged, &merged_set.difference(&fields(&pruned).union(&owned)));
    // Remove only what the applier owned last time.
    remove(&merged, &merged_set.difference(&fields(&pruned)).intersection(&last))
}

/// An Update through upstream's pipeline (structured update as "current-operation", strip,
/// merge into the manager's Update entry with the time, cap the number of Update entries).
fn update_pipeline(ctx: &Ctx, old: &Value, new: &Value, managed: &mut Managed, manager: &str, now: &str) {
    let current = ManagerId { manager: "\0current-operation".into(), operation: Operation::Update, api_version: String::new(), subresource: String::new() };
    let Ok(cmp) = updater_update(ctx, old, new, managed, &current, true) else { return };
    let set = cmp.modified.union(&cmp.added).recursive_difference(&ctx.ignored).difference(strip_set());
    if !set.is_empty() {
        let id = ManagerId { manager: manager.into(), operation: Operation::Update, api_version: ctx.gv.clone(), subresource: ctx.subresource.clone() };
        let set = match managed.get(&id) {
            Some(previous) => set.union(&previous.set),
            None => set,
        };
        managed.insert(id, Entry { set, api_version: ctx.gv.clone(), time: Some(now.to_string()) });
    }
    cap_managers(managed, 10);
}

/// Removes the nulls an apply introduced: fields the configuration sets to null (upstream's
/// typed objects cannot hold them: applying `field: null` owns the field and leaves it unset)
/// and maps or lists that pruning emptied. Nulls the live object already had stay.
fn remove_new_nulls(obj: &mut Value, live: Option<&Value>) {
    match obj {
        Value::Object(m) => {
            m.retain(|k, v| !v.is_null() || live.and_then(|l| l.get(k)).is_some_and(Value::is_null));
            for (k, v) in m.iter_mut() {
                remove_new_nulls(v, live.and_then(|l| l.get(k)));
            }
        }
        Value::Array(items) => {
            let live_items = live.and_then(Value::as_array).filter(|l| l.len() == items.len());
            let mut kept = Vec::with_capacity(items.len());
            for (i, mut v) in std::mem::take(items).into_iter().enumerate() {
                let l = live_items.map(|li| &li[i]);
                if v.is_null() && !l.is_some_and(Value::is_null) {
                    continue;
                }
                remove_new_nulls(&mut v, l);
                kept.push(v);
            }
            *items = kept;
        }
        _ => {}
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn last_applied(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/annotations").and_then(|a| a.get(LAST_APPLIED)).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Upstream `lastAppliedManager.allowedConflictsFromLastApplied`: the fields of the client-side
/// apply annotation whose live value is still the annotated one.
fn allowed_from_last_applied(ctx: &Ctx, live: &Value) -> Option<Set> {
    let last: Value = serde_json::from_str(last_applied(live)?).ok()?;
    if !last.is_object() || last.get("apiVersion").and_then(Value::as_str) != Some(&ctx.gv) {
        return None;
    }
    let set = typed::to_field_set(ctx.nodes, ctx.root, &last);
    let cmp = typed::compare(ctx.nodes, ctx.root, &last, live);
    Some(set.difference(&cmp.modified).difference(&cmp.added).difference(&cmp.removed))
}

/// The annotation value kubectl expects after a server-side apply: the configuration without
/// the annotation, as Go encodes unstructured JSON (plus its trailing newline).
fn build_last_applied(applied: &Value) -> String {
    let mut obj = applied.clone();
    if let Some(a) = obj.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        a.remove(LAST_APPLIED);
    }
    let mut out = String::new();
    go_json(&obj, &mut out);
    out.push('\n');
    out
}

/// Sets the annotation, dropping it when the annotations would exceed upstream's 256 KiB.
fn set_last_applied(obj: &mut Value, value: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    let Some(a) = annotations.as_object_mut() else { return };
    a.insert(LAST_APPLIED.into(), value.into());
    let size: usize = a.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
    if size > 256 * 1024 {
        a.remove(LAST_APPLIED);
    }
}
