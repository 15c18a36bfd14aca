//! The WebSocket transport of the streaming endpoints, on tokio-tungstenite.
//!
//! hyper owns the HTTP exchange, so the handshake here is only the 101 answer (accept key from
//! tungstenite); the upgraded connection then becomes a [`WebSocketStream`] split into a reader
//! (owned by the session's read loop) and a cloneable [`WsSender`] that feeds one writer task,
//! so output pumps can write concurrently without interleaving frames. Pings are answered by
//! tungstenite itself (kubectl's read deadline is extended only by pongs).

use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{self, Error as WsError, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;

use super::StreamError;

/// Close codes we send (RFC 6455 §7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;

/// Builds the 101 response for a WebSocket upgrade choosing `protocol` (`None` when the client
/// offered none: then no `Sec-WebSocket-Protocol` is sent, as RFC 6455 §4.2.2 asks), or the
/// reason the request is not a usable handshake (the caller answers 400).
pub fn handshake_response(
    headers: &http::HeaderMap,
    protocol: Option<&str>,
) -> Result<http::Response<super::Body>, &'static str> {
    let key = headers
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or("missing Sec-WebSocket-Key")?;
    // Version 13 is the only one RFC 6455 defines; every client in use sends it.
    let version = headers.get("sec-websocket-version").and_then(|v| v.to_str().ok()).map(str::trim);
    if version.is_some_and(|v| v != "13") {
        return Err("unsupported Sec-WebSocket-Version; supported: 13");
    }
    let mut resp = http::Response::new(super::empty());
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    h.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    let accept = http::HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| "bad Sec-WebSocket-Key")?;
    h.insert("sec-websocket-accept", accept);
    if let Some(p) = protocol.filter(|p| !p.is_empty()) {
        h.insert("sec-websocket-protocol", http::HeaderValue::from_str(p).map_err(|_| "bad subprotocol")?);
    }
    Ok(resp)
}

/// A complete message as seen by the session.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Binary(Bytes),
    Text(Bytes),
    /// Already answered with a Pong (by tungstenite, on the next read).
    Ping,
    Close,
}

/// What the writer task sends.
#[derive(Debug)]
enum Outgoing {
    Binary(Bytes),
    Text(String),
    Close(u16),
}

/// Cloneable handle to the connection's writer task. Sending fails once the connection is gone.
#[derive(Clone)]
pub struct WsSender {
    tx: mpsc::Sender<Outgoing>,
}

impl WsSender {
    /// Sends one binary message.
    pub async fn binary(&self, data: Bytes) -> Result<(), StreamError> {
        self.tx.send(Outgoing::Binary(data)).await.map_err(|_| StreamError::Closed)
    }

    /// Sends one text message.
    pub async fn text(&self, data: String) -> Result<(), StreamError> {
        self.tx.send(Outgoing::Text(data)).await.map_err(|_| StreamError::Closed)
    }

    /// Sends a Close frame; nothing can be sent after it. The connection itself closes when
    /// the reader is dropped too (after the peer's Close reply, normally).
    pub async fn close(&self, code: u16) -> Result<(), StreamError> {
        self.tx.send(Outgoing::Close(code)).await.map_err(|_| StreamError::Closed)
    }
}

/// Reading half of a connection.
pub struct WsReader<IO> {
    stream: SplitStream<WebSocketStream<IO>>,
}

/// Takes over an upgraded connection (the 101 already sent) and splits it into a reader and a
/// sender, spawning the writer task. The writer task ends when every [`WsSender`] is dropped —
/// sending a Close frame then if none was sent — or after sending a Close.
pub async fn accept<IO>(io: IO) -> (WsReader<IO>, WsSender)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(32);
    tokio::spawn(write_loop(sink, rx));
    (WsReader { stream }, WsSender { tx })
}

