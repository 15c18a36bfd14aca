//! Service-account tokens: JWTs signed ES256 (ECDSA P-256, SHA-256) with a key made at first
//! start and kept in the PKI directory (`sa.key`, PKCS#8), as kube-apiserver's
//! `--service-account-signing-key-file`. The key id (`kid`) is, as upstream, the unpadded
//! base64url SHA-256 of the public key's DER `SubjectPublicKeyInfo`.

use std::path::Path;

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use serde_json::{json, Value};

use crate::pki::PkiError;

/// The issuer, and the audience the API server accepts (upstream's defaults for
/// `--service-account-issuer` and `--api-audiences` in most distributions).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// DER prefix of a P-256 `SubjectPublicKeyInfo` before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn unb64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// The signing key of service-account tokens.
pub struct TokenKey {
    pair: EcdsaKeyPair,
    public: Vec<u8>,
    pub kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey").field("kid", &self.kid).finish()
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(text: &str) -> Option<Vec<u8>> {
    let body: String = text.lines().map(str::trim).filter(|l| !l.starts_with("-----") && !l.is_empty()).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

impl TokenKey {
    /// Loads `<dir>/sa.key`, making it (and `sa.pub`) at first start.
    pub fn load_or_create(dir: &Path) -> Result<TokenKey, PkiError> {
        let path = dir.join("sa.key");
        let bad = |reason: String| PkiError::Bad { path: path.clone(), reason };
        let rng = SystemRandom::new();
        let pkcs8 = match std::fs::read_to_string(&path) {
            Ok(text) => pem_decode(&text).ok_or_else(|| bad("not a PEM file".into()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| bad("cannot generate a key".into()))?;
                crate::pki::write(&path, &pem_encode("PRIVATE KEY", doc.as_ref()), true)?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(PkiError::Io { action: "read", path, source: e }),
        };
        let key = TokenKey::from_pkcs8(&pkcs8).map_err(bad)?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&key.public);
        crate::pki::write(&dir.join("sa.pub"), &pem_encode("PUBLIC KEY", &spki), false)?;
        Ok(key)
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<TokenKey, String> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| format!("not an ECDSA P-256 PKCS#8 key: {e}"))?;
        let public = pair.public_key().as_ref().to_vec();
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&public);
        let kid = b64url(ring::digest::digest(&ring::digest::SHA256, &spki).as_ref());
        Ok(TokenKey { pair, public, kid, rng })
    }

    /// A signed JWT of `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let sig = self.pair.sign(&self.rng, input.as_bytes()).map_err(|_| "cannot sign the token".to_string())?;
        Ok(format!("{input}.{}", b64url(sig.as_ref())))
    }

    /// The claims of a token of this issuer that this key signed, if the signature holds
    /// (nothing else checked).
    pub fn verify(&self, token: &str) -> Option<Value> {
        self.verify_reasoned(token).ok()
    }

    /// As `verify`, telling a token that is not this issuer's (which upstream's authenticator
    /// passes over without an error) from one of this issuer with a bad signature. The issuer
    /// is read before the signature is checked, as upstream's `hasCorrectIssuer`.
    pub fn verify_reasoned(&self, token: &str) -> Result<Value, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::NotOurs);
        };
        let claims: Value = unb64url(p).and_then(|b| serde_json::from_slice(&b).ok()).ok_or(TokenError::NotOurs)?;
        if claims.get("iss").and_then(Value::as_str) != Some(ISSUER) {
            return Err(TokenError::NotOurs);
        }
        // What go-jose says when no key verifies the signature (upstream's wording).
        let bad_signature = || TokenError::Invalid("go-jose/go-jose: error in cryptographic primitive".into());
        let header: Value = unb64url(h).and_then(|b| serde_json::from_slice(&b).ok()).ok_or(TokenError::NotOurs)?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(bad_signature());
        }
        if let Some(kid) = header.get("kid").and_then(Value::as_str) {
            if kid != self.kid {
                return Err(bad_signature());
            }
        }
        let sig = unb64url(s).ok_or_else(bad_signature)?;
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(format!("{h}.{p}").as_bytes(), &sig)
            .map_err(|_| bad_signature())?;
        Ok(claims)
    }
}

/// Why a token was not accepted by the service-account authenticator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT of this issuer: upstream's authenticator answers "not mine" with no error, and
    /// the next authenticator gets its turn.
    #[error("not a service-account token of this issuer")]
    NotOurs,
    /// A token of this issuer that is not valid, with upstream's wording of why (what a
    /// TokenReview's `status.error` carries).
    #[error("{0}")]
    Invalid(String),
}

/// A list of strings as Go's `%q` prints a `[]string`: `["a" "b"]`.
pub fn go_quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| serde_json::to_string(s).unwrap_or_default()).collect();
    format!("[{}]", quoted.join(" "))
}

/// The claims upstream puts in a service-account token.
pub struct Claims<'a> {
    pub audiences: &'a [String],
    pub now: i64,
    pub expires: i64,
    pub namespace: &'a str,
    pub sa_name: &'a str,
    pub sa_uid: &'a str,
    /// Name and uid of the pod the token is bound to.
    pub pod: Option<(&'a str, &'a str)>,
    /// Name and uid of the pod's node.
    pub node: Option<(&'a str, &'a str)>,
    /// `warnafter`: when a token whose lifetime was extended should have been renewed.
    pub warn_after: Option<i64>,
}

