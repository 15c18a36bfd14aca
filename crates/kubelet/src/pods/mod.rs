//! One worker per pod, level-triggered: each pass compares the pod's spec with what runs
//! (sandbox, containers as the shim reports them) and takes the next step — create the
//! sandbox, start the next init container, start or restart app containers under the
//! restart policy and back-off, or tear everything down — then posts the status if it
//! changed. A pass runs on every change of the pod and at least every second while it lives.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use timonier_runtime::shim::{ContainerState, ErrorKind, ShimClient};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::probes;

mod config;
mod ephemeral;
mod teardown;

pub use teardown::{cleanup_sandbox, teardown_dir};
use teardown::stop_container;

use config::image_id;
use timonier_client::EventType::{Normal, Warning};
use crate::runtime::{NodeRuntime, CLUSTER_DNS};
use crate::status::{self, ContainerView, PodView, State};

/// One run of a container, as recorded in the pod's directory so that a restarted agent
/// knows which shim container is which.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Instance {
    id: String,
    image: String,
    image_id: String,
    /// A start that failed before the process ran (exit 128, StartError).
    #[serde(default)]
    start_error: Option<(String, String, String)>,
    /// How the run ended, once seen: kept here because the shim forgets a container when it
    /// is removed (restart, or the sandbox stopping once the pod is done).
    #[serde(default)]
    exit: Option<LastState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ContainerRecord {
    current: Option<Instance>,
    restart_count: i32,
    /// The state of the previous run (`lastState` and `--previous` logs).
    #[serde(default)]
    last: Option<LastState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LastState {
    exit_code: i32,
    signal: Option<i32>,
    reason: String,
    message: Option<String>,
    started_at: String,
    finished_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PodRecord {
    containers: BTreeMap<String, ContainerRecord>,
    start_time: Option<String>,
    pod_ip: Option<String>,
    /// Set once the pod reached Succeeded or Failed: nothing is started again, even after
    /// an agent restart.
    #[serde(default)]
    terminal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    NotStarted,
    Running,
    Exited(i32),
}

struct Worker {
    node: Arc<NodeRuntime>,
    uid: String,
    dir: PathBuf,
    pod: Arc<Pod>,
    shim: Option<ShimClient>,
    record: PodRecord,
    backoff: Backoff,
    /// Transient reasons a container waits for (ErrImagePull, CreateContainerConfigError, ...).
    waiting: HashMap<String, State>,
    last_status: Option<Value>,
    /// Settled probe results, and the prober tasks of each running container (by id).
    results: Arc<probes::Results>,
    probers: HashMap<String, Vec<tokio::task::JoinHandle<()>>>,
    /// Containers being stopped after a failed liveness or startup probe.
    killing: std::collections::HashSet<String>,
    /// Service-account tokens of projected volumes and when to renew them.
    tokens: HashMap<(String, String), (String, Instant)>,
    volumes_refreshed: Instant,
    /// Set once a deleted pod's containers were stopped: the status posted is the final one.
    terminating: bool,
}

/// How often a running pod's configMap, secret, downwardAPI and projected volumes are
/// rewritten from their sources.
const VOLUME_REFRESH: Duration = Duration::from_secs(10);

/// A container running in a pod of this node, from the pod's record.
pub struct RunningContainer {
    pub name: String,
    pub id: String,
    pub image: String,
}

/// The containers of the pod in `dir` that run now (started, no exit seen).
pub fn running_containers(dir: &Path) -> Vec<RunningContainer> {
    let record: PodRecord = std::fs::read(dir.join("pod.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    record
        .containers
        .into_iter()
        .filter_map(|(name, c)| c.current.filter(|i| i.exit.is_none() && i.start_error.is_none()).map(|i| RunningContainer { name, id: i.id, image: i.image }))
        .collect()
}

/// Runs the worker of pod `uid` until the pod is gone and cleaned up.
pub async fn run_worker(node: Arc<NodeRuntime>, uid: String, mut rx: watch::Receiver<Option<Arc<Pod>>>) {
    let Some(pod) = rx.borrow_and_update().clone() else { return };
    let dir = node.pods_dir().join(&uid);
    let record: PodRecord = std::fs::read(dir.join("pod.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let mut record = record;
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    if phase == "Succeeded" || phase == "Failed" {
        record.terminal = true;
    }
    let mut w = Worker {
        node,
        uid,
        dir,
        pod,
        shim: None,
        record,
        backoff: Backoff::default(),
        waiting: HashMap::new(),
        last_status: None,
        results: Arc::new(probes::Results::default()),
        probers: HashMap::new(),
        killing: Default::default(),
        tokens: HashMap::new(),
        volumes_refreshed: Instant::now(),
        terminating: false,
    };
    loop {
        let latest = rx.borrow_and_update().clone();
        match latest {
            None => {
                w.stop_probers();
                w.teardown(0).await;
                return;
            }
            Some(pod) => {
                w.pod = pod;
                if w.pod.metadata.deletion_timestamp.is_some() {
                    w.stop_probers();
                    w.terminate().await;
                    return;
                }
                let next = match w.sync().await {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::warn!(pod = %w.name(), error = %e, "pod sync failed; will retry");
                        Duration::from_secs(1)
                    }
                };
                let results = w.results.clone();
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { w.stop_probers(); return },
                    _ = results.changed.notified() => {}
                    _ = tokio::time::sleep(next) => {}
                }
            }
        }
    }
}

fn container_id(uid: &str, name: &str, attempt: i32) -> String {
    use sha2::Digest;
    let nanos = jiff::Timestamp::now().as_nanosecond();
    hex::encode(sha2::Sha256::digest(format!("{uid}/{name}/{attempt}/{nanos}")))
}

fn ts(t: &str) -> String {
    // The shim reports RFC 3339 with fractions; the API shows seconds.
    t.parse::<jiff::Timestamp>().map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|_| t.to_string())
}

impl Worker {
    fn name(&self) -> String {
        format!("{}/{}", self.pod.metadata.namespace.as_deref().unwrap_or(""), self.pod.metadata.name.as_deref().unwrap_or(""))
    }

    fn ns(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_else(|| "default".into())
    }

    fn spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> = std::sync::OnceLock::new();
        self.pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    fn save(&self) {
        if let Ok(b) = serde_json::to_vec(&self.record) {
            let tmp = self.dir.join("pod.json.tmp");
            if std::fs::write(&tmp, b).is_ok() {
                let _ = std::fs::rename(tmp, self.dir.join("pod.json"));
            }
        }
    }

    /// Where a container is in the spec, as events name it (`spec.containers{web}`).
    fn field_path(&self, name: &str) -> String {
        let spec = self.spec();
        let list = if spec.init_containers.iter().flatten().any(|c| c.name == name) {
            "initContainers"
        } else if spec.ephemeral_containers.iter().flatten().any(|c| c.name == name) {
            "ephemeralContainers"
        } else {
            "containers"
        };
        format!("spec.{list}{{{name}}}")
    }

    async fn event(&self, container: Option<&str>, kind: timonier_client::EventType, reason: &str, message: &str) {
        let fp = container.map(|n| self.field_path(n));
        self.node.recorder.pod_event(&self.pod, fp, kind, reason, message).await;
    }

    /// Makes sure the sandbox runs and is wired; returns the pod IP.
    async fn ensure_sandbox(&mut self) -> Result<String, String> {
        let state_dir = self.dir.join("sandbox");
        if self.shim.is_none() {
            match ShimClient::connect(&state_dir).await {
                Ok(s) => self.shim = Some(s),
                Err(_) => {
                    std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
                    let hostname = self.spec().hostname.clone().unwrap_or_else(|| self.pod.metadata.name.clone().unwrap_or_default());
                    let (exe, args) = self.node.config.shim_command.split_first().ok_or("no shim command configured")?;
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let shim = ShimClient::start(Path::new(exe), &args, &state_dir, &hostname).await.map_err(|e| e.to_string())?;
                    self.shim = Some(shim);
                }
            }
        }
        let pid = self.shim.as_ref().map(|s| s.pid()).unwrap_or(0);
        let host_network = self.spec().host_network == Some(true);
        let ip = if host_network {
            self.node.facts.ip.to_string()
        } else {
            let addr = self.node.network.attach(&self.uid, pid).await.map_err(|e| format!("failed to set up the pod network: {e}"))?;
            addr.ip.to_string()
        };
        if self.record.pod_ip.as_deref() != Some(&ip) {
            self.record.pod_ip = Some(ip.clone());
            self.write_etc_files(&ip).map_err(|e| format!("cannot write the pod's /etc files: {e}"))?;
            self.save();
        }
        Ok(ip)
    }

    fn write_etc_files(&self, ip: &str) -> std::io::Result<()> {
        let spec = self.spec();
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let hostname = spec.hostname.clone().unwrap_or(name);
        let mut hosts = String::from("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
        match &spec.subdomain {
            Some(sub) if !sub.is_empty() => hosts.push_str(&format!("{ip}\t{hostname}.{sub}.{}.svc.cluster.local\t{hostname}\n", self.ns())),
            _ => hosts.push_str(&format!("{ip}\t{hostname}\n")),
        }
        for alias in spec.host_aliases.iter().flatten() {
            hosts.push_str(&format!("\n# Entries added by HostAliases.\n{}\t{}\n", alias.ip, alias.hostnames.clone().unwrap_or_default().join("\t")));
        }
        std::fs::write(self.dir.join("etc-hosts"), hosts)?;
        std::fs::write(self.dir.join("etc-hostname"), format!("{hostname}\n"))?;
        let resolv = match spec.dns_policy.as_deref() {
            Some("Default") => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            Some("None") => String::new(),
            _ => format!("search {}.svc.cluster.local svc.cluster.local cluster.local\nnameserver {CLUSTER_DNS}\noptions ndots:5\n", self.ns()),
        };
        let mut resolv = resolv;
        if let Some(cfg) = &spec.dns_config {
            for ns in cfg.nameservers.iter().flatten() {
                resolv.push_str(&format!("nameserver {ns}\n"));
            }
            if let Some(s) = &cfg.searches {
                resolv.push_str(&format!("search {}\n", s.join(" ")));
            }
        }
        std::fs::write(self.dir.join("etc-resolv.conf"), resolv)
    }

    /// One level-triggered pass; returns when the next pass is due at the latest.
    async fn sync(&mut self) -> Result<Duration, String> {
        if self.record.start_time.is_none() {
            self.record.start_time = Some(crate::now_rfc3339());
        }
        if self.record.terminal {
            if self.shim.is_some() || self.dir.join("sandbox").exists() {
                self.stop_sandbox(0).await;
            }
            return Ok(Duration::from_secs(3600));
        }
        let ip = match self.ensure_sandbox().await {
            Ok(ip) => ip,
            Err(e) => {
                self.event(None, Warning, "FailedCreatePodSandBox", &format!("Failed to create pod sandbox: {e}")).await;
                self.post_status(&HashMap::new(), false).await;
                return Ok(Duration::from_secs(2));
            }
        };
        let shim = self.shim.clone().ok_or("no sandbox")?;
        let running = self.observe(&shim).await?;
        self.manage_probes(&shim, &running, &ip).await;
        let mut next = Duration::from_secs(1);
        let policy = self.spec().restart_policy.clone().unwrap_or_else(|| "Always".into());

        // Init containers, one at a time and in order; then the app containers together.
        let inits: Vec<Container> = self.spec().init_containers.clone().unwrap_or_default();
        let mut inits_done = true;
        for c in &inits {
            match self.run_state(&c.name, &running) {
                RunState::Exited(0) => continue,
                RunState::Running => {}
                RunState::NotStarted => {
                    if let Some(wait) = self.start(c, &ip, None).await {
                        next = next.min(wait);
                    }
                }
                RunState::Exited(_) if policy == "Never" => {}
                RunState::Exited(_) => match self.restart(&c.name, &running).await {
                    Some(wait) => next = next.min(wait),
                    None => {
                        if let Some(wait) = self.start(c, &ip, None).await {
                            next = next.min(wait);
                        }
                    }
                },
            }
            inits_done = false;
            break;
        }
        if inits_done {
            let containers: Vec<Container> = self.spec().containers.clone();
            for c in &containers {
                let due = match self.run_state(&c.name, &running) {
                    RunState::Running => continue,
                    RunState::NotStarted => None,
                    RunState::Exited(code) => {
                        if !(policy == "Always" || (policy == "OnFailure" && code != 0)) {
                            continue;
                        }
                        self.restart(&c.name, &running).await
                    }
                };
                match due {
                    Some(wait) => next = next.min(wait),
                    None => {
                        if let Some(wait) = self.start(c, &ip, None).await {
                            next = next.min(wait);
                        }
                    }
                }
            }
        }
        if let Some(wait) = self.start_ephemeral(&running, &ip).await {
            next = next.min(wait);
        }
        if self.volumes_refreshed.elapsed() >= VOLUME_REFRESH && !self.record.containers.is_empty() {
            self.refresh_volumes(&ip).await;
        }
        let running = self.observe(&shim).await?;
        let phase = self.post_status(&running, true).await;
        if phase == "Succeeded" || phase == "Failed" {
            self.record.terminal = true;
            self.save();
            // Containers are all stopped; the sandbox and its address can go.
            self.stop_sandbox(0).await;
        }
        Ok(next)
    }

    fn stop_probers(&mut self) {
        for (_, handles) in self.probers.drain() {
            for h in handles {
                h.abort();
            }
        }
    }

    /// Starts the probers of newly running containers, stops those of ended runs, and acts
    /// on failed liveness and startup probes (the container is stopped, then restarted by
    /// its restart policy).
    async fn manage_probes(&mut self, shim: &ShimClient, running: &HashMap<String, ContainerState>, ip: &str) {
        let containers = self.spec().containers.clone();
        let mut live_ids = std::collections::HashSet::new();
        for c in &containers {
            let Some(inst) = self.record.containers.get(&c.name).and_then(|r| r.current.clone()) else { continue };
            if !running.get(&inst.id).is_some_and(|s| s.running) {
                continue;
            }
            live_ids.insert(inst.id.clone());
            if !self.probers.contains_key(&inst.id) {
                self.results.clear(&c.name);
                let handles = probes::probes_of(c)
                    .into_iter()
                    .map(|(kind, probe)| {
                        let target = probes::Target { shim: shim.clone(), container_id: inst.id.clone(), pod_ip: ip.to_string(), container: c.clone() };
                        probes::spawn(self.node.clone(), self.pod.clone(), kind, probe, target, self.results.clone())
                    })
                    .collect();
                self.probers.insert(inst.id.clone(), handles);
            }
            let failed = [(probes::Kind::Liveness, "liveness"), (probes::Kind::Startup, "startup")]
                .into_iter()
                .find(|(k, _)| self.results.get(&c.name, *k) == Some(false));
            if let Some((_, which)) = failed {
                if self.killing.insert(inst.id.clone()) {
                    self.event(Some(&c.name), Normal, "Killing", &format!("Container {} failed {which} probe, will be restarted", c.name)).await;
                    let grace = self.spec().termination_grace_period_seconds.unwrap_or(30).max(0) as u64;
                    tokio::spawn(stop_container(shim.clone(), inst.id.clone(), grace));
                }
            }
        }
        self.probers.retain(|id, handles| {
            let keep = live_ids.contains(id);
            if !keep {
                handles.iter().for_each(|h| h.abort());
            }
            keep
        });
        self.killing.retain(|id| live_ids.contains(id));
    }

    /// The shim's view of the containers, with every exit seen copied into the record.
    async fn observe(&mut self, shim: &ShimClient) -> Result<HashMap<String, ContainerState>, String> {
        let running: HashMap<String, ContainerState> = shim.status().await.map_err(|e| e.to_string())?.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut changed = false;
        for rec in self.record.containers.values_mut() {
            if let Some(inst) = rec.current.as_mut() {
                if let Some(s) = running.get(&inst.id).filter(|s| !s.running) {
                    if inst.exit.is_none() {
                        inst.exit = Some(exited_state(s));
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.save();
        }
        Ok(running)
    }

    /// An exited container is due for a restart: `Some(wait)` while its back-off runs
    /// (CrashLoopBackOff), `None` once it may start again (the old run is then recorded as
    /// `lastState` and removed).
    async fn restart(&mut self, name: &str, running: &HashMap<String, ContainerState>) -> Option<Duration> {
        let key = name.to_string();
        let now = Instant::now();
        if let Some(wait) = self.backoff.waiting(&key, now) {
            let pod = self.pod.metadata.name.clone().unwrap_or_default();
            let msg = format!("back-off {}s restarting failed container={name} pod={pod}_{}({})", self.backoff.delay(&key).map(|d| d.as_secs()).unwrap_or(10), self.ns(), self.uid);
            if !matches!(self.waiting.get(name), Some(State::Waiting { reason, .. }) if reason == "CrashLoopBackOff") {
                self.event(Some(name), Warning, "BackOff", &format!("Back-off restarting failed container {name} in pod {pod}_{}({})", self.ns(), self.uid)).await;
            }
            self.waiting.insert(name.to_string(), State::waiting("CrashLoopBackOff", Some(msg)));
            return Some(wait.min(Duration::from_secs(1)));
        }
        let rec = self.record.containers.entry(name.to_string()).or_default();
        if let Some(inst) = rec.current.take() {
            let last = match (&inst.start_error, &inst.exit, running.get(&inst.id)) {
                (Some((reason, message, at)), _, _) => LastState { exit_code: 128, signal: None, reason: reason.clone(), message: Some(message.clone()), started_at: "1970-01-01T00:00:00Z".into(), finished_at: at.clone() },
                (None, Some(exit), _) => exit.clone(),
                (None, None, Some(s)) => exited_state(s),
                (None, None, None) => LastState { exit_code: 128, signal: None, reason: "Error".into(), message: None, started_at: String::new(), finished_at: crate::now_rfc3339() },
            };
            // A run of ten minutes or more forgets the back-off.
            let ran = running.get(&inst.id).and_then(|s| Some((s.finished_at.as_ref()?.parse::<jiff::Timestamp>().ok()?, s.started_at.parse::<jiff::Timestamp>().ok()?)));
            if let Some((end, start)) = ran {
                if end.duration_since(start).as_secs() >= crate::backoff::RESET_AFTER.as_secs() as i64 {
                    self.backoff.reset(&key);
                }
            }
            rec.last = Some(last);
            rec.restart_count += 1;
            if let Some(shim) = &self.shim {
                if let Err(e) = shim.remove(&inst.id).await {
                    tracing::warn!(pod = %self.name(), container = name, error = %e, "cannot remove an exited container");
                }
            }
        }
        self.backoff.fail(&key, now);
        self.save();
        None
    }

    /// Pulls (per the pull policy), prepares and starts one container, in the PID namespace
    /// of process `pid_namespace` if given (an ephemeral container's target). Returns when
    /// to look again if it could not start (back-off), `None` when it started or failed to
    /// start.
    async fn start(&mut self, c: &Container, ip: &str, pid_namespace: Option<u32>) -> Option<Duration> {
        let name = c.name.clone();
        let image_ref = c.image.clone().unwrap_or_default();
        let pull_key = format!("pull/{name}");
        if let Some(wait) = self.backoff.waiting(&pull_key, Instant::now()) {
            if matches!(self.waiting.get(&name), Some(State::Waiting { reason, .. }) if reason == "ErrImagePull") {
                self.event(Some(&name), Normal, "BackOff", &format!("Back-off pulling image \"{image_ref}\"")).await;
                self.event(Some(&name), Warning, "Failed", "Error: ImagePullBackOff").await;
            }
            self.waiting.insert(name.clone(), State::waiting("ImagePullBackOff", Some(format!("Back-off pulling image \"{image_ref}\""))));
            return Some(wait.min(Duration::from_secs(1)));
        }
        let image = match self.ensure_image(c).await {
            Ok(i) => i,
            Err(state) => {
                self.waiting.insert(name.clone(), state);
                self.backoff.fail(&pull_key, Instant::now());
                return Some(Duration::from_secs(1));
            }
        };
        self.backoff.reset(&pull_key);
        let spec = match self.container_spec(c, &image, ip).await {
            Ok(s) => timonier_runtime::bundle::ContainerSpec { pid_namespace, ..s },
            Err((reason, message)) => {
                if reason == "FailedMount" {
                    self.event(None, Warning, "FailedMount", &message).await;
                    self.waiting.insert(name.clone(), State::waiting("ContainerCreating", None));
                } else {
                    self.event(Some(&name), Warning, "Failed", &format!("Error: {message}")).await;
                    self.waiting.insert(name.clone(), State::waiting(&reason, Some(message)));
                }
                return Some(Duration::from_secs(2));
            }
        };
        let id = spec.id.clone();
        let image_id = image_id(&image);
        let shim = self.shim.clone()?;
        let shown_image = image.references.first().cloned().unwrap_or(image_ref.clone());
        let result = shim.create(&spec).await;
        self.waiting.remove(&name);
        let rec = self.record.containers.entry(name.clone()).or_default();
        match result {
            Ok(_) => {
                rec.current = Some(Instance { id: id.clone(), image: shown_image, image_id, start_error: None, exit: None });
                self.save();
                self.event(Some(&name), Normal, "Created", &format!("Created container: {name}")).await;
                self.event(Some(&name), Normal, "Started", &format!("Started container {name}")).await;
                if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
                    let target = probes::Target { shim: shim.clone(), container_id: id.clone(), pod_ip: ip.to_string(), container: c.clone() };
                    if let Err(e) = probes::run_hook(hook, &target, Duration::from_secs(30)).await {
                        self.event(Some(&name), Warning, "FailedPostStartHook", &format!("PostStartHook failed: {e}")).await;
                        let grace = self.spec().termination_grace_period_seconds.unwrap_or(30).max(0) as u64;
                        stop_container(shim.clone(), id, grace).await;
                    }
                }
                None
            }
            Err(e) => {
                let message = match e.kind() {
                    Some(ErrorKind::NotFound) => format!("failed to start container \"{id}\": unable to start container process: {e}: unknown"),
                    _ => e.to_string(),
                };
                rec.current = Some(Instance { id, image: shown_image, image_id, start_error: Some(("StartError".into(), message.clone(), crate::now_rfc3339())), exit: None });
                self.save();
                self.event(Some(&name), Normal, "Created", &format!("Created container: {name}")).await;
                self.event(Some(&name), Warning, "Failed", &format!("Error: {message}")).await;
                None
            }
        }
    }

    /// Computes the status from the shim's report and posts it if it changed; returns the phase.
    async fn post_status(&mut self, running: &HashMap<String, ContainerState>, sandbox_ready: bool) -> String {
        let spec = self.spec().clone();
        let view_of = |c: &Container, init: bool| -> ContainerView {
            let rec = self.record.containers.get(&c.name).cloned().unwrap_or_default();
            let image_shown = c.image.clone().unwrap_or_default();
            let last = rec.last.as_ref().map(|l| State::Terminated {
                exit_code: l.exit_code,
                signal: l.signal,
                reason: l.reason.clone(),
                message: l.message.clone(),
                started_at: l.started_at.clone(),
                finished_at: l.finished_at.clone(),
            });
            let Some(inst) = &rec.current else {
                let default = if init || !self.inits_done(running) { "PodInitializing" } else { "ContainerCreating" };
                let state = self.waiting.get(&c.name).cloned().unwrap_or_else(|| State::waiting(default, None));
                return ContainerView { name: c.name.clone(), image: image_shown, image_id: String::new(), container_id: None, ready: false, started: false, state, last_state: last, restart_count: rec.restart_count };
            };
            let st = if let Some((reason, message, at)) = &inst.start_error {
                State::Terminated { exit_code: 128, signal: None, reason: reason.clone(), message: Some(message.clone()), started_at: "1970-01-01T00:00:00Z".into(), finished_at: at.clone() }
            } else if let Some(l) = &inst.exit {
                State::Terminated { exit_code: l.exit_code, signal: l.signal, reason: l.reason.clone(), message: l.message.clone(), started_at: l.started_at.clone(), finished_at: l.finished_at.clone() }
            } else {
                match running.get(&inst.id) {
                    Some(s) if s.running => State::Running { started_at: ts(&s.started_at) },
                    Some(s) => {
                        let l = exited_state(s);
                        State::Terminated { exit_code: l.exit_code, signal: l.signal, reason: l.reason, message: l.message, started_at: l.started_at, finished_at: l.finished_at }
                    }
                    None => State::waiting("ContainerCreating", None),
                }
            };
            // While it waits for its restart, the run that ended is the last state.
            let (st, last) = match (self.waiting.get(&c.name), &st) {
                (Some(w @ State::Waiting { .. }), State::Terminated { .. }) => (w.clone(), Some(st.clone())),
                _ => (st, last),
            };
            let is_running = matches!(st, State::Running { .. });
            let started = is_running && (c.startup_probe.is_none() || self.results.get(&c.name, probes::Kind::Startup) == Some(true));
            let ready = started && !init && (c.readiness_probe.is_none() || self.results.get(&c.name, probes::Kind::Readiness) == Some(true));
            ContainerView {
                name: c.name.clone(),
                image: inst.image.clone(),
                image_id: inst.image_id.clone(),
                container_id: Some(format!("timonier://{}", inst.id)),
                ready,
                started,
                state: st,
                last_state: last,
                restart_count: rec.restart_count,
            }
        };
        let init: Vec<ContainerView> = spec.init_containers.iter().flatten().map(|c| view_of(c, true)).collect();
        let containers: Vec<ContainerView> = spec.containers.iter().map(|c| view_of(c, false)).collect();
        // Never ready: an ephemeral container serves nothing.
        let ephemeral: Vec<ContainerView> =
            spec.ephemeral_containers.iter().flatten().map(|e| ContainerView { ready: false, ..view_of(&ephemeral::as_container(e), false) }).collect();
        let previous: Vec<Value> = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .map(|cs| cs.into_iter().filter_map(|c| serde_json::to_value(c).ok()).collect())
            .unwrap_or_default();
        let view = PodView {
            restart_policy: spec.restart_policy.as_deref().unwrap_or("Always"),
            init,
            containers,
            ephemeral,
            sandbox_ready,
            host_ip: self.node.facts.ip.to_string(),
            pod_ip: self.record.pod_ip.clone(),
            start_time: self.record.start_time.clone().unwrap_or_else(crate::now_rfc3339),
            qos_class: self.pod.status.as_ref().and_then(|s| s.qos_class.clone()).unwrap_or_else(|| "BestEffort".into()),
            readiness_gates: spec.readiness_gates.iter().flatten().map(|g| g.condition_type.clone()).collect(),
            previous_conditions: previous,
            now: crate::now_rfc3339(),
            terminating: self.terminating,
        };
        let status = status::pod_status(&view);
        let phase = status["phase"].as_str().unwrap_or("Pending").to_string();
        if self.last_status.as_ref() != Some(&status) {
            let pods: Api<Pod> = Api::namespaced(self.node.config.client.clone(), &self.ns());
            let patch = json!({"status": status});
            match pods.patch_status(self.pod.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => self.last_status = Some(status),
                Err(e) => tracing::debug!(pod = %self.name(), error = %e, "cannot post the pod status"),
            }
        }
        phase
    }

    fn inits_done(&self, running: &HashMap<String, ContainerState>) -> bool {
        self.spec().init_containers.iter().flatten().all(|c| self.run_state(&c.name, running) == RunState::Exited(0))
    }

    /// Where the current run of a container stands.
    fn run_state(&self, name: &str, running: &HashMap<String, ContainerState>) -> RunState {
        match self.record.containers.get(name).and_then(|r| r.current.as_ref()) {
            None => RunState::NotStarted,
            Some(i) if i.start_error.is_some() => RunState::Exited(128),
            Some(Instance { exit: Some(e), .. }) => RunState::Exited(e.exit_code),
            Some(i) => match running.get(&i.id) {
                Some(s) if s.running => RunState::Running,
                Some(s) => RunState::Exited(s.exit_code.unwrap_or(128)),
                None => RunState::Exited(128),
            },
        }
    }

}

fn exited_state(s: &ContainerState) -> LastState {
    let code = s.exit_code.unwrap_or(128);
    let reason = if s.oom_killed {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    LastState {
        exit_code: code,
        signal: s.signal,
        reason: reason.into(),
        message: None,
        started_at: ts(&s.started_at),
        finished_at: s.finished_at.as_deref().map(ts).unwrap_or_default(),
    }
}
