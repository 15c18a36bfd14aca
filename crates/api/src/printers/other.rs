//! Printers for `networking.k8s.io`, `rbac.authorization.k8s.io`, `coordination.k8s.io`,
//! `storage.k8s.io` and `discovery.k8s.io`.

use jiff::Timestamp;
use serde_json::Value;

use super::corev1::load_balancer_ingress;
use super::labels::format_label_selector;
use super::{col, docs, s, wide, Column, AGE, J, NAME};

pub(super) const INGRESS: &[Column] = &[
    NAME,
    col("Class", "string", "The name of the IngressClass resource that should be used for additional configuration"),
    col("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
    col("Address", "string", "Address is a list containing ingress points for the load-balancer"),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

/// `formatHosts`: up to three rule hosts, `*` when none, `+ N more...` counting rules.
fn ingress_hosts(rules: J<'_>) -> String {
    const MAX: usize = 3;
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules.items() {
        if list.len() == MAX {
            more = true;
        }
        let host = rule.get("host").str();
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".into();
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", rules.list().len() - MAX)
    } else {
        ret
    }
}

pub(super) fn ingress(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let spec = o.get("spec");
    let class = spec.get("ingressClassName");
    let class = if class.present() { class.str() } else { "<none>" };
    let ports = if spec.get("tls").list().is_empty() { "80" } else { "80, 443" };
    vec![
        s(o.name()),
        s(class),
        s(ingress_hosts(spec.get("rules"))),
        s(load_balancer_ingress(o.get("status.loadBalancer.ingress"))),
        s(ports),
        s(o.age(now)),
    ]
}

pub(super) const INGRESS_CLASS: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller that is responsible for handling this class"),
    col("Parameters", "string", "A reference to a resource with additional parameters"),
    AGE,
];

pub(super) fn ingress_class(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let params = o.get("spec.parameters");
    let parameters = if params.present() {
        let group = params.get("apiGroup");
        let kind = params.get("kind").str();
        let kind = if group.present() { format!("{kind}.{}", group.str()) } else { kind.to_string() };
        format!("{kind}/{}", params.get("name").str())
    } else {
        "<none>".into()
    };
    vec![s(o.name()), s(o.get("spec.controller").str()), s(parameters), s(o.age(now))]
}

pub(super) const NETWORK_POLICY: &[Column] =
    &[NAME, col("Pod-Selector", "string", docs::EXTENSIONS_V1BETA1_NETWORKPOLICYSPEC_PODSELECTOR), AGE];

pub(super) fn network_policy(o: J<'_>, now: Timestamp) -> Vec<Value> {
    // A non-pointer selector upstream: absent reads as empty, which prints `<none>`.
    let selector = o.get("spec.podSelector");
    let empty = Value::Object(Default::default());
    let selector = if selector.present() { selector } else { J(&empty) };
    vec![s(o.name()), s(format_label_selector(selector)), s(o.age(now))]
}

pub(super) const ROLE_BINDING: &[Column] = &[
    NAME,
    col("Role", "string", docs::RBAC_V1BETA1_ROLEBINDING_ROLEREF),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
];

pub(super) const CLUSTER_ROLE_BINDING: &[Column] = &[
    NAME,
    col("Role", "string", docs::RBAC_V1BETA1_CLUSTERROLEBINDING_ROLEREF),
    AGE,
    wide("Users", "string", "Users in the clusterRoleBinding"),
    wide("Groups", "string", "Groups in the clusterRoleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding"),
];

/// RoleBinding and ClusterRoleBinding: `Kind/name` of the role, then users, groups and
/// `namespace/name` service accounts (`rbac.SubjectsStrings`).
pub(super) fn role_binding(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for subject in o.get("subjects").items() {
        let name = subject.get("name").str();
        match subject.get("kind").str() {
            "ServiceAccount" => sas.push(format!("{}/{name}", subject.get("namespace").str())),
            "User" => users.push(name.to_string()),
            "Group" => groups.push(name.to_string()),
            _ => {}
        }
    }
    let role = o.get("roleRef");
    vec![
        s(o.name()),
        s(format!("{}/{}", role.get("kind").str(), role.get("name").str())),
        s(o.age(now)),
        s(users.join(", ")),
        s(groups.join(", ")),
        s(sas.join(", ")),
    ]
}

pub(super) const LEASE: &[Column] = &[NAME, col("Holder", "string", docs::COORDINATION_V1_LEASESPEC_HOLDERIDENTITY), AGE];

pub(super) fn lease(o: J<'_>, now: Timestamp) -> Vec<Value> {
    vec![s(o.name()), s(o.get("spec.holderIdentity").str()), s(o.age(now))]
}

pub(super) const STORAGE_CLASS: &[Column] = &[
    NAME,
    col("Provisioner", "string", docs::STORAGE_V1_STORAGECLASS_PROVISIONER),
    col("ReclaimPolicy", "string", docs::STORAGE_V1_STORAGECLASS_RECLAIMPOLICY),
    col("VolumeBindingMode", "string", docs::STORAGE_V1_STORAGECLASS_VOLUMEBINDINGMODE),
    col("AllowVolumeExpansion", "string", docs::STORAGE_V1_STORAGECLASS_ALLOWVOLUMEEXPANSION),
    AGE,
];

pub(super) fn storage_class(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let annotations = o.get("metadata.annotations");
    let default = ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
        .iter()
        .any(|key| annotations.entry(key) == Some("true"));
    let name = if default { format!("{} (default)", o.name()) } else { o.name().to_string() };
    let or = |field: &str, default: &'static str| {
        let v = o.get(field);
        if v.present() {
            v.str().to_string()
        } else {
            default.to_string()
        }
    };
    vec![
        s(name),
        s(o.get("provisioner").str()),
        s(or("reclaimPolicy", "Delete")),
        s(or("volumeBindingMode", "Immediate")),
        Value::Bool(o.get("allowVolumeExpansion").boolean()),
        s(o.age(now)),
    ]
}

