//! Test images written as OCI image layouts, in pure Rust (tar + gzip + sha256), and pushed
//! to a registry with `oci-client`:
//! - [`busybox_image`]: Debian's static busybox with a symlink per applet.
//! - [`bootcamp_image`]: a stand-in for `gcr.io/google-samples/kubernetes-bootcamp:v1` (and
//!   `jocatalin/kubernetes-bootcamp:v2`): busybox, `bash`, `curl`, `/server.js` and a static
//!   Rust server (`bootcamp/server.rs`) run as `node server.js`, answering like the original.
//!
//! Layers are reproducible (fixed mtimes, owners and gzip header), so the busybox layer is
//! the same blob in every image, and the app layer the same in v1 and v2.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::{Compression, GzBuilder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const BUSYBOX: &str = "/bin/busybox";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The source of the bootcamp server, compiled by [`bootcamp_binary`].
pub const BOOTCAMP_SOURCE: &str = include_str!("../bootcamp/server.rs");

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// One gzip layer: its blob and both digests.
pub struct Layer {
    /// The compressed blob.
    pub blob: Vec<u8>,
    /// Digest of the blob.
    pub digest: String,
    /// Digest of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
}

/// Builds a tar in memory with `fill`, then gzips it reproducibly.
fn layer(fill: impl FnOnce(&mut TarBuilder) -> std::io::Result<()>) -> Result<Layer, String> {
    let mut tb = TarBuilder(tar::Builder::new(Vec::new()));
    fill(&mut tb).map_err(|e| format!("building a layer: {e}"))?;
    let tar = tb.0.into_inner().map_err(|e| e.to_string())?;
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::new(6));
    gz.write_all(&tar).map_err(|e| e.to_string())?;
    let blob = gz.finish().map_err(|e| e.to_string())?;
    Ok(Layer {
        digest: sha256(&blob),
        diff_id: sha256(&tar),
        blob,
    })
}

/// A tar builder writing root-owned entries with mtime 0.
struct TarBuilder(tar::Builder<Vec<u8>>);

impl TarBuilder {
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h
    }

    fn dir(&mut self, path: &str, mode: u32) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.0.append_data(
            &mut h,
            format!("{}/", path.trim_end_matches('/')),
            std::io::empty(),
        )
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data)
    }

    fn symlink(&mut self, path: &str, target: &str) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target)
    }
}

/// The applets of Debian's static busybox, sorted.
fn applets() -> Result<Vec<String>, String> {
    let out = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .map_err(|e| format!("{BUSYBOX}: {e} (install Debian's busybox-static)"))?;
    let mut a: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && l != "busybox" && !l.contains('/'))
        .collect();
    a.sort();
    a.dedup();
    Ok(a)
}

/// The busybox base layer: `/bin/busybox`, a symlink per applet, `/etc/passwd`, `/etc/group`,
/// and the usual empty directories.
pub fn busybox_layer() -> Result<Layer, String> {
    let bin = std::fs::read(BUSYBOX)
        .map_err(|e| format!("{BUSYBOX}: {e} (install Debian's busybox-static)"))?;
    let applets = applets()?;
    layer(|t| {
        for (d, mode) in [
            ("bin", 0o755),
            ("dev", 0o755),
            ("etc", 0o755),
            ("proc", 0o555),
            ("root", 0o700),
            ("sys", 0o555),
            ("tmp", 0o1777),
            ("usr", 0o755),
            ("var", 0o755),
        ] {
            t.dir(d, mode)?;
        }
        t.file("bin/busybox", 0o755, &bin)?;
        for a in &applets {
            t.symlink(&format!("bin/{a}"), "busybox")?;
        }
        t.file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )?;
        t.file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
        Ok(())
    })
}

