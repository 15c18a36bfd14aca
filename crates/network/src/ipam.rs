//! Host-local IP address management: one file per leased address (named by the address, holding the pod key),
//! like the CNI `host-local` plugin, so leases survive agent restarts and can be inspected with `ls`/`cat`.
//!
//! Allocation is round-robin from the last handed-out address, so an address freed by a deleted pod is not
//! immediately reused (stale conntrack entries or endpoints could still point at it).
//! A lease file is written to a temporary name, synced, and hard-linked into place; the link fails if the
//! address is already taken, so even two processes sharing one state dir never hand out the same address.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cidr::Ipv4Net;
use crate::error::{Error, Result};

/// Leases of one pod CIDR, persisted in `dir`.
#[derive(Debug)]
pub struct Ipam {
    cidr: Ipv4Net,
    dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_ip: BTreeMap<Ipv4Addr, String>,
    by_key: HashMap<String, Ipv4Addr>,
    /// Last address handed out (host offset), the round-robin cursor.
    cursor: u32,
}

fn state_err(path: &Path, source: std::io::Error) -> Error {
    Error::State { path: path.to_path_buf(), source }
}

impl Ipam {
    /// Opens (creating if needed) the lease directory and loads the existing leases.
    /// Files that are not named by an address of `cidr` are ignored (with a warning), so a changed pod CIDR
    /// does not make the agent fail; their addresses are simply not considered leased.
    pub fn open(cidr: Ipv4Net, dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        if cidr.size() < 4 {
            return Err(Error::CidrTooSmall(cidr.to_string()));
        }
        fs::create_dir_all(&dir).map_err(|e| state_err(&dir, e))?;
        let mut inner = Inner::default();
        for entry in fs::read_dir(&dir).map_err(|e| state_err(&dir, e))? {
            let entry = entry.map_err(|e| state_err(&dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                // Leftover temporary file of an interrupted allocation.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Ok(ip) = name.parse::<Ipv4Addr>() else {
                tracing::warn!(file = %entry.path().display(), "ignoring unexpected file in IPAM state dir");
                continue;
            };
            if !cidr.contains(ip) {
                tracing::warn!(%ip, %cidr, "ignoring lease outside the pod CIDR (was the CIDR changed?)");
                continue;
            }
            let path = entry.path();
            let key = fs::read_to_string(&path).map_err(|e| state_err(&path, e))?;
            if key.is_empty() {
                return Err(Error::CorruptLease { path, ip, reason: "empty file".into() });
            }
            inner.cursor = inner.cursor.max(u32::from(ip) - u32::from(cidr.network()));
            if let Some(old) = inner.by_key.insert(key.clone(), ip) {
                tracing::warn!(key, %old, new = %ip, "pod key holds two leases; keeping both until released");
            }
            inner.by_ip.insert(ip, key);
        }
        tracing::debug!(%cidr, dir = %dir.display(), leases = inner.by_ip.len(), "IPAM opened");
        Ok(Self { cidr, dir, inner: Mutex::new(inner) })
    }

    /// The managed network.
    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// How many pod addresses the CIDR has (network, gateway and broadcast excluded).
    pub fn capacity(&self) -> usize {
        (self.cidr.size() - 3) as usize
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that matters more than
        // refusing all further work, so recover the guard.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The address leased to `key`, if any.
    pub fn get(&self, key: &str) -> Option<Ipv4Addr> {
        self.lock().by_key.get(key).copied()
    }

    /// All leases as (pod key, address), sorted by address.
    pub fn leases(&self) -> Vec<(String, Ipv4Addr)> {
        self.lock().by_ip.iter().map(|(ip, k)| (k.clone(), *ip)).collect()
    }

    /// Returns the address leased to `key`, allocating a new one if it has none.
    /// Blocking (file I/O with fsync): call it from `spawn_blocking` in async code.
    pub fn allocate(&self, key: &str) -> Result<Ipv4Addr> {
        loop {
            let ip = {
                let mut inner = self.lock();
                if let Some(ip) = inner.by_key.get(key) {
                    return Ok(*ip);
                }
                let ip = self.next_free(&inner).ok_or_else(|| Error::Exhausted {
                    cidr: self.cidr.to_string(),
                    capacity: self.capacity(),
                })?;
                // Reserve in memory so that concurrent callers skip it while the file is written unlocked.
                inner.cursor = u32::from(ip) - u32::from(self.cidr.network());
                inner.by_ip.insert(ip, key.to_string());
                inner.by_key.insert(key.to_string(), ip);
                ip
            };
            match self.write_lease(ip, key) {
                Ok(true) => {
                    tracing::debug!(key, %ip, "leased pod IP");
                    return Ok(ip);
                }
                Ok(false) => {
                    // Another process took it; remember that and try the next one.
                    let mut inner = self.lock();
                    inner.by_key.remove(key);
                    let path = self.dir.join(ip.to_string());
                    let owner = fs::read_to_string(&path).unwrap_or_default();
                    tracing::warn!(%ip, owner, "lease file appeared behind our back; skipping address");
                    inner.by_ip.insert(ip, owner);
                }
                Err(e) => {
                    let mut inner = self.lock();
                    inner.by_key.remove(key);
                    inner.by_ip.remove(&ip);
                    return Err(e);
                }
            }
        }
    }

    fn next_free(&self, inner: &Inner) -> Option<Ipv4Addr> {
        let size = self.cidr.size() as u32; // size >= 4 checked in open; a /0 is absurd for pods
        let base = u32::from(self.cidr.network());
        // Host offsets 2..=size-2: skip network (0), gateway (1) and broadcast (size-1).
        let usable = size.saturating_sub(3);
        for step in 1..=usable {
            let off = ((inner.cursor.saturating_sub(2) + step) % usable) + 2;
            let ip = Ipv4Addr::from(base + off);
            if !inner.by_ip.contains_key(&ip) {
                return Some(ip);
            }
        }
        None
    }

    /// Writes the lease file atomically. `Ok(false)` if the address already has a lease file.
    fn write_lease(&self, ip: Ipv4Addr, key: &str) -> Result<bool> {
        let path = self.dir.join(ip.to_string());
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.dir.join(format!(".{ip}.{}.{seq}.tmp", std::process::id()));
        let res = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(key.as_bytes())?;
            f.sync_data()?;
            fs::hard_link(&tmp, &path)
        })();
        let _ = fs::remove_file(&tmp);
        match res {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(state_err(&path, e)),
        }
    }

