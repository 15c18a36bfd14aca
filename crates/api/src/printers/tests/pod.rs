//! Pod status, readiness and restart cases from upstream `TestPrintPod*`.

use serde_json::{json, Value};

use super::{ago, first, row, DAY, MIN};

fn pod(obj: Value) -> Value {
    first("", "Pod", obj, 5)
}

/// `n` empty containers.
fn containers(n: usize) -> Value {
    Value::Array(vec![json!({}); n])
}

fn running(ready: bool, restarts: i64) -> Value {
    json!({"ready": ready, "restartCount": restarts, "state": {"running": {}}})
}

fn restarted(v: Value, secs_ago: i64) -> Value {
    let mut v = v;
    v["lastState"] = json!({"terminated": {"finishedAt": ago(secs_ago)}});
    v
}

#[test]
fn pod_status_cases() {
    let deleted = ago(10);
    let cases: Vec<(Value, Value)> = vec![
        // Name, number of containers, restarts, container ready status.
        (
            json!({"metadata": {"name": "test1"}, "spec": {"containers": containers(2)}, "status": {"phase": "podPhase",
                "containerStatuses": [running(true, 3), {"restartCount": 3}]}}),
            json!(["test1", "1/2", "podPhase", "6", "<unknown>"]),
        ),
        // A container error overwrites the pod phase.
        (
            json!({"metadata": {"name": "test2"}, "spec": {"containers": containers(2)}, "status": {"phase": "podPhase",
                "containerStatuses": [running(true, 3), {"state": {"waiting": {"reason": "ContainerWaitingReason"}}, "restartCount": 3}]}}),
            json!(["test2", "1/2", "ContainerWaitingReason", "6", "<unknown>"]),
        ),
        // Terminated state too, and the first container overwrites the rest.
        (
            json!({"metadata": {"name": "test3"}, "spec": {"containers": containers(2)}, "status": {"phase": "podPhase",
                "containerStatuses": [
                    {"state": {"waiting": {"reason": "ContainerWaitingReason"}}, "restartCount": 3},
                    {"state": {"terminated": {"reason": "ContainerTerminatedReason"}}, "restartCount": 3}]}}),
            json!(["test3", "0/2", "ContainerWaitingReason", "6", "<unknown>"]),
        ),
        // Ready is not enough for reporting running.
        (
            json!({"metadata": {"name": "test4"}, "spec": {"containers": containers(2)}, "status": {"phase": "podPhase",
                "containerStatuses": [running(true, 3), {"ready": true, "restartCount": 3}]}}),
            json!(["test4", "1/2", "podPhase", "6", "<unknown>"]),
        ),
        // The pod's reason wins over its phase.
        (
            json!({"metadata": {"name": "test5"}, "spec": {"containers": containers(2)}, "status": {"reason": "podReason", "phase": "podPhase",
                "containerStatuses": [running(true, 3), {"ready": true, "restartCount": 3}]}}),
            json!(["test5", "1/2", "podReason", "6", "<unknown>"]),
        ),
        // One container running, one completed, no Ready condition.
        (
            json!({"metadata": {"name": "test6"}, "spec": {"containers": containers(2)}, "status": {"phase": "Running", "reason": "",
                "containerStatuses": [
                    {"ready": true, "restartCount": 3, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
                    running(true, 3)]}}),
            json!(["test6", "1/2", "NotReady", "6", "<unknown>"]),
        ),
        // The same with a Ready condition.
        (
            json!({"metadata": {"name": "test6"}, "spec": {"containers": containers(2)}, "status": {"phase": "Running", "reason": "",
                "containerStatuses": [
                    {"ready": true, "restartCount": 3, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
                    running(true, 3)],
                "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": ago(0)}]}}),
            json!(["test6", "1/2", "Running", "6", "<unknown>"]),
        ),
        // One init container restarting, one container not running.
        (
            json!({"metadata": {"name": "test7"}, "spec": {"initContainers": containers(1), "containers": containers(1)},
                "status": {"phase": "podPhase",
                "initContainerStatuses": [restarted(running(false, 3), 10)],
                "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"waiting": {}}}]}}),
            json!(["test7", "0/1", "Init:0/1", "3 (10s ago)", "<unknown>"]),
        ),
        // Two init containers, one restarting and the other not running.
        (
            json!({"metadata": {"name": "test8"}, "spec": {"initContainers": containers(2), "containers": containers(1)},
                "status": {"phase": "podPhase",
                "initContainerStatuses": [restarted(running(false, 3), 10), {"ready": false, "state": {"waiting": {}}}],
                "containerStatuses": [{"ready": false, "state": {"waiting": {}}}]}}),
            json!(["test8", "0/1", "Init:0/2", "3 (10s ago)", "<unknown>"]),
        ),
        // Two init containers, one completed without restarts and the other restarting.
        (
            json!({"metadata": {"name": "test9"}, "spec": {"initContainers": containers(2), "containers": containers(1)},
                "status": {"phase": "podPhase",
                "initContainerStatuses": [{"ready": false, "state": {"terminated": {}}}, restarted(running(false, 3), 10)],
                "containerStatuses": [{"ready": false, "state": {"waiting": {}}}]}}),
            json!(["test9", "0/1", "Init:1/2", "3 (10s ago)", "<unknown>"]),
        ),
        // Two init containers, one completed with restarts and the other restarting.
        (
            json!({"metadata": {"name": "test10"}, "spec": {"initContainers": containers(2), "containers": containers(1)},
                "status": {"phase": "podPhase",
                "initContainerStatuses": [
                    restarted(json!({"ready": false, "restartCount": 2, "state": {"terminated": {}}}), 2 * MIN),
                    restarted(running(false, 3), 10)],
                "containerStatuses": [{"ready": false, "state": {"waiting": {}}}]}}),
            json!(["test10", "0/1", "Init:1/2", "5 (10s ago)", "<unknown>"]),
        ),
        // One init container completed with restarts, one container restarting.
        (
            json!({"metadata": {"name": "test11"}, "spec": {"initContainers": containers(1), "containers": containers(1)},
                "status": {"phase": "Running",
                "initContainerStatuses": [restarted(json!({"ready": false, "restartCount": 2, "state": {"terminated": {}}}), 2 * MIN)],
                "containerStatuses": [restarted(running(false, 4), 20)]}}),
            json!(["test11", "0/1", "Running", "4 (20s ago)", "<unknown>"]),
        ),
        // One container that restarted 5d ago.
        (
            json!({"metadata": {"name": "test12"}, "spec": {"containers": containers(1)},
                "status": {"phase": "Running", "containerStatuses": [restarted(running(true, 3), 5 * DAY)]}}),
            json!(["test12", "1/1", "Running", "3 (5d ago)", "<unknown>"]),
        ),
        // One container never restarted, the other restarted 10d ago.
        (
            json!({"metadata": {"name": "test13"}, "spec": {"containers": containers(2)},
                "status": {"phase": "Running", "containerStatuses": [running(true, 0), restarted(running(true, 3), 10 * DAY)]}}),
            json!(["test13", "2/2", "Running", "3 (10d ago)", "<unknown>"]),
        ),
        // Restarts 5d and 20d ago: the latest counts.
        (
            json!({"metadata": {"name": "test14"}, "spec": {"containers": containers(2)},
                "status": {"phase": "Running", "containerStatuses": [
                    restarted(running(true, 6), 5 * DAY), restarted(running(true, 3), 20 * DAY)]}}),
            json!(["test14", "2/2", "Running", "9 (5d ago)", "<unknown>"]),
        ),
        // PodScheduled condition with reason SchedulingGated.
        (
            json!({"metadata": {"name": "test15"}, "spec": {"containers": containers(2)}, "status": {"phase": "podPhase",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}),
            json!(["test15", "0/2", "SchedulingGated", "0", "<unknown>"]),
        ),
        // Succeeded.
        (
            json!({"metadata": {"name": "test16"}, "spec": {"containers": containers(1)}, "status": {"phase": "Succeeded",
                "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}}),
            json!(["test16", "0/1", "Completed", "0", "<unknown>"]),
        ),
        // Failed.
        (
            json!({"metadata": {"name": "test17"}, "spec": {"containers": containers(1)}, "status": {"phase": "Failed",
                "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"terminated": {"reason": "Error", "exitCode": 1}}}]}}),
            json!(["test17", "0/1", "Error", "0", "<unknown>"]),
        ),
        // Succeeded and being deleted: a terminal phase is not "Terminating".
        (
            json!({"metadata": {"name": "test18", "deletionTimestamp": deleted}, "spec": {"containers": containers(1)}, "status": {"phase": "Succeeded",
                "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}}),
            json!(["test18", "0/1", "Completed", "0", "<unknown>"]),
        ),
        // Running and being deleted.
        (
            json!({"metadata": {"name": "test19", "deletionTimestamp": deleted}, "spec": {"containers": containers(1)}, "status": {"phase": "Running",
                "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"running": {}}}]}}),
            json!(["test19", "0/1", "Terminating", "0", "<unknown>"]),
        ),
        // Pending and being deleted.
        (
            json!({"metadata": {"name": "test20", "deletionTimestamp": deleted}, "spec": {"containers": containers(1)}, "status": {"phase": "Pending"}}),
            json!(["test20", "0/1", "Terminating", "0", "<unknown>"]),
        ),
        // Phases print as they are.
        (
            json!({"metadata": {"name": "test21"}, "spec": {"containers": containers(2)}, "status": {"phase": "Unknown",
                "containerStatuses": [running(true, 3), {"restartCount": 3}]}}),
            json!(["test21", "1/2", "Unknown", "6", "<unknown>"]),
        ),
    ];
    for (i, (obj, want)) in cases.into_iter().enumerate() {
        assert_eq!(pod(obj), want, "case {i}");
    }
}

#[test]
fn pod_init_and_termination_reasons() {
    let spec = json!({"initContainers": containers(1), "containers": containers(1)});
    let with_init = |status: Value| {
        pod(json!({"metadata": {"name": "p"}, "spec": spec, "status": {"phase": "Pending", "initContainerStatuses": [status]}}))
    };
    assert_eq!(with_init(json!({"restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}))[2], "Init:CrashLoopBackOff");
    assert_eq!(with_init(json!({"state": {"waiting": {"reason": "PodInitializing"}}}))[2], "Init:0/1");
    assert_eq!(with_init(json!({"state": {"terminated": {"exitCode": 137, "signal": 9}}}))[2], "Init:Signal:9");
    assert_eq!(with_init(json!({"state": {"terminated": {"exitCode": 2}}}))[2], "Init:ExitCode:2");
    assert_eq!(with_init(json!({"state": {"terminated": {"exitCode": 1, "reason": "Error"}}}))[2], "Init:Error");
    assert_eq!(with_init(json!({"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}))[2], "Pending");

    let main = |status: Value| {
        pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": containers(1)}, "status": {"phase": "Running", "containerStatuses": [status]}}),
        )
    };
    assert_eq!(main(json!({"state": {"terminated": {"exitCode": 137, "signal": 9}}}))[2], "Signal:9");
    assert_eq!(main(json!({"state": {"terminated": {"exitCode": 1}}}))[2], "ExitCode:1");
    assert_eq!(main(json!({"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}))[2], "Completed");
    assert_eq!(main(json!({"state": {"waiting": {"reason": "ImagePullBackOff"}}}))[2], "ImagePullBackOff");
    // Restarts without a recorded termination time print bare.
    assert_eq!(main(json!({"restartCount": 2, "state": {"running": {}}, "ready": true}))[3], "2");

    let lost = |deleting: bool| {
        let mut meta = json!({"name": "p"});
        if deleting {
            meta["deletionTimestamp"] = json!(ago(MIN));
        }
        pod(json!({"metadata": meta, "spec": {"containers": containers(1)}, "status": {"phase": "Running", "reason": "NodeLost"}}))
    };
    assert_eq!(lost(false)[2], "NodeLost");
    assert_eq!(lost(true)[2], "Unknown");
    // Age.
    let aged = pod(json!({"metadata": {"name": "p", "creationTimestamp": ago(3 * MIN + 5)}, "spec": {"containers": containers(1)}}));
    assert_eq!(aged[4], "3m5s");
}

#[test]
fn pod_restartable_init_containers() {
    let sidecars =
        json!([{"name": "restartable-init-1", "restartPolicy": "Always"}, {"name": "restartable-init-2", "restartPolicy": "Always"}]);
    let spec = json!({"initContainers": sidecars, "containers": containers(1)});
    let cases: Vec<(Value, Value)> = vec![
        // The first one running but not started.
        (
            json!({"metadata": {"name": "test1"}, "spec": spec, "status": {"phase": "Pending",
                "initContainerStatuses": [
                    restarted(json!({"name": "restartable-init-1", "ready": false, "restartCount": 3, "state": {"running": {}}, "started": false}), 10),
                    {"name": "restartable-init-2", "ready": false, "state": {"waiting": {}}, "started": false}],
                "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"waiting": {}}}],
                "conditions": [{"type": "Initialized", "status": "False"}]}}),
            json!(["test1", "0/3", "Init:0/2", "3 (10s ago)", "<unknown>"]),
        ),
        // The first one started, the second running but not started.
        (
            json!({"metadata": {"name": "test1"}, "spec": spec, "status": {"phase": "Pending",
                "initContainerStatuses": [
                    restarted(json!({"name": "restartable-init-1", "ready": false, "restartCount": 3, "state": {"running": {}}, "started": true}), 10),
                    {"name": "restartable-init-2", "ready": false, "state": {"running": {}}, "started": false}],
                "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"waiting": {}}}],
                "conditions": [{"type": "Initialized", "status": "False"}]}}),
            json!(["test1", "0/3", "Init:1/2", "3 (10s ago)", "<unknown>"]),
        ),
        // Both started and the container running.
        (
            json!({"metadata": {"name": "test2"}, "spec": spec, "status": {"phase": "Running",
                "initContainerStatuses": [
                    restarted(json!({"name": "restartable-init-1", "ready": false, "restartCount": 3, "state": {"running": {}}, "started": true}), 10),
                    {"name": "restartable-init-2", "ready": false, "state": {"running": {}}, "started": true}],
                "containerStatuses": [restarted(running(true, 4), 20)],
                "conditions": [{"type": "Initialized", "status": "True"}]}}),
            json!(["test2", "1/3", "Running", "7 (10s ago)", "<unknown>"]),
        ),
        // Both terminated non-zero and the container completed.
        (
            json!({"metadata": {"name": "test3"}, "spec": spec, "status": {"phase": "Succeeded",
                "initContainerStatuses": [
                    restarted(json!({"name": "restartable-init-1", "ready": false, "restartCount": 3,
                        "state": {"terminated": {"reason": "Error", "exitCode": 137}}, "started": false}), 10),
                    {"name": "restartable-init-2", "ready": false, "state": {"terminated": {"reason": "Error", "exitCode": 137}}, "started": false}],
                "containerStatuses": [restarted(json!({"ready": false, "restartCount": 4,
                    "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}), 20)],
                "conditions": [{"type": "Initialized", "status": "True"}]}}),
            json!(["test3", "0/3", "Completed", "7 (10s ago)", "<unknown>"]),
        ),
        // Statuses for containers the spec does not have.
        (
            json!({"metadata": {"name": "test4"},
                "spec": {"initContainers": [{"name": "init1", "image": "initimage"}, {"name": "sidecar1", "image": "sidecarimage", "restartPolicy": "Always"}],
                    "containers": [{"name": "container1", "image": "containerimage"}]},
                "status": {"phase": "Running",
                    "initContainerStatuses": [{"name": "initinvalid"}, {"name": "init1"}, {"name": "sidecar1"}],
                    "containerStatuses": [{"name": "containerinvalid"}, {"name": "container1"}]}}),
            json!(["test4", "0/2", "Init:0/2", "0", "<unknown>"]),
        ),
    ];
    for (i, (obj, want)) in cases.into_iter().enumerate() {
        assert_eq!(pod(obj), want, "case {i}");
    }
}

#[test]
fn pod_wide_columns() {
    let gates = json!([{"conditionType": "condition1"}, {"conditionType": "condition2"}, {"conditionType": "condition3"}]);
    let conditions = json!([{"type": "condition1", "status": "False"}, {"type": "condition2", "status": "True"}]);
    let statuses = json!([running(true, 3), {"restartCount": 3}]);
    let with_ips = |ips: Value| {
        row(
            "",
            "Pod",
            json!({"metadata": {"name": "test1"}, "spec": {"containers": containers(2), "nodeName": "test1", "readinessGates": gates},
            "status": {"conditions": conditions, "phase": "podPhase", "podIPs": ips, "containerStatuses": statuses, "nominatedNodeName": "node1"}}),
        )
    };
    let want = json!(["test1", "1/2", "podPhase", "6", "<unknown>", "1.1.1.1", "test1", "node1", "1/3"]);
    assert_eq!(Value::Array(with_ips(json!([{"ip": "1.1.1.1"}]))), want);
    assert_eq!(Value::Array(with_ips(json!([{"ip": "1.1.1.1"}, {"ip": "2001:db8::"}]))), want);
    let bare = row(
        "",
        "Pod",
        json!({"metadata": {"name": "test2"}, "spec": {"containers": containers(2), "nodeName": ""},
        "status": {"phase": "podPhase", "containerStatuses": [running(true, 3), {"state": {"waiting": {"reason": "ContainerWaitingReason"}}, "restartCount": 3}]}}),
    );
    assert_eq!(
        Value::Array(bare),
        json!(["test2", "1/2", "ContainerWaitingReason", "6", "<unknown>", "<none>", "<none>", "<none>", "<none>"])
    );
    // The singular podIP wins, as in v1 → internal conversion.
    let singular = row("", "Pod", json!({"status": {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.2"}]}}));
    assert_eq!(singular[5], "10.0.0.1");
}

#[test]
fn pod_row_conditions() {
    let conditions = |phase: &str| super::row_conditions("", "Pod", &json!({"status": {"phase": phase}}));
    assert_eq!(
        conditions("Succeeded"),
        [json!({"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."})]
    );
    assert_eq!(conditions("Failed"), [json!({"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."})]);
    assert!(conditions("Running").is_empty());
    assert!(super::row_conditions("apps", "Deployment", &json!({"status": {"phase": "Failed"}})).is_empty());
    assert!(super::row_conditions("", "Pod", &json!(null)).is_empty());
}

pub(super) fn samples() -> Vec<(&'static str, &'static str, Value)> {
    vec![(
        "",
        "Pod",
        json!({"metadata": {"name": "p", "creationTimestamp": ago(90), "deletionTimestamp": ago(1), "labels": {"a": "b"}},
            "spec": {"nodeName": "n1", "readinessGates": [{"conditionType": "c1"}],
                "initContainers": [{"name": "i1", "restartPolicy": "Always"}, {"name": "i2"}],
                "containers": [{"name": "c", "image": "img"}]},
            "status": {"phase": "Running", "reason": "NodeLost", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}],
                "nominatedNodeName": "n2",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}, {"type": "c1", "status": "True"},
                    {"type": "PodScheduled", "reason": "SchedulingGated"}],
                "initContainerStatuses": [
                    {"name": "i1", "started": true, "ready": true, "restartCount": 1, "state": {"running": {}},
                        "lastState": {"terminated": {"finishedAt": ago(5)}}},
                    {"name": "i2", "restartCount": 2, "state": {"terminated": {"exitCode": 1, "signal": 9, "reason": ""},
                        "waiting": {"reason": "CrashLoopBackOff"}}}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 3,
                    "state": {"running": {}, "waiting": {"reason": "X"}, "terminated": {"reason": "Completed", "exitCode": 0, "signal": 0}},
                    "lastState": {"terminated": {"finishedAt": ago(30)}}}]}}),
    )]
}
