//! Small netlink helpers shared by the bridge, route and pod code.

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::Handle;

use crate::error::{errno, Error, Result};

/// The parts of a link we care about.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub index: u32,
    /// `IFLA_LINK`: for a veth, the peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
    pub controller: Option<u32>,
    pub kind: Option<InfoKind>,
}

impl Link {
    fn from_msg(m: &LinkMessage) -> Self {
        let mut l = Link { index: m.header.index, peer_index: None, controller: None, kind: None };
        for a in &m.attributes {
            match a {
                LinkAttribute::Link(i) => l.peer_index = Some(*i),
                LinkAttribute::Controller(i) => l.controller = Some(*i),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            l.kind = Some(k.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        l
    }
}

/// Looks a link up by name; `None` if it does not exist.
pub(crate) async fn link_by_name(h: &Handle, name: &str) -> Result<Option<Link>> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(Some(Link::from_msg(&m))),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(Error::netlink(format!("get link {name}"), e)),
    }
}

/// Maps "already exists" to success, for idempotent adds.
pub(crate) fn ok_if_exists(r: std::result::Result<(), rtnetlink::Error>, op: &str) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(Error::netlink(op, e)),
    }
}

/// Maps "does not exist" to success, for idempotent deletes.
pub(crate) fn ok_if_missing(r: std::result::Result<(), rtnetlink::Error>, op: &str) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(libc::ENODEV) | Some(libc::ESRCH) | Some(libc::ENOENT)) => Ok(()),
        Err(e) => Err(Error::netlink(op, e)),
    }
}
