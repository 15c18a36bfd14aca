//! InterPodAffinity: the incoming pod's required affinity (some pod it selects must already
//! be in the node's domain) and anti-affinity (none may be), existing pods' required
//! anti-affinity against the incoming pod, and the scores of preferred terms both ways (and
//! of existing pods' required affinity, at upstream's hardPodAffinityWeight 1).
//!
//! The incoming pod's terms are answered by the cache's index (pods matching a term, per
//! domain); existing pods' terms by the cache's term groups, each checked once against the
//! incoming pod rather than once per existing pod.

use crate::cache::Cache;
use crate::filters::Status;
use crate::index::{Domains, Group, KeyDomains, MatchKey, PodMatch, TermKind};
use crate::pod_info::{AffinityTerm, PodInfo};
use crate::scores::MAX_NODE_SCORE;

pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const ERR_EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// Upstream's default `hardPodAffinityWeight`.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

pub struct Filter {
    /// The required affinity terms' keys, and the index entry of the pods matching them all.
    affinity: Vec<String>,
    affinity_entry: Option<usize>,
    /// No pod anywhere matches them all (in a domain of their keys).
    affinity_none: bool,
    /// The pod matches all its own required affinity terms: the first of a group that wants
    /// to be together may go anywhere the keys exist.
    self_match: bool,
    /// The required anti-affinity terms' keys and index entries.
    anti: Vec<(String, usize)>,
    /// Term groups of existing pods whose required anti-affinity selects the incoming pod.
    existing_anti: Vec<usize>,
}

fn term_key(terms: &[&AffinityTerm]) -> MatchKey {
    MatchKey { terms: terms.iter().map(|t| PodMatch::of_term(t)).collect(), skip_terminating: false }
}

/// PreFilter: `None` when there is nothing to check (upstream's Skip).
pub fn prefilter(cache: &mut Cache, pod: &PodInfo) -> Option<Filter> {
    let ns_labels = cache.namespaces.get(&pod.namespace).cloned();
    let mut existing_anti = vec![];
    for id in cache.groups.of_kind(TermKind::RequiredAntiAffinity).to_vec() {
        let g = cache.groups.group(id);
        if g.total > 0 && g.term.matches(&pod.namespace, &pod.labels, ns_labels.as_ref()) {
            cache.prepare_group(id);
            existing_anti.push(id);
        }
    }
    if existing_anti.is_empty() && pod.required_affinity.is_empty() && pod.required_anti_affinity.is_empty() {
        return None;
    }
    let (mut affinity_entry, mut affinity_none) = (None, true);
    if !pod.required_affinity.is_empty() {
        let terms: Vec<&AffinityTerm> = pod.required_affinity.iter().collect();
        let id = cache.entry(&term_key(&terms));
        for t in &pod.required_affinity {
            if cache.domains(id, &t.topology_key).max().unwrap_or(0) > 0 {
                affinity_none = false;
            }
        }
        affinity_entry = Some(id);
    }
    let self_match = pod.required_affinity.iter().all(|t| t.matches(&pod.namespace, &pod.labels, ns_labels.as_ref()));
    let mut anti = vec![];
    for t in &pod.required_anti_affinity {
        let id = cache.entry(&term_key(&[t]));
        cache.domains(id, &t.topology_key);
        anti.push((t.topology_key.clone(), id));
    }
    let affinity = pod.required_affinity.iter().map(|t| t.topology_key.clone()).collect();
    Some(Filter { affinity, affinity_entry, affinity_none, self_match, anti, existing_anti })
}

/// Counts of one term per domain, looked up once for a cycle's node loop.
struct Lookup<'a> {
    domains: Option<&'a KeyDomains>,
    counts: Option<&'a Domains>,
}

impl<'a> Lookup<'a> {
    fn new(cache: &'a Cache, entry: usize, key: &str) -> Lookup<'a> {
        Lookup { domains: cache.topology.prepared(key), counts: cache.index.prepared(entry, key) }
    }

    fn domain(&self, slot: usize) -> Option<usize> {
        self.domains.and_then(|d| d.domain(slot))
    }

    fn get(&self, domain: usize) -> i64 {
        self.counts.map_or(0, |c| c.get(domain))
    }
}

impl Filter {
    /// The filter with its counts looked up once for the cycle's node loop.
    pub fn bind<'a>(&'a self, cache: &'a Cache) -> BoundFilter<'a> {
        BoundFilter {
            filter: self,
            affinity: self.affinity_entry.map(|e| self.affinity.iter().map(|k| Lookup::new(cache, e, k)).collect()).unwrap_or_default(),
            anti: self.anti.iter().map(|(k, e)| Lookup::new(cache, *e, k)).collect(),
            existing: self.existing_anti.iter().map(|id| (cache.groups.group(*id), cache.topology.prepared(&cache.groups.group(*id).term.topology_key))).collect(),
        }
    }
}

pub struct BoundFilter<'a> {
    filter: &'a Filter,
    affinity: Vec<Lookup<'a>>,
    anti: Vec<Lookup<'a>>,
    existing: Vec<(&'a Group, Option<&'a KeyDomains>)>,
}

