//! Node loss benchmark: how long from a machine dying to its pods running Ready elsewhere. A
//! real three-node cluster — `timonier server` with its agent here and two `timonier agent`s
//! on hosts of their own (network namespaces on a test LAN, `timonier_testkit::hosts`) — runs a
//! Deployment of four bootcamp pods on the two agents' nodes. One agent's host dies (the agent
//! and everything it ran killed, the host unplugged from the LAN); the run measures when the
//! node goes Ready=Unknown (the node lifecycle controller's grace period), when it is tainted
//! `unreachable:NoExecute`, and when four pods are Ready again off the dead node (the pods'
//! `tolerationSeconds`, then the ReplicaSet, scheduler and agent). Needs root.
//!
//! `cargo run --release -p timonier-bench --bin node-loss -- [--runs 3] [--grace 40s]
//! [--toleration 300] [--server-bin PATH]`
//!
//! Every phase is a timer of the control plane's, so the figures are the settings plus what
//! the cluster adds; the table shows that remainder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::Value;
use timonier_bench::{cpu_model, loadavg, remove_node, sh, spawn_agent};
use timonier_testkit::hosts::{Host, Lan};
use timonier_testkit::{free_port, ChildGuard, Kubectl, Registry, Server};

#[derive(Parser, Debug)]
#[command(about = "Node loss: from a machine dying to its pods Ready elsewhere")]
struct Args {
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The server's `--node-monitor-grace-period` (upstream's default 40s; must exceed the
    /// agents' 10 s Lease renewal).
    #[arg(long, default_value = "40s")]
    grace: String,
    /// The server's `--node-monitor-period`.
    #[arg(long, default_value = "5s")]
    monitor_period: String,
    /// The pods' `tolerationSeconds` for `unreachable` and `not-ready` (upstream's default,
    /// added by DefaultTolerationSeconds, is 300).
    #[arg(long, default_value_t = 300)]
    toleration: u64,
    /// The `timonier` binary (default: the workspace's release build, built first).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    #[arg(long)]
    no_build: bool,
}

/// One agent on its host.
struct Agent {
    host: Host,
    dir: PathBuf,
    child: Option<ChildGuard>,
}

/// Three nodes on a test LAN: `loss0` (the server's), `loss1` and `loss2` (agents).
struct Cluster {
    server: Server,
    kubectl: Kubectl,
    agents: Vec<Agent>,
    _registry: Registry,
    _images: tempfile::TempDir,
    lan: Option<Lan>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in &mut self.agents {
            remove_node(&a.host, a.child.take(), &a.dir);
        }
        self.server.stop();
        let dir = self.server.dir.path().join("data").join("agent");
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            rt.block_on(timonier_kubelet::cleanup_node(&dir));
        }
        self.lan = None;
    }
}

fn start_cluster(bin: &Path, args: &Args) -> Result<Cluster> {
    let mut lan = Lan::create().map_err(|e| anyhow!(e))?;
    let gw = lan.gateway();
    let registry = Registry::start_on(gw).map_err(|e| anyhow!(e))?;
    let images = timonier_testkit::temp_dir("timonier-bench-images-");
    let layout = images.path().join("bootcamp");
    timonier_testkit::images::bootcamp_image(&layout, 1).map_err(|e| anyhow!(e))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(timonier_testkit::images::push(registry.addr(), &layout, "google-samples/kubernetes-bootcamp:v1")).map_err(|e| anyhow!(e))?;
    let registries = images.path().join("registries.yaml");
    std::fs::write(&registries, format!("mirrors:\n  gcr.io:\n    endpoint: [\"http://{}\"]\n", registry.addr()))?;
    let reg = registries.to_string_lossy().into_owned();
    let (gws, port) = (gw.to_string(), free_port().to_string());
    // Its own VXLAN identifier: another cluster's node may share this namespace.
    let vni = (1100 + u32::from(gw.octets()[2])).to_string();
    let server = Server::start_with_agent(
        bin,
        &[
            "--bind-address", &gws, "--node-ip", &gws, "--node-name", "loss0", "--kubelet-port", &port, "--bridge", "tmnloss0",
            "--cgroup-root", "/timonier-bench-loss0", "--vxlan-vni", &vni, "--registry-config", &reg,
            "--node-monitor-grace-period", &args.grace, "--node-monitor-period", &args.monitor_period,
        ],
    );
    let kubectl = server.kubectl("1.33");
    let mut agents = Vec::new();
    for i in 1..=2u8 {
        let host = lan.add_host(i).map_err(|e| anyhow!(e))?;
        let dir = server.dir.path().join(format!("loss{i}"));
        let (name, kubeconfig) = (format!("loss{i}"), server.kubeconfig.to_string_lossy().into_owned());
        let log = server.dir.path().join(format!("{name}.log"));
        let child = spawn_agent(bin, &host, &name, &dir, &log, &["--kubeconfig", &kubeconfig], &["--vxlan-vni", &vni, "--registry-config", &reg])?;
        agents.push(Agent { host, dir, child: Some(child) });
    }
    Ok(Cluster { server, kubectl, agents, _registry: registry, _images: images, lan: Some(lan) })
}

fn get(k: &Kubectl, what: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(what);
    a.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&k.run(&a).stdout).unwrap_or(Value::Null)
}

fn ready_status(obj: &Value) -> Option<String> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "Ready").and_then(|c| c["status"].as_str()).map(str::to_string)
}

/// Pods of app=web: (node, Ready, terminating).
fn pods(k: &Kubectl) -> Vec<(String, bool, bool)> {
    get(k, &["pods", "-l", "app=web"])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["spec"]["nodeName"].as_str().unwrap_or("").to_string(), ready_status(p).as_deref() == Some("True"), p["metadata"]["deletionTimestamp"].is_string()))
        .collect()
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