pub(super) const ENDPOINT_SLICE: &[Column] = &[
    NAME,
    col("AddressType", "string", docs::DISCOVERY_V1BETA1_ENDPOINTSLICE_ADDRESSTYPE),
    col("Ports", "string", docs::DISCOVERY_V1BETA1_ENDPOINTSLICE_PORTS),
    col("Endpoints", "string", docs::DISCOVERY_V1BETA1_ENDPOINTSLICE_ENDPOINTS),
    AGE,
];

/// `listWithMoreString`: `+ N more...` past the first three, `<unset>` when empty.
fn list_with_more(list: &[String], more: bool, count: usize) -> String {
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - 3)
    } else if ret.is_empty() {
        "<unset>".into()
    } else {
        ret
    }
}

pub(super) fn endpoint_slice(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let (mut ports, mut more, mut count) = (Vec::new(), false, 0);
    for port in o.get("ports").items() {
        if ports.len() < 3 {
            ports.push(match (port.get("port"), port.get("name")) {
                (p, _) if p.present() => p.int().to_string(),
                (_, n) if n.present() => n.str().to_string(),
                _ => "*".to_string(),
            });
        } else if ports.len() == 3 {
            more = true;
        }
        count += 1;
    }
    let ports = list_with_more(&ports, more, count);
    let (mut addrs, mut more, mut count) = (Vec::new(), false, 0);
    for endpoint in o.get("endpoints").items() {
        for address in endpoint.get("addresses").items() {
            if addrs.len() < 3 {
                addrs.push(address.str().to_string());
            } else if addrs.len() == 3 {
                more = true;
            }
            count += 1;
        }
    }
    vec![s(o.name()), s(o.get("addressType").str()), s(ports), s(list_with_more(&addrs, more, count)), s(o.age(now))]
}
