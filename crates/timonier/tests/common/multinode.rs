//! A cluster of several hosts on this machine: the control plane (`timonier server
//! --disable-agent`) here, bound to the test LAN's address, and nodes `<prefix>0`, `<prefix>1`…
//! each a `timonier agent` on a host of its own (network namespace, data dir, cgroup root, node
//! IP) on that LAN — see `timonier_testkit::hosts`. Nothing of a cluster's pod network is in
//! this namespace, so clusters of concurrent tests do not meet. Dropping it
//! stops every process it started (by PID), removes what the agents left, then the LAN.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use timonier_testkit::hosts::{Host, Lan};
use timonier_testkit::{ChildGuard, Kubectl, Server};

use super::{tail, TestImage, TestRegistry};

/// One `timonier agent` on its host.
pub struct Agent {
    pub host: Host,
    pub name: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<ChildGuard>,
}

pub struct MultiNode {
    pub server: Server,
    pub kubectl: Kubectl,
    pub agents: Vec<Agent>,
    /// The first node (`<prefix>0`), on host 0.
    pub server_node: String,
    registry: Option<TestRegistry>,
    dir: tempfile::TempDir,
    lan: Option<Lan>,
}

/// Removes what the agent with `data_dir` left (shims, containers, mounts, cgroups, its pod
/// network), from inside `host`'s namespace where its links are.
fn cleanup_in(host: &Host, data_dir: &Path) {
    let dir = data_dir.to_path_buf();
    let r = host.run_in(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        rt.block_on(timonier_kubelet::cleanup_node(&dir));
    });
    if let Err(e) = r {
        eprintln!("cleanup of {}: {e}", data_dir.display());
    }
}

impl MultiNode {
    /// Starts the control plane and `hosts + 1` nodes (`<prefix>0` … `<prefix><hosts>`) with the
    /// network backend `backend`, `images` in a registry on the LAN, and waits until every
    /// node is Ready.
    pub fn start(prefix: &str, hosts: u8, images: &[TestImage], backend: &str) -> MultiNode {
        MultiNode::start_with(prefix, hosts, images, backend, &[])
    }

    /// [`MultiNode::start`], with `server_args` added to the server's command line.
    pub fn start_with(prefix: &str, hosts: u8, images: &[TestImage], backend: &str, server_args: &[&str]) -> MultiNode {
        let mut lan = Lan::create().expect("cannot create a test LAN (run as root, with iproute2)");
        let gateway = lan.gateway();
        let dir = timonier_testkit::temp_dir("timonier-multinode-");
        let registry = (!images.is_empty()).then(|| TestRegistry::start_on(gateway, images));
        let server_node = format!("{prefix}0");
        let cgroup = |i: u8| format!("/timonier-test-{prefix}{i}-{}", std::process::id());
        // Its own VXLAN identifier: another cluster's node may share this namespace.
        let vni = (1000 + u32::from(gateway.octets()[2])).to_string();
        // The control plane here, every node on a host: no pod range, bridge or rule of this
        // namespace is shared with another cluster's (its node would use the same ranges).
        let mut args: Vec<String> = vec!["--bind-address".into(), gateway.to_string()];
        args.extend(server_args.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start_control_plane(Path::new(env!("CARGO_BIN_EXE_timonier")), &args);
        let kubectl = server.kubectl("1.33");
        let mut cluster = MultiNode { server, kubectl, agents: Vec::new(), server_node, registry, dir, lan: None };
        for i in 0..=hosts {
            let host = lan.add_host(i).expect("cannot add a host to the test LAN");
            let name = format!("{prefix}{i}");
            let data_dir = cluster.dir.path().join(&name);
            let log = cluster.dir.path().join(format!("{name}.log"));
            let mut agent = Agent { host, name, data_dir, log, child: None };
            let mut extra = vec!["--cgroup-root".to_string(), cgroup(i), "--network-backend".into(), backend.into(), "--vxlan-vni".into(), vni.clone()];
            if let Some(r) = &cluster.registry {
                extra.extend(["--registry-config".into(), r.config.to_string_lossy().into_owned()]);
            }
            agent.spawn(&cluster.server.kubeconfig, &extra);
            cluster.agents.push(agent);
        }
        cluster.lan = Some(lan);
        let names: Vec<String> = cluster.agents.iter().map(|a| a.name.clone()).collect();
        let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
        for n in &names {
            cluster.wait(&format!("node {n} Ready"), Duration::from_secs(60), |k| k.run(&["get", "node", n, "-o", ready]).stdout == "True");
        }
        cluster
    }

    /// Polls `f` until it holds; on timeout, fails with the nodes, pods, events and logs.
    #[track_caller]
    pub fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Kubectl) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f(&self.kubectl) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let nodes = self.kubectl.run(&["get", "nodes", "-o", "wide"]).stdout;
        let pods = self.kubectl.run(&["get", "pods", "-A", "-o", "wide"]).stdout;
        let events = self.kubectl.run(&["get", "events", "-A"]).stdout;
        let agents: String = self.agents.iter().map(|a| format!("--- {} log ---\n{}\n", a.name, tail(&std::fs::read_to_string(&a.log).unwrap_or_default(), 30))).collect();
        panic!("timed out waiting for {what}\n{nodes}\n{pods}\n{events}\n{agents}--- server log ---\n{}", tail(&self.server.log(), 60));
    }

    /// This namespace's address on the LAN, where the server listens.
    pub fn gateway(&self) -> std::net::Ipv4Addr {
        self.lan.as_ref().expect("lan").gateway()
    }

    /// The agent of node `name`.
    pub fn agent(&self, name: &str) -> &Agent {
        self.agents.iter().find(|a| a.name == name).unwrap_or_else(|| panic!("no agent {name}"))
    }

    /// The machine `name` dies: its agent and everything it ran are killed, and it drops off
    /// the LAN.
    pub fn kill_host(&mut self, name: &str) {
        let lan = self.lan.as_ref().expect("lan");
        let agent = self.agents.iter_mut().find(|a| a.name == name).unwrap_or_else(|| panic!("no agent {name}"));
        agent.stop(true);
        cleanup_in(&agent.host, &agent.data_dir);
        lan.unplug(&agent.host).expect("unplug the host");
    }
}

impl Agent {
    fn spawn(&mut self, kubeconfig: &Path, extra: &[String]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("agent log");
        let child = self
            .host
            .command(env!("CARGO_BIN_EXE_timonier"))
            .arg("agent")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--node-name", &self.name, "--node-ip", &self.host.ip.to_string()])
            .args(extra)
            .env("TIMONIER_LOG", std::env::var("TIMONIER_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("agent log"))
            .stderr(log)
            .spawn()
            .expect("cannot start timonier agent");
        self.child = Some(ChildGuard(child));
    }

    /// Stops the agent: SIGKILL when `kill`, else SIGTERM and up to 10 s.
    pub fn stop(&mut self, kill: bool) {
        if let Some(mut c) = self.child.take() {
            if !kill {
                unsafe { libc::kill(c.0.id() as i32, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline && !matches!(c.0.try_wait(), Ok(Some(_))) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            // ChildGuard's drop kills (if still running) and reaps.
        }
    }
}

impl Drop for MultiNode {
    fn drop(&mut self) {
        for a in &mut self.agents {
            a.stop(false);
            cleanup_in(&a.host, &a.data_dir);
            // Anything else we started there (a test's helper process).
            for pid in a.host.pids() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        self.server.stop();
        self.registry = None;
        self.lan = None;
    }
}
