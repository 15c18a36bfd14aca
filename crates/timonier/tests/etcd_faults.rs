//! A server on a three-member etcd cluster while members die: one lost changes nothing; with
//! two lost (no quorum) writes fail with a 5xx Status in bounded time while reads from the
//! watch cache go on; a member back, writes work again.

use std::time::{Duration, Instant};

use timonier_testkit::{EtcdCluster, Kubectl, Server};

/// `kubectl create configmap NAME`, retried for up to `within`: whether it succeeded, and the
/// last error.
fn create_cm(k: &Kubectl, name: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let out = k.run(&["create", "configmap", name]);
        if out.code == 0 || out.stderr.contains("AlreadyExists") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(out.stderr);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_api_through_etcd_member_failures() {
    let mut etcd = EtcdCluster::start(3).expect("etcd cluster (install Debian's etcd-server)");
    let datastore = format!("etcd://{}", etcd.endpoints());
    let server = Server::start(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &["--datastore", &datastore]);
    let k = server.kubectl("1.33");
    create_cm(&k, "before", Duration::ZERO).expect("a write with every member up");

    // One member lost: quorum holds, writes go on.
    etcd.kill(0);
    let t = Instant::now();
    create_cm(&k, "one-lost", Duration::from_secs(15)).expect("a write with one member lost");
    eprintln!("first write with one member lost: {:?}", t.elapsed());
    for i in 0..5 {
        create_cm(&k, &format!("one-lost-{i}"), Duration::ZERO).expect("writes with one member lost");
    }

    // Two lost: no quorum. A write fails with a 5xx Status, within the request timeout.
    etcd.kill(1);
    let t = Instant::now();
    let out = k.run(&["create", "configmap", "no-quorum", "--request-timeout=70s"]);
    let took = t.elapsed();
    eprintln!("write without quorum: {took:?}: {}", out.stderr.trim());
    assert_ne!(out.code, 0, "a write without quorum succeeded");
    assert!(took < Duration::from_secs(65), "the write hung for {took:?}");
    // As upstream: a Status of code 500 with etcd's message, no reason.
    assert!(out.stderr.contains("etcdserver: request timed out") || out.stderr.contains("etcd client:"), "{}", out.stderr);
    // Reads from the watch cache go on.
    let cached = k.run(&["get", "--raw", "/api/v1/namespaces/default/configmaps?resourceVersion=0"]).ok().to_string();
    assert!(cached.contains("\"one-lost-4\""), "{cached}");

    // A member back: quorum again, writes work.
    etcd.restart(1).expect("member 1 back");
    let t = Instant::now();
    create_cm(&k, "quorum-back", Duration::from_secs(60)).expect("a write once quorum is back");
    eprintln!("first write with quorum back: {:?}", t.elapsed());
    let names = k.run(&["get", "configmaps", "-o", "name"]).ok().to_string();
    for n in ["before", "one-lost", "one-lost-4", "quorum-back"] {
        assert!(names.contains(&format!("configmap/{n}\n")), "{n} missing: {names}");
    }
}
