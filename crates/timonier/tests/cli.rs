//! `timonier start | status | stop | delete`: the local cluster's lifecycle as a user drives
//! it, with kubectl configured through ~/.kube/config.

use std::process::Command;
use std::sync::Mutex;

/// The tests whose cluster has a node in this network namespace: one at a time, since each
/// node's pod range (10.244.0.0/24), ClusterIP routes and DNS address are the same.
static NODE_HERE: Mutex<()> = Mutex::new(());

fn timonier(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_timonier"))
        .args(args)
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run timonier")
}

#[test]
fn start_status_stop_delete() {
    let home = timonier_testkit::temp_dir("timonier-home-");
    let dir = home.path().join("cluster");
    let port = timonier_testkit::free_port().to_string();
    let d = dir.to_str().unwrap();
    // An existing kubeconfig keeps its other contexts.
    std::fs::create_dir_all(home.path().join(".kube")).unwrap();
    std::fs::write(
        home.path().join(".kube/config"),
        "apiVersion: v1\nkind: Config\nclusters: [{name: other, cluster: {server: https://10.0.0.1}}]\ncontexts: [{name: other, context: {cluster: other, user: other}}]\nusers: [{name: other, user: {token: x}}]\ncurrent-context: other\n",
    )
    .unwrap();

    let out = timonier(home.path(), &["start", "--data-dir", d, "--secure-port", &port, "--disable-agent"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("kubectl is now configured to use \"timonier\""));
    struct Stop<'a>(&'a std::path::Path, &'a str);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = timonier(self.0, &["delete", "--data-dir", self.1]);
        }
    }
    let _stop = Stop(home.path(), d);

    let status = timonier(home.path(), &["status", "--data-dir", d]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    for line in ["host: Running", "kubelet: Disabled", "apiserver: Running", "kubeconfig: Configured"] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    // Starting again is harmless.
    assert!(timonier(home.path(), &["start", "--data-dir", d, "--secure-port", &port, "--disable-agent"]).status.success());

    let kubectl = Command::new(timonier_testkit::kubectl_bin("1.33"))
        .args(["get", "namespaces", "-o", "name"])
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&kubectl.stdout).contains("namespace/kube-system"), "{}", String::from_utf8_lossy(&kubectl.stderr));
    let cfg = std::fs::read_to_string(home.path().join(".kube/config")).unwrap();
    assert!(cfg.contains("name: other") && cfg.contains("current-context: timonier"), "{cfg}");

    assert!(timonier(home.path(), &["stop", "--data-dir", d]).status.success());
    let status = timonier(home.path(), &["status", "--data-dir", d]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(7), "{text}");
    assert!(text.contains("host: Stopped") && text.contains("apiserver: Stopped"), "{text}");
    // State survives a stop/start.
    assert!(timonier(home.path(), &["start", "--data-dir", d, "--secure-port", &port, "--disable-agent"]).status.success());
    assert!(timonier(home.path(), &["delete", "--data-dir", d]).status.success());
    assert!(!dir.exists());
    let cfg = std::fs::read_to_string(home.path().join(".kube/config")).unwrap();
    assert!(!cfg.contains("timonier") && cfg.contains("name: other"), "{cfg}");
}

