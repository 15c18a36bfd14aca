//! Unpacking a layer tar into a directory, safely: entries may not leave the directory
//! (`..`, absolute paths, or writing through a symlink are refused), a malformed tar is an
//! error, never a panic. Modes, ownership (when root), symlinks, hardlinks, devices and file
//! mtimes are kept.
//!
//! OCI whiteouts are handled in one of two ways ([`WhiteoutMode`]):
//! - `Overlay`: the directory will be an overlayfs lowerdir, so `.wh.NAME` becomes a character
//!   device 0/0 named NAME and `.wh..wh..opq` becomes the xattr `trusted.overlay.opaque=y` on its
//!   directory — the form the kernel's overlayfs reads (tested here on ext4 as root with a real
//!   overlay mount: both need root, `mknod` needs CAP_MKNOD and `trusted.*` xattrs CAP_SYS_ADMIN).
//! - `Apply`: layers are stacked into one plain directory, so whiteouts delete what lower layers
//!   put there (for runtimes or tools without overlayfs).

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::error::{Error, IoContext, Result};

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
pub struct UnpackStats {
    /// Entries written (files, dirs, links, devices).
    pub entries: u64,
    /// `.wh.NAME` whiteouts seen.
    pub whiteouts: u64,
    /// `.wh..wh..opq` opaque-directory markers seen.
    pub opaque_dirs: u64,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacks the (uncompressed) layer tar read from `reader` into `dest`, which must exist.
/// `layer` names the layer in error messages. In `Overlay` mode `dest` should be empty.
pub fn unpack_layer<R: Read>(
    reader: R,
    dest: &Path,
    mode: WhiteoutMode,
    layer: &str,
) -> Result<UnpackStats> {
    let lerr = |reason: String| Error::Layer {
        layer: layer.to_string(),
        reason,
    };
    let root = geteuid_is_root();
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| lerr(format!("not a tar archive: {e}")))?;
    let mut stats = UnpackStats::default();
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    let mut created: HashSet<PathBuf> = HashSet::new();
    for entry in entries {
        let mut entry =
            entry.map_err(|e| lerr(format!("malformed tar (truncated or corrupt?): {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| lerr(format!("bad entry name: {e}")))?
            .into_owned();
        let rel = clean(&raw).map_err(|r| lerr(format!("entry {}: {r}", raw.display())))?;
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue; // "./": the layer's root directory itself
        };
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        ensure_dirs(dest, &parent, true)
            .map_err(|r| lerr(format!("entry {}: {r}", raw.display())))?;
        let parent_abs = dest.join(&parent);

        if name == OPAQUE {
            stats.opaque_dirs += 1;
            match mode {
                WhiteoutMode::Overlay => set_opaque(&parent_abs)?,
                WhiteoutMode::Apply => {
                    for child in fs::read_dir(&parent_abs).at(&parent_abs)? {
                        let child = child.at(&parent_abs)?;
                        if !created.contains(&parent.join(child.file_name())) {
                            remove_any(&child.path())?;
                        }
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(lerr(format!("entry {}: invalid whiteout", raw.display())));
            }
            stats.whiteouts += 1;
            let target = parent_abs.join(hidden);
            remove_any(&target)?;
            if mode == WhiteoutMode::Overlay {
                mknod(&target, libc::S_IFCHR, 0, 0)?;
            }
            continue;
        }

        let target = dest.join(&rel);
        let header = entry.header();
        let perm = header
            .mode()
            .map_err(|e| lerr(format!("entry {}: bad mode: {e}", raw.display())))?
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
                        remove_any(&target)?;
                        fs::create_dir(&target).at(&target)?;
                    }
                    Err(_) => fs::create_dir(&target).at(&target)?,
                }
                dirs.push((target.clone(), perm, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_any(&target)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .at(&target)?;
                io::copy(&mut entry, &mut f).map_err(|e| {
                    lerr(format!(
                        "entry {}: cannot read contents (truncated?): {e}",
                        raw.display()
                    ))
                })?;
                if root {
                    std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).at(&target)?;
                }
                f.set_permissions(fs::Permissions::from_mode(perm))
                    .at(&target)?;
                let _ = f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime));
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| lerr(format!("entry {}: bad link: {e}", raw.display())))?
                    .ok_or_else(|| {
                        lerr(format!("entry {}: symlink without a target", raw.display()))
                    })?;
                remove_any(&target)?;
                std::os::unix::fs::symlink(&link, &target).at(&target)?;
                if root {
                    std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).at(&target)?;
                }
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| lerr(format!("entry {}: bad link: {e}", raw.display())))?
                    .ok_or_else(|| {
                        lerr(format!(
                            "entry {}: hardlink without a target",
                            raw.display()
                        ))
                    })?;
                let link_rel = clean(&link).map_err(|r| {
                    lerr(format!(
                        "hardlink {} -> {}: {r}",
                        raw.display(),
                        link.display()
                    ))
                })?;
                ensure_dirs(dest, link_rel.parent().unwrap_or(Path::new("")), false).map_err(
                    |r| {
                        lerr(format!(
                            "hardlink {} -> {}: {r}",
                            raw.display(),
                            link.display()
                        ))
                    },
                )?;
                let source = dest.join(&link_rel);
                if fs::symlink_metadata(&source).is_err() {
                    return Err(lerr(format!(
                        "hardlink {} -> {}: target is not in this layer",
                        raw.display(),
                        link.display()
                    )));
                }
                remove_any(&target)?;
                fs::hard_link(&source, &target).at(&target)?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let fmt = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                remove_any(&target)?;
                mknod(&target, fmt, major, minor)?;
                if root {
                    std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).at(&target)?;
                }
                fs::set_permissions(&target, fs::Permissions::from_mode(perm)).at(&target)?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => continue,
            other => {
                return Err(lerr(format!(
                    "entry {}: unsupported entry type {other:?}",
                    raw.display()
                )))
            }
        }
        if kind.is_dir() && root {
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).at(&target)?;
        }
        stats.entries += 1;
        created.insert(rel);
    }
    // Directory modes last (a read-only directory must still receive its children), deepest first.
    for (dir, perm, mtime) in dirs.into_iter().rev() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(perm)).at(&dir)?;
        if let Ok(f) = fs::File::open(&dir) {
            let _ = f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime));
        }
    }
    Ok(stats)
}

