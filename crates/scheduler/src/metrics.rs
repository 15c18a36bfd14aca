//! kube-scheduler's metrics (1.33 names, labels and buckets), in the process-wide registry that
//! every `/metrics` of this process serves.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};
use timonier_metrics::{counter, gauge, histogram};

/// The one scheduling profile, as kube-scheduler's default.
const PROFILE: &str = "default-scheduler";

struct Metrics {
    attempts: IntCounterVec,
    attempt_duration: HistogramVec,
    pending: IntGaugeVec,
    sli_duration: HistogramVec,
}

/// `ExponentialBuckets(start, factor, count)`.
fn exponential(start: f64, factor: f64, count: usize) -> Vec<f64> {
    std::iter::successors(Some(start), |b| Some(b * factor)).take(count).collect()
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    attempts: counter(
        "scheduler_schedule_attempts_total",
        "STABLE",
        "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
        &["result", "profile"],
    ),
    attempt_duration: histogram(
        "scheduler_scheduling_attempt_duration_seconds",
        "STABLE",
        "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
        &exponential(0.001, 2.0, 15),
        &["result", "profile"],
    ),
    pending: gauge(
        "scheduler_pending_pods",
        "STABLE",
        "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated.",
        &["queue"],
    ),
    sli_duration: histogram(
        "scheduler_pod_scheduling_sli_duration_seconds",
        "BETA",
        "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.",
        &exponential(0.01, 2.0, 20),
        &["attempts"],
    ),
});

/// One scheduling attempt: `result` is `scheduled`, `unschedulable` or `error`.
pub fn attempt(result: &str, took: Duration) {
    METRICS.attempts.with_label_values(&[result, PROFILE]).inc();
    METRICS.attempt_duration.with_label_values(&[result, PROFILE]).observe(took.as_secs_f64());
}

/// A binding the API server refused: upstream's `error` result.
pub fn binding_failed() {
    METRICS.attempts.with_label_values(&["error", PROFILE]).inc();
}

/// A pod bound after `attempts` attempts, `since` its creation.
pub fn scheduled(attempts: u32, since: Duration) {
    METRICS.sli_duration.with_label_values(&[&attempts.to_string()]).observe(since.as_secs_f64());
}

/// The queue sizes after a pass.
pub fn pending(active: usize, backoff: usize, gated: usize) {
    for (queue, n) in [("active", active), ("backoff", backoff), ("unschedulable", 0), ("gated", gated)] {
        METRICS.pending.with_label_values(&[queue]).set(n as i64);
    }
}
