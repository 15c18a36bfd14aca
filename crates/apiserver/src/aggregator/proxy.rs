//! Forwarding to extension API servers: where a non-local APIService's Service is served
//! (a ready EndpointSlice address — this server runs outside the pod network's Service
//! proxy, so it routes to endpoints as upstream's `--enable-aggregator-routing`), the TLS it
//! is reached with, and the proxy of client requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::DigitallySignedStruct;
use serde_json::Value;

use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::rbac::Attributes;
use crate::request::{verb, Endpoint, Query};
use crate::rest::meta_str;
use crate::server::{relay, Body};
use crate::state::ApiState;

/// Why a Service cannot be reached: upstream's condition reason and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unreachable {
    pub reason: &'static str,
    pub message: String,
}

/// Headers that belong to one connection, not to the forwarded request.
const HOP_BY_HOP: [&str; 8] = ["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];

/// The non-local APIService that serves this request's group version, if any.
pub fn target(state: &ApiState, endpoint: &Endpoint) -> Option<Arc<Value>> {
    let (group, version) = match endpoint {
        Endpoint::GroupVersion(g, v) => (g, v),
        Endpoint::Resource(p) if !p.group.is_empty() => (&p.group, &p.version),
        _ => return None,
    };
    let def = super::def(state).ok()?;
    let obj = state.cache_of(&def).ok()?.get(&def.key("", &format!("{version}.{group}")))?;
    obj.pointer("/spec/service").is_some_and(|s| !s.is_null()).then_some(obj)
}

/// The address of a ready endpoint of the APIService's Service, on the port behind
/// `spec.service.port`; or why there is none, with upstream's availability reasons.
pub fn resolve(state: &ApiState, api: &Value) -> Result<SocketAddr, Unreachable> {
    let svc_ref = api.pointer("/spec/service").unwrap_or(&Value::Null);
    let (ns, name) = (svc_ref["namespace"].as_str().unwrap_or(""), svc_ref["name"].as_str().unwrap_or(""));
    let port = svc_ref["port"].as_i64().unwrap_or(443);
    let access = |what: &'static str, e: ApiError| Unreachable { reason: what, message: format!("service/{name} in {ns:?} cannot be checked due to: {}", e.message) };
    let svc_def = state.def("", "v1", "services").map_err(|e| access("ServiceAccessError", e))?;
    let svc = state
        .cache_of(&svc_def)
        .map_err(|e| access("ServiceAccessError", e))?
        .get(&svc_def.key(ns, name))
        .ok_or_else(|| Unreachable { reason: "ServiceNotFound", message: format!("service/{name} in {ns:?} is not present") })?;
    let port_name = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_i64() == Some(port))
        .map(|p| p["name"].as_str().unwrap_or("").to_string())
        .ok_or_else(|| Unreachable { reason: "ServicePortError", message: format!("service/{name} in {ns:?} is not listening on port {port}") })?;
    let slice_def = state.def("discovery.k8s.io", "v1", "endpointslices").map_err(|e| access("EndpointsAccessError", e))?;
    let slices: Vec<Arc<Value>> = state
        .cache_of(&slice_def)
        .map_err(|e| access("EndpointsAccessError", e))?
        .list(&slice_def.namespace_prefix(ns))
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| s.pointer("/metadata/labels/kubernetes.io~1service-name").and_then(Value::as_str) == Some(name))
        .collect();
    if slices.is_empty() {
        return Err(Unreachable { reason: "EndpointsNotFound", message: format!("cannot find endpointslices for service/{name} in {ns:?}") });
    }
    for slice in &slices {
        let Some(port) = slice["ports"].as_array().into_iter().flatten().find(|p| p["name"].as_str().unwrap_or("") == port_name).and_then(|p| p["port"].as_u64()).and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        let ready = slice["endpoints"].as_array().into_iter().flatten().filter(|e| e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false));
        for ep in ready {
            if let Some(ip) = ep["addresses"].as_array().and_then(|a| a.first()).and_then(Value::as_str).and_then(|a| a.parse::<std::net::IpAddr>().ok()) {
                return Ok(SocketAddr::new(ip, port));
            }
        }
    }
    Err(Unreachable { reason: "MissingEndpoints", message: format!("endpointslices for service/{name} in {ns:?} have no addresses with port name {port_name:?}") })
}

