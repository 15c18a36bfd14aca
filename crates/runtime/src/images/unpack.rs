//! Unpacking a layer tar into a directory, safely: nothing is ever written outside the
//! directory, and a malformed tar is an error, never a panic. Modes, ownership (when root),
//! symlinks, hardlinks, devices, file mtimes and extended attributes (PAX `SCHILY.xattr.*`,
//! see [`super::xattrs`]) are kept.
//!
//! Entry names are taken as containerd takes them: joined to `/` and cleaned lexically, so an
//! absolute name (`/etc/x`, and the `/` root entry `umoci insert` writes) is relative to the
//! layer root and `..` can never climb above it (`../x` is `x`). Hard-link targets are
//! cleaned the same way; symlink targets are kept as written (they resolve in the container).
//! A component that is a symlink in the layer is never written through (it could point
//! anywhere): such an entry is refused.
//!
//! OCI whiteouts are handled in one of two ways ([`WhiteoutMode`]):
//! - `Overlay`: the directory will be an overlayfs lowerdir, so `.wh.NAME` becomes a character
//!   device 0/0 named NAME and `.wh..wh..opq` becomes the xattr `trusted.overlay.opaque=y` on its
//!   directory — the form the kernel's overlayfs reads (tested here on ext4 as root with a real
//!   overlay mount: both need root, `mknod` needs CAP_MKNOD and `trusted.*` xattrs CAP_SYS_ADMIN).
//!   With the directories of the layers below ([`unpack_layer_over`]), a hard link to a file of
//!   a lower layer copies that file up first ([`super::lower`]), and a parent directory the tar
//!   does not list takes its owner and mode from the layer below that has it.
//! - `Apply`: layers are stacked into one plain directory, so whiteouts delete what lower layers
//!   put there (for runtimes or tools without overlayfs).

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use super::error::{Error, IoContext, Result};
use super::lower::{self, Lookup};
use super::xattrs;

/// What to do with OCI whiteout entries, depending on how the directory will be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Translate whiteouts to overlayfs form, for a directory used as one lowerdir.
    Overlay,
    /// Delete what the whiteouts name, for layers stacked into one directory.
    Apply,
}

/// Counts of what a layer contained, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnpackStats {
    /// Entries written (files, dirs, links, devices).
    pub entries: u64,
    /// `.wh.NAME` whiteouts seen.
    pub whiteouts: u64,
    /// `.wh..wh..opq` opaque-directory markers seen.
    pub opaque_dirs: u64,
    /// Files copied up from a lower layer because a hard link in this one names them.
    pub copied_up: u64,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacks the (uncompressed) layer tar read from `reader` into `dest`, which must exist.
/// `layer` names the layer in error messages. In `Overlay` mode `dest` should be empty, and
/// hard links may only name files of this layer (see [`unpack_layer_over`]).
pub fn unpack_layer<R: Read>(
    reader: R,
    dest: &Path,
    mode: WhiteoutMode,
    layer: &str,
) -> Result<UnpackStats> {
    unpack_layer_over(reader, dest, mode, &[], layer)
}

/// [`unpack_layer`] for a layer that sits on `parents`, the directories of the layers below
/// it, topmost first (in `Overlay` mode; in `Apply` mode `dest` already holds them and
/// `parents` should be empty). A hard link whose target is in no earlier entry of this tar
/// is looked up in them and the target copied into this layer.
pub fn unpack_layer_over<R: Read>(
    reader: R,
    dest: &Path,
    mode: WhiteoutMode,
    parents: &[PathBuf],
    layer: &str,
) -> Result<UnpackStats> {
    let mut u = Unpacker {
        dest,
        mode,
        parents,
        layer,
        root: geteuid_is_root(),
        stats: UnpackStats::default(),
        dirs: BTreeMap::new(),
        created: HashSet::new(),
    };
    let may_end = Rc::new(Cell::new(false));
    let mut archive = tar::Archive::new(MissingTail {
        inner: reader,
        pos: 0,
        may_end: may_end.clone(),
    });
    let entries = archive
        .entries()
        .map_err(|e| u.err(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| u.err(format!("malformed tar (truncated or corrupt?): {e}")))?;
        may_end.set(false);
        u.entry(entry)?;
        // The entry's contents were read in full (or it had none): the stream may end here.
        may_end.set(true);
    }
    u.finish_dirs()?;
    Ok(u.stats)
}

