//! The aggregation layer, as kube-aggregator: `apiregistration.k8s.io/v1` APIServices.
//!
//! - `local`: one *local* APIService per group version this server serves itself — the
//!   built-in ones registered at start with upstream's priorities, the CRD ones kept in step
//!   with the CRDs — always Available with reason `Local`.
//! - `available`: the availability controller of the *non-local* ones (`spec.service` set):
//!   Service, port and ready EndpointSlice checked, then the extension server's discovery
//!   document fetched; Available True/False with upstream's reasons. The fetched document is
//!   what discovery (`/apis`, aggregated or legacy) advertises for that group version.
//! - `proxy`: requests under `/apis/GROUP/VERSION` of an available non-local APIService are
//!   forwarded over TLS to a ready endpoint of its Service, with the caller in
//!   `X-Remote-User`/`X-Remote-Group`, answers (watches included) streamed back.

mod available;
pub mod discovery;
mod local;
pub mod openapi;
mod order;
mod proxy;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{json, Value};
use timonier_api::resources::ResourceDef;

use crate::error::FieldError;
use crate::state::ApiState;
use crate::validation::{is_dns1035_label, is_dns1123_subdomain};

pub use available::controller;
pub use local::ensure_builtin;
pub use proxy::{proxy, target};

/// The APIServices' own group.
pub const GROUP: &str = "apiregistration.k8s.io";

/// What the aggregator keeps between requests.
#[derive(Default)]
pub struct Aggregator {
    /// The discovery document (`APIResourceList`) of each non-local APIService, by
    /// (group, version), as last fetched by the availability controller, and whether the last
    /// fetch failed (upstream keeps serving such a document, marked `Stale`).
    remote: RwLock<HashMap<(String, String), Remote>>,
    /// TLS settings per non-local APIService, by name, built for one resourceVersion.
    tls: RwLock<HashMap<String, (String, Arc<rustls::ClientConfig>)>>,
    /// The client certificate presented to extension servers (front-proxy-client, PEM).
    pub client_cert: std::sync::OnceLock<crate::pki::CertPair>,
    /// The extension servers' OpenAPI documents.
    pub openapi: openapi::Specs,
}

/// One extension group version's discovery document.
#[derive(Clone)]
pub struct Remote {
    pub doc: Arc<Value>,
    pub stale: bool,
}

impl Aggregator {
    /// The group versions served by extension servers, with their discovery documents.
    pub fn remote_versions(&self) -> Vec<((String, String), Remote)> {
        let mut out: Vec<_> = self.remote.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Records a fetched document, or (None) a failed fetch: the last document stays, stale.
    fn set_remote(&self, gv: (String, String), doc: Option<Value>) {
        let mut m = self.remote.write().unwrap_or_else(|e| e.into_inner());
        match doc {
            Some(d) => {
                m.insert(gv, Remote { doc: Arc::new(d), stale: false });
            }
            None => {
                let empty = || Arc::new(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{}/{}", gv.0, gv.1), "resources": []}));
                let e = m.entry(gv.clone()).or_insert_with(|| Remote { doc: empty(), stale: true });
                e.stale = true;
            }
        }
    }

    fn retain_remote(&self, keep: impl Fn(&(String, String)) -> bool) {
        self.remote.write().unwrap_or_else(|e| e.into_inner()).retain(|k, _| keep(k));
    }
}

/// The APIService resource of the registry.
fn def(state: &ApiState) -> crate::error::ApiResult<Arc<ResourceDef>> {
    state.def(GROUP, "v1", "apiservices")
}

/// Every APIService, from the watch cache.
fn all(state: &ApiState) -> crate::error::ApiResult<Vec<Arc<Value>>> {
    let d = def(state)?;
    Ok(state.cache_of(&d)?.list(&d.key_prefix()).into_iter().map(|(_, v)| v).collect())
}

/// The Available condition upstream's local controller sets.
fn local_condition(now: &str) -> Value {
    json!({"type": "Available", "status": "True", "lastTransitionTime": now, "reason": "Local", "message": "Local APIServices are always available"})
}

/// Puts `cond` into the object's conditions as upstream's `SetAPIServiceCondition`: the
/// transition time only moves when the status does.
fn set_condition(obj: &mut Value, mut cond: Value) {
    let Some(status) = crate::strategy::obj_at(obj, &["status"]) else { return };
    let conds = status.entry("conditions").or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let Some(list) = conds.as_array_mut() else { return };
    match list.iter_mut().find(|c| c["type"] == cond["type"]) {
        None => list.push(cond),
        Some(existing) => {
            if existing["status"] == cond["status"] {
                cond["lastTransitionTime"] = existing["lastTransitionTime"].clone();
            }
            *existing = cond;
        }
    }
}

/// The Available condition of an APIService, if any.
fn available_condition(obj: &Value) -> Option<&Value> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "Available")
}

