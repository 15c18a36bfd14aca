//! Writes `crates/timonier/symbol-order.txt`, the order in which the release link lays out
//! functions (`crates/timonier/build.rs`): first those an idle node agent runs, then the
//! standard library's and ring's (compiled already, so no profile sees them), then those an
//! idle control plane runs, each group sorted by name.
//!
//! Why: a process's resident text is not the code it runs but every 64 KiB window around it
//! (the kernel maps the cached pages around each fault). In a 34 MB `.text` the few megabytes
//! an idle agent runs were spread over more than half of all windows: 17 MB of its 22 MB RSS.
//!
//! How: builds `timonier` instrumented (`-Cprofile-generate`, in its own target directory),
//! runs a control plane (`timonier server --disable-agent`) and an agent as separate processes
//! for `--idle-secs` after the node registered (lease renewals and status updates included),
//! stops both with SIGTERM so that they write their profiles, and keeps the functions whose
//! entry count is not zero (`llvm-profdata`, from rustup's `llvm-tools`). Needs root (the agent
//! sets up its pod network, removed at the end).
//!
//! `cargo run --release -p timonier-bench --bin symbol-order`
//!
//! Symbol names carry a hash of their crate and, for generic code, its type arguments; edits
//! elsewhere leave them unchanged, and names that no longer exist are ignored by the linker, so
//! the file goes stale slowly. Re-run this after large changes; the node benchmark shows when
//! the agent's idle RSS creeps up.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use timonier_bench::{cargo_build_release, server_binary, target_dir, workspace_root};
use timonier_testkit::{free_port, temp_dir, ChildGuard};

#[derive(Parser, Debug)]
#[command(about = "Profiles an idle agent and control plane and writes the release link's function order")]
struct Args {
    /// How long both run once the node registered.
    #[arg(long, default_value_t = 25)]
    idle_secs: u64,
    /// Where to write the order (default: crates/timonier/symbol-order.txt).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Use this instrumented binary instead of building one.
    #[arg(long)]
    instrumented_bin: Option<PathBuf>,
    /// The release binary the order is for (default: the workspace's, built first): names
    /// the optimizer inlined away everywhere are left out.
    #[arg(long)]
    release_bin: Option<PathBuf>,
}

/// A tool of rustup's `llvm-tools` (`llvm-profdata`, `llvm-nm`), matching rustc's LLVM (the
/// profile format follows it).
fn llvm_tool(name: &str) -> Result<PathBuf> {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output().context("cannot run rustc")?;
    let host = Command::new("rustc").args(["--print", "host-tuple"]).output().context("cannot run rustc")?;
    let bin = Path::new(String::from_utf8_lossy(&sysroot.stdout).trim())
        .join("lib/rustlib")
        .join(String::from_utf8_lossy(&host.stdout).trim())
        .join("bin")
        .join(name);
    if !bin.exists() {
        eprintln!("rustup component add llvm-tools ...");
        let ok = Command::new("rustup").args(["component", "add", "llvm-tools"]).status().is_ok_and(|s| s.success());
        ensure!(ok && bin.exists(), "{} is missing: run `rustup component add llvm-tools`", bin.display());
    }
    Ok(bin)
}

/// Sends SIGTERM and waits, so that the process exits through `main` and writes its profile.
fn terminate(child: &mut ChildGuard, what: &str) -> Result<()> {
    unsafe { libc::kill(child.pid() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.0.try_wait()? {
            ensure!(status.success(), "the {what} exited with {status}");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the {what} did not stop within 30 s of SIGTERM")
}

/// The functions a set of raw profiles saw run, by their symbol names.
fn executed(profdata: &Path, raw: &[PathBuf], dir: &Path) -> Result<BTreeSet<String>> {
    ensure!(!raw.is_empty(), "no profile was written");
    let merged = dir.join("merged.profdata");
    let ok = Command::new(profdata).arg("merge").arg("-o").arg(&merged).args(raw).status()?.success();
    ensure!(ok, "llvm-profdata merge failed");
    let out = Command::new(profdata).args(["show", "--all-functions", "--counts"]).arg(&merged).stderr(Stdio::inherit()).output()?;
    ensure!(out.status.success(), "llvm-profdata show failed");
    // Records are "  NAME:" then indented fields, among them "Block counts: [N, ...]"; local
    // functions are named "MODULE;SYMBOL". Counters sit on the edges outside a spanning tree
    // of the control flow graph, so every run of a function moves at least one of them.
    let mut names = BTreeSet::new();
    let mut current = "";
    for line in std::str::from_utf8(&out.stdout)?.lines() {
        if let Some(name) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')).and_then(|l| l.strip_suffix(':')) {
            current = name.rsplit(';').next().unwrap_or(name);
        } else if let Some(counts) = line.trim().strip_prefix("Block counts: [") {
            if counts.trim_end_matches(']').split(", ").any(|c| c != "0") {
                names.insert(current.to_string());
            }
        }
    }
    Ok(names)
}

/// The names of the functions in a binary.
fn functions(nm: &Path, bin: &Path) -> Result<BTreeSet<String>> {
    let out = Command::new(nm).args(["--defined-only", "--format=posix"]).arg(bin).output()?;
    ensure!(out.status.success(), "llvm-nm {} failed", bin.display());
    let text = std::str::from_utf8(&out.stdout)?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (name, kind) = (f.next()?, f.next()?);
            matches!(kind, "t" | "T" | "W" | "w").then(|| name.to_string())
        })
        .collect())
}

