//! Simulated nodes (`timonier agent --fake --count N`, `timonier server --fake-nodes N`), as
//! kwok gives them: nodes that register, renew their Leases and post their status as real
//! ones do, and whose pods become Running and Ready, with pod IPs, the status and events a
//! real node gives them — without containers. For benchmarks at cluster scale, and for users
//! who test controllers and schedulers against thousands of nodes.
//!
//! What a fake node does, and how to make it misbehave:
//! - Every node is `<prefix>-<i>`, labelled `node.timonier.io/fake=true`, with 32 CPUs, 256 GiB
//!   and 110 pods (kwok's defaults); its InternalIP is the agent's own address (as kwok's), so
//!   that nothing ever sends traffic to a made-up address.
//! - A pod bound to one goes Running in one status write (init containers completed, app
//!   containers running and ready), with the cached-image events (`Pulled`, `Created`,
//!   `Started`). Its IP comes from the node's `spec.podCIDR`, or from 100.64.0.0/10 (one /24
//!   per node index) for nodes beyond the cluster range; nothing routes to either.
//! - A pod annotated `fake.timonier.io/exit-code: "N"` runs and exits with N: `Succeeded` or
//!   `Failed` under restartPolicy Never (or OnFailure and 0), `CrashLoopBackOff` otherwise.
//! - A deleted pod is removed at once (its containers have nothing to stop).
//! - A node annotated `fake.timonier.io/not-ready: "true"` stops renewing its Lease and
//!   posting its status, and leaves its pods as they are (new ones Pending, deleted ones
//!   Terminating), as a dead machine: the node lifecycle controller then marks it NotReady and
//!   evicts its pods. Removing the annotation brings it back, and it catches up.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use serde_json::{json, Value};
use timonier_client::{EventType, Recorder};
use tokio::sync::Semaphore;

use crate::node::{self, NodeFacts};
use crate::status::{self, ContainerView, PodView, State};
use crate::{now_rfc3339, Error, Result};

/// The label every fake node carries.
pub const FAKE_LABEL: &str = "node.timonier.io/fake";
const EXIT_CODE_ANNOTATION: &str = "fake.timonier.io/exit-code";
const NOT_READY_ANNOTATION: &str = "fake.timonier.io/not-ready";
/// How often a node posts its status when nothing changed (upstream's
/// nodeStatusReportFrequency); its Lease is renewed every `node::LEASE_RENEW`.
const STATUS_REPORT: Duration = Duration::from_secs(300);
/// Requests in flight at once, to register nodes and to write pods' status.
const CONCURRENCY: usize = 32;

/// What to simulate.
#[derive(Clone)]
pub struct FakeConfig {
    /// Credentials that may write any node and pod (the fake nodes have no identity of their
    /// own, as kwok's).
    pub client: kube::Client,
    /// Nodes are `<prefix>-0` … `<prefix>-<count - 1>`.
    pub prefix: String,
    pub count: u32,
    /// Every fake node's InternalIP: the host this runs on.
    pub node_ip: IpAddr,
    /// Their kubelet port (where `kubectl logs` would go: the host's real agent, if any).
    pub port: u16,
}

/// What is known of each fake node, from the node watch.
#[derive(Default)]
struct NodeState {
    uid: String,
    pod_cidr: Option<String>,
    not_ready: bool,
}

struct Fake {
    config: FakeConfig,
    nodes: Mutex<HashMap<String, NodeState>>,
    /// The pods made Running, by uid: a status update echoed back by the watch is not work.
    started: Mutex<HashSet<String>>,
    /// Pod IPs handed out, by node: (next host number to try, addresses in use).
    ips: Mutex<HashMap<String, (u32, HashSet<Ipv4Addr>)>>,
    recorders: Mutex<HashMap<String, Arc<Recorder>>>,
    writes: Arc<Semaphore>,
}

impl FakeConfig {
    fn name(&self, i: u32) -> String {
        node_name(&self.prefix, i)
    }

    fn facts(&self, i: u32) -> NodeFacts {
        NodeFacts {
            name: self.name(i),
            ip: self.node_ip,
            cpus: 32,
            memory_bytes: 256 << 30,
            ephemeral_bytes: 100 << 30,
            kernel: "fake".into(),
            os_image: "fake".into(),
            machine_id: format!("fake-{i}"),
            boot_id: format!("fake-{i}"),
            port: self.port,
            max_pods: crate::node::MAX_PODS,
        }
    }

    fn index(&self, name: &str) -> Option<u32> {
        node_index(&self.prefix, self.count, name)
    }
}

fn node_name(prefix: &str, i: u32) -> String {
    format!("{prefix}-{i}")
}

