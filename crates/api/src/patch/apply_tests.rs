//! Server-side apply and field tracking on real kinds, through the public entry points, with
//! the managed fields and messages upstream produces for the same requests.

use super::*;
use serde_json::json;

const T1: &str = "2025-01-01T00:00:01Z";
const T2: &str = "2025-01-01T00:00:02Z";
const T3: &str = "2025-01-01T00:00:03Z";

fn deployment(replicas: Option<i64>, image: &str) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]}
            }
        }
    });
    if let Some(r) = replicas {
        d["spec"]["replicas"] = json!(r);
    }
    d
}

fn apply(live: Option<&Value>, cfg: &Value, manager: &str, force: bool, now: &str) -> Result<Value, ApplyError> {
    let (group, version) = match cfg["apiVersion"].as_str().unwrap_or("").split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), cfg["apiVersion"].as_str().unwrap_or("").to_string()),
    };
    server_side_apply(live, cfg, manager, force, &group, &version, cfg["kind"].as_str().unwrap_or(""), now)
}

fn update(old: Option<&Value>, new: &Value, manager: &str, now: &str) -> Value {
    let (g, v) = new["apiVersion"].as_str().unwrap().split_once('/').unwrap_or(("", new["apiVersion"].as_str().unwrap()));
    track_update(old, new, manager, g, v, new["kind"].as_str().unwrap(), now)
}

/// A stored object: what the REST layer adds on create.
fn stored(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!("0d7b5a2e");
    obj["metadata"]["resourceVersion"] = json!("7");
    obj
}

fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"].as_array().and_then(|l| l.iter().find(|e| e["manager"] == manager)).unwrap_or(&Value::Null)
}

fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map_or(vec![], |l| l.iter().map(|e| format!("{}/{}", e["manager"].as_str().unwrap(), e["operation"].as_str().unwrap())).collect())
}

fn conflicts(err: ApplyError) -> Vec<(String, String)> {
    match err {
        ApplyError::Conflicts(cs) => cs.into_iter().map(|c| (c.manager, c.field)).collect(),
        other => panic!("expected conflicts, got {other}"),
    }
}

fn container_names(obj: &Value) -> Vec<&str> {
    obj["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
}

#[test]
fn apply_create_records_upstream_managed_fields() {
    let mut cfg = deployment(Some(2), "nginx:1.25");
    cfg["status"] = json!({"replicas": 5});
    let obj = apply(None, &cfg, "kubectl", false, T1).unwrap();
    assert_eq!(obj["spec"]["replicas"], 2);
    assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.25");
    assert_eq!(
        obj["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T1, "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                            ".": {}, "f:image": {}, "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                        }}}
                    }
                }
            }
        }]),
        "status is reset by the strategy, so not owned; the selector is an atomic struct; the port is keyed with its default protocol"
    );
}

