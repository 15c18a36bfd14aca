//! Hand-encoded bodies (written the way Go's encoder writes them, zero values included) for the
//! kinds kubectl creates and for the messages with a special JSON form.

use serde_json::{json, Value};

use super::*;

#[test]
fn service_nodeport_with_int_and_string_target_ports() {
    let spec = E::new()
        .m(
            1,
            E::new()
                .s(1, "")
                .s(2, "TCP")
                .i(3, 80)
                .m(4, port_int(8080))
                .i(5, 30080),
        )
        .m(
            1,
            E::new()
                .s(1, "https")
                .s(2, "TCP")
                .i(3, 443)
                .m(4, port_str("https"))
                .i(5, 0),
        )
        .kv(2, "app", "web")
        .s(3, "")
        .s(4, "NodePort")
        .s(7, "")
        .s(11, "")
        .i(12, 0)
        .t(13, false);
    let b = body(
        "v1",
        "Service",
        E::new()
            .m(1, meta("web"))
            .m(2, spec)
            .m(3, E::new().m(1, E::new())),
    );
    let want = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"web","creationTimestamp":null},
        "spec":{"ports":[{"protocol":"TCP","port":80,"targetPort":8080,"nodePort":30080},
                         {"name":"https","protocol":"TCP","port":443,"targetPort":"https"}],
                "selector":{"app":"web"},"type":"NodePort"},
        "status":{"loadBalancer":{}}});
    assert_eq!(decode(&b).unwrap(), want);
}

#[test]
fn configmap_data_and_binary_data() {
    let cm = E::new()
        .m(1, meta("cm"))
        .kv(2, "a", "1")
        .kv(2, "empty", "")
        .m(3, E::new().s(1, "bin").b(2, &[0, 1, 2, 255]))
        .m(3, E::new().s(1, "none"));
    let want = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","creationTimestamp":null},
        "data":{"a":"1","empty":""},"binaryData":{"bin":"AAEC/w==","none":""}});
    assert_eq!(decode(&body("v1", "ConfigMap", cm)).unwrap(), want);
}

#[test]
fn secret_bytes_are_base64_and_empty_type_dropped() {
    let s = E::new()
        .m(1, meta("s"))
        .m(2, E::new().s(1, "password").b(2, b"s3cr3t"))
        .s(3, "")
        .t(5, true);
    let want = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","creationTimestamp":null},
        "data":{"password":"czNjcjN0"},"immutable":true});
    assert_eq!(decode(&body("v1", "Secret", s)).unwrap(), want);
}

#[test]
fn namespace() {
    let ns = E::new()
        .m(1, meta("team-a"))
        .m(2, E::new().s(1, "kubernetes"))
        .m(3, E::new().s(1, ""));
    let want = json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a","creationTimestamp":null},
        "spec":{"finalizers":["kubernetes"]},"status":{}});
    assert_eq!(decode(&body("v1", "Namespace", ns)).unwrap(), want);
}

fn pod_template(container: E) -> E {
    E::new().m(1, meta("")).m(
        2,
        E::new().m(2, container).s(3, "Never").s(6, "").t(11, false),
    )
}

#[test]
fn job_keeps_pointer_zeros() {
    let c = E::new()
        .s(1, "c")
        .s(2, "busybox")
        .s(3, "echo")
        .s(3, "")
        .s(5, "")
        .m(8, E::new())
        .t(16, false);
    let spec = E::new()
        .i(1, 1)
        .i(2, 1)
        .m(6, pod_template(c))
        .i(7, 0)
        .i(8, 0)
        .t(10, false);
    let job = E::new().m(1, meta("j")).m(2, spec).m(3, E::new().i(4, 0));
    let want = json!({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j","creationTimestamp":null},
        "spec":{"parallelism":1,"completions":1,"backoffLimit":0,"ttlSecondsAfterFinished":0,"suspend":false,
            "template":{"metadata":{"creationTimestamp":null},
                "spec":{"containers":[{"name":"c","image":"busybox","command":["echo",""],"resources":{}}],
                        "restartPolicy":"Never"}}},
        "status":{}}); // active: 0 is a non-pointer omitempty zero
    assert_eq!(decode(&body("batch/v1", "Job", job)).unwrap(), want);
}

