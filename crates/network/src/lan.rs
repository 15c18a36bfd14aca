//! Several hosts on one machine (`timonier start --nodes N`, as kind and `minikube start
//! --nodes`): each extra host is a named network namespace (as `ip netns add` makes them,
//! under `/run/netns`) whose `eth0` joins a LAN — a bridge in a namespace of its own — and
//! this machine joins the same LAN through one veth holding the LAN's first address, where the
//! API server listens. Nothing is routed off the machine: hosts have no default route.
//!
//! All rtnetlink: a namespace is configured from a short-lived thread that entered it, with a
//! netlink socket created there (the tokio runtime itself never changes namespace).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth};

use crate::cidr::Ipv4Net;
use crate::error::{Error, Result};
use crate::netns::{netlink_socket, setns_net, with_handle};
use crate::nl::{link_by_name, ok_if_exists, ok_if_missing};

const NETNS_DIR: &str = "/run/netns";

/// A LAN named `name` on `subnet` (its first address is this machine's).
#[derive(Debug, Clone)]
pub struct Lan {
    pub name: String,
    pub subnet: Ipv4Net,
}

fn io(op: &str, e: std::io::Error) -> Error {
    Error::Proxy(format!("{op}: {e}"))
}

/// The path of the named network namespace `name`.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Creates the named network namespace `name` unless it exists: a thread unshares its network
/// namespace and the namespace is bind-mounted on `/run/netns/<name>`, which keeps it alive.
pub fn create_netns(name: &str) -> Result<PathBuf> {
    let path = netns_path(name);
    if is_netns(&path) {
        return Ok(path);
    }
    std::fs::create_dir_all(NETNS_DIR).map_err(|e| io(&format!("create {NETNS_DIR}"), e))?;
    File::create(&path).map_err(|e| io(&format!("create {}", path.display()), e))?;
    let target = path.clone();
    let made = std::thread::spawn(move || -> std::io::Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        nix::mount::mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>).map_err(std::io::Error::from)
    })
    .join()
    .map_err(|_| Error::HelperGone("the namespace thread panicked".into()))?;
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(io(&format!("create network namespace {name}"), e));
    }
    Ok(path)
}

/// Whether `path` is a bind-mounted network namespace (not a leftover empty file).
fn is_netns(path: &std::path::Path) -> bool {
    // A namespace file lives on nsfs, whose magic number statfs reports.
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 as i64 == NSFS_MAGIC)
}

/// Deletes the named network namespace (what is inside goes once no process holds it).
pub fn delete_netns(name: &str) -> Result<()> {
    let path = netns_path(name);
    if is_netns(&path) {
        nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH).map_err(|e| io(&format!("unmount {}", path.display()), e.into()))?;
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&format!("remove {}", path.display()), e)),
        _ => Ok(()),
    }
}

/// Aborts the connection task it holds when dropped.
struct Conn(tokio::task::JoinHandle<()>);

impl Drop for Conn {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An rtnetlink handle in the calling thread's (this machine's) namespace.
fn root() -> Result<(Handle, Conn)> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    Ok((handle, Conn(tokio::spawn(conn))))
}

/// A netlink socket inside the namespace at `path`, made by a thread that enters it.
fn socket_in(path: PathBuf) -> Result<OwnedFd> {
    std::thread::spawn(move || -> std::io::Result<OwnedFd> {
        let ns = File::open(&path)?;
        setns_net(&ns)?;
        netlink_socket()
    })
    .join()
    .map_err(|_| Error::HelperGone("the namespace thread panicked".into()))?
    .map_err(|e| io("netlink socket in a host namespace", e))
}

async fn up(h: &Handle, name: &str) -> Result<u32> {
    let link = link_by_name(h, name).await?.ok_or_else(|| Error::LinkMissing { name: name.into(), place: "in its namespace".into() })?;
    h.link().set(LinkUnspec::new_with_index(link.index).up().build()).execute().await.map_err(|e| Error::netlink(format!("set {name} up"), e))?;
    Ok(link.index)
}

/// Creates a veth pair `here` ↔ `there`, `there` born inside the namespace open as `ns`.
async fn veth_into(h: &Handle, here: &str, there: &str, ns: &File) -> Result<()> {
    if link_by_name(h, here).await?.is_some() {
        return Ok(());
    }
    let peer = LinkUnspec::new_with_name(there).setns_by_fd(ns.as_raw_fd()).build();
    let msg = LinkVeth::new(here, there).set_info_data(InfoData::Veth(InfoVeth::Peer(peer))).build();
    ok_if_exists(h.link().add(msg).execute().await, &format!("create veth {here}"))
}

impl Lan {
    fn netns(&self) -> String {
        format!("{}-lan", self.name)
    }

    /// This machine's veth on the LAN (15 characters at most).
    fn uplink(&self) -> String {
        let mut n = format!("{}-lan", self.name);
        n.truncate(15);
        n
    }

