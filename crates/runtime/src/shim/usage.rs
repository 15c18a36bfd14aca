//! What a cgroup has used, read as cAdvisor reads it for the kubelet's `/metrics/resource` and
//! `/metrics/cadvisor` (and, later, the resource metrics API): CPU time, memory in use and its
//! working set (in use minus the inactive page cache the kernel can reclaim at once).

use super::util::{cgroup_hierarchies, join_cgroup, proc_start_time};

/// One cgroup's usage; `None` fields could not be read (a controller not mounted).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU time of every task in the cgroup, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Memory charged to the cgroup, page cache included (bytes).
    pub memory_bytes: Option<u64>,
    /// `memory_bytes` less the inactive file cache: what the OOM killer and evictions watch.
    pub working_set_bytes: Option<u64>,
    /// Anonymous memory and swap cache (bytes).
    pub rss_bytes: Option<u64>,
}

fn stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

fn read(path: std::path::PathBuf) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The usage of cgroup `rel` (`/timonier/pod<uid>/<container>`; "/" for the whole machine) in
/// whichever hierarchies (v1 or v2) are mounted. `None` when the cgroup does not exist.
pub fn cgroup_usage(rel: &str) -> Option<Usage> {
    let mut u = Usage::default();
    let mut found = false;
    for h in cgroup_hierarchies() {
        let dir = join_cgroup(&h.mount, rel);
        if !dir.is_dir() {
            continue;
        }
        if h.v2 {
            found = true;
            if let Some(usec) = read(dir.join("cpu.stat")).and_then(|t| stat_field(&t, "usage_usec")) {
                u.cpu_seconds.get_or_insert(usec as f64 / 1e6);
            }
            // The root cgroup has no memory.current: the machine's memory is /proc/meminfo's.
            let current = read(dir.join("memory.current")).and_then(|t| t.trim().parse::<u64>().ok());
            if let (Some(current), Some(stat)) = (current, read(dir.join("memory.stat"))) {
                let inactive = stat_field(&stat, "inactive_file").unwrap_or(0);
                u.memory_bytes.get_or_insert(current);
                u.working_set_bytes.get_or_insert(current.saturating_sub(inactive));
                u.rss_bytes.get_or_insert(stat_field(&stat, "anon").unwrap_or(0));
            }
        } else if h.controllers.iter().any(|c| c == "cpuacct") {
            found = true;
            if let Some(ns) = read(dir.join("cpuacct.usage")).and_then(|t| t.trim().parse::<u64>().ok()) {
                u.cpu_seconds = Some(ns as f64 / 1e9);
            }
        } else if h.controllers.iter().any(|c| c == "memory") {
            found = true;
            let usage = read(dir.join("memory.usage_in_bytes")).and_then(|t| t.trim().parse::<u64>().ok());
            if let (Some(usage), Some(stat)) = (usage, read(dir.join("memory.stat"))) {
                let inactive = stat_field(&stat, "total_inactive_file").unwrap_or(0);
                u.memory_bytes = Some(usage);
                u.working_set_bytes = Some(usage.saturating_sub(inactive));
                u.rss_bytes = Some(stat_field(&stat, "total_rss").unwrap_or(0));
            }
        }
    }
    if rel.trim_matches('/').is_empty() && u.memory_bytes.is_none() {
        // cgroup v2's root: the machine's figures.
        let meminfo = read("/proc/meminfo".into()).unwrap_or_default();
        let kb = |k: &str| meminfo.lines().find_map(|l| l.strip_prefix(k)?.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).map(|v| v * 1024);
        if let (Some(total), Some(free)) = (kb("MemTotal:"), kb("MemFree:")) {
            let used = total.saturating_sub(free);
            u.memory_bytes = Some(used);
            u.working_set_bytes = Some(used.saturating_sub(kb("Inactive(file):").unwrap_or(0)));
            u.rss_bytes = kb("AnonPages:");
        }
    }
    found.then_some(u)
}

/// When the oldest process in cgroup `rel` started, in seconds since the epoch: the
/// container's start time, as cAdvisor reports it.
pub fn cgroup_start_time(rel: &str) -> Option<f64> {
    let pid = cgroup_hierarchies()
        .into_iter()
        .filter_map(|h| read(join_cgroup(&h.mount, rel).join("cgroup.procs")))
        .find_map(|t| t.lines().filter_map(|l| l.trim().parse::<i32>().ok()).min())?;
    let ticks = proc_start_time(pid)? as f64;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let boot: f64 = read("/proc/stat".into())?.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    Some(boot + ticks / if hz > 0.0 { hz } else { 100.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_and_this_process_have_usage() {
        let root = cgroup_usage("/").expect("the root cgroup");
        assert!(root.cpu_seconds.is_some_and(|c| c > 0.0), "{root:?}");
        assert!(root.working_set_bytes.is_some_and(|w| w > 0), "{root:?}");
        assert_eq!(stat_field("cache 1\ntotal_inactive_file 4096\n", "total_inactive_file"), Some(4096));
        assert_eq!(stat_field("inactive_file_x 1\ninactive_file 7\n", "inactive_file"), Some(7));
        assert!(cgroup_usage("/timonier-no-such-cgroup").is_none());
    }
}
