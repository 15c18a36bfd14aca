//! Several servers share one etcd cluster (`--datastore etcd://…`): what one writes, the
//! others serve and watch, and Service IPs are never handed out twice.

use std::time::{Duration, Instant};

use timonier_testkit::{Etcd, Server};

#[test]
fn two_servers_share_one_etcd() {
    let etcd = Etcd::start().expect("etcd (install Debian's etcd-server)");
    let datastore = format!("etcd://{}", etcd.endpoint);
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_timonier"));
    let a = Server::start(bin, &["--datastore", &datastore]);
    let b = Server::start(bin, &["--datastore", &datastore]);
    let (ka, kb) = (a.kubectl("1.33"), b.kubectl("1.27"));

    // System objects made by the first server are not duplicated by the second.
    let svcs = kb.run(&["get", "svc", "-n", "default", "-o", "name"]);
    assert_eq!(svcs.ok().trim(), "service/kubernetes");

    // A watch on B sees what A writes.
    let mut watch = kb.command(&["get", "cm", "-w", "--output-watch-events"]);
    watch.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let mut child = timonier_testkit::ChildGuard(watch.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.contains("from-a"))
    });
    std::thread::sleep(Duration::from_millis(800));
    ka.run(&["create", "configmap", "from-a", "--from-literal=k=v"]).ok();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(child);
    let line = reader.join().unwrap();
    assert!(line.is_some_and(|l| l.starts_with("ADDED")), "B's watch did not see A's write");
    assert_eq!(kb.run(&["get", "cm", "from-a", "-o", "jsonpath={.data.k}"]).ok(), "v");

    // Writes through both, conflicts detected across servers, IPs unique.
    kb.run(&["label", "cm", "from-a", "via=b"]).ok();
    assert_eq!(ka.run(&["get", "cm", "from-a", "-o", "jsonpath={.metadata.labels.via}"]).ok(), "b");
    let mut ips = Vec::new();
    for (i, k) in [&ka, &kb, &ka, &kb, &ka, &kb].iter().enumerate() {
        k.run(&["create", "service", "clusterip", &format!("s{i}"), "--tcp=80:80"]).ok();
        ips.push(k.run(&["get", "svc", &format!("s{i}"), "-o", "jsonpath={.spec.clusterIP}"]).ok().to_string());
    }
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ips.len(), "{ips:?}");
    // A namespace deleted through A empties on B too.
    kb.run(&["create", "namespace", "shared"]).ok();
    ka.run(&["create", "configmap", "inside", "-n", "shared"]).ok();
    ka.run(&["delete", "namespace", "shared", "--timeout=30s"]).ok();
    assert!(kb.run(&["get", "namespace", "shared"]).err().contains("not found"));
}

/// `timonier server` with `args`, expected to refuse to start; its output.
fn refused(bin: &std::path::Path, args: &[&str]) -> String {
    let dir = timonier_testkit::temp_dir("timonier-e2e-refused-");
    let port = timonier_testkit::free_port().to_string();
    let out = std::process::Command::new(bin)
        .args(["server", "--disable-agent", "--disable-scheduler", "--disable-controllers", "--secure-port", &port])
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run timonier server");
    assert!(!out.status.success(), "a server with {args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn servers_with_one_token_share_the_cluster_ca_and_keys() {
    let etcd = Etcd::start().expect("etcd (install Debian's etcd-server)");
    let datastore = format!("etcd://{}", etcd.endpoint);
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_timonier"));
    let a = Server::start(bin, &["--datastore", &datastore, "--token", "s3cret-0f-the-cluster"]);
    let token = std::fs::read_to_string(a.dir.path().join("data/server-token")).expect("server-token");
    assert!(token.starts_with("K10") && token.ends_with("::server:s3cret-0f-the-cluster"), "{token}");
    let b = Server::start(bin, &["--datastore", &datastore, "--token", &token]);
    let pki = |s: &Server, f: &str| std::fs::read(s.dir.path().join("data/pki").join(f)).expect(f);
    for f in ["ca.crt", "ca.key", "front-proxy-ca.crt", "sa.key", "sa.pub"] {
        assert_eq!(pki(&a, f), pki(&b, f), "{f} differs");
    }
    // A's admin certificate and a service-account token A issued work on B, whose serving
    // certificate the same CA signed.
    let ka = a.kubectl("1.33");
    assert_eq!(ka.run(&["--server", &b.url(""), "get", "svc", "kubernetes", "-o", "name"]).ok().trim(), "service/kubernetes");
    let sa_token = ka.run(&["create", "token", "default"]).ok().trim().to_string();
    let curl = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(a.dir.path().join("data/pki/ca.crt"))
        .args(["-H", &format!("Authorization: Bearer {sa_token}"), &b.url("/apis")])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "200");

    // Another token cannot join this datastore's cluster, nor a token whose CA hash is not the
    // cluster CA's.
    assert!(refused(bin, &["--datastore", &datastore, "--token", "not-the-token"]).contains("server token is not this one"));
    let wrong_hash = format!("K10{}::server:s3cret-0f-the-cluster", "0".repeat(64));
    assert!(refused(bin, &["--datastore", &datastore, "--token", &wrong_hash]).contains("does not match the hash in the token"));

    // A server that knows only a server's URL and the token learns the datastore from it.
    let c = Server::start(bin, &["--server", &a.url(""), "--token", &token]);
    assert_eq!(pki(&a, "ca.crt"), pki(&c, "ca.crt"));
    assert_eq!(ka.run(&["--server", &c.url(""), "get", "svc", "kubernetes", "-o", "name"]).ok().trim(), "service/kubernetes");
    let hash = token.split("::").next().expect("K10 hash");
    let wrong_secret = format!("{hash}::server:guess");
    assert!(refused(bin, &["--server", &a.url(""), "--token", &wrong_secret]).contains("refused this server token"));
    let agents = format!("{hash}::abcdef.0123456789abcdef");
    assert!(refused(bin, &["--server", &a.url(""), "--token", &agents]).contains("an agent's join token"));
    assert!(refused(bin, &["--server", &a.url(""), "--token", &wrong_hash]).contains("does not match the hash the join token pins"));
    // A server on its own SQLite file has no datastore to share.
    let alone = Server::start(bin, &["--token", "solo"]);
    let solo = std::fs::read_to_string(alone.dir.path().join("data/server-token")).expect("server-token");
    assert!(refused(bin, &["--server", &alone.url(""), "--token", &solo]).contains("SQLite"));
}