#[test]
fn reapply_without_a_field_removes_it() {
    let mut cfg = deployment(Some(2), "nginx:1.25");
    cfg["metadata"]["labels"]["tier"] = json!("front");
    cfg["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["-g", "daemon off;"]);
    let live = stored(apply(None, &cfg, "kubectl", false, T1).unwrap());
    let obj = apply(Some(&live), &deployment(None, "nginx:1.25"), "kubectl", false, T2).unwrap();
    assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
    assert!(obj["spec"].get("replicas").is_none());
    assert!(obj["spec"]["template"]["spec"]["containers"][0].get("args").is_none());
    assert_eq!(obj["metadata"]["uid"], "0d7b5a2e", "fields nobody owns are kept");
    assert_eq!(entry(&obj, "kubectl")["time"], T2);
}

#[test]
fn reapply_keeps_fields_another_manager_took() {
    let live = stored(apply(None, &deployment(Some(2), "nginx:1.25"), "kubectl", false, T1).unwrap());
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(4);
    let scaled = update(Some(&live), &scaled, "kubectl-scale", T2);
    assert_eq!(entry(&scaled, "kubectl-scale")["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert!(entry(&scaled, "kubectl")["fieldsV1"]["f:spec"].get("f:replicas").is_none(), "the updater took the field");
    let obj = apply(Some(&scaled), &deployment(None, "nginx:1.26"), "kubectl", false, T3).unwrap();
    assert_eq!(obj["spec"]["replicas"], 4);
    assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.26");
}

#[test]
fn apply_conflicts_with_an_update_manager() {
    let created = stored(update(None, &deployment(Some(1), "nginx:1.25"), "kubectl-client-side-apply", T1));
    let err = apply(Some(&created), &deployment(Some(3), "nginx:1.25"), "kubectl", false, T2).unwrap_err();
    assert_eq!(err.to_string(), r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#);
    assert_eq!(
        err,
        ApplyError::Conflicts(vec![Conflict {
            manager: "kubectl-client-side-apply".into(),
            field: ".spec.replicas".into(),
            message: r#"conflict with "kubectl-client-side-apply" using apps/v1"#.into(),
        }])
    );
    let status = err.to_status();
    assert_eq!(status["code"], 409);
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["details"]["causes"][0],
        json!({"reason": "FieldManagerConflict", "message": "conflict with \"kubectl-client-side-apply\" using apps/v1", "field": ".spec.replicas"})
    );
    // The same values do not conflict: ownership is shared.
    let shared = apply(Some(&created), &deployment(Some(1), "nginx:1.25"), "kubectl", false, T2).unwrap();
    assert_eq!(managers(&shared), ["kubectl/Apply", "kubectl-client-side-apply/Update"]);
}

#[test]
fn force_moves_conflicting_fields() {
    let created = stored(update(None, &deployment(Some(1), "nginx:1.25"), "kubectl-client-side-apply", T1));
    let obj = apply(Some(&created), &deployment(Some(3), "nginx:1.27"), "kubectl", true, T2).unwrap();
    assert_eq!(obj["spec"]["replicas"], 3);
    let csa = &entry(&obj, "kubectl-client-side-apply")["fieldsV1"];
    let nginx = &csa["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert!(csa["f:spec"].get("f:replicas").is_none());
    assert!(nginx.get("f:image").is_none());
    assert!(nginx.get("f:name").is_some());
    assert_eq!(entry(&obj, "kubectl")["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
}

#[test]
fn conflicts_with_several_managers_are_grouped() {
    let live = stored(apply(None, &deployment(Some(1), "nginx:1.25"), "alpha", false, T1).unwrap());
    let mut changed = live.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    changed["metadata"]["labels"]["app"] = json!("web2");
    let live = update(Some(&live), &changed, "beta", T2);
    let mut cfg = deployment(Some(2), "nginx:1.27");
    cfg["metadata"]["labels"]["app"] = json!("web3");
    let err = apply(Some(&live), &cfg, "gamma", false, T3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 3 conflicts: conflicts with \"alpha\":\n- .spec.replicas\nconflicts with \"beta\" using apps/v1:\n- .metadata.labels.app\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
}

#[test]
fn containers_merge_by_name_and_keep_others() {
    let mut base = deployment(None, "nginx:1.25");
    base["spec"]["template"]["spec"]["containers"] = json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]);
    let live = stored(update(None, &base, "kubectl-create", T1));
    let mut cfg = deployment(None, "unused");
    cfg["spec"]["template"]["spec"]["containers"] = json!([{"name": "c", "image": "c:1"}, {"name": "b", "image": "b:1", "args": ["x"]}]);
    let obj = apply(Some(&live), &cfg, "sidecar-injector", false, T2).unwrap();
    assert_eq!(container_names(&obj), ["a", "c", "b"], "live items keep their place, applied ones follow the applied order");
    assert_eq!(obj["spec"]["template"]["spec"]["containers"][2]["args"], json!(["x"]));
    assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["image"], "a:1");
    let owned = &entry(&obj, "sidecar-injector")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"];
    assert_eq!(owned["k:{\"name\":\"b\"}"], json!({".": {}, "f:args": {}, "f:image": {}, "f:name": {}}));
    // Dropping a container it alone applied removes it; the shared one stays.
    cfg["spec"]["template"]["spec"]["containers"] = json!([]);
    let obj = apply(Some(&stored(obj)), &cfg, "sidecar-injector", false, T3).unwrap();
    assert_eq!(container_names(&obj), ["a", "b"]);
    assert!(obj["spec"]["template"]["spec"]["containers"][1].get("args").is_none());
}

#[test]
fn ports_are_keyed_by_port_and_protocol() {
    let mut cfg = deployment(None, "dns");
    cfg["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 53}, {"containerPort": 53, "protocol": "UDP"}]);
    let obj = apply(None, &cfg, "kubectl", false, T1).unwrap();
    let ports = &entry(&obj, "kubectl")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]["f:ports"];
    assert_eq!(
        ports,
        &json!({"k:{\"containerPort\":53,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}},
                "k:{\"containerPort\":53,\"protocol\":\"UDP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}})
    );
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"},
        "spec": {"selector": {"app": "dns"}, "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]}});
    let obj = apply(None, &svc, "kubectl", false, T1).unwrap();
    let f = &entry(&obj, "kubectl")["fieldsV1"]["f:spec"];
    assert_eq!(f["f:selector"], json!({}), "Service.spec.selector is an atomic map");
    assert!(f["f:ports"].get("k:{\"port\":53,\"protocol\":\"TCP\"}").is_some());
}

#[test]
fn finalizers_are_a_set_shared_by_appliers() {
    let cm = |finalizers: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": finalizers}, "data": {"k": "v"}});
    let live = stored(apply(None, &cm(json!(["a.example/x"])), "one", false, T1).unwrap());
    let two = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["b.example/y"]}});
    let live = stored(apply(Some(&live), &two, "two", false, T2).unwrap());
    assert_eq!(live["metadata"]["finalizers"], json!(["a.example/x", "b.example/y"]));
    assert_eq!(entry(&live, "two")["fieldsV1"], json!({"f:metadata": {"f:finalizers": {"v:\"b.example/y\"": {}}}}));
    let obj = apply(Some(&live), &cm(json!([])), "one", false, T3).unwrap();
    assert_eq!(obj["metadata"]["finalizers"], json!(["b.example/y"]));
    assert_eq!(obj["data"], json!({"k": "v"}));
}

#[test]
fn atomic_lists_and_maps_conflict_as_a_whole() {
    let mut cfg = deployment(None, "nginx");
    cfg["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["a", "b"]);
    cfg["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    let live = stored(apply(None, &cfg, "one", false, T1).unwrap());
    let mut other = deployment(None, "nginx");
    other["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["a"]);
    other["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "x"});
    let got = conflicts(apply(Some(&live), &other, "two", false, T2).unwrap_err());
    assert_eq!(
        got,
        [("one".to_string(), ".spec.template.spec.nodeSelector".to_string()), ("one".into(), r#".spec.template.spec.containers[name="nginx"].args"#.into())],
        "members of a level before its subtrees, as upstream iterates sets"
    );
    let obj = apply(Some(&live), &other, "two", true, T2).unwrap();
    assert_eq!(obj["spec"]["template"]["spec"]["nodeSelector"], json!({"zone": "x"}), "atomic maps are replaced, not merged");
    assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["args"], json!(["a"]));
}

#[test]
fn empty_configuration_removes_everything_applied() {
    let live = stored(apply(None, &deployment(Some(2), "nginx"), "kubectl", false, T1).unwrap());
    let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}});
    let obj = apply(Some(&live), &cfg, "kubectl", false, T2).unwrap();
    assert_eq!(obj.get("spec"), None);
    assert_eq!(obj["metadata"].get("labels"), None);
    assert_eq!(obj["metadata"]["name"], "web");
    assert_eq!(obj["metadata"].get("managedFields"), None, "an applier owning nothing has no entry");
}

#[test]
fn appliers_share_fields_with_equal_values() {
    let live = stored(apply(None, &deployment(None, "nginx"), "one", false, T1).unwrap());
    let live = stored(apply(Some(&live), &deployment(None, "nginx"), "two", false, T2).unwrap());
    // An apply that changes nothing records no time (upstream), so "two" sorts first.
    assert_eq!(managers(&live), ["two/Apply", "one/Apply"]);
    assert_eq!(entry(&live, "two").get("time"), None);
    let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
    let obj = apply(Some(&live), &cfg, "one", false, T3).unwrap();
    assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}), "still owned by two");
    assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["image"], "nginx");
    assert_eq!(managers(&obj), ["two/Apply"]);
}

#[test]
fn status_subresource_writers_are_separate_managers() {
    let live = stored(apply(None, &deployment(Some(1), "nginx"), "kubectl", false, T1).unwrap());
    let mut with_status = live.clone();
    with_status["status"] = json!({"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]});
    let main = update(Some(&live), &with_status, "kube-controller-manager", T2);
    assert_eq!(managers(&main), ["kubectl/Apply"], "status is not tracked on the main resource");
    let scope = Scope::status_subresource("apps", "v1", "Deployment");
    let obj = track_update_in(&scope, Some(&live), &with_status, "kube-controller-manager", T2);
    let e = entry(&obj, "kube-controller-manager");
    assert_eq!(e["subresource"], "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {".": {}, "f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}}, "f:replicas": {}}})
    );
    // An applier of status via the subresource conflicts with that manager.
    let status_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "status": {"replicas": 2}});
    let err = apply_in(&scope, Some(&stored(obj)), &status_cfg, "tester", false, T3).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kube-controller-manager" with subresource "status" using apps/v1: .status.replicas"#
    );
}