/// `start` with its node agent returns once the cluster is usable, and says so step by step;
/// `status` then reports every part running.
#[test]
fn start_waits_for_the_node_and_dns() {
    let _one_at_a_time = NODE_HERE.lock().unwrap_or_else(|e| e.into_inner());
    let home = timonier_testkit::temp_dir("timonier-home-");
    let dir = home.path().join("cluster");
    let d = dir.to_str().unwrap();
    let (port, kubelet_port) = (timonier_testkit::free_port().to_string(), timonier_testkit::free_port().to_string());
    struct Delete<'a>(&'a std::path::Path, &'a str);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = timonier(self.0, &["delete", "--data-dir", self.1]);
        }
    }
    let _delete = Delete(home.path(), d);
    let out = timonier(
        home.path(),
        &["start", "--data-dir", d, "--secure-port", &port, "--kubelet-port", &kubelet_port, "--bridge", "tmnrcli0", "--node-name", "cli-node", "--node-ip", "127.0.0.1"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let steps: Vec<&str> = text.lines().filter(|l| l.starts_with("* ")).collect();
    assert_eq!(steps.len(), 5, "{text}");
    assert!(steps[1].starts_with(&format!("* API server ready at https://127.0.0.1:{port} (")), "{text}");
    assert!(steps[2].starts_with("* Node \"cli-node\" Ready ("), "{text}");
    assert!(steps[3].starts_with("* Cluster DNS answering at 10.96.0.10 ("), "{text}");
    assert!(steps[4].starts_with("* Done! kubectl is now configured to use \"timonier\""), "{text}");
    let status = timonier(home.path(), &["status", "--data-dir", d]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    for line in ["host: Running", "kubelet: Running", "apiserver: Running", "kubeconfig: Configured"] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}

/// A one-layer docker archive (`docker save` format) holding busybox, made in memory.
fn busybox_archive(path: &std::path::Path, tag: &str) {
    use sha2::{Digest, Sha256};
    let hex = |b: &[u8]| Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut layer = tar::Builder::new(Vec::new());
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (Debian's busybox-static)");
    let mut h = tar::Header::new_gnu();
    h.set_size(busybox.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    layer.append_data(&mut h, "bin/busybox", busybox.as_slice()).unwrap();
    let layer = layer.into_inner().unwrap();
    let diff = hex(&layer);
    let config = format!(r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/busybox","sh"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{diff}"]}}}}"#);
    let config_hex = hex(config.as_bytes());
    let manifest = format!(r#"[{{"Config":"{config_hex}.json","RepoTags":["{tag}"],"Layers":["{diff}/layer.tar"]}}]"#);
    let mut out = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in [(format!("{config_hex}.json"), config.into_bytes()), (format!("{diff}/layer.tar"), layer), ("manifest.json".to_string(), manifest.into_bytes())] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    out.finish().unwrap();
}

#[test]
fn image_import_ls_rm() {
    let home = timonier_testkit::temp_dir("timonier-images-");
    let archive = home.path().join("busybox.tar");
    busybox_archive(&archive, "busybox:test");
    let d = home.path().join("agent");
    let d = d.to_str().unwrap();
    let out = timonier(home.path(), &["image", "--data-dir", d, "import", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported docker.io/library/busybox:test"));
    let ls = String::from_utf8_lossy(&timonier(home.path(), &["image", "--data-dir", d, "ls"]).stdout).to_string();
    assert!(ls.lines().any(|l| l.starts_with("docker.io/library/busybox") && l.contains(" test ")), "{ls}");
    let rm = timonier(home.path(), &["image", "--data-dir", d, "rm", "busybox:test"]);
    assert!(String::from_utf8_lossy(&rm.stdout).contains("Untagged: docker.io/library/busybox:test"));
    let ls = String::from_utf8_lossy(&timonier(home.path(), &["image", "--data-dir", d, "ls"]).stdout).to_string();
    assert_eq!(ls.lines().count(), 1, "{ls}");
    let bad = timonier(home.path(), &["image", "--data-dir", d, "import", "/etc/hostname"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("invalid image in /etc/hostname"), "{}", String::from_utf8_lossy(&bad.stderr));
}

/// `timonier start --nodes 3`: the first node with the control plane, two more each on a host
/// of its own (network namespaces on the `timonier` LAN), pods talking across them;
/// `node list|delete|add`, `stop` then `start` bring every node back; `delete` leaves no host.
#[test]
fn start_several_nodes() {
    let _one_at_a_time = NODE_HERE.lock().unwrap_or_else(|e| e.into_inner());
    let home = timonier_testkit::temp_dir("timonier-home-");
    // Short: pod shims' socket paths under it must fit in 108 bytes.
    let dir = home.path().join("c");
    let d = dir.to_str().unwrap();
    let (port, kubelet_port) = (timonier_testkit::free_port().to_string(), timonier_testkit::free_port().to_string());
    // The nodes pull from a registry on the LAN, which exists once the cluster does.
    let lan_ip = std::net::Ipv4Addr::new(10, 250, 0, 1);
    let registry_port = timonier_testkit::free_port();
    let registries = home.path().join("registries.yaml");
    std::fs::write(&registries, format!("mirrors:\n  docker.io:\n    endpoint: [\"http://{lan_ip}:{registry_port}\"]\n")).unwrap();
    struct Delete<'a>(&'a std::path::Path, &'a str);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = timonier(self.0, &["delete", "--data-dir", self.1]);
        }
    }
    let _delete = Delete(home.path(), d);
    let start = |nodes: Option<&str>| {
        let mut args = vec!["start", "--data-dir", d, "--secure-port", &port, "--kubelet-port", &kubelet_port, "--bridge", "tmnrmn0", "--node-name", "mn"];
        args.extend(["--registry-config", registries.to_str().unwrap()]);
        if let Some(n) = nodes {
            args.extend(["--nodes", n]);
        }
        let out = timonier(home.path(), &args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let text = start(Some("3"));
    for line in [format!("* API server ready at https://{lan_ip}:{port} ("), "* Node \"mn\" Ready (".into(), "* Node \"mn-m02\" Ready (".into(), "* Node \"mn-m03\" Ready (".into()] {
        assert!(text.contains(&line), "{line} in:\n{text}");
    }
    let kubectl = |args: &[&str]| {
        let out = Command::new(timonier_testkit::kubectl_bin("1.33")).args(args).env("HOME", home.path()).env_remove("KUBECONFIG").output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (_, nodes) = kubectl(&["get", "nodes", "-o", "custom-columns=NAME:.metadata.name,IP:.status.addresses[0].address,READY:.status.conditions[?(@.type==\"Ready\")].status", "--no-headers"]);
    for line in ["mn-m02   10.250.0.11   True", "mn-m03   10.250.0.12   True"] {
        assert!(nodes.split_whitespace().collect::<Vec<_>>().join(" ").contains(&line.split_whitespace().collect::<Vec<_>>().join(" ")), "{line} in:\n{nodes}");
    }
    let status = timonier(home.path(), &["status", "--data-dir", d]);
    let st = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success() && st.contains("mn-m02\ntype: Worker\nhost: Running\nkubelet: Running"), "{st}");
    let list = String::from_utf8_lossy(&timonier(home.path(), &["node", "list", "--data-dir", d]).stdout).into_owned();
    assert!(list.contains("mn-m03") && list.contains("10.250.0.12"), "{list}");

    // Pods on different hosts reach each other.
    let registry = timonier_testkit::Registry::start_at(lan_ip, registry_port).expect("registry on the LAN");
    let images = timonier_testkit::temp_dir("timonier-images-");
    timonier_testkit::images::busybox_image(&images.path().join("bb")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(timonier_testkit::images::push(registry.addr(), &images.path().join("bb"), "library/busybox:latest")).unwrap();
    for (pod, node) in [("p1", "mn"), ("p3", "mn-m03")] {
        let overrides = format!("{{\"spec\":{{\"nodeName\":\"{node}\"}}}}");
        let (ok, out) = kubectl(&["run", pod, "--image=busybox", &format!("--overrides={overrides}"), "--", "sleep", "3600"]);
        assert!(ok, "{out}");
    }
    let (ok, out) = kubectl(&["wait", "--for=condition=Ready", "pod/p1", "pod/p3", "--timeout=60s"]);
    assert!(ok, "{out}\n{}\n{}", kubectl(&["describe", "pod", "p3"]).1, std::fs::read_to_string(dir.join("nodes/mn-m03/agent.log")).unwrap_or_default());
    let (_, ip3) = kubectl(&["get", "pod", "p3", "-o", "jsonpath={.status.podIP}"]);
    let (ok, out) = kubectl(&["exec", "p1", "--", "ping", "-c1", "-W2", &ip3]);
    let routes = Command::new("ip").args(["route"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    assert!(ok && out.contains("1 packets received"), "p1 on mn -> p3 on mn-m03 ({ip3}): {out}\nroutes here:\n{routes}");

    // A node goes and comes back.
    let out = timonier(home.path(), &["node", "delete", "mn-m03", "--data-dir", d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, nodes) = kubectl(&["get", "nodes", "-o", "name"]);
    assert!(!nodes.contains("mn-m03"), "{nodes}");
    assert!(!std::path::Path::new("/run/netns/timonier-mn-m03").exists());
    let out = timonier(home.path(), &["node", "add", "--data-dir", d]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("* Node \"mn-m03\" Ready"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = timonier(home.path(), &["node", "delete", "mn-m09", "--data-dir", d]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no node \"mn-m09\""));

    // Stopped and started again: every node returns.
    assert!(timonier(home.path(), &["stop", "--data-dir", d]).status.success());
    let text = start(None);
    assert!(text.contains("* Node \"mn-m02\" Ready (") && text.contains("* Node \"mn-m03\" Ready ("), "{text}");

    assert!(timonier(home.path(), &["delete", "--data-dir", d]).status.success());
    for ns in ["timonier-lan", "timonier-mn-m02", "timonier-mn-m03"] {
        assert!(!std::path::Path::new("/run/netns").join(ns).exists(), "{ns} left");
    }
    let links = Command::new("ip").args(["-br", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("timonier-lan"));
}

/// `timonier start --servers 3`: a local 3-member etcd and three servers sharing it, one
/// leader; the first server SIGKILLed, another takes over and acts; `start` brings it back,
/// `stop` and `delete` end every process.
#[test]
fn start_several_servers() {
    let home = timonier_testkit::temp_dir("timonier-home-");
    let dir = home.path().join("cluster");
    let d = dir.to_str().unwrap();
    let (port, etcd_port) = (timonier_testkit::free_ports(3), timonier_testkit::free_ports(6));
    let start_args = ["start", "--data-dir", d, "--servers", "3", "--disable-agent", "--secure-port", &port.to_string(), "--etcd-port", &etcd_port.to_string()];
    struct Delete<'a>(&'a std::path::Path, &'a str);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = timonier(self.0, &["delete", "--data-dir", self.1]);
        }
    }
    let _delete = Delete(home.path(), d);
    let out = timonier(home.path(), &start_args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}
{}", String::from_utf8_lossy(&out.stderr));
    for line in ["* etcd cluster of 3 members healthy".to_string(), format!("* Server 2 ready at https://127.0.0.1:{}", port + 1), format!("* Server 3 ready at https://127.0.0.1:{}", port + 2)] {
        assert!(text.contains(&line), "{line} in:
{text}");
    }
    let status = timonier(home.path(), &["status", "--data-dir", d]);
    let st = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.status.success() && st.contains("members: 3/3 running") && st.contains("server-3\ntype: Control Plane\nhost: Running\napiserver: Running"), "{st}");

    let kubectl = |server: u16, args: &[&str]| {
        let out = Command::new(timonier_testkit::kubectl_bin("1.33"))
            .args(["--server", &format!("https://127.0.0.1:{server}")])
            .args(args)
            .env("HOME", home.path())
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    // Each server adds itself at its next endpoint pass (every 5 s), as upstream's reconciler.
    let want = format!("{port} {} {}", port + 1, port + 2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, endpoints) = kubectl(port, &["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[*].ports[0].port}"]);
        if endpoints == want || std::time::Instant::now() > deadline {
            assert_eq!(endpoints, want);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let holder = |server: u16| kubectl(server, &["get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}"]).1;
    let first_id = std::fs::read_to_string(dir.join("server/server-id")).expect("server-id");
    let leader = holder(port);
    assert!(leader.ends_with(first_id.trim()), "the first server leads: {leader}");

    // The leader dies: another server takes over within the lease (15 s) and its controllers act.
    let pid: i32 = std::fs::read_to_string(dir.join("server.pid")).unwrap().trim().parse().unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while holder(port + 1) == leader {
        assert!(std::time::Instant::now() < deadline, "no server took over");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (ok, out) = kubectl(port + 2, &["create", "deployment", "after", "--image=busybox"]);
    assert!(ok, "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !kubectl(port + 1, &["get", "pods", "-l", "app=after", "-o", "name"]).1.contains("pod/after-") {
        assert!(std::time::Instant::now() < deadline, "the new leader's controllers made no pod");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let status = timonier(home.path(), &["status", "--data-dir", d]);
    assert_eq!(status.status.code(), Some(7), "{}", String::from_utf8_lossy(&status.stdout));

    // `start` brings the first server back; `stop` ends everything, etcd last.
    let out = timonier(home.path(), &start_args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(timonier(home.path(), &["status", "--data-dir", d]).status.success());
    let pids: Vec<i32> = ["server.pid", "servers/2/server.pid", "servers/3/server.pid", "etcd/m0.pid", "etcd/m1.pid", "etcd/m2.pid"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")).trim().parse().unwrap())
        .collect();
    assert!(timonier(home.path(), &["stop", "--data-dir", d]).status.success());
    assert_eq!(timonier(home.path(), &["status", "--data-dir", d]).status.code(), Some(7));
    for pid in pids {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| !s.contains("State:\tZ"));
        assert!(!alive, "process {pid} still runs after stop");
    }
    // Its state is kept: started again, the deployment is there.
    assert!(timonier(home.path(), &start_args).status.success());
    assert!(kubectl(port + 1, &["get", "deployment", "after"]).0);
    assert!(timonier(home.path(), &["delete", "--data-dir", d]).status.success());
    assert!(!dir.exists());
}

/// `timonier start --bind-address` on an address other machines reach prints the command that
/// joins one, as `kubeadm init` does; run on another host (a network namespace on a test
/// LAN), that very command makes it a node.
#[test]
fn start_prints_the_join_command() {
    let _one_at_a_time = NODE_HERE.lock().unwrap_or_else(|e| e.into_inner());
    let mut lan = timonier_testkit::hosts::Lan::create().expect("test LAN");
    let host = lan.add_host(1).expect("host");
    let home = timonier_testkit::temp_dir("timonier-home-");
    let dir = home.path().join("c");
    let d = dir.to_str().unwrap();
    let (port, kubelet_port) = (timonier_testkit::free_port().to_string(), timonier_testkit::free_port().to_string());
    struct Delete<'a>(&'a std::path::Path, &'a str);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = timonier(self.0, &["delete", "--data-dir", self.1]);
        }
    }
    let _delete = Delete(home.path(), d);
    let gw = lan.gateway().to_string();
    let out = timonier(
        home.path(),
        &["start", "--data-dir", d, "--secure-port", &port, "--bind-address", &gw, "--kubelet-port", &kubelet_port, "--bridge", "tmnrjoin0", "--node-name", "first", "--node-ip", &gw],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let command = text.lines().map(str::trim).find(|l| l.starts_with("timonier agent --server")).unwrap_or_else(|| panic!("no join command in:\n{text}"));
    assert!(command.starts_with(&format!("timonier agent --server https://{gw}:{port} --token K10")), "{command}");

    // Run it on the other host, with only what a second machine's defaults would differ in.
    let agent_dir = home.path().join("agent");
    let words: Vec<&str> = command.split_whitespace().skip(1).collect();
    let log = std::fs::File::create(home.path().join("agent.log")).unwrap();
    let child = host
        .command(env!("CARGO_BIN_EXE_timonier"))
        .args(&words)
        .arg("--data-dir")
        .arg(&agent_dir)
        .args(["--node-name", "second", "--node-ip", &host.ip.to_string(), "--cgroup-root", "/timonier-test-join2"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run the join command");
    let mut agent = timonier_testkit::ChildGuard(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let ready = loop {
        let out = Command::new(timonier_testkit::kubectl_bin("1.33"))
            .args(["get", "node", "second", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])
            .env("HOME", home.path())
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        if out.stdout == b"True" || std::time::Instant::now() > deadline {
            break out.stdout == b"True";
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    unsafe { libc::kill(agent.pid() as i32, libc::SIGTERM) };
    let _ = agent.0.wait();
    let dir = agent_dir.clone();
    let _ = host.run_in(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(timonier_kubelet::cleanup_node(&dir));
    });
    assert!(ready, "the joined node is not Ready; its log:\n{}", std::fs::read_to_string(home.path().join("agent.log")).unwrap_or_default());
}
