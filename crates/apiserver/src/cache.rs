//! The watch cache: the current state of every resource, kept in memory from one watch on the
//! store, so that lists, gets and watches never read the store.
//!
//! One task lists `/registry/` once and then follows a single store watch from that revision,
//! routing each event to its resource's cache. Because that one stream carries every write in
//! revision order, the cache knows the global revision it has caught up to, and a read that
//! must see the latest writes waits until the cache has reached the store's current revision
//! (what upstream calls a consistent read from cache).
//!
//! Each resource cache keeps a bounded history of events; a watch may start from any revision
//! that history still covers, and gets 410 Expired below it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use timonier_store::{DynStorage, EventKind, ListOptions, StoreError};
use tokio::sync::{broadcast, watch};

use crate::error::{ApiError, ApiResult};

/// Events kept per resource, by default, for watches that resume from a past revision (a
/// watcher further behind gets 410 and relists, as with upstream's smaller default of 100).
pub const DEFAULT_HISTORY: usize = 1_000;
/// Events buffered per watcher before it is considered too slow and ended.
const WATCH_BUFFER: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change to one object. `object` carries the new state (the last state for a delete) with
/// `metadata.resourceVersion` set to the revision of the change.
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub revision: i64,
    pub key: String,
    pub object: Arc<Value>,
    /// The state before the change (none for an add), for selector transitions.
    pub prev: Option<Arc<Value>>,
    /// `object` serialized, made once for all the watchers that send it as is.
    json: OnceLock<Bytes>,
}

impl CacheEvent {
    /// The object as JSON, serialized at most once however many watchers send it.
    pub fn object_json(&self) -> Bytes {
        self.json.get_or_init(|| Bytes::from(serde_json::to_vec(&*self.object).unwrap_or_default())).clone()
    }
}

struct State {
    objects: BTreeMap<String, Arc<Value>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// The history holds every event after this revision.
    complete_after: i64,
    /// While a cache added at run time (a CRD's) loads its initial list, the events that
    /// arrive meanwhile wait here.
    loading: Option<Vec<Arc<CacheEvent>>>,
    /// The revision of the last change applied to this resource.
    last_change: i64,
}

/// One resource's objects and recent events.
pub struct ResourceCache {
    prefix: String,
    history: usize,
    state: RwLock<State>,
    events: broadcast::Sender<Arc<CacheEvent>>,
}

/// Where a watch starts.
pub enum WatchStart {
    /// Synthetic ADDED events for the current objects, then changes.
    Snapshot,
    /// Changes after this revision.
    After(i64),
}

/// Keyed objects of one list page, and whether more follow.
pub type Page = (Vec<(String, Arc<Value>)>, bool);

/// What a watcher receives: events in revision order, or the end of its stream.
pub type WatchReceiver = tokio::sync::mpsc::Receiver<Arc<CacheEvent>>;

