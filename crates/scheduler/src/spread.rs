//! PodTopologySpread: a pod's `topologySpreadConstraints` — DoNotSchedule ones filter,
//! ScheduleAnyway ones score — and, for a pod with none, upstream's system default
//! constraints (maxSkew 3 on `kubernetes.io/hostname`, 5 on `topology.kubernetes.io/zone`,
//! ScheduleAnyway) over the pods selected by the Services, ReplicaSet, StatefulSet or
//! ReplicationController that select it: what spreads a Deployment's replicas over nodes.
//!
//! Counts of matching pods per node and per domain come from the cache's index. When every
//! node is eligible for a constraint (the usual case) its domain counts are the index's,
//! maintained as pods come and go; otherwise (node affinity honoured, taints honoured, nodes
//! missing a key) they are summed over the eligible nodes for this cycle.


use k8s_openapi::api::core::v1::TopologySpreadConstraint;

use crate::cache::Cache;
use crate::filters::{has_required_node_affinity, required_node_affinity, untolerated_taint, Status};
use crate::index::{Domains, KeyDomains, MatchKey, PodMatch};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::scores::MAX_NODE_SCORE;
use crate::selector::{Labels, Selector};

pub const ERR_CONSTRAINTS: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_MISSING_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";
const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

#[derive(Debug, Clone)]
pub struct Constraint {
    pub max_skew: i64,
    pub topology_key: String,
    pub selector: Selector,
    pub min_domains: i64,
    pub honor_node_affinity: bool,
    pub honor_taints: bool,
    /// The cache's index entry counting the pods this constraint counts.
    entry: usize,
}

/// The pod's constraints with `action` (`DoNotSchedule` or `ScheduleAnyway`), or the system
/// defaults when it declares none, and whether they are its own.
pub fn constraints(cache: &mut Cache, pod: &PodInfo, action: &str) -> (Vec<Constraint>, bool) {
    let declared: &[TopologySpreadConstraint] = pod.pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_deref()).unwrap_or_default();
    let mut out = vec![];
    if !declared.is_empty() {
        for c in declared.iter().filter(|c| c.when_unsatisfiable == action) {
            let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
            // matchLabelKeys: the pod's own values of those keys narrow the selector (to its
            // revision, typically `pod-template-hash`).
            let pairs: Labels = c.match_label_keys.iter().flatten().filter_map(|k| pod.labels.get(k).map(|v| (k.clone(), v.clone()))).collect();
            if !pairs.is_empty() {
                selector = selector.with_pairs(&pairs);
            }
            out.push(constraint(cache, pod, i64::from(c.max_skew), &c.topology_key, selector, c.min_domains.map_or(1, i64::from), c.node_affinity_policy.as_deref() != Some("Ignore"), c.node_taints_policy.as_deref() == Some("Honor")));
        }
        return (out, true);
    }
    if action != "ScheduleAnyway" {
        return (out, false);
    }
    let selector = cache.default_selector(pod);
    if selector.is_empty() {
        return (out, false);
    }
    for (key, skew) in [(HOSTNAME, 3), (ZONE, 5)] {
        out.push(constraint(cache, pod, skew, key, selector.clone(), 1, true, false));
    }
    (out, false)
}

#[allow(clippy::too_many_arguments)]
fn constraint(cache: &mut Cache, pod: &PodInfo, max_skew: i64, key: &str, selector: Selector, min_domains: i64, honor_node_affinity: bool, honor_taints: bool) -> Constraint {
    let entry = cache.entry(&MatchKey { terms: vec![PodMatch::in_namespace(&pod.namespace, selector.clone())], skip_terminating: true });
    Constraint { max_skew, topology_key: key.to_string(), selector, min_domains, honor_node_affinity, honor_taints, entry }
}

/// Whether `node` counts for constraint `c` of `pod` (upstream's node inclusion policies).
fn included(c: &Constraint, pod: &PodInfo, node: &NodeInfo) -> bool {
    (!c.honor_node_affinity || required_node_affinity(pod, node)) && (!c.honor_taints || untolerated_taint(pod, node).is_none())
}

/// Whether every node counts for every constraint, so that the index's domain counts (over
/// all nodes with the key) are the answer. `require_all_keys`: nodes missing one constraint's
/// key do not count for the others either.
fn all_nodes_count(cache: &Cache, pod: &PodInfo, cs: &[Constraint], require_all_keys: bool) -> bool {
    let n = cache.node_count();
    let keys_everywhere = !require_all_keys || cs.iter().all(|c| cache.key_counts.get(&c.topology_key).copied().unwrap_or(0) == n);
    keys_everywhere && cs.iter().all(|c| !c.honor_taints && (!c.honor_node_affinity || !has_required_node_affinity(pod)))
}

