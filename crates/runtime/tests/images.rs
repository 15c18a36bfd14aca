//! Image store tests with images built offline from Debian's busybox-static (run as root,
//! like CI: whiteouts become device nodes and trusted xattrs, and an overlay is mounted).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};
use timonier_runtime::images::{unpack_layer, Error, ImageStore, WhiteoutMode};

const BUSYBOX: &str = "/bin/busybox";

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn hexof(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap()
}

enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Owned(&'a str, u32, u64, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    /// A regular file whose name is written raw, bypassing the tar crate's checks.
    Raw(&'a [u8], tar::EntryType, &'a [u8]),
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        match e {
            E::Dir(p, m) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*m);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::File(p, m, data) | E::Owned(p, m, _, data) => {
                if let E::Owned(_, _, id, _) = e {
                    h.set_uid(*id);
                    h.set_gid(*id);
                }
                h.set_mode(*m);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            E::Symlink(p, t) | E::Hardlink(p, t) => {
                let kind = if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                h.set_entry_type(kind);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Raw(name, kind, data) => {
                h.set_entry_type(*kind);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                if *kind == tar::EntryType::Symlink {
                    h.set_link_name("/tmp").unwrap();
                }
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

struct TestImage {
    layer1: Vec<u8>,
    layer2: Vec<u8>,
    config: Vec<u8>,
}

fn test_image() -> TestImage {
    let busybox = fs::read(BUSYBOX).expect("busybox-static is installed (scripts/install-deps)");
    let layer1 = tar_of(&[
        E::Dir("bin", 0o755),
        E::File("bin/busybox", 0o755, &busybox),
        E::Symlink("bin/sh", "busybox"),
        E::Symlink("bin/ls", "/bin/busybox"),
        E::File("bin/suid", 0o4755, b"#!/bin/sh\n"),
        E::Dir("etc", 0o755),
        E::File("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n"),
        E::Hardlink("etc/passwd-", "etc/passwd"),
        E::File("etc/motd", 0o644, b"deleted by layer 2\n"),
        E::Dir("var/cache", 0o750),
        E::File("var/cache/a.txt", 0o600, b"a"),
        E::Dir("home/user", 0o700),
        E::Owned("home/user/.profile", 0o640, 1000, b"export X=1\n"),
        E::Dir("ro", 0o555),
        E::File("ro/file", 0o444, b"read-only dir content"),
    ]);
    let layer2 = tar_of(&[
        E::Dir("etc", 0o755),
        E::File("etc/.wh.motd", 0o644, b""),
        E::File("etc/added", 0o644, b"layer 2\n"),
        E::Dir("var/cache", 0o750),
        E::File("var/cache/.wh..wh..opq", 0o644, b""),
        E::File("var/cache/new.txt", 0o644, b"new"),
    ]);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sh"], "Cmd": ["-c", "echo hi"], "Env": ["PATH=/bin"],
            "WorkingDir": "/tmp", "User": "1000:1000", "ExposedPorts": {"80/tcp": {}},
            "Labels": {"test": "yes"}
        },
        "rootfs": {"type": "layers", "diff_ids": [sha(&layer1), sha(&layer2)]}
    }))
    .unwrap();
    TestImage {
        layer1,
        layer2,
        config,
    }
}

/// An OCI layout tar: layer 1 gzip'd, layer 2 plain, named by the ref.name annotation.
fn oci_tar(img: &TestImage, name: &str, corrupt_layer: bool) -> Vec<u8> {
    let l1 = gzip(&img.layer1);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&img.config), "size": img.config.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&l1), "size": l1.len()},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(&img.layer2), "size": img.layer2.len()},
        ]
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&manifest),
            "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": name}}]
    }))
    .unwrap();
    let mut l2 = img.layer2.clone();
    if corrupt_layer {
        let n = l2.len() / 3;
        l2[n] ^= 1;
    }
    let paths: Vec<(String, &[u8])> = vec![
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json".into(), &index),
        (
            format!("blobs/sha256/{}", hexof(&sha(&manifest))),
            &manifest,
        ),
        (
            format!("blobs/sha256/{}", hexof(&sha(&img.config))),
            &img.config,
        ),
        (format!("blobs/sha256/{}", hexof(&sha(&l1))), &l1),
        (format!("blobs/sha256/{}", hexof(&sha(&img.layer2))), &l2),
    ];
    let files: Vec<E> = paths.iter().map(|(p, d)| E::File(p, 0o644, d)).collect();
    tar_of(&files)
}

