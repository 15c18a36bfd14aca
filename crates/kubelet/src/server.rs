//! The agent's own HTTPS API (port 10250), which the API server calls for what only the node
//! can do: container logs, exec, attach, port-forward. Clients present a certificate from the
//! cluster CA, and the API server says whether its user may use this node (`authz.rs`).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::json;
use tokio::sync::mpsc;

use crate::component_logs::{self, Component};
use crate::logs::{self, LogOptions};
use crate::{stream_handlers, streaming};
use crate::runtime::NodeRuntime;
use crate::{Error, Result};

type Body = BoxBody<Bytes, Infallible>;

fn text(code: StatusCode, msg: &str) -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": msg,
        "reason": if code == StatusCode::NOT_FOUND { "NotFound" } else { "BadRequest" }, "code": code.as_u16()});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(status.to_string())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// TLS: the serving certificate of `store` (from the cluster CA, which the API server checks),
/// and client certificates checked against the cluster CA.
fn tls_config(ca_der: &[Vec<u8>], store: crate::certificate::ServingStore) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in ca_der {
        roots.add(rustls::pki_types::CertificateDer::from(c.clone())).map_err(|e| Error::Internal(format!("bad cluster CA: {e}")))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Internal(format!("cannot verify client certificates: {e}")))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(store));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves the agent API on `addr` until the task is dropped.
pub async fn serve(node: Arc<NodeRuntime>, addr: std::net::SocketAddr, ca_der: Vec<Vec<u8>>, store: crate::certificate::ServingStore) -> Result<()> {
    let tls = tls_config(&ca_der, store)?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::Runtime(format!("cannot listen on {addr} for the agent API: {e}")))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let authorizer = Arc::new(crate::authz::Authorizer::default());
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let (node, authorizer) = (node.clone(), authorizer.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let user = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| crate::authz::User::from_cert(c));
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (node, authorizer, user) = (node.clone(), authorizer.clone(), user.clone());
                async move {
                    let (verb, subresource) = crate::authz::attributes(req.method(), req.uri().path());
                    let allowed = match &user {
                        Some(u) => authorizer.allowed(&node.config.client, &node.facts.name, u, verb, subresource).await,
                        None => false,
                    };
                    if !allowed {
                        // The kubelet's words.
                        let name = user.as_ref().map_or("", |u| u.name.as_str());
                        let msg = format!("Forbidden (user={name}, verb={verb}, resource=nodes, subresource={subresource})");
                        return Ok::<_, Infallible>(Response::builder().status(StatusCode::FORBIDDEN).body(Full::new(Bytes::from(msg)).boxed()).unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())));
                    }
                    Ok::<_, Infallible>(route(node, req).await)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
        });
    }
}

async fn route(node: Arc<NodeRuntime>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["healthz"] => Response::new(Full::new(Bytes::from_static(b"ok")).boxed()),
        ["metrics"] => metrics_text(timonier_metrics::render(vec![])),
        ["metrics", "resource"] => metrics_text(crate::metrics::resource(&node).into_bytes()),
        ["metrics", "cadvisor"] => metrics_text(crate::metrics::cadvisor(&node).into_bytes()),
        ["containerLogs", ns, pod, container] => container_logs(node, ns, pod, container, &query).await,
        ["exec", ns, pod, container] => exec_or_attach(node, req, ns, pod, container, &query, true).await,
        ["attach", ns, pod, container] => exec_or_attach(node, req, ns, pod, container, &query, false).await,
        ["portForward", ns, pod] => port_forward(node, req, ns, pod).await,
        _ => text(StatusCode::NOT_FOUND, &format!("the agent does not serve {path}")),
    }
}

fn metrics_text(body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .header("content-type", timonier_metrics::CONTENT_TYPE)
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// The pod's directory and record, found from its name (log directories are named
/// `<ns>_<pod>_<uid>`; names never hold `_`).
fn find_pod_dir(node: &NodeRuntime, ns: &str, pod: &str) -> Option<(String, PathBuf)> {
    let prefix = format!("{ns}_{pod}_");
    std::fs::read_dir(node.logs_dir()).ok()?.flatten().find_map(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        n.strip_prefix(&prefix).map(|uid| (uid.to_string(), e.path()))
    })
}

