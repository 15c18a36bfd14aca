//! Node agent benchmark: a real control plane (`timonier server --disable-agent`) and a real
//! agent (`timonier agent`, its own process so its RSS is its own), the release build, pods
//! pulled from Debian's docker-registry on loopback. Needs root.
//!
//! `cargo run --release -p timonier-bench --bin node -- [--pods 200] [--serial 30]`
//!
//! Figures, from one run:
//! - the floor: raw container create+start+wait+delete of `true` through the pod shim
//!   (libcontainer in its single-threaded process), median and p99 of `--serial` runs;
//! - one pod at a time (`--serial` pods, busybox `sleep`, image cached): from the create
//!   (which binds it, `spec.nodeName` set) to Running and to Ready as seen by a watch, p50/p99;
//! - `--pods` pods created at once (32 clients): time until all are Running and Ready;
//! - the agent's RSS idle (0 pods) and holding `--pods` pods, and the shims' RSS per pod.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use timonier_bench::{cpu_model, loadavg, sh};
use timonier_testkit::{free_port, ChildGuard, Registry, Server};

#[derive(Parser, Debug)]
#[command(about = "Node agent benchmark: pod start latency, many pods at once, agent memory")]
struct Args {
    /// Pods created at once.
    #[arg(long, default_value_t = 200)]
    pods: usize,
    /// Pods started one after the other (latency samples), and floor samples.
    #[arg(long, default_value_t = 30)]
    serial: usize,
    /// The `timonier` binary (default: the workspace's release build, built first).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    #[arg(long)]
    no_build: bool,
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "node"}},
        "spec": {"nodeName": "bench-node", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "busybox:1.35", "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]},
    }))
    .expect("static pod")
}

