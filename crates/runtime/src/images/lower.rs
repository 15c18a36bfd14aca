//! Looking a path up through a stack of layer directories as overlayfs sees them, and
//! copying what is found into the layer being unpacked.
//!
//! Each layer is unpacked into its own directory (an overlay lowerdir), but a layer's tar may
//! hard-link to a file an earlier layer wrote: the link target is not in this layer's tar,
//! and a hard link cannot cross directories that overlayfs will later stack. containerd
//! unpacks through an overlay mount of the parents, where linking to a lower file makes the
//! kernel copy it up first; we do the same by hand: the target is found in the parent layers
//! (topmost first, stopping at whiteouts, opaque directories and non-directories on the way,
//! as the kernel would) and copied, with its owner, mode, times and extended attributes, to
//! the same path in this layer, where the link is then made.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::xattrs;

/// Where a lookup through the layers ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Visible at this absolute path, in the first layer listed that has it.
    Found(PathBuf),
    /// Not visible in the merged view; says why, for error messages.
    Missing(&'static str),
}

/// Whether `m` is an overlayfs whiteout: a character device 0/0.
pub(crate) fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    xattrs::get(dir, "trusted.overlay.opaque").as_deref() == Some(b"y")
}

/// Looks the relative, clean path `rel` up through `layers` (topmost first), never following
/// a symlink: a symlink on the way, like any non-directory, hides what lies below it.
pub(crate) fn lookup(layers: &[&Path], rel: &Path) -> io::Result<Lookup> {
    let comps: Vec<_> = rel.components().collect();
    if comps.is_empty() {
        return Ok(Lookup::Missing("it names the layer root"));
    }
    'layers: for layer in layers {
        let mut cur = layer.to_path_buf();
        let mut opaque = false;
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            let m = match fs::symlink_metadata(&cur) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if opaque {
                        return Ok(Lookup::Missing(
                            "an opaque directory hides the layers below",
                        ));
                    }
                    continue 'layers;
                }
                Err(e) => return Err(e),
            };
            if is_whiteout(&m) {
                return Ok(Lookup::Missing("a layer deleted it (whiteout)"));
            }
            if i + 1 == comps.len() {
                return Ok(Lookup::Found(cur));
            }
            if !m.is_dir() {
                return Ok(Lookup::Missing(
                    "a file or symlink stands where a parent directory should be",
                ));
            }
            opaque |= is_opaque(&cur);
        }
    }
    Ok(Lookup::Missing("no layer has it"))
}

/// Copies the file, symlink, device or FIFO at `src` to `dst` (which must not exist, and
/// whose parent exists): contents, owner (when `root`), mode, mtime and the extended
/// attributes an image may carry. Sockets and directories are refused.
pub(crate) fn copy_node(src: &Path, dst: &Path, root: bool) -> Result<(), String> {
    let at = |what: &str, p: &Path, e: io::Error| format!("{what} {}: {e}", p.display());
    let m = fs::symlink_metadata(src).map_err(|e| at("reading", src, e))?;
    let ft = m.file_type();
    let (uid, gid) = (m.uid(), m.gid());
    let perm = m.mode() & 0o7777;
    let attrs: Vec<_> = xattrs::read_all(src)
        .map_err(|e| at("reading the extended attributes of", src, e))?
        .into_iter()
        .filter(|(n, _)| xattrs::allowed(n))
        .collect();
    if ft.is_file() {
        let mut from = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(src)
            .map_err(|e| at("opening", src, e))?;
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dst)
            .map_err(|e| at("creating", dst, e))?;
        io::copy(&mut from, &mut to).map_err(|e| at("copying to", dst, e))?;
        if root {
            std::os::unix::fs::fchown(&to, Some(uid), Some(gid))
                .map_err(|e| at("chown", dst, e))?;
        }
        // After chown, which clears security.capability and the set-id bits.
        xattrs::apply(dst, &attrs, root, "").map_err(|e| e.to_string())?;
        to.set_permissions(fs::Permissions::from_mode(perm))
            .map_err(|e| at("chmod", dst, e))?;
        let mtime = UNIX_EPOCH + Duration::from_secs(m.mtime().max(0) as u64);
        let _ = to.set_modified(mtime);
        return Ok(());
    }
    if ft.is_symlink() {
        let target = fs::read_link(src).map_err(|e| at("reading the link", src, e))?;
        std::os::unix::fs::symlink(&target, dst).map_err(|e| at("creating", dst, e))?;
        if root {
            std::os::unix::fs::lchown(dst, Some(uid), Some(gid))
                .map_err(|e| at("chown", dst, e))?;
        }
        return xattrs::apply(dst, &attrs, root, "").map_err(|e| e.to_string());
    }
    let fmt = if ft.is_char_device() {
        libc::S_IFCHR
    } else if ft.is_block_device() {
        libc::S_IFBLK
    } else if ft.is_fifo() {
        libc::S_IFIFO
    } else {
        return Err(format!(
            "{} is a {}; only files, symlinks, devices and FIFOs can be hard-linked",
            src.display(),
            if ft.is_dir() { "directory" } else { "socket" }
        ));
    };
    super::unpack::mknod(dst, fmt, m.rdev()).map_err(|e| e.to_string())?;
    if root {
        std::os::unix::fs::lchown(dst, Some(uid), Some(gid)).map_err(|e| at("chown", dst, e))?;
    }
    xattrs::apply(dst, &attrs, root, "").map_err(|e| e.to_string())?;
    fs::set_permissions(dst, fs::Permissions::from_mode(perm)).map_err(|e| at("chmod", dst, e))
}
