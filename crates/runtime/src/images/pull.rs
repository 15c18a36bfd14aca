//! Pulling images from registries (OCI distribution API, via `oci-client`): the mirrors of
//! [`RegistriesConfig`] first, then the registry itself; multi-arch indexes resolved to this
//! machine's platform; every blob streamed to the store ([`ImageStore::write_blob`], which
//! verifies its digest) and the manifest committed under the reference as the user wrote it.

use std::io::{self, Read};

use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::error::Error;
use super::reference::normalize;
use super::registries::{Credentials, Endpoint, RegistriesConfig};
use super::store::{Image, ImageStore};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPT: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// How long to wait for a TCP (and TLS) connection to an endpoint before trying the next.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a read may stall in the middle of a transfer.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a pull failed. The `Display` text is what goes after `Failed to pull image "x": ` in
/// a pod event.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// No endpoint has this repository or tag (manifest unknown, name unknown, 404).
    #[error("failed to resolve reference {reference:?}: {reference}: not found")]
    NotFound {
        /// The reference, normalized.
        reference: String,
        /// What the registry said, per endpoint.
        detail: String,
    },
    /// The registry refused the credentials, or wants some and got none.
    #[error("failed to resolve reference {reference:?}: pull access denied, repository does not exist or may require authorization: {detail}")]
    Unauthorized {
        /// The reference, normalized.
        reference: String,
        /// What the registry said.
        detail: String,
    },
    /// No endpoint could be reached (connection refused, timeout, DNS, TLS).
    #[error("failed to resolve reference {reference:?}: no registry endpoint reachable: {}", endpoints.join("; "))]
    Unreachable {
        /// The reference, normalized.
        reference: String,
        /// Each endpoint tried, with why it failed (`http://127.0.0.1:5000: connection refused`).
        endpoints: Vec<String>,
    },
    /// The reference is malformed, or the registry served something unusable: a digest
    /// mismatch, an unsupported media type or schema, no manifest for this platform.
    #[error("{reference}: {reason}")]
    Invalid {
        /// The reference (normalized when it could be).
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// The image store failed (disk full, permissions): nothing the registry can fix.
    #[error("{reference}: storing the image failed: {source}")]
    Store {
        /// The reference, normalized.
        reference: String,
        /// The store's error.
        #[source]
        source: Error,
    },
}

impl PullError {
    /// A short reason in the kubelet's vocabulary: `ErrImagePull` for every pull failure,
    /// except `InvalidImageName` for a reference that cannot be parsed.
    pub fn kubelet_reason(&self) -> &'static str {
        match self {
            PullError::Invalid { reason, .. } if reason.starts_with("invalid reference") => {
                "InvalidImageName"
            }
            _ => "ErrImagePull",
        }
    }
}

/// What went wrong at one endpoint.
enum Failure {
    NotFound(String),
    Unauthorized(String),
    Unreachable(String),
    Invalid(String),
    Store(Error),
}

/// The parts of a normalized reference.
struct Parsed {
    normalized: String,
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn parse(normalized: &str) -> Parsed {
    let (name, digest) = match normalized.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (normalized, None),
    };
    let (name, tag) = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], Some(name[i + 1..].to_string())),
        _ => (name, None),
    };
    let (registry, repository) = name
        .split_once('/')
        .expect("normalized references have a registry");
    Parsed {
        normalized: normalized.to_string(),
        registry: registry.to_string(),
        repository: repository.to_string(),
        tag,
        digest,
    }
}

