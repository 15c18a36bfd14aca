//! The server side of SPDY/3.1 as kubectl (Go `moby/spdystream`) uses it: the client opens
//! streams with SYN_STREAM, we answer each with SYN_REPLY, data flows in DATA frames with FIN for
//! half-close, PINGs are echoed, RST_STREAM/GOAWAY end things.
//!
//! Header blocks are zlib-compressed with the SPDY/3 dictionary, one compression context per
//! direction for the whole connection, so *every* header block (SYN_STREAM, SYN_REPLY, HEADERS)
//! must pass through the same (de)compressor in order.
//!
//! Flow control: we send WINDOW_UPDATE as the application consumes received data, so a peer
//! that honours windows never stalls. spdystream itself never sends WINDOW_UPDATE, so we do not
//! throttle our own sending on the peer's window (that would stall every transfer after 64 KiB);
//! backpressure towards the peer comes from TCP and the bounded queues below.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::StreamError;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;
const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status CANCEL.
pub const RST_CANCEL: u32 = 5;
/// Size of the DATA frames we send; small enough to interleave streams fairly.
const MAX_DATA_CHUNK: usize = 32 * 1024;
/// Largest frame we accept (the length field allows 16 MiB).
const MAX_FRAME: usize = 16 << 20;
/// Largest decompressed header block we accept.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// DATA frames buffered per stream before the read loop waits for the application.
const STREAM_QUEUE: usize = 64;

/// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1):
/// length-prefixed common header names and values, then a run of common value fragments.
pub fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
        "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
        "cache-control", "connection", "content-base", "content-encoding", "content-language",
        "content-length", "content-location", "content-md5", "content-range", "content-type",
        "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
        "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
        "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
        "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
        "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
        "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, ",
        "Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
}

/// Inflates client header blocks; the zlib stream spans the whole connection.
struct HeaderDecoder {
    z: Decompress,
    dict: Vec<u8>,
}

impl HeaderDecoder {
    fn new() -> Self {
        HeaderDecoder { z: Decompress::new(true), dict: dictionary() }
    }

    fn decode(&mut self, input: &[u8]) -> Result<Vec<(String, String)>, StreamError> {
        let block = self.inflate(input)?;
        parse_header_block(&block)
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, StreamError> {
        let err = |e: flate2::DecompressError| StreamError::Compression(e.to_string());
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(StreamError::Compression("header block too large".into()));
                }
                out.reserve(out.len().max(256));
            }
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let res = self.z.decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.z.total_in() - in0) as usize;
            let progressed = self.z.total_in() != in0 || self.z.total_out() != out0;
            match res {
                Ok(flate2::Status::StreamEnd) => break,
                Ok(_) => {
                    if pos >= input.len() && out.len() < out.capacity() {
                        break;
                    }
                    if !progressed && out.len() < out.capacity() {
                        return Err(StreamError::Compression("inflate made no progress".into()));
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z.set_dictionary(&self.dict).map_err(err)?;
                }
                Err(e) => return Err(err(e)),
            }
        }
        Ok(out)
    }
}

/// Parses an uncompressed name/value block: count, then (len, name, len, value) pairs.
pub fn parse_header_block(b: &[u8]) -> Result<Vec<(String, String)>, StreamError> {
    let bad = || StreamError::Spdy("truncated header block".into());
    let mut pos = 0usize;
    let take_u32 = |pos: &mut usize| -> Result<usize, StreamError> {
        let s = b.get(*pos..*pos + 4).ok_or_else(bad)?;
        *pos += 4;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
    };
    let count = take_u32(&mut pos)?;
    let mut out = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = take_u32(&mut pos)?;
        let name = b.get(pos..pos + n).ok_or_else(bad)?;
        pos += n;
        let n = take_u32(&mut pos)?;
        let value = b.get(pos..pos + n).ok_or_else(bad)?;
        pos += n;
        out.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Ok(out)
}

/// Deflates our header blocks (we only ever send empty ones, but they must still be valid
/// members of the connection's zlib stream).
struct HeaderEncoder {
    z: Compress,
}

impl HeaderEncoder {
    fn new() -> Result<Self, StreamError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&dictionary()).map_err(|e| StreamError::Compression(e.to_string()))?;
        Ok(HeaderEncoder { z })
    }

    fn encode(&mut self, headers: &[(&str, &str)]) -> Result<Vec<u8>, StreamError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            let in0 = self.z.total_in();
            self.z
                .compress_vec(&raw[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| StreamError::Compression(e.to_string()))?;
            pos += (self.z.total_in() - in0) as usize;
            if pos >= raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Frames queued for the writer task.
#[derive(Debug)]
enum Out {
    SynReply(u32),
    Data { id: u32, data: Bytes, fin: bool },
    Rst { id: u32, status: u32 },
    Ping(u32),
    WindowUpdate { id: u32, delta: u32 },
    GoAway,
}

/// A client-initiated stream.
pub struct Stream {
    pub id: u32,
    /// Header names are lower-cased; values as sent.
    pub headers: Vec<(String, String)>,
    pub reader: StreamReader,
    pub writer: StreamWriter,
}

impl Stream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Data the client sends on one stream; `None` once it half-closed (FIN) or reset the stream.
pub struct StreamReader {
    id: u32,
    rx: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Out>,
}

impl StreamReader {
    pub async fn recv(&mut self) -> Option<Bytes> {
        let data = self.rx.recv().await?;
        // Re-open the window by what the application consumed; failure means the connection
        // is gone, which the next recv reports anyway.
        if let Ok(delta) = u32::try_from(data.len()) {
            if delta > 0 {
                let _ = self.out.send(Out::WindowUpdate { id: self.id, delta }).await;
            }
        }
        Some(data)
    }
}

/// Sending side of one stream. Cloneable so several tasks can write to one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
}