#[test]
fn cronjob() {
    let c = E::new().s(1, "c").s(2, "busybox").m(8, E::new());
    let spec = E::new()
        .s(1, "*/5 * * * *")
        .s(3, "")
        .t(4, false)
        .m(
            5,
            E::new().m(1, meta("")).m(2, E::new().m(6, pod_template(c))),
        )
        .i(6, 0)
        .s(8, "Etc/UTC");
    let cj = E::new().m(1, meta("cj")).m(2, spec).m(3, E::new());
    let want = json!({"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"cj","creationTimestamp":null},
        "spec":{"schedule":"*/5 * * * *","suspend":false,"successfulJobsHistoryLimit":0,"timeZone":"Etc/UTC",
            "jobTemplate":{"metadata":{"creationTimestamp":null},"spec":{"template":{"metadata":{"creationTimestamp":null},
                "spec":{"containers":[{"name":"c","image":"busybox","resources":{}}],"restartPolicy":"Never"}}}}},
        "status":{}});
    assert_eq!(decode(&body("batch/v1", "CronJob", cj)).unwrap(), want);
}

#[test]
fn pod_with_inline_volume_sources_probes_env_resources_security_context() {
    let local_ref = |n: &str| E::new().s(1, n);
    let volumes = [
        E::new().s(1, "cfg").m(
            2,
            E::new().m(
                19,
                E::new()
                    .m(1, local_ref("cm"))
                    .m(2, E::new().s(1, "a").s(2, "a.txt"))
                    .i(3, 420),
            ),
        ),
        E::new()
            .s(1, "tmp")
            .m(2, E::new().m(2, E::new().s(1, "").m(2, qty("1Gi")))),
        E::new().s(1, "scratch").m(2, E::new().m(2, E::new())),
    ];
    let liveness = E::new()
        .m(
            1,
            E::new().m(
                2,
                E::new()
                    .s(1, "/healthz")
                    .m(2, port_int(8080))
                    .s(3, "")
                    .s(4, "HTTP"),
            ),
        )
        .i(2, 0)
        .i(3, 1)
        .i(4, 10)
        .i(5, 1)
        .i(6, 3);
    let readiness = E::new()
        .m(1, E::new().m(1, E::new().s(1, "cat").s(1, "/tmp/ready")))
        .i(2, 0)
        .i(4, 5);
    let env = [
        E::new().s(1, "PLAIN").s(2, "x"),
        E::new().s(1, "EMPTY").s(2, ""),
        E::new().s(1, "FROM_CM").s(2, "").m(
            3,
            E::new().m(3, E::new().m(1, local_ref("cm")).s(2, "k").t(3, false)),
        ),
        E::new()
            .s(1, "FROM_SECRET")
            .m(3, E::new().m(4, E::new().m(1, local_ref("")).s(2, "pw"))),
        E::new()
            .s(1, "POD")
            .m(3, E::new().m(1, E::new().s(1, "v1").s(2, "metadata.name"))),
    ];
    let resources = E::new()
        .km(1, "cpu", qty("500m"))
        .km(1, "memory", qty("128Mi"))
        .km(2, "cpu", qty("250m"));
    let mut c = E::new()
        .s(1, "app")
        .s(2, "nginx")
        .m(6, E::new().s(1, "").i(2, 0).i(3, 80).s(4, "TCP").s(5, ""));
    for e in env {
        c = c.m(7, e);
    }
    c = c
        .m(8, resources)
        .m(9, E::new().s(1, "cfg").t(2, true).s(3, "/etc/cfg"))
        .m(10, liveness)
        .m(11, readiness)
        .m(12, E::new().m(1, E::new().m(1, E::new().s(1, "true"))))
        .s(13, "")
        .s(14, "IfNotPresent")
        .m(15, E::new().t(2, false).i(4, 1000).t(5, false))
        .t(16, false)
        .t(18, false);
    let mut spec = E::new();
    for v in volumes {
        spec = spec.m(1, v);
    }
    spec = spec
        .m(2, c)
        .s(3, "Always")
        .i(4, 0)
        .t(11, false)
        .m(14, E::new())
        .t(21, false);
    let pod = E::new()
        .m(1, meta("p").kv(11, "app", ""))
        .m(2, spec)
        .m(3, E::new());
    let want = json!({"apiVersion":"v1","kind":"Pod",
        "metadata":{"name":"p","creationTimestamp":null,"labels":{"app":""}},
        "spec":{
            "volumes":[
                {"name":"cfg","configMap":{"name":"cm","items":[{"key":"a","path":"a.txt"}],"defaultMode":420}},
                {"name":"tmp","emptyDir":{"sizeLimit":"1Gi"}},
                {"name":"scratch","emptyDir":{}}],
            "containers":[{
                "name":"app","image":"nginx","ports":[{"containerPort":80,"protocol":"TCP"}],
                "env":[{"name":"PLAIN","value":"x"},{"name":"EMPTY"},
                       {"name":"FROM_CM","valueFrom":{"configMapKeyRef":{"name":"cm","key":"k","optional":false}}},
                       {"name":"FROM_SECRET","valueFrom":{"secretKeyRef":{"key":"pw"}}},
                       {"name":"POD","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.name"}}}],
                "resources":{"limits":{"cpu":"500m","memory":"128Mi"},"requests":{"cpu":"250m"}},
                "volumeMounts":[{"name":"cfg","readOnly":true,"mountPath":"/etc/cfg"}],
                "livenessProbe":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP"},
                    "timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3},
                "readinessProbe":{"exec":{"command":["cat","/tmp/ready"]},"periodSeconds":5},
                "lifecycle":{"postStart":{"exec":{"command":["true"]}}},
                "imagePullPolicy":"IfNotPresent",
                "securityContext":{"privileged":false,"runAsUser":1000,"runAsNonRoot":false}}],
            "restartPolicy":"Always","terminationGracePeriodSeconds":0,"securityContext":{},
            "automountServiceAccountToken":false},
        "status":{}});
    assert_eq!(decode(&body("v1", "Pod", pod)).unwrap(), want);
}

