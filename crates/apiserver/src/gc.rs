//! The garbage collector: deletes objects whose owners are gone (background cascading
//! deletion), deletes the dependents of an owner deleted in the foreground before letting it
//! go, and orphans dependents when asked to — upstream's `garbagecollector`, running in the
//! server process over the REST layer.
//!
//! It keeps two indexes, built from the watch cache and kept up to date from its events:
//! every object by uid, and every owner uid's dependents. Work is level-triggered: each pass
//! looks at the current state of the objects an event touched, and a full resync runs every
//! minute so that nothing depends on having seen a particular event.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use timonier_api::resources::ResourceDef;
use tokio::sync::broadcast::error::RecvError;

use crate::cache::{CacheEvent, EventType};
use crate::error::ApiResult;
use crate::rest::{finalizers, ignore_not_found, meta_str, DeleteOptions, Mode, WriteOptions};
use crate::state::ApiState;

const RESYNC: Duration = Duration::from_secs(60);

/// Where an object lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node {
    /// Storage key prefix of its resource.
    prefix: String,
    namespace: String,
    name: String,
}

#[derive(Default)]
struct Graph {
    by_uid: HashMap<String, Node>,
    /// owner uid → dependents' uids
    dependents: HashMap<String, HashSet<String>>,
    /// uid → owner uids
    owners: HashMap<String, Vec<String>>,
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| refs.iter().filter_map(|r| r.get("uid").and_then(Value::as_str)).map(str::to_string).collect())
        .unwrap_or_default()
}

impl Graph {
    fn add(&mut self, prefix: &str, obj: &Value) {
        let uid = meta_str(obj, "uid").to_string();
        if uid.is_empty() {
            return;
        }
        self.remove(&uid);
        let node = Node { prefix: prefix.to_string(), namespace: meta_str(obj, "namespace").into(), name: meta_str(obj, "name").into() };
        self.by_uid.insert(uid.clone(), node);
        let owners = owner_uids(obj);
        for o in &owners {
            self.dependents.entry(o.clone()).or_default().insert(uid.clone());
        }
        self.owners.insert(uid, owners);
    }

    fn remove(&mut self, uid: &str) {
        self.by_uid.remove(uid);
        for o in self.owners.remove(uid).unwrap_or_default() {
            if let Some(d) = self.dependents.get_mut(&o) {
                d.remove(uid);
                if d.is_empty() {
                    self.dependents.remove(&o);
                }
            }
        }
    }
}

