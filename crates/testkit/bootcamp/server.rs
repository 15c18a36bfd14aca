// The kubernetes-bootcamp test application, std only, built static by the test kit
// (`rustc -O -C target-feature=+crt-static`). One binary, two roles chosen by its name:
//
// - `node server.js` (any name but `curl`): the HTTP server of gcr.io/google-samples/
//   kubernetes-bootcamp. Listens on 8080 (or $PORT), answers every request with
//   `Hello Kubernetes bootcamp! | Running on: <host> | v=<version>` and logs like the
//   original node app. The version is read from the script named by the first argument
//   (`| v=N` in server.js, as in the original), else $BOOTCAMP_VERSION, else 1.
// - `curl [flags] URL`: a minimal HTTP/1.1 GET client printing the response body.
// - `grpc-health`: a gRPC health server (grpc.health.v1.Health/Check over plaintext HTTP/2)
//   on $PORT (default 9090), for the node agent's gRPC probe tests: the whole server ("")
//   and the services named in $SERVING (comma-separated) answer SERVING, others NOT_SERVING.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    if name == "curl" {
        std::process::exit(curl(&args[1..]));
    }
    if name == "grpc-health" {
        grpc_health();
    }
    serve(args.get(1).map(String::as_str));
}

/// Formats a time as JavaScript's `Date.prototype.toISOString` does: 2021-02-15T14:19:08.285Z.
fn iso(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        d.subsec_millis()
    )
}

/// Seconds as JavaScript prints `ms / 1000`: no trailing zeros (`1785.875`, `2.5`, `3`).
fn js_seconds(ms: u128) -> String {
    let s = format!("{}.{:03}", ms / 1000, ms % 1000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn hostname() -> String {
    match std::env::var("HOSTNAME") {
        Ok(h) if !h.is_empty() => h,
        _ => std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "undefined".into()),
    }
}

fn version(script: Option<&str>) -> String {
    if let Some(text) = script.and_then(|p| std::fs::read_to_string(p).ok()) {
        if let Some(i) = text.find("| v=") {
            let v: String = text[i + 4..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect();
            if !v.is_empty() {
                return v;
            }
        }
    }
    std::env::var("BOOTCAMP_VERSION").unwrap_or_else(|_| "1".into())
}

extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn _exit(status: i32) -> !;
}

extern "C" fn on_term(_: i32) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { _exit(0) }
}

fn serve(script: Option<&str>) {
    // Unlike node as PID 1, stop promptly on SIGTERM so pod deletion does not wait 30 s.
    // SAFETY: installing a handler that only calls _exit.
    unsafe {
        signal(15, on_term as usize);
    }
    let version = version(script);
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Error: listen EADDRINUSE or failed on port {port}: {e}");
            std::process::exit(1);
        }
    };
    let start = Instant::now();
    let host = Arc::new(hostname());
    println!(
        "Kubernetes Bootcamp App Started At: {} | Running On:  {} \n",
        iso(SystemTime::now()),
        host
    );
    let requests = Arc::new(AtomicU64::new(0));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let (host, requests, version) = (host.clone(), requests.clone(), version.clone());
        std::thread::spawn(move || handle(conn, &host, &requests, &version, start));
    }
}

fn handle(conn: TcpStream, host: &str, requests: &AtomicU64, version: &str, start: Instant) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut out = conn;
    // Keep-alive like node: serve requests on this connection until the client closes it.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut length = 0usize;
        let mut close = line.trim_end().ends_with("HTTP/1.0");
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                } else if k == "connection" {
                    close = v == "close";
                }
            }
        }
        let mut body = vec![0u8; length.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let text = format!("Hello Kubernetes bootcamp! | Running on: {host} | v={version}\n");
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            text.len(),
            if close { "close" } else { "keep-alive" }
        );
        if out
            .write_all(head.as_bytes())
            .and_then(|_| out.write_all(text.as_bytes()))
            .is_err()
        {
            return;
        }
        let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
        println!(
            "Running On: {host} | Total Requests: {n} | App Uptime: {} seconds | Log Time: {}",
            js_seconds(start.elapsed().as_millis()),
            iso(SystemTime::now())
        );
        if close {
            return;
        }
    }
}

/// Finds the address of `host`: an IP literal, localhost, /etc/hosts, then the system resolver.
fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    if host == "localhost" {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
        for line in hosts.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut f = line.split_whitespace();
            if let Some(ip) = f.next().and_then(|i| i.parse::<IpAddr>().ok()) {
                if f.any(|n| n.eq_ignore_ascii_case(host)) {
                    return Some(SocketAddr::new(ip, port));
                }
            }
        }
    }
    (host, port).to_socket_addrs().ok()?.next()
}

