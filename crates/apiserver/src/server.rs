//! The HTTPS front door: TLS with optional client certificates, HTTP/1.1 and HTTP/2 on the
//! same port (ALPN), and the response body types.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::auth::{bearer, user_from_cert, TokenFile, UserInfo};
use crate::handler::handle;
use crate::pki::Pki;
use crate::state::ApiState;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(b: Bytes) -> Body {
    Full::new(b).boxed()
}

/// A response whose body is streamed from `rx` (watches, logs).
pub fn streaming(code: StatusCode, content_type: &str, rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// A response relaying `body` (another server's answer: an agent's logs, a pod's page) as it
/// arrives.
pub fn relay(code: StatusCode, content_type: &str, body: hyper::body::Incoming) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut body = body.into_data_stream();
        while let Some(Ok(chunk)) = body.next().await {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    streaming(code, content_type, rx)
}

pub(crate) fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    rustls_pemfile::certs(&mut pem.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(|e| format!("bad certificate PEM: {e}"))
}

pub(crate) fn key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| format!("bad key PEM: {e}"))?
        .ok_or_else(|| "no private key in PEM".to_string())
}

/// TLS settings: the serving certificate, and client certificates optional but verified
/// against the cluster CA when presented.
pub fn tls_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&pki.ca.cert_pem)? {
        roots.add(c).map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("cannot build the client verifier: {e}"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&pki.serving.cert_pem)?, key(&pki.serving.key_pem)?)
        .map_err(|e| format!("bad serving certificate: {e}"))?;
    // kubectl offers h2 and http/1.1; upgrade requests (exec, port-forward) offer no ALPN
    // and must get HTTP/1.1.
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts connections until `shutdown` resolves.
pub async fn serve(
    state: Arc<ApiState>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    tokens: Arc<TokenFile>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, state, tokens, local) = (acceptor.clone(), state.clone(), tokens.clone(), local.clone());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            if tokio::time::timeout_at(deadline, is_plain_http(&tcp)).await.unwrap_or(false) {
                // Read the request first: closing with unread bytes would reset the connection
                // and could lose the answer.
                let _ = tcp.try_read(&mut [0u8; 16384]);
                let mut tcp = tcp;
                let _ = tcp.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n").await;
                let _ = tcp.shutdown().await;
                return;
            }
            let tls = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cert_user = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| user_from_cert(c));
            connection(state, tls, peer, cert_user, tokens, local).await;
        });
    }
}

/// Whether a connection opens with a plain HTTP request rather than a TLS handshake: Go's
/// servers, kube-apiserver's included, answer those with a 400 that says so (what
/// `curl http://…:6443/` prints upstream), told by the first five bytes as here.
async fn is_plain_http(tcp: &tokio::net::TcpStream) -> bool {
    let mut head = [0u8; 5];
    matches!(tcp.peek(&mut head).await, Ok(5)) && [b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO"].contains(&&head)
}

async fn connection<IO>(state: Arc<ApiState>, io: IO, peer: SocketAddr, cert_user: Option<UserInfo>, tokens: Arc<TokenFile>, local: String)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let state = state.clone();
        // As upstream's union of authenticators: the client certificate, then a bearer token
        // (static, bootstrap, then service account). A token that no authenticator accepts is
        // a 401 on every path, public ones included.
        let h = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = bearer(h).map(str::to_string);
        let user = cert_user.clone().or_else(|| {
            token.as_deref().and_then(|t| tokens.user(t).or_else(|| state.authenticate_bootstrap_token(t)).or_else(|| state.authenticate_sa_token(t)))
        });
        let rejected = user.is_none() && token.is_some();
        let local = local.clone();
        async move {
            let method = req.method().clone();
            let uri = req.uri().clone();
            let resp = if rejected {
                crate::handler::error_response(&crate::error::ApiError::unauthorized())
            } else {
                // Admission needs the user deep in the REST store, and may have warnings.
                let (resp, warnings) = crate::admission::request_scope(user.clone(), handle(state, req, user, local)).await;
                crate::admission::add_warnings(resp, &warnings)
            };
            tracing::debug!(%peer, %method, %uri, status = resp.status().as_u16(), "request");
            Ok::<_, Infallible>(resp)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(io), service).await {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
