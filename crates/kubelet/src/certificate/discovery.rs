//! Finding the cluster CA without trusting the network, as kubeadm's token discovery: read
//! `kube-public/cluster-info` without checking the server's certificate, check the JWS the
//! bootstrap signer put there for our token (only a server that knows the token can make it),
//! check the CA it names against the hash the join token pins, then read it again trusting
//! that CA and require the same content.
//!
//! Join tokens are k3s' `K10<sha256 of the CA certificate's DER>::<id>.<secret>`, or kubeadm's
//! `<id>.<secret>` with `--ca-cert-hash sha256:<SubjectPublicKeyInfo hash>`.

use base64::Engine;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What the CA must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaPin {
    /// SHA-256 of the certificate's DER (a `K10` token).
    Certificate(String),
    /// SHA-256 of its SubjectPublicKeyInfo (kubeadm's `sha256:` hashes).
    PublicKey(String),
}

/// A parsed `--token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinToken {
    Bootstrap { id: String, secret: String, pin: CaPin },
    /// Any other bearer token (a static token file's), with the CA given as a file.
    Static(String),
}

fn bootstrap_parts(s: &str) -> Option<(String, String)> {
    let (id, secret) = s.split_once('.')?;
    let ok = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
    (ok(id, 6) && ok(secret, 16)).then(|| (id.to_string(), secret.to_string()))
}

