//! Reading the two image archive formats: the OCI image layout (`oci-layout`, `index.json`,
//! `blobs/`) as a directory or tar, and the docker archive of `docker save` (`manifest.json`
//! with `Config`, `RepoTags`, `Layers`). Both end in [`ImageStore::commit`].

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::compression::{decompress, detect, Compression};
use super::error::{Error, IoContext, Result};
use super::reference::validate_digest;
use super::store::{HashingReader, Image, ImageStore};
use super::unpack::{unpack_layer, WhiteoutMode};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Removes a staging directory when the import ends, however it ends.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Imports a directory or a (possibly gzip'd) tar holding an OCI layout or docker archive.
pub(crate) fn import(store: &ImageStore, path: &Path) -> Result<Vec<Image>> {
    let meta = fs::metadata(path).at(path)?;
    let _staging;
    let dir = if meta.is_dir() {
        path.to_path_buf()
    } else {
        let dir = store.tmp_path("import");
        fs::create_dir(&dir).at(&dir)?;
        _staging = Staging(dir.clone());
        let file = fs::File::open(path).at(path)?;
        let name = path.display().to_string();
        unpack_layer(decompress(file, path)?, &dir, WhiteoutMode::Apply, &name).map_err(
            |e| match e {
                Error::Layer { reason, .. } => Error::Invalid {
                    path: path.into(),
                    reason: format!("not a readable tar: {reason}"),
                },
                e => e,
            },
        )?;
        dir
    };
    let input = Input {
        dir: dir.canonicalize().at(&dir)?,
        path: path.to_path_buf(),
        ingested: Default::default(),
    };
    let result = if input.dir.join("index.json").is_file() {
        import_oci(store, &input)
    } else if input.dir.join("manifest.json").is_file() {
        import_docker(store, &input)
    } else {
        Err(Error::UnknownFormat(path.to_path_buf()))
    };
    if result.is_err() {
        store.discard_blobs(&input.ingested.borrow());
    }
    result
}

struct Input {
    /// The layout or archive contents, canonical.
    dir: PathBuf,
    /// What the user gave, for messages.
    path: PathBuf,
    /// Blobs stored so far, to discard if the import fails.
    ingested: std::cell::RefCell<Vec<String>>,
}

impl Input {
    /// Stores a file of the input as a blob and remembers it.
    fn ingest(
        &self,
        store: &ImageStore,
        p: &Path,
        expected: Option<&str>,
        what: &str,
    ) -> Result<(String, u64)> {
        let r = store.ingest(fs::File::open(p).at(p)?, expected, what)?;
        self.ingested.borrow_mut().push(r.0.clone());
        Ok(r)
    }

    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::Invalid {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Resolves a path named by the archive's metadata, refusing one that leaves the archive.
    fn file(&self, rel: &str) -> Result<PathBuf> {
        let p = self.dir.join(rel);
        let c = p
            .canonicalize()
            .map_err(|e| self.invalid(format!("{rel}: {e}")))?;
        if !c.starts_with(&self.dir) || rel.starts_with('/') {
            return Err(self.invalid(format!("{rel} points outside the archive")));
        }
        Ok(c)
    }

    fn json(&self, rel: &str) -> Result<Value> {
        let p = self.file(rel)?;
        let b = fs::read(&p).at(&p)?;
        serde_json::from_slice(&b)
            .map_err(|e| self.invalid(format!("{rel} is not valid JSON: {e}")))
    }

    /// Reads a blob of an OCI layout, verifying its digest.
    fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        let hex = validate_digest(digest)?;
        let p = self.file(&format!("blobs/sha256/{hex}"))?;
        let b = fs::read(&p).at(&p)?;
        let mut h = HashingReader::new(&b[..]);
        std::io::copy(&mut h, &mut std::io::sink()).at(&p)?;
        let actual = h.finish().0;
        if actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {digest} in {}", self.path.display()),
                expected: digest.into(),
                actual,
            });
        }
        Ok(b)
    }
}

