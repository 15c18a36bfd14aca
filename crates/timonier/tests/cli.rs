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
