//! End to end: the aggregation layer as kube-aggregator. `kubectl get apiservices` (1.27 and
//! 1.33) lists the local APIServices as upstream prints them; a CRD's group version gets one
//! and loses it; an extension API server written here (hyper + rustls, its own CA) behind a
//! selector-less Service and a manual EndpointSlice becomes Available, its resources are
//! discovered and listed through the API server with the caller in X-Remote-User, and it turns
//! Available False once stopped. What such a server reads at start is published as upstream
//! does: `kube-system/extension-apiserver-authentication`, whose request-header CA (a CA of its
//! own, not the cluster's) verifies the client certificate the aggregator presents — the test's
//! extension server requires one and checks its name, as metrics-server — and the roles that
//! let an extension server read it and delegate authentication and authorization.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use timonier_testkit::{Kubectl, Server};

const VERSIONS: &[&str] = &["1.27", "1.33"];

/// A table as kubectl prints it, split on runs of two spaces or more (no cell here holds two
/// spaces in a row).
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines().map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect()).collect()
}

fn row_of(out: &str, name: &str) -> Option<Vec<String>> {
    rows(out).into_iter().find(|r| r.first().map(String::as_str) == Some(name))
}

/// Polls `kubectl get apiservices` until `check` accepts the row of `name` (None: absent).
#[track_caller]
fn wait_for_row(k: &Kubectl, name: &str, what: &str, check: impl Fn(Option<&[String]>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = k.run(&["get", "apiservices"]).ok().to_string();
        let row = row_of(&out, name);
        if check(row.as_deref()) {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: never {what}; last:\n{out}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn local_apiservices_as_upstream_prints_them() {
    let server = Server::start(Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    for v in VERSIONS {
        let k = server.kubectl(v);
        let out = k.run(&["get", "apiservices"]).ok().to_string();
        let table = rows(&out);
        assert_eq!(table[0], ["NAME", "SERVICE", "AVAILABLE", "AGE"], "kubectl {v}:\n{out}");
        let names: Vec<&str> = table[1..].iter().map(|r| r[0].as_str()).collect();
        for n in ["v1.", "v1.apps", "v1.batch", "v2.autoscaling", "v1.rbac.authorization.k8s.io", "v1.apiextensions.k8s.io", "v1.flowcontrol.apiserver.k8s.io"] {
            assert!(names.contains(&n), "kubectl {v}: {n} missing:\n{out}");
        }
        assert!(!names.contains(&"v1.apiregistration.k8s.io"), "upstream registers none for its own group");
        for r in &table[1..] {
            assert_eq!((r[1].as_str(), r[2].as_str()), ("Local", "True"), "kubectl {v}: {r:?}");
        }
    }
    let k = server.kubectl("1.33");
    let apps = k.run(&["get", "apiservice", "v1.apps", "-o", "json"]).ok().to_string();
    let apps: serde_json::Value = serde_json::from_str(&apps).expect("json");
    assert_eq!(apps["spec"]["groupPriorityMinimum"], 17800);
    assert_eq!(apps["spec"]["versionPriority"], 15);
    assert_eq!(apps["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"], "onstart");
    assert_eq!(apps["status"]["conditions"][0]["reason"], "Local");
    assert_eq!(apps["status"]["conditions"][0]["message"], "Local APIServices are always available");

    // Validation as kube-aggregator's.
    let bad = r#"{"apiVersion":"apiregistration.k8s.io/v1","kind":"APIService","metadata":{"name":"v1.wrong.io"},
        "spec":{"group":"other.io","version":"v1","groupPriorityMinimum":0,"versionPriority":100,"insecureSkipTLSVerify":true}}"#;
    let err = k.run_with_input(&["create", "-f", "-"], Some(bad)).err().to_string();
    assert!(err.contains("spec.groupPriorityMinimum") && err.contains("local APIServices may not have insecureSkipTLSVerify") && err.contains("metadata.name"), "{err}");

    // A CRD's group version comes and goes.
    let crd = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"widgets.example.com"},
        "spec":{"group":"example.com","scope":"Namespaced","names":{"plural":"widgets","singular":"widget","kind":"Widget"},
        "versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}"#;
    k.run_with_input(&["create", "-f", "-"], Some(crd)).ok();
    wait_for_row(&k, "v1.example.com", "listed as Local True", |r| r.is_some_and(|r| r[1] == "Local" && r[2] == "True"));
    let crd_api = k.run(&["get", "apiservice", "v1.example.com", "-o", "json"]).ok().to_string();
    let crd_api: serde_json::Value = serde_json::from_str(&crd_api).expect("json");
    assert_eq!((crd_api["spec"]["groupPriorityMinimum"].as_i64(), crd_api["spec"]["versionPriority"].as_i64()), (Some(1000), Some(100)));
    k.run(&["delete", "crd", "widgets.example.com"]).ok();
    wait_for_row(&k, "v1.example.com", "removed", |r| r.is_none());
}

/// The extension API server: `metrics.test.io/v1beta1` with one namespaced resource,
/// `samples`, holding one object; the users it was called as are recorded. As a server built
/// on k8s.io/apiserver (metrics-server), it requires a client certificate verified by the
/// request-header CA and believes the `X-Remote-*` headers only from an allowed name.
struct Extension {
    port: u16,
    ca_pem: String,
    users: Arc<Mutex<Vec<String>>>,
    /// The client certificates presented to it (DER), verified by the request-header CA.
    peers: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Extension {
    fn start(requestheader_ca_pem: &str, allowed_names: Vec<String>) -> Extension {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "extension-test-ca");
        let ca_pem = ca_params.self_signed(&ca_key).expect("ca").pem();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer");
        // The name the aggregator checks: <service>.<namespace>.svc.
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["ext-api.default.svc".to_string()]).expect("params").signed_by(&key, &issuer).expect("cert");
        let certs = vec![rustls::pki_types::CertificateDer::from(cert.der().to_vec())];
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots_of(requestheader_ca_pem)), provider.clone())
            .build()
            .expect("client verifier");
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .expect("server config");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let users = Arc::new(Mutex::new(Vec::new()));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (seen, peers_seen, allowed) = (users.clone(), peers.clone(), Arc::new(allowed_names));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let tcp = tokio::select! {
                        _ = &mut stop_rx => return,
                        a = listener.accept() => match a { Ok((t, _)) => t, Err(_) => continue },
                    };
                    let (acceptor, seen, peers_seen, allowed) = (acceptor.clone(), seen.clone(), peers_seen.clone(), allowed.clone());
                    tokio::spawn(async move {
                        // No certificate the request-header CA verifies: no handshake.
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
                        let cn = timonier_apiserver::auth::user_from_cert(&peer).map(|u| u.name).unwrap_or_default();
                        peers_seen.lock().unwrap_or_else(|e| e.into_inner()).push(peer);
                        let trusted = allowed.is_empty() || allowed.contains(&cn);
                        let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            let cn = cn.clone();
                            async move {
                                if !trusted {
                                    // k8s.io/apiserver's request-header authenticator refuses
                                    // a proxy certificate of another name.
                                    let msg = format!("client certificate {cn:?} is not in requestheader-allowed-names");
                                    return Ok::<_, std::convert::Infallible>(hyper::Response::builder().status(401).body(Full::new(Bytes::from(msg))).expect("response"));
                                }
                                if let Some(r) = echo_upgrade(&mut req) {
                                    return Ok(r);
                                }
                                Ok(answer(&req, &seen))
                            }
                        });
                        let conn = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
                        let _ = conn.with_upgrades().await;
                    });
                }
            });
            // Dropping the runtime closes the listener and every connection.
        });
        Extension { port, ca_pem, users, peers, stop: Some(stop_tx), thread: Some(thread) }
    }

    fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Extension {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The certificates of a PEM bundle, DER.
fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    let mut der = Vec::new();
    let mut body = String::new();
    let mut inside = false;
    for line in pem.lines().map(str::trim) {
        if line == "-----BEGIN CERTIFICATE-----" {
            (inside, body) = (true, String::new());
        } else if line == "-----END CERTIFICATE-----" {
            inside = false;
            der.push(base64::engine::general_purpose::STANDARD.decode(&body).expect("PEM base64"));
        } else if inside {
            body.push_str(line);
        }
    }
    assert!(!der.is_empty(), "no certificate in {pem:?}");
    der
}