/// Counts per domain of one constraint, over the nodes that count for it.
enum Counts {
    /// The index's counts for the constraint's entry and key.
    Index,
    /// Summed for this cycle: `None` for a domain no eligible node is in.
    Summed(Vec<Option<i64>>),
}

/// Sums per domain over the eligible nodes (the constraints' keys numbered beforehand).
fn summed(cache: &Cache, pod: &PodInfo, cs: &[Constraint], require_all_keys: bool) -> Vec<Counts> {
    let kds: Vec<Option<&KeyDomains>> = cs.iter().map(|c| cache.topology.prepared(&c.topology_key)).collect();
    let mut sums: Vec<Vec<Option<i64>>> = kds.iter().map(|kd| vec![None; kd.map_or(0, |kd| kd.len())]).collect();
    let domain = |i: usize, slot: usize| kds[i].and_then(|kd| kd.domain(slot));
    for &slot in cache.order() {
        let Some(node) = cache.node(slot) else { continue };
        if require_all_keys && (0..cs.len()).any(|i| domain(i, slot).is_none()) {
            continue;
        }
        for (i, c) in cs.iter().enumerate() {
            let Some(d) = domain(i, slot) else { continue };
            if included(c, pod, node) {
                *sums[i][d].get_or_insert(0) += i64::from(cache.index.get(c.entry).at(slot));
            }
        }
    }
    sums.into_iter().map(Counts::Summed).collect()
}

/// Numbers the constraints' keys and gets their counts: the index's when every node counts,
/// else summed for this cycle. Scoring counts hostnames per node: `per_node_hostname` spares
/// their per-domain counts.
fn count(cache: &mut Cache, pod: &PodInfo, cs: &[Constraint], require_all_keys: bool, per_node_hostname: bool) -> Vec<Counts> {
    for c in cs {
        cache.key_domains(&c.topology_key);
    }
    if all_nodes_count(cache, pod, cs, require_all_keys) {
        for c in cs.iter().filter(|c| !(per_node_hostname && c.topology_key == HOSTNAME)) {
            cache.domains(c.entry, &c.topology_key);
        }
        cs.iter().map(|_| Counts::Index).collect()
    } else {
        summed(cache, pod, cs, require_all_keys)
    }
}

/// A constraint's counts and domains, looked up once for a cycle's node loop.
struct Lookup<'a> {
    domains: &'a KeyDomains,
    index: Option<&'a Domains>,
    summed: Option<&'a Vec<Option<i64>>>,
}

impl<'a> Lookup<'a> {
    fn new(cache: &'a Cache, c: &Constraint, counts: &'a Counts) -> Option<Lookup<'a>> {
        let domains = cache.topology.prepared(&c.topology_key)?;
        Some(match counts {
            Counts::Index => Lookup { domains, index: cache.index.prepared(c.entry, &c.topology_key), summed: None },
            Counts::Summed(v) => Lookup { domains, index: None, summed: Some(v) },
        })
    }

    fn get(&self, domain: usize) -> i64 {
        match (self.index, self.summed) {
            (Some(d), _) => d.get(domain),
            (None, Some(v)) => v.get(domain).copied().flatten().unwrap_or(0),
            _ => 0,
        }
    }

    /// (smallest count, domains) over the domains that count.
    fn min_and_len(&self) -> (Option<i64>, usize) {
        match (self.index, self.summed) {
            (Some(d), _) => (d.min(), d.len()),
            (None, Some(v)) => (v.iter().flatten().copied().min(), v.iter().flatten().count()),
            _ => (None, 0),
        }
    }
}

/// The DoNotSchedule constraints and what they need per node.
pub struct Filter {
    constraints: Vec<Constraint>,
    counts: Vec<Counts>,
}

/// PreFilter: `None` when the pod has no DoNotSchedule constraint.
pub fn prefilter(cache: &mut Cache, pod: &PodInfo) -> Option<Filter> {
    let (cs, _) = constraints(cache, pod, "DoNotSchedule");
    if cs.is_empty() {
        return None;
    }
    let counts = count(cache, pod, &cs, true, false);
    Some(Filter { constraints: cs, counts })
}

