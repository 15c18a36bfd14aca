//! Images as other tools build them, imported into the store and run as containers (root
//! only, like CI): umoci (`repack`, and `insert`, which writes a `/` root entry and no tar
//! trailer), GNU tar with absolute names and hard links, zstd layers from the `zstd` CLI
//! (one labelled `+zstd`, one recognised by its magic bytes), a file capability recorded by
//! GNU tar as a PAX xattr, and hard links into a lower layer.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use timonier_runtime::bundle::ContainerSpec;
use timonier_runtime::images::{unpack_layer_over, Image, ImageStore, WhiteoutMode};
use timonier_runtime::shim::{cleanup_state_dir, ShimClient};

const BUSYBOX: &str = "/bin/busybox";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Runs a command, panicking with its output if it fails.
fn sh(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A layer blob as it goes in a manifest.
struct Blob {
    media: &'static str,
    data: Vec<u8>,
    diff_id: String,
}

/// The busybox base layer of the test kit (gzip).
fn busybox_base() -> Blob {
    let l = timonier_testkit::images::busybox_layer().expect("busybox layer");
    Blob {
        media: LAYER_GZIP,
        data: l.blob,
        diff_id: l.diff_id,
    }
}

/// Compresses `tar` with the zstd CLI, as `frames` separately compressed pieces (a valid
/// zstd stream of several frames).
fn zstd_cli(tar: &[u8], frames: usize, media: &'static str) -> Blob {
    let mut data = Vec::new();
    for piece in tar.chunks(tar.len().div_ceil(frames)) {
        let mut child = Command::new("zstd")
            .args(["-q", "-c", "-3"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("zstd CLI (apt-get install zstd)");
        let mut stdin = child.stdin.take().expect("stdin");
        let piece = piece.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&piece));
        let out = child.wait_with_output().expect("zstd");
        writer.join().expect("join").expect("write to zstd");
        assert!(out.status.success() && out.stdout.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
        data.extend(out.stdout);
    }
    Blob {
        media,
        data,
        diff_id: sha(tar),
    }
}

fn plain(tar: Vec<u8>) -> Blob {
    Blob {
        media: LAYER_TAR,
        diff_id: sha(&tar),
        data: tar,
    }
}

/// Writes an OCI layout with one image of `layers` (bottom first).
fn write_layout(dir: &Path, layers: &[Blob], cmd: &[&str]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        let d = sha(b);
        std::fs::write(blobs.join(&d[7..]), b).unwrap();
        json!({"digest": d, "size": b.len()})
    };
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    }))
    .unwrap();
    let mut cfg = put(&config);
    cfg["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let descs: Vec<Value> = layers
        .iter()
        .map(|l| {
            let mut d = put(&l.data);
            d["mediaType"] = json!(l.media);
            d
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cfg, "layers": descs,
    }))
    .unwrap();
    let mut m = put(&manifest);
    m["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [m]})).unwrap(),
    )
    .unwrap();
}

/// An extended attribute of `p` (not following symlinks), if set.
fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid NUL-terminated strings; the buffer is writable for its length.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

/// Appends a PAX extended header holding `records` for the next entry (what Go's
/// archive/tar and GNU tar write for xattrs).
fn pax(b: &mut tar::Builder<Vec<u8>>, records: &[(&str, &[u8])]) {
    let mut data = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        data.extend(format!("{len} {k}=").into_bytes());
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, "PaxHeaders/x", &data[..]).unwrap();
}

/// One pod: a shim, its state dir and cgroups, cleaned up on drop (even on panic).
struct Pod {
    dir: PathBuf,
    cg: String,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = cleanup_state_dir(&self.dir);
        for l in std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" - cgroup"))
        {
            if let Some(h) = l.split(' ').nth(4) {
                let _ = std::fs::remove_dir(format!("{h}{}", self.cg));
                let _ = std::fs::remove_dir(format!("{h}/timonier-test"));
            }
        }
    }
}