/// Accepts any server certificate: `insecureSkipTLSVerify`.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS settings for one APIService: its `caBundle` as the only roots (the cluster CA when
/// it has none, where upstream would use the system roots), or no verification with
/// `insecureSkipTLSVerify`; the front-proxy client certificate presented.
fn build_tls(state: &ApiState, api: &Value) -> Result<Arc<rustls::ClientConfig>, String> {
    use base64::Engine;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
    let insecure = api.pointer("/spec/insecureSkipTLSVerify").and_then(Value::as_bool).unwrap_or(false);
    let builder = if insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
    } else {
        let pem = match api.pointer("/spec/caBundle").and_then(Value::as_str).filter(|c| !c.is_empty()) {
            Some(b64) => String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("caBundle is not base64: {e}"))?).into_owned(),
            None => state.ca_pem.get().cloned().unwrap_or_default(),
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in crate::server::certs(&pem)? {
            roots.add(c).map_err(|e| format!("bad caBundle certificate: {e}"))?;
        }
        builder.with_root_certificates(roots)
    };
    let mut cfg = match state.aggregator.client_cert.get() {
        Some(pair) => builder
            .with_client_auth_cert(crate::server::certs(&pair.cert_pem)?, crate::server::key(&pair.key_pem)?)
            .map_err(|e| format!("bad front-proxy client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The TLS settings of an APIService, built once per resourceVersion.
fn tls_for(state: &ApiState, api: &Value) -> Result<Arc<rustls::ClientConfig>, String> {
    let (name, rv) = (meta_str(api, "name").to_string(), meta_str(api, "resourceVersion").to_string());
    if let Some((have, cfg)) = state.aggregator.tls.read().unwrap_or_else(|e| e.into_inner()).get(&name) {
        if *have == rv {
            return Ok(cfg.clone());
        }
    }
    let cfg = build_tls(state, api)?;
    state.aggregator.tls.write().unwrap_or_else(|e| e.into_inner()).insert(name, (rv, cfg.clone()));
    Ok(cfg)
}

/// The name the extension server's certificate is checked against, as upstream:
/// `<service>.<namespace>.svc`.
fn server_name(api: &Value) -> String {
    let svc = api.pointer("/spec/service").unwrap_or(&Value::Null);
    format!("{}.{}.svc", svc["name"].as_str().unwrap_or(""), svc["namespace"].as_str().unwrap_or(""))
}

/// Sends one request to the APIService's extension server, over a new TLS connection.
pub async fn send<B>(state: &ApiState, api: &Value, req: Request<B>, connect_timeout: Duration) -> Result<Response<hyper::body::Incoming>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = resolve(state, api).map_err(|e| e.message)?;
    let tls = tls_for(state, api)?;
    let name = ServerName::try_from(server_name(api)).map_err(|e| e.to_string())?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("dial tcp {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| format!("tls: {e}"))
    };
    let stream = tokio::time::timeout(connect_timeout, connect).await.map_err(|_| format!("dial tcp {addr}: i/o timeout"))??;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        // With upgrades: a 101 hands the connection over to whoever waits on the response.
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "extension server connection ended");
        }
    });
    let mut req = req;
    if let Ok(h) = HeaderValue::from_str(&addr.to_string()) {
        req.headers_mut().insert(header::HOST, h);
    }
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// Sets the request-header authentication headers upstream's proxy sends: the user, each
/// group, and (when there are any) extras as `X-Remote-Extra-<key>`.
pub fn set_user(headers: &mut http::HeaderMap, user: &UserInfo) {
    if let Ok(v) = HeaderValue::from_str(&user.name) {
        headers.insert("x-remote-user", v);
    }
    for g in &user.groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            headers.append("x-remote-group", v);
        }
    }
}

/// Forwards a request for an aggregated group version to its extension server, once the
/// caller is authorized for it (upstream authorizes before the aggregator proxies).
pub async fn proxy(state: Arc<ApiState>, req: Request<hyper::body::Incoming>, endpoint: &Endpoint, user: UserInfo, api: Arc<Value>) -> ApiResult<Response<Body>> {
    if let Endpoint::Resource(path) = endpoint {
        let q = Query::parse(req.uri().query());
        let a = Attributes {
            verb: verb(req.method(), path, &q).into(),
            group: path.group.clone(),
            resource: path.resource.clone(),
            subresource: path.subresource.clone().unwrap_or_default(),
            namespace: path.namespace.clone(),
            name: path.name.clone().unwrap_or_default(),
            path: None,
        };
        if !state.authorize(&user, &a) {
            return Err(ApiState::forbidden(&user, &a));
        }
    }
    let available = super::available_condition(&api).is_some_and(|c| c["status"] == "True");
    if !available {
        return Err(ApiError::unavailable("service unavailable"));
    }
    let mut req = req;
    // An upgrade (exec, attach, port-forward: SPDY/3.1 or WebSocket) is forwarded with its
    // Connection and Upgrade headers; once the extension server switches protocols, the two
    // connections are spliced (upstream's UpgradeAwareHandler). Only HTTP/1.1 upgrades.
    let client_upgrade = is_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut out = Request::builder().method(parts.method).uri(path).body(body).map_err(|e| ApiError::internal(e.to_string()))?;
    copy_request_headers(&parts.headers, out.headers_mut(), client_upgrade.is_some());
    set_user(out.headers_mut(), &user);
    let mut resp = send(&state, &api, out, Duration::from_secs(10)).await.map_err(|e| {
        tracing::debug!(apiservice = meta_str(&api, "name"), error = %e, "cannot reach the extension server");
        ApiError::unavailable("service unavailable")
    })?;
    if let (Some(client), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, resp.status()) {
        let server = hyper::upgrade::on(&mut resp);
        let mut r = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in resp.headers() {
            r = r.header(k, v);
        }
        tokio::spawn(splice(client, server));
        return r.body(crate::server::full(Bytes::new())).map_err(|e| ApiError::internal(e.to_string()));
    }
    let (parts, body) = resp.into_parts();
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream").to_string();
    let mut r = relay(StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY), &content_type, body);
    for (k, v) in &parts.headers {
        if !HOP_BY_HOP.contains(&k.as_str()) && k != header::CONTENT_LENGTH && k != header::CONTENT_TYPE {
            r.headers_mut().append(k.clone(), v.clone());
        }
    }
    Ok(r)
}