fn import_oci(store: &ImageStore, input: &Input) -> Result<Vec<Image>> {
    let index = input.json("index.json")?;
    let descriptors = index["manifests"]
        .as_array()
        .ok_or_else(|| input.invalid("index.json has no manifests"))?;
    let mut out = Vec::new();
    for d in descriptors {
        let ann = &d["annotations"];
        let name = ann[CONTAINERD_NAME]
            .as_str()
            .or_else(|| ann[REF_NAME].as_str());
        let refs: Vec<String> = name.into_iter().map(String::from).collect();
        let manifest = resolve_platform(input, d)?;
        let m: Value = serde_json::from_slice(&manifest)
            .map_err(|e| input.invalid(format!("manifest is not JSON: {e}")))?;
        let mut blobs = vec![&m["config"]];
        blobs.extend(m["layers"].as_array().into_iter().flatten());
        for b in blobs {
            let digest = b["digest"]
                .as_str()
                .ok_or_else(|| input.invalid("a descriptor has no digest"))?;
            let hex = validate_digest(digest)?;
            let p = input.file(&format!("blobs/sha256/{hex}"))?;
            let size = fs::metadata(&p).at(&p)?.len();
            if b["size"].as_u64().is_some_and(|s| s != size) {
                return Err(input.invalid(format!(
                    "blob {digest} is {size} bytes but its descriptor says {}",
                    b["size"]
                )));
            }
            let what = format!("blob {digest} in {}", input.path.display());
            input.ingest(store, &p, Some(digest), &what)?;
        }
        out.push(store.commit(&manifest, &refs)?);
    }
    Ok(out)
}

/// Returns the manifest a descriptor names; for an index, the one for this machine's platform.
fn resolve_platform(input: &Input, d: &Value) -> Result<Vec<u8>> {
    let digest = d["digest"]
        .as_str()
        .ok_or_else(|| input.invalid("a descriptor has no digest"))?;
    let bytes = input.blob(digest)?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| input.invalid(format!("{digest} is not JSON: {e}")))?;
    let Some(list) = v["manifests"].as_array() else {
        return Ok(bytes);
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let pick = list
        .iter()
        .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch)
        .ok_or_else(|| input.invalid(format!("index {digest} has no manifest for linux/{arch}")))?;
    resolve_platform(input, pick)
}

fn import_docker(store: &ImageStore, input: &Input) -> Result<Vec<Image>> {
    let manifest = input.json("manifest.json")?;
    let entries = manifest
        .as_array()
        .ok_or_else(|| input.invalid("manifest.json is not a list"))?;
    let mut out = Vec::new();
    for e in entries {
        let config_rel = e["Config"]
            .as_str()
            .ok_or_else(|| input.invalid("a manifest.json entry has no Config"))?;
        let (config_digest, config_size) = ingest_file(store, input, config_rel)?;
        let mut layers = Vec::new();
        for l in e["Layers"].as_array().into_iter().flatten() {
            let rel = l
                .as_str()
                .ok_or_else(|| input.invalid("a layer path is not a string"))?;
            let (digest, size) = ingest_file(store, input, rel)?;
            let p = input.file(rel)?;
            let mut head = [0u8; 4];
            let n = std::io::Read::read(&mut fs::File::open(&p).at(&p)?, &mut head).at(&p)?;
            let media = match detect(&head[..n]) {
                Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::None => "application/vnd.oci.image.layer.v1.tar",
            };
            layers.push(json!({"mediaType": media, "digest": digest, "size": size}));
        }
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": layers,
        });
        let refs: Vec<String> = e["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(String::from))
            .collect();
        out.push(store.commit(&serde_json::to_vec(&m).expect("serializes"), &refs)?);
    }
    Ok(out)
}

/// Stores a file of a docker archive as a blob. Files named by their digest (`<hex>.json`,
/// `blobs/sha256/<hex>`) are verified against it.
fn ingest_file(store: &ImageStore, input: &Input, rel: &str) -> Result<(String, u64)> {
    let p = input.file(rel)?;
    let stem = Path::new(rel)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let stem = stem.strip_suffix(".json").unwrap_or(stem);
    let named = format!("sha256:{stem}");
    let expected = validate_digest(&named).is_ok().then_some(named.as_str());
    let what = format!("{rel} in {}", input.path.display());
    input.ingest(store, &p, expected, &what)
}