async fn write_loop<IO>(mut sink: SplitSink<WebSocketStream<IO>, WsMessage>, mut rx: mpsc::Receiver<Outgoing>)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let close = |code: u16| WsMessage::Close(Some(CloseFrame { code: CloseCode::from(code), reason: "".into() }));
    while let Some(msg) = rx.recv().await {
        let (msg, last) = match msg {
            Outgoing::Binary(b) => (WsMessage::Binary(b), false),
            Outgoing::Text(t) => (WsMessage::Text(t.into()), false),
            Outgoing::Close(code) => (close(code), true),
        };
        // `send` flushes each message: interactive output must not wait in a buffer.
        if let Err(e) = sink.send(msg).await {
            tracing::debug!("websocket write: {e}");
            return;
        }
        if last {
            return;
        }
    }
    // Every sender is gone without a Close: the session ended; say so before the connection drops.
    let _ = sink.send(close(CLOSE_NORMAL)).await;
}

impl<IO: AsyncRead + AsyncWrite + Unpin> WsReader<IO> {
    /// Returns the next message; `Ok(None)` once the connection is closed.
    pub async fn next(&mut self) -> Result<Option<Message>, StreamError> {
        loop {
            let msg = match self.stream.next().await {
                None => return Ok(None),
                Some(Ok(m)) => m,
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(None),
                // A peer that just drops the TCP connection is a normal end for us.
                Some(Err(WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake))) => return Ok(None),
                Some(Err(e)) => return Err(StreamError::WebSocket(e.to_string())),
            };
            return Ok(Some(match msg {
                WsMessage::Binary(b) => Message::Binary(b),
                WsMessage::Text(t) => Message::Text(Bytes::from(t)),
                WsMessage::Ping(_) => Message::Ping,
                WsMessage::Pong(_) | WsMessage::Frame(_) => continue,
                WsMessage::Close(_) => {
                    // tungstenite queued our Close reply; one more read writes it out and then
                    // reports the end (bounded: a peer not reading must not hold us).
                    let flush = async { while let Some(Ok(_)) = self.stream.next().await {} };
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), flush).await;
                    Message::Close
                }
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn rfc6455_accept_key() {
        let mut h = http::HeaderMap::new();
        h.insert("sec-websocket-key", http::HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        h.insert("sec-websocket-version", http::HeaderValue::from_static("13"));
        let r = handshake_response(&h, Some("v4.channel.k8s.io")).unwrap();
        assert_eq!(r.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(r.headers()["sec-websocket-protocol"], "v4.channel.k8s.io");
        let r = handshake_response(&h, None).unwrap();
        assert!(r.headers().get("sec-websocket-protocol").is_none());
        h.insert("sec-websocket-version", http::HeaderValue::from_static("8"));
        assert!(handshake_response(&h, None).is_err());
    }

    #[tokio::test]
    async fn masked_fragmented_message_and_ping() {
        let (client, server) = tokio::io::duplex(4096);
        let (mut reader, _sender) = accept(server).await;
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mask = [1u8, 2, 3, 4];
        let frame = |first: u8, data: &[u8]| {
            let mut f = vec![first, 0x80 | data.len() as u8];
            f.extend_from_slice(&mask);
            f.extend(data.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
            f
        };
        cwr.write_all(&frame(0x02, b"\x01hel")).await.unwrap();
        cwr.write_all(&frame(0x89, b"p")).await.unwrap();
        cwr.write_all(&frame(0x80, b"lo")).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Some(Message::Ping));
        assert_eq!(reader.next().await.unwrap(), Some(Message::Binary(Bytes::from_static(b"\x01hello"))));
        let mut pong = [0u8; 3];
        crd.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0x8A, 1, b'p']);
        drop(cwr);
        drop(crd);
        assert!(matches!(reader.next().await, Ok(None) | Err(_)));
    }

    #[tokio::test]
    async fn unmasked_client_frame_is_an_error_not_a_panic() {
        let (client, server) = tokio::io::duplex(4096);
        let (mut reader, _sender) = accept(server).await;
        let (_crd, mut cwr) = tokio::io::split(client);
        cwr.write_all(&[0x82, 0x02, 0x01, b'x']).await.unwrap();
        assert!(reader.next().await.is_err());
    }
}
