//! The CSR signer, as upstream's `csrsigning` controller: approved requests to the built-in
//! signers (`kube-apiserver-client`, `kube-apiserver-client-kubelet`, `kubelet-serving`,
//! `legacy-unknown`) get their certificate from the cluster CA in `status.certificate`; one
//! that breaks its signer's rules gets a `Failed` condition instead.
//!
//! The certificate carries the request's subject and names and the usages of `spec.usages`,
//! is backdated 5 minutes (clock skew), lasts `spec.expirationSeconds` when given — at least
//! 10 minutes, at most the cluster signing duration (a year, upstream's default) — and never
//! outlives the CA.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rcgen::{ExtendedKeyUsagePurpose as Eku, IsCa, KeyUsagePurpose as Ku};
use serde_json::{json, Value};

use super::{has_condition, parse_request, request_der, usages, validate_apiserver_client, validate_kubelet_client, validate_kubelet_serving};
use super::{KUBELET_CLIENT, KUBELET_SERVING, KUBE_APISERVER_CLIENT, LEGACY_UNKNOWN};
use crate::error::ApiResult;
use crate::pki::CertPair;
use crate::rest::{meta_str, Mode, WriteOptions};
use crate::state::ApiState;

/// `--cluster-signing-duration`'s default.
pub const SIGNING_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
const MIN_DURATION: Duration = Duration::from_secs(600);
const BACKDATE: Duration = Duration::from_secs(300);

pub async fn controller(state: Arc<ApiState>, ca: CertPair) {
    let ca = Arc::new(ca);
    crate::bootstrap::on_change_of(state, Duration::from_millis(200), "csrsigning", &[super::CSRS], move |state| {
        let ca = ca.clone();
        async move { pass(&state, &ca).await }
    })
    .await
}

fn is_builtin(signer: &str) -> bool {
    matches!(signer, KUBE_APISERVER_CLIENT | KUBELET_CLIENT | KUBELET_SERVING | LEGACY_UNKNOWN)
}

async fn pass(state: &Arc<ApiState>, ca: &CertPair) -> ApiResult<()> {
    let def = state.def("certificates.k8s.io", "v1", "certificatesigningrequests")?;
    let ready: Vec<Arc<Value>> = state
        .cache_of(&def)?
        .list(&def.key_prefix())
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| {
            let issued = c.pointer("/status/certificate").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
            let signer = c.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or("");
            is_builtin(signer) && !issued && has_condition(c, "Approved") && !has_condition(c, "Denied") && !has_condition(c, "Failed")
        })
        .collect();
    for csr in ready {
        let name = meta_str(&csr, "name").to_string();
        let outcome = sign(&csr, ca);
        let r = state
            .guaranteed_update(&def, "", &name, None, &WriteOptions::default(), |old| {
                let mut new = old.clone();
                let status = new.as_object_mut().map(|m| m.entry("status").or_insert_with(|| json!({}))).and_then(Value::as_object_mut);
                let Some(status) = status else { return Ok(new) };
                match &outcome {
                    Ok(pem) => {
                        status.insert("certificate".into(), json!(base64::engine::general_purpose::STANDARD.encode(pem)));
                    }
                    Err(message) => {
                        let failed = json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": message});
                        if let Some(conds) = status.entry("conditions").or_insert_with(|| json!([])).as_array_mut() {
                            conds.push(failed);
                        }
                    }
                }
                Ok(new)
            }, Mode::Status)
            .await;
        match (&outcome, r) {
            (_, Err(e)) if e.code == 404 => {}
            (_, Err(e)) => tracing::warn!(csr = %name, error = %e, "cannot write the signing outcome"),
            (Ok(_), Ok(_)) => tracing::info!(csr = %name, "signed the certificate signing request"),
            (Err(why), Ok(_)) => tracing::info!(csr = %name, reason = %why, "refused to sign the certificate signing request"),
        }
    }
    Ok(())
}

