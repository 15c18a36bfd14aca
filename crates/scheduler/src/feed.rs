//! Watch events of every kind the scheduler follows, funnelled into one channel so that the
//! cache is updated one change at a time (a full list — at start and after a watch is lost —
//! arrives whole, to replace what the cache had).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ReplicationController, Service};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use timonier_client::AbortOnDrop;
use tokio::sync::mpsc::UnboundedSender;

pub enum Ev<K> {
    Apply(Arc<K>),
    Delete(Arc<K>),
    /// Everything there is, as listed.
    Relist(Vec<Arc<K>>),
}

pub enum Change {
    Pod(Ev<Pod>),
    Node(Ev<Node>),
    Namespace(Ev<Namespace>),
    Service(Ev<Service>),
    ReplicaSet(Ev<ReplicaSet>),
    StatefulSet(Ev<StatefulSet>),
    ReplicationController(Ev<ReplicationController>),
}

impl Change {
    /// Which kind's full list this is, if it is one (the scheduler starts once it has every
    /// kind's).
    pub fn relisted(&self) -> Option<&'static str> {
        match self {
            Change::Pod(Ev::Relist(_)) => Some("pods"),
            Change::Node(Ev::Relist(_)) => Some("nodes"),
            Change::Namespace(Ev::Relist(_)) => Some("namespaces"),
            Change::Service(Ev::Relist(_)) => Some("services"),
            Change::ReplicaSet(Ev::Relist(_)) => Some("replicasets"),
            Change::StatefulSet(Ev::Relist(_)) => Some("statefulsets"),
            Change::ReplicationController(Ev::Relist(_)) => Some("replicationcontrollers"),
            _ => None,
        }
    }
}

/// How many kinds `Change` carries.
pub const KINDS: usize = 7;

/// Watches `api` (retrying with back-off) and sends its events, wrapped by `wrap`, until the
/// returned task is dropped or the receiver is gone.
pub fn watch<K>(api: Api<K>, tx: UnboundedSender<Change>, wrap: fn(Ev<K>) -> Change) -> AbortOnDrop
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    AbortOnDrop(tokio::spawn(async move {
        futures::pin_mut!(stream);
        let mut listing: Vec<Arc<K>> = vec![];
        while let Some(event) = stream.next().await {
            let change = match event {
                Ok(Event::Apply(o)) => Ev::Apply(Arc::new(o)),
                Ok(Event::Delete(o)) => Ev::Delete(Arc::new(o)),
                Ok(Event::Init) => {
                    listing.clear();
                    continue;
                }
                Ok(Event::InitApply(o)) => {
                    listing.push(Arc::new(o));
                    continue;
                }
                Ok(Event::InitDone) => Ev::Relist(std::mem::take(&mut listing)),
                Err(e) => {
                    tracing::debug!(error = %e, "watch");
                    continue;
                }
            };
            if tx.send(wrap(change)).is_err() {
                return;
            }
        }
    }))
}
