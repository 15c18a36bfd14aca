//! Precomputed answers about existing pods, kept up to date as pods come and go, so that a
//! scheduling cycle costs what the incoming pod asks rather than a scan of every pod on every
//! node (upstream rescans them per cycle, in parallel).
//!
//! - `MatchIndex`: for a question "pods matching these terms" (a spread constraint's selector
//!   in the pod's namespace, an affinity term), how many such pods each node has and each
//!   topology domain has. Replicas of one workload ask the same question, so one entry serves
//!   them all; entries nobody asked for lately are dropped.
//! - `TermGroups`: the affinity terms existing pods carry (their required anti-affinity, and
//!   what scoring weighs), grouped by identical term, with how many pods carry each per node
//!   and per domain — what an incoming pod is checked against.
//!
//! Domain counts depend on node labels: they are recomputed lazily after any node change
//! (`epoch`), and updated in place as pods change in between.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::cache::Slot;
use crate::pod_info::{AffinityTerm, PodInfo};
use crate::selector::{Labels, Selector};

/// Which pods: in one of `namespaces` or a namespace matching `namespace_selector`, with
/// labels matching `selector`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodMatch {
    pub namespaces: BTreeSet<String>,
    pub namespace_selector: Selector,
    pub selector: Selector,
}

impl PodMatch {
    pub fn in_namespace(namespace: &str, selector: Selector) -> PodMatch {
        PodMatch { namespaces: BTreeSet::from([namespace.to_string()]), namespace_selector: Selector::Nothing, selector }
    }

    pub fn of_term(t: &AffinityTerm) -> PodMatch {
        PodMatch { namespaces: t.namespaces.clone(), namespace_selector: t.namespace_selector.clone(), selector: t.selector.clone() }
    }

    fn matches(&self, pod: &PodInfo, ns_labels: Option<&Labels>) -> bool {
        let ns_ok = self.namespaces.contains(&pod.namespace) || ns_labels.is_some_and(|l| self.namespace_selector.matches(l));
        ns_ok && self.selector.matches(&pod.labels)
    }
}

/// Pods matching every term (upstream's `podMatchesAllAffinityTerms` for required affinity;
/// one term otherwise). Spreading does not count terminating pods; affinity does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MatchKey {
    pub terms: Vec<PodMatch>,
    pub skip_terminating: bool,
}

impl MatchKey {
    pub fn matches(&self, pod: &PodInfo, ns_labels: Option<&Labels>) -> bool {
        !(self.terms.is_empty() || self.skip_terminating && pod.terminating) && self.terms.iter().all(|t| t.matches(pod, ns_labels))
    }

    fn by_labelled_namespace(&self) -> bool {
        self.terms.iter().any(|t| t.namespace_selector != Selector::Nothing)
    }
}

/// A topology key's domains numbered: each slot's domain (its node's value of the key) as a
/// small number, so that looking a node's domain up costs an array index rather than a label
/// lookup and a hash per node per cycle. Rebuilt after node changes.
#[derive(Debug, Default)]
pub struct KeyDomains {
    /// Per slot: 1 + its domain; 0 without a node or without the label.
    of_slot: Vec<u32>,
    pub values: Vec<String>,
}

impl KeyDomains {
    fn build(key: &str, slots: &[Slot]) -> KeyDomains {
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let mut kd = KeyDomains { of_slot: vec![0; slots.len()], values: vec![] };
        for (i, s) in slots.iter().enumerate() {
            if let Some(v) = s.node.as_ref().and_then(|n| n.labels.get(key)) {
                let next = ids.len() as u32;
                let id = *ids.entry(v).or_insert_with(|| {
                    kd.values.push(v.clone());
                    next
                });
                kd.of_slot[i] = id + 1;
            }
        }
        kd
    }

    /// The domain of the node in `slot`, if it has the key.
    pub fn domain(&self, slot: usize) -> Option<usize> {
        self.of_slot.get(slot).copied().filter(|d| *d > 0).map(|d| d as usize - 1)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }
}

