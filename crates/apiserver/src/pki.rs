//! The cluster's certificates: a CA made at first start, the API server's serving certificate
//! and the admin's client certificate, and the front-proxy CA (as kubeadm's `front-proxy-ca`:
//! a CA of its own that signs only the aggregator's client certificate, so that an extension
//! API server can tell the proxy, trusted to assert users in headers, from users presenting
//! client certificates of the cluster CA), all kept in the data directory and reused
//! afterwards, and the kubeconfig that points kubectl at them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot make certificates: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{} is not a usable certificate or key ({reason}); remove the pki directory to make new ones", path.display())]
    Bad { path: PathBuf, reason: String },
}

/// PEM files of one certificate and its key.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster's PKI, loaded from (or created in) `<data-dir>/pki`.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca: CertPair,
    pub serving: CertPair,
    pub admin: CertPair,
    /// Signs the aggregator's `front-proxy-client` certificate, and nothing else; published as
    /// `requestheader-client-ca-file`.
    pub front_proxy_ca: CertPair,
}

/// The name extension API servers accept in the front-proxy's certificate
/// (`requestheader-allowed-names`), as kubeadm's `front-proxy-client`.
pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::Io { action: "read", path: path.into(), source: e }),
    }
}

/// Writes a file atomically (temp file + rename), private to the owner when it holds a key.
pub(crate) fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let io = |action, e| PkiError::Io { action, path: path.into(), source: e };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    f.write_all(contents.as_bytes()).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))
}

fn load_pair(dir: &Path, name: &str) -> Result<Option<CertPair>, PkiError> {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    match (read(&cert)?, read(&key)?) {
        (Some(cert_pem), Some(key_pem)) => {
            KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Bad { path: key, reason: e.to_string() })?;
            Ok(Some(CertPair { cert_pem, key_pem }))
        }
        _ => Ok(None),
    }
}

fn save_pair(dir: &Path, name: &str, pair: &CertPair) -> Result<(), PkiError> {
    write(&dir.join(format!("{name}.key")), &pair.key_pem, true)?;
    write(&dir.join(format!("{name}.crt")), &pair.cert_pem, false)
}

/// Valid from yesterday (clock skew between hosts) for `days` days.
fn validity(params: &mut CertificateParams, days: i64) {
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
    let ymd = |d: jiff::civil::Date| rcgen::date_time_ymd(d.year() as i32, d.month() as u8, d.day() as u8);
    let span = |n: i64| jiff::Span::new().days(n);
    params.not_before = ymd(today.checked_sub(span(1)).unwrap_or(today));
    params.not_after = ymd(today.checked_add(span(days)).unwrap_or(today));
}

impl Pki {
    /// Loads the PKI from `dir`, creating what is missing. `sans` are the serving
    /// certificate's extra names and addresses.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PkiError::Io { action: "create", path: dir.into(), source: e })?;
        let load_or_make_ca = |name: &str, cn: &str| -> Result<CertPair, PkiError> {
            match load_pair(dir, name)? {
                Some(ca) => Ok(ca),
                None => {
                    let ca = make_ca(cn)?;
                    save_pair(dir, name, &ca)?;
                    Ok(ca)
                }
            }
        };
        let ca = load_or_make_ca("ca", "timonier-ca")?;
        // Made on the first start that lacks it (data directories from before it existed too).
        let front_proxy_ca = load_or_make_ca("front-proxy-ca", "front-proxy-ca")?;
        let ca_key = KeyPair::from_pem(&ca.key_pem)
            .map_err(|e| PkiError::Bad { path: dir.join("ca.key"), reason: e.to_string() })?;
        let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
            .map_err(|e| PkiError::Bad { path: dir.join("ca.crt"), reason: e.to_string() })?;
        let serving = match load_pair(dir, "serving")? {
            Some(s) if covers(&s.cert_pem, sans) => s,
            _ => {
                let s = make_serving(&issuer, sans)?;
                save_pair(dir, "serving", &s)?;
                s
            }
        };
        let admin = match load_pair(dir, "admin")? {
            Some(a) => a,
            None => {
                let a = make_client(&issuer, "timonier-admin", &["system:masters"])?;
                save_pair(dir, "admin", &a)?;
                a
            }
        };
        Ok(Pki { dir: dir.into(), ca, serving, admin, front_proxy_ca })
    }

    /// The aggregator's client certificate (upstream's `--proxy-client-cert-file`), CN
    /// `front-proxy-client`, signed by the front-proxy CA; made at each start.
    pub fn issue_front_proxy_client(&self) -> Result<CertPair, PkiError> {
        let key = KeyPair::from_pem(&self.front_proxy_ca.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.front_proxy_ca.cert_pem, key)?;
        make_client(&issuer, FRONT_PROXY_CLIENT, &[])
    }

    /// A client certificate signed by the cluster CA (for node agents and tests).
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<CertPair, PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca.cert_pem, ca_key)?;
        make_client(&issuer, user, groups)
    }

    /// A node agent's serving certificate for its HTTPS API (what the `kubelet-serving`
    /// signer issues: CN `system:node:<node>`, O `system:nodes`, the node's names), issued
    /// directly for the agent running in the server's own process.
    pub fn issue_kubelet_serving(&self, node: &str, sans: &[String]) -> Result<CertPair, PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca.cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "system:nodes");
        dn.push(DnType::CommonName, format!("system:node:{node}"));
        params.distinguished_name = dn;
        params.subject_alt_names = san_types(sans)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, 365);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A kubeconfig with cluster, user and context all named `name`, embedding the CA and the
    /// admin's certificate.
    pub fn admin_kubeconfig(&self, server: &str, name: &str) -> String {
        self.kubeconfig_for(server, name, &self.admin)
    }

    /// A kubeconfig as [`Pki::admin_kubeconfig`], for another client certificate.
    pub fn kubeconfig_for(&self, server: &str, name: &str, client: &CertPair) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\ncurrent-context: {name}\npreferences: {{}}\n",
            ca = b64(&self.ca.cert_pem),
            cert = b64(&client.cert_pem),
            key = b64(&client.key_pem),
        )
    }

    /// Writes the admin kubeconfig to `path` (atomically, owner-only).
    pub fn write_kubeconfig(&self, path: &Path, server: &str) -> Result<(), PkiError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| PkiError::Io { action: "create", path: dir.into(), source: e })?;
        }
        write(path, &self.admin_kubeconfig(server, "timonier"), true)
    }
}

