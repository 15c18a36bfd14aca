//! End to end: dynamic admission as add-ons use it, seen through the stock kubectl 1.33.
//! A real webhook server runs in this process (HTTPS with its own CA, registered by `url`):
//! it mutates (adds a label by JSONPatch), denies (by a label), counts calls (reinvocation)
//! and stalls (timeouts). Then the ValidatingAdmissionPolicy of the Kubernetes docs, with
//! Deny and Warn bindings and params from a ConfigMap; and policies using Kubernetes' CEL
//! libraries (`quantity` on memory limits, `authorizer` backed by RBAC; durations and
//! timestamps, `format`, `semver`, audit annotations, the cost limit); and webhooks matched
//! by an equivalent resource (`matchPolicy: Equivalent`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use timonier_testkit::{Kubectl, Server};

const KUBECTL: &str = "1.33";

/// What the test webhook server saw: calls per (path, object name).
type Calls = Arc<Mutex<HashMap<String, usize>>>;

struct WebhookServer {
    addr: SocketAddr,
    ca_b64: String,
    calls: Calls,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebhookServer {
    fn start() -> WebhookServer {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "admission-test-ca");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let calls: Calls = Arc::default();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let seen = calls.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stopped => return,
                        r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                    };
                    let acceptor = acceptor.clone();
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            async move { Ok::<_, Infallible>(answer(req, seen).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
                    });
                }
            });
        });
        let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca_cert.pem());
        WebhookServer { addr, ca_b64, calls, stop: Some(stop), thread: Some(thread) }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn calls(&self, path: &str, name: &str) -> usize {
        self.calls.lock().unwrap().get(&format!("{path} {name}")).copied().unwrap_or(0)
    }

    fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The webhooks: `/mutate` labels the object `mutated=yes` (with a warning), `/deny` denies
/// what is labelled `deny=true`, `/count` only counts, `/slow` answers after 3 s.
async fn answer(req: hyper::Request<hyper::body::Incoming>, seen: Calls) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let request = &review["request"];
    let uid = request["uid"].clone();
    let obj = &request["object"];
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    *seen.lock().unwrap().entry(format!("{path} {name}")).or_default() += 1;
    let mut response = json!({"uid": uid, "allowed": true});
    match path.as_str() {
        "/mutate" => {
            let mut ops = vec![];
            if obj.pointer("/metadata/labels").is_none() {
                ops.push(json!({"op": "add", "path": "/metadata/labels", "value": {}}));
            }
            ops.push(json!({"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}));
            let patch = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&ops).unwrap());
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(patch);
            response["warnings"] = json!(["mutated by the test webhook"]);
        }
        "/deny" => {
            if obj.pointer("/metadata/labels/deny").and_then(Value::as_str) == Some("true") {
                response["allowed"] = json!(false);
                response["status"] = json!({"code": 403, "reason": "Forbidden", "message": "the object is labelled deny=true"});
            }
        }
        "/slow" => tokio::time::sleep(Duration::from_secs(3)).await,
        // Records the version it was sent: the object's, `kind`'s and `requestKind`'s.
        "/kinds" => {
            let gv = |k: &Value| format!("{}/{}", k["group"].as_str().unwrap_or(""), k["version"].as_str().unwrap_or(""));
            let seen_as = format!("{path} {name} {} {} {}", obj["apiVersion"].as_str().unwrap_or(""), gv(&request["kind"]), gv(&request["requestKind"]));
            *seen.lock().unwrap().entry(seen_as).or_default() += 1;
        }
        _ => {}
    }
    let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    hyper::Response::builder().header("content-type", "application/json").body(Full::new(Bytes::from(out.to_string()))).unwrap()
}

fn server() -> Server {
    Server::start(Path::new(env!("CARGO_BIN_EXE_timonier")), &[])
}

fn apply(k: &Kubectl, doc: &Value) {
    k.run_with_input(&["apply", "-f", "-"], Some(&doc.to_string())).ok();
}