/// A docker-archive tar as `docker save` writes it (uncompressed `<id>/layer.tar`).
fn docker_tar(img: &TestImage, tags: &[&str], config: Option<&[u8]>) -> Vec<u8> {
    let config = config.unwrap_or(&img.config);
    let cfg_name = format!("{}.json", hexof(&sha(config)));
    let manifest = serde_json::to_vec(&json!([{
        "Config": cfg_name, "RepoTags": tags, "Layers": ["l1/layer.tar", "l2/layer.tar"]
    }]))
    .unwrap();
    tar_of(&[
        E::File("manifest.json", 0o644, &manifest),
        E::File(&cfg_name, 0o644, config),
        E::File("l1/layer.tar", 0o644, &img.layer1),
        E::File("l2/layer.tar", 0o644, &img.layer2),
    ])
}

fn write(dir: &Path, name: &str, b: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, b).unwrap();
    p
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

#[test]
fn import_both_formats_unpack_and_remove_with_shared_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let img = test_image();
    let store = ImageStore::open(tmp.path().join("images")).unwrap();
    let oci = store
        .import(write(
            tmp.path(),
            "oci.tar",
            &oci_tar(&img, "busybox:oci", false),
        ))
        .unwrap();
    let docker = store
        .import(write(
            tmp.path(),
            "docker.tar",
            &docker_tar(&img, &["busybox:docker", "example.com/test/bb:v1"], None),
        ))
        .unwrap();
    assert_eq!(oci[0].references, ["docker.io/library/busybox:oci"]);
    assert_eq!(
        docker[0].references,
        ["docker.io/library/busybox:docker", "example.com/test/bb:v1"]
    );
    assert_eq!(store.list().len(), 2);

    let got = store.get("busybox:oci").unwrap();
    assert_eq!(got, store.get("docker.io/library/busybox:oci").unwrap());
    assert_eq!(got, store.get(&got.manifest_digest).unwrap());
    assert_eq!(got.config_digest, sha(&img.config));
    assert_eq!(got.layers, [sha(&img.layer1), sha(&img.layer2)]);
    let c = &got.config;
    assert_eq!(c.entrypoint.as_deref(), Some(&["/bin/sh".to_string()][..]));
    assert_eq!(
        c.cmd.as_deref(),
        Some(&["-c".to_string(), "echo hi".to_string()][..])
    );
    assert_eq!(
        (c.env.clone(), c.working_dir.as_str(), c.user.as_str()),
        (vec!["PATH=/bin".to_string()], "/tmp", "1000:1000")
    );
    assert_eq!(c.exposed_ports, ["80/tcp"]);
    assert!(matches!(store.get("busybox"), Err(Error::NotFound(_))));

    // Same diffIDs, so one set of layer directories for both images.
    let lower = store.lower_dirs(&got).unwrap();
    assert_eq!(lower, store.lower_dirs(&docker[0]).unwrap());
    let (l2, l1) = (&lower[0], &lower[1]);
    assert_eq!(
        fs::read(l1.join("bin/busybox")).unwrap(),
        fs::read(BUSYBOX).unwrap()
    );
    assert_eq!(
        fs::metadata(l1.join("bin/busybox"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    assert_eq!(
        fs::metadata(l1.join("bin/suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::metadata(l1.join("ro")).unwrap().permissions().mode() & 0o7777,
        0o555
    );
    assert_eq!(
        fs::metadata(l1.join("var/cache"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o750
    );
    assert_eq!(
        fs::read_link(l1.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::read_link(l1.join("bin/ls")).unwrap(),
        Path::new("/bin/busybox")
    );
    let (a, b) = (
        fs::metadata(l1.join("etc/passwd")).unwrap(),
        fs::metadata(l1.join("etc/passwd-")).unwrap(),
    );
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    let prof = fs::metadata(l1.join("home/user/.profile")).unwrap();
    assert_eq!((prof.uid(), prof.gid()), (1000, 1000));
    assert_eq!(
        fs::metadata(l1.join("bin/busybox")).unwrap().mtime(),
        1_700_000_000
    );
    // Whiteouts in overlayfs form.
    let wh = fs::symlink_metadata(l2.join("etc/motd")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr(&l2.join("var/cache"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!l2.join("etc/.wh.motd").exists() && !l2.join("var/cache/.wh..wh..opq").exists());

    // The kernel agrees: an overlay of the two layers hides motd and the old cache.
    let mnt = tmp.path().join("mnt");
    let (upper, work) = (tmp.path().join("upper"), tmp.path().join("work"));
    for d in [&mnt, &upper, &work] {
        fs::create_dir(d).unwrap();
    }
    let opts = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        l2.display(),
        l1.display(),
        upper.display(),
        work.display()
    );
    let cs = |s: &str| std::ffi::CString::new(s).unwrap();
    let (m, o) = (cs(mnt.to_str().unwrap()), cs(&opts));
    let rc = unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            m.as_ptr(),
            c"overlay".as_ptr(),
            0,
            o.as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mount overlay: {}", std::io::Error::last_os_error());
    let seen = (
        mnt.join("etc/motd").exists(),
        mnt.join("var/cache/a.txt").exists(),
        fs::read_to_string(mnt.join("var/cache/new.txt")).ok(),
        fs::read_to_string(mnt.join("etc/passwd")).ok(),
        fs::metadata(mnt.join("bin/sh")).map(|m| m.len()).ok(),
    );
    unsafe { libc::umount2(m.as_ptr(), libc::MNT_DETACH) };
    assert!(!seen.0, "whiteout hides etc/motd");
    assert!(!seen.1, "opaque dir hides var/cache/a.txt");
    assert_eq!(seen.2.as_deref(), Some("new"));
    assert!(seen.3.unwrap().starts_with("root:"));
    assert_eq!(seen.4, Some(fs::metadata(BUSYBOX).unwrap().len()));

    // Removal: shared layers stay until the last image using them goes.
    let gz_blob = store.blob_path(&got.layer_blobs[0]).unwrap();
    let r = store.remove("busybox:oci").unwrap();
    assert_eq!(r.deleted.as_deref(), Some(got.manifest_digest.as_str()));
    assert!(r.layers_removed.is_empty() && l1.is_dir() && !gz_blob.exists());
    let r = store.remove("busybox:docker").unwrap();
    assert_eq!((r.deleted, r.untagged.len()), (None, 1));
    // Persisted: a reopened store sees the same index.
    drop(store);
    let store = ImageStore::open(tmp.path().join("images")).unwrap();
    assert_eq!(store.list().len(), 1);
    assert_eq!(
        store.get("example.com/test/bb:v1").unwrap().references,
        ["example.com/test/bb:v1"]
    );
    let r = store.remove("example.com/test/bb:v1").unwrap();
    assert_eq!(r.layers_removed.len(), 2);
    assert!(!l1.exists() && !l2.exists() && store.list().is_empty());
    assert_eq!(
        fs::read_dir(tmp.path().join("images/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert!(matches!(
        store.remove("busybox:oci"),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn oci_layout_directory_and_retagging() {
    let tmp = tempfile::tempdir().unwrap();
    let img = test_image();
    let dir = tmp.path().join("layout");
    tar::Archive::new(&oci_tar(&img, "localhost:5000/bb", false)[..])
        .unpack(&dir)
        .unwrap();
    let store = ImageStore::open(tmp.path().join("images")).unwrap();
    let a = store.import(&dir).unwrap();
    assert_eq!(a[0].references, ["localhost:5000/bb:latest"]);
    // The same name imported again for another image moves to it.
    let other = serde_json::to_vec(&json!({"os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"diff_ids": [sha(&img.layer1), sha(&img.layer2)]}}))
    .unwrap();
    let b = store
        .import(write(
            tmp.path(),
            "d.tar",
            &docker_tar(&img, &["localhost:5000/bb"], Some(&other)),
        ))
        .unwrap();
    assert_eq!(
        store.get("localhost:5000/bb").unwrap().manifest_digest,
        b[0].manifest_digest
    );
    assert!(store
        .get(&a[0].manifest_digest)
        .unwrap()
        .references
        .is_empty());
    // Removing by digest removes an untagged image; its layers stay with the other one.
    let r = store.remove(&a[0].config_digest).unwrap();
    assert!(r.deleted.is_some() && r.layers_removed.is_empty());
    assert_eq!(store.list().len(), 1);
}

#[test]
fn apply_mode_stacks_layers_into_one_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let img = test_image();
    let root = tmp.path().join("rootfs");
    fs::create_dir(&root).unwrap();
    unpack_layer(&img.layer1[..], &root, WhiteoutMode::Apply, "l1").unwrap();
    let s = unpack_layer(&img.layer2[..], &root, WhiteoutMode::Apply, "l2").unwrap();
    assert_eq!((s.whiteouts, s.opaque_dirs), (1, 1));
    assert!(!root.join("etc/motd").exists() && !root.join("var/cache/a.txt").exists());
    assert_eq!(
        fs::read_to_string(root.join("var/cache/new.txt")).unwrap(),
        "new"
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/added")).unwrap(),
        "layer 2\n"
    );
    assert!(root.join("bin/busybox").is_file());
}

#[test]
fn malformed_inputs_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let img = test_image();
    let store = ImageStore::open(tmp.path().join("images")).unwrap();

    // Not an image at all.
    let e = store
        .import(write(
            tmp.path(),
            "x.tar",
            &tar_of(&[E::File("hello", 0o644, b"hi")]),
        ))
        .unwrap_err();
    assert!(matches!(e, Error::UnknownFormat(_)), "{e}");
    assert!(
        e.to_string().contains("no index.json or manifest.json in"),
        "{e}"
    );
    assert!(store
        .import(write(tmp.path(), "garbage.tar", &[7u8; 5000]))
        .is_err());
    assert!(store.import(tmp.path().join("missing.tar")).is_err());

    // A blob that does not match its digest.
    let e = store
        .import(write(tmp.path(), "bad.tar", &oci_tar(&img, "bad", true)))
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    // A config whose diffIDs do not match the layers.
    let mut wrong: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
    wrong["rootfs"]["diff_ids"][1] = json!(sha(b"something else"));
    let wrong = serde_json::to_vec(&wrong).unwrap();
    let e = store
        .import(write(
            tmp.path(),
            "w.tar",
            &docker_tar(&img, &["w"], Some(&wrong)),
        ))
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");

    // Truncations of a docker archive anywhere before its end-of-archive zero blocks: errors, never a panic, never a stored image.
    let full = docker_tar(&img, &["t"], None);
    for cut in (0..full.len() - 1024)
        .step_by(full.len() / 40)
        .chain([full.len() - 1030, 700, 1536])
    {
        let r = store.import(write(tmp.path(), "t.tar", &full[..cut]));
        assert!(r.is_err(), "cut at {cut} of {}: {r:?}", full.len());
    }
    assert!(store.list().is_empty());
    assert_eq!(
        fs::read_dir(tmp.path().join("images/tmp")).unwrap().count(),
        0,
        "staging cleaned up"
    );
    assert_eq!(
        fs::read_dir(tmp.path().join("images/layers"))
            .unwrap()
            .count(),
        0,
        "no orphan layers"
    );
    assert_eq!(
        fs::read_dir(tmp.path().join("images/blobs/sha256"))
            .unwrap()
            .count(),
        0,
        "no orphan blobs"
    );

    // Names that climb or are absolute stay inside the layer (as containerd takes them).
    for (i, name) in [&b"../evil"[..], b"a/../../evil", b"/evil", b"/../../evil"]
        .iter()
        .enumerate()
    {
        let dest = tmp.path().join(format!("layers/{i}/layer"));
        fs::create_dir_all(&dest).unwrap();
        unpack_layer(
            &tar_of(&[E::Raw(name, tar::EntryType::Regular, b"x")])[..],
            &dest,
            WhiteoutMode::Overlay,
            "evil",
        )
        .unwrap();
        assert_eq!(fs::read(dest.join("evil")).unwrap(), b"x");
        assert!(!tmp.path().join(format!("layers/{i}/evil")).exists());
    }
    // Writing through a symlink is refused.
    let dest = tmp.path().join("symlinked");
    fs::create_dir(&dest).unwrap();
    let e = unpack_layer(
        &tar_of(&[
            E::Raw(b"link", tar::EntryType::Symlink, b""),
            E::Raw(b"link/evil", tar::EntryType::Regular, b"x"),
        ])[..],
        &dest,
        WhiteoutMode::Overlay,
        "evil",
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::Layer { .. }) && e.to_string().contains("symlink"),
        "{e}"
    );
    assert!(!tmp.path().join("evil").exists() && !Path::new("/tmp/evil").exists());
    // A hardlink to a file outside the layer is a link to that path inside it, here absent.
    let dest = tmp.path().join("hl");
    fs::create_dir(&dest).unwrap();
    let e = unpack_layer(
        &tar_of(&[E::Hardlink("x", "../../etc/passwd")])[..],
        &dest,
        WhiteoutMode::Overlay,
        "hl",
    );
    assert!(e.unwrap_err().to_string().contains("not in this layer"));
    // Random truncation of a layer tar.
    let l = &img.layer1;
    for cut in (1..l.len()).step_by(l.len() / 25) {
        let dest = tmp.path().join(format!("cut{cut}"));
        fs::create_dir(&dest).unwrap();
        let _ = unpack_layer(&l[..cut], &dest, WhiteoutMode::Overlay, "cut");
    }
}

#[test]
fn pull_style_write_blob_commit_and_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let img = test_image();
    let store = ImageStore::open(tmp.path().join("images")).unwrap();
    // A pull streams each blob in, verified against the digest the manifest names.
    let e = store
        .write_blob(&b"not the config"[..], &sha(&img.config))
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    let l1 = gzip(&img.layer1);
    for b in [&img.config, &l1, &img.layer2] {
        assert_eq!(store.write_blob(&b[..], &sha(b)).unwrap(), b.len() as u64);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": {"digest": sha(&img.config), "size": img.config.len()},
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha(&l1)},
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar", "digest": sha(&img.layer2)},
        ]
    }))
    .unwrap();
    let image = store
        .commit(
            &manifest,
            &["127.0.0.1:5000/test/busybox:httpd".to_string()],
        )
        .unwrap();
    assert_eq!(image.manifest_digest, sha(&manifest));
    assert_eq!(
        store
            .get("127.0.0.1:5000/test/busybox:httpd")
            .unwrap()
            .layers
            .len(),
        2
    );
    let by_digest = format!("127.0.0.1:5000/test/busybox@{}", sha(&manifest));
    assert_eq!(store.get(&by_digest).unwrap(), image);
    // An index is not a manifest.
    let e = store.commit(br#"{"manifests":[]}"#, &[]).unwrap_err();
    assert!(e.to_string().contains("index"), "{e}");
    // Prune keeps what images use and deletes a blob left by an abandoned pull.
    store.write_blob(&b"orphan"[..], &sha(b"orphan")).unwrap();
    assert_eq!(store.prune().unwrap(), 1);
    assert!(store.blob_path(&sha(&l1)).unwrap().exists());
    store.remove(&by_digest).unwrap();
    assert!(store.list().is_empty());
    assert_eq!(store.prune().unwrap(), 0);
}

#[test]
fn oci_index_picks_this_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let img = test_image();
    let dir = tmp.path().join("layout");
    tar::Archive::new(&oci_tar(&img, "multi:1", false)[..])
        .unpack(&dir)
        .unwrap();
    // Wrap the manifest in a nested image index with another platform first.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut desc = index["manifests"][0].clone();
    let ann = desc.as_object_mut().unwrap().remove("annotations").unwrap();
    let arch = if cfg!(target_arch = "x86_64") {
        "amd64"
    } else {
        "arm64"
    };
    let mut other = desc.clone();
    other["platform"] = json!({"os": "linux", "architecture": "s390x"});
    other["digest"] = json!(sha(b"missing"));
    desc["platform"] = json!({"os": "linux", "architecture": arch});
    let nested =
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [other, desc]})).unwrap();
    write(
        &dir,
        &format!("blobs/sha256/{}", hexof(&sha(&nested))),
        &nested,
    );
    let top = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(&nested),
        "size": nested.len(), "annotations": ann}]});
    write(&dir, "index.json", &serde_json::to_vec(&top).unwrap());
    let store = ImageStore::open(tmp.path().join("images")).unwrap();
    let got = store.import(&dir).unwrap();
    assert_eq!(got[0].references, ["docker.io/library/multi:1"]);
    assert_eq!(got[0].config.user, "1000:1000");
}
