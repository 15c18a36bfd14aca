//! apps, batch, autoscaling and policy printers, from upstream `printers_test.go`.

use serde_json::{json, Value};

use super::{ago, row, DAY, MIN};

fn cells(group: &str, kind: &str, obj: Value) -> Value {
    Value::Array(row(group, kind, obj))
}

fn two_containers(prefix: &str) -> Value {
    json!({"spec": {"containers": [
        {"name": format!("fake-{prefix}container1"), "image": format!("fake-{prefix}image1")},
        {"name": format!("fake-{prefix}container2"), "image": format!("fake-{prefix}image2")}]}})
}

#[test]
fn deployment_cells() {
    let d = json!({"metadata": {"name": "test1", "creationTimestamp": ago(-1)},
        "spec": {"replicas": 5, "template": two_containers(""), "selector": {"matchLabels": {"foo": "bar"}}},
        "status": {"replicas": 10, "updatedReplicas": 2, "availableReplicas": 1, "unavailableReplicas": 4}});
    assert_eq!(
        cells("apps", "Deployment", d),
        json!(["test1", "0/5", 2, 1, "0s", "fake-container1,fake-container2", "fake-image1,fake-image2", "foo=bar"])
    );
    let bare = cells("apps", "Deployment", json!({"metadata": {"name": "d"}, "spec": {"selector": {}}, "status": {"readyReplicas": 3}}));
    assert_eq!(bare, json!(["d", "3/0", 0, 0, "<unknown>", "", "", ""]));
    let bad = cells("apps", "Deployment", json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]}}}));
    assert_eq!(bad[7], "<invalid>");
}

#[test]
fn replica_and_daemon_and_stateful_sets() {
    let rs = json!({"metadata": {"name": "test1", "creationTimestamp": ago(-1)},
        "spec": {"replicas": 5, "template": two_containers(""), "selector": {"matchLabels": {"foo": "bar"}}},
        "status": {"replicas": 5, "readyReplicas": 2}});
    assert_eq!(
        cells("apps", "ReplicaSet", rs),
        json!(["test1", 5, 5, 2, "0s", "fake-container1,fake-container2", "fake-image1,fake-image2", "foo=bar"])
    );
    assert_eq!(
        cells(
            "apps",
            "ReplicaSet",
            json!({"metadata": {"name": "replicaset2"}, "spec": {"replicas": 4}, "status": {"replicas": 3, "readyReplicas": 1}})
        ),
        json!(["replicaset2", 4, 3, 1, "<unknown>", "", "", "<none>"])
    );
    let ds = json!({"metadata": {"name": "test1", "creationTimestamp": ago(-1)},
        "spec": {"template": two_containers(""), "selector": {"matchLabels": {"foo": "bar"}}},
        "status": {"currentNumberScheduled": 2, "desiredNumberScheduled": 3, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 0}});
    assert_eq!(
        cells("apps", "DaemonSet", ds),
        json!(["test1", 3, 2, 1, 2, 0, "<none>", "0s", "fake-container1,fake-container2", "fake-image1,fake-image2", "foo=bar"])
    );
    let ds = json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}}});
    assert_eq!(cells("apps", "DaemonSet", ds)[6], "kubernetes.io/os=linux");
    let sts = json!({"metadata": {"name": "test1", "creationTimestamp": ago(-1)}, "spec": {"replicas": 5, "template": two_containers("")},
        "status": {"replicas": 5, "readyReplicas": 2}});
    assert_eq!(
        cells("apps", "StatefulSet", sts),
        json!(["test1", "2/5", "0s", "fake-container1,fake-container2", "fake-image1,fake-image2"])
    );
}

