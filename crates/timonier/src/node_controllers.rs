//! `timonier server`'s flags for the node lifecycle, taint eviction and pod GC controllers:
//! kube-controller-manager's flags of the same names, durations written as Go writes them
//! (`40s`, `1m0s`, `500ms`).

use std::time::Duration;

use timonier_controllers::node_lifecycle::Config;

#[derive(clap::Args, Clone, Debug)]
pub struct NodeLifecycleArgs {
    /// How often the node controller checks the nodes' health.
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    node_monitor_period: Duration,
    /// How long a node may go without renewing its Lease before it is marked Unknown and
    /// tainted unreachable (must exceed the agents' 10 s renewal).
    #[arg(long, default_value = "40s", value_parser = go_duration)]
    node_monitor_grace_period: Duration,
    /// The same for a node that has never posted its status.
    #[arg(long, default_value = "1m0s", value_parser = go_duration)]
    node_startup_grace_period: Duration,
    /// Nodes per second (and zone) that get the NoExecute taint which evicts their pods.
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    /// The same in a large zone with many nodes down.
    #[arg(long, default_value_t = 0.01)]
    secondary_node_eviction_rate: f64,
    /// Zones bigger than this keep evicting (slowly) when many of their nodes are down.
    #[arg(long, default_value_t = 50)]
    large_cluster_size_threshold: usize,
    /// The share of nodes down (at least 3) from which a zone counts as partly disrupted.
    #[arg(long, default_value_t = 0.55)]
    unhealthy_zone_threshold: f64,
    /// Terminated pods kept before the oldest are deleted (0: never deleted).
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: usize,
}

impl NodeLifecycleArgs {
    pub fn config(&self) -> Config {
        Config {
            monitor_period: self.node_monitor_period,
            grace_period: self.node_monitor_grace_period,
            startup_grace_period: self.node_startup_grace_period,
            eviction_rate: self.node_eviction_rate,
            secondary_eviction_rate: self.secondary_node_eviction_rate,
            large_cluster_threshold: self.large_cluster_size_threshold,
            unhealthy_zone_threshold: self.unhealthy_zone_threshold,
            terminated_pod_gc_threshold: self.terminated_pod_gc_threshold,
        }
    }
}

/// A Go `time.Duration` string: numbers with units (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`),
/// decimals allowed, concatenated (`1h30m`, `1.5s`).
pub fn go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (e.g. 40s, 1m0s, 500ms)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = &rest[u..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(go_duration("1m0s"), Ok(Duration::from_secs(60)));
        assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(go_duration("0"), Ok(Duration::ZERO));
        assert!(go_duration("40").is_err());
        assert!(go_duration("s").is_err());
        assert!(go_duration("").is_err());
    }
}
