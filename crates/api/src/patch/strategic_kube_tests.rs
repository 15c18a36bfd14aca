//! Strategic merge patch on real Kubernetes kinds, with the bodies kubectl and controllers
//! send.

use serde_json::json;

use super::*;

/// A Deployment as the API server stores it, defaults included.
fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "6a1f0f5e-2b3c-4d5e-8f90-1a2b3c4d5e6f",
            "resourceVersion": "1042",
            "generation": 3,
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {"deployment.kubernetes.io/revision": "3"},
            "finalizers": ["example.com/protect"]
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "initContainers": [{"name": "init-db", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}],
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}],
                            "env": [{"name": "MODE", "value": "prod"}, {"name": "LOG", "value": "info"}],
                            "volumeMounts": [{"name": "conf", "mountPath": "/etc/nginx/conf.d"}],
                            "resources": {"limits": {"cpu": "500m"}},
                            "terminationMessagePath": "/dev/termination-log",
                            "imagePullPolicy": "IfNotPresent"
                        },
                        {"name": "sidecar", "image": "envoy:1.30", "args": ["--config", "/etc/envoy.yaml"]}
                    ],
                    "volumes": [{"name": "conf", "configMap": {"name": "web-conf", "defaultMode": 420}}],
                    "imagePullSecrets": [{"name": "regcred"}],
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst"
                }
            }
        },
        "status": {
            "observedGeneration": 3,
            "replicas": 2,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
            ]
        }
    })
}

fn patch_deploy(doc: &Value, patch: Value) -> Value {
    apply(doc, &patch, "apps", "v1", "Deployment").unwrap_or_else(|e| panic!("{patch}: {e}"))
}

fn pod_spec(v: &Value) -> &Value {
    &v["spec"]["template"]["spec"]
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect()).unwrap_or_default()
}

#[test]
fn kubectl_set_image() {
    let before = deployment();
    let body = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"containers":[{"image":"nginx:1.27","name":"nginx"}]}}}});
    let after = patch_deploy(&before, body);
    // Only the image changed; the server-only sidecar stays, after nginx as before.
    let mut expected = before.clone();
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    assert_eq!(after, expected);
    assert!(!after.to_string().contains("$setElementOrder"));
}

#[test]
fn set_element_order_reorders_and_keeps_server_only_items() {
    let before = deployment();
    let body = json!({"spec":{"template":{"spec":{
        "$setElementOrder/containers":[{"name":"metrics"},{"name":"nginx"}],
        "containers":[{"name":"metrics","image":"prom/statsd:0.26"}]
    }}}});
    let after = patch_deploy(&before, body);
    assert_eq!(names(&pod_spec(&after)["containers"]), ["metrics", "nginx", "sidecar"]);
    assert_eq!(pod_spec(&after)["containers"][1], before["spec"]["template"]["spec"]["containers"][0]);
}

#[test]
fn kubectl_apply_removes_a_container() {
    // The three-way patch `kubectl apply` sends when the sidecar left the manifest.
    let body = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"containers":[{"$patch":"delete","name":"sidecar"}]}}}});
    let after = patch_deploy(&deployment(), body);
    assert_eq!(names(&pod_spec(&after)["containers"]), ["nginx"]);
}

