//! Bootstrap tokens, as kube-apiserver's `--enable-bootstrap-token-auth` and the token
//! cleaner of kube-controller-manager: a token `<id>.<secret>` is a Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` (what
//! `kubeadm token create` and `timonier token create` write). It authenticates as
//! `system:bootstrap:<id>` in `system:bootstrappers` and the token's `auth-extra-groups` while
//! it is not expired, and the cleaner deletes it once it is.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::auth::UserInfo;
use crate::rest::{meta_str, DeleteOptions};
use crate::state::ApiState;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const NAMESPACE: &str = "kube-system";
/// The group every bootstrap token's user is in.
pub const GROUP: &str = "system:bootstrappers";
/// The group `timonier token create` puts its tokens in (kubeadm's is
/// `system:bootstrappers:kubeadm:default-node-token`): what the node-bootstrap bindings name.
pub const DEFAULT_NODE_GROUP: &str = "system:bootstrappers:timonier:default-node-token";

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn token_chars(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// `<id>.<secret>` (`[a-z0-9]{6}\.[a-z0-9]{16}`), as upstream's `bootstraputil.ParseToken`.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    (token_chars(id, ID_LEN) && token_chars(secret, SECRET_LEN)).then_some((id, secret))
}

/// A new random token: (id, secret).
pub fn generate_token() -> Result<(String, String), String> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let pick = |n: usize| -> Result<String, String> {
        let mut out = String::with_capacity(n);
        while out.len() < n {
            let mut b = [0u8; 1];
            rng.fill(&mut b).map_err(|_| "no randomness available".to_string())?;
            // Rejection sampling keeps every character equally likely.
            if (b[0] as usize) < 252 {
                out.push(ALPHABET[b[0] as usize % ALPHABET.len()] as char);
            }
        }
        Ok(out)
    };
    Ok((pick(ID_LEN)?, pick(SECRET_LEN)?))
}

/// A value of a bootstrap token Secret (`data` is base64; `stringData` is accepted too, for a
/// Secret being written).
pub fn secret_value(secret: &Value, key: &str) -> Option<String> {
    if let Some(v) = secret.pointer(&format!("/data/{key}")).and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
        return String::from_utf8(bytes).ok();
    }
    secret.pointer(&format!("/stringData/{key}")).and_then(Value::as_str).map(str::to_string)
}

/// Whether the token's `expiration` (RFC 3339) has passed; an unparsable one counts as
/// expired, as upstream's `HasExpired`.
pub fn expired(secret: &Value, now: jiff::Timestamp) -> bool {
    match secret_value(secret, "expiration") {
        None => false,
        Some(e) if e.is_empty() => false,
        Some(e) => e.parse::<jiff::Timestamp>().map_or(true, |t| t <= now),
    }
}

