use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};

use super::*;
use crate::resources::{builtin, ResourceDef, ALL_VERBS};

fn builtin_api() -> &'static OpenApi {
    static API: OnceLock<OpenApi> = OnceLock::new();
    API.get_or_init(|| OpenApi::new(&builtin(), &[]))
}

fn doc(api: &OpenApi, path: &str) -> Value {
    let (bytes, _) = api.v3_document(path).expect("document");
    serde_json::from_slice(&bytes).expect("json")
}

fn crontab_def() -> Arc<ResourceDef> {
    Arc::new(ResourceDef {
        group: "stable.example.com".into(),
        version: "v1".into(),
        kind: "CronTab".into(),
        plural: "crontabs".into(),
        singular: "crontab".into(),
        short_names: vec!["ct".into()],
        categories: vec![],
        namespaced: true,
        verbs: ALL_VERBS.iter().map(|v| v.to_string()).collect(),
        subresources: vec![],
        storage_resource: "stable.example.com/crontabs".into(),
    })
}

fn crontab_schema() -> Value {
    json!({
        "type": "object",
        "description": "A CronTab runs a command on a schedule.",
        "properties": {
            "spec": {
                "type": "object",
                "description": "The desired schedule.",
                "properties": {
                    "cronSpec": {"type": "string"},
                    "replicas": {"type": "integer"},
                    "jobs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                    "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
                    "port": {"x-kubernetes-int-or-string": true},
                },
            },
            "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
        },
    })
}

fn crontab_api() -> OpenApi {
    let mut defs = builtin();
    defs.push(crontab_def());
    OpenApi::new(&defs, &[(("stable.example.com".into(), "v1".into(), "CronTab".into()), crontab_schema())])
}

#[test]
fn root_lists_every_group_version_with_a_hash() {
    let api = builtin_api();
    let root = api.v3_root();
    let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().expect("apps/v1");
    let (_, hash) = api.v3_document("apis/apps/v1").expect("doc");
    assert_eq!(url, format!("/openapi/v3/apis/apps/v1?hash={hash}"));
    assert!(root["paths"]["api/v1"].is_object());
    assert!(api.v3_document("/api/v1").is_some());
    assert!(api.v3_document("apis/nope/v1").is_none());
}

#[test]
fn hashes_are_stable_and_follow_content() {
    let a = OpenApi::new(&builtin(), &[]);
    let b = OpenApi::new(&builtin(), &[]);
    assert_eq!(a.v3_root(), b.v3_root());
    assert_eq!(a.v2_protobuf(), b.v2_protobuf());
    let c = crontab_api();
    // A CRD leaves the other documents (and so their cached copies) alone.
    let hash = |api: &OpenApi, p: &str| api.v3_document(p).map(|(_, h)| h);
    assert_eq!(hash(&a, "apis/apps/v1"), hash(&c, "apis/apps/v1"));
    assert_eq!(hash(&a, "api/v1"), hash(&c, "api/v1"));
    assert!(c.v3_document("apis/stable.example.com/v1").is_some());
    assert_ne!(content_hash(b"a"), content_hash(b"b"));
}