#[test]
fn controller_revision_cells() {
    let cr = |owners: Value, revision: i64| {
        cells(
            "apps",
            "ControllerRevision",
            json!({"metadata": {"name": "test1", "creationTimestamp": ago(-1), "ownerReferences": owners}, "revision": revision}),
        )
    };
    assert_eq!(
        cr(json!([{"controller": true, "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "foo"}]), 1),
        json!(["test1", "daemonset.apps/foo", 1, "0s"])
    );
    assert_eq!(cr(json!([{"controller": false, "kind": "ABC", "name": "foo"}]), 2), json!(["test1", "<none>", 2, "0s"]));
    assert_eq!(cr(json!([]), 3), json!(["test1", "<none>", 3, "0s"]));
    assert_eq!(cr(Value::Null, 4), json!(["test1", "<none>", 4, "0s"]));
    assert_eq!(cr(json!([{"controller": true, "apiVersion": "v1", "kind": "Pod", "name": "p"}]), 5)[1], "pod/p");
}

#[test]
fn job_cells() {
    let job = |name: &str, created: String, spec: Value, status: Value| {
        cells("batch", "Job", json!({"metadata": {"name": name, "creationTimestamp": created}, "spec": spec, "status": status}))
    };
    let template =
        json!({"completions": 2, "template": two_containers("job-"), "selector": {"matchLabels": {"job-label": "job-label-value"}}});
    assert_eq!(
        job("job1", ago(-1), template, json!({"succeeded": 1})),
        json!([
            "job1",
            "Running",
            "1/2",
            "",
            "0s",
            "fake-job-container1,fake-job-container2",
            "fake-job-image1,fake-job-image2",
            "job-label=job-label-value"
        ])
    );
    let first5 = |v: Value| Value::Array(v.as_array().unwrap()[..5].to_vec());
    let ten_years = ago(10 * 365 * DAY);
    assert_eq!(first5(job("job2", ago(3653 * DAY), json!({}), json!({"succeeded": 0}))), json!(["job2", "Running", "0/1", "", "10y"]));
    assert_eq!(
        first5(job("job3", ten_years.clone(), json!({}), json!({"startTime": ago(-MIN), "completionTime": ago(-31 * MIN)}))),
        json!(["job3", "Running", "0/1", "30m", "10y"])
    );
    assert_eq!(
        first5(job("job4", ten_years, json!({}), json!({"startTime": ago(20 * MIN)}))),
        json!(["job4", "Running", "0/1", "20m", "10y"])
    );
    for (condition, status) in
        [("Complete", "Complete"), ("Failed", "Failed"), ("Suspended", "Suspended"), ("FailureTarget", "FailureTarget")]
    {
        let got = job("job5", ago(-1), json!({}), json!({"conditions": [{"type": condition, "status": "True"}]}));
        assert_eq!(got[1], status);
    }
    let deleting = cells("batch", "Job", json!({"metadata": {"name": "job9", "deletionTimestamp": ago(-1)}}));
    assert_eq!(first5(deleting), json!(["job9", "Terminating", "0/1", "", "<unknown>"]));
    // Complete beats a deletion; a False condition does not count; the first of a type decides.
    let done = json!({"conditions": [{"type": "Complete", "status": "True"}]});
    assert_eq!(cells("batch", "Job", json!({"metadata": {"deletionTimestamp": ago(1)}, "status": done}))[1], "Complete");
    let later_true = json!({"conditions": [{"type": "Failed", "status": "False"}, {"type": "Failed", "status": "True"}]});
    assert_eq!(job("j", ago(0), json!({}), later_true)[1], "Running");
    assert_eq!(job("j", ago(0), json!({"parallelism": 3}), json!({"succeeded": 1}))[2], "1/1 of 3");
    assert_eq!(job("j", ago(0), json!({"parallelism": 1}), json!({}))[2], "0/1");
}

#[test]
fn cron_job_cells() {
    let cj = |name: &str, created: String, time_zone: Option<&str>, last: Option<String>| {
        let mut spec = json!({"schedule": "0/5 * * * ?", "suspend": false,
            "jobTemplate": {"spec": {"completions": 2, "template": two_containers("job-"), "selector": {"matchLabels": {"a": "b"}}}}});
        if let Some(tz) = time_zone {
            spec["timeZone"] = json!(tz);
        }
        let status = match last {
            Some(t) => json!({"lastScheduleTime": t}),
            None => json!({}),
        };
        cells("batch", "CronJob", json!({"metadata": {"name": name, "creationTimestamp": created}, "spec": spec, "status": status}))
    };
    assert_eq!(
        cj("cronjob1", ago(-1), None, Some(ago(-1))),
        json!([
            "cronjob1",
            "0/5 * * * ?",
            "<none>",
            "False",
            0,
            "0s",
            "0s",
            "fake-job-container1,fake-job-container2",
            "fake-job-image1,fake-job-image2",
            "a=b"
        ])
    );
    assert_eq!(cj("cronjob1", ago(-1), Some("LOCAL"), Some(ago(-1)))[2], "LOCAL");
    let c2 = cj("cronjob2", ago(5 * MIN), None, Some(ago(30)));
    assert_eq!((c2[5].clone(), c2[6].clone()), (json!("30s"), json!("5m")));
    assert_eq!(cj("cronjob3", ago(5 * MIN), None, None)[5], "<none>");
    let unset =
        cells("batch", "CronJob", json!({"metadata": {"name": "c"}, "spec": {"schedule": "@daily"}, "status": {"active": [{}, {}]}}));
    assert_eq!(unset, json!(["c", "@daily", "<none>", "<unset>", 2, "<none>", "<unknown>", "", "", "<none>"]));
}

#[test]
fn hpa_cells() {
    let hpa = |metrics: Value, current: Value| {
        let mut spec = json!({"scaleTargetRef": {"name": "some-rc", "kind": "ReplicationController"}, "minReplicas": 2, "maxReplicas": 10});
        if !metrics.is_null() {
            spec["metrics"] = metrics;
        }
        let got = cells(
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"metadata": {"name": "some-hpa"}, "spec": spec, "status": {"currentReplicas": 4, "desiredReplicas": 5, "currentMetrics": current}}),
        );
        assert_eq!(got[0], "some-hpa");
        assert_eq!(
            (got[1].clone(), got[3].clone(), got[4].clone(), got[5].clone(), got[6].clone()),
            (json!("ReplicationController/some-rc"), json!("2"), json!(10), json!(4), json!("<unknown>"))
        );
        got[2].as_str().unwrap().to_string()
    };
    let unset = cells(
        "autoscaling",
        "HorizontalPodAutoscaler",
        json!({"metadata": {"name": "some-hpa"}, "spec": {"scaleTargetRef": {"name": "some-rc", "kind": "ReplicationController"}, "maxReplicas": 10},
            "status": {"currentReplicas": 4}}),
    );
    assert_eq!(unset, json!(["some-hpa", "ReplicationController/some-rc", "<none>", "<unset>", 10, 4, "<unknown>"]));

    let external_avg =
        json!([{"type": "External", "external": {"metric": {"name": "m"}, "target": {"type": "AverageValue", "averageValue": "100m"}}}]);
    assert_eq!(hpa(external_avg.clone(), Value::Null), "<unknown>/100m (avg)");
    assert_eq!(
        hpa(external_avg, json!([{"type": "External", "external": {"metric": {"name": "m"}, "current": {"averageValue": "50m"}}}])),
        "50m/100m (avg)"
    );
    let external = json!([{"type": "External", "external": {"metric": {"name": "m"}, "target": {"type": "Value", "value": "100m"}}}]);
    assert_eq!(hpa(external.clone(), Value::Null), "<unknown>/100m");
    assert_eq!(hpa(external, json!([{"type": "External", "external": {"current": {"value": "50m"}}}])), "50m/100m");
    let pods = json!([{"type": "Pods", "pods": {"metric": {"name": "p"}, "target": {"type": "AverageValue", "averageValue": "100m"}}}]);
    assert_eq!(hpa(pods.clone(), Value::Null), "<unknown>/100m");
    assert_eq!(hpa(pods, json!([{"type": "Pods", "pods": {"current": {"averageValue": "50m"}}}])), "50m/100m");
    let object = json!([{"type": "Object", "object": {"describedObject": {"kind": "Service", "name": "s"}, "target": {"type": "Value", "value": "100m"}}}]);
    assert_eq!(hpa(object.clone(), Value::Null), "<unknown>/100m");
    assert_eq!(hpa(object, json!([{"type": "Object", "object": {"current": {"value": "50m"}}}])), "50m/100m");
    let cpu_value = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "100m"}}}]);
    assert_eq!(hpa(cpu_value.clone(), Value::Null), "cpu: <unknown>/100m");
    assert_eq!(
        hpa(cpu_value, json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageValue": "50m"}}}])),
        "cpu: 50m/100m"
    );
    let cpu_util = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]);
    assert_eq!(hpa(cpu_util.clone(), Value::Null), "cpu: <unknown>/80%");
    assert_eq!(
        hpa(
            cpu_util,
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 50, "averageValue": "40m"}}}])
        ),
        "cpu: 50%/80%"
    );
    let container_util = json!([{"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "application",
        "target": {"type": "Utilization", "averageUtilization": 80}}}]);
    assert_eq!(hpa(container_util.clone(), Value::Null), "cpu: <unknown>/80%");
    assert_eq!(
        hpa(
            container_util,
            json!([{"type": "ContainerResource", "containerResource": {"name": "cpu", "current": {"averageUtilization": 50}}}])
        ),
        "cpu: 50%/80%"
    );
    let multiple = json!([
        {"type": "Pods", "pods": {"metric": {"name": "some-pods-metric"}, "target": {"type": "AverageValue", "averageValue": "100m"}}},
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
        {"type": "Pods", "pods": {"metric": {"name": "other-pods-metric"}, "target": {"type": "AverageValue", "averageValue": "400m"}}}]);
    let current = json!([
        {"type": "Pods", "pods": {"current": {"averageValue": "50m"}}},
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 50, "averageValue": "40m"}}}]);
    assert_eq!(hpa(multiple, current), "50m/100m, cpu: 50%/80% + 1 more...");
    assert_eq!(hpa(json!([{"type": "Mystery"}]), Value::Null), "<unknown type>");
    assert_eq!(hpa(json!([{"type": "Resource", "resource": {"name": "memory", "target": {}}}]), Value::Null), "memory: <unknown>/<auto>");
}

