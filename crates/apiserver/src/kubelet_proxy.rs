//! Calls from the API server to node agents: `pods/log`, exec, attach and port-forward are
//! answered by the agent of the pod's node on its HTTPS port, reached at the node's InternalIP
//! with the API server's kubelet-client certificate. The agent's serving certificate is
//! verified against the cluster CA for that address (upstream's
//! `--kubelet-certificate-authority`): agents get theirs from the CA, through a
//! `kubernetes.io/kubelet-serving` CertificateSigningRequest or, in the server's own process,
//! directly.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::pki::CertPair;
use crate::server::Body;
use crate::state::ApiState;

/// The TLS client configuration for calls to agents: `client` as our certificate, the agents'
/// certificates checked against the cluster CA (`ca_pem`).
pub fn client_tls(client: &CertPair, ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::server::certs(ca_pem)? {
        roots.add(c).map_err(|e| format!("bad cluster CA: {e}"))?;
    }
    let certs = crate::server::certs(&client.cert_pem)?;
    let key = crate::server::key(&client.key_pem)?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("bad kubelet client certificate: {e}"))?;
    Ok(Arc::new(cfg))
}

/// Where the agent of `node` listens: its InternalIP and `daemonEndpoints.kubeletEndpoint`.
fn node_endpoint(state: &ApiState, node: &str) -> ApiResult<std::net::SocketAddr> {
    let def = state.def("", "v1", "nodes")?;
    let obj = state.cache_of(&def)?.get(&def.key("", node)).ok_or_else(|| ApiError::not_found(&def, node))?;
    let ip = obj
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .and_then(|x| x["address"].as_str())
        .and_then(|s| s.parse::<std::net::IpAddr>().ok())
        .ok_or_else(|| ApiError::bad_request(format!("node \"{node}\" has no InternalIP address to reach its agent")))?;
    let port = obj.pointer("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(Value::as_u64).unwrap_or(10250) as u16;
    Ok(std::net::SocketAddr::new(ip, port))
}

/// The pod's node, or the upstream error when it has none yet.
fn pod_node(state: &ApiState, ns: &str, name: &str) -> ApiResult<(Arc<Value>, String)> {
    let def = state.def("", "v1", "pods")?;
    let pod = state.cache_of(&def)?.get(&def.key(ns, name)).ok_or_else(|| ApiError::not_found(&def, name))?;
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    Ok((pod, node))
}

/// The container a request is about: the one named, or the only one.
fn pick_container(pod: &Value, name: &str, asked: Option<&str>) -> ApiResult<String> {
    let names: Vec<String> = ["/spec/containers", "/spec/initContainers", "/spec/ephemeralContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if names.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None => {
            let main: Vec<&str> = pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
            match main.as_slice() {
                [one] => Ok(one.to_string()),
                many => Err(ApiError::bad_request(format!("a container name must be specified for pod {name}, choose one of: [{}]", many.join(" ")))),
            }
        }
    }
}

/// Opens an HTTP/1.1 connection (TLS, our client certificate) to the agent of `node`.
async fn agent_connection(state: &ApiState, node: &str) -> ApiResult<(hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>, std::net::SocketAddr)> {
    let addr = node_endpoint(state, node)?;
    let tls = state.kubelet_tls.get().cloned().ok_or_else(|| ApiError::internal("no client certificate for node agents"))?;
    let unreachable = |e: String| ApiError::internal(format!("cannot reach the agent of node \"{node}\" at {addr}: {e}"));
    let tcp = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let name = ServerName::try_from(addr.ip().to_string()).map_err(|e| unreachable(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| unreachable(e.to_string()))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn.with_upgrades());
    Ok((sender, addr))
}

