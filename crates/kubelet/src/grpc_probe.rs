//! gRPC probes (`grpc:` in a probe): the standard `grpc.health.v1.Health/Check` call, over
//! plaintext HTTP/2 to the pod's address, with upstream's kubelet's outcomes and messages.
//! The two protobuf messages involved have one field each, so they are written and read
//! here rather than generated.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// `HealthCheckResponse.ServingStatus` names.
const SERVING_STATUS: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// gRPC status code names, as grpc-go prints them.
const CODES: [&str; 17] = [
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
    "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
];
const UNIMPLEMENTED: u32 = 12;

/// Probes `service` (empty: the whole server) at `host:port` within `timeout`.
pub async fn check(host: &str, port: u16, service: &str, timeout: Duration) -> Result<(), String> {
    let addr = format!("{host}:{port}");
    let start = Instant::now();
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.map_err(|e| e.to_string())
    };
    let (mut sender, conn) = match tokio::time::timeout(timeout, connect).await {
        Err(_) => return Err(format!("timeout: failed to connect service {addr:?} within {}s: context deadline exceeded", timeout.as_secs())),
        Ok(Err(e)) => return Err(format!("error: failed to connect service at {addr:?}: {e}")),
        Ok(Ok(c)) => c,
    };
    // Ends once `sender` is dropped.
    tokio::spawn(conn);
    let request = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "kube-probe/1.33")
        .body(Full::new(Bytes::from(frame(&health_check_request(service)))))
        .map_err(|e| format!("error: health rpc probe failed: {e}"))?;
    let call = async {
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?;
        // A "trailers-only" answer carries the status in the headers.
        let trailers = body.trailers().cloned().unwrap_or_default();
        let field = |name: &str| trailers.get(name).or_else(|| parts.headers.get(name)).and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok::<_, String>((parts.status, field("grpc-status"), field("grpc-message"), body.to_bytes()))
    };
    let remaining = timeout.saturating_sub(start.elapsed());
    let (http_status, grpc_status, message, data) = match tokio::time::timeout(remaining, call).await {
        Err(_) => return Err(format!("timeout: health rpc did not complete within {}s", timeout.as_secs())),
        Ok(Err(e)) => return Err(format!("error: health rpc probe failed: rpc error: code = Unavailable desc = {e}")),
        Ok(Ok(r)) => r,
    };
    let code = match grpc_status.as_deref().map(str::parse::<u32>) {
        Some(Ok(c)) => c,
        _ => return Err(format!("error: health rpc probe failed: rpc error: code = Unknown desc = unexpected HTTP status code received from server: {}", http_status.as_u16())),
    };
    // grpc-message is percent-encoded.
    let message = percent_encoding::percent_decode_str(message.as_deref().unwrap_or("")).decode_utf8_lossy().into_owned();
    if code == UNIMPLEMENTED {
        return Err(format!("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {message}"));
    }
    if code != 0 {
        let name = CODES.get(code as usize).copied().unwrap_or("Unknown");
        return Err(format!("error: health rpc probe failed: rpc error: code = {name} desc = {message}"));
    }
    let status = serving_status(&data).ok_or("error: health rpc probe failed: cannot decode the HealthCheckResponse")?;
    if status != 1 {
        let name = SERVING_STATUS.get(status as usize).copied().unwrap_or("UNKNOWN");
        return Err(format!("service unhealthy (responded with {name:?})"));
    }
    Ok(())
}

/// `HealthCheckRequest { service = 1 }`.
fn health_check_request(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a); // field 1, length-delimited
        let mut n = service.len();
        while n >= 0x80 {
            msg.push((n as u8) | 0x80);
            n >>= 7;
        }
        msg.push(n as u8);
        msg.extend_from_slice(service.as_bytes());
    }
    msg
}

/// A gRPC message on the wire: uncompressed flag, big-endian length, message.
fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// `HealthCheckResponse.status` (field 1, a varint; absent means 0) from one framed message.
fn serving_status(data: &[u8]) -> Option<u64> {
    let len = u32::from_be_bytes(data.get(1..5)?.try_into().ok()?) as usize;
    let msg = data.get(5..5 + len)?;
    let mut i = 0;
    let mut status = 0;
    while i < msg.len() {
        let (key, n) = varint(&msg[i..])?;
        i += n;
        match key & 7 {
            0 => {
                let (v, n) = varint(&msg[i..])?;
                i += n;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let (l, n) = varint(&msg[i..])?;
                i += n + l as usize;
            }
            5 => i += 4,
            1 => i += 8,
            _ => return None,
        }
    }
    Some(status)
}

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Incoming;

    /// A gRPC health server (hyper, HTTP/2 over TCP): the whole server and "app" serve,
    /// "down" does not, anything else is an unknown service; `implemented: false` answers
    /// Unimplemented as a server without the health service does.
    async fn health_server(implemented: bool) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| async move {
                    assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let service = String::from_utf8_lossy(body.get(7..).unwrap_or_default()).into_owned();
                    let (code, msg, status) = match (implemented, service.as_str()) {
                        (false, _) => (12, "unknown service grpc.health.v1.Health", None),
                        (true, "" | "app") => (0, "", Some(1u8)),
                        (true, "down") => (0, "", Some(2)),
                        (true, _) => (5, "unknown service", None),
                    };
                    let data = status.map(|s| frame(&[0x08, s])).unwrap_or_default();
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", code.to_string().parse().unwrap());
                    trailers.insert("grpc-message", msg.replace(' ', "%20").parse().unwrap());
                    let body = http_body_util::StreamBody::new(futures::stream::iter(vec![
                        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(data))),
                        Ok(hyper::body::Frame::trailers(trailers)),
                    ]));
                    Ok::<_, std::convert::Infallible>(hyper::Response::builder().header("content-type", "application/grpc").body(body).unwrap())
                });
                tokio::spawn(hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tcp), svc));
            }
        });
        port
    }

    #[tokio::test]
    async fn outcomes_and_messages_as_upstream() {
        let t = Duration::from_secs(1);
        let port = health_server(true).await;
        assert_eq!(check("127.0.0.1", port, "", t).await, Ok(()));
        assert_eq!(check("127.0.0.1", port, "app", t).await, Ok(()));
        assert_eq!(check("127.0.0.1", port, "down", t).await, Err("service unhealthy (responded with \"NOT_SERVING\")".into()));
        assert_eq!(check("127.0.0.1", port, "other", t).await, Err("error: health rpc probe failed: rpc error: code = NotFound desc = unknown service".into()));
        let port = health_server(false).await;
        let e = check("127.0.0.1", port, "", t).await.unwrap_err();
        assert!(e.starts_with("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): unknown service"), "{e}");
        // Nothing listening.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let e = check("127.0.0.1", closed, "", t).await.unwrap_err();
        assert!(e.starts_with(&format!("error: failed to connect service at \"127.0.0.1:{closed}\"")), "{e}");
        // A server that accepts but never answers. (grpc-go, waiting for the server's HTTP/2
        // preface while it connects, calls this a connection timeout; the call times out here.)
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let e = check("127.0.0.1", port, "", t).await.unwrap_err();
        assert_eq!(e, "timeout: health rpc did not complete within 1s");
    }

    #[test]
    fn request_and_response_encoding() {
        assert_eq!(health_check_request(""), Vec::<u8>::new());
        assert_eq!(health_check_request("app"), vec![0x0a, 3, b'a', b'p', b'p']);
        assert_eq!(serving_status(&frame(&[0x08, 2])), Some(2));
        assert_eq!(serving_status(&frame(&[])), Some(0));
        assert_eq!(serving_status(&[0, 0, 0]), None);
    }
}
