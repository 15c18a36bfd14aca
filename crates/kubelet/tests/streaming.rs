//! End-to-end tests against the real kubectl binaries (1.27: SPDY only; 1.33: WebSocket first).
//! A fake API server on 127.0.0.1 answers the pod GET and minimal discovery, and routes the
//! exec/attach/portforward upgrades to the streaming module, whose `run` spawns real processes.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use timonier_kubelet::streaming::{serve_exec, serve_port_forward, Body, ExecStreams, ExitStatus, StreamOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const K127: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
const K133: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

fn json(status: u16, v: serde_json::Value) -> http::Response<Body> {
    let mut r = http::Response::new(Full::new(Bytes::from(v.to_string())).map_err(|e| match e {}).boxed());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counts live `run` futures, so tests can see the session (and its process) went away.
struct Live(Arc<AtomicUsize>);
impl Live {
    fn new(c: &Arc<AtomicUsize>) -> Self {
        c.fetch_add(1, Ordering::SeqCst);
        Live(c.clone())
    }
}
impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn exit_of(st: std::io::Result<std::process::ExitStatus>) -> ExitStatus {
    match st {
        Ok(s) => match s.code() {
            Some(0) => ExitStatus::Success,
            Some(c) => ExitStatus::Code(c),
            None => ExitStatus::Code(137),
        },
        Err(e) => ExitStatus::Error(e.to_string()),
    }
}

async fn run_process(argv: Vec<String>, mut s: ExecStreams, live: Arc<AtomicUsize>) -> ExitStatus {
    let _live = Live::new(&live);
    if argv.is_empty() {
        return ExitStatus::Error("no command".into());
    }
    if s.tty {
        return run_tty(argv, s).await;
    }
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(if s.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ExitStatus::Error(e.to_string()),
    };
    let stdin_task = match (s.stdin.take(), child.stdin.take()) {
        (Some(mut src), Some(mut dst)) => Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut src, &mut dst).await;
        })),
        _ => None,
    };
    let mut cout = child.stdout.take();
    let mut cerr = child.stderr.take();
    let mut sout = s.stdout.take();
    let mut serr = s.stderr.take();
    let out = async {
        if let (Some(c), Some(w)) = (cout.as_mut(), sout.as_mut()) {
            let _ = tokio::io::copy(c, w).await;
        }
        drop(sout);
    };
    let err = async {
        if let (Some(c), Some(w)) = (cerr.as_mut(), serr.as_mut()) {
            let _ = tokio::io::copy(c, w).await;
        }
        drop(serr);
    };
    let (_, _, st) = tokio::join!(out, err, child.wait());
    if let Some(t) = stdin_task {
        t.abort();
    }
    exit_of(st)
}

async fn run_tty(argv: Vec<String>, mut s: ExecStreams) -> ExitStatus {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two fds into the provided ints.
    if unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) } != 0 {
        return ExitStatus::Error("openpty failed".into());
    }
    // SAFETY: fresh fds owned from here on.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let set_size = |fd: i32, (w, h): (u16, u16)| {
        let ws = libc::winsize { ws_row: h, ws_col: w, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: ioctl on a valid pty fd with a valid winsize.
        unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    };
    use std::os::fd::AsRawFd;
    let mfd = master.as_raw_fd();
    if let Some(rx) = s.resize.as_mut() {
        if let Ok(Some(size)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
            set_size(mfd, size);
        }
    }
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ExitStatus::Error(e.to_string()),
    };
    drop(cmd);
    let mut resize_rx = s.resize.take();
    let resizer = tokio::spawn(async move {
        if let Some(rx) = resize_rx.as_mut() {
            while let Some(size) = rx.recv().await {
                set_size(mfd, size);
            }
        }
    });
    let mut rd = tokio::fs::File::from_std(std::fs::File::from(master.try_clone().unwrap()));
    let mut wr = tokio::fs::File::from_std(std::fs::File::from(master));
    let stdin_task = s.stdin.take().map(|mut src| {
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = src.read(&mut buf).await {
                if n == 0 || wr.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                let _ = wr.flush().await;
            }
        })
    });
    let mut out = s.stdout.take();
    let copy = async {
        let mut buf = [0u8; 4096];
        // EIO once the child side of the pty is closed.
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if let Some(o) = out.as_mut() {
                if o.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    };
    let (_, st) = tokio::join!(copy, child.wait());
    drop(out);
    resizer.abort();
    if let Some(t) = stdin_task {
        t.abort();
    }
    exit_of(st)
}