#[test]
fn retain_keys_switches_strategy_to_recreate() {
    let body = json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":null}}});
    let after = patch_deploy(&deployment(), body);
    assert_eq!(after["spec"]["strategy"], json!({"type": "Recreate"}));
    // Without the directive, stale rollingUpdate fields would survive a plain merge.
    let after = patch_deploy(&deployment(), json!({"spec":{"strategy":{"type":"Recreate"}}}));
    assert_eq!(after["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
}

#[test]
fn retain_keys_switches_volume_source() {
    // kubectl apply on a volume moving from configMap to emptyDir (volumes: merge,retainKeys).
    let body = json!({"spec":{"template":{"spec":{
        "$setElementOrder/volumes":[{"name":"conf"}],
        "volumes":[{"$retainKeys":["emptyDir","name"],"emptyDir":{},"name":"conf"}]
    }}}});
    let after = patch_deploy(&deployment(), body);
    assert_eq!(pod_spec(&after)["volumes"], json!([{"name": "conf", "emptyDir": {}}]));
}

#[test]
fn env_ports_and_mounts_merge_by_their_keys() {
    let body = json!({"spec":{"template":{"spec":{"containers":[{
        "name":"nginx",
        "env":[{"name":"LOG","value":"debug"},{"name":"MODE","$patch":"delete"},{"name":"NEW","value":"1"}],
        "ports":[{"containerPort":8080,"name":"alt"},{"containerPort":80,"name":"http"}],
        "volumeMounts":[{"mountPath":"/cache","name":"cache"}]
    }]}}}});
    let after = patch_deploy(&deployment(), body);
    let nginx = &pod_spec(&after)["containers"][0];
    assert_eq!(nginx["env"], json!([{"name": "LOG", "value": "debug"}, {"name": "NEW", "value": "1"}]));
    assert_eq!(
        nginx["ports"],
        json!([{"containerPort": 8080, "name": "alt"}, {"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443, "protocol": "TCP"}])
    );
    assert_eq!(nginx["volumeMounts"], json!([{"mountPath": "/cache", "name": "cache"}, {"name": "conf", "mountPath": "/etc/nginx/conf.d"}]));
    // Untouched container fields and the other container remain.
    assert_eq!(nginx["resources"], json!({"limits": {"cpu": "500m"}}));
    assert_eq!(names(&pod_spec(&after)["containers"]), ["nginx", "sidecar"]);
}

#[test]
fn lists_without_strategy_are_replaced() {
    let body = json!({"spec":{"template":{"spec":{
        "tolerations":[{"operator":"Exists"}],
        "containers":[{"name":"sidecar","args":["--debug"]}]
    }}}});
    let after = patch_deploy(&deployment(), body);
    assert_eq!(pod_spec(&after)["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(pod_spec(&after)["containers"][1]["args"], json!(["--debug"]));
}

#[test]
fn other_merging_lists_of_the_pod_spec() {
    let body = json!({"spec":{"template":{"spec":{
        "initContainers":[{"name":"init-db","image":"busybox:1.37"}],
        "imagePullSecrets":[{"name":"other"}],
        "volumes":[{"name":"cache","emptyDir":{}}]
    }}}});
    let after = patch_deploy(&deployment(), body);
    let spec = pod_spec(&after);
    assert_eq!(spec["initContainers"][0]["image"], "busybox:1.37");
    assert_eq!(spec["initContainers"][0]["command"], json!(["sh", "-c", "true"]));
    assert_eq!(names(&spec["imagePullSecrets"]), ["other", "regcred"]);
    assert_eq!(names(&spec["volumes"]), ["cache", "conf"]);
}

#[test]
fn metadata_labels_annotations_and_finalizers() {
    let body = json!({"metadata":{
        "labels":{"tier":null,"track":"stable"},
        "annotations":{"kubectl.kubernetes.io/restartedAt":"2025-01-01T00:00:00Z"},
        "finalizers":["example.com/other","example.com/protect"]
    }});
    let after = patch_deploy(&deployment(), body);
    assert_eq!(after["metadata"]["labels"], json!({"app": "web", "track": "stable"}));
    assert_eq!(after["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
    assert_eq!(after["metadata"]["finalizers"], json!(["example.com/other", "example.com/protect"]));
    // Removing a finalizer the way controllers do.
    let after = patch_deploy(&after, json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["example.com/protect"]}}));
    assert_eq!(after["metadata"]["finalizers"], json!(["example.com/other"]));
}

#[test]
fn rollout_restart_and_scale() {
    let body = json!({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2025-06-01T10:00:00Z"}}}}});
    let after = patch_deploy(&deployment(), body);
    assert_eq!(after["spec"]["template"]["metadata"], json!({"labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-06-01T10:00:00Z"}}));
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 2}, "status": {"replicas": 2, "selector": "app=web"}});
    let scaled = apply(&scale, &json!({"spec":{"replicas":5}}), "autoscaling", "v1", "Scale").unwrap();
    assert_eq!(scaled["spec"]["replicas"], 5);
}

#[test]
fn status_conditions_merge_by_type() {
    let body = json!({"status":{
        "$setElementOrder/conditions":[{"type":"Available"},{"type":"Progressing"},{"type":"ReplicaFailure"}],
        "conditions":[{"type":"Progressing","status":"False","reason":"ProgressDeadlineExceeded"},{"type":"ReplicaFailure","status":"True"}]
    }});
    let after = patch_deploy(&deployment(), body);
    assert_eq!(
        after["status"]["conditions"],
        json!([
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"},
            {"type": "ReplicaFailure", "status": "True"}
        ])
    );
}

#[test]
fn pods_nodes_and_services() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]},
        "status": {"conditions": [{"type": "Ready", "status": "False"}], "podIPs": [{"ip": "10.0.0.5"}]}});
    let after = apply(&pod, &json!({"status":{"conditions":[{"type":"Ready","status":"True"}],"podIPs":[{"ip":"fd00::5"}]}}), "", "v1", "Pod").unwrap();
    assert_eq!(after["status"]["conditions"], json!([{"type": "Ready", "status": "True"}]));
    assert_eq!(after["status"]["podIPs"], json!([{"ip": "fd00::5"}, {"ip": "10.0.0.5"}]));

    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}], "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
    let after = apply(&node, &json!({"status":{"conditions":[{"type":"MemoryPressure","status":"True"}]}}), "", "v1", "Node").unwrap();
    assert_eq!(after["status"]["conditions"], json!([{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "True"}]));

    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
    let after = apply(&svc, &json!({"spec":{"ports":[{"port":80,"targetPort":9090},{"port":443,"name":"https"}]}}), "", "v1", "Service").unwrap();
    assert_eq!(after["spec"]["ports"], json!([{"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"}, {"port": 443, "name": "https"}]));
}

