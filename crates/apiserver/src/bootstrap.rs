//! What exists from the first start: the four system namespaces, the `kubernetes` Service
//! with its endpoints, `kube-dns`, the system PriorityClasses and the default ServiceCIDR;
//! the local APIServices of the built-in group versions; and the namespace lifecycle, which empties a deleted namespace and then removes it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::rest::{meta_str, DeleteOptions, Mode, WriteOptions};
use crate::state::ApiState;

pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what must exist; idempotent, so every start runs it.
pub async fn ensure(state: &Arc<ApiState>, secure_port: u16) -> ApiResult<()> {
    let ns_def = state.def("", "v1", "namespaces")?;
    for ns in SYSTEM_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match state.create(&ns_def, "", obj, &WriteOptions::default()).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let svc_def = state.def("", "v1", "services")?;
    let ip = state.services.kubernetes_ip().to_string();
    let svc = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": secure_port}], "sessionAffinity": "None", "type": "ClusterIP"},
    });
    match state.create(&svc_def, "default", svc, &WriteOptions::default()).await {
        Ok(_) => {}
        Err(e) if e.code == 409 || e.code == 422 => {}
        Err(e) => return Err(e),
    }
    // The cluster DNS Service, the pods' nameserver: each node's proxy sends it to the DNS
    // server of that node. No selector, so no controller gives it endpoints.
    let dns = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}},
        "spec": {"clusterIP": state.services.dns_ip().to_string(), "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}, {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}], "sessionAffinity": "None", "type": "ClusterIP"},
    });
    match state.create(&svc_def, "kube-system", dns, &WriteOptions::default()).await {
        Ok(_) => {}
        Err(e) if e.code == 409 || e.code == 422 => {}
        Err(e) => return Err(e),
    }
    // The kubernetes Service's endpoints: endpoint_reconciler.rs.
    // Upstream's two reserved PriorityClasses, which system pods name.
    let pc_def = state.def("scheduling.k8s.io", "v1", "priorityclasses")?;
    for (name, value, description) in crate::strategy::SYSTEM_PRIORITY_CLASSES {
        let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value, "description": description});
        create_if_absent(state, &pc_def, pc).await?;
    }
    // The default ServiceCIDR kube-apiserver makes from its Service range.
    let cidr_def = state.def("networking.k8s.io", "v1", "servicecidrs")?;
    let range = format!("{}/{}", std::net::Ipv4Addr::from(state.services.base), state.services.prefix);
    let cidr = json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", "metadata": {"name": "kubernetes"}, "spec": {"cidrs": [range]}});
    create_if_absent(state, &cidr_def, cidr).await?;
    // The local APIServices of the built-in group versions (upstream's autoregistration).
    crate::aggregator::ensure_builtin(state).await
}

/// The ConfigMap in which kube-apiserver publishes how it authenticates clients, read by
/// extension API servers at start (`k8s.io/apiserver`'s delegated authentication).
pub const AUTHENTICATION_CONFIGMAP: &str = "extension-apiserver-authentication";