fn hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses `--token` (and `--ca-cert-hash`).
pub fn parse_join_token(token: &str, ca_cert_hash: Option<&str>) -> Result<JoinToken> {
    let bad = |m: String| Err(Error::Certificate(m));
    if let Some(rest) = token.strip_prefix("K10") {
        let Some((hash, creds)) = rest.split_once("::") else { return bad("the join token is not K10<ca-hash>::<id>.<secret>".into()) };
        if !hex64(hash) {
            return bad("the CA hash in the join token is not 64 hexadecimal digits".into());
        }
        let Some((id, secret)) = bootstrap_parts(creds) else {
            return bad("the join token does not end with a bootstrap token <id>.<secret> (make one with `timonier token create` on a server)".into());
        };
        return Ok(JoinToken::Bootstrap { id, secret, pin: CaPin::Certificate(hash.to_ascii_lowercase()) });
    }
    match (bootstrap_parts(token), ca_cert_hash) {
        (Some((id, secret)), Some(h)) => {
            let Some(hex) = h.strip_prefix("sha256:").filter(|x| hex64(x)) else { return bad(format!("--ca-cert-hash {h:?} is not sha256:<64 hexadecimal digits>")) };
            Ok(JoinToken::Bootstrap { id, secret, pin: CaPin::PublicKey(hex.to_ascii_lowercase()) })
        }
        (Some(_), None) => bad("a bootstrap token needs the CA it trusts: pass --ca-cert-hash sha256:<hash>, or use the K10… token `timonier token create` prints".into()),
        (None, _) => Ok(JoinToken::Static(token.to_string())),
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The (certificate, public key) hashes of a CA certificate (PEM).
pub fn ca_hashes(ca_pem: &str) -> Option<(String, String)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some((sha256_hex(&pem.contents), sha256_hex(cert.public_key().raw)))
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(msg).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The detached JWS the bootstrap signer writes (HS256, `kid` the token id), to compare.
pub fn detached_jws(content: &str, id: &str, secret: &str) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = b64(format!("{{\"alg\":\"HS256\",\"kid\":{}}}", serde_json::json!(id)).as_bytes());
    let sig = hmac_sha256(secret.as_bytes(), format!("{header}.{}", b64(content.as_bytes())).as_bytes());
    format!("{header}..{}", b64(&sig))
}

/// How long a token's signature is waited for.
const SIGNATURE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn fetch(server: &str, ca_pem: Option<&str>) -> Result<ConfigMap> {
    let mut cfg = kube::Config::new(server.parse().map_err(|e| Error::Certificate(format!("--server {server:?} is not a URL: {e}")))?);
    match ca_pem {
        Some(ca) => cfg.root_cert = Some(crate::pem_certs(ca)),
        None => cfg.accept_invalid_certs = true,
    }
    let client = kube::Client::try_from(cfg).map_err(|e| Error::Certificate(format!("cannot build a client for {server}: {e}")))?;
    let api: Api<ConfigMap> = Api::namespaced(client, "kube-public");
    api.get("cluster-info").await.map_err(|e| Error::Certificate(format!("cannot read kube-public/cluster-info from {server}: {e}")))
}

/// The cluster CA (PEM), verified as the module says.
pub async fn discover_ca(server: &str, id: &str, secret: &str, pin: &CaPin) -> Result<String> {
    let refuse = |m: String| Err(Error::Certificate(m));
    // A token just made is signed within moments: wait a little for its signature, as
    // kubeadm waits for the JWS of its token.
    let deadline = std::time::Instant::now() + SIGNATURE_WAIT;
    let (content, signature) = loop {
        let insecure = fetch(server, None).await?;
        let data = insecure.data.unwrap_or_default();
        let Some(content) = data.get("kubeconfig").cloned() else { return refuse("the cluster-info ConfigMap has no kubeconfig".into()) };
        if let Some(signature) = data.get(&format!("jws-kubeconfig-{id}")) {
            break (content, signature.clone());
        }
        if std::time::Instant::now() > deadline {
            return refuse(format!(
                "the server has no signature for token id {id:?}: the token is unknown to this cluster, expired or deleted (make one with `timonier token create` on a server)"
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    if signature != detached_jws(&content, id, secret) {
        return refuse("the cluster-info signature does not match the token: refusing to trust this API server".into());
    }
    checked_ca(server, &content, pin).await
}

/// The cluster CA (PEM) of a server whose CA the token pins but that has no signature to
/// check (a server token): read without trust, checked against the pin, read again trusting it.
pub async fn pinned_ca(server: &str, pin: &CaPin) -> Result<String> {
    let insecure = fetch(server, None).await?;
    let Some(content) = insecure.data.unwrap_or_default().remove("kubeconfig") else {
        return Err(Error::Certificate("the cluster-info ConfigMap has no kubeconfig".into()));
    };
    checked_ca(server, &content, pin).await
}

/// The CA the cluster-info kubeconfig `content` names, if it matches `pin` and a read trusting
/// it returns the same content.
async fn checked_ca(server: &str, content: &str, pin: &CaPin) -> Result<String> {
    let refuse = |m: String| Err(Error::Certificate(m));
    let kc = kube::config::Kubeconfig::from_yaml(content).map_err(|e| Error::Certificate(format!("the cluster-info kubeconfig is invalid: {e}")))?;
    let ca_b64 = kc.clusters.first().and_then(|c| c.cluster.as_ref()).and_then(|c| c.certificate_authority_data.clone()).unwrap_or_default();
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(ca_b64.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Error::Certificate("the cluster-info kubeconfig has no CA".into()))?;
    let (cert_hash, key_hash) = ca_hashes(&ca_pem).ok_or_else(|| Error::Certificate("the CA in cluster-info is not a certificate".into()))?;
    let (got, want) = match pin {
        CaPin::Certificate(h) => (cert_hash, h),
        CaPin::PublicKey(h) => (key_hash, h),
    };
    if got != *want {
        return refuse(format!(
            "the cluster CA does not match the hash the join token pins (the server's CA is {got}, the token expects {want}): refusing to join this server"
        ));
    }
    let secure = fetch(server, Some(&ca_pem)).await?;
    if secure.data.as_ref().and_then(|d| d.get("kubeconfig")).map(String::as_str) != Some(content) {
        return refuse("cluster-info changed between the untrusted and the trusted read: refusing to join".into());
    }
    Ok(ca_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens() {
        let h = "a".repeat(64);
        assert_eq!(
            parse_join_token(&format!("K10{h}::abcdef.0123456789abcdef"), None).ok(),
            Some(JoinToken::Bootstrap { id: "abcdef".into(), secret: "0123456789abcdef".into(), pin: CaPin::Certificate(h.clone()) })
        );
        assert_eq!(
            parse_join_token("abcdef.0123456789abcdef", Some(&format!("sha256:{h}"))).ok(),
            Some(JoinToken::Bootstrap { id: "abcdef".into(), secret: "0123456789abcdef".into(), pin: CaPin::PublicKey(h.clone()) })
        );
        assert!(parse_join_token("abcdef.0123456789abcdef", None).is_err());
        assert!(parse_join_token("K10zz::abcdef.0123456789abcdef", None).is_err());
        assert_eq!(parse_join_token("static-secret", None).ok(), Some(JoinToken::Static("static-secret".into())));
    }

    #[test]
    fn hmac_matches_rfc4231() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
