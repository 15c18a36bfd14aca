//! Watch responses: a chunked stream of JSON events, one per line, fed by the watch cache and
//! filtered by the request's selectors, as kube-apiserver streams them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use timonier_api::resources::ResourceDef;
use timonier_api::selector::{FieldSelector, LabelSelector};
use tokio::sync::mpsc;

use crate::cache::{CacheEvent, EventType, WatchStart};
use crate::error::{ApiError, ApiResult};
use crate::negotiate::Shape;
use crate::request::Query;
use crate::rest::{selects, set_rv};
use crate::state::ApiState;
use crate::table::{self, Include};

/// How often a watch that allows bookmarks gets one (upstream: about a minute).
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn pass(&self, obj: &Value) -> bool {
        selects(&self.labels, &self.fields, obj)
    }

    /// The event a watcher with these selectors sees for a change, if any: an object that
    /// starts or stops matching is seen as added or deleted. `None` as the object means the
    /// event's own object, sent as is.
    fn transform(&self, ev: &CacheEvent) -> Option<(EventType, Option<Value>)> {
        let cur = self.pass(&ev.object);
        match ev.kind {
            EventType::Added => cur.then_some((EventType::Added, None)),
            EventType::Deleted => cur.then_some((EventType::Deleted, None)),
            EventType::Modified => {
                let old = ev.prev.as_ref().is_some_and(|p| self.pass(p));
                match (cur, old) {
                    (true, true) => Some((EventType::Modified, None)),
                    (true, false) => Some((EventType::Added, None)),
                    (false, true) => {
                        let mut last = ev.prev.as_deref().cloned().unwrap_or(Value::Null);
                        set_rv(&mut last, ev.revision);
                        Some((EventType::Deleted, Some(last)))
                    }
                    (false, false) => None,
                }
            }
        }
    }
}

/// The line a watcher sends for an event: when the object goes out as is, its JSON is the
/// event's, serialized once for all watchers.
fn event_line(def: &ResourceDef, crd: Option<&Value>, shape: Shape, include: Include, ev: &CacheEvent, kind: EventType, changed: Option<&Value>) -> Bytes {
    match (changed, shape) {
        (None, Shape::Object) if !crate::convert::converts(def) => {
            let json = ev.object_json();
            let mut out = Vec::with_capacity(json.len() + 40);
            out.extend_from_slice(b"{\"type\":\"");
            out.extend_from_slice(kind.as_str().as_bytes());
            out.extend_from_slice(b"\",\"object\":");
            out.extend_from_slice(&json);
            out.extend_from_slice(b"}\n");
            Bytes::from(out)
        }
        (None, _) => line(def, crd, shape, include, kind.as_str(), &ev.object),
        (Some(obj), _) => line(def, crd, shape, include, kind.as_str(), obj),
    }
}

fn line(def: &ResourceDef, crd: Option<&Value>, shape: Shape, include: Include, kind: &str, obj: &Value) -> Bytes {
    let converted;
    let obj = if crate::convert::converts(def) {
        converted = crate::convert::from_storage(def, obj);
        &converted
    } else {
        obj
    };
    let object = match shape {
        Shape::Object => obj.clone(),
        Shape::Table(v) => {
            let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
            table::table(def, &[Arc::new(obj.clone())], include, v, json!({"resourceVersion": rv}), crd)
        }
        Shape::Metadata(v) => table::partial(obj, v),
    };
    let mut out = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

fn bookmark(def: &ResourceDef, revision: i64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta});
    let mut out = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// The in-stream error of a watch that cannot start or continue (410 for expired versions).
pub fn error_line(err: &ApiError) -> Bytes {
    let mut out = serde_json::to_vec(&json!({"type": "ERROR", "object": err.status()})).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// Starts a watch; returns the receiver of the response body's chunks.
pub async fn start(state: &Arc<ApiState>, def: Arc<ResourceDef>, ns: &str, q: &Query, shape: Shape) -> ApiResult<mpsc::Receiver<Bytes>> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = state.field_selector(&def, q.get("fieldSelector").unwrap_or(""))?;
    let include = Include::from_query(q)?;
    let filter = Filter { labels, fields };
    let timeout = match q.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        // Upstream ends watches after a random 30-60 minutes.
        _ => Duration::from_secs(1800 + (uuid::Uuid::new_v4().as_bytes()[0] as u64 * 1800 / 255)),
    };
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.flag("sendInitialEvents");
    let cache = state.cache_of(&def)?;
    let rv = q.get("resourceVersion").unwrap_or("");
    let (start, revision) = match rv {
        "" => (WatchStart::Snapshot, state.cache.wait_fresh().await?),
        "0" => (WatchStart::Snapshot, state.cache.revision()),
        n => {
            let n = crate::request::parse_resource_version(n)?;
            if n > state.cache.revision() {
                // A version from the future (another server's, or not yet in the cache).
                let mut waited = 0;
                while n > state.cache.revision() && waited < 30 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    waited += 1;
                }
                if n > state.cache.revision() {
                    return Err(ApiError::from_store(timonier_store::StoreError::FutureRevision { requested: n, current: state.cache.revision() }));
                }
            }
            if send_initial {
                (WatchStart::Snapshot, n)
            } else {
                (WatchStart::After(n), n)
            }
        }
    };
    let snapshot = matches!(start, WatchStart::Snapshot);
    let crd = state.crd_for(&def);
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let prefix = def.namespace_prefix(ns);
    let prefix_namespace = if def.namespaced { ns.to_string() } else { String::new() };
    match cache.watch(&prefix, start, revision) {
        Err(e) if e.code == 410 => {
            // Clients expect 200 and the error in the stream (kube-rs relists only then).
            let _ = tx.try_send(error_line(&e));
            return Ok(rx);
        }
        Err(e) => return Err(e),
        Ok((initial, mut events)) => {
            let watching = crate::metrics::watching(&def.group, &def.version, &def.plural, &prefix_namespace);
            let sent = crate::metrics::watch_events(&def.group, &def.version, &def.kind);
            tokio::spawn(async move {
                let _watching = watching;
                let deadline = tokio::time::Instant::now() + timeout;
                let mut last = revision;
                for ev in &initial {
                    last = last.max(ev.revision);
                    if let Some((kind, changed)) = filter.transform(ev) {
                        if tx.send(event_line(&def, crd.as_deref(), shape, include, ev, kind, changed.as_ref())).await.is_err() {
                            return;
                        }
                        sent.inc();
                    }
                }
                if snapshot && send_initial && tx.send(bookmark(&def, last, true)).await.is_err() {
                    return;
                }
                let mut tick = tokio::time::interval(BOOKMARK_EVERY);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => return,
                        _ = tx.closed() => return,
                        _ = tick.tick(), if bookmarks => {
                            if tx.send(bookmark(&def, last, false)).await.is_err() {
                                return;
                            }
                        }
                        ev = events.recv() => {
                            let Some(ev) = ev else { return };
                            last = ev.revision;
                            if let Some((kind, changed)) = filter.transform(&ev) {
                                if tx.send(event_line(&def, crd.as_deref(), shape, include, &ev, kind, changed.as_ref())).await.is_err() {
                                    return;
                                }
                                sent.inc();
                            }
                        }
                    }
                }
            });
        }
    }
    Ok(rx)
}
