//! A minimal RFC 6455 WebSocket server endpoint: handshake, frame parsing with unmasking and
//! fragmentation, ping/pong and close.
//!
//! Written by hand because only the server side of binary-message streaming is needed and the
//! kubelet must not pull in a full WebSocket stack. The connection is split into a reader (owned
//! by the session's read loop) and a cloneable [`WsSender`] that feeds one writer task, so output
//! pumps and the read loop (answering pings) can write concurrently without interleaving frames.

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::StreamError;

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest message we accept; kubectl sends at most a few tens of KiB per message.
const MAX_MESSAGE: usize = 16 << 20;

/// `Sec-WebSocket-Accept` for a client key: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut input = key.trim().as_bytes().to_vec();
    input.extend_from_slice(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha1(&input))
}

/// SHA-1, needed only for the handshake; a dozen lines here avoid a dependency.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Builds the 101 response for a WebSocket upgrade choosing `protocol`, or `None` when the
/// request lacks a usable `Sec-WebSocket-Key` (the caller then answers 400).
pub fn handshake_response(
    headers: &http::HeaderMap,
    protocol: &str,
) -> Option<http::Response<super::Body>> {
    let key = headers.get("sec-websocket-key")?.to_str().ok()?;
    if key.trim().is_empty() {
        return None;
    }
    let mut resp = http::Response::new(super::empty());
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    h.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    h.insert("sec-websocket-accept", http::HeaderValue::from_str(&accept_key(key)).ok()?);
    h.insert("sec-websocket-protocol", http::HeaderValue::from_str(protocol).ok()?);
    Some(resp)
}

/// A complete message (fragments already joined) or a control frame, as seen by the session.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Binary(Bytes),
    Text(Bytes),
    /// Already answered with a Pong by the reader.
    Ping,
    Close,
}

/// What the writer task sends.
#[derive(Debug)]
enum Outgoing {
    Binary(Bytes),
    Pong(Bytes),
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

    /// Sends a Close frame; the writer task shuts the connection's write side afterwards.
    pub async fn close(&self, code: u16) -> Result<(), StreamError> {
        self.tx.send(Outgoing::Close(code)).await.map_err(|_| StreamError::Closed)
    }
}

/// Reading half: parses frames, answers pings through the writer, joins fragments.
pub struct WsReader<R> {
    io: R,
    pong: WsSender,
    /// A fragmented message being assembled; kept across calls because control frames may
    /// arrive between its fragments.
    partial: Option<(u8, BytesMut)>,
}

/// Splits an upgraded connection into a reader and a sender, spawning the writer task.
/// The writer task ends when every [`WsSender`] (including the reader's) is dropped or after a
/// Close frame, and then shuts down the write side so the peer sees the end of the connection.
pub fn split<IO>(io: IO) -> (WsReader<tokio::io::ReadHalf<IO>>, WsSender)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel(32);
    tokio::spawn(write_loop(wr, rx));
    let sender = WsSender { tx };
    (WsReader { io: rd, pong: sender.clone(), partial: None }, sender)
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(msg) = rx.recv().await {
        let (opcode, payload, last) = match msg {
            Outgoing::Binary(b) => (0x2, b, false),
            Outgoing::Pong(b) => (0xA, b, false),
            Outgoing::Close(code) => (0x8, Bytes::copy_from_slice(&code.to_be_bytes()), true),
        };
        let frame = encode_frame(opcode, &payload);
        if wr.write_all(&frame).await.is_err() {
            break;
        }
        // Flush per message: kubectl waits for interactive output, batching would add latency.
        if wr.flush().await.is_err() || last {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// Encodes one unmasked, unfragmented server frame.
pub fn encode_frame(opcode: u8, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= 0xFFFF => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.extend_from_slice(payload);
    out
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    /// Returns the next message; `Ok(None)` on a clean EOF. Pings are answered here (kubectl's
    /// read deadline is extended only by pongs) and surfaced as [`Message::Ping`] so callers
    /// may treat them as liveness.
    pub async fn next(&mut self) -> Result<Option<Message>, StreamError> {
        loop {
            let Some((fin, opcode, payload)) = self.read_frame().await? else {
                return Ok(None);
            };
            match opcode {
                0x8 => return Ok(Some(Message::Close)),
                0x9 => {
                    // A dead writer is noticed by the session's own sends; ignore here.
                    let _ = self.pong.tx.send(Outgoing::Pong(payload.freeze())).await;
                    return Ok(Some(Message::Ping));
                }
                0xA => continue,
                0x0 => {
                    let Some((_, buf)) = self.partial.as_mut() else {
                        return Err(StreamError::WebSocket("continuation without start".into()));
                    };
                    if buf.len() + payload.len() > MAX_MESSAGE {
                        return Err(StreamError::WebSocket("message too large".into()));
                    }
                    buf.extend_from_slice(&payload);
                }
                0x1 | 0x2 => {
                    if self.partial.is_some() {
                        return Err(StreamError::WebSocket("new message inside fragmented one".into()));
                    }
                    self.partial = Some((opcode, payload));
                }
                other => {
                    return Err(StreamError::WebSocket(format!("unknown opcode {other}")));
                }
            }
            if fin {
                if let Some((op, buf)) = self.partial.take() {
                    let data = buf.freeze();
                    return Ok(Some(if op == 0x1 { Message::Text(data) } else { Message::Binary(data) }));
                }
            }
        }
    }

    /// Reads one raw frame: (fin, opcode, unmasked payload). EOF before a frame starts is `None`.
    async fn read_frame(&mut self) -> Result<Option<(bool, u8, BytesMut)>, StreamError> {
        let mut head = [0u8; 2];
        match self.io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0F;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7F {
            126 => u64::from(self.io.read_u16().await?),
            127 => self.io.read_u64().await?,
            n => u64::from(n),
        };
        if len > MAX_MESSAGE as u64 {
            return Err(StreamError::WebSocket(format!("frame of {len} bytes")));
        }
        if opcode >= 0x8 && (len > 125 || !fin) {
            return Err(StreamError::WebSocket("invalid control frame".into()));
        }
        let mut mask = [0u8; 4];
        if masked {
            self.io.read_exact(&mut mask).await?;
        }
        let mut payload = BytesMut::zeroed(len as usize);
        self.io.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i & 3];
            }
        }
        Ok(Some((fin, opcode, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_accept_key() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn sha1_vectors() {
        let hex = |b: [u8; 20]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let long = vec![b'a'; 1000];
        assert_eq!(hex(sha1(&long)), "291e9a6c66994949b57ba5e650361e98fc36b1ba");
    }

    #[tokio::test]
    async fn masked_fragmented_message_and_ping() {
        let (client, server) = tokio::io::duplex(4096);
        let (mut reader, _sender) = split(server);
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
        assert_eq!(reader.next().await.unwrap(), None);
    }
}
