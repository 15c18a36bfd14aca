//! The API server's Prometheus metrics at `GET /metrics`, named, labelled and bucketed as
//! kube-apiserver 1.33's (k8s.io/apiserver's endpoints and storage metrics), so that the
//! dashboards and alerts written for upstream read ours: requests by verb, resource, scope and
//! code, their latency, in-flight and long-running requests, watch events, stored objects, and
//! the datastore's latency per operation.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};
use timonier_metrics::{counter, gauge, histogram, opts, Raised};
use timonier_store::{Deleted, DynStorage, KeyValue, ListOptions, ListResult, Storage, WatchStream};

use crate::request::{parse_path, Endpoint, Query};

/// kube-apiserver's request and datastore latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0];

/// Verbs reported as they are; any other becomes `other`, as upstream's `cleanVerb`.
const VALID_VERBS: &[&str] = &["APPLY", "CONNECT", "CREATE", "DELETE", "DELETECOLLECTION", "GET", "LIST", "PATCH", "POST", "PROXY", "PUT", "UPDATE", "WATCH", "WATCHLIST"];

/// Subresources whose requests are connections (upstream reports them as `CONNECT`).
const CONNECT_SUBRESOURCES: &[&str] = &["log", "exec", "portforward", "attach", "proxy"];

const REQUEST_LABELS: &[&str] = &["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"];
const LONG_RUNNING_LABELS: &[&str] = &["verb", "group", "version", "resource", "subresource", "scope", "component"];

struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    inflight: IntGaugeVec,
    longrunning: IntGaugeVec,
    response_sizes: HistogramVec,
    watch_events: IntCounterVec,
    storage_latency: HistogramVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut code_labels = REQUEST_LABELS.to_vec();
    code_labels.push("code");
    Metrics {
        requests: counter(
            "apiserver_request_total",
            "STABLE",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            &code_labels,
        ),
        duration: histogram(
            "apiserver_request_duration_seconds",
            "STABLE",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
            LATENCY_BUCKETS,
            REQUEST_LABELS,
        ),
        inflight: gauge(
            "apiserver_current_inflight_requests",
            "STABLE",
            "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
            &["request_kind"],
        ),
        longrunning: gauge(
            "apiserver_longrunning_requests",
            "STABLE",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.",
            LONG_RUNNING_LABELS,
        ),
        response_sizes: histogram(
            "apiserver_response_sizes",
            "STABLE",
            "Response size distribution in bytes for each group, version, verb, resource, subresource, scope and component.",
            &[1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9],
            LONG_RUNNING_LABELS,
        ),
        watch_events: counter("apiserver_watch_events_total", "ALPHA", "Number of events sent in watch clients", &["group", "version", "kind"]),
        storage_latency: histogram(
            "etcd_request_duration_seconds",
            "ALPHA",
            "Etcd request latency in seconds for each operation and object type.",
            LATENCY_BUCKETS,
            &["operation", "type"],
        ),
    }
});

/// What a request is, in the labels of the request metrics (upstream's `RequestInfo` as its
/// metrics see it). Requests upstream does not count (`/metrics`, `/openapi`, `/version`,
/// unknown paths) have none.
pub struct RequestInfo {
    verb: &'static str,
    dry_run: String,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    scope: &'static str,
    component: &'static str,
}

impl RequestInfo {
    pub fn of(method: &Method, path: &str, query: Option<&str>, content_type: Option<&str>) -> Option<RequestInfo> {
        let method_verb = |m: &Method| VALID_VERBS.iter().copied().find(|v| *v == m.as_str()).unwrap_or("other");
        let non_resource = |component| RequestInfo {
            verb: method_verb(method),
            dry_run: String::new(),
            group: String::new(),
            version: String::new(),
            resource: String::new(),
            subresource: path.trim_end_matches('/').to_string(),
            scope: "",
            component,
        };
        match parse_path(path).ok()? {
            Endpoint::Health(check) if check.is_empty() => Some(non_resource("")),
            Endpoint::CoreGroup | Endpoint::Groups => Some(non_resource("apiserver")),
            Endpoint::Resource(p) => {
                let q = Query::parse(query);
                let named = p.name.is_some();
                let subresource = p.subresource.unwrap_or_default();
                let verb = if CONNECT_SUBRESOURCES.contains(&subresource.as_str()) {
                    "CONNECT"
                } else if *method == Method::GET || *method == Method::HEAD {
                    if q.flag("watch") {
                        "WATCH"
                    } else if named {
                        "GET"
                    } else {
                        "LIST"
                    }
                } else if *method == Method::PATCH && content_type.is_some_and(|c| c.starts_with("application/apply-patch")) {
                    "APPLY"
                } else {
                    method_verb(method)
                };
                let scope = if named || *method == Method::POST {
                    "resource"
                } else if !p.namespace.is_empty() {
                    "namespace"
                } else {
                    "cluster"
                };
                Some(RequestInfo {
                    verb,
                    dry_run: q.get("dryRun").unwrap_or("").to_string(),
                    group: p.group,
                    version: p.version,
                    resource: p.resource,
                    subresource,
                    scope,
                    component: "apiserver",
                })
            }
            _ => None,
        }
    }

