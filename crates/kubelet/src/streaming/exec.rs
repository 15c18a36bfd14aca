//! `exec` and `attach`: the remote-command protocol over WebSocket (the `channel.k8s.io`
//! subprotocols, `channel.rs`) and over SPDY/3.1 (`v4.channel.k8s.io`).
//!
//! Both transports end up in the same shape: the caller's `run` gets in-memory pipes
//! ([`ExecStreams`]); pumps copy between those pipes and the connection; when `run` finishes the
//! output pumps are drained, the `metav1.Status` goes on the error channel and the connection is
//! closed. If the client disappears first, `run`'s future is dropped (which must kill the
//! process) and every pump ends with the connection.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::channel::{self, ChannelProtocol, ChannelSender, ResizeDecoder};
use super::spdy::{Session, Stream, StreamReader, StreamWriter};
use super::websocket::{self, Message, CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR};
use super::{bad_request, classify, ExecStreams, ExitStatus, StreamError, StreamOptions, Task, Upgrade};

const SPDY_V4: &str = "v4.channel.k8s.io";
/// In-memory pipe capacity between the connection and the process.
const PIPE: usize = 64 * 1024;
/// How long kubectl has to open all its SPDY streams (it waits 30 s for each reply itself).
const STREAM_SETUP: Duration = Duration::from_secs(30);
/// How long output may keep draining after `run` returned (a leaked writer must not hang us).
const DRAIN: Duration = Duration::from_secs(30);
/// How long we wait for the client to close after the final status, so that closing our side
/// first cannot turn unread client bytes into a TCP reset that discards the status.
const LINGER: Duration = Duration::from_secs(5);
/// WebSocket: how long we wait for the client to close after our Close frame. Upstream waits
/// up to 15 minutes: a slow reader still has output in flight, and closing under it would
/// reset the connection and lose that output. Clients answer the Close at once normally.
const WS_FINISH: Duration = Duration::from_secs(15 * 60);

const CH_STDIN: u8 = 0;
const CH_STDOUT: u8 = 1;
const CH_STDERR: u8 = 2;
const CH_ERROR: u8 = 3;
const CH_RESIZE: u8 = 4;
/// v5: `[255, n]` — the client closed its channel `n` (stdin's EOF).
const CH_CLOSE: u8 = 255;

/// exec and attach: negotiates WebSocket (the channel subprotocols, chosen as upstream) or
/// SPDY/3.1 (X-Stream-Protocol-Version v4.channel.k8s.io), answers 101, then runs `run` with the streams
/// and reports its result on the error channel as a `metav1.Status` (a non-zero exit becomes
/// reason `NonZeroExitCode` with cause `ExitCode`, so kubectl exits with the same code).
/// Anything else gets a 400 Status, which also makes kubectl ≥ 1.30 fall back to SPDY.
pub fn serve_exec<F, Fut>(
    mut req: http::Request<hyper::body::Incoming>,
    opts: StreamOptions,
    run: F,
) -> http::Response<super::Body>
where
    F: FnOnce(ExecStreams) -> Fut + Send + 'static,
    Fut: Future<Output = ExitStatus> + Send + 'static,
{
    match classify(req.headers()) {
        Upgrade::WebSocket(offered) => {
            let Some(proto) = channel::negotiate_exec(&offered) else {
                return bad_request("unsupported WebSocket subprotocol; supported: v5.channel.k8s.io, v4.channel.k8s.io, v4.base64.channel.k8s.io, channel.k8s.io, base64.channel.k8s.io");
            };
            let resp = match websocket::handshake_response(req.headers(), Some(proto.name)) {
                Ok(r) => r,
                Err(msg) => return bad_request(msg),
            };
            let upgrade = hyper::upgrade::on(&mut req);
            super::spawn_session("exec (websocket)", async move {
                let io = TokioIo::new(upgrade.await.map_err(std::io::Error::other)?);
                ws_exec(io, proto, opts, run).await
            });
            resp
        }
        Upgrade::Spdy(offered) => {
            // v4 carries the JSON status kubectl needs for exit codes; every kubectl offers it.
            if !offered.iter().any(|o| o == SPDY_V4) {
                return bad_request("unsupported stream protocol; supported: v4.channel.k8s.io");
            }
            let upgrade = hyper::upgrade::on(&mut req);
            super::spawn_session("exec (spdy)", async move {
                let io = TokioIo::new(upgrade.await.map_err(std::io::Error::other)?);
                spdy_exec(io, opts, run).await
            });
            spdy_upgrade_response(SPDY_V4)
        }
        Upgrade::None => bad_request("exec and attach require a WebSocket or SPDY/3.1 upgrade"),
    }
}