#[test]
fn update_on_create_records_the_created_fields() {
    // `kubectl create deployment`, after defaulting, compared with the zero Deployment as
    // upstream does: maps and list items that appear get ".", structs every Deployment has don't.
    let mut created = deployment(Some(1), "nginx");
    created["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
    created["spec"]["template"]["spec"]["containers"][0].as_object_mut().unwrap().remove("ports");
    created["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({});
    created["spec"]["template"]["spec"]["securityContext"] = json!({});
    let obj = update(None, &created, "kubectl-create", T1);
    let e = entry(&obj, "kubectl-create");
    assert_eq!((e["operation"].as_str(), e["apiVersion"].as_str(), e["time"].as_str()), (Some("Update"), Some("apps/v1"), Some(T1)));
    assert_eq!(
        e["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}},
                "f:template": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {
                        "f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}, "f:resources": {}}},
                        "f:securityContext": {}
                    }
                }
            }
        })
    );
}

#[test]
fn updates_by_one_manager_merge_and_only_changes_touch_the_time() {
    let v1 = stored(update(None, &deployment(Some(1), "nginx"), "editor", T1));
    let mut next = v1.clone();
    next["metadata"]["annotations"] = json!({"note": "x"});
    let v2 = update(Some(&v1), &next, "editor", T2);
    assert_eq!(managers(&v2), ["editor/Update"]);
    assert_eq!(entry(&v2, "editor")["time"], T2);
    assert_eq!(entry(&v2, "editor")["fieldsV1"]["f:metadata"]["f:annotations"], json!({".": {}, "f:note": {}}));
    assert_eq!(entry(&v2, "editor")["fieldsV1"]["f:spec"]["f:replicas"], json!({}), "earlier fields stay");
    let v3 = update(Some(&v2), &v2, "editor", T3);
    assert_eq!(entry(&v3, "editor")["time"], T2, "a write that changes nothing keeps the time");
}