/// Writes an OCI image layout holding one image (`layers` bottom first, `config` the
/// `config` object of the image config) named `name` (a full reference such as
/// `docker.io/library/busybox:latest`: annotation `io.containerd.image.name`, with its tag as
/// `org.opencontainers.image.ref.name`). Returns the manifest digest.
pub fn write_layout(
    dir: &Path,
    layers: &[&Layer],
    config: Value,
    name: &str,
) -> Result<String, String> {
    let tag = match name.rsplit_once(':') {
        Some((_, t)) if !t.contains('/') => t,
        _ => "latest",
    };
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
    let put = |digest: &str, bytes: &[u8]| -> Result<(), String> {
        let p = blobs.join(digest.trim_start_matches("sha256:"));
        std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))
    };
    let image_config = json!({
        "created": "2016-08-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        "history": layers.iter().map(|_| json!({"created": "2016-08-01T00:00:00Z", "created_by": "timonier-testkit"})).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&image_config).expect("serializes");
    let config_digest = sha256(&config_bytes);
    put(&config_digest, &config_bytes)?;
    for l in layers {
        put(&l.digest, &l.blob)?;
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": OCI_LAYER_GZ, "digest": l.digest, "size": l.blob.len()})).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("serializes");
    let manifest_digest = sha256(&manifest_bytes);
    put(&manifest_digest, &manifest_bytes)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": tag, "io.containerd.image.name": name},
        }],
    });
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .and_then(|_| {
            std::fs::write(
                dir.join("index.json"),
                serde_json::to_vec(&index).expect("serializes"),
            )
        })
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(manifest_digest)
}

/// Writes the busybox image (Cmd `sh`) as an OCI layout in `dir`, named
/// `docker.io/library/busybox:latest`.
/// Returns the manifest digest.
pub fn busybox_image(dir: &Path) -> Result<String, String> {
    let base = busybox_layer()?;
    write_layout(
        dir,
        &[&base],
        json!({"Env": [PATH_ENV], "Cmd": ["sh"]}),
        "docker.io/library/busybox:latest",
    )
}

/// The bootcamp server binary, compiled from [`BOOTCAMP_SOURCE`] with the host's `rustc`
/// (static glibc) once per source version and cached under the temp dir.
pub fn bootcamp_binary() -> Result<PathBuf, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let key = &sha256(BOOTCAMP_SOURCE.as_bytes())[7..23];
    let dir = std::env::temp_dir().join(format!("timonier-bootcamp-{key}"));
    let bin = dir.join("node");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let tag = format!("{}-{:?}", std::process::id(), std::thread::current().id())
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let src = dir.join(format!("server-{tag}.rs"));
    let out = dir.join(format!("node-{tag}"));
    std::fs::write(&src, BOOTCAMP_SOURCE).map_err(|e| e.to_string())?;
    let res = Command::new(&rustc)
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "strip=symbols",
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    let _ = std::fs::remove_file(&src);
    if !res.status.success() {
        return Err(format!(
            "compiling the bootcamp server failed:\n{}",
            String::from_utf8_lossy(&res.stderr)
        ));
    }
    std::fs::rename(&out, &bin).map_err(|e| e.to_string())?;
    Ok(bin)
}

/// The text of the original app's `server.js`, for `kubectl exec … cat server.js`.
pub fn server_js(version: u8) -> String {
    format!(
        r#"var http = require('http');
var requests=0;
var podname= process.env.HOSTNAME;
var startTime;
var host;
var handleRequest = function(request, response) {{
  response.setHeader('Content-Type', 'text/plain');
  response.writeHead(200);
  response.write("Hello Kubernetes bootcamp! | Running on: ");
  response.write(host);
  response.end(" | v={version}\n");
  console.log("Running On:" ,host, "| Total Requests:", ++requests,"| App Uptime:", (new Date() - startTime)/1000 , "seconds", "| Log Time:",new Date());
}}
var www = http.createServer(handleRequest);
www.listen(8080,function () {{
    startTime = new Date();;
    host = process.env.HOSTNAME;
    console.log ("Kubernetes Bootcamp App Started At:",startTime, "| Running On: " ,host, "\n" );
}});
"#
    )
}

/// The app layer shared by every bootcamp version: `/usr/local/bin/node` (the server),
/// `/usr/local/bin/curl` (the same binary, client mode), `/usr/local/bin/grpc-health` (the
/// same binary, a gRPC health server for probe tests) and `/bin/bash` (runs busybox sh).
pub fn bootcamp_app_layer() -> Result<Layer, String> {
    let node = std::fs::read(bootcamp_binary()?).map_err(|e| e.to_string())?;
    layer(|t| {
        t.dir("bin", 0o755)?;
        t.file("bin/bash", 0o755, b"#!/bin/sh\nexec /bin/sh \"$@\"\n")?;
        t.dir("usr", 0o755)?;
        t.dir("usr/local", 0o755)?;
        t.dir("usr/local/bin", 0o755)?;
        t.file("usr/local/bin/node", 0o755, &node)?;
        t.symlink("usr/local/bin/curl", "node")?;
        t.symlink("usr/local/bin/grpc-health", "node")?;
        Ok(())
    })
}

