use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{normalize, table, Presence, Shape};

fn normalized(group: &str, version: &str, kind: &str, mut obj: Value) -> Value {
    assert!(normalize(group, version, kind, &mut obj), "{group}/{version} {kind} is in the table");
    obj
}

#[test]
fn replication_controller_status_has_replicas() {
    let rc = normalized("", "v1", "ReplicationController", json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "rc", "namespace": "default", "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"replicas": 0, "minReadySeconds": 0, "selector": {"app": "x"},
                 "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }));
    assert_eq!(rc["status"], json!({"replicas": 0}));
    // spec.replicas is a pointer: an explicit 0 stays; minReadySeconds is not: Go omits it.
    assert_eq!(rc["spec"]["replicas"], json!(0));
    assert!(rc["spec"].get("minReadySeconds").is_none());
    // Go writes a zero metav1.Time as null, even with omitempty.
    assert_eq!(rc["spec"]["template"]["metadata"], json!({"creationTimestamp": null, "labels": {"app": "x"}}));
    assert_eq!(rc["spec"]["template"]["spec"]["containers"][0], json!({"name": "c", "image": "busybox", "resources": {}}));
    assert_eq!(rc["metadata"]["creationTimestamp"], json!("2025-01-01T00:00:00Z"));
}

#[test]
fn daemonset_status_counts_are_always_written() {
    let ds = normalized("apps", "v1", "DaemonSet", json!({
        "metadata": {"name": "ds"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": []}}},
    }));
    assert_eq!(ds["status"], json!({
        "currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0,
    }));
    // updateStrategy is a non-pointer struct: always there.
    assert_eq!(ds["spec"]["updateStrategy"], json!({}));
    // A status write with null counts and zero omitempty ones.
    let ds = normalized("apps", "v1", "DaemonSet", json!({
        "metadata": {"name": "ds"}, "spec": {},
        "status": {"numberReady": null, "numberAvailable": 0, "observedGeneration": 0, "updatedNumberScheduled": 2},
    }));
    assert_eq!(ds["status"], json!({
        "currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0,
        "updatedNumberScheduled": 2,
    }));
}

#[test]
fn pod_containers_get_their_non_omitempty_fields() {
    let pod = normalized("", "v1", "Pod", json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {}, "generation": 0, "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {
            "containers": [{
                "name": "c", "image": "busybox", "stdin": false, "tty": false, "workingDir": "", "args": [],
                "ports": [{"containerPort": 80, "hostPort": 0, "protocol": "TCP"}, {"name": "x"}],
                "env": [{"name": "A", "value": ""}],
                "securityContext": {"runAsNonRoot": false, "privileged": false},
                "livenessProbe": {"tcpSocket": {"port": 80}, "initialDelaySeconds": 0, "timeoutSeconds": 1},
                "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": false}],
            }],
            "initContainers": [],
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "hostNetwork": false,
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
    }));
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["resources"], json!({}), "ResourceRequirements is a non-pointer struct");
    for dropped in ["stdin", "tty", "workingDir", "args"] {
        assert!(c.get(dropped).is_none(), "{dropped} is omitempty");
    }
    assert_eq!(c["ports"], json!([{"containerPort": 80, "protocol": "TCP"}, {"name": "x", "containerPort": 0}]));
    // EnvVar.value is omitempty; the name is not.
    assert_eq!(c["env"], json!([{"name": "A"}]));
    // Pointers keep their zeros.
    assert_eq!(c["securityContext"], json!({"runAsNonRoot": false, "privileged": false}));
    assert_eq!(c["livenessProbe"], json!({"tcpSocket": {"port": 80}, "timeoutSeconds": 1}));
    assert_eq!(c["volumeMounts"], json!([{"name": "v", "mountPath": "/v"}]));
    let spec = &pod["spec"];
    assert_eq!(spec["terminationGracePeriodSeconds"], json!(0));
    assert_eq!(spec["automountServiceAccountToken"], json!(false));
    assert!(spec.get("initContainers").is_none() && spec.get("hostNetwork").is_none());
    assert_eq!(spec["volumes"], json!([{"name": "v", "emptyDir": {}}]));
    assert_eq!(pod["status"], json!({}));
    assert_eq!(pod["metadata"], json!({"name": "p", "creationTimestamp": "2025-01-01T00:00:00Z"}), "empty labels and zero generation are omitted");
}

#[test]
fn container_without_name_gets_an_empty_one() {
    let pod = normalized("", "v1", "Pod", json!({"spec": {"containers": [{"image": "x"}]}}));
    assert_eq!(pod["spec"]["containers"][0], json!({"image": "x", "name": "", "resources": {}}));
    // A pod without containers: Go writes the nil slice as null.
    let pod = normalized("", "v1", "Pod", json!({"spec": {}}));
    assert_eq!(pod["spec"]["containers"], Value::Null);
}