#[test]
fn untracked_objects_start_being_tracked_at_first_apply() {
    let mut legacy = stored(deployment(Some(1), "nginx"));
    let mut changed = legacy.clone();
    changed["spec"]["replicas"] = json!(2);
    assert_eq!(update(Some(&legacy), &changed, "kubectl-edit", T1).pointer("/metadata/managedFields"), None);
    legacy["metadata"]["labels"]["extra"] = json!("1");
    let err = apply(Some(&legacy), &deployment(Some(5), "nginx"), "kubectl", false, T2).unwrap_err();
    assert_eq!(err.to_string(), r#"Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: .spec.replicas"#);
    let obj = apply(Some(&legacy), &deployment(Some(1), "nginx"), "kubectl", false, T2).unwrap();
    assert_eq!(managers(&obj), ["kubectl/Apply", "before-first-apply/Update"]);
    assert_eq!(obj["metadata"]["labels"]["extra"], "1");
}

#[test]
fn clients_may_set_or_reset_managed_fields_on_update() {
    let live = stored(apply(None, &deployment(Some(1), "nginx"), "kubectl", false, T1).unwrap());
    let mut reset = live.clone();
    reset["metadata"]["managedFields"] = json!([]);
    assert_eq!(update(Some(&live), &reset, "kubectl-edit", T2).pointer("/metadata/managedFields"), None);
    let mut edited = live.clone();
    edited["metadata"]["managedFields"] = json!([{"manager": "someone", "operation": "Update", "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
    let obj = update(Some(&live), &edited, "kubectl-edit", T2);
    assert_eq!(managers(&obj), ["someone/Update"]);
    // Garbage from the client falls back to the live managed fields.
    edited["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Delete"}]);
    assert_eq!(managers(&update(Some(&live), &edited, "kubectl-edit", T2)), ["kubectl/Apply"]);
}

#[test]
fn more_than_ten_updaters_are_capped() {
    let mut obj = stored(update(None, &deployment(Some(1), "nginx"), "creator", "2025-01-01T00:00:00Z"));
    for i in 0..12 {
        let mut next = obj.clone();
        next["metadata"]["annotations"][format!("k{i}")] = json!("v");
        obj = update(Some(&obj), &next, &format!("m{i:02}"), &format!("2025-01-01T00:01:{i:02}Z"));
    }
    let names = managers(&obj);
    assert_eq!(names.len(), 10);
    assert!(names.contains(&"ancient-changes/Update".to_string()), "{names:?}");
    assert!(!names.contains(&"creator/Update".to_string()));
}

#[test]
fn kubectl_takes_over_from_client_side_apply() {
    let mut csa = deployment(Some(1), "nginx:1.25");
    let mut annotated = csa.clone();
    annotated["metadata"].as_object_mut().unwrap().remove("namespace");
    let last = serde_json::to_string(&annotated).unwrap();
    csa["metadata"]["annotations"] = json!({ LAST_APPLIED: last });
    let live = stored(update(None, &csa, "kubectl-client-side-apply", T1));
    let obj = apply(Some(&live), &deployment(Some(3), "nginx:1.26"), "kubectl", false, T2).unwrap();
    assert_eq!(obj["spec"]["replicas"], 3);
    let annotation = obj["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap();
    assert!(annotation.ends_with('\n') && annotation.contains(r#""replicas":3"#), "{annotation}");
    // Another manager gets no such pass.
    assert!(apply(Some(&live), &deployment(Some(3), "nginx:1.26"), "other", false, T2).is_err());
    // kubectl then makes "kubectl-last-applied" an applier of the annotation, with its value.
    let keep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "annotations": {LAST_APPLIED: annotation}}});
    let kept = apply(Some(&stored(obj.clone())), &keep, "kubectl-last-applied", false, T3).unwrap();
    assert_eq!(kept["metadata"]["annotations"][LAST_APPLIED], annotation);
    assert!(managers(&kept).contains(&"kubectl-last-applied/Apply".to_string()));
}

#[test]
fn invalid_configurations_are_rejected() {
    assert!(apply(None, &json!({"apiVersion": "apps/v1", "kind": "Deployment"}), "m", false, T1).is_ok());
    let err = server_side_apply(None, &json!({"apiVersion": "v1", "kind": "Pod"}), "m", false, "apps", "v1", "Deployment", T1).unwrap_err();
    assert_eq!(err.to_string(), "invalid object type: /v1, Kind=Pod");
    assert_eq!(err.to_status()["code"], 400);
    let mut cfg = deployment(None, "nginx");
    cfg["metadata"]["managedFields"] = json!([]);
    assert_eq!(apply(None, &cfg, "m", false, T1).unwrap_err().to_string(), "metadata.managedFields must be nil");
    let mut cfg = deployment(None, "nginx");
    cfg["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
    assert_eq!(
        apply(None, &cfg, "m", false, T1).unwrap_err().to_string(),
        r#"failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.template.spec.containers: element 0: associative list with keys has an element that omits all key fields ["name"] (and doesn't have default values for any key fields)"#
    );
    cfg["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
    let err = apply(None, &cfg, "m", false, T1).unwrap_err().to_string();
    assert!(err.ends_with(r#".spec.template.spec.containers: duplicate entries for key [name="a"]"#), "{err}");
    assert!(matches!(apply(None, &json!([1]), "m", false, T1), Err(ApplyError::Invalid(_))));
    let mut deep = json!("leaf");
    for _ in 0..600 {
        deep = json!({ "x": deep });
    }
    let mut cfg = deployment(None, "nginx");
    cfg["spec"]["deep"] = deep;
    assert!(apply(None, &cfg, "m", false, T1).unwrap_err().to_string().contains("nested more than"));
    assert_eq!(update(None, &cfg, "m", T1).pointer("/metadata/managedFields"), None, "too deep to track: left as is");
}

#[test]
fn managed_fields_are_sorted_apply_first_then_by_time() {
    let live = stored(update(None, &deployment(Some(1), "nginx"), "zeta", T2));
    let mut next = live.clone();
    next["metadata"]["annotations"] = json!({"a": "b"});
    let live = stored(update(Some(&live), &next, "alpha", T3));
    let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"x": "y"}}});
    let obj = apply(Some(&live), &cfg, "late", false, T1).unwrap();
    assert_eq!(managers(&obj), ["late/Apply", "zeta/Update", "alpha/Update"]);
}

#[test]
fn noop_apply_keeps_the_object_and_time() {
    let live = stored(apply(None, &deployment(Some(1), "nginx"), "kubectl", false, T1).unwrap());
    let again = apply(Some(&live), &deployment(Some(1), "nginx"), "kubectl", false, T2).unwrap();
    assert_eq!(again, live);
}

#[test]
fn applying_null_owns_and_unsets_a_field() {
    let live = stored(apply(None, &deployment(Some(2), "nginx"), "kubectl", false, T1).unwrap());
    let mut cfg = deployment(None, "nginx");
    cfg["spec"]["replicas"] = Value::Null;
    let obj = apply(Some(&live), &cfg, "kubectl", false, T2).unwrap();
    assert!(obj["spec"].get("replicas").is_none());
    assert_eq!(entry(&obj, "kubectl")["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
}

#[test]
fn custom_resources_without_schema_are_deduced() {
    let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a": "b"}},
        "spec": {"size": 3, "tags": ["x", "y"], "config": {"k": "v"}}});
    let obj = apply(None, &cr, "kubectl", false, T1).unwrap();
    assert_eq!(
        entry(&obj, "kubectl")["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {".": {}, "f:config": {".": {}, "f:k": {}}, "f:size": {}, "f:tags": {}}})
    );
}

#[test]
fn custom_resources_with_a_crd_schema_merge_by_key() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
            "items": {"type": "object", "properties": {"id": {"type": "integer"}, "v": {"type": "string"}}}},
        "labels": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}}}},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}});
    let mut scope = Scope::main_resource("example.com", "v1", "Widget").with_schema(Arc::new(TypeSchema::from_openapi_v3(&schema)));
    scope.reset_fields = vec![vec!["status".into()]];
    let cr = |items: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"items": items, "labels": {"a": "b"}}});
    let live = stored(apply_in(&scope, None, &cr(json!([{"id": 1, "v": "a"}])), "one", false, T1).unwrap());
    assert_eq!(entry(&live, "one")["fieldsV1"], json!({"f:spec": {"f:items": {"k:{\"id\":1}": {".": {}, "f:id": {}, "f:v": {}}}, "f:labels": {}}}));
    let two = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"items": [{"id": 2, "v": "b"}]}});
    let obj = apply_in(&scope, Some(&live), &two, "two", false, T2).unwrap();
    assert_eq!(obj["spec"]["items"], json!([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]));
}

