//! Errors of the pod network. Each message says what went wrong and what the operator can do.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while wiring the node's pod network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid CIDR {0:?}: expected IPv4 address/prefix such as 10.244.0.0/24")]
    InvalidCidr(String),

    #[error("pod CIDR {0} is too small: it needs room for a network, gateway, broadcast and at least one pod address (use a /30 or larger, typically a /24)")]
    CidrTooSmall(String),

    #[error("no free pod IP left in {cidr} ({capacity} addresses all leased); detach pods that are gone or give the node a larger pod CIDR")]
    Exhausted { cidr: String, capacity: usize },

    #[error("IPAM state in {path}: {source}; check that the state directory exists, is writable by the agent and is on a local filesystem")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("lease file {path} for {ip} is corrupt ({reason}); remove it if no pod uses that address")]
    CorruptLease { path: PathBuf, ip: Ipv4Addr, reason: String },

    #[error("netlink {op} failed: {source}; the agent must run as root (CAP_NET_ADMIN) in the node's network namespace")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },

    #[error("service proxy: {0}")]
    Proxy(String),

    #[error("network policy: {0}")]
    Policy(String),

    #[error("netlink socket: {0}; the agent needs CAP_NET_ADMIN and a kernel with rtnetlink")]
    Socket(#[source] std::io::Error),

    #[error("cannot enter the network namespace of pid {pid} ({source}); is the pod's pause process still running?")]
    Netns {
        pid: i32,
        #[source]
        source: std::io::Error,
    },

    #[error("link {0:?} exists but is not a bridge; delete it (`ip link del {0}`) or choose another bridge name")]
    NotABridge(String),

    #[error("interface {name:?} not found {place}")]
    LinkMissing { name: String, place: String },

    #[error("setting {key}: {source}; the node netns must allow writing /proc/sys/net (run as root, /proc/sys not read-only)")]
    Sysctl {
        key: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the network-namespace helper thread stopped ({0}); restart the agent")]
    HelperGone(String),
}

impl Error {
    pub(crate) fn netlink(op: impl Into<String>, source: rtnetlink::Error) -> Self {
        Error::Netlink { op: op.into(), source }
    }
}

/// The errno of a netlink error (positive, e.g. `libc::EEXIST`), if it was one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}
