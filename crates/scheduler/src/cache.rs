//! The scheduler's picture of the cluster (upstream's scheduler cache and snapshot in one):
//! nodes in slots, the pods counted on them — bound, or assumed by this scheduler while the
//! binding is on its way — and what the plugins precompute, all updated one watch event at a
//! time. A scheduling cycle reads it and never scans every pod.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::index::{Domains, KeyDomains, MatchIndex, MatchKey, TermGroups, Topology};
use crate::node_info::{NodeInfo, Usage};
use crate::pod_info::PodInfo;
use crate::selector::{Labels, Selector};

/// A node's place: its Node (none while pods name a node the cache has not seen, or after it
/// was deleted with pods still on it) and what its pods use.
#[derive(Debug, Default)]
pub struct Slot {
    pub node: Option<NodeInfo>,
    pub usage: Usage,
    /// When the node arrived, for upstream's node order.
    seq: u64,
}

#[derive(Debug)]
struct PodEntry {
    info: Arc<PodInfo>,
    /// Where it counts.
    slot: Option<usize>,
    /// The node this scheduler bound it to, until the pod itself says so.
    assumed: Option<String>,
}

/// Kinds whose selectors make up the default spreading's selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OwnerKind {
    ReplicaSet,
    StatefulSet,
    ReplicationController,
}

#[derive(Debug, Default)]
pub struct Cache {
    pub slots: Vec<Slot>,
    slot_of: HashMap<String, usize>,
    free: Vec<usize>,
    /// Slots holding a Node, in upstream's order: zones taken in turn.
    order: Vec<usize>,
    order_dirty: bool,
    /// Slots holding a Node.
    nodes: usize,
    /// How many nodes carry each label key.
    pub key_counts: HashMap<String, usize>,
    /// Bumped on any change of the nodes or their labels: what domain counts depend on.
    pub epoch: u64,
    seq: u64,
    pods: HashMap<String, PodEntry>,
    pending: HashSet<String>,
    pub namespaces: HashMap<String, Labels>,
    /// Namespace → Service name → its selector (Services without one select nothing).
    services: HashMap<String, HashMap<String, Labels>>,
    owners: HashMap<(OwnerKind, String, String), Selector>,
    pub index: MatchIndex,
    pub groups: TermGroups,
    /// Topology keys' domains, numbered.
    pub topology: Topology,
    /// Image name → how many nodes have it (ImageLocality's spread).
    pub image_nodes: HashMap<String, u32>,
    /// Scheduling cycles so far: when index entries were last used.
    pub stamp: u64,
}

