//! What the cluster's own API clients — the kubelet, the scheduler, the controllers — share:
//! the event recorder (`events`), watch caches that wake a level-triggered reconcile loop
//! (`watch`), and leader election over a Lease (`leader`).

pub mod events;
pub mod leader;

pub use events::{EventType, Recorder};

/// Now, as Kubernetes writes timestamps in objects (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

/// A task that ends with its owner: dropping this aborts it (a watch cache's filler, a
/// stream's resize relay).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A watch cache (kube-rs reflector) of `api` that notifies `wake` on every change, filled
/// until the returned task is dropped; its watch retries with back-off on errors.
pub fn watch<K>(api: Api<K>, wake: Arc<tokio::sync::Notify>) -> (Store<K>, AbortOnDrop)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff()).touched_objects();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::debug!(error = %e, "watch");
            }
            wake.notify_one();
        }
    });
    (reader, AbortOnDrop(task))
}