pub async fn run(state: Arc<ApiState>) {
    loop {
        let mut events = state.cache.subscribe_all();
        let mut graph = Graph::default();
        let mut dirty: HashSet<String> = HashSet::new();
        let prefixes = resync(&state, &mut graph, &mut dirty);
        let mut next_resync = tokio::time::Instant::now() + RESYNC;
        loop {
            if !dirty.is_empty() {
                let work: Vec<String> = dirty.drain().collect();
                for uid in work {
                    if let Err(e) = attend(&state, &graph, &prefixes, &uid).await {
                        tracing::debug!(%uid, error = %e, "garbage collection will retry");
                        dirty.insert(uid);
                    }
                }
            }
            let ev = tokio::select! {
                ev = events.recv() => ev,
                _ = tokio::time::sleep_until(next_resync) => break,
                _ = tokio::time::sleep(Duration::from_secs(1)), if !dirty.is_empty() => continue,
            };
            match ev {
                Ok(ev) => note(&mut graph, &mut dirty, &ev),
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
            // Take what else is queued before working.
            while let Ok(ev) = events.try_recv() {
                note(&mut graph, &mut dirty, &ev);
            }
            next_resync = next_resync.max(tokio::time::Instant::now());
        }
    }
}

/// Rebuilds the graph from the caches and marks everything that may need work.
fn resync(state: &Arc<ApiState>, graph: &mut Graph, dirty: &mut HashSet<String>) -> HashMap<String, Arc<ResourceDef>> {
    let mut prefixes = HashMap::new();
    for def in &state.registry().all {
        prefixes.entry(def.key_prefix()).or_insert_with(|| def.clone());
    }
    for (prefix, def) in &prefixes {
        let Ok(cache) = state.cache_of(def) else { continue };
        for (_, obj) in cache.list(prefix) {
            graph.add(prefix, &obj);
            if needs_attention(&obj) {
                dirty.insert(meta_str(&obj, "uid").to_string());
            }
        }
    }
    // Dependents whose owners are absent.
    for (uid, owners) in &graph.owners {
        if !owners.is_empty() && owners.iter().any(|o| !graph.by_uid.contains_key(o)) {
            dirty.insert(uid.clone());
        }
    }
    prefixes
}

fn needs_attention(obj: &Value) -> bool {
    !meta_str(obj, "deletionTimestamp").is_empty() && finalizers(obj).iter().any(|f| f == "orphan" || f == "foregroundDeletion")
}

fn prefix_of(key: &str, obj: &Value) -> String {
    let ns = meta_str(obj, "namespace");
    let name = meta_str(obj, "name");
    let tail = if ns.is_empty() { name.to_string() } else { format!("{ns}/{name}") };
    key.strip_suffix(&tail).unwrap_or(key).to_string()
}

fn note(graph: &mut Graph, dirty: &mut HashSet<String>, ev: &CacheEvent) {
    let uid = meta_str(&ev.object, "uid").to_string();
    match ev.kind {
        EventType::Deleted => {
            graph.remove(&uid);
            // Its dependents may now be orphans; its owners may be waiting for it.
            if let Some(deps) = graph.dependents.get(&uid) {
                dirty.extend(deps.iter().cloned());
            }
            dirty.extend(owner_uids(&ev.object));
        }
        _ => {
            graph.add(&prefix_of(&ev.key, &ev.object), &ev.object);
            if needs_attention(&ev.object) || !owner_uids(&ev.object).is_empty() {
                dirty.insert(uid);
            }
        }
    }
}

/// Looks at one object and does what its state calls for.
async fn attend(state: &Arc<ApiState>, graph: &Graph, defs: &HashMap<String, Arc<ResourceDef>>, uid: &str) -> ApiResult<()> {
    let Some(node) = graph.by_uid.get(uid) else { return Ok(()) };
    let Some(def) = defs.get(&node.prefix) else { return Ok(()) };
    let cache = state.cache_of(def)?;
    let Some(obj) = cache.get(&def.key(&node.namespace, &node.name)) else { return Ok(()) };
    if meta_str(&obj, "uid") != uid {
        return Ok(());
    }
    let deps: Vec<String> = graph.dependents.get(uid).map(|d| d.iter().cloned().collect()).unwrap_or_default();
    let fins = finalizers(&obj);
    let deleting = !meta_str(&obj, "deletionTimestamp").is_empty();

    if deleting && fins.iter().any(|f| f == "orphan") {
        for d in &deps {
            remove_owner_refs(state, graph, defs, d, &[uid.to_string()]).await?;
        }
        return remove_finalizer(state, def, node, "orphan").await;
    }
    if deleting && fins.iter().any(|f| f == "foregroundDeletion") {
        if deps.is_empty() {
            return remove_finalizer(state, def, node, "foregroundDeletion").await;
        }
        for d in &deps {
            delete_dependent(state, graph, defs, d, "Foreground").await?;
        }
        // Not done until the dependents are gone: their deletion events bring us back.
        return Ok(());
    }
    // A dependent whose owners are all gone is deleted; references to absent owners among
    // live ones are dropped.
    let owners = owner_uids(&obj);
    if owners.is_empty() {
        return Ok(());
    }
    let absent: Vec<String> = owners.iter().filter(|o| !graph.by_uid.contains_key(*o)).cloned().collect();
    if absent.is_empty() || deleting {
        return Ok(());
    }
    if absent.len() == owners.len() {
        delete_dependent(state, graph, defs, uid, "Background").await
    } else {
        remove_owner_refs(state, graph, defs, uid, &absent).await
    }
}

async fn delete_dependent(state: &Arc<ApiState>, graph: &Graph, defs: &HashMap<String, Arc<ResourceDef>>, uid: &str, policy: &str) -> ApiResult<()> {
    let Some(node) = graph.by_uid.get(uid) else { return Ok(()) };
    let Some(def) = defs.get(&node.prefix) else { return Ok(()) };
    let opts = DeleteOptions { propagation: Some(policy.into()), uid: Some(uid.to_string()), ..Default::default() };
    match state.delete(def, &node.namespace, &node.name, &opts).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn remove_owner_refs(state: &Arc<ApiState>, graph: &Graph, defs: &HashMap<String, Arc<ResourceDef>>, uid: &str, owners: &[String]) -> ApiResult<()> {
    let Some(node) = graph.by_uid.get(uid) else { return Ok(()) };
    let Some(def) = defs.get(&node.prefix) else { return Ok(()) };
    let owners = owners.to_vec();
    let r = state
        .guaranteed_update(def, &node.namespace, &node.name, None, &WriteOptions::default(), |old| {
            let mut new = old.clone();
            if let Some(refs) = new.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
                refs.retain(|r| !owners.iter().any(|o| r.get("uid").and_then(Value::as_str) == Some(o.as_str())));
                if refs.is_empty() {
                    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("ownerReferences");
                    }
                }
            }
            Ok(new)
        }, Mode::Main)
        .await;
    ignore_not_found(r)
}

async fn remove_finalizer(state: &Arc<ApiState>, def: &Arc<ResourceDef>, node: &Node, finalizer: &str) -> ApiResult<()> {
    let r = state
        .guaranteed_update(def, &node.namespace, &node.name, None, &WriteOptions::default(), |old| {
            let mut new = old.clone();
            let fins: Vec<String> = finalizers(old).into_iter().filter(|f| f != finalizer).collect();
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                if fins.is_empty() {
                    m.remove("finalizers");
                } else {
                    m.insert("finalizers".into(), json!(fins));
                }
            }
            Ok(new)
        }, Mode::Main)
        .await;
    ignore_not_found(r)
}