/// The numbered domains of every key asked for since the nodes last changed.
#[derive(Debug, Default)]
pub struct Topology {
    keys: HashMap<String, KeyDomains>,
    epoch: u64,
}

impl Topology {
    pub fn key(&mut self, key: &str, slots: &[Slot], epoch: u64) -> &KeyDomains {
        if self.epoch != epoch {
            self.keys.clear();
            self.epoch = epoch;
        }
        if !self.keys.contains_key(key) {
            self.keys.insert(key.to_string(), KeyDomains::build(key, slots));
        }
        &self.keys[key]
    }

    /// A key numbered earlier at the current epoch.
    pub fn prepared(&self, key: &str) -> Option<&KeyDomains> {
        self.keys.get(key)
    }
}

/// Counts per domain of one topology key, with a histogram of the counts for the minimum.
#[derive(Debug, Default)]
pub struct Domains {
    pub counts: Vec<i64>,
    hist: BTreeMap<i64, u32>,
}

impl Domains {
    fn new(n: usize) -> Domains {
        Domains { counts: vec![0; n], hist: if n > 0 { BTreeMap::from([(0, n as u32)]) } else { BTreeMap::new() } }
    }

    pub fn add(&mut self, domain: usize, delta: i64) {
        let Some(c) = self.counts.get_mut(domain) else { return };
        if let Some(h) = self.hist.get_mut(c) {
            *h -= 1;
            if *h == 0 {
                self.hist.remove(c);
            }
        }
        *c += delta;
        *self.hist.entry(*c).or_default() += 1;
    }

    pub fn get(&self, domain: usize) -> i64 {
        self.counts.get(domain).copied().unwrap_or(0)
    }

    /// The smallest count of any domain.
    pub fn min(&self) -> Option<i64> {
        self.hist.keys().next().copied()
    }

    /// The largest count of any domain.
    pub fn max(&self) -> Option<i64> {
        self.hist.keys().next_back().copied()
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }
}

#[derive(Debug)]
pub struct Entry {
    pub key: MatchKey,
    /// Matching pods per node slot.
    pub per_node: Vec<u32>,
    /// Per topology key asked for: counts over every node with that label (zero included).
    domains: HashMap<String, Domains>,
    domains_epoch: u64,
    /// Namespace labels changed since `per_node` was counted.
    stale: bool,
    used: u64,
}

impl Entry {
    pub fn at(&self, slot: usize) -> u32 {
        self.per_node.get(slot).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
pub struct MatchIndex {
    entries: Vec<Entry>,
    ids: HashMap<MatchKey, usize>,
    /// Entries that only count pods of one namespace, by that namespace; the others are
    /// checked against every pod.
    by_namespace: HashMap<String, Vec<usize>>,
    any_namespace: Vec<usize>,
}

impl MatchIndex {
    /// The entry answering `key` (new ones still to be counted: see `is_stale`).
    pub fn lookup(&mut self, key: &MatchKey, stamp: u64) -> usize {
        let id = match self.ids.get(key) {
            Some(id) => *id,
            None => {
                let id = self.entries.len();
                self.entries.push(Entry { key: key.clone(), per_node: vec![], domains: HashMap::new(), domains_epoch: 0, stale: true, used: stamp });
                self.ids.insert(key.clone(), id);
                self.bucket(id);
                id
            }
        };
        self.entries[id].used = stamp;
        id
    }

    fn bucket(&mut self, id: usize) {
        let key = &self.entries[id].key;
        let single = (!key.by_labelled_namespace() && key.terms.len() == 1 && key.terms[0].namespaces.len() == 1).then(|| key.terms[0].namespaces.iter().next().cloned()).flatten();
        match single {
            Some(ns) => self.by_namespace.entry(ns).or_default().push(id),
            None => self.any_namespace.push(id),
        }
    }

    pub fn is_stale(&self, id: usize) -> bool {
        self.entries[id].stale
    }

    /// Counts entry `id` afresh from every counted pod and its slot.
    pub fn recount<'a>(&mut self, id: usize, slots: usize, pods: impl Iterator<Item = (&'a PodInfo, usize)>, namespaces: &HashMap<String, Labels>) {
        let e = &mut self.entries[id];
        e.per_node = vec![0; slots];
        for (p, slot) in pods {
            if e.key.matches(p, namespaces.get(&p.namespace)) {
                if e.per_node.len() <= slot {
                    e.per_node.resize(slot + 1, 0);
                }
                e.per_node[slot] += 1;
            }
        }
        e.stale = false;
        e.domains.clear();
    }

