//! Ephemeral containers (`kubectl debug`): added to a running pod through
//! `pods/ephemeralcontainers`, started as soon as the sandbox runs — init containers need not
//! have finished, as upstream — never restarted, never probed, and outside the pod's phase and
//! readiness. One with `targetContainerName` joins that container's PID namespace, so that the
//! debugger sees the processes it is debugging.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, EphemeralContainer};
use timonier_runtime::shim::ContainerState;

use super::{RunState, Worker};
use crate::status::State;

impl Worker {
    /// Starts the ephemeral containers that never ran; returns when to look again, if one
    /// has to wait (its image pull backing off, its target not running yet).
    pub(super) async fn start_ephemeral(&mut self, running: &HashMap<String, ContainerState>, ip: &str) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        for e in self.spec().ephemeral_containers.clone().unwrap_or_default() {
            if self.run_state(&e.name, running) != RunState::NotStarted {
                continue;
            }
            let pid_namespace = match e.target_container_name.as_deref().filter(|t| !t.is_empty()) {
                None => None,
                Some(target) => match self.running_pid(target, running) {
                    Some(pid) => Some(pid),
                    None => {
                        // Upstream fails the container's configuration the same way and
                        // tries again on the next pass.
                        let message = format!("unable to find target container {target}");
                        self.waiting.insert(e.name.clone(), State::waiting("CreateContainerConfigError", Some(message)));
                        next = Some(next.map_or(Duration::from_secs(1), |n| n.min(Duration::from_secs(1))));
                        continue;
                    }
                },
            };
            if let Some(wait) = self.start(&as_container(&e), ip, pid_namespace).await {
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
        }
        next
    }

    /// The host PID of container `name`'s current run, if it runs.
    fn running_pid(&self, name: &str, running: &HashMap<String, ContainerState>) -> Option<u32> {
        let id = &self.record.containers.get(name)?.current.as_ref()?.id;
        running.get(id).filter(|s| s.running && s.pid > 0).map(|s| s.pid as u32)
    }
}

/// The container an ephemeral container describes: the same fields, minus those validation
/// forbids for it (ports, probes, lifecycle, resources) and its target.
pub(super) fn as_container(e: &EphemeralContainer) -> Container {
    Container {
        name: e.name.clone(),
        image: e.image.clone(),
        image_pull_policy: e.image_pull_policy.clone(),
        command: e.command.clone(),
        args: e.args.clone(),
        working_dir: e.working_dir.clone(),
        env: e.env.clone(),
        env_from: e.env_from.clone(),
        volume_mounts: e.volume_mounts.clone(),
        volume_devices: e.volume_devices.clone(),
        security_context: e.security_context.clone(),
        stdin: e.stdin,
        stdin_once: e.stdin_once,
        tty: e.tty,
        termination_message_path: e.termination_message_path.clone(),
        termination_message_policy: e.termination_message_policy.clone(),
        ..Default::default()
    }
}
