//! The bootstrap policy: the cluster roles and bindings every cluster starts with, as
//! upstream's `bootstrappolicy` defines them (the user-facing roles; what the system's own
//! components are bound to: the scheduler, the controller manager and its controllers' service
//! accounts, the kube-proxy, nodes through the Node authorizer; the CSR roles TLS bootstrapping
//! uses), plus the bindings kubeadm makes for joining nodes. Kept up to date at every start for
//! the objects still marked `rbac.authorization.kubernetes.io/autoupdate: "true"`.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::bootstrap_token::DEFAULT_NODE_GROUP;
use crate::error::ApiResult;
use crate::rest::{Mode, WriteOptions};
use crate::state::ApiState;

fn meta(name: &str) -> Value {
    json!({"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}})
}

fn role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name), "rules": rules})
}

fn binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(name), "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": subjects})
}

fn group(g: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g})
}

fn user(u: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u})
}

fn service_account(name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": "kube-system"})
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn named(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "resourceNames": names, "verbs": verbs})
}

/// Upstream's `eventsRule()`.
fn events() -> Value {
    rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"])
}

/// The controllers this cluster runs with their own service-account credentials (upstream's
/// `--use-service-account-credentials`), each bound to `system:controller:<name>`.
pub const CONTROLLERS: &[&str] = &["deployment-controller", "replicaset-controller", "endpoint-controller", "endpointslice-controller", "node-controller", "pod-garbage-collector"];

/// The rules of upstream's `system:controller:<name>` roles for the controllers in [`CONTROLLERS`].
fn controller_rules(name: &str) -> Value {
    let read = ["get", "list", "watch"];
    match name {
        "deployment-controller" => json!([
            rule(&["apps", "extensions"], &["deployments"], &["get", "list", "watch", "update"]),
            rule(&["apps", "extensions"], &["deployments/status"], &["update"]),
            rule(&["apps", "extensions"], &["deployments/finalizers"], &["update"]),
            rule(&["apps", "extensions"], &["replicasets"], &["get", "list", "watch", "create", "update", "patch", "delete"]),
            rule(&[""], &["pods"], &["get", "list", "watch", "update"]),
            events(),
        ]),
        "replicaset-controller" => json!([
            rule(&["apps", "extensions"], &["replicasets"], &["get", "list", "watch", "update"]),
            rule(&["apps", "extensions"], &["replicasets/status"], &["update"]),
            rule(&["apps", "extensions"], &["replicasets/finalizers"], &["update"]),
            rule(&[""], &["pods"], &["list", "watch", "patch", "create", "delete"]),
            events(),
        ]),
        "endpoint-controller" => json!([
            rule(&[""], &["services", "pods"], &read),
            rule(&[""], &["endpoints"], &["get", "list", "create", "update", "delete"]),
            rule(&[""], &["endpoints/restricted"], &["create"]),
            events(),
        ]),
        // The taint eviction controller writes with this role too, as upstream's.
        "node-controller" => json!([
            rule(&[""], &["nodes"], &["get", "list", "watch", "update", "delete", "patch"]),
            rule(&[""], &["nodes/status"], &["patch", "update"]),
            rule(&[""], &["pods/status"], &["patch", "update"]),
            rule(&[""], &["pods"], &["list", "watch", "get", "delete"]),
            events(),
        ]),
        "pod-garbage-collector" => json!([
            rule(&[""], &["pods"], &["list", "watch", "delete"]),
            rule(&[""], &["nodes"], &["get", "list", "watch"]),
            rule(&[""], &["pods/status"], &["patch"]),
        ]),
        _ => json!([
            rule(&[""], &["services", "pods", "nodes"], &read),
            rule(&[""], &["services/finalizers"], &["update"]),
            rule(&["discovery.k8s.io"], &["endpointslices"], &["get", "list", "create", "update", "delete"]),
            events(),
        ]),
    }
}

