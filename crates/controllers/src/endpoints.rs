//! The endpoints controllers: for each Service with a selector, the pods it selects that have
//! an IP become its Endpoints (`kubectl get endpoints`) and its EndpointSlice
//! (`kubectl describe service`, and what the node's Service proxy reads) — ready ones as
//! addresses, the others as not ready, named target ports resolved per pod.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use timonier_client::watch;

use crate::{active, owner_reference, ready_since};

const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// Marks the Endpoints this controller writes (upstream's annotation).
const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// `informers` feeds the watch caches; Endpoints are written as the endpoint controller
/// (`endpoints`), EndpointSlices as the endpointslice controller (`slices_client`): upstream's
/// two controllers, one pass here.
pub async fn run(informers: Client, endpoints_client: Client, slices_client: Client) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let (services, _t1) = watch::<Service>(Api::all(informers.clone()), wake.clone());
    let (pods, _t2) = watch::<Pod>(Api::all(informers.clone()), wake.clone());
    let (endpoints, _t3) = watch::<Endpoints>(Api::all(informers.clone()), wake.clone());
    let (slices, _t4) = watch::<EndpointSlice>(Api::all(informers), wake.clone());
    let _ = services.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let _ = endpoints.wait_until_ready().await;
    let _ = slices.wait_until_ready().await;
    loop {
        pass(&endpoints_client, &slices_client, &services, &pods, &endpoints, &slices).await;
        // Coalesce bursts of pod changes into one pass.
        wake.notified().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One endpoint of a Service: a pod and whether it is ready.
struct Member<'a> {
    pod: &'a Pod,
    ip: String,
    ready: bool,
    ports: Vec<(Option<String>, i32, String)>,
}

/// The container port a Service port targets on `pod`: a number as is, a name looked up
/// among the pod's container ports (`None` when the pod has no such port).
fn target_port(sp: &ServicePort, pod: &Pod) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == sp.protocol.as_deref().unwrap_or("TCP"))
            .map(|p| p.container_port),
    }
}

fn members<'a>(svc: &Service, pods: &'a [Arc<Pod>]) -> Vec<Member<'a>> {
    let spec = svc.spec.clone().unwrap_or_default();
    let Some(selector) = spec.selector.filter(|s| !s.is_empty()) else { return vec![] };
    let publish_all = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut out: Vec<Member> = pods
        .iter()
        .filter(|p| p.namespace() == svc.namespace() && !crate::terminal(p))
        .filter(|p| selector.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .filter_map(|p| {
            let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty())?;
            let ports = spec.ports.iter().flatten().filter_map(|sp| Some((sp.name.clone(), target_port(sp, p)?, sp.protocol.clone().unwrap_or_else(|| "TCP".into())))).collect();
            Some(Member { pod: p.as_ref(), ip, ready: publish_all || (active(p) && ready_since(p).is_some()), ports })
        })
        .collect();
    out.sort_by(|a, b| a.ip.cmp(&b.ip));
    out
}

fn target_ref(pod: &Pod) -> Value {
    json!({"kind": "Pod", "namespace": pod.namespace(), "name": pod.name_any(), "uid": pod.uid()})
}