fn labels(k: &Kubectl, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    let out: Value = serde_json::from_str(k.run(&a).ok()).unwrap();
    out.pointer("/metadata/labels").cloned().unwrap_or(json!({}))
}

fn webhook(name: &str, url: &str, ca: &str, resources: &str, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": [resources]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    for (k, v) in extra.as_object().unwrap() {
        w[k] = v.clone();
    }
    w
}

#[test]
fn webhooks_mutate_deny_reinvoke_and_fail_as_configured() {
    let s = server();
    let k = s.kubectl(KUBECTL);
    let mut hooks = WebhookServer::start();
    let ca = hooks.ca_b64.clone();
    k.run(&["create", "namespace", "hooked"]).ok();
    k.run(&["label", "namespace", "hooked", "admission=on"]).ok();
    k.run(&["create", "namespace", "plain"]).ok();

    // Mutating: a label added by JSONPatch in namespaces labelled admission=on only.
    apply(&k, &json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "label-adder"},
        "webhooks": [webhook("add-label.example.com", &hooks.url("/mutate"), &ca, "configmaps",
            json!({"namespaceSelector": {"matchLabels": {"admission": "on"}}}))],
    }));
    let out = k.run(&["create", "configmap", "c1", "-n", "hooked", "--from-literal=a=b"]);
    out.ok();
    assert!(out.stderr.contains("Warning: mutated by the test webhook"), "{}", out.stderr);
    assert_eq!(labels(&k, &["configmap", "c1", "-n", "hooked"])["mutated"], "yes");
    k.run(&["create", "configmap", "c2", "-n", "plain"]).ok();
    assert_eq!(labels(&k, &["configmap", "c2", "-n", "plain"]).get("mutated"), None, "namespaceSelector");
    // A server-side dry run reaches webhooks whose sideEffects are None.
    let dry: Value = serde_json::from_str(k.run(&["create", "configmap", "c3", "-n", "hooked", "--dry-run=server", "-o", "json"]).ok()).unwrap();
    assert_eq!(dry["metadata"]["labels"]["mutated"], "yes");

    // Validating: denies what is labelled deny=true (objectSelector), with its status.
    apply(&k, &json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "denier"},
        "webhooks": [
            webhook("deny.example.com", &hooks.url("/deny"), &ca, "configmaps", json!({"objectSelector": {"matchLabels": {"deny": "true"}}})),
            webhook("slow.example.com", &hooks.url("/slow"), &ca, "configmaps", json!({"objectSelector": {"matchLabels": {"slow": "yes"}}, "timeoutSeconds": 1})),
        ],
    }));
    let denied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad", "namespace": "plain", "labels": {"deny": "true"}}});
    let out = k.run_with_input(&["create", "-f", "-"], Some(&denied.to_string()));
    assert_eq!(
        out.err().trim(),
        "Error from server (Forbidden): error when creating \"STDIN\": admission webhook \"deny.example.com\" denied the request: the object is labelled deny=true"
    );
    assert_eq!(hooks.calls("/deny", "bad"), 1);
    k.run(&["create", "configmap", "fine", "-n", "plain"]).ok();
    assert_eq!(hooks.calls("/deny", "fine"), 0, "objectSelector keeps the webhook out");
    // Updates are admitted too: labelling an object deny=true is refused.
    let err = k.run(&["label", "configmap", "fine", "-n", "plain", "deny=true"]).err().to_string();
    assert!(err.contains("admission webhook \"deny.example.com\" denied the request: the object is labelled deny=true"), "{err}");

    // Timeout: the webhook answers after 3 s, its timeoutSeconds is 1, failurePolicy Fail.
    let started = Instant::now();
    let slow = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "slow", "namespace": "plain", "labels": {"slow": "yes"}}});
    let err = k.run_with_input(&["create", "-f", "-"], Some(&slow.to_string())).err().to_string();
    assert!(started.elapsed() < Duration::from_secs(3), "the call was not cut at its timeout");
    assert!(err.contains("Internal error occurred: failed calling webhook \"slow.example.com\": failed to call webhook: Post"), "{err}");
    assert!(err.contains("context deadline exceeded"), "{err}");

    // Reinvocation: `count` (IfNeeded) runs before `late` changes the object, so it runs again;
    // `never` (the default policy) does not.
    apply(&k, &json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "reinvoke"},
        "webhooks": [
            webhook("count.example.com", &hooks.url("/count"), &ca, "secrets", json!({"reinvocationPolicy": "IfNeeded"})),
            webhook("never.example.com", &hooks.url("/never"), &ca, "secrets", json!({})),
            webhook("late.example.com", &hooks.url("/mutate"), &ca, "secrets", json!({})),
        ],
    }));
    k.run(&["create", "secret", "generic", "s1", "-n", "plain", "--from-literal=a=b"]).ok();
    assert_eq!(labels(&k, &["secret", "s1", "-n", "plain"])["mutated"], "yes");
    assert_eq!(hooks.calls("/count", "s1"), 2, "reinvoked once after a later webhook changed the object");
    assert_eq!(hooks.calls("/never", "s1"), 1);
    assert_eq!(hooks.calls("/mutate", "s1"), 1);
    k.run(&["delete", "mutatingwebhookconfiguration", "reinvoke"]).ok();

    // The webhook server goes away: failurePolicy Fail refuses, Ignore lets the write through.
    let port = hooks.addr.port();
    hooks.stop();
    let err = k.run(&["create", "configmap", "c4", "-n", "hooked"]).err().to_string();
    assert!(
        err.contains(&format!("Internal error occurred: failed calling webhook \"add-label.example.com\": failed to call webhook: Post \"https://127.0.0.1:{port}/mutate?timeout=10s\": dial tcp")),
        "{err}"
    );
    k.run(&["patch", "mutatingwebhookconfiguration", "label-adder", "--type=json", "-p", r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]"#]).ok();
    k.run(&["create", "configmap", "c4", "-n", "hooked"]).ok();
    assert_eq!(labels(&k, &["configmap", "c4", "-n", "hooked"]).get("mutated"), None);
    // The configurations themselves are never sent to webhooks, so they can always be removed.
    k.run(&["delete", "validatingwebhookconfiguration", "denier"]).ok();
}

