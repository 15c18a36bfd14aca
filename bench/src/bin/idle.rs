//! A one-node cluster at rest: `timonier server` with its node agent (one process, as
//! `timonier start` runs it), busybox from Debian's docker-registry on loopback. Needs root.
//!
//! `cargo run --release -p timonier-bench --bin idle -- [--idle 60] [--churn 200]`
//!
//! Figures, from one run:
//! - the server's RSS fresh (the node Ready, nothing of the user's running);
//! - a Deployment of `--pods` replicas Ready, then `--idle` s at rest: the server's CPU and the
//!   pods' shims' together, in % of one core (issue 14: ≤ 0.5 %);
//! - a second Deployment of `--churn` replicas comes and goes (all Ready, then deleted and
//!   gone); after `--settle` s, the server's RSS against its RSS before (issue 14: within 10 %).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::json;
use timonier_bench::{cpu_model, loadavg, proc_cpu, proc_status_kb, sh, Rest};
use timonier_testkit::{free_port, Registry, Server};

#[derive(Parser, Debug)]
#[command(about = "A one-node cluster at rest: idle CPU, and memory after pods come and go")]
struct Args {
    /// Replicas running while the cluster idles.
    #[arg(long, default_value_t = 10)]
    pods: u32,
    /// Seconds at rest measured.
    #[arg(long, default_value_t = 60)]
    idle: u64,
    /// Replicas of the Deployment that comes and goes.
    #[arg(long, default_value_t = 200)]
    churn: u32,
    /// Seconds left to the server after the churn, before its RSS is read.
    #[arg(long, default_value_t = 30)]
    settle: u64,
    /// The `timonier` binary (default: the workspace's release build, built first).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    #[arg(long)]
    no_build: bool,
}

const NS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn deployment(name: &str, replicas: u32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": "busybox:1.35", "command": ["sleep", "3600"]}]}},
        },
    })
}

/// Waits until the Deployment reports `replicas` ready; how long it took.
async fn ready(api: &Rest, name: &str, replicas: u32) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let d = api.get(&format!("{NS}/{name}")).await?;
        if d["status"]["readyReplicas"].as_u64().unwrap_or(0) >= u64::from(replicas) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("{name}: {} of {replicas} ready after 5 min", d["status"]["readyReplicas"]);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// PIDs of the pod shims of an agent data dir.
fn shim_pids(agent_dir: &Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(agent_dir.join("pods")) else { return vec![] };
    rd.flatten().filter_map(|e| std::fs::read_to_string(e.path().join("sandbox/shim.pid")).ok()?.trim().parse().ok()).collect()
}

fn rss_mb(pid: u32) -> f64 {
    proc_status_kb(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0
}

async fn measure(args: &Args, server: &Server, agent_dir: &Path) -> Result<()> {
    let pid = server.pid().context("server pid")?;
    let api = Rest::new(server)?;
    let node = "bench-idle";
    let started = Instant::now();
    loop {
        let n = api.get(&format!("/api/v1/nodes/{node}")).await.unwrap_or_default();
        let conditions = n["status"]["conditions"].as_array().cloned().unwrap_or_default();
        if conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True") {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the node was not Ready after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Past start-up (mirror pods, cluster DNS, the first status reports).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let fresh = rss_mb(pid);

    api.post(NS, &deployment("idle", args.pods)).await?;
    let idle_ready = ready(&api, "idle", args.pods).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let shims = shim_pids(agent_dir);
    let cpu = |pids: &[u32]| pids.iter().map(|p| proc_cpu(*p)).sum::<f64>();
    let before = (proc_cpu(pid), cpu(&shims));
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let server_cpu = (proc_cpu(pid) - before.0) / args.idle as f64 * 100.0;
    let shims_cpu = (cpu(&shims) - before.1) / args.idle as f64 * 100.0;
    let with_pods = rss_mb(pid);

    api.post(NS, &deployment("churn", args.churn)).await?;
    let churn_ready = ready(&api, "churn", args.churn).await?;
    let peak = rss_mb(pid);
    api.delete(&format!("{NS}/churn")).await?;
    let started = Instant::now();
    loop {
        let (pods, _) = api.list_all("/api/v1/namespaces/default/pods?labelSelector=app%3Dchurn").await?;
        if pods.is_empty() {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("{} churn pods left 5 min after the Deployment's deletion", pods.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let gone = started.elapsed();
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let after = rss_mb(pid);

    println!("## A one-node cluster at rest ({})", jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"));
    println!();
    println!("Machine: {}, {} cores, kernel {}", cpu_model(), sh("nproc", &[]), sh("uname", &["-r"]).trim());
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| server RSS fresh (node Ready, 10 s after) | {fresh:.1} MB |");
    println!("| Deployment of {} replicas Ready | {:.2} s |", args.pods, idle_ready.as_secs_f64());
    println!("| {} s at rest: server CPU | {server_cpu:.2} % of a core |", args.idle);
    println!("| … its {} shims' CPU | {shims_cpu:.2} % of a core |", shims.len());
    println!("| server RSS with {} pods | {with_pods:.1} MB |", args.pods);
    println!("| Deployment of {} more replicas Ready | {:.2} s (RSS then {peak:.1} MB) |", args.churn, churn_ready.as_secs_f64());
    println!("| … deleted, all gone after | {:.2} s |", gone.as_secs_f64());
    println!("| server RSS {} s later | {after:.1} MB ({:+.0} % of {with_pods:.1}) |", args.settle, (after / with_pods - 1.0) * 100.0);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let run = || -> Result<()> {
        let bin = timonier_bench::server_binary(args.server_bin.as_deref(), args.no_build)?;
        let load = loadavg();
        let rt = tokio::runtime::Runtime::new()?;
        let registry = Registry::start().map_err(|e| anyhow!(e))?;
        let images = timonier_testkit::temp_dir("timonier-bench-images-");
        let layout = images.path().join("busybox");
        timonier_testkit::images::busybox_image(&layout).map_err(|e| anyhow!(e))?;
        rt.block_on(timonier_testkit::images::push(registry.addr(), &layout, "library/busybox:1.35")).map_err(|e| anyhow!(e))?;
        let regcfg = images.path().join("registries.yaml");
        std::fs::write(&regcfg, format!("mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n", registry.addr()))?;
        let regcfg = regcfg.to_string_lossy().into_owned();
        let port = free_port().to_string();
        // Room for the churn beside the idle pods and the system's (the default is 110 a node).
        let flags = ["--node-name", "bench-idle", "--node-ip", "127.0.0.1", "--kubelet-port", &port, "--bridge", "tmnidle0", "--registry-config", &regcfg, "--max-pods", "250"];
        eprintln!("load before: {load}");
        let mut server = Server::start_with_agent(&bin, &flags);
        let agent_dir = server.dir.path().join("data/agent");
        let result = rt.block_on(measure(&args, &server, &agent_dir));
        server.stop();
        rt.block_on(timonier_kubelet::cleanup_node(&agent_dir));
        result
    };
    timonier_bench::exit(run())
}
