//! What the cluster's own API clients — the kubelet, the scheduler, the controllers — share:
//! the event recorder (`events`), and watch caches that wake a level-triggered reconcile loop
//! (`watch`).

pub mod events;

pub use events::{EventType, Recorder};

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

/// The task filling a watch cache; dropping it stops the watch.
pub struct WatchTask(tokio::task::JoinHandle<()>);

impl Drop for WatchTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A watch cache (kube-rs reflector) of `api` that notifies `wake` on every change, filled
/// until the returned task is dropped; its watch retries with back-off on errors.
pub fn watch<K>(api: Api<K>, wake: Arc<tokio::sync::Notify>) -> (Store<K>, WatchTask)
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
    (reader, WatchTask(task))
}
