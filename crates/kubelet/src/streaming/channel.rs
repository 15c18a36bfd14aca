//! The Kubernetes channel subprotocols over WebSocket (upstream's `wsstream` package): every
//! message carries one channel's data, introduced by the channel number.
//!
//! * `channel.k8s.io` family (`v4.`, `v5.` and none): a binary message, one channel byte and
//!   the raw data;
//! * `base64.channel.k8s.io` family (`v4.base64.`): a text message, the channel as an ASCII
//!   digit (`'0' + n`) and the data base64-encoded.
//!
//! Like upstream (golang.org/x/net/websocket's `Message.Receive` into bytes) incoming text
//! and binary frames are treated alike: the official Python client writes stdin as text
//! frames even on the binary protocols.

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};

use super::websocket::WsSender;
use super::StreamError;

/// How a channel protocol encodes its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Binary,
    Base64,
}

/// One subprotocol a channel endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelProtocol {
    /// The `Sec-WebSocket-Protocol` value; empty for a client that offered none.
    pub name: &'static str,
    pub codec: Codec,
    /// The remote-command protocol version: 1 (plain-text errors), 4 (a `metav1.Status` on
    /// the error channel), 5 (4 plus the stream-close signal).
    pub version: u8,
}

const fn proto(name: &'static str, codec: Codec, version: u8) -> ChannelProtocol {
    ChannelProtocol { name, codec, version }
}

pub const V5_CHANNEL: &str = "v5.channel.k8s.io";

/// exec/attach: what the kubelet accepts (remotecommand/websocket.go), plus v5, which upstream
/// the API server's stream translator serves.
pub const EXEC_PROTOCOLS: &[ChannelProtocol] = &[
    proto("", Codec::Binary, 1),
    proto("channel.k8s.io", Codec::Binary, 1),
    proto("base64.channel.k8s.io", Codec::Base64, 1),
    proto("v4.channel.k8s.io", Codec::Binary, 4),
    proto("v4.base64.channel.k8s.io", Codec::Base64, 4),
    proto(V5_CHANNEL, Codec::Binary, 5),
];

/// port-forward: what the kubelet accepts (portforward/websocket.go), plus `portforward.k8s.io`
/// (binary) for clients that name the SPDY protocol on a WebSocket.
pub const PORT_FORWARD_PROTOCOLS: &[ChannelProtocol] = &[
    proto("", Codec::Binary, 4),
    proto("v4.channel.k8s.io", Codec::Binary, 4),
    proto("v4.base64.channel.k8s.io", Codec::Base64, 4),
    proto("portforward.k8s.io", Codec::Binary, 4),
];

/// Picks the subprotocol as upstream's handshake does: the first the client offered that is
/// supported, in the client's order; a client offering none gets the unnamed (binary) one.
/// `None`: the client offered only protocols we do not speak (answered with 400, which is
/// also what makes kubectl fall back to SPDY).
pub fn negotiate(offered: &[String], supported: &'static [ChannelProtocol]) -> Option<ChannelProtocol> {
    if offered.is_empty() {
        return supported.iter().find(|p| p.name.is_empty()).copied();
    }
    offered.iter().find_map(|o| supported.iter().find(|p| !p.name.is_empty() && p.name == o).copied())
}

/// exec/attach negotiation: upstream, a request offering v5 anywhere in its list goes to the
/// API server's stream translator, which speaks v5 only; the others reach the kubelet.
pub fn negotiate_exec(offered: &[String]) -> Option<ChannelProtocol> {
    if offered.iter().any(|o| o == V5_CHANNEL) {
        return EXEC_PROTOCOLS.iter().find(|p| p.name == V5_CHANNEL).copied();
    }
    negotiate(offered, EXEC_PROTOCOLS)
}

/// The sending side of a channel connection.
#[derive(Clone)]
pub struct ChannelSender {
    pub ws: WsSender,
    pub codec: Codec,
}

impl ChannelSender {
    /// Sends `data` on channel `ch` (an empty `data` is a valid, empty message).
    pub async fn send(&self, ch: u8, data: &[u8]) -> Result<(), StreamError> {
        match self.codec {
            Codec::Binary => {
                let mut msg = BytesMut::with_capacity(data.len() + 1);
                msg.put_u8(ch);
                msg.extend_from_slice(data);
                self.ws.binary(msg.freeze()).await
            }
            Codec::Base64 => {
                let mut msg = String::with_capacity(data.len() * 4 / 3 + 5);
                msg.push(char::from(b'0'.wrapping_add(ch)));
                base64::engine::general_purpose::STANDARD.encode_string(data, &mut msg);
                self.ws.text(msg).await
            }
        }
    }
}

