//! Cluster scale with simulated nodes: a control plane (API server, scheduler, controllers;
//! SQLite) and `timonier agent --fake --count N` in a process of its own, then, in turn:
//! - how long until N fake nodes are Ready;
//! - what their heartbeats cost (CPU of the server and of the fake agent over `--idle` s, in
//!   % of one core);
//! - a Deployment of `--pods` replicas: until every pod is scheduled (pods/s), and until the
//!   Deployment reports them all ready;
//! - the server's RSS before and after, per pod;
//! - listing every pod: the first page (`limit=500`) and the whole list, in pages of 500 as
//!   kubectl asks.
//!
//! `cargo run --release -p timonier-bench --bin scale -- [--nodes 5000] [--pods 20000] [--server-bin PATH]`

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use timonier_bench::{cpu_model, loadavg, proc_cpu, proc_status_kb, sh, Rest};
use timonier_testkit::{ChildGuard, Server};

#[derive(Parser, Debug)]
#[command(about = "Scale: fake nodes, their heartbeats, a large Deployment, lists")]
struct Args {
    #[arg(long, default_value_t = 5000)]
    nodes: u32,
    #[arg(long, default_value_t = 20000)]
    pods: u32,
    /// Seconds of idle heartbeats measured.
    #[arg(long, default_value_t = 60)]
    idle: u64,
    /// The `timonier` binary (default: the workspace's release build, built first).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    #[arg(long)]
    no_build: bool,
}

fn ready_nodes(items: &[Value]) -> usize {
    items
        .iter()
        .filter(|n| n["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")))
        .count()
}

