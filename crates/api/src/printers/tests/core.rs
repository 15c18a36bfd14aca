//! Core group printers other than Pod, from upstream `printers_test.go`.

use serde_json::{json, Value};

use super::{ago, first, row, DAY, MIN};

fn cells(kind: &str, obj: Value) -> Value {
    Value::Array(row("", kind, obj))
}

#[test]
fn service_cells() {
    let svc =
        |name: &str, spec: Value, status: Value| cells("Service", json!({"metadata": {"name": name}, "spec": spec, "status": status}));
    let tcp = json!([{"protocol": "tcp", "port": 8888}]);
    assert_eq!(
        svc(
            "test1",
            json!({"type": "ClusterIP", "ports": [{"protocol": "tcp", "port": 2233}], "clusterIPs": ["10.9.8.7"], "selector": {"foo": "bar"}}),
            json!({})
        ),
        json!(["test1", "ClusterIP", "10.9.8.7", "<none>", "2233/tcp", "<unknown>", "foo=bar"])
    );
    assert_eq!(
        svc(
            "test2",
            json!({"type": "NodePort", "ports": [{"protocol": "tcp", "port": 8888, "nodePort": 9999}], "clusterIPs": ["10.9.8.7"]}),
            json!({})
        ),
        json!(["test2", "NodePort", "10.9.8.7", "<none>", "8888:9999/tcp", "<unknown>", "<none>"])
    );
    assert_eq!(
        svc("test3", json!({"type": "LoadBalancer", "ports": tcp, "clusterIPs": ["10.9.8.7"]}), json!({})),
        json!(["test3", "LoadBalancer", "10.9.8.7", "<pending>", "8888/tcp", "<unknown>", "<none>"])
    );
    assert_eq!(
        svc("test4", json!({"type": "LoadBalancer", "ports": tcp, "clusterIPs": ["10.9.8.7"], "externalIPs": ["80.11.12.10"]}), json!({})),
        json!(["test4", "LoadBalancer", "10.9.8.7", "80.11.12.10", "8888/tcp", "<unknown>", "<none>"])
    );
    assert_eq!(
        svc(
            "test5",
            json!({"type": "LoadBalancer", "ports": tcp, "clusterIPs": ["10.9.8.7"], "externalIPs": ["80.11.12.10"]}),
            json!({"loadBalancer": {"ingress": [{"ip": "3.4.5.6", "hostname": "test.cluster.com"}]}})
        ),
        json!(["test5", "LoadBalancer", "10.9.8.7", "3.4.5.6,80.11.12.10", "8888/tcp", "<unknown>", "<none>"])
    );
    assert_eq!(
        svc(
            "test6",
            json!({"type": "LoadBalancer", "ports": tcp, "clusterIPs": ["10.9.8.7"], "externalIPs": ["80.11.12.10", "80.11.12.11"]}),
            json!({"loadBalancer": {"ingress": [{"ip": "2.3.4.5", "hostname": "test.cluster.local"}, {"ip": "3.4.5.6", "hostname": "test.cluster.com"}]}})
        ),
        json!(["test6", "LoadBalancer", "10.9.8.7", "2.3.4.5,3.4.5.6,80.11.12.10,80.11.12.11", "8888/tcp", "<unknown>", "<none>"])
    );
    assert_eq!(
        svc("test7", json!({"type": "ExternalName", "externalName": "my.database.example.com"}), json!({})),
        json!(["test7", "ExternalName", "<none>", "my.database.example.com", "<none>", "<unknown>", "<none>"])
    );
    // Load balancers: several IPs, several ports, hostnames; the server prints wide, unclipped.
    let lb = |ports: Value, ingress: Value| {
        svc(
            "service1",
            json!({"type": "LoadBalancer", "ports": ports, "clusterIPs": ["1.2.3.4"]}),
            json!({"loadBalancer": {"ingress": ingress}}),
        )
    };
    assert_eq!(lb(json!([{"port": 80, "protocol": "TCP"}]), json!([{"ip": "2.3.4.5"}, {"ip": "3.4.5.6"}]))[3], "2.3.4.5,3.4.5.6");
    let ports = json!([{"port": 80, "protocol": "TCP"}, {"port": 8090, "protocol": "UDP"}, {"port": 8000, "protocol": "TCP"}, {"port": 7777, "protocol": "SCTP"}]);
    assert_eq!(lb(ports.clone(), json!([]))[4], "80/TCP,8090/UDP,8000/TCP,7777/SCTP");
    assert_eq!(lb(ports, json!([]))[3], "<pending>");
    assert_eq!(
        lb(
            json!([]),
            json!([{"ip": "2.3.4.5"}, {"ip": "3.4.5.6"}, {"ip": "5.6.7.8", "hostname": "host5678"}, {"hostname": "lb.example.com"}, {"ip": "2.3.4.5"}])
        )[3],
        "2.3.4.5,3.4.5.6,5.6.7.8,lb.example.com"
    );
    // clusterIP alone (before the registry fills clusterIPs), headless, unknown type.
    assert_eq!(svc("s", json!({"type": "ClusterIP", "clusterIP": "10.0.0.1"}), json!({}))[2], "10.0.0.1");
    assert_eq!(svc("s", json!({"type": "ClusterIP", "clusterIPs": ["None"]}), json!({}))[2], "None");
    assert_eq!(svc("s", json!({}), json!({}))[3], "<unknown>");
    assert_eq!(
        svc("s", json!({"type": "NodePort", "ports": [{"port": 8080, "nodePort": 31234, "protocol": "TCP"}]}), json!({}))[4],
        "8080:31234/TCP"
    );
}

