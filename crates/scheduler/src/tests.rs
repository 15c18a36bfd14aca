//! Scheduling over the cache: upstream's table tests for PodTopologySpread and
//! InterPodAffinity (cases and expected outcomes from `filtering_test.go`/`scoring_test.go`),
//! whole cycles with their FailedScheduling messages, and the incremental counts checked
//! against counting afresh.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::cache::{Cache, OwnerKind};
use crate::filters::Status;
use crate::index::{MatchKey, PodMatch};
use crate::pod_info::PodInfo;
use crate::schedule::{schedule, Rotation};
use crate::selector::Selector;
use crate::testutil::{cache, node, pod, pod_on};
use crate::{interpod, spread};

fn info(p: Pod) -> PodInfo {
    PodInfo::new(Arc::new(p))
}

/// A node labelled `zone` and `node` (upstream's test nodes), with `extra` labels.
fn zoned(name: &str, zone: Option<&str>, extra: Value) -> k8s_openapi::api::core::v1::Node {
    let mut labels = json!({"node": name});
    if let Some(z) = zone {
        labels["zone"] = json!(z);
    }
    crate::testutil::merge(&mut labels, extra);
    node(name, json!({"metadata": {"labels": labels}}))
}

fn foo(name: &str, node: &str) -> Pod {
    pod_on(name, node, json!({"foo": ""}), json!({}))
}

/// The spread filter's verdict on every node, by name.
fn spread_filter(c: &mut Cache, p: &PodInfo) -> Vec<(String, Option<bool>)> {
    c.refresh_order();
    let f = spread::prefilter(c, p);
    let f = f.as_ref().map(|f| f.bind(c, p));
    let mut out: Vec<(String, Option<bool>)> = c
        .order()
        .iter()
        .filter_map(|s| c.node(*s).map(|n| (n.name.clone(), f.as_ref().and_then(|f| f.check(*s)).map(|s: Status| s.resolvable))))
        .collect();
    out.sort();
    out
}

fn spread_pod(constraints: Value) -> PodInfo {
    info(pod(json!({"metadata": {"name": "p", "labels": {"foo": ""}}, "spec": {"topologySpreadConstraints": constraints}})))
}

fn on(key: &str, skew: i32) -> Value {
    json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchExpressions": [{"key": "foo", "operator": "Exists"}]}})
}

const OK: Option<bool> = None;
const UNSCHEDULABLE: Option<bool> = Some(true);
const UNRESOLVABLE: Option<bool> = Some(false);

