//! Small host helpers: timestamps, cgroup hierarchies, /proc checks. No chrono dependency:
//! RFC 3339 formatting is a dozen lines of civil-date arithmetic.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// (year, month, day) from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn split(t: SystemTime) -> (i64, u32, u32, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (y, mo, da) = civil_from_days((secs / 86_400) as i64);
    (y, mo, da, secs % 86_400, d.subsec_nanos())
}

/// `2026-11-25T16:39:42.083704285Z` — the CRI log and status timestamp format.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let (y, mo, d, s, n) = split(t);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{n:09}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Now, RFC 3339 with nanoseconds.
pub fn now_rfc3339() -> String {
    rfc3339_nano(SystemTime::now())
}

/// `20261125-163942` — the suffix the kubelet gives rotated logs (Go layout `20060102-150405`).
pub fn rotation_suffix(t: SystemTime) -> String {
    let (y, mo, d, s, _) = split(t);
    format!(
        "{y:04}{mo:02}{d:02}-{:02}{:02}{:02}",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// A cgroup hierarchy mount: its mount point and whether it is cgroup2.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub v2: bool,
    /// The v1 controllers (mount options), empty for v2.
    pub controllers: Vec<String>,
}

/// Every cgroup (v1 and v2) mount of this mount namespace, from /proc/self/mountinfo.
pub fn cgroup_hierarchies() -> Vec<Hierarchy> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let lf: Vec<&str> = left.split(' ').collect();
        let rf: Vec<&str> = right.split(' ').collect();
        if lf.len() < 5 || rf.len() < 3 {
            continue;
        }
        let mount = PathBuf::from(lf[4]);
        if out.iter().any(|h| h.mount == mount) {
            continue;
        }
        match rf[0] {
            "cgroup2" => out.push(Hierarchy {
                mount,
                v2: true,
                controllers: vec![],
            }),
            "cgroup" => out.push(Hierarchy {
                mount,
                v2: false,
                controllers: rf[2].split(',').map(str::to_string).collect(),
            }),
            _ => {}
        }
    }
    out
}

/// `<mount>/<rel>` for a cgroup path like `/timonier/pod1/c1`.
pub fn join_cgroup(mount: &Path, rel: &str) -> PathBuf {
    mount.join(rel.trim_start_matches('/'))
}

/// Whether the container in cgroup `rel` was OOM-killed: v1 `memory.oom_control` `oom_kill N`
/// (kernel ≥ 4.13) with `memory.failcnt` as a hint only when that line is missing; v2
/// `memory.events` `oom_kill N`. Must be read before the cgroup is removed.
pub fn cgroup_oom_killed(rel: &str) -> bool {
    if rel.is_empty() {
        return false;
    }
    for h in cgroup_hierarchies() {
        let dir = join_cgroup(&h.mount, rel);
        if !h.v2 && h.controllers.iter().any(|c| c == "memory") {
            if let Ok(text) = std::fs::read_to_string(dir.join("memory.oom_control")) {
                if let Some(n) = counter(&text, "oom_kill") {
                    return n > 0;
                }
            }
        } else if h.v2 {
            if let Ok(text) = std::fs::read_to_string(dir.join("memory.events")) {
                if counter(&text, "oom_kill").unwrap_or(0) > 0 {
                    return true;
                }
            }
        }
    }
    false
}

fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

/// Remove cgroup `rel` in every hierarchy (it must be empty of processes). Retries briefly:
/// a killed process leaves its cgroup a moment after it is reaped.
pub fn remove_cgroup(rel: &str) {
    let rel = rel.trim_matches('/');
    if rel.is_empty() {
        return;
    }
    for h in cgroup_hierarchies() {
        let dir = join_cgroup(&h.mount, rel);
        if !dir.exists() {
            continue;
        }
        for attempt in 0..50 {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => {
                    if attempt == 49 {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove cgroup");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// The pod-level parent of a container cgroup path: `/timonier/pod1/c1` → `/timonier/pod1`.
pub fn cgroup_parent(rel: &str) -> Option<String> {
    let rel = rel.trim_end_matches('/');
    let (parent, _) = rel.rsplit_once('/')?;
    (!parent.trim_matches('/').is_empty()).then(|| parent.to_string())
}

/// Start time of a process in clock ticks (field 22 of /proc/PID/stat), for pid-reuse checks.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after the last ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Mount points at or below `dir` in this mount namespace, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

/// Write `data` to `path` atomically (temp file + rename), so readers never see half a file.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = UNIX_EPOCH + Duration::new(1_795_624_782, 83_704_285);
        assert_eq!(rfc3339_nano(t), "2026-11-25T16:39:42.083704285Z");
        assert_eq!(rotation_suffix(t), "20261125-163942");
        assert_eq!(
            cgroup_parent("/timonier/pod1/c1").as_deref(),
            Some("/timonier/pod1")
        );
        assert_eq!(cgroup_parent("/c1"), None);
    }
}

/// A path naming the socket `dir/name` that fits in a Unix socket address (108 bytes): the
/// path itself when short enough, else `/proc/self/fd/N/name` through a descriptor of `dir`,
/// which the returned file keeps open (deep data directories and long node names would
/// overflow `sun_path`; this works from any thread, unlike changing directory).
pub fn socket_path(dir: &Path, name: &str) -> std::io::Result<(Option<std::fs::File>, PathBuf)> {
    let full = dir.join(name);
    if full.as_os_str().len() < 100 {
        return Ok((None, full));
    }
    let d = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}/{name}", std::os::fd::AsRawFd::as_raw_fd(&d)));
    Ok((Some(d), short))
}
