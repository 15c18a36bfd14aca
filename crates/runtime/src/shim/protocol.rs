//! The JSON-lines protocol between the agent (client) and a pod's shim (server).
//!
//! One request per line, one response per line. Every request gets exactly one response, except
//! `Exec`, which is answered `ExecStarted` at once and `Exited` when the process ends, on the same
//! connection. `Exec` carries its stdio as file descriptors (SCM_RIGHTS) on the message holding
//! the request line.

use serde::{Deserialize, Serialize};

use crate::bundle::ContainerSpec;

/// A request to the shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Request {
    /// Mount the rootfs, write the bundle, create and start the container.
    Create { spec: Box<ContainerSpec> },
    /// Send `signal` (a number) to the container's init process.
    Kill { id: String, signal: i32 },
    /// Remove a container; a running one is SIGKILLed first.
    Remove { id: String },
    /// The state of every container the shim knows.
    Status,
    /// Stop everything: SIGTERM, wait `grace_seconds`, SIGKILL, remove all, exit.
    Shutdown { grace_seconds: u64 },
    /// Run a process in a running container. Fds: stdin, stdout, stderr (in that order; fewer
    /// means the rest are /dev/null), or one pty slave when `tty`.
    Exec {
        id: String,
        args: Vec<String>,
        env: Vec<String>,
        cwd: Option<String>,
        tty: bool,
    },
    /// Close the shim's own end of a container's stdin FIFO, so that the container reads EOF
    /// once its attached writers are gone (`stdinOnce`).
    CloseStdin { id: String },
    /// Set the window size of a `tty: true` container's terminal.
    Resize { id: String, width: u16, height: u16 },
    /// Liveness check.
    Ping,
}

/// Why a request failed; the kubelet maps these onto upstream reasons.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ErrorKind {
    /// The executable was not found (upstream: StartError, exit 128).
    NotFound,
    /// A rootfs or volume mount failed.
    Mount,
    /// No such container.
    NoSuchContainer,
    /// A container with that id exists already.
    AlreadyExists,
    Other,
}

/// A response from the shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Response {
    Created { pid: i32, started_at: String },
    Ok,
    Status { containers: Vec<ContainerState> },
    ExecStarted { pid: i32 },
    Exited { exit_code: i32 },
    Pong { pid: i32 },
    Error { kind: ErrorKind, message: String },
}

/// One container as the shim sees it. Timestamps are RFC 3339 (UTC, nanoseconds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    pub running: bool,
    /// Exit code as a shell reports it: the status, or 128+signal when killed.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub oom_killed: bool,
    pub log_path: std::path::PathBuf,
}

/// What `DIR/containers/<id>/exit.json` holds, so that exits survive a shim's death.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub finished_at: String,
    pub oom_killed: bool,
}

/// What `DIR/containers/<id>/meta.json` holds: enough to clean up after a dead shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaRecord {
    pub pid: i32,
    /// Start time of `pid` in clock ticks (field 22 of /proc/PID/stat), to avoid killing a reused pid.
    pub pid_start: u64,
    pub started_at: String,
    pub cgroup_path: String,
    pub log_path: std::path::PathBuf,
}
