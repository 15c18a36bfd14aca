//! The agent's side of the shim protocol (tokio). Each call opens its own connection, so a
//! `ShimClient` is cheap to clone and calls can run concurrently (the shim serves them in turn).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{ContainerState, Request, Response};
use super::ShimError;
use crate::bundle::ContainerSpec;

/// Handle to one pod's shim.
#[derive(Debug, Clone)]
pub struct ShimClient {
    state_dir: PathBuf,
    pid: i32,
}

/// Standard streams for an exec.
pub enum ExecStdio {
    /// Separate descriptors; `None` means /dev/null.
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    },
    /// One pty slave used for all three.
    Tty(OwnedFd),
}

/// A running exec. Dropping it closes the connection, and the shim then SIGKILLs the process
/// (so a timed-out probe leaves nothing behind).
pub struct ExecProcess {
    pid: i32,
    reader: BufReader<UnixStream>,
}

impl ExecProcess {
    /// Host pid of the exec'd process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Wait for the process to end; its exit code (128+signal when killed).
    pub async fn wait(mut self) -> Result<i32, ShimError> {
        match read_response(&mut self.reader).await? {
            Response::Exited { exit_code } => Ok(exit_code),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(r: Response) -> ShimError {
    match r {
        Response::Error { kind, message } => ShimError::Shim { kind, message },
        other => ShimError::Protocol(format!("unexpected response {other:?}")),
    }
}

async fn read_response(reader: &mut BufReader<UnixStream>) -> Result<Response, ShimError> {
    let mut line = String::new();
    let n = reader
        .read_line(&mut line)
        .await
        .map_err(|e| ShimError::io("reading from shim", e))?;
    if n == 0 {
        return Err(ShimError::Protocol("shim closed the connection".into()));
    }
    serde_json::from_str(&line).map_err(|e| ShimError::Protocol(format!("bad response: {e}")))
}

fn request_line(req: &Request) -> Result<Vec<u8>, ShimError> {
    let mut line = serde_json::to_vec(req).map_err(|e| ShimError::Protocol(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
}

impl ShimClient {
    /// Start a shim: runs `exe <args_prefix> --state-dir DIR --hostname NAME`, which returns
    /// once the daemonized shim listens, then connects. Takes a few ms.
    pub async fn start(
        exe: &Path,
        args_prefix: &[&str],
        state_dir: &Path,
        hostname: &str,
    ) -> Result<ShimClient, ShimError> {
        let out = tokio::process::Command::new(exe)
            .args(args_prefix)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--hostname")
            .arg(hostname)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .map_err(|e| ShimError::io(format!("running {}", exe.display()), e))?;
        if !out.status.success() {
            return Err(ShimError::Startup(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Self::connect(state_dir).await
    }

    /// Re-adopt a running shim (after an agent restart). Errors if it is gone.
    pub async fn connect(state_dir: &Path) -> Result<ShimClient, ShimError> {
        let mut c = ShimClient {
            state_dir: state_dir.to_path_buf(),
            pid: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match c.call(&Request::Ping).await {
                Ok(Response::Pong { pid }) => {
                    c.pid = pid;
                    return Ok(c);
                }
                Ok(other) => return Err(unexpected(other)),
                Err(_)
                    if Instant::now() < deadline && super::live_shim_pid(state_dir).is_some() =>
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(_) => return Err(ShimError::Gone(state_dir.to_path_buf())),
            }
        }
    }

    /// The shim's pid: the pod's network namespace is `/proc/<pid>/ns/net`.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Connects to the shim's socket (through a short path when the state dir is deep).
    async fn open(&self) -> std::io::Result<UnixStream> {
        let (_dir, path) = super::util::socket_path(&self.state_dir, "shim.sock")?;
        UnixStream::connect(path).await
    }

    async fn call(&self, req: &Request) -> Result<Response, ShimError> {
        let mut s = self
            .open()
            .await
            .map_err(|e| ShimError::io("connecting to shim", e))?;
        s.write_all(&request_line(req)?)
            .await
            .map_err(|e| ShimError::io("writing to shim", e))?;
        let mut reader = BufReader::new(s);
        read_response(&mut reader).await
    }

    async fn call_ok(&self, req: &Request) -> Result<(), ShimError> {
        match self.call(req).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Create and start a container; returns its pid and start time (RFC 3339).
    pub async fn create(&self, spec: &ContainerSpec) -> Result<(i32, String), ShimError> {
        match self
            .call(&Request::Create {
                spec: Box::new(spec.clone()),
            })
            .await?
        {
            Response::Created { pid, started_at } => Ok((pid, started_at)),
            other => Err(unexpected(other)),
        }
    }

    /// Signal a container's init process (a no-op once it has exited).
    pub async fn kill(&self, id: &str, signal: i32) -> Result<(), ShimError> {
        self.call_ok(&Request::Kill {
            id: id.to_string(),
            signal,
        })
        .await
    }

    /// Lets the container read EOF on its stdin once the attached writers are gone (for a
    /// terminal: hangs it up, as a runtime closing the console does).
    pub async fn close_stdin(&self, id: &str) -> Result<(), ShimError> {
        self.call_ok(&Request::CloseStdin { id: id.to_string() }).await
    }

    /// Sets the window size of a `tty: true` container's terminal.
    pub async fn resize(&self, id: &str, width: u16, height: u16) -> Result<(), ShimError> {
        self.call_ok(&Request::Resize { id: id.to_string(), width, height }).await
    }

    /// Remove a container (SIGKILLing it if still running).
    pub async fn remove(&self, id: &str) -> Result<(), ShimError> {
        self.call_ok(&Request::Remove { id: id.to_string() }).await
    }

    pub async fn status(&self) -> Result<Vec<ContainerState>, ShimError> {
        match self.call(&Request::Status).await? {
            Response::Status { containers } => Ok(containers),
            other => Err(unexpected(other)),
        }
    }

    /// Stop all containers (SIGTERM, `grace_seconds`, SIGKILL), remove them, and end the shim.
    pub async fn shutdown(&self, grace_seconds: u64) -> Result<(), ShimError> {
        self.call_ok(&Request::Shutdown { grace_seconds }).await?;
        // The answer comes just before exit; wait until the process is really gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
        {
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Run `args` in container `id`. The stdio descriptors are passed to the shim over
    /// SCM_RIGHTS; the returned handle resolves to the exit code.
    pub async fn exec(
        &self,
        id: &str,
        args: Vec<String>,
        env: Vec<String>,
        cwd: Option<String>,
        stdio: ExecStdio,
    ) -> Result<ExecProcess, ShimError> {
        let (tty, fds): (bool, Vec<OwnedFd>) = match stdio {
            ExecStdio::Tty(fd) => (true, vec![fd]),
            ExecStdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                let mut v = Vec::new();
                for f in [stdin, stdout, stderr] {
                    v.push(match f {
                        Some(f) => f,
                        None => std::fs::OpenOptions::new()
                            .read(true)
                            .write(true)
                            .open("/dev/null")
                            .map_err(|e| ShimError::io("/dev/null", e))?
                            .into(),
                    });
                }
                (false, v)
            }
        };
        let line = request_line(&Request::Exec {
            id: id.to_string(),
            args,
            env,
            cwd,
            tty,
        })?;
        let s = self
            .open()
            .await
            .map_err(|e| ShimError::io("connecting to shim", e))?;
        // One sendmsg carries the whole line and the fds; the socket buffer is far larger than
        // a request, so waiting for writability once is enough.
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        loop {
            s.writable()
                .await
                .map_err(|e| ShimError::io("shim socket", e))?;
            let cmsg = [ControlMessage::ScmRights(&raw)];
            match sendmsg::<()>(
                s.as_raw_fd(),
                &[IoSlice::new(&line)],
                &cmsg,
                MsgFlags::empty(),
                None,
            ) {
                Ok(n) if n == line.len() => break,
                Ok(n) => return Err(ShimError::Protocol(format!("short send {n}"))),
                Err(nix::errno::Errno::EAGAIN) => continue,
                Err(e) => return Err(ShimError::sys("sendmsg", e)),
            }
        }
        drop(fds);
        let mut reader = BufReader::new(s);
        match read_response(&mut reader).await? {
            Response::ExecStarted { pid } => Ok(ExecProcess { pid, reader }),
            other => Err(unexpected(other)),
        }
    }
}
