//! Store benchmark: the SQLite backend, the etcd backend and a raw `etcd_client::Client`
//! (the reference), side by side in one run so that ratios mean something on a noisy machine.
//!
//! `cargo run --release -p timonier-bench --bin store -- [--quick]`
//!
//! Figures, for each system:
//! - acknowledged creates/s with 1 writer and with 64 concurrent writers;
//! - the time of one full list of 10,000 keys of 1 KiB (best and median of 5);
//! - watch fan-out: N watchers on one prefix each receiving E creates (1 KiB values), written
//!   at a paced rate; the send time is embedded in each value and each watcher computes the
//!   delivery latency on receipt; plus the time until every watcher had every event.
//!
//! Everything runs on loopback; etcd is a real server started by `timonier_testkit::Etcd`,
//! stopped (and its directory removed) when the guard drops, even on error, timeout or Ctrl-C.

use timonier_bench::{cpu_model, loadavg, sh};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::Bytes;
use clap::Parser;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp, WatchClient,
    WatchOptions,
};
use futures::StreamExt;
use timonier_store::{
    DynStorage, EtcdConfig, EtcdStorage, ListOptions, SqliteConfig, SqliteStorage,
};
use tokio::task::JoinSet;

#[derive(Parser, Debug)]
#[command(about = "Store benchmark: SQLite backend vs etcd backend vs raw etcd-client")]
struct Args {
    /// Smaller sizes (3,000 / 20,000 creates, 100 watchers x 2,000 events).
    #[arg(long)]
    quick: bool,
    /// Give up (cleanly: etcd stopped, temp dirs removed) after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Creates per second offered during the watch phase (paced, open loop); 0 = as fast as
    /// the writers go (then latency is mostly queueing and the total time is the fan-out
    /// capacity).
    #[arg(long, default_value_t = 1000.0)]
    watch_rate: f64,
    /// Override the number of watchers.
    #[arg(long)]
    watchers: Option<usize>,
    /// Override the number of events each watcher receives.
    #[arg(long)]
    watch_events: Option<u64>,
    /// Longest a watch phase may take per system before it is reported as incomplete.
    #[arg(long, default_value_t = 120)]
    watch_timeout_secs: u64,
    /// Which measurements to run, comma-separated: creates, list, watch.
    #[arg(long, value_delimiter = ',', default_value = "creates,list,watch")]
    phases: Vec<String>,
}

impl Args {
    fn phase(&self, name: &str) -> bool {
        self.phases.iter().any(|p| p == name)
    }
}

/// Sizes of one run.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    creates_1: u64,
    creates_n: u64,
    writers: usize,
    list_keys: u64,
    list_reps: usize,
    watchers: usize,
    watch_events: u64,
    value_size: usize,
}

const MAX_MESSAGE: usize = 2 * 1024 * 1024 * 1024 - 1;
/// Where the send timestamp sits in a value: `{"ts":` then 20 decimal digits.
const TS_OFFSET: usize = 6;
const TS_LEN: usize = 20;

/// A JSON-like object of exactly `size` bytes (at least its fixed part), with the send time
/// (nanoseconds since the run's epoch) at a fixed offset.
fn make_value(ts: u64, ns: &str, i: u64, size: usize) -> Vec<u8> {
    let mut v = format!(
        "{{\"ts\":{ts:020},\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"pod-{i}\",\
         \"namespace\":\"{ns}\",\"labels\":{{\"app\":\"bench\"}}}},\"spec\":{{\"containers\":[{{\
         \"name\":\"app\",\"image\":\"registry.example/bench:1\"}}]}},\"status\":{{\"phase\":\
         \"Pending\"}},\"pad\":\""
    )
    .into_bytes();
    v.reserve(size.saturating_sub(v.len()));
    while v.len() + 2 < size {
        v.push(b'x');
    }
    v.extend_from_slice(b"\"}");
    v
}