#[test]
fn replace_strategy_replaces_the_whole_map() {
    // PodDisruptionBudgetSpec.selector has patchStrategy replace.
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web", "tier": "fe"}}}});
    let after = apply(&pdb, &json!({"spec":{"selector":{"matchLabels":{"app":"api"}}}}), "policy", "v1", "PodDisruptionBudget").unwrap();
    assert_eq!(after["spec"], json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "api"}}}));
    // A Deployment's selector has no strategy: it merges.
    let after = patch_deploy(&deployment(), json!({"spec":{"selector":{"matchLabels":{"tier":"fe"}}}}));
    assert_eq!(after["spec"]["selector"], json!({"matchLabels": {"app": "web", "tier": "fe"}}));
}

#[test]
fn kinds_with_and_without_metadata() {
    assert_eq!(root_type("apps", "v1", "Deployment"), Some("io.k8s.api.apps.v1.Deployment"));
    assert_eq!(root_type("", "v1", "ConfigMap"), Some("io.k8s.api.core.v1.ConfigMap"));
    assert_eq!(root_type("apiextensions.k8s.io", "v1", "CustomResourceDefinition"), Some("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"));
    for (g, v, k) in [
        ("", "v1", "Pod"), ("", "v1", "Service"), ("", "v1", "Namespace"), ("", "v1", "Secret"), ("batch", "v1", "CronJob"), ("batch", "v1", "Job"),
        ("apps", "v1", "StatefulSet"), ("apps", "v1", "DaemonSet"), ("autoscaling", "v2", "HorizontalPodAutoscaler"), ("autoscaling", "v1", "HorizontalPodAutoscaler"),
        ("coordination.k8s.io", "v1", "Lease"), ("discovery.k8s.io", "v1", "EndpointSlice"), ("events.k8s.io", "v1", "Event"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"), ("storage.k8s.io", "v1", "StorageClass"), ("networking.k8s.io", "v1", "Ingress"),
    ] {
        assert!(supports(g, v, k), "{g}/{v} {k}");
    }
    for (g, v, k) in [("stable.example.com", "v1", "CronTab"), ("apps", "v1beta1", "Deployment"), ("", "v1", "Nope"), ("apps", "v1", "deployment")] {
        assert!(!supports(g, v, k), "{g}/{v} {k}");
    }
    // Without metadata (server-side apply of a custom resource goes through here): objects
    // merge, lists replace, directives apply.
    let cr = json!({"spec": {"items": [{"name": "a", "x": 1}], "size": 1, "labels": {"a": "1"}}});
    let patch = json!({"spec": {"items": [{"name": "b"}], "labels": {"$patch": "replace", "b": "2"}}});
    let got = apply(&cr, &patch, "stable.example.com", "v1", "CronTab").unwrap();
    assert_eq!(got, json!({"spec": {"items": [{"name": "b"}], "size": 1, "labels": {"b": "2"}}}));
}

#[test]
fn configmap_data_and_unknown_fields_are_plain_json() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
    let after = apply(&cm, &json!({"data":{"a":null,"c":"3"},"x":{"y":[1]}}), "", "v1", "ConfigMap").unwrap();
    assert_eq!(after["data"], json!({"b": "2", "c": "3"}));
    assert_eq!(after["x"], json!({"y": [1]}));
}

#[test]
fn errors_on_real_kinds() {
    let missing_key = json!({"spec":{"template":{"spec":{"volumes":[{"hostPath":{"path":"/var/lib/kubelet/pods"}}]}}}});
    let err = apply_detailed(&deployment(), &missing_key, "apps", "v1", "Deployment").unwrap_err();
    assert_eq!(err.message, "map: map[hostPath:map[path:/var/lib/kubelet/pods]] does not contain declared merge key: name");
    let mismatch = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"sidecar"}],"containers":[{"name":"nginx","image":"x"}]}}}});
    let err = apply_detailed(&deployment(), &mismatch, "apps", "v1", "Deployment").unwrap_err();
    assert!(err.message.contains("doesn't match $setElementOrder list"), "{}", err.message);
}
