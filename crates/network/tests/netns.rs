//! End-to-end tests. Each runs in its own throwaway network namespace (a thread that unshared CLONE_NEWNET,
//! running a current-thread runtime), so the host's interfaces and routes are never touched.

use std::future::Future;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use timonier_network::{blackhole_routes, veth_name, Backend, Ipv4Net, NetworkConfig, Peer, PodNetwork};

/// Runs `f` in a fresh network namespace on a dedicated thread; panics propagate.
fn in_netns<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let t = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): run tests as root");
        sh(&["ip", "link", "set", "lo", "up"]);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(f());
    });
    if let Err(p) = t.join() {
        std::panic::resume_unwind(p);
    }
}

/// "Pods": processes in their own netns; killed (by PID) and reaped on drop, even when a test fails.
struct Pods(Vec<Child>);

impl Pods {
    fn spawn(n: usize) -> Self {
        let mut v = Vec::new();
        for _ in 0..n {
            let mut c = Command::new("sleep");
            c.arg("120").stdin(Stdio::null());
            // SAFETY: unshare is async-signal-safe enough here (a single syscall, no allocation).
            unsafe {
                c.pre_exec(|| {
                    if libc::unshare(libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            v.push(c.spawn().expect("spawn pod process"));
        }
        Pods(v)
    }
    fn pid(&self, i: usize) -> i32 {
        self.0[i].id() as i32
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Removes a state dir on drop, so a failing test leaves no files behind (links and routes die with the netns).
struct RmDir(PathBuf);

impl Drop for RmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sh(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run command");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn ping_from(pid: i32, ip: Ipv4Addr) -> (bool, String) {
    let p = pid.to_string();
    let ip = ip.to_string();
    sh(&["nsenter", "-t", &p, "-n", "ping", "-c1", "-W1", &ip])
}

fn cfg(tag: &str) -> NetworkConfig {
    let dir = std::env::temp_dir().join(format!("timonier-net-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    NetworkConfig {
        bridge: format!("tbr-{tag}"),
        pod_cidr: "10.244.0.0/24".parse().unwrap(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        service_cidr: "10.96.0.0/12".parse().unwrap(),
        state_dir: dir,
        node_ip: Ipv4Addr::LOCALHOST,
        backend: Backend::default(),
        vxlan_vni: timonier_network::DEFAULT_VNI,
    }
}

fn tx_packets(dev: &str) -> u64 {
    let (ok, out) = sh(&["ip", "-j", "-s", "link", "show", dev]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    v[0]["stats64"]["tx"]["packets"].as_u64().expect("tx packets")
}

#[test]
fn is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<PodNetwork>();
}

#[test]
fn two_pods_connectivity_idempotence_blackholes_teardown() {
    in_netns(|| async {
        let cfg = cfg("e2e");
        let state_dir: PathBuf = cfg.state_dir.clone();
        let _cleanup = RmDir(state_dir.clone());
        let pods = Pods::spawn(2);
        let net = PodNetwork::new(cfg.clone()).await.expect("new");
        // new() is idempotent.
        let net2 = PodNetwork::new(cfg.clone()).await.expect("second new");
        drop(net2);
        let (ok, fwd) = sh(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
        assert!(ok && fwd.trim() == "1", "ip_forward: {fwd}");

        let a = net.attach("default/a", pods.pid(0)).await.expect("attach a");
        let b = net.attach("default/b", pods.pid(1)).await.expect("attach b");
        assert_ne!(a.ip, b.ip);
        assert_eq!(a.gateway, Ipv4Addr::new(10, 244, 0, 1));
        assert_eq!(a.prefix, 24);
        assert_eq!(a.host_veth, veth_name("default/a"));

        let (ok, out) = ping_from(pods.pid(0), b.ip);
        assert!(ok, "pod a -> pod b: {out}");
        let (ok, out) = ping_from(pods.pid(1), a.ip);
        assert!(ok, "pod b -> pod a: {out}");
        let (ok, out) = sh(&["ping", "-c1", "-W1", &a.ip.to_string()]);
        assert!(ok, "node -> pod a: {out}");
        let (ok, out) = ping_from(pods.pid(0), a.gateway);
        assert!(ok, "pod a -> gateway: {out}");

        // Pod side looks as promised.
        let p0 = pods.pid(0).to_string();
        let (_, addr) = sh(&["nsenter", "-t", &p0, "-n", "ip", "-br", "addr"]);
        assert!(addr.contains(&format!("{}/24", a.ip)) && addr.contains("eth0"), "{addr}");
        assert!(addr.lines().any(|l| l.starts_with("lo ") && l.contains("UNKNOWN")), "lo up: {addr}");
        let (_, rt) = sh(&["nsenter", "-t", &p0, "-n", "ip", "route"]);
        assert!(rt.contains("default via 10.244.0.1 dev eth0"), "{rt}");
        let (_, link) = sh(&["ip", "-d", "link", "show", &a.host_veth]);
        assert!(link.contains(&format!("master {}", cfg.bridge)) && link.contains("hairpin on"), "{link}");

        // Attach twice: same address, pod still reachable, veth not recreated (same ifindex).
        let (_, before) = sh(&["ip", "-j", "link", "show", &a.host_veth]);
        let again = net.attach("default/a", pods.pid(0)).await.expect("re-attach");
        assert_eq!(again, a);
        let (_, after) = sh(&["ip", "-j", "link", "show", &a.host_veth]);
        assert_eq!(before, after, "re-attach must not recreate the veth");
        // A restarted agent (new PodNetwork on the same state dir) gives the same answer.
        let restarted = PodNetwork::new(cfg.clone()).await.expect("restart");
        assert_eq!(restarted.attach("default/a", pods.pid(0)).await.expect("attach after restart"), a);
        assert_eq!(restarted.leases().len(), 2);
        drop(restarted);
        let (ok, out) = ping_from(pods.pid(1), a.ip);
        assert!(ok, "still reachable after re-attach: {out}");

        // Blackholes present, unassigned pod-range and service traffic dropped, never sent out.
        let bh = blackhole_routes().await.expect("routes");
        assert!(bh.contains(&cfg.cluster_cidr) && bh.contains(&cfg.service_cidr), "{bh:?}");
        let (_, shown) = sh(&["ip", "route", "show", "type", "blackhole"]);
        assert!(shown.contains("10.244.0.0/16") && shown.contains("10.96.0.0/12"), "{shown}");
        // An "uplink" with a default route: without the blackholes, packets would leave through it.
        sh(&["ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
        sh(&["ip", "addr", "add", "192.168.250.1/24", "dev", "up0"]);
        // No IPv6 chatter (router solicitations, MLD) on the uplink, so its counter only sees what we route.
        sh(&["sysctl", "-qw", "net.ipv6.conf.up0.disable_ipv6=1"]);
        sh(&["ip", "link", "set", "up0", "up"]);
        sh(&["ip", "link", "set", "up1", "up"]);
        let (ok, out) = sh(&["ip", "route", "add", "default", "via", "192.168.250.2"]);
        assert!(ok, "{out}");
        let tx0 = tx_packets("up0");
        let (ok, _) = ping_from(pods.pid(0), Ipv4Addr::new(10, 244, 7, 7));
        assert!(!ok, "ping to unassigned 10.244.7.7 must fail");
        let (ok, _) = ping_from(pods.pid(0), Ipv4Addr::new(10, 96, 0, 10));
        assert!(!ok, "ping to an un-DNATed service IP must fail");
        let (ok, _) = sh(&["ping", "-c1", "-W1", "10.244.9.9"]);
        assert!(!ok);
        let tx1 = tx_packets("up0");
        assert_eq!(tx0, tx1, "packets to blackholed ranges leaked to the uplink");
        // Control: traffic that is not blackholed does go out the uplink (ARP for the gateway at least).
        let (ok, _) = ping_from(pods.pid(0), Ipv4Addr::new(192, 168, 251, 2));
        assert!(!ok, "nobody at 192.168.251.2");
        assert!(tx_packets("up0") > tx1, "control ping should have used the uplink");
        let (_, via) = sh(&["ip", "route", "get", "10.244.7.7"]);
        assert!(!via.contains("up0"), "{via}");

        // Detach: veth gone, address free, idempotent.
        net.detach("default/b").await.expect("detach b");
        net.detach("default/b").await.expect("detach b again");
        let (exists, _) = sh(&["ip", "link", "show", &b.host_veth]);
        assert!(!exists, "veth of b still there");
        assert!(!state_dir.join(timonier_network::LEASES).join(b.ip.to_string()).exists());
        assert_eq!(net.leases(), vec![("default/a".to_string(), a.ip)]);
        let (ok, _) = ping_from(pods.pid(0), b.ip);
        assert!(!ok, "b must be unreachable after detach");

        // Teardown: nothing left.
        net.teardown().await.expect("teardown");
        let (_, links) = sh(&["ip", "-br", "link"]);
        assert!(!links.contains("tbr-e2e") && !links.contains("veth"), "{links}");
        let bh = blackhole_routes().await.expect("routes");
        assert!(bh.is_empty(), "{bh:?}");
        assert!(!state_dir.exists());
        drop(pods);
    });
}

#[test]
fn timings_50_sequential_200_concurrent() {
    in_netns(|| async {
        let mut cfg = cfg("perf");
        cfg.pod_cidr = "10.244.0.0/23".parse::<Ipv4Net>().unwrap();
        let _cleanup = RmDir(cfg.state_dir.clone());
        let pods = Pods::spawn(250);
        let net = PodNetwork::new(cfg).await.expect("new");
        let mut att = Vec::new();
        for i in 0..50 {
            let t = Instant::now();
            net.attach(&format!("seq/{i}"), pods.pid(i)).await.expect("attach");
            att.push(t.elapsed());
        }
        let mut det = Vec::new();
        for i in 0..50 {
            let t = Instant::now();
            net.detach(&format!("seq/{i}")).await.expect("detach");
            det.push(t.elapsed());
        }
        att.sort();
        det.sort();
        let t = Instant::now();
        let futs = (0..200).map(|i| {
            let net = net.clone();
            let pid = pods.pid(50 + i);
            async move { net.attach(&format!("par/{i}"), pid).await }
        });
        let res = futures::future::join_all(futs).await;
        let par = t.elapsed();
        let ips: std::collections::HashSet<_> = res.into_iter().map(|r| r.expect("concurrent attach").ip).collect();
        assert_eq!(ips.len(), 200);
        let (ok, out) = ping_from(pods.pid(50), *ips.iter().next().unwrap());
        assert!(ok, "{out}");
        let t = Instant::now();
        let futs = (0..200).map(|i| {
            let net = net.clone();
            async move { net.detach(&format!("par/{i}")).await }
        });
        for r in futures::future::join_all(futs).await {
            r.expect("concurrent detach");
        }
        let par_det = t.elapsed();
        eprintln!(
            "TIMINGS attach median {:?} (p90 {:?}), detach median {:?} (p90 {:?}), 200 concurrent attach {:?}, 200 concurrent detach {:?}",
            att[25], att[45], det[25], det[45], par, par_det
        );
        assert!(par < Duration::from_secs(3), "200 attaches took {par:?}");
        net.teardown().await.expect("teardown");
        drop(pods);
    });
}

/// `route_localnet` on the bridge (for node ports on 127.0.0.1) must not let a pod reach what
/// the node serves on loopback only (the API server, …) by sending packets to 127.0.0.1 through
/// its gateway — CVE-2020-8558, which kube-proxy closes with the same firewall rule.
#[test]
fn pods_cannot_reach_node_loopback() {
    in_netns(|| async {
        let cfg = cfg("lo");
        let _cleanup = RmDir(cfg.state_dir.clone());
        let pods = Pods::spawn(1);
        let net = PodNetwork::new(cfg.clone()).await.expect("new");
        let a = net.attach("default/a", pods.pid(0)).await.expect("attach");
        let port = timonier_network::ServicePort {
            cluster_ip: Ipv4Addr::new(10, 96, 0, 20),
            port: 80,
            protocol: "tcp".into(),
            node_port: Some(30080),
            endpoints: vec![(a.ip, 8080)],
        };
        net.sync_services(&[port]).await.expect("sync services");
        let (_, localnet) = sh(&["sysctl", "-n", &format!("net.ipv4.conf.{}.route_localnet", cfg.bridge)]);
        assert_eq!(localnet.trim(), "1");
        // The node's loopback-only service.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let lport = listener.local_addr().expect("addr").port().to_string();
        // What a pod with NET_ADMIN (or a raw socket) can do: send to 127.0.0.1 via the gateway.
        let p = pods.pid(0).to_string();
        let in_pod = |args: &[&str]| {
            let mut v = vec!["nsenter", "-t", &p, "-n"];
            v.extend_from_slice(args);
            sh(&v)
        };
        in_pod(&["ip", "addr", "flush", "dev", "lo"]);
        let (ok, out) = in_pod(&["sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"]);
        assert!(ok, "{out}");
        let (ok, out) = in_pod(&["ip", "route", "add", "127.0.0.1/32", "via", &a.gateway.to_string(), "dev", "eth0"]);
        assert!(ok, "{out}");
        let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{lport}");
        let (ok, out) = in_pod(&["timeout", "3", "bash", "-c", &connect]);
        assert!(!ok, "a pod reached the node's 127.0.0.1:{lport}: {out}");
        // The node itself still reaches its node port on 127.0.0.1, DNATed to the pod.
        let ns = std::fs::File::open(format!("/proc/{p}/ns/net")).expect("pod netns");
        let ip = a.ip;
        let pod_listener = std::thread::spawn(move || {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            std::net::TcpListener::bind((ip, 8080)).expect("bind in pod")
        })
        .join()
        .expect("pod listener thread");
        let via_node_port = std::net::TcpStream::connect_timeout(&"127.0.0.1:30080".parse().expect("addr"), Duration::from_secs(3));
        assert!(via_node_port.is_ok(), "node port on 127.0.0.1: {via_node_port:?}");
        drop((listener, pod_listener));
        net.teardown().await.expect("teardown");
        drop(pods);
    });
}

/// Two nodes, each a thread in its own network namespace, joined by a veth pair (their "LAN":
/// 10.250.0.1 and .2), each with a pod; `sync_peers` routes each node's pod range to the
/// other through `backend`. Pods ping across, and the routes go when the peer does.
fn cross_node(backend: Backend, tag: &'static str) {
    use std::sync::{mpsc, Arc, Barrier};
    let barrier = Arc::new(Barrier::new(2));
    let (tid_tx, tid_rx) = mpsc::channel::<i32>();
    let node = move |i: u8, barrier: Arc<Barrier>, tid_tx: Option<mpsc::Sender<i32>>, peer_tid: Option<mpsc::Receiver<i32>>| {
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): run tests as root");
            sh(&["ip", "link", "set", "lo", "up"]);
            if let Some(tx) = tid_tx {
                tx.send(nix::unistd::gettid().as_raw()).expect("send tid");
            }
            if let Some(rx) = peer_tid {
                // Node 1 makes the LAN: a veth pair whose other end goes to node 2's namespace.
                let other = rx.recv().expect("peer tid").to_string();
                let (ok, out) = sh(&["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", &other]);
                assert!(ok, "{out}");
            }
            barrier.wait();
            let me = Ipv4Addr::new(10, 250, 0, i);
            sh(&["ip", "addr", "add", &format!("{me}/24"), "dev", "lan0"]);
            sh(&["ip", "link", "set", "lan0", "up"]);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let mut cfg = cfg(&format!("{tag}{i}"));
                let _cleanup = RmDir(cfg.state_dir.clone());
                cfg.pod_cidr = format!("10.244.{i}.0/24").parse().expect("cidr");
                cfg.node_ip = me;
                cfg.backend = backend;
                let pods = Pods::spawn(1);
                let net = PodNetwork::new(cfg.clone()).await.expect("new");
                let pod = net.attach("default/p", pods.pid(0)).await.expect("attach");
                // Both IPAMs start alike: the other pod has the same last octet.
                let last = pod.ip.octets()[3];
                let j = 3 - i;
                let peer = Peer {
                    name: format!("node{j}"),
                    node_ip: Ipv4Addr::new(10, 250, 0, j),
                    pod_cidr: format!("10.244.{j}.0/24").parse().expect("cidr"),
                    vtep_mac: Some(timonier_network::vtep_mac(Ipv4Addr::new(10, 250, 0, j))),
                };
                net.sync_peers(std::slice::from_ref(&peer)).await.expect("sync peers");
                net.sync_peers(std::slice::from_ref(&peer)).await.expect("sync peers again");
                barrier.wait();
                let remote = Ipv4Addr::new(10, 244, j, last);
                let (ok, out) = ping_from(pods.pid(0), remote);
                assert!(ok, "{backend}: pod on node{i} -> pod on node{j}: {out}");
                let (_, route) = sh(&["ip", "route", "get", &remote.to_string()]);
                match backend {
                    Backend::HostGw => assert!(route.contains(&format!("via 10.250.0.{j} dev lan0")), "{route}"),
                    Backend::Vxlan => assert!(route.contains(&format!("via 10.244.{j}.0 dev vx-tbr-{tag}{i}")), "{route}"),
                }
                let (_, ours) = sh(&["ip", "route", "show", "proto", "77"]);
                assert_eq!(ours.lines().count(), 1, "{ours}");
                barrier.wait();
                // The peer is gone: its route goes, its range is blackholed again.
                net.sync_peers(&[]).await.expect("sync no peers");
                let (_, ours) = sh(&["ip", "route", "show", "proto", "77"]);
                assert!(ours.trim().is_empty(), "{ours}");
                let (_, route) = sh(&["ip", "route", "get", &remote.to_string()]);
                assert!(route.contains("blackhole") || route.is_empty() || !route.contains("via"), "{route}");
                net.teardown().await.expect("teardown");
                let (_, links) = sh(&["ip", "-br", "link"]);
                assert!(!links.contains("vx-"), "{links}");
                drop(pods);
            });
        })
    };
    let a = node(1, barrier.clone(), None, Some(tid_rx));
    let b = node(2, barrier, Some(tid_tx), None);
    for t in [a, b] {
        if let Err(p) = t.join() {
            std::panic::resume_unwind(p);
        }
    }
}

#[test]
fn cross_node_pods_host_gw() {
    cross_node(Backend::HostGw, "hg");
}

#[test]
fn cross_node_pods_vxlan() {
    cross_node(Backend::Vxlan, "vx");
}

/// The LAN of `timonier start --nodes`: two hosts (named namespaces) and this namespace reach
/// each other; everything is idempotent and goes away with `remove`.
#[test]
fn lan_of_hosts() {
    in_netns(|| async {
        let lan = timonier_network::lan::Lan { name: format!("tl{}", std::process::id() % 100_000), subnet: "10.251.0.0/24".parse().unwrap() };
        let ns = |h: &str| format!("{}-{h}", lan.name);
        lan.ensure().await.expect("lan");
        lan.ensure().await.expect("lan again");
        lan.ensure_host("h1", 1).await.expect("host 1");
        lan.ensure_host("h1", 1).await.expect("host 1 again");
        lan.ensure_host("h2", 2).await.expect("host 2");
        let (ok, out) = sh(&["ip", "netns", "exec", &ns("h1"), "ping", "-c1", "-W1", "10.251.0.12"]);
        assert!(ok, "host 1 -> host 2: {out}");
        let (ok, out) = sh(&["ip", "netns", "exec", &ns("h2"), "ping", "-c1", "-W1", "10.251.0.1"]);
        assert!(ok, "host 2 -> this machine: {out}");
        let (ok, out) = sh(&["ping", "-c1", "-W1", "10.251.0.11"]);
        assert!(ok, "this machine -> host 1: {out}");
        let (_, routes) = sh(&["ip", "netns", "exec", &ns("h1"), "ip", "route"]);
        assert!(!routes.contains("default"), "hosts have no way off the machine: {routes}");
        lan.remove_host("h1").expect("remove host 1");
        lan.remove_host("h2").expect("remove host 2");
        lan.remove_host("h2").expect("remove host 2 again");
        lan.remove().await.expect("remove lan");
        for h in ["h1", "h2", "lan"] {
            assert!(!std::path::Path::new("/run/netns").join(ns(h)).exists(), "{h} left");
        }
        let (_, links) = sh(&["ip", "-br", "link"]);
        assert!(!links.contains("-lan"), "{links}");
    });
}