#[test]
fn every_patch_operation_declares_its_kind_and_field_validation() {
    let api = builtin_api();
    let d = doc(api, "apis/apps/v1");
    let item = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"], json!({"group": "apps", "version": "v1", "kind": "Deployment"}));
    assert_eq!(patch["x-kubernetes-action"], "patch");
    let names: Vec<&str> = patch["parameters"].as_array().expect("params").iter().filter(|p| p["in"] == "query").filter_map(|p| p["name"].as_str()).collect();
    for p in ["dryRun", "fieldManager", "fieldValidation", "force"] {
        assert!(names.contains(&p), "{p} missing from {names:?}");
    }
    for m in ["get", "put", "delete"] {
        assert!(item[m].is_object(), "{m}");
    }
    let coll = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"];
    assert!(coll["get"].is_object() && coll["post"].is_object());
    let scale = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    // Every PATCH everywhere carries fieldValidation, and every $ref resolves in its document.
    for (path, _) in api.v3_root()["paths"].as_object().expect("root") {
        let d = doc(api, path);
        for (p, item) in d["paths"].as_object().expect("paths") {
            if let Some(op) = item.get("patch").filter(|op| op["x-kubernetes-action"] == "patch") {
                assert!(op["parameters"].as_array().expect("params").iter().any(|x| x["name"] == "fieldValidation"), "{p}");
            }
        }
        let mut refs = Vec::new();
        schemas::collect_refs(&d, &mut |r| refs.push(r.to_string()));
        for r in refs {
            assert!(d["components"]["schemas"].get(&r).is_some(), "{path}: dangling {r}");
        }
    }
    let core = doc(api, "api/v1");
    assert!(core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"].is_object());
    assert!(core["paths"]["/api/v1/namespaces/{name}"]["patch"].is_object());
}

#[test]
fn schemas_carry_descriptions_kinds_and_patch_extensions() {
    let api = builtin_api();
    let d = doc(api, "apis/apps/v1");
    let schemas = &d["components"]["schemas"];
    let deploy = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(deploy["x-kubernetes-group-version-kind"], json!([{"group": "apps", "kind": "Deployment", "version": "v1"}]));
    assert!(deploy["description"].as_str().is_some_and(|s| s.contains("Deployment")));
    assert_eq!(deploy["properties"]["spec"]["allOf"][0]["$ref"], "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec");
    let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    assert!(strategy["description"].is_string());
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-list-map-keys"], json!(["containerPort", "protocol"]));
    assert_eq!(schemas["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"][0]["kind"], "DeploymentList");
    assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["labels"].is_object());
    let core = doc(api, "api/v1");
    let node_selector = &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["nodeSelector"];
    assert_eq!(node_selector["x-kubernetes-map-type"], "atomic");
}

#[test]
fn v2_has_paths_and_definitions_in_v2_form() {
    let api = builtin_api();
    let v2: Value = serde_json::from_slice(&api.v2_json()).expect("json");
    assert_eq!(v2["swagger"], "2.0");
    let patch = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert!(patch["parameters"].as_array().expect("params").iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query" && p["type"] == "string"));
    let spec = &v2["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
    assert_eq!(spec["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentSpec");
    assert_eq!(v2["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"], "int-or-string");
    // As upstream: no kind requires its metadata (kubectl validates manifests against this).
    assert!(v2["definitions"]["io.k8s.api.core.v1.ConfigMap"].get("required").is_none());
    assert_eq!(v2["definitions"]["io.k8s.api.core.v1.Binding"]["required"], json!(["target"]));
    let pb = api.v2_protobuf();
    assert!(pb.starts_with(b"\x0a\x032.0"));
    let needle = b"x-kubernetes-group-version-kind";
    assert!(pb.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn unknown_fields_are_reported_with_upstream_paths() {
    let api = builtin_api();
    let obj = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "bogus": 1},
        "spec": {
            "replicass": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnaivailable": 1}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "a", "image": "nginx", "ports": [{"containerPort": 80, "hostIP": "x"}]},
                {"name": "b", "imagee": "nginx", "resources": {"limits": {"cpu": "1"}}, "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "a"}, "oops": true}}]},
            ]}},
        },
        "status": {"replicas": 1},
    });
    let errs = api.field_errors("apps", "v1", "Deployment", &obj, None);
    for want in [
        "unknown field \"metadata.bogus\"",
        "unknown field \"spec.replicass\"",
        "unknown field \"spec.strategy.rollingUpdate.maxUnaivailable\"",
        "unknown field \"spec.template.spec.containers[1].imagee\"",
        "unknown field \"spec.template.spec.containers[1].env[0].valueFrom.oops\"",
    ] {
        assert!(errs.contains(&want.to_string()), "{want} not in {errs:?}");
    }
    assert_eq!(errs.len(), 5, "{errs:?}");
    let clean = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}});
    assert!(api.field_errors("", "v1", "Pod", &clean, None).is_empty());
    assert!(api.field_errors("", "v1", "NoSuchKind", &clean, None).is_empty());
    assert!(api.field_errors("", "v1", "Pod", &json!("not an object"), None).is_empty());
}

