//! NetworkPolicy enforcement (`PodNetwork::sync_policies`) with real packets, in a throwaway
//! network namespace (the "node": its bridge, three pods, and an "outside" host on a veth), so
//! nothing of the host's is touched and every table dies with the namespace even on failure.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use timonier_network::policy::{subtract, table_name};
use timonier_network::{Allow, Backend, IpRange, NetworkConfig, PodPolicy, PolicyRules, PortRange, Protocol, ServicePort};

/// Processes each in a network namespace of its own (pods, the outside host); killed by PID
/// and reaped on drop.
struct Netns(Vec<Child>);

impl Netns {
    fn spawn(n: usize) -> Self {
        let mut v = Vec::new();
        for _ in 0..n {
            let mut c = Command::new("sleep");
            c.arg("120").stdin(Stdio::null());
            // SAFETY: a single syscall between fork and exec.
            unsafe {
                c.pre_exec(|| {
                    if libc::unshare(libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            v.push(c.spawn().expect("spawn a process in a new netns"));
        }
        Netns(v)
    }

    fn pid(&self, i: usize) -> String {
        self.0[i].id().to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct RmDir(std::path::PathBuf);

impl Drop for RmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sh(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run command");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Listens on `addrs` inside the network namespace of `pid` (kept open by the returned
/// listeners; the kernel completes handshakes without `accept`).
fn listen_in(pid: &str, addrs: Vec<SocketAddr>) -> Vec<TcpListener> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("netns");
    std::thread::spawn(move || {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        addrs.iter().map(|a| TcpListener::bind(a).unwrap_or_else(|e| panic!("bind {a}: {e}"))).collect()
    })
    .join()
    .expect("listener thread")
}

/// Whether a TCP connection from the namespace of `pid` to `ip:port` succeeds, and how long
/// the answer took.
fn connect(pid: &str, ip: Ipv4Addr, port: u16) -> (bool, Duration) {
    let t = Instant::now();
    let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
    let (ok, _) = sh(&["nsenter", "-t", pid, "-n", "timeout", "3", "bash", "-c", &script]);
    (ok, t.elapsed())
}

fn tcp(first: u16, last: u16) -> PortRange {
    PortRange { protocol: Protocol::Tcp, first, last }
}

#[test]
fn policies_filter_pod_traffic() {
    let t = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): run tests as root");
        sh(&["ip", "link", "set", "lo", "up"]);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(scenario());
    });
    if let Err(p) = t.join() {
        std::panic::resume_unwind(p);
    }
}

async fn scenario() {
    let dir = std::env::temp_dir().join(format!("timonier-net-policy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _cleanup = RmDir(dir.clone());
    let cfg = NetworkConfig {
        bridge: "tbr-pol".into(),
        pod_cidr: "10.244.0.0/24".parse().expect("cidr"),
        cluster_cidr: "10.244.0.0/16".parse().expect("cidr"),
        service_cidr: "10.96.0.0/12".parse().expect("cidr"),
        state_dir: dir,
        node_ip: Ipv4Addr::LOCALHOST,
        backend: Backend::default(),
        vxlan_vni: timonier_network::DEFAULT_VNI,
    };
    let table = table_name(&cfg.bridge);
    let table_exists = || sh(&["nft", "list", "table", "inet", &table]).0;
    // Pods a (the server), b and c (clients); host 3 is outside the cluster.
    let ns = Netns::spawn(4);
    let net = timonier_network::PodNetwork::new(cfg.clone()).await.expect("new");
    let a = net.attach("default/a", ns.0[0].id() as i32).await.expect("attach a").ip;
    let b = net.attach("default/b", ns.0[1].id() as i32).await.expect("attach b").ip;
    net.attach("default/c", ns.0[2].id() as i32).await.expect("attach c");
    let (pa, pb, pc, out) = (ns.pid(0), ns.pid(1), ns.pid(2), ns.pid(3));
    for args in [
        vec!["ip", "link", "add", "ext0", "type", "veth", "peer", "name", "ext1", "netns", out.as_str()],
        vec!["ip", "addr", "add", "192.168.77.1/24", "dev", "ext0"],
        vec!["ip", "link", "set", "ext0", "up"],
        vec!["nsenter", "-t", &out, "-n", "ip", "addr", "add", "192.168.77.2/24", "dev", "ext1"],
        vec!["nsenter", "-t", &out, "-n", "ip", "addr", "add", "192.168.77.3/24", "dev", "ext1"],
        vec!["nsenter", "-t", &out, "-n", "ip", "link", "set", "ext1", "up"],
        vec!["nsenter", "-t", &out, "-n", "ip", "link", "set", "lo", "up"],
        vec!["nsenter", "-t", &out, "-n", "ip", "route", "add", "default", "via", "192.168.77.1"],
    ] {
        let (ok, o) = sh(&args);
        assert!(ok, "{args:?}: {o}");
    }
    let (ext2, ext3) = (Ipv4Addr::new(192, 168, 77, 2), Ipv4Addr::new(192, 168, 77, 3));
    let _servers = listen_in(&pa, vec![(a, 8080).into(), (a, 9090).into()]);
    let _outside = listen_in(&out, vec![(Ipv4Addr::UNSPECIFIED, 80).into()]);
    // A Service whose endpoint is a: policies judge the client pod after DNAT.
    let vip = Ipv4Addr::new(10, 96, 0, 50);
    net.sync_services(&[ServicePort { cluster_ip: vip, port: 80, protocol: "tcp".into(), node_port: None, endpoints: vec![(a, 8080)] }]).await.expect("services");

    let expect = |what: &str, from: &str, ip: Ipv4Addr, port: u16, allowed: bool| {
        let (ok, took) = connect(from, ip, port);
        assert_eq!(ok, allowed, "{what}: connection to {ip}:{port} {} (after {took:?})", if ok { "succeeded" } else { "failed" });
        // Refused at once (an ICMP error), not left to time out.
        assert!(allowed || took < Duration::from_secs(2), "{what}: refusal took {took:?}");
    };

    // No policy: everything passes, and there is no table.
    net.sync_policies(&PolicyRules::default()).await.expect("no rules");
    assert!(!table_exists());
    expect("open: b -> a", &pb, a, 8080, true);
    expect("open: c -> a:9090", &pc, a, 9090, true);
    expect("open: b -> outside", &pb, ext2, 80, true);

    // a accepts only b, only on 8080.
    let only_b = PolicyRules { ingress: vec![PodPolicy { pod: a, allow: vec![Allow::Peers { peers: Some(vec![IpRange::host(b)]), ports: Some(vec![tcp(8080, 8080)]) }] }], egress: vec![] };
    net.sync_policies(&only_b).await.expect("ingress rules");
    assert!(table_exists());
    expect("ingress: b -> a:8080", &pb, a, 8080, true);
    expect("ingress: b -> a:9090", &pb, a, 9090, false);
    expect("ingress: c -> a:8080", &pc, a, 8080, false);
    expect("ingress: b -> Service -> a:8080", &pb, vip, 80, true);
    expect("ingress: c -> Service -> a:8080", &pc, vip, 80, false);
    expect("ingress: a -> its own Service", &pa, vip, 80, true);
    expect("ingress: c -> outside (c is not isolated)", &pc, ext2, 80, true);
    // The node always reaches its pods (probes).
    let node = std::net::TcpStream::connect_timeout(&(a, 9090).into(), Duration::from_secs(3));
    assert!(node.is_ok(), "node -> a:9090: {node:?}");

    // Egress of b: the outside network except one address; nothing in the cluster.
    let block = subtract(IpRange::net("192.168.77.0/24".parse().expect("cidr")), &[IpRange::host(ext2)]);
    let egress = PolicyRules { ingress: vec![], egress: vec![PodPolicy { pod: b, allow: vec![Allow::Peers { peers: Some(block), ports: None }] }] };
    net.sync_policies(&egress).await.expect("egress rules");
    expect("egress: b -> outside .3", &pb, ext3, 80, true);
    expect("egress: b -> outside .2 (except)", &pb, ext2, 80, false);
    expect("egress: b -> a", &pb, a, 8080, false);
    expect("egress: c -> a (c is not isolated)", &pc, a, 8080, true);

    // Egress by resolved destinations (a named port) and ingress by a port range.
    let mixed = PolicyRules {
        ingress: vec![PodPolicy { pod: a, allow: vec![Allow::Peers { peers: None, ports: Some(vec![tcp(9000, 9999)]) }] }],
        egress: vec![PodPolicy { pod: b, allow: vec![Allow::Endpoints(vec![(a, Protocol::Tcp, 9090)])] }],
    };
    net.sync_policies(&mixed).await.expect("mixed rules");
    expect("named: b -> a:9090", &pb, a, 9090, true);
    expect("named: b -> a:8080 (egress)", &pb, a, 8080, false);
    expect("range: c -> a:9090", &pc, a, 9090, true);
    expect("range: c -> a:8080 (ingress)", &pc, a, 8080, false);

    // Deny all ingress of a.
    let deny = PolicyRules { ingress: vec![PodPolicy { pod: a, allow: vec![] }], egress: vec![] };
    net.sync_policies(&deny).await.expect("deny");
    expect("deny: b -> a:8080", &pb, a, 8080, false);
    expect("deny: c -> a:9090", &pc, a, 9090, false);

    // Policies gone: traffic restored, table removed.
    net.sync_policies(&PolicyRules::default()).await.expect("no rules");
    assert!(!table_exists());
    expect("restored: c -> a:8080", &pc, a, 8080, true);
    expect("restored: b -> outside .2", &pb, ext2, 80, true);

    net.sync_policies(&only_b).await.expect("ingress rules");
    net.teardown().await.expect("teardown");
    assert!(!table_exists(), "teardown removes the policy table");
    drop(ns);
}