    /// Watches and connections hold their request open: they count as long-running, not in
    /// flight, and their latency is not a response time.
    pub fn long_running(&self) -> bool {
        matches!(self.verb, "WATCH" | "CONNECT")
    }

    fn labels(&self) -> [&str; 8] {
        [self.verb, &self.dry_run, &self.group, &self.version, &self.resource, &self.subresource, self.scope, self.component]
    }

    fn long_running_labels(&self) -> [&str; 7] {
        [self.verb, &self.group, &self.version, &self.resource, &self.subresource, self.scope, self.component]
    }

    /// Counts the answered request; `size` is the body's, when known.
    pub fn observe(&self, code: u16, elapsed: Duration, size: Option<u64>) {
        let m = &*METRICS;
        let labels = self.labels();
        let code = code.to_string();
        let mut with_code = labels.to_vec();
        with_code.push(&code);
        m.requests.with_label_values(&with_code).inc();
        if !self.long_running() {
            m.duration.with_label_values(&labels).observe(elapsed.as_secs_f64());
        }
        if let (Some(size), "GET" | "LIST") = (size, self.verb) {
            m.response_sizes.with_label_values(&self.long_running_labels()).observe(size as f64);
        }
    }

    /// Marks the request in flight until the guard drops (long-running requests are not).
    pub fn in_flight(&self) -> Option<Raised> {
        if self.long_running() {
            return None;
        }
        let kind = if matches!(self.verb, "GET" | "LIST") { "readOnly" } else { "mutating" };
        Some(Raised::new(METRICS.inflight.with_label_values(&[kind])))
    }
}

/// An open watch of `resource`, counted in `apiserver_longrunning_requests` until dropped.
pub fn watching(group: &str, version: &str, resource: &str, namespace: &str) -> Raised {
    let scope = if namespace.is_empty() { "cluster" } else { "namespace" };
    Raised::new(METRICS.longrunning.with_label_values(&["WATCH", group, version, resource, "", scope, "apiserver"]))
}

/// The counter of events sent to watchers of one kind.
pub fn watch_events(group: &str, version: &str, kind: &str) -> prometheus::IntCounter {
    METRICS.watch_events.with_label_values(&[group, version, kind])
}

/// The datastore with each call's latency in `etcd_request_duration_seconds` (named after etcd
/// as upstream's, whichever backend serves), by operation and the resource its key is under.
pub struct Metered {
    store: DynStorage,
    /// Storage resource (`deployments`, `apiregistration.k8s.io/apiservices`) → the group
    /// resource upstream labels with (`deployments.apps`, `apiservices.apiregistration.k8s.io`).
    names: std::collections::HashMap<String, String>,
}

impl Metered {
    pub fn wrap(store: DynStorage, defs: &[Arc<timonier_api::resources::ResourceDef>]) -> DynStorage {
        let mut names = std::collections::HashMap::new();
        // Kinds served by two groups (events, HPAs) share their storage: the core or first
        // group names it.
        for d in defs {
            if d.group.is_empty() || !names.contains_key(&d.storage_resource) {
                names.insert(d.storage_resource.clone(), group_resource(&d.group, &d.plural));
            }
        }
        Arc::new(Metered { store, names })
    }

    /// The resource a storage key belongs to: `/registry/deployments/default/a` →
    /// `deployments.apps`.
    fn key_type<'a>(&'a self, key: &'a str) -> &'a str {
        let rest = key.strip_prefix("/registry/").unwrap_or(key);
        let mut segments = rest.splitn(3, '/');
        let first = segments.next().unwrap_or("");
        if let Some(name) = self.names.get(first) {
            return name;
        }
        // Grouped storage resources (`<group>/<plural>`) and custom resources.
        let two = rest.match_indices('/').nth(1).map_or(rest, |(i, _)| &rest[..i]);
        self.names.get(two).map_or(first, String::as_str)
    }