impl Claims<'_> {
    pub fn to_json(&self) -> Value {
        let mut k = json!({
            "namespace": self.namespace,
            "serviceaccount": {"name": self.sa_name, "uid": self.sa_uid},
        });
        if let Some((name, uid)) = self.pod {
            k["pod"] = json!({"name": name, "uid": uid});
        }
        if let Some((name, uid)) = self.node {
            k["node"] = json!({"name": name, "uid": uid});
        }
        if let Some(w) = self.warn_after {
            k["warnafter"] = json!(w);
        }
        json!({
            "aud": self.audiences,
            "exp": self.expires,
            "iat": self.now,
            "iss": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": k,
            "nbf": self.now,
            "sub": format!("system:serviceaccount:{}:{}", self.namespace, self.sa_name),
        })
    }
}

/// Checks the audience and time claims of a verified token in upstream's order (`jwt.go`: the
/// audiences intersected with the targets; `claims.go`: expiry with go-jose's one minute of
/// clock skew), with upstream's wording when they fail. Returns (namespace, name) of the account.
pub fn check_claims(claims: &Value, now: i64, audiences: &[&str]) -> Result<(String, String), TokenError> {
    const LEEWAY: i64 = 60;
    if claims.get("iss").and_then(Value::as_str) != Some(ISSUER) {
        return Err(TokenError::NotOurs);
    }
    let aud: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !aud.iter().any(|a| audiences.contains(a)) {
        return Err(TokenError::Invalid(format!(
            "token audiences {} is invalid for the target audiences {}",
            go_quoted_list(&aud),
            go_quoted_list(audiences)
        )));
    }
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if now > exp + LEEWAY {
        return Err(TokenError::Invalid("service account token has expired".into()));
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
        if now + LEEWAY < nbf {
            return Err(TokenError::Invalid("service account token is not valid yet".into()));
        }
    }
    // Tokens this key signed always carry these; anything else is not one of ours.
    let sub = claims.get("sub").and_then(Value::as_str).ok_or(TokenError::NotOurs)?;
    let (ns, name) = sub.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':')).ok_or(TokenError::NotOurs)?;
    let k = claims.get("kubernetes.io").ok_or(TokenError::NotOurs)?;
    if k.get("namespace").and_then(Value::as_str) != Some(ns) || k.pointer("/serviceaccount/name").and_then(Value::as_str) != Some(name) {
        return Err(TokenError::NotOurs);
    }
    Ok((ns.to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        TokenKey::from_pkcs8(doc.as_ref()).unwrap()
    }

    #[test]
    fn sign_verify_and_claims() {
        let k = key();
        let aud = vec![ISSUER.to_string()];
        let c = Claims { audiences: &aud, now: 1000, expires: 4600, namespace: "ns", sa_name: "sa", sa_uid: "u", pod: Some(("p", "pu")), node: None, warn_after: None };
        let t = k.sign(&c.to_json()).unwrap();
        let claims = k.verify(&t).unwrap();
        assert_eq!(claims["sub"], "system:serviceaccount:ns:sa");
        assert_eq!(claims["kubernetes.io"]["pod"]["uid"], "pu");
        assert_eq!(check_claims(&claims, 2000, &[ISSUER]), Ok(("ns".into(), "sa".into())));
        // Expired (past the minute of leeway), not yet valid, or for another audience, each
        // with upstream's words.
        let invalid = |s: &str| Err(TokenError::Invalid(s.into()));
        assert_eq!(check_claims(&claims, 4661, &[ISSUER]), invalid("service account token has expired"));
        assert_eq!(check_claims(&claims, 900, &[ISSUER]), invalid("service account token is not valid yet"));
        assert_eq!(
            check_claims(&claims, 2000, &["other", "x"]),
            invalid(&format!("token audiences [\"{ISSUER}\"] is invalid for the target audiences [\"other\" \"x\"]"))
        );
        // Another issuer's token is not this authenticator's to judge.
        let mut foreign = claims.clone();
        foreign["iss"] = json!("https://elsewhere");
        assert_eq!(check_claims(&foreign, 2000, &[ISSUER]), Err(TokenError::NotOurs));
        // Tampered or signed by another key.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = b64url(br#"{"sub":"system:serviceaccount:kube-system:admin"}"#);
        parts[1] = &forged;
        assert!(k.verify(&parts.join(".")).is_none());
        assert!(key().verify(&t).is_none());
        assert!(k.verify("garbage").is_none());
        // Ours but badly signed is a reason; not a JWT of this issuer is none.
        assert!(matches!(key().verify_reasoned(&t), Err(TokenError::Invalid(m)) if m.contains("cryptographic primitive")));
        assert_eq!(k.verify_reasoned("garbage"), Err(TokenError::NotOurs));
        assert_eq!(k.verify_reasoned(&parts.join(".")), Err(TokenError::NotOurs));
    }

    #[test]
    fn key_persists() {
        let dir = tempfile::tempdir().unwrap();
        let a = TokenKey::load_or_create(dir.path()).unwrap();
        let b = TokenKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.kid, b.kid);
        let t = a.sign(&json!({"iss": ISSUER, "x": 1})).unwrap();
        assert_eq!(b.verify(&t).unwrap()["x"], 1);
    }
}