fn verdicts(v: &[(&str, Option<bool>)]) -> Vec<(String, Option<bool>)> {
    v.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

fn four_nodes() -> Vec<k8s_openapi::api::core::v1::Node> {
    vec![zoned("node-a", Some("zone1"), json!({})), zoned("node-b", Some("zone1"), json!({})), zoned("node-x", Some("zone2"), json!({})), zoned("node-y", Some("zone2"), json!({}))]
}

#[test]
fn spread_filter_single_constraint() {
    // "pods spread across nodes as 2/1/0/3, only node-x fits"
    let pods = vec![foo("a1", "node-a"), foo("a2", "node-a"), foo("b1", "node-b"), foo("y1", "node-y"), foo("y2", "node-y"), foo("y3", "node-y")];
    let mut c = cache(four_nodes(), pods.clone());
    let p = spread_pod(json!([on("node", 1)]));
    assert_eq!(spread_filter(&mut c, &p), verdicts(&[("node-a", UNSCHEDULABLE), ("node-b", UNSCHEDULABLE), ("node-x", OK), ("node-y", UNSCHEDULABLE)]));
    // "… maxSkew is 2, node-b and node-x fit"
    let p = spread_pod(json!([on("node", 2)]));
    assert_eq!(spread_filter(&mut c, &p), verdicts(&[("node-a", UNSCHEDULABLE), ("node-b", OK), ("node-x", OK), ("node-y", UNSCHEDULABLE)]));
    // "pods spread across zones as 3/3, all nodes fit"
    let p = spread_pod(json!([on("zone", 1)]));
    assert_eq!(spread_filter(&mut c, &p), verdicts(&[("node-a", OK), ("node-b", OK), ("node-x", OK), ("node-y", OK)]));
    // "pod cannot be scheduled as all nodes don't have label 'rack'"
    let p = spread_pod(json!([on("rack", 1)]));
    assert!(spread_filter(&mut c, &p).iter().all(|(_, v)| *v == UNRESOLVABLE));
    // A terminating pod does not count: a fourth, leaving, on node-y changes nothing.
    c.apply_pod(Arc::new(pod_on("y4", "node-y", json!({"foo": ""}), json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}))));
    let p = spread_pod(json!([on("node", 1)]));
    assert_eq!(spread_filter(&mut c, &p), verdicts(&[("node-a", UNSCHEDULABLE), ("node-b", UNSCHEDULABLE), ("node-x", OK), ("node-y", UNSCHEDULABLE)]));
    // Pods of another namespace do not count.
    let mut c = cache(four_nodes(), pods.iter().cloned().map(|mut p| {
        p.metadata.namespace = Some("other".into());
        p
    }).collect());
    assert!(spread_filter(&mut c, &p).iter().all(|(_, v)| *v == OK));
    // An incoming pod its own selector does not match: only existing pods count.
    let mut c = cache(four_nodes(), pods);
    let p = info(pod(json!({"metadata": {"name": "p", "labels": {"bar": ""}}, "spec": {"topologySpreadConstraints": [on("node", 1)]}})));
    // min 0: a (2) and y (3) exceed 1; b (1) and x (0) do not.
    assert_eq!(spread_filter(&mut c, &p), verdicts(&[("node-a", UNSCHEDULABLE), ("node-b", OK), ("node-x", OK), ("node-y", UNSCHEDULABLE)]));
}

#[test]
fn spread_filter_missing_labels_min_domains_and_policies() {
    // "pods spread across zones as 1/2 due to absence of label 'zone' on node-b"
    let nodes = vec![zoned("node-a", Some("zone1"), json!({})), zoned("node-b", None, json!({"zon": "zone1"})), zoned("node-x", Some("zone2"), json!({})), zoned("node-y", Some("zone2"), json!({}))];
    let pods = vec![foo("a1", "node-a"), foo("b1", "node-b"), foo("x1", "node-x"), foo("y1", "node-y")];
    let mut c = cache(nodes, pods);
    let p = spread_pod(json!([on("zone", 1)]));
    assert_eq!(spread_filter(&mut c, &p), verdicts(&[("node-a", OK), ("node-b", UNRESOLVABLE), ("node-x", UNSCHEDULABLE), ("node-y", UNSCHEDULABLE)]));
    // minDomains greater than the domains there are: the baseline is 0, not zone2's 1.
    let mut c = cache(four_nodes(), vec![foo("a1", "node-a"), foo("a2", "node-a"), foo("x1", "node-x")]);
    let mut with_min = on("zone", 2);
    with_min["minDomains"] = json!(3);
    assert_eq!(spread_filter(&mut c, &spread_pod(json!([with_min]))), verdicts(&[("node-a", UNSCHEDULABLE), ("node-b", UNSCHEDULABLE), ("node-x", OK), ("node-y", OK)]));
    assert!(spread_filter(&mut c, &spread_pod(json!([on("zone", 2)]))).iter().all(|(_, v)| *v == OK));
    // nodeAffinityPolicy Honor (default): nodes the pod cannot go to are not domains. The pod
    // only goes to zone1 nodes' zone… here it selects node-a and node-x by label.
    let nodes = vec![zoned("node-a", Some("zone1"), json!({"pool": "p"})), zoned("node-b", Some("zone1"), json!({})), zoned("node-x", Some("zone2"), json!({"pool": "p"})), zoned("node-y", Some("zone3"), json!({}))];
    let pods = vec![foo("a1", "node-a"), foo("x1", "node-x")];
    let mut c = cache(nodes, pods);
    let honor = info(pod(json!({"metadata": {"name": "p", "labels": {"foo": ""}}, "spec": {"nodeSelector": {"pool": "p"}, "topologySpreadConstraints": [on("zone", 1)]}})));
    // zone3 (empty) is not eligible: the baseline is 1 and every zone may take one more.
    assert!(spread_filter(&mut c, &honor).iter().all(|(_, v)| *v == OK));
    let mut ignore = on("zone", 1);
    ignore["nodeAffinityPolicy"] = json!("Ignore");
    let ignoring = info(pod(json!({"metadata": {"name": "p", "labels": {"foo": ""}}, "spec": {"nodeSelector": {"pool": "p"}, "topologySpreadConstraints": [ignore]}})));
    assert_eq!(spread_filter(&mut c, &ignoring), verdicts(&[("node-a", UNSCHEDULABLE), ("node-b", UNSCHEDULABLE), ("node-x", UNSCHEDULABLE), ("node-y", OK)]));
    // nodeTaintsPolicy Honor: a tainted node's domain is not counted.
    let nodes = vec![zoned("node-a", Some("zone1"), json!({})), node_tainted("node-x", "zone2")];
    let mut c = cache(nodes, vec![foo("a1", "node-a")]);
    assert_eq!(spread_filter(&mut c, &spread_pod(json!([on("zone", 1)]))), verdicts(&[("node-a", UNSCHEDULABLE), ("node-x", OK)]));
    let mut honor_taints = on("zone", 1);
    honor_taints["nodeTaintsPolicy"] = json!("Honor");
    assert_eq!(spread_filter(&mut c, &spread_pod(json!([honor_taints]))), verdicts(&[("node-a", OK), ("node-x", OK)]));
}