/// Reads a tar stream that may end without its last entry's padding and the two zero
/// blocks that close an archive, as `umoci insert` (before 0.4.8 / umoci#534) writes layers:
/// when the stream ends right after an entry whose contents were read in full, zeros
/// complete the 512-byte block, and the tar reader then sees a clean end. An end anywhere
/// else is left as it is, an error. Go's archive/tar, hence containerd, accepts these layers.
struct MissingTail<R> {
    inner: R,
    /// Bytes handed out so far (zeros included).
    pos: u64,
    /// Set by the unpacker between entries, once an entry's contents are all read.
    may_end: Rc<Cell<bool>>,
}

impl<R: Read> Read for MissingTail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.may_end.get() {
            let pad = ((512 - self.pos % 512) % 512) as usize;
            let z = pad.min(buf.len());
            buf[..z].fill(0);
            self.pos += z as u64;
            return Ok(z);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// The state of one layer being unpacked.
struct Unpacker<'a> {
    dest: &'a Path,
    mode: WhiteoutMode,
    parents: &'a [PathBuf],
    layer: &'a str,
    root: bool,
    stats: UnpackStats,
    /// Directories (relative) whose mode and mtime are set last: a read-only directory must
    /// still receive its children, and writing children changes the mtime.
    dirs: BTreeMap<PathBuf, (u32, u64)>,
    /// Entries (relative) this layer wrote, which an opaque marker in `Apply` mode keeps.
    created: HashSet<PathBuf>,
}

