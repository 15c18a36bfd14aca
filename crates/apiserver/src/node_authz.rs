//! The Node authorizer: what a node agent (`system:node:<name>` in `system:nodes`) may do.
//! Secrets, configmaps, persistent volume claims and volumes, service-account tokens and
//! volume attachments only when an edge leads from them to the node — upstream's graph:
//!
//! ```text
//! node ← pod ← secret | configmap | serviceaccount | pvc ← pv ← secret
//! node ← volumeattachment
//! ```
//!
//! Upstream keeps that graph up to date from informers; here the same edges are walked from
//! the object asked for, over the watch cache (which is what the graph is built from), when
//! a node asks. Its own Node and Lease, pods bound to it (list and watch with the
//! `spec.nodeName` field selector), and the static node rules (upstream's `NodeRules`)
//! complete it; everything else is left to RBAC. Writes are narrowed further by the
//! NodeRestriction admission plugin (`node_restriction.rs`).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::auth::UserInfo;
use crate::node_restriction::node_identity;
use crate::rbac::Attributes;
use crate::rest::meta_str;
use crate::state::ApiState;

/// What the node authorizer says: allowed, or no opinion with its reason (RBAC decides next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    NoOpinion(String),
}

/// The objects a pod references, by name, in its namespace.
#[derive(Debug, Default)]
pub struct PodRefs {
    pub secrets: BTreeSet<String>,
    pub configmaps: BTreeSet<String>,
    pub claims: BTreeSet<String>,
    pub service_account: Option<String>,
}

fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn arr<'a>(v: &'a Value, p: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(p).and_then(Value::as_array).into_iter().flatten()
}

/// Upstream's `VisitPodSecretNames`, `VisitPodConfigmapNames` and the pod's claims.
pub fn pod_references(pod: &Value) -> PodRefs {
    let mut r = PodRefs { service_account: str_at(pod, "/spec/serviceAccountName").map(str::to_string), ..Default::default() };
    let mut secret = |s: Option<&str>| {
        if let Some(s) = s {
            r.secrets.insert(s.to_string());
        }
    };
    for s in arr(pod, "/spec/imagePullSecrets") {
        secret(str_at(s, "/name"));
    }
    let containers = ["/spec/containers", "/spec/initContainers", "/spec/ephemeralContainers"];
    for c in containers.iter().flat_map(|p| arr(pod, p)) {
        for e in arr(c, "/envFrom") {
            secret(str_at(e, "/secretRef/name"));
        }
        for e in arr(c, "/env") {
            secret(str_at(e, "/valueFrom/secretKeyRef/name"));
        }
    }
    for v in arr(pod, "/spec/volumes") {
        secret(str_at(v, "/secret/secretName"));
        for plugin in ["azureFile", "cephfs", "cinder", "flexVolume", "iscsi", "rbd", "scaleIO", "storageos"] {
            secret(str_at(v, &format!("/{plugin}/secretRef/name")));
        }
        secret(str_at(v, "/azureFile/secretName"));
        secret(str_at(v, "/csi/nodePublishSecretRef/name"));
        for s in arr(v, "/projected/sources") {
            secret(str_at(s, "/secret/name"));
        }
    }
    let mut configmap = |s: Option<&str>| {
        if let Some(s) = s {
            r.configmaps.insert(s.to_string());
        }
    };
    for c in containers.iter().flat_map(|p| arr(pod, p)) {
        for e in arr(c, "/envFrom") {
            configmap(str_at(e, "/configMapRef/name"));
        }
        for e in arr(c, "/env") {
            configmap(str_at(e, "/valueFrom/configMapKeyRef/name"));
        }
    }
    for v in arr(pod, "/spec/volumes") {
        configmap(str_at(v, "/configMap/name"));
        for s in arr(v, "/projected/sources") {
            configmap(str_at(s, "/configMap/name"));
        }
    }
    for v in arr(pod, "/spec/volumes") {
        if let Some(c) = str_at(v, "/persistentVolumeClaim/claimName") {
            r.claims.insert(c.to_string());
        }
        // A generic ephemeral volume's claim is named after the pod and the volume.
        if v.get("ephemeral").is_some_and(|e| !e.is_null()) {
            r.claims.insert(format!("{}-{}", meta_str(pod, "name"), str_at(v, "/name").unwrap_or("")));
        }
    }
    r
}

/// The secrets a persistent volume references (its plugins' and CSI's secret references).
fn pv_secrets(pv: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let spec = pv.get("spec").unwrap_or(&Value::Null);
    let claim_ns = str_at(pv, "/spec/claimRef/namespace").unwrap_or("");
    let mut add = |ns: Option<&str>, name: Option<&str>| {
        if let Some(name) = name {
            out.push((ns.unwrap_or(claim_ns).to_string(), name.to_string()));
        }
    };
    for p in ["/csi/nodePublishSecretRef", "/csi/nodeStageSecretRef", "/csi/controllerPublishSecretRef", "/csi/controllerExpandSecretRef", "/csi/nodeExpandSecretRef"] {
        add(str_at(spec, &format!("{p}/namespace")), str_at(spec, &format!("{p}/name")));
    }
    for plugin in ["cephfs", "cinder", "flexVolume", "iscsi", "rbd", "scaleIO", "storageos"] {
        add(str_at(spec, &format!("/{plugin}/secretRef/namespace")), str_at(spec, &format!("/{plugin}/secretRef/name")));
    }
    add(str_at(spec, "/azureFile/secretNamespace"), str_at(spec, "/azureFile/secretName"));
    out
}

