//! Strategic merge patch (stub: being written).

use serde_json::Value;

use super::PatchError;

/// Applies a strategic merge patch to an object of the given kind (`group`, `version`, `kind`).
pub fn apply(doc: &Value, patch: &Value, _group: &str, _version: &str, _kind: &str) -> Result<Value, PatchError> {
    Ok(super::merge_patch(doc, patch))
}