/// Whether a request asks to switch protocols: HTTP/1.1 with `Connection: upgrade` and an
/// `Upgrade` header.
fn is_upgrade<B>(req: &Request<B>) -> bool {
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    req.version() == http::Version::HTTP_11 && connection_upgrade && req.headers().contains_key(header::UPGRADE)
}

/// The caller's headers the extension server gets: not the hop-by-hop ones (but Connection
/// and Upgrade of an upgrade), and not the caller's credentials and identity claims — the
/// extension server learns the user from the headers this server sets.
fn copy_request_headers(from: &http::HeaderMap, to: &mut http::HeaderMap, upgrade: bool) {
    for (k, v) in from {
        let n = k.as_str();
        let kept_for_upgrade = upgrade && (k == header::CONNECTION || k == header::UPGRADE);
        if (HOP_BY_HOP.contains(&n) && !kept_for_upgrade) || k == header::AUTHORIZATION || k == header::HOST || n.starts_with("x-remote-") || n.starts_with("impersonate-") {
            continue;
        }
        to.append(k.clone(), v.clone());
    }
}

/// Copies bytes both ways between the client's and the extension server's upgraded
/// connections until either side closes.
async fn splice(client: hyper::upgrade::OnUpgrade, server: hyper::upgrade::OnUpgrade) {
    let (client, server) = match tokio::join!(client, server) {
        (Ok(c), Ok(s)) => (c, s),
        (c, s) => {
            tracing::debug!(client = ?c.err(), server = ?s.err(), "an upgrade through the aggregator failed");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut server = hyper_util::rt::TokioIo::new(server);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// Reads a small answer whole (discovery documents), refusing more than `limit` bytes.
pub async fn read_limited(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, String> {
    use http_body_util::BodyExt;
    http_body_util::Limited::new(body, limit).collect().await.map(|c| c.to_bytes()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_headers_and_server_name() {
        let mut h = http::HeaderMap::new();
        set_user(&mut h, &UserInfo { name: "alice".into(), groups: vec!["dev".into(), "system:authenticated".into()] });
        assert_eq!(h.get("x-remote-user").and_then(|v| v.to_str().ok()), Some("alice"));
        assert_eq!(h.get_all("x-remote-group").iter().count(), 2);
        assert_eq!(server_name(&json!({"spec": {"service": {"name": "api", "namespace": "ext"}}})), "api.ext.svc");
    }

    #[test]
    fn upgrades_keep_their_connection_headers_and_credentials_stay() {
        let req = |conn: &str, version| Request::get("/x").version(version).header(header::CONNECTION, conn).header(header::UPGRADE, "SPDY/3.1").body(()).unwrap_or_default();
        assert!(is_upgrade(&req("Upgrade", http::Version::HTTP_11)));
        assert!(is_upgrade(&req("keep-alive, upgrade", http::Version::HTTP_11)));
        assert!(!is_upgrade(&req("keep-alive", http::Version::HTTP_11)));
        assert!(!is_upgrade(&req("Upgrade", http::Version::HTTP_2)));
        let mut from = http::HeaderMap::new();
        for (k, v) in [("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-protocol", "v5.channel.k8s.io"), ("authorization", "Bearer t"),
            ("x-remote-user", "admin"), ("impersonate-user", "x"), ("keep-alive", "5")] {
            from.append(k, HeaderValue::from_static(v));
        }
        let names = |upgrade| {
            let mut to = http::HeaderMap::new();
            copy_request_headers(&from, &mut to, upgrade);
            let mut n: Vec<String> = to.keys().map(|k| k.to_string()).collect();
            n.sort();
            n
        };
        assert_eq!(names(true), ["connection", "sec-websocket-protocol", "upgrade"]);
        assert_eq!(names(false), ["sec-websocket-protocol"]);
    }
}
