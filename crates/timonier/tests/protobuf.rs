//! Protobuf responses: a client that asks for `application/vnd.kubernetes.protobuf` gets the
//! object in Kubernetes protobuf (checked by decoding it), kinds without a protobuf form get
//! JSON when the client also accepts it and 406 otherwise, as kube-apiserver answers.

use timonier_testkit::Server;

/// GET with the admin's certificate and an Accept header: (status, content type, body bytes).
fn get(s: &Server, path: &str, accept: &str) -> (u16, String, Vec<u8>) {
    let out_file = s.dir.path().join("response.bin");
    let out = s
        .admin_curl()
        .arg("-o")
        .arg(&out_file)
        .args(["-w", "%{http_code} %{content_type}"])
        .args(["-H", &format!("Accept: {accept}")])
        .arg(s.url(path))
        .output()
        .expect("curl");
    let meta = String::from_utf8_lossy(&out.stdout).to_string();
    let (code, ct) = meta.split_once(' ').unwrap_or(("0", ""));
    (code.parse().unwrap_or(0), ct.to_string(), std::fs::read(&out_file).unwrap_or_default())
}

#[test]
fn protobuf_answers_for_built_in_kinds_and_fallbacks_for_the_rest() {
    let s = Server::start(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let k = s.kubectl("1.33");
    k.run(&["create", "configmap", "pb", "--from-literal=a=1"]).ok();
    const PB: &str = "application/vnd.kubernetes.protobuf";
    let (code, ct, body) = get(&s, "/api/v1/namespaces/default/configmaps/pb", PB);
    assert_eq!((code, ct.as_str()), (200, PB));
    assert!(body.starts_with(b"k8s\0"));
    let obj = timonier_api::protobuf::decode(&body).unwrap();
    assert_eq!((obj["kind"].as_str(), obj["data"]["a"].as_str()), (Some("ConfigMap"), Some("1")));
    // Lists too.
    let (code, _, body) = get(&s, "/api/v1/namespaces/default/configmaps", &format!("{PB}, application/json"));
    assert_eq!(code, 200);
    let list = timonier_api::protobuf::decode(&body).unwrap();
    assert_eq!(list["kind"], "ConfigMapList");
    assert!(list["items"].as_array().unwrap().iter().any(|i| i["metadata"]["name"] == "pb"));
    // Custom resources have no protobuf form: JSON if acceptable, else 406.
    let crd = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"widgets.example.com"},
      "spec":{"group":"example.com","names":{"plural":"widgets","singular":"widget","kind":"Widget"},"scope":"Namespaced",
      "versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}"#;
    k.run_with_input(&["apply", "-f", "-"], Some(crd)).ok();
    k.run_with_input(&["apply", "-f", "-"], Some(r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"default"}}"#)).ok();
    let path = "/apis/example.com/v1/namespaces/default/widgets/w";
    let (code, ct, _) = get(&s, path, &format!("{PB}, application/json"));
    assert_eq!((code, ct.as_str()), (200, "application/json"));
    let (code, _, body) = get(&s, path, PB);
    assert_eq!(code, 406, "{}", String::from_utf8_lossy(&body));
    // Tables are JSON only; a protobuf-only watch is refused.
    let (code, _, _) = get(&s, "/api/v1/configmaps?watch=true&timeoutSeconds=1", PB);
    assert_eq!(code, 406);
}
