//! The `kubernetes` Service's endpoints: every live API server, as upstream's lease endpoint
//! reconciler (`--endpoint-reconciler-type=lease`) keeps them, so that pods reach the API
//! through any server and a dead server drops out.
//!
//! Every server — leader or not, as in kube-apiserver — renews a Lease of its own in
//! kube-system (labelled `apiserver.kubernetes.io/identity=kube-apiserver`, as upstream's API
//! server identity Leases) every few seconds, carrying the address and port it serves on, then
//! writes the `kubernetes` Endpoints and EndpointSlices from the Leases still alive. Upstream
//! keeps those records under `/registry/masterleases/` with an etcd TTL; a Lease does the same
//! job through the API, where `kubectl get leases -n kube-system` shows it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::rest::{meta_str, DeleteOptions, Mode, WriteOptions};
use crate::state::ApiState;

const NAMESPACE: &str = "kube-system";
const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
/// Where this server is reached, `IP:port` (upstream's master lease key is the IP).
const ENDPOINT_ANNOTATION: &str = "timonier.io/endpoint";
/// How long a server counts as alive after its last renewal (upstream's master lease TTL).
const LEASE_SECONDS: i64 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// This server's record and the loop that keeps the endpoints.
#[derive(Clone)]
pub struct EndpointReconciler {
    state: Arc<ApiState>,
    lease: String,
    identity: String,
    ip: String,
    port: u16,
}