impl StreamWriter {
    /// Sends `data` in DATA frames of at most 32 KiB.
    pub async fn write(&self, mut data: Bytes) -> Result<(), StreamError> {
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_DATA_CHUNK));
            self.send(Out::Data { id: self.id, data: chunk, fin: false }).await?;
        }
        Ok(())
    }

    /// Half-closes the stream: an empty DATA frame with FIN, which kubectl reads as EOF.
    pub async fn finish(&self) -> Result<(), StreamError> {
        self.send(Out::Data { id: self.id, data: Bytes::new(), fin: true }).await
    }

    /// Aborts the stream (RST_STREAM CANCEL).
    pub async fn reset(&self) -> Result<(), StreamError> {
        self.send(Out::Rst { id: self.id, status: RST_CANCEL }).await
    }

    async fn send(&self, o: Out) -> Result<(), StreamError> {
        self.out.send(o).await.map_err(|_| StreamError::Closed)
    }
}

/// One SPDY connection. Dropping it stops the read loop and closes the connection.
pub struct Session {
    incoming: mpsc::Receiver<Stream>,
    closed: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Starts the read loop and writer task on `io` (an upgraded connection, or the byte
    /// stream carried inside WebSocket messages).
    pub fn start<IO>(io: IO) -> Result<Session, StreamError>
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let encoder = HeaderEncoder::new()?;
        let (out_tx, out_rx) = mpsc::channel(64);
        let (in_tx, incoming) = mpsc::channel(16);
        let (closed_tx, closed) = watch::channel(false);
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(write_loop(wr, out_rx, encoder, shutdown_rx));
        let reader = tokio::spawn(async move {
            if let Err(e) = read_loop(rd, out_tx, in_tx).await {
                tracing::debug!("spdy read loop: {e}");
            }
            let _ = closed_tx.send(true);
        });
        Ok(Session { incoming, closed, shutdown, reader })
    }

    /// The next stream the client opened (already answered with SYN_REPLY); `None` once the
    /// connection is closed.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.incoming.recv().await
    }

    /// Resolves when the client's side of the connection has ended (EOF, error).
    pub async fn closed(&self) {
        let mut c = self.closed.clone();
        let _ = c.wait_for(|v| *v).await;
    }

    /// A watch that turns `true` when the client's side of the connection ended.
    pub fn closed_watch(&self) -> watch::Receiver<bool> {
        self.closed.clone()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
        let _ = self.shutdown.send(true);
    }
}

fn control_header(buf: &mut BytesMut, typ: u16, flags: u8, len: usize) {
    buf.put_u16(0x8003);
    buf.put_u16(typ);
    buf.put_u8(flags);
    buf.put_uint(len as u64, 3);
}

fn encode(o: &Out, enc: &mut HeaderEncoder, buf: &mut BytesMut) -> Result<(), StreamError> {
    match o {
        Out::SynReply(id) => {
            let block = enc.encode(&[])?;
            control_header(buf, TYPE_SYN_REPLY, 0, 4 + block.len());
            buf.put_u32(id & 0x7FFF_FFFF);
            buf.extend_from_slice(&block);
        }
        Out::Data { id, data, fin } => {
            buf.put_u32(id & 0x7FFF_FFFF);
            buf.put_u8(if *fin { FLAG_FIN } else { 0 });
            buf.put_uint(data.len() as u64, 3);
            buf.extend_from_slice(data);
        }
        Out::Rst { id, status } => {
            control_header(buf, TYPE_RST_STREAM, 0, 8);
            buf.put_u32(id & 0x7FFF_FFFF);
            buf.put_u32(*status);
        }
        Out::Ping(id) => {
            control_header(buf, TYPE_PING, 0, 4);
            buf.put_u32(*id);
        }
        Out::WindowUpdate { id, delta } => {
            control_header(buf, TYPE_WINDOW_UPDATE, 0, 8);
            buf.put_u32(id & 0x7FFF_FFFF);
            buf.put_u32(delta & 0x7FFF_FFFF);
        }
        Out::GoAway => {
            control_header(buf, TYPE_GOAWAY, 0, 8);
            buf.put_u32(0);
            buf.put_u32(0);
        }
    }
    Ok(())
}

