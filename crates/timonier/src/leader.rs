//! `timonier server`'s leader election flags, as kube-controller-manager's and kube-scheduler's
//! (`--leader-elect`, `--leader-elect-lease-duration`, …), and the server's identity in the
//! Leases it holds.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use timonier_client::leader::{Elector, Timing};
use timonier_kubelet::mirror::TaskAlive;

use crate::node_controllers::go_duration;

#[derive(clap::Args, Clone, Debug)]
pub struct LeaderElectionArgs {
    /// Run the scheduler and the controllers only while this server holds their Lease in
    /// kube-system (`kube-scheduler`, `kube-controller-manager`), so that several servers on
    /// one datastore never run them twice.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// How long other servers wait, after the leader last renewed, before they take over.
    #[arg(long, default_value = "15s", value_parser = go_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps acting without renewing (shorter than the lease duration).
    #[arg(long, default_value = "10s", value_parser = go_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    #[arg(long, default_value = "2s", value_parser = go_duration)]
    leader_elect_retry_period: Duration,
}

impl LeaderElectionArgs {
    /// The timing, or `None` without leader election; an error says which flag to change.
    pub fn timing(&self) -> anyhow::Result<Option<Timing>> {
        if !self.leader_elect {
            return Ok(None);
        }
        let timing = Timing {
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        };
        timing.validate().map_err(|e| anyhow::anyhow!("--leader-elect-*: {e}"))?;
        Ok(Some(timing))
    }
}

/// This server's name in Leases: `<hostname>_<uuid>` as upstream, the UUID kept in the data
/// directory so that a restarted server finds its own Lease and takes it back at once (two
/// servers never share a data directory).
pub fn identity(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("server-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::create_dir_all(data_dir)?;
            std::fs::write(&path, &id).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            id
        }
    };
    Ok(format!("{}_{id}", crate::agent::hostname()))
}

/// The singletons this server runs, each under its Lease.
#[derive(Default)]
pub struct Singletons {
    running: Vec<(Option<Arc<Elector>>, tokio::task::JoinHandle<()>)>,
}

impl Singletons {
    /// Runs `work()` while this server holds Lease `kube-system/<lease>` (always, without
    /// leader election); `alive` reports the component's health.
    pub fn spawn<F, Fut>(&mut self, timing: Option<Timing>, client: kube::Client, lease: &str, identity: &str, alive: &TaskAlive, mut work: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        match timing {
            Some(timing) => {
                let elector = Arc::new(Elector::new(client, "kube-system", lease, identity, timing));
                let runner = elector.clone();
                let task = tokio::spawn(alive.clone().track(async move { runner.run(work).await }));
                self.running.push((Some(elector), task));
            }
            None => self.running.push((None, tokio::spawn(alive.clone().track(work())))),
        }
    }

    /// Stops every singleton, then releases their Leases so that another server takes over at
    /// once (a clean stop; after a crash others wait out the lease duration).
    pub async fn stop_and_release(self) {
        for (_, task) in &self.running {
            task.abort();
        }
        let releases = self.running.iter().filter_map(|(e, _)| e.clone()).map(|e| async move { e.release().await });
        let _ = tokio::time::timeout(Duration::from_secs(2), futures::future::join_all(releases)).await;
    }
}