impl EndpointReconciler {
    /// `identity` as in the leader-election Leases (`<hostname>_<uuid>`): the Lease is named
    /// `apiserver-<uuid>`.
    pub fn new(state: Arc<ApiState>, identity: &str, ip: &str, port: u16) -> EndpointReconciler {
        let id = identity.rsplit('_').next().unwrap_or(identity).to_lowercase();
        EndpointReconciler { state, lease: format!("apiserver-{id}"), identity: identity.to_string(), ip: ip.to_string(), port }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Renews this server's Lease and reconciles, every few seconds, forever.
    pub async fn run(self) {
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "cannot update the kubernetes Service's endpoints; will retry");
            }
        }
    }

    /// One renewal and reconciliation.
    pub async fn pass(&self) -> ApiResult<()> {
        self.renew().await?;
        self.reconcile(false).await
    }

    /// Takes this server out: deletes its Lease and its address from the endpoints (a clean
    /// stop, as upstream's `RemoveEndpoints`).
    pub async fn remove(&self) -> ApiResult<()> {
        let def = self.state.def("coordination.k8s.io", "v1", "leases")?;
        match self.state.delete(&def, NAMESPACE, &self.lease, &DeleteOptions::default()).await {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
        self.reconcile(true).await
    }

    async fn renew(&self) -> ApiResult<()> {
        let def = self.state.def("coordination.k8s.io", "v1", "leases")?;
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let endpoint = format!("{}:{}", self.ip, self.port);
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.lease,
                "namespace": NAMESPACE,
                "labels": {IDENTITY_LABEL: "kube-apiserver", "kubernetes.io/hostname": self.identity.rsplit_once('_').map_or(self.identity.as_str(), |(h, _)| h)},
                "annotations": {ENDPOINT_ANNOTATION: endpoint},
            },
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now},
        });
        match self.state.create(&def, NAMESPACE, lease.clone(), &WriteOptions::default()).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => {
                let update = |old: &Value| {
                    let mut new = old.clone();
                    new["spec"] = lease["spec"].clone();
                    new["metadata"]["annotations"][ENDPOINT_ANNOTATION] = json!(endpoint);
                    Ok(new)
                };
                self.state.guaranteed_update(&def, NAMESPACE, &self.lease, None, &WriteOptions::default(), update, Mode::Main).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the endpoints of the servers whose Leases are alive (without this one when
    /// `leaving`), and deletes the Leases of servers long gone.
    async fn reconcile(&self, leaving: bool) -> ApiResult<()> {
        let def = self.state.def("coordination.k8s.io", "v1", "leases")?;
        let cache = self.state.cache_of(&def)?;
        let now = jiff::Timestamp::now();
        let mut by_port: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
        if !leaving {
            by_port.entry(self.port).or_default().insert(self.ip.clone());
        }
        for (_, lease) in cache.list(&def.namespace_prefix(NAMESPACE)) {
            if lease.pointer(&format!("/metadata/labels/{}", IDENTITY_LABEL.replace('/', "~1"))).and_then(Value::as_str) != Some("kube-apiserver") {
                continue;
            }
            let name = meta_str(&lease, "name");
            if name == self.lease {
                continue;
            }
            let renewed = lease.pointer("/spec/renewTime").and_then(Value::as_str).and_then(|t| t.parse::<jiff::Timestamp>().ok());
            let seconds = lease.pointer("/spec/leaseDurationSeconds").and_then(Value::as_i64).unwrap_or(LEASE_SECONDS);
            let alive = renewed.is_some_and(|t| now.as_second() < t.as_second() + seconds);
            let endpoint = lease.pointer(&format!("/metadata/annotations/{}", ENDPOINT_ANNOTATION.replace('/', "~1"))).and_then(Value::as_str);
            match (alive, endpoint.and_then(|e| e.rsplit_once(':'))) {
                (true, Some((ip, port))) => {
                    if let Ok(port) = port.parse() {
                        by_port.entry(port).or_default().insert(ip.trim_matches(['[', ']']).to_string());
                    }
                }
                (true, None) => {}
                (false, _) => {
                    // Gone for a lease duration: any server may clear it (the uid spares a
                    // Lease the server re-created meanwhile).
                    let opts = DeleteOptions { uid: Some(meta_str(&lease, "uid").to_string()), ..Default::default() };
                    match self.state.delete(&def, NAMESPACE, name, &opts).await {
                        Ok(_) => tracing::info!(lease = name, "removed an API server that stopped renewing from the kubernetes Service"),
                        Err(e) if e.code == 404 || e.code == 409 => {}
                        Err(e) => tracing::warn!(lease = name, error = %e, "cannot delete an expired API server lease"),
                    }
                }
            }
        }
        self.write(&by_port).await
    }

    /// The Endpoints (one subset per port) and EndpointSlices (`kubernetes` for the lowest
    /// port, `kubernetes-<port>` for servers on others), unless they already say the same.
    /// Every server must write the same for the same servers, or they would rewrite each
    /// other's every pass: the order is the ports'.
    async fn write(&self, by_port: &BTreeMap<u16, BTreeSet<String>>) -> ApiResult<()> {
        let ports: Vec<u16> = by_port.keys().copied().collect();
        let subsets: Vec<Value> = ports
            .iter()
            .map(|p| json!({"addresses": by_port[p].iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(), "ports": [{"name": "https", "port": p, "protocol": "TCP"}]}))
            .collect();
        let ep = json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": subsets,
        });
        set_if_changed(&self.state, ("", "v1", "endpoints"), ep, &["subsets"]).await?;
        let mut names = BTreeSet::new();
        for (i, p) in ports.iter().enumerate() {
            let name = if i == 0 { "kubernetes".to_string() } else { format!("kubernetes-{p}") };
            let family = if by_port[p].iter().any(|ip| ip.contains(':')) { "IPv6" } else { "IPv4" };
            let slice = json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": family,
                "endpoints": by_port[p].iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
                "ports": [{"name": "https", "port": p, "protocol": "TCP"}],
            });
            set_if_changed(&self.state, ("discovery.k8s.io", "v1", "endpointslices"), slice, &["endpoints", "ports", "addressType"]).await?;
            names.insert(name);
        }
        // Slices of ports no server listens on any more.
        let def = self.state.def("discovery.k8s.io", "v1", "endpointslices")?;
        for (_, s) in self.state.cache_of(&def)?.list(&def.namespace_prefix("default")) {
            let name = meta_str(&s, "name");
            let ours = name.starts_with("kubernetes-") && s.pointer("/metadata/labels/kubernetes.io~1service-name").and_then(Value::as_str) == Some("kubernetes");
            if ours && !names.contains(name) {
                match self.state.delete(&def, "default", name, &DeleteOptions::default()).await {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// Creates `obj` in the default namespace, or sets `fields` of the one that exists — without a
/// write when they already hold those values (every server reconciles every few seconds).
async fn set_if_changed(state: &Arc<ApiState>, (group, version, resource): (&str, &str, &str), obj: Value, fields: &[&str]) -> ApiResult<()> {
    let def = state.def(group, version, resource)?;
    let name = meta_str(&obj, "name").to_string();
    if let Ok(current) = state.get(&def, "default", &name).await {
        if fields.iter().all(|f| current.get(*f) == obj.get(*f)) {
            return Ok(());
        }
    }
    crate::bootstrap::create_or_set(state, (group, version, resource), obj, fields).await
}