#[test]
fn raw_json_reports_duplicates_in_document_order() {
    let api = builtin_api();
    let raw = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","name":"b","labels":{"x":"1","x":"2"},"zzz":1},"data":{"k":"v"},"extra":1,"extra":2}"#;
    let obj: Value = serde_json::from_slice(raw).expect("json");
    let errs = api.field_errors("", "v1", "ConfigMap", &obj, Some(raw));
    assert_eq!(
        errs,
        vec![
            "duplicate field \"metadata.name\"".to_string(),
            "duplicate field \"metadata.labels.x\"".into(),
            "unknown field \"metadata.zzz\"".into(),
            "unknown field \"extra\"".into(),
        ]
    );
    // Garbage raw bytes fall back to the parsed object (whose keys are sorted).
    let errs = api.field_errors("", "v1", "ConfigMap", &obj, Some(b"{not json"));
    assert_eq!(errs, vec!["unknown field \"extra\"".to_string(), "unknown field \"metadata.zzz\"".into()]);
}

#[test]
fn custom_resources_follow_their_crd_schema() {
    let api = crontab_api();
    let d = doc(&api, "apis/stable.example.com/v1");
    let s = &d["components"]["schemas"]["com.example.stable.v1.CronTab"];
    assert_eq!(s["x-kubernetes-group-version-kind"], json!([{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}]));
    assert_eq!(s["properties"]["metadata"]["allOf"][0]["$ref"], "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
    assert!(d["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
    assert!(d["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"]["parameters"].as_array().expect("params").iter().any(|p| p["name"] == "fieldValidation"));

    let raw = br#"{"apiVersion":"stable.example.com/v1","kind":"CronTab","metadata":{"name":"c","nam":"x"},
        "spec":{"cronSpec":"* * * * *","cronSpec":"1 * * * *","jobs":[{"name":"a","nme":"b"}],
                "config":{"anything":{"goes":1,"goes":2},"known":{"a":"x","b":"y"}},
                "labels":{"k":{"v":"1","w":"2"}},
                "template":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"x":1}},
                "port":8080,"typo":true},
        "status":{"ok":true}}"#;
    let obj: Value = serde_json::from_slice(raw).expect("json");
    let errs = api.field_errors("stable.example.com", "v1", "CronTab", &obj, Some(raw));
    assert_eq!(
        errs,
        vec![
            "duplicate field \"spec.cronSpec\"".to_string(),
            "duplicate field \"spec.config.anything.goes\"".into(),
            "unknown field \"metadata.nam\"".into(),
            "unknown field \"spec.config.known.b\"".into(),
            "unknown field \"spec.jobs[0].nme\"".into(),
            "unknown field \"spec.labels.k.w\"".into(),
            "unknown field \"spec.typo\"".into(),
        ]
    );
}

#[test]
fn hostile_inputs_do_not_panic() {
    let api = builtin_api();
    let mut deep = json!(1);
    for i in 0..120 {
        deep = if i % 2 == 0 { json!({"spec": deep}) } else { json!([deep]) };
    }
    let _ = api.field_errors("apps", "v1", "Deployment", &deep, None);
    let _ = api.field_errors("apps", "v1", "Deployment", &json!(null), Some(b""));
    let nested = "[".repeat(10_000);
    let _ = api.field_errors("apps", "v1", "Deployment", &json!({}), Some(nested.as_bytes()));
    // A CRD schema of the wrong shape still builds documents.
    let mut defs = builtin();
    defs.push(crontab_def());
    let bad = OpenApi::new(&defs, &[(("stable.example.com".into(), "v1".into(), "CronTab".into()), json!({"type": "object", "properties": [1, 2], "$ref": "#/components/schemas/nope"}))]);
    let errs = bad.field_errors("stable.example.com", "v1", "CronTab", &json!({"spec": {"x": 1}}), None);
    assert_eq!(errs, vec!["unknown field \"spec\"".to_string()]);
}

#[test]
fn strict_message_matches_upstream() {
    assert_eq!(
        strict_decoding_message("Deployment", "v1", &["unknown field \"spec.foo\"".into(), "duplicate field \"metadata.name\"".into()]),
        "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.foo\", duplicate field \"metadata.name\""
    );
}
