//! networking, rbac, coordination, storage and discovery printers, from upstream `printers_test.go`.

use serde_json::{json, Value};

use super::{ago, row, DAY, MIN};

fn cells(group: &str, kind: &str, obj: Value) -> Value {
    Value::Array(row(group, kind, obj))
}

const NET: &str = "networking.k8s.io";
const RBAC: &str = "rbac.authorization.k8s.io";

#[test]
fn ingress_cells() {
    let ten_years = ago(10 * 365 * DAY);
    let ing = json!({"metadata": {"name": "test1", "creationTimestamp": ten_years},
        "spec": {"ingressClassName": "foo", "defaultBackend": {"service": {"name": "default-backend", "port": {"name": "default-backend", "number": 80}}}},
        "status": {"loadBalancer": {"ingress": [{"ip": "2.3.4.5", "hostname": "localhost.localdomain"}]}}});
    assert_eq!(cells(NET, "Ingress", ing), json!(["test1", "foo", "*", "2.3.4.5", "80", "10y"]));
    let hosts = |rules: Value| cells(NET, "Ingress", json!({"spec": {"rules": rules, "tls": [{}]}}));
    let got = hosts(json!([{"host": "a.com"}, {"host": ""}, {"host": "b.com"}, {"host": "c.com"}, {"host": "d.com"}]));
    assert_eq!(
        (got[1].clone(), got[2].clone(), got[4].clone()),
        (json!("<none>"), json!("a.com,b.com,c.com + 2 more..."), json!("80, 443"))
    );
    assert_eq!(hosts(json!([{"host": "a.com"}, {}]))[2], "a.com");
}

#[test]
fn ingress_class_cells() {
    let ic = |params: Value| {
        let mut spec = json!({"controller": "example.com/controller"});
        if !params.is_null() {
            spec["parameters"] = params;
        }
        cells(NET, "IngressClass", json!({"metadata": {"name": "test1", "creationTimestamp": ago(10 * 365 * DAY)}, "spec": spec}))
    };
    assert_eq!(
        ic(json!({"kind": "customgroup", "name": "example"})),
        json!(["test1", "example.com/controller", "customgroup/example", "10y"])
    );
    assert_eq!(ic(json!({"apiGroup": "example.com", "kind": "customgroup", "name": "example"}))[2], "customgroup.example.com/example");
    assert_eq!(ic(Value::Null)[2], "<none>");
}

#[test]
fn network_policy_cells() {
    let np =
        |spec: Value| cells(NET, "NetworkPolicy", json!({"metadata": {"name": "policy1", "creationTimestamp": ago(-1)}, "spec": spec}));
    assert_eq!(np(json!({})), json!(["policy1", "<none>", "0s"]));
    assert_eq!(np(json!({"podSelector": {"matchLabels": {"foo": "bar"}}}))[1], "foo=bar");
}

#[test]
fn role_binding_cells() {
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        let basic = cells(
            RBAC,
            kind,
            json!({"metadata": {"name": "binding1", "creationTimestamp": ago(-1)},
            "subjects": [{"kind": "User", "name": "system:kube-controller-manager"}],
            "roleRef": {"kind": "Role", "name": "extension-apiserver-authentication-reader"}}),
        );
        assert_eq!(
            basic,
            json!(["binding1", "Role/extension-apiserver-authentication-reader", "0s", "system:kube-controller-manager", "", ""])
        );
        let wide = cells(
            RBAC,
            kind,
            json!({"metadata": {"name": "binding2", "creationTimestamp": ago(-1)},
            "subjects": [{"kind": "User", "name": "user-name"}, {"kind": "Group", "name": "group-name"},
                {"kind": "ServiceAccount", "name": "service-account-name", "namespace": "service-account-namespace"},
                {"kind": "User", "name": "other"}, {"kind": "Robot", "name": "r"}],
            "roleRef": {"kind": "Role", "name": "role-name"}}),
        );
        assert_eq!(
            wide,
            json!(["binding2", "Role/role-name", "0s", "user-name, other", "group-name", "service-account-namespace/service-account-name"])
        );
    }
    let descriptions: Vec<_> = super::columns(RBAC, "ClusterRoleBinding").iter().map(|c| c.description).collect();
    assert_eq!(descriptions[3], "Users in the clusterRoleBinding");
}

