//! The `metadata.managedFields` model of server-side apply, as upstream's
//! `managedfields/internal`: manager identities, their entries, the wire encoding and its
//! order, the fields nobody may own, and the cap on Update entries.

use super::apply_fieldpath::{go_json_string, go_quote, PathElement, Set};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// Apply or Update: the two operations a managed fields entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// A manager's identity (upstream `BuildManagerIdentifier`): appliers are one manager whatever
/// the version they apply at; updaters are distinct per version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct ManagerId {
    pub(super) manager: String,
    pub(super) operation: Operation,
    /// Empty for appliers.
    pub(super) api_version: String,
    pub(super) subresource: String,
}

impl ManagerId {
    /// The identifier JSON upstream sorts managers by in conflict messages.
    pub(super) fn json(&self) -> String {
        let mut out = String::from("{");
        let field = |name: &str, value: &str, out: &mut String| {
            if !value.is_empty() {
                if out.len() > 1 {
                    out.push(',');
                }
                go_json_string(name, out);
                out.push(':');
                go_json_string(value, out);
            }
        };
        field("manager", &self.manager, &mut out);
        field("operation", self.operation.as_str(), &mut out);
        field("apiVersion", &self.api_version, &mut out);
        field("subresource", &self.subresource, &mut out);
        out.push('}');
        out
    }

    /// Upstream's `printManager`: `"kubectl"`, `"kube-controller-manager" with subresource
    /// "status" using apps/v1`.
    pub(super) fn display(&self) -> String {
        let mut s = go_quote(&self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {}", go_quote(&self.subresource));
        }
        if self.operation == Operation::Update {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// One manager's fields, the version they were written at, and when.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) set: Set,
    pub(super) api_version: String,
    pub(super) time: Option<String>,
}

pub(super) type Managed = BTreeMap<ManagerId, Entry>;

/// The fields no manager may own (upstream `stripMetaManager`).
pub(super) fn strip_set() -> &'static Set {
    static STRIP: OnceLock<Set> = OnceLock::new();
    STRIP.get_or_init(|| {
        let f = |s: &str| PathElement::Field(s.to_string());
        let mut set = Set::new();
        for top in ["apiVersion", "kind", "metadata"] {
            set.insert(&[f(top)]);
        }
        for m in ["name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation", "managedFields", "resourceVersion"] {
            set.insert(&[f("metadata"), f(m)]);
        }
        set
    })
}

pub(super) fn strip_meta(managed: &mut Managed, id: &ManagerId) {
    if let Some(e) = managed.get_mut(id) {
        e.set = e.set.difference(strip_set());
        if e.set.is_empty() {
            managed.remove(id);
        }
    }
}

pub(super) fn time_seconds(t: &Option<String>) -> i64 {
    t.as_deref().and_then(|s| s.parse::<jiff::Timestamp>().ok()).map_or(0, |ts| ts.as_second())
}

/// Upstream `capManagersManager`: beyond `max` Update entries, the oldest are merged into one
/// `ancient-changes` entry per version.
pub(super) fn cap_managers(managed: &mut Managed, max: usize) {
    let mut updaters: Vec<ManagerId> = managed.keys().filter(|id| id.operation == Operation::Update).cloned().collect();
    if updaters.len() <= max {
        return;
    }
    updaters.sort_by_key(|id| (time_seconds(&managed[id].time), id.json()));
    let mut first_of_version: HashMap<String, ManagerId> = HashMap::new();
    let mut length = updaters.len();
    for id in updaters {
        if length <= max {
            break;
        }
        let Some(entry) = managed.get(&id).cloned() else { continue };
        let bucket = ManagerId { manager: "ancient-changes".into(), operation: Operation::Update, api_version: entry.api_version.clone(), subresource: String::new() };
        match first_of_version.get(&entry.api_version) {
            Some(first) if id != bucket => {
                if !managed.contains_key(&bucket) {
                    if let Some(f) = managed.remove(first) {
                        managed.insert(bucket.clone(), f);
                    }
                }
                managed.remove(&id);
                if let Some(b) = managed.get_mut(&bucket) {
                    b.set = entry.set.union(&b.set);
                    b.time = entry.time;
                }
                length -= 1;
            }
            Some(_) => {}
            None => {
                first_of_version.insert(entry.api_version.clone(), id);
            }
        }
    }
}

/// Decodes `metadata.managedFields` (upstream `DecodeManagedFields`).
pub(super) fn decode_managed(obj: &Value) -> Result<Managed, String> {
    let mut managed = Managed::new();
    let entries = match obj.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => return Ok(managed),
        Some(Value::Array(entries)) => entries,
        Some(other) => return Err(format!("managedFields must be a list, got {other}")),
    };
    for (i, e) in entries.iter().enumerate() {
        let text = |k: &str| -> Result<String, String> {
            match e.get(k) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(format!("{k} must be a string in managed fields entry {i}, got {other}")),
            }
        };
        if !e.is_object() {
            return Err(format!("managed fields entry {i} must be an object"));
        }
        let operation = match text("operation")?.as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        let api_version = text("apiVersion")?;
        if api_version.is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match text("fieldsType")?.as_str() {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => return Err(format!("invalid fieldsType {} in managed fields entry {i}", go_quote(other))),
        }
        let set = match e.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(f) => Set::from_fields_v1(f).map_err(|err| format!("error decoding set in managed fields entry {i}: {err}"))?,
        };
        let time = Some(text("time")?).filter(|t| !t.is_empty());
        let id = ManagerId {
            manager: text("manager")?,
            operation,
            api_version: if operation == Operation::Apply { String::new() } else { api_version.clone() },
            subresource: text("subresource")?,
        };
        managed.insert(id, Entry { set, api_version, time });
    }
    Ok(managed)
}