#[test]
fn ingress_rule_value_is_inline() {
    let backend = E::new().m(4, E::new().s(1, "svc").m(2, E::new().s(1, "").i(2, 80)));
    let path = E::new().s(1, "/").m(2, backend).s(3, "Prefix");
    let rule = E::new()
        .s(1, "a.example.com")
        .m(2, E::new().m(1, E::new().m(1, path)));
    let ing = E::new()
        .m(1, meta("ing"))
        .m(2, E::new().m(3, rule).s(4, "nginx"))
        .m(3, E::new().m(1, E::new()));
    let want = json!({"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"ing","creationTimestamp":null},
        "spec":{"rules":[{"host":"a.example.com","http":{"paths":[{"path":"/","pathType":"Prefix",
            "backend":{"service":{"name":"svc","port":{"number":80}}}}]}}],"ingressClassName":"nginx"},
        "status":{"loadBalancer":{}}});
    assert_eq!(
        decode(&body("networking.k8s.io/v1", "Ingress", ing)).unwrap(),
        want
    );
}

#[test]
fn role_keeps_empty_api_group() {
    let rule = E::new().s(1, "get").s(1, "list").s(2, "").s(3, "pods");
    let role = E::new().m(1, meta("r")).m(2, rule);
    let want = json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role",
        "metadata":{"name":"r","creationTimestamp":null},
        "rules":[{"verbs":["get","list"],"apiGroups":[""],"resources":["pods"]}]});
    assert_eq!(
        decode(&body("rbac.authorization.k8s.io/v1", "Role", role)).unwrap(),
        want
    );
}

// ---- special messages ----