/// Makes an entry name relative and plain, refusing `..` and absolute paths.
fn clean(p: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                return Err(
                    "path traversal: the name contains '..'; refusing to write outside the layer"
                        .into(),
                )
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(
                    "absolute path; layer entries must be relative to the layer root".into(),
                )
            }
        }
    }
    Ok(out)
}

/// Walks `rel` under `dest`, creating missing directories when `create`, and refuses a
/// component that is a symlink (writing through it could leave the layer directory).
fn ensure_dirs(dest: &Path, rel: &Path, create: bool) -> Result<(), String> {
    let mut cur = dest.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "parent {} is a symlink; refusing to write through it (it could point outside the layer)",
                    cur.strip_prefix(dest).unwrap_or(&cur).display()
                ))
            }
            Ok(_) => return Err(format!("parent {} is not a directory", cur.strip_prefix(dest).unwrap_or(&cur).display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::DirBuilder::new().mode(0o755).create(&cur).map_err(|e| format!("{}: {e}", cur.display()))?
            }
            Err(e) => return Err(format!("{}: {e}", cur.display())),
        }
    }
    Ok(())
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
fn mknod(p: &Path, fmt: libc::mode_t, major: u32, minor: u32) -> Result<()> {
    let c = cpath(p)?;
    // SAFETY: `c` is a valid NUL-terminated path; mknod does not retain it.
    let rc = unsafe { libc::mknod(c.as_ptr(), fmt, libc::makedev(major, minor)) };
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
