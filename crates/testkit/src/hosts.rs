//! Several "hosts" on one machine, for multi-node tests: each host is a named network
//! namespace whose `eth0` joins a LAN — a bridge living in a namespace of its own — and this
//! machine's namespace joins the same LAN through one veth (address `.1`), so that a server
//! and a registry started here are reachable from every host, and the test's kubectl reaches
//! the server without entering any namespace.
//!
//! Nothing leaves the machine: the LAN's subnet (`10.250.N.0/24`, N picked free) is routed to
//! that veth only, and hosts have no default route. Dropping the [`Lan`] deletes every
//! namespace and link it made (processes are the caller's to end first: see [`Host::pids`]).

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A LAN bridge in its own network namespace, with this namespace attached.
pub struct Lan {
    tag: String,
    /// The third octet of the subnet.
    subnet: u8,
    hosts: Vec<String>,
}

/// One host on a [`Lan`].
#[derive(Clone, Debug)]
pub struct Host {
    /// The network namespace's name (`ip netns`).
    pub netns: String,
    pub ip: Ipv4Addr,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|e| format!("cannot run ip (apt-get install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn ip_output(args: &[&str]) -> String {
    Command::new("ip").args(args).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

impl Lan {
    /// Creates the LAN namespace and bridge, and attaches this namespace as `10.250.N.1`.
    pub fn create() -> Result<Lan, String> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let tag = format!("{}{}", std::process::id() % 100_000, COUNTER.fetch_add(1, Ordering::Relaxed));
        // A subnet nothing on this machine routes yet.
        let routes = ip_output(&["-4", "route", "show"]);
        let subnet = (0..200u32)
            .map(|i| ((std::process::id() + i) % 200 + 20) as u8)
            .find(|n| !routes.contains(&format!("10.250.{n}.")))
            .ok_or("no free 10.250.N.0/24 subnet for a test LAN")?;
        let lan = Lan { tag, subnet, hosts: Vec::new() };
        let ns = lan.lan_netns();
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &ns, "link", "set", "br0", "up"])?;
        let root = lan.root_veth();
        ip(&["link", "add", &root, "type", "veth", "peer", "name", "root", "netns", &ns])?;
        ip(&["-n", &ns, "link", "set", "root", "master", "br0", "up"])?;
        ip(&["addr", "add", &format!("{}/24", lan.gateway()), "dev", &root])?;
        ip(&["link", "set", &root, "up"])?;
        Ok(lan)
    }

    fn lan_netns(&self) -> String {
        format!("tmn-{}-lan", self.tag)
    }

    /// The veth of this namespace on the LAN (15 characters at most).
    fn root_veth(&self) -> String {
        let mut n = format!("tmnlan{}", self.tag);
        n.truncate(15);
        n
    }

    /// This namespace's address on the LAN: where a server and a registry started here listen.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 250, self.subnet, 1)
    }

    /// Adds host `index` (1–200) as a namespace with `eth0` = `10.250.N.(10+index)/24`.
    pub fn add_host(&mut self, index: u8) -> Result<Host, String> {
        let netns = format!("tmn-{}-h{index}", self.tag);
        let host = Host { netns: netns.clone(), ip: Ipv4Addr::new(10, 250, self.subnet, 10 + index) };
        ip(&["netns", "add", &netns])?;
        self.hosts.push(netns.clone());
        let port = format!("h{index}");
        ip(&["-n", &self.lan_netns(), "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &netns])?;
        ip(&["-n", &self.lan_netns(), "link", "set", &port, "master", "br0", "up"])?;
        ip(&["-n", &netns, "addr", "add", &format!("{}/24", host.ip), "dev", "eth0"])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        Ok(host)
    }

    /// Cuts host `host` off the LAN (its link goes down), as a pulled cable.
    pub fn unplug(&self, host: &Host) -> Result<(), String> {
        let index = host.ip.octets()[3] - 10;
        ip(&["-n", &self.lan_netns(), "link", "set", &format!("h{index}"), "down"])
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.hosts.drain(..) {
            let _ = ip(&["netns", "del", &ns]);
        }
        // The LAN's veths, this namespace's end included, go with their namespace.
        let _ = ip(&["netns", "del", &self.lan_netns()]);
        let _ = ip(&["link", "del", &self.root_veth()]);
    }
}

impl Host {
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }

    /// A command that runs in this host's network namespace (and nowhere else different).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        let path = self.netns_path();
        // SAFETY: between fork and exec we only open a file and call setns(2).
        unsafe {
            c.pre_exec(move || {
                let f = std::fs::File::open(&path)?;
                if libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    }

    /// Runs `f` on a thread inside this host's network namespace (for netlink work or a
    /// cleanup that must see the host's links).
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let path = self.netns_path();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            // SAFETY: setns(2) on a thread of our own, which ends with the closure.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns {}: {}", path.display(), std::io::Error::last_os_error()));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| "the thread in the host's namespace panicked".to_string())?
    }

    /// The processes whose network namespace is this host's.
    pub fn pids(&self) -> Vec<i32> {
        let Ok(me) = std::fs::metadata(self.netns_path()) else { return vec![] };
        let wanted = format!("net:[{}]", std::os::unix::fs::MetadataExt::ino(&me));
        let mut out = vec![];
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            if std::fs::read_link(e.path().join("ns/net")).ok().and_then(|l| l.to_str().map(str::to_string)).as_deref() == Some(&wanted) {
                out.push(pid);
            }
        }
        out
    }
}