/// Encodes managers as upstream sorts them: Apply before Update, then oldest first, then by
/// manager, version and subresource. `None` when there are none.
pub(super) fn encode_managed(managed: &Managed) -> Option<Value> {
    if managed.is_empty() {
        return None;
    }
    let mut entries: Vec<(&ManagerId, &Entry)> = managed.iter().collect();
    entries.sort_by(|(a, ea), (b, eb)| {
        (a.operation.as_str(), time_seconds(&ea.time), &a.manager, &ea.api_version, &a.subresource).cmp(&(
            b.operation.as_str(),
            time_seconds(&eb.time),
            &b.manager,
            &eb.api_version,
            &b.subresource,
        ))
    });
    let list = entries
        .into_iter()
        .map(|(id, e)| {
            let mut m = Map::new();
            if !id.manager.is_empty() {
                m.insert("manager".into(), id.manager.clone().into());
            }
            m.insert("operation".into(), id.operation.as_str().into());
            m.insert("apiVersion".into(), e.api_version.clone().into());
            if let Some(t) = &e.time {
                m.insert("time".into(), t.clone().into());
            }
            m.insert("fieldsType".into(), "FieldsV1".into());
            m.insert("fieldsV1".into(), e.set.to_fields_v1());
            if !id.subresource.is_empty() {
                m.insert("subresource".into(), id.subresource.clone().into());
            }
            Value::Object(m)
        })
        .collect();
    Some(Value::Array(list))
}

pub(super) fn set_managed_fields(obj: &mut Value, managed: &Managed) {
    match encode_managed(managed) {
        Some(list) => {
            if let Some(root) = obj.as_object_mut() {
                let meta = root.entry("metadata").or_insert_with(|| json!({}));
                if !meta.is_object() {
                    *meta = json!({});
                }
                meta["managedFields"] = list;
            }
        }
        None => remove_managed_fields(obj),
    }
}

pub(super) fn remove_managed_fields(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

/// `[]` or `[{}]`: the client asks for the managed fields to be reset.
pub(super) fn is_reset(mf: Option<&Value>) -> bool {
    match mf {
        Some(Value::Array(list)) => list.is_empty() || (list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty)),
        _ => false,
    }
}
