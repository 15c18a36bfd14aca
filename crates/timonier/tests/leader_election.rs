//! Several servers on one etcd: exactly one runs the scheduler and the controllers (leader
//! election over the `kube-scheduler` and `kube-controller-manager` Leases, as upstream),
//! another takes over when it dies, and a clean stop hands the Leases over at once. The
//! `kubernetes` Service's endpoints list every live server.

use std::time::{Duration, Instant};

use timonier_testkit::{Etcd, Kubectl, Server};

/// Short leases, so that a take-over fits a test (upstream's are 15 s, 10 s, 2 s).
const TIMING: [&str; 6] = ["--leader-elect-lease-duration", "3s", "--leader-elect-renew-deadline", "2s", "--leader-elect-retry-period", "500ms"];

fn holder(k: &Kubectl, lease: &str) -> String {
    k.run(&["get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.holderIdentity}"]).stdout.trim().to_string()
}

/// The server's UUID, which ends its identity in the Leases (`<hostname>_<uuid>`).
fn id(s: &Server) -> String {
    std::fs::read_to_string(s.dir.path().join("data/server-id")).expect("server-id").trim().to_string()
}

/// Waits until both Leases are held by one of `servers`; returns its index.
fn wait_leader(k: &Kubectl, servers: &[&Server], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let (kcm, sched) = (holder(k, "kube-controller-manager"), holder(k, "kube-scheduler"));
        for (i, s) in servers.iter().enumerate() {
            if kcm.ends_with(&id(s)) && sched.ends_with(&id(s)) {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no single leader within {within:?}: kube-controller-manager {kcm:?}, kube-scheduler {sched:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `kubernetes` Service's endpoints, `IP:port` each, from the Endpoints object.
fn api_endpoints(k: &Kubectl) -> Vec<String> {
    let ep: serde_json::Value = serde_json::from_str(k.run(&["get", "endpoints", "kubernetes", "-o", "json"]).ok()).expect("endpoints");
    let mut out: Vec<String> = ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| {
            let port = s["ports"][0]["port"].as_u64().unwrap_or(0);
            s["addresses"].as_array().into_iter().flatten().map(move |a| format!("{}:{port}", a["ip"].as_str().unwrap_or("")))
        })
        .collect();
    out.sort();
    out
}

fn wait_api_endpoints(k: &Kubectl, servers: &[&Server], within: Duration) {
    let mut want: Vec<String> = servers.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
    want.sort();
    let deadline = Instant::now() + within;
    while api_endpoints(k) != want {
        assert!(Instant::now() < deadline, "kubernetes endpoints {:?}, not {want:?}", api_endpoints(k));
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn count(k: &Kubectl, what: &str) -> usize {
    k.run(&["get", what, "-o", "name"]).stdout.lines().filter(|l| !l.is_empty()).count()
}

fn wait_count(k: &Kubectl, what: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(k, what) != n {
        assert!(Instant::now() < deadline, "{what}: {} instead of {n}", count(k, what));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn one_leader_among_servers_sharing_etcd() {
    let etcd = Etcd::start().expect("etcd (install Debian's etcd-server)");
    let datastore = format!("etcd://{}", etcd.endpoint);
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_timonier"));
    let args: Vec<&str> = ["--datastore", datastore.as_str()].into_iter().chain(TIMING).collect();
    let mut a = Server::start_control_plane(bin, &args);
    let ka = a.kubectl("1.33");
    assert_eq!(wait_leader(&ka, &[&a], Duration::from_secs(10)), 0);
    let mut b = Server::start_control_plane(bin, &args);
    let mut c = Server::start_control_plane(bin, &args);
    let (kb, kc) = (b.kubectl("1.33"), c.kubectl("1.27"));

    // Every server is an endpoint of the kubernetes Service, with a Lease of its own.
    wait_api_endpoints(&kc, &[&a, &b, &c], Duration::from_secs(1));
    let own = kc.run(&["get", "lease", "-n", "kube-system", "-l", "apiserver.kubernetes.io/identity=kube-apiserver", "-o", "name"]).ok().lines().count();
    assert_eq!(own, 3);

    // Several retry periods later the first is still the only leader.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(wait_leader(&kb, &[&a, &b, &c], Duration::ZERO), 0);
    for s in [&b, &c] {
        assert!(!s.log().contains("successfully acquired lease"), "a second leader:\n{}", s.log());
    }

    // The controllers run once: a Deployment made through another server gets exactly its pods.
    kb.run(&["create", "deployment", "web", "--image=busybox:1.35", "--replicas=6", "--", "sleep", "3600"]).ok();
    wait_count(&kc, "pods", 6);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!((count(&kc, "replicasets"), count(&kc, "pods")), (1, 6));

    // The leader dies: another takes both Leases once they expire (3 s), and acts.
    let killed = Instant::now();
    a.kill();
    let next = wait_leader(&kb, &[&b, &c], Duration::from_secs(15));
    let took_over = killed.elapsed();
    eprintln!("take-over after SIGKILL: {took_over:?}");
    assert!(took_over >= Duration::from_millis(2500), "taken over before the lease expired: {took_over:?}");
    kb.run(&["scale", "deployment", "web", "--replicas=9"]).ok();
    wait_count(&kc, "pods", 9);
    // Its garbage collector too: the Deployment's ReplicaSet and pods go with it.
    kc.run(&["delete", "deployment", "web"]).ok();
    wait_count(&kb, "replicasets", 0);
    wait_count(&kb, "pods", 0);

    // A clean stop releases the Leases: the last server leads well before they would expire.
    let (leader, other) = if next == 0 { (&mut b, &c) } else { (&mut c, &b) };
    let k = other.kubectl("1.33");
    let stopped = Instant::now();
    leader.stop();
    wait_leader(&k, &[other], Duration::from_secs(15));
    let handed = stopped.elapsed();
    eprintln!("hand-over after SIGTERM: {handed:?}");
    assert!(handed < Duration::from_millis(2500), "the Leases were not released: {handed:?}");
    k.run(&["create", "deployment", "after", "--image=busybox:1.35", "--replicas=2", "--", "sleep", "3600"]).ok();
    wait_count(&k, "pods", 2);
    // The stopped server left the kubernetes Service at once; the killed one when its Lease
    // expired (15 s after its last renewal, as upstream's master leases).
    wait_api_endpoints(&k, &[other], Duration::from_secs(25));
}

/// When `line` (the first in `log` containing `what`, ANSI colours stripped) was written.
fn logged_at(log: &str, what: &str) -> Option<jiff::Timestamp> {
    let line = log.lines().find(|l| l.contains(what))?;
    let mut plain = String::new();
    let mut escape = false;
    for ch in line.chars() {
        match (escape, ch) {
            (false, '\u{1b}') => escape = true,
            (true, 'm') => escape = false,
            (false, c) => plain.push(c),
            _ => {}
        }
    }
    plain.split_whitespace().next()?.parse().ok()
}

#[test]
fn a_server_cut_off_from_etcd_stops_leading() {
    let etcd = Etcd::start().expect("etcd (install Debian's etcd-server)");
    let link = timonier_testkit::partition::Partitionable::start(etcd.endpoint.parse().expect("etcd address")).expect("forwarder");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_timonier"));
    let through_link = format!("etcd://{}", link.addr);
    let direct = format!("etcd://{}", etcd.endpoint);
    let a_args: Vec<&str> = ["--datastore", through_link.as_str()].into_iter().chain(TIMING).collect();
    let b_args: Vec<&str> = ["--datastore", direct.as_str()].into_iter().chain(TIMING).collect();
    let a = Server::start_control_plane(bin, &a_args);
    let kb_first = a.kubectl("1.33");
    assert_eq!(wait_leader(&kb_first, &[&a], Duration::from_secs(10)), 0);
    let b = Server::start_control_plane(bin, &b_args);
    let kb = b.kubectl("1.33");

    // A loses etcd: it stops leading, then B leads — never both at once.
    link.cut();
    wait_leader(&kb, &[&b], Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    let stopped = loop {
        if let Some(t) = logged_at(&a.log(), "leader election lost") {
            break t;
        }
        assert!(Instant::now() < deadline, "A never stopped leading:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let b_log = b.log();
    let started = logged_at(&b_log, "successfully acquired lease").expect("B's take-over in its log");
    assert!(stopped < started, "A stopped leading at {stopped}, after B started at {started}");
    // B acts.
    kb.run(&["create", "deployment", "cut", "--image=busybox:1.35", "--replicas=2", "--", "sleep", "3600"]).ok();
    wait_count(&kb, "pods", 2);

    // Healed, A follows: B keeps both Leases.
    link.heal();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(wait_leader(&kb, &[&a, &b], Duration::ZERO), 1);
}
