//! Pod network benchmark: TCP throughput and round-trip latency between two pods on the same
//! node and between pods on two nodes, side by side in one run, for each backend (VXLAN and
//! host-gw). A real cluster: `timonier server --disable-agent` here and two `timonier agent`s
//! each on a host of its own (a network namespace on a test LAN, `timonier_testkit::hosts`), busybox
//! pods pinned to the nodes; the measuring ends run inside the pods' network namespaces
//! (entered from the pods' sandbox processes), so the packets take the pods' real path —
//! veth, bridge, the agent's nftables rules, the routes or the overlay. Needs root.
//!
//! A third case, host to host (node IP to node IP, no pod network), measures what the emulated
//! LAN itself carries: the ceiling of any pod network across these hosts, since both hosts'
//! kernels run on this machine's cores.
//!
//! Also the join time: from `timonier agent --server URL --token TOKEN` starting on a new host
//! (bootstrap token, CA discovery, client-certificate CSR) to its Node Ready, `--joins` times.
//!
//! `cargo run --release -p timonier-bench --bin network -- [--seconds 5] [--server-bin PATH]`
//!
//! The data path is the kernel's, so a debug `timonier` measures the same (`--server-bin`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use timonier_bench::{cpu_model, loadavg, median, remove_node, sh, spawn_agent};
use timonier_testkit::hosts::{Host, Lan};
use timonier_testkit::{ChildGuard, Kubectl, Registry, Server};

#[derive(Parser, Debug)]
#[command(about = "Pod network benchmark: same node vs across nodes, per backend")]
struct Args {
    /// Seconds of bulk transfer per measure.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Measures of each case (same node, across) per backend; the table shows medians.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Measure only this case (`same`, `across` or `hosts`), to profile one path (`perf record -a`
    /// while the line "measuring CASE" is the last on standard error).
    #[arg(long)]
    only: Option<String>,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "vxlan,host-gw")]
    backends: Vec<String>,
    /// Round trips per latency measure.
    #[arg(long, default_value_t = 5000)]
    round_trips: usize,
    /// Nodes joined one after the other (join-time samples).
    #[arg(long, default_value_t = 5)]
    joins: u8,
    /// The `timonier` binary (default: the workspace's release build, built first).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    #[arg(long)]
    no_build: bool,
}

/// What one backend measured: per-round throughputs (alternating same node and across) and
/// one latency sample per case.
struct Measures {
    same_gbit_s: Vec<f64>,
    across_gbit_s: Vec<f64>,
    /// Between the two hosts' own namespaces (node IP to node IP, no pod network): what the
    /// emulated LAN itself carries, the ceiling of any pod network across these hosts.
    hosts_gbit_s: Vec<f64>,
    same_rtt: (f64, f64),
    across_rtt: (f64, f64),
}

/// Runs `f` on a thread that entered the network namespace of process `pid`.
fn in_netns_of<T: Send + 'static>(pid: i32, f: impl FnOnce() -> Result<T> + Send + 'static) -> std::thread::JoinHandle<Result<T>> {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).with_context(|| format!("the network namespace of {pid}"))?;
        // SAFETY: setns(2) on this thread only, which ends with `f`.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        f()
    })
}

fn join<T>(h: std::thread::JoinHandle<Result<T>>) -> Result<T> {
    h.join().map_err(|_| anyhow!("a measuring thread panicked"))?
}

const PORT: u16 = 5201;

