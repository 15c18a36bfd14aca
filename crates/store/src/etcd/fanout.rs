//! Watch fan-out for the etcd backend: one etcd watch per prefix, shared in process by every
//! watcher of that prefix, with a ring of recent events so that watchers starting a little in
//! the past join it too.
//!
//! Without it, each watcher is its own etcd watch stream, and 1,000 of them on one gRPC
//! connection deliver a fraction of what one stream fanned out in memory does. A watcher that
//! starts before the ring, or falls behind the broadcast, gets an etcd watch of its own from
//! where it is — so it never misses an event.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::{FutureExt, StreamExt};
use tokio::sync::broadcast;

use super::EtcdStorage;
use crate::{Event, Result, Storage, WatchStream};

/// Events kept per prefix for watchers that start in the recent past.
const RING: usize = 10_000;
/// Events a watcher may lag behind before it continues on a watch of its own.
const BROADCAST: usize = 16_384;

#[derive(Default)]
pub(super) struct Hubs(Mutex<HashMap<String, Arc<Hub>>>);

struct Hub {
    state: Mutex<HubState>,
}

struct HubState {
    ring: VecDeque<Event>,
    /// The ring holds every event of the prefix after this revision.
    complete_after: i64,
    /// None once the shared etcd watch has ended.
    tx: Option<broadcast::Sender<Arc<Vec<Event>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shared watch of `prefix`, started if there is none.
async fn hub(store: &EtcdStorage, prefix: &str) -> Result<Arc<Hub>> {
    if let Some(h) = lock(&store.hubs.0).get(prefix) {
        if lock(&h.state).tx.is_some() {
            return Ok(h.clone());
        }
    }
    let rev = store.current_revision().await?;
    let mut stream = store.direct_watch(prefix, rev).await?;
    let (tx, _) = broadcast::channel(BROADCAST);
    let fresh = Arc::new(Hub { state: Mutex::new(HubState { ring: VecDeque::new(), complete_after: rev, tx: Some(tx) }) });
    let hub = {
        let mut hubs = lock(&store.hubs.0);
        match hubs.get(prefix) {
            Some(h) if lock(&h.state).tx.is_some() => return Ok(h.clone()),
            _ => {
                hubs.insert(prefix.to_string(), fresh.clone());
                fresh
            }
        }
    };
    let feeding = hub.clone();
    tokio::spawn(async move {
        while let Some(Ok(first)) = stream.next().await {
            // Whatever else is ready goes out in the same batch: one wake-up per watcher.
            let mut batch = vec![first];
            while let Some(Some(Ok(ev))) = stream.next().now_or_never() {
                batch.push(ev);
            }
            let mut st = lock(&feeding.state);
            st.ring.extend(batch.iter().cloned());
            while st.ring.len() > RING {
                if let Some(old) = st.ring.pop_front() {
                    st.complete_after = old.revision();
                }
            }
            if let Some(tx) = &st.tx {
                let _ = tx.send(Arc::new(batch));
            }
        }
        // The shared watch ended: its watchers continue on watches of their own, and the
        // next watcher starts a new shared one.
        lock(&feeding.state).tx = None;
    });
    Ok(hub)
}

enum Phase {
    Shared(VecDeque<Event>, broadcast::Receiver<Arc<Vec<Event>>>),
    Own(WatchStream),
    Done,
}

pub(super) async fn watch(store: &EtcdStorage, prefix: &str, after: i64) -> Result<WatchStream> {
    let joined = match hub(store, prefix).await {
        Ok(h) => {
            let st = lock(&h.state);
            match &st.tx {
                Some(tx) if after >= st.complete_after => {
                    // Subscribed under the lock: each event is either in the copied ring or
                    // on the channel.
                    let rx = tx.subscribe();
                    let initial: VecDeque<Event> = st.ring.iter().filter(|e| e.revision() > after).cloned().collect();
                    Some((initial, rx))
                }
                _ => None,
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "no shared etcd watch; using a watch of its own");
            None
        }
    };
    let Some((initial, rx)) = joined else { return store.direct_watch(prefix, after).await };
    let store = store.clone();
    let prefix = prefix.to_string();
    let state = (Phase::Shared(initial, rx), after);
    let events = futures::stream::unfold(state, move |(mut phase, mut last)| {
        let store = store.clone();
        let prefix = prefix.clone();
        async move {
            loop {
                match &mut phase {
                    Phase::Shared(initial, rx) => {
                        if let Some(ev) = initial.pop_front() {
                            last = ev.revision();
                            return Some((Ok(ev), (phase, last)));
                        }
                        match rx.recv().await {
                            Ok(batch) => initial.extend(batch.iter().filter(|e| e.revision() > last).cloned()),
                            Err(_) => match store.direct_watch(&prefix, last).await {
                                Ok(own) => phase = Phase::Own(own),
                                Err(e) => return Some((Err(e), (Phase::Done, last))),
                            },
                        }
                    }
                    Phase::Own(own) => {
                        return match own.next().await {
                            Some(Ok(ev)) => {
                                last = ev.revision();
                                Some((Ok(ev), (phase, last)))
                            }
                            Some(Err(e)) => Some((Err(e), (Phase::Done, last))),
                            None => None,
                        }
                    }
                    Phase::Done => return None,
                }
            }
        }
    });
    Ok(Box::pin(events))
}
