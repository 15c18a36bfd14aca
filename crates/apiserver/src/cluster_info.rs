//! `kube-public/cluster-info`, what a joining node reads before it trusts anything (kubeadm's
//! token discovery): a kubeconfig naming the API server and its CA, readable anonymously, and
//! signed by the bootstrap signer (upstream's `bootstrapsigner` controller) with every
//! signing bootstrap token as a detached JWS `jws-kubeconfig-<token-id>`. A node holding a
//! token checks the signature, which proves the ConfigMap came from a server that knows the
//! token, then pins the CA with the hash its token carries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::bootstrap_token::{expired, secret_value, token_secrets, SECRET_PREFIX};
use crate::error::ApiResult;
use crate::rest::{meta_str, Mode, WriteOptions};
use crate::state::ApiState;

pub const NAMESPACE: &str = "kube-public";
pub const NAME: &str = "cluster-info";
pub const JWS_PREFIX: &str = "jws-kubeconfig-";
/// The only request anonymous users may make (upstream's anonymous authenticator is on by
/// default; here it answers this path alone, as an AuthenticationConfiguration with one
/// anonymous `conditions` path would).
pub const PATH: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The detached JWS (`<header>..<signature>`, HS256 keyed with the token secret, `kid` the
/// token id) upstream's `jws.ComputeDetachedSignature` makes; the header's JSON has Go's
/// sorted keys, so that kubeadm's byte-for-byte comparison holds.
pub fn detached_jws(content: &str, token_id: &str, token_secret: &str) -> String {
    let header = b64url(format!("{{\"alg\":\"HS256\",\"kid\":{}}}", json!(token_id)).as_bytes());
    let signing_input = format!("{header}.{}", b64url(content.as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_secret.as_bytes());
    let sig = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{header}..{}", b64url(sig.as_ref()))
}

/// The kubeconfig kubeadm's `clusterinfo` phase publishes: one nameless cluster, no users.
pub fn kubeconfig(server: &str, ca_pem: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n"
    )
}

/// Creates (or points at this server again) the ConfigMap, and the Role and RoleBinding that
/// let anonymous users read it — kubeadm's `kubeadm:bootstrap-signer-clusterinfo`.
pub async fn ensure(state: &Arc<ApiState>, server: &str, ca_pem: &str) -> ApiResult<()> {
    let content = kubeconfig(server, ca_pem);
    let def = state.def("", "v1", "configmaps")?;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": NAMESPACE}, "data": {"kubeconfig": content}});
    match state.create(&def, NAMESPACE, cm, &WriteOptions::default()).await {
        Ok(_) => {}
        Err(e) if e.code == 409 => {
            let current = state.get(&def, NAMESPACE, NAME).await?;
            if current.pointer("/data/kubeconfig").and_then(Value::as_str) != Some(content.as_str()) {
                // Another address or CA: the signer re-signs the new content.
                let r = state
                    .guaranteed_update(&def, NAMESPACE, NAME, None, &WriteOptions::default(), |old| {
                        let mut new = old.clone();
                        new["data"]["kubeconfig"] = json!(content);
                        Ok(new)
                    }, Mode::Main)
                    .await;
                crate::rest::ignore_not_found(r)?;
            }
        }
        Err(e) => return Err(e),
    }
    let role_name = "kubeadm:bootstrap-signer-clusterinfo";
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": role_name, "namespace": NAMESPACE},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [NAME], "verbs": ["get"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": role_name, "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}]});
    for (plural, obj) in [("roles", role), ("rolebindings", binding)] {
        let def = state.def("rbac.authorization.k8s.io", "v1", plural)?;
        match state.create(&def, NAMESPACE, obj, &WriteOptions::default()).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The signatures the ConfigMap should carry: one per valid signing token.
fn signatures(state: &ApiState, content: &str) -> BTreeMap<String, String> {
    let now = jiff::Timestamp::now();
    token_secrets(state)
        .iter()
        .filter(|s| meta_str(s, "deletionTimestamp").is_empty() && !expired(s, now))
        .filter(|s| secret_value(s, "usage-bootstrap-signing").as_deref() == Some("true"))
        .filter_map(|s| {
            let id = secret_value(s, "token-id")?;
            let secret = secret_value(s, "token-secret")?;
            (meta_str(s, "name") == format!("{SECRET_PREFIX}{id}")).then(|| (format!("{JWS_PREFIX}{id}"), detached_jws(content, &id, &secret)))
        })
        .collect()
}

/// One pass of the bootstrap signer: the ConfigMap's `jws-kubeconfig-*` keys made to match
/// the signing tokens (added, re-signed, removed).
async fn sign(state: &Arc<ApiState>) -> ApiResult<()> {
    let def = state.def("", "v1", "configmaps")?;
    let Some(cm) = state.cache_of(&def)?.get(&def.key(NAMESPACE, NAME)) else { return Ok(()) };
    let Some(content) = cm.pointer("/data/kubeconfig").and_then(Value::as_str) else { return Ok(()) };
    let want = signatures(state, content);
    let data = cm.get("data").and_then(Value::as_object).cloned().unwrap_or_default();
    let have: BTreeMap<String, String> =
        data.iter().filter(|(k, _)| k.starts_with(JWS_PREFIX)).map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect();
    if have == want {
        return Ok(());
    }
    let r = state
        .guaranteed_update(&def, NAMESPACE, NAME, None, &WriteOptions::default(), |old| {
            let mut new = old.clone();
            let mut data: Map<String, Value> = old.get("data").and_then(Value::as_object).cloned().unwrap_or_default();
            data.retain(|k, _| !k.starts_with(JWS_PREFIX));
            data.extend(want.iter().map(|(k, v)| (k.clone(), json!(v))));
            new["data"] = Value::Object(data);
            Ok(new)
        }, Mode::Main)
        .await;
    crate::rest::ignore_not_found(r)
}

/// The bootstrap signer: level-triggered on changes to Secrets (the tokens) and ConfigMaps
/// (`cluster-info`), and every few seconds for tokens that expire without any write.
pub async fn signer(state: Arc<ApiState>) {
    let mut last = -1;
    let mut since = std::time::Instant::now();
    loop {
        let rev = crate::bootstrap::last_change_of(&state, &[("", "v1", "secrets"), ("", "v1", "configmaps")]);
        if rev != last || since.elapsed() > Duration::from_secs(5) {
            last = rev;
            since = std::time::Instant::now();
            if let Err(e) = sign(&state).await {
                tracing::warn!(error = %e, "bootstrap signer pass failed; will retry");
                last = -1;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jws_as_go_jose() {
        // The detached form of RFC 7515's HS256 construction; header as go-jose writes it.
        let jws = detached_jws("payload", "abcdef", "0123456789abcdef");
        let (header, sig) = jws.split_once("..").expect("detached");
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).expect("b64");
        assert_eq!(String::from_utf8(decoded).expect("utf8"), r#"{"alg":"HS256","kid":"abcdef"}"#);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef");
        let input = format!("{header}.{}", b64url(b"payload"));
        let expected = b64url(ring::hmac::sign(&key, input.as_bytes()).as_ref());
        assert_eq!(sig, expected);
        assert_ne!(detached_jws("payload", "abcdef", "fedcba9876543210"), jws);
    }
}
