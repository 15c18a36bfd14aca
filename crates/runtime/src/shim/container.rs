//! Container lifecycle inside the shim: overlay rootfs, bundle, libcontainer create/start,
//! exit recording and removal. Everything here runs on the shim's single thread, which is what
//! makes libcontainer's raw `clone3` safe (see the notes, §1(a) "Fork-safety").

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container as LcContainer;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{pipe2, Pid};

use super::logs::{LogWriter, Stream};
use super::protocol::{ContainerState, ErrorKind, ExitRecord, MetaRecord};
use super::util::{self, now_rfc3339};
use crate::bundle::{write_bundle, ContainerSpec};

/// A failed operation, with the kind the kubelet maps to an upstream reason.
#[derive(Debug)]
pub struct OpError {
    pub kind: ErrorKind,
    pub message: String,
}

impl OpError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        OpError {
            kind,
            message: message.into(),
        }
    }
    fn other(e: impl std::fmt::Display) -> Self {
        OpError::new(ErrorKind::Other, e.to_string())
    }
}

/// A container's stdout or stderr pipe, read by the poll loop.
pub struct LogPipe {
    pub file: File,
    pub stream: Stream,
    pub id: String,
}

/// One container the shim owns.
pub struct Container {
    pub spec: ContainerSpec,
    pub pid: i32,
    pub started_at: String,
    pub exit: Option<ExitRecord>,
    pub log: LogWriter,
    pub dir: PathBuf,
    /// The shim's writer on the stdin FIFO: while it is open the container never reads EOF.
    pub stdin_keepalive: Option<std::os::fd::OwnedFd>,
    /// The terminal of a `tty: true` container.
    pub console: Option<Console>,
}

/// The pty master of a `tty: true` container, which the shim holds as a runtime holds a
/// console: the poll loop reads a second descriptor of it into the log (a [`LogPipe`]), copies
/// the stdin FIFO into it, and sets its window size.
pub struct Console {
    pub master: File,
    /// The stdin FIFO's read end (non-blocking); `None` without `stdin: true`, or once the
    /// attached client's input ended for good (`stdinOnce`).
    pub input: Option<File>,
    /// Input read from the FIFO that the pty did not take yet.
    pub pending: Vec<u8>,
}

impl Container {
    pub fn state(&self) -> ContainerState {
        ContainerState {
            id: self.spec.id.clone(),
            pid: self.pid,
            running: self.exit.is_none(),
            exit_code: self.exit.as_ref().map(|e| e.exit_code),
            signal: self.exit.as_ref().and_then(|e| e.signal),
            started_at: self.started_at.clone(),
            finished_at: self.exit.as_ref().map(|e| e.finished_at.clone()),
            oom_killed: self.exit.as_ref().is_some_and(|e| e.oom_killed),
            log_path: self.spec.log_path.clone(),
        }
    }

    /// Record the exit of the init process: exit code as a shell reports it, OOM from the
    /// cgroup (read now, before anything removes it), persisted to `exit.json`.
    pub fn record_exit(&mut self, status: WaitStatus) {
        let (exit_code, signal) = match status {
            WaitStatus::Exited(_, code) => (code, None),
            WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
            _ => return,
        };
        let oom_killed = util::cgroup_oom_killed(&self.spec.cgroup_path);
        let rec = ExitRecord {
            exit_code,
            signal,
            finished_at: now_rfc3339(),
            oom_killed,
        };
        tracing::info!(id = %self.spec.id, exit_code, ?signal, oom_killed, "container exited");
        match serde_json::to_vec(&rec) {
            Ok(data) => {
                if let Err(e) = util::write_atomic(&self.dir.join("exit.json"), &data) {
                    tracing::warn!(error = %e, "writing exit.json");
                }
            }
            Err(e) => tracing::warn!(error = %e, "serializing exit record"),
        }
        self.exit = Some(rec);
    }
}

/// Container ids become directory names and libcontainer ids: keep them to a safe alphabet.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.')
}

fn nonblocking_pipe() -> Result<(File, OwnedFd), OpError> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(OpError::other)?;
    fcntl(r.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(OpError::other)?;
    Ok((File::from(r), w))
}

/// Map libcontainer's messages onto our kinds, with upstream's wording for a missing binary.
fn classify(spec: &ContainerSpec, msg: String) -> OpError {
    let arg0 = spec.args.first().cloned().unwrap_or_default();
    if msg.contains("not found in $PATH") || msg.contains("not found in PATH") {
        OpError::new(
            ErrorKind::NotFound,
            format!("exec: \"{arg0}\": executable file not found in $PATH"),
        )
    } else if msg.contains("does not have correct permissions") {
        OpError::new(
            ErrorKind::NotFound,
            format!("exec: \"{arg0}\": permission denied"),
        )
    } else if msg.to_ascii_lowercase().contains("mount") {
        OpError::new(ErrorKind::Mount, msg)
    } else {
        OpError::new(ErrorKind::Other, msg)
    }
}

