//! A pod as the scheduler needs it, parsed once per version of the pod (upstream's
//! `framework.PodInfo`): requests, host ports, tolerations, and its inter-pod affinity terms
//! compiled — never re-read from the object per node.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, PodAffinityTerm, Toleration, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use timonier_api::printers::quantity_value;

use crate::selector::{Labels, Op, Requirement, Selector};

/// What scoring assumes a container without a request uses (upstream's
/// `DefaultMilliCPURequest` and `DefaultMemoryRequest`), so that best-effort pods spread.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// Requests in upstream's units: milli-CPU and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl Requests {
    fn add(&mut self, o: &Requests) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
    }

    fn max(&mut self, o: &Requests) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
    }

    pub fn sub(&mut self, o: &Requests) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
    }

    pub fn plus(&mut self, o: &Requests) {
        self.add(o)
    }
}

/// A quantity in units of 1/`scale` rounded up, as `Quantity.MilliValue()`/`Value()` do — but
/// without turning `100m` into 101 through floating point.
pub fn scaled(q: Option<&Quantity>, scale: f64) -> Option<i64> {
    let v = quantity_value(&q?.0)? * scale;
    let r = v.round();
    Some(if (v - r).abs() < 1e-6 { r } else { v.ceil() } as i64)
}

/// (protocol, hostIP, hostPort) of a port that takes a host port, with upstream's defaults
/// (TCP, 0.0.0.0).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

/// An inter-pod affinity term as upstream's `framework.AffinityTerm`: the namespaces it names
/// (the pod's own when it names none and has no namespace selector), the namespace selector
/// (nothing when absent) and the pod selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffinityTerm {
    pub namespaces: BTreeSet<String>,
    pub namespace_selector: Selector,
    pub selector: Selector,
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(pod_namespace: &str, pod_labels: &Labels, t: &PodAffinityTerm) -> AffinityTerm {
        let names = t.namespaces.clone().unwrap_or_default();
        let namespaces = if names.is_empty() && t.namespace_selector.is_none() { BTreeSet::from([pod_namespace.to_string()]) } else { names.into_iter().collect() };
        let mut selector = Selector::from_label_selector(t.label_selector.as_ref());
        // matchLabelKeys/mismatchLabelKeys: the pod's own values, `In`/`NotIn`. Upstream's API
        // server writes them into the stored selector at creation; adding them again here is
        // harmless (requirements are deduplicated) and keeps pods stored without them right.
        // A nil selector stays nil: it selects nothing either way.
        if selector != Selector::Nothing {
            let mut extra = vec![];
            for (keys, op) in [(&t.match_label_keys, Op::In), (&t.mismatch_label_keys, Op::NotIn)] {
                for k in keys.iter().flatten() {
                    if let Some(v) = pod_labels.get(k) {
                        extra.push(Requirement { key: k.clone(), op, values: vec![v.clone()] });
                    }
                }
            }
            if !extra.is_empty() {
                selector = selector.and(&Selector::Requirements(extra));
            }
        }
        AffinityTerm { namespaces, namespace_selector: Selector::from_label_selector(t.namespace_selector.as_ref()), selector, topology_key: t.topology_key.clone() }
    }

    /// Whether a pod in `namespace` (whose labels are `ns_labels`) with `labels` is one this
    /// term selects.
    pub fn matches(&self, namespace: &str, labels: &Labels, ns_labels: Option<&Labels>) -> bool {
        let ns_ok = self.namespaces.contains(namespace) || ns_labels.is_some_and(|l| self.namespace_selector.matches(l)) || (ns_labels.is_none() && self.namespace_selector.is_empty());
        ns_ok && self.selector.matches(labels)
    }
}

/// The controller owning a pod, as its ownerReference says (for the default spreading's
/// selector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub kind: String,
    pub api_version: String,
    pub name: String,
}