    pub fn get(&self, id: usize) -> &Entry {
        &self.entries[id]
    }

    /// The counts per domain of `topology_key` (numbered by `kd`) for entry `id`, over every
    /// node having the key.
    pub fn domains(&mut self, id: usize, topology_key: &str, kd: &KeyDomains, epoch: u64) -> &Domains {
        let e = &mut self.entries[id];
        if e.domains_epoch != epoch {
            e.domains.clear();
            e.domains_epoch = epoch;
        }
        if !e.domains.contains_key(topology_key) {
            let mut d = Domains::new(kd.len());
            for (slot, n) in e.per_node.iter().enumerate() {
                if let Some(dom) = kd.domain(slot).filter(|_| *n > 0) {
                    d.add(dom, i64::from(*n));
                }
            }
            e.domains.insert(topology_key.to_string(), d);
        }
        &e.domains[topology_key]
    }

    /// Domains `domains` prepared earlier in this cycle.
    pub fn prepared(&self, id: usize, topology_key: &str) -> Option<&Domains> {
        self.entries[id].domains.get(topology_key)
    }

    /// A pod now counts (`delta` 1) or no longer counts (-1) on `slot`.
    pub fn on_pod(&mut self, pod: &PodInfo, slot: usize, delta: i64, topology: &Topology, ns_labels: Option<&Labels>, epoch: u64) {
        let ids = self.by_namespace.get(&pod.namespace).into_iter().flatten().chain(self.any_namespace.iter());
        for id in ids {
            let e = &mut self.entries[*id];
            if e.stale || !e.key.matches(pod, ns_labels) {
                continue;
            }
            if e.per_node.len() <= slot {
                e.per_node.resize(slot + 1, 0);
            }
            e.per_node[slot] = (i64::from(e.per_node[slot]) + delta).max(0) as u32;
            if e.domains_epoch == epoch {
                for (key, d) in e.domains.iter_mut() {
                    if let Some(dom) = topology.prepared(key).and_then(|kd| kd.domain(slot)) {
                        d.add(dom, delta);
                    }
                }
            }
        }
    }

    /// Namespace labels changed: what counted pods by namespace selector counts again.
    pub fn namespaces_changed(&mut self) {
        for e in self.entries.iter_mut().filter(|e| e.key.by_labelled_namespace()) {
            e.stale = true;
        }
    }

