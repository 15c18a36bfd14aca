//! Authorization: RBAC over the Roles, ClusterRoles and their bindings in the watch cache, as
//! upstream's RBAC authorizer evaluates them, plus the bootstrap roles every cluster starts
//! with and the access reviews behind `kubectl auth can-i` and `kubectl auth whoami`.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::rest::{meta_str, WriteOptions};
use crate::state::ApiState;

/// What a request does, in RBAC terms.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// For non-resource requests (`/api`, `/version`, …).
    pub path: Option<String>,
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strs(rule.get("verbs"));
    if !verbs.iter().any(|v| *v == "*" || *v == a.verb) {
        return false;
    }
    if let Some(path) = &a.path {
        return strs(rule.get("nonResourceURLs")).iter().any(|u| {
            *u == "*" || u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
        });
    }
    let groups = strs(rule.get("apiGroups"));
    if !groups.iter().any(|g| *g == "*" || *g == a.group) {
        return false;
    }
    let combined = if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
    let resources = strs(rule.get("resources"));
    let resource_ok = resources.iter().any(|r| {
        *r == "*" || *r == combined || (a.subresource.is_empty() && *r == a.resource) || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
    });
    if !resource_ok {
        return false;
    }
    let names = strs(rule.get("resourceNames"));
    names.is_empty() || names.contains(&a.name.as_str())
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    match kind {
        "User" => name == user.name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject.get("namespace").and_then(Value::as_str).filter(|n| !n.is_empty()).unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

impl ApiState {
    fn rules_of(&self, role_ref: &Value, namespace: &str) -> Vec<Value> {
        let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
        let plural = if kind == "ClusterRole" { "clusterroles" } else { "roles" };
        let Ok(def) = self.def("rbac.authorization.k8s.io", "v1", plural) else { return vec![] };
        let Ok(cache) = self.cache_of(&def) else { return vec![] };
        let ns = if kind == "ClusterRole" { "" } else { namespace };
        cache
            .get(&def.key(ns, name))
            .and_then(|r| r.get("rules").and_then(Value::as_array).cloned())
            .unwrap_or_default()
    }

    /// The rules that apply to `user` in `namespace` (cluster-wide ones included).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<Value> {
        let mut rules = Vec::new();
        for (plural, ns) in [("clusterrolebindings", ""), ("rolebindings", namespace)] {
            if plural == "rolebindings" && namespace.is_empty() {
                continue;
            }
            let Ok(def) = self.def("rbac.authorization.k8s.io", "v1", plural) else { continue };
            let Ok(cache) = self.cache_of(&def) else { continue };
            for (_, b) in cache.list(&def.namespace_prefix(ns)) {
                let bns = meta_str(&b, "namespace");
                if b.get("subjects").and_then(Value::as_array).is_some_and(|s| s.iter().any(|s| subject_matches(s, user, bns))) {
                    rules.extend(self.rules_of(b.get("roleRef").unwrap_or(&Value::Null), bns));
                }
            }
        }
        rules
    }

    /// Whether `user` may do `a`.
    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> bool {
        if user.groups.iter().any(|g| g == "system:masters") {
            return true;
        }
        self.rules_for(user, &a.namespace).iter().any(|r| rule_allows(r, a))
    }

    /// The 403 upstream gives, naming what was refused.
    pub fn forbidden(user: &UserInfo, a: &Attributes) -> ApiError {
        if let Some(path) = &a.path {
            return ApiError::forbidden(format!("forbidden: User {:?} cannot {} path {path:?}", user.name, a.verb));
        }
        let what = if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
        let qualified = if a.group.is_empty() { a.resource.clone() } else { format!("{}.{}", a.resource, a.group) };
        let subject = if a.name.is_empty() { qualified } else { format!("{qualified} {:?}", a.name) };
        let scope = if a.namespace.is_empty() { "at the cluster scope".to_string() } else { format!("in the namespace {:?}", a.namespace) };
        ApiError::forbidden(format!(
            "{subject} is forbidden: User {:?} cannot {} resource {what:?} in API group {:?} {scope}",
            user.name, a.verb, a.group
        ))
    }

    /// `POST selfsubjectaccessreviews` and friends: answers without storing anything.
    pub fn review(&self, user: &UserInfo, kind: &str, mut obj: Value, namespace: &str) -> ApiResult<Value> {
        let spec = obj.get("spec").cloned().unwrap_or(json!({}));
        let subject = match kind {
            "SubjectAccessReview" | "LocalSubjectAccessReview" => UserInfo {
                name: spec.get("user").and_then(Value::as_str).unwrap_or("").to_string(),
                groups: strs(spec.get("groups")).iter().map(|g| g.to_string()).collect(),
            },
            _ => user.clone(),
        };
        let status = match kind {
            "SelfSubjectRulesReview" => {
                let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or(namespace);
                let rules = if subject.groups.iter().any(|g| g == "system:masters") {
                    vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}), json!({"verbs": ["*"], "nonResourceURLs": ["*"]})]
                } else {
                    self.rules_for(&subject, ns)
                };
                let (resource, non_resource): (Vec<Value>, Vec<Value>) = rules.into_iter().partition(|r| r.get("nonResourceURLs").is_none());
                json!({"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": false})
            }
            _ => {
                let a = match (spec.get("resourceAttributes"), spec.get("nonResourceAttributes")) {
                    (Some(r), _) => Attributes {
                        verb: r.get("verb").and_then(Value::as_str).unwrap_or("").into(),
                        group: r.get("group").and_then(Value::as_str).unwrap_or("").into(),
                        resource: r.get("resource").and_then(Value::as_str).unwrap_or("").into(),
                        subresource: r.get("subresource").and_then(Value::as_str).unwrap_or("").into(),
                        namespace: r.get("namespace").and_then(Value::as_str).unwrap_or(namespace).into(),
                        name: r.get("name").and_then(Value::as_str).unwrap_or("").into(),
                        path: None,
                    },
                    (None, Some(n)) => Attributes {
                        verb: n.get("verb").and_then(Value::as_str).unwrap_or("").into(),
                        path: Some(n.get("path").and_then(Value::as_str).unwrap_or("").into()),
                        ..Default::default()
                    },
                    _ => return Err(ApiError::bad_request("exactly one of resourceAttributes or nonResourceAttributes must be set")),
                };
                let allowed = self.authorize(&subject, &a);
                let mut st = json!({"allowed": allowed});
                if allowed {
                    st["reason"] = json!(if subject.groups.iter().any(|g| g == "system:masters") { "" } else { "RBAC: allowed" });
                }
                st
            }
        };
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), status);
            let meta = m.entry("metadata").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert("creationTimestamp".into(), Value::Null);
            }
        }
        Ok(obj)
    }

    /// `POST selfsubjectreviews` (`kubectl auth whoami`).
    pub fn whoami(user: &UserInfo, mut obj: Value) -> Value {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({"userInfo": {"username": user.name, "groups": user.groups}}));
            m.insert("metadata".into(), json!({"creationTimestamp": null}));
        }
        obj
    }
}