/// `subsets` of the Endpoints: pods grouped by their resolved ports, as upstream repacks them.
fn subsets(members: &[Member]) -> Value {
    let mut groups: BTreeMap<String, (Value, Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for m in members.iter().filter(|m| !m.ports.is_empty()) {
        let ports: Vec<Value> = m.ports.iter().map(|(name, port, proto)| json!({"name": name, "port": port, "protocol": proto})).collect();
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let g = groups.entry(key).or_insert_with(|| (json!(ports), vec![], vec![]));
        let addr = json!({"ip": m.ip, "nodeName": m.pod.spec.as_ref().and_then(|s| s.node_name.clone()), "targetRef": target_ref(m.pod)});
        if m.ready {
            g.1.push(addr);
        } else {
            g.2.push(addr);
        }
    }
    json!(groups
        .into_values()
        .map(|(ports, ready, not_ready)| {
            let mut s = json!({"ports": ports});
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            s
        })
        .collect::<Vec<_>>())
}

fn slice_body(svc: &Service, members: &[Member]) -> (Value, Value) {
    let endpoints: Vec<Value> = members
        .iter()
        .map(|m| {
            let terminating = m.pod.metadata.deletion_timestamp.is_some();
            json!({
                "addresses": [m.ip],
                "conditions": {"ready": m.ready && !terminating, "serving": ready_since(m.pod).is_some(), "terminating": terminating},
                "nodeName": m.pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                "targetRef": target_ref(m.pod),
            })
        })
        .collect();
    // Ports as the service names them, with the first member's resolved target.
    let ports: Vec<Value> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .iter()
        .map(|sp| {
            let port = members.iter().find_map(|m| target_port(sp, m.pod));
            json!({"name": sp.name.clone().unwrap_or_default(), "port": port, "protocol": sp.protocol.clone().unwrap_or_else(|| "TCP".into())})
        })
        .collect();
    (json!(endpoints), json!(ports))
}

async fn pass(client: &Client, slices_client: &Client, services: &Store<Service>, pods: &Store<Pod>, endpoints: &Store<Endpoints>, slices: &Store<EndpointSlice>) {
    let pods = pods.state();
    let existing_eps: HashMap<(String, String), Arc<Endpoints>> = endpoints.state().into_iter().map(|e| ((e.namespace().unwrap_or_default(), e.name_any()), e)).collect();
    let existing_slices: HashMap<(String, String), Arc<EndpointSlice>> = slices
        .state()
        .into_iter()
        .filter(|s| s.labels().get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER))
        .filter_map(|s| Some(((s.namespace().unwrap_or_default(), s.labels().get(SERVICE_NAME)?.clone()), s)))
        .collect();
    let services = services.state();
    // Endpoints this controller wrote for a Service that is gone go with it, as upstream's
    // (Endpoints have no owner reference; slices do, and the garbage collector takes them).
    let live: std::collections::HashSet<(String, String)> = services.iter().map(|s| (s.namespace().unwrap_or_default(), s.name_any())).collect();
    for ((ns, name), ep) in &existing_eps {
        if ep.annotations().contains_key(TRIGGER_TIME) && !live.contains(&(ns.clone(), name.clone())) {
            let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
            let _ = api.delete(name, &Default::default()).await;
        }
    }
    for svc in services {
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.selector.as_ref().is_none_or(|s| s.is_empty()) || spec.type_.as_deref() == Some("ExternalName") || svc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
        let members = members(&svc, &pods);
        // Endpoints. Compared as typed values, so that what the server leaves out (nulls)
        // does not look like a change.
        let mut labels = svc.labels().clone();
        labels.insert("endpointslice.kubernetes.io/skip-mirror".into(), "true".into());
        let mut body = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": {TRIGGER_TIME: crate::now_rfc3339()}}});
        let want = subsets(&members);
        if want.as_array().is_some_and(|a| !a.is_empty()) {
            body["subsets"] = want;
        }
        let desired: Option<Endpoints> = serde_json::from_value(body.clone()).ok();
        let current = existing_eps.get(&(ns.clone(), name.clone()));
        let norm = |s: &Option<Vec<k8s_openapi::api::core::v1::EndpointSubset>>| s.clone().filter(|v| !v.is_empty());
        if current.is_none_or(|c| desired.as_ref().is_some_and(|d| norm(&d.subsets) != norm(&c.subsets))) {
            write::<Endpoints>(client, &ns, &name, body, current.and_then(|e| e.metadata.resource_version.clone())).await;
        }
        // EndpointSlice
        let (eps, ports) = slice_body(&svc, &members);
        let current = existing_slices.get(&(ns.clone(), name.clone()));
        let slice_name = current.map(|s| s.name_any()).unwrap_or_else(|| format!("{name}-{}", short(&svc.uid().unwrap_or_default())));
        let body = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name, "namespace": ns, "labels": {SERVICE_NAME: name, MANAGED_BY: CONTROLLER}, "ownerReferences": [owner_reference("v1", "Service", &svc.metadata)]},
            "addressType": "IPv4", "endpoints": eps, "ports": ports,
        });
        let desired: Option<EndpointSlice> = serde_json::from_value(body.clone()).ok();
        let same = current.is_some_and(|c| desired.as_ref().is_some_and(|d| d.endpoints == c.endpoints && d.ports.clone().unwrap_or_default() == c.ports.clone().unwrap_or_default()));
        if !same {
            write::<EndpointSlice>(slices_client, &ns, &slice_name, body, current.and_then(|s| s.metadata.resource_version.clone())).await;
        }
    }
}

/// Five characters of upstream's name alphabet from a uid, for a stable slice name.
fn short(uid: &str) -> String {
    let h = crate::fnv1a(uid.bytes());
    (0..5).map(|i| crate::NAME_ALPHABET[((h >> (i * 5)) as usize) % crate::NAME_ALPHABET.len()] as char).collect()
}

/// Creates the object, or replaces it at `rv` (a conflict means the cache was behind: the
/// next pass sees the newer object).
async fn write<K>(client: &Client, ns: &str, name: &str, mut body: Value, rv: Option<String>)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    if let Some(rv) = &rv {
        body["metadata"]["resourceVersion"] = json!(rv);
    }
    let result = match serde_json::from_value::<K>(body) {
        Err(e) => Err(kube::Error::SerdeError(e)),
        Ok(obj) if rv.is_some() => api.replace(name, &PostParams::default(), &obj).await.map(|_| ()),
        Ok(obj) => api.create(&PostParams::default(), &obj).await.map(|_| ()),
    };
    if let Err(e) = result {
        tracing::debug!(kind = %K::kind(&()), name, error = %e, "endpoints write");
    }
}