#[test]
fn time_and_micro_time() {
    let ev = E::new()
        .m(1, meta("e"))
        .m(2, E::new().i(1, 1_700_000_000).i(2, 123_456_789))
        .m(3, E::new().i(1, 2).m(2, E::new().i(1, 0).i(2, -1)))
        .m(13, E::new().i(1, 1_700_000_000).i(2, 999_999_999))
        .m(14, E::new().i(1, -62_135_596_800));
    let v = decode(&body("events.k8s.io/v1", "Event", ev)).unwrap();
    assert_eq!(v["eventTime"], json!("2023-11-14T22:13:20.123456Z"));
    assert_eq!(
        v["series"],
        json!({"count":2,"lastObservedTime":"1969-12-31T23:59:59.999999Z"})
    );
    assert_eq!(v["deprecatedFirstTimestamp"], json!("2023-11-14T22:13:20Z"));
    assert_eq!(v["deprecatedLastTimestamp"], Value::Null); // Go's zero time
    assert_eq!(v["metadata"]["creationTimestamp"], Value::Null);
    let leap = E::new().m(1, meta("x").m(9, E::new().i(1, 951_782_400))); // 2000-02-29
    let v = decode(&body("v1", "ConfigMap", leap)).unwrap();
    assert_eq!(
        v["metadata"]["deletionTimestamp"],
        json!("2000-02-29T00:00:00Z")
    );
    let far = E::new().m(1, meta("x").m(9, E::new().i(1, 400_000_000_000)));
    let err = decode(&body("v1", "ConfigMap", far))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("outside [0, 9999]") && err.contains("meta.v1.Time"),
        "{err}"
    );
}