/// The cluster roles and bindings every cluster has (a subset of upstream's bootstrap
/// policy: the user-facing roles and what the system's own components need).
fn bootstrap_policy() -> (Vec<Value>, Vec<Value>) {
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
    let role = |name: &str, rules: Value, aggregate_to: Option<&str>| {
        let mut r = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}, "rules": rules});
        if let Some(a) = aggregate_to {
            r["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{a}")] = json!("true");
        }
        r
    };
    let roles = vec![
        role("cluster-admin", json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]), None),
        role("admin", Value::Array(admin), None),
        role("edit", workloads, None),
        role("view", view, None),
        role("system:discovery", json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/openapi", "/openapi/*", "/version", "/version/"], "verbs": ["get"]}]), None),
        role("system:basic-user", json!([review, whoami]), None),
        role("system:public-info-viewer", json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]), None),
        role("system:node", json!([
            {"apiGroups": [""], "resources": ["nodes", "nodes/status"], "verbs": ["create", "get", "list", "watch", "patch", "update"]},
            {"apiGroups": [""], "resources": ["pods", "services", "endpoints", "configmaps", "secrets", "persistentvolumeclaims", "persistentvolumes", "namespaces"], "verbs": read},
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "update"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "delete", "get", "patch", "update"]},
            {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
        ]), None),
        // Delegated authentication and authorization, as extension API servers (metrics-server)
        // are bound to: both reviews are non-mutating creates.
        role("system:auth-delegator", json!([
            {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
        ]), None),
    ];
    let binding = |name: &str, role: &str, subjects: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": subjects})
    };
    let group = |g: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g});
    let bindings = vec![
        binding("cluster-admin", "cluster-admin", json!([group("system:masters")])),
        binding("system:discovery", "system:discovery", json!([group("system:authenticated")])),
        binding("system:basic-user", "system:basic-user", json!([group("system:authenticated")])),
        binding("system:public-info-viewer", "system:public-info-viewer", json!([group("system:authenticated"), group("system:unauthenticated")])),
        binding("system:node", "system:node", json!([group("system:nodes")])),
    ];
    (roles, bindings)
}

/// Upstream's bootstrap namespaced roles, as (namespace, Role): what reads the
/// `extension-apiserver-authentication` ConfigMap (extension API servers bind to it).
fn bootstrap_namespace_roles() -> Vec<(&'static str, Value)> {
    vec![(
        "kube-system",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "extension-apiserver-authentication-reader", "namespace": "kube-system",
                "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [crate::bootstrap::AUTHENTICATION_CONFIGMAP], "verbs": ["get", "list", "watch"]}]}),
    )]
}

/// Creates the bootstrap roles and bindings that are missing.
pub async fn ensure_bootstrap_policy(state: &Arc<ApiState>) -> ApiResult<()> {
    let (roles, bindings) = bootstrap_policy();
    let namespaced = bootstrap_namespace_roles();
    let cluster = [("clusterroles", roles), ("clusterrolebindings", bindings)].map(|(p, objs)| (p, objs.into_iter().map(|o| ("", o)).collect::<Vec<_>>()));
    for (plural, objs) in cluster.into_iter().chain([("roles", namespaced)]) {
        let def = state.def("rbac.authorization.k8s.io", "v1", plural)?;
        for (ns, obj) in objs {
            match state.create(&def, ns, obj, &WriteOptions::default()).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str) -> Attributes {
        Attributes { verb: verb.into(), group: group.into(), resource: resource.into(), subresource: sub.into(), ..Default::default() }
    }

    #[test]
    fn rules() {
        let r = json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]});
        assert!(rule_allows(&r, &attrs("get", "", "pods", "")));
        assert!(rule_allows(&r, &attrs("get", "", "pods", "log")));
        assert!(!rule_allows(&r, &attrs("get", "", "pods", "exec")));
        assert!(!rule_allows(&r, &attrs("delete", "", "pods", "")));
        assert!(!rule_allows(&r, &attrs("get", "apps", "pods", "")));
        let named = json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"], "resourceNames": ["x"]});
        assert!(rule_allows(&named, &Attributes { name: "x".into(), ..attrs("get", "apps", "deployments", "") }));
        assert!(!rule_allows(&named, &Attributes { name: "y".into(), ..attrs("get", "apps", "deployments", "") }));
        let nr = json!({"nonResourceURLs": ["/apis/*"], "verbs": ["get"]});
        assert!(rule_allows(&nr, &Attributes { verb: "get".into(), path: Some("/apis/apps".into()), ..Default::default() }));
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
    fn subjects() {
        let u = UserInfo { name: "system:serviceaccount:ns:robot".into(), groups: vec!["system:authenticated".into()] };
        assert!(subject_matches(&json!({"kind": "ServiceAccount", "name": "robot"}), &u, "ns"));
        assert!(!subject_matches(&json!({"kind": "ServiceAccount", "name": "robot"}), &u, "other"));
        assert!(subject_matches(&json!({"kind": "Group", "name": "system:authenticated"}), &u, ""));
    }
}