/// The index of `name` if it is one of the `count` nodes named from `prefix`.
fn node_index(prefix: &str, count: u32, name: &str) -> Option<u32> {
    let i: u32 = name.strip_prefix(prefix)?.strip_prefix('-')?.parse().ok()?;
    // Written back as it was: "01" and "+1" parse too, but are not our names.
    (i < count && node_name(prefix, i) == name).then_some(i)
}

/// Runs the fake nodes until `shutdown` resolves.
pub async fn run(config: FakeConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let fake = Arc::new(Fake {
        config,
        nodes: Default::default(),
        started: Default::default(),
        ips: Default::default(),
        recorders: Default::default(),
        writes: Arc::new(Semaphore::new(CONCURRENCY)),
    });
    fake.register().await?;
    tokio::select! {
        _ = fake.clone().watch_nodes() => Err(Error::Api("the node watch ended".into())),
        _ = fake.clone().heartbeats() => Err(Error::Api("the heartbeats ended".into())),
        r = fake.clone().watch_pods() => r,
        _ = shutdown => Ok(()),
    }
}

impl Fake {
    /// Creates every node (or takes it over) and posts its status, `CONCURRENCY` at a time.
    async fn register(self: &Arc<Self>) -> Result<()> {
        let started = std::time::Instant::now();
        let count = self.config.count;
        let results = futures::stream::iter(0..count)
            .map(|i| {
                let this = self.clone();
                async move {
                    let nodes: Api<Node> = Api::all(this.config.client.clone());
                    let facts = this.config.facts(i);
                    let uid = node::register(&nodes, &facts, json!([]), &[(FAKE_LABEL, "true")]).await?;
                    // The Lease from the start, as the kubelet's; renewals are then spread out.
                    let leases: Api<Lease> = Api::namespaced(this.config.client.clone(), "kube-node-lease");
                    node::renew_lease(&leases, &facts, &uid).await?;
                    this.nodes.lock().unwrap_or_else(|e| e.into_inner()).entry(facts.name).or_default().uid = uid;
                    Ok::<_, Error>(())
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            return Err(e);
        }
        tracing::info!(nodes = count, elapsed_ms = started.elapsed().as_millis() as u64, "fake nodes registered");
        Ok(())
    }

    /// Keeps each node's uid, pod range and not-ready mark from a watch of the fake nodes.
    async fn watch_nodes(self: Arc<Self>) {
        let api: Api<Node> = Api::all(self.config.client.clone());
        let cfg = watcher::Config::default().labels(&format!("{FAKE_LABEL}=true"));
        let mut stream = watcher(api, cfg).boxed();
        while let Some(event) = stream.next().await {
            let node = match event {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => n,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "fake node watch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let Some(name) = node.metadata.name.clone().filter(|n| self.config.index(n).is_some()) else { continue };
            let not_ready = node.metadata.annotations.as_ref().and_then(|a| a.get(NOT_READY_ANNOTATION)).is_some_and(|v| v == "true");
            let back = {
                let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
                let state = nodes.entry(name.clone()).or_default();
                let back = state.not_ready && !not_ready;
                if state.not_ready != not_ready {
                    tracing::info!(node = %name, not_ready, "fake node readiness changed");
                }
                state.uid = node.metadata.uid.clone().unwrap_or_default();
                state.pod_cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
                state.not_ready = not_ready;
                back
            };
            if back {
                // What was bound or deleted while it was down waits for it: catch up.
                tokio::spawn(self.clone().catch_up(name));
            }
        }
    }

    /// Handles every pod of `node` again (a node back from not-ready).
    async fn catch_up(self: Arc<Self>, node: String) {
        let api: Api<Pod> = Api::all(self.config.client.clone());
        match api.list(&kube::api::ListParams::default().fields(&format!("spec.nodeName={node}"))).await {
            Ok(list) => {
                for pod in list.items {
                    self.handle(pod).await;
                }
            }
            Err(e) => tracing::warn!(node = %node, error = %e, "cannot list the pods of a fake node back from not-ready"),
        }
    }

    fn not_ready(&self, node: &str) -> bool {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).get(node).is_some_and(|s| s.not_ready)
    }

    /// Renews every node's Lease each `LEASE_RENEW`, spread evenly over the period, and posts
    /// each node's status every `STATUS_REPORT` (right away when it comes back from not-ready).
    async fn heartbeats(self: Arc<Self>) {
        let count = self.config.count.max(1);
        let mut tick = tokio::time::interval(node::LEASE_RENEW / count);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let rounds_per_report = (STATUS_REPORT.as_secs() / node::LEASE_RENEW.as_secs()).max(1) as u32;
        let mut silent: HashSet<u32> = HashSet::new();
        for n in 0u64.. {
            let i = (n % u64::from(count)) as u32;
            let round = (n / u64::from(count)) as u32;
            tick.tick().await;
            let facts = self.config.facts(i);
            let (uid, not_ready) = {
                let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
                nodes.get(&facts.name).map(|s| (s.uid.clone(), s.not_ready)).unwrap_or_default()
            };
            if not_ready {
                silent.insert(i);
                continue;
            }
            let report = silent.remove(&i) || (round > 0 && round % rounds_per_report == 0);
            let permit = self.writes.clone().acquire_owned().await;
            let client = self.config.client.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
                if let Err(e) = node::renew_lease(&leases, &facts, &uid).await {
                    tracing::debug!(node = %facts.name, error = %e, "fake node lease renewal failed");
                }
                if report {
                    let nodes: Api<Node> = Api::all(client);
                    if let Err(e) = node::post_status(&nodes, &facts, json!([])).await {
                        tracing::debug!(node = %facts.name, error = %e, "fake node status failed");
                    }
                }
            });
        }
    }

