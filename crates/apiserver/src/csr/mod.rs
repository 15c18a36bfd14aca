//! CertificateSigningRequests, as kube-controller-manager's `csrapproving` and `csrsigning`
//! controllers and kube-apiserver's certificate admission plugins handle them:
//! `approver.rs` approves what nodes may ask for, `signer.rs` issues the certificates of the
//! built-in `kubernetes.io/*` signers from the cluster CA, `admission.rs` checks who may
//! approve, sign and ask what. This module reads a request: its subject and names, and the
//! checks upstream's `certificates/v1` helpers make of kubelet requests.

mod admission;
pub(crate) mod approver;
pub(crate) mod signer;

use std::collections::BTreeSet;
use std::net::IpAddr;

use base64::Engine;
use serde_json::Value;

/// What the CSR controllers read.
pub(crate) const CSRS: crate::bootstrap::Watched = ("certificates.k8s.io", "v1", "certificatesigningrequests");

pub use admission::admit;

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";
/// The prefix of node identities (upstream's `nodeidentifier`).
pub const NODE_USER_PREFIX: &str = "system:node:";
pub const NODES_GROUP: &str = "system:nodes";

/// What a PKCS#10 request asks for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Request {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

/// The DER of a CSR's `spec.request` (base64 of a PEM `CERTIFICATE REQUEST`).
pub fn request_der(csr: &Value) -> Option<Vec<u8>> {
    let b64 = csr.pointer("/spec/request").and_then(Value::as_str)?;
    let pem = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    (block.label == "CERTIFICATE REQUEST").then_some(block.contents)
}

/// Parses a request (DER). Its signature is checked when it is signed.
pub fn parse_request(der: &[u8]) -> Option<Request> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;
    let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(der).ok()?;
    let subject = &req.certification_request_info.subject;
    let mut out = Request {
        common_name: subject.iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or("").to_string(),
        organizations: subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect(),
        ..Default::default()
    };
    for ext in req.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else { continue };
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(d) => out.dns_names.push(d.to_string()),
                GeneralName::RFC822Name(e) => out.emails.push(e.to_string()),
                GeneralName::URI(u) => out.uris.push(u.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => out.ip_addresses.extend(<[u8; 4]>::try_from(*b).ok().map(IpAddr::from)),
                    16 => out.ip_addresses.extend(<[u8; 16]>::try_from(*b).ok().map(IpAddr::from)),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Some(out)
}

/// `spec.usages` as a set.
pub fn usages(csr: &Value) -> BTreeSet<String> {
    csr.pointer("/spec/usages").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Upstream's `usages did not match [...]`, naming the RSA form of the required set.
fn usages_error(required: &BTreeSet<String>) -> String {
    format!("usages did not match [{}]", required.iter().cloned().collect::<Vec<_>>().join(" "))
}

/// Upstream's `ValidateKubeletClientCSR`: O exactly `system:nodes`, no names at all, CN
/// `system:node:…`, usages digital signature + client auth (+ key encipherment for RSA).
pub fn validate_kubelet_client(req: &Request, usages: &BTreeSet<String>) -> Result<(), String> {
    if req.organizations != [NODES_GROUP] {
        return Err("subject organization is not system:nodes".into());
    }
    if !req.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !req.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.ip_addresses.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    if !req.common_name.starts_with(NODE_USER_PREFIX) {
        return Err(format!("subject common name does not begin with {NODE_USER_PREFIX}"));
    }
    let rsa = set(&["digital signature", "key encipherment", "client auth"]);
    if *usages != rsa && *usages != set(&["digital signature", "client auth"]) {
        return Err(usages_error(&rsa));
    }
    Ok(())
}

/// Upstream's `ValidateKubeletServingCSR`: O exactly `system:nodes`, some DNS or IP names and
/// no others, usages digital signature + server auth (+ key encipherment), CN `system:node:…`.
pub fn validate_kubelet_serving(req: &Request, usages: &BTreeSet<String>) -> Result<(), String> {
    if req.organizations != [NODES_GROUP] {
        return Err("subject organization is not system:nodes".into());
    }
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !req.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    let rsa = set(&["digital signature", "key encipherment", "server auth"]);
    if *usages != rsa && *usages != set(&["digital signature", "server auth"]) {
        return Err(usages_error(&rsa));
    }
    if !req.common_name.starts_with(NODE_USER_PREFIX) {
        return Err(format!("subject common name does not begin with {NODE_USER_PREFIX}"));
    }
    Ok(())
}

/// Upstream's `validAPIServerClientUsages`: client auth required, digital signature and key
/// encipherment optional, nothing else.
pub fn validate_apiserver_client(usages: &BTreeSet<String>) -> Result<(), String> {
    for u in usages {
        if !matches!(u.as_str(), "digital signature" | "key encipherment" | "client auth") {
            return Err(format!("invalid usage for client certificate: {u}"));
        }
    }
    if !usages.contains("client auth") {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

/// Whether the CSR has a condition of `kind` (with status True, the only one decisions have).
pub fn has_condition(csr: &Value, kind: &str) -> bool {
    csr.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| c["type"] == kind && c["status"] != "False")
}

/// The requester recorded at creation (`spec.username`, `spec.groups`).
pub fn requester(csr: &Value) -> crate::auth::UserInfo {
    crate::auth::UserInfo {
        name: csr.pointer("/spec/username").and_then(Value::as_str).unwrap_or("").to_string(),
        groups: csr.pointer("/spec/groups").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn csr_der(cn: &str, orgs: &[&str], sans: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        let mut dn = rcgen::DistinguishedName::new();
        for o in orgs {
            dn.push(rcgen::DnType::OrganizationName, *o);
        }
        dn.push(rcgen::DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.serialize_request(&key).expect("csr").der().to_vec()
    }

    #[test]
    fn kubelet_requests() {
        let client = parse_request(&csr_der("system:node:a", &["system:nodes"], &[])).expect("parse");
        assert_eq!((client.common_name.as_str(), client.organizations.as_slice()), ("system:node:a", &["system:nodes".to_string()][..]));
        let ec = set(&["digital signature", "client auth"]);
        assert_eq!(validate_kubelet_client(&client, &ec), Ok(()));
        assert_eq!(
            validate_kubelet_client(&client, &set(&["client auth"])),
            Err("usages did not match [client auth digital signature key encipherment]".into())
        );
        let serving = parse_request(&csr_der("system:node:a", &["system:nodes"], &["a", "10.0.0.1"])).expect("parse");
        assert_eq!(serving.dns_names, ["a"]);
        assert_eq!(serving.ip_addresses, [IpAddr::from([10, 0, 0, 1])]);
        assert_eq!(validate_kubelet_client(&serving, &ec), Err("DNS subjectAltNames are not allowed".into()));
        assert_eq!(validate_kubelet_serving(&serving, &set(&["digital signature", "server auth"])), Ok(()));
        let masters = parse_request(&csr_der("system:node:a", &["system:masters"], &[])).expect("parse");
        assert_eq!(validate_kubelet_client(&masters, &ec), Err("subject organization is not system:nodes".into()));
        assert_eq!(validate_apiserver_client(&set(&["client auth", "server auth"])), Err("invalid usage for client certificate: server auth".into()));
    }
}