impl Unpacker<'_> {
    fn err(&self, reason: String) -> Error {
        Error::Layer {
            layer: self.layer.to_string(),
            reason,
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = entry
            .path()
            .map_err(|e| self.err(format!("bad entry name: {e}")))?
            .into_owned();
        let (rel, climbed) = clean(&raw);
        if climbed {
            tracing::warn!(layer = self.layer, entry = %raw.display(), path = %rel.display(),
                "entry name climbs above the layer root; unpacked inside it, as containerd does");
        }
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return Ok(()); // "/" or "./": the layer's root directory itself
        };
        let at = |reason: String| format!("entry {}: {reason}", raw.display());
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        self.ensure_dirs(&parent, true)
            .map_err(|r| self.err(at(r)))?;
        let parent_abs = self.dest.join(&parent);

        if name == OPAQUE {
            self.stats.opaque_dirs += 1;
            match self.mode {
                WhiteoutMode::Overlay => set_opaque(&parent_abs)?,
                WhiteoutMode::Apply => {
                    for child in fs::read_dir(&parent_abs).at(&parent_abs)? {
                        let child_rel = parent.join(child.at(&parent_abs)?.file_name());
                        if !self.created.contains(&child_rel) {
                            self.remove(&child_rel)?;
                        }
                    }
                }
            }
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(self.err(at("invalid whiteout".into())));
            }
            self.stats.whiteouts += 1;
            let hidden_rel = parent.join(hidden);
            self.remove(&hidden_rel)?;
            if self.mode == WhiteoutMode::Overlay {
                mknod(&self.dest.join(&hidden_rel), libc::S_IFCHR, 0)?;
            }
            return Ok(());
        }

        let attrs = xattrs::from_pax(&mut entry).map_err(|r| self.err(at(r)))?;
        let target = self.dest.join(&rel);
        let header = entry.header();
        let perm = header
            .mode()
            .map_err(|e| self.err(at(format!("bad mode: {e}"))))?
            & 0o7777;
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let mtime = header.mtime().unwrap_or(0);
        let kind = header.entry_type();
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        self.remove(&rel)?;
                        fs::create_dir(&target).at(&target)?;
                    }
                    Err(_) => fs::create_dir(&target).at(&target)?,
                }
                if self.root {
                    std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).at(&target)?;
                }
                self.dirs.insert(rel.clone(), (perm, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.remove(&rel)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .at(&target)?;
                let size = entry.size();
                let n = io::copy(&mut entry, &mut f)
                    .map_err(|e| self.err(at(format!("cannot read contents (truncated?): {e}"))))?;
                if n != size {
                    return Err(self.err(at(format!(
                        "truncated: {n} of {size} bytes of contents (the layer is incomplete or corrupt)"
                    ))));
                }
                if self.root {
                    std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).at(&target)?;
                }
                // After chown, which clears security.capability; before chmod, which chown
                // would undo for set-id bits.
                xattrs::apply(&target, &attrs, self.root, self.layer)?;
                f.set_permissions(fs::Permissions::from_mode(perm))
                    .at(&target)?;
                let _ = f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime));
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| self.err(at(format!("bad link: {e}"))))?
                    .ok_or_else(|| self.err(at("symlink without a target".into())))?;
                self.remove(&rel)?;
                std::os::unix::fs::symlink(&link, &target).at(&target)?;
                if self.root {
                    std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).at(&target)?;
                }
                xattrs::apply(&target, &attrs, self.root, self.layer)?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| self.err(at(format!("bad link: {e}"))))?
                    .ok_or_else(|| self.err(at("hardlink without a target".into())))?
                    .into_owned();
                self.hard_link(&rel, &link).map_err(|r| {
                    self.err(format!(
                        "hardlink {} -> {}: {r}",
                        raw.display(),
                        link.display()
                    ))
                })?;
                xattrs::apply(&target, &attrs, self.root, self.layer)?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let fmt = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                self.remove(&rel)?;
                mknod(&target, fmt, libc::makedev(major, minor))?;
                if self.root {
                    std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).at(&target)?;
                }
                xattrs::apply(&target, &attrs, self.root, self.layer)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(perm)).at(&target)?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => return Ok(()),
            other => {
                return Err(self.err(at(format!("unsupported entry type {other:?}"))));
            }
        }
        if kind.is_dir() {
            xattrs::apply(&target, &attrs, self.root, self.layer)?;
        }
        self.stats.entries += 1;
        self.created.insert(rel);
        Ok(())
    }

    /// Makes `rel` a hard link to `link` (a tar Linkname): to an earlier entry of this layer,
    /// or to a file of a layer below, copied up first (see [`super::lower`]).
    fn hard_link(&mut self, rel: &Path, link: &Path) -> Result<(), String> {
        let (link_rel, _) = clean(link);
        if link_rel.as_os_str().is_empty() {
            return Err("the target is the layer root, a directory".into());
        }
        if link_rel == rel {
            return Err("the entry links to itself".into());
        }
        let mut stack: Vec<&Path> = vec![self.dest];
        if self.mode == WhiteoutMode::Overlay {
            stack.extend(self.parents.iter().map(PathBuf::as_path));
        }
        let found = match lower::lookup(&stack, &link_rel).map_err(|e| e.to_string())? {
            Lookup::Found(p) => p,
            Lookup::Missing(why) => {
                return Err(format!(
                    "the target is not in this layer{} ({why})",
                    if self.parents.is_empty() {
                        ""
                    } else {
                        " nor in the layers below it"
                    }
                ))
            }
        };
        let source = self.dest.join(&link_rel);
        if !found.starts_with(self.dest) {
            self.ensure_dirs(link_rel.parent().unwrap_or(Path::new("")), true)?;
            lower::copy_node(&found, &source, self.root)?;
            self.stats.copied_up += 1;
            tracing::debug!(layer = self.layer, file = %link_rel.display(), from = %found.display(),
                "copied a hard link's target up from a lower layer");
        }
        if fs::symlink_metadata(&source).is_ok_and(|m| m.is_dir()) {
            return Err("the target is a directory".into());
        }
        self.remove(rel).map_err(|e| e.to_string())?;
        let target = self.dest.join(rel);
        fs::hard_link(&source, &target).map_err(|e| format!("{}: {e}", target.display()))
    }

    /// Walks `rel` under the layer, creating missing directories when `create`, and refuses a
    /// component that is a symlink (writing through it could leave the layer directory). A
    /// directory created here that a lower layer has takes its owner, mode, mtime and xattrs,
    /// as containerd's unpacking through an overlay mount would show it.
    fn ensure_dirs(&mut self, rel: &Path, create: bool) -> Result<(), String> {
        let mut cur = PathBuf::new();
        for c in rel.components() {
            cur.push(c);
            let abs = self.dest.join(&cur);
            match fs::symlink_metadata(&abs) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!(
                        "parent {} is a symlink; refusing to write through it (it could point outside the layer)",
                        cur.display()
                    ))
                }
                Ok(_) => return Err(format!("parent {} is not a directory", cur.display())),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&abs)
                        .map_err(|e| format!("{}: {e}", abs.display()))?;
                    self.inherit_dir(&cur, &abs)?;
                }
                Err(e) => return Err(format!("{}: {e}", abs.display())),
            }
        }
        Ok(())
    }

    /// Gives the directory just created at `rel` the metadata of the same directory in the
    /// layers below, if one has it.
    fn inherit_dir(&mut self, rel: &Path, abs: &Path) -> Result<(), String> {
        if self.mode != WhiteoutMode::Overlay || self.parents.is_empty() {
            return Ok(());
        }
        let stack: Vec<&Path> = self.parents.iter().map(PathBuf::as_path).collect();
        let Ok(Lookup::Found(lower)) = lower::lookup(&stack, rel) else {
            return Ok(());
        };
        let Ok(m) = fs::symlink_metadata(&lower) else {
            return Ok(());
        };
        if !m.is_dir() {
            return Ok(());
        }
        if self.root {
            std::os::unix::fs::lchown(abs, Some(m.uid()), Some(m.gid()))
                .map_err(|e| format!("{}: {e}", abs.display()))?;
        }
        let attrs: Vec<_> = xattrs::read_all(&lower)
            .map_err(|e| format!("{}: {e}", lower.display()))?
            .into_iter()
            .filter(|(n, _)| xattrs::allowed(n))
            .collect();
        xattrs::apply(abs, &attrs, self.root, self.layer).map_err(|e| e.to_string())?;
        self.dirs.insert(
            rel.to_path_buf(),
            (m.mode() & 0o7777, m.mtime().max(0) as u64),
        );
        Ok(())
    }

    /// Removes whatever is at `rel` (and forgets directories below it, whose deferred mode
    /// must not be applied to what may later take their place).
    fn remove(&mut self, rel: &Path) -> Result<()> {
        self.dirs.retain(|d, _| !d.starts_with(rel));
        remove_any(&self.dest.join(rel))
    }

    /// Sets the deferred directory modes and mtimes, deepest first.
    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, (perm, mtime)) in dirs.into_iter().rev() {
            let dir = self.dest.join(&rel);
            // Never through a symlink: a later entry may have replaced a parent.
            if self.ensure_dirs(&rel, false).is_err() {
                continue;
            }
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
                .open(&dir)
                .at(&dir)?;
            f.set_permissions(fs::Permissions::from_mode(perm))
                .at(&dir)?;
            let _ = f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime));
        }
        Ok(())
    }
}