/// The cluster roles and bindings every cluster has.
pub(super) fn bootstrap_policy() -> (Vec<Value>, Vec<Value>) {
    let read = ["get", "list", "watch"];
    let write = ["create", "delete", "deletecollection", "patch", "update"];
    let all_rw: Vec<&str> = read.iter().chain(write.iter()).copied().collect();
    let workloads = json!([
        {"apiGroups": [""], "resources": ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "pods/log", "pods/status", "replicationcontrollers", "replicationcontrollers/scale", "services", "services/proxy", "endpoints", "persistentvolumeclaims", "configmaps", "secrets", "serviceaccounts", "events"], "verbs": all_rw},
        {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale", "deployments/rollback", "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale", "daemonsets", "controllerrevisions"], "verbs": all_rw},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": all_rw},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": all_rw},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": all_rw},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": all_rw},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": all_rw},
    ]);
    let view = json!([
        {"apiGroups": [""], "resources": ["pods", "pods/log", "pods/status", "replicationcontrollers", "replicationcontrollers/scale", "services", "endpoints", "persistentvolumeclaims", "configmaps", "serviceaccounts", "events", "namespaces", "limitranges", "resourcequotas"], "verbs": read},
        {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale", "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale", "daemonsets", "controllerrevisions"], "verbs": read},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": read},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": read},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": read},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": read},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
    ]);
    let mut admin = workloads.as_array().cloned().unwrap_or_default();
    admin.push(json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": all_rw}));
    admin.push(json!({"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]}));
    let review = json!({"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]});
    let whoami = json!({"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]});
    let approver = |signer: &str| role(
        &format!("system:certificates.k8s.io:{signer}-approver"),
        json!([named(&["certificates.k8s.io"], &["signers"], &[&format!("kubernetes.io/{signer}")], &["approve"])]),
    );
    let mut roles = vec![
        role("cluster-admin", json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}])),
        role("admin", Value::Array(admin)),
        role("edit", workloads),
        role("view", view),
        role("system:discovery", json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/openapi", "/openapi/*", "/version", "/version/"], "verbs": ["get"]}])),
        role("system:basic-user", json!([review, whoami])),
        role("system:public-info-viewer", json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}])),
        // For Prometheus: users in the group `system:monitoring` may scrape `/metrics`.
        role("system:monitoring", json!([{"nonResourceURLs": ["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"], "verbs": ["get"]}])),
        // Bound to no one: nodes get these rules from the Node authorizer, scoped to their
        // own objects.
        role("system:node", Value::Array(crate::node_authz::node_rules())),
        role("system:node-proxier", json!([
            rule(&[""], &["services", "endpoints"], &["list", "watch"]),
            rule(&[""], &["nodes"], &["get", "list", "watch"]),
            events(),
            rule(&["discovery.k8s.io"], &["endpointslices"], &["list", "watch"]),
        ])),
        role("system:kube-dns", json!([rule(&[""], &["endpoints", "services"], &["list", "watch"])])),
        // What a NetworkPolicy enforcer reads (kube-router's and calico-node's roles): every
        // node enforces policies, and peers are pods of any node selected by their namespace.
        role("timonier:network-policy", json!([
            rule(&["networking.k8s.io"], &["networkpolicies"], &["list", "watch"]),
            rule(&[""], &["pods", "namespaces"], &["list", "watch"]),
        ])),
        role("system:node-bootstrapper", json!([rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"])])),
        role("system:certificates.k8s.io:certificatesigningrequests:nodeclient", json!([rule(&["certificates.k8s.io"], &["certificatesigningrequests/nodeclient"], &["create"])])),
        role("system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", json!([rule(&["certificates.k8s.io"], &["certificatesigningrequests/selfnodeclient"], &["create"])])),
        approver("kube-apiserver-client"),
        approver("kube-apiserver-client-kubelet"),
        approver("kubelet-serving"),
        approver("legacy-unknown"),
        role("system:kube-scheduler", json!([
            events(),
            rule(&["coordination.k8s.io"], &["leases"], &["create"]),
            named(&["coordination.k8s.io"], &["leases"], &["kube-scheduler"], &["get", "update"]),
            rule(&[""], &["endpoints"], &["create"]),
            named(&[""], &["endpoints"], &["kube-scheduler"], &["get", "update"]),
            rule(&[""], &["nodes"], &read),
            rule(&[""], &["pods"], &["delete", "get", "list", "watch"]),
            rule(&[""], &["bindings", "pods/binding"], &["create"]),
            rule(&[""], &["pods/status"], &["patch", "update"]),
            rule(&[""], &["replicationcontrollers", "services"], &read),
            rule(&["apps", "extensions"], &["replicasets"], &read),
            rule(&["apps"], &["statefulsets"], &read),
            rule(&["policy"], &["poddisruptionbudgets"], &read),
            rule(&[""], &["persistentvolumeclaims", "persistentvolumes"], &read),
            rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
            rule(&["storage.k8s.io"], &["csinodes"], &read),
            rule(&[""], &["namespaces"], &read),
            rule(&["storage.k8s.io"], &["csidrivers"], &read),
            rule(&["storage.k8s.io"], &["csistoragecapacities"], &read),
        ])),
        role("system:volume-scheduler", json!([
            rule(&[""], &["persistentvolumes"], &["get", "list", "patch", "update", "watch"]),
            rule(&["storage.k8s.io"], &["storageclasses"], &read),
            rule(&[""], &["persistentvolumeclaims"], &["get", "list", "patch", "update", "watch"]),
        ])),
        role("system:kube-controller-manager", json!([
            events(),
            rule(&["coordination.k8s.io"], &["leases"], &["create"]),
            named(&["coordination.k8s.io"], &["leases"], &["kube-controller-manager"], &["get", "update"]),
            rule(&[""], &["endpoints"], &["create"]),
            named(&[""], &["endpoints"], &["kube-controller-manager"], &["get", "update"]),
            rule(&[""], &["secrets", "serviceaccounts"], &["create"]),
            rule(&[""], &["secrets"], &["delete"]),
            rule(&[""], &["configmaps", "namespaces", "secrets", "serviceaccounts"], &["get"]),
            rule(&[""], &["secrets", "serviceaccounts"], &["update"]),
            rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
            rule(&["*"], &["*"], &["list", "watch"]),
            rule(&[""], &["serviceaccounts/token"], &["create"]),
        ])),
        // Delegated authentication and authorization, as extension API servers (metrics-server)
        // are bound to: both reviews are non-mutating creates.
        role("system:auth-delegator", json!([
            {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
        ])),
    ];
    roles.extend(CONTROLLERS.iter().map(|c| role(&format!("system:controller:{c}"), controller_rules(c))));
    let mut bindings = vec![
        binding("cluster-admin", "cluster-admin", json!([group("system:masters")])),
        binding("system:discovery", "system:discovery", json!([group("system:authenticated")])),
        binding("system:basic-user", "system:basic-user", json!([group("system:authenticated")])),
        binding("system:public-info-viewer", "system:public-info-viewer", json!([group("system:authenticated"), group("system:unauthenticated")])),
        binding("system:monitoring", "system:monitoring", json!([group("system:monitoring")])),
        binding("system:node", "system:node", Value::Null),
        binding("system:node-proxier", "system:node-proxier", json!([user("system:kube-proxy")])),
        binding("system:kube-dns", "system:kube-dns", json!([service_account("kube-dns")])),
        binding("system:kube-scheduler", "system:kube-scheduler", json!([user("system:kube-scheduler")])),
        binding("system:volume-scheduler", "system:volume-scheduler", json!([user("system:kube-scheduler")])),
        binding("system:kube-controller-manager", "system:kube-controller-manager", json!([user("system:kube-controller-manager")])),
        // kubeadm's bindings for TLS bootstrapping: token users may ask for a node client
        // certificate, which is approved for them, and nodes may renew theirs.
        binding("timonier:kubelet-bootstrap", "system:node-bootstrapper", json!([group(DEFAULT_NODE_GROUP)])),
        binding("timonier:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", json!([group(DEFAULT_NODE_GROUP)])),
        binding("timonier:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", json!([group("system:nodes")])),
        // Every node agent embeds the Service proxy (and cluster DNS), which kube-proxy's own
        // identity would run as elsewhere: nodes hold its role too.
        binding("timonier:node-proxier", "system:node-proxier", json!([group("system:nodes")])),
        binding("timonier:network-policy", "timonier:network-policy", json!([group("system:nodes")])),
    ];
    bindings.extend(CONTROLLERS.iter().map(|c| binding(&format!("system:controller:{c}"), &format!("system:controller:{c}"), json!([service_account(c)]))));
    (roles, bindings)
}

/// Upstream's bootstrap namespaced roles, as (namespace, Role): what reads the
/// `extension-apiserver-authentication` ConfigMap (extension API servers bind to it).
pub(super) fn bootstrap_namespace_roles() -> Vec<(&'static str, Value)> {
    vec![(
        "kube-system",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "extension-apiserver-authentication-reader", "namespace": "kube-system",
                "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [crate::bootstrap::AUTHENTICATION_CONFIGMAP], "verbs": ["get", "list", "watch"]}]}),
    )]
}

/// The parts of a bootstrap object that reconciliation keeps as defined.
fn managed(obj: &Value) -> (Value, Value, Value) {
    (obj.get("rules").cloned().unwrap_or(Value::Null), obj.get("subjects").cloned().unwrap_or(Value::Null), obj.get("roleRef").cloned().unwrap_or(Value::Null))
}

/// Creates the bootstrap roles and bindings that are missing, and brings back to their
/// definition those that differ while still marked for automatic update (an administrator
/// who sets the annotation to "false" keeps their changes, as upstream).
pub async fn ensure_bootstrap_policy(state: &Arc<ApiState>) -> ApiResult<()> {
    let (roles, bindings) = bootstrap_policy();
    let namespaced = bootstrap_namespace_roles();
    let cluster = [("clusterroles", roles), ("clusterrolebindings", bindings)].map(|(p, objs)| (p, objs.into_iter().map(|o| ("", o)).collect::<Vec<_>>()));
    for (plural, objs) in cluster.into_iter().chain([("roles", namespaced)]) {
        let def = state.def("rbac.authorization.k8s.io", "v1", plural)?;
        for (ns, obj) in objs {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            match state.create(&def, ns, obj.clone(), &WriteOptions::default()).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {
                    let current = state.get(&def, ns, &name).await?;
                    let auto = current.pointer("/metadata/annotations/rbac.authorization.kubernetes.io~1autoupdate").and_then(Value::as_str) != Some("false");
                    if auto && managed(&current) != managed(&obj) {
                        tracing::info!(kind = plural, %name, "bringing a bootstrap RBAC object back to its definition");
                        let r = state
                            .guaranteed_update(&def, ns, &name, None, &WriteOptions::default(), |old| {
                                let mut new = old.clone();
                                for k in ["rules", "subjects", "roleRef"] {
                                    match obj.get(k) {
                                        Some(v) if !v.is_null() => new[k] = v.clone(),
                                        _ => {
                                            if let Some(m) = new.as_object_mut() {
                                                m.remove(k);
                                            }
                                        }
                                    }
                                }
                                Ok(new)
                            }, Mode::Main)
                            .await;
                        crate::rest::ignore_not_found(r)?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::{rule_allows, Attributes};

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str) -> Attributes {
        Attributes { verb: verb.into(), group: group.into(), resource: resource.into(), subresource: sub.into(), ..Default::default() }
    }

    #[test]
    fn delegation_roles_as_upstream() {
        let (roles, _) = bootstrap_policy();
        let delegator = roles.iter().find(|r| r["metadata"]["name"] == "system:auth-delegator").cloned().unwrap_or_default();
        assert!(delegator["rules"].as_array().is_some_and(|r| r.iter().any(|r| rule_allows(r, &attrs("create", "authentication.k8s.io", "tokenreviews", "")))));
        assert!(delegator["rules"].as_array().is_some_and(|r| r.iter().any(|r| rule_allows(r, &attrs("create", "authorization.k8s.io", "subjectaccessreviews", "")))));
        let (ns, reader) = bootstrap_namespace_roles().remove(0);
        assert_eq!((ns, reader["metadata"]["name"].as_str()), ("kube-system", Some("extension-apiserver-authentication-reader")));
        let rule = &reader["rules"][0];
        let get = |name: &str| Attributes { name: name.into(), ..attrs("get", "", "configmaps", "") };
        assert!(rule_allows(rule, &get("extension-apiserver-authentication")));
        assert!(!rule_allows(rule, &get("other")));
    }

    #[test]
    fn component_roles() {
        let (roles, bindings) = bootstrap_policy();
        let allows = |name: &str, a: &Attributes| {
            roles.iter().find(|r| r["metadata"]["name"] == name).and_then(|r| r["rules"].as_array().cloned()).unwrap_or_default().iter().any(|r| rule_allows(r, a))
        };
        assert!(allows("system:kube-scheduler", &attrs("create", "", "pods", "binding")));
        assert!(!allows("system:kube-scheduler", &attrs("create", "", "pods", "")));
        assert!(allows("system:kube-controller-manager", &attrs("create", "", "serviceaccounts", "token")));
        assert!(!allows("system:kube-controller-manager", &attrs("create", "", "pods", "")));
        assert!(allows("system:controller:replicaset-controller", &attrs("create", "", "pods", "")));
        assert!(allows("system:node-bootstrapper", &attrs("create", "certificates.k8s.io", "certificatesigningrequests", "")));
        assert!(allows("timonier:network-policy", &attrs("watch", "networking.k8s.io", "networkpolicies", "")));
        assert!(!allows("timonier:network-policy", &attrs("create", "networking.k8s.io", "networkpolicies", "")));
        let node = bindings.iter().find(|b| b["metadata"]["name"] == "system:node").cloned().unwrap_or_default();
        assert!(node["subjects"].is_null(), "nodes are authorized by the Node authorizer, not by a binding");
    }
}
