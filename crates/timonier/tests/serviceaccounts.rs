//! ServiceAccounts end to end: the `default` account and `kube-root-ca.crt` in every
//! namespace, TokenRequest (`kubectl create token`), authentication with the tokens, RBAC for
//! service accounts, and the ServiceAccount admission of pods.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use timonier_testkit::{Kubectl, Server};

fn server() -> Server {
    Server::start(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &[])
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A request as the caller of `token` (no client certificate): (status, body).
fn curl(s: &Server, token: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let pki = s.dir.path().join("data/pki");
    let mut c = Command::new("curl");
    c.args(["-s", "--http1.1", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .arg("--cacert")
        .arg(pki.join("ca.crt"))
        .args(["-H", &format!("Authorization: Bearer {token}"), "-H", "Content-Type: application/json"])
        .arg(format!("https://127.0.0.1:{}{path}", s.port))
        .stdout(Stdio::piped());
    if let Some(b) = body {
        c.args(["--data-binary", &b.to_string()]);
    }
    let out = c.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A kubectl that authenticates with only `token`.
fn kubectl_with_token(s: &Server, version: &str, token: &str, args: &[&str]) -> timonier_testkit::Output {
    let url = format!("https://127.0.0.1:{}", s.port);
    let out = Command::new(timonier_testkit::kubectl_bin(version))
        .args(["--server", &url, "--certificate-authority"])
        .arg(s.dir.path().join("data/pki/ca.crt"))
        .args(["--token", token, "--cache-dir"])
        .arg(s.dir.path().join(format!("token-cache-{version}")))
        .args(args)
        .env("KUBECONFIG", "/dev/null")
        .env("HOME", s.dir.path())
        .output()
        .unwrap();
    timonier_testkit::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let header: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].as_str().is_some_and(|k| !k.is_empty()), "{header}");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

fn get_json(k: &Kubectl, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(k.run(&a).ok()).unwrap()
}

#[test]
fn default_account_and_ca_bundle_in_every_namespace() {
    let s = server();
    let k = s.kubectl("1.33");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        k.run(&["get", "serviceaccount", "default", "-n", ns]).ok();
        k.run(&["get", "configmap", "kube-root-ca.crt", "-n", ns]).ok();
    }
    k.run(&["create", "namespace", "team"]).ok();
    wait_for("the default ServiceAccount", || k.run(&["get", "sa", "default", "-n", "team"]).code == 0);
    wait_for("kube-root-ca.crt", || k.run(&["get", "cm", "kube-root-ca.crt", "-n", "team"]).code == 0);
    let cm = get_json(&k, &["cm", "kube-root-ca.crt", "-n", "team"]);
    let ca = std::fs::read_to_string(s.dir.path().join("data/pki/ca.crt")).unwrap();
    assert_eq!(cm["data"]["ca.crt"], json!(ca));
    assert!(cm["metadata"]["annotations"]["kubernetes.io/description"].as_str().unwrap().starts_with("Contains a CA bundle that can be used to verify the kube-apiserver"));
    let sas = k.run(&["get", "sa", "-n", "team"]);
    assert!(sas.ok().lines().next().unwrap().split_whitespace().collect::<Vec<_>>() == ["NAME", "SECRETS", "AGE"], "{}", sas.stdout);
    // Deleted or changed, they come back as they were.
    k.run(&["delete", "sa", "default", "-n", "team"]).ok();
    wait_for("the default ServiceAccount again", || k.run(&["get", "sa", "default", "-n", "team"]).code == 0);
    k.run(&["patch", "cm", "kube-root-ca.crt", "-n", "team", "-p", r#"{"data":{"ca.crt":"tampered"}}"#]).ok();
    wait_for("kube-root-ca.crt restored", || get_json(&k, &["cm", "kube-root-ca.crt", "-n", "team"])["data"]["ca.crt"] == json!(ca));
    // A terminating namespace is left alone, and goes away.
    k.run(&["delete", "namespace", "team", "--wait=false"]).ok();
    wait_for("the namespace gone", || k.run(&["get", "namespace", "team"]).code != 0);
}

#[test]
fn tokens_authenticate_as_the_service_account() {
    let s = server();
    for v in ["1.27", "1.33"] {
        let k = s.kubectl(v);
        let token = k.run(&["create", "token", "default"]).ok().trim().to_string();
        let claims = jwt_claims(&token);
        assert_eq!(claims["sub"], "system:serviceaccount:default:default");
        assert_eq!(claims["iss"], "https://kubernetes.default.svc.cluster.local");
        assert_eq!(claims["aud"], json!(["https://kubernetes.default.svc.cluster.local"]));
        assert_eq!(claims["kubernetes.io"]["namespace"], "default");
        let sa = get_json(&k, &["sa", "default"]);
        assert_eq!(claims["kubernetes.io"]["serviceaccount"], json!({"name": "default", "uid": sa["metadata"]["uid"]}));
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
        assert_eq!(claims["nbf"], claims["iat"]);
        let (code, review) = curl(&s, &token, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", Some(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})));
        assert_eq!(code, 201, "{review}");
        assert_eq!(review["status"]["userInfo"]["username"], "system:serviceaccount:default:default");
        assert_eq!(review["status"]["userInfo"]["groups"], json!(["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]));
        // Duration and audience.
        let other = k.run(&["create", "token", "default", "--duration", "2h", "--audience", "https://example.com"]).ok().trim().to_string();
        let c = jwt_claims(&other);
        assert_eq!(c["aud"], json!(["https://example.com"]));
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 7200);
        // Not for this API server: refused.
        assert_eq!(curl(&s, &other, "GET", "/api/v1/namespaces/default/pods", None).0, 401);
        let short = k.run(&["create", "token", "default", "--duration", "5m"]);
        assert!(short.err().contains("spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"), "{}", short.stderr);
        let missing = k.run(&["create", "token", "nobody"]);
        assert!(missing.err().contains("serviceaccounts \"nobody\" not found"), "{}", missing.stderr);
    }
    let k = s.kubectl("1.33");
    let token = k.run(&["create", "token", "default"]).ok().trim().to_string();
    let whoami = kubectl_with_token(&s, "1.33", &token, &["auth", "whoami"]);
    assert!(whoami.ok().contains("system:serviceaccount:default:default"), "{}", whoami.stdout);
    // Garbage, tampered, expired: 401 as upstream, on every path.
    let (code, status) = curl(&s, "garbage", "GET", "/api/v1/namespaces", None);
    assert_eq!((code, status["reason"].as_str()), (401, Some("Unauthorized")), "{status}");
    assert_eq!(curl(&s, "a.b.c", "GET", "/version", None).0, 401);
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(curl(&s, &tampered, "GET", "/api", None).0, 401);
    let key = timonier_apiserver::sa_token::TokenKey::load_or_create(&s.dir.path().join("data/pki")).unwrap();
    let sa = get_json(&k, &["sa", "default"]);
    let now = jiff::Timestamp::now().as_second();
    let aud = vec!["https://kubernetes.default.svc.cluster.local".to_string()];
    let claims = |iat: i64, exp: i64| timonier_apiserver::sa_token::Claims {
        audiences: &aud, now: iat, expires: exp, namespace: "default", sa_name: "default",
        sa_uid: sa["metadata"]["uid"].as_str().unwrap(), pod: None, node: None, warn_after: None,
    }.to_json();
    let good = key.sign(&claims(now - 30, now + 600)).unwrap();
    assert_eq!(curl(&s, &good, "GET", "/api", None).0, 200);
    let expired = key.sign(&claims(now - 4000, now - 400)).unwrap();
    let out = kubectl_with_token(&s, "1.33", &expired, &["get", "pods"]);
    assert!(out.err().contains("You must be logged in to the server") || out.stderr.contains("Unauthorized"), "{}", out.stderr);
    // A recreated account (another uid) invalidates the old account's tokens.
    k.run(&["delete", "sa", "default"]).ok();
    wait_for("the default ServiceAccount again", || k.run(&["get", "sa", "default"]).code == 0);
    assert_eq!(curl(&s, &token, "GET", "/api", None).0, 401);
}

#[test]
fn rbac_applies_to_service_accounts() {
    let s = server();
    let k = s.kubectl("1.33");
    let no = k.run(&["auth", "can-i", "--as=system:serviceaccount:default:default", "list", "pods"]);
    assert_eq!(no.stdout.trim(), "no", "{}{}", no.stdout, no.stderr);
    let token = k.run(&["create", "token", "default"]).ok().trim().to_string();
    let denied = kubectl_with_token(&s, "1.33", &token, &["get", "pods"]);
    assert!(denied.err().contains("pods is forbidden: User \"system:serviceaccount:default:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""), "{}", denied.stderr);
    k.run(&["create", "role", "pod-reader", "--verb=get,list", "--resource=pods"]).ok();
    k.run(&["create", "rolebinding", "sa-reads", "--role=pod-reader", "--serviceaccount=default:default"]).ok();
    let yes = k.run(&["auth", "can-i", "--as=system:serviceaccount:default:default", "list", "pods"]);
    assert_eq!(yes.ok().trim(), "yes");
    wait_for("the binding to apply", || kubectl_with_token(&s, "1.33", &token, &["get", "pods"]).code == 0);
    // Group bindings: every service account of a namespace.
    let other = k.run(&["auth", "can-i", "--as=system:serviceaccount:kube-system:default", "list", "pods", "-n", "kube-system"]);
    assert_eq!(other.stdout.trim(), "no");
    k.run(&["create", "rolebinding", "all-sas", "-n", "kube-system", "--clusterrole=view", "--group=system:serviceaccounts:kube-system"]).ok();
    let other = k.run(&["auth", "can-i", "--as=system:serviceaccount:kube-system:default", "list", "pods", "-n", "kube-system"]);
    assert_eq!(other.ok().trim(), "yes");
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: NAME\nspec:\n  initContainers:\n  - name: init\n    image: busybox\n  containers:\n  - name: app\n    image: busybox\n  - name: side\n    image: busybox\n";

#[test]
fn pods_get_the_api_access_volume() {
    let s = server();
    let k = s.kubectl("1.33");
    k.run_with_input(&["create", "-f", "-"], Some(&POD.replace("NAME", "web"))).ok();
    let pod = get_json(&k, &["pod", "web"]);
    let spec = &pod["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    let vols = spec["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 1);
    let name = vols[0]["name"].as_str().unwrap().to_string();
    let suffix = name.strip_prefix("kube-api-access-").unwrap();
    assert!(suffix.len() == 5 && suffix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{name}");
    assert_eq!(vols[0]["projected"], json!({
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    }));
    let mount = json!([{"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
    assert_eq!(spec["initContainers"][0]["volumeMounts"], mount);
    assert_eq!(spec["containers"][0]["volumeMounts"], mount);
    assert_eq!(spec["containers"][1]["volumeMounts"], mount);
    let describe = k.run(&["describe", "pod", "web"]);
    let text = describe.ok();
    assert!(text.contains(&format!("/var/run/secrets/kubernetes.io/serviceaccount from {name} (ro)")), "{text}");
    assert!(text.contains(&format!("  {name}:")) && text.contains("Projected (a volume that contains injected data from multiple sources)"), "{text}");
    assert!(text.contains("ConfigMapName:           kube-root-ca.crt") || text.contains("ConfigMapName:"), "{text}");

    // A token bound to the pod works while the pod exists.
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let request = |uid: &str| {
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": uid}}});
        k.run_with_input(&["create", "--raw", "/api/v1/namespaces/default/serviceaccounts/default/token", "-f", "-"], Some(&body.to_string()))
    };
    let out = request(&uid);
    let answer: Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(answer["kind"], "TokenRequest");
    assert_eq!(answer["spec"]["audiences"], json!(["https://kubernetes.default.svc.cluster.local"]));
    assert_eq!(answer["spec"]["expirationSeconds"], 3600);
    assert!(answer["status"]["expirationTimestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    let token = answer["status"]["token"].as_str().unwrap().to_string();
    let claims = jwt_claims(&token);
    assert_eq!(claims["kubernetes.io"]["pod"], json!({"name": "web", "uid": uid}));
    assert_eq!(curl(&s, &token, "GET", "/api", None).0, 200);
    let wrong = request("00000000-0000-0000-0000-000000000000");
    assert!(wrong.err().contains("the UID in the bound object reference (00000000-0000-0000-0000-000000000000) does not match the UID in record"), "{}", wrong.stderr);
    let body = json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "ghost"}}});
    let ghost = k.run_with_input(&["create", "--raw", "/api/v1/namespaces/default/serviceaccounts/default/token", "-f", "-"], Some(&body.to_string()));
    assert!(ghost.err().contains("pods \"ghost\" not found"), "{}", ghost.stderr);
    k.run(&["delete", "pod", "web", "--grace-period=0", "--force"]).ok();
    wait_for("the pod gone", || k.run(&["get", "pod", "web"]).code != 0);
    assert_eq!(curl(&s, &token, "GET", "/api", None).0, 401);

    // A container that already mounts the path keeps its own mount.
    let own = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: own\nspec:\n  containers:\n  - name: app\n    image: busybox\n    volumeMounts:\n    - name: mine\n      mountPath: /var/run/secrets/kubernetes.io/serviceaccount\n  volumes:\n  - name: mine\n    emptyDir: {}\n";
    k.run_with_input(&["create", "-f", "-"], Some(own)).ok();
    let pod = get_json(&k, &["pod", "own"]);
    assert_eq!(pod["spec"]["volumes"].as_array().unwrap().len(), 1, "{}", pod["spec"]);
}

#[test]
fn admission_refuses_missing_accounts_and_honours_automount() {
    let s = server();
    let k = s.kubectl("1.33");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: lost\nspec:\n  serviceAccountName: ghost\n  containers:\n  - name: app\n    image: busybox\n";
    let out = k.run_with_input(&["create", "-f", "-"], Some(pod));
    assert!(out.err().contains("Error from server (Forbidden): error when creating \"STDIN\": pods \"lost\" is forbidden: error looking up service account default/ghost: serviceaccount \"ghost\" not found"), "{}", out.stderr);
    // automountServiceAccountToken: false on the pod...
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: quiet\nspec:\n  automountServiceAccountToken: false\n  containers:\n  - name: app\n    image: busybox\n";
    k.run_with_input(&["create", "-f", "-"], Some(pod)).ok();
    let p = get_json(&k, &["pod", "quiet"]);
    assert!(p["spec"].get("volumes").is_none(), "{}", p["spec"]);
    assert!(p["spec"]["containers"][0].get("volumeMounts").is_none(), "{}", p["spec"]);
    // ... or on the account (the pod's own setting wins).
    k.run_with_input(&["create", "-f", "-"], Some("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: robot\nautomountServiceAccountToken: false\nimagePullSecrets:\n- name: regcred\n")).ok();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: robo\nspec:\n  serviceAccountName: robot\n  containers:\n  - name: app\n    image: busybox\n";
    k.run_with_input(&["create", "-f", "-"], Some(pod)).ok();
    let p = get_json(&k, &["pod", "robo"]);
    assert!(p["spec"].get("volumes").is_none(), "{}", p["spec"]);
    assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: robo2\nspec:\n  serviceAccountName: robot\n  automountServiceAccountToken: true\n  containers:\n  - name: app\n    image: busybox\n";
    k.run_with_input(&["create", "-f", "-"], Some(pod)).ok();
    let p = get_json(&k, &["pod", "robo2"]);
    assert_eq!(p["spec"]["volumes"].as_array().map(Vec::len), Some(1));
    // A pod created right after its namespace waits for the default account.
    k.run(&["create", "namespace", "fresh"]).ok();
    k.run_with_input(&["create", "-n", "fresh", "-f", "-"], Some(&POD.replace("NAME", "first"))).ok();
}