fn parse_ts(v: &[u8]) -> Option<u64> {
    let digits = v.get(TS_OFFSET..TS_OFFSET + TS_LEN)?;
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    Some(n)
}

fn key(ns: &str, i: u64) -> String {
    format!("/registry/pods/{ns}/pod-{i}")
}

fn prefix(ns: &str) -> String {
    format!("/registry/pods/{ns}/")
}

/// One system under test. (Cloned once per task, never in a hot loop: the size of the raw
/// variant does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Sys {
    /// A `Storage` backend, used through `Arc<dyn Storage>` as the API server does.
    Store(DynStorage),
    /// The reference: etcd-client directly, doing what the etcd backend does.
    Raw { kv: KvClient, watch: WatchClient },
}

impl Sys {
    async fn create(&mut self, key: String, value: Vec<u8>) -> Result<()> {
        match self {
            Sys::Store(s) => {
                s.create(&key, Bytes::from(value)).await?;
            }
            Sys::Raw { kv, .. } => {
                let txn = Txn::new()
                    .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.as_str(), value, None)]);
                let resp = kv.txn(txn).await?;
                ensure!(resp.succeeded(), "key {key:?} already exists");
            }
        }
        Ok(())
    }

    async fn list(&mut self, prefix: &str) -> Result<usize> {
        match self {
            Sys::Store(s) => Ok(s.list(prefix, ListOptions::default()).await?.items.len()),
            Sys::Raw { kv, .. } => {
                let resp = kv
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await?;
                Ok(resp.kvs().len())
            }
        }
    }

    async fn current_revision(&mut self) -> Result<i64> {
        match self {
            Sys::Store(s) => Ok(s.current_revision().await?),
            Sys::Raw { kv, .. } => {
                let resp = kv
                    .get("\0", Some(GetOptions::new().with_count_only()))
                    .await?;
                Ok(resp
                    .header()
                    .map(|h| h.revision())
                    .ok_or_else(|| anyhow!("no header"))?)
            }
        }
    }
}

struct System {
    name: &'static str,
    sys: Sys,
}

/// Fresh namespaces, so that no two measurements share keys.
struct Namespaces(u64);

impl Namespaces {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("bench-{}", self.0)
    }
}

struct Run {
    done: u64,
    elapsed: Duration,
}

/// `n` acknowledged creates from `writers` concurrent tasks sharing the system.
async fn creates(
    sys: &Sys,
    ns: &str,
    n: u64,
    writers: usize,
    value_size: usize,
    deadline: Instant,
) -> Result<Run> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..writers.max(1) {
        let (mut sys, next, ns) = (sys.clone(), next.clone(), ns.to_string());
        tasks.spawn(async move {
            let mut done = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<u64, anyhow::Error>(done);
                }
                if Instant::now() > deadline {
                    bail!("timed out after {done} creates in this writer");
                }
                sys.create(key(&ns, i), make_value(0, &ns, i, value_size))
                    .await?;
                done += 1;
            }
        });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        done += r.context("writer task failed")??;
    }
    Ok(Run {
        done,
        elapsed: start.elapsed(),
    })
}

#[derive(Debug, Clone)]
struct WatchResult {
    watchers: usize,
    events: u64,
    delivered: u64,
    setup: Duration,
    /// From the first create issued to the last one acknowledged.
    writing: Duration,
    /// From the first create issued to the last event received by the last watcher.
    total: Duration,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    error: Option<String>,
}

struct WatcherOut {
    latencies_us: Vec<u32>,
    last: Option<Instant>,
}

/// Records the delivery latency of one value.
fn record(v: &[u8], epoch: Instant, now: Instant, out: &mut WatcherOut) {
    if let Some(ts) = parse_ts(v) {
        let now_ns = now.duration_since(epoch).as_nanos() as u64;
        out.latencies_us
            .push((now_ns.saturating_sub(ts) / 1000).min(u64::from(u32::MAX)) as u32);
    }
}

