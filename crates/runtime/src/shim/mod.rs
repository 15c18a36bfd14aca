//! The per-pod shim: the pod's "pause" process and the supervisor of its containers.
//!
//! Why a separate process: libcontainer forks with raw `clone3` and runs Rust code in the
//! child, which can deadlock in a multi-threaded (tokio) parent; the container's init must be
//! a child of someone who reaps it; and exits and logs must survive an agent restart. So the
//! agent re-executes its own binary as `timonier shim --state-dir DIR --hostname NAME` (before
//! any tokio runtime exists), which daemonizes, holds the pod's net/ipc/uts namespaces, and
//! serves JSON lines on `DIR/shim.sock` from one thread (see `server`).
//!
//! State directory layout:
//! - `shim.pid`, `shim.sock`, `shim.log`, `cgroup_parents.json`
//! - `youki/` — libcontainer's state root
//! - `containers/<id>/{upper,work,rootfs,config.json,meta.json,exit.json}`

pub mod client;
mod container;
mod logs;
pub mod protocol;
mod server;
pub mod usage;
mod util;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, sethostname, setsid, ForkResult, Pid};

pub use client::{ExecProcess, ExecStdio, ShimClient};
pub use util::remove_cgroup;
pub use protocol::{ContainerState, ErrorKind, ExitRecord, Request, Response};

/// Pod-level cgroup paths the shim created containers under (JSON list of strings).
const CGROUP_PARENTS_FILE: &str = "cgroup_parents.json";

/// Errors of the shim and its client.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("system call {context}: {source}")]
    Sys { context: String, source: nix::Error },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("shim failed to start: {0}")]
    Startup(String),
    #[error("shim for {0} is not running")]
    Gone(PathBuf),
    /// The shim refused a request; `kind` says why.
    #[error("{kind:?}: {message}")]
    Shim { kind: ErrorKind, message: String },
    #[error("usage: shim --state-dir DIR --hostname NAME")]
    Usage,
}

impl ShimError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ShimError::Io {
            context: context.into(),
            source,
        }
    }
    fn sys(context: impl Into<String>, source: nix::Error) -> Self {
        ShimError::Sys {
            context: context.into(),
            source,
        }
    }
    /// The kind of a refused request, if this is one.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ShimError::Shim { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// Parsed command line of the shim subcommand.
#[derive(Debug, Clone)]
pub struct ShimArgs {
    pub state_dir: PathBuf,
    pub hostname: String,
}

impl ShimArgs {
    /// Parse `--state-dir DIR --hostname NAME` (the subcommand name already removed).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, ShimError> {
        let mut state_dir = None;
        let mut hostname = None;
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--state-dir" => state_dir = it.next().map(PathBuf::from),
                "--hostname" => hostname = it.next(),
                _ => return Err(ShimError::Usage),
            }
        }
        match (state_dir, hostname) {
            (Some(state_dir), Some(hostname)) if state_dir.is_absolute() => Ok(ShimArgs {
                state_dir,
                hostname,
            }),
            _ => Err(ShimError::Usage),
        }
    }
}

