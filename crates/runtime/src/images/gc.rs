//! Image garbage collection as the kubelet does it (`imageGCHighThresholdPercent` 85,
//! `imageGCLowThresholdPercent` 80): when the disk holding the store is fuller than the high
//! threshold, delete unused images, least recently used first, until it is below the low one.

use std::collections::HashSet;
use std::io;
use std::path::Path;

use super::error::Result;
use super::store::{Image, ImageStore};

/// What a garbage collection pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcReport {
    /// Disk usage (percent) before the pass.
    pub usage_before: u8,
    /// Disk usage (percent) after it.
    pub usage_after: u8,
    /// Manifest digests of the images deleted, in deletion order.
    pub deleted: Vec<String>,
    /// True when usage is still above `low` after deleting every unused image.
    pub still_above_low: bool,
}

/// Whether an image is in `in_use`, which may hold references (normalized or not), image IDs
/// (config digests) or manifest digests.
fn is_used(image: &Image, in_use: &HashSet<String>) -> bool {
    in_use.iter().any(|u| {
        *u == image.config_digest
            || *u == image.manifest_digest
            || image.references.contains(u)
            || super::reference::normalize(u)
                .map(|n| {
                    image.references.contains(&n)
                        || super::reference::digest_of(&n) == Some(image.manifest_digest.as_str())
                })
                .unwrap_or(false)
    })
}

/// Deletes least-recently-used images not in `in_use` while `disk_usage()` (percent of the
/// store's filesystem in use; see [`disk_usage_percent`]) is at or above `high`, until it is
/// below `low`. Nothing is deleted when usage is below `high`. `disk_usage` is asked again
/// after each deletion. Images with no recorded last use count as oldest.
pub fn collect_garbage(
    store: &ImageStore,
    in_use: &HashSet<String>,
    high: u8,
    low: u8,
    mut disk_usage: impl FnMut() -> io::Result<u8>,
) -> Result<GcReport> {
    let io_err = |e: io::Error| super::error::Error::Io {
        path: store.root().to_path_buf(),
        source: e,
    };
    let before = disk_usage().map_err(io_err)?;
    let mut report = GcReport {
        usage_before: before,
        usage_after: before,
        ..GcReport::default()
    };
    if before < high {
        return Ok(report);
    }
    let mut candidates: Vec<_> = store
        .list_with_last_used()
        .into_iter()
        .filter(|(i, _)| !is_used(i, in_use))
        .collect();
    candidates.sort_by_key(|(_, t)| *t);
    let mut usage = before;
    for (image, _) in candidates {
        if usage < low {
            break;
        }
        match store.remove(&image.manifest_digest) {
            Ok(_) => report.deleted.push(image.manifest_digest.clone()),
            // Removed meanwhile by someone else: fine.
            Err(super::error::Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        usage = disk_usage().map_err(io_err)?;
    }
    report.usage_after = usage;
    report.still_above_low = usage >= low;
    Ok(report)
}

/// The percentage of the filesystem holding `path` that is in use (as `df` computes it:
/// used / (used + available to unprivileged users), rounded up).
pub fn disk_usage_percent(path: &Path) -> io::Result<u8> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let used = (st.f_blocks - st.f_bfree) as u128;
    let total = used + st.f_bavail as u128;
    if total == 0 {
        return Ok(0);
    }
    Ok(((used * 100).div_ceil(total)).min(100) as u8)
}