/// The certificate (PEM) for an approved request, or why its signer refuses it.
fn sign(csr: &Value, ca: &CertPair) -> Result<String, String> {
    let der = request_der(csr).ok_or("unable to parse csr: PEM block type must be CERTIFICATE REQUEST")?;
    let req = parse_request(&der).ok_or("unable to parse csr")?;
    let usages = usages(csr);
    let signer = csr.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or("");
    match signer {
        KUBE_APISERVER_CLIENT => validate_apiserver_client(&usages)?,
        KUBELET_CLIENT => validate_kubelet_client(&req, &usages)?,
        KUBELET_SERVING => validate_kubelet_serving(&req, &usages)?,
        _ => {}
    }
    let mut params = rcgen::CertificateSigningRequestParams::from_der(&der.as_slice().into())
        .map_err(|e| format!("unable to verify certificate request signature: {e}"))?;
    let p = &mut params.params;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = usages.iter().filter_map(|u| key_usage(u)).collect();
    p.extended_key_usages = usages.iter().filter_map(|u| extended_key_usage(u)).collect();
    p.use_authority_key_identifier_extension = true;
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial).map_err(|_| "no randomness for a serial number")?;
    serial[0] &= 0x7f;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let lifetime = duration(csr.pointer("/spec/expirationSeconds").and_then(Value::as_u64));
    let ca_not_after = x509_parser::pem::parse_x509_pem(ca.cert_pem.as_bytes())
        .ok()
        .and_then(|(_, p)| p.parse_x509().ok().map(|c| c.validity().not_after.timestamp()))
        .ok_or("the cluster CA is unusable")?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    p.not_before = epoch + now.saturating_sub(BACKDATE);
    p.not_after = epoch + (now + lifetime).min(Duration::from_secs(ca_not_after.max(0) as u64));
    let key = rcgen::KeyPair::from_pem(&ca.key_pem).map_err(|e| format!("the cluster CA key is unusable: {e}"))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(|e| format!("the cluster CA is unusable: {e}"))?;
    let cert = params.signed_by(&issuer).map_err(|e| format!("cannot sign: {e}"))?;
    Ok(cert.pem())
}

/// Upstream's `duration`: the requested lifetime within [10 min, signing duration].
fn duration(expiration_seconds: Option<u64>) -> Duration {
    match expiration_seconds.map(Duration::from_secs) {
        None => SIGNING_DURATION,
        Some(d) => d.clamp(MIN_DURATION, SIGNING_DURATION),
    }
}

fn key_usage(u: &str) -> Option<Ku> {
    Some(match u {
        "digital signature" => Ku::DigitalSignature,
        "content commitment" => Ku::ContentCommitment,
        "key encipherment" => Ku::KeyEncipherment,
        "data encipherment" => Ku::DataEncipherment,
        "key agreement" => Ku::KeyAgreement,
        "cert sign" => Ku::KeyCertSign,
        "crl sign" => Ku::CrlSign,
        "encipher only" => Ku::EncipherOnly,
        "decipher only" => Ku::DecipherOnly,
        _ => return None,
    })
}

fn extended_key_usage(u: &str) -> Option<Eku> {
    Some(match u {
        "any" => Eku::Any,
        "server auth" => Eku::ServerAuth,
        "client auth" => Eku::ClientAuth,
        "code signing" => Eku::CodeSigning,
        "email protection" | "s/mime" => Eku::EmailProtection,
        "timestamping" => Eku::TimeStamping,
        "ocsp signing" => Eku::OcspSigning,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(der: &[u8], signer: &str, usages: &[&str], expiration: Option<u64>) -> Value {
        let pem = format!("-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n", base64::engine::general_purpose::STANDARD.encode(der));
        let mut spec = json!({"request": base64::engine::general_purpose::STANDARD.encode(pem), "signerName": signer, "usages": usages});
        if let Some(e) = expiration {
            spec["expirationSeconds"] = json!(e);
        }
        json!({"spec": spec})
    }

    #[test]
    fn signs_kubelet_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = crate::pki::Pki::load_or_create(dir.path(), &["127.0.0.1".into()]).expect("pki");
        let der = super::super::tests::csr_der("system:node:a", &["system:nodes"], &["a", "127.0.0.1"]);
        let pem = sign(&csr(&der, KUBELET_SERVING, &["digital signature", "server auth"], Some(60)), &pki.ca).expect("signed");
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        let cert = block.parse_x509().expect("x509");
        assert_eq!(cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()), Some("system:node:a"));
        assert_eq!(cert.issuer().iter_common_name().next().and_then(|c| c.as_str().ok()), Some("timonier-ca"));
        let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        // 60 s asked: raised to the 10-minute floor, plus the 5-minute backdate.
        assert_eq!(lifetime, 900);
        assert!(cert.extended_key_usage().ok().flatten().is_some_and(|e| e.value.server_auth && !e.value.client_auth));
        let refused = sign(&csr(&der, KUBELET_CLIENT, &["digital signature", "client auth"], None), &pki.ca);
        assert_eq!(refused, Err("DNS subjectAltNames are not allowed".into()));
    }
}
