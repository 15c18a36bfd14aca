//! The resource registry: every kind the API server serves, with the names, scope, verbs and
//! subresources that discovery advertises and the REST layer routes on.
//!
//! A built-in kind is one entry here plus a strategy in the API server; custom resources
//! become entries at run time, built from their CustomResourceDefinition.

use std::sync::Arc;

/// Verbs of a resource that supports everything.
pub const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// A subresource such as `status` or `scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subresource {
    pub name: String,
    /// The group/version/kind the subresource answers with (`autoscaling/v1 Scale` for scale).
    pub group: String,
    pub version: String,
    pub kind: String,
    pub verbs: Vec<String>,
}

/// One served resource at one group/version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDef {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The plural lower-case name used in URLs (`deployments`).
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub subresources: Vec<Subresource>,
    /// The group whose storage holds the objects (a kind served in two groups, like events,
    /// shares one storage), and the resource name in the storage key.
    pub storage_resource: String,
}

impl ResourceDef {
    /// `apiVersion` as written in objects: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `deployments.apps`, or `pods` in the core group: how upstream names a resource in
    /// error messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Deployment.apps` / `Pod`: how upstream names the kind in validation errors.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// The storage key prefix of all objects of this resource, ending in `/`.
    pub fn key_prefix(&self) -> String {
        format!("/registry/{}/", self.storage_resource)
    }

    /// The storage key prefix of this resource's objects in one namespace (all of them for
    /// cluster-scoped resources or an empty namespace).
    pub fn namespace_prefix(&self, namespace: &str) -> String {
        if self.namespaced && !namespace.is_empty() {
            format!("/registry/{}/{namespace}/", self.storage_resource)
        } else {
            self.key_prefix()
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        if self.namespaced {
            format!("/registry/{}/{namespace}/{name}", self.storage_resource)
        } else {
            format!("/registry/{}/{name}", self.storage_resource)
        }
    }
}

struct Spec {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    all: bool,
    subresources: &'static [&'static str],
    verbs: &'static [&'static str],
    storage: &'static str,
}

const NS: bool = true;
const CLUSTER: bool = false;

macro_rules! spec {
    ($group:literal, $version:literal, $kind:literal, $plural:literal, $short:expr, $ns:expr, $all:literal, $subs:expr) => {
        spec!($group, $version, $kind, $plural, $short, $ns, $all, $subs, ALL_VERBS, "")
    };
    ($group:literal, $version:literal, $kind:literal, $plural:literal, $short:expr, $ns:expr, $all:literal, $subs:expr, $verbs:expr, $storage:literal) => {
        Spec {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            short: $short,
            namespaced: $ns,
            all: $all,
            subresources: $subs,
            verbs: $verbs,
            storage: $storage,
        }
    };
}

