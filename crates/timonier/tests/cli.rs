//! `timonier start | status | stop | delete`: the local cluster's lifecycle as a user drives
//! it, with kubectl configured through ~/.kube/config.

use std::process::Command;

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

    let out = timonier(home.path(), &["start", "--data-dir", d, "--secure-port", &port]);
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
    assert!(String::from_utf8_lossy(&status.stdout).contains("Running"));
    // Starting again is harmless.
    assert!(timonier(home.path(), &["start", "--data-dir", d, "--secure-port", &port]).status.success());

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
    assert!(!status.status.success() && String::from_utf8_lossy(&status.stdout).contains("Stopped"));
    // State survives a stop/start.
    assert!(timonier(home.path(), &["start", "--data-dir", d, "--secure-port", &port]).status.success());
    assert!(timonier(home.path(), &["delete", "--data-dir", d]).status.success());
    assert!(!dir.exists());
    let cfg = std::fs::read_to_string(home.path().join(".kube/config")).unwrap();
    assert!(!cfg.contains("timonier") && cfg.contains("name: other"), "{cfg}");
}