    /// This machine's address on the LAN.
    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet.gateway()
    }

    /// The address of host number `index` (1, 2, …): `.10 + index`.
    pub fn host_ip(&self, index: u8) -> Ipv4Addr {
        let n = u32::from(self.subnet.network()) + 10 + u32::from(index);
        Ipv4Addr::from(n)
    }

    /// Creates (or completes) the LAN: its namespace and bridge, and this machine's veth with
    /// the gateway address. Idempotent. Must run inside a tokio runtime.
    pub async fn ensure(&self) -> Result<()> {
        let (h, _conn) = root()?;
        let h = &h;
        let path = create_netns(&self.netns())?;
        let ns = File::open(&path).map_err(|e| io("open the LAN namespace", e))?;
        let uplink = self.uplink();
        veth_into(h, &uplink, "uplink", &ns).await?;
        let fd = socket_in(path)?;
        with_handle(fd, |lh| async move {
            up(&lh, "lo").await?;
            if link_by_name(&lh, "br0").await?.is_none() {
                ok_if_exists(lh.link().add(LinkBridge::new("br0").build()).execute().await, "create the LAN bridge")?;
            }
            let br = up(&lh, "br0").await?;
            let port = link_by_name(&lh, "uplink").await?.ok_or_else(|| Error::LinkMissing { name: "uplink".into(), place: "in the LAN namespace".into() })?;
            lh.link().set(LinkUnspec::new_with_index(port.index).controller(br).up().build()).execute().await.map_err(|e| Error::netlink("enslave the uplink", e))?;
            Ok(())
        })
        .await?;
        let index = up(h, &uplink).await?;
        let r = h.address().add(index, IpAddr::V4(self.gateway()), self.subnet.prefix()).execute().await;
        ok_if_exists(r, &format!("add {} to {uplink}", self.gateway()))
    }

    fn host_netns(&self, host: &str) -> String {
        format!("{}-{host}", self.name)
    }

    /// Creates (or completes) host `host` number `index`: its namespace, `eth0` with
    /// [`Lan::host_ip`] on the LAN. Returns the namespace's path. Idempotent.
    pub async fn ensure_host(&self, host: &str, index: u8) -> Result<PathBuf> {
        let (h, _conn) = root()?;
        let h = &h;
        let path = create_netns(&self.host_netns(host))?;
        let ns = File::open(&path).map_err(|e| io("open the host namespace", e))?;
        let lan_path = netns_path(&self.netns());
        let lan_ns = File::open(&lan_path).map_err(|e| io("open the LAN namespace", e))?;
        // The LAN end is made here, then moved into the LAN's namespace under its port name.
        let port = format!("h{index}");
        let mut temp = format!("tmn-{}-{port}", self.name);
        temp.truncate(15);
        let lan_fd = socket_in(lan_path.clone())?;
        let exists = with_handle(lan_fd, |lh| async move { Ok(link_by_name(&lh, &format!("h{index}")).await?.is_some()) }).await?;
        if !exists {
            veth_into(h, &temp, "eth0", &ns).await?;
            let link = link_by_name(h, &temp).await?.ok_or_else(|| Error::LinkMissing { name: temp.clone(), place: "right after creating it".into() })?;
            let moved = LinkUnspec::new_with_index(link.index).setns_by_fd(lan_ns.as_raw_fd()).name(port.clone()).build();
            h.link().set(moved).execute().await.map_err(|e| Error::netlink(format!("move {temp} to the LAN"), e))?;
        }
        let lan_fd = socket_in(lan_path)?;
        with_handle(lan_fd, |lh| async move {
            let br = link_by_name(&lh, "br0").await?.ok_or_else(|| Error::LinkMissing { name: "br0".into(), place: "in the LAN namespace".into() })?;
            let p = link_by_name(&lh, &port).await?.ok_or_else(|| Error::LinkMissing { name: port.clone(), place: "in the LAN namespace".into() })?;
            lh.link().set(LinkUnspec::new_with_index(p.index).controller(br.index).up().build()).execute().await.map_err(|e| Error::netlink(format!("enslave {port}"), e))
        })
        .await?;
        let (ip, prefix) = (self.host_ip(index), self.subnet.prefix());
        let fd = socket_in(path.clone())?;
        with_handle(fd, |hh| async move {
            up(&hh, "lo").await?;
            let eth0 = up(&hh, "eth0").await?;
            ok_if_exists(hh.address().add(eth0, IpAddr::V4(ip), prefix).execute().await, &format!("add {ip} to eth0"))
        })
        .await?;
        Ok(path)
    }

    /// Deletes host `host`'s namespace (its LAN port goes with it).
    pub fn remove_host(&self, host: &str) -> Result<()> {
        delete_netns(&self.host_netns(host))
    }

    /// Deletes the LAN: its namespace, and with it this machine's veth.
    pub async fn remove(&self) -> Result<()> {
        let (h, _conn) = root()?;
        delete_netns(&self.netns())?;
        if let Some(l) = link_by_name(&h, &self.uplink()).await? {
            ok_if_missing(h.link().del(l.index).execute().await, "delete the LAN uplink")?;
        }
        Ok(())
    }
}