/// CPU used by `pid` over `secs`, in % of one core.
fn cpu_percent(pids: &[u32], secs: u64) -> Vec<f64> {
    let before: Vec<f64> = pids.iter().map(|p| proc_cpu(*p)).collect();
    std::thread::sleep(Duration::from_secs(secs));
    pids.iter().zip(before).map(|(p, b)| (proc_cpu(*p) - b) / secs as f64 * 100.0).collect()
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let run = || -> Result<()> {
        let bin = timonier_bench::server_binary(args.server_bin.as_deref(), args.no_build)?;
        let load = loadavg();
        let server = Server::start_control_plane(&bin, &[]);
        let server_pid = server.pid().context("server pid")?;
        let api = Rest::new(&server)?;
        let rt = tokio::runtime::Runtime::new()?;
        let rss_fresh = proc_status_kb(server_pid, "VmRSS:").unwrap_or(0);

        let dir = timonier_testkit::temp_dir("timonier-bench-scale-");
        let log = std::fs::File::create(dir.path().join("fake.log"))?;
        let started = Instant::now();
        let fake = std::process::Command::new(&bin)
            .args(["agent", "--fake", "--count", &args.nodes.to_string(), "--kubeconfig"])
            .arg(&server.kubeconfig)
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("timonier agent --fake")?;
        let fake = ChildGuard(fake);
        let fake_pid = fake.pid();
        let nodes_ready = rt.block_on(async {
            loop {
                let (items, _) = api.list_all("/api/v1/nodes").await?;
                if ready_nodes(&items) >= args.nodes as usize {
                    return Ok::<_, anyhow::Error>(started.elapsed());
                }
                if started.elapsed() > Duration::from_secs(600) {
                    bail!("only {} of {} nodes Ready after 10 min", ready_nodes(&items), args.nodes);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })?;
        eprintln!("{} nodes Ready after {:.1} s; measuring {} s of heartbeats", args.nodes, nodes_ready.as_secs_f64(), args.idle);
        // Past the registration burst: a whole lease period of steady heartbeats first.
        std::thread::sleep(Duration::from_secs(10));
        let idle = cpu_percent(&[server_pid, fake_pid], args.idle);
        let rss_nodes = proc_status_kb(server_pid, "VmRSS:").unwrap_or(0);

        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "scale", "namespace": "default"},
            "spec": {
                "replicas": args.pods,
                "selector": {"matchLabels": {"app": "scale"}},
                "template": {"metadata": {"labels": {"app": "scale"}}, "spec": {"containers": [{"name": "app", "image": "registry.local/app:1",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}},
            },
        });
        let started = Instant::now();
        let cpu_before = [proc_cpu(server_pid), proc_cpu(fake_pid)];
        rt.block_on(api.post("/apis/apps/v1/namespaces/default/deployments", &deployment))?;
        let (scheduled, ready) = rt.block_on(async {
            let mut scheduled = None;
            loop {
                let (pods, _) = api.list_all("/api/v1/namespaces/default/pods?labelSelector=app%3Dscale").await?;
                let bound = pods.iter().filter(|p| p["spec"]["nodeName"].is_string()).count();
                if scheduled.is_none() && bound >= args.pods as usize {
                    scheduled = Some(started.elapsed());
                }
                let d = api.get("/apis/apps/v1/namespaces/default/deployments/scale").await?;
                if d["status"]["readyReplicas"].as_u64() == Some(u64::from(args.pods)) {
                    return Ok::<_, anyhow::Error>((scheduled.unwrap_or_else(|| started.elapsed()), started.elapsed()));
                }
                if started.elapsed() > Duration::from_secs(1800) {
                    bail!("{bound} of {} pods bound, {} ready after 30 min", args.pods, d["status"]["readyReplicas"]);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })?;
        let cpu_pods = [proc_cpu(server_pid) - cpu_before[0], proc_cpu(fake_pid) - cpu_before[1]];
        std::thread::sleep(Duration::from_secs(5));
        let rss_pods = proc_status_kb(server_pid, "VmRSS:").unwrap_or(0);
        let (pods, first_page) = rt.block_on(api.list_all("/api/v1/pods"))?;
        let started = Instant::now();
        let (again, _) = rt.block_on(api.list_all("/api/v1/pods"))?;
        let whole = started.elapsed();
        ensure!(again.len() == pods.len(), "two lists of every pod differ: {} then {}", pods.len(), again.len());

        println!("## Scale with fake nodes ({})", jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"));
        println!();
        println!("Machine: {}, {} cores, kernel {}, load before {load}", cpu_model(), sh("nproc", &[]), sh("uname", &["-r"]).trim());
        println!("Binary: {}; SQLite; the fake nodes in their own process (`agent --fake`)", bin.display());
        println!();
        println!("| figure | value |");
        println!("|---|---|");
        println!("| {} fake nodes Ready | {:.1} s |", args.nodes, nodes_ready.as_secs_f64());
        println!("| heartbeats, {} s idle: server CPU | {:.1} % of a core |", args.idle, idle[0]);
        println!("| heartbeats: fake agent CPU | {:.1} % of a core |", idle[1]);
        println!("| Deployment of {} replicas: all scheduled | {:.1} s ({:.0} pods/s) |", args.pods, scheduled.as_secs_f64(), f64::from(args.pods) / scheduled.as_secs_f64());
        println!("| … all Running and Ready (readyReplicas) | {:.1} s ({:.0} pods/s) |", ready.as_secs_f64(), f64::from(args.pods) / ready.as_secs_f64());
        println!("| CPU meanwhile: server, fake agent | {:.1} s, {:.1} s |", cpu_pods[0], cpu_pods[1]);
        println!("| server RSS: fresh, with nodes, with pods | {} MB, {} MB, {} MB |", rss_fresh / 1024, rss_nodes / 1024, rss_pods / 1024);
        println!("| server RSS per pod | {:.1} KiB |", (rss_pods.saturating_sub(rss_nodes)) as f64 / f64::from(args.pods));
        println!("| list every pod ({}): first page of 500 | {:.0} ms |", pods.len(), first_page.as_secs_f64() * 1000.0);
        println!("| … the whole list, pages of 500 | {:.2} s |", whole.as_secs_f64());
        drop(fake);
        Ok(())
    };
    timonier_bench::exit(run())
}