    /// Releases the lease of `key`; returns the freed address, or `None` if it held none (idempotent).
    pub fn release(&self, key: &str) -> Result<Option<Ipv4Addr>> {
        let Some(ip) = self.get(key) else { return Ok(None) };
        let path = self.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(state_err(&path, e)),
        }
        let mut inner = self.lock();
        if inner.by_key.get(key) == Some(&ip) {
            inner.by_key.remove(key);
            inner.by_ip.remove(&ip);
        }
        tracing::debug!(key, %ip, "released pod IP");
        Ok(Some(ip))
    }

    /// Deletes the whole lease directory.
    pub fn destroy(self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(state_err(&self.dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("timonier-ipam-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn skips_reserved_and_exhausts_clearly() {
        let dir = tmpdir("exhaust");
        let ipam = Ipam::open("10.1.0.0/29".parse().unwrap(), &dir).unwrap();
        assert_eq!(ipam.capacity(), 5);
        let mut got = Vec::new();
        for i in 0..5 {
            got.push(ipam.allocate(&format!("pod{i}")).unwrap());
        }
        got.sort();
        let want: Vec<Ipv4Addr> = (2..=6).map(|h| Ipv4Addr::new(10, 1, 0, h)).collect();
        assert_eq!(got, want, "network .0, gateway .1 and broadcast .7 are never handed out");
        let err = ipam.allocate("pod5").unwrap_err();
        assert!(matches!(err, Error::Exhausted { .. }), "{err}");
        assert!(err.to_string().contains("larger pod CIDR"));
        // Same key again is not an allocation.
        assert_eq!(ipam.allocate("pod0").unwrap(), ipam.get("pod0").unwrap());
        ipam.destroy().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn leases_survive_reopen_and_release() {
        let dir = tmpdir("reopen");
        let cidr: Ipv4Net = "10.2.0.0/24".parse().unwrap();
        let a = {
            let ipam = Ipam::open(cidr, &dir).unwrap();
            let a = ipam.allocate("ns/a").unwrap();
            ipam.allocate("ns/b").unwrap();
            a
        };
        let ipam = Ipam::open(cidr, &dir).unwrap();
        assert_eq!(ipam.get("ns/a"), Some(a));
        assert_eq!(ipam.allocate("ns/a").unwrap(), a);
        assert_eq!(ipam.leases().len(), 2);
        assert_eq!(ipam.release("ns/a").unwrap(), Some(a));
        assert_eq!(ipam.release("ns/a").unwrap(), None);
        assert!(!dir.join(a.to_string()).exists());
        // Round robin: a freed address is not immediately reused.
        assert_ne!(ipam.allocate("ns/c").unwrap(), a);
        drop(ipam);
        let ipam = Ipam::open(cidr, &dir).unwrap();
        assert_eq!(ipam.leases().len(), 2);
        ipam.destroy().unwrap();
    }

    #[test]
    fn concurrent_allocations_never_collide() {
        let dir = tmpdir("concurrent");
        let cidr: Ipv4Net = "10.3.0.0/24".parse().unwrap();
        let ipam = Arc::new(Ipam::open(cidr, &dir).unwrap());
        // A second instance on the same directory behaves like another process.
        let other = Arc::new(Ipam::open(cidr, &dir).unwrap());
        let mut threads = Vec::new();
        for t in 0..8 {
            let ipam = if t % 2 == 0 { ipam.clone() } else { other.clone() };
            threads.push(std::thread::spawn(move || {
                (0..30).map(|i| ipam.allocate(&format!("t{t}-p{i}")).unwrap()).collect::<Vec<_>>()
            }));
        }
        let all: Vec<Ipv4Addr> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let set: HashSet<_> = all.iter().collect();
        assert_eq!(set.len(), 240, "duplicate address handed out");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 240);
        drop(other);
        Arc::try_unwrap(ipam).unwrap().destroy().unwrap();
    }
}