#[test]
fn storage_class_cells() {
    let sc = |name: &str, extra: Value, created: String| {
        let mut obj = json!({"metadata": {"name": name, "creationTimestamp": created}, "provisioner": "kubernetes.io/nfs"});
        for (k, v) in extra.as_object().unwrap() {
            obj[k] = v.clone();
        }
        cells("storage.k8s.io", "StorageClass", obj)
    };
    assert_eq!(sc("sc1", json!({}), ago(-1)), json!(["sc1", "kubernetes.io/nfs", "Delete", "Immediate", false, "0s"]));
    assert_eq!(
        sc("sc3", json!({"reclaimPolicy": "Delete"}), ago(5 * MIN)),
        json!(["sc3", "kubernetes.io/nfs", "Delete", "Immediate", false, "5m"])
    );
    assert_eq!(
        sc("sc4", json!({"reclaimPolicy": "Retain", "volumeBindingMode": "Immediate"}), ago(5 * MIN)),
        json!(["sc4", "kubernetes.io/nfs", "Retain", "Immediate", false, "5m"])
    );
    assert_eq!(
        sc("sc5", json!({"reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"}), ago(5 * MIN)),
        json!(["sc5", "kubernetes.io/nfs", "Retain", "WaitForFirstConsumer", false, "5m"])
    );
    assert_eq!(
        sc(
            "sc6",
            json!({"reclaimPolicy": "Retain", "allowVolumeExpansion": true, "volumeBindingMode": "WaitForFirstConsumer"}),
            ago(5 * MIN)
        ),
        json!(["sc6", "kubernetes.io/nfs", "Retain", "WaitForFirstConsumer", true, "5m"])
    );
    let default = sc(
        "standard",
        json!({"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}),
        ago(0),
    );
    assert_eq!(default[0], "standard (default)");
    let beta = sc(
        "old",
        json!({"metadata": {"name": "old", "annotations": {"storageclass.beta.kubernetes.io/is-default-class": "true"}}}),
        ago(0),
    );
    assert_eq!(beta[0], "old (default)");
}

#[test]
fn lease_cells() {
    let lease = |name: &str, holder: &str, created: String| {
        cells(
            "coordination.k8s.io",
            "Lease",
            json!({"metadata": {"name": name, "creationTimestamp": created}, "spec": {"holderIdentity": holder}}),
        )
    };
    assert_eq!(lease("lease1", "holder1", ago(-1)), json!(["lease1", "holder1", "0s"]));
    assert_eq!(lease("lease2", "holder2", ago(5 * MIN)), json!(["lease2", "holder2", "5m"]));
    assert_eq!(cells("coordination.k8s.io", "Lease", json!({"metadata": {"name": "l"}})), json!(["l", "", "<unknown>"]));
}

#[test]
fn endpoint_slice_cells() {
    let slice = |name: &str, created: String, address_type: &str, ports: Value, endpoints: Value| {
        cells(
            "discovery.k8s.io",
            "EndpointSlice",
            json!({"metadata": {"name": name, "creationTimestamp": created}, "addressType": address_type, "ports": ports, "endpoints": endpoints}),
        )
    };
    assert_eq!(
        slice(
            "abcslice.123",
            ago(-1),
            "IPv4",
            json!([{"name": "http", "port": 80, "protocol": "TCP"}]),
            json!([{"addresses": ["10.1.2.3", "2001:db8::1234:5678"]}])
        ),
        json!(["abcslice.123", "IPv4", "80", "10.1.2.3,2001:db8::1234:5678", "0s"])
    );
    let two = json!([{"addresses": ["10.1.2.3", "2001:db8::1234:5678"]}, {"addresses": ["10.2.3.4", "2001:db8::2345:6789"]}]);
    assert_eq!(
        slice(
            "longerslicename.123",
            ago(5 * MIN),
            "IPv6",
            json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}]),
            two.clone()
        ),
        json!(["longerslicename.123", "IPv6", "80,443", "10.1.2.3,2001:db8::1234:5678,10.2.3.4 + 1 more...", "5m"])
    );
    assert_eq!(
        slice(
            "multiportslice.123",
            ago(5 * MIN),
            "IPv4",
            json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}, {"name": "extra1", "port": 3000}, {"name": "extra2", "port": 3001}]),
            two
        ),
        json!(["multiportslice.123", "IPv4", "80,443,3000 + 1 more...", "10.1.2.3,2001:db8::1234:5678,10.2.3.4 + 1 more...", "5m"])
    );
    assert_eq!(
        slice("empty", ago(0), "FQDN", json!([{"name": "named"}, {}]), json!([])),
        json!(["empty", "FQDN", "named,*", "<unset>", "0s"])
    );
}

pub(super) fn samples() -> Vec<(&'static str, &'static str, Value)> {
    let meta = json!({"name": "x", "creationTimestamp": ago(10), "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}});
    vec![
        (
            NET,
            "Ingress",
            json!({"metadata": meta, "spec": {"ingressClassName": "c", "rules": [{"host": "a"}, {"host": "b"}, {"host": "c"}, {"host": "d"}],
            "tls": [{"hosts": ["a"]}]}, "status": {"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}, {"hostname": "h"}]}}}),
        ),
        (
            NET,
            "IngressClass",
            json!({"metadata": meta, "spec": {"controller": "c", "parameters": {"apiGroup": "g", "kind": "K", "name": "n"}}}),
        ),
        (
            NET,
            "NetworkPolicy",
            json!({"metadata": meta, "spec": {"podSelector": {"matchLabels": {"a": "b"},
            "matchExpressions": [{"key": "k", "operator": "Exists"}]}}}),
        ),
        (
            RBAC,
            "RoleBinding",
            json!({"metadata": meta, "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s", "namespace": "n"}]}),
        ),
        (
            RBAC,
            "ClusterRoleBinding",
            json!({"metadata": meta, "roleRef": {"kind": "ClusterRole", "name": "r"}, "subjects": [{"kind": "Group", "name": "g"}]}),
        ),
        ("coordination.k8s.io", "Lease", json!({"metadata": meta, "spec": {"holderIdentity": "h"}})),
        (
            "storage.k8s.io",
            "StorageClass",
            json!({"metadata": meta, "provisioner": "p", "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true}),
        ),
        (
            "discovery.k8s.io",
            "EndpointSlice",
            json!({"metadata": meta, "addressType": "IPv4",
            "ports": [{"port": 80, "name": "a"}, {"name": "b"}, {}, {"port": 1}], "endpoints": [{"addresses": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]}]}),
        ),
    ]
}