struct Api {
    port: u16,
    live: Arc<AtomicUsize>,
    dir: PathBuf,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// (Host header, "METHOD path upgrade") of every upgrade request, to check the transport used.
static SEEN: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

async fn handle(req: http::Request<hyper::body::Incoming>, live: Arc<AtomicUsize>) -> http::Response<Body> {
    let path = req.uri().path().to_string();
    if let Some(up) = req.headers().get("upgrade").and_then(|v| v.to_str().ok()) {
        let host = req.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let sub = path.rsplit('/').next().unwrap_or("");
        SEEN.lock().unwrap().push((host, format!("{} {sub} {}", req.method(), up.to_ascii_lowercase())));
    }
    let query = req.uri().query().unwrap_or("").to_string();
    match path.as_str() {
        "/api" => json(200, serde_json::json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})),
        "/apis" => json(200, serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})),
        "/api/v1" => json(200, serde_json::json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": ["get", "list"], "shortNames": ["po"]},
            {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]},
            {"name": "pods/attach", "singularName": "", "namespaced": true, "kind": "PodAttachOptions", "verbs": ["create", "get"]},
            {"name": "pods/portforward", "singularName": "", "namespaced": true, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}]})),
        "/version" => json(200, serde_json::json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"})),
        "/api/v1/namespaces/default/pods/p" => json(200, serde_json::json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "p", "namespace": "default", "uid": "11111111-2222-3333-4444-555555555555", "resourceVersion": "1"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "image": "busybox", "imageID": "", "state": {"running": {}}}]}})),
        "/api/v1/namespaces/default/pods/p/exec" | "/api/v1/namespaces/default/pods/p/attach" => {
            let mut argv: Vec<String> = query
                .split('&')
                .filter_map(|kv| kv.strip_prefix("command="))
                .map(pct_decode)
                .collect();
            if path.ends_with("attach") {
                argv = vec!["sh".into(), "-c".into(), "echo attached; cat".into()];
            }
            let opts = StreamOptions::from_query(&query);
            serve_exec(req, opts, move |s| run_process(argv, s, live))
        }
        "/api/v1/namespaces/default/pods/p/portforward" => serve_port_forward(req, |port| async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await
        }),
        _ => json(404, serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})),
    }
}

async fn start_api() -> Api {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let live = Arc::new(AtomicUsize::new(0));
    let l2 = live.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let live = l2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let live = live.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(req, live).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    let dir = std::env::temp_dir().join(format!("kstream-{}-{}", std::process::id(), port));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: default\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .unwrap();
    Api { port, live, dir, server }
}

impl Api {
    /// The upgrade requests this server saw, e.g. "GET exec websocket".
    fn upgrades(&self) -> Vec<String> {
        let host = format!("127.0.0.1:{}", self.port);
        SEEN.lock().unwrap().iter().filter(|(h, _)| *h == host).map(|(_, u)| u.clone()).collect()
    }

