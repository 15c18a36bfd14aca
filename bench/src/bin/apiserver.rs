//! API server benchmark: a real `timonier server` process (the release build) on loopback,
//! driven over HTTPS with the admin client certificate, as kubectl and client-go drive it.
//!
//! `cargo run --release -p timonier-bench --bin apiserver -- [--quick]`
//!
//! Figures, all from one run against one server (SQLite datastore, in a temporary directory):
//! - pod creates/s and create latency (p50/p99/max) with 1 client and with 32 concurrent
//!   clients (`POST /api/v1/namespaces/default/pods`, a Deployment-like pod of ~700 B);
//! - the surplus pods deleted with 32 clients (deletes/s and latency), leaving 10,000 pods;
//! - with 10,000 pods stored: `kubectl get pods -A` (the real kubectl 1.33, median of 5), the
//!   same Table pages requested without kubectl, a raw `GET /api/v1/pods` (JSON, no limit; best
//!   and median of 5) and the same list paged with `limit=500` through every page;
//! - 100 watchers (`GET /api/v1/pods?watch=true&resourceVersion=<current>`) each receiving
//!   every event of N/2 creates then N/2 merge patches, issued at a paced rate (100/s) and then
//!   as fast as 8 writers go: the send time is in an annotation of the pod and each watcher
//!   computes the delivery latency on receipt; plus the latency of those mutations;
//! - the server's RSS (`VmRSS` of /proc/<pid>/status): idle right after start, after the
//!   creates, holding 10,000 pods (after the lists), after the watch phase; and its peak.
//!
//! Each client is its own `reqwest::Client`, i.e. its own TLS connection (HTTP/2 by ALPN, as
//! kubectl). The server is `timonier_testkit::Server`: stopped (and its directory removed) when
//! the guard drops, also on error, on the overall timeout and on Ctrl-C.

use std::path::{Path, PathBuf};
use timonier_bench::{cpu_model, loadavg, median, proc_cpu, proc_status_kb, sh};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Parser;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;
use tokio::task::JoinSet;

#[derive(Parser, Debug)]
#[command(about = "API server benchmark: a real timonier server over HTTPS, with kubectl")]
struct Args {
    /// Smaller sizes (1,000 / 5,000 creates, 100 watchers x 500 events); still 10,000 pods for
    /// the lists.
    #[arg(long)]
    quick: bool,
    /// Give up (cleanly: server stopped, temp dir removed) after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// The `timonier` binary. Default: `$CARGO_TARGET_DIR/release/timonier`, else
    /// `target/release/timonier` of this workspace, built first (see --no-build).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Do not run `cargo build --release -p timonier` first (use the binary as it is).
    #[arg(long)]
    no_build: bool,
    /// What to say of the server's source in the report (default: the workspace's commit, for
    /// the workspace's binary).
    #[arg(long)]
    server_note: Option<String>,
    /// The kubectl binary for `kubectl get pods -A`.
    #[arg(long, default_value = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33")]
    kubectl: PathBuf,
    /// Concurrent clients of the concurrent measurements.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Override the number of creates with 1 client.
    #[arg(long)]
    creates_1: Option<u64>,
    /// Override the number of creates with the concurrent clients.
    #[arg(long)]
    creates_n: Option<u64>,
    /// Pods stored during the lists (surplus pods are deleted, missing ones created).
    #[arg(long, default_value_t = 10_000)]
    list_pods: u64,
    /// Override the number of watchers.
    #[arg(long)]
    watchers: Option<usize>,
    /// Override the number of events each watcher receives (half creates, half patches).
    #[arg(long)]
    watch_events: Option<u64>,
    /// One watch phase per rate: mutations per second offered (paced, open loop); 0 = as fast
    /// as the writers go (then latency is mostly queueing, and the total time is the fan-out
    /// capacity).
    #[arg(long, value_delimiter = ',', default_value = "100,0")]
    watch_rates: Vec<f64>,
    /// Longest a watch phase may take before it is reported as incomplete.
    #[arg(long, default_value_t = 120)]
    watch_timeout_secs: u64,
    /// For profiling: after the lists, keep the server (and its 10,000 pods) up this many
    /// seconds (at most 600), printing its kubeconfig and pid.
    #[arg(long, default_value_t = 0)]
    hold_secs: u64,
}

/// Sizes of one run.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    /// Untimed creates with 1 client first (connections, SQLite file, allocator warm).
    warmup: u64,
    creates_1: u64,
    creates_n: u64,
    clients: usize,
    list_pods: u64,
    list_reps: usize,
    page: u64,
    kubectl_reps: usize,
    watchers: usize,
    watch_events: u64,
    watch_writers: usize,
}

/// Where a watch-phase pod carries the time its mutation was issued (ns since the run's
/// epoch), and how that appears in the server's JSON.
const SENT_ANNOTATION: &str = "timonier.bench/sent-ns";
const SENT_PATTERN: &[u8] = b"\"timonier.bench/sent-ns\":\"";
const NAMESPACE: &str = "default";

/// A pod as a Deployment's ReplicaSet would create it (without the owner reference, which
/// would have the garbage collector delete it), ~700 bytes of JSON.
fn pod_json(name: &str, sent_ns: Option<u64>) -> String {
    let annotations = match sent_ns {
        Some(ns) => format!(",\"annotations\":{{\"{SENT_ANNOTATION}\":\"{ns}\"}}"),
        None => String::new(),
    };
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{NAMESPACE}","labels":{{"app":"web","tier":"frontend","pod-template-hash":"7d9c6b8f5d"}}{annotations}}},"spec":{{"containers":[{{"name":"web","image":"registry.k8s.io/nginx-slim:0.27","ports":[{{"name":"http","containerPort":80,"protocol":"TCP"}}],"env":[{{"name":"MODE","value":"production"}},{{"name":"LOG_LEVEL","value":"info"}}],"resources":{{"requests":{{"cpu":"100m","memory":"128Mi"}},"limits":{{"cpu":"500m","memory":"256Mi"}}}},"readinessProbe":{{"httpGet":{{"path":"/healthz","port":80}},"periodSeconds":10}},"volumeMounts":[{{"name":"config","mountPath":"/etc/web"}}]}}],"volumes":[{{"name":"config","configMap":{{"name":"web-config"}}}}],"restartPolicy":"Always","terminationGracePeriodSeconds":30}}}}"#
    )
}