struct Run {
    /// How long before the kill the dead node last renewed its Lease.
    lease_age: f64,
    unknown: f64,
    tainted: f64,
    ready: f64,
}

fn one_run(bin: &Path, args: &Args) -> Result<Run> {
    let mut c = start_cluster(bin, args)?;
    let k = c.kubectl.clone();
    for n in ["loss0", "loss1", "loss2"] {
        wait(&format!("node {n} Ready"), Duration::from_secs(90), || ready_status(&get(&k, &["node", n])).as_deref() == Some("True"))?;
    }
    for n in ["loss1", "loss2"] {
        k.run(&["label", "node", n, "pool=workers"]);
    }
    let t = args.toleration;
    let yaml = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 4
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeSelector: {{pool: workers}}
      tolerations:
      - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: {t}}}
      - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: {t}}}
      containers:
      - name: web
        image: gcr.io/google-samples/kubernetes-bootcamp:v1
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
        resources: {{requests: {{cpu: 100m}}}}
"#
    );
    let applied = k.run_with_input(&["apply", "-f", "-"], Some(&yaml));
    if applied.code != 0 {
        bail!("kubectl apply: {}", applied.stderr);
    }
    if let Err(e) = wait("4 pods Ready", Duration::from_secs(120), || pods(&k).iter().filter(|p| p.1).count() == 4) {
        let state = k.run(&["get", "nodes,pods", "-o", "wide"]).stdout;
        let events = k.run(&["get", "events", "--sort-by=.lastTimestamp"]).stdout;
        let tail: Vec<&str> = events.lines().rev().take(20).collect();
        bail!("{e}\n{state}\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    if !pods(&k).iter().any(|p| p.0 == "loss2") {
        bail!("no pod on loss2: {:?}", pods(&k));
    }
    let renewed: Option<jiff::Timestamp> = get(&k, &["lease", "-n", "kube-node-lease", "loss2"])["spec"]["renewTime"].as_str().and_then(|t| t.parse().ok());

    // The machine dies.
    let killed = Instant::now();
    let lease_age = renewed.map(|r| jiff::Timestamp::now().duration_since(r).as_secs_f64()).unwrap_or(f64::NAN);
    let dead = c.agents.pop().context("no agent")?;
    drop(dead.child);
    remove_node(&dead.host, None, &dead.dir);
    c.lan.as_ref().context("no LAN")?.unplug(&dead.host).map_err(|e| anyhow!(e))?;
    // Watched through the API directly, every 20 ms: kubectl would blur the phases by its own
    // start-up time.
    let limit = Duration::from_secs(120) + Duration::from_secs(t);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (unknown, tainted, ready) = rt.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&c.server.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
        let client = kube::Client::try_from(config)?;
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
        let pods_api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, "default");
        let lp = kube::api::ListParams::default().labels("app=web");
        let (mut unknown, mut tainted, mut ready) = (None, None, None);
        while ready.is_none() || unknown.is_none() || tainted.is_none() {
            if killed.elapsed() > limit {
                bail!("timed out: Unknown {unknown:?}, tainted {tainted:?}, Ready {ready:?}");
            }
            let node = serde_json::to_value(nodes.get("loss2").await?)?;
            let at = killed.elapsed().as_secs_f64();
            if unknown.is_none() && ready_status(&node).as_deref() == Some("Unknown") {
                unknown = Some(at);
            }
            let has_taint = node["spec"]["taints"].as_array().is_some_and(|ts| ts.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"));
            if tainted.is_none() && has_taint {
                tainted = Some(at);
            }
            let list = pods_api.list(&lp).await?;
            let healthy = list
                .items
                .iter()
                .filter(|p| {
                    let v = serde_json::to_value(p).unwrap_or(Value::Null);
                    v["spec"]["nodeName"] != "loss2" && ready_status(&v).as_deref() == Some("True") && !v["metadata"]["deletionTimestamp"].is_string()
                })
                .count();
            if ready.is_none() && healthy == 4 && tainted.is_some() {
                ready = Some(killed.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok::<_, anyhow::Error>((unknown.unwrap_or(f64::NAN), tainted.unwrap_or(f64::NAN), ready.unwrap_or(f64::NAN)))
    })?;
    Ok(Run { lease_age, unknown, tainted, ready })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let run = || -> Result<()> {
        let bin = timonier_bench::server_binary(args.server_bin.as_deref(), args.no_build)?;
        let load = loadavg();
        let mut runs = Vec::new();
        for i in 0..args.runs {
            runs.push(one_run(&bin, &args).with_context(|| format!("run {}", i + 1))?);
        }
        println!("## Node loss benchmark ({})", jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"));
        println!();
        println!("Machine: {}, kernel {}, load before {load}", cpu_model(), sh("uname", &["-r"]).trim());
        println!(
            "Binary: {}; --node-monitor-grace-period {}, --node-monitor-period {}, tolerationSeconds {}; 4 bootcamp pods on 2 agents, one agent's host killed",
            bin.display(),
            args.grace,
            args.monitor_period,
            args.toleration
        );
        println!();
        println!("| run | lease renewed before kill | node Unknown | tainted NoExecute | 4 pods Ready again | Ready − (tainted + toleration) |");
        println!("|---|---|---|---|---|---|");
        for (i, r) in runs.iter().enumerate() {
            println!(
                "| {} | {:.1} s | {:.1} s | {:.1} s | **{:.1} s** | {:.1} s |",
                i + 1,
                r.lease_age,
                r.unknown,
                r.tainted,
                r.ready,
                r.ready - r.tainted - args.toleration as f64
            );
        }
        Ok(())
    };
    timonier_bench::exit(run())
}