#[test]
fn node_status_and_roles() {
    let node = |name: &str, unschedulable: bool, conditions: Value| {
        first(
            "",
            "Node",
            json!({"metadata": {"name": name}, "spec": {"unschedulable": unschedulable}, "status": {"conditions": conditions}}),
            5,
        )
    };
    let ready = json!([{"type": "Ready", "status": "True"}]);
    let not_ready = json!([{"type": "Ready", "status": "False"}]);
    let invalid = json!([{"type": "InvalidValue", "status": "True"}]);
    let cases = [
        (node("foo1", false, ready.clone()), "Ready"),
        (node("foo2", true, ready), "Ready,SchedulingDisabled"),
        (node("foo3", false, json!([{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "True"}])), "Ready"),
        (node("foo4", false, not_ready.clone()), "NotReady"),
        (node("foo5", true, not_ready), "NotReady,SchedulingDisabled"),
        (node("foo6", false, invalid.clone()), "Unknown"),
        (node("foo7", false, json!([{}])), "Unknown"),
        (node("foo8", true, invalid), "Unknown,SchedulingDisabled"),
        (node("foo9", true, json!([{}])), "Unknown,SchedulingDisabled"),
    ];
    for (got, status) in cases {
        assert_eq!(got[1], status);
        assert_eq!(got[2], "<none>");
        assert_eq!(got[3], "<unknown>");
        assert_eq!(got[4], "");
    }
    let roles = |labels: Value| first("", "Node", json!({"metadata": {"name": "foo", "labels": labels}}), 3)[2].clone();
    assert_eq!(
        roles(
            json!({"node-role.kubernetes.io/master": "", "node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/proxy": "", "kubernetes.io/role": "node"})
        ),
        "control-plane,master,node,proxy"
    );
    assert_eq!(roles(json!({"kubernetes.io/role": "node"})), "node");
    assert_eq!(roles(json!({"node-role.kubernetes.io/": "", "kubernetes.io/role": ""})), "<none>");
}

