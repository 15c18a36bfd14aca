//! What a container is made from: its image (pulled per the pull policy, with the pod's
//! pull secrets), its configuration (command line, environment, identity, limits, mounts)
//! and the pod volumes it mounts, including the service-account tokens and claims they need.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret, Service};
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use timonier_runtime::images::{Image, PullError};

use super::{container_id, Worker};
use crate::env::{self, EnvSources};
use timonier_client::EventType::{Normal, Warning};
use crate::status::State;
use crate::volumes::{self, Source, VolumeSources};

impl Worker {
    pub(super) async fn ensure_image(&mut self, c: &Container) -> Result<Image, State> {
        let reference = c.image.clone().unwrap_or_default();
        let name = c.name.as_str();
        let tag_latest = !reference.contains('@') && reference.rsplit('/').next().is_some_and(|last| !last.contains(':') || last.ends_with(":latest"));
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| if tag_latest { "Always".into() } else { "IfNotPresent".into() });
        let present = self.node.images.get(&reference).ok();
        match (policy.as_str(), present) {
            ("Never", Some(i)) | ("IfNotPresent", Some(i)) => {
                self.event(Some(name), Normal, "Pulled", &format!("Container image \"{reference}\" already present on machine")).await;
                return Ok(i);
            }
            ("Never", None) => {
                let msg = format!("Container image \"{reference}\" is not present with pull policy of Never");
                self.event(Some(name), Warning, "ErrImageNeverPull", &msg).await;
                return Err(State::waiting("ErrImageNeverPull", Some(msg)));
            }
            _ => {}
        }
        self.event(Some(name), Normal, "Pulling", &format!("Pulling image \"{reference}\"")).await;
        let started = Instant::now();
        let creds = self.pull_credentials(&reference).await;
        match self.node.pull(&reference, creds.as_ref()).await {
            Ok(image) => {
                let secs = started.elapsed().as_secs_f64();
                self.event(
                    Some(name),
                    Normal,
                    "Pulled",
                    &format!("Successfully pulled image \"{reference}\" in {secs:.3}s ({secs:.3}s including waiting). Image size: {} bytes.", image.size),
                )
                .await;
                Ok(image)
            }
            Err(e) => {
                let msg = pull_message(&reference, &e);
                self.event(Some(name), Warning, "Failed", &format!("Failed to pull image \"{reference}\": {msg}")).await;
                self.event(Some(name), Warning, "Failed", "Error: ErrImagePull").await;
                Err(State::waiting("ErrImagePull", Some(msg)))
            }
        }
    }

    /// Credentials for `reference` from the pod's imagePullSecrets.
    pub(super) async fn pull_credentials(&self, reference: &str) -> Option<timonier_runtime::images::Credentials> {
        let host = timonier_runtime::images::normalize(reference).ok()?.split('/').next()?.to_string();
        let secrets: Api<Secret> = Api::namespaced(self.node.config.client.clone(), &self.ns());
        for s in self.spec().image_pull_secrets.iter().flatten() {
            let Ok(secret) = secrets.get(&s.name).await else { continue };
            let data = secret.data.unwrap_or_default();
            let raw = data.get(".dockerconfigjson").or_else(|| data.get(".dockercfg"));
            if let Some(raw) = raw {
                if let Some(c) = timonier_runtime::images::credentials_from_dockerconfigjson(&raw.0, &host) {
                    return Some(c);
                }
            }
        }
        None
    }

    pub(super) async fn fetch_sources(&self, c: Option<&Container>) -> (HashMap<String, ConfigMap>, HashMap<String, Secret>) {
        let (mut cm_names, mut secret_names) = volumes::referenced_objects(&self.pod);
        if let Some(c) = c {
            let (a, b) = env::referenced_objects(c);
            cm_names.extend(a);
            secret_names.extend(b);
        }
        let cms: Api<ConfigMap> = Api::namespaced(self.node.config.client.clone(), &self.ns());
        let secrets: Api<Secret> = Api::namespaced(self.node.config.client.clone(), &self.ns());
        let mut out_cm = HashMap::new();
        for n in cm_names {
            if let Ok(Some(o)) = cms.get_opt(&n).await {
                out_cm.insert(n, o);
            }
        }
        let mut out_s = HashMap::new();
        for n in secret_names {
            if let Ok(Some(o)) = secrets.get_opt(&n).await {
                out_s.insert(n, o);
            }
        }
        (out_cm, out_s)
    }

    pub(super) fn downward_field(&self, path: &str, ip: &str) -> Option<String> {
        let m = &self.pod.metadata;
        let render = |map: &Option<BTreeMap<String, String>>| {
            map.iter().flatten().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))).collect::<Vec<_>>().join("\n")
        };
        Some(match path {
            "metadata.labels" => render(&m.labels),
            "metadata.annotations" => render(&m.annotations),
            "metadata.name" => m.name.clone().unwrap_or_default(),
            "metadata.namespace" => self.ns(),
            "metadata.uid" => self.uid.clone(),
            "spec.nodeName" => self.node.facts.name.clone(),
            "status.podIP" => ip.to_string(),
            "status.hostIP" => self.node.facts.ip.to_string(),
            _ => {
                let key = |prefix: &str| path.strip_prefix(prefix).and_then(|r| r.strip_prefix("['")).and_then(|r| r.strip_suffix("']")).map(str::to_string);
                if let Some(k) = key("metadata.labels") {
                    m.labels.as_ref().and_then(|l| l.get(&k).cloned()).unwrap_or_default()
                } else if let Some(k) = key("metadata.annotations") {
                    m.annotations.as_ref().and_then(|l| l.get(&k).cloned()).unwrap_or_default()
                } else {
                    return None;
                }
            }
        })
    }

    /// Everything the shim needs to create the container: the command line and environment
    /// resolved, volumes ready, limits, identity. Errors are (reason, message).
    pub(super) async fn container_spec(&mut self, c: &Container, image: &Image, ip: &str) -> Result<timonier_runtime::bundle::ContainerSpec, (String, String)> {
        let (configmaps, secrets) = self.fetch_sources(Some(c)).await;
        let tokens = self.service_account_tokens().await.map_err(|e| ("FailedMount".to_string(), e))?;
        let claims = self.claims().await;
        let vols = {
            let field = |p: &str| self.downward_field(p, ip);
            let vsrc = VolumeSources { configmaps: &configmaps, secrets: &secrets, field: &field, tokens: &tokens, claims: &claims };
            volumes::prepare(&self.pod, &self.dir, &vsrc).map_err(|e| ("FailedMount".to_string(), e.0))?
        };
        let services = self.services().await;
        let src = EnvSources {
            configmaps,
            secrets,
            services,
            pod_ip: ip.to_string(),
            host_ip: self.node.facts.ip.to_string(),
            node_name: self.node.facts.name.clone(),
            node_cpu: self.node.facts.cpus as f64,
            node_memory: self.node.facts.memory_bytes as f64,
        };
        let env_vars = env::container_env(&self.pod, c, &src).map_err(|e| ("CreateContainerConfigError".to_string(), e.0))?;
        let cfg = &image.config;
        let hostname = self.spec().hostname.clone().unwrap_or_else(|| self.pod.metadata.name.clone().unwrap_or_default());
        // Image ENV, then HOSTNAME, then the pod's: later values of a name win, first position stays.
        let mut env_out: Vec<(String, String)> = vec![];
        fn set(env: &mut Vec<(String, String)>, k: &str, v: &str) {
            match env.iter_mut().find(|(n, _)| n == k) {
                Some(e) => e.1 = v.to_string(),
                None => env.push((k.to_string(), v.to_string())),
            }
        }
        for kv in &cfg.env {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            set(&mut env_out, k, v);
        }
        set(&mut env_out, "HOSTNAME", &hostname);
        for (k, v) in &env_vars {
            set(&mut env_out, k, v);
        }
        let sc = c.security_context.clone().unwrap_or_default();
        let psc = self.spec().security_context.clone().unwrap_or_default();
        let (img_uid, img_gid) = parse_user(&cfg.user);
        let uid = sc.run_as_user.or(psc.run_as_user).map(|u| u as u32).unwrap_or(img_uid);
        let gid = sc.run_as_group.or(psc.run_as_group).map(|g| g as u32).unwrap_or(img_gid);
        if !env_out.iter().any(|(n, _)| n == "HOME") {
            set(&mut env_out, "HOME", if uid == 0 { "/root" } else { "/" });
        }
        if !env_out.iter().any(|(n, _)| n == "PATH") {
            set(&mut env_out, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        }
        let args = env::command_line(c, cfg.entrypoint.as_deref().unwrap_or(&[]), cfg.cmd.as_deref().unwrap_or(&[]), &env_vars);
        if args.is_empty() {
            return Err(("CreateContainerConfigError".into(), "no command specified".into()));
        }
        let cwd = c.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| if cfg.working_dir.is_empty() { "/".into() } else { cfg.working_dir.clone() });
        let mut mounts = vec![
            bind(self.dir.join("etc-hosts"), "/etc/hosts", false),
            bind(self.dir.join("etc-hostname"), "/etc/hostname", false),
            bind(self.dir.join("etc-resolv.conf"), "/etc/resolv.conf", false),
        ];
        let term_log = self.dir.join("containers").join(&c.name).join("termination-log");
        if let Some(parent) = term_log.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&term_log, b"");
        mounts.push(bind(term_log, c.termination_message_path.as_deref().unwrap_or("/dev/termination-log"), false));
        for vm in c.volume_mounts.iter().flatten() {
            let ro = vm.read_only == Some(true);
            match vols.get(&vm.name) {
                Some(Source::Path(p)) => {
                    let mut src = p.clone();
                    if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                        if sub.split('/').any(|c| c == "..") || sub.starts_with('/') {
                            return Err(("CreateContainerConfigError".into(), format!("failed to prepare subPath for volumeMount \"{}\" of container \"{}\"", vm.name, c.name)));
                        }
                        src = src.join(sub);
                        let _ = std::fs::create_dir_all(&src);
                    }
                    mounts.push(bind(src, &vm.mount_path, ro));
                }
                Some(Source::Tmpfs(size)) => mounts.push(timonier_runtime::bundle::MountSpec {
                    source: PathBuf::from("tmpfs"),
                    destination: vm.mount_path.clone(),
                    readonly: ro,
                    kind: timonier_runtime::bundle::MountKind::Tmpfs { size: (*size > 0).then_some(*size) },
                }),
                None => return Err(("CreateContainerConfigError".into(), format!("cannot find volume \"{}\" to mount into container \"{}\"", vm.name, c.name))),
            }
        }
        let res = c.resources.clone().unwrap_or_default();
        let limit = |n: &str| res.limits.as_ref().and_then(|l| l.get(n)).and_then(|q| env::parse_quantity(&q.0));
        let request = |n: &str| res.requests.as_ref().and_then(|l| l.get(n)).and_then(|q| env::parse_quantity(&q.0));
        let cpu_request = request("cpu").or_else(|| limit("cpu"));
        let caps = sc.capabilities.clone().unwrap_or_default();
        let attempt = self.record.containers.get(&c.name).map(|r| r.restart_count).unwrap_or(0);
        let id = container_id(&self.uid, &c.name, attempt);
        let log_dir = self.node.logs_dir().join(format!("{}_{}_{}", self.ns(), self.pod.metadata.name.as_deref().unwrap_or(""), self.uid)).join(&c.name);
        let _ = std::fs::create_dir_all(&log_dir);
        let lower_dirs = self.node.images.lower_dirs(image).map_err(|e| ("CreateContainerError".to_string(), e.to_string()))?;
        Ok(timonier_runtime::bundle::ContainerSpec {
            id,
            lower_dirs,
            args,
            env: env_out.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd,
            uid,
            gid,
            additional_gids: psc.supplemental_groups.clone().unwrap_or_default().into_iter().map(|g| g as u32).collect(),
            readonly_rootfs: sc.read_only_root_filesystem == Some(true),
            privileged: sc.privileged == Some(true),
            cap_add: caps.add.unwrap_or_default(),
            cap_drop: caps.drop.unwrap_or_default(),
            no_new_privileges: sc.allow_privilege_escalation == Some(false),
            mounts,
            cgroup_path: format!("{}/pod{}/{}", self.node.config.cgroup_root, self.uid, c.name),
            memory_limit: limit("memory").map(|m| m as i64),
            cpu_shares: cpu_request.map(|cpu| ((cpu * 1024.0) as u64).max(2)),
            cpu_quota: limit("cpu").map(|cpu| ((cpu * 100_000.0) as i64).max(1000)),
            cpu_period: limit("cpu").map(|_| 100_000),
            pids_limit: None,
            log_path: log_dir.join(format!("{attempt}.log")),
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 5,
            sandbox_pid: self.shim.as_ref().map(|s| s.pid() as u32).unwrap_or(0),
            pid_namespace: None,
            hostname: Some(hostname.clone()),
            stdin: c.stdin == Some(true),
            tty: c.tty == Some(true),
        })
    }

    /// Rewrites the file-backed volumes of a running pod, so that changed ConfigMaps and
    /// Secrets, and renewed tokens, reach its containers.
    pub(super) async fn refresh_volumes(&mut self, ip: &str) {
        self.volumes_refreshed = Instant::now();
        let (configmaps, secrets) = self.fetch_sources(None).await;
        let tokens = match self.service_account_tokens().await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(pod = %self.name(), error = %e, "cannot renew service-account tokens");
                return;
            }
        };
        let claims = self.claims().await;
        let field = |p: &str| self.downward_field(p, ip);
        let vsrc = VolumeSources { configmaps: &configmaps, secrets: &secrets, field: &field, tokens: &tokens, claims: &claims };
        if let Err(e) = volumes::prepare(&self.pod, &self.dir, &vsrc) {
            tracing::debug!(pod = %self.name(), error = %e.0, "cannot refresh the pod's volumes");
        }
    }

    /// The node paths of the pod's persistentVolumeClaims: bound to a hostPath or local
    /// PersistentVolume, as the upstream volume plugins of those kinds mount them.
    pub(super) async fn claims(&self) -> HashMap<String, Result<PathBuf, String>> {
        let client = self.node.config.client.clone();
        let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(client.clone(), &self.ns());
        let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client);
        let mut out = HashMap::new();
        for v in self.spec().volumes.iter().flatten() {
            let Some(c) = &v.persistent_volume_claim else { continue };
            let name = c.claim_name.clone();
            let r = async {
                let pvc = pvcs.get_opt(&name).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("persistentvolumeclaim \"{name}\" not found"))?;
                let volume = pvc.spec.and_then(|s| s.volume_name).filter(|v| !v.is_empty()).ok_or_else(|| format!("PersistentVolumeClaim is not bound: \"{name}\""))?;
                let pv = pvs.get(&volume).await.map_err(|e| e.to_string())?;
                let spec = pv.spec.unwrap_or_default();
                let path = spec.host_path.map(|h| h.path).or(spec.local.map(|l| l.path)).ok_or_else(|| format!("volume \"{volume}\" is neither hostPath nor local: this node cannot mount it"))?;
                let path = PathBuf::from(path);
                if !path.exists() {
                    std::fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                }
                Ok(path)
            }
            .await;
            out.insert(name, r);
        }
        out
    }

    /// Tokens for the pod's projected service-account tokens, bound to the pod, requested
    /// again once 80% of their lifetime passed (as the kubelet's token manager).
    pub(super) async fn service_account_tokens(&mut self) -> Result<HashMap<(String, String), String>, String> {
        let projections = volumes::token_projections(&self.pod);
        let mut out = HashMap::new();
        if projections.is_empty() {
            return Ok(out);
        }
        let sa = self.spec().service_account_name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into());
        let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(self.node.config.client.clone(), &self.ns());
        for (volume, path, audience, expiration) in projections {
            let key = (volume.clone(), path.clone());
            if let Some((token, renew_at)) = self.tokens.get(&key) {
                if Instant::now() < *renew_at {
                    out.insert(key, token.clone());
                    continue;
                }
            }
            let request = json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "audiences": audience.map(|a| vec![a]).unwrap_or_default(),
                    "expirationSeconds": expiration,
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.pod.metadata.name, "uid": self.uid},
                },
            });
            let resp: Value = api
                .create_subresource("token", &sa, &kube::api::PostParams::default(), &request)
                .await
                .map_err(|e| format!("failed to fetch token: {e}"))?;
            let token = resp.pointer("/status/token").and_then(Value::as_str).ok_or("failed to fetch token: the answer has no token")?.to_string();
            let renew_at = Instant::now() + Duration::from_secs((expiration.max(600) as u64) * 8 / 10);
            self.tokens.insert(key.clone(), (token.clone(), renew_at));
            out.insert(key, token);
        }
        Ok(out)
    }

    pub(super) async fn services(&self) -> Vec<Service> {
        let client = self.node.config.client.clone();
        let mut out: Vec<Service> = Api::<Service>::namespaced(client.clone(), &self.ns()).list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
        if self.ns() != "default" {
            if let Ok(k) = Api::<Service>::namespaced(client, "default").get("kubernetes").await {
                out.push(k);
            }
        }
        out
    }
}

fn bind(source: PathBuf, destination: &str, readonly: bool) -> timonier_runtime::bundle::MountSpec {
    timonier_runtime::bundle::MountSpec { source, destination: destination.to_string(), readonly, kind: timonier_runtime::bundle::MountKind::Bind }
}

/// `USER` of an image: numeric `uid[:gid]` (names are not resolved yet and fall back to root).
fn parse_user(user: &str) -> (u32, u32) {
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let uid = u.parse().unwrap_or(0);
    let gid = g.parse().unwrap_or(if uid == 0 { 0 } else { uid });
    (uid, gid)
}

pub(super) fn image_id(image: &Image) -> String {
    match image.references.first().and_then(|r| r.rsplit_once(':')).map(|(n, _)| n) {
        Some(repo) if !repo.contains('@') => format!("{repo}@{}", image.manifest_digest),
        _ => image.manifest_digest.clone(),
    }
}

fn pull_message(reference: &str, e: &PullError) -> String {
    let code = if matches!(e, PullError::NotFound { .. }) { "NotFound" } else { "Unknown" };
    format!("rpc error: code = {code} desc = failed to pull and unpack image \"{reference}\": {e}")
}