/// What the benchmark needs of the running server.
struct Ctx {
    base: String,
    ca: Vec<u8>,
    /// Admin certificate and key, PEM.
    identity: Vec<u8>,
    pid: u32,
    kubeconfig: PathBuf,
    /// Scratch space (kubectl's HOME and cache) inside the server's temp dir.
    scratch: PathBuf,
    kubectl: PathBuf,
    epoch: Instant,
    deadline: Instant,
}

impl Ctx {
    /// A client with its own connection pool, i.e. its own TLS connection. `timeout` bounds
    /// each request (none for watches, which the caller bounds).
    fn client(&self, timeout: Option<Duration>) -> Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca).context("CA certificate")?)
            .identity(reqwest::Identity::from_pem(&self.identity).context("admin certificate and key")?)
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(4);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        Ok(b.build()?)
    }

    fn pods_url(&self) -> String {
        format!("{}/api/v1/namespaces/{NAMESPACE}/pods", self.base)
    }

    fn check_deadline(&self, what: &str) -> Result<()> {
        if Instant::now() > self.deadline {
            bail!("overall timeout during {what}");
        }
        Ok(())
    }
}

/// Longest any one request (but a watch) may take: beyond it the server is taken as stuck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `n` clients, each with its connection established (one GET each).
async fn clients(ctx: &Ctx, n: usize) -> Result<Vec<reqwest::Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let c = ctx.client(Some(REQUEST_TIMEOUT))?;
        let r = c
            .get(format!("{}/api/v1/namespaces/{NAMESPACE}", ctx.base))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .context("first request")?;
        ensure!(r.status().is_success(), "first request: {}", r.status());
        r.bytes().await?;
        out.push(c);
    }
    Ok(out)
}

/// One mutating request of a run: the request for index `i`.
type MakeRequest = Arc<dyn Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync>;

struct MutRun {
    done: u64,
    elapsed: Duration,
    /// Latencies (µs), request issued to response body received, sorted.
    lat_us: Vec<u32>,
    server_cpu: f64,
    bench_cpu: f64,
}

impl MutRun {
    fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends one request and reads the whole response; returns the status and the latency.
async fn timed(req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, bytes::Bytes, u32)> {
    let t = Instant::now();
    let resp = req.send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    Ok((status, body, us))
}

fn snippet(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(400)]).into_owned()
}

/// `n` requests from the given clients, each client one sequential worker (closed loop).
async fn mutate(ctx: &Ctx, clients: &[reqwest::Client], n: u64, make: MakeRequest, expect: u16, what: &str) -> Result<MutRun> {
    let next = Arc::new(AtomicU64::new(0));
    let (cpu0, self0) = (proc_cpu(ctx.pid), proc_cpu(std::process::id()));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for c in clients {
        let (c, next, make, deadline, what) = (c.clone(), next.clone(), make.clone(), ctx.deadline, what.to_string());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<Vec<u32>, anyhow::Error>(lat);
                }
                if Instant::now() > deadline {
                    bail!("{what}: timed out after {} requests in this client", lat.len());
                }
                let (status, body, us) = timed(make(&c, i)).await.with_context(|| format!("{what} #{i}"))?;
                ensure!(status.as_u16() == expect, "{what} #{i}: {status}: {}", snippet(&body));
                lat.push(us);
            }
        });
    }
    let mut lat_us = Vec::with_capacity(n as usize);
    let mut error = None;
    while let Some(r) = tasks.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(l) => lat_us.extend(l),
            Err(e) => {
                error.get_or_insert(e);
                tasks.abort_all();
            }
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    let elapsed = start.elapsed();
    lat_us.sort_unstable();
    Ok(MutRun {
        done: lat_us.len() as u64,
        elapsed,
        lat_us,
        server_cpu: proc_cpu(ctx.pid) - cpu0,
        bench_cpu: proc_cpu(std::process::id()) - self0,
    })
}

fn create_request(url: String, prefix: &'static str) -> MakeRequest {
    Arc::new(move |c: &reqwest::Client, i: u64| {
        c.post(&url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(pod_json(&format!("{prefix}-{i}"), None))
    })
}

/// The `p` quantile (0..=1) of sorted µs values, in ms.
fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[idx]) / 1000.0
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(rename = "continue", default)]
    cont: Option<String>,
}

/// A list response, without decoding its items.
#[derive(Deserialize)]
struct ListPage {
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<serde::de::IgnoredAny>,
    /// A Table's.
    #[serde(default)]
    rows: Vec<serde::de::IgnoredAny>,
}

/// What kubectl 1.33 asks for in `kubectl get`: server-side Tables.
const KUBECTL_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

async fn get_list(c: &reqwest::Client, url: reqwest::Url, accept: &str) -> Result<bytes::Bytes> {
    let resp = c.get(url).header(ACCEPT, accept).send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    ensure!(status.is_success(), "list: {status}: {}", snippet(&body));
    Ok(body)
}

/// Pages through every pod with `limit`; returns the pods (or table rows) and pages seen.
async fn paged_list(ctx: &Ctx, c: &reqwest::Client, limit: u64, accept: &str) -> Result<(u64, u64)> {
    let (mut pods, mut pages) = (0u64, 0u64);
    let mut cont: Option<String> = None;
    // Bounded: more pages than 1,000,000 pods would need means a loop.
    while pages < 1_000_000 / limit.max(1) + 2 {
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/pods", ctx.base))?;
        url.query_pairs_mut().append_pair("limit", &limit.to_string());
        if let Some(c) = &cont {
            url.query_pairs_mut().append_pair("continue", c);
        }
        let body = get_list(c, url, accept).await?;
        let page: ListPage = serde_json::from_slice(&body).context("decoding a list page")?;
        pods += (page.items.len() + page.rows.len()) as u64;
        pages += 1;
        match page.metadata.cont.filter(|c| !c.is_empty()) {
            Some(c) => cont = Some(c),
            None => return Ok((pods, pages)),
        }
        ctx.check_deadline("the paged list")?;
    }
    bail!("paged list: no end after {pages} pages")
}

