//! Leader loss benchmark: how long from the leading server dying to another one acting. Three
//! `timonier server`s (control plane, no agent) share one etcd; the one holding the
//! `kube-controller-manager` and `kube-scheduler` Leases is killed with SIGKILL, and a
//! Deployment is created through another server at once. The run measures when another server
//! holds both Leases, and when the Deployment has its ReplicaSet and pods — the new leader's
//! controllers acting. With upstream's timing (lease 15 s, renew deadline 10 s, retry 2 s) and
//! with short leases set by flag.
//!
//! `cargo run --release -p timonier-bench --bin leader-loss -- [--runs 2] [--server-bin PATH]`
//!
//! Needs Debian's etcd-server; no root.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use timonier_bench::{cpu_model, loadavg, sh};
use timonier_testkit::{Etcd, Kubectl, Server};

#[derive(Parser, Debug)]
#[command(about = "Leader loss: from the leading server dying to another one acting")]
struct Args {
    /// Kills per timing.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// The `timonier` binary (default: the workspace's release build, built first).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    #[arg(long)]
    no_build: bool,
}

/// One kill: seconds from SIGKILL to both Leases held by another server, and to the new
/// Deployment's pods existing.
struct Sample {
    leases: f64,
    acting: f64,
}

fn holder(k: &Kubectl, lease: &str) -> String {
    k.run(&["get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.holderIdentity}"]).stdout.trim().to_string()
}

fn server_id(s: &Server) -> Result<String> {
    Ok(std::fs::read_to_string(s.dir.path().join("data/server-id")).context("server-id")?.trim().to_string())
}

/// The index of the server holding both Leases, if one does.
fn leader(k: &Kubectl, servers: &[Option<Server>]) -> Result<Option<usize>> {
    let (kcm, sched) = (holder(k, "kube-controller-manager"), holder(k, "kube-scheduler"));
    for (i, s) in servers.iter().enumerate() {
        if let Some(s) = s {
            let id = server_id(s)?;
            if kcm.ends_with(&id) && sched.ends_with(&id) {
                return Ok(Some(i));
            }
        }
    }
    Ok(None)
}

fn run_once(bin: &std::path::Path, timing: &[&str], run: usize) -> Result<Sample> {
    let etcd = Etcd::start().map_err(|e| anyhow::anyhow!("etcd (install Debian's etcd-server): {e}"))?;
    let datastore = format!("etcd://{}", etcd.endpoint);
    let args: Vec<&str> = ["--datastore", datastore.as_str()].into_iter().chain(timing.iter().copied()).collect();
    let mut servers: Vec<Option<Server>> = (0..3).map(|_| Some(Server::start_control_plane(bin, &args))).collect();
    let k0 = servers[0].as_ref().context("server 0")?.kubectl("1.33");
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(i) = leader(&k0, &servers)? {
            break i;
        }
        if Instant::now() > deadline {
            bail!("no leader within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let survivor = (first + 1) % 3;
    let k = servers[survivor].as_ref().context("survivor")?.kubectl("1.33");
    // Let the leader renew a few times, as a leader that has been up for a while.
    std::thread::sleep(Duration::from_secs(3));
    let killed = Instant::now();
    if let Some(mut s) = servers[first].take() {
        s.kill();
    }
    let name = format!("after-kill-{run}");
    let created = k.run(&["create", "deployment", &name, "--image=busybox:1.35", "--replicas=2", "--", "sleep", "3600"]);
    if created.code != 0 {
        bail!("create deployment: {}", created.stderr);
    }
    let (mut leases, mut acting) = (None, None);
    while leases.is_none() || acting.is_none() {
        if killed.elapsed() > Duration::from_secs(60) {
            bail!("no new leader acting within 60 s");
        }
        if leases.is_none() && leader(&k, &servers)?.is_some() {
            leases = Some(killed.elapsed().as_secs_f64());
        }
        if acting.is_none() && k.run(&["get", "pods", "-l", &format!("app={name}"), "-o", "name"]).stdout.lines().count() == 2 {
            acting = Some(killed.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Sample { leases: leases.unwrap_or(f64::NAN), acting: acting.unwrap_or(f64::NAN) })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let run = || -> Result<()> {
        let bin = timonier_bench::server_binary(args.server_bin.as_deref(), args.no_build)?;
        let load = loadavg();
        let timings: [(&str, Vec<&str>); 2] = [
            ("upstream's: 15s / 10s / 2s", vec![]),
            ("short: 2s / 1500ms / 500ms", vec!["--leader-elect-lease-duration", "2s", "--leader-elect-renew-deadline", "1500ms", "--leader-elect-retry-period", "500ms"]),
        ];
        let mut rows = Vec::new();
        for (label, flags) in &timings {
            for r in 0..args.runs {
                let s = run_once(&bin, flags, r).with_context(|| format!("timing {label}, run {r}"))?;
                eprintln!("{label}: leases {:.2} s, acting {:.2} s", s.leases, s.acting);
                rows.push((label, r + 1, s));
            }
        }
        println!("## Leader loss ({})", jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"));
        println!();
        println!("Machine: {}, kernel {}, load before {load}", cpu_model(), sh("uname", &["-r"]).trim());
        println!("Binary: {}; three servers on one etcd, the leader killed (SIGKILL)", bin.display());
        println!();
        println!("| lease / renew deadline / retry | run | both Leases held by another server | new Deployment's pods created |");
        println!("|---|---|---|---|");
        for (label, r, s) in rows {
            println!("| {label} | {r} | {:.2} s | **{:.2} s** |", s.leases, s.acting);
        }
        Ok(())
    };
    timonier_bench::exit(run())
}
