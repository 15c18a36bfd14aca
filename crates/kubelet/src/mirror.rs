//! Mirror pods for the components that run inside the timonier process, as the kubelet makes
//! mirror pods for kubeadm's static pods: `kube-apiserver-NODE`, `kube-scheduler-NODE`,
//! `kube-controller-manager-NODE` (those the server runs), `kube-proxy-NODE` and
//! `coredns-NODE` (the agent's Service proxy and cluster DNS), in `kube-system`, bound to this
//! node and owned by it, their status the components' health.
//!
//! As upstream: the agent alone writes them; one deleted by a user (or made stale by a flag
//! change, or the node's re-registration) is deleted at once and created anew; mirror pods
//! on this node without a component behind them are deleted. The pod worker never runs them
//! (`is_mirror`), and their logs are the components' files (`component_logs`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::ResourceExt;
use serde_json::{json, Value};
use sha2::Digest;

pub use crate::component_logs::Component;
use crate::runtime::NodeRuntime;
use crate::{now_rfc3339, Error, Result};

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const NAMESPACE: &str = "kube-system";
/// Upstream's status sync period for static pods is the node's; ours matches the heartbeat.
const RESYNC: Duration = Duration::from_secs(10);

/// Whether a task still runs: cleared when it ends, panics included.
#[derive(Clone, Debug)]
pub struct TaskAlive(Arc<AtomicBool>);

impl Default for TaskAlive {
    fn default() -> Self {
        TaskAlive(Arc::new(AtomicBool::new(true)))
    }
}

impl TaskAlive {
    pub fn is_alive(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Runs `fut`, clearing the flag when it returns or unwinds.
    pub async fn track<F: Future>(self, fut: F) -> F::Output {
        struct Clear(Arc<AtomicBool>);
        impl Drop for Clear {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Relaxed);
            }
        }
        let _clear = Clear(self.0);
        fut.await
    }
}

/// How a component's readiness is known.
#[derive(Clone, Debug)]
pub enum Health {
    /// The API server's `/readyz`, as kubeadm's readiness probe asks it.
    ApiServerReadyz,
    /// Ready while its task runs.
    Task(TaskAlive),
    /// The agent's Service proxy loop says (`ProxyHealth`): kube-proxy and coredns.
    ServiceProxy,
}

/// A control-plane component the server runs in-process, for its mirror pod.
#[derive(Clone, Debug)]
pub struct StaticComponent {
    pub component: Component,
    pub health: Health,
}

/// What the Service proxy loop reports for the kube-proxy and coredns pods.
#[derive(Debug, Default)]
pub struct ProxyHealth {
    pub running: TaskAlive,
    /// The service rules were written once.
    pub rules_synced: AtomicBool,
    /// The DNS server has not failed (it listens from the start).
    pub dns_failed: AtomicBool,
    /// The DNS records were filled from the Services once.
    pub dns_records: AtomicBool,
}

/// A pod the kubelet made for a static pod, which no worker runs.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.annotations().contains_key(MIRROR_ANNOTATION)
}

struct Manager {
    node: Arc<NodeRuntime>,
    components: Vec<StaticComponent>,
    command: Vec<String>,
    image: String,
    /// When the agent first saw its static pods (upstream's `config.seen`).
    seen: String,
    /// Process start: every component's container started with it.
    started: String,
}