    /// Drops the entries nobody asked for since `stamp` once there are many of them.
    pub fn trim(&mut self, stamp: u64, keep: usize) {
        if self.entries.len() <= keep {
            return;
        }
        let old = std::mem::take(&mut self.entries);
        self.ids.clear();
        self.by_namespace.clear();
        self.any_namespace.clear();
        for e in old.into_iter().filter(|e| e.used >= stamp) {
            let id = self.entries.len();
            self.ids.insert(e.key.clone(), id);
            self.entries.push(e);
            self.bucket(id);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Which of an existing pod's terms a group holds.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TermKind {
    RequiredAffinity,
    RequiredAntiAffinity,
    PreferredAffinity,
    PreferredAntiAffinity,
}

/// Existing pods carrying one identical term: how many per node, and per domain of the term's
/// topology key.
#[derive(Debug)]
pub struct Group {
    pub term: AffinityTerm,
    pub weight: i32,
    /// Pods carrying it, everywhere.
    pub total: u32,
    per_node: HashMap<usize, u32>,
    domains: Vec<i64>,
    /// When `domains` was counted; 0: never.
    domains_epoch: u64,
}

impl Group {
    /// Pods carrying the term on nodes of `domain` (of the term's key); `prepare`d first in
    /// this cycle.
    pub fn in_domain(&self, domain: usize) -> i64 {
        self.domains.get(domain).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
pub struct TermGroups {
    groups: Vec<Group>,
    ids: HashMap<(TermKind, i32, AffinityTerm), usize>,
    by_kind: [Vec<usize>; 4],
}

impl TermGroups {
    pub fn on_pod(&mut self, pod: &PodInfo, slot: usize, delta: i64, topology: &Topology, epoch: u64) {
        let terms = pod.required_affinity.iter().map(|t| (TermKind::RequiredAffinity, 1, t));
        let terms = terms.chain(pod.required_anti_affinity.iter().map(|t| (TermKind::RequiredAntiAffinity, 1, t)));
        let terms = terms.chain(pod.preferred_affinity.iter().map(|(w, t)| (TermKind::PreferredAffinity, *w, t)));
        let terms = terms.chain(pod.preferred_anti_affinity.iter().map(|(w, t)| (TermKind::PreferredAntiAffinity, *w, t)));
        for (kind, weight, term) in terms {
            let key = (kind, weight, term.clone());
            let id = match self.ids.get(&key) {
                Some(id) => *id,
                None => {
                    let id = self.groups.len();
                    self.groups.push(Group { term: term.clone(), weight, total: 0, per_node: HashMap::new(), domains: vec![], domains_epoch: 0 });
                    self.ids.insert(key, id);
                    self.by_kind[kind as usize].push(id);
                    id
                }
            };
            let g = &mut self.groups[id];
            let n = g.per_node.entry(slot).or_default();
            *n = (i64::from(*n) + delta).max(0) as u32;
            if *n == 0 {
                g.per_node.remove(&slot);
            }
            g.total = (i64::from(g.total) + delta).max(0) as u32;
            if g.domains_epoch == epoch {
                if let Some(c) = topology.prepared(&term.topology_key).and_then(|kd| kd.domain(slot)).and_then(|d| g.domains.get_mut(d)) {
                    *c += delta;
                }
            }
        }
    }

    /// The groups of one kind (some may hold no pod any more).
    pub fn of_kind(&self, kind: TermKind) -> &[usize] {
        &self.by_kind[kind as usize]
    }

    /// Drops the groups no pod carries any more, once they outnumber the others.
    pub fn compact(&mut self) {
        let dead = self.groups.iter().filter(|g| g.total == 0).count();
        if dead < 64 || dead < self.groups.len() - dead {
            return;
        }
        let old = std::mem::take(&mut self.groups);
        let mut kinds: HashMap<usize, TermKind> = HashMap::new();
        for ((kind, _, _), id) in &self.ids {
            kinds.insert(*id, *kind);
        }
        self.ids.clear();
        self.by_kind = Default::default();
        for (old_id, g) in old.into_iter().enumerate() {
            let Some(kind) = kinds.get(&old_id).copied().filter(|_| g.total > 0) else { continue };
            let id = self.groups.len();
            self.ids.insert((kind, g.weight, g.term.clone()), id);
            self.by_kind[kind as usize].push(id);
            self.groups.push(g);
        }
    }

    pub fn group(&self, id: usize) -> &Group {
        &self.groups[id]
    }

    /// Makes `group(id).in_domain` current after node changes (`kd`: its key's domains).
    pub fn prepare(&mut self, id: usize, kd: &KeyDomains, epoch: u64) {
        let g = &mut self.groups[id];
        if g.domains_epoch == epoch {
            return;
        }
        g.domains = vec![0; kd.len()];
        for (slot, n) in &g.per_node {
            if let Some(d) = kd.domain(*slot) {
                g.domains[d] += i64::from(*n);
            }
        }
        g.domains_epoch = epoch;
    }
}