/// Makes an entry name relative to the layer root the way containerd does: joined to `/`
/// and cleaned lexically, so absolute names stay inside the layer and `..` stops at its
/// root. Returns the clean relative path (empty for the root itself) and whether a `..`
/// tried to climb above the root.
fn clean(p: &Path) -> (PathBuf, bool) {
    let mut out = PathBuf::new();
    let mut climbed = false;
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => climbed |= !out.pop(),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (out, climbed)
}

/// Removes a file, symlink or directory tree if it exists.
fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).at(p),
        Ok(_) => fs::remove_file(p).at(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(p),
    }
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        .at(p)
}

/// Creates a device node or FIFO (mode 0 for a whiteout; the caller sets the real mode).
pub(crate) fn mknod(p: &Path, fmt: libc::mode_t, dev: libc::dev_t) -> Result<()> {
    let c = cpath(p)?;
    // SAFETY: `c` is a valid NUL-terminated path; mknod does not retain it.
    let rc = unsafe { libc::mknod(c.as_ptr(), fmt, dev) };
    if rc != 0 {
        return Err(io::Error::last_os_error()).at(p);
    }
    Ok(())
}

/// Marks a directory opaque for overlayfs (needs CAP_SYS_ADMIN for the `trusted.` namespace).
fn set_opaque(dir: &Path) -> Result<()> {
    let c = cpath(dir)?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: valid NUL-terminated path and name, a 1-byte value buffer of the given length.
    let rc = unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error()).at(dir);
    }
    Ok(())
}

