//! The certificate of the node's HTTPS API (port 10250), which the API server verifies
//! against the cluster CA: asked for with a `kubernetes.io/kubelet-serving` request for the
//! node's name and address (the kubelet's `serverTLSBootstrap`), kept in the data directory,
//! renewed at its rotation deadline — or, for the agent inside `timonier server`, issued by
//! the CA directly.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::csr::{request_certificate, Request};
use super::{KeyedCert, Paths, ServingStore};

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum ServingCertificate {
    /// Issued already (by the CA of the server this agent runs in).
    Issued(KeyedCert),
    /// Requested through CertificateSigningRequests.
    Requested,
}

/// Whether the certificate names `name` and `ip`.
fn covers(cert: &KeyedCert, name: &str, ip: IpAddr) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert.cert_pem.as_bytes()) else { return false };
    let Ok(x509) = pem.parse_x509() else { return false };
    let Ok(Some(san)) = x509.subject_alternative_name() else { return false };
    let names = &san.value.general_names;
    let has_name = names.iter().any(|n| matches!(n, GeneralName::DNSName(d) if *d == name));
    let octets = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let has_ip = names.iter().any(|n| matches!(n, GeneralName::IPAddress(b) if *b == octets.as_slice()));
    has_name && has_ip
}

/// Keeps `store` serving a valid certificate for `name` and `ip`, asking for a new one with
/// `client` when there is none, it no longer fits, or its rotation deadline has come.
pub async fn manage(client: kube::Client, name: String, ip: IpAddr, data_dir: PathBuf, store: ServingStore) {
    let path = Paths::new(&data_dir).serving;
    let mut current = KeyedCert::load(&path).filter(|c| c.validity().is_some_and(|v| !v.expired()) && covers(c, &name, ip));
    if let Some(c) = &current {
        if let Err(e) = store.set(c) {
            tracing::warn!(error = %e, "the kept serving certificate is unusable; asking for another");
            current = None;
        }
    }
    loop {
        let due = current.as_ref().and_then(KeyedCert::validity).map(|v| v.until_rotation()).unwrap_or(Duration::ZERO);
        if due > Duration::ZERO {
            tokio::time::sleep(due.min(Duration::from_secs(3600))).await;
            continue;
        }
        tracing::info!(node = %name, "asking for the serving certificate of the agent API");
        match request_certificate(&client, &Request::serving(&name, ip), Duration::from_secs(3600)).await {
            Ok(cert) => match cert.save(&path).and_then(|()| store.set(&cert)) {
                Ok(()) => {
                    tracing::info!(node = %name, "serving certificate issued");
                    current = Some(cert);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot use the issued serving certificate; retrying in 30 s");
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "no serving certificate; logs, exec and port-forward fail until there is one; retrying in 30 s");
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    }
}