/// Bulk TCP for `seconds` from the pod of `from` to the pod of `to` at `to_ip`, in Gbit/s as
/// the receiver counts it (from its first byte).
/// Keeps the calling thread on `cpu`, so that every case puts the sender and the receiver on
/// the same cores (where the scheduler puts them otherwise swings a single stream by ±20 %).
fn pin_to(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_setaffinity(0) acts on this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn throughput(from: i32, to: i32, to_ip: Ipv4Addr, seconds: u64) -> Result<f64> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let sink = in_netns_of(to, move || {
        pin_to(1 % cpus)?;
        let l = TcpListener::bind(("0.0.0.0", PORT))?;
        let _ = ready_tx.send(());
        let (mut s, _) = l.accept()?;
        let mut buf = vec![0u8; 256 * 1024];
        let (mut total, mut first) = (0u64, None);
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            total += n as u64;
        }
        let secs = first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
        Ok(total as f64 * 8.0 / secs / 1e9)
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).context("the receiving end did not start")?;
    let source = in_netns_of(from, move || {
        pin_to(0)?;
        let addr = SocketAddr::from((to_ip, PORT));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| format!("connect to {addr}"))?;
        let buf = vec![0x5au8; 256 * 1024];
        let end = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < end {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    join(source)?;
    join(sink)
}

/// `trips` 1-byte round trips from the pod of `from` to the pod of `to`: (p50, p99) in µs.
fn round_trips(from: i32, to: i32, to_ip: Ipv4Addr, trips: usize) -> Result<(f64, f64)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let echo = in_netns_of(to, move || {
        let l = TcpListener::bind(("0.0.0.0", PORT))?;
        let _ = ready_tx.send(());
        let (mut s, _) = l.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        for _ in 0..trips {
            s.read_exact(&mut b)?;
            s.write_all(&b)?;
        }
        Ok(())
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).context("the echoing end did not start")?;
    let client = in_netns_of(from, move || {
        let addr = SocketAddr::from((to_ip, PORT));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| format!("connect to {addr}"))?;
        s.set_nodelay(true)?;
        let mut rtts = Vec::with_capacity(trips);
        let mut b = [7u8; 1];
        for _ in 0..trips {
            let t = Instant::now();
            s.write_all(&b)?;
            s.read_exact(&mut b)?;
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
        rtts.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let at = |p: f64| rtts.get(((rtts.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
        Ok((at(0.5), at(0.99)))
    });
    let rtt = join(client)?;
    join(echo)?;
    Ok(rtt)
}

/// A cluster of two nodes on a test LAN: the server's (here) and one agent's (a host).
/// One node: an agent on a host of its own.
struct Node {
    host: Host,
    agent: Option<ChildGuard>,
    dir: PathBuf,
}

/// A control plane here and two nodes on hosts of a test LAN (nothing of the pod network in
/// this namespace, so a cluster of a concurrent test does not meet this one).
struct Cluster {
    server: Server,
    kubectl: Kubectl,
    nodes: Vec<Node>,
    vni: String,
    _registry: Registry,
    /// Holds registries.yaml, which the agents read as they start.
    _images: tempfile::TempDir,
    lan: Option<Lan>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            remove_node(&n.host, n.agent.take(), &n.dir);
        }
        self.server.stop();
        self.lan = None;
    }
}

fn start_cluster(bin: &Path, backend: &str) -> Result<Cluster> {
    let mut lan = Lan::create().map_err(|e| anyhow!(e))?;
    let gw = lan.gateway();
    let registry = Registry::start_on(gw).map_err(|e| anyhow!(e))?;
    let images = timonier_testkit::temp_dir("timonier-bench-images-");
    let layout = images.path().join("busybox");
    timonier_testkit::images::busybox_image(&layout).map_err(|e| anyhow!(e))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(timonier_testkit::images::push(registry.addr(), &layout, "library/busybox:1.35")).map_err(|e| anyhow!(e))?;
    let registries = images.path().join("registries.yaml");
    std::fs::write(&registries, format!("mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n", registry.addr()))?;
    let reg = registries.to_string_lossy().into_owned();
    // Its own VXLAN identifier: another cluster's node may share a namespace with this one's.
    let vni = (1000 + u32::from(gw.octets()[2])).to_string();
    let server = Server::start_control_plane(bin, &["--bind-address", &gw.to_string()]);
    let kubectl = server.kubectl("1.33");
    let mut nodes = Vec::new();
    for i in 0..2u8 {
        let host = lan.add_host(i).map_err(|e| anyhow!(e))?;
        let name = format!("net{i}");
        let dir = server.dir.path().join(&name);
        let kubeconfig = server.kubeconfig.to_string_lossy().into_owned();
        let agent = spawn_agent(bin, &host, &name, &dir, &server.dir.path().join(format!("{name}.log")), &["--kubeconfig", &kubeconfig], &["--network-backend", backend, "--vxlan-vni", &vni, "--registry-config", &reg])?;
        nodes.push(Node { host, agent: Some(agent), dir });
    }
    Ok(Cluster { server, kubectl, nodes, vni, _registry: registry, _images: images, lan: Some(lan) })
}

fn pod_manifest(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 0\n  containers: [{{name: c, image: \"busybox:1.35\", command: [sleep, \"3600\"]}}]\n---\n"
    )
}

/// The sandbox process of pod `name` (its network namespace is the pod's).
fn sandbox_pid(k: &Kubectl, name: &str, agent_dir: &Path) -> Result<i32> {
    let uid = k.run(&["get", "pod", name, "-o", "jsonpath={.metadata.uid}"]).stdout;
    let pid = std::fs::read_to_string(agent_dir.join("pods").join(uid.trim()).join("sandbox/shim.pid")).with_context(|| format!("the sandbox of {name}"))?;
    Ok(pid.trim().parse()?)
}

/// Joins `n` new hosts one at a time with a fresh join token each, and returns how long each
/// took from the agent's start to its Node Ready (ms). Each leaves before the next joins.
fn measure_joins(c: &mut Cluster, bin: &Path, n: u8) -> Result<Vec<f64>> {
    let server_data = c.server.dir.path().join("data");
    let url = format!("https://{}:{}", c.lan.as_ref().map(|l| l.gateway()).context("no LAN")?, c.server.port);
    let mut out = Vec::new();
    for i in 0..n {
        let token = std::process::Command::new(bin).args(["token", "create", "--ttl", "10m", "--data-dir"]).arg(&server_data).output()?;
        anyhow::ensure!(token.status.success(), "token create: {}", String::from_utf8_lossy(&token.stderr));
        let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
        let host = c.lan.as_mut().context("no LAN")?.add_host(10 + i).map_err(|e| anyhow!(e))?;
        let name = format!("join{i}");
        let dir = c.server.dir.path().join(&name);
        let t0 = Instant::now();
        let agent = spawn_agent(bin, &host, &name, &dir, &c.server.dir.path().join(format!("{name}.log")), &["--server", &url, "--token", &token], &["--vxlan-vni", &c.vni])?;
        let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
        while c.kubectl.run(&["get", "node", &name, "-o", ready]).stdout != "True" {
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("node {name} did not join within 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
        remove_node(&host, Some(agent), &dir);
        c.kubectl.run(&["delete", "node", &name]);
    }
    Ok(out)
}

fn run_backend(bin: &Path, backend: &str, args: &Args, joins: &mut Vec<f64>) -> Result<Measures> {
    let mut c = start_cluster(bin, backend)?;
    let k = &c.kubectl;
    let deadline = Instant::now() + Duration::from_secs(90);
    let manifests = pod_manifest("a1", "net1") + &pod_manifest("a2", "net1") + &pod_manifest("b", "net0");
    let applied = k.run_with_input(&["apply", "-f", "-"], Some(&manifests));
    if applied.code != 0 {
        bail!("kubectl apply: {}", applied.stderr);
    }
    for p in ["a1", "a2", "b"] {
        while k.run(&["get", "pod", p, "-o", "jsonpath={.status.phase}"]).stdout != "Running" {
            if Instant::now() > deadline {
                bail!("pod {p} not Running: {}", k.run(&["get", "pods", "-o", "wide"]).stdout);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let ip = |p: &str| -> Result<Ipv4Addr> { Ok(k.run(&["get", "pod", p, "-o", "jsonpath={.status.podIP}"]).stdout.trim().parse()?) };
    let (d0, d1) = (c.nodes[0].dir.clone(), c.nodes[1].dir.clone());
    let (a1, a2, b) = (sandbox_pid(k, "a1", &d1)?, sandbox_pid(k, "a2", &d1)?, sandbox_pid(k, "b", &d0)?);
    let (a2_ip, b_ip) = (ip("a2")?, ip("b")?);
    // The hosts' own namespaces: any process of theirs, the agent's.
    let host_pid = |n: &Node| n.agent.as_ref().map(|a| a.pid() as i32).context("no agent");
    let (h1, h0, h0_ip) = (host_pid(&c.nodes[1])?, host_pid(&c.nodes[0])?, c.nodes[0].host.ip);
    let mut m = Measures { same_gbit_s: vec![], across_gbit_s: vec![], hosts_gbit_s: vec![], same_rtt: (0.0, 0.0), across_rtt: (0.0, 0.0) };
    // The cases take turns, and which goes first rotates each round, so that a drift of the
    // machine's load weighs on all alike.
    const CASES: [&str; 3] = ["same", "across", "hosts"];
    for round in 0..args.rounds {
        for i in 0..CASES.len() {
            let case = CASES[(round + i) % CASES.len()];
            if args.only.as_deref().is_some_and(|o| o != case) {
                continue;
            }
            eprintln!("measuring {case}");
            match case {
                "same" => m.same_gbit_s.push(throughput(a1, a2, a2_ip, args.seconds)?),
                "across" => m.across_gbit_s.push(throughput(a1, b, b_ip, args.seconds)?),
                _ => m.hosts_gbit_s.push(throughput(h1, h0, h0_ip, args.seconds)?),
            }
        }
    }
    m.same_rtt = round_trips(a1, a2, a2_ip, args.round_trips)?;
    m.across_rtt = round_trips(a1, b, b_ip, args.round_trips)?;
    if joins.is_empty() {
        *joins = measure_joins(&mut c, bin, args.joins)?;
    }
    Ok(m)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let run = || -> Result<()> {
        let bin = timonier_bench::server_binary(args.server_bin.as_deref(), args.no_build)?;
        let load = loadavg();
        let mut rows = Vec::new();
        let mut joins = Vec::new();
        for backend in &args.backends {
            let m = run_backend(&bin, backend, &args, &mut joins).with_context(|| format!("backend {backend}"))?;
            rows.push((backend, m));
        }
        println!("## Pod network benchmark ({})", jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"));
        println!();
        println!("Machine: {}, kernel {}, load before {load}", cpu_model(), sh("uname", &["-r"]).trim());
        println!(
            "Binary: {}; {} rounds of {} s of bulk TCP (one stream, sender on core 0, receiver on core 1), the cases taking turns; medians; {} 1-byte round trips",
            bin.display(),
            args.rounds,
            args.seconds,
            args.round_trips
        );
        println!();
        println!("| backend | same node Gbit/s | across nodes Gbit/s | across ÷ same | per-round | host to host Gbit/s | hosts ÷ same | across ÷ hosts | same node RTT p50/p99 µs | across RTT p50/p99 µs |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for (backend, m) in rows {
            let (same, across, hosts) = (median(&m.same_gbit_s), median(&m.across_gbit_s), median(&m.hosts_gbit_s));
            let ratios: Vec<String> = m.same_gbit_s.iter().zip(&m.across_gbit_s).map(|(s, a)| format!("{:.2}", a / s)).collect();
            println!(
                "| {backend} | {same:.2} | {across:.2} | **{:.2}×** | {} | {hosts:.2} | {:.2}× | **{:.2}×** | {:.0} / {:.0} | {:.0} / {:.0} |",
                across / same,
                ratios.join(" "),
                hosts / same,
                across / hosts,
                m.same_rtt.0,
                m.same_rtt.1,
                m.across_rtt.0,
                m.across_rtt.1
            );
        }
        joins.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let shown: Vec<String> = joins.iter().map(|j| format!("{j:.0}")).collect();
        println!();
        println!("Join (agent start → Node Ready, bootstrap token, CSR, vxlan): {} ms; median {:.0} ms", shown.join(", "), joins.get(joins.len() / 2).copied().unwrap_or(f64::NAN));
        Ok(())
    };
    timonier_bench::exit(run())
}
