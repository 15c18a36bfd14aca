//! `port-forward`: SPDY/3.1 with `portforward.k8s.io`, either directly on the upgraded
//! connection (kubectl ≤ 1.30) or tunnelled in WebSocket binary messages
//! (`SPDY/3.1+portforward.k8s.io`, kubectl ≥ 1.31).
//!
//! For every local connection kubectl opens a pair of streams sharing a `requestid`: `error`
//! (we write a message there if the pod port cannot be reached) and `data` (the bytes). We wait
//! for both, connect to the pod's port and copy in both directions. When the pod side closes we
//! FIN the data stream and then the error stream: kubectl waits for EOF on the error stream
//! before it tears the local connection down.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::exec::spdy_upgrade_response;
use super::spdy::{Session, Stream};
use super::websocket::{self, Message};
use super::{bad_request, classify, StreamError, Task, Upgrade};

const SPDY_PROTOCOL: &str = "portforward.k8s.io";
const WS_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// Buffer between the WebSocket pumps and the SPDY session in the tunnelled variant.
const TUNNEL_PIPE: usize = 256 * 1024;

/// port-forward: SPDY/3.1 (`portforward.k8s.io`) or SPDY inside WebSocket
/// (`SPDY/3.1+portforward.k8s.io`). `connect(port)` opens the TCP connection to the pod's port;
/// it is called once per forwarded client connection.
pub fn serve_port_forward<F, Fut>(
    mut req: http::Request<hyper::body::Incoming>,
    connect: F,
) -> http::Response<super::Body>
where
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
{
    let connect = Arc::new(connect);
    match classify(req.headers()) {
        Upgrade::WebSocket(offered) => {
            if !offered.iter().any(|o| o == WS_TUNNEL_PROTOCOL) {
                return bad_request("unsupported WebSocket subprotocol; supported: SPDY/3.1+portforward.k8s.io");
            }
            let Some(resp) = websocket::handshake_response(req.headers(), WS_TUNNEL_PROTOCOL) else {
                return bad_request("missing Sec-WebSocket-Key");
            };
            let upgrade = hyper::upgrade::on(&mut req);
            super::spawn_session("port-forward (websocket)", async move {
                let io = TokioIo::new(upgrade.await.map_err(std::io::Error::other)?);
                forward_session(ws_tunnel(io), connect).await
            });
            resp
        }
        Upgrade::Spdy(offered) => {
            if !offered.iter().any(|o| o == SPDY_PROTOCOL) {
                return bad_request("unsupported stream protocol; supported: portforward.k8s.io");
            }
            let upgrade = hyper::upgrade::on(&mut req);
            super::spawn_session("port-forward (spdy)", async move {
                let io = TokioIo::new(upgrade.await.map_err(std::io::Error::other)?);
                forward_session(io, connect).await
            });
            spdy_upgrade_response(SPDY_PROTOCOL)
        }
        Upgrade::None => bad_request("port-forward requires a WebSocket or SPDY/3.1 upgrade"),
    }
}

/// Turns a WebSocket connection whose binary messages carry a SPDY byte stream into a plain
/// byte stream for [`Session`]. Message boundaries carry no meaning. Both pumps end when either
/// side ends, so the tunnel never outlives the session or the client.
fn ws_tunnel<IO>(io: IO) -> tokio::io::DuplexStream
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut reader, tx) = websocket::split(io);
    let (spdy_side, pump_side) = tokio::io::duplex(TUNNEL_PIPE);
    let (mut from_spdy, mut to_spdy) = tokio::io::split(pump_side);
    let inbound = tokio::spawn(async move {
        loop {
            match reader.next().await {
                Ok(Some(Message::Binary(b))) | Ok(Some(Message::Text(b))) => {
                    if to_spdy.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Ok(Some(Message::Ping)) => {}
                Ok(Some(Message::Close)) | Ok(None) => break,
                Err(e) => {
                    tracing::debug!("port-forward tunnel read: {e}");
                    break;
                }
            }
        }
        // EOF towards the SPDY session: it sees the client go away.
        let _ = to_spdy.shutdown().await;
    });
    tokio::spawn(async move {
        let _inbound = Task(inbound);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_spdy.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.binary(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.close(1000).await;
    });
    spdy_side
}

/// The half-received pair of streams of one forwarded connection.
#[derive(Default)]
struct Pending {
    data: Option<Stream>,
    error: Option<Stream>,
}

/// Accepts stream pairs until the client goes away; dropping the `JoinSet` at the end aborts
/// every forwarder still running, closing their pod connections.
async fn forward_session<IO, F, Fut>(io: IO, connect: Arc<F>) -> Result<(), StreamError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
{
    let mut session = Session::start(io)?;
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut forwarders = JoinSet::new();
    loop {
        tokio::select! {
            s = session.accept() => {
                let Some(stream) = s else { break };
                let kind = stream.header("streamtype").unwrap_or("").to_ascii_lowercase();
                // Older clients may omit requestid; pair by port then.
                let key = stream
                    .header("requestid")
                    .or_else(|| stream.header("port"))
                    .unwrap_or("")
                    .to_string();
                let entry = pending.entry(key.clone()).or_default();
                match kind.as_str() {
                    "data" => entry.data = Some(stream),
                    "error" => entry.error = Some(stream),
                    other => {
                        tracing::debug!("ignoring port-forward stream of type {other:?}");
                        let _ = stream.writer.reset().await;
                        continue;
                    }
                }
                if entry.data.is_some() && entry.error.is_some() {
                    if let Some(Pending { data: Some(d), error: Some(e) }) = pending.remove(&key) {
                        forwarders.spawn(forward(d, e, connect.clone()));
                    }
                }
            }
            Some(_) = forwarders.join_next(), if !forwarders.is_empty() => {}
        }
    }
    Ok(())
}

/// Forwards one client connection to the pod port named in the data stream's `port` header.
async fn forward<F, Fut>(mut data: Stream, error: Stream, connect: Arc<F>)
where
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
{
    let port_header = data.header("port").unwrap_or("").to_string();
    let port = match port_header.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            let msg = format!("invalid port {port_header:?}");
            fail(&data, &error, msg).await;
            return;
        }
    };
    let tcp = match connect(port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod: {e}");
            fail(&data, &error, msg).await;
            return;
        }
    };
    let (mut pod_rd, mut pod_wr) = tcp.into_split();
    let writer = data.writer.clone();
    let reader = &mut data.reader;
    let upstream = async move {
        while let Some(chunk) = reader.recv().await {
            if pod_wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // Client half-closed: pass the EOF on so request/response servers answer.
        let _ = pod_wr.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match pod_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = writer.finish().await;
        let _ = error.writer.finish().await;
    };
    // The pod closing ends the forward: the client resets or half-closes the stream once it
    // has our FIN, which also ends `upstream`; if it does not, the session's end aborts us.
    tokio::join!(upstream, downstream);
}

/// Reports a failure the way kubectl prints it: text on the error stream, then FIN on both.
async fn fail(data: &Stream, error: &Stream, msg: String) {
    tracing::debug!("port-forward: {msg}");
    let _ = error.writer.write(Bytes::from(msg)).await;
    let _ = error.writer.finish().await;
    let _ = data.writer.finish().await;
}