#[test]
fn node_wide_cells() {
    let node = |info: Value, addresses: Value| {
        cells("Node", json!({"metadata": {"name": "foo1"}, "status": {"nodeInfo": info, "addresses": addresses}}))
    };
    let external = json!([{"type": "ExternalIP", "address": "1.1.1.1"}]);
    assert_eq!(
        node(json!({"osImage": "fake-os-image"}), external.clone()),
        json!(["foo1", "Unknown", "<none>", "<unknown>", "", "<none>", "1.1.1.1", "fake-os-image", "<unknown>", "<unknown>"])
    );
    assert_eq!(
        node(json!({"kernelVersion": "fake-kernel-version", "kubeletVersion": "v1.33.1"}), external.clone()),
        json!(["foo1", "Unknown", "<none>", "<unknown>", "v1.33.1", "<none>", "1.1.1.1", "<unknown>", "fake-kernel-version", "<unknown>"])
    );
    assert_eq!(
        node(json!({"containerRuntimeVersion": "foo://1.2.3"}), external),
        json!(["foo1", "Unknown", "<none>", "<unknown>", "", "<none>", "1.1.1.1", "<unknown>", "<unknown>", "foo://1.2.3"])
    );
    let ips = node(
        json!({}),
        json!([{"type": "ExternalIP", "address": "2.2.2.2"}, {"type": "InternalIP", "address": "3.3.3.3"}, {"type": "ExternalIP", "address": "4.4.4.4"}]),
    );
    assert_eq!((ips[5].clone(), ips[6].clone()), (json!("3.3.3.3"), json!("2.2.2.2")));
}

#[test]
fn event_cells() {
    let base = |extra: Value| {
        let mut e = json!({"metadata": {"name": "event2"}, "source": {"component": "kubelet", "host": "Node1"},
            "involvedObject": {"kind": "Deployment", "name": "Deployment Name", "fieldPath": "spec.containers{foo}"},
            "reason": "Event Reason", "message": "Message Data", "type": "Warning"});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        cells("Event", e)
    };
    let want = |last: &str, first: &str, count: i64| {
        json!([
            last,
            "Warning",
            "Event Reason",
            "deployment/Deployment Name",
            "spec.containers{foo}",
            "kubelet, Node1",
            "Message Data",
            first,
            count,
            "event2"
        ])
    };
    assert_eq!(base(json!({"firstTimestamp": ago(3 * DAY), "lastTimestamp": ago(2 * DAY), "count": 6})), want("2d", "3d", 6));
    assert_eq!(base(json!({"eventTime": ago(3 * DAY), "lastTimestamp": ago(3 * DAY), "count": 1})), want("3d", "3d", 1));
    assert_eq!(base(json!({"eventTime": ago(3 * DAY), "firstTimestamp": ago(3 * DAY), "count": 1})), want("3d", "3d", 1));
    assert_eq!(base(json!({"eventTime": ago(3 * DAY), "count": 1})), want("3d", "3d", 1));
    assert_eq!(base(json!({"eventTime": ago(3 * DAY), "series": {"count": 2, "lastObservedTime": ago(2 * DAY)}})), want("2d", "3d", 2));
    assert_eq!(base(json!({"eventTime": ago(3 * DAY)})), want("3d", "3d", 1));
    // Empty source: the reporting controller and instance stand in.
    let reporting = cells(
        "Event",
        json!({"metadata": {"name": "event2"}, "reportingComponent": "kubelet", "reportingInstance": "test",
            "involvedObject": {"kind": "Pod", "name": "Pod Name"}, "message": "  Message Data\n", "type": "Normal",
            "firstTimestamp": ago(3 * DAY), "lastTimestamp": ago(2 * DAY), "count": 6}),
    );
    assert_eq!(reporting, json!(["2d", "Normal", "", "pod/Pod Name", "", "kubelet, test", "Message Data", "3d", 6, "event2"]));
    // events.k8s.io/v1 field names.
    let v1 = Value::Array(row(
        "events.k8s.io",
        "Event",
        json!({"metadata": {"name": "e"}, "regarding": {"kind": "Node", "name": "n1"}, "note": "hello", "type": "Normal",
            "reason": "Started", "reportingController": "ctl", "reportingInstance": "ctl-1", "eventTime": ago(MIN),
            "deprecatedCount": 4, "deprecatedFirstTimestamp": ago(2 * MIN), "deprecatedLastTimestamp": ago(MIN)}),
    ));
    assert_eq!(v1, json!(["60s", "Normal", "Started", "node/n1", "", "ctl, ctl-1", "hello", "2m", 4, "e"]));
}

