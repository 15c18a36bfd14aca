//! Authorization, as kube-apiserver's `--authorization-mode=Node,RBAC`: the Node authorizer
//! (`node_authz.rs`) for node agents, then RBAC over the Roles, ClusterRoles and their
//! bindings in the watch cache, as upstream's RBAC authorizer evaluates them; the bootstrap
//! roles every cluster starts with (`policy.rs`) and the access reviews behind
//! `kubectl auth can-i` and `kubectl auth whoami`.

mod policy;

use serde_json::{json, Value};

use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::rest::meta_str;
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

pub(crate) fn rule_allows(rule: &Value, a: &Attributes) -> bool {
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
        self.authorize_request(user, a, None).is_ok()
    }

    /// The authorizers in upstream's order (the privileged group, Node, RBAC): `Err` carries
    /// the reason a node was refused, which upstream appends to the 403's message.
    /// `field_selector` is a list's or watch's (nodes may list their own pods by one).
    pub fn authorize_request(&self, user: &UserInfo, a: &Attributes, field_selector: Option<&str>) -> Result<(), String> {
        if user.groups.iter().any(|g| g == "system:masters") {
            return Ok(());
        }
        let reason = match self.node_authorize(user, a, field_selector) {
            crate::node_authz::Decision::Allow => return Ok(()),
            crate::node_authz::Decision::NoOpinion(why) => why,
        };
        if self.rules_for(user, &a.namespace).iter().any(|r| rule_allows(r, a)) {
            return Ok(());
        }
        Err(reason)
    }

    /// `authorize_request`'s refusal as upstream's 403.
    pub fn check(&self, user: &UserInfo, a: &Attributes, field_selector: Option<&str>) -> ApiResult<()> {
        self.authorize_request(user, a, field_selector).map_err(|reason| {
            let mut e = ApiState::forbidden(user, a);
            if !reason.is_empty() {
                e.message = format!("{}: {reason}", e.message);
            }
            e
        })
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

pub use policy::{ensure_bootstrap_policy, CONTROLLERS};

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
    fn subjects() {
        let u = UserInfo { name: "system:serviceaccount:ns:robot".into(), groups: vec!["system:authenticated".into()] };
        assert!(subject_matches(&json!({"kind": "ServiceAccount", "name": "robot"}), &u, "ns"));
        assert!(!subject_matches(&json!({"kind": "ServiceAccount", "name": "robot"}), &u, "other"));
        assert!(subject_matches(&json!({"kind": "Group", "name": "system:authenticated"}), &u, ""));
    }
}
