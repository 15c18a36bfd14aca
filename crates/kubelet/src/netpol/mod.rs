//! The node's NetworkPolicy enforcer (kube-router's and calico-node's job): NetworkPolicies,
//! Pods and Namespaces from watch caches become the pod network's policy table
//! (`timonier_network::PodNetwork::sync_policies`) whenever what they imply for this node's
//! pods changes — recomputed on watch events, a burst coalesced into one pass, never per
//! packet.
//!
//! Ingress is enforced here for this node's pods, egress likewise, so peers are pods of every
//! node: the pod and namespace caches are cluster-wide. They are kept only while some
//! NetworkPolicy exists, so that a cluster without policies pays neither their memory nor a
//! rule per packet; and the pods are trimmed to what policies look at.

mod rules;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use timonier_client::{watch, AbortOnDrop};
use timonier_network::{PodNetwork, PolicyRules};

/// The cluster-wide caches peers are found in.
struct Peers {
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    _tasks: (AbortOnDrop, AbortOnDrop),
}

impl Peers {
    async fn start(client: &Client, wake: &Arc<tokio::sync::Notify>) -> Peers {
        let (pods, t1) = trimmed_pods(Api::all(client.clone()), wake.clone());
        let (namespaces, t2) = watch::<Namespace>(Api::all(client.clone()), wake.clone());
        let _ = pods.wait_until_ready().await;
        let _ = namespaces.wait_until_ready().await;
        Peers { pods, namespaces, _tasks: (t1, t2) }
    }
}

/// What a policy looks at in a pod: its namespace, name and labels, node, host networking,
/// container ports (named ports), phase and addresses. The rest (env, volumes, managed
/// fields, conditions…) would be most of each cached pod, on every node.
fn trim(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    (meta.annotations, meta.managed_fields, meta.owner_references, meta.finalizers) = (None, None, None, None);
    pod.spec = pod.spec.take().map(|s| PodSpec {
        containers: s.containers.into_iter().map(|c| Container { name: c.name, ports: c.ports, ..Default::default() }).collect(),
        host_network: s.host_network,
        node_name: s.node_name,
        ..Default::default()
    });
    pod.status = pod.status.take().map(|s| PodStatus { phase: s.phase, pod_ip: s.pod_ip, pod_ips: s.pod_ips, ..Default::default() });
}

/// `timonier_client::watch` for pods, trimmed before they are cached.
fn trimmed_pods(api: Api<Pod>, wake: Arc<tokio::sync::Notify>) -> (Store<Pod>, AbortOnDrop) {
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff().modify(trim)).touched_objects();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::debug!(error = %e, "pod watch");
            }
            wake.notify_one();
        }
    });
    (reader, AbortOnDrop(task))
}

pub async fn run(client: Client, network: PodNetwork) {
    let pod_cidr = network.config().pod_cidr;
    let wake = Arc::new(tokio::sync::Notify::new());
    let (policies, _t) = watch::<NetworkPolicy>(Api::all(client.clone()), wake.clone());
    while tokio::time::timeout(Duration::from_secs(30), policies.wait_until_ready()).await.is_err() {
        tracing::warn!("cannot list NetworkPolicies yet (the node needs list and watch on networkpolicies, pods and namespaces); policies are not enforced");
    }
    let mut peers: Option<Peers> = None;
    let mut applied: Option<PolicyRules> = None;
    loop {
        let list = policies.state();
        if list.is_empty() {
            peers = None;
        } else if peers.is_none() {
            peers = Some(Peers::start(&client, &wake).await);
        }
        let rules = match &peers {
            Some(p) => rules::compute(pod_cidr, &list, &p.pods.state(), &p.namespaces.state()),
            None => PolicyRules::default(),
        };
        if applied.as_ref() != Some(&rules) {
            match network.sync_policies(&rules).await {
                Ok(()) => {
                    tracing::debug!(ingress = rules.ingress.len(), egress = rules.egress.len(), "network policy rules updated");
                    applied = Some(rules);
                }
                Err(e) => tracing::warn!(error = %e, "cannot update the network policy rules; retrying"),
            }
        }
        let wait = if applied.is_some() { Duration::from_secs(60) } else { Duration::from_secs(5) };
        let _ = tokio::time::timeout(wait, wake.notified()).await;
        // Coalesce a burst of changes (a rollout, a namespace of policies) into one pass.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
