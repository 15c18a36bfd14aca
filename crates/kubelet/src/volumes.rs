//! Pod volumes made ready on the node before a container starts: emptyDir (a directory, or
//! tmpfs for `medium: Memory`), hostPath, and the file-backed kinds (configMap, secret,
//! downwardAPI, projected) written under the pod's directory and refreshed on every sync, so
//! a changed ConfigMap shows up in running containers as upstream's atomic writer does.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret, Volume};

/// Where a volume's content lives on the node and how it is mounted.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Bind-mount this directory (or file).
    Path(PathBuf),
    /// A tmpfs of this size limit (bytes, 0 = default).
    Tmpfs(u64),
}

/// A volume the kubelet could not make ready: reported as a `FailedMount` event.
#[derive(Debug, Clone, PartialEq)]
pub struct MountError(pub String);

/// The service-account token projections of the pod's volumes: (volume, path, audience,
/// expirationSeconds).
pub fn token_projections(pod: &Pod) -> Vec<(String, String, Option<String>, i64)> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .flat_map(|v| {
            v.projected.iter().flat_map(|p| p.sources.iter().flatten()).filter_map(|s| s.service_account_token.as_ref()).map(|t| {
                (v.name.clone(), t.path.clone(), t.audience.clone(), t.expiration_seconds.unwrap_or(3600))
            })
        })
        .collect()
}