fn geteuid_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(p: &str) -> (String, bool) {
        let (c, climbed) = clean(Path::new(p));
        (c.to_string_lossy().into_owned(), climbed)
    }

    #[test]
    fn names_are_relative_to_the_layer_root() {
        for (name, want) in [
            ("etc/passwd", "etc/passwd"),
            ("./etc/passwd", "etc/passwd"),
            ("/etc/passwd", "etc/passwd"),
            ("//etc//passwd", "etc/passwd"),
            ("/", ""),
            ("./", ""),
            (".", ""),
            ("etc/", "etc"),
            ("/etc/./x/", "etc/x"),
            ("a/b/../c", "a/c"),
        ] {
            assert_eq!(cleaned(name), (want.to_string(), false), "{name}");
        }
    }

    #[test]
    fn dot_dot_never_climbs_above_the_root() {
        for (name, want) in [
            ("../evil", "evil"),
            ("../../../../etc/shadow", "etc/shadow"),
            ("a/../../evil", "evil"),
            ("/../evil", "evil"),
            ("/..", ""),
            ("..", ""),
            ("a/../..", ""),
            ("./../x/../../y", "y"),
        ] {
            assert_eq!(cleaned(name), (want.to_string(), true), "{name}");
        }
        // `..` that stays inside is not climbing.
        assert_eq!(cleaned("a/b/../../c"), ("c".to_string(), false));
    }

    /// An entry written raw: name, type, link name, contents.
    type Raw<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

    /// A tar whose entry names and link names are written raw into the header, as a
    /// hostile or unusual tool would.
    fn raw_tar(entries: &[Raw]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link, data) in entries {
            let mut h = tar::Header::new_old();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_size(data.len() as u64);
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn absolute_and_climbing_names_unpack_inside_the_layer() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        let dest = tmp.path().join("a/b/layer");
        fs::create_dir_all(&dest).expect("mkdir");
        let tar = raw_tar(&[
            (b"/", tar::EntryType::Directory, b"", b""),
            (b"/etc/", tar::EntryType::Directory, b"", b""),
            (b"/etc/hosts", tar::EntryType::Regular, b"", b"hosts"),
            (b"../../../outside", tar::EntryType::Regular, b"", b"in"),
            (b"etc/../../../../x", tar::EntryType::Regular, b"", b"x"),
            // Hard-link targets are cleaned the same way.
            (b"/etc/hosts.bak", tar::EntryType::Link, b"/etc/hosts", b""),
            (b"/up", tar::EntryType::Link, b"../../../etc/hosts", b""),
            // Symlink targets are kept as written: they resolve in the container.
            (b"/etc/abs", tar::EntryType::Symlink, b"/etc/hosts", b""),
            (
                b"/etc/rel",
                tar::EntryType::Symlink,
                b"../../../../etc/shadow",
                b"",
            ),
        ]);
        let s = unpack_layer(&tar[..], &dest, WhiteoutMode::Overlay, "t").expect("unpack");
        assert_eq!(
            s.entries, 8,
            "the root entry is skipped, as containerd does"
        );
        assert_eq!(fs::read_to_string(dest.join("etc/hosts")).unwrap(), "hosts");
        assert_eq!(fs::read_to_string(dest.join("outside")).unwrap(), "in");
        assert_eq!(fs::read_to_string(dest.join("x")).unwrap(), "x");
        let ino = |p: &str| fs::metadata(dest.join(p)).unwrap().ino();
        assert_eq!(ino("etc/hosts.bak"), ino("etc/hosts"));
        assert_eq!(ino("up"), ino("etc/hosts"));
        assert_eq!(
            fs::read_link(dest.join("etc/abs")).unwrap(),
            Path::new("/etc/hosts")
        );
        assert_eq!(
            fs::read_link(dest.join("etc/rel")).unwrap(),
            Path::new("../../../../etc/shadow")
        );
        assert!(!outside.exists() && !tmp.path().join("a/outside").exists());
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn hard_links_that_cannot_be_made_are_errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cases: [(&[Raw], &str); 4] = [
            (
                &[(b"x", tar::EntryType::Link, b"missing", b"")],
                "not in this layer",
            ),
            (&[(b"x", tar::EntryType::Link, b"/", b"")], "layer root"),
            (&[(b"x", tar::EntryType::Link, b"../x", b"")], "itself"),
            (
                &[
                    (b"d/", tar::EntryType::Directory, b"", b""),
                    (b"x", tar::EntryType::Link, b"d", b""),
                ],
                "directory",
            ),
        ];
        for (i, (entries, word)) in cases.iter().enumerate() {
            let dest = tmp.path().join(format!("l{i}"));
            fs::create_dir(&dest).expect("mkdir");
            let e = unpack_layer(&raw_tar(entries)[..], &dest, WhiteoutMode::Overlay, "t")
                .expect_err("must fail");
            assert!(e.to_string().contains(word), "case {i}: {e}");
        }
    }

    #[test]
    fn a_layer_without_its_closing_blocks_unpacks_but_truncated_contents_do_not() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let full = raw_tar(&[
            (b"/", tar::EntryType::Directory, b"", b""),
            (b"/etc/x", tar::EntryType::Regular, b"", b"hi\n"),
        ]);
        // What umoci 0.4.7's `insert` writes: headers and contents, then nothing.
        let umoci = &full[..512 * 2 + 3];
        let dest = tmp.path().join("umoci");
        fs::create_dir(&dest).expect("mkdir");
        unpack_layer(umoci, &dest, WhiteoutMode::Overlay, "t").expect("unpack");
        assert_eq!(fs::read_to_string(dest.join("etc/x")).unwrap(), "hi\n");
        // Cut inside the contents, or inside a header: errors.
        for cut in [512 * 2 + 2, 512 + 100] {
            let dest = tmp.path().join(format!("cut{cut}"));
            fs::create_dir(&dest).expect("mkdir");
            let e = unpack_layer(&full[..cut], &dest, WhiteoutMode::Overlay, "t");
            assert!(e.is_err(), "cut at {cut}: {e:?}");
        }
    }
}
