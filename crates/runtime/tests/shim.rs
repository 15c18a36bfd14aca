//! End-to-end tests of the shim (root only): real busybox containers, cgroups, mounts.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use timonier_runtime::bundle::{ContainerSpec, MountKind, MountSpec};
use timonier_runtime::shim::{cleanup_state_dir, ErrorKind, ExecStdio, ShimClient};

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_shim-test"))
}

/// A busybox layer directory built once from the host's static busybox.
fn rootfs() -> &'static Path {
    static R: OnceLock<PathBuf> = OnceLock::new();
    R.get_or_init(|| {
        // Under the target dir, not /tmp: rebuilt per run, never leaked.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("busybox-layer");
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "mnt"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy busybox");
        let out = std::process::Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("list");
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
            }
        }
        dir
    })
}

/// One pod: a shim, its state dir and cgroup parent, cleaned up on drop (even on panic).
struct Pod {
    dir: PathBuf,
    cg: String,
    name: String,
}

impl Pod {
    fn new(name: &str) -> Pod {
        let dir = PathBuf::from(format!("/tmp/shimtest-{name}-{}", std::process::id()));
        let _ = cleanup_state_dir(&dir);
        Pod {
            dir,
            cg: format!("/timonier-test/pod-{name}-{}", std::process::id()),
            name: name.into(),
        }
    }
    async fn start(&self) -> ShimClient {
        ShimClient::start(&exe(), &[], &self.dir, &format!("host-{}", self.name))
            .await
            .expect("start")
    }
    fn spec(&self, client: &ShimClient, id: &str, script: &str) -> ContainerSpec {
        ContainerSpec {
            id: id.into(),
            lower_dirs: vec![rootfs().to_path_buf()],
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["FOO=bar".into()],
            cgroup_path: format!("{}/{id}", self.cg),
            log_path: self.dir.join("logs").join(id).join("0.log"),
            log_max_bytes: 10 << 20,
            log_max_files: 5,
            sandbox_pid: client.pid() as u32,
            ..Default::default()
        }
    }
    fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.join("logs").join(id).join("0.log")).unwrap_or_default()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = cleanup_state_dir(&self.dir);
        for h in hierarchies() {
            let _ = std::fs::remove_dir(format!("{h}{}", self.cg));
            // Fails harmlessly while other tests still have pods below it.
            let _ = std::fs::remove_dir(format!("{h}/timonier-test"));
        }
    }
}

/// Whether this node runs the unified cgroup v2 hierarchy (as in the VM test below).
fn cgroup_v2() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Mount points of every cgroup hierarchy.
fn hierarchies() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" - cgroup"))
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// Zombie children of `pid` (unreaped by it).
fn zombies_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let rest: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if rest.len() > 1 && rest[0] == "Z" && rest[1] == pid.to_string() {
            out.push(p);
        }
    }
    out
}

/// A process that exists and is not a zombie (our reaper is PID 1, which may be slow).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

