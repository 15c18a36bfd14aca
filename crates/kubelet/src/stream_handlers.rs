//! What `exec`, `attach` and `port-forward` do once the streaming protocol is negotiated
//! (`streaming/`): an exec runs through the pod's shim with our pipes or a pty as its stdio;
//! attach follows the container's output; port-forward connects to the port inside the pod's
//! network namespace, as upstream's kubelet does.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use timonier_runtime::shim::{ExecStdio, ShimClient};

use crate::streaming::{ExecStreams, ExitStatus};

/// The running container `name` of the pod whose directory is `dir`: its shim and id.
pub async fn running_container(dir: &std::path::Path, name: &str) -> Result<(ShimClient, String), String> {
    let record: serde_json::Value = std::fs::read(dir.join("pod.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or("the pod is not running on this node")?;
    let id = record
        .pointer(&format!("/containers/{name}/current/id"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("container not found (\"{name}\")"))?;
    let shim = ShimClient::connect(&dir.join("sandbox")).await.map_err(|e| e.to_string())?;
    let running = shim.status().await.map_err(|e| e.to_string())?.iter().any(|s| s.id == id && s.running);
    if !running {
        return Err(format!("container not found (\"{name}\")"));
    }
    Ok((shim, id))
}

/// A pty pair from the container's own devpts (through `/proc/PID/root/dev/ptmx`), so that
/// `tty` inside the container names a device that exists there, as with a runtime's console.
/// Falls back to a pty of the node's devpts.
fn container_pty(pid: i32) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use std::os::unix::fs::OpenOptionsExt;
    let in_container = (|| -> std::io::Result<(OwnedFd, OwnedFd)> {
        let master = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(format!("/proc/{pid}/root/dev/ptmx"))?;
        let unlock: libc::c_int = 0;
        // SAFETY: ioctls on the master we just opened, with valid arguments.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let slave = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY) };
        if slave < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: TIOCGPTPEER returned a new descriptor that we now own.
        let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(slave) };
        Ok((master.into(), slave))
    })();
    match in_container {
        Ok(p) => Ok(p),
        Err(e) => {
            tracing::debug!(error = %e, "no pty in the container's devpts; using the node's");
            let p = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
            Ok((p.master, p.slave))
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe().map_err(std::io::Error::from)
}

/// Copies `from` into `to` until EOF, then drops `to` (closing the far end's input).
async fn pump(mut from: impl tokio::io::AsyncRead + Unpin, mut to: impl tokio::io::AsyncWrite + Unpin) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                let _ = to.flush().await;
            }
        }
    }
    let _ = to.shutdown().await;
}

/// An async handle on a pipe end or pty master (reads and writes run on the blocking pool).
fn async_file(fd: OwnedFd) -> tokio::fs::File {
    tokio::fs::File::from_std(std::fs::File::from(fd))
}

/// Runs `command` in the container, wired to the client's streams.
pub async fn exec(shim: ShimClient, id: String, command: Vec<String>, s: ExecStreams) -> ExitStatus {
    if command.is_empty() {
        return ExitStatus::Error("you must specify at least one command for the container".into());
    }
    let result = if s.tty { exec_tty(&shim, &id, command, s).await } else { exec_pipes(&shim, &id, command, s).await };
    match result {
        Ok(0) => ExitStatus::Success,
        Ok(code) => ExitStatus::Code(code),
        Err(e) => ExitStatus::Error(e),
    }
}

async fn exec_pipes(shim: &ShimClient, id: &str, command: Vec<String>, s: ExecStreams) -> Result<i32, String> {
    let io = |e: std::io::Error| e.to_string();
    let (stdin_r, stdin_w) = match s.stdin.is_some() {
        true => {
            let (r, w) = pipe().map_err(io)?;
            (Some(r), Some(w))
        }
        false => (None, None),
    };
    let (out_r, out_w) = pipe().map_err(io)?;
    let (err_r, err_w) = pipe().map_err(io)?;
    let proc = shim
        .exec(id, command, vec![], None, ExecStdio::Pipes { stdin: stdin_r, stdout: Some(out_w), stderr: Some(err_w) })
        .await
        .map_err(|e| e.to_string())?;
    let mut tasks = vec![];
    if let (Some(input), Some(w)) = (s.stdin, stdin_w) {
        tasks.push(tokio::spawn(pump(input, async_file(w))));
    }
    let out = match s.stdout {
        Some(o) => tokio::spawn(pump(async_file(out_r), o)),
        None => tokio::spawn(pump(async_file(out_r), tokio::io::sink())),
    };
    let err = match s.stderr {
        Some(e) => tokio::spawn(pump(async_file(err_r), e)),
        None => tokio::spawn(pump(async_file(err_r), tokio::io::sink())),
    };
    let code = proc.wait().await.map_err(|e| e.to_string());
    // Output written before the exit is delivered before the status.
    let _ = out.await;
    let _ = err.await;
    for t in tasks {
        t.abort();
    }
    code
}

