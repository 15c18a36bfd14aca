//! Bad input gets the upstream 4xx Status and loses nothing: malformed bodies, wrong types,
//! oversized requests, clients that vanish mid-request or mid-watch.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use timonier_testkit::Server;

fn server() -> Server {
    Server::start(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &[])
}

/// An HTTPS request as the admin (curl with the admin's client certificate).
fn curl(s: &Server, method: &str, path: &str, content_type: &str, body: Option<&[u8]>) -> (u16, serde_json::Value) {
    let mut c = s.admin_curl();
    // HTTP/1.1: curl reports an HTTP/2 response sent before the whole request body as a
    // framing error, which kubectl (Go) does not.
    c.args(["--http1.1", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .args(["-H", &format!("Content-Type: {content_type}")])
        .arg(s.url(path))
        .stdout(Stdio::piped());
    if let Some(b) = body {
        let f = s.dir.path().join(format!("body-{}", b.len()));
        std::fs::write(&f, b).unwrap();
        c.arg("--data-binary").arg(format!("@{}", f.display()));
    }
    let out = c.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_string())))
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn malformed_and_mistyped_bodies_get_400() {
    let s = server();
    for (ct, body, reason) in [
        ("application/json", &b"{\"apiVersion\": \"v1\", \"kind\""[..], "BadRequest"),
        ("application/json", b"[1, 2, 3]", "BadRequest"),
        ("application/json", b"", "BadRequest"),
        ("application/yaml", b"a: [unclosed", "BadRequest"),
        ("application/vnd.kubernetes.protobuf", b"k8s\x00\x0a\xff\xff\xff", "BadRequest"),
        ("application/vnd.kubernetes.protobuf", b"not protobuf at all", "BadRequest"),
        ("application/json", br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#, "BadRequest"),
        ("application/json", br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#, "BadRequest"),
        ("text/html", b"<html/>", "UnsupportedMediaType"),
    ] {
        let (code, status) = curl(&s, "POST", CMS, ct, Some(body));
        assert_eq!(status["reason"], reason, "{ct} {:?}: {status}", String::from_utf8_lossy(body));
        assert_eq!(status["kind"], "Status");
        assert_eq!(code as i64, status["code"].as_i64().unwrap());
        assert!((400..500).contains(&code));
    }
}

#[test]
fn invalid_objects_get_422_with_causes() {
    let s = server();
    let long = "a".repeat(254);
    let (code, status) = curl(&s, "POST", CMS, "application/json", Some(format!(r#"{{"metadata":{{"name":"{long}"}}}}"#).as_bytes()));
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    let (code, status) = curl(&s, "POST", CMS, "application/json", Some(br#"{"metadata":{"name":"ok","labels":{"bad key!":"x"}}}"#));
    assert_eq!(code, 422, "{status}");
    let (code, _) = curl(&s, "POST", CMS, "application/json", Some(br#"{"metadata":{"generateName":"gen-"}}"#));
    assert_eq!(code, 201);
}

#[test]
fn oversized_requests_get_413_and_the_server_lives_on() {
    let s = server();
    let big = format!(r#"{{"metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#, "y".repeat(4 * 1024 * 1024));
    let (code, status) = curl(&s, "POST", CMS, "application/json", Some(big.as_bytes()));
    assert_eq!((code, status["reason"].as_str()), (413, Some("RequestEntityTooLarge")), "{status}");
    let ok = format!(r#"{{"metadata":{{"name":"fits"}},"data":{{"x":"{}"}}}}"#, "y".repeat(1024 * 1024));
    assert_eq!(curl(&s, "POST", CMS, "application/json", Some(ok.as_bytes())).0, 201);
    // kubectl (HTTP/2) prints upstream's message.
    let manifest = format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"x\":\"{}\"}}}}", "y".repeat(4 * 1024 * 1024));
    let out = s.kubectl("1.33").run_with_input(&["create", "-f", "-", "--validate=false"], Some(&manifest));
    assert!(out.err().contains("Error from server (RequestEntityTooLarge)") && out.stderr.contains("Request entity too large: limit is 3145728"), "{}", out.stderr);
}

#[test]
fn unknown_paths_and_methods() {
    let s = server();
    let (code, status) = curl(&s, "GET", "/api/v1/nopes", "application/json", None);
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
    let (code, _) = curl(&s, "GET", "/apis/nope.example.com/v1/things", "application/json", None);
    assert_eq!(code, 404);
    let (code, status) = curl(&s, "PUT", "/api/v1/namespaces/default/configmaps", "application/json", Some(b"{}"));
    assert_eq!((code, status["reason"].as_str()), (405, Some("MethodNotAllowed")), "{status}");
    let (code, status) = curl(&s, "GET", "/api/v1/namespaces/default/configmaps?limit=x", "application/json", None);
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
}

#[test]
fn unparsable_resource_versions_get_400() {
    let s = server();
    assert_eq!(curl(&s, "POST", CMS, "application/json", Some(br#"{"metadata":{"name":"rv"}}"#)).0, 201);
    for path in [
        format!("{CMS}?resourceVersion=abc"),
        format!("{CMS}?resourceVersion=abc&watch=true"),
        format!("{CMS}/rv?resourceVersion=-1"),
        format!("{CMS}?resourceVersion=99999999999999999999999"),
    ] {
        let (code, status) = curl(&s, "GET", &path, "application/json", None);
        assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{path}: {status}");
        assert!(status["message"].as_str().unwrap_or("").starts_with("invalid resource version: resourceVersion: Invalid value: "), "{status}");
    }
    let (code, status) = curl(&s, "PUT", &format!("{CMS}/rv"), "application/json", Some(br#"{"metadata":{"name":"rv","resourceVersion":"x1"}}"#));
    assert_eq!(code, 400, "{status}");
}

/// Status bodies byte for byte as kube-apiserver writes them: the Go struct's field order and a
/// trailing newline (clients print them; some compare them).
#[test]
fn status_bodies_as_upstream_writes_them() {
    let s = server();
    let out = s.admin_curl().args(["-s", "--http1.1"]).arg(s.url(&format!("{CMS}/nope"))).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"configmaps \\\"nope\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"nope\",\"kind\":\"configmaps\"},\"code\":404}\n"
    );
    // A deletion that completes answers Status Success (no code: Go's omitempty) for most kinds,
    curl(&s, "POST", CMS, "application/json", Some(br#"{"metadata":{"name":"gone"}}"#));
    let (code, status) = curl(&s, "DELETE", &format!("{CMS}/gone"), "application/json", None);
    assert_eq!((code, status["kind"].as_str(), status["status"].as_str()), (200, Some("Status"), Some("Success")), "{status}");
    assert_eq!(status["details"]["name"], "gone");
    assert!(status.get("code").is_none(), "{status}");
    // and the deleted object for the registries with ReturnDeletedObject (services, pods, ...).
    let svc = br#"{"metadata":{"name":"web"},"spec":{"ports":[{"port":80}]}}"#;
    assert_eq!(curl(&s, "POST", "/api/v1/namespaces/default/services", "application/json", Some(svc)).0, 201);
    let (code, deleted) = curl(&s, "DELETE", "/api/v1/namespaces/default/services/web", "application/json", None);
    assert_eq!((code, deleted["kind"].as_str(), deleted["metadata"]["name"].as_str()), (200, Some("Service"), Some("web")), "{deleted}");
    let sa = br#"{"metadata":{"name":"robot"}}"#;
    assert_eq!(curl(&s, "POST", "/api/v1/namespaces/default/serviceaccounts", "application/json", Some(sa)).0, 201);
    let (_, deleted) = curl(&s, "DELETE", "/api/v1/namespaces/default/serviceaccounts/robot", "application/json", None);
    assert_eq!(deleted["kind"], "ServiceAccount", "{deleted}");
}

/// A client that sends its whole oversized body before reading (as Python's urllib3 does, with
/// no Expect: 100-continue) gets the 413 Status, not a reset connection.
#[test]
fn oversized_bodies_sent_whole_get_413() {
    let s = server();
    let big = format!(r#"{{"metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#, "y".repeat(4 * 1024 * 1024));
    let f = s.dir.path().join("big-body");
    std::fs::write(&f, &big).unwrap();
    // curl sends Expect: 100-continue for large bodies unless told not to.
    let out = s
        .admin_curl()
        .args(["-s", "--http1.1", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "-H", "Expect:", "-H", "Content-Type: application/json"])
        .arg("--data-binary")
        .arg(format!("@{}", f.display()))
        .arg(s.url(CMS))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n413") && text.contains("Request entity too large: limit is 3145728"), "curl exit {:?}: {text}", out.status.code());
}

#[test]
fn clients_that_vanish_mid_request_or_mid_watch_do_no_harm() {
    let s = server();
    // Half a TLS handshake, then nothing.
    for _ in 0..20 {
        let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let _ = t.write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03");
    }
    // A request whose body never finishes: curl is killed while uploading.
    let pki = s.dir.path().join("data/pki");
    let mut slow = Command::new("curl")
        .args(["-s", "-X", "POST", "--limit-rate", "1k", "-H", "Content-Type: application/json"])
        .arg("--cacert").arg(pki.join("ca.crt"))
        .arg("--cert").arg(pki.join("admin.crt"))
        .arg("--key").arg(pki.join("admin.key"))
        .arg("--data-binary").arg({
            let f = s.dir.path().join("slow-body");
            std::fs::write(&f, format!("{{\"metadata\":{{\"name\":\"never\"}},\"data\":{{\"x\":\"{}\"}}}}", "z".repeat(200_000))).unwrap();
            format!("@{}", f.display())
        })
        .arg(format!("https://127.0.0.1:{}{CMS}", s.port))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Watches that are dropped at once.
    let mut watches = Vec::new();
    for _ in 0..20 {
        watches.push(
            Command::new("curl")
                .args(["-s", "-N"])
                .arg("--cacert").arg(pki.join("ca.crt"))
                .arg("--cert").arg(pki.join("admin.crt"))
                .arg("--key").arg(pki.join("admin.key"))
                .arg(format!("https://127.0.0.1:{}{CMS}?watch=true", s.port))
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = slow.kill();
    let _ = slow.wait();
    for mut w in watches {
        let _ = w.kill();
        let _ = w.wait();
    }
    // Nothing half-written, and the server still answers.
    let (code, _) = curl(&s, "GET", &format!("{CMS}/never"), "application/json", None);
    assert_eq!(code, 404);
    let (code, _) = curl(&s, "POST", CMS, "application/json", Some(br#"{"metadata":{"name":"after"}}"#));
    assert_eq!(code, 201);
    let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // Plain HTTP on the TLS port: Go's answer, as kube-apiserver gives it.
    t.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    t.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n");
}

#[test]
fn expired_watch_versions_get_an_in_stream_410() {
    let s = Server::start(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &["--default-watch-cache-size", "100"]);
    // Enough writes to push revision 2 out of the configmaps' event history.
    let k = s.kubectl("1.33");
    let mut manifest = String::new();
    for i in 0..150 {
        manifest.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n"));
    }
    k.run_with_input(&["create", "-f", "-", "--validate=false", "-o", "name"], Some(&manifest)).ok();
    let pki = s.dir.path().join("data/pki");
    let out = Command::new("curl")
        .args(["-s", "-m", "5"])
        .arg("--cacert").arg(pki.join("ca.crt"))
        .arg("--cert").arg(pki.join("admin.crt"))
        .arg("--key").arg(pki.join("admin.key"))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{}{CMS}?watch=true&resourceVersion=2", s.port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"type\":\"ERROR\"") && text.contains("\"code\":410") && text.trim_end().ends_with("200"), "{text}");
}