    fn kubectl(&self, bin: &str, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(bin);
        c.env("HOME", &self.dir)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs kubectl to completion (60 s limit; killed on timeout), feeding `input` to stdin.
    async fn run(&self, bin: &str, args: &[&str], input: Option<Vec<u8>>) -> (i32, Vec<u8>, String) {
        let mut c = self.kubectl(bin, args);
        if input.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().unwrap();
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            tokio::spawn(async move {
                let _ = stdin.write_all(&data).await;
            });
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl timed out")
            .unwrap();
        (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn exec_basic(bin: &str) {
    let api = start_api().await;
    let (code, out, err) = api.run(bin, &["exec", "p", "--", "echo", "hi"], None).await;
    assert_eq!((code, out.as_slice()), (0, &b"hi\n"[..]), "stderr: {err}");

    let (code, _, err) = api.run(bin, &["exec", "p", "--", "sh", "-c", "exit 3"], None).await;
    assert_eq!(code, 3, "stderr: {err}");
    assert!(err.contains("exit code 3"), "{err}");

    let (code, out, err) = api.run(bin, &["exec", "-i", "p", "--", "cat"], Some(b"abc\n".to_vec())).await;
    assert_eq!((code, out.as_slice()), (0, &b"abc\n"[..]), "stderr: {err}");

    let (code, out, err) = api.run(bin, &["exec", "p", "--", "sh", "-c", "echo out; echo err >&2"], None).await;
    assert_eq!((code, out.as_slice()), (0, &b"out\n"[..]));
    assert!(err.contains("err\n") && !err.contains("out"), "{err}");

    // attach uses the same machinery (our fake attach runs `echo attached; cat`).
    let (code, out, err) = api.run(bin, &["attach", "-i", "p"], Some(b"via-attach\n".to_vec())).await;
    assert!(String::from_utf8_lossy(&out).contains("attached\nvia-attach\n"), "code {code} out {out:?} err {err}");
    let ups = api.upgrades();
    let want = if bin == K127 { "POST exec spdy/3.1" } else { "GET exec websocket" };
    assert!(ups.iter().all(|u| u.ends_with("attach websocket") || u.ends_with("attach spdy/3.1") || u == want), "{ups:?}");
    assert!(ups.iter().any(|u| u.contains("attach")), "{ups:?}");
}

async fn exec_large(bin: &str) {
    let api = start_api().await;
    // ~10.9 MB of stdout, compared byte for byte.
    let (code, out, err) = api.run(bin, &["exec", "p", "--", "seq", "1", "1500000"], None).await;
    let expected: String = (1..=1_500_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), expected.len());
    assert!(out == expected.as_bytes());
    // 8 MB of stdin through the process and back.
    let input: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
    let (code, out, err) = api.run(bin, &["exec", "-i", "p", "--", "cat"], Some(input.clone())).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), input.len());
    assert!(out == input);
}

async fn exec_tty(bin: &str) {
    let api = start_api().await;
    let kube = format!(
        "stty cols 123 rows 45; HOME={dir} KUBECONFIG={dir}/kubeconfig {bin} --cache-dir {dir}/cache exec -ti p -- sh -c 'tty; stty size'",
        dir = api.dir.display()
    );
    let mut child = tokio::process::Command::new("script")
        .args(["-qec", &kube, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _keep_stdin_open = child.stdin.take();
    let mut out = Vec::new();
    let mut so = child.stdout.take().unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), so.read_to_end(&mut out)).await;
    let _ = child.kill().await;
    assert!(r.is_ok(), "tty session timed out: {:?}", String::from_utf8_lossy(&out));
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("45 123"), "resize did not reach the pty: {text:?}");
}

async fn exec_killed(bin: &str) {
    let api = start_api().await;
    let mut child = api.kubectl(bin, &["exec", "p", "--", "sh", "-c", "echo $$; exec sleep 1000"]).spawn().unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), so.read(&mut b)).await.unwrap().unwrap();
        assert!(n > 0, "kubectl ended early");
        line.push(b[0]);
    }
    let pid: u32 = String::from_utf8_lossy(&line).trim().parse().unwrap();
    assert_eq!(api.live.load(Ordering::SeqCst), 1);
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let gone = |pid: u32| match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')),
    };
    for _ in 0..100 {
        if api.live.load(Ordering::SeqCst) == 0 && gone(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("session still alive ({}) or process {pid} not killed", api.live.load(Ordering::SeqCst));
}

async fn echo_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (port, h)
}

async fn echo_roundtrip(port: u16, size: usize, seed: u8) {
    let data: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut r, mut w) = s.split();
    let d2 = data.clone();
    let write = async move { w.write_all(&d2).await.unwrap() };
    let read = async move {
        let mut got = vec![0u8; size];
        r.read_exact(&mut got).await.unwrap();
        got
    };
    let (_, got) = tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(write, read) }).await.expect("port-forward stalled");
    assert!(got == data, "port-forward data corrupted");
}

