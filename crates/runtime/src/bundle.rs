//! The container description the kubelet hands to the shim, and its translation into an OCI
//! bundle (`config.json`) that libcontainer runs.
//!
//! The spec starts from `oci_spec::runtime::Spec::default()` and is adjusted as JSON, then parsed
//! back into a `Spec` so that every field is checked by the same types libcontainer reads.
//! The security rules come from the host notes (runtime-and-network.md §L):
//! - `/sys/fs/cgroup` is never mounted: even a read-only cgroup mount was writable from inside
//!   and let a container raise its own memory limit.
//! - `oomScoreAdj` is never set (libcontainer writes it into the *caller*, and negative values
//!   fail without `CAP_SYS_RESOURCE`).
//! - rlimits stay at or below the host's hard `RLIMIT_NOFILE` of 20000.

use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Errors while writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("invalid container spec: {0}")]
    Invalid(String),
    #[error("serializing OCI spec: {0}")]
    Json(#[from] serde_json::Error),
    #[error("writing OCI spec {path}: {source}")]
    Save {
        path: PathBuf,
        source: libcontainer::oci_spec::OciSpecError,
    },
}

/// Everything the shim needs to create one container of a pod.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct ContainerSpec {
    /// Container id: unique on the node, used for directories and libcontainer state.
    pub id: String,
    /// Image layer directories, topmost first (overlayfs `lowerdir` order).
    pub lower_dirs: Vec<PathBuf>,
    /// The full command line, already resolved from image entrypoint/cmd and pod command/args.
    pub args: Vec<String>,
    /// `K=V` entries.
    pub env: Vec<String>,
    /// Working directory inside the container; empty means `/`.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Unused: containers share the sandbox's UTS namespace, whose hostname the shim sets.
    pub hostname: Option<String>,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    /// Capability names with or without `CAP_` (`NET_ADMIN`), or `ALL`.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privileges: bool,
    pub mounts: Vec<MountSpec>,
    /// Cgroup path below every hierarchy's root, e.g. `/timonier/pod<uid>/<containerid>`.
    pub cgroup_path: String,
    pub memory_limit: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub pids_limit: Option<i64>,
    /// CRI log file (`.../<restartCount>.log`).
    pub log_path: PathBuf,
    /// Rotate when the log passes this size; 0 means never.
    pub log_max_bytes: u64,
    /// Files kept including the live one (kubelet `containerLogMaxFiles`).
    pub log_max_files: u32,
    /// The pod's pause process (the shim): net, ipc and uts are joined through `/proc/<pid>/ns`.
    pub sandbox_pid: u32,
    /// Join the PID namespace of this process instead of getting a new one: an ephemeral
    /// container with `targetContainerName` sees (and can trace) its target's processes.
    #[serde(default)]
    pub pid_namespace: Option<u32>,
    /// The container reads a FIFO (`<container dir>/stdin`) that the shim keeps open, so that
    /// `kubectl attach -i` can write to it (`stdin: true` in the pod spec).
    #[serde(default)]
    pub stdin: bool,
    /// The container's stdio is a terminal (`tty: true`): the shim holds the pty master, logs
    /// what it reads and feeds it the stdin FIFO.
    #[serde(default)]
    pub tty: bool,
}

/// One mount into the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MountSpec {
    pub source: PathBuf,
    pub destination: String,
    #[serde(default)]
    pub readonly: bool,
    pub kind: MountKind,
}

/// What kind of mount a [`MountSpec`] is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type")]
pub enum MountKind {
    Bind,
    Tmpfs { size: Option<u64> },
}

/// containerd's default capability set (pkg/oci `defaultUnixCaps`).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, indexed by its number (for the bounding-set check).
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// runc's default masked paths.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Highest rlimit the hosts allow (hard `RLIMIT_NOFILE`, no `CAP_SYS_RESOURCE`).
const MAX_NOFILE: u64 = 20000;

