//! `port-forward`: SPDY/3.1 with `portforward.k8s.io`, either directly on the upgraded
//! connection (kubectl ≤ 1.30) or tunnelled in WebSocket binary messages
//! (`SPDY/3.1+portforward.k8s.io`, kubectl ≥ 1.31); or WebSocket channels (`v4.channel.k8s.io`
//! and the others of `channel.rs`) for the ports of `?ports=`, as the official Python client
//! does.
//!
//! SPDY: for every local connection kubectl opens a pair of streams sharing a `requestid`: `error`
//! (we write a message there if the pod port cannot be reached) and `data` (the bytes). We wait
//! for both, connect to the pod's port and copy in both directions. When the pod side closes we
//! FIN the data stream and then the error stream: kubectl waits for EOF on the error stream
//! before it tears the local connection down.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::channel::{self, ChannelSender, Codec, PORT_FORWARD_PROTOCOLS};
use super::exec::spdy_upgrade_response;
use super::spdy::{Session, Stream};
use super::websocket::{self, Message, CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR};
use super::{bad_request, classify, StreamError, Task, Upgrade};

const SPDY_PROTOCOL: &str = "portforward.k8s.io";
const WS_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// Buffer between the WebSocket pumps and the SPDY session in the tunnelled variant.
const TUNNEL_PIPE: usize = 256 * 1024;
/// WebSocket channels: two per port, numbered by one byte.
const MAX_WS_PORTS: usize = 127;
/// When one direction of a forwarded connection ends, how long the other has to finish
/// (containerd's port-forward waits one second too).
const HALF_CLOSED_GRACE: Duration = Duration::from_secs(1);
/// After our Close frame, how long the client has to answer it before we drop the connection.
const WS_CLOSE_WAIT: Duration = Duration::from_secs(10);

/// port-forward: SPDY/3.1 (`portforward.k8s.io`), SPDY inside WebSocket
/// (`SPDY/3.1+portforward.k8s.io`), or WebSocket channels for `?ports=`. `connect(port)` opens
/// the TCP connection to the pod's port; it is called once per forwarded client connection
/// (once per port with WebSocket channels, which carry one connection per port).
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
            // The tunnel is what kubectl ≥ 1.31 asks for; upstream the API server serves it
            // for any request offering it, before the kubelet's own protocols are considered.
            if offered.iter().any(|o| o == WS_TUNNEL_PROTOCOL) {
                let resp = match websocket::handshake_response(req.headers(), Some(WS_TUNNEL_PROTOCOL)) {
                    Ok(r) => r,
                    Err(msg) => return bad_request(msg),
                };
                let upgrade = hyper::upgrade::on(&mut req);
                super::spawn_session("port-forward (websocket tunnel)", async move {
                    let io = TokioIo::new(upgrade.await.map_err(std::io::Error::other)?);
                    forward_session(ws_tunnel(io).await, connect).await
                });
                return resp;
            }
            let Some(proto) = channel::negotiate(&offered, PORT_FORWARD_PROTOCOLS) else {
                return bad_request("unsupported WebSocket subprotocol; supported: SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io, v4.base64.channel.k8s.io, portforward.k8s.io");
            };
            let ports = match ports_from_query(req.uri().query().unwrap_or("")) {
                Ok(p) => p,
                Err(msg) => return bad_request(&msg),
            };
            let resp = match websocket::handshake_response(req.headers(), Some(proto.name)) {
                Ok(r) => r,
                Err(msg) => return bad_request(msg),
            };
            let upgrade = hyper::upgrade::on(&mut req);
            super::spawn_session("port-forward (websocket channels)", async move {
                let io = TokioIo::new(upgrade.await.map_err(std::io::Error::other)?);
                ws_channels_forward(io, proto.codec, ports, connect).await
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
async fn ws_tunnel<IO>(io: IO) -> tokio::io::DuplexStream
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, tx) = websocket::accept(io).await;
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
        let _ = tx.close(CLOSE_NORMAL).await;
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

// ------------------------------------------------------------------ WebSocket channels

/// The ports of a WebSocket port-forward: `ports` (what clients send to the API server) or
/// `port` (what the API server sends upstream's kubelet), repeated or comma-separated.
fn ports_from_query(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "ports" && k != "port" {
            continue;
        }
        if v.is_empty() {
            return Err(format!("query parameter \"{k}\" cannot be empty"));
        }
        for p in v.split(',') {
            match p.trim().parse::<u16>() {
                Ok(0) => return Err(format!("port \"{p}\" must be > 0")),
                Ok(n) => ports.push(n),
                Err(e) => return Err(format!("unable to parse \"{v}\" as a port: {e}")),
            }
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"ports\" is required".into());
    }
    if ports.len() > MAX_WS_PORTS {
        return Err(format!("at most {MAX_WS_PORTS} ports can be forwarded over one WebSocket"));
    }
    Ok(ports)
}