async fn port_forward(bin: &str) {
    let api = start_api().await;
    let (remote, echo) = echo_server().await;
    let local = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spec = format!("{local}:{remote}");
    let mut child = api.kubectl(bin, &["port-forward", "pod/p", &spec]).spawn().unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut buf = Vec::new();
    while !String::from_utf8_lossy(&buf).contains("Forwarding from") {
        let mut b = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(30), so.read(&mut b)).await.unwrap().unwrap();
        assert!(n > 0, "port-forward exited");
        buf.extend_from_slice(&b[..n]);
    }
    tokio::join!(echo_roundtrip(local, 5_000_000, 1), echo_roundtrip(local, 5_000_000, 7), echo_roundtrip(local, 1000, 3));
    // and once more after those connections closed
    echo_roundtrip(local, 100_000, 9).await;
    let ups = api.upgrades();
    let want = if bin == K127 { "POST portforward spdy/3.1" } else { "GET portforward websocket" };
    assert!(!ups.is_empty() && ups.iter().all(|u| u == want), "{ups:?}");
    let _ = child.kill().await;
    echo.abort();
}

macro_rules! both {
    ($name:ident, $f:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v1_27() {
                super::$f(super::K127).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v1_33() {
                super::$f(super::K133).await
            }
        }
    };
}

both!(basic, exec_basic);
both!(large, exec_large);
both!(tty, exec_tty);
both!(killed, exec_killed);
both!(portforward, port_forward);