/// Runs `kubectl get pods -A` once; returns its wall time and, if asked, its output lines.
async fn kubectl_get(ctx: &Ctx, count: bool) -> Result<(Duration, Option<usize>)> {
    let mut cmd = tokio::process::Command::new(&ctx.kubectl);
    cmd.arg("--kubeconfig")
        .arg(&ctx.kubeconfig)
        .arg("--cache-dir")
        .arg(ctx.scratch.join("kube-cache"))
        .args(["get", "pods", "-A"])
        .env("HOME", &ctx.scratch)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(if count { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("cannot run {}", ctx.kubectl.display()))?;
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .map_err(|_| anyhow!("kubectl get pods -A took more than 120 s"))??;
    let elapsed = start.elapsed();
    ensure!(out.status.success(), "kubectl get pods -A: {}: {}", out.status, snippet(&out.stderr));
    let lines = count.then(|| out.stdout.iter().filter(|&&b| b == b'\n').count());
    Ok((elapsed, lines))
}

struct ListResult {
    pods: u64,
    body_bytes: usize,
    raw_ms: Vec<f64>,
    paged_ms: Vec<f64>,
    /// The pages kubectl asks for (Tables), without kubectl.
    table_ms: Vec<f64>,
    pages: u64,
    kubectl_ms: Result<Vec<f64>, String>,
    kubectl_lines: usize,
}

/// The lists, with `sizes.list_pods` pods stored: one untimed warm-up of each, then the
/// three kinds taking turns.
async fn lists(ctx: &Ctx, sizes: Sizes) -> Result<ListResult> {
    let c = ctx.client(Some(REQUEST_TIMEOUT))?;
    let url = reqwest::Url::parse(&format!("{}/api/v1/pods", ctx.base))?;
    let body = get_list(&c, url.clone(), "application/json").await?;
    let page: ListPage = serde_json::from_slice(&body).context("decoding the list")?;
    let pods = page.items.len() as u64;
    ensure!(pods == sizes.list_pods, "the list has {pods} pods, expected {}", sizes.list_pods);
    let (paged_pods, pages) = paged_list(ctx, &c, sizes.page, "application/json").await?;
    ensure!(paged_pods == pods, "the paged list has {paged_pods} pods, the list {pods}");
    let (rows, _) = paged_list(ctx, &c, sizes.page, KUBECTL_ACCEPT).await?;
    ensure!(rows == pods, "the paged tables have {rows} rows, the list {pods} pods");
    let mut kubectl_ms: Result<Vec<f64>, String> = Ok(Vec::new());
    let mut kubectl_lines = 0;
    match kubectl_get(ctx, true).await {
        Ok((_, lines)) => kubectl_lines = lines.unwrap_or(0),
        Err(e) => kubectl_ms = Err(format!("{e:#}")),
    }
    let (mut raw_ms, mut paged_ms, mut table_ms) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..sizes.list_reps.max(sizes.kubectl_reps) {
        if rep < sizes.list_reps {
            let t = Instant::now();
            let b = get_list(&c, url.clone(), "application/json").await?;
            raw_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            ensure!(b.len() > body.len() / 2, "a list returned {} bytes", b.len());
            let t = Instant::now();
            paged_list(ctx, &c, sizes.page, "application/json").await?;
            paged_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            paged_list(ctx, &c, sizes.page, KUBECTL_ACCEPT).await?;
            table_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        if rep < sizes.kubectl_reps && kubectl_ms.is_ok() {
            match kubectl_get(ctx, false).await {
                Ok((d, _)) => {
                    if let Ok(times) = kubectl_ms.as_mut() {
                        times.push(d.as_secs_f64() * 1000.0);
                    }
                }
                Err(e) => kubectl_ms = Err(format!("{e:#}")),
            }
        }
        ctx.check_deadline("the lists")?;
    }
    Ok(ListResult { pods, body_bytes: body.len(), raw_ms, paged_ms, table_ms, pages, kubectl_ms, kubectl_lines })
}

struct WatcherOut {
    lat_us: Vec<u32>,
    last: Option<Instant>,
}

/// One line of a watch stream: records the latency of a benchmark event; fails on an ERROR.
fn on_line(line: &[u8], finder: &memchr::memmem::Finder<'_>, now_ns: u64, out: &mut WatcherOut) -> Result<()> {
    if let Some(i) = finder.find(line) {
        let digits = &line[i + SENT_PATTERN.len()..];
        let mut n: u64 = 0;
        for &d in digits.iter().take(20) {
            if d == b'"' {
                break;
            }
            ensure!(d.is_ascii_digit(), "bad send time in a watch event");
            n = n * 10 + u64::from(d - b'0');
        }
        out.lat_us.push((now_ns.saturating_sub(n) / 1000).min(u64::from(u32::MAX)) as u32);
    } else if memchr::memmem::find(line, b"\"type\":\"ERROR\"").is_some() {
        bail!("watch ERROR event: {}", snippet(line));
    }
    Ok(())
}

/// One watcher on its own connection: opens its watch, says so on `ready`, then receives
/// until it has `events` benchmark events or the deadline passes.
async fn watcher(client: reqwest::Client, url: String, events: u64, epoch: Instant, deadline: Instant, ready: tokio::sync::mpsc::Sender<()>) -> Result<WatcherOut> {
    let mut resp = tokio::time::timeout_at(deadline.into(), client.get(&url).header(ACCEPT, "application/json").send())
        .await
        .map_err(|_| anyhow!("the watch request timed out"))??;
    ensure!(resp.status().is_success(), "watch: {}", resp.status());
    let _ = ready.send(()).await;
    drop(ready);
    let finder = memchr::memmem::Finder::new(SENT_PATTERN);
    let mut out = WatcherOut { lat_us: Vec::with_capacity(events as usize), last: None };
    let mut carry: Vec<u8> = Vec::new();
    let sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(sleep);
    while (out.lat_us.len() as u64) < events {
        let chunk = tokio::select! {
            biased;
            c = resp.chunk() => c.context("reading the watch")?,
            _ = &mut sleep => break,
        };
        let Some(chunk) = chunk else { bail!("the watch ended after {} events", out.lat_us.len()) };
        let now = Instant::now();
        let now_ns = now.duration_since(epoch).as_nanos() as u64;
        let before = out.lat_us.len();
        let mut rest: &[u8] = &chunk;
        if !carry.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(p) => {
                    carry.extend_from_slice(&rest[..p]);
                    on_line(&carry, &finder, now_ns, &mut out)?;
                    carry.clear();
                    rest = &rest[p + 1..];
                }
                None => {
                    carry.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        while let Some(p) = memchr::memchr(b'\n', rest) {
            on_line(&rest[..p], &finder, now_ns, &mut out)?;
            rest = &rest[p + 1..];
        }
        carry.extend_from_slice(rest);
        ensure!(carry.len() < 64 << 20, "a watch line longer than 64 MiB");
        if out.lat_us.len() > before {
            out.last = Some(now);
        }
    }
    Ok(out)
}

struct WatchResult {
    rate: f64,
    watchers: usize,
    events: u64,
    delivered: u64,
    setup: Duration,
    /// From the first mutation issued to the last one acknowledged.
    writing: Duration,
    /// From the first mutation issued to the last event received by the last watcher.
    total: Duration,
    /// Delivery latencies (µs), sorted.
    lat_us: Vec<u32>,
    /// Latencies of the mutations themselves (µs), sorted.
    mut_lat_us: Vec<u32>,
    server_cpu: f64,
    bench_cpu: f64,
    error: Option<String>,
}

/// `watchers` watches of all pods from the current revision, then `events` mutations (half
/// creates of fresh pods named `<prefix>-<i>`, then half merge patches of them) at `rate`/s.
async fn watch_phase(ctx: &Ctx, sizes: Sizes, rate: f64, cap: Duration, prefix: &'static str) -> Result<WatchResult> {
    let phase_deadline = (Instant::now() + cap).min(ctx.deadline);
    let (watchers, half) = (sizes.watchers, sizes.watch_events / 2);
    let events = half * 2;
    let probe = ctx.client(Some(REQUEST_TIMEOUT))?;
    let body = get_list(&probe, reqwest::Url::parse(&format!("{}/api/v1/pods?limit=1", ctx.base))?, "application/json").await?;
    let rv = serde_json::from_slice::<ListPage>(&body)?.metadata.resource_version;
    ensure!(!rv.is_empty(), "no resourceVersion in the list");
    let url = format!("{}/api/v1/pods?watch=true&resourceVersion={rv}", ctx.base);

    let setup_start = Instant::now();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers.max(1));
    let mut tasks = JoinSet::new();
    for _ in 0..watchers {
        let client = ctx.client(None)?;
        tasks.spawn(watcher(client, url.clone(), events, ctx.epoch, phase_deadline, ready_tx.clone()));
    }
    drop(ready_tx);
    timonier_bench::wait_watchers_started(&mut ready_rx, watchers, phase_deadline, &mut tasks).await?;
    let setup = setup_start.elapsed();

    let writers = clients(ctx, sizes.watch_writers).await?;
    let (cpu0, self0) = (proc_cpu(ctx.pid), proc_cpu(std::process::id()));
    // Paced open-loop writers: mutation i is issued at write_start + i/rate (or at once when
    // behind), stamped with the time just before it is issued.
    let write_start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut wtasks = JoinSet::new();
    for c in writers {
        let (next, pods, epoch) = (next.clone(), ctx.pods_url(), ctx.epoch);
        wtasks.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return Ok::<Vec<u32>, anyhow::Error>(lat);
                }
                if rate > 0.0 {
                    let at = write_start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(at.into()).await;
                }
                if Instant::now() > phase_deadline {
                    bail!("writes timed out at mutation {i}");
                }
                let ts = epoch.elapsed().as_nanos() as u64;
                let (req, expect) = if i < half {
                    let req = c
                        .post(&pods)
                        .header(CONTENT_TYPE, "application/json")
                        .header(ACCEPT, "application/json")
                        .body(pod_json(&format!("{prefix}-{i}"), Some(ts)));
                    (req, 201)
                } else {
                    let patch = format!(r#"{{"metadata":{{"annotations":{{"{SENT_ANNOTATION}":"{ts}"}}}}}}"#);
                    let req = c
                        .patch(format!("{pods}/{prefix}-{}", i - half))
                        .header(CONTENT_TYPE, "application/merge-patch+json")
                        .header(ACCEPT, "application/json")
                        .body(patch);
                    (req, 200)
                };
                let (status, body, us) = timed(req).await.with_context(|| format!("watch-phase mutation {i}"))?;
                ensure!(status.as_u16() == expect, "watch-phase mutation {i}: {status}: {}", snippet(&body));
                lat.push(us);
            }
        });
    }
    let mut error = None;
    let mut mut_lat_us = Vec::with_capacity(events as usize);
    while let Some(r) = wtasks.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(l) => mut_lat_us.extend(l),
            Err(e) => {
                error.get_or_insert(format!("writer: {e:#}"));
            }
        }
    }
    let writing = write_start.elapsed();
    mut_lat_us.sort_unstable();

    let mut all: Vec<u32> = Vec::with_capacity(watchers * events as usize);
    let mut last = write_start;
    while let Some(r) = tasks.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(out) => {
                all.extend_from_slice(&out.lat_us);
                if let Some(t) = out.last {
                    last = last.max(t);
                }
            }
            Err(e) => {
                error.get_or_insert(format!("watcher: {e:#}"));
            }
        }
    }
    let (server_cpu, bench_cpu) = (proc_cpu(ctx.pid) - cpu0, proc_cpu(std::process::id()) - self0);
    let delivered = all.len() as u64;
    if delivered < watchers as u64 * events && error.is_none() {
        error = Some(format!("incomplete: {delivered} of {} deliveries within {:.0} s", watchers as u64 * events, cap.as_secs_f64()));
    }
    all.sort_unstable();
    Ok(WatchResult {
        rate,
        watchers,
        events,
        delivered,
        setup,
        writing,
        total: last.duration_since(write_start),
        lat_us: all,
        mut_lat_us,
        server_cpu,
        bench_cpu,
        error,
    })
}