/// Upstream's `portforward/websocket.go`: for the i-th port, channel 2i carries the data both
/// ways and 2i+1 errors to the client; each channel's first message is the port number (two
/// bytes, little-endian). Each port gets one connection to the pod, made at once; the session
/// ends when every port's forward has ended (or when the client leaves).
async fn ws_channels_forward<IO, F, Fut>(io: IO, codec: Codec, ports: Vec<u16>, connect: Arc<F>) -> Result<(), StreamError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
{
    let (mut reader, ws) = websocket::accept(io).await;
    let tx = ChannelSender { ws, codec };
    for (i, port) in ports.iter().enumerate() {
        let le = port.to_le_bytes();
        tx.send((2 * i) as u8, &le).await?;
        tx.send((2 * i + 1) as u8, &le).await?;
    }
    let mut inputs = Vec::with_capacity(ports.len());
    let mut forwarders = JoinSet::new();
    for (i, &port) in ports.iter().enumerate() {
        let (in_tx, in_rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        inputs.push(in_tx);
        forwarders.spawn(forward_channel(port, (2 * i) as u8, in_rx, tx.clone(), connect.clone()));
    }
    let ended = loop {
        tokio::select! {
            m = reader.next() => match m {
                Ok(Some(Message::Binary(b))) | Ok(Some(Message::Text(b))) => {
                    let Some((ch, data)) = channel::decode(codec, &b) else { continue };
                    // Error channels are write-only and unknown channels ignored, as upstream.
                    if ch % 2 != 0 {
                        continue;
                    }
                    if let Some(input) = inputs.get(usize::from(ch / 2)) {
                        // A port whose forward ended drops what still comes for it.
                        let _ = input.send(data).await;
                    }
                }
                Ok(Some(Message::Ping)) => {}
                Ok(Some(Message::Close)) | Ok(None) => return Ok(()),
                Err(e) => {
                    let _ = tx.ws.close(CLOSE_PROTOCOL_ERROR).await;
                    return Err(e);
                }
            },
            r = forwarders.join_next() => if r.is_none() { break Ok(()) },
        }
    };
    // Every port is done: close, and give the client a moment to read the rest and answer.
    tx.ws.close(CLOSE_NORMAL).await?;
    drop(tx);
    let drain = async { while let Ok(Some(_)) = reader.next().await {} };
    let _ = tokio::time::timeout(WS_CLOSE_WAIT, drain).await;
    ended
}

/// One port of a WebSocket port-forward: connects to the pod and copies both ways. As
/// containerd, the forward ends when one direction ends and the other has had a second.
async fn forward_channel<F, Fut>(port: u16, data_ch: u8, mut input: tokio::sync::mpsc::Receiver<Bytes>, tx: ChannelSender, connect: Arc<F>)
where
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
{
    let tcp = match connect(port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod: {e}");
            tracing::debug!("port-forward: {msg}");
            let _ = tx.send(data_ch + 1, msg.as_bytes()).await;
            return;
        }
    };
    let (mut pod_rd, mut pod_wr) = tcp.into_split();
    let upstream = async move {
        while let Some(chunk) = input.recv().await {
            if pod_wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = pod_wr.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match pod_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(data_ch, &buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        _ = &mut upstream => { let _ = tokio::time::timeout(HALF_CLOSED_GRACE, &mut downstream).await; }
        _ = &mut downstream => { let _ = tokio::time::timeout(HALF_CLOSED_GRACE, &mut upstream).await; }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_query() {
        assert_eq!(ports_from_query("ports=8080,9090"), Ok(vec![8080, 9090]));
        assert_eq!(ports_from_query("port=1&port=2"), Ok(vec![1, 2]));
        assert!(ports_from_query("").is_err());
        assert!(ports_from_query("ports=0").is_err());
        assert!(ports_from_query("ports=http").is_err());
        assert!(ports_from_query("ports=").is_err());
        assert!(ports_from_query("ports=70000").is_err());
    }
}