/// The 101 answer to a SPDY upgrade. The protocol header is mandatory: without it the client
/// assumes the legacy protocol with no status channel.
pub(crate) fn spdy_upgrade_response(protocol: &'static str) -> http::Response<super::Body> {
    let mut resp = http::Response::new(super::empty());
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    h.insert(http::header::UPGRADE, http::HeaderValue::from_static("SPDY/3.1"));
    h.insert("x-stream-protocol-version", http::HeaderValue::from_static(protocol));
    resp
}

/// The connection-side ends of the pipes handed to `run`.
struct Pipes {
    stdin: Option<DuplexStream>,
    stdout: Option<DuplexStream>,
    stderr: Option<DuplexStream>,
    resize: Option<mpsc::Sender<(u16, u16)>>,
}

fn make_pipes(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> (ExecStreams, Pipes) {
    let mut streams = ExecStreams { stdin: None, stdout: None, stderr: None, resize: None, tty };
    let mut pipes = Pipes { stdin: None, stdout: None, stderr: None, resize: None };
    if stdin {
        let (ours, theirs) = tokio::io::duplex(PIPE);
        streams.stdin = Some(Box::new(theirs));
        pipes.stdin = Some(ours);
    }
    if stdout {
        let (ours, theirs) = tokio::io::duplex(PIPE);
        streams.stdout = Some(Box::new(theirs));
        pipes.stdout = Some(ours);
    }
    if stderr {
        let (ours, theirs) = tokio::io::duplex(PIPE);
        streams.stderr = Some(Box::new(theirs));
        pipes.stderr = Some(ours);
    }
    if tty {
        let (tx, rx) = mpsc::channel(8);
        streams.resize = Some(rx);
        pipes.resize = Some(tx);
    }
    (streams, pipes)
}

/// Forwards a size to the process; a full queue only drops an intermediate size.
fn send_resize(tx: &Option<mpsc::Sender<(u16, u16)>>, size: (u16, u16)) {
    if let Some(tx) = tx {
        let _ = tx.try_send(size);
    }
}

// ------------------------------------------------------------------ WebSocket

async fn ws_exec<IO, F, Fut>(io: IO, proto: ChannelProtocol, opts: StreamOptions, run: F) -> Result<(), StreamError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(ExecStreams) -> Fut,
    Fut: Future<Output = ExitStatus>,
{
    let (mut reader, ws) = websocket::accept(io).await;
    let tx = ChannelSender { ws, codec: proto.codec };
    // As upstream: an empty message on the lowest writable channel tells the client the
    // session is established.
    let first = if opts.stdout { CH_STDOUT } else if opts.stderr { CH_STDERR } else { CH_ERROR };
    tx.send(first, &[]).await?;
    let (streams, pipes) = make_pipes(opts.stdin, opts.stdout, opts.stderr, opts.tty);
    let mut pumps: Vec<Task> = Vec::new();
    if let Some(p) = pipes.stdout {
        pumps.push(Task(tokio::spawn(ws_output(p, CH_STDOUT, tx.clone()))));
    }
    if let Some(p) = pipes.stderr {
        pumps.push(Task(tokio::spawn(ws_output(p, CH_STDERR, tx.clone()))));
    }
    let mut stdin = pipes.stdin;
    let resize = pipes.resize;
    let mut sizes = ResizeDecoder::default();
    let read = async move {
        loop {
            let msg = match reader.next().await? {
                None | Some(Message::Close) => return Ok::<(), StreamError>(()),
                Some(Message::Binary(b)) | Some(Message::Text(b)) => b,
                Some(Message::Ping) => continue,
            };
            if proto.version >= 5 && msg.first() == Some(&CH_CLOSE) {
                // Upstream ends the connection on a malformed close signal.
                let [_, ch] = msg[..] else {
                    return Err(StreamError::WebSocket(format!("close signal of {} bytes", msg.len())));
                };
                if ch == CH_STDIN {
                    stdin = None;
                }
                continue;
            }
            let Some((ch, data)) = channel::decode(proto.codec, &msg) else { continue };
            match ch {
                CH_STDIN => {
                    if let Some(pipe) = stdin.as_mut() {
                        // The process closed its stdin: discard the rest.
                        if pipe.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                CH_RESIZE => {
                    for size in sizes.feed(&data) {
                        send_resize(&resize, size);
                    }
                }
                // Output channels are write-only and unknown channels are ignored, as upstream.
                _ => {}
            }
        }
    };
    tokio::pin!(read);
    let run = run(streams);
    tokio::pin!(run);

    let status = tokio::select! {
        s = &mut run => s,
        r = &mut read => {
            return end_early(&tx, r).await;
        }
    };
    let drain = async {
        for p in pumps.iter_mut() {
            p.join().await;
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(DRAIN, drain) => {}
        r = &mut read => {
            return end_early(&tx, r).await;
        }
    }
    let report = if proto.version >= 4 { Some(status.to_status_json()) } else { status.v1_message().map(String::into_bytes) };
    if let Some(report) = report {
        tx.send(CH_ERROR, &report).await?;
    }
    // Clients end their streams only when the connection closes, so close right after the
    // status, then let the client read everything and answer (see WS_FINISH).
    tx.ws.close(CLOSE_NORMAL).await?;
    drop(tx);
    let _ = tokio::time::timeout(WS_FINISH, &mut read).await;
    Ok(())
}

/// The client left (or broke the protocol) before the process ended: say why in the Close
/// frame when the connection still works; dropping `run` then kills the process.
async fn end_early(tx: &ChannelSender, r: Result<(), StreamError>) -> Result<(), StreamError> {
    match r {
        Ok(()) => {
            let _ = tx.ws.close(CLOSE_NORMAL).await;
            Err(StreamError::Closed)
        }
        Err(e) => {
            let _ = tx.ws.close(CLOSE_PROTOCOL_ERROR).await;
            Err(e)
        }
    }
}

/// Copies process output to the client on `ch` until the process side closes its end.
async fn ws_output(mut pipe: DuplexStream, ch: u8, tx: ChannelSender) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if tx.send(ch, &buf[..n]).await.is_err() {
            return;
        }
    }
}

// ------------------------------------------------------------------ SPDY

/// The streams kubectl opened, by `streamtype`.
#[derive(Default)]
struct SpdyStreams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

impl SpdyStreams {
    fn complete(&self, o: &StreamOptions) -> bool {
        self.error.is_some()
            && (!o.stdin || self.stdin.is_some())
            && (!o.stdout || self.stdout.is_some())
            && (!o.stderr || self.stderr.is_some())
            && (!o.tty || self.resize.is_some())
    }
}

/// Waits until the client has opened every stream the query promised.
async fn accept_exec_streams(session: &mut Session, opts: &StreamOptions) -> Result<SpdyStreams, StreamError> {
    let mut s = SpdyStreams::default();
    let collect = async {
        while !s.complete(opts) {
            let stream = session.accept().await.ok_or(StreamError::Closed)?;
            let kind = stream.header("streamtype").unwrap_or("").to_ascii_lowercase();
            let slot = match kind.as_str() {
                "error" => &mut s.error,
                "stdin" => &mut s.stdin,
                "stdout" => &mut s.stdout,
                "stderr" => &mut s.stderr,
                "resize" => &mut s.resize,
                other => {
                    tracing::debug!("ignoring exec stream of type {other:?}");
                    continue;
                }
            };
            *slot = Some(stream);
        }
        Ok::<(), StreamError>(())
    };
    tokio::time::timeout(STREAM_SETUP, collect)
        .await
        .map_err(|_| StreamError::Timeout("exec streams"))??;
    Ok(s)
}

async fn spdy_exec<IO, F, Fut>(io: IO, opts: StreamOptions, run: F) -> Result<(), StreamError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    F: FnOnce(ExecStreams) -> Fut,
    Fut: Future<Output = ExitStatus>,
{
    let mut session = Session::start(io)?;
    let s = accept_exec_streams(&mut session, &opts).await?;
    let Some(error) = s.error else { return Err(StreamError::Spdy("no error stream".into())) };
    let (streams, pipes) = make_pipes(s.stdin.is_some(), s.stdout.is_some(), s.stderr.is_some(), opts.tty);

    let mut tasks: Vec<Task> = Vec::new();
    if let (Some(st), Some(pipe)) = (s.stdin, pipes.stdin) {
        tasks.push(Task(tokio::spawn(spdy_input(st.reader, pipe))));
    }
    if let (Some(st), Some(tx)) = (s.resize, pipes.resize) {
        tasks.push(Task(tokio::spawn(spdy_resize(st.reader, tx))));
    }
    let mut outputs: Vec<Task> = Vec::new();
    if let (Some(st), Some(pipe)) = (s.stdout, pipes.stdout) {
        outputs.push(Task(tokio::spawn(spdy_output(pipe, st.writer))));
    }
    if let (Some(st), Some(pipe)) = (s.stderr, pipes.stderr) {
        outputs.push(Task(tokio::spawn(spdy_output(pipe, st.writer))));
    }

    let closed = session.closed_watch();
    let client_gone = async move {
        let mut c = closed;
        let _ = c.wait_for(|v| *v).await;
    };
    tokio::pin!(client_gone);
    let run = run(streams);
    tokio::pin!(run);
    let status = tokio::select! {
        s = &mut run => s,
        _ = &mut client_gone => return Err(StreamError::Closed),
    };
    let drain = async {
        for t in outputs.iter_mut() {
            t.join().await;
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(DRAIN, drain) => {}
        _ = &mut client_gone => return Err(StreamError::Closed),
    }
    error.writer.write(Bytes::from(status.to_status_json())).await?;
    error.writer.finish().await?;
    // kubectl answers with RST_STREAMs and GOAWAY and closes; give it time to read everything.
    let _ = tokio::time::timeout(LINGER, &mut client_gone).await;
    super::spdy::go_away(&error.writer).await;
    drop(tasks);
    Ok(())
}

/// Client stdin → process; ends (closing the process's stdin) on FIN or reset.
async fn spdy_input(mut reader: StreamReader, mut pipe: DuplexStream) {
    while let Some(data) = reader.recv().await {
        if pipe.write_all(&data).await.is_err() {
            return;
        }
    }
    let _ = pipe.shutdown().await;
}

/// Process output → client, then FIN so kubectl sees EOF on that stream.
async fn spdy_output(mut pipe: DuplexStream, writer: StreamWriter) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if writer.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = writer.finish().await;
}

/// The resize stream carries a sequence of JSON objects that DATA frames may split anywhere.
async fn spdy_resize(mut reader: StreamReader, tx: mpsc::Sender<(u16, u16)>) {
    let tx = Some(tx);
    let mut sizes = ResizeDecoder::default();
    while let Some(data) = reader.recv().await {
        for size in sizes.feed(&data) {
            send_resize(&tx, size);
        }
    }
}