async fn wait_exit(c: &ShimClient, id: &str) -> timonier_runtime::shim::ContainerState {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = c.status().await.expect("status");
        if let Some(s) = st.into_iter().find(|s| s.id == id) {
            if !s.running {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "container {id} did not exit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostname_logs_exit_code() {
    let pod = Pod::new("basic");
    let c = pod.start().await;
    let mut spec = pod.spec(&c, "c1", "hostname; echo hi; echo err >&2; echo $FOO; cat /etc/hosts; \
        (echo x > /etc/hosts) 2>/dev/null || echo rofail; touch /scratch/ok && echo tmpfsok; exit 3");
    std::fs::write(pod.dir.join("hosts"), "1.2.3.4 thehost\n").expect("hosts");
    spec.mounts = vec![
        MountSpec {
            source: pod.dir.join("hosts"),
            destination: "/etc/hosts".into(),
            readonly: true,
            kind: MountKind::Bind,
        },
        MountSpec {
            source: "".into(),
            destination: "/scratch".into(),
            readonly: false,
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
            },
        },
    ];
    c.create(&spec).await.expect("create");
    let st = wait_exit(&c, "c1").await;
    assert_eq!(st.exit_code, Some(3));
    assert!(!st.oom_killed);
    assert!(st.finished_at.is_some());
    let log = pod.log("c1");
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.iter().any(|l| l.ends_with(" stdout F host-basic")),
        "{log}"
    );
    assert!(lines.iter().any(|l| l.ends_with(" stdout F hi")), "{log}");
    assert!(lines.iter().any(|l| l.ends_with(" stderr F err")), "{log}");
    assert!(lines.iter().any(|l| l.ends_with(" stdout F bar")), "{log}");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(" stdout F 1.2.3.4 thehost")),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with(" stdout F rofail")),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with(" stdout F tmpfsok")),
        "{log}"
    );
    assert!(
        lines[0].len() > 31 && lines[0].as_bytes()[29] == b'Z',
        "{}",
        lines[0]
    );
    assert!(pod.dir.join("containers/c1/exit.json").exists());
    c.remove("c1").await.expect("remove");
    assert!(!pod.dir.join("containers/c1").exists());
    // A non-root container; exec runs as its user too.
    let mut spec = pod.spec(&c, "u", "id -u; sleep 30");
    spec.uid = 1000;
    spec.gid = 1000;
    c.create(&spec).await.expect("create");
    let (r, w) = nix::unistd::pipe().expect("pipe");
    let p = c
        .exec(
            "u",
            vec!["id".into()],
            vec![],
            None,
            ExecStdio::Pipes {
                stdin: None,
                stdout: Some(w),
                stderr: None,
            },
        )
        .await
        .expect("exec");
    assert_eq!(p.wait().await.expect("wait"), 0);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut out).expect("read");
    assert!(out.starts_with("uid=1000 gid=1000"), "{out}");
    assert!(pod.log("u").contains(" stdout F 1000"), "{}", pod.log("u"));
    c.shutdown(1).await.expect("shutdown");
    for h in hierarchies() {
        let p = format!("{h}{}", pod.cg);
        assert!(!Path::new(&p).exists(), "{p} left");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn not_found() {
    let mut pod = Pod::new("notfound");
    let top = pod.dir.clone();
    // Deeper than a Unix socket address holds (108 bytes): the shim and its clients still
    // find each other (a pod of a node whose data directory is deep).
    pod.dir = pod.dir.join("a-directory-deep-enough-that-the-socket-path-overflows-sun-path").join("pods").join("0123456789abcdef").join("sandbox");
    assert!(pod.dir.join("shim.sock").as_os_str().len() > 108);
    let c = pod.start().await;
    let mut spec = pod.spec(&c, "c1", "");
    spec.args = vec!["nosuchbinary".into()];
    let err = c.create(&spec).await.expect_err("must fail");
    assert_eq!(err.kind(), Some(ErrorKind::NotFound), "{err}");
    assert!(
        err.to_string()
            .contains("exec: \"nosuchbinary\": executable file not found in $PATH"),
        "{err}"
    );
    assert!(!pod.dir.join("containers/c1").exists());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        zombies_of(c.pid()),
        Vec::<i32>::new(),
        "failed build left zombies"
    );
    // The shim still works.
    let spec = pod.spec(&c, "c2", "exit 0");
    c.create(&spec).await.expect("create after failure");
    assert_eq!(wait_exit(&c, "c2").await.exit_code, Some(0));
    c.shutdown(1).await.expect("shutdown");
    drop(pod);
    let _ = std::fs::remove_dir_all(top);
}

