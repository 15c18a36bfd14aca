//! The extension servers' OpenAPI documents, as kube-aggregator's OpenAPI controllers keep
//! them. For each available non-local APIService:
//! - its server's `/openapi/v2` (JSON), cut down to the APIService's group version, merged into
//!   this server's `/openapi/v2` (JSON and protobuf; `merge` in `timonier_api::openapi` says
//!   how conflicts go) — what kubectl's client-side validation and `explain` of old reads;
//! - its `/openapi/v3` entry for `apis/<group>/<version>`, listed in this server's
//!   `/openapi/v3`; a request for that document is proxied to the extension server. A server
//!   without `/openapi/v3` has the document converted from its v2 one, served from here.
//!
//! Documents are fetched when the APIService is first seen available or changes, then every
//! minute (every availability check while the last fetch failed). A failed fetch keeps the
//! last documents (upstream's `LastSuccess`), and nothing an extension server does fails the
//! whole document: its part is left out until it answers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use serde_json::{json, Value};
use timonier_api::openapi::{merge, OpenApi};

use super::proxy::{read_limited, send, set_user};
use crate::auth::UserInfo;
use crate::error::ApiResult;
use crate::request::Endpoint;
use crate::rest::meta_str;
use crate::server::Body;
use crate::state::ApiState;

/// How long a fetched document is used before it is fetched again (upstream: one minute).
const REFRESH: Duration = Duration::from_secs(60);

/// The largest document read from an extension server.
const MAX_SPEC: usize = 32 * 1024 * 1024;

/// Each try is bounded: a slow server delays only its own refresh.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How soon a failed fetch is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// The v3 document of one extension group version.
#[derive(Clone)]
enum V3 {
    /// The extension server serves it at this URL (`serverRelativeURL` of its `/openapi/v3`).
    Proxied(String),
    /// Converted from its v2 document: (JSON, hash).
    Local(Bytes, String),
}

#[derive(Clone)]
struct Entry {
    /// `apis/<group>/<version>`.
    gv_path: String,
    /// The APIService's spec the documents were fetched for (its status changes nothing).
    spec: String,
    last_try: Instant,
    ok: bool,
    v2: Option<Arc<Value>>,
    v3: Option<V3>,
}

/// The merged `/openapi/v2` for one local document and one generation of extension ones.
struct Merged {
    local: Arc<OpenApi>,
    generation: u64,
    json: Bytes,
    protobuf: Bytes,
}

/// What is kept of the extension servers' documents.
#[derive(Default)]
pub struct Specs {
    /// By APIService name (merged in name order).
    entries: RwLock<BTreeMap<String, Entry>>,
    /// The APIServices whose documents are being fetched.
    in_flight: Mutex<std::collections::HashSet<String>>,
    /// Moves whenever an extension's v2 part changes.
    generation: AtomicU64,
    merged: Mutex<Option<Merged>>,
}

