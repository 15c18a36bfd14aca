//! [`ImageStore`]: blobs, unpacked layers and the reference index, and the operations on them.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::compression::{check_layer_media_type, decompress};
use super::error::{Error, IoContext, Result};
use super::reference::{digest_of, normalize, validate_digest};
use super::unpack::{unpack_layer_over, WhiteoutMode};

/// An image as the store records it: what the kubelet needs to run it and to report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Normalized names (`docker.io/library/busybox:latest`); empty for an untagged image.
    pub references: Vec<String>,
    /// Digest of the manifest: the image's identity in a registry (`RepoDigests`).
    pub manifest_digest: String,
    /// Digest of the config: the image ID that CRI and `kubectl describe` show.
    pub config_digest: String,
    /// Uncompressed layer digests (diffIDs), bottom layer first; each names a layer directory.
    pub layers: Vec<String>,
    /// Layer blob digests as stored (possibly compressed), in the same order as `layers`.
    pub layer_blobs: Vec<String>,
    /// Bytes of manifest, config and layer blobs: the size the node status reports.
    pub size: u64,
    /// Operating system from the config (`linux`).
    pub os: String,
    /// Architecture from the config (`amd64`).
    pub architecture: String,
    /// The runtime defaults of the image.
    pub config: ImageConfig,
}