/// Upstream's status on create: none, except that a local APIService is Available at once.
pub fn prepare_for_create(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), json!({}));
    }
    if obj.pointer("/spec/service").is_none_or(Value::is_null) {
        set_condition(obj, local_condition(&crate::rest::now_rfc3339()));
    }
}

/// Upstream's default: a service reference's port is 443.
pub fn default(obj: &mut Value) {
    if let Some(svc) = obj.pointer_mut("/spec/service").and_then(Value::as_object_mut) {
        crate::strategy::set_default(svc, "port", json!(443));
    }
}

/// kube-aggregator's `ValidateAPIService` (the name rule is a path segment, checked with the
/// metadata).
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let s = |k: &str| spec.get(k).and_then(Value::as_str).unwrap_or("");
    let (group, version) = (s("group"), s("version"));
    let name = crate::rest::meta_str(obj, "name");
    let required = format!("{version}.{group}");
    if !name.is_empty() && name != required {
        errs.push(FieldError::invalid("metadata.name", &json!(name), &format!("must be `spec.version+\".\"+spec.group`: {required:?}")));
    }
    if group.is_empty() && version != "v1" {
        errs.push(FieldError::required("spec.group", "only v1 may have an empty group and it better be legacy kube"));
    }
    if !group.is_empty() {
        for e in is_dns1123_subdomain(group) {
            errs.push(FieldError::invalid("spec.group", &json!(group), &e));
        }
    }
    for e in is_dns1035_label(version) {
        errs.push(FieldError::invalid("spec.version", &json!(version), &e));
    }
    let int = |k: &str| spec.get(k).and_then(Value::as_i64).unwrap_or(0);
    let gpm = int("groupPriorityMinimum");
    if gpm <= 0 || gpm > 20000 {
        errs.push(FieldError::invalid("spec.groupPriorityMinimum", &json!(gpm), "must be positive and less than 20000"));
    }
    let vp = int("versionPriority");
    if vp <= 0 || vp > 1000 {
        errs.push(FieldError::invalid("spec.versionPriority", &json!(vp), "must be positive and less than 1000"));
    }
    let ca_len = spec.get("caBundle").and_then(Value::as_str).map_or(0, |c| decoded_len(c));
    let insecure = spec.get("insecureSkipTLSVerify").and_then(Value::as_bool).unwrap_or(false);
    match spec.get("service").filter(|v| !v.is_null()) {
        None => {
            if ca_len > 0 {
                errs.push(FieldError::invalid("spec.caBundle", &json!(format!("{ca_len} bytes")), "local APIServices may not have a caBundle"));
            }
            if insecure {
                errs.push(FieldError::invalid("spec.insecureSkipTLSVerify", &json!(true), "local APIServices may not have insecureSkipTLSVerify"));
            }
        }
        Some(svc) => {
            for k in ["namespace", "name"] {
                if svc.get(k).and_then(Value::as_str).unwrap_or("").is_empty() {
                    errs.push(FieldError::required(format!("spec.service.{k}"), ""));
                }
            }
            let port = svc.get("port").and_then(Value::as_i64).unwrap_or(443);
            if !(1..=65535).contains(&port) {
                errs.push(FieldError::invalid("spec.service.port", &json!(port), "port is not valid: must be between 1 and 65535, inclusive"));
            }
            if insecure && ca_len > 0 {
                errs.push(FieldError::invalid("spec.insecureSkipTLSVerify", &json!(true), "may not be true if caBundle is present"));
            }
        }
    }
    errs
}

