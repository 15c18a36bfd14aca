//! ServiceAccounts as upstream: the serviceaccount controller (a `default` account in every
//! namespace) and the root-ca-cert-publisher (`kube-root-ca.crt` in every namespace), the
//! TokenRequest subresource (`serviceaccounts/token`), the authenticator of the tokens it
//! issues, and the ServiceAccount admission of pods (the account must exist; the
//! `kube-api-access-*` projected volume and its mounts).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use timonier_api::resources::ResourceDef;

use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::rest::{meta_str, Mode, WriteOptions};
use crate::sa_token::{self, Claims, ISSUER};
use crate::state::ApiState;

pub const DEFAULT_SA: &str = "default";
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
pub const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Where the token volume is mounted in every container.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The kubelet's token lifetime that the API server extends (upstream
/// `WarnOnlyBoundTokenExpirationSeconds`), and to what (`ExpirationExtensionSeconds`).
const WARN_ONLY_EXPIRATION: i64 = 3607;
const EXTENDED_EXPIRATION: i64 = 365 * 24 * 3600;

/// Both controllers, level-triggered: a pass whenever the cache moved.
pub async fn controller(state: Arc<ApiState>) {
    crate::bootstrap::on_change_of(state, Duration::from_millis(50), "serviceaccount", &[("", "v1", "namespaces"), ("", "v1", "serviceaccounts"), ("", "v1", "configmaps")], |state| async move { reconcile(&state).await }).await
}

/// Writes that lose to a namespace being deleted (or gone) need nothing more.
fn benign(e: &ApiError) -> bool {
    matches!(e.code, 403 | 404 | 409)
}