/// Writes `kube-system/extension-apiserver-authentication` as kube-apiserver's
/// ClusterAuthenticationTrustController does: the CA of client certificates, and the
/// front-proxy (request header) settings — its CA, the allowed client name and the header
/// names, lists as JSON. Rewritten at every start, so a changed CA is published.
pub async fn ensure_authentication_configmap(state: &Arc<ApiState>, client_ca: &str, front_proxy_ca: &str) -> ApiResult<()> {
    let json_list = |v: &str| serde_json::to_string(&[v]).unwrap_or_default();
    let data = json!({
        "client-ca-file": client_ca,
        "requestheader-client-ca-file": front_proxy_ca,
        "requestheader-allowed-names": json_list(crate::pki::FRONT_PROXY_CLIENT),
        "requestheader-extra-headers-prefix": json_list("X-Remote-Extra-"),
        "requestheader-group-headers": json_list("X-Remote-Group"),
        "requestheader-username-headers": json_list("X-Remote-User"),
    });
    let def = state.def("", "v1", "configmaps")?;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": AUTHENTICATION_CONFIGMAP, "namespace": "kube-system"}, "data": data});
    match state.create(&def, "kube-system", cm, &WriteOptions::default()).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => {
            state
                .guaranteed_update(&def, "kube-system", AUTHENTICATION_CONFIGMAP, None, &WriteOptions::default(), |old| {
                    let mut new = old.clone();
                    new["data"] = data.clone();
                    Ok(new)
                }, Mode::Main)
                .await?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Creates a cluster-scoped object unless one of that name exists (kept as its owner left it).
async fn create_if_absent(state: &Arc<ApiState>, def: &Arc<timonier_api::resources::ResourceDef>, obj: Value) -> ApiResult<()> {
    match state.create(def, "", obj, &WriteOptions::default()).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `obj` in the default namespace, or sets `fields` of the one that exists to its
/// values (the address or port may have changed since the last start).
pub(crate) async fn create_or_set(state: &Arc<ApiState>, (group, version, resource): (&str, &str, &str), obj: Value, fields: &[&str]) -> ApiResult<()> {
    let def = state.def(group, version, resource)?;
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    match state.create(&def, "default", obj.clone(), &WriteOptions::default()).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => {
            state
                .guaranteed_update(&def, "default", &name, None, &WriteOptions::default(), |old| {
                    let mut new = old.clone();
                    for f in fields {
                        new[*f] = obj[*f].clone();
                    }
                    Ok(new)
                }, Mode::Main)
                .await?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The namespace lifecycle controller: level-triggered over the cache, it deletes everything
/// in each terminating namespace, then clears the namespace's `kubernetes` finalizer. While
/// one is terminating, any change may be the deletion it waits for; otherwise only namespaces
/// wake it.
pub async fn namespace_controller(state: Arc<ApiState>) {
    let revision = |state: &ApiState| changes_while_deleting(state, ("", "v1", "namespaces"));
    on_change_by(state, Duration::from_millis(500), "namespace", revision, |state| async move { reconcile_namespaces(&state).await }).await
}

/// For a controller that empties what an object being deleted holds (namespaces, CRDs): the
/// revision of the latest change to `resource`, or of any change while one of its objects is
/// being deleted (any change may be the deletion it waits for).
pub fn changes_while_deleting(state: &ApiState, resource: Watched) -> i64 {
    let (group, version, plural) = resource;
    let Ok(def) = state.def(group, version, plural) else { return state.cache.revision() };
    let Ok(cache) = state.cache_of(&def) else { return state.cache.revision() };
    if cache.list(&def.key_prefix()).iter().any(|(_, o)| !meta_str(o, "deletionTimestamp").is_empty()) {
        state.cache.revision()
    } else {
        cache.last_change()
    }
}

/// A resource a controller reads: (group, version, plural).
pub type Watched = (&'static str, &'static str, &'static str);

/// Runs a level-triggered pass of an in-process controller whenever one of the `resources`
/// it reads changed (checked every `period`), so that an idle cluster costs no passes and
/// thousands of Lease renewals a second wake none; a failed pass is retried at the next tick.
pub async fn on_change_of<F, Fut>(state: Arc<ApiState>, period: Duration, name: &'static str, resources: &'static [Watched], pass: F)
where
    F: Fn(Arc<ApiState>) -> Fut,
    Fut: std::future::Future<Output = ApiResult<()>>,
{
    on_change_by(state, period, name, |state: &ApiState| last_change_of(state, resources), pass).await
}

/// The revision of the latest change to any of `resources` (the whole cache's when one is
/// not served).
pub fn last_change_of(state: &ApiState, resources: &[Watched]) -> i64 {
    let mut latest = 0;
    for (group, version, plural) in resources {
        match state.def(group, version, plural).and_then(|d| state.cache_of(&d)) {
            Ok(cache) => latest = latest.max(cache.last_change()),
            Err(_) => return state.cache.revision(),
        }
    }
    latest
}

/// Runs `pass` whenever `revision` moves (checked every `period`); a failed pass is retried at
/// the next tick.
pub async fn on_change_by<R, F, Fut>(state: Arc<ApiState>, period: Duration, name: &'static str, revision: R, pass: F)
where
    R: Fn(&ApiState) -> i64,
    F: Fn(Arc<ApiState>) -> Fut,
    Fut: std::future::Future<Output = ApiResult<()>>,
{
    let mut last = -1;
    loop {
        let rev = revision(&state);
        if rev != last {
            last = rev;
            if let Err(e) = pass(state.clone()).await {
                tracing::warn!(controller = name, error = %e, "controller pass failed; will retry");
                last = -1;
            }
        }
        tokio::time::sleep(period).await;
    }
}

async fn reconcile_namespaces(state: &Arc<ApiState>) -> ApiResult<()> {
    let ns_def = state.def("", "v1", "namespaces")?;
    let cache = state.cache_of(&ns_def)?;
    let terminating: Vec<Arc<Value>> = cache
        .list(&ns_def.key_prefix())
        .into_iter()
        .map(|(_, v)| v)
        .filter(|n| !meta_str(n, "deletionTimestamp").is_empty())
        .collect();
    for ns in terminating {
        let name = meta_str(&ns, "name").to_string();
        let mut remaining = 0;
        let registry = state.registry();
        let mut seen_storage = std::collections::HashSet::new();
        for def in registry.all.iter().filter(|d| d.namespaced) {
            // Kinds served in two groups share storage: empty it once.
            if !seen_storage.insert(def.storage_resource.clone()) {
                continue;
            }
            let Ok(rc) = state.cache_of(def) else { continue };
            for (_, obj) in rc.list(&def.namespace_prefix(&name)) {
                remaining += 1;
                if !meta_str(&obj, "deletionTimestamp").is_empty() {
                    continue;
                }
                let opts = DeleteOptions { propagation: Some("Background".into()), ..Default::default() };
                match state.delete(def, &name, meta_str(&obj, "name"), &opts).await {
                    Ok(_) => {}
                    Err(e) if e.code == 404 || e.code == 409 => {}
                    Err(e) => tracing::warn!(namespace = %name, error = %e, "cannot delete namespace content"),
                }
            }
        }
        if remaining == 0 {
            let finalizing = ns.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
            if finalizing {
                let r = state
                    .guaranteed_update(&ns_def, "", &name, None, &WriteOptions::default(), |old| {
                        let mut new = old.clone();
                        new["spec"]["finalizers"] = json!([]);
                        Ok(new)
                    }, Mode::Main)
                    .await;
                crate::rest::ignore_not_found(r)?;
            }
        }
    }
    Ok(())
}
