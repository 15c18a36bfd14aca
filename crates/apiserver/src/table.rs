//! Server-side printing: objects as a `meta.k8s.io` Table, which is what `kubectl get` asks
//! for and prints verbatim.

use std::sync::Arc;

use serde_json::{json, Value};
use timonier_api::printers;
use timonier_api::resources::{self, ResourceDef};

use crate::error::{ApiError, ApiResult};
use crate::request::Query;

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn from_query(q: &Query) -> ApiResult<Include> {
        match q.get("includeObject") {
            None | Some("") | Some("Metadata") => Ok(Include::Metadata),
            Some("None") => Ok(Include::None),
            Some("Object") => Ok(Include::Object),
            Some(other) => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

/// `PartialObjectMetadata` of an object.
pub fn partial(obj: &Value, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

fn columns(def: &ResourceDef) -> Value {
    Value::Array(
        printers::columns(&def.group, &def.kind)
            .iter()
            .map(|c| json!({"name": c.name, "type": c.r#type, "format": c.format, "description": c.description, "priority": c.priority}))
            .collect(),
    )
}

fn row(def: &ResourceDef, obj: &Value, include: Include, version: &str, now: jiff::Timestamp) -> Value {
    // Cells come from the stored form where upstream prints the internal version (HPAs:
    // v1's metrics are in annotations); the object attached stays the served one.
    let cells = if crate::convert::prints_stored(def) {
        printers::cells(&def.group, &def.kind, &crate::convert::to_storage(def, obj.clone()), now)
    } else {
        printers::cells(&def.group, &def.kind, obj, now)
    };
    let mut r = json!({"cells": cells});
    attach(&mut r, obj, include, version);
    r
}

/// A Table of `items`; `list_meta` is the list's metadata (resourceVersion, continue).
/// `crd` is the definition of a custom resource, whose printer columns it names.
pub fn table(def: &ResourceDef, items: &[Arc<Value>], include: Include, version: &str, list_meta: Value, crd: Option<&Value>) -> Value {
    let now = jiff::Timestamp::now();
    let (columns, rows): (Value, Vec<Value>) = if resources::is_custom(def) {
        let (cols, paths) = crate::crd::table_columns(crd, &def.version);
        let rows = items
            .iter()
            .map(|o| {
                let mut r = json!({"cells": crate::crd::table_cells(o, &paths)});
                attach(&mut r, o, include, version);
                r
            })
            .collect();
        (Value::Array(cols), rows)
    } else {
        (columns(def), items.iter().map(|o| row(def, o, include, version, now)).collect())
    };
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn attach(r: &mut Value, obj: &Value, include: Include, version: &str) {
    match include {
        Include::None => {}
        Include::Metadata => r["object"] = partial(obj, version),
        Include::Object => r["object"] = obj.clone(),
    }
}

pub fn content_type(version: &str) -> String {
    format!("application/json;as=Table;v={version};g=meta.k8s.io")
}