/// The byte length of a base64 `caBundle` (what upstream reports), 0 when it does not decode.
fn decoded_len(b64: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(b64).map_or(b64.len(), |b| b.len())
}

/// Upstream's status-subresource validation: condition statuses are True, False or Unknown.
pub fn validate_status(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, c) in obj.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let st = c.get("status").and_then(Value::as_str).unwrap_or("");
        if !matches!(st, "True" | "False" | "Unknown") {
            errs.push(FieldError::not_supported(format!("status.conditions[{i}].status"), &json!(st), &["True", "False", "Unknown"]));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(spec: Value) -> Value {
        let name = format!("{}.{}", spec["version"].as_str().unwrap_or(""), spec["group"].as_str().unwrap_or(""));
        json!({"metadata": {"name": name}, "spec": spec})
    }

    #[test]
    fn validation_as_upstream() {
        let ok = api(json!({"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100, "versionPriority": 100,
            "service": {"namespace": "kube-system", "name": "metrics-server", "port": 443}, "insecureSkipTLSVerify": true}));
        assert!(validate(&ok).is_empty(), "{:?}", validate(&ok));
        let fields = |o: &Value| validate(o).into_iter().map(|e| e.field).collect::<Vec<_>>();
        let mut bad = ok.clone();
        bad["spec"]["caBundle"] = json!("AAAA");
        assert_eq!(fields(&bad), ["spec.insecureSkipTLSVerify"]);
        let local = api(json!({"group": "apps", "version": "v1", "groupPriorityMinimum": 17800, "versionPriority": 15, "caBundle": "AAAA"}));
        assert_eq!(fields(&local), ["spec.caBundle"]);
        let bad = api(json!({"group": "", "version": "v2", "groupPriorityMinimum": 0, "versionPriority": 1001}));
        assert_eq!(fields(&bad), ["spec.group", "spec.groupPriorityMinimum", "spec.versionPriority"]);
        let mut misnamed = ok.clone();
        misnamed["metadata"]["name"] = json!("v1.other");
        assert_eq!(fields(&misnamed), ["metadata.name"]);
        let mut no_svc_name = ok.clone();
        no_svc_name["spec"]["service"] = json!({"namespace": "x", "port": 0});
        assert_eq!(fields(&no_svc_name), ["spec.service.name", "spec.service.port"]);
    }

    #[test]
    fn local_status_on_create_and_conditions_keep_their_time() {
        let mut o = api(json!({"group": "apps", "version": "v1"}));
        prepare_for_create(&mut o);
        let c = available_condition(&o).cloned().unwrap_or_default();
        assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("True"), Some("Local")));
        let mut remote = api(json!({"group": "x.io", "version": "v1", "service": {"name": "s", "namespace": "n"}}));
        prepare_for_create(&mut remote);
        assert!(available_condition(&remote).is_none());
        set_condition(&mut remote, json!({"type": "Available", "status": "False", "lastTransitionTime": "t1", "reason": "A"}));
        set_condition(&mut remote, json!({"type": "Available", "status": "False", "lastTransitionTime": "t2", "reason": "B"}));
        assert_eq!(available_condition(&remote).map(|c| (c["lastTransitionTime"].clone(), c["reason"].clone())), Some((json!("t1"), json!("B"))));
        set_condition(&mut remote, json!({"type": "Available", "status": "True", "lastTransitionTime": "t3", "reason": "Passed"}));
        assert_eq!(available_condition(&remote).map(|c| c["lastTransitionTime"].clone()), Some(json!("t3")));
        assert_eq!(validate_status(&json!({"status": {"conditions": [{"status": "Maybe"}]}})).len(), 1);
    }
}