/// Entry point of `timonier shim ARGS...` (ARGS without the subcommand). Must be called while
/// the process is single-threaded. Returns the process exit code for the *launcher*: 0 once the
/// daemonized shim is listening, 1 (with the reason on stderr) if it could not start.
pub fn run_shim_from_args<I: IntoIterator<Item = String>>(args: I) -> i32 {
    let args = match ShimArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    match launch(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Double-fork: the launcher waits on a pipe until the grandchild (new session, re-parented
/// away from the agent) reports "ready" or an error.
fn launch(args: &ShimArgs) -> Result<(), ShimError> {
    std::fs::create_dir_all(&args.state_dir)
        .map_err(|e| ShimError::io(format!("creating {}", args.state_dir.display()), e))?;
    if let Some(pid) = live_shim_pid(&args.state_dir) {
        return Err(ShimError::Startup(format!(
            "a shim (pid {pid}) already serves this state dir"
        )));
    }
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ShimError::sys("pipe2", e))?;
    // SAFETY: the caller guarantees a single-threaded process.
    match unsafe { fork() }.map_err(|e| ShimError::sys("fork", e))? {
        ForkResult::Parent { child } => {
            drop(w);
            let _ = nix::sys::wait::waitpid(child, None);
            let mut msg = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut msg);
            if msg == "ready" {
                Ok(())
            } else if msg.is_empty() {
                Err(ShimError::Startup("shim died during startup".into()))
            } else {
                Err(ShimError::Startup(msg))
            }
        }
        ForkResult::Child => {
            drop(r);
            let _ = setsid();
            // SAFETY: still single-threaded.
            match unsafe { fork() } {
                Ok(ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
                Ok(ForkResult::Child) => {}
                Err(_) => unsafe { libc::_exit(1) },
            }
            let mut w = std::fs::File::from(w);
            match init_daemon(args) {
                Ok(listener) => {
                    let _ = w.write_all(b"ready");
                    drop(w);
                    let paths = container::Paths {
                        state_dir: args.state_dir.clone(),
                    };
                    match server::Server::new(paths, listener) {
                        Ok(s) => s.run(),
                        Err(e) => tracing::error!(error = %e, "server init"),
                    }
                    std::process::exit(0)
                }
                Err(e) => {
                    let _ = w.write_all(e.to_string().as_bytes());
                    std::process::exit(1)
                }
            }
        }
    }
}

/// Become the pod's pause process: subreaper, new net/ipc/uts namespaces with the hostname,
/// stdio to /dev/null and stderr (where tracing writes) to `shim.log`, pid file, socket.
fn init_daemon(args: &ShimArgs) -> Result<UnixListener, ShimError> {
    let dir = &args.state_dir;
    let _ = std::env::set_current_dir("/");
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(ShimError::io(
            "PR_SET_CHILD_SUBREAPER",
            std::io::Error::last_os_error(),
        ));
    }
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
        .map_err(|e| ShimError::sys("unshare", e))?;
    sethostname(&args.hostname).map_err(|e| ShimError::sys("sethostname", e))?;
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| ShimError::io("/dev/null", e))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("shim.log"))
        .map_err(|e| ShimError::io("shim.log", e))?;
    // SAFETY: dup2 onto the standard descriptors.
    unsafe {
        libc::dup2(devnull.as_raw_fd(), 0);
        libc::dup2(devnull.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    let sock = dir.join("shim.sock");
    let _ = std::fs::remove_file(&sock);
    let (_dir, short) = util::socket_path(dir, "shim.sock").map_err(|e| ShimError::io("binding shim.sock", e))?;
    let listener = UnixListener::bind(&short).map_err(|e| ShimError::io("binding shim.sock", e))?;
    util::write_atomic(
        &dir.join("shim.pid"),
        std::process::id().to_string().as_bytes(),
    )
    .map_err(|e| ShimError::io("writing shim.pid", e))?;
    tracing::info!(pid = std::process::id(), hostname = %args.hostname, "shim started");
    Ok(listener)
}

/// The pid in `DIR/shim.pid` if that process is alive and is a shim for `DIR`.
pub fn live_shim_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join("shim.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let d = dir.as_os_str().as_encoded_bytes();
    let matches = args.windows(2).any(|w| w[0] == b"--state-dir" && w[1] == d);
    matches.then_some(pid)
}

fn wait_gone(pids: &[i32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if pids.iter().all(|p| kill(Pid::from_raw(*p), None).is_err()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Clean up after a shim that is dead or must die: kill it and its containers (checking pid
/// identity first), unmount rootfs mounts, remove leaf and pod cgroups and the state dir.
/// Blocking (up to a few seconds); call from `spawn_blocking` in async code.
pub fn cleanup_state_dir(dir: &Path) -> Result<(), ShimError> {
    let mut pids = Vec::new();
    if let Some(pid) = live_shim_pid(dir) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        pids.push(pid);
    }
    let mut cgroups = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("containers")) {
        for e in entries.flatten() {
            let Ok(data) = std::fs::read(e.path().join("meta.json")) else {
                continue;
            };
            let Ok(meta) = serde_json::from_slice::<protocol::MetaRecord>(&data) else {
                continue;
            };
            if meta.pid > 0 && util::proc_start_time(meta.pid) == Some(meta.pid_start) {
                let _ = kill(Pid::from_raw(meta.pid), Signal::SIGKILL);
                pids.push(meta.pid);
            }
            cgroups.push(meta.cgroup_path);
        }
    }
    wait_gone(&pids, Duration::from_secs(5));
    for m in util::mounts_under(dir) {
        let _ = umount2(&m, MntFlags::MNT_DETACH);
    }
    let mut parents: Vec<String> = std::fs::read(dir.join(CGROUP_PARENTS_FILE))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    for cg in &cgroups {
        util::remove_cgroup(cg);
        if let Some(p) = util::cgroup_parent(cg) {
            if !parents.contains(&p) {
                parents.push(p);
            }
        }
    }
    for p in parents {
        util::remove_cgroup(&p);
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ShimError::io(format!("removing {}", dir.display()), e)),
    }
}