/// Writes the kubernetes-bootcamp image of `version` (1 or 2) as an OCI layout in `dir`,
/// named `gcr.io/google-samples/kubernetes-bootcamp:v1` (version 1) or
/// `docker.io/jocatalin/kubernetes-bootcamp:vN`: layers busybox, app, `/server.js`.
/// Returns the manifest digest.
pub fn bootcamp_image(dir: &Path, version: u8) -> Result<String, String> {
    let base = busybox_layer()?;
    let app = bootcamp_app_layer()?;
    let js = server_js(version);
    let script = layer(|t| t.file("server.js", 0o644, js.as_bytes()))?;
    let config = json!({
        "Env": [PATH_ENV, "NPM_CONFIG_LOGLEVEL=info", "NODE_VERSION=6.3.1"],
        "Cmd": ["/bin/sh", "-c", "node server.js"],
        "WorkingDir": "/",
        "ExposedPorts": {"8080/tcp": {}},
    });
    let name = if version == 1 {
        "gcr.io/google-samples/kubernetes-bootcamp:v1".to_string()
    } else {
        format!("docker.io/jocatalin/kubernetes-bootcamp:v{version}")
    };
    write_layout(dir, &[&base, &app, &script], config, &name)
}

fn read_json(path: &Path) -> Result<(Vec<u8>, Value), String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v = serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((b, v))
}

fn blob_file(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Stores `bytes` as a blob of the layout and returns a descriptor for it.
fn put_json_blob(dir: &Path, media: &str, v: &Value) -> Result<Value, String> {
    let bytes = serde_json::to_vec(v).expect("serializes");
    let digest = sha256(&bytes);
    std::fs::write(blob_file(dir, &digest), &bytes).map_err(|e| e.to_string())?;
    Ok(json!({"mediaType": media, "digest": digest, "size": bytes.len()}))
}

/// Replaces the index.json entry of the layout `dir` by `desc`, keeping its annotations.
fn replace_top(dir: &Path, mut desc: Value) -> Result<String, String> {
    let (_, mut index) = read_json(&dir.join("index.json"))?;
    desc["annotations"] = index["manifests"][0]["annotations"].clone();
    let digest = desc["digest"].as_str().unwrap_or_default().to_string();
    index["manifests"] = json!([desc]);
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("serializes"),
    )
    .map_err(|e| e.to_string())?;
    Ok(digest)
}

/// Rewrites the image of the layout `dir` with Docker schema 2 media types (manifest,
/// config, layers), as `docker push` makes it. Returns the new manifest digest.
pub fn to_docker_schema2(dir: &Path) -> Result<String, String> {
    let (_, index) = read_json(&dir.join("index.json"))?;
    let d = index["manifests"][0]["digest"]
        .as_str()
        .ok_or("no manifest")?
        .to_string();
    let (_, mut m) = read_json(&blob_file(dir, &d))?;
    m["mediaType"] = json!(DOCKER_MANIFEST);
    m["config"]["mediaType"] = json!("application/vnd.docker.container.image.v1+json");
    for l in m["layers"].as_array_mut().into_iter().flatten() {
        l["mediaType"] = json!("application/vnd.docker.image.rootfs.diff.tar.gzip");
    }
    let desc = put_json_blob(dir, DOCKER_MANIFEST, &m)?;
    replace_top(dir, desc)
}