/// `NET_ADMIN` / `cap_net_admin` → `CAP_NET_ADMIN`.
fn normalize_cap(name: &str) -> String {
    let up = name.trim().to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// Whether this process may hand `cap` on: a capability outside our own bounding set would make
/// `capset` fail in the container (these hosts lack `CAP_SYS_RESOURCE`).
fn in_bounding_set(cap: &str) -> bool {
    match ALL_CAPS.iter().position(|c| *c == cap) {
        // SAFETY: PR_CAPBSET_READ only reads a flag of the calling thread.
        Some(n) => unsafe { libc::prctl(libc::PR_CAPBSET_READ, n as libc::c_ulong, 0, 0, 0) == 1 },
        None => false,
    }
}

/// The effective capability list for a spec: containerd's defaults, `ALL` expanded, adds then
/// drops applied (upstream applies add before drop, and `drop: ALL` wins over the defaults).
pub fn capabilities(spec: &ContainerSpec) -> Vec<String> {
    let all: Vec<String> = ALL_CAPS.iter().map(|s| s.to_string()).collect();
    let mut caps: Vec<String> = if spec.privileged {
        all.clone()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    if !spec.privileged {
        if spec.cap_drop.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
            caps.clear();
        }
        for add in &spec.cap_add {
            if add.eq_ignore_ascii_case("ALL") {
                caps = all.clone();
            } else {
                let c = normalize_cap(add);
                if !caps.contains(&c) {
                    caps.push(c);
                }
            }
        }
        let drops: Vec<String> = spec.cap_drop.iter().map(|c| normalize_cap(c)).collect();
        caps.retain(|c| !drops.contains(c));
    }
    caps.retain(|c| in_bounding_set(c));
    caps
}

/// Build the OCI runtime spec for `spec`, whose root filesystem is `rootfs` (an absolute path).
pub fn build_oci_spec(spec: &ContainerSpec, rootfs: &Path) -> Result<Spec, BundleError> {
    if spec.args.is_empty() {
        return Err(BundleError::Invalid("empty command".into()));
    }
    if spec.sandbox_pid == 0 {
        return Err(BundleError::Invalid("sandbox_pid is 0".into()));
    }
    let mut v = serde_json::to_value(Spec::default())?;
    let caps = capabilities(spec);
    let cwd = if spec.cwd.is_empty() {
        "/".to_string()
    } else {
        spec.cwd.clone()
    };
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    // As containerd's CRI plugin does for a terminal.
    if spec.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    v["root"] = json!({"path": rootfs, "readonly": spec.readonly_rootfs});
    v["hostname"] = Value::Null;
    v["process"] = json!({
        "terminal": spec.tty,
        "user": {"uid": spec.uid, "gid": spec.gid, "additionalGids": spec.additional_gids},
        "args": spec.args,
        "env": env,
        "cwd": cwd,
        "noNewPrivileges": spec.no_new_privileges,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
            "inheritable": [], "ambient": [],
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": MAX_NOFILE, "soft": MAX_NOFILE}],
    });
    let sys_opts: Vec<&str> = if spec.privileged {
        vec!["nosuid", "noexec", "nodev"]
    } else {
        vec!["nosuid", "noexec", "nodev", "ro"]
    };
    // /sys/fs/cgroup is deliberately absent (see module docs).
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
    ];
    for m in &spec.mounts {
        if !m.destination.starts_with('/') {
            return Err(BundleError::Invalid(format!(
                "mount destination {:?} is not absolute",
                m.destination
            )));
        }
        let entry = match &m.kind {
            MountKind::Bind => {
                let mode = if m.readonly { "ro" } else { "rw" };
                json!({"destination": m.destination, "type": "bind", "source": m.source,
                       "options": ["rbind", "rprivate", mode]})
            }
            MountKind::Tmpfs { size } => {
                let mut opts = vec!["nosuid".to_string(), "nodev".to_string()];
                if let Some(s) = size {
                    opts.push(format!("size={s}"));
                }
                if m.readonly {
                    opts.push("ro".into());
                }
                json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs",
                       "options": opts})
            }
        };
        mounts.push(entry);
    }
    v["mounts"] = Value::Array(mounts);

    let ns = |kind: &str| format!("/proc/{}/ns/{kind}", spec.sandbox_pid);
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if spec.privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    if let Some(limit) = spec.memory_limit {
        resources["memory"] = json!({"limit": limit});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(s) = spec.cpu_shares {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(q) = spec.cpu_quota {
        cpu.insert("quota".into(), json!(q));
    }
    if let Some(p) = spec.cpu_period {
        cpu.insert("period".into(), json!(p));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = spec.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let (masked, ro): (Vec<&str>, Vec<&str>) = if spec.privileged {
        (vec![], vec![])
    } else {
        (MASKED_PATHS.to_vec(), READONLY_PATHS.to_vec())
    };
    let mut linux = v["linux"].take();
    let pid = match spec.pid_namespace {
        Some(p) => json!({"type": "pid", "path": format!("/proc/{p}/ns/pid")}),
        None => json!({"type": "pid"}),
    };
    linux["namespaces"] = json!([
        pid,
        {"type": "mount"},
        {"type": "network", "path": ns("net")},
        {"type": "ipc", "path": ns("ipc")},
        {"type": "uts", "path": ns("uts")},
    ]);
    linux["resources"] = resources;
    linux["cgroupsPath"] = json!(spec.cgroup_path);
    linux["maskedPaths"] = json!(masked);
    linux["readonlyPaths"] = json!(ro);
    v["linux"] = linux;
    Ok(serde_json::from_value(v)?)
}

/// Write `<bundle>/config.json` for `spec`.
pub fn write_bundle(spec: &ContainerSpec, bundle: &Path, rootfs: &Path) -> Result<(), BundleError> {
    let oci = build_oci_spec(spec, rootfs)?;
    let path = bundle.join("config.json");
    oci.save(&path)
        .map_err(|source| BundleError::Save { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_add_drop() {
        let mut s = ContainerSpec {
            cap_add: vec!["net_admin".into()],
            ..Default::default()
        };
        s.cap_drop = vec!["KILL".into()];
        let c = capabilities(&s);
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_KILL".to_string()));
        s.cap_drop = vec!["ALL".into()];
        s.cap_add = vec!["CHOWN".into()];
        assert_eq!(capabilities(&s), vec!["CAP_CHOWN".to_string()]);
    }

    #[test]
    fn spec_parses() {
        let s = ContainerSpec {
            id: "a".into(),
            args: vec!["true".into()],
            sandbox_pid: 1,
            memory_limit: Some(1 << 26),
            mounts: vec![MountSpec {
                source: "/tmp".into(),
                destination: "/x".into(),
                readonly: true,
                kind: MountKind::Bind,
            }],
            ..Default::default()
        };
        let oci = build_oci_spec(&s, Path::new("/r")).expect("spec");
        let text = serde_json::to_string(&oci).expect("json");
        assert!(!text.contains("/sys/fs/cgroup"));
        assert!(!text.contains("oomScoreAdj"));
    }

    #[test]
    fn joins_a_target_pid_namespace() {
        let s = ContainerSpec { id: "a".into(), args: vec!["sh".into()], sandbox_pid: 7, pid_namespace: Some(42), ..Default::default() };
        let oci = serde_json::to_value(build_oci_spec(&s, Path::new("/r")).expect("spec")).expect("json");
        let pid = oci["linux"]["namespaces"].as_array().and_then(|n| n.iter().find(|n| n["type"] == "pid")).cloned();
        assert_eq!(pid, Some(json!({"type": "pid", "path": "/proc/42/ns/pid"})));
    }
}
