//! A throw-away virtual machine for tests that need a kernel set up unlike the host's — a
//! cgroup v2 hierarchy, on hosts that run cgroup v1. QEMU (software emulation: nested KVM
//! is not available on these hosts) boots Debian's cloud kernel with an initramfs made here:
//! busybox, the given binaries at their host paths (debug info stripped) with their shared
//! libraries, and an init that mounts cgroup2, loads overlayfs and runs one command. The VM
//! has no network device: nothing leaves it.
//!
//! The kernel comes from `scripts/install-test-kernel` (`$TIMONIER_TEST_KERNEL_DIR`, default
//! `/var/cache/timonier-test-kernel`: `vmlinuz` and `overlay.ko`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ChildGuard;

const DEFAULT_KERNEL_DIR: &str = "/var/cache/timonier-test-kernel";
const QEMU: &str = "qemu-system-x86_64";

/// A kernel to boot and the modules the init loads.
pub struct Kernel {
    pub vmlinuz: PathBuf,
    pub modules: Vec<PathBuf>,
}

impl Kernel {
    /// The kernel installed by `scripts/install-test-kernel`, if it and QEMU are there.
    pub fn find() -> Result<Kernel, String> {
        let dir = std::env::var_os("TIMONIER_TEST_KERNEL_DIR").map(PathBuf::from).unwrap_or_else(|| DEFAULT_KERNEL_DIR.into());
        let (vmlinuz, overlay) = (dir.join("vmlinuz"), dir.join("overlay.ko"));
        if !vmlinuz.exists() || !overlay.exists() {
            return Err(format!("no test kernel in {}: run scripts/install-test-kernel", dir.display()));
        }
        if Command::new(QEMU).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| !s.success()).unwrap_or(true) {
            return Err(format!("{QEMU} is missing: run scripts/install-test-kernel (Debian's qemu-system-x86)"));
        }
        Ok(Kernel { vmlinuz, modules: vec![overlay] })
    }
}

/// What the VM printed, and the command's exit code (`None` if it never finished).
#[derive(Debug)]
pub struct VmRun {
    pub output: String,
    pub exit_code: Option<i32>,
}

const EXIT_MARKER: &str = "TIMONIER-VM-EXIT ";

/// Boots `kernel` with `binaries` (placed at their host paths) and runs `command` under
/// `sh -c` as root in the guest, with `/bin/busybox` applets on the PATH. Killed after
/// `timeout`.
pub fn run(kernel: &Kernel, binaries: &[&Path], command: &str, timeout: Duration) -> Result<VmRun, String> {
    let work = tempfile::Builder::new().prefix("timonier-vm-").tempdir().map_err(|e| e.to_string())?;
    let mut cpio = Cpio::default();
    cpio.console();
    cpio.file("bin/busybox", &std::fs::read("/bin/busybox").map_err(|e| format!("/bin/busybox: {e} (install busybox-static)"))?, 0o755);
    for (i, m) in kernel.modules.iter().enumerate() {
        cpio.file(&format!("modules/{i}.ko"), &std::fs::read(m).map_err(|e| format!("{}: {e}", m.display()))?, 0o644);
    }
    let mut libs = std::collections::BTreeSet::new();
    for bin in binaries {
        let stripped = work.path().join("stripped");
        let ok = Command::new("objcopy").arg("--strip-debug").arg(bin).arg(&stripped).status().map(|s| s.success()).unwrap_or(false);
        let data = std::fs::read(if ok { stripped.as_path() } else { bin }).map_err(|e| format!("{}: {e}", bin.display()))?;
        cpio.file(rel(bin), &data, 0o755);
        libs.extend(shared_libraries(bin)?);
    }
    for lib in libs {
        cpio.file(rel(&lib), &std::fs::read(&lib).map_err(|e| format!("{}: {e}", lib.display()))?, 0o755);
    }
    cpio.file("command", command.as_bytes(), 0o644);
    cpio.file("init", INIT.as_bytes(), 0o755);
    cpio.file("stage2", STAGE2.as_bytes(), 0o755);
    let initrd = work.path().join("initrd.cpio");
    std::fs::write(&initrd, cpio.finish()).map_err(|e| e.to_string())?;

    let mut child = Command::new(QEMU)
        .args(["-machine", "pc", "-m", "1536", "-smp", "2", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {QEMU}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let mut guard = ChildGuard(child);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = guard.0.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(guard); // kills QEMU if it is still running
    let output = String::from_utf8_lossy(&reader.join().unwrap_or_default()).replace('\r', "");
    let exit_code = output.lines().find_map(|l| l.trim().strip_prefix(EXIT_MARKER)).and_then(|c| c.trim().parse().ok());
    Ok(VmRun { output, exit_code })
}

/// Moves everything onto a tmpfs first: the container runtime's `pivot_root` cannot leave
/// the initramfs' own root.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t tmpfs -o size=90% tmpfs /newroot
for f in /*; do [ "$f" = /proc ] || [ "$f" = /newroot ] || /bin/busybox cp -a "$f" /newroot/; done
/bin/busybox umount /proc
exec /bin/busybox switch_root /newroot /stage2
"#;

const STAGE2: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /proc /sys /dev /tmp /run /etc /root /var/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
for m in /modules/*.ko; do insmod "$m"; done
ip link set lo up
echo "root:x:0:0:root:/root:/bin/sh" > /etc/passwd
echo "cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
cd /
sh -c "$(cat /command)" 2>&1
echo "TIMONIER-VM-EXIT $?"
sync
poweroff -f
"#;

/// `path` without its leading `/`, for the archive.
fn rel(path: &Path) -> &str {
    path.to_str().unwrap_or("").trim_start_matches('/')
}

/// The shared libraries `bin` loads, from `ldd`.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd").arg(bin).output().map_err(|e| format!("ldd: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(PathBuf::from)
        .collect())
}

/// An uncompressed "newc" cpio archive, the initramfs format.
#[derive(Default)]
struct Cpio {
    data: Vec<u8>,
    dirs: std::collections::BTreeSet<String>,
    ino: u32,
}

impl Cpio {
    fn file(&mut self, path: &str, content: &[u8], mode: u32) {
        let mut parent = String::new();
        for part in path.split('/').collect::<Vec<_>>().iter().rev().skip(1).rev() {
            parent = if parent.is_empty() { part.to_string() } else { format!("{parent}/{part}") };
            if self.dirs.insert(parent.clone()) {
                self.entry(&parent.clone(), &[], 0o040755);
            }
        }
        self.entry(path, content, 0o100000 | mode);
    }

    /// The console the kernel gives init as its stdio.
    fn console(&mut self) {
        self.dirs.insert("dev".into());
        self.entry("dev", &[], 0o040755);
        self.entry_with_rdev("dev/console", &[], 0o020600, (5, 1));
    }

    fn entry(&mut self, name: &str, content: &[u8], mode: u32) {
        self.entry_with_rdev(name, content, mode, (0, 0));
    }

    fn entry_with_rdev(&mut self, name: &str, content: &[u8], mode: u32, rdev: (u32, u32)) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino, mode, 0, 0, 1, 0, content.len(), 0, 0, rdev.0, rdev.1, name.len() + 1, 0
        );
        self.data.extend_from_slice(header.as_bytes());
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(content);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", &[], 0);
        self.data
    }
}
