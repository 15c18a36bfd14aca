//! The NodeRestriction admission plugin: what the Node authorizer lets every node do (write
//! nodes, pods, pod statuses, leases, tokens) narrowed to the node's own objects. A node may
//! create and modify only its own Node (not its taints, nor labels outside the kubelet's set,
//! `node-restriction.kubernetes.io/` ones in particular), its own Lease, mirror pods bound to
//! itself and owned by its Node, the status of pods bound to it, delete only pods bound to it,
//! and request service-account tokens only bound to a pod on it.

use serde_json::{Map, Value};
use timonier_api::resources::ResourceDef;

use crate::admission::Operation;
use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::rest::meta_str;
use crate::state::ApiState;

const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The node a user is (upstream's `nodeidentifier`): `system:node:<name>` in `system:nodes`.
pub fn node_identity(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix(crate::csr::NODE_USER_PREFIX)?;
    user.groups.iter().any(|g| g == crate::csr::NODES_GROUP).then_some(name)
}

fn forbidden(def: &ResourceDef, name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::forbidden(format!("{} {name:?} is forbidden: {why}", def.qualified_plural()))
}

fn labels(obj: Option<&Value>) -> Map<String, Value> {
    obj.and_then(|o| o.pointer("/metadata/labels")).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Upstream's `kubeletapis.IsKubeletLabel`.
fn is_kubelet_label(key: &str) -> bool {
    const LABELS: &[&str] = &[
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    ];
    let ns = label_namespace(key);
    LABELS.contains(&key) || ["kubelet.kubernetes.io", "node.kubernetes.io"].iter().any(|a| ns == *a || ns.ends_with(&format!(".{a}")))
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

/// The labels a node may not set, add, remove or change (sorted, as upstream lists them).
fn forbidden_labels(new: &Map<String, Value>, old: &Map<String, Value>) -> Vec<String> {
    let mut modified: Vec<&String> = new.keys().chain(old.keys()).filter(|k| new.get(*k) != old.get(*k)).collect();
    modified.sort();
    modified.dedup();
    modified
        .into_iter()
        .filter(|k| {
            let ns = label_namespace(k);
            let restricted = ns == "node-restriction.kubernetes.io" || ns.ends_with(".node-restriction.kubernetes.io");
            let kubernetes = ["kubernetes.io", "k8s.io"].iter().any(|d| ns == *d || ns.ends_with(&format!(".{d}")));
            restricted || (kubernetes && !is_kubelet_label(k))
        })
        .cloned()
        .collect()
}

/// Admits a write by `user` (nothing to check for users that are not nodes).
#[allow(clippy::too_many_arguments)]
pub fn admit(state: &ApiState, def: &ResourceDef, subresource: &str, op: Operation, obj: Option<&Value>, old: Option<&Value>, user: &UserInfo) -> ApiResult<()> {
    let Some(node) = node_identity(user) else { return Ok(()) };
    let name = obj.or(old).map(|o| meta_str(o, "name").to_string()).unwrap_or_default();
    let deny = |why: String| Err(forbidden(def, &name, why));
    if node.is_empty() {
        return deny(format!("could not determine node from user {:?}", user.name));
    }
    let node_name = |o: Option<&Value>| o.and_then(|o| o.pointer("/spec/nodeName")).and_then(Value::as_str).unwrap_or("").to_string();
    match (def.group.as_str(), def.plural.as_str(), subresource) {
        ("", "pods", "") => match op {
            Operation::Create => admit_mirror_pod(state, node, obj).or_else(|why| deny(why)),
            Operation::Delete if node_name(old) != node => deny(format!("node {node:?} can only delete pods with spec.nodeName set to itself")),
            Operation::Delete => Ok(()),
            other => deny(format!("unexpected operation {:?}, node {node:?} can only create and delete mirror pods", other.as_str())),
        },
        ("", "pods", "status") => {
            if op != Operation::Update {
                return deny(format!("unexpected operation {:?}", op.as_str()));
            }
            if node_name(old) != node {
                return deny(format!("node {node:?} can only update pod status for pods with spec.nodeName set to itself"));
            }
            if labels(obj) != labels(old) {
                return deny(format!("node {node:?} cannot update labels through pod status"));
            }
            Ok(())
        }
        ("", "pods", sub) => deny(format!("unexpected pod subresource {sub:?}, only 'status' and 'eviction' are allowed")),
        ("", "nodes", _) => {
            if name != node {
                return deny(format!("node {node:?} is not allowed to modify node {name:?}"));
            }
            match op {
                Operation::Create => {
                    let bad = forbidden_labels(&labels(obj), &Map::new());
                    if !bad.is_empty() {
                        return deny(format!("node {node:?} is not allowed to set the following labels: {}", bad.join(", ")));
                    }
                }
                Operation::Update => {
                    let taints = |o: Option<&Value>| o.and_then(|o| o.pointer("/spec/taints")).filter(|t| t.as_array().is_some_and(|a| !a.is_empty())).cloned();
                    if taints(obj) != taints(old) {
                        return deny(format!("node {node:?} is not allowed to modify taints"));
                    }
                    let bad = forbidden_labels(&labels(obj), &labels(old));
                    if !bad.is_empty() {
                        return deny(format!("is not allowed to modify labels: {}", bad.join(", ")));
                    }
                }
                _ => {}
            }
            Ok(())
        }
        ("", "persistentvolumeclaims", sub) if sub != "status" => deny("may only update PVC status".into()),
        ("coordination.k8s.io", "leases", _) => {
            let ns = obj.or(old).map(|o| meta_str(o, "namespace").to_string()).unwrap_or_default();
            if ns != NODE_LEASE_NAMESPACE {
                return deny(format!("can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"));
            }
            if name != node {
                return deny("can only access node lease with the same name as the requesting node".into());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A node may create only mirror pods: bound to itself, owned (as controller, without
/// blockOwnerDeletion) by its own Node, referencing no service account, secret, configmap or
/// claim.
fn admit_mirror_pod(state: &ApiState, node: &str, pod: Option<&Value>) -> Result<(), String> {
    let pod = pod.ok_or("unexpected type")?;
    if pod.pointer(&format!("/metadata/annotations/{}", MIRROR_ANNOTATION.replace('/', "~1"))).is_none() {
        return Err(format!("pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"));
    }
    if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
        return Err(format!("node {node:?} can only create pods with spec.nodeName set to itself"));
    }
    let owners = pod.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default();
    let owner = match owners.as_slice() {
        [one] => one,
        [] => return Err(format!("node {node:?} can only create pods with an owner reference set to itself")),
        _ => return Err(format!("node {node:?} can only create pods with a single owner reference set to itself")),
    };
    if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
        return Err(format!("node {node:?} can only create pods with an owner reference set to itself"));
    }
    if owner["controller"] != true {
        return Err(format!("node {node:?} can only create pods with a controller owner reference set to itself"));
    }
    if owner["blockOwnerDeletion"] == true {
        return Err(format!("node {node:?} must not set blockOwnerDeletion on an owner reference"));
    }
    let uid = state.def("", "v1", "nodes").ok().and_then(|d| state.cache_of(&d).ok()?.get(&d.key("", node))).map(|n| meta_str(&n, "uid").to_string());
    match uid {
        None => return Err(format!("nodes {node:?} not found")),
        Some(uid) if owner["uid"].as_str() != Some(uid.as_str()) => {
            return Err(format!("node {node} UID mismatch: expected {} got {uid}", owner["uid"].as_str().unwrap_or("")));
        }
        _ => {}
    }
    if pod.pointer("/spec/serviceAccountName").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
        return Err(format!("node {node:?} can not create pods that reference a service account"));
    }
    let refs = crate::node_authz::pod_references(pod);
    if !refs.secrets.is_empty() {
        return Err(format!("node {node:?} can not create pods that reference secrets"));
    }
    if !refs.configmaps.is_empty() {
        return Err(format!("node {node:?} can not create pods that reference configmaps"));
    }
    if !refs.claims.is_empty() {
        return Err(format!("node {node:?} can not create pods that reference persistentvolumeclaims"));
    }
    Ok(())
}

impl ApiState {
    /// NodeRestriction for TokenRequests: a node's must be bound to a pod (by name and uid)
    /// running on that node.
    pub fn admit_node_token_request(&self, user: &UserInfo, ns: &str, request: &Value) -> ApiResult<()> {
        let Some(node) = node_identity(user) else { return Ok(()) };
        let sa = meta_str(request, "name").to_string();
        let deny = |why: &str| Err(ApiError::forbidden(format!("serviceaccounts {sa:?} is forbidden: {why}")));
        let r = request.pointer("/spec/boundObjectRef").cloned().unwrap_or(Value::Null);
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        if r.is_null() || s("apiVersion") != "v1" || s("kind") != "Pod" || s("name").is_empty() {
            return deny("node requested token not bound to a pod");
        }
        if s("uid").is_empty() {
            return deny("node requested token with a pod binding without a uid");
        }
        let pods = self.def("", "v1", "pods")?;
        let Some(pod) = self.cache_of(&pods)?.get(&pods.key(ns, &s("name"))) else { return Err(ApiError::not_found(&pods, &s("name"))) };
        if meta_str(&pod, "uid") != s("uid") {
            return deny(&format!(
                "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                s("uid")
            ));
        }
        if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
            return deny("node requested token bound to a pod scheduled on a different node");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_rules() {
        let m = |v: Value| v.as_object().cloned().unwrap_or_default();
        let old = m(json!({"kubernetes.io/hostname": "a"}));
        assert!(forbidden_labels(&m(json!({"kubernetes.io/hostname": "a", "example.com/x": "1", "node.kubernetes.io/exclude": ""})), &old).is_empty());
        assert_eq!(
            forbidden_labels(&m(json!({"node-restriction.kubernetes.io/team": "a", "node-role.kubernetes.io/control-plane": "true"})), &old),
            ["node-restriction.kubernetes.io/team", "node-role.kubernetes.io/control-plane"]
        );
        let node = UserInfo { name: "system:node:a".into(), groups: vec!["system:nodes".into()] };
        assert_eq!(node_identity(&node), Some("a"));
        assert_eq!(node_identity(&UserInfo { name: "system:node:a".into(), groups: vec![] }), None);
    }
}