/// One watcher: opens its watch, says so on `ready`, then receives until it has `events`
/// events or the deadline passes.
async fn watcher(
    sys: Sys,
    prefix: String,
    rev: i64,
    events: u64,
    epoch: Instant,
    deadline: Instant,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<WatcherOut> {
    let mut out = WatcherOut {
        latencies_us: Vec::with_capacity(events as usize),
        last: None,
    };
    let sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(sleep);
    match sys {
        Sys::Store(store) => {
            let mut stream = store.watch(&prefix, rev).await?;
            let _ = ready.send(()).await;
            drop(ready);
            while (out.latencies_us.len() as u64) < events {
                tokio::select! {
                    biased;
                    item = stream.next() => match item {
                        Some(Ok(ev)) => {
                            let now = Instant::now();
                            record(&ev.kv.value, epoch, now, &mut out);
                            out.last = Some(now);
                        }
                        Some(Err(e)) => bail!("watch failed after {} events: {e}", out.latencies_us.len()),
                        None => bail!("watch ended after {} events", out.latencies_us.len()),
                    },
                    _ = &mut sleep => break,
                }
            }
        }
        Sys::Raw { mut watch, .. } => {
            let opts = WatchOptions::new()
                .with_prefix()
                .with_prev_key()
                .with_start_revision(rev + 1);
            let mut stream = watch.watch(prefix.as_str(), Some(opts)).await?;
            match stream.message().await? {
                Some(r) if r.canceled() => bail!("etcd refused the watch: {}", r.cancel_reason()),
                Some(_) => {}
                None => bail!("etcd closed the watch"),
            }
            let _ = ready.send(()).await;
            drop(ready);
            while (out.latencies_us.len() as u64) < events {
                tokio::select! {
                    biased;
                    msg = stream.message() => match msg? {
                        Some(resp) => {
                            ensure!(!resp.canceled(), "etcd cancelled the watch: {}", resp.cancel_reason());
                            let now = Instant::now();
                            for ev in resp.events() {
                                if let Some(kv) = ev.kv() {
                                    record(kv.value(), epoch, now, &mut out);
                                }
                            }
                            out.last = Some(now);
                        }
                        None => bail!("etcd closed the watch after {} events", out.latencies_us.len()),
                    },
                    _ = &mut sleep => break,
                }
            }
        }
    }
    Ok(out)
}

/// `watchers` watchers on one fresh prefix, then `events` creates under it at `rate`/s.
#[allow(clippy::too_many_arguments)]
async fn watch_phase(
    sys: &Sys,
    ns: &str,
    sizes: Sizes,
    rate: f64,
    epoch: Instant,
    cap: Duration,
    deadline: Instant,
) -> Result<WatchResult> {
    let phase_deadline = (Instant::now() + cap).min(deadline);
    let (watchers, events) = (sizes.watchers, sizes.watch_events);
    let prefix = prefix(ns);
    let rev = sys.clone().current_revision().await?;

    let setup_start = Instant::now();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers.max(1));
    let mut tasks = JoinSet::new();
    for _ in 0..watchers {
        tasks.spawn(watcher(
            sys.clone(),
            prefix.clone(),
            rev,
            events,
            epoch,
            phase_deadline,
            ready_tx.clone(),
        ));
    }
    drop(ready_tx);
    timonier_bench::wait_watchers_started(&mut ready_rx, watchers, phase_deadline, &mut tasks).await?;
    let setup = setup_start.elapsed();

    // Paced open-loop writers: create i is issued at write_start + i/rate (or at once when
    // behind), stamped with the time just before it is issued.
    let write_start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = JoinSet::new();
    for _ in 0..sizes.writers {
        let (mut sys, next, ns) = (sys.clone(), next.clone(), ns.to_string());
        let value_size = sizes.value_size;
        writers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return Ok::<(), anyhow::Error>(());
                }
                if rate > 0.0 {
                    let at = write_start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(at.into()).await;
                }
                if Instant::now() > phase_deadline {
                    bail!("writes timed out at create {i}");
                }
                let ts = epoch.elapsed().as_nanos() as u64;
                sys.create(key(&ns, i), make_value(ts, &ns, i, value_size))
                    .await?;
            }
        });
    }
    let mut error = None;
    while let Some(r) = writers.join_next().await {
        if let Err(e) = r.map_err(anyhow::Error::from).and_then(|r| r) {
            error.get_or_insert(format!("writer: {e:#}"));
        }
    }
    let writing = write_start.elapsed();

    let mut all: Vec<u32> = Vec::with_capacity(watchers * events as usize);
    let mut last = write_start;
    while let Some(r) = tasks.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(out) => {
                all.extend_from_slice(&out.latencies_us);
                if let Some(t) = out.last {
                    last = last.max(t);
                }
            }
            Err(e) => {
                error.get_or_insert(format!("watcher: {e:#}"));
            }
        }
    }
    let delivered = all.len() as u64;
    if delivered < watchers as u64 * events && error.is_none() {
        error = Some(format!(
            "incomplete: {delivered} of {} deliveries within {:.0} s",
            watchers as u64 * events,
            cap.as_secs_f64()
        ));
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let idx = ((p * all.len() as f64).ceil() as usize).clamp(1, all.len()) - 1;
        f64::from(all[idx]) / 1000.0
    };
    Ok(WatchResult {
        watchers,
        events,
        delivered,
        setup,
        writing,
        total: last.duration_since(write_start),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        error,
    })
}