    async fn timed<T>(&self, operation: &str, key: &str, f: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let r = f.await;
        METRICS.storage_latency.with_label_values(&[operation, self.key_type(key)]).observe(started.elapsed().as_secs_f64());
        r
    }
}

/// `pods`, `deployments.apps`: how upstream's metrics name a resource.
fn group_resource(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

#[async_trait]
impl Storage for Metered {
    async fn create(&self, key: &str, value: Bytes) -> timonier_store::Result<i64> {
        self.timed("create", key, self.store.create(key, value)).await
    }
    async fn get(&self, key: &str) -> timonier_store::Result<Option<KeyValue>> {
        self.timed("get", key, self.store.get(key)).await
    }
    async fn update(&self, key: &str, value: Bytes, expected: i64) -> timonier_store::Result<i64> {
        self.timed("update", key, self.store.update(key, value, expected)).await
    }
    async fn delete(&self, key: &str, expected: Option<i64>) -> timonier_store::Result<Deleted> {
        self.timed("delete", key, self.store.delete(key, expected)).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> timonier_store::Result<ListResult> {
        self.timed("list", prefix, self.store.list(prefix, opts)).await
    }
    async fn count(&self, prefix: &str) -> timonier_store::Result<i64> {
        self.timed("count", prefix, self.store.count(prefix)).await
    }
    async fn watch(&self, prefix: &str, after: i64) -> timonier_store::Result<WatchStream> {
        self.store.watch(prefix, after).await
    }
    async fn compact(&self, revision: i64) -> timonier_store::Result<()> {
        self.store.compact(revision).await
    }
    async fn current_revision(&self) -> timonier_store::Result<i64> {
        self.store.current_revision().await
    }
}

/// The text `GET /metrics` answers: every metric of the process, with the number of stored
/// objects per resource counted from the watch cache now.
pub fn render(state: &crate::state::ApiState) -> Vec<u8> {
    use prometheus::core::Collector;
    let objects = IntGaugeVec::new(
        opts(
            "apiserver_storage_objects",
            "STABLE",
            "Number of stored objects at the time of last check split by kind. In case of a fetching error, the value will be -1.",
        ),
        &["resource"],
    )
    .expect("valid gauge");
    for def in &state.registry().all {
        if let Ok(cache) = state.cache_of(def) {
            objects.with_label_values(&[&group_resource(&def.group, &def.plural)]).set(cache.len() as i64);
        }
    }
    timonier_metrics::render(objects.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, path: &str, content_type: Option<&str>) -> Option<RequestInfo> {
        let (path, query) = path.split_once('?').map(|(p, q)| (p, Some(q))).unwrap_or((path, None));
        RequestInfo::of(&method, path, query, content_type)
    }

    #[test]
    fn labels_as_upstream() {
        let i = info(Method::GET, "/api/v1/namespaces/default/pods", None).unwrap();
        assert_eq!(i.labels(), ["LIST", "", "", "v1", "pods", "", "namespace", "apiserver"]);
        let i = info(Method::GET, "/api/v1/pods?watch=true", None).unwrap();
        assert_eq!(i.labels(), ["WATCH", "", "", "v1", "pods", "", "cluster", "apiserver"]);
        assert!(i.long_running());
        let i = info(Method::POST, "/apis/apps/v1/namespaces/a/deployments?dryRun=All", None).unwrap();
        assert_eq!(i.labels(), ["POST", "All", "apps", "v1", "deployments", "", "resource", "apiserver"]);
        let i = info(Method::PATCH, "/apis/apps/v1/namespaces/a/deployments/d/scale", Some("application/apply-patch+yaml")).unwrap();
        assert_eq!(i.labels(), ["APPLY", "", "apps", "v1", "deployments", "scale", "resource", "apiserver"]);
        let i = info(Method::GET, "/api/v1/namespaces/a/pods/p/log", None).unwrap();
        assert_eq!((i.verb, i.long_running()), ("CONNECT", true));
        let i = info(Method::DELETE, "/api/v1/namespaces/a/pods", None).unwrap();
        assert_eq!((i.verb, i.scope), ("DELETE", "namespace"));
        let i = info(Method::GET, "/readyz", None).unwrap();
        assert_eq!(i.labels(), ["GET", "", "", "", "", "/readyz", "", ""]);
        assert!(info(Method::GET, "/readyz/etcd", None).is_none());
        assert!(info(Method::GET, "/metrics", None).is_none());
        assert!(info(Method::GET, "/version", None).is_none());
    }
}