/// Pulls `reference` (`busybox`, `gcr.io/google-samples/kubernetes-bootcamp:v1`,
/// `name@sha256:…`) into `store`, trying the mirrors `registries` lists for its registry in
/// order and then the registry itself, and records it under the reference as given
/// (normalized), whichever endpoint served it. `creds` (from the pod's `imagePullSecrets`)
/// are used for the registry itself and for mirrors that have no `auth` of their own in
/// `registries.configs`. Blobs already in the store are not downloaded again. Safe to call
/// concurrently, also for the same image.
pub async fn pull(
    store: &ImageStore,
    reference: &str,
    registries: &RegistriesConfig,
    creds: Option<&Credentials>,
) -> Result<Image, PullError> {
    let normalized = normalize(reference).map_err(|e| PullError::Invalid {
        reference: reference.to_string(),
        reason: format!("invalid reference format: {e}"),
    })?;
    let parsed = parse(&normalized);
    let endpoints = registries.endpoints(&parsed.registry, &parsed.repository);
    let mut failures = Vec::new();
    for ep in &endpoints {
        match pull_from(store, ep, &parsed, creds).await {
            Ok(image) => return Ok(image),
            Err(Failure::Store(source)) => {
                return Err(PullError::Store {
                    reference: normalized,
                    source,
                })
            }
            Err(f) => failures.push((ep.url(), f)),
        }
    }
    // A definite answer (not found, denied, invalid) from any endpoint beats "unreachable".
    let reference = normalized.clone();
    for (url, f) in &failures {
        match f {
            Failure::NotFound(d) => {
                return Err(PullError::NotFound {
                    reference,
                    detail: format!("{url}: {d}"),
                })
            }
            Failure::Unauthorized(d) => {
                return Err(PullError::Unauthorized {
                    reference,
                    detail: format!("{url}: {d}"),
                })
            }
            Failure::Invalid(d) => {
                return Err(PullError::Invalid {
                    reference,
                    reason: format!("{d} (from {url})"),
                })
            }
            _ => {}
        }
    }
    Err(PullError::Unreachable {
        reference,
        endpoints: failures
            .into_iter()
            .map(|(url, f)| match f {
                Failure::Unreachable(d) => format!("{url}: {d}"),
                _ => url,
            })
            .collect(),
    })
}

fn classify(e: OciDistributionError) -> Failure {
    use OciDistributionError as E;
    match e {
        E::ImageManifestNotFoundError(m) => Failure::NotFound(m),
        E::RegistryError { envelope, url } => {
            let codes: Vec<_> = envelope.errors.iter().map(|e| &e.code).collect();
            let msg = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join(", ");
            let msg = format!("{msg} ({url})");
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                Failure::NotFound(msg)
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                Failure::Unauthorized(msg)
            } else {
                Failure::Invalid(format!("registry error: {msg}"))
            }
        }
        E::UnauthorizedError { url } => Failure::Unauthorized(format!("401 Unauthorized ({url})")),
        E::AuthenticationFailure(m) => Failure::Unauthorized(format!("authentication failed: {m}")),
        E::ServerError { code, url, message } => match code {
            404 => Failure::NotFound(format!("404 ({url})")),
            401 | 403 => Failure::Unauthorized(format!("{code} ({url}): {}", message.trim())),
            _ if code >= 500 => {
                Failure::Unreachable(format!("server error {code} ({url}): {}", message.trim()))
            }
            _ => Failure::Invalid(format!(
                "unexpected HTTP {code} ({url}): {}",
                message.trim()
            )),
        },
        E::RequestError(r) => {
            let mut msg = r.to_string();
            let mut src = std::error::Error::source(&r);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            if r.is_timeout() {
                Failure::Unreachable(format!("timeout: {msg}"))
            } else if r.is_connect() || r.is_request() {
                Failure::Unreachable(msg)
            } else {
                Failure::Unreachable(format!("transfer failed: {msg}"))
            }
        }
        E::IoError(e) => Failure::Unreachable(format!("transfer failed: {e}")),
        E::DigestError(e) => Failure::Invalid(format!("digest mismatch: {e}")),
        E::UnsupportedMediaTypeError(m) => Failure::Invalid(format!("unsupported media type {m}")),
        E::UnsupportedSchemaVersionError(v) => {
            Failure::Invalid(format!("unsupported manifest schema version {v}"))
        }
        other => Failure::Invalid(other.to_string()),
    }
}

fn oci<T>(r: Result<T, OciDistributionError>) -> Result<T, Failure> {
    r.map_err(classify)
}