/// Keeps this node's mirror pods until the task is dropped; `wake` makes it look now (a
/// mirror pod changed or went).
pub async fn run(node: Arc<NodeRuntime>, wake: Arc<tokio::sync::Notify>) {
    let mut components = node.config.control_plane.clone();
    components.push(StaticComponent { component: Component::Proxy, health: Health::ServiceProxy });
    components.push(StaticComponent { component: Component::Dns, health: Health::ServiceProxy });
    let m = Manager {
        components,
        command: std::env::args().collect(),
        image: format!("timonier:{}", env!("CARGO_PKG_VERSION")),
        seen: format!("{:.9}", jiff::Timestamp::now()),
        started: process_start().map(|t| jiff::Timestamp::try_from(t).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|_| now_rfc3339())).unwrap_or_else(now_rfc3339),
        node,
    };
    loop {
        let again = match m.sync().await {
            Ok(()) => RESYNC,
            Err(e) => {
                tracing::warn!(error = %e, "cannot update the mirror pods; retrying");
                Duration::from_secs(1)
            }
        };
        if tokio::time::timeout(again, wake.notified()).await.is_ok() {
            // Coalesce a burst (our own status writes come back as events too).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn api_err(what: &str, e: kube::Error) -> Error {
    Error::Api(format!("{what}: {e}"))
}

impl Manager {
    async fn sync(&self) -> Result<()> {
        let client = self.node.config.client.clone();
        let node_name = &self.node.facts.name;
        let node = match Api::<Node>::all(client.clone()).get(node_name).await {
            Ok(n) => n,
            // Deleted: the heartbeat registers it again, and its mirror pods follow.
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(api_err("cannot read the node", e)),
        };
        let node_uid = node.uid().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
        let lp = ListParams::default().fields(&format!("spec.nodeName={node_name}"));
        let list = pods.list(&lp).await.map_err(|e| api_err("cannot list the mirror pods", e))?;
        let mut existing: HashMap<String, Pod> = list.items.into_iter().filter(is_mirror).map(|p| (p.name_any(), p)).collect();
        for sc in &self.components {
            let name = format!("{}-{node_name}", sc.component.name());
            let (desired, hash) = self.pod(sc.component, &name, &node_uid);
            let current = match existing.remove(&name) {
                Some(p) if up_to_date(&p, &hash, &node_uid) => p,
                other => {
                    if let Some(stale) = other {
                        // Deleted by a user, or from other flags or an earlier Node: upstream
                        // deletes the mirror pod at once and makes it again.
                        delete_now(&pods, &stale).await?;
                    }
                    let pod: Pod = serde_json::from_value(desired).map_err(|e| Error::Internal(format!("mirror pod {name}: {e}")))?;
                    match pods.create(&PostParams::default(), &pod).await {
                        Ok(p) => {
                            tracing::info!(pod = %name, "created the mirror pod");
                            p
                        }
                        Err(kube::Error::Api(e)) if e.code == 409 => {
                            tracing::warn!(pod = %name, "a pod that is not a mirror pod holds the name of one; leaving it");
                            continue;
                        }
                        Err(e) => return Err(api_err(&format!("cannot create the mirror pod {name}"), e)),
                    }
                }
            };
            let ready = self.healthy(&sc.health, sc.component).await;
            let status = self.status(sc.component, &hash, ready, &current);
            if differs(&status, current.status.as_ref()) {
                let patch = Patch::Merge(json!({"status": status}));
                pods.patch_status(&name, &PatchParams::default(), &patch).await.map_err(|e| api_err(&format!("cannot update the status of {name}"), e))?;
            }
        }
        for (_, orphan) in existing {
            tracing::info!(pod = %orphan.name_any(), "deleting a mirror pod whose component does not run here");
            delete_now(&pods, &orphan).await?;
        }
        Ok(())
    }

    async fn healthy(&self, health: &Health, component: Component) -> bool {
        let proxy = &self.node.proxy_health;
        match (health, component) {
            (Health::ServiceProxy, Component::Dns) => proxy.running.is_alive() && !proxy.dns_failed.load(Ordering::Relaxed) && proxy.dns_records.load(Ordering::Relaxed),
            (Health::ServiceProxy, _) => proxy.running.is_alive() && proxy.rules_synced.load(Ordering::Relaxed),
            (Health::Task(alive), _) => alive.is_alive(),
            (Health::ApiServerReadyz, _) => {
                let Ok(req) = http::Request::get("/readyz").body(Vec::new()) else { return false };
                let answer = tokio::time::timeout(Duration::from_secs(5), self.node.config.client.request_text(req)).await;
                matches!(answer, Ok(Ok(body)) if body.trim() == "ok")
            }
        }
    }

    /// The static pod of `component`, as kubeadm would write its manifest, with the
    /// annotations and owner the kubelet gives its mirror pod; and the manifest's hash.
    fn pod(&self, component: Component, name: &str, node_uid: &str) -> (Value, String) {
        let labels = match component {
            Component::Proxy => json!({"k8s-app": "kube-proxy"}),
            Component::Dns => json!({"k8s-app": "kube-dns"}),
            c => json!({"component": c.name(), "tier": "control-plane"}),
        };
        // Only the DNS server is merely cluster-critical: nodes work without it.
        let (class, priority) = match component {
            Component::Dns => ("system-cluster-critical", 2_000_000_000),
            _ => ("system-node-critical", 2_000_001_000),
        };
        let spec = json!({
            "nodeName": self.node.facts.name,
            // Every component shares the host's network namespace: it is this process.
            "hostNetwork": true,
            "priorityClassName": class,
            "priority": priority,
            "containers": [{
                "name": component.name(),
                "image": self.image,
                "imagePullPolicy": "IfNotPresent",
                "command": self.command,
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
            "enableServiceLinks": true,
        });
        let manifest = json!({"name": name, "labels": labels, "spec": spec});
        let digest = sha2::Sha256::digest(manifest.to_string().as_bytes());
        // Upstream's hash is an md5 (32 hex digits); the same length reads the same.
        let hash = hex::encode(&digest[..16]);
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "labels": labels,
                "annotations": {
                    MIRROR_ANNOTATION: hash,
                    "kubernetes.io/config.hash": hash,
                    "kubernetes.io/config.seen": self.seen,
                    "kubernetes.io/config.source": "file",
                },
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node.facts.name, "uid": node_uid, "controller": true}],
            },
            "spec": spec,
        });
        (pod, hash)
    }

    /// The status upstream's status manager would post for the running static pod; times of
    /// conditions that did not change are kept from `current`.
    fn status(&self, component: Component, hash: &str, ready: bool, current: &Pod) -> Value {
        let ip = self.node.facts.ip.to_string();
        let since = |kind: &str, status: &str| -> String {
            current
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == kind && c.status == status))
                .and_then(|c| c.last_transition_time.as_ref())
                .and_then(|t| serde_json::to_value(t).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| if status == "True" && kind != "Ready" && kind != "ContainersReady" { self.started.clone() } else { now_rfc3339() })
        };
        let ready_s = if ready { "True" } else { "False" };
        let mut conditions = vec![];
        for kind in ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"] {
            let status = if kind == "Ready" || kind == "ContainersReady" { ready_s } else { "True" };
            let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since(kind, status)});
            if status == "False" {
                c["reason"] = json!("ContainersNotReady");
                c["message"] = json!(format!("containers with unready status: [{}]", component.name()));
            }
            conditions.push(c);
        }
        json!({
            "phase": "Running",
            "conditions": conditions,
            "hostIP": ip,
            "hostIPs": [{"ip": ip}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": self.started,
            "qosClass": "BestEffort",
            "containerStatuses": [{
                "name": component.name(),
                "state": {"running": {"startedAt": self.started}},
                "ready": ready,
                "started": true,
                "restartCount": 0,
                "image": self.image,
                "imageID": "",
                // The component is this process: no runtime container stands behind it.
                "containerID": format!("timonier://{}-{}", &hash[..12], component.name()),
            }],
        })
    }
}

