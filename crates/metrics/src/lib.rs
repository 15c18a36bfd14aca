//! One Prometheus registry per process (prometheus' default, as Go components'
//! `legacyregistry`): the API server, scheduler, controllers and node agent of this process
//! register their metrics in it, and each `/metrics` endpoint serves all of them, as k3s'
//! single process does. Names, help texts and buckets follow upstream's so that the dashboards
//! written for Kubernetes read ours.

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

/// What `/metrics` answers with: Prometheus' text format 0.0.4, as client_golang negotiates it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores";

/// Registers `c` in the process's registry; a second registration of the same name (several
/// servers in one test process) keeps the first.
pub fn register<C: Collector + Clone + 'static>(c: C) -> C {
    let _ = prometheus::register(Box::new(c.clone()));
    c
}

/// The options of a metric: upstream prints the stability level before the help text.
pub fn opts(name: &str, stability: &str, help: &str) -> Opts {
    Opts::new(name, format!("[{stability}] {help}"))
}

/// A registered histogram vector.
pub fn histogram(name: &str, stability: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    let o = HistogramOpts::from(opts(name, stability, help)).buckets(buckets.to_vec());
    register(HistogramVec::new(o, labels).expect("valid histogram"))
}

/// A registered counter vector.
pub fn counter(name: &str, stability: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(opts(name, stability, help), labels).expect("valid counter"))
}

/// A registered gauge vector.
pub fn gauge(name: &str, stability: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(opts(name, stability, help), labels).expect("valid gauge"))
}

/// A gauge raised while the guard lives (requests in flight, open watches).
pub struct Raised(prometheus::IntGauge);

impl Raised {
    pub fn new(g: prometheus::IntGauge) -> Raised {
        g.inc();
        Raised(g)
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The body of `/metrics`: every registered metric, the process' own figures, and `extra`
/// (gauges computed at scrape time), sorted by name as client_golang sorts them.
pub fn render(extra: Vec<MetricFamily>) -> Vec<u8> {
    let mut families = prometheus::gather();
    families.extend(extra);
    families.extend(process_metrics());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut out) {
        tracing::warn!(error = %e, "cannot encode the metrics");
    }
    out
}

/// Go's process collector's figures, read from /proc: what `process_resident_memory_bytes`
/// dashboards plot for every component.
fn process_metrics() -> Vec<MetricFamily> {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf only reads configuration values.
    let (hz, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK) as f64, libc::sysconf(libc::_SC_PAGESIZE) as f64) };
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<f64>().ok()))
        .unwrap_or(0.0);
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    let max_fds = {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 { r.rlim_cur as f64 } else { 0.0 }
    };
    let values = [
        ("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", (field(11) + field(12)) / hz, true),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", field(21) * page, false),
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", field(20), false),
        ("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", boot + field(19) / hz, false),
        ("process_open_fds", "Number of open file descriptors.", fds as f64, false),
        ("process_max_fds", "Maximum number of open file descriptors.", max_fds, false),
    ];
    let mut out = Vec::new();
    for (name, help, value, is_counter) in values {
        if is_counter {
            let c = prometheus::Counter::new(name, help).expect("valid counter");
            c.inc_by(value);
            out.extend(c.collect());
        } else {
            let g = prometheus::Gauge::new(name, help).expect("valid gauge");
            g.set(value);
            out.extend(g.collect());
        }
    }
    out
}

