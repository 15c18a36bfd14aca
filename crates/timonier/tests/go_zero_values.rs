//! Objects read back as kube-apiserver encodes them from its Go structs: every non-pointer
//! field without `omitempty` present (with its zero value when unset), non-pointer structs at
//! least `{}`, zero `metav1.Time`s `null`, zero `omitempty` values dropped, explicit zeros on
//! pointer fields kept — and the official Python client's typed models accept them.

use std::path::Path;

use serde_json::{json, Value};
use timonier_testkit::Server;

/// One request as the admin; returns the status code and the JSON body.
fn call(s: &Server, method: &str, path: &str, content_type: &str, body: Option<&Value>) -> (u16, Value) {
    let mut c = s.admin_curl();
    c.args(["-X", method, "-H", &format!("Content-Type: {content_type}"), "-w", "\n%{http_code}"]);
    if let Some(b) = body {
        c.arg("--data-binary").arg(b.to_string());
    }
    let out = c.arg(s.url(path)).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

const ANY: &str = "<present>";

/// Checks JSON pointers of an object: an expected value, or `ANY` for "present, any value".
fn check(what: &str, obj: &Value, expect: &[(&str, Value)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (ptr, want) in expect {
        match obj.pointer(ptr) {
            None => bad.push(format!("{what}: {ptr} missing")),
            Some(_) if *want == ANY => {}
            Some(got) if got != want => bad.push(format!("{what}: {ptr} is {got}, want {want}")),
            Some(_) => {}
        }
    }
    bad
}

fn pod_spec() -> Value {
    json!({"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Always"})
}

fn template(labels: &Value) -> Value {
    json!({"metadata": {"labels": labels}, "spec": pod_spec()})
}

#[test]
fn built_in_kinds_read_back_with_go_zero_values() {
    let s = Server::start(Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let l = json!({"app": "zero"});
    let sel = json!({"matchLabels": l});
    let null = Value::Null;
    let ns = "/api/v1/namespaces/default";
    let apps = "/apis/apps/v1/namespaces/default";
    // (collection, body, pointers Go always writes and their values)
    let cases: Vec<(String, Value, Vec<(&str, Value)>)> = vec![
        (format!("{ns}/pods"), json!({"metadata": {"name": "z"}, "spec": {
            "containers": [{"name": "c", "image": "busybox", "stdin": false, "ports": [{"containerPort": 80, "hostPort": 0}]}],
            "terminationGracePeriodSeconds": 0, "automountServiceAccountToken": false, "hostNetwork": false}}),
         vec![("/spec/containers/0/resources", json!({})), ("/spec/containers/0/ports", json!([{"containerPort": 80, "protocol": "TCP"}])),
              ("/spec/terminationGracePeriodSeconds", json!(0)), ("/spec/automountServiceAccountToken", json!(false)), ("/status", json!(ANY))]),
        (format!("{ns}/services"), json!({"metadata": {"name": "z"}, "spec": {"ports": [{"port": 80}]}}),
         vec![("/status", json!({"loadBalancer": {}}))]),
        (format!("{ns}/replicationcontrollers"), json!({"metadata": {"name": "z"}, "spec": {"replicas": 0, "minReadySeconds": 0, "selector": l, "template": template(&l)}}),
         vec![("/status", json!({"replicas": 0})), ("/spec/replicas", json!(0)), ("/spec/template/metadata/creationTimestamp", null.clone())]),
        ("/api/v1/namespaces".into(), json!({"metadata": {"name": "zero"}}), vec![("/spec", json!(ANY)), ("/status", json!(ANY))]),
        ("/api/v1/nodes".into(), json!({"metadata": {"name": "zero"}}),
         vec![("/spec", json!(ANY)), ("/status/nodeInfo/machineID", json!("")), ("/status/nodeInfo/kubeletVersion", json!(ANY)),
              ("/status/daemonEndpoints", json!(ANY))]),
        (format!("{ns}/events"), json!({"metadata": {"name": "z"}, "involvedObject": {"kind": "Pod", "name": "z", "namespace": "default"}, "count": 0}),
         vec![("/reportingComponent", json!("")), ("/reportingInstance", json!("")), ("/source", json!({})),
              ("/eventTime", null.clone()), ("/firstTimestamp", null.clone()), ("/lastTimestamp", null.clone())]),
        ("/api/v1/persistentvolumes".into(), json!({"metadata": {"name": "zero"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/zero"}, "storageClassName": "zero"}}),
         vec![("/status", json!(ANY))]),
        (format!("{ns}/persistentvolumeclaims"), json!({"metadata": {"name": "z"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "none", "resources": {"requests": {"storage": "1Gi"}}}}),
         vec![("/status", json!(ANY))]),
        (format!("{ns}/resourcequotas"), json!({"metadata": {"name": "z"}, "spec": {"hard": {"pods": "10"}}}), vec![("/status", json!(ANY))]),
        (format!("{ns}/podtemplates"), json!({"metadata": {"name": "z"}, "template": template(&l)}),
         vec![("/template/metadata/creationTimestamp", null.clone()), ("/template/spec/containers/0/resources", json!({}))]),
        (format!("{apps}/deployments"), json!({"metadata": {"name": "z"}, "spec": {"replicas": 0, "paused": false, "selector": sel, "template": template(&l)}}),
         vec![("/status", json!(ANY)), ("/spec/replicas", json!(0)), ("/spec/template/metadata/creationTimestamp", null.clone())]),
        (format!("{apps}/replicasets"), json!({"metadata": {"name": "z"}, "spec": {"replicas": 0, "selector": sel, "template": template(&l)}}),
         vec![("/status", json!({"replicas": 0})), ("/spec/replicas", json!(0))]),
        (format!("{apps}/statefulsets"), json!({"metadata": {"name": "z"}, "spec": {"replicas": 0, "serviceName": "z", "selector": sel, "template": template(&l)}}),
         vec![("/status/replicas", json!(0)), ("/status/availableReplicas", json!(0)), ("/spec/template/metadata/creationTimestamp", null.clone())]),
        (format!("{apps}/daemonsets"), json!({"metadata": {"name": "z"}, "spec": {"selector": sel, "template": template(&l)}}),
         vec![("/status", json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0})),
              ("/spec/updateStrategy", json!(ANY))]),
        (format!("{apps}/controllerrevisions"), json!({"metadata": {"name": "z"}}), vec![("/revision", json!(0)), ("/data", null.clone())]),
        ("/apis/batch/v1/namespaces/default/jobs".into(), json!({"metadata": {"name": "z"}, "spec": {"backoffLimit": 0, "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}}}),
         vec![("/status", json!(ANY)), ("/spec/backoffLimit", json!(0)), ("/spec/template/metadata/creationTimestamp", null.clone())]),
        ("/apis/batch/v1/namespaces/default/cronjobs".into(), json!({"metadata": {"name": "z"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "OnFailure"}}}}}}),
         vec![("/status", json!({})), ("/spec/jobTemplate/metadata/creationTimestamp", null.clone()), ("/spec/jobTemplate/spec/template/metadata/creationTimestamp", null.clone())]),
        ("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers".into(), json!({"metadata": {"name": "z"}, "spec": {"maxReplicas": 3, "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "z"}}}),
         vec![("/status/desiredReplicas", json!(0)), ("/status/currentMetrics", null.clone())]),
        ("/apis/coordination.k8s.io/v1/namespaces/default/leases".into(), json!({"metadata": {"name": "z"}}), vec![("/spec", json!({}))]),
        ("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices".into(), json!({"metadata": {"name": "z"}, "addressType": "IPv4", "endpoints": []}),
         vec![("/endpoints", json!([])), ("/ports", null.clone())]),
        ("/apis/policy/v1/namespaces/default/poddisruptionbudgets".into(), json!({"metadata": {"name": "z"}, "spec": {"minAvailable": 1, "selector": sel}}),
         vec![("/status/disruptionsAllowed", json!(0)), ("/status/currentHealthy", json!(0)), ("/status/desiredHealthy", json!(ANY)), ("/status/expectedPods", json!(0))]),
        ("/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles".into(), json!({"metadata": {"name": "z"}}), vec![("/rules", null.clone())]),
        ("/apis/rbac.authorization.k8s.io/v1/clusterroles".into(), json!({"metadata": {"name": "zero"}}), vec![("/rules", null.clone())]),
        ("/apis/networking.k8s.io/v1/namespaces/default/ingresses".into(), json!({"metadata": {"name": "z"}, "spec": {"defaultBackend": {"service": {"name": "z", "port": {"number": 80}}}}}),
         vec![("/status", json!({"loadBalancer": {}}))]),
        ("/apis/networking.k8s.io/v1/namespaces/default/networkpolicies".into(), json!({"metadata": {"name": "z"}, "spec": {}}),
         vec![("/spec/podSelector", json!({}))]),
        ("/apis/apiextensions.k8s.io/v1/customresourcedefinitions".into(), json!({"metadata": {"name": "widgets.zero.example.com"}, "spec": {
            "group": "zero.example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}}),
         vec![("/status/acceptedNames", json!(ANY)), ("/status/storedVersions", json!(ANY))]),
    ];
    let mut bad = Vec::new();
    for (collection, body, expect) in &cases {
        let name = body.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let (code, created) = call(&s, "POST", collection, "application/json", Some(body));
        if code != 201 {
            bad.push(format!("POST {collection}: {code} {created}"));
            continue;
        }
        bad.extend(check(&format!("created {collection}"), &created, expect));
        let (code, read) = call(&s, "GET", &format!("{collection}/{name}"), "application/json", None);
        assert_eq!(code, 200, "GET {collection}/{name}: {read}");
        bad.extend(check(&format!("read {collection}"), &read, expect));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));

    // Omitted zero values stay omitted.
    let (_, rc) = call(&s, "GET", &format!("{ns}/replicationcontrollers/z"), "application/json", None);
    assert!(rc.pointer("/spec/minReadySeconds").is_none(), "{rc}");
    let (_, pod) = call(&s, "GET", &format!("{ns}/pods/z"), "application/json", None);
    for p in ["/spec/containers/0/stdin", "/spec/hostNetwork"] {
        assert!(pod.pointer(p).is_none(), "{p} in {pod}");
    }

    // Every write path: update without status, status subresource, merge patch, scale.
    let mut put = rc.clone();
    put.as_object_mut().unwrap().remove("status");
    let (code, updated) = call(&s, "PUT", &format!("{ns}/replicationcontrollers/z"), "application/json", Some(&put));
    assert_eq!((code, &updated["status"]), (200, &json!({"replicas": 0})), "{updated}");
    let mut st = updated.clone();
    st["status"] = json!({"observedGeneration": 0});
    let (code, updated) = call(&s, "PUT", &format!("{ns}/replicationcontrollers/z/status"), "application/json", Some(&st));
    assert_eq!((code, &updated["status"]), (200, &json!({"replicas": 0})), "{updated}");
    let (code, patched) = call(&s, "PATCH", &format!("{apps}/daemonsets/z/status"), "application/merge-patch+json", Some(&json!({"status": {"numberReady": null, "observedGeneration": 0}})));
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["status"], json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}));
    let (code, patched) = call(&s, "PATCH", &format!("{apps}/deployments/z"), "application/strategic-merge-patch+json", Some(&json!({"spec": {"minReadySeconds": 0, "replicas": 0}})));
    assert_eq!(code, 200, "{patched}");
    assert!(patched.pointer("/spec/minReadySeconds").is_none() && patched["spec"]["replicas"] == json!(0), "{patched}");
    let (code, scaled) = call(&s, "PATCH", &format!("{apps}/replicasets/z/scale"), "application/merge-patch+json", Some(&json!({"spec": {"replicas": 0}})));
    assert_eq!(code, 200, "{scaled}");
    let (_, rs) = call(&s, "GET", &format!("{apps}/replicasets/z"), "application/json", None);
    assert_eq!((&rs["spec"]["replicas"], &rs["status"]), (&json!(0), &json!({"replicas": 0})), "{rs}");

    // The events.k8s.io view of the v1 Event (stored with Go's nulls) still reads.
    let (code, ev) = call(&s, "GET", "/apis/events.k8s.io/v1/namespaces/default/events/z", "application/json", None);
    assert_eq!(code, 200, "{ev}");
    assert_eq!(ev["regarding"]["kind"], json!("Pod"));
}

#[test]
fn python_client_reads_typed_models() {
    let s = Server::start(Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/go_zero_values.py");
    let out = std::process::Command::new(timonier_testkit::python())
        .arg(&script)
        .arg(&s.kubeconfig)
        .output()
        .expect("python3 (scripts/install-deps makes its environment)");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("python zero values: ok"),
        "the Python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
