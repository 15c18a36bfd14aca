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

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;

use crate::cache::Cache;
use crate::filters::{has_required_node_affinity, required_node_affinity, untolerated_taint, Status};
use crate::index::{Domains, MatchKey, PodMatch};
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
    Summed(HashMap<String, i64>),
}

fn summed(cache: &Cache, pod: &PodInfo, cs: &[Constraint], require_all_keys: bool) -> Vec<Counts> {
    let mut maps: Vec<HashMap<String, i64>> = vec![HashMap::new(); cs.len()];
    for &slot in cache.order() {
        let Some(node) = cache.node(slot) else { continue };
        if require_all_keys && !cs.iter().all(|c| node.labels.contains_key(&c.topology_key)) {
            continue;
        }
        for (i, c) in cs.iter().enumerate() {
            let Some(value) = node.labels.get(&c.topology_key) else { continue };
            if included(c, pod, node) {
                *maps[i].entry(value.clone()).or_default() += i64::from(cache.index.get(c.entry).at(slot));
            }
        }
    }
    maps.into_iter().map(Counts::Summed).collect()
}

/// The DoNotSchedule constraints and what they need per node.
pub struct Filter {
    constraints: Vec<Constraint>,
    counts: Vec<Counts>,
    /// The skew baseline per constraint: the smallest domain count, or 0 while there are
    /// fewer domains than minDomains.
    min: Vec<i64>,
    self_match: Vec<i64>,
}

/// PreFilter: `None` when the pod has no DoNotSchedule constraint.
pub fn prefilter(cache: &mut Cache, pod: &PodInfo) -> Option<Filter> {
    let (cs, _) = constraints(cache, pod, "DoNotSchedule");
    if cs.is_empty() {
        return None;
    }
    let counts = if all_nodes_count(cache, pod, &cs, true) {
        for c in &cs {
            cache.domains(c.entry, &c.topology_key);
        }
        cs.iter().map(|_| Counts::Index).collect()
    } else {
        summed(cache, pod, &cs, true)
    };
    let min = cs
        .iter()
        .zip(&counts)
        .map(|(c, k)| {
            let (min, domains) = match k {
                Counts::Index => cache.index.prepared(c.entry, &c.topology_key).map_or((None, 0), |d| (d.min(), d.len())),
                Counts::Summed(m) => (m.values().copied().min(), m.len()),
            };
            if (domains as i64) < c.min_domains {
                0
            } else {
                min.unwrap_or(0)
            }
        })
        .collect();
    let self_match = cs.iter().map(|c| i64::from(c.selector.matches(&pod.labels))).collect();
    Some(Filter { constraints: cs, counts, min, self_match })
}

impl Filter {
    /// The filter with its counts looked up once for the cycle's node loop.
    pub fn bind<'a>(&'a self, cache: &'a Cache) -> BoundFilter<'a> {
        let counts = self
            .constraints
            .iter()
            .zip(&self.counts)
            .map(|(c, k)| match k {
                Counts::Index => Lookup::Index(cache.index.prepared(c.entry, &c.topology_key)),
                Counts::Summed(m) => Lookup::Summed(m),
            })
            .collect();
        BoundFilter { filter: self, counts }
    }
}

enum Lookup<'a> {
    Index(Option<&'a Domains>),
    Summed(&'a HashMap<String, i64>),
}

impl Lookup<'_> {
    fn get(&self, value: &str) -> i64 {
        match self {
            Lookup::Index(d) => d.map_or(0, |d| d.get(value)),
            Lookup::Summed(m) => m.get(value).copied().unwrap_or(0),
        }
    }
}

pub struct BoundFilter<'a> {
    filter: &'a Filter,
    counts: Vec<Lookup<'a>>,
}

impl BoundFilter<'_> {
    /// Filter: `existing matches in the node's domain + the pod itself − the baseline` must
    /// not exceed maxSkew; a node without a constraint's key cannot take the pod.
    pub fn check(&self, node: &NodeInfo) -> Option<Status> {
        let f = self.filter;
        for (i, c) in f.constraints.iter().enumerate() {
            let Some(value) = node.labels.get(&c.topology_key) else { return Some(Status::unresolvable(ERR_MISSING_LABEL)) };
            if self.counts[i].get(value) + f.self_match[i] - f.min[i] > c.max_skew {
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
    let ignored: Vec<bool> = feasible.iter().map(|s| require_all && cache.node(*s).is_none_or(|n| !cs.iter().all(|c| n.labels.contains_key(&c.topology_key)))).collect();
    let counted = ignored.iter().filter(|i| !**i).count();
    let mut weights = vec![];
    for c in &cs {
        let size = if c.topology_key == HOSTNAME {
            counted
        } else {
            // Domains of the feasible nodes (a node without the key is the "" domain).
            let mut values: HashSet<&str> = HashSet::new();
            for (s, ign) in feasible.iter().zip(&ignored) {
                if !ign {
                    values.insert(cache.node(*s).and_then(|n| n.labels.get(&c.topology_key)).map_or("", String::as_str));
                }
            }
            values.len()
        };
        weights.push(((size + 2) as f64).ln());
    }
    let counts = if all_nodes_count(cache, pod, &cs, require_all) {
        for c in cs.iter().filter(|c| c.topology_key != HOSTNAME) {
            cache.domains(c.entry, &c.topology_key);
        }
        cs.iter().map(|_| Counts::Index).collect()
    } else {
        summed(cache, pod, &cs, require_all)
    };
    let lookups: Vec<Lookup> = cs
        .iter()
        .zip(&counts)
        .map(|(c, k)| match k {
            Counts::Index => Lookup::Index(cache.index.prepared(c.entry, &c.topology_key)),
            Counts::Summed(m) => Lookup::Summed(m),
        })
        .collect();
    let entries: Vec<&crate::index::Entry> = cs.iter().map(|c| cache.index.get(c.entry)).collect();
    let raw: Vec<Option<i64>> = feasible
        .iter()
        .zip(&ignored)
        .map(|(s, ign)| {
            if *ign {
                return None;
            }
            let node = cache.node(*s)?;
            let mut score = 0.0;
            for (i, c) in cs.iter().enumerate() {
                let Some(value) = node.labels.get(&c.topology_key) else { continue };
                let cnt = if c.topology_key == HOSTNAME { i64::from(entries[i].at(*s)) } else { lookups[i].get(value) };
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
