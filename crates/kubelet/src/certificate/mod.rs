//! The node's identities, as the kubelet's TLS bootstrapping and certificate manager: a
//! client certificate (`system:node:<name>` in `system:nodes`) obtained through a
//! `kubernetes.io/kube-apiserver-client-kubelet` CertificateSigningRequest, a serving
//! certificate for the agent's HTTPS API (`kubernetes.io/kubelet-serving`, the node's name and
//! address), both kept in the data directory and renewed through new requests at 70–84% of
//! their lifetime (upstream's jittered rotation deadline).
//!
//! `discovery.rs` finds and pins the cluster CA from a join token; `csr.rs` asks for a
//! certificate and waits for it; `client.rs` is the API client whose certificate can change
//! under it; `serving.rs` keeps the serving certificate.

pub mod client;
pub mod csr;
pub mod discovery;
pub mod serving;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

pub use client::{NodeIdentity, RotatingClient};
pub use serving::ServingCertificate;

/// Where a joined node keeps its identity, under its data directory (as the kubelet's
/// `kubelet.conf` and `pki/`).
pub struct Paths {
    pub kubeconfig: PathBuf,
    pub ca: PathBuf,
    pub client: PathBuf,
    pub serving: PathBuf,
}

impl Paths {
    pub fn new(data_dir: &Path) -> Paths {
        let pki = data_dir.join("pki");
        Paths {
            kubeconfig: data_dir.join("kubelet.kubeconfig"),
            ca: pki.join("ca.crt"),
            client: pki.join("kubelet-client-current.pem"),
            serving: pki.join("kubelet-server-current.pem"),
        }
    }
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct KeyedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl KeyedCert {
    /// Reads a file holding both (the kubelet's `*-current.pem`).
    pub fn load(path: &Path) -> Option<KeyedCert> {
        let text = std::fs::read_to_string(path).ok()?;
        let key_start = ["-----BEGIN PRIVATE KEY-----", "-----BEGIN EC PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----"].iter().filter_map(|m| text.find(m)).min()?;
        let cert_start = text.find("-----BEGIN CERTIFICATE-----")?;
        let (cert_pem, key_pem) = if key_start > cert_start { (&text[cert_start..key_start], &text[key_start..]) } else { (&text[cert_start..], &text[key_start..cert_start]) };
        Some(KeyedCert { cert_pem: cert_pem.trim().to_string() + "\n", key_pem: key_pem.trim().to_string() + "\n" })
    }

    /// Writes both to `path`, owner-only, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_private(path, &format!("{}{}", self.cert_pem, self.key_pem))
    }

    pub fn validity(&self) -> Option<Validity> {
        Validity::of(&self.cert_pem)
    }
}

/// When a certificate is valid, in seconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Validity {
    pub fn of(cert_pem: &str) -> Option<Validity> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
        let cert = pem.parse_x509().ok()?;
        Some(Validity { not_before: cert.validity().not_before.timestamp(), not_after: cert.validity().not_after.timestamp() })
    }

    pub fn expired(&self) -> bool {
        now_secs() >= self.not_after
    }

    /// Upstream's `nextRotationDeadline`: notBefore + 70% of the lifetime, plus up to 20% of
    /// that (jitter spreads a fleet's renewals).
    pub fn rotation_deadline(&self, jitter: f64) -> i64 {
        let total = (self.not_after - self.not_before).max(0) as f64;
        self.not_before + (total * 0.7 * (1.0 + 0.2 * jitter.clamp(0.0, 1.0))) as i64
    }

    /// How long from now until the rotation deadline (zero when passed).
    pub fn until_rotation(&self) -> Duration {
        let jitter = f64::from(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)) / 1e9;
        Duration::from_secs((self.rotation_deadline(jitter) - now_secs()).max(0) as u64)
    }
}

/// Writes a file atomically, readable only by its owner (it may hold a key).
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what: &str, e: std::io::Error| Error::Runtime(format!("cannot {what} {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp).map_err(|e| io("create", e))?;
    f.write_all(contents.as_bytes()).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))
}

/// The certificate of this node's HTTPS API as rustls serves it, replaceable while serving.
#[derive(Clone, Default)]
pub struct ServingStore(Arc<RwLock<Option<Arc<rustls::sign::CertifiedKey>>>>);

impl std::fmt::Debug for ServingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServingStore")
    }
}

impl ServingStore {
    pub fn set(&self, cert: &KeyedCert) -> Result<()> {
        let bad = |e: String| Error::Internal(format!("unusable serving certificate: {e}"));
        let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
            rustls_pemfile::certs(&mut cert.cert_pem.as_bytes()).collect::<std::result::Result<_, _>>().map_err(|e| bad(e.to_string()))?;
        let key = rustls_pemfile::private_key(&mut cert.key_pem.as_bytes()).map_err(|e| bad(e.to_string()))?.ok_or_else(|| bad("no key".into()))?;
        let key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| bad(e.to_string()))?;
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(rustls::sign::CertifiedKey::new(certs, key)));
        Ok(())
    }

    pub fn is_set(&self) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

/// Serves the current certificate; until there is one, handshakes fail, as the kubelet's
/// "no serving certificate available" while its serving CSR is pending.
impl rustls::server::ResolvesServerCert for ServingStore {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_deadline_is_70_to_84_percent() {
        let v = Validity { not_before: 1000, not_after: 2000 };
        assert_eq!(v.rotation_deadline(0.0), 1700);
        assert_eq!(v.rotation_deadline(1.0), 1840);
    }

    #[test]
    fn keyed_cert_round_trip() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["a".to_string()]).expect("params").self_signed(&key).expect("cert");
        let kc = KeyedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        let dir = std::env::temp_dir().join(format!("timonier-keyed-{}", std::process::id()));
        let path = dir.join("x.pem");
        kc.save(&path).expect("save");
        let back = KeyedCert::load(&path).expect("load");
        assert_eq!((back.cert_pem.trim(), back.key_pem.trim()), (kc.cert_pem.trim(), kc.key_pem.trim()));
        assert!(back.validity().is_some_and(|v| !v.expired()));
        let store = ServingStore::default();
        store.set(&back).expect("usable");
        assert!(store.is_set());
        let _ = std::fs::remove_dir_all(dir);
    }
}