/// Results of one system; `Err` holds why a measurement failed.
#[derive(Default)]
struct Report {
    creates_1: Option<Result<f64, String>>,
    creates_n: Option<Result<f64, String>>,
    /// Best and median, in ms.
    list: Option<Result<(f64, f64), String>>,
    watch: Option<Result<WatchResult, String>>,
}

fn rate_of(runs: &[Result<Run>]) -> Result<f64, String> {
    let mut done = 0;
    let mut elapsed = Duration::ZERO;
    for r in runs {
        match r {
            Ok(r) => {
                done += r.done;
                elapsed += r.elapsed;
            }
            Err(e) => return Err(format!("{e:#}")),
        }
    }
    Ok(done as f64 / elapsed.as_secs_f64())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

async fn run(
    args: &Args,
    sizes: Sizes,
    db: std::path::PathBuf,
    endpoint: String,
    deadline: Instant,
) -> Result<Vec<(&'static str, Report)>> {
    let epoch = Instant::now();
    let sqlite = SqliteStorage::open(SqliteConfig::new(db)).context("opening the SQLite store")?;
    let etcd = EtcdStorage::connect(EtcdConfig::new(vec![endpoint.clone()]))
        .await
        .context("connecting the etcd backend")?;
    // The reference client, configured as the backend configures its own.
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10))
        .with_keep_alive_while_idle(true);
    let client = Client::connect([endpoint.as_str()], Some(opts))
        .await
        .context("connecting etcd-client")?;
    let raw = Sys::Raw {
        kv: client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
        watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
    };
    let systems = [
        System {
            name: "sqlite backend",
            sys: Sys::Store(Arc::new(sqlite)),
        },
        System {
            name: "etcd backend",
            sys: Sys::Store(Arc::new(etcd)),
        },
        System {
            name: "raw etcd-client",
            sys: raw,
        },
    ];
    let (s, b, r) = (0usize, 1usize, 2usize);
    let mut reports: Vec<Report> = (0..3).map(|_| Report::default()).collect();
    let mut ns = Namespaces(0);

    // a, b: creates. Each system runs two halves in the order S B R R B S, so that drift of
    // the machine (or of etcd's state) over the phase weighs the same on every system.
    let create_phases = if args.phase("creates") {
        vec![
            ("1 writer", sizes.creates_1, 1),
            ("64 writers", sizes.creates_n, sizes.writers),
        ]
    } else {
        Vec::new()
    };
    for (phase, n, writers) in create_phases {
        let mut runs: Vec<Vec<Result<Run>>> = (0..3).map(|_| Vec::new()).collect();
        for &i in &[s, b, r, r, b, s] {
            let ns = ns.next();
            let res = creates(
                &systems[i].sys,
                &ns,
                n / 2,
                writers,
                sizes.value_size,
                deadline,
            )
            .await;
            match &res {
                Ok(run) => eprintln!(
                    "creates, {phase}: {:<16} {:>6} in {:>7.2} s = {:>8.0}/s",
                    systems[i].name,
                    run.done,
                    run.elapsed.as_secs_f64(),
                    run.done as f64 / run.elapsed.as_secs_f64()
                ),
                Err(e) => eprintln!("creates, {phase}: {} failed: {e:#}", systems[i].name),
            }
            runs[i].push(res);
            if Instant::now() > deadline {
                bail!("overall timeout during the creates ({phase})");
            }
        }
        for i in 0..3 {
            let rate = rate_of(&runs[i]);
            if writers == 1 {
                reports[i].creates_1 = Some(rate);
            } else {
                reports[i].creates_n = Some(rate);
            }
        }
    }

    // c: list.
    if args.phase("list") {
        list_phase(&systems, sizes, &mut ns, &mut reports, deadline).await?;
    }

    // d: watch fan-out.
    if args.phase("watch") {
        watch_phases(
            args,
            &systems,
            sizes,
            &mut ns,
            &mut reports,
            epoch,
            deadline,
        )
        .await?;
    }

    Ok(systems.iter().map(|s| s.name).zip(reports).collect())
}

