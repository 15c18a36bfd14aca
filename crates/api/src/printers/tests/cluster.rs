//! Printers of the cluster-level APIs (admission, certificates, flow control, node, scheduling,
//! CSI storage, service CIDRs and IP addresses, component statuses), from upstream's printers.

use serde_json::{json, Value};

use super::super::{cells as raw_cells, columns};
use super::{ago, now, row, DAY, MIN};

fn cells(group: &str, kind: &str, obj: Value) -> Value {
    Value::Array(row(group, kind, obj))
}

fn names(group: &str, kind: &str) -> Vec<&'static str> {
    columns(group, kind).iter().map(|c| c.name).collect()
}

const ADM: &str = "admissionregistration.k8s.io";
const STORAGE: &str = "storage.k8s.io";
const FC: &str = "flowcontrol.apiserver.k8s.io";

#[test]
fn column_headers_match_upstream() {
    assert_eq!(names("", "ComponentStatus"), ["Name", "Status", "Message", "Error"]);
    assert_eq!(names(ADM, "MutatingWebhookConfiguration"), ["Name", "Webhooks", "Age"]);
    assert_eq!(names(ADM, "ValidatingWebhookConfiguration"), ["Name", "Webhooks", "Age"]);
    assert_eq!(names(ADM, "ValidatingAdmissionPolicy"), ["Name", "Validations", "ParamKind", "Age"]);
    assert_eq!(names(ADM, "ValidatingAdmissionPolicyBinding"), ["Name", "PolicyName", "ParamRef", "Age"]);
    assert_eq!(
        names("certificates.k8s.io", "CertificateSigningRequest"),
        ["Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"]
    );
    assert_eq!(names(FC, "FlowSchema"), ["Name", "PriorityLevel", "MatchingPrecedence", "DistinguisherMethod", "Age", "MissingPL"]);
    assert_eq!(
        names(FC, "PriorityLevelConfiguration"),
        ["Name", "Type", "NominalConcurrencyShares", "Queues", "HandSize", "QueueLengthLimit", "Age"]
    );
    assert_eq!(names("networking.k8s.io", "ServiceCIDR"), ["Name", "CIDRs", "Age"]);
    assert_eq!(names("networking.k8s.io", "IPAddress"), ["Name", "ParentRef"]);
    assert_eq!(names("node.k8s.io", "RuntimeClass"), ["Name", "Handler", "Age"]);
    assert_eq!(names("scheduling.k8s.io", "PriorityClass"), ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]);
    assert_eq!(
        names(STORAGE, "CSIDriver"),
        ["Name", "AttachRequired", "PodInfoOnMount", "StorageCapacity", "TokenRequests", "RequiresRepublish", "Modes", "Age"]
    );
    assert_eq!(names(STORAGE, "CSINode"), ["Name", "Drivers", "Age"]);
    assert_eq!(names(STORAGE, "CSIStorageCapacity"), ["Name", "StorageClassName", "Capacity"]);
    assert_eq!(names(STORAGE, "VolumeAttachment"), ["Name", "Attacher", "PV", "Node", "Attached", "Age"]);
    assert_eq!(columns(STORAGE, "VolumeAttachment")[1].format, "name");
    assert!(columns(STORAGE, "CSIDriver").iter().all(|c| c.priority == 0));
}