impl ApiState {
    fn objects(&self, group: &str, plural: &str, ns: &str) -> Vec<std::sync::Arc<Value>> {
        let Some(def) = self.registry().all.iter().find(|d| d.group == group && d.plural == plural).cloned() else { return vec![] };
        let Ok(cache) = self.cache_of(&def) else { return vec![] };
        let prefix = if ns.is_empty() { def.key_prefix() } else { def.namespace_prefix(ns) };
        cache.list(&prefix).into_iter().map(|(_, v)| v).collect()
    }

    fn object(&self, plural: &str, ns: &str, name: &str) -> Option<std::sync::Arc<Value>> {
        let def = self.def("", "v1", plural).ok()?;
        self.cache_of(&def).ok()?.get(&def.key(ns, name))
    }

    /// The references of the pods bound to `node` (in `ns`, or everywhere).
    fn node_pod_refs(&self, node: &str, ns: &str) -> Vec<(String, PodRefs)> {
        self.objects("", "pods", ns)
            .into_iter()
            .filter(|p| str_at(p, "/spec/nodeName") == Some(node))
            .map(|p| (meta_str(&p, "namespace").to_string(), pod_references(&p)))
            .collect()
    }

    /// Whether the persistent volume is bound to a claim a pod on `node` uses.
    fn pv_reaches(&self, node: &str, pv: &Value) -> bool {
        let (Some(ns), Some(claim)) = (str_at(pv, "/spec/claimRef/namespace"), str_at(pv, "/spec/claimRef/name")) else { return false };
        self.node_pod_refs(node, ns).iter().any(|(_, r)| r.claims.contains(claim))
    }

    /// Upstream's `hasPathFrom`: an edge path from the object to the node.
    fn has_path(&self, node: &str, kind: &str, ns: &str, name: &str) -> bool {
        match kind {
            "pods" => self.object("pods", ns, name).is_some_and(|p| str_at(&p, "/spec/nodeName") == Some(node)),
            "configmaps" => self.node_pod_refs(node, ns).iter().any(|(_, r)| r.configmaps.contains(name)),
            "serviceaccounts" => self.node_pod_refs(node, ns).iter().any(|(_, r)| r.service_account.as_deref() == Some(name)),
            "persistentvolumeclaims" => self.node_pod_refs(node, ns).iter().any(|(_, r)| r.claims.contains(name)),
            "persistentvolumes" => self.object("persistentvolumes", "", name).is_some_and(|pv| self.pv_reaches(node, &pv)),
            "secrets" => {
                self.node_pod_refs(node, ns).iter().any(|(_, r)| r.secrets.contains(name))
                    || self.objects("", "persistentvolumes", "").iter().any(|pv| pv_secrets(pv).iter().any(|(n, s)| n == ns && s == name) && self.pv_reaches(node, pv))
            }
            "volumeattachments" => {
                self.objects("storage.k8s.io", "volumeattachments", "").iter().any(|va| meta_str(va, "name") == name && str_at(va, "/spec/nodeName") == Some(node))
            }
            _ => false,
        }
    }

    fn path_decision(&self, node: &str, a: &Attributes) -> Decision {
        if a.name.is_empty() {
            return Decision::NoOpinion("No Object name found".into());
        }
        if self.has_path(node, &a.resource, &a.namespace, &a.name) {
            Decision::Allow
        } else {
            Decision::NoOpinion(format!("no relationship found between node '{node}' and this object"))
        }
    }

