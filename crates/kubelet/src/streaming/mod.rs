//! Streaming subresources of the node agent: `exec`, `attach` and `port-forward`.
//!
//! kubectl talks to the API server, which proxies the upgrade request byte-for-byte to the node
//! agent; all protocol work happens here. Three wire protocols have to be spoken because kubectl
//! versions differ (see `shared/notes/kubectl-protocol.md` §10–§11):
//!
//! * WebSocket with the `channel.k8s.io` subprotocols (`channel.rs`) for exec/attach — `v5` from
//!   kubectl ≥ 1.30, `v4`, `v4.base64` and the pre-v4 ones from other clients (the official
//!   Python client among them) — and for port-forward with `?ports=` (`v4.channel.k8s.io`);
//! * SPDY/3.1 with `X-Stream-Protocol-Version: v4.channel.k8s.io` for exec/attach (≤ 1.29, and the
//!   fallback of newer clients) and `portforward.k8s.io` for port-forward (≤ 1.30);
//! * SPDY/3.1 tunnelled inside WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`) for
//!   port-forward from kubectl ≥ 1.31.
//!
//! The entry points answer the upgrade request synchronously (101 or 400) and do the rest on a
//! spawned task that owns the upgraded connection; that task ends — and drops the caller's future,
//! which is expected to kill the process it started — when the client goes away.

pub mod channel;
pub mod exec;
pub mod portforward;
pub mod spdy;
pub mod websocket;

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

pub use exec::serve_exec;
pub use portforward::serve_port_forward;

/// Response body type used by the node agent's HTTP server.
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Errors of the streaming protocols. They never reach the client as such: a broken connection
/// simply ends the session, so these exist for logging and for unit tests.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket protocol error: {0}")]
    WebSocket(String),
    #[error("spdy protocol error: {0}")]
    Spdy(String),
    #[error("header compression error: {0}")]
    Compression(String),
    #[error("connection closed")]
    Closed,
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

/// Which standard streams the client asked for (`?stdin=true&stdout=true&stderr=true&tty=true`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamOptions {
    /// Parses the flags from a raw query string. Only `true`/`1` count as set, like the
    /// API server's boolean query parameters; a TTY merges stderr into stdout, so `stderr` is
    /// forced off when `tty` is set (kubectl never creates a stderr stream in that case).
    pub fn from_query(q: &str) -> Self {
        let mut o = StreamOptions::default();
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let on = matches!(v, "true" | "1" | "True" | "TRUE");
            match k {
                "stdin" => o.stdin = on,
                "stdout" => o.stdout = on,
                "stderr" => o.stderr = on,
                "tty" => o.tty = on,
                _ => {}
            }
        }
        if o.tty {
            o.stderr = false;
        }
        o
    }
}

/// The process side of an exec/attach session, handed to the caller's `run` function.
///
/// `stdin` reaches EOF when the client closes its stdin (v5 close channel, SPDY FIN); the caller
/// must drop `stdout`/`stderr` when the process's output ends, because the final status is sent
/// only after both have been drained to the client.
pub struct ExecStreams {
    pub stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
    pub stdout: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    pub stderr: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    /// Terminal size changes as (width, height); present only with a TTY.
    pub resize: Option<tokio::sync::mpsc::Receiver<(u16, u16)>>,
    pub tty: bool,
}

/// How the exec'd process ended; becomes the `metav1.Status` on the error channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Code(i32),
    Error(String),
}

impl ExitStatus {
    /// The `metav1.Status` kubectl expects on the error channel (protocol v4 and later).
    /// A non-zero exit must carry reason `NonZeroExitCode` and a cause `ExitCode` whose message is
    /// the number, otherwise kubectl exits 1 instead of propagating the code.
    pub fn to_status_json(&self) -> Vec<u8> {
        let v = match self {
            ExitStatus::Success | ExitStatus::Code(0) => {
                serde_json::json!({"metadata": {}, "status": "Success"})
            }
            ExitStatus::Code(n) => serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: exit code {n}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": n.to_string()}]},
            }),
            ExitStatus::Error(msg) => serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": msg,
                "reason": "InternalError",
                "code": 500,
            }),
        };
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// What the error channel carries with the pre-v4 protocols: nothing on success, else the
    /// Status message as plain text (upstream's `v1WriteStatusFunc`).
    pub fn v1_message(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.to_status_json()).ok()?;
        if v["status"] == "Success" {
            return None;
        }
        Some(v["message"].as_str().unwrap_or("").to_string())
    }
}

/// A `metav1.Status` failure response, for requests that cannot be upgraded.
pub fn status_response(code: http::StatusCode, reason: &str, message: &str) -> http::Response<Body> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut resp = http::Response::new(full(serde_json::to_vec(&body).unwrap_or_default()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// 400 with a Status: the reply to anything that is not a usable upgrade request. For
/// WebSocket attempts this is also what makes kubectl ≥ 1.30 fall back to SPDY.
pub(crate) fn bad_request(message: &str) -> http::Response<Body> {
    status_response(http::StatusCode::BAD_REQUEST, "BadRequest", message)
}

pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub(crate) fn empty() -> Body {
    full(Bytes::new())
}

/// Which upgrade the request asks for, decided from its headers only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upgrade {
    /// WebSocket with the client's offered subprotocols, in order.
    WebSocket(Vec<String>),
    /// SPDY/3.1 with the offered `X-Stream-Protocol-Version` values, in order.
    Spdy(Vec<String>),
    None,
}

pub(crate) fn classify(headers: &http::HeaderMap) -> Upgrade {
    let upgrade = headers
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect::<Vec<_>>();
    let list = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if upgrade.iter().any(|u| u == "websocket") {
        Upgrade::WebSocket(list("sec-websocket-protocol"))
    } else if upgrade.iter().any(|u| u == "spdy/3.1") {
        Upgrade::Spdy(list("x-stream-protocol-version"))
    } else {
        Upgrade::None
    }
}

/// Spawns `fut` and logs its error; the session tasks own the connection, so an error there is
/// only ever a disconnected or misbehaving client.
pub(crate) fn spawn_session<F>(what: &'static str, fut: F)
where
    F: Future<Output = Result<(), StreamError>> + Send + 'static,
{
    tokio::spawn(async move {
        match fut.await {
            Ok(()) => tracing::debug!("{what} session finished"),
            Err(e) => tracing::debug!("{what} session ended: {e}"),
        }
    });
}

/// Aborts a pump task when the session ends by any path, so no task outlives its connection.
pub(crate) struct Task(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Task {
    /// Waits for the task to end by itself.
    pub(crate) async fn join(&mut self) {
        let _ = (&mut self.0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_flags() {
        let o = StreamOptions::from_query("command=sh&container=c&stdin=true&stdout=true&tty=true");
        assert_eq!(o, StreamOptions { stdin: true, stdout: true, stderr: false, tty: true });
        let o = StreamOptions::from_query("stdout=true&stderr=true");
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
    }

    #[test]
    fn exit_status_json() {
        let v: serde_json::Value = serde_json::from_slice(&ExitStatus::Code(3).to_status_json()).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        let v: serde_json::Value = serde_json::from_slice(&ExitStatus::Success.to_status_json()).unwrap();
        assert_eq!(v["status"], "Success");
    }
}