#[test]
fn api_service_cells() {
    let reg = "apiregistration.k8s.io";
    assert_eq!(names(reg, "APIService"), ["Name", "Service", "Available", "Age"]);
    let local = json!({"metadata": {"name": "v1.apps"}, "spec": {"group": "apps", "version": "v1"}, "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}});
    let c = cells(reg, "APIService", local);
    assert_eq!((&c[1], &c[2]), (&json!("Local"), &json!("True")));
    let down = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"}, "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
        "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}});
    let c = cells(reg, "APIService", down);
    assert_eq!((&c[1], &c[2]), (&json!("kube-system/metrics-server"), &json!("False (MissingEndpoints)")));
    let fresh = json!({"metadata": {"name": "v1.x.io"}, "spec": {"service": {"namespace": "a", "name": "b"}}});
    assert_eq!(cells(reg, "APIService", fresh)[2], "Unknown");
}

#[test]
fn component_status_cells() {
    let cs = |conds: Value| cells("", "ComponentStatus", json!({"metadata": {"name": "etcd-0"}, "conditions": conds}));
    assert_eq!(cs(json!([{"type": "Healthy", "status": "True", "message": "ok"}])), json!(["etcd-0", "Healthy", "ok", ""]));
    assert_eq!(cs(json!([{"type": "Healthy", "status": "False", "error": "timeout"}])), json!(["etcd-0", "Unhealthy", "", "timeout"]));
    assert_eq!(cs(json!([])), json!(["etcd-0", "Unknown", "", ""]));
}

#[test]
fn admission_cells() {
    let hook = json!({"metadata": {"name": "w", "creationTimestamp": ago(5 * MIN)}, "webhooks": [{"name": "a.b.c"}, {"name": "d.e.f"}]});
    assert_eq!(cells(ADM, "MutatingWebhookConfiguration", hook.clone()), json!(["w", 2, "5m"]));
    assert_eq!(cells(ADM, "ValidatingWebhookConfiguration", json!({"metadata": {"name": "v"}})), json!(["v", 0, "<unknown>"]));
    let vap = |spec: Value| cells(ADM, "ValidatingAdmissionPolicy", json!({"metadata": {"name": "p", "creationTimestamp": ago(DAY)}, "spec": spec}));
    assert_eq!(vap(json!({"validations": [{"expression": "true"}]})), json!(["p", 1, "<unset>", "24h"]));
    assert_eq!(vap(json!({"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}})), json!(["p", 0, "v1/ConfigMap", "24h"]));
    let binding = |pr: Value| cells(ADM, "ValidatingAdmissionPolicyBinding", json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "paramRef": pr}}))[2].clone();
    assert_eq!(binding(Value::Null), "<unset>");
    assert_eq!(binding(json!({"name": "cm"})), "*/cm");
    assert_eq!(binding(json!({"name": "cm", "namespace": "ns"})), "ns/cm");
    assert_eq!(binding(json!({"selector": {"matchLabels": {"a": "b"}}})), "a=b");
}

#[test]
fn certificate_signing_request_cells() {
    let csr = |spec: Value, status: Value| {
        cells("certificates.k8s.io", "CertificateSigningRequest", json!({"metadata": {"name": "c", "creationTimestamp": ago(10)}, "spec": spec, "status": status}))
    };
    assert_eq!(csr(json!({}), json!({})), json!(["c", "10s", "<none>", "", "<none>", "Pending"]));
    assert_eq!(
        csr(
            json!({"signerName": "example.com/s", "username": "alice", "expirationSeconds": 3600}),
            json!({"conditions": [{"type": "Approved"}, {"type": "Failed"}], "certificate": "Zm9v"})
        ),
        json!(["c", "10s", "example.com/s", "alice", "60m", "Approved,Failed,Issued"])
    );
    assert_eq!(csr(json!({}), json!({"conditions": [{"type": "Approved"}, {"type": "Denied"}]}))[5], "Denied");
}

#[test]
fn flowcontrol_cells() {
    let fs = json!({"metadata": {"name": "f", "creationTimestamp": ago(10)}, "spec": {"priorityLevelConfiguration": {"name": "pl"}, "matchingPrecedence": 500, "distinguisherMethod": {"type": "ByUser"}}});
    assert_eq!(cells(FC, "FlowSchema", fs), json!(["f", "pl", 500, "ByUser", "10s", "?"]));
    let dangling = json!({"spec": {}, "status": {"conditions": [{"type": "Dangling", "status": "False"}]}});
    assert_eq!(cells(FC, "FlowSchema", dangling), json!(["", "", 0, "<none>", "<unknown>", "False"]));
    let limited = json!({"metadata": {"name": "l"}, "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 30, "limitResponse": {"type": "Queue", "queuing": {"queues": 64, "handSize": 6, "queueLengthLimit": 50}}}}});
    assert_eq!(cells(FC, "PriorityLevelConfiguration", limited), json!(["l", "Limited", 30, 64, 6, 50, "<unknown>"]));
    let exempt = json!({"metadata": {"name": "exempt"}, "spec": {"type": "Exempt", "exempt": {}}});
    assert_eq!(cells(FC, "PriorityLevelConfiguration", exempt), json!(["exempt", "Exempt", "<none>", "<none>", "<none>", "<none>", "<unknown>"]));
}

#[test]
fn networking_cells() {
    let cidr = json!({"metadata": {"name": "kubernetes", "creationTimestamp": ago(10)}, "spec": {"cidrs": ["10.96.0.0/12", "fd00::/108"]}});
    assert_eq!(cells("networking.k8s.io", "ServiceCIDR", cidr), json!(["kubernetes", "10.96.0.0/12,fd00::/108", "10s"]));
    // Three cells for two columns, as upstream.
    let ip = |parent: Value| raw_cells("networking.k8s.io", "IPAddress", &json!({"metadata": {"name": "10.96.0.1", "creationTimestamp": ago(10)}, "spec": {"parentRef": parent}}), now());
    assert_eq!(ip(json!({"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"})), [json!("10.96.0.1"), json!("services/default/kubernetes"), json!("10s")]);
    assert_eq!(ip(json!({"group": "Example.com", "resource": "Widgets", "name": "w"}))[1], "widgets.example.com/w");
    assert_eq!(ip(Value::Null)[1], "<none>");
}

#[test]
fn node_and_scheduling_cells() {
    let rc = json!({"metadata": {"name": "gvisor", "creationTimestamp": ago(10)}, "handler": "runsc"});
    assert_eq!(cells("node.k8s.io", "RuntimeClass", rc), json!(["gvisor", "runsc", "10s"]));
    let pc = json!({"metadata": {"name": "system-node-critical", "creationTimestamp": ago(10)}, "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"});
    assert_eq!(cells("scheduling.k8s.io", "PriorityClass", pc), json!(["system-node-critical", 2000001000, false, "10s", "PreemptLowerPriority"]));
    let pc = json!({"metadata": {"name": "d"}, "value": -5, "globalDefault": true});
    assert_eq!(cells("scheduling.k8s.io", "PriorityClass", pc), json!(["d", -5, true, "<unknown>", ""]));
}

#[test]
fn storage_cells() {
    let driver = |spec: Value| cells(STORAGE, "CSIDriver", json!({"metadata": {"name": "d", "creationTimestamp": ago(10)}, "spec": spec}));
    assert_eq!(driver(json!({})), json!(["d", true, false, false, "<unset>", false, "<none>", "10s"]));
    assert_eq!(
        driver(json!({"attachRequired": false, "podInfoOnMount": true, "storageCapacity": true, "tokenRequests": [{"audience": "a"}, {"audience": "b"}], "requiresRepublish": true, "volumeLifecycleModes": ["Persistent", "Ephemeral"]})),
        json!(["d", false, true, true, "a,b", true, "Persistent,Ephemeral", "10s"])
    );
    assert_eq!(driver(json!({"tokenRequests": []}))[4], "");
    let node = json!({"metadata": {"name": "n"}, "spec": {"drivers": [{"name": "a"}, {"name": "b"}]}});
    assert_eq!(cells(STORAGE, "CSINode", node), json!(["n", 2, "<unknown>"]));
    let cap = |c: Value| cells(STORAGE, "CSIStorageCapacity", json!({"metadata": {"name": "c"}, "storageClassName": "sc", "capacity": c}));
    assert_eq!(cap(json!("1024Mi")), json!(["c", "sc", "1Gi"]));
    assert_eq!(cap(Value::Null), json!(["c", "sc", "<unset>"]));
    let va = json!({"metadata": {"name": "va", "creationTimestamp": ago(10)}, "spec": {"attacher": "csi.example.com", "source": {"persistentVolumeName": "pv1"}, "nodeName": "n1"}, "status": {"attached": true}});
    assert_eq!(cells(STORAGE, "VolumeAttachment", va), json!(["va", "csi.example.com", "pv1", "n1", true, "10s"]));
}

/// Samples for the shape-robustness test (IPAddress is checked apart: upstream prints one
/// more cell than it has columns).
pub(super) fn samples() -> Vec<(&'static str, &'static str, Value)> {
    let meta = json!({"name": "x", "creationTimestamp": ago(10)});
    vec![
        ("", "ComponentStatus", json!({"metadata": meta, "conditions": [{"type": "Healthy", "status": "True", "message": "ok", "error": "e"}]})),
        (ADM, "MutatingWebhookConfiguration", json!({"metadata": meta, "webhooks": [{"name": "a.b.c"}]})),
        (ADM, "ValidatingWebhookConfiguration", json!({"metadata": meta, "webhooks": [{"name": "a.b.c"}]})),
        (ADM, "ValidatingAdmissionPolicy", json!({"metadata": meta, "spec": {"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}, "validations": [{}]}})),
        (ADM, "ValidatingAdmissionPolicyBinding", json!({"metadata": meta, "spec": {"policyName": "p", "paramRef": {"name": "n", "namespace": "ns", "selector": {"matchLabels": {"a": "b"}}}}})),
        ("certificates.k8s.io", "CertificateSigningRequest", json!({"metadata": meta, "spec": {"signerName": "a/b", "username": "u", "expirationSeconds": 600}, "status": {"conditions": [{"type": "Approved"}], "certificate": "x"}})),
        (FC, "FlowSchema", json!({"metadata": meta, "spec": {"priorityLevelConfiguration": {"name": "p"}, "matchingPrecedence": 1, "distinguisherMethod": {"type": "ByUser"}}, "status": {"conditions": [{"type": "Dangling", "status": "True"}]}})),
        (FC, "PriorityLevelConfiguration", json!({"metadata": meta, "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 1, "limitResponse": {"queuing": {"queues": 1, "handSize": 1, "queueLengthLimit": 1}}}}})),
        ("networking.k8s.io", "ServiceCIDR", json!({"metadata": meta, "spec": {"cidrs": ["10.0.0.0/8"]}})),
        ("node.k8s.io", "RuntimeClass", json!({"metadata": meta, "handler": "h"})),
        ("scheduling.k8s.io", "PriorityClass", json!({"metadata": meta, "value": 1, "globalDefault": true, "preemptionPolicy": "Never"})),
        (STORAGE, "CSIDriver", json!({"metadata": meta, "spec": {"attachRequired": true, "tokenRequests": [{"audience": "a"}], "volumeLifecycleModes": ["Persistent"]}})),
        (STORAGE, "CSINode", json!({"metadata": meta, "spec": {"drivers": [{"name": "d"}]}})),
        (STORAGE, "CSIStorageCapacity", json!({"metadata": meta, "storageClassName": "s", "capacity": "1Gi"})),
        (STORAGE, "VolumeAttachment", json!({"metadata": meta, "spec": {"attacher": "a", "source": {"persistentVolumeName": "p"}, "nodeName": "n"}, "status": {"attached": true}})),
    ]
}

#[test]
fn ip_address_never_panics() {
    for v in [Value::Null, json!(1), json!("x"), json!({"spec": {"parentRef": 5}}), json!({"spec": {"parentRef": {"group": 1, "name": []}}})] {
        assert_eq!(raw_cells("networking.k8s.io", "IPAddress", &v, now()).len(), 3);
    }
}