/// Whether the mirror pod still mirrors the current static pod, owned by the current Node.
fn up_to_date(pod: &Pod, hash: &str, node_uid: &str) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.annotations().get(MIRROR_ANNOTATION).map(String::as_str) == Some(hash)
        && pod.owner_references().iter().any(|o| o.kind == "Node" && o.uid == node_uid)
}

/// Whether posting `desired` would change the stored status (compared in the typed form both
/// go through, so that timestamps and defaults read alike).
fn differs(desired: &Value, current: Option<&PodStatus>) -> bool {
    let (Ok(typed), Some(current)) = (serde_json::from_value::<PodStatus>(desired.clone()), current) else { return true };
    let (Ok(Value::Object(want)), Ok(have)) = (serde_json::to_value(typed), serde_json::to_value(current)) else { return true };
    want.iter().any(|(k, v)| have.get(k) != Some(v))
}

/// Deletes a mirror pod now (grace 0, this very object), as upstream's DeleteMirrorPod.
async fn delete_now(pods: &Api<Pod>, pod: &Pod) -> Result<()> {
    let dp = DeleteParams { grace_period_seconds: Some(0), preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }), ..Default::default() };
    match pods.delete(&pod.name_any(), &dp).await {
        Ok(_) => Ok(()),
        // Gone already, or replaced meanwhile: the next pass looks again.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(api_err(&format!("cannot delete the mirror pod {}", pod.name_any()), e)),
    }
}

/// When this process started (`/proc/self/stat`'s start time after boot, plus the boot time).
fn process_start() -> Option<SystemTime> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may hold spaces) start at field 3; starttime is 22.
    let after = stat.rsplit_once(')')?.1;
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let btime: u64 = std::fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(btime) + Duration::from_millis(ticks * 1000 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_start_is_in_the_past() {
        let t = process_start().expect("/proc/self/stat");
        let age = SystemTime::now().duration_since(t).expect("started before now");
        assert!(age < Duration::from_secs(3600), "{age:?}");
    }

    #[test]
    fn status_comparison_ignores_what_is_not_posted() {
        let desired = json!({"phase": "Running", "startTime": "2024-01-01T00:00:00Z", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}]});
        let mut current: PodStatus = serde_json::from_value(desired.clone()).unwrap();
        current.qos_class = Some("BestEffort".into());
        assert!(!differs(&desired, Some(&current)));
        current.phase = Some("Pending".into());
        assert!(differs(&desired, Some(&current)));
        assert!(differs(&desired, None));
    }

    #[tokio::test]
    async fn task_alive_clears_when_the_task_ends() {
        let alive = TaskAlive::default();
        assert!(alive.is_alive());
        alive.clone().track(async {}).await;
        assert!(!alive.is_alive());
        let alive = TaskAlive::default();
        let h = tokio::spawn(alive.clone().track(async { panic!("boom") }));
        assert!(h.await.is_err());
        assert!(!alive.is_alive());
    }
}