#[test]
fn validating_admission_policies_deny_warn_and_take_params() {
    let s = server();
    let k = s.kubectl(KUBECTL);
    for (ns, env) in [("test", "test"), ("staging", "staging"), ("limited", "params")] {
        k.run(&["create", "namespace", ns]).ok();
        k.run(&["label", "namespace", ns, &format!("environment={env}")]).ok();
    }
    // The policy and binding of the Kubernetes documentation.
    let policy = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: "demo-policy.example.com"
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups:   ["apps"]
      apiVersions: ["v1"]
      operations:  ["CREATE", "UPDATE"]
      resources:   ["deployments"]
  validations:
    - expression: "object.spec.replicas <= 5"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: "demo-binding-test.example.com"
spec:
  policyName: "demo-policy.example.com"
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        environment: test
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: "demo-binding-warn.example.com"
spec:
  policyName: "demo-policy.example.com"
  validationActions: [Warn]
  matchResources:
    namespaceSelector:
      matchLabels:
        environment: staging
"#;
    k.run_with_input(&["apply", "-f", "-"], Some(policy)).ok();
    let out = k.run(&["create", "deployment", "nginx", "--image=nginx", "--replicas=6", "-n", "test"]);
    assert_eq!(
        out.err().trim(),
        "error: failed to create deployment: deployments.apps \"nginx\" is forbidden: ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied request: failed expression: object.spec.replicas <= 5"
    );
    k.run(&["create", "deployment", "nginx", "--image=nginx", "--replicas=5", "-n", "test"]).ok();
    // Updates too (`kubectl scale` would not be: it writes deployments/scale, which the
    // policy's rules do not name, as upstream).
    let err = k.run(&["patch", "deployment", "nginx", "-n", "test", "-p", r#"{"spec":{"replicas":7}}"#]).err().to_string();
    assert!(err.contains("denied request: failed expression: object.spec.replicas <= 5"), "{err}");
    // Warn: the write goes through, kubectl prints the warning.
    let out = k.run(&["create", "deployment", "nginx", "--image=nginx", "--replicas=6", "-n", "staging"]);
    out.ok();
    assert!(
        out.stderr.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-warn.example.com': failed expression: object.spec.replicas <= 5"),
        "{}",
        out.stderr
    );
    // Not bound in the default namespace.
    k.run(&["create", "deployment", "free", "--image=nginx", "--replicas=9"]).ok();
    let status = k.run(&["get", "validatingadmissionpolicy", "demo-policy.example.com", "-o", "jsonpath={.status.observedGeneration}"]).ok().to_string();
    assert_eq!(status, "1");

    // Params from a ConfigMap, a messageExpression and a reason.
    k.run(&["create", "configmap", "replica-limit", "--from-literal=maxReplicas=2"]).ok();
    let policy = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: replica-limit.example.com
spec:
  paramKind:
    apiVersion: v1
    kind: ConfigMap
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["deployments"]
  variables:
  - name: limit
    expression: "int(params.data.maxReplicas)"
  validations:
  - expression: "object.spec.replicas <= variables.limit"
    messageExpression: "'replicas must be no greater than ' + string(variables.limit)"
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: replica-limit-binding.example.com
spec:
  policyName: replica-limit.example.com
  validationActions: [Deny]
  paramRef:
    name: replica-limit
    namespace: default
    parameterNotFoundAction: Deny
  matchResources:
    namespaceSelector:
      matchLabels:
        environment: params
"#;
    k.run_with_input(&["apply", "-f", "-"], Some(policy)).ok();
    let err = k.run(&["create", "deployment", "big", "--image=nginx", "--replicas=3", "-n", "limited"]).err().to_string();
    assert_eq!(
        err.trim(),
        "error: failed to create deployment: deployments.apps \"big\" is forbidden: ValidatingAdmissionPolicy 'replica-limit.example.com' with binding 'replica-limit-binding.example.com' denied request: replicas must be no greater than 2"
    );
    k.run(&["create", "deployment", "small", "--image=nginx", "--replicas=2", "-n", "limited"]).ok();
    // The params are read at each request: raising the limit admits the bigger one.
    k.run(&["patch", "configmap", "replica-limit", "-p", r#"{"data":{"maxReplicas":"4"}}"#]).ok();
    k.run(&["create", "deployment", "big", "--image=nginx", "--replicas=3", "-n", "limited"]).ok();
    // Without its params, the binding denies (parameterNotFoundAction: Deny).
    k.run(&["delete", "configmap", "replica-limit"]).ok();
    let err = k.run(&["create", "deployment", "bigger", "--image=nginx", "--replicas=1", "-n", "limited"]).err().to_string();
    assert!(err.contains("no params found for policy binding with `Deny` parameterNotFoundAction"), "{err}");

    // A policy whose expression does not compile is refused when written.
    let bad = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "broken.example.com"},
        "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]},
                 "validations": [{"expression": "object.spec.replicas <="}]},
    });
    let err = k.run_with_input(&["create", "-f", "-"], Some(&bad.to_string())).err().to_string();
    assert!(err.contains("spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\": compilation failed"), "{err}");
}