/// One pass of the serviceaccount controller and the root-ca-cert-publisher.
pub async fn reconcile(state: &Arc<ApiState>) -> ApiResult<()> {
    let ns_def = state.def("", "v1", "namespaces")?;
    let sa_def = state.def("", "v1", "serviceaccounts")?;
    let cm_def = state.def("", "v1", "configmaps")?;
    let (namespaces, accounts, configmaps) = (state.cache_of(&ns_def)?, state.cache_of(&sa_def)?, state.cache_of(&cm_def)?);
    let ca = state.ca_pem.get().cloned();
    let mut failure = None;
    for (_, ns) in namespaces.list(&ns_def.key_prefix()) {
        if !meta_str(&ns, "deletionTimestamp").is_empty() || ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
            continue;
        }
        let name = meta_str(&ns, "name").to_string();
        if accounts.get(&sa_def.key(&name, DEFAULT_SA)).is_none() {
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT_SA, "namespace": name}});
            match state.create(&sa_def, &name, sa, &WriteOptions::default()).await {
                Ok(_) => {}
                Err(e) if benign(&e) => {}
                Err(e) => failure = Some(e),
            }
        }
        let Some(ca) = &ca else { continue };
        let want_data = json!({"ca.crt": ca});
        match configmaps.get(&cm_def.key(&name, ROOT_CA_CONFIGMAP)) {
            None => {
                let cm = json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": name, "annotations": {DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION}},
                    "data": want_data,
                });
                match state.create(&cm_def, &name, cm, &WriteOptions::default()).await {
                    Ok(_) => {}
                    Err(e) if benign(&e) => {}
                    Err(e) => failure = Some(e),
                }
            }
            Some(cm) => {
                let annotated = cm.pointer("/metadata/annotations").and_then(|a| a.get(DESCRIPTION_ANNOTATION)).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
                if cm.get("data") == Some(&want_data) && annotated && cm.get("binaryData").is_none() {
                    continue;
                }
                let r = state
                    .guaranteed_update(&cm_def, &name, ROOT_CA_CONFIGMAP, None, &WriteOptions::default(), |old| {
                        let mut new = old.clone();
                        new["data"] = want_data.clone();
                        if let Some(m) = new.as_object_mut() {
                            m.remove("binaryData");
                        }
                        let meta = new["metadata"].as_object_mut().ok_or_else(|| ApiError::internal("metadata is not an object"))?;
                        let ann = meta.entry("annotations").or_insert_with(|| json!({}));
                        if !ann.is_object() {
                            *ann = json!({});
                        }
                        ann[DESCRIPTION_ANNOTATION] = json!(ROOT_CA_DESCRIPTION);
                        Ok(new)
                    }, Mode::Main)
                    .await;
                match r {
                    Ok(_) => {}
                    Err(e) if benign(&e) => {}
                    Err(e) => failure = Some(e),
                }
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

fn token_request_def(def: &ResourceDef) -> ResourceDef {
    ResourceDef { kind: "TokenRequest".into(), group: "authentication.k8s.io".into(), version: "v1".into(), ..def.clone() }
}

fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl ApiState {
    /// `POST serviceaccounts/NAME/token`: a signed token for the account, optionally bound to
    /// a Pod, Secret or Node (valid only while that object exists).
    pub async fn token_request(&self, sa_def: &ResourceDef, ns: &str, name: &str, mut req: Value) -> ApiResult<Value> {
        let key = self.sa_key.get().cloned().ok_or_else(|| ApiError::unavailable("the service-account token signer is not ready"))?;
        let tr_def = token_request_def(sa_def);
        let m = req.as_object_mut().ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
        for (field, want) in [("apiVersion", "authentication.k8s.io/v1"), ("kind", "TokenRequest")] {
            match m.get(field).and_then(Value::as_str) {
                Some(v) if !v.is_empty() && v != want => {
                    return Err(ApiError::bad_request(format!("the {field} in the data ({v}) does not match the expected {field} ({want})")))
                }
                _ => {
                    m.insert(field.into(), json!(want));
                }
            }
        }
        let sa = self.get(sa_def, ns, name).await?;
        let meta = m.entry("metadata").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        match meta.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            Some(n) if n != name => return Err(ApiError::bad_request(format!("serviceaccount name {name} does not match the name in the token request {n}"))),
            _ => meta["name"] = json!(name),
        }
        match meta.get("namespace").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            Some(n) if n != ns => return Err(ApiError::bad_request(format!("serviceaccount namespace {ns} does not match the namespace in the token request {n}"))),
            _ => meta["namespace"] = json!(ns),
        }
        meta["creationTimestamp"] = Value::Null;
        let spec = m.entry("spec").or_insert_with(|| json!({}));
        if !spec.is_object() {
            *spec = json!({});
        }
        let mut audiences: Vec<String> = spec.get("audiences").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
        if audiences.is_empty() {
            audiences = vec![ISSUER.to_string()];
        }
        let expiration = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => 3600,
            Some(v) => v.as_i64().ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
        };
        let mut errs = Vec::new();
        if expiration < 600 {
            errs.push(FieldError::invalid("spec.expirationSeconds", &json!(expiration), "may not specify a duration less than 10 minutes"));
        } else if expiration > 1 << 32 {
            errs.push(FieldError::invalid("spec.expirationSeconds", &json!(expiration), "may not specify a duration larger than 2^32 seconds"));
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(&tr_def, name, errs));
        }
        spec["audiences"] = json!(audiences);
        spec["expirationSeconds"] = json!(expiration);
        let bound = spec.get("boundObjectRef").cloned().filter(|b| !b.is_null());
        if bound.is_none() {
            spec["boundObjectRef"] = Value::Null;
        }
        let sa_uid = meta_str(&sa, "uid").to_string();
        let mut pod: Option<(String, String)> = None;
        let mut node: Option<(String, String)> = None;
        let mut secret: Option<(String, String)> = None;
        if let Some(r) = &bound {
            let s = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("").to_string();
            let (kind, api_version, obj_name, want_uid) = (s("kind"), s("apiVersion"), s("name"), s("uid"));
            let (group, version) = api_version.rsplit_once('/').map(|(g, v)| (g.to_string(), v.to_string())).unwrap_or((String::new(), api_version.clone()));
            let plural = match (group.as_str(), version.as_str(), kind.as_str()) {
                ("", "v1", "Pod") => "pods",
                ("", "v1", "Secret") => "secrets",
                ("", "v1", "Node") => "nodes",
                _ => return Err(ApiError::bad_request(format!("cannot bind token to object of type {group}/{version}, Kind={kind}"))),
            };
            let def = self.def("", "v1", plural)?;
            let obj_ns = if def.namespaced { ns } else { "" };
            let obj = self.get(&def, obj_ns, &obj_name).await?;
            let uid = meta_str(&obj, "uid").to_string();
            if !want_uid.is_empty() && want_uid != uid {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on {kind} {obj_name:?}: the UID in the bound object reference ({want_uid}) does not match the UID in record. The object might have been deleted and then recreated"),
                )
                .with_details(json!({"name": obj_name, "kind": kind})));
            }
            match plural {
                "pods" => {
                    let pod_sa = obj.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("");
                    if pod_sa != name {
                        return Err(ApiError::bad_request(format!("cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name.")));
                    }
                    if let Some(node_name) = obj.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                        let node_def = self.def("", "v1", "nodes")?;
                        if let Ok(n) = self.get(&node_def, "", node_name).await {
                            node = Some((node_name.to_string(), meta_str(&n, "uid").to_string()));
                        }
                    }
                    pod = Some((obj_name.clone(), uid.clone()));
                }
                "secrets" => secret = Some((obj_name.clone(), uid.clone())),
                _ => node = Some((obj_name.clone(), uid.clone())),
            }
        }
        let now = now_secs();
        let (expires, warn_after) = if pod.is_some() && expiration == WARN_ONLY_EXPIRATION {
            (now + EXTENDED_EXPIRATION, Some(now + WARN_ONLY_EXPIRATION))
        } else {
            (now + expiration, None)
        };
        let claims = Claims {
            audiences: &audiences,
            now,
            expires,
            namespace: ns,
            sa_name: name,
            sa_uid: &sa_uid,
            pod: pod.as_ref().map(|(n, u)| (n.as_str(), u.as_str())),
            node: node.as_ref().map(|(n, u)| (n.as_str(), u.as_str())),
            warn_after,
        };
        let mut claims = claims.to_json();
        if let Some((n, u)) = &secret {
            claims["kubernetes.io"]["secret"] = json!({"name": n, "uid": u});
        }
        let token = key.sign(&claims).map_err(ApiError::internal)?;
        m.insert("status".into(), json!({"token": token, "expirationTimestamp": rfc3339(now + expiration)}));
        Ok(req)
    }

    /// The user of a service-account token this server issued, if it is still valid: good
    /// signature, not expired, for this API server, and the account (and the object it is
    /// bound to) still the one it was issued for.
    pub fn authenticate_sa_token(&self, token: &str) -> Option<UserInfo> {
        self.verify_sa_token(token, &[ISSUER]).ok().map(|(user, _)| user)
    }

    /// As `authenticate_sa_token`, for a token meant for one of `audiences` (a TokenReview may
    /// ask for others than this server's); also returns the token's claims, or why the token
    /// is refused in upstream's words (its `jwt.go` and `claims.go` validator, in their order:
    /// issuer, signature, audiences, time, then the account and the objects the token is bound
    /// to — a missing or deleted one only said to have "invalidated" the token).
    pub fn verify_sa_token(&self, token: &str, audiences: &[&str]) -> Result<(UserInfo, Value), sa_token::TokenError> {
        use sa_token::TokenError;
        let key = self.sa_key.get().ok_or(TokenError::NotOurs)?;
        let claims = key.verify_reasoned(token)?;
        let now = now_secs();
        let (ns, name) = sa_token::check_claims(&claims, now, audiences)?;
        let k = claims.get("kubernetes.io").ok_or(TokenError::NotOurs)?;
        let lookup = |plural: &str, obj_ns: &str, obj_name: &str| -> Option<Arc<Value>> {
            let def = self.def("", "v1", plural).ok()?;
            self.cache_of(&def).ok()?.get(&def.key(obj_ns, obj_name))
        };
        let invalid = |m: String| TokenError::Invalid(m);
        let invalidated = || invalid("service account token has been invalidated".into());
        // As upstream, a bound object deleted less than a minute ago still holds.
        let deleted_long_ago = |obj: &Value| {
            let deleting = meta_str(obj, "deletionTimestamp");
            !deleting.is_empty() && deleting.parse::<jiff::Timestamp>().is_ok_and(|t| t.as_second() < now - 60)
        };
        let uid_of = |r: &Value| r.get("uid").and_then(Value::as_str).unwrap_or("").to_string();
        let name_of = |r: &Value| r.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        let sa = lookup("serviceaccounts", &ns, &name).ok_or_else(|| invalid(format!("serviceaccounts {name:?} not found")))?;
        if deleted_long_ago(&sa) {
            return Err(invalid(format!("service account {ns}/{name} has been deleted")));
        }
        if let Some(uid) = k.pointer("/serviceaccount/uid").and_then(Value::as_str) {
            if meta_str(&sa, "uid") != uid {
                return Err(invalid(format!("service account UID ({}) does not match claim ({uid})", meta_str(&sa, "uid"))));
            }
        }
        if let Some(s) = k.get("secret") {
            let secret = lookup("secrets", &ns, &name_of(s)).ok_or_else(invalidated)?;
            if deleted_long_ago(&secret) {
                return Err(invalidated());
            }
            if meta_str(&secret, "uid") != uid_of(s) {
                return Err(invalid(format!("secret UID ({}) does not match service account secret ref claim ({})", meta_str(&secret, "uid"), uid_of(s))));
            }
        }
        if let Some(p) = k.get("pod") {
            let pod = lookup("pods", &ns, &name_of(p)).ok_or_else(invalidated)?;
            if deleted_long_ago(&pod) {
                return Err(invalidated());
            }
            if meta_str(&pod, "uid") != uid_of(p) {
                return Err(invalid(format!("pod UID ({}) does not match service account pod ref claim ({})", meta_str(&pod, "uid"), uid_of(p))));
            }
        } else if let Some(n) = k.get("node") {
            let node = lookup("nodes", "", &name_of(n)).ok_or_else(invalidated)?;
            if deleted_long_ago(&node) {
                return Err(invalidated());
            }
            if meta_str(&node, "uid") != uid_of(n) {
                return Err(invalid(format!("node UID ({}) does not match service account node ref claim ({})", meta_str(&node, "uid"), uid_of(n))));
            }
        }
        let user = UserInfo {
            name: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}"), "system:authenticated".into()],
        };
        Ok((user, claims))
    }

    /// A ServiceAccount, waiting a little for the controller when it is the `default` one
    /// (as upstream's admission, which retries the default account ten times).
    async fn find_service_account(&self, ns: &str, name: &str) -> ApiResult<Option<Arc<Value>>> {
        let def = self.def("", "v1", "serviceaccounts")?;
        let cache = self.cache_of(&def)?;
        let attempts = if name == DEFAULT_SA { 10 } else { 1 };
        for i in 0..attempts {
            if i > 0 {
                let jitter = uuid::Uuid::new_v4().as_bytes()[0] as u64 % 100;
                tokio::time::sleep(Duration::from_millis(100 + jitter)).await;
            }
            self.cache.wait_fresh().await?;
            if let Some(sa) = cache.get(&def.key(ns, name)) {
                return Ok(Some(sa));
            }
        }
        Ok(None)
    }

    /// ServiceAccount admission of a new Pod.
    pub async fn admit_pod(&self, pod: &mut Value) -> ApiResult<()> {
        let annotations = pod.pointer("/metadata/annotations");
        if annotations.and_then(|a| a.get("kubernetes.io/config.mirror")).is_some() {
            return Ok(());
        }
        let ns = meta_str(pod, "namespace").to_string();
        let pod_name = meta_str(pod, "name").to_string();
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
        let sa_name = match spec.get("serviceAccountName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(s) => s.to_string(),
            None => {
                spec.insert("serviceAccountName".into(), json!(DEFAULT_SA));
                spec.insert("serviceAccount".into(), json!(DEFAULT_SA));
                DEFAULT_SA.to_string()
            }
        };
        let Some(sa) = self.find_service_account(&ns, &sa_name).await? else {
            return Err(ApiError::forbidden(format!(
                "pods {pod_name:?} is forbidden: error looking up service account {ns}/{sa_name}: serviceaccount {sa_name:?} not found"
            )));
        };
        let automount = spec
            .get("automountServiceAccountToken")
            .and_then(Value::as_bool)
            .or_else(|| sa.get("automountServiceAccountToken").and_then(Value::as_bool))
            .unwrap_or(true);
        if automount {
            mount_token(spec);
        }
        let pull_secrets_empty = spec.get("imagePullSecrets").and_then(Value::as_array).is_none_or(|a| a.is_empty());
        if pull_secrets_empty {
            if let Some(secrets) = sa.get("imagePullSecrets").and_then(Value::as_array).filter(|a| !a.is_empty()) {
                spec.insert("imagePullSecrets".into(), Value::Array(secrets.clone()));
            }
        }
        Ok(())
    }
}

