//! Calling a webhook: where it is (`clientConfig.url`, or a Service resolved to a ready
//! endpoint of its EndpointSlices, as `object_proxy.rs` reaches services), TLS verified
//! against its `caBundle` (the system's roots when none), one POST within its timeout.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use rustls::pki_types::ServerName;
use serde_json::Value;

use crate::state::ApiState;

/// Upstream reads at most this much of a webhook's answer.
const MAX_RESPONSE: usize = 3 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("{0}")]
    Config(String),
    /// Upstream's rest client wording: `Post "<url>": <cause>`.
    #[error("failed to call webhook: Post \"{url}\": {cause}")]
    Transport { url: String, cause: String },
    #[error("failed to call webhook: the server responded with the status code {code} but did not return more information")]
    Status { code: u16 },
}

/// Where one call goes.
pub(crate) struct Target {
    /// The URL as errors show it (upstream's, with the `timeout` query).
    pub url: String,
    connect: String,
    server_name: ServerName<'static>,
    host: String,
    path: String,
}

fn transport(url: &str, cause: impl ToString) -> CallError {
    CallError::Transport { url: url.to_string(), cause: cause.to_string() }
}

/// Resolves a webhook's `clientConfig`.
pub(crate) fn resolve(state: &ApiState, cc: &Value, timeout: Duration) -> Result<Target, CallError> {
    let timeout_q = format!("timeout={}s", timeout.as_secs());
    if let Some(url) = cc.get("url").and_then(Value::as_str) {
        let uri: Uri = url.parse().map_err(|e| CallError::Config(format!("invalid webhook url {url:?}: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(CallError::Config(format!("webhook url {url:?} must use https")));
        }
        let host = uri.host().ok_or_else(|| CallError::Config(format!("webhook url {url:?} has no host")))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(443);
        let path = match uri.query() {
            Some(q) => format!("{}?{q}&{timeout_q}", uri.path()),
            None => format!("{}?{timeout_q}", uri.path()),
        };
        let server_name = ServerName::try_from(bare.clone()).map_err(|e| CallError::Config(format!("invalid webhook host {host:?}: {e}")))?;
        let connect = if bare.contains(':') { format!("[{bare}]:{port}") } else { format!("{bare}:{port}") };
        let shown = format!("https://{host}:{port}{path}");
        return Ok(Target { url: shown, connect, server_name, host: format!("{host}:{port}"), path });
    }
    let svc = cc.get("service").ok_or_else(|| CallError::Config("clientConfig has neither url nor service".into()))?;
    let ns = svc.get("namespace").and_then(Value::as_str).unwrap_or("default");
    let name = svc.get("name").and_then(Value::as_str).unwrap_or("");
    let port = svc.get("port").and_then(Value::as_u64).unwrap_or(443);
    let path = svc.get("path").and_then(Value::as_str).filter(|p| !p.is_empty()).unwrap_or("/");
    let path = format!("{path}?{timeout_q}");
    // TLS is verified for the Service's DNS name, as upstream does.
    let dns = format!("{name}.{ns}.svc");
    let url = format!("https://{dns}:{port}{path}");
    let connect = service_endpoint(state, ns, name, port).map_err(|cause| transport(&url, cause))?;
    let server_name = ServerName::try_from(dns.clone()).map_err(|e| CallError::Config(format!("invalid service name {dns:?}: {e}")))?;
    Ok(Target { url, connect, server_name, host: format!("{dns}:{port}"), path })
}

/// A ready endpoint (`ip:port`) of Service `ns/name` for its port `port`.
fn service_endpoint(state: &ApiState, ns: &str, name: &str, port: u64) -> Result<String, String> {
    let cached = |group: &str, version: &str, plural: &str| {
        state.def(group, version, plural).ok().and_then(|d| state.cache_of(&d).ok().map(|c| (d, c)))
    };
    let (svc_def, svc_cache) = cached("", "v1", "services").ok_or("the service cache is not ready")?;
    let svc = svc_cache.get(&svc_def.key(ns, name)).ok_or_else(|| format!("service \"{name}\" not found"))?;
    let sp = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .and_then(|ps| ps.iter().find(|p| p["port"].as_u64() == Some(port)).cloned())
        .ok_or_else(|| format!("no service port {port} found for service \"{name}\""))?;
    let port_name = sp["name"].as_str().unwrap_or("").to_string();
    let (es_def, es_cache) = cached("discovery.k8s.io", "v1", "endpointslices").ok_or("the EndpointSlice cache is not ready")?;
    for (_, slice) in es_cache.list(&es_def.namespace_prefix(ns)) {
        if slice.pointer("/metadata/labels/kubernetes.io~1service-name").and_then(Value::as_str) != Some(name) {
            continue;
        }
        let Some(ep_port) = slice["ports"].as_array().into_iter().flatten().find(|p| p["name"].as_str().unwrap_or("") == port_name).and_then(|p| p["port"].as_u64()) else {
            continue;
        };
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            // An endpoint is ready unless it says otherwise.
            if ep.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            if let Some(ip) = ep["addresses"].as_array().and_then(|a| a.first()).and_then(Value::as_str) {
                return Ok(if ip.contains(':') { format!("[{ip}]:{ep_port}") } else { format!("{ip}:{ep_port}") });
            }
        }
    }
    Err(format!("no endpoints available for service \"{name}\""))
}

fn tls_config(ca_bundle: Option<&str>) -> Result<Arc<rustls::ClientConfig>, CallError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_bundle.filter(|b| !b.is_empty()) {
        Some(b64) => {
            let pem = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| CallError::Config(format!("invalid caBundle: {e}")))?;
            let text = String::from_utf8_lossy(&pem);
            let certs = crate::server::certs(&text).map_err(|e| CallError::Config(format!("invalid caBundle: {e}")))?;
            for c in certs {
                roots.add(c).map_err(|e| CallError::Config(format!("invalid caBundle: {e}")))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CallError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// POSTs `body` (JSON) and returns the answer's body; the whole call is bounded by `timeout`.
pub(crate) async fn post(target: &Target, ca_bundle: Option<&str>, body: Vec<u8>, timeout: Duration) -> Result<Bytes, CallError> {
    let tls = tls_config(ca_bundle)?;
    match tokio::time::timeout(timeout, exchange(target, tls, body)).await {
        Ok(r) => r,
        Err(_) => Err(transport(&target.url, "context deadline exceeded")),
    }
}

async fn exchange(target: &Target, tls: Arc<rustls::ClientConfig>, body: Vec<u8>) -> Result<Bytes, CallError> {
    let url = &target.url;
    let tcp = tokio::net::TcpStream::connect(&target.connect).await.map_err(|e| transport(url, format!("dial tcp {}: connect: {e}", target.connect)))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(|e| transport(url, format!("tls: failed to verify certificate: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| transport(url, e))?;
    tokio::spawn(conn);
    let req = Request::post(target.path.as_str())
        .header(header::HOST, target.host.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, */*")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| CallError::Config(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| transport(url, e))?;
    let code = resp.status().as_u16();
    let bytes = Limited::new(resp.into_body(), MAX_RESPONSE).collect().await.map_err(|e| transport(url, e))?.to_bytes();
    if !(200..300).contains(&code) {
        return Err(CallError::Status { code });
    }
    Ok(bytes)
}