/// A pod with one container and the given memory limit, optionally labelled with a team.
fn pod(name: &str, memory: &str, team: Option<&str>) -> String {
    let labels = team.map_or(json!({}), |t| json!({"team": t}));
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "quotas", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"limits": {"memory": memory}}}]},
    })
    .to_string()
}

#[test]
fn policies_use_kubernetes_cel_libraries() {
    let s = server();
    let k = s.kubectl(KUBECTL);
    k.run(&["create", "namespace", "quotas"]).ok();
    // Memory limits compared as quantities (1Gi is more than 512Mi, 0.5Gi is not), and a
    // team label only for those the authorizer says may `admin` that team.
    let policy = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: pod-limits.example.com
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["pods"]
  variables:
  - name: maxMemory
    expression: "quantity('512Mi')"
  validations:
  - expression: "object.spec.containers.all(c, !quantity(c.resources.limits.memory).isGreaterThan(variables.maxMemory))"
    messageExpression: "'memory limit must be at most 512Mi, not ' + object.spec.containers[0].resources.limits.memory"
  - expression: "!has(object.metadata.labels) || !('team' in object.metadata.labels) || authorizer.group('example.com').resource('teams').name(object.metadata.labels.team).check('admin').allowed()"
    message: "only a team's admins may label pods with it"
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: pod-limits-binding.example.com
spec:
  policyName: pod-limits.example.com
  validationActions: [Deny]
"#;
    k.run_with_input(&["apply", "-f", "-"], Some(policy)).ok();
    // These functions are supported: the status has no typeChecking warning for them.
    let warnings = k.run(&["get", "validatingadmissionpolicy", "pod-limits.example.com", "-o", "jsonpath={.status.typeChecking}"]).ok().to_string();
    assert!(!warnings.contains("expressionWarnings"), "{warnings}");

    let err = k.run_with_input(&["create", "-f", "-"], Some(&pod("big", "1Gi", None))).err().to_string();
    assert_eq!(
        err.trim(),
        "The pods \"big\" is invalid: : ValidatingAdmissionPolicy 'pod-limits.example.com' with binding 'pod-limits-binding.example.com' denied request: memory limit must be at most 512Mi, not 1Gi"
    );
    k.run_with_input(&["create", "-f", "-"], Some(&pod("half", "0.5Gi", None))).ok();
    k.run_with_input(&["create", "-f", "-"], Some(&pod("small", "100M", None))).ok();

    // The service account bob may create pods in the namespace, but is no team admin: the
    // authorizer says no.
    k.run(&["create", "serviceaccount", "bob", "-n", "quotas"]).ok();
    let token = k.run(&["create", "token", "bob", "-n", "quotas"]).ok().trim().to_string();
    k.run(&["config", "set-credentials", "bob", &format!("--token={token}")]).ok();
    k.run(&["create", "role", "pod-creator", "-n", "quotas", "--verb=create", "--resource=pods"]).ok();
    k.run(&["create", "rolebinding", "bob-pods", "-n", "quotas", "--role=pod-creator", "--serviceaccount=quotas:bob"]).ok();
    let as_bob = |name: &str, team: Option<&str>| k.run_with_input(&["create", "-f", "-", "--user=bob"], Some(&pod(name, "64Mi", team)));
    as_bob("plain", None).ok();
    let err = as_bob("labelled", Some("blue")).err().to_string();
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): error when creating \"STDIN\": pods \"labelled\" is forbidden: ValidatingAdmissionPolicy 'pod-limits.example.com' with binding 'pod-limits-binding.example.com' denied request: only a team's admins may label pods with it"
    );
    // The admin (system:masters) may; and once RBAC grants bob `admin` on team blue, so may
    // he, for that team only.
    k.run_with_input(&["create", "-f", "-"], Some(&pod("admins", "64Mi", Some("blue")))).ok();
    // (`kubectl create clusterrole` wants served resources and standard verbs: a manifest.)
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "blue-admin"},
                      "rules": [{"apiGroups": ["example.com"], "resources": ["teams"], "resourceNames": ["blue"], "verbs": ["admin"]}]});
    k.run_with_input(&["create", "-f", "-"], Some(&role.to_string())).ok();
    k.run(&["create", "clusterrolebinding", "bob-blue", "--clusterrole=blue-admin", "--serviceaccount=quotas:bob"]).ok();
    as_bob("labelled", Some("blue")).ok();
    assert!(as_bob("red", Some("red")).err().to_string().contains("only a team's admins may label pods with it"));
    // Impersonation: admission judges the user `kubectl --as` acts as, not the admin behind it.
    let impersonated = k.run_with_input(&["create", "-f", "-", "--as=system:serviceaccount:quotas:bob"], Some(&pod("as-bob", "64Mi", Some("red"))));
    assert!(impersonated.err().contains("only a team's admins may label pods with it"), "{}", impersonated.stderr);
}