/// Sends one GET to an agent and returns its response, body still streaming.
async fn agent_get(state: &ApiState, node: &str, path_and_query: &str) -> ApiResult<Response<hyper::body::Incoming>> {
    let (mut sender, addr) = agent_connection(state, node).await?;
    let unreachable = |e: String| ApiError::internal(format!("cannot reach the agent of node \"{node}\" at {addr}: {e}"));
    let req = http::Request::get(path_and_query)
        .header(http::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    sender.send_request(req).await.map_err(|e| unreachable(e.to_string()))
}

/// `GET pods/{name}/log`: the agent's answer, streamed through.
pub async fn pod_log(state: Arc<ApiState>, ns: &str, name: &str, query: &crate::request::Query) -> ApiResult<Response<Body>> {
    let (pod, node) = pod_node(&state, ns, name)?;
    let container = pick_container(&pod, name, query.get("container"))?;
    for int in ["tailLines", "sinceSeconds", "limitBytes"] {
        if query.int(int)?.is_some_and(|v| v < 0 || (int != "tailLines" && v == 0)) {
            return Err(ApiError::bad_request(format!("{int}: Invalid value: must be greater than 0")));
        }
    }
    let qs = {
        let mut qs = form_urlencoded::Serializer::new(String::new());
        for k in ["follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime", "limitBytes"] {
            if let Some(v) = query.get(k) {
                qs.append_pair(k, v);
            }
        }
        qs.finish()
    };
    let path = format!("/containerLogs/{ns}/{name}/{container}?{qs}");
    let resp = agent_get(&state, &node, &path).await?;
    if resp.status() != StatusCode::OK {
        let code = resp.status().as_u16();
        let body = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let msg = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["message"].as_str().map(str::to_string)).unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(ApiError { code: if code == 404 { 404 } else { 400 }, reason: if code == 404 { "NotFound" } else { "BadRequest" }, message: msg, details: None });
    }
    Ok(crate::server::relay(StatusCode::OK, "text/plain", resp.into_body()))
}

/// `GET nodes/{name}/proxy/{path}`: the agent's own answer to `GET /{path}` (its metrics,
/// `/metrics/resource` included: what `kubectl get --raw` and Prometheus' apiserver-proxied
/// scrapes read), status and body passed through.
pub async fn node_proxy(state: Arc<ApiState>, method: &http::Method, node: &str, path: &str, raw_query: Option<&str>) -> ApiResult<Response<Body>> {
    if method != http::Method::GET {
        return Err(ApiError::method_not_allowed("only GET is proxied to node agents"));
    }
    let path_and_query = match raw_query {
        Some(q) if !q.is_empty() => format!("/{path}?{q}"),
        _ => format!("/{path}"),
    };
    let resp = agent_get(&state, node, &path_and_query).await?;
    let status = resp.status();
    let content_type = resp.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("text/plain").to_string();
    Ok(crate::server::relay(status, &content_type, resp.into_body()))
}

/// `pods/{name}/exec|attach|portforward`: the upgrade request goes to the agent as it came
/// (WebSocket or SPDY, the agent negotiates); once the agent switches protocols, both
/// connections are spliced and the API server only copies bytes.
pub async fn stream(state: Arc<ApiState>, mut req: http::Request<hyper::body::Incoming>, ns: &str, name: &str, sub: &str) -> ApiResult<Response<Body>> {
    let (pod, node) = pod_node(&state, ns, name)?;
    let raw_query = req.uri().query().unwrap_or("").to_string();
    state.admit_connect(ns, name, sub, &raw_query).await?;
    let path = if sub == "portforward" {
        format!("/portForward/{ns}/{name}?{raw_query}")
    } else {
        let asked = form_urlencoded::parse(raw_query.as_bytes()).find(|(k, _)| k == "container").map(|(_, v)| v.into_owned());
        let container = pick_container(&pod, name, asked.as_deref())?;
        let verb = if sub == "exec" { "exec" } else { "attach" };
        format!("/{verb}/{ns}/{name}/{container}?{raw_query}")
    };
    let (mut sender, addr) = agent_connection(&state, &node).await?;
    let mut out = http::Request::builder().method(req.method().clone()).uri(path);
    for (k, v) in req.headers() {
        if k != http::header::HOST && k != http::header::AUTHORIZATION && k != http::header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let out = out.header(http::header::HOST, addr.to_string()).body(http_body_util::Empty::<Bytes>::new()).map_err(|e| ApiError::internal(e.to_string()))?;
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = sender.send_request(out).await.map_err(|e| ApiError::internal(format!("the agent of node \"{node}\" failed: {e}")))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let code = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let mut r = Response::builder().status(code);
        for (k, v) in headers.iter() {
            if k != http::header::CONTENT_LENGTH && k != http::header::TRANSFER_ENCODING {
                r = r.header(k, v);
            }
        }
        return r.body(crate::server::full(body)).map_err(|e| ApiError::internal(e.to_string()));
    }
    let agent_upgrade = hyper::upgrade::on(&mut resp);
    let mut r = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (k, v) in resp.headers() {
        r = r.header(k, v);
    }
    tokio::spawn(async move {
        let (client, agent) = match tokio::join!(client_upgrade, agent_upgrade) {
            (Ok(c), Ok(a)) => (c, a),
            (c, a) => {
                tracing::debug!(client = ?c.err(), agent = ?a.err(), "a streaming upgrade failed");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut agent = hyper_util::rt::TokioIo::new(agent);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
    });
    r.body(crate::server::full(Bytes::new())).map_err(|e| ApiError::internal(e.to_string()))
}