/// A small deterministic generator of JSON values shaped like Kubernetes objects.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn value(&mut self, depth: u32) -> Value {
        const KEYS: &[&str] = &[
            "metadata", "spec", "status", "name", "labels", "containers", "ports", "containerPort", "protocol", "image", "finalizers",
            "managedFields", "template", "replicas", "selector", "args", "env", "value", "f:spec", "k:{\"name\":1}", ".", "fieldsV1",
            "operation", "apiVersion", "uid",
        ];
        let leaf = depth == 0 || self.one_in(4);
        match self.next() % if leaf { 6 } else { 8 } {
            0 => Value::Null,
            1 => json!(self.one_in(3)),
            2 => json!((self.next() % 100) as i64 - 50),
            3 => json!(self.next() as f64 / 7.0),
            4 | 5 => json!(self.pick(&["a", "b", "nginx", "TCP", "Apply", "Update", "FieldsV1", "", "<&>"])),
            6 => Value::Array((0..self.next() % 4).map(|_| self.value(depth - 1)).collect()),
            _ => Value::Object((0..self.next() % 5).map(|_| (self.pick(KEYS).to_string(), self.value(depth - 1))).collect()),
        }
    }

    fn object(&mut self, api_version: &str, kind: &str) -> Value {
        let mut v = self.value(6);
        if !v.is_object() || !self.one_in(5) {
            v = json!({"spec": v, "metadata": {"name": "x", "labels": self.value(2)}});
        }
        if !self.one_in(8) {
            v["apiVersion"] = json!(api_version);
            v["kind"] = json!(kind);
        }
        v
    }
}

