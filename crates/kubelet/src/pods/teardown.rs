//! A pod's end: its containers stopped within the grace period (preStop hooks first), its
//! final status posted, then its sandbox, address, volumes, logs and directory freed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions};
use timonier_runtime::shim::{ContainerState, ShimClient};
use timonier_client::EventType::{Normal, Warning};

use super::Worker;
use crate::probes;
use crate::runtime::NodeRuntime;

impl Worker {
    /// The pod is being deleted: stop its containers within the grace period, free the
    /// sandbox, then remove the pod object for good.
    pub(super) async fn terminate(&mut self) {
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(self.spec().termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        if self.shim.is_none() {
            self.shim = ShimClient::connect(&self.dir.join("sandbox")).await.ok();
        }
        if let Some(shim) = &self.shim {
            if let Ok(states) = shim.status().await {
                for s in states.iter().filter(|s| s.running) {
                    let name = self.record.containers.iter().find(|(_, r)| r.current.as_ref().is_some_and(|i| i.id == s.id)).map(|(n, _)| n.clone());
                    if let Some(name) = name {
                        self.event(Some(&name), Normal, "Killing", &format!("Stopping container {name}")).await;
                    }
                }
            }
        }
        let started = Instant::now();
        self.run_pre_stop_hooks(Duration::from_secs(grace)).await;
        let left = grace.saturating_sub(started.elapsed().as_secs());
        self.stop_containers(left).await;
        self.stop_sandbox(0).await;
        let pods: Api<Pod> = Api::namespaced(self.node.config.client.clone(), &self.ns());
        let dp = DeleteParams { grace_period_seconds: Some(0), preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }), ..Default::default() };
        if let Err(e) = pods.delete(self.pod.metadata.name.as_deref().unwrap_or(""), &dp).await {
            if !matches!(&e, kube::Error::Api(ae) if ae.code == 404 || ae.code == 409) {
                tracing::warn!(pod = %self.name(), error = %e, "cannot remove the pod after stopping it");
            }
        }
        self.teardown(0).await;
    }

    /// Stops the running containers together (SIGTERM, `grace` seconds, SIGKILL) and posts the
    /// pod's final status — containers terminated, not ready, a terminal phase — before the
    /// object goes, as upstream's status manager does: clients waiting for `Ready=false` or
    /// for the exit codes see them.
    async fn stop_containers(&mut self, grace: u64) {
        let Some(shim) = self.shim.clone() else { return };
        let Ok(states) = shim.status().await else { return };
        let stops = states.iter().filter(|s| s.running).map(|s| stop_container(shim.clone(), s.id.clone(), grace));
        futures::future::join_all(stops).await;
        // SIGKILLed containers take a moment to be reaped.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut states = shim.status().await.unwrap_or_default();
        while states.iter().any(|s| s.running) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            states = shim.status().await.unwrap_or_default();
        }
        let running: HashMap<String, ContainerState> = states.into_iter().map(|s| (s.id.clone(), s)).collect();
        self.waiting.clear();
        self.terminating = true;
        self.post_status(&running, false).await;
    }

    /// Runs the preStop hooks of the running containers, together, within `budget`.
    async fn run_pre_stop_hooks(&mut self, budget: Duration) {
        let Some(shim) = self.shim.clone() else { return };
        let Ok(states) = shim.status().await else { return };
        let ip = self.record.pod_ip.clone().unwrap_or_default();
        let mut hooks = vec![];
        for c in self.spec().containers.clone() {
            let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else { continue };
            let Some(inst) = self.record.containers.get(&c.name).and_then(|r| r.current.clone()) else { continue };
            if !states.iter().any(|s| s.id == inst.id && s.running) {
                continue;
            }
            let target = probes::Target { shim: shim.clone(), container_id: inst.id, pod_ip: ip.clone(), container: c.clone() };
            hooks.push(async move { (c.name.clone(), probes::run_hook(&hook, &target, budget).await) });
        }
        let results = tokio::time::timeout(budget, futures::future::join_all(hooks)).await.unwrap_or_default();
        for (name, r) in results {
            if let Err(e) = r {
                self.event(Some(&name), Warning, "FailedPreStopHook", &format!("PreStopHook failed: {e}")).await;
            }
        }
    }

    /// Stops every container (SIGTERM, `grace` seconds, SIGKILL) and the sandbox, and frees
    /// the pod's address. Logs and the record stay until [`Worker::teardown`].
    pub(super) async fn stop_sandbox(&mut self, grace: u64) {
        if let Some(shim) = self.shim.take() {
            if let Err(e) = shim.shutdown(grace).await {
                tracing::warn!(pod = %self.name(), error = %e, "the pod's shim did not stop cleanly");
                cleanup_sandbox(self.dir.join("sandbox")).await;
            }
        }
        if let Err(e) = self.node.network.detach(&self.uid).await {
            tracing::warn!(pod = %self.name(), error = %e, "cannot release the pod's network");
        }
    }

    pub(super) async fn teardown(&mut self, grace: u64) {
        self.stop_sandbox(grace).await;
        teardown_dir(&self.node, &self.uid, &self.dir, grace).await;
    }
}

/// Removes what a pod left on the node: its shim (if still there), network lease, volumes
/// (unmounting tmpfs ones), logs and directory.
pub async fn teardown_dir(node: &NodeRuntime, uid: &str, dir: &Path, grace: u64) {
    let sandbox = dir.join("sandbox");
    match ShimClient::connect(&sandbox).await {
        Ok(shim) => {
            if shim.shutdown(grace).await.is_err() {
                cleanup_sandbox(sandbox).await;
            }
        }
        Err(_) => cleanup_sandbox(sandbox).await,
    }
    let _ = node.network.detach(uid).await;
    node.recorder.forget(uid);
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(%uid, error = %e, "cannot remove the pod's directory");
        }
    }
    if let Ok(entries) = std::fs::read_dir(node.logs_dir()) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with(uid) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Stops one container: SIGTERM, then SIGKILL once `grace` seconds passed.
pub(super) async fn stop_container(shim: ShimClient, id: String, grace: u64) {
    let running = |states: &[ContainerState]| states.iter().any(|s| s.id == id && s.running);
    if let Err(e) = shim.kill(&id, libc::SIGTERM).await {
        tracing::debug!(container = %id, error = %e, "cannot signal a container");
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(grace);
    while Instant::now() < deadline {
        match shim.status().await {
            Ok(states) if running(&states) => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => return,
        }
    }
    let _ = shim.kill(&id, libc::SIGKILL).await;
}

/// Removes what a dead shim left (its containers, mounts, cgroups), off the async threads.
pub async fn cleanup_sandbox(dir: PathBuf) {
    if !dir.exists() {
        return;
    }
    let shown = dir.display().to_string();
    match tokio::task::spawn_blocking(move || timonier_runtime::shim::cleanup_state_dir(&dir)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(sandbox = %shown, error = %e, "cannot clean up a pod sandbox"),
        Err(e) => tracing::warn!(sandbox = %shown, error = %e, "cannot clean up a pod sandbox"),
    }
}
