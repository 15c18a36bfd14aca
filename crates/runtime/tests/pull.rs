//! Pulls against a real registry (Debian's docker-registry on loopback), with test images
//! built by the test kit: by the registry's own name, through mirrors that stand in for
//! gcr.io and docker.io, with basic auth, concurrently; and the errors a pod event shows.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use timonier_runtime::images::{
    collect_garbage, credentials_from_dockerconfigjson, pull, ImageStore, PullError,
    RegistriesConfig,
};
use timonier_testkit::images::{
    bootcamp_binary, bootcamp_image, busybox_image, push, push_with_auth, server_js,
    to_docker_schema2, to_multi_arch,
};
use timonier_testkit::{free_port, temp_dir, wait_for_port, ChildGuard, Registry};

fn registry() -> Registry {
    Registry::start().expect("docker-registry")
}

fn layout(f: impl FnOnce(&Path) -> Result<String, String>) -> tempfile::TempDir {
    let d = temp_dir("timonier-layout-");
    f(d.path()).expect("build the test image");
    d
}

fn mirrors(addr: &str) -> RegistriesConfig {
    RegistriesConfig::parse(&format!(
        r#"
mirrors:
  docker.io: {{ endpoint: ["http://{addr}"] }}
  gcr.io:
    endpoint: ["http://{addr}"]
    rewrite: {{"^google-samples/(.*)": "samples/$1"}}
"#
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_busybox_by_the_registry_name() {
    let reg = registry();
    let l = layout(busybox_image);
    push(reg.addr(), l.path(), "busybox:latest").await.unwrap();
    let store_dir = temp_dir("timonier-store-");
    let store = ImageStore::open(store_dir.path()).unwrap();
    let name = format!("{}/busybox", reg.addr());
    let image = pull(&store, &name, &RegistriesConfig::default(), None)
        .await
        .unwrap();
    assert_eq!(image.references, vec![format!("{name}:latest")]);
    assert_eq!(image.config.cmd, Some(vec!["sh".to_string()]));
    assert_eq!(image.layers.len(), 1);
    let dirs = store.lower_dirs(&image).unwrap();
    assert!(dirs[0].join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(dirs[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        store.get(&name).unwrap().manifest_digest,
        image.manifest_digest
    );
    // The store's importer accepts the layout the test kit writes, as the same image.
    let other_dir = temp_dir("timonier-store-");
    let other = ImageStore::open(other_dir.path()).unwrap();
    let imported = other.import(l.path()).unwrap();
    assert_eq!(imported[0].manifest_digest, image.manifest_digest);
    // Pulling again is a no-op that still succeeds.
    let again = pull(&store, &name, &RegistriesConfig::default(), None)
        .await
        .unwrap();
    assert_eq!(again.manifest_digest, image.manifest_digest);
    assert!(store.last_used(&name).unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_bootcamp_through_mirrors_under_the_original_names() {
    let reg = registry();
    let v1 = layout(|d| bootcamp_image(d, 1));
    let v2 = layout(|d| bootcamp_image(d, 2));
    // gcr.io's mirror rewrites google-samples/ to samples/.
    push(reg.addr(), v1.path(), "samples/kubernetes-bootcamp:v1")
        .await
        .unwrap();
    push(reg.addr(), v2.path(), "jocatalin/kubernetes-bootcamp:v2")
        .await
        .unwrap();
    let store_dir = temp_dir("timonier-store-");
    let store = ImageStore::open(store_dir.path()).unwrap();
    let cfg = mirrors(reg.addr());
    let a = pull(
        &store,
        "gcr.io/google-samples/kubernetes-bootcamp:v1",
        &cfg,
        None,
    )
    .await
    .unwrap();
    let b = pull(&store, "jocatalin/kubernetes-bootcamp:v2", &cfg, None)
        .await
        .unwrap();
    assert_eq!(
        a.references,
        vec!["gcr.io/google-samples/kubernetes-bootcamp:v1"]
    );
    assert_eq!(
        b.references,
        vec!["docker.io/jocatalin/kubernetes-bootcamp:v2"]
    );
    assert_eq!(a.config.working_dir, "/");
    assert_eq!(a.config.exposed_ports, vec!["8080/tcp"]);
    assert!(a.config.env.contains(&"NODE_VERSION=6.3.1".to_string()));
    assert_eq!(
        a.config.cmd,
        Some(vec!["/bin/sh".into(), "-c".into(), "node server.js".into()])
    );
    // busybox and app layers are shared: 3 + 3 layers, 4 distinct directories and blobs.
    assert_eq!(a.layers[..2], b.layers[..2]);
    assert_ne!(a.layers[2], b.layers[2]);
    let count = |d: &str| std::fs::read_dir(store_dir.path().join(d)).unwrap().count();
    assert_eq!(count("layers"), 4);
    // 4 layer blobs, 2 configs, 2 manifests.
    assert_eq!(count("blobs/sha256"), 8);
    let top = store.lower_dirs(&a).unwrap();
    let js = std::fs::read_to_string(top[0].join("server.js")).unwrap();
    assert!(js.contains("| v=1\\n"));
    let app = &top[1];
    assert!(app.join("usr/local/bin/node").is_file());
    assert!(app.join("bin/bash").is_file());
    assert!(store
        .get("docker.io/jocatalin/kubernetes-bootcamp:v2")
        .is_ok());
    // A tag the mirror lacks: the mirror's "not found" is the answer, whatever the real
    // registry (tried next; unreachable from a test host) says.
    let t = Instant::now();
    let err = pull(
        &store,
        "gcr.io/google-samples/kubernetes-bootcamp:v9",
        &cfg,
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PullError::NotFound { .. }), "{err:?}");
    eprintln!("not found through a mirror in {:?}: {err}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_schema2_and_multi_arch_indexes() {
    let reg = registry();
    let store_dir = temp_dir("timonier-store-");
    let store = ImageStore::open(store_dir.path()).unwrap();
    let cfg = RegistriesConfig::default();
    // A Docker schema 2 manifest; then a Docker manifest list; then an OCI index.
    let docker = layout(busybox_image);
    let docker_digest = to_docker_schema2(docker.path()).unwrap();
    push(reg.addr(), docker.path(), "test/docker:v2")
        .await
        .unwrap();
    let list = layout(busybox_image);
    to_docker_schema2(list.path()).unwrap();
    to_multi_arch(list.path(), true).unwrap();
    push(reg.addr(), list.path(), "test/docker-list:v1")
        .await
        .unwrap();
    let oci = layout(busybox_image);
    let oci_amd64 = oci_manifest_digest(oci.path());
    to_multi_arch(oci.path(), false).unwrap();
    push(reg.addr(), oci.path(), "test/oci-index:v1")
        .await
        .unwrap();
    let a = pull(
        &store,
        &format!("{}/test/docker:v2", reg.addr()),
        &cfg,
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.manifest_digest, docker_digest);
    assert_eq!(a.config.cmd, Some(vec!["sh".to_string()]));
    let b = pull(
        &store,
        &format!("{}/test/docker-list:v1", reg.addr()),
        &cfg,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        b.manifest_digest, docker_digest,
        "the amd64 entry of the list"
    );
    assert_eq!(b.architecture, "amd64");
    let c = pull(
        &store,
        &format!("{}/test/oci-index:v1", reg.addr()),
        &cfg,
        None,
    )
    .await
    .unwrap();
    assert_eq!(c.manifest_digest, oci_amd64);
    assert_eq!(c.architecture, "amd64");
    // By digest too.
    let by_digest = format!("{}/test/oci-index@{oci_amd64}", reg.addr());
    let d = pull(&store, &by_digest, &cfg, None).await.unwrap();
    assert_eq!(d.manifest_digest, oci_amd64);
    // One layer for all of them.
    assert_eq!(
        std::fs::read_dir(store_dir.path().join("layers"))
            .unwrap()
            .count(),
        1
    );
}

fn oci_manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_tags_and_repositories_are_not_found() {
    let reg = registry();
    let l = layout(busybox_image);
    push(reg.addr(), l.path(), "busybox:latest").await.unwrap();
    let store_dir = temp_dir("timonier-store-");
    let store = ImageStore::open(store_dir.path()).unwrap();
    let cfg = RegistriesConfig::default();
    for name in [
        format!("{}/busybox:nope", reg.addr()),
        format!("{}/nothing/here:v1", reg.addr()),
    ] {
        let err = pull(&store, &name, &cfg, None).await.unwrap_err();
        assert!(matches!(err, PullError::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.ends_with(": not found"), "{msg}");
        assert_eq!(err.kubelet_reason(), "ErrImagePull");
    }
    let err = pull(&store, "Bad//Name", &cfg, None).await.unwrap_err();
    assert!(matches!(err, PullError::Invalid { .. }), "{err:?}");
    assert_eq!(err.kubelet_reason(), "InvalidImageName");
    assert!(store.list().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_registry_is_unreachable_quickly() {
    let port = free_port();
    let store_dir = temp_dir("timonier-store-");
    let store = ImageStore::open(store_dir.path()).unwrap();
    let t = Instant::now();
    let err = pull(
        &store,
        &format!("127.0.0.1:{port}/x/y:1"),
        &RegistriesConfig::default(),
        None,
    )
    .await
    .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    match &err {
        PullError::Unreachable { endpoints, .. } => {
            assert_eq!(endpoints.len(), 1);
            assert!(
                endpoints[0].starts_with(&format!("http://127.0.0.1:{port}")),
                "{endpoints:?}"
            );
        }
        e => panic!("{e:?}"),
    }
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_needs_the_pull_secret() {
    let reg = Registry::start_with_auth("alice", "s3cret").expect("docker-registry with htpasswd");
    let l = layout(busybox_image);
    assert!(push(reg.addr(), l.path(), "busybox:latest").await.is_err());
    push_with_auth(
        reg.addr(),
        l.path(),
        "busybox:latest",
        Some(("alice", "s3cret")),
    )
    .await
    .unwrap();
    let store_dir = temp_dir("timonier-store-");
    let store = ImageStore::open(store_dir.path()).unwrap();
    let cfg = RegistriesConfig::default();
    let name = format!("{}/busybox", reg.addr());
    let err = pull(&store, &name, &cfg, None).await.unwrap_err();
    assert!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let wrong = format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
        reg.addr(),
        b64("alice:nope")
    );
    let creds = credentials_from_dockerconfigjson(wrong.as_bytes(), reg.addr()).unwrap();
    let err = pull(&store, &name, &cfg, Some(&creds)).await.unwrap_err();
    assert!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");
    let right = format!(
        r#"{{"auths":{{"http://{}/v2/":{{"auth":"{}"}}}}}}"#,
        reg.addr(),
        b64("alice:s3cret")
    );
    let creds = credentials_from_dockerconfigjson(right.as_bytes(), reg.addr()).unwrap();
    let image = pull(&store, &name, &cfg, Some(&creds)).await.unwrap();
    assert_eq!(image.references, vec![format!("{name}:latest")]);
    // Credentials can also come from registries.yaml `configs`, for a mirror.
    let store2_dir = temp_dir("timonier-store-");
    let store2 = ImageStore::open(store2_dir.path()).unwrap();
    let cfg = RegistriesConfig::parse(&format!(
        "mirrors:\n  docker.io: {{endpoint: [\"http://{0}\"]}}\nconfigs:\n  \"{0}\": {{auth: {{username: alice, password: s3cret}}}}\n",
        reg.addr()
    ))
    .unwrap();
    push_with_auth(
        reg.addr(),
        l.path(),
        "library/busybox:latest",
        Some(("alice", "s3cret")),
    )
    .await
    .unwrap();
    let image = pull(&store2, "busybox", &cfg, None).await.unwrap();
    assert_eq!(image.references, vec!["docker.io/library/busybox:latest"]);
}

/// The Bearer-token flow: the registry answers 401 with a realm, the client gets a JWT there
/// with the pull secret's basic credentials, and retries with it.
#[tokio::test(flavor = "multi_thread")]
async fn token_auth_gets_a_bearer_token_with_the_pull_secret() {
    let reg = Registry::start_with_token_auth("bob", "t0ken").expect("docker-registry with token auth");
    let challenge = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(reg.addr()).unwrap();
        write!(s, "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", reg.addr()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(challenge.contains("Www-Authenticate: Bearer realm=\"http://127.0.0.1:"), "{challenge}");
    let l = layout(busybox_image);
    assert!(push(reg.addr(), l.path(), "team/busybox:latest").await.is_err());
    push_with_auth(reg.addr(), l.path(), "team/busybox:latest", Some(("bob", "t0ken"))).await.unwrap();
    let store_dir = temp_dir("timonier-store-");
    let store = ImageStore::open(store_dir.path()).unwrap();
    let cfg = RegistriesConfig::default();
    let name = format!("{}/team/busybox", reg.addr());
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret = |pass: &str| format!(r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#, reg.addr(), b64(&format!("bob:{pass}")));
    let err = pull(&store, &name, &cfg, None).await.unwrap_err();
    assert!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");
    let wrong = credentials_from_dockerconfigjson(secret("nope").as_bytes(), reg.addr()).unwrap();
    let err = pull(&store, &name, &cfg, Some(&wrong)).await.unwrap_err();
    assert!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");
    let right = credentials_from_dockerconfigjson(secret("t0ken").as_bytes(), reg.addr()).unwrap();
    let image = pull(&store, &name, &cfg, Some(&right)).await.unwrap();
    assert_eq!(image.references, vec![format!("{name}:latest")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_of_one_image_both_succeed() {
    let reg = registry();
    let l = layout(|d| bootcamp_image(d, 1));
    push(
        reg.addr(),
        l.path(),
        "google-samples/kubernetes-bootcamp:v1",
    )
    .await
    .unwrap();
    let store_dir = temp_dir("timonier-store-");
    let store = ImageStore::open(store_dir.path()).unwrap();
    let cfg = RegistriesConfig::parse(&format!(
        "mirrors:\n  gcr.io: {{endpoint: [\"http://{}\"]}}\n",
        reg.addr()
    ))
    .unwrap();
    let name = "gcr.io/google-samples/kubernetes-bootcamp:v1";
    let (a, b, c) = tokio::join!(
        pull(&store, name, &cfg, None),
        pull(&store, name, &cfg, None),
        pull(&store, name, &cfg, None)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(a.manifest_digest, c.manifest_digest);
    assert_eq!(store.list().len(), 1);
    assert_eq!(store.list()[0].references, vec![name.to_string()]);
    // Nothing left half-written, and the store reopens cleanly.
    assert_eq!(
        std::fs::read_dir(store_dir.path().join("tmp"))
            .unwrap()
            .count(),
        0
    );
    let reopened = ImageStore::open(store_dir.path()).unwrap();
    assert_eq!(reopened.get(name).unwrap(), a);
}

#[test]
fn garbage_collection_removes_least_recently_used_unused_images() {
    let store_dir = temp_dir("timonier-store-");
    let store = ImageStore::open(store_dir.path()).unwrap();
    let bb = layout(busybox_image);
    let v1 = layout(|d| bootcamp_image(d, 1));
    let v2 = layout(|d| bootcamp_image(d, 2));
    for l in [&v2, &v1, &bb] {
        store.import(l.path()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // Use order, oldest first: v1, v2, busybox.
    let (r_v2, r_v1, r_bb) = (
        "docker.io/jocatalin/kubernetes-bootcamp:v2".to_string(),
        "gcr.io/google-samples/kubernetes-bootcamp:v1".to_string(),
        "docker.io/library/busybox:latest".to_string(),
    );
    for r in [&r_v1, &r_v2, &r_bb] {
        store.touch(r).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // A fake disk: 40% plus 15% per image.
    fn usage(s: &ImageStore) -> impl FnMut() -> std::io::Result<u8> + '_ {
        move || Ok((40 + 15 * s.list().len()) as u8)
    }
    // 3 images: 85% ≥ high (85). v2 is in use, so v1 (least recently used) goes; 70% < 80%.
    let in_use: HashSet<String> = [store.get(&r_v2).unwrap().config_digest].into();
    let report = collect_garbage(&store, &in_use, 85, 80, usage(&store)).unwrap();
    assert_eq!(report.usage_before, 85);
    assert_eq!(report.usage_after, 70);
    assert_eq!(report.deleted.len(), 1);
    assert!(store.get(&r_v1).is_err());
    assert!(store.get(&r_v2).is_ok() && store.get(&r_bb).is_ok());
    // Below the high threshold nothing happens.
    let report = collect_garbage(&store, &HashSet::new(), 85, 80, usage(&store)).unwrap();
    assert!(report.deleted.is_empty());
    // With everything in use, nothing can go even above the threshold.
    let all: HashSet<String> = [r_v2.clone(), r_bb.clone()].into();
    let report = collect_garbage(&store, &all, 50, 10, usage(&store)).unwrap();
    assert!(report.deleted.is_empty() && report.still_above_low);
    // Shared layers survive while an image uses them: the busybox layer of v2.
    let v2_image = store.get(&r_v2).unwrap();
    for d in store.lower_dirs(&v2_image).unwrap() {
        assert!(d.is_dir(), "{}", d.display());
    }
}

fn http_get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[test]
fn the_bootcamp_server_answers_like_the_original() {
    let bin = bootcamp_binary().unwrap();
    let dir = temp_dir("timonier-bootcamp-");
    std::fs::write(dir.path().join("server.js"), server_js(2)).unwrap();
    std::os::unix::fs::symlink(&bin, dir.path().join("curl")).unwrap();
    let port = free_port();
    let log = dir.path().join("out.log");
    let child = Command::new(&bin)
        .arg("server.js")
        .current_dir(dir.path())
        .env("PORT", port.to_string())
        .env("HOSTNAME", "kubernetes-bootcamp-test")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _guard = ChildGuard(child);
    assert!(wait_for_port(
        ([127, 0, 0, 1], port).into(),
        Duration::from_secs(10)
    ));
    let want = "Hello Kubernetes bootcamp! | Running on: kubernetes-bootcamp-test | v=2\n";
    assert_eq!(http_get(port), want);
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("localhost:{port}"),
    ] {
        let out = Command::new(dir.path().join("curl"))
            .arg("-s")
            .arg(&url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }
    let out = Command::new(dir.path().join("curl"))
        .arg(format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    std::thread::sleep(Duration::from_millis(100));
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines = text.lines();
    let first = lines.next().unwrap();
    assert!(
        first.starts_with("Kubernetes Bootcamp App Started At: 20")
            && first.ends_with("Z | Running On:  kubernetes-bootcamp-test "),
        "{first:?}"
    );
    assert!(
        text.contains("Running On: kubernetes-bootcamp-test | Total Requests: 3 | App Uptime: "),
        "{text}"
    );
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains(" seconds | Log Time: 20"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn https_registries_with_their_tls_settings() {
    let reg = Registry::start_tls().expect("docker-registry with TLS");
    let l = layout(busybox_image);
    push(&reg.url(), l.path(), "secure/busybox:1").await.unwrap();
    let store_dir = temp_dir("timonier-store-");
    let store = ImageStore::open(store_dir.path()).unwrap();
    let name = format!("{}/secure/busybox:1", reg.addr());
    // Its own name, with `configs` saying its certificate is not to be checked.
    let cfg = RegistriesConfig::parse(&format!("configs:\n  \"{}\":\n    tls: {{insecure_skip_verify: true}}\n", reg.addr())).unwrap();
    let image = pull(&store, &name, &cfg, None).await.unwrap();
    assert_eq!(image.references, vec![name.clone()]);
    // As an https:// mirror of docker.io.
    let cfg = RegistriesConfig::parse(&format!(
        "mirrors:\n  docker.io: {{endpoint: [\"https://{0}\"]}}\nconfigs:\n  \"{0}\":\n    tls: {{insecure_skip_verify: true}}\n",
        reg.addr()
    ))
    .unwrap();
    let image = pull(&store, "docker.io/secure/busybox:1", &cfg, None).await.unwrap();
    assert!(image.references.contains(&"docker.io/secure/busybox:1".to_string()), "{:?}", image.references);
    // Without the TLS setting the self-signed certificate is refused.
    let fresh_dir = temp_dir("timonier-store-");
    let fresh = ImageStore::open(fresh_dir.path()).unwrap();
    let cfg = RegistriesConfig::parse(&format!("mirrors:\n  docker.io: {{endpoint: [\"https://{}\"]}}\n", reg.addr())).unwrap();
    let err = pull(&fresh, "docker.io/secure/busybox:1", &cfg, None).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("certificate") || matches!(err, PullError::Unreachable { .. }), "{err}");
}
