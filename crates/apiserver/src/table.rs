//! Server-side printing: objects as a `meta.k8s.io` Table, which is what `kubectl get` asks
//! for and prints verbatim.

use std::sync::Arc;

use serde_json::{json, Value};
use timonier_api::printers;
use timonier_api::resources::ResourceDef;

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
    let mut r = json!({"cells": printers::cells(&def.group, &def.kind, obj, now)});
    match include {
        Include::None => {}
        Include::Metadata => r["object"] = partial(obj, version),
        Include::Object => r["object"] = obj.clone(),
    }
    r
}

/// A Table of `items`; `list_meta` is the list's metadata (resourceVersion, continue).
pub fn table(def: &ResourceDef, items: &[Arc<Value>], include: Include, version: &str, list_meta: Value) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = items.iter().map(|o| row(def, o, include, version, now)).collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": list_meta,
        "columnDefinitions": columns(def),
        "rows": rows,
    })
}

pub fn content_type(version: &str) -> String {
    format!("application/json;as=Table;v={version};g=meta.k8s.io")
}
