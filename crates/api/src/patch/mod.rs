//! The patch formats of `PATCH` requests: JSON patch (RFC 6902), JSON merge patch (RFC 7396)
//! and Kubernetes' strategic merge patch.

pub mod apply;
pub mod strategic;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is malformed (400 BadRequest upstream).
    #[error("{0}")]
    BadPatch(String),
    /// The patch is well formed but cannot apply to this object, e.g. a failed `test`
    /// operation or a path that does not exist (422 Invalid / 409 upstream).
    #[error("{0}")]
    CannotApply(String),
}

/// Applies an RFC 6902 JSON patch.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::BadPatch(format!("the JSON patch is malformed: {e}")))?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| PatchError::CannotApply(e.to_string()))?;
    Ok(out)
}

/// Applies an RFC 7396 JSON merge patch: objects merge recursively, `null` deletes, anything
/// else (arrays included) replaces.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_deletes_with_null_and_replaces_lists() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"l": [1, 2]}});
        let out = merge_patch(&doc, &json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"l": [3]}}));
        assert_eq!(out, json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"l": [3]}}));
    }

    #[test]
    fn json_patch_test_and_replace() {
        let doc = json!({"metadata": {"annotations": {"x": "1"}}, "spec": {"replicas": 1}});
        let ok = json_patch(&doc, &json!([{"op": "test", "path": "/spec/replicas", "value": 1}, {"op": "replace", "path": "/metadata/annotations", "value": {"y": "2"}}])).unwrap();
        assert_eq!(ok, json!({"metadata": {"annotations": {"y": "2"}}, "spec": {"replicas": 1}}));
        let failed = json_patch(&doc, &json!([{"op": "test", "path": "/spec/replicas", "value": 2}]));
        assert!(matches!(failed, Err(PatchError::CannotApply(_))));
        assert!(matches!(json_patch(&doc, &json!({"op": "add"})), Err(PatchError::BadPatch(_))));
    }
}
