//! Scheduler benchmark: the scheduling algorithm alone (no API server), as kube-scheduler's
//! `scheduler_perf` measures its own — pods scheduled per second onto a large cluster of fake
//! nodes, each pod entering the cache as its watch event would, then scheduled and assumed on
//! its node so that the next cycle sees it.
//!
//! `cargo run --release -p timonier-bench --bin scheduler -- [--nodes 5000] [--pods 5000]`
//!
//! Workloads, each on a fresh cluster of `--nodes` nodes in 10 zones (32 CPUs, 128 GiB, 110
//! pods each):
//! - `plain`: pods with requests and no owner (no spreading; the old scheduler's case);
//! - `deployment`: replicas of one ReplicaSet behind a Service (default topology spreading);
//! - `spread`: topologySpreadConstraints, DoNotSchedule on zones and ScheduleAnyway on hosts;
//! - `anti-affinity`: Deployments of 100 replicas, each replica refusing another of its
//!   Deployment on its node (required anti-affinity);
//! - `affinity`: replicas preferring nodes that run a cache pod (preferred affinity), with
//!   1,000 cache pods already running.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
use timonier_bench::{cpu_model, loadavg};
use timonier_scheduler::{schedule, Cache, OwnerKind, Rotation, Selector};

#[derive(Parser, Debug)]
#[command(about = "Scheduler benchmark: pods/s of the scheduling algorithm on fake nodes")]
struct Args {
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    #[arg(long, default_value_t = 5000)]
    pods: usize,
    /// Only these workloads (comma-separated).
    #[arg(long)]
    only: Option<String>,
}

fn node(i: usize) -> Arc<Node> {
    let name = format!("node-{i}");
    let v = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("zone-{}", i % 10)}},
        "spec": {},
        "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"}, "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]},
    });
    Arc::new(serde_json::from_value(v).expect("node"))
}

fn pod(name: &str, labels: Value, spec_extra: Value, owner: Option<&str>) -> Arc<Pod> {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "c", "image": "registry.local/app:1", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    });
    if let Some(o) = owner {
        v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": o, "uid": o, "controller": true}]);
    }
    if let (Value::Object(spec), Value::Object(extra)) = (&mut v["spec"], spec_extra) {
        spec.extend(extra);
    }
    Arc::new(serde_json::from_value(v).expect("pod"))
}

fn cluster(nodes: usize) -> Cache {
    let mut c = Cache::default();
    c.apply_namespace("default".into(), [("kubernetes.io/metadata.name".to_string(), "default".to_string())].into());
    for i in 0..nodes {
        c.apply_node(node(i));
    }
    c
}

/// Schedules `pods` one after the other; returns (pods/s, unschedulable count).
fn run(c: &mut Cache, pods: impl Iterator<Item = Arc<Pod>>) -> (f64, usize, usize) {
    let mut rotation = Rotation::default();
    let (mut n, mut failed) = (0, 0);
    let start = Instant::now();
    for p in pods {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        c.apply_pod(p);
        let Some(info) = c.pod(&uid).cloned() else { continue };
        match schedule(c, &mut rotation, &info) {
            Ok(slot) => {
                let name = c.node(slot).map(|n| n.name.clone()).unwrap_or_default();
                c.assume(&info.uid, &name);
            }
            Err(_) => failed += 1,
        }
        n += 1;
    }
    (n as f64 / start.elapsed().as_secs_f64(), n, failed)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let wanted = |w: &str| args.only.as_deref().is_none_or(|o| o.split(',').any(|x| x == w));
    println!("- date: {}", jiff::Timestamp::now());
    println!("- machine: {}, load average before: {}", cpu_model(), loadavg());
    println!("- {} nodes (10 zones), {} pods per workload, one pod at a time\n", args.nodes, args.pods);
    println!("| workload | pods | unschedulable | pods/s | µs/pod |");
    println!("|---|---:|---:|---:|---:|");
    let report = |name: &str, (rate, n, failed): (f64, usize, usize)| println!("| {name} | {n} | {failed} | {rate:.0} | {:.1} |", 1e6 / rate);
    let app = |a: &str| json!({"app": a});
    if wanted("plain") {
        let mut c = cluster(args.nodes);
        report("plain", run(&mut c, (0..args.pods).map(|i| pod(&format!("plain-{i}"), app("plain"), json!({}), None))));
    }
    if wanted("deployment") {
        let mut c = cluster(args.nodes);
        let web: std::collections::BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        c.apply_owner(OwnerKind::ReplicaSet, "default", "web", Some(Selector::from_map(&web)));
        c.apply_service("default", "web", Some(web));
        report("deployment", run(&mut c, (0..args.pods).map(|i| pod(&format!("web-{i}"), app("web"), json!({}), Some("web")))));
    }
    if wanted("spread") {
        let mut c = cluster(args.nodes);
        let spec = json!({"topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "spread"}}},
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "spread"}}}]});
        report("spread", run(&mut c, (0..args.pods).map(|i| pod(&format!("spread-{i}"), app("spread"), spec.clone(), None))));
    }
    if wanted("anti-affinity") {
        let mut c = cluster(args.nodes);
        let pods = (0..args.pods).map(|i| {
            let group = format!("solo-{}", i / 100);
            let spec = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": group}}, "topologyKey": "kubernetes.io/hostname"}]}}});
            pod(&format!("{group}-{i}"), app(&group), spec, None)
        });
        report("anti-affinity", run(&mut c, pods));
    }
    if wanted("affinity") {
        let mut c = cluster(args.nodes);
        run(&mut c, (0..1000).map(|i| pod(&format!("cache-{i}"), app("cache"), json!({}), None)));
        let spec = json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}}]}}});
        report("affinity", run(&mut c, (0..args.pods).map(|i| pod(&format!("near-{i}"), app("near"), spec.clone(), None))));
    }
    println!("\n- load average after: {}", loadavg());
    Ok(())
}