#[test]
fn small_core_kinds() {
    let fresh = ago(-1); // 1s in the future: "0s"
    assert_eq!(
        cells("Namespace", json!({"metadata": {"name": "namespace1", "creationTimestamp": fresh}, "status": {"phase": "FooStatus"}})),
        json!(["namespace1", "FooStatus", "0s"])
    );
    assert_eq!(cells("Namespace", json!({"metadata": {"name": "namespace2"}})), json!(["namespace2", "", "<unknown>"]));
    assert_eq!(
        cells(
            "Secret",
            json!({"metadata": {"name": "secret1", "creationTimestamp": fresh}, "type": "kubernetes.io/service-account-token", "data": {"token": "c2VjcmV0"}})
        ),
        json!(["secret1", "kubernetes.io/service-account-token", 1, "0s"])
    );
    assert_eq!(
        cells("Secret", json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": ""}, "stringData": {"a": "x", "b": "y"}}))[2],
        2
    );
    assert_eq!(cells("ServiceAccount", json!({"metadata": {"name": "sa1"}, "secrets": []}))[1], 0);
    assert_eq!(cells("ServiceAccount", json!({"metadata": {"name": "sa1"}, "secrets": [{"name": "Secret1"}, {"name": "Secret2"}]}))[1], 2);
    assert_eq!(cells("ConfigMap", json!({"metadata": {"name": "configmap1"}}))[1], 0);
    assert_eq!(cells("ConfigMap", json!({"metadata": {"name": "c"}, "data": {"foo": "bar"}, "binaryData": {"bin": "YmluYXJ5"}}))[1], 2);
    assert_eq!(
        cells(
            "PodTemplate",
            json!({"metadata": {"name": "pod-template-2"}, "template": {"metadata": {"labels": {"foo": "bar"}},
            "spec": {"containers": [{"name": "fake-container1", "image": "fake-image1"}, {"name": "fake-container2", "image": "fake-image2"}]}}})
        ),
        json!(["pod-template-2", "fake-container1,fake-container2", "fake-image1,fake-image2", "foo=bar"])
    );
    assert_eq!(
        cells("PodTemplate", json!({"metadata": {"name": "t"}, "template": {"spec": {"containers": []}}})),
        json!(["t", "", "", "<none>"])
    );
}

#[test]
fn replication_controller_cells() {
    let template = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "test", "image": "test_image"}]}});
    assert_eq!(
        cells(
            "ReplicationController",
            json!({"metadata": {"name": "rc1"}, "spec": {"replicas": 5, "selector": {"a": "b"}, "template": template},
            "status": {"replicas": 3, "readyReplicas": 1}})
        ),
        json!(["rc1", 5, 3, 1, "<unknown>", "test", "test_image", "a=b"])
    );
    assert_eq!(cells("ReplicationController", json!({"spec": {"replicas": 0}})), json!(["", 0, 0, 0, "<unknown>", "", "", "<none>"]));
}

#[test]
fn endpoints_cells() {
    let ep = |subsets: Value| cells("Endpoints", json!({"metadata": {"name": "e"}, "subsets": subsets}))[1].clone();
    assert_eq!(ep(Value::Null), "<none>");
    assert_eq!(ep(json!([{"addresses": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}]}])), "1.2.3.4,5.6.7.8");
    assert_eq!(
        ep(json!([{"addresses": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}], "ports": [{"port": 8001, "protocol": "tcp"}]}])),
        "1.2.3.4:8001,5.6.7.8:8001"
    );
    assert_eq!(
        ep(
            json!([{"addresses": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}, {"ip": "9.8.7.6"}, {"ip": "6.6.6.6"}], "ports": [{"port": 8001, "protocol": "tcp"}]}])
        ),
        "1.2.3.4:8001,5.6.7.8:8001,9.8.7.6:8001 + 1 more..."
    );
    assert_eq!(ep(json!([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}])), "[fd00::1]:80");
}

