//! The workload controllers, as kube-controller-manager runs them but as ordinary API clients:
//! `replicaset.rs` keeps each ReplicaSet's pods at its replica count, `deployment.rs` rolls
//! Deployments out through ReplicaSets (RollingUpdate and Recreate, revisions, rollback by
//! kubectl, status and conditions that `kubectl rollout status` reads), `endpoints.rs` turns
//! each Service's selected pods into its Endpoints and EndpointSlice.
//!
//! Each controller is a level-triggered loop over watch caches: any change wakes one pass
//! over all its objects. Writes a pass makes are "expected" until the caches show them, so
//! that a pass never acts twice on a state it has already changed.

mod deployment;
mod endpoints;
pub mod node_lifecycle;
mod replicaset;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Client;

/// The API clients the controllers use, as kube-controller-manager with
/// `--use-service-account-credentials`: its own identity (`system:kube-controller-manager`,
/// which may list and watch everything) feeds the watch caches, and each controller writes
/// with its service account's credentials, bound to its `system:controller:<name>` role.
#[derive(Clone)]
pub struct Clients {
    pub informers: Client,
    pub deployment: Client,
    pub replicaset: Client,
    pub endpoint: Client,
    pub endpointslice: Client,
    /// The node lifecycle and taint eviction controllers' (`node-controller`).
    pub node: Client,
    pub pod_gc: Client,
}

impl Clients {
    /// One client for everything (an administrator's: tests, benchmarks).
    pub fn single(client: Client) -> Clients {
        Clients {
            informers: client.clone(),
            deployment: client.clone(),
            replicaset: client.clone(),
            endpoint: client.clone(),
            endpointslice: client.clone(),
            node: client.clone(),
            pod_gc: client,
        }
    }
}

/// Runs the controllers until `shutdown` resolves.
pub async fn run(clients: Clients, shutdown: impl std::future::Future<Output = ()>) {
    run_with(clients, node_lifecycle::Config::default(), shutdown).await
}

/// [`run`], with the node controllers' settings.
pub async fn run_with(clients: Clients, nodes: node_lifecycle::Config, shutdown: impl std::future::Future<Output = ()>) {
    tokio::select! {
        _ = node_lifecycle::run(clients.informers.clone(), clients.node.clone(), clients.pod_gc.clone(), nodes) => {}
        _ = replicaset::run(clients.informers.clone(), clients.replicaset.clone()) => {}
        _ = deployment::run(clients.informers.clone(), clients.deployment.clone()) => {}
        _ = endpoints::run(clients.informers.clone(), clients.endpoint.clone(), clients.endpointslice.clone()) => {}
        _ = shutdown => {}
    }
}

/// Replaces the status of `obj` (as cached: its resourceVersion guards the write) with
/// `status` — upstream's UpdateStatus, the verb the controllers' roles grant on `*/status`.
async fn update_status<K>(api: &kube::Api<K>, obj: &K, status: serde_json::Value) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let mut body = serde_json::to_value(obj).map_err(kube::Error::SerdeError)?;
    body["status"] = status;
    let obj: K = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
    let name = obj.meta().name.clone().unwrap_or_default();
    api.replace_status(&name, &kube::api::PostParams::default(), &obj).await
}

/// How long a pass waits for the caches to show its own writes before acting again anyway.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);

use timonier_client::now_rfc3339;

/// Upstream's alphabet for generated name parts: consonants and digits that spell no words.
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// 32-bit FNV-1a, stable across processes, for names derived from content.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u32 {
    bytes.into_iter().fold(0x811c_9dc5, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The uid of the object's managing controller (its `controller: true` owner).
fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| o.uid.as_str())
}

fn owner_reference(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A `metav1.LabelSelector` as a matcher; an absent or invalid one selects nothing.
fn selector(sel: Option<&LabelSelector>) -> Option<timonier_api::selector::LabelSelector> {
    let json = serde_json::to_value(sel?).ok()?;
    let s = timonier_api::selector::LabelSelector::from_json(&json).ok()?;
    (!s.is_empty()).then_some(s)
}

fn selects(sel: &timonier_api::selector::LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let map: serde_json::Map<String, serde_json::Value> = labels.into_iter().flatten().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    sel.matches(Some(&map))
}

fn terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Counts towards a controller's replicas: not finished, not being deleted.
fn active(pod: &Pod) -> bool {
    !terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod became Ready, if it is.
fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    let c = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    if c.status != "True" {
        return None;
    }
    Some(c.last_transition_time.as_ref().map(|t| t.0).unwrap_or_else(jiff::Timestamp::now))
}

/// Ready for at least `min_ready_seconds`; else, if ready, how long until it will be.
fn available(pod: &Pod, min_ready_seconds: i32) -> (bool, Option<Duration>) {
    let Some(since) = ready_since(pod) else { return (false, None) };
    if min_ready_seconds <= 0 {
        return (true, None);
    }
    let at = since + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds));
    let now = jiff::Timestamp::now();
    if at <= now {
        (true, None)
    } else {
        (false, Some(Duration::from_secs_f64(at.duration_since(now).as_secs_f64().max(0.0)) + Duration::from_millis(50)))
    }
}

/// The earlier of two optional deadlines.
fn sooner(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A resourceVersion as a number (this API server's are store revisions).
fn revision_of(meta: &ObjectMeta) -> u64 {
    meta.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0)
}
