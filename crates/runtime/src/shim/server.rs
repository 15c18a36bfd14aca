//! The shim's single-threaded poll loop: the unix socket, container log pipes, and child exits.
//!
//! Signals are turned into bytes on a self-pipe rather than read with a signalfd: a signalfd
//! needs the signals blocked, and libcontainer does not reset the signal mask, so every
//! container would inherit blocked SIGTERM/SIGCHLD. Handlers, by contrast, reset on exec.

use std::collections::{BTreeMap, HashMap};
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::container::{self, Container, LogPipe, OpError, Paths};
use super::protocol::{ErrorKind, Request, Response};

static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);
static GOT_SIGTERM: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGTERM {
        GOT_SIGTERM.store(1, Ordering::SeqCst);
    }
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = [0u8; 1];
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking so a full pipe
        // just drops the byte (one pending wake-up is enough).
        unsafe { libc::write(fd, b.as_ptr().cast(), 1) };
    }
}

/// Install the SIGCHLD/SIGTERM handlers feeding a non-blocking self-pipe; returns the read end.
fn install_signals() -> std::io::Result<OwnedFd> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two fds we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fds from pipe2.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    SIGNAL_PIPE.store(w.as_raw_fd(), Ordering::SeqCst);
    std::mem::forget(w); // lives as long as the process
    for sig in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a plain sigaction with an async-signal-safe handler.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    // Containers inherit ignored signals across exec, so the shim ignores none: what its
    // parent ignored goes back to the default, and a client hanging up (SIGPIPE) meets a no-op
    // handler, which exec resets, rather than SIG_IGN, which it would not.
    for sig in 1..=libc::SIGRTMAX() {
        // The raw system call: glibc refuses to touch the signals it reserves (32 and 33),
        // which it may have left ignored.
        let mut old = KernelSigaction::default();
        let default = KernelSigaction::default(); // SIG_DFL
        // SAFETY: rt_sigaction with valid pointers to structs of the kernel's layout.
        unsafe {
            if libc::syscall(libc::SYS_rt_sigaction, sig, std::ptr::null::<KernelSigaction>(), &mut old, 8) == 0
                && old.handler == libc::SIG_IGN
            {
                libc::syscall(libc::SYS_rt_sigaction, sig, &default, std::ptr::null_mut::<KernelSigaction>(), 8);
            }
        }
    }
    // SAFETY: a plain sigaction with a handler that does nothing.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = ignore_signal as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGPIPE, &sa, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(r)
}

/// `struct sigaction` as the kernel takes it (not glibc's).
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// What one `poll` found ready.
struct Readiness {
    accept: bool,
    conns: Vec<PollFlags>,
    pipes: Vec<PollFlags>,
    /// Containers whose terminal can take input, or has input to take.
    consoles: Vec<String>,
}

/// One client connection.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
    /// Pid of an exec this connection waits for; dropping the connection kills it.
    exec_pid: Option<i32>,
    closed: bool,
}

/// The shim's state.
pub struct Server {
    paths: Paths,
    listener: UnixListener,
    sigpipe: OwnedFd,
    containers: BTreeMap<String, Container>,
    pipes: Vec<LogPipe>,
    conns: Vec<Conn>,
    /// Exec pid → its exit code once reaped (until the connection is told).
    execs: HashMap<i32, Option<i32>>,
    /// Pod-level cgroup dirs (parents of container cgroups) to remove on shutdown; also in
    /// `cgroup_parents.json` for `cleanup_state_dir`.
    cgroup_parents: Vec<String>,
}