#[test]
fn go_duration_strings() {
    let cases = [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (1_500_000, "1.5ms"),
        (1_000_000_000, "1s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_661_500_000_000, "1h1m1.5s"),
        (-2_000_000_000, "-2s"),
        (i64::MIN, "-2562047h47m16.854775808s"),
    ];
    for (d, s) in cases {
        assert_eq!(special::go_duration(d), s);
    }
}

#[test]
fn raw_extension_and_fields_v1_embed_json() {
    let inner = body(
        "v1",
        "ConfigMap",
        E::new().m(1, meta("inner")).kv(2, "k", "v"),
    );
    let rev = |raw: &[u8]| {
        body(
            "apps/v1",
            "ControllerRevision",
            E::new().m(1, meta("r")).m(2, E::new().b(1, raw)).i(3, 2),
        )
    };
    let v = decode(&rev(br#"{"spec":{"template":{"x":[1,2]}}}"#)).unwrap();
    assert_eq!(v["data"], json!({"spec":{"template":{"x":[1,2]}}}));
    assert_eq!(v["revision"], json!(2));
    let v = decode(&rev(&inner)).unwrap();
    assert_eq!(v["data"]["kind"], "ConfigMap");
    assert_eq!(v["data"]["data"], json!({"k":"v"}));
    let err = decode(&rev(b"{not json")).unwrap_err().to_string();
    assert!(
        err.contains("embedded JSON") && err.contains("RawExtension"),
        "{err}"
    );

    let mf = E::new()
        .s(1, "kubectl")
        .s(2, "Update")
        .s(3, "v1")
        .m(4, E::new().i(1, 0))
        .s(6, "FieldsV1");
    let mf = mf
        .m(7, E::new().b(1, br#"{"f:data":{".":{},"f:k":{}}}"#))
        .s(8, "");
    let cm = E::new().m(1, meta("cm").m(17, mf));
    let v = decode(&body("v1", "ConfigMap", cm)).unwrap();
    assert_eq!(
        v["metadata"]["managedFields"],
        json!([{"manager":"kubectl","operation":"Update","apiVersion":"v1","time":"1970-01-01T00:00:00Z",
            "fieldsType":"FieldsV1","fieldsV1":{"f:data":{".":{},"f:k":{}}}}])
    );
}

#[test]
fn int_or_string_and_quantity_edge_cases() {
    let pdb = |spec: E| {
        body(
            "policy/v1",
            "PodDisruptionBudget",
            E::new().m(1, meta("p")).m(2, spec),
        )
    };
    let v = decode(&pdb(E::new()
        .m(1, E::new())
        .m(3, E::new().i(1, 1).s(3, "50%"))))
    .unwrap();
    assert_eq!(v["spec"], json!({"minAvailable":0,"maxUnavailable":"50%"}));
    let err = decode(&pdb(E::new().m(1, E::new().i(1, 7))))
        .unwrap_err()
        .to_string();
    assert!(err.contains("IntOrString type 7"), "{err}");
    let quota = E::new()
        .m(1, meta("q"))
        .m(2, E::new().km(1, "pods", E::new()).km(1, "cpu", qty("1")));
    let v = decode(&body("v1", "ResourceQuota", quota)).unwrap();
    assert_eq!(v["spec"]["hard"], json!({"pods":"0","cpu":"1"}));
}

#[test]
fn user_info_extra_values_and_verbs_are_arrays() {
    let spec = E::new()
        .m(1, E::new().s(2, "get").s(5, "pods").s(4, ""))
        .s(3, "alice")
        .s(4, "devs")
        .km(5, "scopes", E::new().s(1, "a").s(1, "b"))
        .km(5, "none", E::new());
    let v = decode(&body(
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        E::new().m(1, meta("")).m(2, spec),
    ))
    .unwrap();
    assert_eq!(
        v["spec"],
        json!({"resourceAttributes":{"verb":"get","resource":"pods"},"user":"alice","groups":["devs"],
            "extra":{"scopes":["a","b"],"none":[]}})
    );
}

#[test]
fn crd_schema_unions_and_embedded_json() {
    let string_schema = E::new().s(5, "string");
    let replicas = E::new()
        .s(5, "integer")
        .d(9, 10.5)
        .t(10, false)
        .d(11, 1.0)
        .m(8, E::new().b(1, b"3"));
    let spec_schema = E::new()
        .s(5, "object")
        .km(29, "replicas", replicas)
        .km(
            29,
            "tags",
            E::new()
                .s(5, "array")
                .m(24, E::new().m(1, string_schema.clone())),
        )
        .km(
            29,
            "pair",
            E::new().s(5, "array").m(
                24,
                E::new()
                    .m(2, string_schema.clone())
                    .m(2, E::new().s(5, "integer")),
            ),
        )
        .m(30, E::new().t(1, true))
        .km(32, "a", E::new().s(2, "b"))
        .m(20, E::new().b(1, br#""x""#))
        .s(23, "replicas");
    let root = E::new()
        .s(5, "object")
        .km(29, "spec", spec_schema)
        .t(38, true)
        .s(2, "")
        .m(33, E::new().m(2, string_schema));
    let version = E::new()
        .s(1, "v1")
        .t(2, true)
        .t(3, true)
        .m(4, E::new().m(1, root))
        .t(7, false);
    let names = E::new()
        .s(1, "widgets")
        .s(2, "")
        .s(4, "Widget")
        .s(5, "WidgetList");
    let spec = E::new()
        .s(1, "example.com")
        .m(3, names)
        .s(4, "Namespaced")
        .m(7, version)
        .t(10, false);
    let crd = E::new().m(1, meta("widgets.example.com")).m(2, spec);
    let v = decode(&body(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd,
    ))
    .unwrap();
    let want_schema = json!({"type":"object","x-kubernetes-preserve-unknown-fields":true,
        "additionalItems":{"type":"string"},
        "properties":{"spec":{"type":"object","required":["replicas"],"enum":["x"],
            "additionalProperties":true,"dependencies":{"a":["b"]},
            "properties":{
                "replicas":{"type":"integer","maximum":10.5,"minimum":1,"default":3},
                "tags":{"type":"array","items":{"type":"string"}},
                "pair":{"type":"array","items":[{"type":"string"},{"type":"integer"}]}}}}});
    assert_eq!(
        v["spec"],
        json!({"group":"example.com","names":{"plural":"widgets","kind":"Widget","listKind":"WidgetList"},
            "scope":"Namespaced","versions":[{"name":"v1","served":true,"storage":true,
            "schema":{"openAPIV3Schema":want_schema}}]})
    );
}