/// Serialises frames from all streams onto the connection, batching whatever is queued into
/// one write. Ends when the session is dropped or every sender is gone, closing the write side.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Out>,
    mut enc: HeaderEncoder,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let first = tokio::select! {
            biased;
            o = rx.recv() => o,
            _ = shutdown.wait_for(|v| *v) => None,
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        while let Some(o) = next {
            if let Err(e) = encode(&o, &mut enc, &mut buf) {
                tracing::debug!("spdy encode: {e}");
                return;
            }
            next = if buf.len() < 256 * 1024 { rx.try_recv().ok() } else { None };
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        buf.clear();
    }
    // Frames queued before shutdown (e.g. the final status) were already written above.
    let _ = wr.shutdown().await;
}

/// Reads frames, answers SYN_STREAM and PING, routes DATA to streams. Returns on EOF.
async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    out: mpsc::Sender<Out>,
    incoming: mpsc::Sender<Stream>,
) -> Result<(), StreamError> {
    let mut decoder = HeaderDecoder::new();
    let mut streams: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let closed = || StreamError::Closed;
    loop {
        let mut head = [0u8; 8];
        match rd.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Err(StreamError::Spdy(format!("frame of {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        rd.read_exact(&mut payload).await?;
        let word = |i: usize| -> Result<u32, StreamError> {
            payload
                .get(i..i + 4)
                .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
                .ok_or_else(|| StreamError::Spdy("short control frame".into()))
        };
        if head[0] & 0x80 == 0 {
            // DATA frame.
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let fin = flags & FLAG_FIN != 0;
            if let Some(tx) = streams.get(&id) {
                if !payload.is_empty() && tx.send(Bytes::from(payload)).await.is_err() {
                    // The application no longer reads this stream; drop further data.
                    streams.remove(&id);
                }
            }
            if fin {
                streams.remove(&id);
            }
            continue;
        }
        let version = u16::from_be_bytes([head[0] & 0x7F, head[1]]);
        if version != 3 {
            return Err(StreamError::Spdy(format!("unsupported version {version}")));
        }
        match u16::from_be_bytes([head[2], head[3]]) {
            TYPE_SYN_STREAM => {
                let id = word(0)? & 0x7FFF_FFFF;
                let block = payload.get(10..).ok_or_else(|| StreamError::Spdy("short SYN_STREAM".into()))?;
                let headers = decoder.decode(block)?;
                out.send(Out::SynReply(id)).await.map_err(|_| closed())?;
                let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                if flags & FLAG_FIN == 0 {
                    streams.insert(id, tx);
                }
                let stream = Stream {
                    id,
                    headers,
                    reader: StreamReader { id, rx, out: out.clone() },
                    writer: StreamWriter { id, out: out.clone() },
                };
                if incoming.send(stream).await.is_err() {
                    // Nobody accepts streams any more: refuse it.
                    let _ = out.send(Out::Rst { id, status: RST_CANCEL }).await;
                }
            }
            TYPE_HEADERS | TYPE_SYN_REPLY => {
                // Must still go through the decompressor to keep the zlib context in step.
                if let Some(block) = payload.get(4..) {
                    decoder.decode(block)?;
                }
                if flags & FLAG_FIN != 0 {
                    streams.remove(&(word(0)? & 0x7FFF_FFFF));
                }
            }
            TYPE_RST_STREAM => {
                streams.remove(&(word(0)? & 0x7FFF_FFFF));
            }
            TYPE_PING => {
                out.send(Out::Ping(word(0)?)).await.map_err(|_| closed())?;
            }
            TYPE_GOAWAY => {
                // The client will open no more streams; existing ones finish normally and the
                // client closes the connection, which ends this loop.
                tracing::trace!("spdy GOAWAY received");
            }
            // SETTINGS, WINDOW_UPDATE (we do not throttle on the peer's window), NOOP, ...
            _ => {}
        }
    }
}

/// Sends GOAWAY; used before closing a connection we end ourselves.
pub(crate) async fn go_away(w: &StreamWriter) {
    let _ = w.out.send(Out::GoAway).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_matches_spec() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        let (mut a, mut b) = (1u32, 0u32);
        for x in &d {
            a = (a + u32::from(*x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 3821447106);
    }

    #[test]
    fn header_roundtrip_across_blocks() {
        let mut enc = HeaderEncoder::new().unwrap();
        let mut dec = HeaderDecoder::new();
        for i in 0..3 {
            let port = format!("80{i}");
            let block = enc.encode(&[("streamtype", "data"), ("port", &port)]).unwrap();
            let h = dec.decode(&block).unwrap();
            assert_eq!(h, vec![("streamtype".into(), "data".into()), ("port".into(), port)]);
        }
    }

    #[test]
    fn truncated_block_is_an_error() {
        assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
        assert!(parse_header_block(&[0, 0]).is_err());
    }
}
