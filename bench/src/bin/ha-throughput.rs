//! API throughput with several servers on one etcd against one server, side by side in one
//! run: `--clients` concurrent clients (each its own TLS connection) create ConfigMaps for
//! `--seconds`, spread evenly over the servers (client i → server i mod N). The servers share
//! the cluster CA through the server token, so one admin certificate works on all. Each case
//! gets a fresh etcd. Needs Debian's etcd-server; no root.
//!
//! `cargo run --release -p timonier-bench --bin ha-throughput -- [--servers 3] [--server-bin PATH]`

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use timonier_bench::{admin_client, admin_credentials, cpu_model, loadavg, sh};
use timonier_testkit::{Etcd, Server};

#[derive(Parser, Debug)]
#[command(about = "API throughput: N servers on one etcd vs one")]
struct Args {
    /// Servers of the second case.
    #[arg(long, default_value_t = 3)]
    servers: usize,
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of creates per case.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The `timonier` binary (default: the workspace's release build, built first).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    #[arg(long)]
    no_build: bool,
}

struct Case {
    servers: usize,
    creates_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn run_case(bin: &std::path::Path, n: usize, args: &Args) -> Result<Case> {
    let etcd = Etcd::start().map_err(|e| anyhow::anyhow!("etcd (install Debian's etcd-server): {e}"))?;
    let datastore = format!("etcd://{}", etcd.endpoint);
    let first = Server::start(bin, &["--datastore", &datastore, "--token", "ha-throughput"]);
    let token = std::fs::read_to_string(first.dir.path().join("data/server-token")).context("server-token")?;
    let mut servers = vec![first];
    for _ in 1..n {
        servers.push(Server::start(bin, &["--datastore", &datastore, "--token", &token]));
    }
    let (ca, identity) = admin_credentials(&servers[0])?;
    let urls: Vec<String> = servers.iter().map(|s| s.url("/api/v1/namespaces/default/configmaps")).collect();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let next = Arc::new(AtomicU64::new(0));
        let end = Instant::now() + Duration::from_secs(args.seconds);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..args.clients {
            let (c, url, next) = (admin_client(&ca, &identity, Duration::from_secs(30))?, urls[i % urls.len()].clone(), next.clone());
            tasks.spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < end {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let body = format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"cm-{k}\"}},\"data\":{{\"k\":\"v\"}}}}");
                    let t = Instant::now();
                    let r = c.post(&url).header("content-type", "application/json").body(body).send().await?;
                    let status = r.status();
                    r.bytes().await?;
                    ensure!(status.as_u16() == 201, "create: {status}");
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                Ok::<Vec<f64>, anyhow::Error>(lat)
            });
        }
        let started = Instant::now();
        let mut lat = Vec::new();
        while let Some(r) = tasks.join_next().await {
            lat.extend(r??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let at = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
        Ok(Case { servers: n, creates_per_s: lat.len() as f64 / elapsed, p50_ms: at(0.5), p99_ms: at(0.99) })
    })
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let run = || -> Result<()> {
        let bin = timonier_bench::server_binary(args.server_bin.as_deref(), args.no_build)?;
        let load = loadavg();
        let one = run_case(&bin, 1, &args).context("one server")?;
        let many = run_case(&bin, args.servers, &args).context("several servers")?;
        println!("## API throughput, {} servers vs 1 ({})", args.servers, jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"));
        println!();
        println!("Machine: {}, kernel {}, load before {load}", cpu_model(), sh("uname", &["-r"]).trim());
        println!("Binary: {}; one etcd each case; {} clients creating ConfigMaps for {} s, spread over the servers", bin.display(), args.clients, args.seconds);
        println!();
        println!("| servers | creates/s | p50 ms | p99 ms |");
        println!("|---|---|---|---|");
        for c in [&one, &many] {
            println!("| {} | {:.0} | {:.1} | {:.1} |", c.servers, c.creates_per_s, c.p50_ms, c.p99_ms);
        }
        println!();
        println!("Ratio {} servers ÷ 1: **{:.2}×** creates/s, p99 {:.2}×", args.servers, many.creates_per_s / one.creates_per_s, many.p99_ms / one.p99_ms);
        Ok(())
    };
    timonier_bench::exit(run())
}