/// The part of an image config a container is started from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `ENTRYPOINT`: replaced by a pod's `command`.
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`: replaced by a pod's `args` (and dropped when `command` is set).
    pub cmd: Option<Vec<String>>,
    /// `ENV` as `NAME=value`, overridden by the pod's env.
    pub env: Vec<String>,
    /// `WORKDIR`, unless the pod sets `workingDir`; empty means `/`.
    pub working_dir: String,
    /// `USER` (`uid`, `uid:gid` or a name), unless the pod sets `runAsUser`.
    pub user: String,
    /// `EXPOSE` entries such as `80/tcp`, for information.
    pub exposed_ports: Vec<String>,
    /// `STOPSIGNAL`, used instead of SIGTERM when set.
    pub stop_signal: Option<String>,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
}

/// What [`ImageStore::remove`] did, so callers can log and report it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Removed {
    /// References that no longer name an image.
    pub untagged: Vec<String>,
    /// Manifest digest of the image deleted, if the last reference went (or a digest was given).
    pub deleted: Option<String>,
    /// diffIDs of the layer directories deleted (those no remaining image uses).
    pub layers_removed: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    version: u32,
    images: Vec<Image>,
    /// Manifest digest → when a container last used the image (or it was stored), in Unix
    /// milliseconds: what image garbage collection orders by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    last_used: BTreeMap<String, u64>,
}

/// A content-addressed image store under one directory. Methods take `&self` and are safe to
/// call from several threads; commits and removals are serialized by one lock. Clones are
/// handles on the same store (they share the index), cheap to move into blocking tasks.
#[derive(Clone)]
pub struct ImageStore {
    root: PathBuf,
    index: Arc<Mutex<Index>>,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, e.g. `<data-dir>/images`, and discards
    /// staging files left by an interrupted import.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for d in ["blobs/sha256", "layers", "tmp"] {
            fs::create_dir_all(root.join(d)).at(root.join(d))?;
        }
        let tmp = root.join("tmp");
        for e in fs::read_dir(&tmp).at(&tmp)? {
            let p = e.at(&tmp)?.path();
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&root, &layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let path = root.join("images.json");
        let index = match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::CorruptIndex {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index {
                version: 1,
                ..Index::default()
            },
            Err(e) => return Err(e).at(path),
        };
        Ok(Self {
            root,
            index: Arc::new(Mutex::new(index)),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest is (or would be) stored.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("blobs/sha256")
            .join(validate_digest(digest)?))
    }

    /// The directory holding the unpacked layer with this diffID (an overlayfs lowerdir).
    pub fn layer_dir(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.root.join("layers").join(validate_digest(diff_id)?))
    }

    /// The layer directories of an image in overlayfs `lowerdir=` order: topmost layer first.
    pub fn lower_dirs(&self, image: &Image) -> Result<Vec<PathBuf>> {
        image
            .layers
            .iter()
            .rev()
            .map(|d| self.layer_dir(d))
            .collect()
    }

    /// Every image, in import order.
    pub fn list(&self) -> Vec<Image> {
        self.lock().images.clone()
    }

    /// The image a reference names: a name (normalized, so `busybox` works), `name@sha256:…`,
    /// or a bare manifest or config digest (`sha256:…`, the image ID).
    pub fn get(&self, reference: &str) -> Result<Image> {
        let index = self.lock();
        find(&index, reference)?
            .map(|i| index.images[i].clone())
            .ok_or_else(|| Error::NotFound(reference.to_string()))
    }

    /// Imports every image of an OCI image layout (a directory or a tar of one) or of a
    /// docker-archive tar (`docker save`), verifying all digests. Returns the images recorded.
    pub fn import(&self, path: impl AsRef<Path>) -> Result<Vec<Image>> {
        super::import::import(self, path.as_ref())
    }

    /// Stores a blob read from `reader`, verifying it hashes to `expected` (for pulls: stream
    /// each layer here, then [`commit`](Self::commit) the manifest). Returns the blob's size.
    /// A blob already present is not read again.
    pub fn write_blob(&self, reader: impl Read, expected: &str) -> Result<u64> {
        validate_digest(expected)?;
        Ok(self.ingest(reader, Some(expected), expected)?.1)
    }

    /// Stores a blob, verifying it against `expected` if given; returns its digest and size.
    pub(crate) fn ingest(
        &self,
        reader: impl Read,
        expected: Option<&str>,
        what: &str,
    ) -> Result<(String, u64)> {
        if let Some(d) = expected {
            let p = self.blob_path(d)?;
            if let Ok(m) = fs::metadata(&p) {
                return Ok((d.to_string(), m.len()));
            }
        }
        let tmp = self.tmp_path("blob");
        let mut out = fs::File::create(&tmp).at(&tmp)?;
        let mut h = HashingReader::new(reader);
        let res = io::copy(&mut h, &mut out).and_then(|_| out.sync_all());
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(Error::Io {
                path: PathBuf::from(what),
                source: e,
            });
        }
        let (digest, size) = h.finish();
        if let Some(exp) = expected {
            if exp != digest {
                let _ = fs::remove_file(&tmp);
                return Err(Error::DigestMismatch {
                    what: what.to_string(),
                    expected: exp.to_string(),
                    actual: digest,
                });
            }
        }
        let dest = self.blob_path(&digest)?;
        fs::rename(&tmp, &dest).at(&dest)?;
        Ok((digest, size))
    }

    /// Records an image from its manifest, whose config and layer blobs must already be in the
    /// store: unpacks the layers not yet unpacked (verifying their diffIDs), stores the
    /// manifest, and points `references` (normalized here) at it, moving them from any image
    /// they named before.
    pub fn commit(&self, manifest: &[u8], references: &[String]) -> Result<Image> {
        let refs = references
            .iter()
            .map(|r| normalize(r))
            .collect::<Result<Vec<_>>>()?;
        let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(manifest)));
        let invalid = |reason: String| Error::Invalid {
            path: PathBuf::from(&manifest_digest),
            reason,
        };
        let m: Value = serde_json::from_slice(manifest)
            .map_err(|e| invalid(format!("manifest is not JSON: {e}")))?;
        if m.get("manifests").is_some() {
            return Err(invalid(
                "this is an index; commit the manifest of one platform".into(),
            ));
        }
        let config_digest = m["config"]["digest"]
            .as_str()
            .ok_or_else(|| invalid("manifest has no config digest".into()))?;
        let config_path = self.blob_path(config_digest)?;
        let config_bytes = fs::read(&config_path).map_err(|e| {
            invalid(format!("config blob {config_digest} is not in the store ({e}); write_blob it before commit"))
        })?;
        let config: Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| invalid(format!("image config is not JSON: {e}")))?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let layers = m["layers"].as_array().cloned().unwrap_or_default();
        if layers.len() != diff_ids.len() {
            return Err(invalid(format!(
                "{} layers but {} diff_ids in the config",
                layers.len(),
                diff_ids.len()
            )));
        }
        let mut size = manifest.len() as u64 + config_bytes.len() as u64;
        let mut index = self.lock();
        let mut fresh = Vec::new();
        let result = self.commit_layers(&layers, &diff_ids, &mut fresh, &mut size);
        let layer_blobs = match result {
            Ok(b) => b,
            Err(e) => {
                // Layers unpacked for this image alone would be orphans.
                for d in fresh {
                    let _ = fs::remove_dir_all(d);
                }
                return Err(e);
            }
        };
        let image = Image {
            references: Vec::new(),
            manifest_digest: manifest_digest.clone(),
            config_digest: config_digest.to_string(),
            layers: diff_ids,
            layer_blobs,
            size,
            os: config["os"].as_str().unwrap_or("linux").to_string(),
            architecture: config["architecture"].as_str().unwrap_or("").to_string(),
            config: parse_config(&config["config"]),
        };
        self.ingest(manifest, Some(&manifest_digest), "manifest")?;
        for img in index.images.iter_mut() {
            img.references.retain(|r| !refs.contains(r));
        }
        let pos = match index
            .images
            .iter()
            .position(|i| i.manifest_digest == manifest_digest)
        {
            Some(p) => p,
            None => {
                index.images.push(image);
                index.images.len() - 1
            }
        };
        for r in refs {
            index.images[pos].references.push(r);
        }
        index
            .last_used
            .insert(manifest_digest.clone(), now_millis());
        let out = index.images[pos].clone();
        self.save(&index)?;
        Ok(out)
    }

    /// Unpacks the layers of a manifest being committed; returns their blob digests and adds
    /// their sizes to `size`. Directories created here are pushed to `fresh`.
    fn commit_layers(
        &self,
        layers: &[Value],
        diff_ids: &[String],
        fresh: &mut Vec<PathBuf>,
        size: &mut u64,
    ) -> Result<Vec<String>> {
        let mut layer_blobs = Vec::new();
        for (i, (layer, diff_id)) in layers.iter().zip(diff_ids).enumerate() {
            let invalid = |reason: String| Error::Invalid {
                path: PathBuf::from(diff_id),
                reason,
            };
            let blob = layer["digest"]
                .as_str()
                .ok_or_else(|| invalid("a layer has no digest".into()))?;
            let media = layer["mediaType"].as_str().unwrap_or("");
            check_layer_media_type(media).map_err(|r| invalid(format!("layer {blob}: {r}")))?;
            let path = self.blob_path(blob)?;
            *size += fs::metadata(&path)
                .map_err(|e| {
                    invalid(format!(
                        "layer blob {blob} is not in the store ({e}); write_blob it before commit"
                    ))
                })?
                .len();
            // The layers below, topmost first: where hard links into earlier layers point.
            let parents = diff_ids[..i]
                .iter()
                .rev()
                .map(|d| self.layer_dir(d))
                .collect::<Result<Vec<_>>>()?;
            if self.ensure_layer(&path, blob, diff_id, &parents)? {
                fresh.push(self.layer_dir(diff_id)?);
            }
            layer_blobs.push(blob.to_string());
        }
        Ok(layer_blobs)
    }

    /// Unpacks a layer blob (plain, gzip or zstd) into its layer directory unless it is there
    /// already, on top of the (already unpacked) `parents`, topmost first; the uncompressed
    /// stream must hash to `diff_id`. Returns whether it unpacked it.
    fn ensure_layer(
        &self,
        blob_path: &Path,
        blob: &str,
        diff_id: &str,
        parents: &[PathBuf],
    ) -> Result<bool> {
        let dest = self.layer_dir(diff_id)?;
        if dest.is_dir() {
            return Ok(false);
        }
        let tmp = self.tmp_path("layer");
        fs::create_dir(&tmp).at(&tmp)?;
        let result = (|| {
            let file = fs::File::open(blob_path).at(blob_path)?;
            let mut h = HashingReader::new(decompress(file, blob_path)?);
            unpack_layer_over(&mut h, &tmp, WhiteoutMode::Overlay, parents, blob)?;
            io::copy(&mut h, &mut io::sink()).map_err(|e| Error::Layer {
                layer: blob.to_string(),
                reason: format!("cannot read to the end: {e}"),
            })?;
            let actual = h.finish().0;
            if actual != diff_id {
                return Err(Error::DigestMismatch {
                    what: format!("uncompressed layer {blob}"),
                    expected: diff_id.into(),
                    actual,
                });
            }
            fs::rename(&tmp, &dest).at(&dest)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|()| true)
    }

    /// Removes a reference. A name loses only that tag, and the image goes when its last
    /// name does; a digest (`sha256:…` or `name@sha256:…`) removes the image with all its
    /// names. Blobs and layer directories are deleted only when no remaining image uses them.
    pub fn remove(&self, reference: &str) -> Result<Removed> {
        let mut index = self.lock();
        let pos = find(&index, reference)?.ok_or_else(|| Error::NotFound(reference.to_string()))?;
        let mut removed = Removed::default();
        let by_digest = reference.starts_with("sha256:") || reference.contains('@');
        if by_digest {
            removed.untagged = std::mem::take(&mut index.images[pos].references);
        } else {
            let name = normalize(reference)?;
            index.images[pos].references.retain(|r| *r != name);
            removed.untagged.push(name);
        }
        if index.images[pos].references.is_empty() {
            let image = index.images.remove(pos);
            index.last_used.remove(&image.manifest_digest);
            removed.deleted = Some(image.manifest_digest.clone());
            let used = |f: &dyn Fn(&Image) -> bool| index.images.iter().any(f);
            let mut blobs = vec![image.manifest_digest.clone(), image.config_digest.clone()];
            blobs.extend(image.layer_blobs.iter().cloned());
            for b in blobs {
                let in_use = used(&|i| {
                    i.manifest_digest == b || i.config_digest == b || i.layer_blobs.contains(&b)
                });
                if !in_use {
                    let p = self.blob_path(&b)?;
                    let _ = fs::remove_file(&p);
                }
            }
            for d in &image.layers {
                if !used(&|i| i.layers.contains(d)) && !removed.layers_removed.contains(d) {
                    let dir = self.layer_dir(d)?;
                    // Move aside first, so a half-deleted layer never looks complete.
                    let trash = self.tmp_path("trash");
                    if fs::rename(&dir, &trash).is_ok() {
                        fs::remove_dir_all(&trash).at(&trash)?;
                    }
                    removed.layers_removed.push(d.clone());
                }
            }
        }
        self.save(&index)?;
        Ok(removed)
    }

    /// Records that a container is being started from the image `reference` names (any form
    /// [`get`](Self::get) accepts), for least-recently-used garbage collection.
    pub fn touch(&self, reference: &str) -> Result<()> {
        let mut index = self.lock();
        let pos = find(&index, reference)?.ok_or_else(|| Error::NotFound(reference.to_string()))?;
        let digest = index.images[pos].manifest_digest.clone();
        index.last_used.insert(digest, now_millis());
        self.save(&index)
    }

    /// When the image `reference` names was last used ([`touch`](Self::touch)ed, pulled or
    /// imported); `None` if unknown (an index written before this was recorded).
    pub fn last_used(&self, reference: &str) -> Result<Option<SystemTime>> {
        let index = self.lock();
        let pos = find(&index, reference)?.ok_or_else(|| Error::NotFound(reference.to_string()))?;
        Ok(index
            .last_used
            .get(&index.images[pos].manifest_digest)
            .map(|ms| UNIX_EPOCH + Duration::from_millis(*ms)))
    }

    /// Every image with its last-used time (`None` if unknown), in import order.
    pub fn list_with_last_used(&self) -> Vec<(Image, Option<SystemTime>)> {
        let index = self.lock();
        index
            .images
            .iter()
            .map(|i| {
                let t = index
                    .last_used
                    .get(&i.manifest_digest)
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(*ms));
                (i.clone(), t)
            })
            .collect()
    }

    /// Deletes blobs and layer directories that no image references: what failed imports and
    /// removed images leave behind. Not to be run while a pull is between
    /// [`write_blob`](Self::write_blob) and [`commit`](Self::commit): its blobs would go too.
    /// Returns the number of blobs and layer directories deleted.
    pub fn prune(&self) -> Result<usize> {
        let index = self.lock();
        let mut n = 0;
        let blobs = self.root.join("blobs/sha256");
        for e in fs::read_dir(&blobs).at(&blobs)? {
            let e = e.at(&blobs)?;
            let d = format!("sha256:{}", e.file_name().to_string_lossy());
            if !index.images.iter().any(|i| {
                i.manifest_digest == d || i.config_digest == d || i.layer_blobs.contains(&d)
            }) {
                fs::remove_file(e.path()).at(e.path())?;
                n += 1;
            }
        }
        let layers = self.root.join("layers");
        for e in fs::read_dir(&layers).at(&layers)? {
            let e = e.at(&layers)?;
            let d = format!("sha256:{}", e.file_name().to_string_lossy());
            if !index.images.iter().any(|i| i.layers.contains(&d)) {
                let trash = self.tmp_path("trash");
                fs::rename(e.path(), &trash).at(e.path())?;
                fs::remove_dir_all(&trash).at(&trash)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Deletes the given blobs unless an image references them (cleanup after a failed import).
    pub(crate) fn discard_blobs(&self, digests: &[String]) {
        let index = self.lock();
        for d in digests {
            if !index.images.iter().any(|i| {
                i.manifest_digest == *d || i.config_digest == *d || i.layer_blobs.contains(d)
            }) {
                if let Ok(p) = self.blob_path(d) {
                    let _ = fs::remove_file(p);
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh path under `<root>/tmp` (same filesystem as blobs and layers, so renames work).
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    fn save(&self, index: &Index) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(index).expect("the index serializes");
        write_atomic(&self.root, &self.root.join("images.json"), &bytes)
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Finds the image a reference names (see [`ImageStore::get`]).
fn find(index: &Index, reference: &str) -> Result<Option<usize>> {
    if reference.starts_with("sha256:") {
        validate_digest(reference)?;
        return Ok(index
            .images
            .iter()
            .position(|i| i.manifest_digest == reference || i.config_digest == reference));
    }
    let name = normalize(reference)?;
    Ok(match digest_of(&name) {
        Some(d) => index.images.iter().position(|i| i.manifest_digest == d),
        None => index
            .images
            .iter()
            .position(|i| i.references.contains(&name)),
    })
}

/// Extracts the runtime defaults from an image config's `config` object (fields may be null).
fn parse_config(c: &Value) -> ImageConfig {
    let strings = |v: &Value| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect::<Vec<_>>()
        })
    };
    let string = |v: &Value| v.as_str().unwrap_or("").to_string();
    ImageConfig {
        entrypoint: strings(&c["Entrypoint"]),
        cmd: strings(&c["Cmd"]),
        env: strings(&c["Env"]).unwrap_or_default(),
        working_dir: string(&c["WorkingDir"]),
        user: string(&c["User"]),
        exposed_ports: c["ExposedPorts"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
        stop_signal: c["StopSignal"].as_str().map(String::from),
        labels: c["Labels"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Writes a file so that readers see the old or the new content, never a mix: temp file,
/// fsync, rename, fsync of the directory.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).at(&tmp)?;
    fs::rename(&tmp, path).at(path)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// A reader that computes the sha256 and length of everything read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The digest (`sha256:<hex>`) and length of what was read.
    pub(crate) fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.len,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}