async fn exec_tty(shim: &ShimClient, id: &str, command: Vec<String>, s: ExecStreams) -> Result<i32, String> {
    let pid = shim.status().await.map_err(|e| e.to_string())?.into_iter().find(|c| c.id == id).map(|c| c.pid).unwrap_or(0);
    let (master, slave) = container_pty(pid).map_err(|e| e.to_string())?;
    let set_size = |fd: &OwnedFd, (w, h): (u16, u16)| {
        let ws = libc::winsize { ws_row: h, ws_col: w, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ on the pty master we own, with a valid winsize.
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    };
    // The client sends its terminal's size first thing: the process starts with it, rather
    // than racing it (a program asking for the size at once would find 0×0).
    let mut resize = s.resize;
    if let Some(r) = resize.as_mut() {
        if let Ok(Some(size)) = tokio::time::timeout(std::time::Duration::from_millis(500), r.recv()).await {
            set_size(&master, size);
        }
    }
    let proc = shim.exec(id, command, vec!["TERM=xterm".into()], None, ExecStdio::Tty(slave)).await.map_err(|e| e.to_string())?;
    let write_side = master.try_clone().map_err(|e| e.to_string())?;
    let mut tasks = vec![];
    if let Some(mut resize) = resize {
        let keep = master.try_clone().map_err(|e| e.to_string())?;
        tasks.push(tokio::spawn(async move {
            while let Some(size) = resize.recv().await {
                set_size(&keep, size);
            }
        }));
    }
    if let Some(input) = s.stdin {
        tasks.push(tokio::spawn(pump(input, async_file(write_side))));
    }
    let out = match s.stdout {
        Some(o) => tokio::spawn(pump(async_file(master), o)),
        None => tokio::spawn(pump(async_file(master), tokio::io::sink())),
    };
    let code = proc.wait().await.map_err(|e| e.to_string());
    // The pty reports EIO once the last process holding the slave is gone.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), out).await;
    for t in tasks {
        t.abort();
    }
    code
}

/// The container's stdin, for `attach -i`: its FIFO (read by the container, or by the shim
/// for a terminal), and whether it closes for good when this client's input ends (`stdinOnce`).
pub struct AttachStdin {
    pub fifo: PathBuf,
    pub once: bool,
}

/// The running container an attach follows.
pub struct AttachTarget {
    pub shim: ShimClient,
    pub id: String,
    pub log_path: PathBuf,
    /// Appears when the container has exited.
    pub exit_marker: PathBuf,
    pub stdin: Option<AttachStdin>,
}

/// Follows what the container writes from now on, until it exits or the client leaves; with
/// `stdin`, what the client types goes to the container; with a TTY, window sizes too.
pub async fn attach(target: AttachTarget, s: ExecStreams) -> ExitStatus {
    let AttachTarget { shim, id, log_path, exit_marker, stdin } = target;
    if let (Some(input), Some(stdin)) = (s.stdin, stdin) {
        match std::fs::OpenOptions::new().write(true).open(&stdin.fifo) {
            Ok(w) => {
                let (shim, id) = (shim.clone(), id.clone());
                tokio::spawn(async move {
                    pump(input, tokio::fs::File::from_std(w)).await;
                    if stdin.once {
                        let _ = shim.close_stdin(&id).await;
                    }
                });
            }
            Err(e) => return ExitStatus::Error(format!("cannot open the container's stdin: {e}")),
        }
    }
    let mut resizer = None;
    if let Some(mut resize) = s.resize {
        let (shim, id) = (shim.clone(), id.clone());
        resizer = Some(tokio::spawn(async move {
            while let Some((w, h)) = resize.recv().await {
                let _ = shim.resize(&id, w, h).await;
            }
        }));
    }
    let _stop_resizer = resizer.map(timonier_client::AbortOnDrop);
    // A terminal echoes keys as its user types: follow it closely.
    let interval = std::time::Duration::from_millis(if s.tty { 15 } else { 100 });
    let mut out = s.stdout;
    let mut err = s.stderr;
    let mut pos = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let mut carry = Vec::new();
    loop {
        let len = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0;
        }
        if len > pos {
            use std::io::{Read, Seek};
            if let Ok(mut f) = std::fs::File::open(&log_path) {
                if f.seek(std::io::SeekFrom::Start(pos)).is_ok() {
                    if let Ok(n) = f.take(len - pos).read_to_end(&mut carry) {
                        pos += n as u64;
                    }
                }
            }
            while let Some(i) = carry.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = carry.drain(..=i).collect();
                let mut parts = line.splitn(4, |b| *b == b' ');
                let (_, stream, tag, text) = (parts.next(), parts.next(), parts.next(), parts.next().unwrap_or(b""));
                let mut text = text.to_vec();
                if tag != Some(b"P") {
                    if !text.ends_with(b"\n") {
                        text.push(b'\n');
                    }
                } else if text.ends_with(b"\n") {
                    text.pop();
                }
                let target = if stream == Some(b"stderr") { err.as_mut() } else { out.as_mut() };
                if let Some(t) = target {
                    if t.write_all(&text).await.is_err() {
                        return ExitStatus::Success;
                    }
                    let _ = t.flush().await;
                }
            }
            continue;
        }
        if exit_marker.exists() {
            return ExitStatus::Success;
        }
        tokio::time::sleep(interval).await;
    }
}

/// A TCP connection to `port` on the pod's loopback, made inside its network namespace (so
/// ports bound to 127.0.0.1 in the pod work, as upstream).
pub async fn connect_in_pod(netns_pid: i32, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::task::spawn_blocking(move || -> std::io::Result<std::net::TcpStream> {
        let own = std::fs::File::open("/proc/thread-self/ns/net")?;
        let target = std::fs::File::open(format!("/proc/{netns_pid}/ns/net"))?;
        nix::sched::setns(&target, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        let r = std::net::TcpStream::connect_timeout(&std::net::SocketAddr::from(([127, 0, 0, 1], port)), std::time::Duration::from_secs(5));
        // This pool thread goes back to the node's namespace before it runs anything else.
        if let Err(e) = nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWNET) {
            tracing::error!(error = %e, "cannot return a thread to the node's network namespace; aborting it");
            std::process::abort();
        }
        r
    })
    .await
    .map_err(std::io::Error::other)??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}