impl Cache {
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// Slots with a Node, zones in turn (upstream's `nodeTree` list order).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn refresh_order(&mut self) {
        if !self.order_dirty {
            return;
        }
        self.order_dirty = false;
        let mut zones: HashMap<String, Vec<(u64, usize)>> = HashMap::new();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(n) = &s.node {
                zones.entry(zone_key(&n.labels)).or_default().push((s.seq, i));
            }
        }
        // Zones in the order their first node arrived, nodes by arrival within a zone.
        let mut lists: Vec<Vec<(u64, usize)>> = zones
            .into_values()
            .map(|mut v| {
                v.sort();
                v
            })
            .collect();
        lists.sort_by_key(|l| l.first().map(|(seq, _)| *seq));
        self.order.clear();
        let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for l in &lists {
                if let Some((_, s)) = l.get(i) {
                    self.order.push(*s);
                }
            }
        }
    }

    pub fn node(&self, slot: usize) -> Option<&NodeInfo> {
        self.slots.get(slot).and_then(|s| s.node.as_ref())
    }

    pub fn slot_of(&self, name: &str) -> Option<usize> {
        self.slot_of.get(name).copied()
    }

    fn slot_for(&mut self, name: &str) -> usize {
        if let Some(s) = self.slot_of.get(name) {
            return *s;
        }
        let s = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        self.seq += 1;
        self.slots[s] = Slot { seq: self.seq, ..Default::default() };
        self.slot_of.insert(name.to_string(), s);
        s
    }

    /// Frees a slot left with neither a Node nor pods.
    fn release(&mut self, slot: usize) {
        let s = &self.slots[slot];
        if s.node.is_none() && s.usage.pods == 0 {
            self.slot_of.retain(|_, v| *v != slot);
            self.free.push(slot);
        }
    }

    // ---- nodes ----

    pub fn apply_node(&mut self, node: Arc<Node>) {
        let info = NodeInfo::new(node);
        let slot = self.slot_for(&info.name.clone());
        let old = self.slots[slot].node.take();
        if old.is_none() {
            self.nodes += 1;
        }
        let relabelled = old.as_ref().is_none_or(|o| o.labels != info.labels);
        if relabelled {
            if let Some(o) = &old {
                self.count_keys(&o.labels, -1);
            }
            self.count_keys(&info.labels, 1);
            self.epoch += 1;
            self.order_dirty = true;
        }
        if old.as_ref().is_none_or(|o| o.images != info.images) {
            if let Some(o) = &old {
                count_images(&mut self.image_nodes, &o.images, -1);
            }
            count_images(&mut self.image_nodes, &info.images, 1);
        }
        self.slots[slot].node = Some(info);
    }

    pub fn delete_node(&mut self, name: &str) {
        let Some(slot) = self.slot_of(name) else { return };
        if let Some(o) = self.slots[slot].node.take() {
            self.nodes -= 1;
            self.count_keys(&o.labels, -1);
            count_images(&mut self.image_nodes, &o.images, -1);
            self.epoch += 1;
            self.order_dirty = true;
        }
        self.release(slot);
    }

    pub fn relist_nodes(&mut self, nodes: Vec<Arc<Node>>) {
        let names: HashSet<String> = nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
        let gone: Vec<String> = self.slots.iter().filter_map(|s| s.node.as_ref()).map(|n| n.name.clone()).filter(|n| !names.contains(n)).collect();
        for n in gone {
            self.delete_node(&n);
        }
        for n in nodes {
            self.apply_node(n);
        }
    }

    fn count_keys(&mut self, labels: &Labels, delta: isize) {
        for k in labels.keys() {
            let c = self.key_counts.entry(k.clone()).or_default();
            *c = c.saturating_add_signed(delta);
            if *c == 0 {
                self.key_counts.remove(k);
            }
        }
    }

    // ---- pods ----

    pub fn apply_pod(&mut self, pod: Arc<Pod>) {
        let info = Arc::new(PodInfo::new(pod));
        let old = self.pods.remove(&info.uid);
        // Bound now (to the node we assumed, or — another scheduler won — elsewhere): the
        // pod says where it is from here on.
        let assumed = old.as_ref().and_then(|o| o.assumed.clone()).filter(|_| info.node_name.is_empty());
        if let Some(o) = &old {
            if let Some(s) = o.slot {
                self.uncount(&o.info, s);
            }
        }
        self.insert(info, assumed);
    }

    fn insert(&mut self, info: Arc<PodInfo>, assumed: Option<String>) {
        let on = if info.terminal {
            None
        } else if !info.node_name.is_empty() {
            Some(info.node_name.clone())
        } else {
            assumed.clone()
        };
        let slot = on.map(|n| self.slot_for(&n));
        if let Some(s) = slot {
            self.count(&info, s);
        }
        let waiting = info.node_name.is_empty() && assumed.is_none() && info.scheduler_name == crate::SCHEDULER_NAME && !info.terminating && !info.terminal && !info.gated;
        if waiting {
            self.pending.insert(info.uid.clone());
        } else {
            self.pending.remove(&info.uid);
        }
        self.pods.insert(info.uid.clone(), PodEntry { info, slot, assumed });
    }

    pub fn delete_pod(&mut self, uid: &str) {
        self.pending.remove(uid);
        if let Some(o) = self.pods.remove(uid) {
            if let Some(s) = o.slot {
                self.uncount(&o.info, s);
                self.release(s);
            }
        }
    }

    pub fn relist_pods(&mut self, pods: Vec<Arc<Pod>>) {
        let uids: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        let gone: Vec<String> = self.pods.keys().filter(|u| !uids.contains(*u)).cloned().collect();
        for u in gone {
            self.delete_pod(&u);
        }
        for p in pods {
            self.apply_pod(p);
        }
    }

    /// This scheduler bound `uid` to `node`: count it there until the pod says so.
    pub fn assume(&mut self, uid: &str, node: &str) {
        if let Some(o) = self.pods.remove(uid) {
            if let Some(s) = o.slot {
                self.uncount(&o.info, s);
            }
            self.insert(o.info, Some(node.to_string()));
        }
    }

    /// The binding failed: the pod waits again.
    pub fn forget(&mut self, uid: &str) {
        if let Some(o) = self.pods.remove(uid) {
            if let Some(s) = o.slot {
                self.uncount(&o.info, s);
                self.release(s);
            }
            self.insert(o.info, None);
        }
    }

    pub fn pending(&self) -> Vec<Arc<PodInfo>> {
        self.pending.iter().filter_map(|u| self.pods.get(u)).map(|e| e.info.clone()).collect()
    }

    pub fn pod(&self, uid: &str) -> Option<&Arc<PodInfo>> {
        self.pods.get(uid).map(|e| &e.info)
    }

    fn count(&mut self, info: &PodInfo, slot: usize) {
        self.slots[slot].usage.add(info);
        self.index.on_pod(info, slot, 1, &self.topology, self.namespaces.get(&info.namespace), self.epoch);
        if info.has_affinity_terms() {
            self.groups.on_pod(info, slot, 1, &self.topology, self.epoch);
        }
    }

    fn uncount(&mut self, info: &PodInfo, slot: usize) {
        self.slots[slot].usage.remove(info);
        self.index.on_pod(info, slot, -1, &self.topology, self.namespaces.get(&info.namespace), self.epoch);
        if info.has_affinity_terms() {
            self.groups.on_pod(info, slot, -1, &self.topology, self.epoch);
        }
    }

    // ---- precomputed counts ----

    /// The index entry answering `key`, counted if it is new.
    pub fn entry(&mut self, key: &MatchKey) -> usize {
        let id = self.index.lookup(key, self.stamp);
        if self.index.is_stale(id) {
            let pods = self.pods.values().filter_map(|e| e.slot.map(|s| (&*e.info, s)));
            self.index.recount(id, self.slots.len(), pods, &self.namespaces);
        }
        id
    }

    /// Entry `id`'s counts per domain of `topology_key`.
    pub fn domains(&mut self, id: usize, topology_key: &str) -> &Domains {
        let kd = self.topology.key(topology_key, &self.slots, self.epoch);
        self.index.domains(id, topology_key, kd, self.epoch)
    }

    /// The numbered domains of `topology_key`.
    pub fn key_domains(&mut self, topology_key: &str) -> &KeyDomains {
        self.topology.key(topology_key, &self.slots, self.epoch)
    }

    /// Term group `id` counted per domain of its key.
    pub fn prepare_group(&mut self, id: usize) {
        let key = self.groups.group(id).term.topology_key.clone();
        let kd = self.topology.key(&key, &self.slots, self.epoch);
        self.groups.prepare(id, kd, self.epoch);
    }

    // ---- namespaces and the default spreading's owners ----

    pub fn apply_namespace(&mut self, name: String, labels: Labels) {
        if self.namespaces.get(&name) != Some(&labels) {
            self.namespaces.insert(name, labels);
            self.index.namespaces_changed();
        }
    }

    pub fn delete_namespace(&mut self, name: &str) {
        if self.namespaces.remove(name).is_some() {
            self.index.namespaces_changed();
        }
    }

    pub fn relist_namespaces(&mut self, all: Vec<(String, Labels)>) {
        let names: HashSet<&String> = all.iter().map(|(n, _)| n).collect();
        let gone: Vec<String> = self.namespaces.keys().filter(|n| !names.contains(n)).cloned().collect();
        for n in gone {
            self.delete_namespace(&n);
        }
        for (n, l) in all {
            self.apply_namespace(n, l);
        }
    }

    /// A Service and its selector (`None`: it selects nothing, as one without a selector).
    pub fn apply_service(&mut self, namespace: &str, name: &str, selector: Option<Labels>) {
        let ns = self.services.entry(namespace.to_string()).or_default();
        match selector {
            Some(s) => ns.insert(name.to_string(), s),
            None => ns.remove(name),
        };
    }

    pub fn relist_services(&mut self, all: Vec<(String, String, Option<Labels>)>) {
        self.services.clear();
        for (ns, name, s) in all {
            self.apply_service(&ns, &name, s);
        }
    }

    pub fn apply_owner(&mut self, kind: OwnerKind, namespace: &str, name: &str, selector: Option<Selector>) {
        let key = (kind, namespace.to_string(), name.to_string());
        match selector {
            Some(s) => self.owners.insert(key, s),
            None => self.owners.remove(&key),
        };
    }

    pub fn relist_owners(&mut self, kind: OwnerKind, all: Vec<(String, String, Selector)>) {
        self.owners.retain(|(k, _, _), _| *k != kind);
        for (ns, name, s) in all {
            self.apply_owner(kind, &ns, &name, Some(s));
        }
    }

    /// Upstream's `helper.DefaultSelector`: the selectors of the Services selecting the pod,
    /// and of its controlling ReplicationController, ReplicaSet or StatefulSet, ANDed.
    pub fn default_selector(&self, pod: &PodInfo) -> Selector {
        let mut pairs = Labels::new();
        for s in self.services.get(&pod.namespace).into_iter().flat_map(|m| m.values()) {
            if Selector::from_map(s).matches(&pod.labels) {
                pairs.extend(s.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let selector = Selector::from_map(&pairs);
        let Some(owner) = &pod.owner else { return selector };
        let kind = match (owner.api_version.as_str(), owner.kind.as_str()) {
            ("v1", "ReplicationController") => OwnerKind::ReplicationController,
            ("apps/v1", "ReplicaSet") => OwnerKind::ReplicaSet,
            ("apps/v1", "StatefulSet") => OwnerKind::StatefulSet,
            _ => return selector,
        };
        match self.owners.get(&(kind, pod.namespace.clone(), owner.name.clone())) {
            // A selector that selects nothing adds no requirement (upstream adds its
            // requirements, of which nothing has none).
            Some(s) if *s != Selector::Nothing => selector.and(s),
            _ => selector,
        }
    }
}

/// Upstream's `utilnode.GetZoneKey`: region and zone, "" when the node has neither.
fn zone_key(labels: &Labels) -> String {
    let get = |a: &str, b: &str| labels.get(a).or_else(|| labels.get(b)).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\x00:{zone}")
    }
}

fn count_images(counts: &mut HashMap<String, u32>, images: &HashMap<String, i64>, delta: i32) {
    for name in images.keys() {
        let c = counts.entry(name.clone()).or_default();
        *c = c.saturating_add_signed(delta);
        if *c == 0 {
            counts.remove(name);
        }
    }
}