    /// Watches every pod and acts for those bound to a fake node.
    async fn watch_pods(self: Arc<Self>) -> Result<()> {
        let api: Api<Pod> = Api::all(self.config.client.clone());
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => self.handle(p).await,
                Ok(watcher::Event::Delete(p)) => self.forget(&p),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "pod watch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(Error::Api("the pod watch ended".into()))
    }

    /// One pod as it is now: started if new on a fake node, removed if deleted. A node that is
    /// not ready does neither, as a dead machine: its pods wait for it.
    async fn handle(self: &Arc<Self>, pod: Pod) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| self.config.index(n).is_some()) else { return };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        if phase != "Pending" {
            // Ours already (or done): keep its address taken after a restart.
            self.started.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone());
            if let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok()) {
                self.ips.lock().unwrap_or_else(|e| e.into_inner()).entry(node.clone()).or_default().1.insert(ip);
            }
        }
        if self.not_ready(&node) {
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            let permit = self.writes.clone().acquire_owned().await;
            let this = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                this.remove(&pod).await;
            });
            return;
        }
        if phase != "Pending" || !self.started.lock().unwrap_or_else(|e| e.into_inner()).insert(uid) {
            return;
        }
        let permit = self.writes.clone().acquire_owned().await;
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            this.start(&pod, &node).await;
        });
    }

    fn recorder(&self, node: &str) -> Arc<Recorder> {
        let mut recorders = self.recorders.lock().unwrap_or_else(|e| e.into_inner());
        recorders.entry(node.to_string()).or_insert_with(|| Arc::new(Recorder::new(self.config.client.clone(), "kubelet", Some(node)))).clone()
    }

    /// A pod address on `node`: from its pod range, or from 100.64.0.0/10 by node index.
    fn allocate_ip(&self, node: &str, host_network: bool) -> Option<String> {
        if host_network {
            return Some(self.config.node_ip.to_string());
        }
        let range = {
            let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            nodes.get(node).and_then(|s| s.pod_cidr.clone())
        };
        let (base, size) = match range.as_deref().and_then(|c| c.split_once('/')) {
            Some((ip, prefix)) => (ip.parse::<Ipv4Addr>().ok()?, 1u32 << (32 - prefix.parse::<u32>().ok()?.min(30))),
            None => (Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + (self.config.index(node)? << 8)), 256),
        };
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        let (next, used) = ips.entry(node.to_string()).or_default();
        // Host numbers 2 … size − 2 (.1 is a real node's bridge), round robin.
        for _ in 0..size {
            *next = if *next < 2 || *next >= size - 1 { 2 } else { *next };
            let ip = Ipv4Addr::from(u32::from(base) + *next);
            *next += 1;
            if used.insert(ip) {
                return Some(ip.to_string());
            }
        }
        None
    }

    /// Posts the pod's status as its containers started (or ran to their exit code), with
    /// the events a real node records.
    async fn start(&self, pod: &Pod, node: &str) {
        let (Some(spec), Some(name), Some(ns)) = (pod.spec.as_ref(), pod.metadata.name.as_deref(), pod.metadata.namespace.as_deref()) else { return };
        let now = now_rfc3339();
        let exit_code: Option<i32> = pod.metadata.annotations.as_ref().and_then(|a| a.get(EXIT_CODE_ANNOTATION)).and_then(|v| v.parse().ok());
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let view = |c: &k8s_openapi::api::core::v1::Container, state: State, last: Option<State>, restarts: i32| {
            let image = c.image.clone().unwrap_or_default();
            let running = matches!(state, State::Running { .. });
            ContainerView {
                name: c.name.clone(),
                image_id: format!("fake://{image}"),
                image,
                container_id: Some(format!("fake://{}", container_id(pod, &c.name))),
                ready: running,
                started: running,
                state,
                last_state: last,
                restart_count: restarts,
            }
        };
        let completed = |code: i32| State::Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed".into() } else { "Error".into() },
            message: None,
            started_at: now.clone(),
            finished_at: now.clone(),
        };
        let init: Vec<ContainerView> = spec.init_containers.iter().flatten().map(|c| view(c, completed(0), None, 0)).collect();
        let containers: Vec<ContainerView> = spec
            .containers
            .iter()
            .map(|c| match exit_code {
                None => view(c, State::Running { started_at: now.clone() }, None, 0),
                Some(code) if policy == "Never" || (policy == "OnFailure" && code == 0) => view(c, completed(code), None, 0),
                Some(code) => {
                    let message = format!("back-off 10s restarting failed container={} pod={name}_{ns}({})", c.name, pod.metadata.uid.as_deref().unwrap_or(""));
                    view(c, State::waiting("CrashLoopBackOff", Some(message)), Some(completed(code)), 1)
                }
            })
            .collect();
        let pod_status = pod.status.clone().unwrap_or_default();
        let previous: Vec<Value> = pod_status.conditions.iter().flatten().filter_map(|c| serde_json::to_value(c).ok()).collect();
        let v = PodView {
            restart_policy: policy,
            init,
            containers,
            ephemeral: vec![],
            sandbox_ready: true,
            host_ip: self.config.node_ip.to_string(),
            pod_ip: self.allocate_ip(node, spec.host_network == Some(true)),
            start_time: now.clone(),
            qos_class: pod_status.qos_class.clone().unwrap_or_else(|| "BestEffort".into()),
            readiness_gates: spec.readiness_gates.iter().flatten().map(|g| g.condition_type.clone()).collect(),
            previous_conditions: previous,
            now: now.clone(),
            terminating: false,
        };
        let patch = json!({"status": status::pod_status(&v)});
        let pods: Api<Pod> = Api::namespaced(self.config.client.clone(), ns);
        if let Err(e) = pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::debug!(pod = %name, error = %e, "fake pod status failed");
            self.started.lock().unwrap_or_else(|e| e.into_inner()).remove(pod.metadata.uid.as_deref().unwrap_or(""));
            return;
        }
        let recorder = self.recorder(node);
        let mut events = Vec::new();
        for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
            let path = format!("spec.{}{{{}}}", if spec.containers.iter().any(|a| a.name == c.name) { "containers" } else { "initContainers" }, c.name);
            let image = c.image.as_deref().unwrap_or("");
            events.push((path.clone(), "Pulled", format!("Container image \"{image}\" already present on machine")));
            events.push((path.clone(), "Created", format!("Created container: {}", c.name)));
            events.push((path, "Started", format!("Started container {}", c.name)));
        }
        // Written together: a real node's would be seconds apart, these have no order to keep.
        futures::future::join_all(events.into_iter().map(|(path, reason, message)| {
            let recorder = recorder.clone();
            async move { recorder.pod_event(pod, Some(path), EventType::Normal, reason, &message).await }
        }))
        .await;
    }

    /// A deleted pod: nothing runs, so it goes at once, as a kubelet confirms a deletion.
    async fn remove(&self, pod: &Pod) {
        let (Some(name), Some(ns)) = (pod.metadata.name.as_deref(), pod.metadata.namespace.as_deref()) else { return };
        let pods: Api<Pod> = Api::namespaced(self.config.client.clone(), ns);
        let dp = DeleteParams { grace_period_seconds: Some(0), preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }), ..Default::default() };
        match pods.delete(name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::debug!(pod = %name, error = %e, "cannot remove a deleted fake pod"),
        }
    }

    fn forget(&self, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        self.started.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("");
        if let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok()) {
            if let Some((_, used)) = self.ips.lock().unwrap_or_else(|e| e.into_inner()).get_mut(node) {
                used.remove(&ip);
            }
        }
        if let Some(r) = self.recorders.lock().unwrap_or_else(|e| e.into_inner()).get(node) {
            r.forget(uid);
        }
    }
}

/// A container ID as runtimes make them (64 hex digits), stable for a pod's container.
fn container_id(pod: &Pod, name: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("{}/{name}", pod.metadata.uid.as_deref().unwrap_or("")).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_ours_only_within_count() {
        assert_eq!(node_name("fake-node", 2), "fake-node-2");
        assert_eq!(node_index("fake-node", 3, "fake-node-2"), Some(2));
        for other in ["fake-node-3", "fake-nodes-1", "fake-node-x", "fake-node-01", "fake-node-+1"] {
            assert_eq!(node_index("fake-node", 3, other), None, "{other}");
        }
    }
}