/// The shim's view of paths under its state dir.
pub struct Paths {
    pub state_dir: PathBuf,
}

impl Paths {
    pub fn youki_root(&self) -> PathBuf {
        self.state_dir.join("youki")
    }
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join("containers").join(id)
    }
}

/// Create and start a container. On failure everything created so far is undone.
pub fn create(paths: &Paths, spec: ContainerSpec) -> Result<(Container, Vec<LogPipe>), OpError> {
    if !valid_id(&spec.id) {
        return Err(OpError::new(
            ErrorKind::Other,
            format!("invalid container id {:?}", spec.id),
        ));
    }
    if spec.lower_dirs.is_empty() {
        return Err(OpError::new(
            ErrorKind::Mount,
            "no image layers (lower_dirs is empty)",
        ));
    }
    let dir = paths.container_dir(&spec.id);
    if dir.exists() {
        // A leftover of an exited container with the same id: refuse rather than clobber.
        return Err(OpError::new(
            ErrorKind::AlreadyExists,
            format!("container {} exists", spec.id),
        ));
    }
    let result = create_inner(paths, &dir, &spec);
    match result {
        Ok(Started { pid, log, pipes, stdin_keepalive, console }) => {
            let started_at = now_rfc3339();
            let meta = MetaRecord {
                pid,
                pid_start: util::proc_start_time(pid).unwrap_or(0),
                started_at: started_at.clone(),
                cgroup_path: spec.cgroup_path.clone(),
                log_path: spec.log_path.clone(),
            };
            if let Ok(data) = serde_json::to_vec(&meta) {
                if let Err(e) = util::write_atomic(&dir.join("meta.json"), &data) {
                    tracing::warn!(error = %e, "writing meta.json");
                }
            }
            tracing::info!(id = %spec.id, pid, "container started");
            Ok((
                Container {
                    spec,
                    pid,
                    started_at,
                    exit: None,
                    log,
                    dir,
                    stdin_keepalive,
                    console,
                },
                pipes,
            ))
        }
        Err(e) => {
            tracing::warn!(id = %spec.id, error = %e.message, "create failed");
            teardown(paths, &spec, &dir);
            Err(e)
        }
    }
}

/// What `create_inner` hands back for a started container.
struct Started {
    pid: i32,
    log: LogWriter,
    pipes: Vec<LogPipe>,
    stdin_keepalive: Option<OwnedFd>,
    console: Option<Console>,
}

