//! The local cluster's extra nodes (`timonier start --nodes N`, `timonier node add|delete|list`),
//! as `minikube start --nodes` and kind give them: each one a host of its own on this machine —
//! a network namespace on a LAN (`timonier_network::lan`), its own data directory, cgroup root
//! and address — running `timonier agent` detached. The server then listens on the LAN's first
//! address, which the user's kubeconfig names.
//!
//! On disk, under the cluster's directory: `nodes/<name>/`, the agent's data directory (kept
//! short: pod shims' socket paths must fit in 108 bytes) with `index`, `agent.pid`, `agent.log`.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use timonier_network::lan::Lan;

/// The LAN of the local cluster's hosts.
pub fn lan() -> Lan {
    Lan { name: "timonier".into(), subnet: timonier_network::Ipv4Net::new(std::net::Ipv4Addr::new(10, 250, 0, 0), 24).expect("10.250.0.0/24 is a valid range") }
}

#[derive(clap::Args, Clone)]
pub struct NodeCommandArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(clap::Subcommand, Clone)]
pub enum NodeCommand {
    /// Add a node to the local cluster (started with `--nodes`), as `minikube node add`.
    Add {
        #[command(flatten)]
        cluster: crate::cluster::ClusterArgs,
    },
    /// Remove a node: its agent stops, its pods and host go, and its Node object is deleted.
    Delete {
        name: String,
        #[command(flatten)]
        cluster: crate::cluster::ClusterArgs,
    },
    /// List the local cluster's nodes and their addresses.
    List {
        #[command(flatten)]
        cluster: crate::cluster::ClusterArgs,
    },
}

fn nodes_dir(dir: &Path) -> PathBuf {
    dir.join("nodes")
}

/// Whether the cluster in `dir` was made with several nodes (its server listens on the LAN).
pub fn multi_node(dir: &Path) -> bool {
    nodes_dir(dir).is_dir()
}

/// The extra nodes of the cluster in `dir`, by index.
pub fn list(dir: &Path) -> Vec<(u8, String)> {
    let mut out: Vec<(u8, String)> = std::fs::read_dir(nodes_dir(dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let index = std::fs::read_to_string(e.path().join("index")).ok()?.trim().parse().ok()?;
            Some((index, e.file_name().to_string_lossy().into_owned()))
        })
        .collect();
    out.sort();
    out
}

const AGENT: &[&str] = &["timonier", "agent"];