/// The ConfigMaps and Secrets the pod's volumes refer to (name, optional).
pub fn referenced_objects(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let (mut cms, mut secrets) = (vec![], vec![]);
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.config_map {
            cms.push(c.name.clone());
        }
        if let Some(s) = &v.secret {
            secrets.extend(s.secret_name.clone());
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &src.config_map {
                cms.push(c.name.clone());
            }
            if let Some(s) = &src.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    (cms, secrets)
}

fn select(data: BTreeMap<String, Vec<u8>>, items: &Option<Vec<KeyToPath>>, kind: &str, ns: &str, name: &str, optional: bool) -> Result<Files, MountError> {
    match items {
        None => Ok(data.into_iter().map(|(k, v)| (k, v, None)).collect()),
        Some(items) => {
            let mut out = vec![];
            for it in items {
                match data.get(&it.key) {
                    Some(v) => out.push((it.path.clone(), v.clone(), it.mode)),
                    None if optional => {}
                    None => {
                        let what = if kind == "configmap" { "config" } else { "secret" };
                        return Err(MountError(format!("{kind} references non-existent {what} key: {} (in {ns}/{name})", it.key)));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Files of a volume: (path, content, mode).
type Files = Vec<(String, Vec<u8>, Option<i32>)>;

/// The files of a configMap volume or projection; an optional missing one gives none.
fn configmap_files(src: &VolumeSources, ns: &str, name: &str, items: &Option<Vec<KeyToPath>>, optional: Option<bool>) -> Result<Files, MountError> {
    let optional = optional == Some(true);
    match src.configmaps.get(name) {
        Some(cm) => select(configmap_data(cm), items, "configmap", ns, name, optional),
        None if optional => Ok(vec![]),
        None => Err(MountError(format!("configmap \"{name}\" not found"))),
    }
}

/// The files of a secret volume or projection; an optional missing one gives none.
fn secret_files(src: &VolumeSources, ns: &str, name: &str, items: &Option<Vec<KeyToPath>>, optional: Option<bool>) -> Result<Files, MountError> {
    let optional = optional == Some(true);
    match src.secrets.get(name) {
        Some(s) => select(secret_data(s), items, "secret", ns, name, optional),
        None if optional => Ok(vec![]),
        None => Err(MountError(format!("secret \"{name}\" not found"))),
    }
}

fn configmap_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut d: BTreeMap<String, Vec<u8>> = cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    d.extend(cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
    d
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

/// Writes `files` into `dir` so that readers never see a half-written set: the new content
/// goes to a fresh timestamped directory, then the `..data` symlink is swapped atomically
/// and each top-level name points through it, as upstream's AtomicWriter lays it out.
pub fn write_atomic(dir: &Path, files: &[(String, Vec<u8>, Option<i32>)], default_mode: i32) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let current: Vec<(String, Vec<u8>, u32)> = files.iter().map(|(p, d, m)| (p.clone(), d.clone(), m.unwrap_or(default_mode) as u32)).collect();
    let stamp_file = dir.join("..data");
    // Unchanged content: nothing to do (keeps inotify watchers quiet).
    if let Ok(target) = fs::read_link(&stamp_file) {
        let old = dir.join(&target);
        let same = current.iter().all(|(p, d, _)| fs::read(old.join(p)).ok().as_deref() == Some(d.as_slice()))
            && count_files(&old) == current.len();
        if same {
            return Ok(());
        }
    }
    let stamp = format!("..{}", jiff::Timestamp::now().as_nanosecond());
    let new_dir = dir.join(&stamp);
    for (p, d, mode) in &current {
        if p.split('/').any(|c| c == ".." || c.is_empty()) {
            continue;
        }
        let path = new_dir.join(p);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, d)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode))?;
    }
    fs::create_dir_all(&new_dir)?;
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    let old_target = fs::read_link(&stamp_file).ok();
    fs::rename(&tmp_link, &stamp_file)?;
    let tops: std::collections::BTreeSet<String> = current.iter().filter_map(|(p, _, _)| p.split('/').next().map(str::to_string)).collect();
    for top in &tops {
        let link = dir.join(top);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{top}"), &link)?;
        }
    }
    // Names that are gone: drop their links.
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(&name) {
            let _ = fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old_target {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => n += count_files(&e.path()),
                Ok(_) => n += 1,
                Err(_) => {}
            }
        }
    }
    n
}

/// Lookups of the API objects a pod's volumes need.
pub struct VolumeSources<'a> {
    pub configmaps: &'a HashMap<String, ConfigMap>,
    pub secrets: &'a HashMap<String, Secret>,
    /// Values of downward API fields (`metadata.name`, `metadata.labels`, ...).
    pub field: &'a dyn Fn(&str) -> Option<String>,
    /// Service-account tokens of projected volumes, by (volume name, path).
    pub tokens: &'a HashMap<(String, String), String>,
    /// Where each persistentVolumeClaim's volume is on this node, or why it cannot be used.
    pub claims: &'a HashMap<String, Result<PathBuf, String>>,
}

/// Makes every volume of the pod ready under `pod_dir/volumes/<name>` and says where each
/// one's content is.
pub fn prepare(pod: &Pod, pod_dir: &Path, src: &VolumeSources) -> Result<HashMap<String, Source>, MountError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = HashMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = pod_dir.join("volumes").join(&v.name);
        let io = |e: std::io::Error| MountError(format!("MountVolume.SetUp failed for volume \"{}\" : {e}", v.name));
        let source = prepare_one(v, &ns, &dir, src).map_err(|e| MountError(format!("MountVolume.SetUp failed for volume \"{}\" : {}", v.name, e.0)))?;
        if let Source::Path(p) = &source {
            if v.host_path.is_none() && v.persistent_volume_claim.is_none() {
                fs::create_dir_all(p).map_err(io)?;
            }
            // emptyDir is world-writable, as upstream, so that any runAsUser can use it.
            if v.empty_dir.is_some() {
                fs::set_permissions(p, fs::Permissions::from_mode(0o777)).map_err(io)?;
            }
        }
        out.insert(v.name.clone(), source);
    }
    Ok(out)
}