/// The built-in resources, in the order discovery lists them (the order `kubectl get all`
/// follows: pods, services, … as upstream).
const BUILTIN: &[Spec] = &[
    spec!("", "v1", "Pod", "pods", &["po"], NS, true, &["status", "binding", "eviction", "ephemeralcontainers", "log", "exec", "attach", "portforward", "proxy"]),
    spec!("", "v1", "Service", "services", &["svc"], NS, true, &["status", "proxy"], &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"], "services/specs"),
    spec!("", "v1", "ReplicationController", "replicationcontrollers", &["rc"], NS, true, &["status", "scale"]),
    spec!("", "v1", "Namespace", "namespaces", &["ns"], CLUSTER, false, &["status", "finalize"], &["create", "delete", "get", "list", "patch", "update", "watch"], ""),
    spec!("", "v1", "Node", "nodes", &["no"], CLUSTER, false, &["status", "proxy"]),
    spec!("", "v1", "Endpoints", "endpoints", &["ep"], NS, false, &[], ALL_VERBS, "services/endpoints"),
    spec!("", "v1", "ConfigMap", "configmaps", &["cm"], NS, false, &[]),
    spec!("", "v1", "Secret", "secrets", &[], NS, false, &[]),
    spec!("", "v1", "ServiceAccount", "serviceaccounts", &["sa"], NS, false, &["token"]),
    spec!("", "v1", "Event", "events", &["ev"], NS, false, &[]),
    spec!("", "v1", "PersistentVolume", "persistentvolumes", &["pv"], CLUSTER, false, &["status"]),
    spec!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", &["pvc"], NS, false, &["status"]),
    spec!("", "v1", "ResourceQuota", "resourcequotas", &["quota"], NS, false, &["status"]),
    spec!("", "v1", "LimitRange", "limitranges", &["limits"], NS, false, &[]),
    spec!("", "v1", "PodTemplate", "podtemplates", &[], NS, false, &[]),
    spec!("apps", "v1", "Deployment", "deployments", &["deploy"], NS, true, &["status", "scale"]),
    spec!("apps", "v1", "ReplicaSet", "replicasets", &["rs"], NS, true, &["status", "scale"]),
    spec!("apps", "v1", "StatefulSet", "statefulsets", &["sts"], NS, true, &["status", "scale"]),
    spec!("apps", "v1", "DaemonSet", "daemonsets", &["ds"], NS, true, &["status"]),
    spec!("apps", "v1", "ControllerRevision", "controllerrevisions", &[], NS, false, &[]),
    spec!("batch", "v1", "Job", "jobs", &[], NS, true, &["status"]),
    spec!("batch", "v1", "CronJob", "cronjobs", &["cj"], NS, true, &["status"]),
    spec!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", &["hpa"], NS, true, &["status"]),
    // Served in v1 too, stored as v2 (v2 is listed first: the preferred version).
    spec!("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", &["hpa"], NS, true, &["status"]),
    spec!("coordination.k8s.io", "v1", "Lease", "leases", &[], NS, false, &[]),
    spec!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", &[], NS, false, &[]),
    spec!("events.k8s.io", "v1", "Event", "events", &["ev"], NS, false, &[], ALL_VERBS, "events"),
    spec!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", &["pdb"], NS, false, &["status"]),
    spec!("rbac.authorization.k8s.io", "v1", "Role", "roles", &[], NS, false, &[]),
    spec!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", &[], NS, false, &[]),
    spec!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", &[], CLUSTER, false, &[]),
    spec!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", &[], CLUSTER, false, &[]),
    spec!("storage.k8s.io", "v1", "StorageClass", "storageclasses", &["sc"], CLUSTER, false, &[]),
    spec!("networking.k8s.io", "v1", "Ingress", "ingresses", &["ing"], NS, false, &["status"]),
    spec!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", &[], CLUSTER, false, &[]),
    spec!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", &["netpol"], NS, false, &[]),
    spec!("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", &["crd", "crds"], CLUSTER, false, &["status"]),
    // kube-aggregator's kind, stored under its group as upstream keeps it.
    spec!("apiregistration.k8s.io", "v1", "APIService", "apiservices", &[], CLUSTER, false, &["status"], ALL_VERBS, "apiregistration.k8s.io/apiservices"),
    // Served and stored like upstream; what kube-apiserver does with them beyond storing is
    // later work: the webhooks and policies are not called or evaluated at admission yet,
    // certificate requests are not signed, flow control does not limit requests, and the
    // Service allocator does not read ServiceCIDRs or write IPAddresses.
    spec!("", "v1", "Binding", "bindings", &[], NS, false, &[], &["create"], ""),
    spec!("", "v1", "ComponentStatus", "componentstatuses", &["cs"], CLUSTER, false, &[], &["get", "list"], ""),
    spec!("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", &[], CLUSTER, false, &[]),
    spec!("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", &[], CLUSTER, false, &["status"]),
    spec!("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings", &[], CLUSTER, false, &[]),
    spec!("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", &[], CLUSTER, false, &[]),
    spec!("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", &["csr"], CLUSTER, false, &["approval", "status"]),
    spec!("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", &[], CLUSTER, false, &["status"]),
    spec!("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration", "prioritylevelconfigurations", &[], CLUSTER, false, &["status"]),
    spec!("networking.k8s.io", "v1", "IPAddress", "ipaddresses", &["ip"], CLUSTER, false, &[]),
    spec!("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", &[], CLUSTER, false, &["status"]),
    spec!("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", &[], CLUSTER, false, &[]),
    spec!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", &["pc"], CLUSTER, false, &[]),
    spec!("storage.k8s.io", "v1", "CSIDriver", "csidrivers", &[], CLUSTER, false, &[]),
    spec!("storage.k8s.io", "v1", "CSINode", "csinodes", &[], CLUSTER, false, &[]),
    spec!("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities", &[], NS, false, &[]),
    spec!("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", &[], CLUSTER, false, &["status"]),
    // Reviews: answered at once, never stored.
    spec!("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", &[], CLUSTER, false, &[], &["create"], ""),
    spec!("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", &[], CLUSTER, false, &[], &["create"], ""),
    spec!("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", &[], CLUSTER, false, &[], &["create"], ""),
    spec!("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", &[], NS, false, &[], &["create"], ""),
    spec!("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", &[], CLUSTER, false, &[], &["create"], ""),
    spec!("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", &[], CLUSTER, false, &[], &["create"], ""),
];

/// Whether a resource is a custom resource (defined by a CRD), stored under its group. A
/// built-in stored the same way (apiregistration's `apiservices`) is not one.
pub fn is_custom(def: &ResourceDef) -> bool {
    def.storage_resource == format!("{}/{}", def.group, def.plural) && !BUILTIN.iter().any(|s| s.group == def.group && s.plural == def.plural)
}

/// Whether a resource is a review: created to get an answer, never stored.
pub fn is_review(def: &ResourceDef) -> bool {
    matches!(def.group.as_str(), "authorization.k8s.io" | "authentication.k8s.io")
}

/// Whether a resource is answered by the server at request time and never stored (reviews,
/// `componentstatuses`, `bindings`): the REST store and the watch cache have nothing of it.
pub fn is_virtual(def: &ResourceDef) -> bool {
    is_review(def) || (def.group.is_empty() && matches!(def.kind.as_str(), "ComponentStatus" | "Binding"))
}

/// The categories upstream gives a built-in resource (`kubectl get all`, `kubectl get
/// api-extensions`): the kinds that extend the API carry `api-extensions`.
fn categories(spec: &Spec) -> Vec<String> {
    let mut out = Vec::new();
    if spec.all {
        out.push("all".to_string());
    }
    if spec.group == "admissionregistration.k8s.io" || spec.kind == "CustomResourceDefinition" || spec.kind == "APIService" {
        out.push("api-extensions".to_string());
    }
    out
}

fn subresource(spec: &Spec, name: &str) -> Subresource {
    let (group, version, kind, verbs): (&str, &str, &str, &[&str]) = match name {
        "status" => (spec.group, spec.version, spec.kind, &["get", "patch", "update"]),
        "scale" => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        "binding" => ("", "v1", "Binding", &["create"]),
        "eviction" => ("policy", "v1", "Eviction", &["create"]),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest", &["create"]),
        "log" => ("", "v1", "Pod", &["get"]),
        "ephemeralcontainers" => ("", "v1", "Pod", &["get", "patch", "update"]),
        "exec" | "attach" | "portforward" => ("", "v1", "PodExecOptions", &["create", "get"]),
        "proxy" => ("", "v1", spec.kind, &["create", "delete", "get", "patch", "update"]),
        "finalize" => ("", "v1", "Namespace", &["update"]),
        "approval" => (spec.group, spec.version, spec.kind, &["get", "patch", "update"]),
        other => (spec.group, spec.version, other, &["get"]),
    };
    let kind = match name {
        "portforward" => "PodPortForwardOptions",
        "attach" => "PodAttachOptions",
        "proxy" if spec.kind == "Pod" => "PodProxyOptions",
        "proxy" if spec.kind == "Node" => "NodeProxyOptions",
        "proxy" => "ServiceProxyOptions",
        _ => kind,
    };
    Subresource {
        name: name.into(),
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
    }
}

/// The built-in resources.
pub fn builtin() -> Vec<Arc<ResourceDef>> {
    BUILTIN
        .iter()
        .map(|s| {
            Arc::new(ResourceDef {
                group: s.group.into(),
                version: s.version.into(),
                kind: s.kind.into(),
                plural: s.plural.into(),
                singular: s.kind.to_lowercase(),
                short_names: s.short.iter().map(|n| n.to_string()).collect(),
                categories: categories(s),
                namespaced: s.namespaced,
                verbs: s.verbs.iter().map(|v| v.to_string()).collect(),
                subresources: s.subresources.iter().map(|n| subresource(s, n)).collect(),
                storage_resource: if s.storage.is_empty() { s.plural.into() } else { s.storage.into() },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kube_apiserver_layout() {
        let all = builtin();
        let pods = all.iter().find(|r| r.plural == "pods").unwrap();
        assert_eq!(pods.key("default", "web"), "/registry/pods/default/web");
        assert_eq!(pods.namespace_prefix(""), "/registry/pods/");
        let ns = all.iter().find(|r| r.plural == "namespaces").unwrap();
        assert_eq!(ns.key("", "default"), "/registry/namespaces/default");
        let deploy = all.iter().find(|r| r.plural == "deployments").unwrap();
        assert_eq!(deploy.qualified_plural(), "deployments.apps");
        assert_eq!(deploy.subresource("scale").unwrap().kind, "Scale");
        let svc = all.iter().find(|r| r.plural == "services").unwrap();
        assert_eq!(svc.key("default", "kubernetes"), "/registry/services/specs/default/kubernetes");
    }

    #[test]
    fn cluster_kinds_as_kube_apiserver_serves_them() {
        let all = builtin();
        let find = |g: &str, p: &str| all.iter().find(|r| r.group == g && r.plural == p).cloned().unwrap();
        let csr = find("certificates.k8s.io", "certificatesigningrequests");
        assert_eq!(csr.short_names, ["csr"]);
        assert_eq!(csr.key("", "c1"), "/registry/certificatesigningrequests/c1");
        assert_eq!(csr.subresource("approval").unwrap().kind, "CertificateSigningRequest");
        assert_eq!(csr.subresource("approval").unwrap().verbs, ["get", "patch", "update"]);
        let cap = find("storage.k8s.io", "csistoragecapacities");
        assert!(cap.namespaced);
        assert_eq!(cap.key("ns", "c"), "/registry/csistoragecapacities/ns/c");
        assert_eq!(find("scheduling.k8s.io", "priorityclasses").key("", "p"), "/registry/priorityclasses/p");
        assert_eq!(find("networking.k8s.io", "ipaddresses").short_names, ["ip"]);
        assert_eq!(find("admissionregistration.k8s.io", "validatingwebhookconfigurations").categories, ["api-extensions"]);
        assert_eq!(find("apiextensions.k8s.io", "customresourcedefinitions").categories, ["api-extensions"]);
        assert_eq!(find("", "pods").categories, ["all"]);
        let cs = find("", "componentstatuses");
        assert_eq!((cs.short_names.clone(), cs.verbs.clone()), (vec!["cs".to_string()], vec!["get".to_string(), "list".to_string()]));
        assert!(is_virtual(&cs) && is_virtual(&find("", "bindings")) && is_virtual(&find("authentication.k8s.io", "tokenreviews")));
        assert!(!is_virtual(&find("", "pods")));
        assert!(all.iter().all(|r| !is_custom(r)), "no built-in is stored as a custom resource");
        // What kube-apiserver 1.33 serves by default.
        assert_eq!(all.len(), 61);
        let apis = find("apiregistration.k8s.io", "apiservices");
        assert_eq!(apis.key("", "v1.apps"), "/registry/apiregistration.k8s.io/apiservices/v1.apps");
        assert!(!is_custom(&apis));
        assert_eq!(apis.categories, ["api-extensions"]);
    }

    #[test]
    fn hpas_served_in_two_versions_share_storage() {
        let all = builtin();
        let hpas: Vec<_> = all.iter().filter(|r| r.plural == "horizontalpodautoscalers").collect();
        assert_eq!(hpas.iter().map(|r| r.version.as_str()).collect::<Vec<_>>(), ["v2", "v1"], "v2 first: preferred");
        assert_eq!(hpas[0].key("ns", "h"), hpas[1].key("ns", "h"));
    }

    #[test]
    fn events_share_storage_across_groups() {
        let all = builtin();
        let evs: Vec<_> = all.iter().filter(|r| r.plural == "events").collect();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].key_prefix(), evs[1].key_prefix());
    }
}