fn node_tainted(name: &str, zone: &str) -> k8s_openapi::api::core::v1::Node {
    node(name, json!({"metadata": {"labels": {"node": name, "zone": zone}}, "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}}))
}

#[test]
fn spread_filter_two_constraints_and_match_label_keys() {
    // "two Constraints on zone and node, spreads = [3/3, 2/1/0/3]": zone is balanced, so only
    // the node constraint decides — node-x.
    let pods = vec![foo("a1", "node-a"), foo("a2", "node-a"), foo("b1", "node-b"), foo("y1", "node-y"), foo("y2", "node-y"), foo("y3", "node-y")];
    let mut c = cache(four_nodes(), pods);
    let p = spread_pod(json!([on("zone", 1), on("node", 1)]));
    assert_eq!(spread_filter(&mut c, &p), verdicts(&[("node-a", UNSCHEDULABLE), ("node-b", UNSCHEDULABLE), ("node-x", OK), ("node-y", UNSCHEDULABLE)]));
    // matchLabelKeys: only pods of the same revision count.
    let rev = |name: &str, node: &str, r: &str| pod_on(name, node, json!({"foo": "", "rev": r}), json!({}));
    let mut c = cache(four_nodes(), vec![rev("a1", "node-a", "1"), rev("a2", "node-a", "1"), rev("b1", "node-b", "2")]);
    let mut keyed = on("node", 1);
    keyed["matchLabelKeys"] = json!(["rev"]);
    let p = info(pod(json!({"metadata": {"name": "p", "labels": {"foo": "", "rev": "2"}}, "spec": {"topologySpreadConstraints": [keyed]}})));
    assert_eq!(spread_filter(&mut c, &p), verdicts(&[("node-a", OK), ("node-b", UNSCHEDULABLE), ("node-x", OK), ("node-y", OK)]));
}

#[test]
fn spread_score_as_upstream() {
    // "one constraint on node, all 4 nodes are candidates": 2/1/0/3 → 20/60/100/0.
    let pods = vec![foo("a1", "node-a"), foo("a2", "node-a"), foo("b1", "node-b"), foo("d1", "node-y"), foo("d2", "node-y"), foo("d3", "node-y")];
    let mut c = cache(four_nodes(), pods);
    c.refresh_order();
    let mut soft = on("node", 1);
    soft["whenUnsatisfiable"] = json!("ScheduleAnyway");
    let p = spread_pod(json!([soft]));
    let order: Vec<usize> = ["node-a", "node-b", "node-x", "node-y"].iter().filter_map(|n| c.slot_of(n)).collect();
    assert_eq!(spread::score(&mut c, &p, &order), Some(vec![20, 60, 100, 0]));
    // A DoNotSchedule constraint scores nothing; nor does a pod without constraints or owner.
    assert_eq!(spread::score(&mut c, &spread_pod(json!([on("node", 1)])), &order), None);
    assert_eq!(spread::score(&mut c, &info(pod(json!({"metadata": {"labels": {"foo": ""}}}))), &order), None);
}

#[test]
fn default_spreading_follows_owners_and_services() {
    let nodes: Vec<_> = ["n1", "n2", "n3"].iter().map(|n| node(n, json!({}))).collect();
    let mut c = cache(nodes, vec![]);
    let owned = |name: &str| {
        pod(json!({"metadata": {"name": name, "labels": {"app": "web"}, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs", "controller": true}]}}))
    };
    // Without the ReplicaSet in the cache the selector is empty: no default constraints.
    assert_eq!(c.default_selector(&info(owned("x"))), Selector::everything());
    c.apply_owner(OwnerKind::ReplicaSet, "default", "web", Some(Selector::from_map(&[("app".to_string(), "web".to_string())].into())));
    assert!(c.default_selector(&info(owned("x"))).matches(&[("app".to_string(), "web".to_string())].into()));
    c.apply_service("default", "svc", Some([("app".to_string(), "web".to_string())].into()));
    assert!(!c.default_selector(&info(pod(json!({"metadata": {"labels": {"app": "web"}}})))).is_empty());
    // Six replicas one after the other land 2/2/2, each cycle seeing the ones before.
    let mut r = Rotation::default();
    for i in 0..6 {
        let p = Arc::new(owned(&format!("web-{i}")));
        c.apply_pod(p.clone());
        let pi = info((*p).clone());
        let slot = schedule(&mut c, &mut r, &pi).expect("schedulable");
        let name = c.node(slot).map(|n| n.name.clone()).unwrap_or_default();
        c.assume(&pi.uid, &name);
    }
    for n in ["n1", "n2", "n3"] {
        let slot = c.slot_of(n).expect("slot");
        assert_eq!(c.slots[slot].usage.pods, 2, "{n}");
    }
}

fn affinity_pod(name: &str, affinity: Value) -> PodInfo {
    info(pod(json!({"metadata": {"name": name, "labels": {"service": "securityscan"}}, "spec": {"affinity": affinity}})))
}

fn inter_filter(c: &mut Cache, p: &PodInfo) -> Vec<(String, Option<String>)> {
    c.refresh_order();
    let f = interpod::prefilter(c, p);
    let f = f.as_ref().map(|f| f.bind(c));
    let mut out: Vec<(String, Option<String>)> =
        c.order().iter().filter_map(|s| c.node(*s).map(|n| (n.name.clone(), f.as_ref().and_then(|f| f.check(*s)).map(|s| s.reasons().collect::<Vec<_>>().join(","))))).collect();
    out.sort();
    out
}

fn required(kind: &str, terms: Value) -> Value {
    json!({kind: {"requiredDuringSchedulingIgnoredDuringExecution": terms}})
}

fn term(key: &str, op: &str, values: &[&str], topology: &str) -> Value {
    json!({"labelSelector": {"matchExpressions": [{"key": key, "operator": op, "values": values}]}, "topologyKey": topology})
}

#[test]
fn inter_pod_affinity_filter_as_upstream() {
    let region = |name: &str, r: &str| node(name, json!({"metadata": {"labels": {"region": r, "zone": format!("{r}-z")}}}));
    let existing = pod_on("e", "machine1", json!({"service": "securityscan"}), json!({}));
    let mut c = cache(vec![region("machine1", "r1"), region("machine2", "r2")], vec![existing.clone()]);
    let ok = |name: &str| (name.to_string(), None::<String>);
    let no = |name: &str, why: &str| (name.to_string(), Some(why.to_string()));
    // No rules: anywhere.
    assert_eq!(inter_filter(&mut c, &info(pod(json!({})))), vec![ok("machine1"), ok("machine2")]);
    // "satisfies … PodAffinity using In operator that matches the existing pod"
    let p = affinity_pod("p", required("podAffinity", json!([term("service", "In", &["securityscan", "value2"], "region")])));
    assert_eq!(inter_filter(&mut c, &p), vec![ok("machine1"), no("machine2", interpod::ERR_AFFINITY)]);
    // NotIn the existing pod's value: nothing matches; the pod does not match itself either.
    let p = info(pod(json!({"metadata": {"labels": {"service": "securityscan"}}, "spec": {"affinity": required("podAffinity", json!([term("service", "NotIn", &["securityscan"], "region")]))}})));
    assert_eq!(inter_filter(&mut c, &p), vec![no("machine1", interpod::ERR_AFFINITY), no("machine2", interpod::ERR_AFFINITY)]);
    // "Does not satisfy the PodAffinity with labelSelector because of diff Namespace"
    let mut t = term("service", "In", &["securityscan"], "region");
    t["namespaces"] = json!(["other"]);
    let p = affinity_pod("p", required("podAffinity", json!([t])));
    assert_eq!(inter_filter(&mut c, &p), vec![no("machine1", interpod::ERR_AFFINITY), no("machine2", interpod::ERR_AFFINITY)]);
    // The same through a namespace selector matching `default`'s labels.
    let mut t = term("service", "In", &["securityscan"], "region");
    t["namespaceSelector"] = json!({"matchLabels": {"kubernetes.io/metadata.name": "default"}});
    let p = affinity_pod("p", required("podAffinity", json!([t])));
    assert_eq!(inter_filter(&mut c, &p), vec![ok("machine1"), no("machine2", interpod::ERR_AFFINITY)]);
    // "satisfies the PodAffinity but doesn't satisfy the PodAntiAffinity with the existing pod"
    let mut rules = required("podAffinity", json!([term("service", "In", &["securityscan"], "region")]));
    crate::testutil::merge(&mut rules, required("podAntiAffinity", json!([term("service", "In", &["securityscan"], "zone")])));
    let p = affinity_pod("p", rules);
    assert_eq!(inter_filter(&mut c, &p), vec![no("machine1", interpod::ERR_ANTI_AFFINITY), no("machine2", interpod::ERR_AFFINITY)]);
    // "… doesn't satisfy PodAntiAffinity symmetry with the existing pod": the existing pod
    // wants no `service=securityscan` pod in its zone.
    let hostile = pod_on("h", "machine1", json!({"app": "h"}), json!({"spec": {"affinity": required("podAntiAffinity", json!([term("service", "In", &["securityscan"], "zone")]))}}));
    let mut c = cache(vec![region("machine1", "r1"), region("machine2", "r2")], vec![hostile]);
    assert_eq!(inter_filter(&mut c, &info(pod(json!({"metadata": {"labels": {"service": "securityscan"}}})))), vec![no("machine1", interpod::ERR_EXISTING_ANTI_AFFINITY), ok("machine2")]);
    // A node without the term's key is not constrained by it.
    let mut c = cache(vec![region("machine1", "r1"), node("bare", json!({}))], vec![existing]);
    let p = affinity_pod("p", required("podAntiAffinity", json!([term("service", "In", &["securityscan"], "region")])));
    assert_eq!(inter_filter(&mut c, &p), vec![ok("bare"), no("machine1", interpod::ERR_ANTI_AFFINITY)]);
    // …but affinity needs the key: "All topology labels must exist on the node".
    let p = affinity_pod("p", required("podAffinity", json!([term("service", "In", &["securityscan"], "region")])));
    assert_eq!(inter_filter(&mut c, &p), vec![no("bare", interpod::ERR_AFFINITY), ok("machine1")]);
    // The first pod of a group with affinity to itself may go where the key exists.
    let mut c = cache(vec![region("machine1", "r1"), node("bare", json!({}))], vec![]);
    assert_eq!(inter_filter(&mut c, &p), vec![no("bare", interpod::ERR_AFFINITY), ok("machine1")]);
}

#[test]
fn inter_pod_affinity_score_as_upstream() {
    // "Affinity: pod that matches topology key & pods in nodes will get high score comparing
    // to others" — and anti-affinity the other way round.
    let nodes = vec![node("machine1", json!({"metadata": {"labels": {"region": "China"}}})), node("machine2", json!({"metadata": {"labels": {"region": "India"}}})), node("machine3", json!({"metadata": {"labels": {"az": "az1"}}}))];
    let existing = pod_on("e", "machine1", json!({"security": "S1"}), json!({}));
    let mut c = cache(nodes, vec![existing]);
    c.refresh_order();
    let slots: Vec<usize> = ["machine1", "machine2", "machine3"].iter().filter_map(|n| c.slot_of(n)).collect();
    let preferred = |kind: &str| {
        info(pod(json!({"spec": {"affinity": {kind: {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "podAffinityTerm": term("security", "In", &["S1"], "region")}]}}}})))
    };
    assert_eq!(interpod::score(&mut c, &preferred("podAffinity"), &slots), Some(vec![100, 0, 0]));
    assert_eq!(interpod::score(&mut c, &preferred("podAntiAffinity"), &slots), Some(vec![0, 100, 100]));
    // Symmetry: an existing pod's preferred affinity for the incoming pod draws it.
    let drawn = pod_on("d", "machine2", json!({}), json!({"spec": {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "podAffinityTerm": term("security", "In", &["S2"], "region")}]}}}}));
    c.apply_pod(Arc::new(drawn));
    let s2 = info(pod(json!({"metadata": {"labels": {"security": "S2"}}})));
    assert_eq!(interpod::score(&mut c, &s2, &slots), Some(vec![0, 100, 0]));
    // Nothing relates the pods: no score.
    assert_eq!(interpod::score(&mut c, &info(pod(json!({}))), &slots), None);
}

#[test]
fn fit_error_messages_as_upstream() {
    let nodes: Vec<_> = ["n1", "n2", "n3"].iter().map(|n| node(n, json!({}))).collect();
    let anti = |name: &str, on_node: &str| {
        pod_on(name, on_node, json!({"app": "solo"}), json!({"spec": {"affinity": required("podAntiAffinity", json!([{"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "kubernetes.io/hostname"}]))}}))
    };
    let mut c = cache(nodes, vec![anti("s1", "n1"), anti("s2", "n2"), anti("s3", "n3")]);
    let mut r = Rotation::default();
    let fourth = info(anti("s4", ""));
    assert_eq!(
        schedule(&mut c, &mut r, &fourth),
        Err("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..".to_string())
    );
    let never = info(pod(json!({"metadata": {"name": "never"}, "spec": {"preemptionPolicy": "Never", "nodeSelector": {"x": "y"}}})));
    assert_eq!(schedule(&mut c, &mut r, &never), Err("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: not eligible due to preemptionPolicy=Never..".to_string()));
    // Mixed reasons, sorted as strings, and preemption helping nowhere.
    c.apply_node(Arc::new(node("n2", json!({"spec": {"unschedulable": true}}))));
    c.apply_node(Arc::new(node("n3", json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}))));
    assert_eq!(
        schedule(&mut c, &mut r, &fourth),
        Err("0/3 nodes are available: 1 node(s) didn't match pod anti-affinity rules, 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling..".to_string())
    );
    // A DaemonSet-style pod pinned to one node by name: the others did not pass PreFilter.
    let pinned = info(pod(json!({"metadata": {"name": "ds"}, "spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}})));
    assert_eq!(
        schedule(&mut c, &mut r, &pinned),
        Err("0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling..".to_string())
    );
    assert_eq!(schedule(&mut Cache::default(), &mut r, &pinned), Err("no nodes available to schedule pods".to_string()));
}

#[test]
fn percentage_of_nodes_to_score() {
    assert_eq!(crate::schedule::nodes_to_find(3), 3);
    assert_eq!(crate::schedule::nodes_to_find(99), 99);
    assert_eq!(crate::schedule::nodes_to_find(100), 100);
    // 50 − 1000/125 = 42%.
    assert_eq!(crate::schedule::nodes_to_find(1000), 420);
    // 5000 nodes: 10%.
    assert_eq!(crate::schedule::nodes_to_find(5000), 500);
    // Never under 5%, never under 100 nodes.
    assert_eq!(crate::schedule::nodes_to_find(20000), 1000);
    assert_eq!(crate::schedule::nodes_to_find(150), 100);
}


/// Entry `id`'s counts per domain of `key`, by the domains' values.
fn by_value(c: &mut Cache, id: usize, key: &str) -> std::collections::BTreeMap<String, i64> {
    let counts = c.domains(id, key).counts.clone();
    let values = c.key_domains(key).values.clone();
    values.into_iter().zip(counts).collect()
}

/// Counts kept up to date pod by pod and node by node equal counts made afresh.
#[test]
fn incremental_counts_match_a_recount() {
    let mut c = cache(four_nodes(), vec![]);
    let key = MatchKey { terms: vec![PodMatch::in_namespace("default", Selector::from_map(&[("foo".to_string(), String::new())].into()))], skip_terminating: true };
    let id = c.entry(&key);
    c.domains(id, "zone");
    let mut seed: u64 = 7;
    let mut rnd = |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let names = ["node-a", "node-b", "node-x", "node-y", "node-new"];
    let (mut nonzero, mut blocked) = (0, 0);
    for step in 0..400 {
        match rnd(6) {
            0..=2 => {
                let labels = if rnd(3) == 0 { json!({"bar": ""}) } else { json!({"foo": ""}) };
                let on = if rnd(4) == 0 { "" } else { names[rnd(5) as usize] };
                // Some carry an anti-affinity to `bar` pods in their zone.
                let extra = if rnd(3) == 0 { json!({"spec": {"affinity": required("podAntiAffinity", json!([term("bar", "Exists", &[], "zone")]))}}) } else { json!({}) };
                c.apply_pod(Arc::new(pod_on(&format!("p{}", rnd(30)), on, labels, extra)));
            }
            3 => c.delete_pod(&format!("p{}", rnd(30))),
            4 => c.apply_node(Arc::new(zoned(names[rnd(5) as usize], Some(["zone1", "zone2", "zone3"][rnd(3) as usize]), json!({})))),
            _ => c.delete_node(names[rnd(5) as usize]),
        }
        let incremental = by_value(&mut c, id, "zone");
        let per_node: Vec<u32> = (0..c.slots.len()).map(|s| c.index.get(id).at(s)).collect();
        let mut fresh = cache(vec![], vec![]);
        let fid = {
            // Same nodes and pods, counted from scratch.
            for s in &c.slots {
                if let Some(n) = &s.node {
                    fresh.apply_node(n.node.clone());
                }
            }
            for p in (0..30).filter_map(|i| c.pod(&format!("p{i}"))) {
                fresh.apply_pod(p.pod.clone());
            }
            fresh.entry(&key)
        };
        let expected = by_value(&mut fresh, fid, "zone");
        assert_eq!(incremental, expected, "step {step}");
        nonzero += usize::from(expected.values().any(|v| *v > 0));
        let bar = info(pod_on("incoming", "", json!({"bar": ""}), json!({})));
        let verdicts = inter_filter(&mut c, &bar);
        blocked += verdicts.iter().filter(|(_, v)| v.is_some()).count();
        assert_eq!(verdicts, inter_filter(&mut fresh, &bar), "step {step}");
        for n in names {
            let (a, b) = (c.slot_of(n).map_or(0, |s| per_node[s]), fresh.slot_of(n).map_or(0, |s| fresh.index.get(fid).at(s)));
            if c.node(c.slot_of(n).unwrap_or(usize::MAX)).is_some() {
                assert_eq!(a, b, "step {step} node {n}");
            }
        }
    }
    // The walk went through interesting states.
    assert!(nonzero > 100 && blocked > 100, "{nonzero} {blocked}");
}
