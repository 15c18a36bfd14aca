//! The agent's metrics on its HTTPS port (10250), as the kubelet serves them: `/metrics` (the
//! process-wide registry), `/metrics/resource` (CPU and working set of the node, each pod and
//! each container: what metrics-server scrapes) and `/metrics/cadvisor` (the per-container
//! figures Prometheus' kubernetes-cadvisor job scrapes). Usage comes from the pods' cgroups
//! (`<cgroup root>/pod<uid>/<container>`), read at scrape time.

use std::fmt::Write;

use timonier_runtime::shim::usage::{cgroup_usage, cgroup_start_time, Usage};

use crate::runtime::NodeRuntime;

/// One running container, located.
struct Sample {
    namespace: String,
    pod: String,
    container: String,
    id: String,
    image: String,
    cgroup: String,
    usage: Usage,
}

/// A pod running on this node, with its pod-level usage and its running containers.
struct PodSample {
    namespace: String,
    pod: String,
    cgroup: String,
    usage: Usage,
    containers: Vec<Sample>,
}

/// The pods running on this node, from their log directories (`<ns>_<pod>_<uid>`).
fn pods(node: &NodeRuntime) -> Vec<PodSample> {
    let Ok(dirs) = std::fs::read_dir(node.logs_dir()) else { return vec![] };
    let mut out = Vec::new();
    for entry in dirs.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.splitn(3, '_');
        let (Some(ns), Some(pod), Some(uid)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let cgroup = format!("{}/pod{uid}", node.config.cgroup_root);
        let Some(usage) = cgroup_usage(&cgroup) else { continue };
        let containers = crate::pods::running_containers(&node.pods_dir().join(uid))
            .into_iter()
            .filter_map(|c| {
                let cgroup = format!("{cgroup}/{}", c.name);
                let usage = cgroup_usage(&cgroup)?;
                Some(Sample { namespace: ns.into(), pod: pod.into(), container: c.name, id: c.id, image: c.image, cgroup, usage })
            })
            .collect();
        out.push(PodSample { namespace: ns.to_string(), pod: pod.to_string(), cgroup, usage, containers });
    }
    out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    out
}

/// A label value in the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// `/metrics/resource`, as the kubelet's resource metrics collector writes it: CPU and memory
/// samples carry the time they were read (in ms), start times and the error gauge do not.
pub fn resource(node: &NodeRuntime) -> String {
    let pods = pods(node);
    let root = cgroup_usage("/");
    let ts = now_ms();
    let mut out = String::new();
    let containers: Vec<&Sample> = pods.iter().flat_map(|p| p.containers.iter()).collect();
    let labels = |s: &Sample| format!("container=\"{}\",namespace=\"{}\",pod=\"{}\"", esc(&s.container), esc(&s.namespace), esc(&s.pod));
    family(&mut out, "container_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the container in core-seconds");
    for s in &containers {
        if let Some(cpu) = s.usage.cpu_seconds {
            let _ = writeln!(out, "container_cpu_usage_seconds_total{{{}}} {cpu} {ts}", labels(s));
        }
    }
    family(&mut out, "container_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the container in bytes");
    for s in &containers {
        if let Some(ws) = s.usage.working_set_bytes {
            let _ = writeln!(out, "container_memory_working_set_bytes{{{}}} {ws} {ts}", labels(s));
        }
    }
    family(&mut out, "container_start_time_seconds", "gauge", "[STABLE] Start time of the container since unix epoch in seconds");
    for s in &containers {
        if let Some(t) = cgroup_start_time(&s.cgroup) {
            let _ = writeln!(out, "container_start_time_seconds{{{}}} {t}", labels(s));
        }
    }
    family(&mut out, "node_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the node in core-seconds");
    if let Some(cpu) = root.and_then(|r| r.cpu_seconds) {
        let _ = writeln!(out, "node_cpu_usage_seconds_total {cpu} {ts}");
    }
    family(&mut out, "node_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the node in bytes");
    if let Some(ws) = root.and_then(|r| r.working_set_bytes) {
        let _ = writeln!(out, "node_memory_working_set_bytes {ws} {ts}");
    }
    let pod_labels = |ns: &str, pod: &str| format!("namespace=\"{}\",pod=\"{}\"", esc(ns), esc(pod));
    family(&mut out, "pod_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds");
    for p in &pods {
        if let Some(cpu) = p.usage.cpu_seconds {
            let _ = writeln!(out, "pod_cpu_usage_seconds_total{{{}}} {cpu} {ts}", pod_labels(&p.namespace, &p.pod));
        }
    }
    family(&mut out, "pod_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the pod in bytes");
    for p in &pods {
        if let Some(ws) = p.usage.working_set_bytes {
            let _ = writeln!(out, "pod_memory_working_set_bytes{{{}}} {ws} {ts}", pod_labels(&p.namespace, &p.pod));
        }
    }
    family(&mut out, "resource_scrape_error", "gauge", "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise");
    let _ = writeln!(out, "resource_scrape_error {}", u8::from(root.is_none()));
    out
}

/// `/metrics/cadvisor`: cAdvisor's container figures, labelled as the kubelet's embedded
/// cAdvisor labels them (`id` the cgroup, `name` the runtime's container id), with a pod-level
/// series (`container=""`) per pod as cAdvisor reports for the pod's cgroup.
pub fn cadvisor(node: &NodeRuntime) -> String {
    let pods = pods(node);
    let ts = now_ms();
    let mut rows: Vec<(String, Usage)> = Vec::new();
    for p in &pods {
        rows.push((format!("container=\"\",id=\"{}\",image=\"\",name=\"\",namespace=\"{}\",pod=\"{}\"", esc(&p.cgroup), esc(&p.namespace), esc(&p.pod)), p.usage));
        for s in &p.containers {
            let labels = format!(
                "container=\"{}\",id=\"{}\",image=\"{}\",name=\"{}\",namespace=\"{}\",pod=\"{}\"",
                esc(&s.container),
                esc(&s.cgroup),
                esc(&s.image),
                esc(&s.id),
                esc(&s.namespace),
                esc(&s.pod)
            );
            rows.push((labels, s.usage));
        }
    }
    let mut out = String::new();
    family(&mut out, "container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed in seconds.");
    for (labels, u) in &rows {
        if let Some(cpu) = u.cpu_seconds {
            // cAdvisor's per-CPU label: the total over every CPU.
            let labels = labels.replacen("id=", "cpu=\"total\",id=", 1);
            let _ = writeln!(out, "container_cpu_usage_seconds_total{{{labels}}} {cpu} {ts}");
        }
    }
    let gauges: [(&str, &str, fn(&Usage) -> Option<u64>); 3] = [
        ("container_memory_rss", "Size of RSS in bytes.", |u| u.rss_bytes),
        ("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", |u| u.memory_bytes),
        ("container_memory_working_set_bytes", "Current working set in bytes.", |u| u.working_set_bytes),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        for (labels, u) in &rows {
            if let Some(v) = value(u) {
                let _ = writeln!(out, "{name}{{{labels}}} {v} {ts}");
            }
        }
    }
    family(&mut out, "machine_cpu_cores", "gauge", "Number of logical CPU cores.");
    let _ = writeln!(out, "machine_cpu_cores {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    out
}
