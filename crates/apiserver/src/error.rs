//! Errors as `metav1.Status`: every failure reaches the client with the code, reason, message
//! and details upstream gives, since kubectl rebuilds its messages from them.

use serde_json::{json, Value};
use timonier_api::resources::ResourceDef;
use timonier_store::StoreError;

/// One invalid field, as upstream's `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueInvalid`, …
    pub reason: &'static str,
    pub field: String,
    /// The part after "<field>: ", e.g. `Required value` or `Invalid value: -1: must be …`.
    pub message: String,
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: &str) -> FieldError {
        let message = if detail.is_empty() { "Required value".into() } else { format!("Required value: {detail}") };
        FieldError { reason: "FieldValueRequired", field: field.into(), message }
    }

    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> FieldError {
        let message = if detail.is_empty() {
            format!("Invalid value: {}", show(value))
        } else {
            format!("Invalid value: {}: {detail}", show(value))
        };
        FieldError { reason: "FieldValueInvalid", field: field.into(), message }
    }

    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> FieldError {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        FieldError {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!("Unsupported value: {}: supported values: {}", show(value), list.join(", ")),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &Value) -> FieldError {
        FieldError { reason: "FieldValueDuplicate", field: field.into(), message: format!("Duplicate value: {}", show(value)) }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> FieldError {
        FieldError { reason: "FieldValueForbidden", field: field.into(), message: format!("Forbidden: {detail}") }
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> FieldError {
        FieldError {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }

    /// `spec.replicas: Invalid value: …`
    pub fn full(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// A failed request, rendered as a `Status` object with the same HTTP code.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None }
    }

    pub(crate) fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    /// The generic 404 for paths the server does not serve.
    pub fn path_not_found() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource").with_details(json!({}))
    }

    pub fn not_found(def: &ResourceDef, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{} {name:?} not found", def.qualified_plural()))
            .with_details(json!({"name": name, "group": def.group, "kind": def.plural}))
    }

    pub fn already_exists(def: &ResourceDef, name: &str) -> ApiError {
        ApiError::new(409, "AlreadyExists", format!("{} {name:?} already exists", def.qualified_plural()))
            .with_details(json!({"name": name, "group": def.group, "kind": def.plural}))
    }

    pub fn conflict(def: &ResourceDef, name: &str, why: &str) -> ApiError {
        ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {} {name:?}: {why}", def.qualified_plural()))
            .with_details(json!({"name": name, "group": def.group, "kind": def.plural}))
    }

    /// The optimistic-concurrency conflict of a stale resourceVersion.
    pub fn modified(def: &ResourceDef, name: &str) -> ApiError {
        ApiError::conflict(
            def,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn invalid(def: &ResourceDef, name: &str, causes: Vec<FieldError>) -> ApiError {
        let summary = match causes.as_slice() {
            [one] => one.full(),
            many => format!("[{}]", many.iter().map(FieldError::full).collect::<Vec<_>>().join(", ")),
        };
        let causes_json: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        ApiError::new(422, "Invalid", format!("{} {name:?} is invalid: {summary}", def.qualified_kind()))
            .with_details(json!({"name": name, "group": def.group, "kind": def.kind, "causes": causes_json}))
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn not_acceptable(accepted: &str) -> ApiError {
        ApiError::new(406, "NotAcceptable", format!("only the following media types are accepted: {accepted}"))
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
        )
        .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": content_type}]}))
    }

    pub fn too_many_requests(message: impl Into<String>) -> ApiError {
        ApiError::new(429, "TooManyRequests", message)
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", format!("Request entity too large: limit is {limit}"))
    }

    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object. Upstream leaves `reason` out when it is unknown (`""`, omitempty).
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        if !self.reason.is_empty() {
            s["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }

    /// Maps a storage failure that no caller anticipated. Expected outcomes (not found,
    /// conflicts) are mapped by the REST layer, which knows the resource and name.
    pub fn from_store(e: StoreError) -> ApiError {
        match e {
            StoreError::Compacted { requested, compacted } => ApiError::expired(format!(
                "The resourceVersion for the provided list is too old. (requested {requested}, oldest available {compacted})"
            )),
            StoreError::FutureRevision { requested, current } => ApiError::new(
                504,
                "Timeout",
                format!("Too large resource version: {requested}, current: {current}"),
            ),
            StoreError::Closed => ApiError::unavailable("the datastore is shutting down"),
            // What upstream's ErrorToAPIStatus makes of an etcd error: 500, reason unknown
            // (left out), etcd's message (`Error from server: etcdserver: request timed out`).
            StoreError::Backend(message) => {
                tracing::error!(error = %message, "datastore failure");
                ApiError::new(500, "", message)
            }
            other => {
                tracing::error!(error = %other, "datastore failure");
                ApiError::internal(other.to_string())
            }
        }
    }
}

/// A `Status` serialized as kube-apiserver writes it: the Go struct's field order (kind,
/// apiVersion, metadata, status, message, reason, details, code) and a trailing newline —
/// clients print these bodies and some compare them.
pub fn status_json(status: &Value) -> Vec<u8> {
    const STATUS: &[&str] = &["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"];
    const LIST_META: &[&str] = &["selfLink", "resourceVersion", "continue", "remainingItemCount"];
    const DETAILS: &[&str] = &["name", "group", "kind", "uid", "causes", "retryAfterSeconds"];
    const CAUSE: &[&str] = &["reason", "message", "field"];
    let mut out = String::new();
    write_ordered(&mut out, status, STATUS, &|key| match key {
        "metadata" => Some(LIST_META),
        "details" => Some(DETAILS),
        "causes" => Some(CAUSE),
        _ => None,
    });
    out.push('\n');
    out.into_bytes()
}

/// Writes `v` with the keys of `order` first, in that order, then any others; `nested` gives
/// the order inside a key's value (objects, or each object of an array). Every field of a
/// Status but `metadata` is `omitempty` in Go: empty strings, zeros, nulls and empty lists go.
fn write_ordered(out: &mut String, v: &Value, order: &[&str], nested: &dyn Fn(&str) -> Option<&'static [&'static str]>) {
    let Value::Object(m) = v else {
        out.push_str(&v.to_string());
        return;
    };
    let empty = |k: &str| match &m[k] {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    };
    let keys = order
        .iter()
        .copied()
        .filter(|k| m.contains_key(*k))
        .chain(m.keys().map(String::as_str).filter(|k| !order.contains(k)))
        .filter(|k| *k == "metadata" || !empty(k));
    out.push('{');
    for (i, k) in keys.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(k.to_string()).to_string());
        out.push(':');
        match (nested(k), &m[k]) {
            (Some(inner), Value::Array(items)) => {
                out.push('[');
                for (j, item) in items.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_ordered(out, item, inner, nested);
                }
                out.push(']');
            }
            (Some(inner), value) => write_ordered(out, value, inner, nested),
            (None, value) => out.push_str(&value.to_string()),
        }
    }
    out.push('}');
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;

    #[test]
    fn status_bodies_in_upstreams_field_order() {
        let e = ApiError::new(422, "Invalid", "x is invalid").with_details(json!({
            "causes": [{"field": "spec.x", "message": "bad", "reason": "FieldValueInvalid"}],
            "kind": "pods", "name": "x",
        }));
        let text = String::from_utf8(status_json(&e.status())).unwrap();
        assert_eq!(
            text,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"x is invalid\",\"reason\":\"Invalid\",\"details\":{\"name\":\"x\",\"kind\":\"pods\",\"causes\":[{\"reason\":\"FieldValueInvalid\",\"message\":\"bad\",\"field\":\"spec.x\"}]},\"code\":422}\n"
        );
    }
}
