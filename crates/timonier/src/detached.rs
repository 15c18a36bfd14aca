//! The processes the local cluster runs in the background — servers, node agents, etcd
//! members — each known by a PID file, as minikube and kind keep theirs.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The PID in `pid_file` if that process runs and is still the one started: its command line
/// holds every one of `words` (a recycled PID belongs to someone else).
pub fn running(pid_file: &Path, words: &[&str]) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    let ours = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| words.iter().all(|w| c.contains(w)));
    (ours && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// Spawns `cmd` in a session of its own (it outlives this command and the terminal) and
/// records its PID in `pid_file`.
pub fn spawn(cmd: &mut Command, pid_file: &Path, what: &str) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let child = cmd.spawn().with_context(|| format!("cannot start {what}"))?;
    std::fs::write(pid_file, child.id().to_string()).with_context(|| format!("cannot write {}", pid_file.display()))?;
    Ok(child)
}

/// Stops every process of `processes` (PID file, words) that runs: SIGTERM to all at once,
/// SIGKILL to those still there after `grace`; removes the PID files.
pub fn stop(processes: &[(&Path, &[&str])], grace: Duration) {
    let alive = || processes.iter().filter_map(|(file, words)| running(file, words)).collect::<Vec<_>>();
    for pid in alive() {
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while !alive().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in alive() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for (file, _) in processes {
        let _ = std::fs::remove_file(file);
    }
}