#[tokio::test(flavor = "multi_thread")]
async fn oom_and_cgroup_readonly() {
    let pod = Pod::new("oom");
    let c = pod.start().await;
    let mut spec = pod.spec(&c, "oom", "echo start; head -c 200m /dev/zero | tail");
    spec.memory_limit = Some(64 << 20);
    c.create(&spec).await.expect("create");
    let st = wait_exit(&c, "oom").await;
    assert!(st.oom_killed, "{st:?} log={}", pod.log("oom"));
    assert_eq!(st.exit_code, Some(137), "{st:?}");

    let mut spec = pod.spec(
        &c,
        "esc",
        "echo 999999999 > /sys/fs/cgroup/memory/memory.limit_in_bytes; echo rc=$?; \
         echo 999999999 > /sys/fs/cgroup/memory.max; echo rc2=$?; \
         mount -t cgroup -o memory none /mnt; echo mount=$?; \
         mount -t cgroup2 none /mnt; echo mount2=$?; \
         echo 999999999 > /mnt/memory.limit_in_bytes; touch /newfile && echo rootfs-writable; \
         echo 1 > /proc/sys/net/ipv4/ip_forward && echo procsys-writable; sleep 30",
    );
    spec.memory_limit = Some(64 << 20);
    spec.cpu_quota = Some(50_000);
    spec.cpu_period = Some(100_000);
    spec.cpu_shares = Some(512);
    spec.pids_limit = Some(100);
    spec.readonly_rootfs = true;
    c.create(&spec).await.expect("create");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The limits as the node sees them: v1 has a hierarchy per controller, v2 one tree.
    let read = |v1_controller: &str, file: &str| {
        let dir = match cgroup_v2() {
            true => format!("/sys/fs/cgroup{}/esc", pod.cg),
            false => format!("/sys/fs/cgroup/{v1_controller}{}/esc", pod.cg),
        };
        std::fs::read_to_string(format!("{dir}/{file}")).unwrap_or_default().trim().to_string()
    };
    let limit = (64u64 << 20).to_string();
    if cgroup_v2() {
        assert_eq!(read("", "cpu.max"), "50000 100000");
        // shares → weight as current runc, crun and libcontainer convert them (the quadratic
        // fit of log2(shares), so that 1024 shares stay the default weight 100): 512 → 59.
        assert_eq!(read("", "cpu.weight"), "59");
        assert_eq!(read("", "pids.max"), "100");
        assert_eq!(read("", "memory.max"), limit, "log={}", pod.log("esc"));
    } else {
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu", "cpu.shares"), "512");
        assert_eq!(read("pids", "pids.max"), "100");
        assert_eq!(read("memory", "memory.limit_in_bytes"), limit, "log={}", pod.log("esc"));
    }
    let log = pod.log("esc");
    assert!(!log.contains("rc=0") && !log.contains("rc2=0"), "{log}");
    assert!(!log.contains("mount=0") && !log.contains("mount2=0"), "{log}");
    assert!(!log.contains("rootfs-writable"), "{log}");
    assert!(!log.contains("procsys-writable"), "{log}");
    c.shutdown(0).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_netns_reconnect_exec_shutdown() {
    let pod = Pod::new("net");
    let c = pod.start().await;
    let shim_pid = c.pid();
    // The shim is not our child: it survives its launcher and us.
    let stat = std::fs::read_to_string(format!("/proc/{shim_pid}/stat")).expect("stat");
    let ppid: i32 = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert_ne!(ppid, std::process::id() as i32);
    let shim_ns = std::fs::read_link(format!("/proc/{shim_pid}/ns/net")).expect("ns");
    assert_ne!(
        shim_ns,
        std::fs::read_link("/proc/self/ns/net").expect("ns")
    );
    for id in ["a", "b"] {
        let spec = pod.spec(&c, id, "readlink /proc/self/ns/net; sleep 60");
        c.create(&spec).await.expect("create");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let la = pod.log("a");
    let lb = pod.log("b");
    let want = format!(" stdout F {}", shim_ns.display());
    assert!(
        la.contains(&want) && lb.contains(&want),
        "a={la} b={lb} want={want}"
    );

    // A new client (as after an agent restart) sees the running containers.
    drop(c);
    let c = ShimClient::connect(&pod.dir).await.expect("reconnect");
    assert_eq!(c.pid(), shim_pid);
    let st = c.status().await.expect("status");
    assert_eq!(st.iter().filter(|s| s.running).count(), 2, "{st:?}");

    // exec: exit code, output through passed fds.
    let p = c
        .exec(
            "a",
            vec!["sh".into(), "-c".into(), "exit 7".into()],
            vec![],
            None,
            ExecStdio::Pipes {
                stdin: None,
                stdout: None,
                stderr: None,
            },
        )
        .await
        .expect("exec");
    assert_eq!(p.wait().await.expect("wait"), 7);
    let (r, w) = nix::unistd::pipe().expect("pipe");
    let p = c
        .exec(
            "a",
            vec!["sh".into(), "-c".into(), "echo $FOO $X; hostname".into()],
            vec!["X=y".into()],
            None,
            ExecStdio::Pipes {
                stdin: None,
                stdout: Some(w),
                stderr: None,
            },
        )
        .await
        .expect("exec");
    assert_eq!(p.wait().await.expect("wait"), 0);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut out).expect("read");
    assert_eq!(out, "bar y\nhost-net\n");
    // tty: the slave becomes the controlling terminal.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let p = c
        .exec(
            "a",
            vec![
                "sh".into(),
                "-c".into(),
                "[ -t 0 ] && echo isatty; set -- $(cat /proc/self/stat); echo tty_nr=$7; exit 5"
                    .into(),
            ],
            vec![],
            None,
            ExecStdio::Tty(pty.slave),
        )
        .await
        .expect("exec tty");
    assert_eq!(p.wait().await.expect("wait"), 5);
    let mut out = String::new();
    let mut buf = vec![0u8; 4096];
    let mut f = std::fs::File::from(pty.master);
    while !out.contains("tty_nr=") || !out.trim_end().ends_with(|c: char| c.is_ascii_digit()) {
        let n = std::io::Read::read(&mut f, &mut buf).expect("read pty");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(out.contains("isatty"), "{out}");
    assert!(!out.contains("tty_nr=0"), "{out}");
    let err = c
        .exec(
            "a",
            vec!["nope".into()],
            vec![],
            None,
            ExecStdio::Pipes {
                stdin: None,
                stdout: None,
                stderr: None,
            },
        )
        .await;
    assert!(err.is_err());

    // Dropping an exec handle (a probe timeout) kills the process.
    let p = c
        .exec(
            "b",
            vec!["sleep".into(), "100".into()],
            vec![],
            None,
            ExecStdio::Pipes {
                stdin: None,
                stdout: None,
                stderr: None,
            },
        )
        .await
        .expect("exec sleep");
    let exec_pid = p.pid();
    assert!(alive(exec_pid));
    drop(p);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(exec_pid) {
        assert!(Instant::now() < deadline, "exec not killed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Kill with SIGTERM: a shell as pid 1 needs a trap to die of it.
    let spec = pod.spec(&c, "k", "trap 'exit 143' TERM; sleep 100 & wait");
    c.create(&spec).await.expect("create");
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.kill("k", 15).await.expect("kill");
    assert_eq!(wait_exit(&c, "k").await.exit_code, Some(143));
    c.remove("k").await.expect("remove");

    let pids: Vec<i32> = c
        .status()
        .await
        .expect("status")
        .iter()
        .map(|s| s.pid)
        .collect();
    c.shutdown(1).await.expect("shutdown");
    for pid in pids.iter().chain([shim_pid].iter()) {
        assert!(
            !alive(*pid),
            "pid {pid} left: {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
        );
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mountinfo.contains(pod.dir.to_str().expect("utf8")),
        "mount left"
    );
    for h in hierarchies() {
        let p = format!("{h}{}", pod.cg);
        assert!(!Path::new(&p).exists(), "{p} left");
    }
    assert!(ShimClient::connect(&pod.dir).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn create_latency() {
    let pod = Pod::new("lat");
    let t = Instant::now();
    let c = pod.start().await;
    eprintln!(
        "shim start (spawn + daemonize + first ping): {:?}",
        t.elapsed()
    );
    let mut times = Vec::new();
    for i in 0..20 {
        let mut spec = pod.spec(&c, &format!("t{i}"), "");
        spec.args = vec!["true".into()];
        let t = Instant::now();
        c.create(&spec).await.expect("create");
        times.push(t.elapsed());
        wait_exit(&c, &format!("t{i}")).await;
        c.remove(&format!("t{i}")).await.expect("remove");
    }
    times.sort();
    eprintln!(
        "create+start latency: min {:?} median {:?} max {:?}",
        times[0], times[10], times[19]
    );
    c.shutdown(0).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_after_dead_shim() {
    let pod = Pod::new("dead");
    let c = pod.start().await;
    let spec = pod.spec(&c, "s", "sleep 100");
    let (pid, _) = c.create(&spec).await.expect("create");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill shim");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ShimClient::connect(&pod.dir).await.is_err());
    assert!(alive(pid), "container outlives its shim");
    let dir = pod.dir.clone();
    tokio::task::spawn_blocking(move || cleanup_state_dir(&dir))
        .await
        .expect("join")
        .expect("cleanup");
    assert!(!alive(pid));
    assert!(!pod.dir.exists());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mountinfo.contains(pod.dir.to_str().expect("utf8")),
        "mount left"
    );
    for h in hierarchies() {
        let p = format!("{h}{}", pod.cg);
        assert!(!Path::new(&p).exists(), "{p} left");
    }
}

/// A `tty: true` container: its stdio is a terminal from its own devpts, the log gets prompts
/// at once, the stdin FIFO feeds the terminal, resize reaches it, and closing stdin for good
/// hangs it up.
#[tokio::test(flavor = "multi_thread")]
async fn terminal_container() {
    use std::io::Write;
    let pod = Pod::new("tty");
    let c = pod.start().await;
    let mut spec = pod.spec(&c, "t", "grep SigIgn /proc/self/status; tty; printf 'prompt> '; read l; echo got $l; stty size; echo $TERM; read l; echo never");
    spec.tty = true;
    spec.stdin = true;
    c.create(&spec).await.expect("create");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pod.log("t").contains("prompt> ") {
        assert!(Instant::now() < deadline, "no prompt: {:?}", pod.log("t"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.resize("t", 91, 37).await.expect("resize");
    let fifo = pod.dir.join("containers/t/stdin");
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).expect("fifo");
    w.write_all(b"hello\n").expect("write");
    while !pod.log("t").contains("xterm") {
        assert!(Instant::now() < deadline, "no answer: {:?}", pod.log("t"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // What `kubectl logs` shows: partial records joined, as the terminal printed them.
    let log = pod.log("t");
    let text: String = log
        .split('\n') // not lines(), which would drop the terminal's \r
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ').skip(2);
            match (f.next(), f.next()) {
                (Some("P"), Some(t)) => Some(t.to_string()),
                (Some("F"), t) => Some(format!("{}\n", t.unwrap_or(""))),
                _ => None,
            }
        })
        .collect();
    assert!(log.contains(" stdout P prompt> "), "{log}");
    for want in ["/dev/pts/0\r\n", "prompt> hello\r\n", "got hello\r\n", "37 91\r\n", "xterm\r\n"] {
        assert!(text.contains(want), "no {want:?} in {text:?}");
    }
    // Containers start with no signal ignored (the shim ignores none that they inherit).
    assert!(text.contains("SigIgn:\t0000000000000000\r\n"), "{text:?}");
    // stdinOnce: the shim lets go of the FIFO, the writer leaves, the terminal hangs up.
    c.close_stdin("t").await.expect("close stdin");
    drop(w);
    // sh is the pid namespace's init, which SIGHUP does not kill: its `read` fails instead.
    let st = wait_exit(&c, "t").await;
    assert!(!pod.log("t").contains("never"), "{st:?} {}", pod.log("t"));
    assert!(c.resize("nope", 1, 1).await.is_err());
    c.shutdown(1).await.expect("shutdown");
}

/// Every test above again, on a kernel with the unified cgroup v2 hierarchy: these hosts run
/// cgroup v1, so a VM boots one (testkit's `vm`, QEMU) and runs this test binary inside it.
#[test]
fn cgroup_v2_in_a_vm() {
    if cgroup_v2() {
        return; // the tests above already ran on v2
    }
    let kernel = match timonier_testkit::vm::Kernel::find() {
        Ok(k) => k,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let me = std::env::current_exe().expect("test binary");
    let command = format!("{} --test-threads=1 --skip cgroup_v2_in_a_vm", me.display());
    let run = timonier_testkit::vm::run(&kernel, &[&me, &exe()], &command, Duration::from_secs(900)).expect("vm");
    assert!(run.output.contains("cgroup2 controllers: ") && run.output.contains("memory"), "{}", run.output);
    assert_eq!(run.exit_code, Some(0), "{}", run.output);
    assert!(run.output.contains("test result: ok."), "{}", run.output);
}
