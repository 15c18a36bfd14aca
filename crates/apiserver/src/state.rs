//! The API server's shared state: the store, the watch cache and the resource registry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use timonier_api::resources::{self, ResourceDef};
use timonier_store::DynStorage;

use crate::cache::{ResourceCache, WatchCache};
use crate::error::{ApiError, ApiResult};

/// The resources served, by group/version/plural, in discovery order.
#[derive(Default)]
pub struct Registry {
    pub all: Vec<Arc<ResourceDef>>,
    by_path: HashMap<(String, String, String), Arc<ResourceDef>>,
}

impl Registry {
    pub fn new(all: Vec<Arc<ResourceDef>>) -> Registry {
        let by_path = all.iter().map(|d| ((d.group.clone(), d.version.clone(), d.plural.clone()), d.clone())).collect();
        Registry { all, by_path }
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.by_path.get(&(group.to_string(), version.to_string(), plural.to_string())).cloned()
    }

    /// Groups in discovery order, each with its versions.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for d in &self.all {
            match out.iter_mut().find(|(g, _)| *g == d.group) {
                Some((_, vs)) if !vs.contains(&d.version) => vs.push(d.version.clone()),
                Some(_) => {}
                None => out.push((d.group.clone(), vec![d.version.clone()])),
            }
        }
        out
    }

    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceDef>> {
        self.all.iter().filter(|d| d.group == group && d.version == version).cloned().collect()
    }
}

pub struct ApiState {
    pub store: DynStorage,
    pub cache: Arc<WatchCache>,
    pub registry: RwLock<Arc<Registry>>,
    pub ready: AtomicBool,
    /// Set when the server begins to stop: `/readyz` fails from then on (its `shutdown` check).
    pub shutting_down: AtomicBool,
    /// The service CIDR's allocator and the node-port range.
    pub services: crate::alloc::ServiceRanges,
    /// The OpenAPI documents, built for one registry (rebuilt when CRDs change it).
    pub openapi: std::sync::Mutex<Option<(Arc<Registry>, Arc<timonier_api::openapi::OpenApi>)>>,
    /// TLS for calls to node agents (logs, exec, ...), with the kubelet-client certificate.
    pub kubelet_tls: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
    /// The key that signs and verifies service-account tokens.
    pub sa_key: std::sync::OnceLock<Arc<crate::sa_token::TokenKey>>,
    /// The cluster CA (PEM), published in every namespace as `kube-root-ca.crt`.
    pub ca_pem: std::sync::OnceLock<String>,
    /// The static bearer tokens, for TokenReviews (requests are authenticated in `server.rs`).
    pub tokens: std::sync::OnceLock<Arc<crate::auth::TokenFile>>,
    /// The aggregation layer's discovery of extension servers and their TLS settings.
    pub aggregator: crate::aggregator::Aggregator,
    /// What servers joining with the server token are told (set when this server has one).
    pub server_join: std::sync::OnceLock<crate::cluster_bootstrap::JoinAnswer>,
}

impl ApiState {
    pub async fn new(store: DynStorage, watch_history: usize) -> Result<Arc<ApiState>, timonier_store::StoreError> {
        let registry = Registry::new(resources::builtin());
        let store = crate::metrics::Metered::wrap(store, &registry.all);
        let mut prefixes: Vec<String> = registry.all.iter().map(|d| d.key_prefix()).collect();
        prefixes.sort();
        prefixes.dedup();
        let cache = WatchCache::start(store.clone(), &prefixes, watch_history).await?;
        Ok(Arc::new(ApiState {
            store,
            cache,
            registry: RwLock::new(Arc::new(registry)),
            ready: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            services: crate::alloc::ServiceRanges::default(),
            openapi: Default::default(),
            kubelet_tls: Default::default(),
            sa_key: Default::default(),
            ca_pem: Default::default(),
            tokens: Default::default(),
            aggregator: Default::default(),
            server_join: Default::default(),
        }))
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The resource at `group/version/plural`, or the 404 upstream gives for unknown paths.
    pub fn def(&self, group: &str, version: &str, plural: &str) -> ApiResult<Arc<ResourceDef>> {
        self.registry().get(group, version, plural).ok_or_else(ApiError::path_not_found)
    }

    pub fn cache_of(&self, def: &ResourceDef) -> ApiResult<Arc<ResourceCache>> {
        self.cache
            .resource(&def.key_prefix())
            .ok_or_else(|| ApiError::unavailable(format!("the cache of {} is not ready", def.qualified_plural())))
    }

    /// The OpenAPI documents and field validator of the current registry, CRD schemas included.
    pub fn openapi(&self) -> Arc<timonier_api::openapi::OpenApi> {
        let registry = self.registry();
        let mut slot = self.openapi.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some((r, api)) if Arc::ptr_eq(r, &registry) => return api.clone(),
            _ => {}
        }
        let custom: Vec<_> = registry.all.iter().filter(|d| resources::is_custom(d))
            .filter_map(|d| {
                let crd = self.crd_for(d)?;
                let schema = crate::crd::version_of(&crd, &d.version)?.pointer("/schema/openAPIV3Schema")?.clone();
                Some(((d.group.clone(), d.version.clone(), d.kind.clone()), schema))
            })
            .collect();
        let api = Arc::new(timonier_api::openapi::OpenApi::new(&registry.all, &custom));
        *slot = Some((registry, api.clone()));
        api
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}