/// The certificates of a PEM bundle as trust roots.
fn roots_of(pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for d in pem_certs(pem) {
        roots.add(rustls::pki_types::CertificateDer::from(d)).expect("a CA certificate");
    }
    roots
}

/// Whether the CAs of `ca_pem` verify a client certificate (DER), as a TLS server would.
fn verifies(ca_pem: &str, cert: &[u8]) -> bool {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots_of(ca_pem)), provider).build().expect("verifier");
    let cert = rustls::pki_types::CertificateDer::from(cert.to_vec());
    verifier.verify_client_cert(&cert, &[], rustls::pki_types::UnixTime::now()).is_ok()
}

fn answer(req: &hyper::Request<hyper::body::Incoming>, seen: &Mutex<Vec<String>>) -> hyper::Response<Full<Bytes>> {
    let user = req.headers().get("x-remote-user").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let groups: Vec<String> = req.headers().get_all("x-remote-group").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
    let path = req.uri().path().to_string();
    let json = |v: serde_json::Value| {
        hyper::Response::builder().header("content-type", "application/json").body(Full::new(Bytes::from(v.to_string()))).expect("response")
    };
    let item = serde_json::json!({"kind": "Sample", "apiVersion": "metrics.test.io/v1beta1",
        "metadata": {"name": "sample-one", "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"}, "value": 42});
    match path.as_str() {
        "/apis/metrics.test.io/v1beta1" => json(serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "metrics.test.io/v1beta1",
            "resources": [{"name": "samples", "singularName": "sample", "namespaced": true, "kind": "Sample", "verbs": ["get", "list"], "shortNames": ["smp"]}]})),
        "/apis/metrics.test.io/v1beta1/samples" | "/apis/metrics.test.io/v1beta1/namespaces/default/samples" => {
            seen.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{user}|{}", groups.join(",")));
            let accept = req.headers().get("accept").and_then(|v| v.to_str().ok()).unwrap_or("");
            if accept.contains("as=Table") {
                json(serde_json::json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
                    "columnDefinitions": [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0},
                                          {"name": "Value", "type": "integer", "format": "", "description": "", "priority": 0}],
                    "rows": [{"cells": ["sample-one", 42], "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"]}}]}))
            } else {
                json(serde_json::json!({"kind": "SampleList", "apiVersion": "metrics.test.io/v1beta1", "metadata": {}, "items": [item]}))
            }
        }
        "/openapi/v2" => json(ext_openapi_v2()),
        "/openapi/v3" => json(serde_json::json!({"paths": {
            "apis/metrics.test.io/v1beta1": {"serverRelativeURL": "/openapi/v3/apis/metrics.test.io/v1beta1?hash=EXT1"},
            "version": {"serverRelativeURL": "/openapi/v3/version?hash=EXT2"}}})),
        "/openapi/v3/apis/metrics.test.io/v1beta1" => json(ext_openapi_v3()),
        _ => hyper::Response::builder().status(404).body(Full::new(Bytes::from_static(b"not found"))).expect("response"),
    }
}