impl Server {
    pub fn new(paths: Paths, listener: UnixListener) -> std::io::Result<Self> {
        let sigpipe = install_signals()?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            paths,
            listener,
            sigpipe,
            containers: BTreeMap::new(),
            pipes: Vec::new(),
            conns: Vec::new(),
            execs: HashMap::new(),
            cgroup_parents: Vec::new(),
        })
    }

    /// Serve until `Shutdown` (or SIGTERM/SIGINT, treated as a shutdown with a short grace).
    pub fn run(mut self) {
        loop {
            let revents = match self.poll_once() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "poll failed");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            self.drain_sigpipe();
            self.reap();
            for (i, ev) in revents.pipes.into_iter().enumerate().rev() {
                if !ev.is_empty() {
                    self.read_pipe(i);
                }
            }
            for id in revents.consoles {
                self.pump_console(&id);
            }
            let mut shutdown = None;
            for (i, ev) in revents.conns.into_iter().enumerate() {
                if !ev.is_empty() {
                    if let Some(g) = self.read_conn(i) {
                        shutdown = Some((g, i));
                    }
                }
            }
            if revents.accept {
                self.accept();
            }
            self.flush_execs();
            self.drop_closed_conns();
            if GOT_SIGTERM.load(Ordering::SeqCst) == 1 {
                shutdown = Some((2, usize::MAX));
            }
            if let Some((grace, conn)) = shutdown {
                self.shutdown(grace);
                if let Some(c) = self.conns.get_mut(conn) {
                    write_response(c, &Response::Ok);
                }
                self.remove_runtime_files();
                tracing::info!("shim exiting");
                return;
            }
        }
    }

    fn poll_once(&mut self) -> nix::Result<Readiness> {
        let mut fds = Vec::with_capacity(2 + self.conns.len() + self.pipes.len());
        let r = PollFlags::POLLIN;
        fds.push(PollFd::new(self.sigpipe.as_fd(), r));
        fds.push(PollFd::new(self.listener.as_fd(), r));
        for c in &self.conns {
            fds.push(PollFd::new(c.stream.as_fd(), r));
        }
        for p in &self.pipes {
            fds.push(PollFd::new(p.file.as_fd(), r));
        }
        // Terminals: wait for the pty to take pending input, else for more input.
        let mut console_ids = Vec::new();
        for (id, c) in &self.containers {
            let Some(con) = &c.console else { continue };
            if !con.pending.is_empty() {
                fds.push(PollFd::new(con.master.as_fd(), PollFlags::POLLOUT));
            } else if let Some(input) = &con.input {
                fds.push(PollFd::new(input.as_fd(), r));
            } else {
                continue;
            }
            console_ids.push(id.clone());
        }
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
        let ev: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        let (n, m) = (self.conns.len(), self.pipes.len());
        Ok(Readiness {
            accept: !ev[1].is_empty(),
            conns: ev[2..2 + n].to_vec(),
            pipes: ev[2 + n..2 + n + m].to_vec(),
            consoles: console_ids
                .into_iter()
                .zip(&ev[2 + n + m..])
                .filter(|(_, e)| !e.is_empty())
                .map(|(id, _)| id)
                .collect(),
        })
    }

    /// Copy a terminal's pending input into its pty, and read more from its stdin FIFO while
    /// the pty takes it. The FIFO's end (`stdinOnce`) hangs the terminal up.
    fn pump_console(&mut self, id: &str) {
        let Some(con) = self.containers.get_mut(id).and_then(|c| c.console.as_mut()) else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            if !con.pending.is_empty() {
                match (&con.master).write(&con.pending) {
                    Ok(n) => {
                        con.pending.drain(..n);
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        tracing::debug!(id, error = %e, "terminal input");
                        con.pending.clear();
                        con.input = None;
                        return;
                    }
                }
            }
            let Some(input) = con.input.as_mut() else { return };
            match input.read(&mut buf) {
                Ok(0) => {
                    con.input = None;
                    break;
                }
                Ok(n) => con.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    con.input = None;
                    return;
                }
            }
        }
        // The input ended for good. Closing every descriptor of the master sends SIGHUP to
        // the terminal's session.
        self.drain_pipes_of_id(id);
        if let Some(c) = self.containers.get_mut(id) {
            c.console = None;
        }
    }

    fn drain_sigpipe(&mut self) {
        let mut b = [0u8; 64];
        // SAFETY: reading into a local buffer from our non-blocking pipe.
        while unsafe { libc::read(self.sigpipe.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) } > 0 {}
    }

    /// Reap every exited child: containers get their exit recorded, execs their code; anything
    /// else (libcontainer's intermediate processes, orphans re-parented to us as subreaper) is
    /// just collected.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(st) => {
                    let Some(pid) = st.pid() else { continue };
                    let raw = pid.as_raw();
                    if self
                        .containers
                        .values()
                        .any(|c| c.pid == raw && c.exit.is_none())
                    {
                        self.drain_pipes_of(raw);
                        if let Some(c) = self.containers.values_mut().find(|c| c.pid == raw) {
                            c.record_exit(st);
                        }
                    } else if let Some(slot) = self.execs.get_mut(&raw) {
                        *slot = Some(match st {
                            WaitStatus::Exited(_, code) => code,
                            WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
                            _ => continue,
                        });
                    }
                }
            }
        }
    }

    /// Copy whatever a container wrote before exiting into its log.
    fn drain_pipes_of(&mut self, pid: i32) {
        let ids: Vec<String> = self
            .containers
            .values()
            .filter(|c| c.pid == pid)
            .map(|c| c.spec.id.clone())
            .collect();
        for i in (0..self.pipes.len()).rev() {
            if ids.contains(&self.pipes[i].id) {
                self.read_pipe(i);
            }
        }
    }

    /// Read one log pipe until it would block; on EOF close it and flush the partial line.
    fn read_pipe(&mut self, i: usize) {
        let mut buf = [0u8; 32 * 1024];
        loop {
            let Some(p) = self.pipes.get_mut(i) else {
                return;
            };
            // A pty master reads EIO once no process holds the terminal any more: its end.
            let read = p.file.read(&mut buf).or_else(|e| match e.raw_os_error() {
                Some(libc::EIO) => Ok(0),
                _ => Err(e),
            });
            match read {
                Ok(0) => {
                    let p = self.pipes.remove(i);
                    if let Some(c) = self.containers.get_mut(&p.id) {
                        c.log.close_stream(p.stream);
                    }
                    return;
                }
                Ok(n) => {
                    let (id, stream) = (p.id.clone(), p.stream);
                    if let Some(c) = self.containers.get_mut(&id) {
                        c.log.feed(stream, &buf[..n]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "log pipe read");
                    self.pipes.remove(i);
                    return;
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // Blocking writes with a timeout: answers are small, and a stuck client
                    // must not stall the loop for long.
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                    self.conns.push(Conn {
                        stream,
                        buf: Vec::new(),
                        fds: Vec::new(),
                        exec_pid: None,
                        closed: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "accept");
                    return;
                }
            }
        }
    }

    /// Read from a readable connection (data and any passed fds) and handle complete lines.
    /// Returns `Some(grace)` when a Shutdown was requested.
    fn read_conn(&mut self, i: usize) -> Option<u64> {
        let mut data = [0u8; 64 * 1024];
        let n = {
            let c = &mut self.conns[i];
            let mut iov = [IoSliceMut::new(&mut data)];
            let mut cmsg = nix::cmsg_space!([RawFd; 4]);
            match recvmsg::<()>(
                c.stream.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(msg) => {
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for cm in cmsgs {
                            if let ControlMessageOwned::ScmRights(fds) = cm {
                                for fd in fds {
                                    // SAFETY: the kernel just installed this fd for us.
                                    c.fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                                }
                            }
                        }
                    }
                    msg.bytes
                }
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => return None,
                Err(_) => 0,
            }
        };
        if n == 0 {
            self.conns[i].closed = true;
            return None;
        }
        self.conns[i].buf.extend_from_slice(&data[..n]);
        while let Some(nl) = self.conns[i].buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.conns[i].buf.drain(..=nl).collect();
            let req: Request = match serde_json::from_slice(&line) {
                Ok(r) => r,
                Err(e) => {
                    let resp = Response::Error {
                        kind: ErrorKind::Other,
                        message: format!("bad request: {e}"),
                    };
                    write_response(&mut self.conns[i], &resp);
                    continue;
                }
            };
            if let Request::Shutdown { grace_seconds } = req {
                return Some(grace_seconds);
            }
            let resp = self.handle(i, req);
            write_response(&mut self.conns[i], &resp);
        }
        None
    }

    fn handle(&mut self, conn: usize, req: Request) -> Response {
        let err = |e: OpError| Response::Error {
            kind: e.kind,
            message: e.message,
        };
        match req {
            Request::Ping => Response::Pong {
                pid: std::process::id() as i32,
            },
            Request::Status => Response::Status {
                containers: self.containers.values().map(Container::state).collect(),
            },
            Request::Create { spec } => {
                if self.containers.contains_key(&spec.id) {
                    return err(OpError::new(ErrorKind::AlreadyExists, "container exists"));
                }
                self.note_cgroup_parent(&spec.cgroup_path);
                match container::create(&self.paths, *spec) {
                    Ok((c, pipes)) => {
                        let resp = Response::Created {
                            pid: c.pid,
                            started_at: c.started_at.clone(),
                        };
                        self.pipes.extend(pipes);
                        self.containers.insert(c.spec.id.clone(), c);
                        resp
                    }
                    Err(e) => err(e),
                }
            }
            Request::CloseStdin { id } => match self.containers.get_mut(&id) {
                Some(c) => {
                    c.stdin_keepalive = None;
                    Response::Ok
                }
                None => err(OpError::new(ErrorKind::NoSuchContainer, id)),
            },
            Request::Resize { id, width, height } => {
                let Some(c) = self.containers.get(&id) else {
                    return err(OpError::new(ErrorKind::NoSuchContainer, id));
                };
                let Some(con) = &c.console else {
                    return err(OpError::new(ErrorKind::Other, format!("container {id} has no terminal")));
                };
                let ws = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
                // SAFETY: TIOCSWINSZ on the pty master we own, with a valid winsize.
                match unsafe { libc::ioctl(con.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } {
                    0 => Response::Ok,
                    _ => err(OpError::new(ErrorKind::Other, std::io::Error::last_os_error().to_string())),
                }
            }
            Request::Kill { id, signal } => {
                let Some(c) = self.containers.get(&id) else {
                    return err(OpError::new(ErrorKind::NoSuchContainer, id));
                };
                if c.exit.is_some() {
                    return Response::Ok;
                }
                let sig = match Signal::try_from(signal) {
                    Ok(s) => s,
                    Err(e) => return err(OpError::new(ErrorKind::Other, e.to_string())),
                };
                match kill(Pid::from_raw(c.pid), sig) {
                    Ok(()) => Response::Ok,
                    Err(e) => err(OpError::new(ErrorKind::Other, e.to_string())),
                }
            }
            Request::Remove { id } => {
                let Some(mut c) = self.containers.remove(&id) else {
                    return err(OpError::new(ErrorKind::NoSuchContainer, id));
                };
                container::remove(&self.paths, &mut c);
                self.containers.insert(id.clone(), c);
                self.drain_pipes_of_id(&id);
                self.containers.remove(&id);
                Response::Ok
            }
            Request::Exec {
                id,
                args,
                env,
                cwd,
                tty,
            } => {
                let fds = std::mem::take(&mut self.conns[conn].fds);
                match self.exec(&id, args, env, cwd, tty, fds) {
                    Ok(pid) => {
                        self.conns[conn].exec_pid = Some(pid);
                        self.execs.insert(pid, None);
                        Response::ExecStarted { pid }
                    }
                    Err(e) => err(e),
                }
            }
            Request::Shutdown { .. } => Response::Ok, // handled by the caller
        }
    }

    fn note_cgroup_parent(&mut self, cgroup_path: &str) {
        let Some(p) = super::util::cgroup_parent(cgroup_path) else {
            return;
        };
        if self.cgroup_parents.contains(&p) {
            return;
        }
        self.cgroup_parents.push(p);
        let path = self.paths.state_dir.join(super::CGROUP_PARENTS_FILE);
        match serde_json::to_vec(&self.cgroup_parents) {
            Ok(data) => {
                if let Err(e) = super::util::write_atomic(&path, &data) {
                    tracing::warn!(error = %e, "writing cgroup parents");
                }
            }
            Err(e) => tracing::warn!(error = %e, "serializing cgroup parents"),
        }
    }

    fn drain_pipes_of_id(&mut self, id: &str) {
        for i in (0..self.pipes.len()).rev() {
            if self.pipes[i].id == id {
                self.read_pipe(i);
            }
        }
        self.pipes.retain(|p| p.id != id);
    }

    /// Start a process in a running container with libcontainer's tenant builder (setns into
    /// its namespaces, join its cgroup, apply its capabilities). `build()` returns once the
    /// process has exec'd, a few ms; its exit is picked up by `reap`.
    fn exec(
        &mut self,
        id: &str,
        args: Vec<String>,
        env: Vec<String>,
        cwd: Option<String>,
        tty: bool,
        fds: Vec<OwnedFd>,
    ) -> Result<i32, OpError> {
        let c = self
            .containers
            .get(id)
            .ok_or_else(|| OpError::new(ErrorKind::NoSuchContainer, id.to_string()))?;
        if c.exit.is_some() {
            return Err(OpError::new(
                ErrorKind::Other,
                format!("container {id} is not running"),
            ));
        }
        if args.is_empty() {
            return Err(OpError::new(ErrorKind::Other, "empty command"));
        }
        // Exec runs as the container's user (the tenant builder would default to root).
        let (uid, gid, gids) = (c.spec.uid, c.spec.gid, c.spec.additional_gids.clone());
        let mut fds = fds.into_iter();
        let (stdin, stdout, stderr) = if tty {
            let pty = fds
                .next()
                .ok_or_else(|| OpError::new(ErrorKind::Other, "no pty fd"))?;
            let dup = |f: &OwnedFd| {
                f.try_clone()
                    .map_err(|e| OpError::new(ErrorKind::Other, e.to_string()))
            };
            (dup(&pty)?, dup(&pty)?, pty)
        } else {
            let mut next = || -> Result<OwnedFd, OpError> {
                match fds.next() {
                    Some(f) => Ok(f),
                    None => std::fs::File::open("/dev/null")
                        .map(OwnedFd::from)
                        .map_err(|e| OpError::new(ErrorKind::Other, e.to_string())),
                }
            };
            (next()?, next()?, next()?)
        };
        let env: HashMap<String, String> = env
            .iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let mut builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(self.paths.youki_root())
            .map_err(|e| OpError::new(ErrorKind::Other, e.to_string()))?;
        if tty {
            builder = builder.with_executor(TtyExecutor);
        }
        let pid = builder
            .with_stdin(stdin)
            .with_stdout(stdout)
            .with_stderr(stderr)
            .as_tenant()
            .with_container_args(args.clone())
            .with_env(env)
            .with_cwd(cwd.filter(|c| !c.is_empty()))
            .with_user(Some(uid))
            .with_group(Some(gid))
            .with_additional_gids(gids)
            .with_detach(true)
            .build()
            .map_err(|e| {
                let msg = e.to_string();
                if msg.contains("not found in") {
                    let a0 = args.first().cloned().unwrap_or_default();
                    OpError::new(
                        ErrorKind::NotFound,
                        format!("exec: \"{a0}\": executable file not found in $PATH"),
                    )
                } else {
                    OpError::new(ErrorKind::Other, msg)
                }
            })?;
        tracing::info!(id, pid = pid.as_raw(), "exec started");
        Ok(pid.as_raw())
    }

    /// Tell exec connections whose process has exited.
    fn flush_execs(&mut self) {
        for c in &mut self.conns {
            let Some(pid) = c.exec_pid else { continue };
            if let Some(Some(code)) = self.execs.get(&pid) {
                let code = *code;
                self.execs.remove(&pid);
                c.exec_pid = None;
                write_response(c, &Response::Exited { exit_code: code });
                c.closed = true;
            }
        }
    }

    /// Forget closed connections; an exec whose client went away is killed (probe timeouts
    /// and `kubectl exec` interrupts rely on that).
    fn drop_closed_conns(&mut self) {
        let mut i = 0;
        while i < self.conns.len() {
            if self.conns[i].closed {
                let c = self.conns.remove(i);
                if let Some(pid) = c.exec_pid {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            } else {
                i += 1;
            }
        }
        // Exit codes of execs nobody waits for any more.
        let waited: Vec<i32> = self.conns.iter().filter_map(|c| c.exec_pid).collect();
        self.execs
            .retain(|pid, code| code.is_none() || waited.contains(pid));
    }

    /// SIGTERM every running container, wait up to `grace` seconds (still logging and reaping),
    /// SIGKILL the rest, remove them all and the pod's cgroup parents.
    fn shutdown(&mut self, grace: u64) {
        tracing::info!(grace, "shutdown");
        for c in self.containers.values().filter(|c| c.exit.is_none()) {
            let _ = kill(Pid::from_raw(c.pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(grace);
        while Instant::now() < deadline && self.containers.values().any(|c| c.exit.is_none()) {
            std::thread::sleep(Duration::from_millis(10));
            for i in (0..self.pipes.len()).rev() {
                self.read_pipe(i);
            }
            self.reap();
        }
        for pid in self.execs.keys() {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        for id in ids {
            if let Some(mut c) = self.containers.remove(&id) {
                container::remove(&self.paths, &mut c);
                self.containers.insert(id.clone(), c);
                self.drain_pipes_of_id(&id);
                self.containers.remove(&id);
            }
        }
        self.reap();
        for p in &self.cgroup_parents {
            super::util::remove_cgroup(p);
        }
    }

    fn remove_runtime_files(&self) {
        let d = &self.paths.state_dir;
        let _ = std::fs::remove_file(d.join("shim.sock"));
        let _ = std::fs::remove_file(d.join("shim.pid"));
        let _ = std::fs::remove_file(d.join(super::CGROUP_PARENTS_FILE));
        let _ = std::fs::remove_dir_all(d.join("youki"));
        let _ = std::fs::remove_dir_all(d.join("containers"));
    }
}

/// Runs the exec'd process with its stdin (the pty slave the client passed) as controlling
/// terminal. libcontainer's init has already called `setsid()` and wired stdio; only a
/// console-socket exec would get a terminal otherwise, and that pty would be created by the
/// shim rather than the caller.
#[derive(Clone)]
struct TtyExecutor;

impl Executor for TtyExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        // SAFETY: ioctl on fd 0 with an integer argument; failure only means no job control.
        unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

fn write_response(c: &mut Conn, resp: &Response) {
    let mut line = match serde_json::to_vec(resp) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "serializing response");
            return;
        }
    };
    line.push(b'\n');
    if let Err(e) = c.stream.write_all(&line) {
        tracing::debug!(error = %e, "client write failed");
        c.closed = true;
    }
}