fn ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn kb_field(path: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn rss_kb(pid: u32) -> Option<u64> {
    kb_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Proportional set size: shared pages (the binary's text, shared by every shim) divided
/// among the processes sharing them — what a process really costs.
fn pss_kb(pid: u32) -> Option<u64> {
    kb_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// PIDs of the pod shims of an agent data dir.
fn shim_pids(agent_dir: &Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(agent_dir.join("pods")) else { return vec![] };
    rd.flatten().filter_map(|e| std::fs::read_to_string(e.path().join("sandbox/shim.pid")).ok()?.trim().parse().ok()).collect()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// When each pod was first seen Running and Ready.
#[derive(Default)]
struct Seen {
    running: HashMap<String, Instant>,
    ready: HashMap<String, Instant>,
}

async fn watch_pods(api: Api<Pod>, seen: Arc<std::sync::Mutex<Seen>>, notify: Arc<tokio::sync::Notify>) {
    let mut s = watcher(api, watcher::Config::default().labels("bench=node")).boxed();
    while let Some(ev) = s.next().await {
        let pods = match ev {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => vec![p],
            _ => continue,
        };
        let now = Instant::now();
        if let Ok(mut seen) = seen.lock() {
            for p in pods {
                let name = p.metadata.name.clone().unwrap_or_default();
                if running(&p) {
                    seen.running.entry(name.clone()).or_insert(now);
                }
                if ready(&p) {
                    seen.ready.entry(name).or_insert(now);
                }
            }
        }
        notify.notify_waiters();
    }
}

async fn wait_for(seen: &std::sync::Mutex<Seen>, notify: &tokio::sync::Notify, names: &[String], deadline: Instant) -> Result<()> {
    loop {
        let done = seen.lock().map(|s| names.iter().all(|n| s.ready.contains_key(n))).unwrap_or(false);
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            let got = seen.lock().map(|s| names.iter().filter(|n| s.ready.contains_key(*n)).count()).unwrap_or(0);
            return Err(anyhow!("only {got} of {} pods Ready before the deadline", names.len()));
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), notify.notified()).await;
    }
}

/// The floor: create+start+wait+delete of `true` through a pod shim.
async fn floor(bin: &Path, lower: &Path, samples: usize) -> Result<Vec<f64>> {
    use timonier_runtime::bundle::ContainerSpec;
    use timonier_runtime::shim::ShimClient;
    let dir = timonier_testkit::temp_dir("timonier-bench-floor-");
    let state = dir.path().join("sandbox");
    let shim = ShimClient::start(bin, &["shim"], &state, "floor").await.context("cannot start a shim")?;
    let mut out = vec![];
    for i in 0..samples {
        let spec = ContainerSpec {
            id: format!("floor{i}"),
            lower_dirs: vec![lower.to_path_buf()],
            args: vec!["/bin/true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            cgroup_path: format!("/timonier/bench-floor/{i}"),
            log_path: dir.path().join(format!("{i}.log")),
            log_max_bytes: 1 << 20,
            log_max_files: 1,
            sandbox_pid: shim.pid() as u32,
            ..Default::default()
        };
        let t = Instant::now();
        shim.create(&spec).await.context("create")?;
        loop {
            let st = shim.status().await?;
            if st.iter().any(|s| s.id == spec.id && !s.running) {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        shim.remove(&spec.id).await?;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    shim.shutdown(0).await?;
    Ok(out)
}

async fn run(args: &Args, bin: &Path) -> Result<()> {
    let registry = Registry::start().map_err(|e| anyhow!(e))?;
    let images = timonier_testkit::temp_dir("timonier-bench-images-");
    let layout = images.path().join("busybox");
    timonier_testkit::images::busybox_image(&layout).map_err(|e| anyhow!(e))?;
    timonier_testkit::images::push(registry.addr(), &layout, "library/busybox:1.35").await.map_err(|e| anyhow!(e))?;
    let regcfg = images.path().join("registries.yaml");
    std::fs::write(&regcfg, format!("mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n", registry.addr()))?;

    // With its scheduler and controllers, for the Deployment phase; the other phases' pods
    // name their node.
    let server = Server::start_control_plane(bin, &[]);
    let agent_dir = server.dir.path().join("agent");
    let port = free_port().to_string();
    let log = std::fs::File::create(server.dir.path().join("agent.log"))?;
    let agent = std::process::Command::new(bin)
        .args(["agent", "--kubeconfig"])
        .arg(&server.kubeconfig)
        .arg("--data-dir")
        .arg(&agent_dir)
        .args(["--node-name", "bench-node", "--node-ip", "127.0.0.1", "--kubelet-port", &port, "--bridge", "tmnbench0", "--registry-config"])
        .arg(&regcfg)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the agent")?;
    let agent = ChildGuard(agent);
    let result = measure(args, bin, &server, &agent, &agent_dir).await;
    drop(agent);
    timonier_kubelet::cleanup_node(&agent_dir).await;
    result
}

async fn measure(args: &Args, bin: &Path, server: &Server, agent: &ChildGuard, agent_dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(&server.kubeconfig)?;
    let kc = kube::config::Kubeconfig::from_yaml(&text)?;
    let client = kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?)?;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.get_opt("bench-node").await?.and_then(|n| n.spec?.pod_cidr).is_none() {
        anyhow::ensure!(Instant::now() < deadline, "the agent did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_kb = rss_kb(agent.pid());
    let idle_pss = pss_kb(agent.pid());

    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let notify = Arc::new(tokio::sync::Notify::new());
    let w = tokio::spawn(watch_pods(api.clone(), seen.clone(), notify.clone()));

    // Warm-up: the image is pulled once.
    api.create(&PostParams::default(), &pod("warmup")).await?;
    wait_for(&seen, &notify, &["warmup".into()], Instant::now() + Duration::from_secs(60)).await?;
    api.delete("warmup", &DeleteParams::default()).await?;

    // The floor, from the same binary's shim, on the image's unpacked layer.
    let store = timonier_runtime::images::ImageStore::open(agent_dir.join("images"))?;
    let image = store.get("docker.io/library/busybox:1.35")?;
    let lower = store.lower_dirs(&image)?.into_iter().next().ok_or_else(|| anyhow!("image has no layer"))?;
    let mut floor_ms = floor(bin, &lower, args.serial).await?;

    // One at a time.
    let mut to_running = vec![];
    let mut to_ready = vec![];
    for i in 0..args.serial {
        let name = format!("serial-{i}");
        let t = Instant::now();
        api.create(&PostParams::default(), &pod(&name)).await?;
        wait_for(&seen, &notify, std::slice::from_ref(&name), Instant::now() + Duration::from_secs(60)).await?;
        {
            let s = seen.lock().map_err(|_| anyhow!("poisoned"))?;
            to_running.push(s.running[&name].duration_since(t).as_secs_f64() * 1000.0);
            to_ready.push(s.ready[&name].duration_since(t).as_secs_f64() * 1000.0);
        }
        api.delete(&name, &DeleteParams::default()).await?;
    }
    // Let the serial pods go before the burst.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !shim_pids(agent_dir).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Many at once.
    let names: Vec<String> = (0..args.pods).map(|i| format!("burst-{i}")).collect();
    let t = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut creates = tokio::task::JoinSet::new();
    for n in names.clone() {
        let api = api.clone();
        let permit = sem.clone().acquire_owned().await?;
        creates.spawn(async move {
            let r = api.create(&PostParams::default(), &pod(&n)).await;
            drop(permit);
            r.map(|_| ())
        });
    }
    while let Some(r) = creates.join_next().await {
        r??;
    }
    let created = t.elapsed();
    wait_for(&seen, &notify, &names, Instant::now() + Duration::from_secs(300)).await?;
    let all_ready = t.elapsed();
    let all_running = {
        let s = seen.lock().map_err(|_| anyhow!("poisoned"))?;
        names.iter().filter_map(|n| s.running.get(n)).max().map(|m| m.duration_since(t)).unwrap_or_default()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy_kb = rss_kb(agent.pid());
    let busy_pss = pss_kb(agent.pid());
    let shims = shim_pids(agent_dir);
    let shim_kb: u64 = shims.iter().filter_map(|p| rss_kb(*p)).sum();
    let shim_pss: u64 = shims.iter().filter_map(|p| pss_kb(*p)).sum();
    w.abort();

    println!("## Node agent benchmark ({})", jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"));
    println!();
    println!("Machine: {} cores, {}, kernel {}; load before: {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), cpu_model(), sh("uname", &["-r"]), loadavg());
    println!("Binary: {} (release); agent as its own process; image busybox (cached after a warm-up pull)", bin.display());
    println!();
    println!("| measure | p50 | p99 | max |");
    println!("|---|---|---|---|");
    let n = floor_ms.len();
    let row = |what: &str, v: &mut Vec<f64>| {
        let (a, b) = (pct(v, 0.5), pct(v, 0.99));
        let m = v.iter().cloned().fold(f64::NAN, f64::max);
        println!("| {what} | {a:.1} ms | {b:.1} ms | {m:.1} ms |");
    };
    row(&format!("floor: container create+start+wait+delete of `true` through the shim ({n} runs)"), &mut floor_ms);
    row(&format!("pod create → Running, one at a time ({} pods)", to_running.len()), &mut to_running);
    row(&format!("pod create → Ready, one at a time ({} pods)", to_ready.len()), &mut to_ready);
    println!();
    println!("{} pods created at once (32 clients; creates took {:.2} s): all Running after {:.2} s, all Ready after {:.2} s.", args.pods, created.as_secs_f64(), all_running.as_secs_f64(), all_ready.as_secs_f64());
    println!();
    let mib = |kb: Option<u64>| kb.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "?".into());
    println!("Agent RSS (PSS): idle {} ({}); holding {} pods {} ({}).", mib(idle_kb), mib(idle_pss), args.pods, mib(busy_kb), mib(busy_pss));
    println!(
        "Their {} shims: RSS {} in all ({:.0} KiB each), PSS {} in all ({:.0} KiB each; RSS counts the binary's shared text once per shim).",
        shims.len(),
        mib(Some(shim_kb)),
        shim_kb as f64 / shims.len().max(1) as f64,
        mib(Some(shim_pss)),
        shim_pss as f64 / shims.len().max(1) as f64
    );

    // Leave nothing running.
    for n in &names {
        let _ = api.delete(n, &DeleteParams::default()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !shim_pids(agent_dir).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The seed's claim, the way its author measured it: a Deployment of N replicas, through
    // the controllers and the scheduler, until all are ready — at most 100 here, since the
    // scheduler keeps to the node's 110 pods as upstream's does.
    let replicas = args.pods.min(100);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), "default");
    let mut d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "scaled"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "scaled"}},
                 "template": {"metadata": {"labels": {"app": "scaled"}},
                              "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "busybox:1.35", "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]}}},
    }))?;
    let t = Instant::now();
    deployments.create(&PostParams::default(), &d).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        d = deployments.get("scaled").await?;
        if d.status.as_ref().and_then(|s| s.ready_replicas) == Some(replicas as i32) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the deployment did not get ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!();
    println!("A Deployment of {replicas} replicas (controllers, scheduler, agent): all ready after {:.2} s.", t.elapsed().as_secs_f64());
    deployments.delete("scaled", &DeleteParams::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !shim_pids(agent_dir).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("node benchmark: must run as root (it runs real containers)");
        return ExitCode::FAILURE;
    }
    let bin = match timonier_bench::server_binary(args.server_bin.as_deref(), args.no_build) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("node benchmark: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("node benchmark: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args, &bin)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node benchmark: {e:#}");
            ExitCode::FAILURE
        }
    }
}