#[test]
fn pdb_and_scale_cells() {
    let pdb = |spec: Value| {
        cells(
            "policy",
            "PodDisruptionBudget",
            json!({"metadata": {"name": "pdb1", "namespace": "ns1", "creationTimestamp": ago(-1)}, "spec": spec, "status": {"disruptionsAllowed": 5}}),
        )
    };
    assert_eq!(pdb(json!({"minAvailable": 22})), json!(["pdb1", "22", "N/A", 5, "0s"]));
    assert_eq!(pdb(json!({"maxUnavailable": 11})), json!(["pdb1", "N/A", "11", 5, "0s"]));
    assert_eq!(pdb(json!({"maxUnavailable": "25%"}))[2], "25%");
    assert_eq!(
        cells("autoscaling", "Scale", json!({"metadata": {"name": "web"}, "spec": {"replicas": 3}, "status": {"replicas": 2}})),
        json!(["web", 3, 2, "<unknown>"])
    );
}

pub(super) fn samples() -> Vec<(&'static str, &'static str, Value)> {
    let meta = json!({"name": "x", "creationTimestamp": ago(10), "deletionTimestamp": ago(1),
        "ownerReferences": [{"controller": true, "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "s"}]});
    let template =
        json!({"metadata": {"labels": {"a": "b"}}, "spec": {"nodeSelector": {"n": "m"}, "containers": [{"name": "c", "image": "i"}]}});
    let selector = json!({"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "k", "operator": "In", "values": ["v", "w"]}]});
    let metric_target = json!({"type": "Utilization", "averageUtilization": 50, "averageValue": "1", "value": "2"});
    let metric_current = json!({"averageUtilization": 40, "averageValue": "1", "value": "2"});
    vec![
        (
            "apps",
            "Deployment",
            json!({"metadata": meta, "spec": {"replicas": 3, "selector": selector, "template": template},
            "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}}),
        ),
        (
            "apps",
            "ReplicaSet",
            json!({"metadata": meta, "spec": {"replicas": 3, "selector": selector, "template": template},
            "status": {"replicas": 2, "readyReplicas": 1}}),
        ),
        (
            "apps",
            "DaemonSet",
            json!({"metadata": meta, "spec": {"selector": selector, "template": template}, "status": {"desiredNumberScheduled": 1,
            "currentNumberScheduled": 1, "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1}}),
        ),
        ("apps", "StatefulSet", json!({"metadata": meta, "spec": {"replicas": 2, "template": template}, "status": {"readyReplicas": 1}})),
        ("apps", "ControllerRevision", json!({"metadata": meta, "revision": 3})),
        (
            "batch",
            "Job",
            json!({"metadata": meta, "spec": {"completions": 2, "parallelism": 2, "selector": selector, "template": template},
            "status": {"succeeded": 1, "startTime": ago(9), "completionTime": ago(2), "conditions": [{"type": "Complete", "status": "True"}]}}),
        ),
        (
            "batch",
            "CronJob",
            json!({"metadata": meta, "spec": {"schedule": "* * * * *", "timeZone": "UTC", "suspend": true,
            "jobTemplate": {"spec": {"selector": selector, "template": template}}}, "status": {"active": [{"name": "j"}], "lastScheduleTime": ago(5)}}),
        ),
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"metadata": meta, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"},
            "minReplicas": 1, "maxReplicas": 3, "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": metric_target}},
                {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "c", "target": metric_target}},
                {"type": "Pods", "pods": {"metric": {"name": "m"}, "target": metric_target}},
                {"type": "Object", "object": {"metric": {"name": "m"}, "target": metric_target}},
                {"type": "External", "external": {"metric": {"name": "m"}, "target": metric_target}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": metric_current}},
                {"type": "ContainerResource", "containerResource": {"name": "cpu", "current": metric_current}},
                {"type": "Pods", "pods": {"current": metric_current}},
                {"type": "Object", "object": {"current": metric_current}},
                {"type": "External", "external": {"current": metric_current}}]}}),
        ),
        ("autoscaling", "Scale", json!({"metadata": meta, "spec": {"replicas": 1}, "status": {"replicas": 1}})),
        (
            "policy",
            "PodDisruptionBudget",
            json!({"metadata": meta, "spec": {"minAvailable": 1, "maxUnavailable": "50%"}, "status": {"disruptionsAllowed": 1}}),
        ),
    ]
}