/// What the extension says of its kind, in both documents.
const SAMPLE_DESCRIPTION: &str = "Sample is one measurement of the test extension.";
const VALUE_DESCRIPTION: &str = "How much was measured, in units of the test.";

fn sample_schema(refs: &str) -> serde_json::Value {
    serde_json::json!({"description": SAMPLE_DESCRIPTION, "type": "object", "properties": {
        "apiVersion": {"type": "string", "description": "APIVersion of the object."},
        "kind": {"type": "string", "description": "Kind of the object."},
        "metadata": {"$ref": format!("{refs}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "description": "Standard object's metadata."},
        "value": {"type": "integer", "format": "int64", "description": VALUE_DESCRIPTION}},
        "x-kubernetes-group-version-kind": [{"group": "metrics.test.io", "kind": "Sample", "version": "v1beta1"}]})
}

/// The extension's `/openapi/v2`: its group version's paths (a shared parameter among them),
/// a path of its own outside them that the aggregator leaves out, and an `ObjectMeta` of its
/// own words (the aggregator keeps its own and renames this one `ObjectMeta_v2`).
fn ext_openapi_v2() -> serde_json::Value {
    let gvk = serde_json::json!({"group": "metrics.test.io", "kind": "Sample", "version": "v1beta1"});
    let sample = serde_json::json!({"$ref": "#/definitions/io.test.metrics.v1beta1.Sample"});
    serde_json::json!({"swagger": "2.0", "info": {"title": "metrics-test", "version": "v0.1"},
        "parameters": {"namespace-x": {"name": "namespace", "in": "path", "required": true, "type": "string", "uniqueItems": true}},
        "paths": {
            "/apis/metrics.test.io/v1beta1/namespaces/{namespace}/samples/{name}": {
                "get": {"operationId": "readSample", "produces": ["application/json"], "responses": {"200": {"description": "OK", "schema": sample}},
                        "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk},
                "patch": {"operationId": "patchSample", "consumes": ["application/merge-patch+json"], "produces": ["application/json"],
                          "parameters": [{"name": "body", "in": "body", "required": true, "schema": {"type": "object"}}],
                          "responses": {"200": {"description": "OK", "schema": sample}}, "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk},
                "parameters": [{"$ref": "#/parameters/namespace-x"}, {"name": "name", "in": "path", "required": true, "type": "string"}]},
            "/version/": {"get": {"responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/io.test.Info"}}}}}},
        "definitions": {
            "io.test.metrics.v1beta1.Sample": sample_schema("#/definitions/"),
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"description": "ObjectMeta as the test extension words it.", "type": "object",
                "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}}},
            "io.test.Info": {"type": "object"}}})
}

/// The extension's `/openapi/v3/apis/metrics.test.io/v1beta1` (`kubectl explain` finds the
/// kind of a resource from its path's operations).
fn ext_openapi_v3() -> serde_json::Value {
    let get = serde_json::json!({"operationId": "readSample", "x-kubernetes-action": "get",
        "x-kubernetes-group-version-kind": {"group": "metrics.test.io", "kind": "Sample", "version": "v1beta1"},
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/io.test.metrics.v1beta1.Sample"}}}}}});
    serde_json::json!({"openapi": "3.0.0", "info": {"title": "metrics-test", "version": "v0.1"},
        "paths": {"/apis/metrics.test.io/v1beta1/namespaces/{namespace}/samples/{name}": {"get": get}},
        "components": {"schemas": {
            "io.test.metrics.v1beta1.Sample": sample_schema("#/components/schemas/"),
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"description": "ObjectMeta as the test extension words it.", "type": "object",
                "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}}}}}})
}

/// `samples/sample-one/exec` of the extension: any upgrade (SPDY/3.1, WebSocket) is accepted
/// with its protocol echoed, then the bytes sent are sent back.
fn echo_upgrade(req: &mut hyper::Request<hyper::body::Incoming>) -> Option<hyper::Response<Full<Bytes>>> {
    if req.uri().path() != "/apis/metrics.test.io/v1beta1/namespaces/default/samples/sample-one/exec" {
        return None;
    }
    let upgrade = req.headers().get("upgrade")?.clone();
    let protocol = req.headers().get("sec-websocket-protocol").cloned();
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(io) = on.await else { return };
        let mut io = hyper_util::rt::TokioIo::new(io);
        let (mut r, mut w) = tokio::io::split(&mut io);
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let mut resp = hyper::Response::builder().status(101).header("connection", "Upgrade").header("upgrade", upgrade);
    if let Some(p) = protocol {
        resp = resp.header("sec-websocket-protocol", p);
    }
    Some(resp.body(Full::new(Bytes::new())).expect("response"))
}

/// Sends an upgrade request for `path` to the API server as the admin (raw HTTP/1.1 over TLS)
/// with these extra headers; returns the response head, and what comes back of `payload`
/// once the protocol is switched (empty without a 101).
fn upgrade_through(server: &Server, path: &str, headers: &[(&str, &str)], payload: &[u8]) -> (String, Vec<u8>) {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = server.dir.path().join("data/pki");
    let ca = std::fs::read_to_string(pki.join("ca.crt")).expect("ca.crt");
    let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
        pem_certs(&std::fs::read_to_string(pki.join("admin.crt")).expect("admin.crt")).into_iter().map(rustls::pki_types::CertificateDer::from).collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(pki.join("admin.key")).expect("admin.key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots_of(&ca))
        .with_client_auth_cert(certs, key)
        .expect("client config");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.expect("tls");
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        tls.write_all(head.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut buf)).await.expect("a response in time").expect("read");
            assert!(n > 0, "closed before a response head: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&got[..end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return (head, Vec::new());
        }
        let mut echoed = got[end..].to_vec();
        tls.write_all(payload).await.expect("write payload");
        while echoed.len() < payload.len() {
            let n = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut buf)).await.expect("the echo in time").expect("read");
            if n == 0 {
                break;
            }
            echoed.extend_from_slice(&buf[..n]);
        }
        (head, echoed)
    })
}

#[test]
fn extension_api_server_behind_an_apiservice() {
    let server = Server::start(Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let k = server.kubectl("1.33");
    // What kube-apiserver publishes for extension API servers, read as they read it.
    let cm = k.run(&["get", "configmap", "-n", "kube-system", "extension-apiserver-authentication", "-o", "json"]).ok().to_string();
    let cm: serde_json::Value = serde_json::from_str(&cm).expect("json");
    let data = &cm["data"];
    let list = |key: &str| -> Vec<String> { serde_json::from_str(data[key].as_str().unwrap_or("")).unwrap_or_else(|e| panic!("{key}: {e}: {data}")) };
    assert_eq!(list("requestheader-allowed-names"), ["front-proxy-client"]);
    assert_eq!(list("requestheader-extra-headers-prefix"), ["X-Remote-Extra-"]);
    assert_eq!(list("requestheader-group-headers"), ["X-Remote-Group"]);
    assert_eq!(list("requestheader-username-headers"), ["X-Remote-User"]);
    let client_ca = data["client-ca-file"].as_str().unwrap_or("").to_string();
    let requestheader_ca = data["requestheader-client-ca-file"].as_str().unwrap_or("").to_string();
    assert!(client_ca.contains("BEGIN CERTIFICATE") && requestheader_ca.contains("BEGIN CERTIFICATE"), "{data}");
    assert_ne!(client_ca, requestheader_ca, "the front proxy has a CA of its own");
    // client-ca-file is the CA that signed the users' certificates (the admin's here).
    let admin_cert = std::fs::read_to_string(server.dir.path().join("data/pki/admin.crt")).expect("admin.crt");
    let admin = pem_certs(&admin_cert).remove(0);
    assert!(verifies(&client_ca, &admin) && !verifies(&requestheader_ca, &admin));
    let mut ext = Extension::start(&requestheader_ca, list("requestheader-allowed-names"));
    let objects = format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[
        {{"apiVersion":"v1","kind":"Service","metadata":{{"name":"ext-api","namespace":"default"}},"spec":{{"ports":[{{"name":"https","port":443,"protocol":"TCP","targetPort":{port}}}]}}}},
        {{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{{"name":"ext-api-1","namespace":"default","labels":{{"kubernetes.io/service-name":"ext-api"}}}},
          "addressType":"IPv4","endpoints":[{{"addresses":["127.0.0.1"],"conditions":{{"ready":true}}}}],"ports":[{{"name":"https","port":{port},"protocol":"TCP"}}]}},
        {{"apiVersion":"apiregistration.k8s.io/v1","kind":"APIService","metadata":{{"name":"v1beta1.metrics.test.io"}},
          "spec":{{"group":"metrics.test.io","version":"v1beta1","groupPriorityMinimum":100,"versionPriority":100,"caBundle":"{ca}",
                  "service":{{"namespace":"default","name":"ext-api","port":443}}}}}}]}}"#,
        port = ext.port,
        ca = base64::engine::general_purpose::STANDARD.encode(&ext.ca_pem),
    );
    k.run_with_input(&["create", "-f", "-"], Some(&objects)).ok();
    for v in VERSIONS {
        wait_for_row(&server.kubectl(v), "v1beta1.metrics.test.io", "Available", |r| r.is_some_and(|r| r[1] == "default/ext-api" && r[2] == "True"));
    }
    let status = k.run(&["get", "apiservice", "v1beta1.metrics.test.io", "-o", "jsonpath={.status.conditions[0].reason}"]).ok().to_string();
    assert_eq!(status, "Passed");

    for v in VERSIONS {
        let kv = server.kubectl(v);
        // Discovery carries the extension's resources (kubectl caches discovery: a fresh
        // cache per version sees them).
        let resources = kv.run(&["api-resources", "--api-group=metrics.test.io"]).ok().to_string();
        assert!(resources.contains("samples") && resources.contains("metrics.test.io/v1beta1") && resources.contains("Sample"), "kubectl {v}:\n{resources}");
        let out = kv.run(&["get", "samples"]).ok().to_string();
        assert!(out.contains("sample-one") && out.contains("42"), "kubectl {v}:\n{out}");
        let json = kv.run(&["get", "samples", "-o", "json"]).ok().to_string();
        assert!(json.contains("\"value\": 42"), "kubectl {v}:\n{json}");
    }
    discovery_in_upstream_order(&server);
    openapi_of_the_extension(&server);

    // Upgrades (exec, attach, port-forward) reach the extension server and are spliced: SPDY
    // and WebSocket alike, the switch answered with the extension's headers.
    let exec = "/apis/metrics.test.io/v1beta1/namespaces/default/samples/sample-one/exec?command=date";
    let (head, echoed) = upgrade_through(&server, exec, &[("Upgrade", "SPDY/3.1"), ("X-Stream-Protocol-Version", "v4.channel.k8s.io")], b"ping over spdy");
    assert!(head.starts_with("HTTP/1.1 101") && head.to_lowercase().contains("upgrade: spdy/3.1"), "{head}");
    assert_eq!(echoed, b"ping over spdy");
    let ws = [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Protocol", "v5.channel.k8s.io")];
    let (head, echoed) = upgrade_through(&server, exec, &ws, b"ping over websocket");
    assert!(head.starts_with("HTTP/1.1 101") && head.to_lowercase().contains("sec-websocket-protocol: v5.channel.k8s.io"), "{head}");
    assert_eq!(echoed, b"ping over websocket");
    // An upgrade the extension does not switch for gets its answer.
    let (head, _) = upgrade_through(&server, "/apis/metrics.test.io/v1beta1/namespaces/default/samples/other/exec", &[("Upgrade", "SPDY/3.1")], b"");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // Every connection came with the aggregator's certificate: verified by the request-header
    // CA (the handshake required it), named front-proxy-client, and not one the cluster CA
    // verifies — a user's client certificate cannot pass for the proxy.
    let peers = ext.peers.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(!peers.is_empty());
    for p in &peers {
        let cn = timonier_apiserver::auth::user_from_cert(p).map(|u| u.name);
        assert_eq!(cn.as_deref(), Some("front-proxy-client"));
        assert!(verifies(&requestheader_ca, p) && !verifies(&client_ca, p));
    }
    let whoami = k.run(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]).ok().to_string();
    let users = ext.users.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(!users.is_empty());
    for u in &users {
        let (name, groups) = u.split_once('|').unwrap_or((u, ""));
        assert_eq!(name, whoami, "X-Remote-User carries the caller");
        assert!(groups.split(',').any(|g| g == "system:masters"), "X-Remote-Group carries its groups: {u}");
    }
    // An unauthorized caller is refused before anything is forwarded.
    let before = users.len();
    let denied = k.run(&["get", "samples", "--as", "nobody"]).err().to_string();
    assert!(denied.contains("forbidden"), "{denied}");
    assert_eq!(ext.users.lock().unwrap_or_else(|e| e.into_inner()).len(), before);

    ext.stop();
    wait_for_row(&k, "v1beta1.metrics.test.io", "False (FailedDiscoveryCheck)", |r| r.is_some_and(|r| r[2] == "False (FailedDiscoveryCheck)"));
    let err = server.kubectl("1.33").run(&["get", "--raw", "/apis/metrics.test.io/v1beta1/samples"]).err().to_string();
    assert!(err.contains("ServiceUnavailable") || err.contains("service unavailable") || err.contains("503"), "{err}");
    // Discovery keeps the group version, stale, as upstream; its OpenAPI stays (the last
    // documents fetched).
    let aggregated = aggregated_discovery(&server);
    let ext = aggregated["items"].as_array().into_iter().flatten().find(|g| g["metadata"]["name"] == "metrics.test.io").cloned().unwrap_or_default();
    assert_eq!(ext["versions"][0]["freshness"], "Stale", "{ext}");
    assert!(raw_get(&server, "/openapi/v2").contains("io.test.metrics.v1beta1.Sample"));
    // Without its endpoints the reason says so.
    k.run(&["delete", "endpointslice", "ext-api-1"]).ok();
    wait_for_row(&k, "v1beta1.metrics.test.io", "False (EndpointsNotFound)", |r| r.is_some_and(|r| r[2] == "False (EndpointsNotFound)"));
    k.run(&["delete", "service", "ext-api"]).ok();
    wait_for_row(&k, "v1beta1.metrics.test.io", "False (ServiceNotFound)", |r| r.is_some_and(|r| r[2] == "False (ServiceNotFound)"));
    // Once the APIService is gone, so are its group and its documents.
    k.run(&["delete", "apiservice", "v1beta1.metrics.test.io"]).ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let apis = k.run(&["get", "--raw", "/apis"]).ok().to_string();
        let v3 = k.run(&["get", "--raw", "/openapi/v3"]).ok().to_string();
        let v2_has = raw_get(&server, "/openapi/v2").contains("io.test.metrics.v1beta1.Sample");
        if !apis.contains("metrics.test.io") && !v3.contains("metrics.test.io") && !v2_has {
            break;
        }
        assert!(Instant::now() < deadline, "the extension's group outlived its APIService:\n{apis}\n{v3}\nv2 has it: {v2_has}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A GET as the admin, whatever its size (kubectl's output is read only once it exits, so a
/// document of megabytes would fill its pipe).
fn raw_get(server: &Server, path: &str) -> String {
    let out = server.admin_curl().arg(server.url(path)).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `/apis` with `Accept` the aggregated discovery form, as kubectl asks for it.
fn aggregated_discovery(server: &Server) -> serde_json::Value {
    let accept = "Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let out = server.admin_curl().args(["-H", accept]).arg(server.url("/apis")).output().expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Groups in kube-apiserver 1.33's order (the APIServices' priorities: apiregistration first,
/// then `groupPriorityMinimum` from highest, ties by name), the extension's (100) last; versions
/// by `versionPriority`, the first preferred — in both discovery forms.
fn discovery_in_upstream_order(server: &Server) {
    let expected = [
        "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "autoscaling", "batch",
        "certificates.k8s.io", "networking.k8s.io", "policy", "rbac.authorization.k8s.io", "storage.k8s.io", "admissionregistration.k8s.io",
        "apiextensions.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "node.k8s.io", "discovery.k8s.io", "flowcontrol.apiserver.k8s.io",
        "metrics.test.io",
    ];
    let k = server.kubectl("1.33");
    let legacy: serde_json::Value = serde_json::from_str(k.run(&["get", "--raw", "/apis"]).ok()).expect("json");
    let names: Vec<&str> = legacy["groups"].as_array().into_iter().flatten().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, expected, "{legacy}");
    let autoscaling = legacy["groups"].as_array().into_iter().flatten().find(|g| g["name"] == "autoscaling").cloned().unwrap_or_default();
    assert_eq!(autoscaling["preferredVersion"]["version"], "v2");
    let versions: Vec<&str> = autoscaling["versions"].as_array().into_iter().flatten().filter_map(|v| v["version"].as_str()).collect();
    assert_eq!(versions, ["v2", "v1"]);
    let group: serde_json::Value = serde_json::from_str(k.run(&["get", "--raw", "/apis/autoscaling"]).ok()).expect("json");
    assert_eq!(group["preferredVersion"]["version"], "v2");
    let group: serde_json::Value = serde_json::from_str(k.run(&["get", "--raw", "/apis/metrics.test.io"]).ok()).expect("json");
    assert_eq!(group["preferredVersion"]["groupVersion"], "metrics.test.io/v1beta1");

    let aggregated = aggregated_discovery(server);
    let names: Vec<&str> = aggregated["items"].as_array().into_iter().flatten().filter_map(|g| g["metadata"]["name"].as_str()).collect();
    assert_eq!(names, expected);
    let autoscaling = aggregated["items"].as_array().into_iter().flatten().find(|g| g["metadata"]["name"] == "autoscaling").cloned().unwrap_or_default();
    assert_eq!((autoscaling["versions"][0]["version"].as_str(), autoscaling["versions"][1]["version"].as_str()), (Some("v2"), Some("v1")));
    let ext = aggregated["items"].as_array().into_iter().flatten().find(|g| g["metadata"]["name"] == "metrics.test.io").cloned().unwrap_or_default();
    assert_eq!(ext["versions"][0]["freshness"], "Current");
    // kubectl lists the extension's group version and the preferred ones (sorted by name:
    // kubectl sorts them itself).
    for v in VERSIONS {
        let versions = server.kubectl(v).run(&["api-versions"]).ok().to_string();
        assert!(versions.lines().any(|l| l == "metrics.test.io/v1beta1") && versions.lines().any(|l| l == "autoscaling/v2"), "kubectl {v}:\n{versions}");
    }
}

/// The extension's OpenAPI: its kinds in `/openapi/v2` (merged: its own `ObjectMeta` renamed,
/// nothing outside its group version), its group version in `/openapi/v3` (proxied to it);
/// `kubectl explain` reads them, client-side validation rejects an unknown field.
fn openapi_of_the_extension(server: &Server) {
    let k = server.kubectl("1.33");
    let deadline = Instant::now() + Duration::from_secs(30);
    let root = loop {
        let root: serde_json::Value = serde_json::from_str(k.run(&["get", "--raw", "/openapi/v3"]).ok()).expect("json");
        if root["paths"].get("apis/metrics.test.io/v1beta1").is_some() {
            break root;
        }
        assert!(Instant::now() < deadline, "/openapi/v3 never listed the extension: {root}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let url = root["paths"]["apis/metrics.test.io/v1beta1"]["serverRelativeURL"].as_str().unwrap_or("").to_string();
    assert_eq!(url, "/openapi/v3/apis/metrics.test.io/v1beta1?hash=EXT1");
    assert!(root["paths"].get("apis/apps/v1").is_some());
    assert!(root["paths"].get("version").is_none(), "only the APIService's group version is taken");
    let doc: serde_json::Value = serde_json::from_str(k.run(&["get", "--raw", &url]).ok()).expect("json");
    assert_eq!(doc, ext_openapi_v3());

    let v2: serde_json::Value = serde_json::from_str(&raw_get(server, "/openapi/v2")).expect("json");
    let defs = &v2["definitions"];
    assert_eq!(defs["io.test.metrics.v1beta1.Sample"]["description"], SAMPLE_DESCRIPTION);
    assert_eq!(defs["io.test.metrics.v1beta1.Sample"]["properties"]["metadata"]["$ref"], "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta_v2");
    assert_eq!(defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta_v2"]["description"], "ObjectMeta as the test extension words it.");
    assert_ne!(defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["description"], "ObjectMeta as the test extension words it.");
    assert!(defs.get("io.test.Info").is_none() && defs.get("io.k8s.api.apps.v1.Deployment").is_some());
    let path = &v2["paths"]["/apis/metrics.test.io/v1beta1/namespaces/{namespace}/samples/{name}"];
    assert_eq!(path["parameters"][0]["name"], "namespace", "shared parameters written in: {path}");

    for v in VERSIONS {
        let kv = server.kubectl(v);
        let explained = kv.run(&["explain", "samples"]).ok().to_string();
        assert!(explained.contains("Sample") && explained.contains(SAMPLE_DESCRIPTION) && explained.contains("value"), "kubectl {v}:\n{explained}");
        let field = kv.run(&["explain", "samples.value"]).ok().to_string();
        assert!(field.contains(VALUE_DESCRIPTION), "kubectl {v}:\n{field}");
        // Client-side validation against the merged /openapi/v2 (the extension's PATCH takes
        // no fieldValidation, so kubectl validates itself).
        let bad = r#"{"apiVersion":"metrics.test.io/v1beta1","kind":"Sample","metadata":{"name":"s2","namespace":"default"},"value":1,"bogus":true}"#;
        let err = kv.run_with_input(&["create", "--dry-run=client", "-f", "-"], Some(bad)).err().to_string();
        assert!(err.contains("unknown field") && err.contains("bogus"), "kubectl {v}:\n{err}");
        let good = bad.replace(r#","bogus":true"#, "");
        let out = kv.run_with_input(&["create", "--dry-run=client", "-f", "-"], Some(&good)).ok().to_string();
        assert!(out.contains("s2") && out.contains("dry run"), "kubectl {v}:\n{out}");
    }
}

/// What metrics-server's manifest binds: the reader of the authentication ConfigMap in
/// kube-system and `system:auth-delegator`, both bootstrapped as upstream's.
#[test]
fn extension_server_roles_as_upstream() {
    let server = Server::start(Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let k = server.kubectl("1.33");
    let sa = "system:serviceaccount:kube-system:metrics-server";
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.extend(["--as", sa]);
        // "yes" exits 0, "no" exits 1; the answer is on stdout either way.
        let out = k.run(&all);
        out.stdout.trim().to_string()
    };
    let read_cm = ["get", "configmaps/extension-apiserver-authentication", "-n", "kube-system"];
    assert_eq!(can(&read_cm), "no");
    assert_eq!(can(&["create", "tokenreviews.authentication.k8s.io"]), "no");
    let role = k.run(&["get", "role", "-n", "kube-system", "extension-apiserver-authentication-reader", "-o", "json"]).ok().to_string();
    let role: serde_json::Value = serde_json::from_str(&role).expect("json");
    assert_eq!(role["rules"], serde_json::json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["extension-apiserver-authentication"], "verbs": ["get", "list", "watch"]}]));
    assert_eq!(role["metadata"]["labels"]["kubernetes.io/bootstrapping"], "rbac-defaults");
    let bindings = r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"metrics-server-auth-reader","namespace":"kube-system"},
         "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"extension-apiserver-authentication-reader"},
         "subjects":[{"kind":"ServiceAccount","name":"metrics-server","namespace":"kube-system"}]},
        {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"metrics-server:system:auth-delegator"},
         "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"system:auth-delegator"},
         "subjects":[{"kind":"ServiceAccount","name":"metrics-server","namespace":"kube-system"}]}]}"#;
    k.run_with_input(&["create", "-f", "-"], Some(bindings)).ok();
    assert_eq!(can(&read_cm), "yes");
    assert_eq!(can(&["list", "configmaps", "-n", "kube-system"]), "no", "only the one ConfigMap");
    assert_eq!(can(&["get", "configmaps/other", "-n", "kube-system"]), "no");
    assert_eq!(can(&["create", "tokenreviews.authentication.k8s.io"]), "yes");
    assert_eq!(can(&["create", "subjectaccessreviews.authorization.k8s.io"]), "yes");
    assert_eq!(can(&["delete", "tokenreviews.authentication.k8s.io"]), "no");
}