/// The PID of node `name`'s agent, if it runs.
pub fn running_pid(dir: &Path, name: &str) -> Option<i32> {
    crate::detached::running(&nodes_dir(dir).join(name).join("agent.pid"), AGENT)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

fn first_file(dir: &Path) -> PathBuf {
    nodes_dir(dir).join("first-node")
}

/// Where the flags every extra agent gets are kept (one per line), so that `node add` later
/// starts agents as `start` did.
fn settings_file(dir: &Path) -> PathBuf {
    nodes_dir(dir).join("agent-args")
}

/// Creates the LAN (idempotent) and marks the cluster in `dir` as a multi-node one, keeping
/// the agents' shared flags from `node` (network backend, registry configuration) and the
/// first node's name (the others' are made from it).
pub fn prepare(dir: &Path, node: &crate::agent::NodeArgs, first: &str) -> anyhow::Result<()> {
    runtime()?.block_on(lan().ensure()).context("cannot create the nodes' LAN")?;
    std::fs::create_dir_all(nodes_dir(dir))?;
    if !first_file(dir).exists() {
        std::fs::write(first_file(dir), first)?;
    }
    if !settings_file(dir).exists() {
        let mut args = vec!["--network-backend".to_string(), node.network_backend.to_string()];
        if let Some(r) = &node.registry_config {
            let r = std::fs::canonicalize(r).unwrap_or_else(|_| r.clone());
            args.extend(["--registry-config".into(), r.to_string_lossy().into_owned()]);
        }
        std::fs::write(settings_file(dir), args.join("\n") + "\n")?;
    }
    Ok(())
}

/// A join token, as a user makes one (`timonier token create`) with the cluster in `dir`.
pub fn join_token(dir: &Path, ttl: &str, description: &str) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the timonier binary")?;
    let out = Command::new(exe)
        .args(["token", "create", "--ttl", ttl, "--description", description])
        .arg("--data-dir")
        .arg(dir.join("server"))
        .stdin(Stdio::null())
        .output()
        .context("cannot run timonier token create")?;
    if !out.status.success() {
        bail!("cannot create a join token: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The API server's URL in `kubeconfig`.
fn server_url(kubeconfig: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(kubeconfig).with_context(|| format!("cannot read {}", kubeconfig.display()))?;
    let kc = kube::config::Kubeconfig::from_yaml(&text).context("the cluster's kubeconfig is not valid")?;
    kc.clusters.first().and_then(|c| c.cluster.as_ref()).and_then(|c| c.server.clone()).context("the cluster's kubeconfig names no server")
}

/// Starts (creating it if new) extra node `name` number `index`, joining the cluster whose
/// admin `kubeconfig` is given with a join token, as `timonier agent --server --token` on
/// another machine would; returns at once.
pub fn start(dir: &Path, name: &str, index: u8, kubeconfig: &Path) -> anyhow::Result<()> {
    if running_pid(dir, name).is_some() {
        return Ok(());
    }
    let lan = lan();
    let netns = runtime()?.block_on(lan.ensure_host(name, index)).with_context(|| format!("cannot create the host of node {name}"))?;
    let home = nodes_dir(dir).join(name);
    std::fs::create_dir_all(&home)?;
    std::fs::write(home.join("index"), index.to_string())?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(home.join("agent.log"))?;
    let exe = std::env::current_exe().context("cannot find the timonier binary")?;
    let mut cmd = Command::new(exe);
    let shared = std::fs::read_to_string(settings_file(dir)).unwrap_or_default();
    cmd.arg("agent")
        // Valid 15 minutes: a node that joined keeps its own certificate in its data directory.
        .args(["--server", &server_url(kubeconfig)?, "--token", &join_token(dir, "15m", "timonier start --nodes")?])
        .arg("--data-dir")
        .arg(&home)
        .args(["--node-name", name, "--node-ip", &lan.host_ip(index).to_string()])
        .args(["--cgroup-root", &format!("/timonier-{name}")])
        .args(shared.lines().filter(|l| !l.is_empty()));
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    {
        use std::os::unix::process::CommandExt;
        // Inside its host's network namespace.
        let ns = std::fs::File::open(&netns).with_context(|| format!("cannot open {}", netns.display()))?;
        // SAFETY: between fork and exec, only setns(2) on a descriptor opened before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    crate::detached::spawn(&mut cmd, &home.join("agent.pid"), &format!("the agent of node {name}"))?;
    Ok(())
}

/// Stops node `name`'s agent (SIGTERM, SIGKILL after 15 s); its pods keep running.
pub fn stop(dir: &Path, name: &str) {
    crate::detached::stop(&[(&nodes_dir(dir).join(name).join("agent.pid"), AGENT)], Duration::from_secs(15));
}

/// Removes node `name` from this machine: its agent, pods, pod network (from inside its
/// host), host and directory. The Node object is the caller's to delete.
pub fn remove(dir: &Path, name: &str) -> anyhow::Result<()> {
    stop(dir, name);
    let home = nodes_dir(dir).join(name);
    let data = home.clone();
    let netns = timonier_network::lan::netns_path(&format!("{}-{name}", lan().name));
    if data.exists() && netns.exists() {
        // The pod network's links and rules live in the host's namespace: clean up from there.
        let cleaned = std::thread::spawn(move || -> anyhow::Result<()> {
            let ns = std::fs::File::open(&netns)?;
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("cannot enter {}: {}", netns.display(), std::io::Error::last_os_error());
            }
            runtime()?.block_on(timonier_kubelet::cleanup_node(&data));
            Ok(())
        })
        .join();
        match cleaned {
            Ok(r) => r?,
            Err(_) => bail!("the cleanup of node {name} panicked"),
        }
    }
    lan().remove_host(name).with_context(|| format!("cannot remove the host of node {name}"))?;
    if home.exists() {
        std::fs::remove_dir_all(&home).with_context(|| format!("cannot remove {}", home.display()))?;
    }
    Ok(())
}

/// Removes every extra node and the LAN (`timonier delete`).
pub fn remove_all(dir: &Path) -> anyhow::Result<()> {
    for (_, name) in list(dir) {
        remove(dir, &name)?;
    }
    if multi_node(dir) {
        runtime()?.block_on(lan().remove()).context("cannot remove the nodes' LAN")?;
    }
    Ok(())
}

/// The name of the `index`th node, minikube's way: `<first node>-m02`, `-m03`, ….
pub fn node_name(first: &str, index: u8) -> String {
    format!("{first}-m{:02}", u32::from(index) + 1)
}

/// The lowest free index for a new node.
pub fn next_index(dir: &Path) -> u8 {
    let used: Vec<u8> = list(dir).into_iter().map(|(i, _)| i).collect();
    (1..=200u8).find(|i| !used.contains(i)).unwrap_or(200)
}

/// `timonier node add|delete|list`.
pub fn run(args: NodeCommandArgs) -> anyhow::Result<()> {
    let (NodeCommand::Add { cluster } | NodeCommand::Delete { cluster, .. } | NodeCommand::List { cluster }) = &args.command;
    let dir = crate::cluster::data_dir(cluster);
    let kubeconfig = dir.join("kubeconfig");
    let first = std::fs::read_to_string(first_file(&dir)).unwrap_or_default();
    match args.command {
        NodeCommand::List { .. } => {
            println!("{:<24} {:<14} {}", "NAME", "IP", "AGENT");
            if multi_node(&dir) {
                println!("{first:<24} {:<14} (with the control plane)", lan().gateway().to_string());
            }
            for (index, name) in list(&dir) {
                let state = if running_pid(&dir, &name).is_some() { "running" } else { "stopped" };
                println!("{name:<24} {:<14} {state}", lan().host_ip(index).to_string());
            }
            Ok(())
        }
        NodeCommand::Add { .. } => {
            if !multi_node(&dir) {
                bail!(
                    "this cluster has one node and its API server listens on 127.0.0.1 only; to add nodes, recreate it with several: \
                     `timonier delete && timonier start --nodes 2`"
                );
            }
            if !kubeconfig.exists() {
                bail!("no cluster in {}: run `timonier start --nodes 2` first", dir.display());
            }
            let index = next_index(&dir);
            let name = node_name(&first, index);
            start(&dir, &name, index, &kubeconfig)?;
            crate::cluster::wait_nodes_ready(&dir, &kubeconfig, std::slice::from_ref(&name), Instant::now())
        }
        NodeCommand::Delete { name, .. } => {
            if !list(&dir).iter().any(|(_, n)| *n == name) {
                bail!("no node {name:?} among this cluster's added nodes (see `timonier node list`; the first node goes with `timonier delete`)");
            }
            remove(&dir, &name)?;
            let text = std::fs::read_to_string(&kubeconfig).with_context(|| format!("cannot read {}", kubeconfig.display()))?;
            runtime()?.block_on(async {
                let client = crate::agent::client_from_kubeconfig(&text).await?.0;
                let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
                match nodes.delete(&name, &Default::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    Err(e) => Err(anyhow::anyhow!("node {name} is gone from this machine, but its Node object could not be deleted: {e}")),
                }
            })?;
            println!("* Node {name:?} deleted");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_as_minikube() {
        assert_eq!(super::node_name("timonier", 1), "timonier-m02");
        assert_eq!(super::node_name("box", 9), "box-m10");
        assert_eq!(super::lan().host_ip(1).to_string(), "10.250.0.11");
        assert_eq!(super::lan().gateway().to_string(), "10.250.0.1");
    }
}