/// RSS of the server at one point, in kB: all, and its anonymous memory.
struct Rss {
    when: String,
    kb: Option<u64>,
    anon_kb: Option<u64>,
}

#[derive(Default)]
struct Report {
    start_ms: f64,
    rss: Vec<Rss>,
    hwm_kb: Option<u64>,
    http_version: String,
    creates_1: Option<MutRun>,
    creates_n: Option<MutRun>,
    deletes: Option<MutRun>,
    filled: u64,
    lists: Option<Result<ListResult, String>>,
    watch: Vec<Result<WatchResult, String>>,
}

impl Report {
    fn rss(&mut self, ctx: &Ctx, when: impl Into<String>) {
        let when = when.into();
        let kb = proc_status_kb(ctx.pid, "VmRSS:");
        let anon_kb = proc_status_kb(ctx.pid, "RssAnon:");
        eprintln!("server RSS {when}: {}", mib(kb));
        self.rss.push(Rss { when, kb, anon_kb });
    }
}

fn log_run(what: &str, r: &MutRun) {
    eprintln!(
        "{what}: {} in {:.2} s = {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; CPU: server {:.2} s, bench {:.2} s",
        r.done,
        r.elapsed.as_secs_f64(),
        r.rate(),
        pct(&r.lat_us, 0.5),
        pct(&r.lat_us, 0.99),
        pct(&r.lat_us, 1.0),
        r.server_cpu,
        r.bench_cpu
    );
}

