//! Pod network benchmark: TCP throughput and round-trip latency between two pods on the same
//! node and between pods on two nodes, side by side in one run, for each backend (VXLAN and
//! host-gw). A real cluster: `timonier server` with its agent here and one `timonier agent` on
//! a host of its own (a network namespace on a test LAN, `timonier_testkit::hosts`), busybox
//! pods pinned to the nodes; the measuring ends run inside the pods' network namespaces
//! (entered from the pods' sandbox processes), so the packets take the pods' real path —
//! veth, bridge, the agent's nftables rules, the routes or the overlay. Needs root.
//!
//! `cargo run --release -p timonier-bench --bin network -- [--seconds 5] [--server-bin PATH]`
//!
//! The data path is the kernel's, so a debug `timonier` measures the same (`--server-bin`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use timonier_bench::{cpu_model, loadavg, sh};
use timonier_testkit::hosts::{Host, Lan};
use timonier_testkit::{free_port, ChildGuard, Kubectl, Registry, Server};

#[derive(Parser, Debug)]
#[command(about = "Pod network benchmark: same node vs across nodes, per backend")]
struct Args {
    /// Seconds of bulk transfer per measure.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Round trips per latency measure.
    #[arg(long, default_value_t = 5000)]
    round_trips: usize,
    /// The `timonier` binary (default: the workspace's release build, built first).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    #[arg(long)]
    no_build: bool,
}

/// One measure between two pods.
struct Measure {
    gbit_s: f64,
    rtt_p50_us: f64,
    rtt_p99_us: f64,
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

/// Bulk TCP from the pod of `from` to the pod of `to` at `to_ip`, then 1-byte round trips.
fn measure(from: i32, to: i32, to_ip: Ipv4Addr, args: &Args) -> Result<Measure> {
    const PORT: u16 = 5201;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let trips = args.round_trips;
    let sink = in_netns_of(to, move || {
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
        // Echo for the latency part.
        let (mut s, _) = l.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        for _ in 0..trips {
            s.read_exact(&mut b)?;
            s.write_all(&b)?;
        }
        Ok(total as f64 * 8.0 / secs / 1e9)
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).context("the receiving end did not start")?;
    let seconds = args.seconds;
    let source = in_netns_of(from, move || {
        let addr = SocketAddr::from((to_ip, PORT));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| format!("connect to {addr}"))?;
        let buf = vec![0x5au8; 256 * 1024];
        let end = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < end {
            s.write_all(&buf)?;
        }
        drop(s);
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
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
    let (rtt_p50_us, rtt_p99_us) = join(source)?;
    let gbit_s = join(sink)?;
    Ok(Measure { gbit_s, rtt_p50_us, rtt_p99_us })
}

/// A cluster of two nodes on a test LAN: the server's (here) and one agent's (a host).
struct Cluster {
    server: Server,
    kubectl: Kubectl,
    host: Host,
    agent: Option<ChildGuard>,
    agent_dir: PathBuf,
    _registry: Registry,
    /// Holds registries.yaml, which the agent reads as it starts.
    _images: tempfile::TempDir,
    lan: Option<Lan>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(a) = self.agent.take() {
            unsafe { libc::kill(a.pid() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_millis(500));
        }
        let dir = self.agent_dir.clone();
        let _ = self.host.run_in(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(timonier_kubelet::cleanup_node(&dir));
            }
        });
        self.server.stop();
        let dir = self.server.dir.path().join("data").join("agent");
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            rt.block_on(timonier_kubelet::cleanup_node(&dir));
        }
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
    let (gws, port) = (gw.to_string(), free_port().to_string());
    // Its own VXLAN identifier: another cluster's node may share this namespace.
    let vni = (1000 + u32::from(gw.octets()[2])).to_string();
    let server = Server::start_with_agent(
        bin,
        &["--bind-address", &gws, "--node-ip", &gws, "--node-name", "net0", "--kubelet-port", &port, "--bridge", "tmnbench0", "--cgroup-root", "/timonier-bench0", "--network-backend", backend, "--vxlan-vni", &vni, "--registry-config", &reg],
    );
    let kubectl = server.kubectl("1.33");
    let host = lan.add_host(1).map_err(|e| anyhow!(e))?;
    let agent_dir = server.dir.path().join("net1");
    let log = std::fs::File::create(server.dir.path().join("net1.log"))?;
    let child = host
        .command(bin)
        .arg("agent")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .arg("--data-dir")
        .arg(&agent_dir)
        .args(["--node-name", "net1", "--node-ip", &host.ip.to_string(), "--cgroup-root", "/timonier-bench1", "--network-backend", backend, "--vxlan-vni", &vni, "--registry-config", &reg])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the agent")?;
    Ok(Cluster { server, kubectl, host, agent: Some(ChildGuard(child)), agent_dir, _registry: registry, _images: images, lan: Some(lan) })
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

fn run_backend(bin: &Path, backend: &str, args: &Args) -> Result<(Measure, Measure)> {
    let c = start_cluster(bin, backend)?;
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
    let server_agent = c.server.dir.path().join("data").join("agent");
    let (a1, a2, b) = (sandbox_pid(k, "a1", &c.agent_dir)?, sandbox_pid(k, "a2", &c.agent_dir)?, sandbox_pid(k, "b", &server_agent)?);
    let same = measure(a1, a2, ip("a2")?, args)?;
    let across = measure(a1, b, ip("b")?, args)?;
    Ok((same, across))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let run = || -> Result<()> {
        let bin = timonier_bench::server_binary(args.server_bin.as_deref(), args.no_build)?;
        let load = loadavg();
        let mut rows = Vec::new();
        for backend in ["vxlan", "host-gw"] {
            let (same, across) = run_backend(&bin, backend, &args).with_context(|| format!("backend {backend}"))?;
            rows.push((backend, same, across));
        }
        println!("## Pod network benchmark ({})", jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"));
        println!();
        println!("Machine: {}, kernel {}, load before {load}", cpu_model(), sh("uname", &["-r"]).trim());
        println!("Binary: {}; {} s of bulk TCP (one stream), {} 1-byte round trips", bin.display(), args.seconds, args.round_trips);
        println!();
        println!("| backend | same node Gbit/s | across nodes Gbit/s | ratio | same node RTT p50/p99 µs | across RTT p50/p99 µs |");
        println!("|---|---|---|---|---|---|");
        for (backend, s, a) in rows {
            println!(
                "| {backend} | {:.2} | {:.2} | {:.2}× | {:.0} / {:.0} | {:.0} / {:.0} |",
                s.gbit_s,
                a.gbit_s,
                a.gbit_s / s.gbit_s,
                s.rtt_p50_us,
                s.rtt_p99_us,
                a.rtt_p50_us,
                a.rtt_p99_us
            );
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
