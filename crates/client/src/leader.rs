//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` with
//! a `LeaseLock` does it for kube-scheduler and kube-controller-manager: when several servers
//! share one datastore, exactly one of them runs each singleton (the scheduler, the
//! controllers), and another takes over when it dies.
//!
//! The rules are client-go's. A candidate takes the Lease when nobody holds it, when the
//! holder released it, or when the record has not changed for the record's own
//! `leaseDurationSeconds` *as measured on the candidate's clock* since it last saw it change —
//! so clock skew between servers does not matter. The holder renews every `retry_period`;
//! when it has not renewed for `renew_deadline` (shorter than the lease duration) it stops its
//! work, which therefore ends before anyone else may acquire the lease. Writes carry the
//! Lease's resourceVersion, so two candidates never both win.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

/// The three durations of client-go's `LeaderElectionConfig` (kube-controller-manager's
/// `--leader-elect-lease-duration`, `--leader-elect-renew-deadline`,
/// `--leader-elect-retry-period`).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long a non-leader waits, after it last saw the record change, before it takes over.
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    pub retry_period: Duration,
}

impl Default for Timing {
    /// Upstream's defaults: 15 s, 10 s, 2 s.
    fn default() -> Timing {
        Timing { lease_duration: Duration::from_secs(15), renew_deadline: Duration::from_secs(10), retry_period: Duration::from_secs(2) }
    }
}

impl Timing {
    /// Upstream validates the same: a leader must stop before a candidate may take over, and
    /// must have retried in between.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration <= self.renew_deadline {
            return Err(format!("the lease duration ({:?}) must be longer than the renew deadline ({:?})", self.lease_duration, self.renew_deadline));
        }
        if self.renew_deadline.as_secs_f64() <= 1.2 * self.retry_period.as_secs_f64() {
            return Err(format!("the renew deadline ({:?}) must be longer than 1.2 × the retry period ({:?})", self.renew_deadline, self.retry_period));
        }
        if self.lease_duration.as_secs() < 1 {
            return Err("the lease duration must be at least 1 s (Lease durations are whole seconds)".into());
        }
        Ok(())
    }
}

/// What a candidate last saw of the Lease, and when (on its own clock).
struct Observed {
    holder: String,
    renew_time: Option<MicroTime>,
    lease_seconds: i32,
    at: Instant,
}

/// One candidate for one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Mutex<Option<Observed>>,
}

impl Elector {
    /// A candidate named `identity` (upstream: `<hostname>_<uuid>`) for Lease `namespace/name`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, timing: Timing) -> Elector {
        Elector { api: Api::namespaced(client, namespace), name: name.to_string(), identity: identity.to_string(), timing, observed: Mutex::new(None) }
    }

    /// Runs `work()` whenever this candidate holds the Lease, and never returns: waits to
    /// acquire, starts a fresh `work()`, renews; when renewing has failed for the renew
    /// deadline, drops the work (it stops acting) and waits to acquire again. `work` must stop
    /// when dropped — no task of its own may outlive it.
    pub async fn run<F, Fut>(&self, mut work: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            self.acquire().await;
            tracing::info!(lease = %self.name, identity = %self.identity, "successfully acquired lease; leading");
            let work = work();
            tokio::pin!(work);
            let renewals = self.renew_until_lost();
            tokio::pin!(renewals);
            tokio::select! {
                _ = &mut renewals => {}
                _ = &mut work => {
                    // The work ended by itself: keep the lease (another leader would start the
                    // same work) until it is lost.
                    renewals.await
                }
            }
            tracing::error!(lease = %self.name, identity = %self.identity, "leader election lost; stopped leading");
        }
    }

    /// Gives the Lease up if this candidate holds it, so that another takes over at once
    /// instead of after the lease duration (client-go's `ReleaseOnCancel`). For a clean stop.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let now = MicroTime(jiff::Timestamp::now());
        spec.holder_identity = Some(String::new());
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %self.name, identity = %self.identity, "released the lease"),
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "cannot release the lease; others take over when it expires"),
        }
    }

    async fn acquire(&self) {
        tracing::info!(lease = %self.name, identity = %self.identity, "attempting to acquire leader lease");
        loop {
            match tokio::time::timeout(self.timing.renew_deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => return,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::debug!(lease = %self.name, error = %e, "cannot acquire the lease"),
                Err(_) => tracing::debug!(lease = %self.name, "acquiring the lease timed out"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews every retry period; returns once no renewal has succeeded for the renew deadline.
    async fn renew_until_lost(&self) {
        // The start of the last successful attempt: what others measure from is later.
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            let left = self.timing.renew_deadline.saturating_sub(renewed.elapsed());
            let started = Instant::now();
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => renewed = started,
                Ok(Ok(false)) => tracing::info!(lease = %self.name, "the lease is held by another"),
                Ok(Err(e)) => tracing::warn!(lease = %self.name, error = %e, "failed to renew the lease"),
                Err(_) => tracing::warn!(lease = %self.name, "renewing the lease timed out"),
            }
            if renewed.elapsed() >= self.timing.renew_deadline {
                return;
            }
        }
    }

    /// One attempt: creates, takes over or renews the Lease. `Ok(false)`: another holds it.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let lease_seconds = self.timing.lease_duration.as_secs().clamp(1, i32::MAX as u64) as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(lease_seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        self.observe(&lease);
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if !holder.is_empty() && holder != self.identity && !self.expired() {
            return Ok(false);
        }
        if holder != self.identity {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(lease_seconds);
        spec.renew_time = Some(now);
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(updated) => {
                self.observe(&updated);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Notes the record, restarting the clock when it changed.
    fn observe(&self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        let lease_seconds = spec.lease_duration_seconds.unwrap_or(0);
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        let same = observed.as_ref().is_some_and(|o| o.holder == holder && o.renew_time == spec.renew_time && o.lease_seconds == lease_seconds);
        if !same {
            *observed = Some(Observed { holder, renew_time: spec.renew_time, lease_seconds, at: Instant::now() });
        }
    }

    /// Whether the record last observed has gone unchanged for its own lease duration.
    fn expired(&self) -> bool {
        let observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        observed.as_ref().is_none_or(|o| o.at.elapsed() >= Duration::from_secs(o.lease_seconds.max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_as_upstream_validates_it() {
        assert!(Timing::default().validate().is_ok());
        let t = |l, r, p| Timing { lease_duration: Duration::from_millis(l), renew_deadline: Duration::from_millis(r), retry_period: Duration::from_millis(p) };
        assert!(t(10_000, 10_000, 2_000).validate().is_err());
        assert!(t(15_000, 2_000, 2_000).validate().is_err());
        assert!(t(3_000, 2_000, 500).validate().is_ok());
        assert!(t(900, 600, 200).validate().is_err());
    }
}