/// A ConfigMap in namespace `checks` with `data`.
fn configmap(name: &str, data: Value) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "checks"}, "data": data}).to_string()
}

#[test]
fn policies_use_durations_formats_semver_audit_annotations_and_cost_limits() {
    let s = server();
    let k = s.kubectl(KUBECTL);
    k.run(&["create", "namespace", "checks"]).ok();
    let policy = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: configmap-checks.example.com
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["configmaps"]
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: checks
  variables:
  - name: maxTimeout
    expression: "duration('1h')"
  validations:
  - expression: "!has(object.data.timeout) || duration(object.data.timeout) <= variables.maxTimeout"
    messageExpression: "'timeout ' + string(duration(object.data.timeout)) + ' is over ' + string(variables.maxTimeout)"
  - expression: "!has(object.data.expires) || timestamp(object.data.expires) > timestamp(object.metadata.creationTimestamp) + duration('24h')"
    message: "expires must be at least a day away"
  - expression: "!has(object.data.owner) || !format.dns1035Label().validate(object.data.owner).hasValue()"
    messageExpression: "'owner: ' + format.dns1035Label().validate(object.data.owner).value().join('; ')"
  - expression: "!has(object.data.id) || !format.named('uuid').value().validate(object.data.id).hasValue()"
    message: "id must be a UUID"
  - expression: "!has(object.data.version) || (isSemver(object.data.version, true) && semver(object.data.version, true).isGreaterThan(semver('1.2.0')))"
    messageExpression: "'version must be a semantic version above 1.2.0, not ' + object.data.version"
    reason: Forbidden
  - expression: "!has(object.data.heavy) || object.data.all(a, object.data.all(b, object.data.all(c, a + b + c != '')))"
  auditAnnotations:
  - key: owner
    valueExpression: "has(object.data.owner) ? 'owned by ' + object.data.owner : null"
  - key: wrong-type
    valueExpression: "has(object.data.annotate) ? 1 : null"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: configmap-checks-binding.example.com
spec:
  policyName: configmap-checks.example.com
  validationActions: [Deny]
"#;
    k.run_with_input(&["apply", "-f", "-"], Some(policy)).ok();
    let denied = |name: &str, data: Value| k.run_with_input(&["create", "-f", "-"], Some(&configmap(name, data))).err().trim().to_string();
    let prefix = "ValidatingAdmissionPolicy 'configmap-checks.example.com' with binding 'configmap-checks-binding.example.com' denied request: ";

    // Durations and timestamps: Go's parsing, comparisons, arithmetic, string().
    k.run_with_input(&["create", "-f", "-"], Some(&configmap("short", json!({"timeout": "45m30s"})))).ok();
    let err = denied("long", json!({"timeout": "1h30m"}));
    assert!(err.ends_with(&format!("{prefix}timeout 5400s is over 3600s")), "{err}");
    let err = denied("garbage", json!({"timeout": "1hx"}));
    assert!(err.ends_with(&format!("{prefix}expression '!has(object.data.timeout) || duration(object.data.timeout) <= variables.maxTimeout' resulted in error: type conversion error from 'string' to 'google.protobuf.Duration'")), "{err}");
    k.run_with_input(&["create", "-f", "-"], Some(&configmap("later", json!({"expires": "2999-01-01T00:00:00Z"})))).ok();
    let err = denied("past", json!({"expires": "2001-02-03T04:05:06+01:00"}));
    assert!(err.ends_with(&format!("{prefix}expires must be at least a day away")), "{err}");

    // format: the library's messages, by shorthand and by name.
    k.run_with_input(&["create", "-f", "-"], Some(&configmap("owned", json!({"owner": "team-a", "id": "123e4567-e89b-12d3-a456-426614174000"})))).ok();
    let err = denied("bad-owner", json!({"owner": "1team"}));
    assert!(err.ends_with(&format!("{prefix}owner: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")), "{err}");
    assert!(denied("bad-id", json!({"id": "not-a-uuid"})).ends_with(&format!("{prefix}id must be a UUID")));

    // semver, normalized; the reason Forbidden gives a 403.
    k.run_with_input(&["create", "-f", "-"], Some(&configmap("v13", json!({"version": "v1.3"})))).ok();
    let err = denied("v11", json!({"version": "1.1.9"}));
    assert_eq!(err, format!("Error from server (Forbidden): error when creating \"STDIN\": configmaps \"v11\" is forbidden: {prefix}version must be a semantic version above 1.2.0, not 1.1.9"));

    // Audit annotations: a string is published (logged, this server has no audit log), a
    // value neither string nor null denies, as upstream.
    let err = denied("annotated", json!({"annotate": "yes"}));
    assert!(err.ends_with(&format!("{prefix}valueExpression 'has(object.data.annotate) ? 1 : null' resulted in unsupported return type: int. Return type must be either string or null.")), "{err}");

    // The cost limit: three nested loops over 150 keys are cancelled, not run to the end.
    let mut data: serde_json::Map<String, Value> = (0..150).map(|i| (format!("k{i}"), json!("v"))).collect();
    data.insert("heavy".into(), json!("yes"));
    let started = Instant::now();
    let err = denied("heavy", Value::Object(data));
    assert!(err.ends_with("resulted in error: operation cancelled: actual cost limit exceeded"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "the evaluation was not cut at its cost limit");

    // Written policies are checked: an audit annotation key must make a qualified name.
    let bad = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "bad-key.example.com"},
        "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]},
                 "auditAnnotations": [{"key": "not a key", "valueExpression": "'x'"}]},
    });
    let err = k.run_with_input(&["create", "-f", "-"], Some(&bad.to_string())).err().to_string();
    assert!(err.contains("spec.auditAnnotations[0].key: Invalid value: \"bad-key.example.com/not a key\""), "{err}");
}