    /// The node authorizer's decision; `field_selector` is a list or watch's.
    pub fn node_authorize(&self, user: &UserInfo, a: &Attributes, field_selector: Option<&str>) -> Decision {
        let Some(node) = node_identity(user) else { return Decision::NoOpinion(String::new()) };
        if node.is_empty() {
            return Decision::NoOpinion(format!("unknown node for user {:?}", user.name));
        }
        let no = |why: &str| Decision::NoOpinion(why.to_string());
        let verb = a.verb.as_str();
        if a.path.is_none() {
            match (a.group.as_str(), a.resource.as_str()) {
                ("", "secrets" | "configmaps") => {
                    return match verb {
                        _ if !matches!(verb, "get" | "list" | "watch") => no("can only read resources of this type"),
                        _ if !a.subresource.is_empty() => no("cannot read subresource"),
                        _ if a.namespace.is_empty() => no("can only read namespaced object of this type"),
                        _ => self.path_decision(node, a),
                    };
                }
                ("", "persistentvolumeclaims") if a.subresource == "status" => {
                    return if matches!(verb, "update" | "patch") { self.path_decision(node, a) } else { no("can only get/update/patch this type") };
                }
                ("", "persistentvolumeclaims" | "persistentvolumes") | ("storage.k8s.io", "volumeattachments") => {
                    return match verb {
                        "get" if a.subresource.is_empty() => self.path_decision(node, a),
                        "get" => no("cannot get subresource"),
                        _ => no("can only get individual resources of this type"),
                    };
                }
                ("", "serviceaccounts") => {
                    if verb != "create" || a.name.is_empty() {
                        return no("can only create tokens for individual service accounts");
                    }
                    if a.subresource != "token" {
                        return no("can only create token subresource of serviceaccount");
                    }
                    return self.path_decision(node, a);
                }
                ("coordination.k8s.io", "leases") => {
                    return match verb {
                        _ if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") => no("can only get, create, update, patch, or delete a node lease"),
                        _ if a.namespace != "kube-node-lease" => no("can only access leases in the \"kube-node-lease\" system namespace"),
                        _ if verb != "create" && a.name != node => no("can only access node lease with the same name as the requesting node"),
                        _ => Decision::Allow,
                    };
                }
                ("", "nodes") => {
                    return match (a.subresource.as_str(), verb) {
                        ("", "create" | "update" | "patch") | ("status", "update" | "patch") => Decision::Allow,
                        ("", "get" | "list" | "watch") if a.name == node => Decision::Allow,
                        ("", "get" | "list" | "watch") if a.name.is_empty() => no(&format!("node '{node}' cannot read all nodes, only its own Node object")),
                        ("", "get" | "list" | "watch") => no(&format!("node '{node}' cannot read '{}', only its own Node object", a.name)),
                        _ => no(""),
                    };
                }
                ("", "pods") => {
                    return match (a.subresource.as_str(), verb) {
                        ("", "get") => self.path_decision(node, a),
                        ("", "list" | "watch") => {
                            let scoped = field_selector.is_some_and(|fs| fs.split(',').any(|r| {
                                let r = r.trim();
                                r == format!("spec.nodeName={node}") || r == format!("spec.nodeName=={node}")
                            }));
                            if scoped {
                                Decision::Allow
                            } else if !a.name.is_empty() {
                                self.path_decision(node, a)
                            } else {
                                no("can only list/watch pods with spec.nodeName field selector")
                            }
                        }
                        ("", "create" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => Decision::Allow,
                        _ => no(""),
                    };
                }
                _ => {}
            }
        }
        if node_rules().iter().any(|r| crate::rbac::rule_allows(r, a)) {
            Decision::Allow
        } else {
            no("")
        }
    }
}

/// Upstream's `NodeRules`: what every node may do beyond the graph-scoped resources.
pub fn node_rules() -> Vec<Value> {
    let read = ["get", "list", "watch"];
    vec![
        json!({"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}),
        json!({"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews", "localsubjectaccessreviews"], "verbs": ["create"]}),
        json!({"apiGroups": [""], "resources": ["services"], "verbs": read}),
        json!({"apiGroups": [""], "resources": ["nodes"], "verbs": ["create", "get", "list", "watch"]}),
        json!({"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch", "update"]}),
        json!({"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch", "update"]}),
        json!({"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]}),
        json!({"apiGroups": [""], "resources": ["pods"], "verbs": read}),
        json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete"]}),
        json!({"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]}),
        json!({"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}),
        json!({"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": read}),
        json!({"apiGroups": [""], "resources": ["persistentvolumeclaims", "persistentvolumes"], "verbs": ["get"]}),
        json!({"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get"]}),
        json!({"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["create", "get", "list", "watch"]}),
        json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "patch", "delete"]}),
        json!({"apiGroups": ["storage.k8s.io"], "resources": ["volumeattachments"], "verbs": ["get"]}),
        json!({"apiGroups": [""], "resources": ["persistentvolumeclaims/status"], "verbs": ["get", "update", "patch"]}),
        json!({"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}),
        json!({"apiGroups": ["storage.k8s.io"], "resources": ["csidrivers"], "verbs": read}),
        json!({"apiGroups": ["storage.k8s.io"], "resources": ["csinodes"], "verbs": ["get", "create", "update", "patch", "delete"]}),
        json!({"apiGroups": ["node.k8s.io"], "resources": ["runtimeclasses"], "verbs": read}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {
            "serviceAccountName": "sa",
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{"name": "c", "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}, {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}}], "envFrom": [{"configMapRef": {"name": "from-cm"}}]}],
            "volumes": [{"name": "v", "secret": {"secretName": "vol-secret"}}, {"name": "p", "projected": {"sources": [{"configMap": {"name": "proj-cm"}}]}}, {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}, {"name": "e", "ephemeral": {}}]
        }});
        let r = pod_references(&pod);
        assert_eq!(r.secrets.into_iter().collect::<Vec<_>>(), ["env-secret", "pull", "vol-secret"]);
        assert_eq!(r.configmaps.into_iter().collect::<Vec<_>>(), ["env-cm", "from-cm", "proj-cm"]);
        assert_eq!(r.claims.into_iter().collect::<Vec<_>>(), ["data", "p-e"]);
        assert_eq!(r.service_account.as_deref(), Some("sa"));
    }
}