#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// `spec.nodeName` ("" while pending).
    pub node_name: String,
    pub scheduler_name: String,
    pub priority: i32,
    pub preemption_never: bool,
    /// `deletionTimestamp` set: still on its node, but spreading no longer counts it.
    pub terminating: bool,
    /// Succeeded or Failed: holds nothing on its node any more.
    pub terminal: bool,
    /// `spec.schedulingGates` not empty: not to be scheduled yet.
    pub gated: bool,
    pub created: Option<String>,
    /// What NodeResourcesFit checks and BalancedAllocation scores.
    pub requests: Requests,
    /// Requests with the defaults for containers that request none (LeastAllocated).
    pub nonzero: Requests,
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i32, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i32, AffinityTerm)>,
    pub owner: Option<Owner>,
    /// Image names as ImageLocality looks them up (`:latest` added to untagged ones), init
    /// containers then containers.
    pub images: Vec<String>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let (requests, nonzero) = pod_requests(&pod);
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let labels = meta.labels.clone().unwrap_or_default();
        let required = |t: Option<&Vec<PodAffinityTerm>>| t.into_iter().flatten().map(|t| AffinityTerm::new(&namespace, &labels, t)).collect::<Vec<_>>();
        let preferred = |t: Option<&Vec<WeightedPodAffinityTerm>>| t.into_iter().flatten().map(|t| (t.weight, AffinityTerm::new(&namespace, &labels, &t.pod_affinity_term))).collect::<Vec<_>>();
        let owner = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| Owner { kind: o.kind.clone(), api_version: o.api_version.clone(), name: o.name.clone() });
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        let images = spec.map(|s| s.init_containers.iter().flatten().chain(s.containers.iter()).map(|c| normalized_image(c.image.as_deref().unwrap_or(""))).collect()).unwrap_or_default();
        PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            scheduler_name: spec.and_then(|s| s.scheduler_name.clone()).filter(|n| !n.is_empty()).unwrap_or_else(|| crate::SCHEDULER_NAME.to_string()),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            preemption_never: spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never"),
            terminating: meta.deletion_timestamp.is_some(),
            terminal: matches!(phase, "Succeeded" | "Failed"),
            gated: spec.and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty()),
            created: meta.creation_timestamp.as_ref().map(|t| t.0.to_string()),
            requests,
            nonzero,
            host_ports: host_ports(&pod),
            tolerations: spec.and_then(|s| s.tolerations.clone()).unwrap_or_default(),
            required_affinity: required(pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
            required_anti_affinity: required(paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
            preferred_affinity: preferred(pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
            preferred_anti_affinity: preferred(paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
            owner,
            images,
            labels,
            namespace,
            pod,
        }
    }

    /// Any inter-pod affinity term at all (upstream's `PodsWithAffinity`).
    pub fn has_affinity_terms(&self) -> bool {
        !(self.required_affinity.is_empty() && self.required_anti_affinity.is_empty() && self.preferred_affinity.is_empty() && self.preferred_anti_affinity.is_empty())
    }
}

/// `normalizedImageName`: an image without a tag gets `:latest`.
pub fn normalized_image(name: &str) -> String {
    let last = |c: char| name.rfind(c).map_or(-1, |i| i as i64);
    if last(':') <= last('/') {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

/// A pod's requests as upstream's `resourcehelper.PodRequests`: the app containers' sum and
/// sidecars (restartable init containers), or the largest init container plus the sidecars
/// started before it when that is more, plus the pod overhead. Returned twice: as requested,
/// and with upstream's defaults for containers missing a cpu or memory request (scoring). A
/// container with limits but no requests requests its limits (API defaulting does the same).
pub fn pod_requests(pod: &Pod) -> (Requests, Requests) {
    let Some(spec) = &pod.spec else { return Default::default() };
    let container = |c: &Container| {
        let r = c.resources.as_ref();
        let get = |name: &str, scale: f64| {
            let req = r.and_then(|r| r.requests.as_ref()).and_then(|m| m.get(name));
            let lim = r.and_then(|r| r.limits.as_ref()).and_then(|m| m.get(name));
            scaled(req.or(lim), scale)
        };
        let (cpu, memory, storage) = (get("cpu", 1000.0), get("memory", 1.0), get("ephemeral-storage", 1.0).unwrap_or(0));
        let actual = Requests { milli_cpu: cpu.unwrap_or(0), memory: memory.unwrap_or(0), ephemeral_storage: storage };
        let nonzero = Requests { milli_cpu: cpu.unwrap_or(DEFAULT_MILLI_CPU), memory: memory.unwrap_or(DEFAULT_MEMORY), ephemeral_storage: storage };
        (actual, nonzero)
    };
    let (mut sum, mut sum_nz) = (Requests::default(), Requests::default());
    for c in &spec.containers {
        let (a, n) = container(c);
        sum.add(&a);
        sum_nz.add(&n);
    }
    let (mut sidecars, mut sidecars_nz) = (Requests::default(), Requests::default());
    let (mut init, mut init_nz) = (Requests::default(), Requests::default());
    for c in spec.init_containers.iter().flatten() {
        let (a, n) = container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sum.add(&a);
            sum_nz.add(&n);
            sidecars.add(&a);
            sidecars_nz.add(&n);
            init.max(&sidecars);
            init_nz.max(&sidecars_nz);
        } else {
            let (mut a, mut n) = (a, n);
            a.add(&sidecars);
            n.add(&sidecars_nz);
            init.max(&a);
            init_nz.max(&n);
        }
    }
    sum.max(&init);
    sum_nz.max(&init_nz);
    if let Some(o) = &spec.overhead {
        let overhead = Requests { milli_cpu: scaled(o.get("cpu"), 1000.0).unwrap_or(0), memory: scaled(o.get("memory"), 1.0).unwrap_or(0), ephemeral_storage: scaled(o.get("ephemeral-storage"), 1.0).unwrap_or(0) };
        sum.add(&overhead);
        sum_nz.add(&overhead);
    }
    (sum, sum_nz)
}

fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = &pod.spec else { return vec![] };
    let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|hp| *hp > 0)?;
            let protocol = p.protocol.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "TCP".into());
            let ip = p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
            Some(HostPort { protocol, ip, port })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::pod;
    use serde_json::json;

    #[test]
    fn requests_as_upstream() {
        let p = pod(json!({"spec": {"containers": [
            {"name": "a", "image": "b", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
            {"name": "b", "image": "b", "resources": {"limits": {"cpu": "0.5"}}},
            {"name": "c", "image": "b"}]}}));
        let (r, nz) = pod_requests(&p);
        assert_eq!(r, Requests { milli_cpu: 600, memory: 128 << 20, ephemeral_storage: 0 });
        assert_eq!(nz, Requests { milli_cpu: 700, memory: (128 << 20) + 2 * DEFAULT_MEMORY, ephemeral_storage: 0 });
        // An init container larger than the app containers sets the request; a sidecar adds
        // to both.
        let p = pod(json!({"spec": {"initContainers": [
            {"name": "side", "image": "b", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
            {"name": "init", "image": "b", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [{"name": "a", "image": "b", "resources": {"requests": {"cpu": "1"}}}],
            "overhead": {"cpu": "10m"}}}));
        assert_eq!(pod_requests(&p).0.milli_cpu, 2200 + 10);
        assert_eq!(scaled(Some(&Quantity("0.1".into())), 1000.0), Some(100));
        assert_eq!(scaled(Some(&Quantity("1Gi".into())), 1.0), Some(1 << 30));
        assert_eq!(normalized_image("busybox"), "busybox:latest");
        assert_eq!(normalized_image("localhost:5000/busybox"), "localhost:5000/busybox:latest");
        assert_eq!(normalized_image("nginx:1.25"), "nginx:1.25");
    }

    #[test]
    fn affinity_terms_default_to_the_pods_namespace() {
        let p = pod(json!({"metadata": {"namespace": "ns1"}, "spec": {"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"},
                {"labelSelector": {"matchLabels": {"app": "web"}}, "namespaceSelector": {}, "topologyKey": "zone"},
                {"labelSelector": {"matchLabels": {"app": "web"}}, "namespaces": ["ns2"], "topologyKey": "zone"}]}}}}));
        let info = PodInfo::new(Arc::new(p));
        let web: Labels = [("app".to_string(), "web".to_string())].into();
        let t = &info.required_anti_affinity;
        assert!(t[0].matches("ns1", &web, None) && !t[0].matches("ns2", &web, None));
        assert!(t[1].matches("anywhere", &web, Some(&Labels::new())));
        assert!(t[2].matches("ns2", &web, None) && !t[2].matches("ns1", &web, None));
    }

    #[test]
    fn match_and_mismatch_label_keys_narrow_affinity_terms() {
        let p = pod(json!({"metadata": {"labels": {"app": "web", "tenant": "a", "rev": "1"}}, "spec": {"affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["rev"], "mismatchLabelKeys": ["tenant"], "topologyKey": "zone"},
                {"matchLabelKeys": ["rev"], "topologyKey": "zone"}]}}}}));
        let info = PodInfo::new(Arc::new(p));
        let l = |pairs: &[(&str, &str)]| -> Labels { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        let t = &info.required_affinity[0];
        assert!(t.matches("default", &l(&[("app", "web"), ("rev", "1"), ("tenant", "b")]), None));
        assert!(!t.matches("default", &l(&[("app", "web"), ("rev", "2"), ("tenant", "b")]), None));
        assert!(!t.matches("default", &l(&[("app", "web"), ("rev", "1"), ("tenant", "a")]), None));
        // A nil selector selects nothing, keys or not.
        assert!(!info.required_affinity[1].matches("default", &l(&[("rev", "1")]), None));
    }
}