async fn run(ctx: &Ctx, args: &Args, sizes: Sizes, report: &mut Report) -> Result<()> {
    // 0: idle RSS, before any client connects.
    tokio::time::sleep(Duration::from_secs(1)).await;
    report.rss(ctx, "idle, 1 s after start");

    // 1: creates, 1 client then N clients, after an untimed warm-up.
    let one = clients(ctx, 1).await?;
    {
        let v = one[0].get(format!("{}/api/v1/namespaces/{NAMESPACE}", ctx.base)).send().await?.version();
        report.http_version = format!("{v:?}");
    }
    let url = ctx.pods_url();
    mutate(ctx, &one, sizes.warmup, create_request(url.clone(), "warm"), 201, "warm-up creates").await?;
    let r = mutate(ctx, &one, sizes.creates_1, create_request(url.clone(), "one"), 201, "creates, 1 client").await?;
    log_run("creates, 1 client", &r);
    report.creates_1 = Some(r);
    ctx.check_deadline("the creates")?;
    let many = clients(ctx, sizes.clients).await?;
    let r = mutate(ctx, &many, sizes.creates_n, create_request(url.clone(), "many"), 201, "creates, N clients").await?;
    log_run(&format!("creates, {} clients", sizes.clients), &r);
    report.creates_n = Some(r);
    report.rss(ctx, format!("after the creates ({} pods)", thousands(sizes.warmup + sizes.creates_1 + sizes.creates_n)));

    // 2: exactly `list_pods` pods: delete the surplus (oldest first) or create the missing.
    let created = sizes.warmup + sizes.creates_1 + sizes.creates_n;
    if created > sizes.list_pods {
        let mut names: Vec<String> = (0..sizes.warmup).map(|i| format!("warm-{i}")).collect();
        names.extend((0..sizes.creates_1).map(|i| format!("one-{i}")));
        names.extend((0..sizes.creates_n).map(|i| format!("many-{i}")));
        names.truncate((created - sizes.list_pods) as usize);
        let names = Arc::new(names);
        let n = names.len() as u64;
        let make: MakeRequest = Arc::new(move |c: &reqwest::Client, i: u64| c.delete(format!("{url}/{}", names[i as usize])).header(ACCEPT, "application/json"));
        let r = mutate(ctx, &many, n, make, 200, "deletes").await?;
        log_run(&format!("deletes, {} clients", sizes.clients), &r);
        report.deletes = Some(r);
    } else if created < sizes.list_pods {
        let n = sizes.list_pods - created;
        let r = mutate(ctx, &many, n, create_request(url.clone(), "fill"), 201, "filling creates").await?;
        log_run("filling creates", &r);
        report.filled = n;
    }
    drop(many);
    ctx.check_deadline("the deletes")?;

    // 3: lists.
    eprintln!("lists of {} pods ...", sizes.list_pods);
    let l = lists(ctx, sizes).await.map_err(|e| format!("{e:#}"));
    if let Ok(l) = &l {
        eprintln!(
            "lists: raw best {:.1} / median {:.1} ms ({} bytes), paged ({} pages) best {:.1} / median {:.1} ms, kubectl median {}",
            best(&l.raw_ms),
            median(&l.raw_ms),
            l.body_bytes,
            l.pages,
            best(&l.paged_ms),
            median(&l.paged_ms),
            match &l.kubectl_ms {
                Ok(t) => format!("{:.0} ms", median(t)),
                Err(e) => e.clone(),
            }
        );
    } else if let Err(e) = &l {
        eprintln!("lists failed: {e}");
    }
    report.lists = Some(l);
    report.rss(ctx, format!("holding {} pods, after the lists", thousands(sizes.list_pods)));
    ctx.check_deadline("the lists")?;

    if args.hold_secs > 0 {
        let secs = args.hold_secs.min(600);
        eprintln!(
            "holding the server for {secs} s: pid {}, kubeconfig {}, admin certificate in {}",
            ctx.pid,
            ctx.kubeconfig.display(),
            ctx.kubeconfig.parent().map(|p| p.join("data/pki").display().to_string()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    // 4: watch fan-out, once per offered rate.
    let prefixes = ["wa", "wb", "wc", "wd", "we", "wf"];
    for (i, &rate) in args.watch_rates.iter().enumerate().take(prefixes.len()) {
        eprintln!(
            "watch: {} watchers x {} events at {} mutations/s ...",
            sizes.watchers,
            sizes.watch_events,
            if rate > 0.0 { format!("{rate:.0}") } else { "max".into() }
        );
        let w = watch_phase(ctx, sizes, rate, Duration::from_secs(args.watch_timeout_secs), prefixes[i]).await;
        match &w {
            Ok(w) => eprintln!(
                "watch: setup {:.2} s, writes {:.2} s, all delivered after {:.2} s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; mutations p99 {:.1} ms; CPU: server {:.2} s, bench {:.2} s{}",
                w.setup.as_secs_f64(),
                w.writing.as_secs_f64(),
                w.total.as_secs_f64(),
                pct(&w.lat_us, 0.5),
                pct(&w.lat_us, 0.99),
                pct(&w.lat_us, 1.0),
                pct(&w.mut_lat_us, 0.99),
                w.server_cpu,
                w.bench_cpu,
                w.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
            ),
            Err(e) => eprintln!("watch failed: {e:#}"),
        }
        report.watch.push(w.map_err(|e| format!("{e:#}")));
        // Let the server notice the closed watches.
        tokio::time::sleep(Duration::from_millis(500)).await;
        ctx.check_deadline("the watches")?;
    }
    let phases = args.watch_rates.len().min(prefixes.len()) as u64;
    report.rss(ctx, format!("after the watch phases ({} pods)", thousands(sizes.list_pods + phases * (sizes.watch_events / 2))));
    report.hwm_kb = proc_status_kb(ctx.pid, "VmHWM:");
    Ok(())
}

fn mib(kb: Option<u64>) -> String {
    match kb {
        Some(k) => format!("{:.1} MiB ({:.1} MB)", k as f64 / 1024.0, k as f64 * 1024.0 / 1e6),
        None => "?".into(),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The Git state the server was built from.
fn source_state(root: &Path) -> String {
    let root = root.to_string_lossy();
    let commit = sh("git", &["-C", &root, "rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["-C", &root, "status", "--porcelain", "--", "crates"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    format!("{commit}{}", if dirty { " with uncommitted changes in crates/" } else { "" })
}

fn ok(b: bool) -> &'static str {
    if b {
        "met"
    } else {
        "MISSED"
    }
}

fn lat3(v: &[u32]) -> String {
    format!("{:.2} / {:.2} / {:.2}", pct(v, 0.5), pct(v, 0.99), pct(v, 1.0))
}

fn rate_label(rate: f64, writers: usize) -> String {
    if rate > 0.0 {
        format!("offered at {rate:.0}/s")
    } else {
        format!("as fast as {writers} writers go")
    }
}

#[allow(clippy::too_many_arguments)]
fn print_report(args: &Args, sizes: Sizes, r: &Report, bin: &Path, root: &Path, load_before: &str, data_fs: &str) {
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<u64>().ok()))
        .map(|k| format!("{:.0} GiB RAM", k as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kubectl_version = sh(&args.kubectl.to_string_lossy(), &["version", "--client"]);
    let n = sizes.clients;
    let pods = thousands(sizes.list_pods);
    println!("## API server benchmark{}", if args.quick { " (--quick)" } else { "" });
    println!();
    println!("- date: {}", sh("date", &["-u"]));
    println!("- machine: {nproc} cores ({}), {mem}, Linux {}; server and benchmark share the cores", cpu_model(), sh("uname", &["-r"]));
    println!("- load average (1/5/15 min) before: {load_before}; after: {}", loadavg());
    let source = match (&args.server_note, &args.server_bin) {
        (Some(note), _) => note.clone(),
        (None, None) => format!("built from {}", source_state(root)),
        (None, Some(_)) => "given by --server-bin".into(),
    };
    println!(
        "- server: {} {source}, SQLite datastore on {data_fs}, ready {:.0} ms after spawn; clients: reqwest (rustls, {}), one TLS connection per client; {}",
        bin.display(),
        r.start_ms,
        r.http_version,
        if kubectl_version.is_empty() { "kubectl: ?".to_string() } else { format!("kubectl {kubectl_version}") }
    );
    println!(
        "- sizes: {} untimed warm-up creates, then {} creates with 1 client and {} with {n} clients (a Deployment-like pod, {} B of JSON); lists of {pods} pods ({} reps); watch: {} watchers x {} events ({} creates then {} merge patches) per phase, {} writers",
        sizes.warmup,
        thousands(sizes.creates_1),
        thousands(sizes.creates_n),
        pod_json("many-12345", None).len(),
        sizes.list_reps,
        sizes.watchers,
        thousands(sizes.watch_events),
        thousands(sizes.watch_events / 2),
        thousands(sizes.watch_events / 2),
        sizes.watch_writers
    );
    println!();
    println!("| measurement | result | goal |");
    println!("| --- | ---: | --- |");
    let mut goals: Vec<String> = Vec::new();
    let mut mutating: Vec<(String, f64)> = Vec::new();
    let mut loaded: Vec<(String, f64)> = Vec::new();
    let p99_goal = |v: &[u32]| format!("p99 ≤ 25 ms: {}", ok(pct(v, 0.99) <= 25.0));
    if let Some(c) = &r.creates_1 {
        println!("| pod creates/s, 1 client ({} creates) | {:.0} | |", thousands(c.done), c.rate());
        println!("| create latency p50 / p99 / max, 1 client (ms) | {} | {} |", lat3(&c.lat_us), p99_goal(&c.lat_us));
        mutating.push(("creates, 1 client".into(), pct(&c.lat_us, 0.99)));
    }
    if let Some(c) = &r.creates_n {
        println!("| pod creates/s, {n} clients ({} creates) | {:.0} | ≥ 3,000/s: {} |", thousands(c.done), c.rate(), ok(c.rate() >= 3000.0));
        println!("| create latency p50 / p99 / max, {n} clients (ms) | {} | {} |", lat3(&c.lat_us), p99_goal(&c.lat_us));
        goals.push(format!("≥ 3,000 pod creates/s with {n} clients: {:.0}/s, {}", c.rate(), ok(c.rate() >= 3000.0)));
        mutating.push((format!("creates, {n} clients"), pct(&c.lat_us, 0.99)));
    }
    if let Some(d) = &r.deletes {
        println!("| pod deletes/s, {n} clients ({} deletes, down to {pods} pods) | {:.0} | |", thousands(d.done), d.rate());
        println!("| delete latency p50 / p99 / max, {n} clients (ms) | {} | {} |", lat3(&d.lat_us), p99_goal(&d.lat_us));
        mutating.push((format!("deletes, {n} clients"), pct(&d.lat_us, 0.99)));
    }
    match &r.lists {
        Some(Ok(l)) => {
            match &l.kubectl_ms {
                Ok(t) => println!(
                    "| `kubectl get pods -A` ({pods} pods, > /dev/null), median / best of {} (ms) | {:.0} / {:.0} | (reference) |",
                    t.len(),
                    median(t),
                    best(t)
                ),
                Err(e) => println!("| `kubectl get pods -A` ({pods} pods) | failed: {e} | |"),
            }
            let (tb, tm) = (best(&l.table_ms), median(&l.table_ms));
            println!(
                "| the same {} Table pages as kubectl asks for, without kubectl, best / median (ms) | {tb:.0} / {tm:.0} | (reference) |",
                l.pages
            );
            let (rb, rm) = (best(&l.raw_ms), median(&l.raw_ms));
            println!(
                "| `GET /api/v1/pods` ({} pods, JSON, no limit, {:.1} MB), best / median of {} (ms) | {rb:.0} / {rm:.0} | ≤ 300 ms: {} |",
                thousands(l.pods),
                l.body_bytes as f64 / 1e6,
                l.raw_ms.len(),
                ok(rm <= 300.0)
            );
            let (pb, pm) = (best(&l.paged_ms), median(&l.paged_ms));
            println!(
                "| `GET /api/v1/pods?limit={}`, all {} pages, JSON, best / median of {} (ms) | {pb:.0} / {pm:.0} | ≤ 300 ms: {} |",
                sizes.page,
                l.pages,
                l.paged_ms.len(),
                ok(pm <= 300.0)
            );
            goals.push(format!("list of {pods} pods ≤ 300 ms, unpaginated (median): {rm:.0} ms, {}", ok(rm <= 300.0)));
            goals.push(format!("list of {pods} pods ≤ 300 ms, {} pages of {} (median): {pm:.0} ms, {}", l.pages, sizes.page, ok(pm <= 300.0)));
            if let Ok(t) = &l.kubectl_ms {
                goals.push(format!(
                    "(reference, no goal) `kubectl get pods -A` of {pods} pods, median: {:.0} ms ({} lines printed); its {} Table pages without kubectl: {tm:.0} ms",
                    median(t),
                    thousands(l.kubectl_lines as u64),
                    l.pages
                ));
            }
        }
        Some(Err(e)) => println!("| lists of {pods} pods | failed: {e} | |"),
        None => {}
    }
    for w in &r.watch {
        match w {
            Ok(w) => {
                let label = rate_label(w.rate, sizes.watch_writers);
                let incomplete = if w.error.is_some() { " (incomplete)" } else { "" };
                println!(
                    "| watch, {label}: delivery latency p50 / p99 / max to {} watchers (ms) | {}{incomplete} | |",
                    w.watchers,
                    lat3(&w.lat_us)
                );
                println!(
                    "| watch, {label}: all {} deliveries ({} events x {}) after (s) | {:.2}{incomplete} | |",
                    thousands(w.watchers as u64 * w.events),
                    thousands(w.events),
                    w.watchers,
                    w.total.as_secs_f64()
                );
                println!(
                    "| watch, {label}: creates and patches, latency p50 / p99 / max (ms) | {} | {} |",
                    lat3(&w.mut_lat_us),
                    p99_goal(&w.mut_lat_us)
                );
                loaded.push((label, pct(&w.mut_lat_us, 0.99)));
            }
            Err(e) => println!("| watch | failed: {e} | |"),
        }
    }
    for (i, s) in r.rss.iter().enumerate() {
        let goal = if i == 0 {
            let met = s.kb.is_some_and(|k| k as f64 * 1024.0 <= 30e6);
            goals.push(format!("idle RSS ≤ 30 MB: {}, {}", mib(s.kb), ok(met)));
            format!("≤ 30 MB: {}", ok(met))
        } else {
            String::new()
        };
        println!(
            "| server RSS, {} | {}; anon {} | {goal} |",
            s.when,
            mib(s.kb),
            s.anon_kb.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or("?".into())
        );
    }
    println!("| server peak RSS (VmHWM) | {} | |", mib(r.hwm_kb));
    println!();
    let line = |v: &[(String, f64)]| v.iter().map(|(w, p)| format!("{w} {p:.1} ms")).collect::<Vec<_>>().join(", ");
    let worst = |v: &[(String, f64)]| v.iter().map(|(_, p)| *p).fold(0.0, f64::max);
    if !mutating.is_empty() {
        goals.insert(1.min(goals.len()), format!("p99 mutating latency ≤ 25 ms: {}; {}", line(&mutating), ok(worst(&mutating) <= 25.0)));
    }
    if !loaded.is_empty() {
        goals.insert(
            2.min(goals.len()),
            format!("p99 mutating latency ≤ 25 ms with {} watchers following: {}; {}", sizes.watchers, line(&loaded), ok(worst(&loaded) <= 25.0)),
        );
    }
    println!("Goals:");
    for g in &goals {
        println!("- {g}");
    }
    println!();
    println!("Detail:");
    let cpu = |what: &str, m: &MutRun| {
        println!(
            "- {what}: {:.2} s; CPU: server {:.2} s ({:.0} µs per request, {:.2} cores), benchmark {:.2} s",
            m.elapsed.as_secs_f64(),
            m.server_cpu,
            m.server_cpu * 1e6 / m.done.max(1) as f64,
            m.server_cpu / m.elapsed.as_secs_f64().max(1e-9),
            m.bench_cpu
        )
    };
    if let Some(c) = &r.creates_1 {
        cpu("creates, 1 client", c);
    }
    if let Some(c) = &r.creates_n {
        cpu(&format!("creates, {n} clients"), c);
    }
    if let Some(d) = &r.deletes {
        cpu(&format!("deletes, {n} clients"), d);
    }
    if r.filled > 0 {
        println!("- {} pods created (untimed) to reach {pods}", thousands(r.filled));
    }
    if let (Some(first), Some(held)) = (r.rss.first().and_then(|s| s.kb), r.rss.iter().find(|s| s.when.starts_with("holding")).and_then(|s| s.kb)) {
        println!(
            "- RSS holding {pods} pods − idle RSS, ÷ {pods}: {:.1} KiB per pod (this includes the watch cache's history of recent events, and what the allocator kept of earlier pods)",
            held.saturating_sub(first) as f64 / sizes.list_pods.max(1) as f64
        );
    }
    for w in r.watch.iter().flatten() {
        println!(
            "- watch, {}: {} of {} deliveries, watches set up in {:.2} s, mutations issued over {:.2} s ({:.0}/s), {:.0} deliveries/s; CPU: server {:.2} s ({:.0} µs per delivery), benchmark {:.2} s{}",
            rate_label(w.rate, sizes.watch_writers),
            thousands(w.delivered),
            thousands(w.watchers as u64 * w.events),
            w.setup.as_secs_f64(),
            w.writing.as_secs_f64(),
            w.mut_lat_us.len() as f64 / w.writing.as_secs_f64().max(1e-9),
            w.delivered as f64 / w.total.as_secs_f64().max(1e-9),
            w.server_cpu,
            w.server_cpu * 1e6 / w.delivered.max(1) as f64,
            w.bench_cpu,
            w.error.as_ref().map(|e| format!(" — {e}")).unwrap_or_default()
        );
    }
}

/// Prints the server's threads and their frames in the project's code (`gdb`, if installed),
/// to tell a stuck server (a deadlock) from a slow one.
fn print_stacks(pid: u32) {
    let child = Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("  (no gdb: install it to see the stacks)");
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let Ok(out) = child.wait_with_output() else { return };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut printed = 0;
    for line in text.lines() {
        let keep = line.starts_with("Thread ") || line.contains(" at crates/") || line.contains("rwlock") || line.contains("mutex");
        if keep && printed < 80 {
            eprintln!("  {}", &line[..line.len().min(200)]);
            printed += 1;
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut sizes = if args.quick {
        Sizes {
            warmup: 200,
            creates_1: 1_000,
            creates_n: 5_000,
            clients: args.clients,
            list_pods: args.list_pods,
            list_reps: 5,
            page: 500,
            kubectl_reps: 5,
            watchers: 100,
            watch_events: 500,
            watch_writers: 8,
        }
    } else {
        Sizes {
            warmup: 200,
            creates_1: 3_000,
            creates_n: 20_000,
            clients: args.clients,
            list_pods: args.list_pods,
            list_reps: 5,
            page: 500,
            kubectl_reps: 5,
            watchers: 100,
            watch_events: 2_000,
            watch_writers: 8,
        }
    };
    if let Some(n) = args.creates_1 {
        sizes.creates_1 = n;
    }
    if let Some(n) = args.creates_n {
        sizes.creates_n = n;
    }
    if let Some(w) = args.watchers {
        sizes.watchers = w;
    }
    if let Some(e) = args.watch_events {
        sizes.watch_events = e;
    }
    let root = timonier_bench::workspace_root();
    let bin = match timonier_bench::server_binary(args.server_bin.as_deref(), args.no_build) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("apiserver benchmark: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if !args.kubectl.exists() {
        eprintln!("warning: {} not found; the kubectl figure will be missing", args.kubectl.display());
    }

    let load_before = loadavg();
    // The guard first, so that it outlives the runtime and every task in it: the server is
    // stopped and its directory removed at the end of main whatever happened.
    let started = Instant::now();
    let server = timonier_testkit::Server::start(&bin, &[]);
    let start_ms = started.elapsed().as_secs_f64() * 1000.0;
    let pki = server.dir.path().join("data").join("pki");
    let read = |f: &str| std::fs::read(pki.join(f)).with_context(|| format!("reading {}", pki.join(f).display()));
    let (ca, cert, key) = match (read("ca.crt"), read("admin.crt"), read("admin.key")) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (a, b, c) => {
            let e = a.err().or(b.err()).or(c.err()).map(|e| format!("{e:#}")).unwrap_or_default();
            eprintln!("apiserver benchmark: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(pid) = server.pid() else {
        eprintln!("apiserver benchmark: the server has no pid");
        return ExitCode::FAILURE;
    };
    let scratch = server.dir.path().join("bench");
    let _ = std::fs::create_dir_all(&scratch);
    let data_fs = sh("stat", &["-f", "-c", "%T", &server.dir.path().to_string_lossy()]);
    let mut identity = cert;
    identity.push(b'\n');
    identity.extend_from_slice(&key);
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let ctx = Ctx {
        base: format!("https://127.0.0.1:{}", server.port),
        ca,
        identity,
        pid,
        kubeconfig: server.kubeconfig.clone(),
        scratch,
        kubectl: args.kubectl.clone(),
        epoch: Instant::now(),
        deadline,
    };
    eprintln!("server pid {pid} on {} (data in {}), ready after {start_ms:.0} ms", ctx.base, server.dir.path().display());

    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report { start_ms, ..Default::default() };
    let result = rt.block_on(async {
        tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), run(&ctx, &args, sizes, &mut report)) => {
                r.unwrap_or_else(|_| Err(anyhow!("overall timeout of {} s", args.timeout_secs)))
            }
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    // Cancels whatever tasks are left (watchers, kubectl children: killed on drop) before the
    // server and its directory go.
    rt.shutdown_timeout(Duration::from_secs(10));
    let code = match result {
        Ok(()) => {
            print_report(&args, sizes, &report, &bin, &root, &load_before, &data_fs);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("apiserver benchmark failed: {e:#}");
            if format!("{e:#}").contains("timed out") {
                eprintln!("a request took more than {} s: where the server's threads are:", REQUEST_TIMEOUT.as_secs());
                print_stacks(pid);
            }
            let log = server.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("last lines of the server log:");
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
            ExitCode::FAILURE
        }
    };
    drop(server);
    code
}
