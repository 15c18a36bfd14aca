//! One scheduling cycle, as upstream's `schedulePod`: PreFilter, Filter over the nodes from a
//! rotating start until enough feasible ones are found (`percentageOfNodesToScore`'s adaptive
//! default), Score with the default profile's weights, and the best node — or upstream's
//! FitError message, with what DefaultPreemption would add (this scheduler does not preempt:
//! a node where preemption might help says no victims were found).

use std::collections::BTreeMap;

use crate::cache::Cache;
use crate::filters::{self, Status};
use crate::pod_info::PodInfo;
use crate::node_info::{NodeInfo, Usage};
use crate::scores::*;
use crate::{interpod, spread};

/// Rotation state across cycles: where the next filter pass starts, and which of equally good
/// nodes goes next.
#[derive(Debug, Default)]
pub struct Rotation {
    next_start: usize,
    next_tie: usize,
}

const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// Upstream's `numFeasibleNodesToFind` with the adaptive percentage: all of a small cluster,
/// 50% minus one point per 125 nodes (at least 5%, at least 100 nodes) of a large one.
pub fn nodes_to_find(all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND {
        return all;
    }
    let percentage = (50usize.saturating_sub(all / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    (all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// The node for `pod` (its slot), or the message saying why there is none.
pub fn schedule(cache: &mut Cache, rotation: &mut Rotation, pod: &PodInfo) -> Result<usize, String> {
    cache.stamp += 1;
    cache.refresh_order();
    let all = cache.node_count();
    if all == 0 {
        return Err("no nodes available to schedule pods".into());
    }
    // PreFilter.
    let names = match filters::node_names(pod) {
        Ok(n) => n,
        Err(msg) => return Err(truncate(format!("0/{all} nodes are available: {msg}. {}", preemption(pod, all, 0)))),
    };
    let spread = spread::prefilter(cache, pod);
    let inter = interpod::prefilter(cache, pod);
    let cache_ref: &Cache = cache;
    let bound_spread = spread.as_ref().map(|s| s.bind(cache_ref, pod));
    let bound_inter = inter.as_ref().map(|f| f.bind(cache_ref));
    let candidates: Vec<usize> = match &names {
        None => cache.order().to_vec(),
        Some(names) => cache.order().iter().copied().filter(|s| cache.node(*s).is_some_and(|n| names.contains(&n.name))).collect(),
    };
    // Filter.
    let n = candidates.len();
    let to_find = nodes_to_find(n);
    let start = if n == 0 { 0 } else { rotation.next_start % n };
    let mut feasible = Vec::with_capacity(to_find.min(n));
    let mut failures: Vec<Status> = vec![];
    let mut processed = 0;
    for i in 0..n {
        let slot = candidates[(start + i) % n];
        processed += 1;
        let Some(node) = cache.node(slot) else { continue };
        let usage = &cache.slots[slot].usage;
        let status = filters::node_local(pod, node, usage).or_else(|| bound_spread.as_ref().and_then(|s| s.check(slot))).or_else(|| bound_inter.as_ref().and_then(|f| f.check(slot)));
        match status {
            None => {
                feasible.push(slot);
                if feasible.len() >= to_find {
                    break;
                }
            }
            // Why nodes fail only matters while none fits.
            Some(s) if feasible.is_empty() => failures.push(s),
            Some(_) => {}
        }
    }
    if n > 0 {
        rotation.next_start = (start + processed) % n;
    }
    if feasible.is_empty() {
        return Err(fit_error(pod, all, &failures, all - n));
    }
    if feasible.len() == 1 {
        return Ok(feasible[0]);
    }
    let total = score(cache, pod, &feasible);
    let best = total.iter().copied().max().unwrap_or(0);
    let ties: Vec<usize> = feasible.iter().zip(&total).filter(|(_, s)| **s == best).map(|(slot, _)| *slot).collect();
    rotation.next_tie = rotation.next_tie.wrapping_add(1);
    Ok(ties[rotation.next_tie % ties.len()])
}

/// The weighted sum of every score plugin, per feasible node.
fn score(cache: &mut Cache, pod: &PodInfo, feasible: &[usize]) -> Vec<i64> {
    let mut total = vec![0i64; feasible.len()];
    let mut taints = per_node(cache, feasible, |n, _| intolerable_prefer_no_schedule(pod, n));
    default_normalize(&mut taints, true);
    add(&mut total, &taints, WEIGHT_TAINT_TOLERATION);
    if has_preferred_node_affinity(pod) {
        let mut affinity = per_node(cache, feasible, |n, _| preferred_node_affinity(pod, n));
        default_normalize(&mut affinity, false);
        add(&mut total, &affinity, WEIGHT_NODE_AFFINITY);
    }
    add(&mut total, &per_node(cache, feasible, |n, u| least_allocated(pod, n, u)), WEIGHT_FIT);
    if balanced_applies(pod) {
        add(&mut total, &per_node(cache, feasible, |n, u| balanced_allocation(pod, n, u)), WEIGHT_BALANCED);
    }
    let nodes = cache.node_count();
    add(&mut total, &per_node(cache, feasible, |n, _| image_locality(pod, n, &cache.image_nodes, nodes)), WEIGHT_IMAGE_LOCALITY);
    if let Some(s) = spread::score(cache, pod, feasible) {
        add(&mut total, &s, WEIGHT_SPREAD);
    }
    if let Some(s) = interpod::score(cache, pod, feasible) {
        add(&mut total, &s, WEIGHT_INTER_POD_AFFINITY);
    }
    total
}

fn per_node(cache: &Cache, feasible: &[usize], f: impl Fn(&NodeInfo, &Usage) -> i64) -> Vec<i64> {
    feasible.iter().map(|s| cache.node(*s).map_or(0, |n| f(n, &cache.slots[*s].usage))).collect()
}

fn add(total: &mut [i64], scores: &[i64], weight: i64) {
    for (t, s) in total.iter_mut().zip(scores) {
        *t += s * weight;
    }
}

/// Upstream's FitError message: `0/3 nodes are available: <reasons counted, sorted as
/// strings>. preemption: <DefaultPreemption's own FitError>.` — whose final period follows the
/// inner message's own, as upstream prints it. `absent`: nodes a PreFilter excluded.
pub fn fit_error(pod: &PodInfo, all: usize, failures: &[Status], absent: usize) -> String {
    let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
    for s in failures {
        for r in s.reasons() {
            *histogram.entry(r).or_default() += 1;
        }
    }
    if absent > 0 {
        *histogram.entry("node(s) didn't satisfy plugin(s) [NodeAffinity]").or_default() += absent;
    }
    let resolvable = failures.iter().filter(|s| s.resolvable).count();
    let reasons = sorted_counts(histogram.into_iter().map(|(r, n)| (r.to_string(), n)));
    truncate(format!("0/{all} nodes are available: {reasons}. {}", preemption(pod, all, resolvable)))
}

/// What DefaultPreemption's PostFilter says: nodes whose failure preemption could resolve
/// have no lower-priority victims here (this scheduler never evicts), the others are not
/// helped by it.
fn preemption(pod: &PodInfo, all: usize, resolvable: usize) -> String {
    if pod.preemption_never {
        return "preemption: not eligible due to preemptionPolicy=Never..".into();
    }
    let mut parts = vec![];
    if resolvable > 0 {
        parts.push(("No preemption victims found for incoming pod".to_string(), resolvable));
    }
    if all > resolvable {
        parts.push(("Preemption is not helpful for scheduling".to_string(), all - resolvable));
    }
    format!("preemption: 0/{all} nodes are available: {}..", sorted_counts(parts.into_iter()))
}

/// `N reason` pairs sorted as strings (so "10 …" sorts before "2 …"), as upstream's
/// `sortReasonsHistogram`.
fn sorted_counts(counts: impl Iterator<Item = (String, usize)>) -> String {
    let mut parts: Vec<String> = counts.map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

/// Upstream's `truncateMessage`: events and conditions carry at most 1024 bytes.
pub fn truncate(message: String) -> String {
    const MAX: usize = 1024;
    const SUFFIX: &str = " ...";
    if message.len() <= MAX {
        return message;
    }
    let mut cut = MAX - SUFFIX.len();
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{SUFFIX}", &message[..cut])
}