/// A plain (non-upgrade) request, a WebSocket offering only unknown subprotocols and a WebSocket
/// port-forward without ports all get a 400 `metav1.Status` (the latter is what makes kubectl ≥ 1.30 fall back to SPDY).
#[tokio::test]
async fn non_upgrade_is_400_status() {
    let api = start_api().await;
    for (path, extra) in [
        ("exec?command=ls&stdout=true", ""),
        ("portforward", ""),
        ("exec?command=ls", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v9.channel.k8s.io\r\n"),
        // port-forward over WebSocket channels needs its ports; v5 is not one of its protocols.
        ("portforward", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n"),
        ("portforward?ports=80", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n"),
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", api.port)).await.unwrap();
        let req = format!("GET /api/v1/namespaces/default/pods/p/{path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
        assert!(resp.contains("\"kind\":\"Status\"") && resp.contains("\"reason\":\"BadRequest\""), "{resp}");
    }
}

// ------------------------------------------------------------------ other WebSocket clients
//
// What clients other than kubectl send (the official Python client, and the older and base64
// subprotocols upstream's kubelet speaks), driven by tokio-tungstenite's client.

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens a WebSocket to `path` offering `protocols`; returns it and the protocol chosen.
async fn ws_connect(port: u16, path: &str, protocols: &[&str]) -> (Ws, Option<String>) {
    let mut req = format!("ws://127.0.0.1:{port}/api/v1/namespaces/default/pods/p/{path}").into_client_request().unwrap();
    if !protocols.is_empty() {
        req.headers_mut().insert("sec-websocket-protocol", protocols.join(", ").parse().unwrap());
    }
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await.expect("websocket handshake");
    let chosen = resp.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_string());
    (ws, chosen)
}

/// Splits a message by the codec: (channel, data, was it a text frame).
fn decode(msg: &Message, base64: bool) -> Option<(u8, Vec<u8>, bool)> {
    use base64::Engine;
    let (bytes, text): (&[u8], bool) = match msg {
        Message::Binary(b) => (b, false),
        Message::Text(t) => (t.as_bytes(), true),
        _ => return None,
    };
    let (&ch, data) = bytes.split_first()?;
    if base64 {
        Some((ch - b'0', base64::engine::general_purpose::STANDARD.decode(data).unwrap(), text))
    } else {
        Some((ch, data.to_vec(), text))
    }
}

/// Reads until the server closes: the channel messages in order, and the close code.
async fn read_to_close(ws: &mut Ws, base64: bool) -> (Vec<(u8, Vec<u8>, bool)>, Option<u16>) {
    let mut msgs = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("server silent for 30 s");
        match m {
            Some(Ok(Message::Close(frame))) => return (msgs, frame.map(|f| u16::from(f.code))),
            Some(Ok(m)) => msgs.extend(decode(&m, base64)),
            None | Some(Err(_)) => return (msgs, None),
        }
    }
}

fn channel_bytes(msgs: &[(u8, Vec<u8>, bool)], ch: u8) -> Vec<u8> {
    msgs.iter().filter(|(c, _, _)| *c == ch).flat_map(|(_, d, _)| d.clone()).collect()
}

/// exec with each subprotocol family: chosen as upstream (v5 when offered at all, else the
/// client's order, the unnamed binary one when none is offered), base64 frames as text, the
/// first message an empty one on stdout, and the exit status as a Status (v4+) or plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_every_channel_subprotocol() {
    let api = start_api().await;
    let cmd = "exec?command=sh&command=-c&command=echo%20out%3B%20echo%20err%20%3E%262%3B%20exit%203&stdout=true&stderr=true";
    for (offered, chosen, base64, version) in [
        (&["v4.base64.channel.k8s.io", "v4.channel.k8s.io"][..], Some("v4.base64.channel.k8s.io"), true, 4),
        (&["v4.channel.k8s.io", "v5.channel.k8s.io"][..], Some("v5.channel.k8s.io"), false, 5),
        (&["v4.channel.k8s.io"][..], Some("v4.channel.k8s.io"), false, 4),
        (&["bogus", "base64.channel.k8s.io"][..], Some("base64.channel.k8s.io"), true, 1),
        (&["channel.k8s.io"][..], Some("channel.k8s.io"), false, 1),
        (&[][..], None, false, 1),
    ] {
        let (mut ws, got) = ws_connect(api.port, cmd, offered).await;
        assert_eq!(got.as_deref(), chosen, "{offered:?}");
        let (msgs, close) = read_to_close(&mut ws, base64).await;
        assert_eq!(close, Some(1000), "{offered:?}");
        assert_eq!(msgs.first().map(|(c, d, _)| (*c, d.len())), Some((1, 0)), "{offered:?}: {msgs:?}");
        assert!(msgs.iter().all(|(_, _, text)| *text == base64), "{offered:?}: frame types {msgs:?}");
        assert_eq!(channel_bytes(&msgs, 1), b"out\n", "{offered:?}");
        assert_eq!(channel_bytes(&msgs, 2), b"err\n", "{offered:?}");
        let status = String::from_utf8(channel_bytes(&msgs, 3)).unwrap();
        if version >= 4 {
            let v: serde_json::Value = serde_json::from_str(&status).unwrap();
            assert_eq!((v["reason"].as_str(), v["details"]["causes"][0]["message"].as_str()), (Some("NonZeroExitCode"), Some("3")), "{status}");
        } else {
            assert!(status.starts_with("command terminated with non-zero exit code") && status.contains("exit code 3"), "{offered:?}: {status:?}");
        }
    }
    // Success: nothing on the error channel with the pre-v4 protocols, a Success Status with v4.
    for (offered, want) in [("channel.k8s.io", ""), ("v4.channel.k8s.io", r#"{"metadata":{},"status":"Success"}"#)] {
        let (mut ws, _) = ws_connect(api.port, "exec?command=true&stdout=true", &[offered]).await;
        let (msgs, _) = read_to_close(&mut ws, false).await;
        assert_eq!(String::from_utf8(channel_bytes(&msgs, 3)).unwrap(), want, "{offered}");
    }
}

/// stdin as the Python client writes it: text frames (a str) and binary frames (bytes) on the
/// binary protocols, base64 text on the base64 ones; v5's close signal ends the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stdin_from_text_binary_and_base64_frames() {
    let api = start_api().await;
    let path = "exec?command=cat&stdin=true&stdout=true&stderr=true";
    let (mut ws, _) = ws_connect(api.port, path, &["v5.channel.k8s.io", "v4.channel.k8s.io"]).await;
    ws.send(Message::text("\u{0}as text\n")).await.unwrap();
    ws.send(Message::binary(&b"\x00as binary\n"[..])).await.unwrap();
    ws.send(Message::binary(&[255u8, 0][..])).await.unwrap();
    let (msgs, close) = read_to_close(&mut ws, false).await;
    assert_eq!(String::from_utf8(channel_bytes(&msgs, 1)).unwrap(), "as text\nas binary\n");
    assert_eq!(channel_bytes(&msgs, 3), br#"{"metadata":{},"status":"Success"}"#);
    assert_eq!(close, Some(1000));

    let path = "exec?command=head&command=-n1&stdin=true&stdout=true";
    let (mut ws, _) = ws_connect(api.port, path, &["v4.base64.channel.k8s.io"]).await;
    // "0" + base64("via base64\n"); a frame that is not base64 is dropped, as upstream.
    ws.send(Message::text("0!!not base64")).await.unwrap();
    ws.send(Message::text("0dmlhIGJhc2U2NAo=")).await.unwrap();
    let (msgs, _) = read_to_close(&mut ws, true).await;
    assert_eq!(String::from_utf8(channel_bytes(&msgs, 1)).unwrap(), "via base64\n");
}

/// A malformed v5 close signal ends the session with a protocol-error Close, and the process
/// with it; garbage on unknown channels is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_cleanly() {
    let api = start_api().await;
    let (mut ws, _) = ws_connect(api.port, "exec?command=sleep&command=1000&stdin=true&stdout=true", &["v5.channel.k8s.io"]).await;
    ws.send(Message::binary(&[9u8, 1, 2, 3][..])).await.unwrap();
    ws.send(Message::binary(Vec::new())).await.unwrap();
    ws.send(Message::binary(&[255u8, 0, 0][..])).await.unwrap();
    let (_, close) = read_to_close(&mut ws, false).await;
    assert_eq!(close, Some(1002));
    for _ in 0..100 {
        if api.live.load(Ordering::SeqCst) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the process outlived its session");
}

/// port-forward over WebSocket channels, as upstream's kubelet and the Python client: `?ports=`,
/// channels 2i (data) and 2i+1 (error), each opened by the port number (2 bytes, little-endian);
/// a port nothing listens on reports on its error channel; the session ends when every port's
/// connection has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_websocket_channels() {
    let api = start_api().await;
    let (echo_port, echo) = echo_server().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (protocol, base64) in [("v4.channel.k8s.io", false), ("v4.base64.channel.k8s.io", true), ("portforward.k8s.io", false)] {
        let path = format!("portforward?ports={echo_port},{dead}");
        let (mut ws, got) = ws_connect(api.port, &path, &["v5.channel.k8s.io", protocol]).await;
        assert_eq!(got.as_deref(), Some(protocol));
        let mut firsts = Vec::new();
        let mut error = Vec::new();
        let mut echoed = Vec::new();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut sent = false;
        while echoed.len() < payload.len() || error.is_empty() {
            let m = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("port-forward stalled").unwrap().unwrap();
            let Some((ch, data, text)) = decode(&m, base64) else { continue };
            assert_eq!(text, base64, "{protocol}: frame type");
            if firsts.len() < 4 && !firsts.iter().any(|(c, _)| *c == ch) {
                firsts.push((ch, data));
            } else if ch == 0 {
                echoed.extend_from_slice(&data);
            } else if ch == 3 {
                error.extend_from_slice(&data);
            } else {
                panic!("{protocol}: unexpected message on channel {ch}: {data:?}");
            }
            if firsts.len() == 4 && !sent {
                sent = true;
                for chunk in payload.chunks(30_000) {
                    let msg = if base64 {
                        use base64::Engine;
                        Message::text(format!("0{}", base64::engine::general_purpose::STANDARD.encode(chunk)))
                    } else {
                        let mut m = vec![0u8];
                        m.extend_from_slice(chunk);
                        Message::binary(m)
                    };
                    ws.send(msg).await.unwrap();
                }
            }
        }
        firsts.sort();
        let le = |p: u16| p.to_le_bytes().to_vec();
        assert_eq!(firsts, vec![(0, le(echo_port)), (1, le(echo_port)), (2, le(dead)), (3, le(dead))], "{protocol}");
        assert!(echoed == payload, "{protocol}: echo corrupted");
        let error = String::from_utf8(error).unwrap();
        assert!(error.contains(&format!("error forwarding port {dead}")), "{protocol}: {error}");
        // The echo connection stays until the client goes; closing ends the session.
        ws.close(None).await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(10), async { while let Some(Ok(_)) = ws.next().await {} }).await;
        assert!(end.is_ok(), "{protocol}: the server did not finish the close");
    }
    echo.abort();
}
