//! The core resources answered at request time and never stored: `componentstatuses` (the
//! control plane's health as `kubectl get cs` shows it), `tokenreviews` (a bearer token run
//! through this server's own authenticators) and `bindings` (a pod assigned to a node, as
//! `pods/binding`).

use std::time::Duration;

use serde_json::{json, Map, Value};
use timonier_api::resources::ResourceDef;

use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::sa_token::ISSUER;
use crate::state::ApiState;

/// What `kubectl get componentstatuses` prints beside the answer, as upstream's deprecation.
pub const COMPONENT_STATUS_WARNING: &str = "v1 ComponentStatus is deprecated in v1.19+";

/// How long the datastore may take to answer before `etcd-0` counts as unhealthy (upstream
/// probes with the same limit).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The audiences of this API server: its service-account issuer, as kube-apiserver's default
/// `--api-audiences`.
const API_AUDIENCES: &[&str] = &[ISSUER];

fn component(name: &str, healthy: Result<(), String>) -> Value {
    let condition = match healthy {
        Ok(()) => json!({"type": "Healthy", "status": "True", "message": "ok"}),
        Err(e) => json!({"type": "Healthy", "status": "False", "error": e}),
    };
    json!({"kind": "ComponentStatus", "apiVersion": "v1", "metadata": {"name": name}, "conditions": [condition]})
}

impl ApiState {
    /// The components upstream reports: the scheduler and controller manager (in this process,
    /// so healthy while it serves) and the datastore as `etcd-0`, probed now.
    pub async fn component_statuses(&self) -> Vec<Value> {
        let store = self.probe_store().await;
        vec![component("controller-manager", Ok(())), component("scheduler", Ok(())), component("etcd-0", store)]
    }

    /// Whether the datastore answers now (`etcd-0`, and the `etcd` health checks).
    pub async fn probe_store(&self) -> Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.store.current_revision()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("the datastore did not answer within {}s", PROBE_TIMEOUT.as_secs())),
        }
    }

    /// One component status by name, or the 404 upstream gives.
    pub async fn component_status(&self, def: &ResourceDef, name: &str) -> ApiResult<Value> {
        self.component_statuses()
            .await
            .into_iter()
            .find(|c| c.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| ApiError::not_found(def, name))
    }

    /// `POST tokenreviews`: authenticates `spec.token` with the server's token authenticators
    /// (the static token file, then service-account tokens) for `spec.audiences`, or this
    /// server's audiences when none are asked, and answers as upstream's TokenReview REST.
    pub fn token_review(&self, mut review: Value) -> ApiResult<Value> {
        let token = review.pointer("/spec/token").and_then(Value::as_str).unwrap_or("").to_string();
        if token.is_empty() {
            return Err(ApiError::bad_request("token is required for TokenReview in authentication"));
        }
        let asked: Vec<String> =
            review.pointer("/spec/audiences").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
        let targets: Vec<&str> = if asked.is_empty() { API_AUDIENCES.to_vec() } else { asked.iter().map(String::as_str).collect() };
        let status = match self.review_token(&token, &targets) {
            Ok(answer) => answer,
            Err(error) => json!({"user": {}, "error": error}),
        };
        let Some(m) = review.as_object_mut() else { return Err(ApiError::bad_request("the body of a TokenReview must be an object")) };
        m.insert("kind".into(), json!("TokenReview"));
        m.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
        m.insert("metadata".into(), json!({"creationTimestamp": null}));
        m.insert("status".into(), status);
        Ok(review)
    }

    /// The status of an authenticated token, or the error upstream's authenticators give
    /// when none accepts it (`status.error`).
    fn review_token(&self, token: &str, targets: &[&str]) -> Result<Value, String> {
        // Static tokens are audience-agnostic: valid for the audiences this server has.
        let implicit: Vec<&str> = targets.iter().copied().filter(|a| API_AUDIENCES.contains(a)).collect();
        if let Some(user) = self.tokens.get().and_then(|t| t.user(token).map(|u| (u, t.uid(token).to_string()))).filter(|_| !implicit.is_empty()) {
            let (user, uid) = user;
            return Ok(authenticated(&user, &uid, Map::new(), &implicit));
        }
        if let Some(user) = self.authenticate_bootstrap_token(token).filter(|_| !implicit.is_empty()) {
            return Ok(authenticated(&user, "", Map::new(), &implicit));
        }
        let (user, claims) = match self.verify_sa_token(token, targets) {
            Ok(ok) => ok,
            Err(crate::sa_token::TokenError::NotOurs) => return Err(rejection(None)),
            Err(crate::sa_token::TokenError::Invalid(reason)) => return Err(rejection(Some(&reason))),
        };
        let token_auds: Vec<&str> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let audiences: Vec<&str> = targets.iter().copied().filter(|a| token_auds.contains(a)).collect();
        let k = claims.get("kubernetes.io").unwrap_or(&Value::Null);
        let uid = k.pointer("/serviceaccount/uid").and_then(Value::as_str).unwrap_or("");
        let mut extra = Map::new();
        let mut put = |key: &str, v: Option<&Value>| {
            if let Some(v) = v.and_then(Value::as_str).filter(|v| !v.is_empty()) {
                extra.insert(format!("authentication.kubernetes.io/{key}"), json!([v]));
            }
        };
        put("pod-name", k.pointer("/pod/name"));
        put("pod-uid", k.pointer("/pod/uid"));
        put("node-name", k.pointer("/node/name"));
        put("node-uid", k.pointer("/node/uid"));
        if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
            extra.insert("authentication.kubernetes.io/credential-id".into(), json!([format!("JTI={jti}")]));
        }
        Ok(authenticated(&user, uid, extra, &audiences))
    }

    /// `POST namespaces/{ns}/bindings`: binds the pod the Binding names, as `pods/binding`.
    pub async fn create_binding(&self, def: &ResourceDef, ns: &str, binding: &Value) -> ApiResult<Value> {
        let name = binding.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        if let Some(obj_ns) = binding.pointer("/metadata/namespace").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            if obj_ns != ns {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
        }
        let mut errs = Vec::new();
        if name.is_empty() {
            errs.push(FieldError::required("metadata.name", "name or generateName is required"));
        }
        match binding.pointer("/target/kind").and_then(Value::as_str).unwrap_or("") {
            "" | "Node" => {}
            other => errs.push(FieldError::not_supported("target.kind", &json!(other), &["Node", "<empty>"])),
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(def, name, errs));
        }
        self.bind(ns, name, binding).await
    }
}

