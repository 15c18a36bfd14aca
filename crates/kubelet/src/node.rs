//! The Node object and its heartbeats: registration with capacity, addresses and nodeInfo,
//! conditions refreshed every 10 s, and the Lease in `kube-node-lease` that the node
//! lifecycle controller reads to tell a live node from a dead one.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::{now_rfc3339, Error, Result};

/// What the node reports about itself; gathered once at start.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub name: String,
    pub ip: IpAddr,
    pub cpus: u64,
    pub memory_bytes: u64,
    pub ephemeral_bytes: u64,
    pub kernel: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub port: u16,
    /// The pods the node takes (`status.capacity.pods`, the kubelet's `--max-pods`).
    pub max_pods: u32,
}

/// The kubelet's default `--max-pods`.
pub const MAX_PODS: u32 = 110;
/// How often the Lease is renewed and the status re-posted, as upstream's defaults.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_DURATION_SECONDS: i32 = 40;

impl NodeFacts {
    pub fn gather(name: &str, ip: IpAddr, port: u16, data_dir: &std::path::Path, max_pods: u32) -> NodeFacts {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0);
        let ephemeral_bytes = statvfs_total(data_dir).unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
        NodeFacts {
            name: name.to_string(),
            ip,
            cpus,
            memory_bytes,
            ephemeral_bytes,
            kernel: read("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            port,
            max_pods,
        }
    }

    fn capacity(&self) -> Value {
        json!({
            "cpu": self.cpus.to_string(),
            "memory": format!("{}Ki", self.memory_bytes / 1024),
            "pods": self.max_pods.to_string(),
            "ephemeral-storage": format!("{}Ki", self.ephemeral_bytes / 1024),
            "hugepages-2Mi": "0",
        })
    }

    /// Status as the kubelet posts it: conditions all healthy while the agent runs.
    pub fn status(&self, images: Value) -> Value {
        let now = now_rfc3339();
        let cond = |t: &str, status: &str, reason: &str, message: &str| {
            json!({"type": t, "status": status, "reason": reason, "message": message,
                   "lastHeartbeatTime": now, "lastTransitionTime": now})
        };
        json!({
            "capacity": self.capacity(),
            "allocatable": self.capacity(),
            "addresses": [
                {"type": "InternalIP", "address": self.ip.to_string()},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {
                "machineID": self.machine_id,
                "systemUUID": self.machine_id,
                "bootID": self.boot_id,
                "kernelVersion": self.kernel,
                "osImage": self.os_image,
                "containerRuntimeVersion": format!("timonier://{}", env!("CARGO_PKG_VERSION")),
                "kubeletVersion": crate::KUBELET_VERSION,
                "kubeProxyVersion": crate::KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            },
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "images": images,
        })
    }
}

fn statvfs_total(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a properly sized out-parameter.
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0).then(|| st.f_blocks as u64 * st.f_frsize as u64)
}

/// Creates the Node if it does not exist (keeping an existing one's spec, e.g. its podCIDR
/// and taints), with `labels` besides the well-known ones, then posts its status. Returns the
/// Node's uid (which its Lease's owner reference names).
pub async fn register(nodes: &Api<Node>, facts: &NodeFacts, images: Value, labels: &[(&str, &str)]) -> Result<String> {
    let mut node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": facts.name,
            "labels": {
                "kubernetes.io/hostname": facts.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {},
    });
    for (k, v) in labels {
        node["metadata"]["labels"][*k] = json!(v);
    }
    let node: Node = serde_json::from_value(node).map_err(|e| Error::Internal(format!("node object: {e}")))?;
    let uid = match nodes.create(&PostParams::default(), &node).await {
        Ok(n) => {
            tracing::debug!(node = %facts.name, "registered the node");
            n.metadata.uid
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::debug!(node = %facts.name, "the node exists already; taking it over");
            None
        }
        Err(e) => return Err(Error::Api(format!("cannot register node {}: {e}", facts.name))),
    };
    let posted = post_status(nodes, facts, images).await?;
    Ok(uid.or(posted.metadata.uid).unwrap_or_default())
}

pub async fn post_status(nodes: &Api<Node>, facts: &NodeFacts, images: Value) -> Result<Node> {
    let patch = json!({"status": facts.status(images)});
    nodes
        .patch_status(&facts.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::Api(format!("cannot update the status of node {}: {e}", facts.name)))
}

/// Creates or renews the node's Lease.
pub async fn renew_lease(leases: &Api<Lease>, facts: &NodeFacts, node_uid: &str) -> Result<()> {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let patch = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": facts.name,
            "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": facts.name, "uid": node_uid}],
        },
        "spec": {"holderIdentity": facts.name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now},
    });
    match leases.patch(&facts.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease: Lease = serde_json::from_value(patch).map_err(|e| Error::Internal(format!("lease object: {e}")))?;
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
                .map_err(|e| Error::Api(format!("cannot create the node lease: {e}")))
        }
        Err(e) => Err(Error::Api(format!("cannot renew the node lease: {e}"))),
    }
}
