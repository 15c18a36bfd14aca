//! End to end: the aggregation layer as kube-aggregator. `kubectl get apiservices` (1.27 and
//! 1.33) lists the local APIServices as upstream prints them; a CRD's group version gets one
//! and loses it; an extension API server written here (hyper + rustls, its own CA) behind a
//! selector-less Service and a manual EndpointSlice becomes Available, its resources are
//! discovered and listed through the API server with the caller in X-Remote-User, and it turns
//! Available False once stopped.

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
/// `samples`, holding one object; the users it was called as are recorded.
struct Extension {
    port: u16,
    ca_pem: String,
    users: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Extension {
    fn start() -> Extension {
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
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let users = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let seen = users.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let tcp = tokio::select! {
                        _ = &mut stop_rx => return,
                        a = listener.accept() => match a { Ok((t, _)) => t, Err(_) => continue },
                    };
                    let (acceptor, seen) = (acceptor.clone(), seen.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            async move { Ok::<_, std::convert::Infallible>(answer(&req, &seen)) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), svc).await;
                    });
                }
            });
            // Dropping the runtime closes the listener and every connection.
        });
        Extension { port, ca_pem, users, stop: Some(stop_tx), thread: Some(thread) }
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
        _ => hyper::Response::builder().status(404).body(Full::new(Bytes::from_static(b"not found"))).expect("response"),
    }
}

#[test]
fn extension_api_server_behind_an_apiservice() {
    let server = Server::start(Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let k = server.kubectl("1.33");
    let mut ext = Extension::start();
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
    // Without its endpoints the reason says so.
    k.run(&["delete", "endpointslice", "ext-api-1"]).ok();
    wait_for_row(&k, "v1beta1.metrics.test.io", "False (EndpointsNotFound)", |r| r.is_some_and(|r| r[2] == "False (EndpointsNotFound)"));
    k.run(&["delete", "service", "ext-api"]).ok();
    wait_for_row(&k, "v1beta1.metrics.test.io", "False (ServiceNotFound)", |r| r.is_some_and(|r| r[2] == "False (ServiceNotFound)"));
}