fn prepare_one(v: &Volume, ns: &str, dir: &Path, src: &VolumeSources) -> Result<Source, MountError> {
    let io = |e: std::io::Error| MountError(e.to_string());
    if let Some(e) = &v.empty_dir {
        if e.medium.as_deref() == Some("Memory") {
            let size = e.size_limit.as_ref().and_then(|q| crate::env::parse_quantity(&q.0)).unwrap_or(0.0) as u64;
            return Ok(Source::Tmpfs(size));
        }
        return Ok(Source::Path(dir.to_path_buf()));
    }
    if let Some(h) = &v.host_path {
        let p = PathBuf::from(&h.path);
        match h.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => fs::create_dir_all(&p).map_err(io)?,
            "FileOrCreate"
                if !p.exists() => {
                    if let Some(parent) = p.parent() {
                        fs::create_dir_all(parent).map_err(io)?;
                    }
                    fs::write(&p, b"").map_err(io)?;
                }
            "Directory" if !p.is_dir() => return Err(MountError(format!("hostPath type check failed: {} is not a directory", h.path))),
            "File" if !p.is_file() => return Err(MountError(format!("hostPath type check failed: {} is not a file", h.path))),
            "Socket" | "CharDevice" | "BlockDevice" if !p.exists() => return Err(MountError(format!("hostPath type check failed: {} does not exist", h.path))),
            _ => {}
        }
        return Ok(Source::Path(p));
    }
    if let Some(c) = &v.persistent_volume_claim {
        return match src.claims.get(&c.claim_name) {
            Some(Ok(p)) => Ok(Source::Path(p.clone())),
            Some(Err(e)) => Err(MountError(e.clone())),
            None => Err(MountError(format!("persistentvolumeclaim \"{}\" not found", c.claim_name))),
        };
    }
    if let Some(c) = &v.config_map {
        let files = configmap_files(src, ns, &c.name, &c.items, c.optional)?;
        write_atomic(dir, &files, c.default_mode.unwrap_or(0o644)).map_err(io)?;
        return Ok(Source::Path(dir.to_path_buf()));
    }
    if let Some(s) = &v.secret {
        let files = secret_files(src, ns, s.secret_name.as_deref().unwrap_or(""), &s.items, s.optional)?;
        write_atomic(dir, &files, s.default_mode.unwrap_or(0o644)).map_err(io)?;
        return Ok(Source::Path(dir.to_path_buf()));
    }
    if let Some(d) = &v.downward_api {
        let files = downward_files(d.items.iter().flatten(), src)?;
        write_atomic(dir, &files, d.default_mode.unwrap_or(0o644)).map_err(io)?;
        return Ok(Source::Path(dir.to_path_buf()));
    }
    if let Some(p) = &v.projected {
        let mut files = vec![];
        for s in p.sources.iter().flatten() {
            if let Some(c) = &s.config_map {
                files.extend(configmap_files(src, ns, &c.name, &c.items, c.optional)?);
            }
            if let Some(sec) = &s.secret {
                files.extend(secret_files(src, ns, &sec.name, &sec.items, sec.optional)?);
            }
            if let Some(d) = &s.downward_api {
                files.extend(downward_files(d.items.iter().flatten(), src)?);
            }
            if let Some(t) = &s.service_account_token {
                let token = src.tokens.get(&(v.name.clone(), t.path.clone())).ok_or_else(|| MountError(format!("failed to fetch token for path {}", t.path)))?;
                files.push((t.path.clone(), token.clone().into_bytes(), None));
            }
        }
        write_atomic(dir, &files, p.default_mode.unwrap_or(0o644)).map_err(io)?;
        return Ok(Source::Path(dir.to_path_buf()));
    }
    Err(MountError("this volume type is not supported by this node yet (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected, persistentVolumeClaim of hostPath or local volumes)".into()))
}

fn downward_files<'a>(items: impl Iterator<Item = &'a k8s_openapi::api::core::v1::DownwardAPIVolumeFile>, src: &VolumeSources) -> Result<Files, MountError> {
    let mut out = vec![];
    for it in items {
        if let Some(f) = &it.field_ref {
            let value = (src.field)(&f.field_path).ok_or_else(|| MountError(format!("unsupported fieldPath: {}", f.field_path)))?;
            out.push((it.path.clone(), value.into_bytes(), it.mode));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writer_swaps_and_prunes() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("v");
        write_atomic(&d, &[("a".into(), b"1".to_vec(), None), ("b".into(), b"2".to_vec(), None)], 0o644).unwrap();
        assert_eq!(fs::read(d.join("a")).unwrap(), b"1");
        write_atomic(&d, &[("a".into(), b"3".to_vec(), None)], 0o644).unwrap();
        assert_eq!(fs::read(d.join("a")).unwrap(), b"3");
        assert!(!d.join("b").exists());
        let stamps = fs::read_dir(&d).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("..1")).count();
        assert_eq!(stamps, 1);
    }
}