#[test]
fn persistent_volume_cells() {
    let claim = json!({"name": "test", "namespace": "default"});
    let pv = |spec: Value, phase: &str| {
        cells("PersistentVolume", json!({"metadata": {"name": "test1"}, "spec": spec, "status": {"phase": phase}}))
    };
    assert_eq!(
        pv(json!({"claimRef": claim, "accessModes": ["ReadOnlyMany"], "capacity": {"storage": "4Gi"}}), "Bound"),
        json!(["test1", "4Gi", "ROX", "", "Bound", "default/test", "", "<unset>", "", "<unknown>", "<unset>"])
    );
    assert_eq!(
        pv(
            json!({"claimRef": claim, "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}, "storageClassName": "my-scn",
            "volumeAttributesClassName": "my-vacn", "persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Block"}),
            "Pending"
        ),
        json!(["test1", "10Gi", "RWO", "Retain", "Pending", "default/test", "my-scn", "my-vacn", "", "<unknown>", "Block"])
    );
    let modes = pv(
        json!({"accessModes": ["ReadWriteOncePod", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"], "capacity": {"storage": "1024Mi"}}),
        "Available",
    );
    assert_eq!((modes[1].clone(), modes[2].clone(), modes[5].clone()), (json!("1Gi"), json!("RWO,RWX,RWOP"), json!("")));
    let deleting = cells(
        "PersistentVolume",
        json!({"metadata": {"name": "v", "deletionTimestamp": ago(1),
        "annotations": {"volume.beta.kubernetes.io/storage-class": "beta"}}, "spec": {"storageClassName": "ga"}, "status": {"phase": "Bound"}}),
    );
    assert_eq!((deleting[1].clone(), deleting[4].clone(), deleting[6].clone()), (json!("0"), json!("Terminating"), json!("beta")));
}

#[test]
fn persistent_volume_claim_cells() {
    let pvc =
        |spec: Value, status: Value| cells("PersistentVolumeClaim", json!({"metadata": {"name": "test1"}, "spec": spec, "status": status}));
    let status = json!({"phase": "Bound", "accessModes": ["ReadOnlyMany"], "capacity": {"storage": "4Gi"}});
    assert_eq!(
        pvc(json!({"volumeName": "my-volume", "volumeMode": "Filesystem"}), status.clone()),
        json!(["test1", "Bound", "my-volume", "4Gi", "ROX", "", "<unset>", "<unknown>", "Filesystem"])
    );
    assert_eq!(
        pvc(json!({"volumeMode": "Filesystem"}), json!({"phase": "Lost", "accessModes": ["ReadOnlyMany"], "capacity": {"storage": "4Gi"}})),
        json!(["test1", "Lost", "", "", "", "", "<unset>", "<unknown>", "Filesystem"])
    );
    assert_eq!(
        pvc(
            json!({"volumeName": "my-volume", "storageClassName": "my-scn", "volumeAttributesClassName": "my-vacn"}),
            json!({"phase": "Pending", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}})
        ),
        json!(["test1", "Pending", "my-volume", "10Gi", "RWO", "my-scn", "my-vacn", "<unknown>", "<unset>"])
    );
}

#[test]
fn resource_quota_cells() {
    let rq = cells(
        "ResourceQuota",
        json!({"metadata": {"name": "q", "creationTimestamp": ago(10 * MIN)}, "status": {
            "hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "2Gi", "limits.cpu": "2000m", "configmaps": 5},
            "used": {"pods": "2", "requests.cpu": "500m", "limits.memory": "1024Mi"}}}),
    );
    assert_eq!(rq, json!(["q", "configmaps: 0/5, pods: 2/10, requests.cpu: 500m/1", "limits.cpu: 0/2, limits.memory: 1Gi/2Gi", "10m"]));
    assert_eq!(cells("ResourceQuota", json!({"metadata": {"name": "q"}})), json!(["q", "", "", "<unknown>"]));
}

pub(super) fn samples() -> Vec<(&'static str, &'static str, Value)> {
    let meta = json!({"name": "x", "creationTimestamp": ago(10), "deletionTimestamp": ago(1), "labels": {"kubernetes.io/role": "r", "node-role.kubernetes.io/w": ""},
        "annotations": {"volume.beta.kubernetes.io/storage-class": "s"}});
    vec![
        (
            "",
            "PodTemplate",
            json!({"metadata": meta, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}),
        ),
        (
            "",
            "ReplicationController",
            json!({"metadata": meta, "spec": {"replicas": 2, "selector": {"a": "b"}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 1, "readyReplicas": 1}}),
        ),
        (
            "",
            "Service",
            json!({"metadata": meta, "spec": {"type": "LoadBalancer", "clusterIP": "1.1.1.1", "clusterIPs": ["1.1.1.1"], "externalIPs": ["2.2.2.2"],
            "externalName": "e", "selector": {"a": "b"}, "ports": [{"port": 80, "nodePort": 30000, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "3.3.3.3", "hostname": "h"}]}}}),
        ),
        (
            "",
            "Endpoints",
            json!({"metadata": meta, "subsets": [{"addresses": [{"ip": "1.1.1.1"}], "ports": [{"port": 80}]}, {"addresses": [{"ip": "::1"}]}]}),
        ),
        (
            "",
            "Node",
            json!({"metadata": meta, "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "1.1.1.1"}], "nodeInfo": {"kubeletVersion": "v1", "osImage": "o", "kernelVersion": "k", "containerRuntimeVersion": "c"}}}),
        ),
        (
            "",
            "Event",
            json!({"metadata": meta, "firstTimestamp": ago(20), "lastTimestamp": ago(10), "eventTime": ago(20), "count": 2,
            "series": {"count": 3, "lastObservedTime": ago(5)}, "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "f"},
            "source": {"component": "c", "host": "h"}, "reportingComponent": "rc", "reportingInstance": "ri", "type": "Normal", "reason": "R", "message": "m"}),
        ),
        (
            "events.k8s.io",
            "Event",
            json!({"metadata": meta, "eventTime": ago(20), "series": {"count": 3, "lastObservedTime": ago(5)},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "n", "reportingController": "c", "reportingInstance": "i", "deprecatedSource": {"component": "x"},
            "deprecatedFirstTimestamp": ago(30), "deprecatedLastTimestamp": ago(3), "deprecatedCount": 2, "type": "Warning", "reason": "R"}),
        ),
        ("", "Namespace", json!({"metadata": meta, "status": {"phase": "Active"}})),
        ("", "Secret", json!({"metadata": meta, "type": "Opaque", "data": {"a": "Yg=="}, "stringData": {"b": "c"}})),
        ("", "ServiceAccount", json!({"metadata": meta, "secrets": [{"name": "s"}]})),
        (
            "",
            "PersistentVolume",
            json!({"metadata": meta, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "claimRef": {"namespace": "n", "name": "c"},
            "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "s", "volumeAttributesClassName": "v", "volumeMode": "Block"},
            "status": {"phase": "Bound", "reason": "r"}}),
        ),
        (
            "",
            "PersistentVolumeClaim",
            json!({"metadata": meta, "spec": {"volumeName": "v", "storageClassName": "s", "volumeAttributesClassName": "a", "volumeMode": "Block"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"]}}),
        ),
        ("", "ConfigMap", json!({"metadata": meta, "data": {"a": "b"}, "binaryData": {"c": "ZA=="}})),
        (
            "",
            "ResourceQuota",
            json!({"metadata": meta, "status": {"hard": {"limits.cpu": "1", "pods": 3}, "used": {"limits.cpu": "500m", "pods": "1"}}}),
        ),
    ]
}