/// The extra groups must all be `system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`.
fn valid_group(g: &str) -> bool {
    let Some(rest) = g.strip_prefix("system:bootstrappers:") else { return false };
    !rest.is_empty()
        && rest.len() <= 256
        && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
        && rest.bytes().last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The token's groups: `system:bootstrappers` and its valid `auth-extra-groups`, or None when
/// one of those is invalid (upstream then refuses the token).
pub fn groups(secret: &Value) -> Option<Vec<String>> {
    let mut out = vec![GROUP.to_string()];
    for g in secret_value(secret, "auth-extra-groups").unwrap_or_default().split(',').map(str::trim).filter(|g| !g.is_empty()) {
        if !valid_group(g) {
            return None;
        }
        if !out.iter().any(|o| o == g) {
            out.push(g.to_string());
        }
    }
    Some(out)
}

/// The token Secret named by `id`, if it is one: the right type, not being deleted, its
/// `token-id` matching.
pub fn token_secret(state: &ApiState, id: &str) -> Option<Arc<Value>> {
    let def = state.def("", "v1", "secrets").ok()?;
    let secret = state.cache_of(&def).ok()?.get(&def.key(NAMESPACE, &format!("{SECRET_PREFIX}{id}")))?;
    let ok = secret.get("type").and_then(Value::as_str) == Some(SECRET_TYPE)
        && meta_str(&secret, "deletionTimestamp").is_empty()
        && secret_value(&secret, "token-id").as_deref() == Some(id);
    ok.then_some(secret)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ApiState {
    /// The user of a bootstrap token, as upstream's bootstrap token authenticator: refused
    /// (None) when its Secret is missing, being deleted, of another type, expired, not meant
    /// for authentication, or its secret or groups do not match.
    pub fn authenticate_bootstrap_token(&self, token: &str) -> Option<UserInfo> {
        let (id, secret) = parse_token(token)?;
        let obj = token_secret(self, id)?;
        let stored = secret_value(&obj, "token-secret")?;
        if !constant_time_eq(stored.as_bytes(), secret.as_bytes()) {
            tracing::debug!(token_id = id, "bootstrap token refused: wrong secret");
            return None;
        }
        if expired(&obj, jiff::Timestamp::now()) {
            tracing::debug!(token_id = id, "bootstrap token refused: expired");
            return None;
        }
        if secret_value(&obj, "usage-bootstrap-authentication").as_deref() != Some("true") {
            return None;
        }
        let mut groups = groups(&obj)?;
        groups.push("system:authenticated".into());
        Some(UserInfo { name: format!("system:bootstrap:{id}"), groups })
    }
}

/// Every bootstrap token Secret in kube-system.
pub fn token_secrets(state: &ApiState) -> Vec<Arc<Value>> {
    let Ok(def) = state.def("", "v1", "secrets") else { return vec![] };
    let Ok(cache) = state.cache_of(&def) else { return vec![] };
    cache
        .list(&def.namespace_prefix(NAMESPACE))
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| s.get("type").and_then(Value::as_str) == Some(SECRET_TYPE))
        .collect()
}

/// The token cleaner (upstream's `tokencleaner` controller): deletes expired token Secrets,
/// checked every few seconds since expiry is a matter of time, not of events.
pub async fn cleaner(state: Arc<ApiState>) {
    loop {
        let now = jiff::Timestamp::now();
        for secret in token_secrets(&state).into_iter().filter(|s| expired(s, now) && meta_str(s, "deletionTimestamp").is_empty()) {
            let name = meta_str(&secret, "name").to_string();
            let Ok(def) = state.def("", "v1", "secrets") else { break };
            // The uid precondition spares a token re-created under the same name meanwhile.
            let opts = DeleteOptions { uid: Some(meta_str(&secret, "uid").to_string()), ..Default::default() };
            match state.delete(&def, NAMESPACE, &name, &opts).await {
                Ok(_) => tracing::info!(secret = %name, "deleted expired bootstrap token"),
                Err(e) if e.code == 404 || e.code == 409 => {}
                Err(e) => tracing::warn!(secret = %name, error = %e, "cannot delete an expired bootstrap token"),
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn token_format() {
        assert_eq!(parse_token("abcdef.0123456789abcdef"), Some(("abcdef", "0123456789abcdef")));
        assert_eq!(parse_token("ABCDEF.0123456789abcdef"), None);
        assert_eq!(parse_token("abcdef.0123456789abcde"), None);
        assert_eq!(parse_token("abcdef0123456789abcdef"), None);
        let (id, secret) = generate_token().expect("token");
        assert!(parse_token(&format!("{id}.{secret}")).is_some());
    }

    #[test]
    fn groups_and_expiry() {
        let s = json!({"data": {"auth-extra-groups": b64("system:bootstrappers:timonier:default-node-token"), "expiration": b64("2000-01-01T00:00:00Z")}});
        assert_eq!(groups(&s), Some(vec![GROUP.to_string(), DEFAULT_NODE_GROUP.to_string()]));
        assert!(expired(&s, jiff::Timestamp::now()));
        let bad = json!({"data": {"auth-extra-groups": b64("system:masters")}});
        assert_eq!(groups(&bad), None);
        assert!(!expired(&bad, jiff::Timestamp::now()));
        assert!(expired(&json!({"data": {"expiration": b64("tomorrow")}}), jiff::Timestamp::now()));
        assert!(!expired(&json!({"stringData": {"expiration": "2999-01-01T00:00:00Z"}}), jiff::Timestamp::now()));
    }
}