/// The projected volume of the API credentials (upstream `TokenVolumeSource`).
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": WARN_ONLY_EXPIRATION, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// Mounts the `kube-api-access-*` volume in every container (init containers first) that
/// has nothing at the token path yet, adding the volume if any container needs it.
pub fn mount_token(spec: &mut Map<String, Value>) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().filter_map(|v| v.get("name").and_then(Value::as_str)).find(|n| n.starts_with("kube-api-access-")).map(str::to_string));
    let volume_name = existing.clone().unwrap_or_else(|| format!("kube-api-access-{}", crate::rest::random_suffix(5)));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else { continue };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else { continue };
            if mounts.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH)) {
                continue;
            }
            mounts.push(mount.clone());
            needed = true;
        }
    }
    if existing.is_none() && needed {
        let vols = spec.entry("volumes").or_insert_with(|| json!([]));
        if !vols.is_array() {
            *vols = json!([]);
        }
        if let Some(vols) = vols.as_array_mut() {
            vols.push(token_volume(&volume_name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_volume_and_mounts() {
        let mut spec = json!({
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "x", "mountPath": TOKEN_MOUNT_PATH}]}],
        });
        let m = spec.as_object_mut().unwrap();
        mount_token(m);
        let vols = m["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        let name = vols[0]["name"].as_str().unwrap();
        assert!(name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5, "{name}");
        assert_eq!(vols[0]["projected"]["defaultMode"], 420);
        assert_eq!(m["initContainers"][0]["volumeMounts"][0], json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}));
        assert_eq!(m["containers"][0]["volumeMounts"][0]["name"], name);
        assert_eq!(m["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1);
        // Every container already mounting the path: no volume.
        let mut spec = json!({"containers": [{"name": "b", "volumeMounts": [{"name": "x", "mountPath": TOKEN_MOUNT_PATH}]}]});
        mount_token(spec.as_object_mut().unwrap());
        assert!(spec.get("volumes").is_none());
    }
}