impl Specs {
    fn entry(&self, name: &str) -> Option<Entry> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    fn store(&self, name: &str, entry: Entry) {
        let mut m = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let changed = m.get(name).map(|old| &old.v2) != Some(&entry.v2);
        m.insert(name.to_string(), entry);
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Forgets the APIServices not in `names` (deleted, or local now).
    pub fn retain(&self, names: &[String]) {
        let mut m = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let before = m.len();
        m.retain(|k, _| names.contains(k));
        if m.len() != before {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// GETs `path` from the APIService's server as upstream's downloader does (user
/// `system:aggregator`, JSON): the status and the body of a 200.
async fn get(state: &ApiState, api: &Value, path: &str) -> Result<(StatusCode, Bytes), String> {
    let mut req = Request::get(path).header(http::header::ACCEPT, "application/json").body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    set_user(req.headers_mut(), &UserInfo { name: "system:aggregator".into(), groups: vec![] });
    let attempt = async {
        let resp = send(state, api, req, FETCH_TIMEOUT).await?;
        let status = resp.status();
        if status != StatusCode::OK {
            return Ok((status, Bytes::new()));
        }
        Ok((status, read_limited(resp.into_body(), MAX_SPEC).await?))
    };
    tokio::time::timeout(FETCH_TIMEOUT, attempt).await.map_err(|_| format!("timed out fetching {path}"))?
}

/// Fetches the documents of an available non-local APIService when they are due, in a task
/// of its own (a slow extension server delays nothing else).
pub fn refresh_in_background(state: &Arc<ApiState>, api: &Arc<Value>) {
    let name = meta_str(api, "name").to_string();
    if !state.aggregator.openapi.in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone()) {
        return;
    }
    let (state, api) = (state.clone(), api.clone());
    tokio::spawn(async move {
        refresh(&state, &api).await;
        state.aggregator.openapi.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
    });
}

async fn refresh(state: &ApiState, api: &Value) {
    let name = meta_str(api, "name").to_string();
    let spec = api.get("spec").map(Value::to_string).unwrap_or_default();
    let s = |p: &str| api.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let (group, version) = (s("/spec/group"), s("/spec/version"));
    let specs = &state.aggregator.openapi;
    let old = specs.entry(&name);
    let due = match &old {
        None => true,
        Some(e) => e.spec != spec || e.last_try.elapsed() >= if e.ok { REFRESH } else { RETRY },
    };
    if !due || group.is_empty() {
        return;
    }
    let gv_path = format!("apis/{group}/{version}");
    let mut entry = old.unwrap_or(Entry { gv_path: gv_path.clone(), spec: spec.clone(), last_try: Instant::now(), ok: false, v2: None, v3: None });
    entry.gv_path = gv_path.clone();
    entry.spec = spec;
    entry.last_try = Instant::now();
    entry.ok = true;
    let failed = |what: &str, e: String| tracing::debug!(apiservice = %name, error = %e, "cannot fetch the extension server's {what}");
    match get(state, api, "/openapi/v2").await {
        Ok((StatusCode::OK, body)) => match serde_json::from_slice::<Value>(&body) {
            Ok(spec) => entry.v2 = Some(Arc::new(merge::filter_v2(&spec, &format!("/{gv_path}/")))),
            Err(e) => {
                failed("/openapi/v2", e.to_string());
                entry.ok = false;
            }
        },
        // No v2 document at all: nothing to merge (as upstream, the server may serve v3 only).
        Ok((StatusCode::NOT_FOUND, _)) => entry.v2 = None,
        Ok((code, _)) => {
            failed("/openapi/v2", format!("status {code}"));
            entry.ok = false;
        }
        Err(e) => {
            failed("/openapi/v2", e);
            entry.ok = false;
        }
    }
    match get(state, api, "/openapi/v3").await {
        Ok((StatusCode::OK, body)) => {
            let root: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let url = root.pointer(&format!("/paths/{}", gv_path.replace('~', "~0").replace('/', "~1"))).and_then(|p| p.get("serverRelativeURL")).and_then(Value::as_str);
            entry.v3 = url.map(|u| V3::Proxied(u.to_string()));
        }
        Ok((StatusCode::NOT_FOUND, _)) => {
            // A server of v2 only: upstream converts its document.
            entry.v3 = entry.v2.as_ref().map(|v2| {
                let bytes = serde_json::to_vec(&merge::v2_to_v3(v2)).unwrap_or_default();
                let hash = timonier_api::openapi::content_hash(&bytes);
                V3::Local(Bytes::from(bytes), hash)
            });
        }
        Ok((code, _)) => {
            failed("/openapi/v3", format!("status {code}"));
            entry.ok = false;
        }
        Err(e) => {
            failed("/openapi/v3", e);
            entry.ok = false;
        }
    }
    specs.store(&name, entry);
}

/// `GET /openapi/v2`: this server's document with the extension servers' parts merged in,
/// (JSON, protobuf); merged once per change.
pub fn v2(state: &ApiState, local: &Arc<OpenApi>) -> (Bytes, Bytes) {
    let specs = &state.aggregator.openapi;
    let parts: Vec<Arc<Value>> = specs.entries.read().unwrap_or_else(|e| e.into_inner()).values().filter_map(|e| e.v2.clone()).collect();
    if parts.is_empty() {
        return (local.v2_json(), local.v2_protobuf());
    }
    let generation = specs.generation.load(Ordering::Acquire);
    let mut slot = specs.merged.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = slot.as_ref().filter(|m| Arc::ptr_eq(&m.local, local) && m.generation == generation) {
        return (m.json.clone(), m.protobuf.clone());
    }
    let (json, protobuf) = local.v2_merged(&parts);
    *slot = Some(Merged { local: local.clone(), generation, json: json.clone(), protobuf: protobuf.clone() });
    (json, protobuf)
}

/// `GET /openapi/v3`: this server's group versions and the extension servers' ones.
pub fn v3_root(state: &ApiState, mut root: Value) -> Value {
    let entries = state.aggregator.openapi.entries.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(paths) = root.get_mut("paths").and_then(Value::as_object_mut) else { return root };
    for e in entries.values() {
        let url = match &e.v3 {
            Some(V3::Proxied(u)) => u.clone(),
            Some(V3::Local(_, hash)) => format!("/openapi/v3/{}?hash={hash}", e.gv_path),
            None => continue,
        };
        paths.entry(e.gv_path.clone()).or_insert_with(|| json!({"serverRelativeURL": url}));
    }
    root
}

/// `GET /openapi/v3/apis/<group>/<version>` of an extension group version: converted here, or
/// proxied to its server as the caller. None when no extension serves that path.
pub async fn v3_document(state: Arc<ApiState>, req: Request<hyper::body::Incoming>, user: UserInfo, path: &str) -> Option<ApiResult<Response<Body>>> {
    let path = path.trim_matches('/');
    let (name, v3) = {
        let entries = state.aggregator.openapi.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.iter().find(|(_, e)| e.gv_path == path).and_then(|(n, e)| Some((n.clone(), e.v3.clone()?)))?
    };
    match v3 {
        V3::Local(bytes, _) => {
            let resp = Response::builder().header(http::header::CONTENT_TYPE, "application/json").body(crate::server::full(bytes));
            Some(resp.map_err(|e| crate::error::ApiError::internal(e.to_string())))
        }
        V3::Proxied(_) => {
            let def = super::def(&state).ok()?;
            let api = state.cache_of(&def).ok()?.get(&def.key("", &name))?;
            let endpoint = Endpoint::OpenApiV3Doc(path.to_string());
            Some(super::proxy::proxy(state, req, &endpoint, user, api).await)
        }
    }
}
