//! Netlink sockets inside pod network namespaces.
//!
//! A netlink socket belongs to the network namespace it was created in, whatever thread later uses it.
//! So one dedicated helper thread does the namespace dance: `setns` into `/proc/<pid>/ns/net`, create the
//! socket, `setns` back home. The tokio runtime never changes namespace (which would be unsafe for a
//! multi-threaded runtime), and a socket costs two `setns` calls (microseconds) instead of a thread and a
//! runtime per pod.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::mpsc;
use std::sync::Mutex;

use futures::future::{self, Either};
use rtnetlink::sys::TokioSocket;
use rtnetlink::Handle;

use crate::error::{Error, Result};

struct Request {
    pid: i32,
    reply: tokio::sync::oneshot::Sender<io::Result<OwnedFd>>,
}

/// Hands out netlink sockets created inside other processes' network namespaces.
pub(crate) struct NetnsSockets {
    tx: Mutex<mpsc::Sender<Request>>,
}

pub(crate) fn netlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the returned descriptor is owned by us when non-negative.
    let fd = unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn setns_net(fd: &impl AsFd) -> io::Result<()> {
    nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

impl NetnsSockets {
    /// Starts the helper thread. Its home namespace is that of the calling thread (the node netns).
    pub(crate) fn start() -> Result<Self> {
        let home = File::open("/proc/thread-self/ns/net")
            .map_err(|source| Error::Netns { pid: std::process::id() as i32, source })?;
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("timonier-netns".into())
            .spawn(move || {
                for req in rx {
                    let res = (|| {
                        let target = File::open(format!("/proc/{}/ns/net", req.pid))?;
                        setns_net(&target)?;
                        let sock = netlink_socket();
                        if let Err(e) = setns_net(&home) {
                            // Stuck in a pod's namespace: never create another socket from here.
                            tracing::error!(error = %e, "cannot return to the node network namespace; netns helper stops");
                            return Err(io::Error::other(format!("helper stuck in pod netns: {e}")));
                        }
                        sock
                    })();
                    let stuck = matches!(&res, Err(e) if e.to_string().starts_with("helper stuck"));
                    let _ = req.reply.send(res);
                    if stuck {
                        return;
                    }
                }
            })
            .map_err(|e| Error::HelperGone(e.to_string()))?;
        Ok(Self { tx: Mutex::new(tx) })
    }

    /// A netlink socket inside the network namespace of `pid`.
    pub(crate) async fn socket_in(&self, pid: i32) -> Result<OwnedFd> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            tx.send(Request { pid, reply }).map_err(|_| Error::HelperGone("channel closed".into()))?;
        }
        let res = rx.await.map_err(|_| Error::HelperGone("no reply".into()))?;
        res.map_err(|source| Error::Netns { pid, source })
    }
}

/// Runs `work` with an rtnetlink handle on `fd`, driving the connection in place (no spawned task), so the
/// socket is closed as soon as the work is done.
pub(crate) async fn with_handle<T, F, Fut>(fd: OwnedFd, work: F) -> Result<T>
where
    F: FnOnce(Handle) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let raw = fd.into_raw_fd();
    // SAFETY: raw is a valid netlink socket we own; TokioSocket takes ownership. It must be called inside a
    // tokio runtime, which every async entry point of this crate is.
    let sock = unsafe { TokioSocket::from_raw_fd(raw) };
    debug_assert!(sock.as_raw_fd() >= 0);
    let (conn, handle, _) = rtnetlink::from_socket(sock);
    let work = std::pin::pin!(work(handle));
    match future::select(work, conn).await {
        Either::Left((res, _conn)) => res,
        Either::Right(((), _)) => Err(Error::Socket(io::Error::other("netlink connection closed unexpectedly"))),
    }
}