/// The functions no profile sees, since they come compiled: the standard library's (the only
/// names in the v0 mangling, `_R…`) and ring's C and assembly. The agent runs a part of each;
/// they are small enough to keep together whole.
fn is_precompiled(name: &str) -> bool {
    name.starts_with("_R") || name.starts_with("ring_core_")
}

fn profiles(dir: &Path, role: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(role) && n.ends_with(".profraw")))
        .collect()
}

async fn wait_registered(kubeconfig: &Path, node: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let kc = kube::config::Kubeconfig::from_yaml(&std::fs::read_to_string(kubeconfig)?)?;
    let client = kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?)?;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    loop {
        if let Ok(Some(n)) = nodes.get_opt(node).await {
            if n.spec.and_then(|s| s.pod_cidr).is_some() {
                return Ok(());
            }
        }
        ensure!(Instant::now() < deadline, "the agent did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn run(args: &Args) -> Result<()> {
    let profdata = llvm_tool("llvm-profdata")?;
    let nm = llvm_tool("llvm-nm")?;
    let dir = temp_dir("timonier-symbol-order-");
    let raw = dir.path().join("profiles");
    let bin = match &args.instrumented_bin {
        Some(b) => b.clone(),
        None => cargo_build_release(&target_dir().join("symbol-order"), &[("RUSTFLAGS", format!("-Cprofile-generate={} -Cllvm-args=-disable-preinline", raw.display()))])?,
    };
    let spawn = |role: &str, args: Vec<String>| -> Result<ChildGuard> {
        let log = std::fs::File::create(dir.path().join(format!("{role}.log")))?;
        let child = Command::new(&bin)
            .args(args)
            .env("LLVM_PROFILE_FILE", raw.join(format!("{role}-%p.profraw")))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(ChildGuard(child))
    };
    let d = |p: &str| dir.path().join(p).display().to_string();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut server = spawn(
        "server",
        vec!["server".into(), "--disable-agent".into(), "--data-dir".into(), d("server"), "--secure-port".into(), free_port().to_string(), "--write-kubeconfig".into(), d("kubeconfig")],
    )?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // The kubeconfig exists before the agent starts: it reads it once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubeconfig.exists() {
        ensure!(Instant::now() < deadline, "the server wrote no kubeconfig (see {})", d("server.log"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let agent_dir = d("agent");
    let mut agent = spawn(
        "agent",
        vec![
            "agent".into(),
            "--kubeconfig".into(),
            d("kubeconfig"),
            "--data-dir".into(),
            agent_dir.clone(),
            "--node-name".into(),
            "profile-node".into(),
            "--node-ip".into(),
            "127.0.0.1".into(),
            "--kubelet-port".into(),
            free_port().to_string(),
            "--bridge".into(),
            "tmnprof0".into(),
        ],
    )?;
    let result = rt.block_on(async {
        wait_registered(&kubeconfig, "profile-node").await?;
        tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
        Ok::<_, anyhow::Error>(())
    });
    let stopped = terminate(&mut agent, "agent").and_then(|()| terminate(&mut server, "server"));
    drop((agent, server));
    rt.block_on(timonier_kubelet::cleanup_node(Path::new(&agent_dir)));
    result?;
    stopped?;

    let release = functions(&nm, &server_binary(args.release_bin.as_deref(), false)?)?;
    let agent_ran = executed(&profdata, &profiles(&raw, "agent"), dir.path())?;
    let server_ran = executed(&profdata, &profiles(&raw, "server"), dir.path())?;
    let agent_fns: Vec<&String> = release.iter().filter(|n| agent_ran.contains(*n)).collect();
    let precompiled: Vec<&String> = release.iter().filter(|n| is_precompiled(n) && !agent_ran.contains(*n)).collect();
    let server_fns: Vec<&String> = release.iter().filter(|n| server_ran.contains(*n) && !agent_ran.contains(*n)).collect();
    let out = args.out.clone().unwrap_or_else(|| workspace_root().join("crates/timonier/symbol-order.txt"));
    let mut text = String::new();
    for name in agent_fns.iter().chain(&precompiled).chain(&server_fns) {
        text.push_str(name);
        text.push('\n');
    }
    std::fs::write(&out, text).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{}: {} functions the idle agent runs, {} of the standard library and ring, then {} more the idle control plane runs",
        out.display(),
        agent_fns.len(),
        precompiled.len(),
        server_fns.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("symbol-order: must run as root (the agent sets up a pod network)");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("symbol-order: {e:#}");
            ExitCode::FAILURE
        }
    }
}