impl BoundFilter<'_> {
    pub fn check(&self, slot: usize) -> Option<Status> {
        if self.filter.affinity_entry.is_some() {
            let mut pods_exist = true;
            for l in &self.affinity {
                // Every topology key must exist on the node.
                let Some(d) = l.domain(slot) else { return Some(Status::unresolvable(ERR_AFFINITY)) };
                if l.get(d) <= 0 {
                    pods_exist = false;
                }
            }
            if !(pods_exist || self.filter.affinity_none && self.filter.self_match) {
                return Some(Status::unresolvable(ERR_AFFINITY));
            }
        }
        for l in &self.anti {
            if l.domain(slot).is_some_and(|d| l.get(d) > 0) {
                return Some(Status::unschedulable(ERR_ANTI_AFFINITY));
            }
        }
        for (g, kd) in &self.existing {
            if kd.and_then(|kd| kd.domain(slot)).is_some_and(|d| g.in_domain(d) > 0) {
                return Some(Status::unschedulable(ERR_EXISTING_ANTI_AFFINITY));
            }
        }
        None
    }
}

enum Counts<'a> {
    Entry(Option<&'a Domains>),
    Group(&'a Group),
}

/// Where a score contribution's counts come from.
enum Source {
    /// Existing pods matching one of the incoming pod's preferred terms.
    Entry(usize),
    /// Existing pods whose term matches the incoming pod.
    Group(usize),
}

/// Score: per feasible node, Σ weight × pods in its domain over every term that relates the
/// incoming pod to existing ones (negative for anti-affinity), min-max normalized to 0–100.
/// `None` when no term relates them (the plugin scores nothing).
pub fn score(cache: &mut Cache, pod: &PodInfo, feasible: &[usize]) -> Option<Vec<i64>> {
    let ns_labels = cache.namespaces.get(&pod.namespace).cloned();
    let mut parts: Vec<(String, Source, i64)> = vec![];
    for (sign, terms) in [(1, &pod.preferred_affinity), (-1, &pod.preferred_anti_affinity)] {
        for (w, t) in terms {
            let id = cache.entry(&term_key(&[t]));
            cache.domains(id, &t.topology_key);
            parts.push((t.topology_key.clone(), Source::Entry(id), sign * i64::from(*w)));
        }
    }
    for (kind, sign) in [(TermKind::RequiredAffinity, 1), (TermKind::PreferredAffinity, 1), (TermKind::PreferredAntiAffinity, -1)] {
        for id in cache.groups.of_kind(kind).to_vec() {
            let g = cache.groups.group(id);
            if g.total == 0 || !g.term.matches(&pod.namespace, &pod.labels, ns_labels.as_ref()) {
                continue;
            }
            let weight = if kind == TermKind::RequiredAffinity { HARD_POD_AFFINITY_WEIGHT } else { i64::from(g.weight) };
            let key = g.term.topology_key.clone();
            cache.prepare_group(id);
            parts.push((key, Source::Group(id), sign * weight));
        }
    }
    if parts.is_empty() {
        return None;
    }
    let cache: &Cache = cache;
    // Each part's domains and counts looked up once, not per node.
    let parts: Vec<(Option<&KeyDomains>, Counts, i64)> = parts
        .iter()
        .map(|(key, src, w)| {
            let counts = match src {
                Source::Entry(id) => Counts::Entry(cache.index.prepared(*id, key)),
                Source::Group(id) => Counts::Group(cache.groups.group(*id)),
            };
            (cache.topology.prepared(key), counts, *w)
        })
        .collect();
    let raw: Vec<i64> = feasible
        .iter()
        .map(|s| {
            parts
                .iter()
                .map(|(kd, counts, w)| {
                    let Some(d) = kd.and_then(|kd| kd.domain(*s)) else { return 0 };
                    let n = match counts {
                        Counts::Entry(c) => c.map_or(0, |c| c.get(d)),
                        Counts::Group(g) => g.in_domain(d),
                    };
                    w * n
                })
                .sum()
        })
        .collect();
    let (min, max) = (raw.iter().copied().min().unwrap_or(0), raw.iter().copied().max().unwrap_or(0));
    Some(raw.iter().map(|s| if max > min { (MAX_NODE_SCORE as f64 * ((s - min) as f64 / (max - min) as f64)) as i64 } else { 0 }).collect())
}