fn create_inner(paths: &Paths, dir: &Path, spec: &ContainerSpec) -> Result<Started, OpError> {
    let rootfs = dir.join("rootfs");
    for sub in ["upper", "work", "rootfs"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(OpError::other)?;
    }
    let lower: Vec<String> = spec
        .lower_dirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    for l in &lower {
        if l.contains(':') || l.contains(',') {
            return Err(OpError::new(
                ErrorKind::Mount,
                format!("unsupported layer path {l}"),
            ));
        }
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| OpError::new(ErrorKind::Mount, format!("mounting overlay rootfs: {e}")))?;
    write_bundle(spec, dir, &rootfs).map_err(|e| OpError::new(ErrorKind::Other, e.to_string()))?;

    let mut log = LogWriter::open(&spec.log_path, spec.log_max_bytes, spec.log_max_files)
        .map_err(|e| OpError::other(format!("opening log {}: {e}", spec.log_path.display())))?;
    let root = paths.youki_root();
    std::fs::create_dir_all(&root).map_err(OpError::other)?;
    let (mut stdin_r, stdin_keepalive) = match spec.stdin {
        true => stdin_fifo(dir, spec.tty).map(|(r, k)| (Some(r), Some(k)))?,
        false => (None, None),
    };
    let mut builder = ContainerBuilder::new(spec.id.clone(), SyscallType::default())
        .with_root_path(&root)
        .map_err(|e| OpError::other(e.to_string()))?;
    let mut pipes = Vec::new();
    let console_listener = if spec.tty {
        // libcontainer's init opens the pty inside the container and sends us the master.
        log = log.for_terminal();
        let listener = bind_in(dir, CONSOLE_SOCKET).map_err(|e| OpError::other(format!("console socket: {e}")))?;
        builder = builder.with_console_socket(Some(dir.join(CONSOLE_SOCKET)));
        Some(listener)
    } else {
        let (out_r, out_w) = nonblocking_pipe()?;
        let (err_r, err_w) = nonblocking_pipe()?;
        builder = builder.with_stdout(out_w).with_stderr(err_w);
        if let Some(r) = stdin_r.take() {
            builder = builder.with_stdin(r);
        }
        for (file, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
            pipes.push(LogPipe { file, stream, id: spec.id.clone() });
        }
        None
    };
    let built = builder
        .as_init(dir)
        .with_systemd(false)
        .with_detach(true)
        .build();
    let mut lc = built.map_err(|e| classify(spec, e.to_string()))?;
    let console = match console_listener {
        Some(listener) => {
            let master = receive_master(&listener).map_err(|e| OpError::other(format!("receiving the container's terminal: {e}")))?;
            let _ = std::fs::remove_file(dir.join(CONSOLE_SOCKET));
            fcntl(master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(OpError::other)?;
            let reader = master.try_clone().map_err(OpError::other)?;
            pipes.push(LogPipe { file: File::from(reader), stream: Stream::Stdout, id: spec.id.clone() });
            Some(Console { master: File::from(master), input: stdin_r.map(File::from), pending: Vec::new() })
        }
        None => None,
    };
    lc.start().map_err(|e| classify(spec, e.to_string()))?;
    let pid = lc
        .pid()
        .ok_or_else(|| OpError::new(ErrorKind::Other, "libcontainer reported no pid"))?
        .as_raw();
    Ok(Started { pid, log, pipes, stdin_keepalive, console })
}

/// The console socket's name in the container directory.
const CONSOLE_SOCKET: &str = "console.sock";

/// Binds a unix socket at `dir/name`, however long `dir` is.
fn bind_in(dir: &Path, name: &str) -> std::io::Result<std::os::unix::net::UnixListener> {
    let (_dir, path) = super::util::socket_path(dir, name)?;
    std::os::unix::net::UnixListener::bind(path)
}

/// Takes the pty master that libcontainer's init sent on the console socket.
fn receive_master(listener: &std::os::unix::net::UnixListener) -> std::io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    listener.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut buf = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut cmsg), nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC)?;
    for cm in msg.cmsgs()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = cm {
            let mut fds = fds.into_iter();
            if let Some(fd) = fds.next() {
                for extra in fds {
                    // SAFETY: installed for us by the kernel; not wanted.
                    drop(unsafe { OwnedFd::from_raw_fd(extra) });
                }
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::other("no descriptor on the console socket"))
}

/// Makes `<dir>/stdin`, a FIFO: returns its read end (for the container, or non-blocking for
/// the shim itself when it copies input into a terminal) and the shim's keep-alive write end,
/// opened first so that neither open blocks.
fn stdin_fifo(dir: &Path, nonblocking: bool) -> Result<(OwnedFd, OwnedFd), OpError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("stdin");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| OpError::other(format!("mkfifo {}: {e}", path.display())))?;
    let keepalive = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(&path).map_err(OpError::other)?;
    let flags = if nonblocking { libc::O_NONBLOCK } else { 0 };
    let reader = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(&path).map_err(OpError::other)?;
    Ok((reader.into(), keepalive.into()))
}

/// Delete libcontainer state, unmount the rootfs, remove the leaf cgroup and the directory.
/// Safe to call on a half-created container.
pub fn teardown(paths: &Paths, spec: &ContainerSpec, dir: &Path) {
    let state = paths.youki_root().join(&spec.id);
    if state.exists() {
        match LcContainer::load(state.clone()) {
            Ok(mut c) => {
                if let Err(e) = c.delete(true) {
                    tracing::warn!(id = %spec.id, error = %e, "libcontainer delete");
                }
            }
            Err(e) => tracing::warn!(id = %spec.id, error = %e, "libcontainer load"),
        }
        let _ = std::fs::remove_dir_all(&state);
    }
    for m in util::mounts_under(dir) {
        if let Err(e) = umount2(&m, MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %m.display(), error = %e, "unmount");
        }
    }
    util::remove_cgroup(&spec.cgroup_path);
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "removing container dir");
        }
    }
}

/// Stop a container for good: SIGKILL if running and wait for it (it is our child, so the
/// pid cannot have been reused), then tear down.
pub fn remove(paths: &Paths, c: &mut Container) {
    if c.exit.is_none() {
        let pid = Pid::from_raw(c.pid);
        let _ = kill(pid, Signal::SIGKILL);
        loop {
            match waitpid(pid, None) {
                Ok(st @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    c.record_exit(st);
                    break;
                }
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(id = %c.spec.id, error = %e, "waitpid on remove");
                    c.record_exit(WaitStatus::Signaled(pid, Signal::SIGKILL, false));
                    break;
                }
            }
        }
    }
    teardown(paths, &c.spec, &c.dir);
}