impl ResourceCache {
    fn new(prefix: String, revision: i64, history: usize) -> ResourceCache {
        let (events, _) = broadcast::channel(1024);
        ResourceCache {
            prefix,
            history,
            state: RwLock::new(State { objects: BTreeMap::new(), history: VecDeque::new(), complete_after: revision, loading: None, last_change: 0 }),
            events,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The objects whose keys start with `prefix` (a namespace's, or all), in key order.
    pub fn list(&self, prefix: &str) -> Vec<(String, Arc<Value>)> {
        let st = self.read();
        st.objects.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Up to `limit` objects under `prefix` whose keys come after `after`, in key order, and
    /// whether more follow — if this resource has not changed since `revision` (else None:
    /// the snapshot is gone from memory).
    pub fn list_after(&self, prefix: &str, after: &str, revision: i64, limit: usize, matches: impl Fn(&Value) -> bool) -> Option<Page> {
        use std::ops::Bound;
        let st = self.read();
        if st.last_change > revision || st.loading.is_some() {
            return None;
        }
        let mut out = Vec::new();
        for (k, v) in st.objects.range::<str, _>((Bound::Excluded(after), Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            if !matches(v) {
                continue;
            }
            if out.len() == limit {
                return Some((out, true));
            }
            out.push((k.clone(), v.clone()));
        }
        Some((out, false))
    }

    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        self.read().objects.get(key).cloned()
    }

    /// The revision of this resource's latest change (0 before any since the cache loaded).
    pub fn last_change(&self) -> i64 {
        self.read().last_change
    }

    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one change. The previous state is the cached object itself (shared, not a
    /// second decoded copy).
    fn apply(&self, kind: EventType, revision: i64, key: String, object: Arc<Value>) -> Arc<CacheEvent> {
        let mut st = self.write();
        let prev = st.objects.get(&key).cloned();
        let ev = Arc::new(CacheEvent { kind, revision, key, object, prev, json: OnceLock::new() });
        if let Some(pending) = st.loading.as_mut() {
            pending.push(ev.clone());
            return ev;
        }
        Self::apply_locked(&mut st, &ev, self.history);
        // Sent under the lock, so that a watcher that subscribes under the lock sees each
        // event exactly once: in the history it copies or on the channel.
        let _ = self.events.send(ev.clone());
        ev
    }

    fn apply_locked(st: &mut State, ev: &Arc<CacheEvent>, history: usize) {
        st.last_change = st.last_change.max(ev.revision);
        match ev.kind {
            EventType::Deleted => {
                st.objects.remove(&ev.key);
            }
            _ => {
                st.objects.insert(ev.key.clone(), ev.object.clone());
            }
        }
        st.history.push_back(ev.clone());
        while st.history.len() > history {
            if let Some(old) = st.history.pop_front() {
                st.complete_after = old.revision;
            }
        }
    }

    /// Starts a watch of the keys under `prefix`. Returns the initial events and a receiver
    /// of the changes that follow them.
    pub fn watch(&self, prefix: &str, start: WatchStart, revision: i64) -> ApiResult<(Vec<Arc<CacheEvent>>, WatchReceiver)> {
        let st = self.read();
        let mut rx = self.events.subscribe();
        let initial: Vec<Arc<CacheEvent>> = match start {
            WatchStart::Snapshot => st
                .objects
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| {
                    Arc::new(CacheEvent {
                        kind: EventType::Added,
                        revision: object_revision(v).unwrap_or(revision),
                        key: k.clone(),
                        object: v.clone(),
                        prev: None,
                        json: OnceLock::new(),
                    })
                })
                .collect(),
            WatchStart::After(rv) => {
                if rv < st.complete_after {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        st.complete_after + 1
                    )));
                }
                st.history.iter().filter(|e| e.revision > rv && e.key.starts_with(prefix)).cloned().collect()
            }
        };
        drop(st);
        let (tx, out) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = tx.closed() => return,
                    ev = rx.recv() => ev,
                };
                match ev {
                    Ok(ev) if ev.key.starts_with(&prefix) => {
                        // A watcher that cannot keep up loses its stream (clients re-watch).
                        if tx.try_send(ev).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok((initial, out))
    }
}

/// `metadata.resourceVersion` of a cached object.
pub fn object_revision(v: &Value) -> Option<i64> {
    v.pointer("/metadata/resourceVersion")?.as_str()?.parse().ok()
}

/// Parses a stored value and stamps it with its revision.
fn decode(value: &[u8], revision: i64) -> Option<Value> {
    let mut v: Value = serde_json::from_slice(value).ok()?;
    let meta = v.get_mut("metadata")?.as_object_mut()?;
    meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    Some(v)
}

/// The caches of all resources, fed by one store watch.
pub struct WatchCache {
    store: DynStorage,
    caches: RwLock<HashMap<String, Arc<ResourceCache>>>,
    revision: watch::Sender<i64>,
    /// Every resource's events, for in-process controllers that follow all kinds (the
    /// garbage collector).
    all: broadcast::Sender<Arc<CacheEvent>>,
    /// Events kept per resource.
    history: usize,
}

impl WatchCache {
    /// Loads every object under `/registry/` and starts following the store.
    pub async fn start(store: DynStorage, prefixes: &[String], history: usize) -> Result<Arc<WatchCache>, StoreError> {
        let (revision, _) = watch::channel(0);
        let (all, _) = broadcast::channel(4096);
        let wc = Arc::new(WatchCache { store, caches: RwLock::new(HashMap::new()), revision, all, history: history.max(1) });
        let rev = wc.load(prefixes).await?;
        let me = wc.clone();
        tokio::spawn(async move { me.follow(rev).await });
        Ok(wc)
    }

    /// Lists everything and replaces the caches; returns the revision of the list.
    async fn load(&self, prefixes: &[String]) -> Result<i64, StoreError> {
        let mut fresh: HashMap<String, Arc<ResourceCache>> = HashMap::new();
        let mut revision = None;
        let mut after = None;
        let mut pages: Vec<timonier_store::KeyValue> = Vec::new();
        loop {
            let page = self
                .store
                .list("/registry/", ListOptions { revision, limit: 10_000, start_after: after.clone() })
                .await?;
            revision = Some(page.revision);
            after = page.items.last().map(|kv| kv.key.clone());
            pages.extend(page.items);
            if !page.more {
                break;
            }
        }
        let revision = revision.unwrap_or(0);
        for p in prefixes {
            fresh.insert(p.clone(), Arc::new(ResourceCache::new(p.clone(), revision, self.history)));
        }
        for kv in pages {
            let Some(cache) = find(&fresh, &kv.key) else { continue };
            let Some(obj) = decode(&kv.value, kv.mod_revision) else {
                tracing::warn!(key = %kv.key, "skipping an undecodable stored object");
                continue;
            };
            cache.write().objects.insert(kv.key, Arc::new(obj));
        }
        *self.caches.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.revision.send_replace(revision);
        Ok(revision)
    }

    async fn follow(self: Arc<Self>, mut from: i64) {
        let prefixes: Vec<String> = self.caches.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        loop {
            match self.store.watch("/registry/", from).await {
                Ok(mut stream) => {
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(ev) => {
                                from = ev.revision();
                                self.apply(ev);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "store watch ended");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot watch the store"),
            }
            // Resume where we stopped; if that history is gone, start over from a fresh list
            // (watchers of the old caches see their streams end and re-watch).
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Err(StoreError::Compacted { .. }) = self.store.list("/registry/", ListOptions { revision: Some(from), limit: 1, start_after: None }).await {
                match self.load(&prefixes).await {
                    Ok(rev) => from = rev,
                    Err(e) => tracing::error!(error = %e, "cannot reload the watch cache"),
                }
            }
        }
    }

    fn apply(&self, ev: timonier_store::Event) {
        let revision = ev.revision();
        let cache = find(&self.caches.read().unwrap_or_else(|e| e.into_inner()), &ev.kv.key);
        if let Some(cache) = cache {
            let object = match ev.kind {
                EventKind::Delete => ev.prev.as_ref().and_then(|p| decode(&p.value, revision)),
                _ => decode(&ev.kv.value, revision),
            };
            let kind = match ev.kind {
                EventKind::Delete => EventType::Deleted,
                EventKind::Create => EventType::Added,
                EventKind::Update => EventType::Modified,
            };
            match object {
                Some(object) => {
                    let ev = cache.apply(kind, revision, ev.kv.key, Arc::new(object));
                    let _ = self.all.send(ev);
                }
                None => tracing::warn!(key = %ev.kv.key, "skipping an undecodable stored object"),
            }
        }
        self.revision.send_replace(revision);
    }

    /// Events of every resource, in revision order.
    pub fn subscribe_all(&self) -> broadcast::Receiver<Arc<CacheEvent>> {
        self.all.subscribe()
    }

    /// The cache of the resource stored under `prefix` (`/registry/pods/`), once loaded.
    pub fn resource(&self, prefix: &str) -> Option<Arc<ResourceCache>> {
        let c = self.caches.read().unwrap_or_else(|e| e.into_inner()).get(prefix).cloned()?;
        let loading = c.read().loading.is_some();
        (!loading).then_some(c)
    }

    /// Adds the cache of a resource that appears at run time (a custom resource): it is
    /// registered first, so that no event is lost, then filled from the store.
    pub async fn add_resource(&self, prefix: &str) -> Result<(), StoreError> {
        let cache = {
            let mut caches = self.caches.write().unwrap_or_else(|e| e.into_inner());
            if caches.contains_key(prefix) {
                return Ok(());
            }
            let c = Arc::new(ResourceCache::new(prefix.to_string(), 0, self.history));
            c.write().loading = Some(Vec::new());
            caches.insert(prefix.to_string(), c.clone());
            c
        };
        let mut revision = None;
        let mut after = None;
        let mut objects = BTreeMap::new();
        loop {
            let page = match self.store.list(prefix, ListOptions { revision, limit: 10_000, start_after: after.clone() }).await {
                Ok(p) => p,
                Err(e) => {
                    self.caches.write().unwrap_or_else(|e| e.into_inner()).remove(prefix);
                    return Err(e);
                }
            };
            revision = Some(page.revision);
            after = page.items.last().map(|kv| kv.key.clone());
            for kv in page.items {
                if let Some(obj) = decode(&kv.value, kv.mod_revision) {
                    objects.insert(kv.key, Arc::new(obj));
                }
            }
            if !page.more {
                break;
            }
        }
        let listed_at = revision.unwrap_or(0);
        let mut st = cache.write();
        st.objects = objects;
        st.complete_after = listed_at;
        for ev in st.loading.take().unwrap_or_default() {
            if ev.revision > listed_at {
                ResourceCache::apply_locked(&mut st, &ev, cache.history);
            }
        }
        Ok(())
    }

    /// Forgets the cache of a resource that no longer exists (a deleted CRD's).
    pub fn remove_resource(&self, prefix: &str) {
        self.caches.write().unwrap_or_else(|e| e.into_inner()).remove(prefix);
    }

    /// The revision the caches have caught up to.
    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    /// Waits until the caches reflect every write the store had acknowledged when this was
    /// called, so that a client reads its own writes. Gives up after a while: with a shared
    /// etcd, the newest revision may belong to a key outside `/registry/` that this cache
    /// never sees.
    pub async fn wait_fresh(&self) -> ApiResult<i64> {
        let target = self.store.current_revision().await.map_err(ApiError::from_store)?;
        let mut rx = self.revision.subscribe();
        // The borrow `wait_for` returns holds the channel's lock: it must be released before
        // the revision is read again below, or a writer queued in between deadlocks both.
        let reached = tokio::time::timeout(Duration::from_secs(1), async { rx.wait_for(|r| *r >= target).await.map(|r| *r) }).await;
        if reached.is_err() {
            tracing::debug!(target, at = self.revision(), "watch cache behind the store");
        }
        Ok(self.revision())
    }
}

/// The cache a key belongs to: its storage prefix is `/registry/<resource>/` or, for
/// resources stored under two segments (`services/specs`), `/registry/<a>/<b>/`.
fn find(caches: &HashMap<String, Arc<ResourceCache>>, key: &str) -> Option<Arc<ResourceCache>> {
    let rest = key.strip_prefix("/registry/")?;
    let mut end = "/registry/".len();
    for (i, seg) in rest.split('/').enumerate() {
        end += seg.len() + 1;
        if i > 1 || end > key.len() {
            break;
        }
        if let Some(c) = caches.get(&key[..end]) {
            return Some(c.clone());
        }
    }
    None
}

impl ResourceCache {
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}
