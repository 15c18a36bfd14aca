//! Extended attributes of unpacked files: those a layer carries in PAX `SCHILY.xattr.NAME`
//! records (file capabilities in `security.capability`, ACLs, SELinux labels, `user.*`), and
//! those copied with a file from a lower layer.
//!
//! What is applied follows containerd (`archive/tar.go`, `createTarFile`): every record is
//! set with `lsetxattr`; one the filesystem does not support (`ENOTSUP`) is skipped with a
//! warning, as is a `user.*` attribute on a symlink or device, which Linux refuses (`EPERM`).
//! On top of that, names overlayfs reads as its own metadata are never taken from an image
//! (`trusted.overlay.*`, and `user.overlay.*` for mounts with `userxattr`): layer directories
//! are overlay lowerdirs as they are, so such an attribute would let an image forge
//! whiteouts, opaque directories, redirects or metacopy files. containerd gets the same
//! effect because it unpacks through an overlay mount, which refuses them.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::error::{Error, Result};

/// The PAX record prefix GNU tar, star, Go's archive/tar (docker, buildkit, umoci) and
/// bsdtar use for an extended attribute.
const PAX_XATTR: &str = "SCHILY.xattr.";

/// One extended attribute: name and raw value.
pub(crate) type Xattr = (String, Vec<u8>);

/// Whether an image may set this attribute (see the module docs for why not).
pub(crate) fn allowed(name: &str) -> bool {
    !(name.starts_with("trusted.overlay.") || name.starts_with("user.overlay."))
}

/// The extended attributes of a tar entry's PAX records.
pub(crate) fn from_pax<R: io::Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<Xattr>, String> {
    let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| format!("unreadable PAX header: {e}"))?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for ext in exts {
        let ext = ext.map_err(|e| format!("malformed PAX record: {e}"))?;
        let Some(name) = ext.key_bytes().strip_prefix(PAX_XATTR.as_bytes()) else {
            continue;
        };
        let name = std::str::from_utf8(name)
            .map_err(|_| "PAX xattr record with a name that is not UTF-8".to_string())?;
        if name.is_empty() || name.contains('\0') {
            return Err(format!("PAX xattr record with an invalid name {name:?}"));
        }
        out.push((name.to_string(), ext.value_bytes().to_vec()));
    }
    Ok(out)
}

fn cstring(bytes: &[u8], what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

/// Sets `xattrs` on `path` (not following a symlink), skipping and logging what containerd
/// skips and what an image may not set. `root`: whether we run as root; without it the
/// privileged namespaces (`trusted.*`, `security.*`) cannot be written and are skipped.
/// `layer` names the layer in messages.
pub(crate) fn apply(path: &Path, xattrs: &[Xattr], root: bool, layer: &str) -> Result<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let cpath = cstring(path.as_os_str().as_bytes(), "path").map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    for (name, value) in xattrs {
        if !allowed(name) {
            tracing::warn!(layer, path = %path.display(), xattr = %name,
                "ignoring an overlayfs attribute in the image: overlayfs would take it for its own metadata");
            continue;
        }
        let cname = cstring(name.as_bytes(), "xattr name").map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        // SAFETY: valid NUL-terminated path and name; `value` is a live buffer of that length.
        let rc = unsafe {
            libc::lsetxattr(
                cpath.as_ptr(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc == 0 {
            continue;
        }
        let err = io::Error::last_os_error();
        let raw = err.raw_os_error().unwrap_or(0);
        let plain_file_or_dir = std::fs::symlink_metadata(path)
            .map(|m| m.is_file() || m.is_dir())
            .unwrap_or(false);
        let skip = raw == libc::ENOTSUP
            || (raw == libc::EPERM && name.starts_with("user.") && !plain_file_or_dir)
            || (raw == libc::EPERM && !root);
        if skip {
            tracing::warn!(layer, path = %path.display(), xattr = %name, error = %err,
                "ignoring an extended attribute this filesystem or user cannot set");
            continue;
        }
        return Err(Error::Layer {
            layer: layer.to_string(),
            reason: format!(
                "cannot set extended attribute {name} on {}: {err}",
                path.display()
            ),
        });
    }
    Ok(())
}

/// The extended attributes of `path` (not following a symlink), for copying a file.
pub(crate) fn read_all(path: &Path) -> io::Result<Vec<Xattr>> {
    let cpath = cstring(path.as_os_str().as_bytes(), "path")?;
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: valid path; the buffer is writable for its length.
        let n = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) if names.len() < 1 << 20 => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(err),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = cstring(name, "xattr name")?;
        let mut value = vec![0u8; 256];
        let n = loop {
            // SAFETY: valid path and name; the buffer is writable for its length.
            let n = unsafe {
                libc::lgetxattr(
                    cpath.as_ptr(),
                    cname.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                // Values are at most 64 KiB on Linux.
                Some(libc::ERANGE) if value.len() < 1 << 17 => value.resize(value.len() * 4, 0),
                _ => return Err(err),
            }
        };
        value.truncate(n);
        match std::str::from_utf8(name) {
            Ok(name) => out.push((name.to_string(), value)),
            Err(_) => {
                tracing::warn!(path = %path.display(), "not copying an extended attribute whose name is not UTF-8")
            }
        }
    }
    Ok(out)
}

/// Reads one attribute of `path` (not following a symlink); `None` if absent or unreadable.
pub(crate) fn get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let cpath = cstring(path.as_os_str().as_bytes(), "path").ok()?;
    let cname = cstring(name.as_bytes(), "xattr name").ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: valid path and name; the buffer is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}