fn make_ca(common_name: &str) -> Result<CertPair, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, 3650);
    let cert = params.self_signed(&key)?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

fn make_serving(issuer: &Issuer<'_, KeyPair>, sans: &[String]) -> Result<CertPair, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    params.distinguished_name = dn;
    params.subject_alt_names = san_types(sans)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, 365);
    let cert = params.signed_by(&key, issuer)?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

fn san_types(sans: &[String]) -> Result<Vec<SanType>, PkiError> {
    sans.iter()
        .map(|san| {
            Ok(match san.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(san.as_str().try_into()?),
            })
        })
        .collect()
}

/// The pins of a CA certificate (PEM), hex: the SHA-256 of its DER (what a `K10…` join token
/// carries) and of its SubjectPublicKeyInfo (kubeadm's `--discovery-token-ca-cert-hash
/// sha256:…`).
pub fn ca_hashes(cert_pem: &str) -> Option<(String, String)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let hex = |b: &[u8]| ring::digest::digest(&ring::digest::SHA256, b).as_ref().iter().map(|x| format!("{x:02x}")).collect::<String>();
    Some((hex(&pem.contents), hex(cert.public_key().raw)))
}

fn make_client(issuer: &Issuer<'_, KeyPair>, user: &str, groups: &[&str]) -> Result<CertPair, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    for g in groups {
        dn.push(DnType::OrganizationName, *g);
    }
    dn.push(DnType::CommonName, user);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, 365);
    let cert = params.signed_by(&key, issuer)?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Whether a serving certificate names every one of `sans` (else it is re-issued, e.g. when
/// the host got a new address).
fn covers(cert_pem: &str, sans: &[String]) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else { return false };
    let Ok(cert) = pem.parse_x509() else { return false };
    if !cert.validity().is_valid() {
        return false;
    }
    let Ok(Some(ext)) = cert.subject_alternative_name() else { return false };
    let names: Vec<String> = ext
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    sans.iter().all(|s| {
        let canon = s.parse::<IpAddr>().map(|ip| ip.to_string()).unwrap_or_else(|_| s.clone());
        names.contains(&canon)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer_cn(pem: &str) -> (String, String) {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        let cert = p.parse_x509().expect("x509");
        let cn = |n: &x509_parser::x509::X509Name| n.iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or("").to_string();
        (cn(cert.issuer()), cn(cert.subject()))
    }

    #[test]
    fn front_proxy_ca_is_separate_and_persists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Pki::load_or_create(dir.path(), &["127.0.0.1".into()]).expect("pki");
        assert_ne!(a.front_proxy_ca.cert_pem, a.ca.cert_pem);
        assert!(dir.path().join("front-proxy-ca.crt").exists() && dir.path().join("front-proxy-ca.key").exists());
        let b = Pki::load_or_create(dir.path(), &["127.0.0.1".into()]).expect("pki again");
        assert_eq!(a.front_proxy_ca.cert_pem, b.front_proxy_ca.cert_pem);
        let client = a.issue_front_proxy_client().expect("client");
        assert_eq!(issuer_cn(&client.cert_pem), ("front-proxy-ca".to_string(), FRONT_PROXY_CLIENT.to_string()));
    }
}