/// Runs `script` with `sh -c` in a container of `image` as `uid`; returns its exit code and
/// its stdout lines.
async fn run(
    store: &ImageStore,
    image: &Image,
    name: &str,
    script: &str,
    uid: u32,
) -> (i32, Vec<String>) {
    let pod = Pod {
        dir: PathBuf::from(format!("/tmp/imgcompat-{name}-{}", std::process::id())),
        cg: format!("/timonier-test/img-{name}-{}", std::process::id()),
    };
    let _ = cleanup_state_dir(&pod.dir);
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_shim-test"));
    let client = ShimClient::start(&exe, &[], &pod.dir, name)
        .await
        .expect("start shim");
    let spec = ContainerSpec {
        id: "c".into(),
        lower_dirs: store.lower_dirs(image).expect("lower dirs"),
        args: vec!["sh".into(), "-c".into(), script.into()],
        uid,
        gid: uid,
        cgroup_path: format!("{}/c", pod.cg),
        log_path: pod.dir.join("logs/c/0.log"),
        log_max_bytes: 1 << 20,
        log_max_files: 2,
        sandbox_pid: client.pid() as u32,
        ..Default::default()
    };
    client.create(&spec).await.expect("create container");
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        let st = client.status().await.expect("status");
        if let Some(s) = st.into_iter().find(|s| s.id == "c" && !s.running) {
            break s.exit_code.unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "container did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = std::fs::read_to_string(pod.dir.join("logs/c/0.log")).unwrap_or_default();
    let _ = client.shutdown(0).await;
    let lines = log
        .lines()
        .filter_map(|l| l.split_once(" stdout F ").map(|(_, t)| t.to_string()))
        .collect();
    (code, lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn umoci_image_with_inserted_files_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, bundle) = (tmp.path().join("layout"), tmp.path().join("bundle"));
    let image = format!("{}:test", layout.display());
    sh(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    sh(Command::new("umoci").args(["new", "--image", &image]));
    sh(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    sh(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    // `insert` of a file and of a directory at `/`: its layers name the root `/`, and (in
    // umoci 0.4.7) end without the tar trailer.
    let file = tmp.path().join("motd");
    std::fs::write(&file, "inserted by umoci\n").unwrap();
    sh(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(&file)
        .arg("/etc/motd"));
    let dir = tmp.path().join("overlay");
    std::fs::create_dir_all(dir.join("srv")).unwrap();
    std::fs::write(dir.join("srv/data"), "root insert\n").unwrap();
    sh(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(&dir)
        .arg("/"));
    sh(Command::new("umoci").args(["config", "--image", &image, "--config.cmd", "sh"]));

    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let img = store
        .import(&layout)
        .expect("import the umoci layout")
        .remove(0);
    assert_eq!(img.layers.len(), 3);
    let (code, out) = run(&store, &img, "umoci", "cat /etc/motd /srv/data; ls /bin", 0).await;
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(out[..2], ["inserted by umoci", "root insert"], "{out:?}");
    assert!(out.iter().any(|l| l.contains("busybox")), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gnu_tar_with_absolute_names_and_hard_links_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "stat"] {
        std::fs::hard_link(root.join("bin/busybox"), root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/hello"), "absolute\n").unwrap();
    // GNU tar with -P keeps the leading `/` that the transform adds, in names and in hard
    // link targets.
    let tar = tmp.path().join("abs.tar");
    sh(Command::new("tar")
        .args(["-cPf"])
        .arg(&tar)
        .args(["--numeric-owner", "--owner=0", "--group=0"])
        .arg("--transform=s,^\\./,/,;s,^\\.$,/,")
        .arg("-C")
        .arg(&root)
        .arg("."));
    let data = std::fs::read(&tar).unwrap();
    assert_eq!(&data[..2], b"/\0", "the first entry is the root, named /");
    write_layout(&tmp.path().join("layout"), &[plain(data)], &["sh"]);

    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let img = store
        .import(tmp.path().join("layout"))
        .expect("import")
        .remove(0);
    let layer = &store.lower_dirs(&img).unwrap()[0];
    assert!(layer.join("bin/busybox").is_file());
    let (code, out) = run(
        &store,
        &img,
        "abs",
        "cat /etc/hello; stat -c %h /bin/busybox",
        0,
    )
    .await;
    assert_eq!(
        (code, out),
        (0, vec!["absolute".to_string(), "4".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_layers_run() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    add(&mut b, "etc/zstd", b"zstd layer\n");
    let l2 = b.into_inner().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    // Big enough to span several frames and blocks.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    add(&mut b, "etc/big", &big);
    add(&mut b, "etc/sniffed", b"found by magic\n");
    let l3 = b.into_inner().unwrap();
    let layers = [
        busybox_base(),
        zstd_cli(&l2, 1, LAYER_ZSTD),
        // Labelled as a plain tar: recognised by its magic bytes, as containerd does.
        zstd_cli(&l3, 3, LAYER_TAR),
    ];
    write_layout(&tmp.path().join("layout"), &layers, &["sh"]);
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let img = store
        .import(tmp.path().join("layout"))
        .expect("import")
        .remove(0);
    assert_eq!(
        img.layers,
        layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()
    );
    let (code, out) = run(
        &store,
        &img,
        "zstd",
        "cat /etc/zstd /etc/sniffed; sha256sum /etc/big",
        0,
    )
    .await;
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(out[..2], ["zstd layer", "found by magic"], "{out:?}");
    assert!(out[2].starts_with(&sha(&big)[7..]), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn file_capability_from_gnu_tar_takes_effect() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("cap")).unwrap();
    std::fs::copy(BUSYBOX, root.join("cap/busybox")).unwrap();
    sh(Command::new("setcap")
        .arg("cap_net_bind_service+ep")
        .arg(root.join("cap/busybox")));
    let tar = tmp.path().join("cap.tar");
    sh(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .args(["--xattrs", "--xattrs-include=security.capability"])
        .args(["--numeric-owner", "--owner=0", "--group=0"])
        .arg("-C")
        .arg(&root)
        .arg("cap"));
    let cap_layer = plain(std::fs::read(&tar).unwrap());
    // A second layer tries to forge overlayfs metadata, and sets a user xattr.
    let mut b = tar::Builder::new(Vec::new());
    pax(
        &mut b,
        &[
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.user.note", b"kept"),
        ],
    );
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "bin/", &[][..]).unwrap();
    let forge = plain(b.into_inner().unwrap());
    write_layout(
        &tmp.path().join("layout"),
        &[busybox_base(), cap_layer, forge],
        &["sh"],
    );
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let img = store
        .import(tmp.path().join("layout"))
        .expect("import")
        .remove(0);
    let dirs = store.lower_dirs(&img).unwrap();
    let file = dirs[1].join("cap/busybox");
    let host = String::from_utf8(sh(Command::new("getcap").arg(&file))).unwrap();
    assert!(host.contains("cap_net_bind_service=ep"), "{host}");
    assert_eq!(
        xattr(&dirs[0].join("bin"), "trusted.overlay.opaque"),
        None,
        "forged opaque dir"
    );
    assert_eq!(
        xattr(&dirs[0].join("bin"), "user.note").as_deref(),
        Some(&b"kept"[..])
    );

    // As uid 1000, a process exec'd from the file gets CAP_NET_BIND_SERVICE (bit 10,
    // 0x400) in its permitted and effective sets, and can bind port 80; busybox without the
    // capability can do neither. /bin is still whole (the forged opaque xattr was dropped).
    let script = "/cap/busybox grep -E '^Cap(Prm|Eff)' /proc/self/status; \
        /bin/busybox grep -E '^Cap(Prm|Eff)' /proc/self/status; \
        /bin/busybox httpd -p 81 -h / 2>/dev/null && echo plain-bind-ok || echo plain-bind-refused; \
        /cap/busybox httpd -p 80 -h / && echo cap-bind-ok; ls /bin/sh";
    let (code, out) = run(&store, &img, "cap", script, 1000).await;
    assert_eq!(code, 0, "{out:?}");
    let fields: Vec<(&str, u64)> = out[..4]
        .iter()
        .map(|l| {
            let (k, v) = l.split_once(':').expect("status line");
            (k, u64::from_str_radix(v.trim(), 16).expect("hex"))
        })
        .collect();
    assert_eq!(
        fields,
        [
            ("CapPrm", 0x400),
            ("CapEff", 0x400),
            ("CapPrm", 0),
            ("CapEff", 0)
        ],
        "{out:?}"
    );
    assert_eq!(
        out[4..],
        ["plain-bind-refused", "cap-bind-ok", "/bin/sh"],
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hard_links_into_lower_layers_are_copied_up() {
    let tmp = tempfile::tempdir().unwrap();
    let entry =
        |b: &mut tar::Builder<Vec<u8>>, kind, path: &str, mode, uid, link: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(uid);
            h.set_mtime(1_600_000_000);
            h.set_size(data.len() as u64);
            if kind == tar::EntryType::Link {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, path, data).unwrap();
        };
    use tar::EntryType::{Directory as D, Link as L, Regular as R};
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, D, "etc/", 0o755, 0, "", b"");
    pax(&mut b, &[("SCHILY.xattr.user.origin", b"layer 2")]);
    entry(&mut b, R, "etc/data", 0o640, 1000, "", b"lower data\n");
    entry(&mut b, D, "opt/", 0o710, 1000, "", b"");
    entry(
        &mut b,
        R,
        "opt/tool",
        0o755,
        0,
        "",
        b"#!/bin/sh\necho tool-ok\n",
    );
    entry(&mut b, R, "gone", 0o644, 0, "", b"x");
    let l2 = plain(b.into_inner().unwrap());
    // Layer 3 links to files of layers 1 and 2 (relative and absolute names), without
    // listing their directories; a whiteout and an opaque directory hide other targets.
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, L, "etc/data-link", 0, 0, "etc/data", b"");
    entry(&mut b, L, "opt/tool2", 0, 0, "/opt/tool", b"");
    entry(&mut b, D, "usr/", 0o755, 0, "", b"");
    entry(&mut b, D, "usr/bin/", 0o755, 0, "", b"");
    entry(&mut b, L, "usr/bin/sh", 0, 0, "/bin/busybox", b"");
    let l3_tar = b.into_inner().unwrap();
    let layers = [busybox_base(), l2, plain(l3_tar.clone())];
    write_layout(&tmp.path().join("layout"), &layers, &["sh"]);
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let img = store
        .import(tmp.path().join("layout"))
        .expect("import")
        .remove(0);
    let dirs = store.lower_dirs(&img).unwrap();
    // The targets were copied into layer 3, with their metadata.
    let data = std::fs::metadata(dirs[0].join("etc/data")).unwrap();
    assert_eq!(
        (data.mode() & 0o7777, data.uid(), data.nlink()),
        (0o640, 1000, 2)
    );
    assert_eq!(
        xattr(&dirs[0].join("etc/data"), "user.origin").as_deref(),
        Some(&b"layer 2"[..]),
        "xattrs copied with the file"
    );
    let opt = std::fs::metadata(dirs[0].join("opt")).unwrap();
    assert_eq!(
        (opt.mode() & 0o7777, opt.uid()),
        (0o710, 1000),
        "directory inherited"
    );
    let (code, out) = run(
        &store,
        &img,
        "hardlink",
        "cat /etc/data-link; stat -c '%a %u %h' /etc/data-link; \
         [ $(stat -c %i /etc/data) = $(stat -c %i /etc/data-link) ] && echo same-inode; \
         /opt/tool2; stat -c '%a %u' /opt; /usr/bin/sh -c 'echo usr-sh-ok'",
        0,
    )
    .await;
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(
        out,
        [
            "lower data",
            "640 1000 2",
            "same-inode",
            "tool-ok",
            "710 1000",
            "usr-sh-ok"
        ],
        "{out:?}"
    );

    // A target a layer deleted (whiteout), or hid (opaque directory), or that no layer
    // has, is an error naming the reason.
    let lower: Vec<PathBuf> = dirs[1..].to_vec();
    type Entries<'a> = &'a [(&'a str, &'a [u8])];
    let cases: [(Entries, &str); 3] = [
        (&[("/.wh.gone", b""), ("/x", b"gone")], "whiteout"),
        (&[("/etc/.wh..wh..opq", b""), ("/x", b"etc/data")], "opaque"),
        (&[("/x", b"etc/nothing")], "no layer has it"),
    ];
    for (i, (entries, why)) in cases.iter().enumerate() {
        let mut b = tar::Builder::new(Vec::new());
        for (name, link) in *entries {
            let mut h = tar::Header::new_old();
            h.set_size(0);
            h.set_mode(0o644);
            let name = name.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            if !link.is_empty() {
                h.set_entry_type(tar::EntryType::Link);
                h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            }
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
        let dest = tmp.path().join(format!("neg{i}"));
        std::fs::create_dir(&dest).unwrap();
        let e = unpack_layer_over(
            &b.into_inner().unwrap()[..],
            &dest,
            WhiteoutMode::Overlay,
            &lower,
            "neg",
        )
        .expect_err("must fail");
        assert!(e.to_string().contains(why), "case {i}: {e}");
    }
    // Layer directories are lowerdirs: nothing was written into the layers below.
    for p in ["x", "usr", "etc/data-link", "opt/tool2"] {
        assert!(!dirs[1].join(p).exists(), "{p} written into layer 2");
    }
}