/// Wraps the image of the layout `dir` in a multi-platform index (OCI, or a Docker manifest
/// list with `docker`) listing a linux/arm64 variant first (same layers, its own config) and
/// then the original linux/amd64 manifest. Returns the index digest.
pub fn to_multi_arch(dir: &Path, docker: bool) -> Result<String, String> {
    let (_, index) = read_json(&dir.join("index.json"))?;
    let top = &index["manifests"][0];
    let d = top["digest"].as_str().ok_or("no manifest")?.to_string();
    let (m_bytes, m) = read_json(&blob_file(dir, &d))?;
    let media = m["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_string();
    let (_, mut config) = read_json(&blob_file(
        dir,
        m["config"]["digest"].as_str().unwrap_or_default(),
    ))?;
    config["architecture"] = json!("arm64");
    let config_media = m["config"]["mediaType"]
        .as_str()
        .unwrap_or(OCI_CONFIG)
        .to_string();
    let mut arm = m.clone();
    arm["config"] = put_json_blob(dir, &config_media, &config)?;
    let mut arm_desc = put_json_blob(dir, &media, &arm)?;
    arm_desc["platform"] = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    let amd_desc = json!({
        "mediaType": media, "digest": d, "size": m_bytes.len(),
        "platform": {"os": "linux", "architecture": "amd64"},
    });
    let list_media = if docker { DOCKER_LIST } else { OCI_INDEX };
    let list =
        json!({"schemaVersion": 2, "mediaType": list_media, "manifests": [arm_desc, amd_desc]});
    let desc = put_json_blob(dir, list_media, &list)?;
    replace_top(dir, desc)
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Pushes the (single) image of the OCI layout `layout_dir` to the registry at
/// `registry_addr` (`HOST:PORT` or `http://…` for plain HTTP, `https://…` for a test TLS registry) as `name` (`repo/name:tag`). Returns the manifest digest.
pub async fn push(registry_addr: &str, layout_dir: &Path, name: &str) -> Result<String, String> {
    push_with_auth(registry_addr, layout_dir, name, None).await
}

/// [`push`] with basic-auth credentials.
pub async fn push_with_auth(
    registry_addr: &str,
    layout_dir: &Path,
    name: &str,
    auth: Option<(&str, &str)>,
) -> Result<String, String> {
    use oci_client::client::{ClientConfig, ClientProtocol};
    use oci_client::secrets::RegistryAuth;
    use oci_client::{Client, Reference, RegistryOperation};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let (_, index) = read_json(&layout_dir.join("index.json"))?;
    let top = index["manifests"][0]["digest"]
        .as_str()
        .ok_or("index.json has no manifest")?
        .to_string();
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (name, "latest"),
    };
    // `https://HOST:PORT` means a TLS registry with a test certificate.
    let (registry_addr, tls) = match registry_addr.strip_prefix("https://") {
        Some(a) => (a, true),
        None => (registry_addr.strip_prefix("http://").unwrap_or(registry_addr), false),
    };
    let client = Client::try_from(ClientConfig {
        protocol: if tls { ClientProtocol::Https } else { ClientProtocol::Http },
        accept_invalid_certificates: tls,
        ..ClientConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let auth = match auth {
        Some((u, p)) => RegistryAuth::Basic(u.into(), p.into()),
        None => RegistryAuth::Anonymous,
    };
    let tagged = Reference::with_tag(registry_addr.to_string(), repo.to_string(), tag.to_string());
    client
        .auth(&tagged, &auth, RegistryOperation::Push)
        .await
        .map_err(|e| format!("auth to {registry_addr}: {e}"))?;
    let ctx = PushCtx {
        client: &client,
        dir: layout_dir,
        addr: registry_addr,
        repo,
    };
    ctx.manifest(&top, &tagged).await?;
    Ok(top)
}

struct PushCtx<'a> {
    client: &'a oci_client::Client,
    dir: &'a Path,
    addr: &'a str,
    repo: &'a str,
}

impl PushCtx<'_> {
    /// Pushes a manifest (or index, children first) and its blobs, under `reference`.
    async fn manifest(
        &self,
        digest: &str,
        reference: &oci_client::Reference,
    ) -> Result<(), String> {
        let (bytes, m) = read_json(&blob_file(self.dir, digest))?;
        if let Some(children) = m["manifests"].as_array() {
            for c in children {
                let d = c["digest"].as_str().unwrap_or_default().to_string();
                let r = oci_client::Reference::with_digest(
                    self.addr.to_string(),
                    self.repo.to_string(),
                    d.clone(),
                );
                Box::pin(self.manifest(&d, &r)).await?;
            }
        } else {
            let mut digests = vec![m["config"]["digest"]
                .as_str()
                .unwrap_or_default()
                .to_string()];
            for l in m["layers"].as_array().into_iter().flatten() {
                digests.push(l["digest"].as_str().unwrap_or_default().to_string());
            }
            for d in digests {
                let data =
                    std::fs::read(blob_file(self.dir, &d)).map_err(|e| format!("blob {d}: {e}"))?;
                self.client
                    .push_blob(reference, data, &d)
                    .await
                    .map_err(|e| format!("push blob {d} to {}: {e}", self.addr))?;
            }
        }
        let media = m["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_string();
        self.client
            .push_manifest_raw(
                reference,
                bytes,
                http::HeaderValue::from_str(&media).map_err(|e| e.to_string())?,
            )
            .await
            .map_err(|e| format!("push manifest {digest} to {}: {e}", self.addr))?;
        Ok(())
    }
}
