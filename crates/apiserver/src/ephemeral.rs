//! `pods/ephemeralcontainers` (what `kubectl debug` writes): an update or patch of a pod
//! that may change nothing but `spec.ephemeralContainers`, and there only add containers
//! (upstream's EphemeralContainers strategy).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use timonier_api::patch::{self, PatchError};
use timonier_api::resources::ResourceDef;

use crate::error::{ApiError, ApiResult};
use crate::negotiate;
use crate::rest::{Mode, WriteOptions};
use crate::state::ApiState;
use crate::strategy;

/// Applies a PUT (`patch_type` None: the body is the whole pod) or a PATCH of the given
/// content type to the pod's ephemeral containers, and writes the pod.
#[allow(clippy::too_many_arguments)]
pub async fn update(
    state: &Arc<ApiState>,
    def: &Arc<ResourceDef>,
    ns: &str,
    name: &str,
    patch_type: Option<&str>,
    content_type: Option<&str>,
    body: &Bytes,
    opts: &WriteOptions,
) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let doc = match patch_type {
        None => negotiate::decode_body(content_type, body)?,
        Some(_) => negotiate::parse_json(body)?,
    };
    // A PUT's resourceVersion is a precondition, as for any update.
    let precondition = if patch_type.is_none() {
        doc.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok())
    } else {
        None
    };
    let kind = patch_type.map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    let mutate = |old: &Value| -> ApiResult<Value> {
        let proposed = match kind.as_deref() {
            None => doc.clone(),
            Some("application/json-patch+json") => patch::json_patch(old, &doc).map_err(|e| patch_error(def, name, e))?,
            Some("application/merge-patch+json") => patch::merge_patch(old, &doc),
            Some("application/strategic-merge-patch+json") => patch::strategic::apply(old, &doc, "", "v1", "Pod").map_err(|e| patch_error(def, name, e))?,
            Some(other) => {
                return Err(ApiError::unsupported_media_type(
                    other,
                    "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
                ))
            }
        };
        // Everything but the ephemeral containers is kept as stored.
        let mut new = old.clone();
        let eph = proposed.pointer("/spec/ephemeralContainers").cloned().filter(|v| !v.is_null());
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            match eph {
                Some(e) => spec.insert("ephemeralContainers".into(), e),
                None => spec.remove("ephemeralContainers"),
            };
        }
        strategy::default(def, &mut new);
        let errs = strategy::validate_ephemeral_containers_update(&new, old);
        if !errs.is_empty() {
            return Err(ApiError::invalid(def, name, errs));
        }
        Ok(new)
    };
    state.guaranteed_update(def, ns, name, precondition, opts, mutate, Mode::Whole).await
}

fn patch_error(def: &ResourceDef, name: &str, e: PatchError) -> ApiError {
    match e {
        PatchError::BadPatch(m) => ApiError::bad_request(m),
        PatchError::CannotApply(m) => ApiError::invalid(def, name, vec![crate::error::FieldError { reason: "FieldValueInvalid", field: String::new(), message: m }]),
    }
}