#[test]
fn pointer_zeros_are_kept() {
    let job = normalized("batch", "v1", "Job", json!({
        "spec": {"backoffLimit": 0, "parallelism": 0, "completions": 0, "suspend": false, "manualSelector": false,
                 "template": {"spec": {"containers": [{"name": "c"}], "restartPolicy": "Never"}}},
    }));
    assert_eq!(job["spec"]["backoffLimit"], json!(0));
    assert_eq!(job["spec"]["parallelism"], json!(0));
    assert_eq!(job["spec"]["completions"], json!(0));
    assert_eq!(job["spec"]["suspend"], json!(false));
    assert_eq!(job["spec"]["manualSelector"], json!(false));
    assert_eq!(job["status"], json!({}));
    let d = normalized("apps", "v1", "Deployment", json!({"spec": {"replicas": 0, "paused": false, "minReadySeconds": 0}}));
    assert_eq!(d["spec"]["replicas"], json!(0));
    assert!(d["spec"].get("paused").is_none() && d["spec"].get("minReadySeconds").is_none());
    assert_eq!(d["spec"]["strategy"], json!({}));
    assert_eq!(d["spec"]["template"], json!({"metadata": {"creationTimestamp": null}, "spec": {"containers": null}}));
}

#[test]
fn other_kinds_follow_their_structs() {
    let svc = normalized("", "v1", "Service", json!({"spec": {"ports": [{"port": 80}], "clusterIP": "", "selector": {}}}));
    // targetPort is a non-pointer IntOrString (a struct): written even when unset, as 0.
    assert_eq!(svc["spec"], json!({"ports": [{"port": 80, "targetPort": 0}]}));
    assert_eq!(svc["status"], json!({"loadBalancer": {}}));
    let ev = normalized("", "v1", "Event", json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod"}, "count": 0}));
    assert_eq!(ev, json!({
        "metadata": {"name": "e", "creationTimestamp": null}, "involvedObject": {"kind": "Pod"}, "source": {},
        "eventTime": null, "firstTimestamp": null, "lastTimestamp": null,
        "reportingComponent": "", "reportingInstance": "",
    }));
    let cr = normalized("rbac.authorization.k8s.io", "v1", "ClusterRole", json!({"metadata": {"name": "r"}}));
    assert_eq!(cr["rules"], Value::Null, "rules has no omitempty");
    // Map values and pointers are kept as they are, "" and false included.
    let cm = json!({"metadata": {"name": "c", "creationTimestamp": "2025-01-01T00:00:00Z"}, "data": {"a": ""}, "immutable": false});
    assert_eq!(normalized("", "v1", "ConfigMap", cm.clone()), cm);
    let env = normalized("", "v1", "Pod", json!({"spec": {"containers": [{"name": "c", "env": [
        {"name": "L", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}]}}));
    assert_eq!(env["spec"]["containers"][0]["env"][0]["valueFrom"]["resourceFieldRef"], json!({"resource": "limits.cpu", "divisor": "0"}));
}

#[test]
fn unknown_kinds_are_left_alone() {
    let mut obj = json!({"spec": {"x": 0, "y": ""}});
    assert!(!normalize("example.com", "v1", "Widget", &mut obj));
    assert_eq!(obj, json!({"spec": {"x": 0, "y": ""}}));
}

#[test]
fn normalizing_twice_changes_nothing() {
    let once = normalized("apps", "v1", "StatefulSet", json!({"metadata": {"name": "s"}, "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}));
    assert_eq!(normalized("apps", "v1", "StatefulSet", once.clone()), once);
}

#[test]
fn table_is_well_formed() {
    let n = table::TYPES.len();
    assert!(table::TYPES.windows(2).all(|w| w[0].name < w[1].name));
    for ty in table::TYPES {
        assert!(ty.fields.windows(2).all(|w| w[0].0 < w[1].0), "{} fields sorted", ty.name);
        for f in ty.fields {
            if let Shape::Obj(i) | Shape::List(i) | Shape::Map(i) = f.2 {
                assert!(usize::from(i) < n);
            }
        }
    }
    assert!(table::KINDS.windows(2).all(|w| (w[0].0, w[0].1, w[0].2) < (w[1].0, w[1].1, w[1].2)));
}

#[test]
fn every_stored_builtin_kind_is_covered() {
    for def in crate::resources::builtin() {
        if crate::resources::is_review(&def) {
            continue;
        }
        let mut obj = json!({});
        assert!(normalize(&def.group, &def.version, &def.kind, &mut obj), "{} has no table entry", def.qualified_kind());
    }
}

/// The Go struct tags (the table's source) and k8s-openapi's `required` lists (generated from
/// the same structs by kube-openapi) must agree on every scalar field: a non-omitempty scalar
/// is required, an omitempty one is not. Differences are upstream's own exceptions, each
/// checked here so that a regenerated table cannot drift silently.
#[test]
fn scalar_rules_agree_with_openapi_required() {
    let defs = &crate::openapi::schemas::builtin().definitions;
    let mut disagree = BTreeSet::new();
    let mut checked = 0;
    for ty in table::TYPES {
        let Some(schema) = defs.get(ty.name) else { continue };
        let required: BTreeSet<&str> = schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        for f in ty.fields {
            let zero = matches!(f.1, Presence::ZeroStr | Presence::ZeroInt | Presence::ZeroBool | Presence::ZeroFloat);
            if zero || f.1 == Presence::OmitEmpty && f.2 == Shape::Leaf {
                let prop = &schema["properties"][f.0];
                if !matches!(prop.get("type").and_then(Value::as_str), Some("string" | "integer" | "boolean" | "number")) || prop.get("format").is_some_and(|f| f == "byte") {
                    continue;
                }
                checked += 1;
                if zero != required.contains(f.0) {
                    disagree.insert((format!("{}.{}", ty.name, f.0), if zero { "always written" } else { "omitempty" }));
                }
            }
        }
    }
    assert!(checked > 300, "only {checked} fields compared");
    let expected: BTreeSet<(String, &str)> = [
        // `+optional` without `omitempty`: OpenAPI says optional, Go always writes them.
        ("io.k8s.api.apps.v1.StatefulSetOrdinals.start", "always written"),
        ("io.k8s.api.apps.v1.StatefulSetSpec.serviceName", "always written"),
        ("io.k8s.api.apps.v1.StatefulSetStatus.availableReplicas", "always written"),
        ("io.k8s.api.core.v1.Event.reportingComponent", "always written"),
        ("io.k8s.api.core.v1.Event.reportingInstance", "always written"),
        ("io.k8s.api.core.v1.NodeRuntimeHandler.name", "always written"),
        ("io.k8s.api.flowcontrol.v1.FlowSchemaSpec.matchingPrecedence", "always written"),
        ("io.k8s.api.flowcontrol.v1.QueuingConfiguration.handSize", "always written"),
        ("io.k8s.api.flowcontrol.v1.QueuingConfiguration.queueLengthLimit", "always written"),
        ("io.k8s.api.flowcontrol.v1.QueuingConfiguration.queues", "always written"),
        // `omitempty` with a `+default`: k8s-openapi makes them required, Go omits them empty.
        ("io.k8s.api.core.v1.ConfigMapEnvSource.name", "omitempty"),
        ("io.k8s.api.core.v1.ConfigMapKeySelector.name", "omitempty"),
        ("io.k8s.api.core.v1.ConfigMapProjection.name", "omitempty"),
        ("io.k8s.api.core.v1.ConfigMapVolumeSource.name", "omitempty"),
        ("io.k8s.api.core.v1.LocalObjectReference.name", "omitempty"),
        ("io.k8s.api.core.v1.SecretEnvSource.name", "omitempty"),
        ("io.k8s.api.core.v1.SecretKeySelector.name", "omitempty"),
        ("io.k8s.api.core.v1.SecretProjection.name", "omitempty"),
        ("io.k8s.api.networking.v1.ParentReference.name", "omitempty"),
        ("io.k8s.api.networking.v1.ParentReference.resource", "omitempty"),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d))
    .collect();
    let new: Vec<_> = disagree.difference(&expected).collect();
    let gone: Vec<_> = expected.difference(&disagree).collect();
    assert!(new.is_empty() && gone.is_empty(), "new differences {new:?}, differences gone {gone:?}");
}

/// kube-aggregator's APIService as Go writes it: the priorities always (non-omitempty
/// int32s), an empty spec's strings and an empty status's conditions dropped, a condition's
/// unset transition time `null`.
#[test]
fn apiservice_as_go_writes_it() {
    let o = normalized("apiregistration.k8s.io", "v1", "APIService", json!({"metadata": {"name": "v1.x.io"},
        "spec": {"group": "x.io", "version": "v1", "caBundle": "", "insecureSkipTLSVerify": false, "service": {"name": "s", "namespace": "", "port": 443}},
        "status": {"conditions": [{"type": "Available", "status": "True"}]}}));
    assert_eq!(o["spec"], json!({"group": "x.io", "version": "v1", "groupPriorityMinimum": 0, "versionPriority": 0, "service": {"name": "s", "port": 443}}));
    assert_eq!(o["status"]["conditions"][0], json!({"type": "Available", "status": "True", "lastTransitionTime": null}));
    let empty = normalized("apiregistration.k8s.io", "v1", "APIService", json!({"metadata": {"name": "v1.x.io"}, "status": {"conditions": []}}));
    assert_eq!((&empty["spec"], &empty["status"]), (&json!({"groupPriorityMinimum": 0, "versionPriority": 0}), &json!({})));
}