#[test]
fn generated_inputs_never_panic() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let kinds = [("apps", "v1", "Deployment"), ("", "v1", "Pod"), ("", "v1", "Service"), ("example.com", "v1", "Widget")];
    for round in 0..3000 {
        let (group, version, kind) = kinds[round % kinds.len()];
        let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        let mut live = g.object(&gv, kind);
        if g.one_in(3) && live["metadata"].is_object() {
            live["metadata"]["managedFields"] = g.value(4);
        }
        let mut live = Some(live).filter(|_| !g.one_in(4));
        for step in 0..3 {
            let now = format!("2025-01-01T00:00:0{step}Z");
            let cfg = g.object(&gv, kind);
            let manager = g.pick(&["kubectl", "a", "b", ""]);
            match server_side_apply(live.as_ref(), &cfg, manager, g.one_in(2), group, version, kind, &now) {
                Ok(obj) => {
                    assert!(decode_managed(&obj).is_ok(), "apply produced undecodable managed fields: {obj}");
                    live = Some(obj);
                }
                Err(e) => {
                    let _ = e.to_status();
                }
            }
            let new = g.object(&gv, kind);
            let tracked = track_update(live.as_ref(), &new, manager, group, version, kind, &now);
            assert!(decode_managed(&tracked).is_ok(), "update produced undecodable managed fields: {tracked}");
        }
    }
}