impl Filter {
    /// The filter with its counts looked up once for the cycle's node loop.
    pub fn bind<'a>(&'a self, cache: &'a Cache, pod: &PodInfo) -> BoundFilter<'a> {
        let mut parts = vec![];
        for (c, k) in self.constraints.iter().zip(&self.counts) {
            let Some(lookup) = Lookup::new(cache, c, k) else { continue };
            let (min, domains) = lookup.min_and_len();
            // The skew baseline: the smallest domain count, or 0 while there are fewer
            // domains than minDomains.
            let min = if (domains as i64) < c.min_domains { 0 } else { min.unwrap_or(0) };
            parts.push((c.max_skew, min, i64::from(c.selector.matches(&pod.labels)), lookup));
        }
        BoundFilter { parts }
    }
}

pub struct BoundFilter<'a> {
    /// Per constraint: (maxSkew, baseline, whether the pod counts itself, counts).
    parts: Vec<(i64, i64, i64, Lookup<'a>)>,
}

impl BoundFilter<'_> {
    /// Filter: `existing matches in the node's domain + the pod itself − the baseline` must
    /// not exceed maxSkew; a node without a constraint's key cannot take the pod.
    pub fn check(&self, slot: usize) -> Option<Status> {
        for (max_skew, min, self_match, lookup) in &self.parts {
            let Some(d) = lookup.domains.domain(slot) else { return Some(Status::unresolvable(ERR_MISSING_LABEL)) };
            if lookup.get(d) + self_match - min > *max_skew {
                return Some(Status::unschedulable(ERR_CONSTRAINTS));
            }
        }
        None
    }
}

/// Score: for each feasible node, the matching pods in its domains weighted by how many
/// domains there are, normalized so that the emptiest domains score 100. `None` when the pod
/// has no ScheduleAnyway constraint (nor defaults): the plugin then scores nothing.
pub fn score(cache: &mut Cache, pod: &PodInfo, feasible: &[usize]) -> Option<Vec<i64>> {
    let (cs, declared) = constraints(cache, pod, "ScheduleAnyway");
    if cs.is_empty() || cache.node_count() == 0 {
        return None;
    }
    // Only a pod's own constraints need nodes to carry every key: the defaults still spread
    // over hostnames in a cluster without zones.
    let require_all = declared;
    let counts = count(cache, pod, &cs, require_all, true);
    let cache: &Cache = cache;
    let lookups: Vec<Option<Lookup>> = cs.iter().zip(&counts).map(|(c, k)| Lookup::new(cache, c, k)).collect();
    let domain = |i: usize, slot: usize| lookups[i].as_ref().and_then(|l| l.domains.domain(slot));
    let ignored: Vec<bool> = feasible.iter().map(|s| require_all && (0..cs.len()).any(|i| domain(i, *s).is_none())).collect();
    let counted = ignored.iter().filter(|i| !**i).count();
    let mut weights = vec![];
    for (i, c) in cs.iter().enumerate() {
        let size = if c.topology_key == HOSTNAME {
            counted
        } else {
            // Domains of the feasible nodes (nodes without the key make one more, "").
            let mut seen = vec![false; lookups[i].as_ref().map_or(0, |l| l.domains.len())];
            let mut missing = false;
            for (s, ign) in feasible.iter().zip(&ignored) {
                if !ign {
                    match domain(i, *s) {
                        Some(d) => seen[d] = true,
                        None => missing = true,
                    }
                }
            }
            seen.iter().filter(|x| **x).count() + usize::from(missing)
        };
        weights.push(((size + 2) as f64).ln());
    }
    let entries: Vec<&crate::index::Entry> = cs.iter().map(|c| cache.index.get(c.entry)).collect();
    let raw: Vec<Option<i64>> = feasible
        .iter()
        .zip(&ignored)
        .map(|(s, ign)| {
            if *ign {
                return None;
            }
            let mut score = 0.0;
            for (i, c) in cs.iter().enumerate() {
                let Some(d) = domain(i, *s) else { continue };
                let cnt = if c.topology_key == HOSTNAME { i64::from(entries[i].at(*s)) } else { lookups[i].as_ref().map_or(0, |l| l.get(d)) };
                score += cnt as f64 * weights[i] + (c.max_skew - 1) as f64;
            }
            Some(score.round() as i64)
        })
        .collect();
    Some(normalize(&raw))
}

/// Fewer matching pods is better: `100 × (max + min − score) / max`; ignored nodes 0.
fn normalize(raw: &[Option<i64>]) -> Vec<i64> {
    let min = raw.iter().flatten().copied().min().unwrap_or(0);
    let max = raw.iter().flatten().copied().max().unwrap_or(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => MAX_NODE_SCORE,
            Some(s) => MAX_NODE_SCORE * (max + min - s) / max,
        })
        .collect()
}