async fn container_logs(node: Arc<NodeRuntime>, ns: &str, pod_name: &str, container: &str, query: &str) -> Response<Body> {
    let previous = form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "previous" && (v == "true" || v == "1"));
    let opts = LogOptions::from_query(query);
    let pods: Api<Pod> = Api::namespaced(node.config.client.clone(), ns);
    let pod = match pods.get(pod_name).await {
        Ok(p) => p,
        Err(_) => return text(StatusCode::NOT_FOUND, &format!("pods \"{pod_name}\" not found")),
    };
    let statuses = pod.status.as_ref().map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()).chain(s.ephemeral_container_statuses.iter().flatten()).cloned().collect::<Vec<_>>()).unwrap_or_default();
    let Some(status) = statuses.iter().find(|s| s.name == container) else {
        return text(StatusCode::BAD_REQUEST, &format!("container \"{container}\" in pod \"{pod_name}\" is waiting to start: ContainerCreating"));
    };
    if previous {
        if status.last_state.as_ref().and_then(|l| l.terminated.as_ref()).is_none() {
            return text(StatusCode::BAD_REQUEST, &format!("previous terminated container \"{container}\" in pod \"{pod_name}\" not found"));
        }
    } else if status.container_id.is_none() {
        let reason = status.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.clone()).unwrap_or_else(|| "ContainerCreating".into());
        return text(StatusCode::BAD_REQUEST, &format!("container \"{container}\" in pod \"{pod_name}\" is waiting to start: {reason}"));
    }
    if crate::mirror::is_mirror(&pod) {
        // A component of this process: its log is the file the binary's tracing writes, and a
        // follow lasts as long as the client listens (the component lives as long as we do).
        let Some(component) = Component::from_name(container) else {
            return text(StatusCode::NOT_FOUND, &format!("no logs for container \"{container}\" of the mirror pod \"{pod_name}\""));
        };
        return log_response(component_logs::log_path(&node.config.data_dir, component), opts, || true);
    }
    let Some((uid, dir)) = find_pod_dir(&node, ns, pod_name) else {
        return text(StatusCode::NOT_FOUND, &format!("no logs for pod \"{pod_name}\" on this node"));
    };
    let attempt = status.restart_count - if previous { 1 } else { 0 };
    let log_path = dir.join(container).join(format!("{attempt}.log"));
    let running = status.state.as_ref().is_some_and(|s| s.running.is_some()) && !previous;
    // Follow ends when this run's exit is recorded by the shim.
    let exit_marker = status
        .container_id
        .as_deref()
        .and_then(|id| id.strip_prefix("timonier://"))
        .map(|id| node.pods_dir().join(&uid).join("sandbox").join("containers").join(id).join("exit.json"));
    let still_running = move || running && exit_marker.as_ref().is_some_and(|m| !m.exists() && m.parent().is_some_and(|d| d.exists()));
    log_response(log_path, opts, still_running)
}

/// A streamed answer of the log at `log_path`.
fn log_response(log_path: PathBuf, opts: LogOptions, still_running: impl Fn() -> bool + Send + 'static) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(logs::stream(log_path, opts, tx, still_running));
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// The directory of a pod running here, by namespace and name.
fn pod_dir(node: &NodeRuntime, ns: &str, pod: &str) -> Option<PathBuf> {
    find_pod_dir(node, ns, pod).map(|(uid, _)| node.pods_dir().join(uid))
}

async fn exec_or_attach(node: Arc<NodeRuntime>, req: Request<hyper::body::Incoming>, ns: &str, pod: &str, container: &str, query: &str, exec: bool) -> Response<Body> {
    let opts = streaming::StreamOptions::from_query(query);
    let Some(dir) = pod_dir(&node, ns, pod) else {
        return text(StatusCode::NOT_FOUND, &format!("pod {ns}/{pod} is not running on this node"));
    };
    let (shim, id) = match stream_handlers::running_container(&dir, container).await {
        Ok(c) => c,
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("unable to upgrade connection: {e}")),
    };
    if exec {
        let command: Vec<String> = form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == "command").map(|(_, v)| v.into_owned()).collect();
        streaming::serve_exec(req, opts, move |streams| stream_handlers::exec(shim, id, command, streams))
    } else {
        let pods: Api<Pod> = Api::namespaced(node.config.client.clone(), ns);
        let spec = pods.get(pod).await.ok().and_then(|p| p.spec);
        let (tty, once) = spec
            .and_then(|s| {
                let ephemeral = s.ephemeral_containers.iter().flatten().map(|e| (e.name.clone(), e.tty, e.stdin_once));
                let others = s.containers.into_iter().chain(s.init_containers.into_iter().flatten()).map(|c| (c.name, c.tty, c.stdin_once));
                others.chain(ephemeral.collect::<Vec<_>>()).find(|(name, _, _)| name == container)
            })
            .map(|(_, tty, once)| (tty == Some(true), once == Some(true)))
            .unwrap_or_default();
        if opts.tty && !tty {
            return text(StatusCode::BAD_REQUEST, &format!("unable to upgrade connection: container {container} did not allocate a TTY (tty: true)"));
        }
        let fifo = dir.join("sandbox").join("containers").join(&id).join("stdin");
        let stdin = if opts.stdin {
            if !fifo.exists() {
                return text(StatusCode::BAD_REQUEST, &format!("unable to upgrade connection: container {container} does not have stdin enabled (stdin: true)"));
            }
            Some(stream_handlers::AttachStdin { fifo, once })
        } else {
            None
        };
        let log_path = shim.status().await.ok().and_then(|s| s.into_iter().find(|c| c.id == id)).map(|c| c.log_path);
        let Some(log_path) = log_path else {
            return text(StatusCode::BAD_REQUEST, &format!("unable to upgrade connection: container not found (\"{container}\")"));
        };
        let exit_marker = dir.join("sandbox").join("containers").join(&id).join("exit.json");
        let target = stream_handlers::AttachTarget { shim, id, log_path, exit_marker, stdin };
        streaming::serve_exec(req, opts, move |streams| stream_handlers::attach(target, streams))
    }
}

async fn port_forward(node: Arc<NodeRuntime>, req: Request<hyper::body::Incoming>, ns: &str, pod: &str) -> Response<Body> {
    let Some(dir) = pod_dir(&node, ns, pod) else {
        return text(StatusCode::NOT_FOUND, &format!("pod {ns}/{pod} is not running on this node"));
    };
    let pid = match timonier_runtime::shim::ShimClient::connect(&dir.join("sandbox")).await {
        Ok(s) => s.pid(),
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("unable to upgrade connection: the pod's sandbox is not running: {e}")),
    };
    streaming::serve_port_forward(req, move |port| stream_handlers::connect_in_pod(pid, port))
}