fn curl(args: &[String]) -> i32 {
    let Some(url) = args.iter().find(|a| !a.starts_with('-')) else {
        eprintln!("curl: try 'curl URL'");
        return 2;
    };
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if rest.contains("://") {
        eprintln!("curl: (1) Protocol not supported (only http://)");
        return 1;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().unwrap_or(80)),
        _ => (authority, 80u16),
    };
    let Some(addr) = resolve(host, port) else {
        eprintln!("curl: (6) Could not resolve host: {host}");
        return 6;
    };
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("curl: (7) Failed to connect to {host} port {port}: {e}");
            return 7;
        }
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    let mut resp = Vec::new();
    if let Err(e) = s
        .write_all(req.as_bytes())
        .and_then(|_| s.read_to_end(&mut resp))
    {
        if resp.is_empty() {
            eprintln!("curl: (56) Recv failure: {e}");
            return 56;
        }
    }
    let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        eprintln!("curl: (52) Empty reply from server");
        return 52;
    };
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let mut body = resp[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..eol])
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim(),
                16,
            )
            .unwrap_or(0);
            if size == 0 || rest.len() < eol + 2 + size {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[(eol + 4 + size).min(rest.len())..];
        }
        body = out;
    }
    let _ = std::io::stdout().write_all(&body);
    0
}

/// The gRPC health server. HTTP/2 reduced to what one unary call needs: the request's
/// headers are not even decoded (the service name travels in the DATA frame), and the answer
/// is written with literal HPACK fields.
fn grpc_health() -> ! {
    // SAFETY: installing a handler that only calls _exit.
    unsafe {
        signal(15, on_term as usize);
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "9090".into());
    let serving: Vec<String> = std::env::var("SERVING").unwrap_or_default().split(',').map(str::to_string).collect();
    let listener = TcpListener::bind(format!("0.0.0.0:{port}")).unwrap_or_else(|e| {
        eprintln!("cannot listen on {port}: {e}");
        std::process::exit(1)
    });
    println!("grpc health server listening on {port}");
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let serving = serving.clone();
        std::thread::spawn(move || {
            let _ = h2_health_conn(conn, &serving);
        });
    }
    std::process::exit(0)
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn h2_health_conn(mut c: TcpStream, serving: &[String]) -> std::io::Result<()> {
    const DATA: u8 = 0;
    const HEADERS: u8 = 1;
    const SETTINGS: u8 = 4;
    const PING: u8 = 6;
    const GOAWAY: u8 = 7;
    const END_STREAM: u8 = 1;
    const ACK: u8 = 1;
    const END_HEADERS: u8 = 4;
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut preface = [0u8; 24];
    c.read_exact(&mut preface)?;
    if &preface != b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
        return Ok(());
    }
    c.write_all(&h2_frame(SETTINGS, 0, 0, &[]))?;
    let mut bodies: std::collections::HashMap<u32, Vec<u8>> = std::collections::HashMap::new();
    loop {
        let mut head = [0u8; 9];
        c.read_exact(&mut head)?;
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5] & 0x7f, head[6], head[7], head[8]]);
        let mut payload = vec![0u8; len];
        c.read_exact(&mut payload)?;
        let ended = match kind {
            SETTINGS if flags & ACK == 0 => {
                c.write_all(&h2_frame(SETTINGS, ACK, 0, &[]))?;
                false
            }
            PING if flags & ACK == 0 => {
                c.write_all(&h2_frame(PING, ACK, 0, &payload))?;
                false
            }
            GOAWAY => return Ok(()),
            HEADERS => {
                bodies.entry(stream).or_default();
                flags & END_STREAM != 0
            }
            DATA => {
                bodies.entry(stream).or_default().extend_from_slice(&payload);
                flags & END_STREAM != 0
            }
            _ => false,
        };
        if !ended {
            continue;
        }
        // HealthCheckRequest in a gRPC frame: 5-byte prefix, then field 1 (service).
        let body = bodies.remove(&stream).unwrap_or_default();
        let msg = body.get(5..).unwrap_or_default();
        let service = match msg {
            [0x0a, n, rest @ ..] if (*n as usize) <= rest.len() => String::from_utf8_lossy(&rest[..*n as usize]).into_owned(),
            _ => String::new(),
        };
        let status = if service.is_empty() || serving.contains(&service) { 1 } else { 2 };
        // :status 200 (static index 8), then content-type (static name 31) as a literal.
        let mut headers = vec![0x88, 0x0f, 0x10, 16];
        headers.extend_from_slice(b"application/grpc");
        let trailers: Vec<u8> = [&[0x00, 11][..], b"grpc-status", &[1], b"0"].concat();
        c.write_all(&h2_frame(HEADERS, END_HEADERS, stream, &headers))?;
        c.write_all(&h2_frame(DATA, 0, stream, &[0, 0, 0, 0, 2, 0x08, status]))?;
        c.write_all(&h2_frame(HEADERS, END_HEADERS | END_STREAM, stream, &trailers))?;
    }
}