/// Splits an incoming message into its channel and data. `None` for an empty message (skipped,
/// as upstream) or undecodable base64 (upstream drops that message and goes on).
pub fn decode(codec: Codec, msg: &Bytes) -> Option<(u8, Bytes)> {
    let (&first, _) = msg.split_first()?;
    match codec {
        Codec::Binary => Some((first, msg.slice(1..))),
        Codec::Base64 => {
            let data = base64::engine::general_purpose::STANDARD.decode(&msg[1..]).ok()?;
            Some((first.wrapping_sub(b'0'), Bytes::from(data)))
        }
    }
}

/// Terminal sizes from a resize stream: a sequence of `{"Width":W,"Height":H}` objects that
/// transport frames may split anywhere (upstream reads it with a JSON stream decoder).
#[derive(Default)]
pub struct ResizeDecoder {
    buf: Vec<u8>,
}

impl ResizeDecoder {
    /// Feeds bytes in; returns the complete sizes found.
    pub fn feed(&mut self, data: &[u8]) -> Vec<(u16, u16)> {
        self.buf.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut consumed = 0;
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<serde_json::Value>();
        loop {
            match it.next() {
                Some(Ok(v)) => {
                    consumed = it.byte_offset();
                    if let Some(size) = parse_resize(&v) {
                        sizes.push(size);
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    // Garbage: resynchronise by dropping what we have.
                    consumed = self.buf.len();
                    break;
                }
                None => break,
            }
        }
        self.buf.drain(..consumed);
        // A client that never finishes an object must not grow this without bound.
        if self.buf.len() > 64 * 1024 {
            self.buf.clear();
        }
        sizes
    }
}

/// Reads `{"Width":W,"Height":H}` (client-go's TerminalSize JSON).
pub fn parse_resize(v: &serde_json::Value) -> Option<(u16, u16)> {
    let w = u16::try_from(v.get("Width")?.as_u64()?).ok()?;
    let h = u16::try_from(v.get("Height")?.as_u64()?).ok()?;
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn negotiation_follows_upstream() {
        // kubectl ≥ 1.30 and the Python client (v5 first), and v5 anywhere in the list.
        assert_eq!(negotiate_exec(&offers(&["v5.channel.k8s.io"])).unwrap().version, 5);
        assert_eq!(negotiate_exec(&offers(&["v4.channel.k8s.io", "v5.channel.k8s.io"])).unwrap().version, 5);
        // Otherwise the client's order.
        let p = negotiate_exec(&offers(&["v4.base64.channel.k8s.io", "v4.channel.k8s.io"])).unwrap();
        assert_eq!((p.name, p.codec, p.version), ("v4.base64.channel.k8s.io", Codec::Base64, 4));
        let p = negotiate_exec(&offers(&["x", "base64.channel.k8s.io"])).unwrap();
        assert_eq!((p.codec, p.version), (Codec::Base64, 1));
        // None offered: the unnamed binary protocol; only unknown ones: refused.
        assert_eq!(negotiate_exec(&[]).unwrap().name, "");
        assert!(negotiate_exec(&offers(&["v9.channel.k8s.io"])).is_none());
        // port-forward: v5 is not one of its protocols.
        let p = negotiate(&offers(&["v5.channel.k8s.io", "v4.channel.k8s.io"]), PORT_FORWARD_PROTOCOLS).unwrap();
        assert_eq!(p.name, "v4.channel.k8s.io");
        assert!(negotiate(&offers(&["v5.channel.k8s.io"]), PORT_FORWARD_PROTOCOLS).is_none());
    }

    #[test]
    fn codecs() {
        assert_eq!(decode(Codec::Binary, &Bytes::from_static(b"\x00ab")), Some((0, Bytes::from_static(b"ab"))));
        assert_eq!(decode(Codec::Binary, &Bytes::new()), None);
        assert_eq!(decode(Codec::Base64, &Bytes::from_static(b"0Zm9vCg==")), Some((0, Bytes::from_static(b"foo\n"))));
        assert_eq!(decode(Codec::Base64, &Bytes::from_static(b"0!!")), None);
    }

    #[test]
    fn resize_stream() {
        let mut d = ResizeDecoder::default();
        assert_eq!(d.feed(br#"{"Width":80,"Hei"#), vec![]);
        assert_eq!(d.feed(br#"ght":24}{"Width":1,"Height":2}"#), vec![(80, 24), (1, 2)]);
        assert_eq!(d.feed(br#"{"Width":-1,"Height":2}"#), vec![]);
        assert_eq!(d.feed(b"]]"), vec![]);
        assert_eq!(d.feed(br#"{"Width":3,"Height":4}"#), vec![(3, 4)]);
    }
}