/// A rejected token's `status.error` as kube-apiserver 1.33 words it. Its TokenReview runs the
/// token through the whole request authenticator chain, a union that aggregates every
/// authenticator's error as Go's `utilerrors.NewAggregate` prints them (one error alone, else
/// `[a, b, c]`, duplicates dropped). The chain starts with the loopback-token authenticator,
/// which never knows a client's token and says `invalid bearer token`; the service-account
/// authenticator adds its reason for a token of its issuer. For a refused token of this issuer
/// upstream's answer ends with `unknown` (observed on 1.33 clusters:
/// `[invalid bearer token, token audiences ["a"] is invalid for the target audiences ["b"],
/// unknown]`); a token that is not one (no reason) is plain `invalid bearer token`.
fn rejection(reason: Option<&str>) -> String {
    let mut errors = vec!["invalid bearer token"];
    if let Some(r) = reason {
        errors.extend([r, "unknown"]);
    }
    go_aggregate(&errors)
}

/// Errors as Go's `utilerrors.NewAggregate(...).Error()` prints them.
fn go_aggregate(errors: &[&str]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(e) {
            seen.push(e);
        }
    }
    match seen.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn authenticated(user: &UserInfo, uid: &str, extra: Map<String, Value>, audiences: &[&str]) -> Value {
    let mut u = json!({"username": user.name, "groups": user.groups});
    if !uid.is_empty() {
        u["uid"] = json!(uid);
    }
    if !extra.is_empty() {
        u["extra"] = Value::Object(extra);
    }
    json!({"authenticated": true, "user": u, "audiences": audiences})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_print_as_upstream() {
        let ok = component("scheduler", Ok(()));
        assert_eq!(ok["conditions"], json!([{"type": "Healthy", "status": "True", "message": "ok"}]));
        let bad = component("etcd-0", Err("timeout".into()));
        assert_eq!(bad["conditions"], json!([{"type": "Healthy", "status": "False", "error": "timeout"}]));
        assert_eq!(bad["metadata"]["name"], "etcd-0");
    }

    #[test]
    fn rejections_as_upstream_aggregates_them() {
        assert_eq!(rejection(None), "invalid bearer token");
        assert_eq!(
            rejection(Some(r#"token audiences ["x"] is invalid for the target audiences ["y"]"#)),
            r#"[invalid bearer token, token audiences ["x"] is invalid for the target audiences ["y"], unknown]"#
        );
        assert_eq!(go_aggregate(&["a", "a"]), "a");
        assert_eq!(go_aggregate(&["a", "b", "a"]), "[a, b]");
    }

    #[test]
    fn authenticated_user_omits_empty_fields() {
        let user = UserInfo { name: "alice".into(), groups: vec!["system:authenticated".into()] };
        let s = authenticated(&user, "", Map::new(), &[ISSUER]);
        assert_eq!(s, json!({"authenticated": true, "user": {"username": "alice", "groups": ["system:authenticated"]}, "audiences": [ISSUER]}));
        let mut extra = Map::new();
        extra.insert("authentication.kubernetes.io/pod-name".into(), json!(["p"]));
        let s = authenticated(&user, "42", extra, &["vault"]);
        assert_eq!(s["user"]["uid"], "42");
        assert_eq!(s["user"]["extra"]["authentication.kubernetes.io/pod-name"], json!(["p"]));
        assert_eq!(s["audiences"], json!(["vault"]));
    }
}