#[test]
fn webhooks_match_equivalent_resources() {
    let s = server();
    let k = s.kubectl(KUBECTL);
    let hooks = WebhookServer::start();
    let ca = hooks.ca_b64.clone();
    // Rules naming events.k8s.io/v1 only; core v1 Events are the same resource.
    let events_rule = json!([{"apiGroups": ["events.k8s.io"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["events"]}]);
    apply(&k, &json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "event-versions"},
        "webhooks": [
            webhook("equivalent.example.com", &hooks.url("/kinds"), &ca, "events", json!({"rules": events_rule})),
            webhook("exact.example.com", &hooks.url("/count"), &ca, "events", json!({"rules": events_rule, "matchPolicy": "Exact"})),
        ],
    }));
    apply(&k, &json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "event-labels"},
        "webhooks": [webhook("label-events.example.com", &hooks.url("/mutate"), &ca, "events", json!({"rules": events_rule}))],
    }));
    let event = json!({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Tested", "message": "hello", "type": "Normal", "source": {"component": "test"},
    });
    k.run_with_input(&["create", "-f", "-"], Some(&event.to_string())).ok();
    // Sent as an events.k8s.io/v1 Event, with requestKind the core one; Exact is not called.
    assert_eq!(hooks.calls("/kinds", "e1 events.k8s.io/v1 events.k8s.io/v1 /v1"), 1, "{:?}", hooks.calls.lock().unwrap());
    assert_eq!(hooks.calls("/count", "e1"), 0);
    // The mutating webhook's patch, made to the events.k8s.io form, lands on the v1 Event.
    assert_eq!(labels(&k, &["event", "e1"])["mutated"], "yes");
    let stored: Value = serde_json::from_str(k.run(&["get", "events.v1.events.k8s.io", "e1", "-o", "json"]).ok()).unwrap();
    assert_eq!(stored["note"], "hello");
}