/// c: list. The SQLite store gets its own keys; both etcd systems list the same keys (loaded
/// with the raw client), so that they read exactly the same data.
async fn list_phase(
    systems: &[System],
    sizes: Sizes,
    ns: &mut Namespaces,
    reports: &mut [Report],
    deadline: Instant,
) -> Result<()> {
    let (s, b, r) = (0usize, 1usize, 2usize);
    let sqlite_ns = ns.next();
    let etcd_ns = ns.next();
    let mut load_errors: [Option<String>; 3] = [None, None, None];
    if let Err(e) = creates(
        &systems[s].sys,
        &sqlite_ns,
        sizes.list_keys,
        sizes.writers,
        sizes.value_size,
        deadline,
    )
    .await
    {
        load_errors[s] = Some(format!("loading: {e:#}"));
    }
    if let Err(e) = creates(
        &systems[r].sys,
        &etcd_ns,
        sizes.list_keys,
        sizes.writers,
        sizes.value_size,
        deadline,
    )
    .await
    {
        load_errors[b] = Some(format!("loading: {e:#}"));
        load_errors[r] = Some(format!("loading: {e:#}"));
    }
    let list_prefix = [prefix(&sqlite_ns), prefix(&etcd_ns), prefix(&etcd_ns)];
    let mut times: Vec<Vec<f64>> = (0..3).map(|_| Vec::new()).collect();
    let mut list_errors = load_errors;
    // One untimed warm-up list each, then `list_reps` rounds, the systems taking turns.
    for rep in 0..=sizes.list_reps {
        for i in [s, b, r] {
            if list_errors[i].is_some() {
                continue;
            }
            let mut sys = systems[i].sys.clone();
            let start = Instant::now();
            match sys.list(&list_prefix[i]).await {
                Ok(n) if n as u64 == sizes.list_keys => {
                    if rep > 0 {
                        times[i].push(start.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                Ok(n) => {
                    list_errors[i] = Some(format!("listed {n} keys, expected {}", sizes.list_keys))
                }
                Err(e) => list_errors[i] = Some(format!("{e:#}")),
            }
        }
        if Instant::now() > deadline {
            bail!("overall timeout during the lists");
        }
    }
    for i in 0..3 {
        reports[i].list = Some(match list_errors[i].take() {
            Some(e) => Err(e),
            None => {
                let best = times[i].iter().copied().fold(f64::INFINITY, f64::min);
                Ok((best, median(&mut times[i])))
            }
        });
        if let Some(Ok((best, med))) = &reports[i].list {
            eprintln!(
                "list {}: {:<16} best {best:.1} ms, median {med:.1} ms",
                sizes.list_keys, systems[i].name
            );
        }
    }

    Ok(())
}

/// d: watch fan-out, one system after the other.
async fn watch_phases(
    args: &Args,
    systems: &[System],
    sizes: Sizes,
    ns: &mut Namespaces,
    reports: &mut [Report],
    epoch: Instant,
    deadline: Instant,
) -> Result<()> {
    let (s, b, r) = (0usize, 1usize, 2usize);
    let cap = Duration::from_secs(args.watch_timeout_secs);
    for i in [s, b, r] {
        let ns = ns.next();
        eprintln!(
            "watch: {:<16} {} watchers x {} events at {} creates/s ...",
            systems[i].name,
            sizes.watchers,
            sizes.watch_events,
            if args.watch_rate > 0.0 {
                format!("{:.0}", args.watch_rate)
            } else {
                "max".into()
            }
        );
        let res = watch_phase(
            &systems[i].sys,
            &ns,
            sizes,
            args.watch_rate,
            epoch,
            cap,
            deadline,
        )
        .await;
        match &res {
            Ok(w) => eprintln!(
                "watch: {:<16} setup {:.2} s, writes {:.2} s, all delivered after {:.2} s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}",
                systems[i].name,
                w.setup.as_secs_f64(),
                w.writing.as_secs_f64(),
                w.total.as_secs_f64(),
                w.p50_ms,
                w.p99_ms,
                w.max_ms,
                w.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
            ),
            Err(e) => eprintln!("watch: {} failed: {e:#}", systems[i].name),
        }
        reports[i].watch = Some(res.map_err(|e| format!("{e:#}")));
        if Instant::now() > deadline {
            bail!("overall timeout during the watches");
        }
    }
    Ok(())
}

fn fmt_rate(r: &Option<Result<f64, String>>) -> String {
    match r {
        Some(Ok(v)) => format!("{:.0}", v),
        Some(Err(_)) => "failed".into(),
        None => "-".into(),
    }
}

fn print_report(args: &Args, sizes: Sizes, reports: &[(&'static str, Report)], load_before: &str) {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "## Store benchmark{}",
        if args.quick { " (--quick)" } else { "" }
    );
    println!();
    println!("- date: {}", sh("date", &["-u"]));
    println!(
        "- machine: {nproc} cores ({}), Linux {}, {}",
        cpu_model(),
        sh("uname", &["-r"]),
        sh("etcd", &["--version"])
    );
    println!(
        "- load average (1/5/15 min) before: {load_before}; after: {}",
        loadavg()
    );
    println!(
        "- sizes: {} creates with 1 writer, {} with {} writers, values {} B; list of {} keys (best / median of {}); \
         watch: {} watchers x {} events, offered at {} creates/s ({} writers), latency from just before the create to receipt",
        sizes.creates_1,
        sizes.creates_n,
        sizes.writers,
        sizes.value_size,
        sizes.list_keys,
        sizes.list_reps,
        sizes.watchers,
        sizes.watch_events,
        if args.watch_rate > 0.0 { format!("{:.0}", args.watch_rate) } else { "max".into() },
        sizes.writers
    );
    println!();
    println!(
        "| system | creates/s, 1 writer | creates/s, {} writers | list {}k, best / median (ms) | watch p50 / p99 / max (ms) | watch: all delivered after (s) |",
        sizes.writers,
        sizes.list_keys / 1000
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut notes = Vec::new();
    for (name, r) in reports {
        let list = match &r.list {
            Some(Ok((best, med))) => format!("{best:.1} / {med:.1}"),
            Some(Err(_)) => "failed".into(),
            None => "-".into(),
        };
        let (watch, total) = match &r.watch {
            Some(Ok(w)) => (
                format!("{:.1} / {:.1} / {:.1}", w.p50_ms, w.p99_ms, w.max_ms),
                format!(
                    "{:.2}{}",
                    w.total.as_secs_f64(),
                    if w.error.is_some() {
                        " (incomplete)"
                    } else {
                        ""
                    }
                ),
            ),
            Some(Err(_)) => ("failed".into(), "failed".into()),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {name} | {} | {} | {list} | {watch} | {total} |",
            fmt_rate(&r.creates_1),
            fmt_rate(&r.creates_n)
        );
        for (what, e) in [
            (
                "creates, 1 writer",
                r.creates_1.as_ref().and_then(|r| r.as_ref().err()).cloned(),
            ),
            (
                "creates, 64 writers",
                r.creates_n.as_ref().and_then(|r| r.as_ref().err()).cloned(),
            ),
            (
                "list",
                r.list.as_ref().and_then(|r| r.as_ref().err()).cloned(),
            ),
            (
                "watch",
                r.watch.as_ref().and_then(|r| r.as_ref().err()).cloned(),
            ),
            (
                "watch",
                r.watch
                    .as_ref()
                    .and_then(|r| r.as_ref().ok())
                    .and_then(|w| w.error.clone()),
            ),
        ] {
            if let Some(e) = e {
                notes.push(format!("{name}, {what}: {e}"));
            }
        }
    }

    // The etcd backend's cost over raw etcd-client, as a time ratio (1.00 = same; the goal
    // is at most 1.3): for throughputs raw/backend, for times backend/raw.
    let (backend, raw) = (&reports[1].1, &reports[2].1);
    let thr = |a: &Option<Result<f64, String>>, b: &Option<Result<f64, String>>| match (a, b) {
        (Some(Ok(be)), Some(Ok(ra))) => format!("{:.2}×", ra / be),
        _ => "-".into(),
    };
    let list_ratio = match (&backend.list, &raw.list) {
        (Some(Ok((bb, bm))), Some(Ok((rb, rm)))) => format!("{:.2}× / {:.2}×", bb / rb, bm / rm),
        _ => "-".into(),
    };
    let (watch_ratio, total_ratio) = match (&backend.watch, &raw.watch) {
        (Some(Ok(bw)), Some(Ok(rw))) => (
            format!(
                "{:.2}× / {:.2}× / {:.2}×",
                bw.p50_ms / rw.p50_ms,
                bw.p99_ms / rw.p99_ms,
                bw.max_ms / rw.max_ms
            ),
            format!("{:.2}×", bw.total.as_secs_f64() / rw.total.as_secs_f64()),
        ),
        _ => ("-".into(), "-".into()),
    };
    println!(
        "| **etcd backend ÷ raw etcd-client** (time ratio, goal ≤ 1.3×) | {} | {} | {list_ratio} | {watch_ratio} | {total_ratio} |",
        thr(&backend.creates_1, &raw.creates_1),
        thr(&backend.creates_n, &raw.creates_n)
    );
    println!();

    // Goals.
    let sq = &reports[0].1;
    let ok = |b: bool| if b { "met" } else { "MISSED" };
    let val = |r: &Option<Result<f64, String>>| r.as_ref().and_then(|r| r.as_ref().ok()).copied();
    println!("Goals:");
    if let Some(v) = val(&sq.creates_n) {
        println!(
            "- sqlite ≥ 10,000 creates/s with {} writers: {v:.0}/s, {}",
            sizes.writers,
            ok(v >= 10_000.0)
        );
    }
    if let Some(v) = val(&sq.creates_1) {
        println!(
            "- sqlite ≥ 2,000 creates/s with 1 writer: {v:.0}/s, {}",
            ok(v >= 2_000.0)
        );
    }
    for (name, r) in reports {
        if let Some(Ok(w)) = &r.watch {
            let complete = w.error.is_none();
            println!(
                "- watch p99 ≤ 100 ms to {} watchers, {name}: {:.1} ms{}, {}",
                w.watchers,
                w.p99_ms,
                if complete {
                    String::new()
                } else {
                    " (incomplete delivery)".into()
                },
                ok(w.p99_ms <= 100.0 && complete)
            );
        }
    }
    let mut ratios = Vec::new();
    if let (Some(be), Some(ra)) = (val(&backend.creates_1), val(&raw.creates_1)) {
        ratios.push(("creates, 1 writer", ra / be));
    }
    if let (Some(be), Some(ra)) = (val(&backend.creates_n), val(&raw.creates_n)) {
        ratios.push(("creates, 64 writers", ra / be));
    }
    if let (Some(Ok((_, bm))), Some(Ok((_, rm)))) = (&backend.list, &raw.list) {
        ratios.push(("list (median)", bm / rm));
    }
    if let (Some(Ok(bw)), Some(Ok(rw))) = (&backend.watch, &raw.watch) {
        ratios.push(("watch p99", bw.p99_ms / rw.p99_ms));
    }
    for (what, x) in ratios {
        println!(
            "- etcd backend within 1.3× of raw etcd-client, {what}: {x:.2}×, {}",
            ok(x <= 1.3)
        );
    }
    for (name, r) in reports {
        if let Some(Ok(w)) = &r.watch {
            println!(
                "- watch detail, {name}: {} of {} deliveries, watches set up in {:.2} s, creates issued over {:.2} s, \
                 {:.0} deliveries/s",
                w.delivered,
                w.watchers as u64 * w.events,
                w.setup.as_secs_f64(),
                w.writing.as_secs_f64(),
                w.delivered as f64 / w.total.as_secs_f64().max(1e-9)
            );
        }
    }
    if !notes.is_empty() {
        println!();
        println!("Failures:");
        for n in notes {
            println!("- {n}");
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut sizes = if args.quick {
        Sizes {
            creates_1: 3_000,
            creates_n: 20_000,
            writers: 64,
            list_keys: 10_000,
            list_reps: 5,
            watchers: 100,
            watch_events: 2_000,
            value_size: 1024,
        }
    } else {
        Sizes {
            creates_1: 10_000,
            creates_n: 50_000,
            writers: 64,
            list_keys: 10_000,
            list_reps: 5,
            watchers: 1_000,
            watch_events: 10_000,
            value_size: 1024,
        }
    };
    if let Some(w) = args.watchers {
        sizes.watchers = w;
    }
    if let Some(e) = args.watch_events {
        sizes.watch_events = e;
    }

    // Guards first, so that they outlive the runtime and every task in it: the temp dir and
    // etcd go away at the end of main whatever happened.
    let dir = timonier_testkit::temp_dir("timonier-bench-store-");
    let etcd = match timonier_testkit::Etcd::start() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot start etcd: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "etcd on {} (data in {}), sqlite in {}",
        etcd.endpoint,
        etcd.dir().display(),
        dir.path().display()
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let load_before = loadavg();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let db = dir.path().join("state.db");
    let endpoint = etcd.endpoint.clone();
    let result = rt.block_on(async {
        tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), run(&args, sizes, db, endpoint, deadline)) => {
                r.unwrap_or_else(|_| Err(anyhow!("overall timeout of {} s", args.timeout_secs)))
            }
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    // Cancels whatever tasks are left (and lets blocking reads finish) before the store's
    // directory and etcd go.
    rt.shutdown_timeout(Duration::from_secs(10));
    let code = match result {
        Ok(reports) => {
            print_report(&args, sizes, &reports, &load_before);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("store benchmark failed: {e:#}");
            ExitCode::FAILURE
        }
    };
    drop(etcd);
    drop(dir);
    code
}