fn store_err(e: Error) -> Failure {
    match e {
        Error::DigestMismatch { .. } | Error::Invalid { .. } | Error::Layer { .. } => {
            Failure::Invalid(e.to_string())
        }
        e => Failure::Store(e),
    }
}

/// The OCI platform architecture of this machine.
fn this_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        a => a,
    }
}

async fn pull_from(
    store: &ImageStore,
    ep: &Endpoint,
    p: &Parsed,
    creds: Option<&Credentials>,
) -> Result<Image, Failure> {
    // The registry crate never picks a TLS provider itself: the workspace's is ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = ClientConfig {
        protocol: if ep.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: ep.insecure_skip_verify,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        ..ClientConfig::default()
    };
    let client = Client::try_from(config)
        .map_err(|e| Failure::Invalid(format!("cannot build an HTTP client: {e}")))?;
    // Mirrors use their own configured credentials first; the registry itself the pod's.
    let chosen = if ep.upstream {
        creds.cloned().or_else(|| ep.credentials.clone())
    } else {
        ep.credentials.clone().or_else(|| creds.cloned())
    };
    let auth = match &chosen {
        Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
        None => RegistryAuth::Anonymous,
    };
    let reference = match (&p.digest, &p.tag) {
        (Some(d), _) => Reference::with_digest(ep.host.clone(), ep.repository.clone(), d.clone()),
        (None, Some(t)) => Reference::with_tag(ep.host.clone(), ep.repository.clone(), t.clone()),
        (None, None) => {
            Reference::with_tag(ep.host.clone(), ep.repository.clone(), "latest".into())
        }
    };
    oci(client
        .auth(&reference, &auth, RegistryOperation::Pull)
        .await)?;
    let (mut manifest, _) = oci(client.pull_manifest_raw(&reference, &auth, ACCEPT).await)?;
    if let Some(d) = &p.digest {
        check_digest(&manifest, d)?;
    }
    let mut m = parse_manifest(&manifest)?;
    let mut depth = 0;
    while m.get("manifests").is_some() {
        depth += 1;
        if depth > 2 {
            return Err(Failure::Invalid("nested image indexes".into()));
        }
        let arch = this_arch();
        let pick = m["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["platform"]["os"] == "linux" && d["platform"]["architecture"] == arch)
            .ok_or_else(|| {
                let have: Vec<String> = m["manifests"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        format!(
                            "{}/{}",
                            d["platform"]["os"].as_str().unwrap_or("?"),
                            d["platform"]["architecture"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                Failure::Invalid(format!(
                    "no matching manifest for linux/{arch} in the manifest list (it has {})",
                    have.join(", ")
                ))
            })?;
        let digest = pick["digest"]
            .as_str()
            .ok_or_else(|| Failure::Invalid("an index entry has no digest".into()))?
            .to_string();
        let by_digest =
            Reference::with_digest(ep.host.clone(), ep.repository.clone(), digest.clone());
        manifest = oci(client.pull_manifest_raw(&by_digest, &auth, ACCEPT).await)?.0;
        check_digest(&manifest, &digest)?;
        m = parse_manifest(&manifest)?;
    }
    let mut blobs = vec![descriptor(&m["config"])?];
    for l in m["layers"].as_array().into_iter().flatten() {
        let d = descriptor(l)?;
        super::compression::check_layer_media_type(&d.media_type).map_err(Failure::Invalid)?;
        blobs.push(d);
    }
    for d in &blobs {
        let present = store
            .blob_path(&d.digest)
            .map_err(|e| Failure::Invalid(e.to_string()))?
            .exists();
        if !present {
            fetch_blob(store, &client, &reference, d).await?;
        }
    }
    let store2 = store.clone();
    let refs = vec![p.normalized.clone()];
    tokio::task::spawn_blocking(move || store2.commit(&manifest, &refs))
        .await
        .map_err(|e| {
            Failure::Store(Error::Io {
                path: store.root().to_path_buf(),
                source: io::Error::other(format!("commit task failed: {e}")),
            })
        })?
        .map_err(store_err)
}

fn parse_manifest(bytes: &[u8]) -> Result<Value, Failure> {
    let m: Value = serde_json::from_slice(bytes)
        .map_err(|e| Failure::Invalid(format!("manifest is not JSON: {e}")))?;
    if m["schemaVersion"].as_i64() != Some(2) {
        return Err(Failure::Invalid(format!(
            "unsupported manifest schema version {} (Docker schema 1 images are not supported; re-push the image)",
            m["schemaVersion"]
        )));
    }
    let media = m["mediaType"].as_str().unwrap_or("");
    if !media.is_empty() && !ACCEPT.contains(&media) {
        return Err(Failure::Invalid(format!(
            "unsupported manifest media type {media:?}"
        )));
    }
    Ok(m)
}

fn check_digest(bytes: &[u8], expected: &str) -> Result<(), Failure> {
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    if actual != expected {
        return Err(Failure::Invalid(format!(
            "manifest digest mismatch: expected {expected}, got {actual}"
        )));
    }
    Ok(())
}

fn descriptor(v: &Value) -> Result<OciDescriptor, Failure> {
    let digest = v["digest"]
        .as_str()
        .ok_or_else(|| Failure::Invalid("a manifest descriptor has no digest".into()))?;
    super::reference::validate_digest(digest).map_err(|e| Failure::Invalid(e.to_string()))?;
    Ok(OciDescriptor {
        media_type: v["mediaType"].as_str().unwrap_or("").to_string(),
        digest: digest.to_string(),
        size: v["size"].as_i64().unwrap_or(0),
        ..OciDescriptor::default()
    })
}

/// Streams one blob into the store: the HTTP body flows through a small bounded channel to a
/// blocking task running [`ImageStore::write_blob`], so at most a few chunks are in memory.
async fn fetch_blob(
    store: &ImageStore,
    client: &Client,
    reference: &Reference,
    d: &OciDescriptor,
) -> Result<(), Failure> {
    let mut stream = oci(client.pull_blob_stream(reference, d).await)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(16);
    let store2 = store.clone();
    let digest = d.digest.clone();
    let writer = tokio::task::spawn_blocking(move || {
        store2.write_blob(
            ChannelReader {
                rx,
                current: bytes::Bytes::new(),
            },
            &digest,
        )
    });
    let mut transfer_error = None;
    while let Some(chunk) = stream.next().await {
        let failed = chunk.is_err();
        if let Err(e) = &chunk {
            transfer_error = Some(e.to_string());
        }
        let chunk = chunk.map_err(|e| io::Error::new(e.kind(), e.to_string()));
        if tx.send(chunk).await.is_err() || failed {
            break; // the writer stopped (its error is below), or the transfer broke
        }
    }
    drop(tx);
    let result = writer.await.map_err(|e| {
        Failure::Store(Error::Io {
            path: store.root().to_path_buf(),
            source: io::Error::other(format!("blob writer task failed: {e}")),
        })
    })?;
    match result {
        Ok(_) => Ok(()),
        Err(_) if transfer_error.is_some() => Err(Failure::Unreachable(format!(
            "transfer of blob {} failed: {}",
            d.digest,
            transfer_error.unwrap_or_default()
        ))),
        Err(e) => Err(store_err(e)),
    }
}

/// A blocking `Read` over chunks sent by the async side.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_normalized_references() {
        let p = parse("docker.io/library/busybox:latest");
        assert_eq!(
            (p.registry.as_str(), p.repository.as_str()),
            ("docker.io", "library/busybox")
        );
        assert_eq!(p.tag.as_deref(), Some("latest"));
        let d = format!("sha256:{}", "a".repeat(64));
        let p = parse(&format!("127.0.0.1:5000/x/y@{d}"));
        assert_eq!(p.registry, "127.0.0.1:5000");
        assert_eq!(p.repository, "x/y");
        assert_eq!(p.tag, None);
        assert_eq!(p.digest.as_deref(), Some(d.as_str()));
    }
}
