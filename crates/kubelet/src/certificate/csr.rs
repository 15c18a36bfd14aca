//! Asking for a certificate, as client-go's `csr.RequestCertificate` and `WaitForCertificate`:
//! a new key, a CertificateSigningRequest carrying its PKCS#10 request, then waiting until it
//! is approved and signed — or failing clearly when it is denied or its signer refuses it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::KeyedCert;
use crate::{Error, Result};

pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// What to ask for.
pub struct Request<'a> {
    /// `node-csr-` for a bootstrap request (upstream's prefix), `csr-` for renewals.
    pub name_prefix: &'a str,
    pub signer: &'a str,
    pub node: &'a str,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usages: &'a [&'a str],
}

impl Request<'_> {
    /// The node client certificate (`system:node:<node>` in `system:nodes`).
    pub fn client(node: &str, bootstrap: bool) -> Request<'_> {
        Request {
            name_prefix: if bootstrap { "node-csr-" } else { "csr-" },
            signer: KUBELET_CLIENT_SIGNER,
            node,
            dns_names: vec![],
            ips: vec![],
            // ECDSA keys: no key encipherment, as the kubelet asks for non-RSA keys.
            usages: &["digital signature", "client auth"],
        }
    }

    /// The serving certificate of the node's HTTPS API, for its name and address.
    pub fn serving(node: &str, ip: IpAddr) -> Request<'_> {
        Request { name_prefix: "csr-", signer: KUBELET_SERVING_SIGNER, node, dns_names: vec![node.to_string()], ips: vec![ip], usages: &["digital signature", "server auth"] }
    }
}

fn cert_err(e: impl std::fmt::Display) -> Error {
    Error::Certificate(format!("cannot make a certificate request: {e}"))
}

/// Creates the request with `client` and waits (up to `patience`) for its certificate.
pub async fn request_certificate(client: &kube::Client, req: &Request<'_>, patience: Duration) -> Result<KeyedCert> {
    let key = rcgen::KeyPair::generate().map_err(cert_err)?;
    let mut params = rcgen::CertificateParams::new(req.dns_names.clone()).map_err(cert_err)?;
    params.subject_alt_names.extend(req.ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "system:nodes");
    dn.push(rcgen::DnType::CommonName, format!("system:node:{}", req.node));
    params.distinguished_name = dn;
    let pem = params.serialize_request(&key).map_err(cert_err)?.pem().map_err(cert_err)?;
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": req.name_prefix},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem), "signerName": req.signer, "usages": req.usages},
    }))
    .map_err(cert_err)?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = api.create(&PostParams::default(), &csr).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 401 => Error::Certificate("the API server refused our credentials (an expired or deleted token?)".into()),
        e => Error::Certificate(format!("cannot create a certificate signing request ({}): {e}", req.signer)),
    })?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(csr = %name, signer = req.signer, "certificate signing request created; waiting for its approval and certificate");
    let cert_pem = wait(&api, &name, patience).await?;
    Ok(KeyedCert { cert_pem, key_pem: key.serialize_pem() })
}

/// Polls the request until it has a certificate (PEM), or is denied or failed.
async fn wait(api: &Api<CertificateSigningRequest>, name: &str, patience: Duration) -> Result<String> {
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        match api.get(name).await {
            Ok(csr) => {
                let status = csr.status.unwrap_or_default();
                for c in status.conditions.iter().flatten() {
                    let detail = [c.reason.as_deref(), c.message.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(": ");
                    match c.type_.as_str() {
                        "Denied" => return Err(Error::Certificate(format!("the certificate signing request {name} was denied{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") }))),
                        "Failed" => return Err(Error::Certificate(format!("the certificate signing request {name} failed ({detail})"))),
                        _ => {}
                    }
                }
                if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
                    return String::from_utf8(cert.0).map_err(|_| Error::Certificate(format!("the certificate of {name} is not PEM")));
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => return Err(Error::Certificate(format!("the certificate signing request {name} was deleted before it was signed"))),
            Err(e) => tracing::debug!(csr = name, error = %e, "cannot read the certificate signing request; retrying"),
        }
        if start.elapsed() > patience {
            return Err(Error::Certificate(format!("the certificate signing request {name} was not approved and signed in {}s (kubectl certificate approve {name})", patience.as_secs())));
        }
        if said.elapsed() > Duration::from_secs(30) {
            said = Instant::now();
            tracing::info!(csr = name, "still waiting for the certificate signing request to be approved (kubectl certificate approve {name})");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
