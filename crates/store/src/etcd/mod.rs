//! The etcd v3 backend, for several servers sharing one etcd cluster.
//!
//! Keys are stored exactly as given (the API server lays them out as kube-apiserver does,
//! `/registry/<resource>/<namespace>/<name>`), and each operation is the etcd transaction
//! kube-apiserver's storage layer uses: create = "create_revision is 0, then put"; update and
//! delete = "mod_revision is the expected one, then put/delete, else read the current value".

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, CompactionOptions, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};
use std::collections::VecDeque;
use std::time::Duration;

mod fanout;

use crate::{
    prefix_end, Deleted, Event, EventKind, KeyValue, ListOptions, ListResult, Result, Storage,
    StoreError, WatchStream,
};

/// Kubernetes objects reach 1.5 MiB and a list page holds many: the default 4 MiB message
/// limit of gRPC is far too small.
const MAX_MESSAGE: usize = 2 * 1024 * 1024 * 1024 - 1;

#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `host:port` of each member.
    pub endpoints: Vec<String>,
    pub connect_timeout: Duration,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> EtcdConfig {
        EtcdConfig { endpoints, connect_timeout: Duration::from_secs(5) }
    }
}

#[derive(Clone)]
pub struct EtcdStorage {
    kv: KvClient,
    watch: WatchClient,
    hubs: std::sync::Arc<fanout::Hubs>,
}

/// etcd's own words, as kube-apiserver passes them on (`etcdserver: request timed out`);
/// the client's, marked as such (`etcd client: tcp connect error`).
fn backend(e: etcd_client::Error) -> StoreError {
    match e {
        etcd_client::Error::GRpcStatus(s) if s.message().starts_with("etcdserver:") => StoreError::Backend(s.message().to_string()),
        etcd_client::Error::GRpcStatus(s) => StoreError::Backend(format!("etcd client: {}", s.message())),
        e => StoreError::Backend(e.to_string()),
    }
}

/// Whether the request never reached etcd — the client could not connect to the member its
/// balancer picked (a member down) — so that sending it again, to another member, is safe even
/// for a write (as clientv3's retry interceptor does for requests it knows were not sent).
fn unsent(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::Unavailable && s.message().contains("connect error"))
}

/// Runs `request` until it is sent: with a member of the cluster down, a request the client
/// routes to that member fails before it leaves, and goes to another on the next try.
async fn sent<T, F, Fut>(mut request: F) -> std::result::Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let mut tries = 0u64;
    loop {
        match request().await {
            Err(e) if unsent(&e) && tries < 10 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10 * tries)).await;
            }
            r => return r,
        }
    }
}

const COMPACTED: &str = "required revision has been compacted";
const FUTURE: &str = "required revision is a future revision";

fn to_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Result<i64> {
    h.map(|h| h.revision()).ok_or_else(|| StoreError::Backend("etcd response without a header".into()))
}

/// The first key of the `Get` in a failed transaction's else branch, if any.
fn else_kv(responses: Vec<TxnOpResponse>) -> Option<KeyValue> {
    responses.into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().map(to_kv),
        _ => None,
    })
}

impl EtcdStorage {
    /// Maps the errors etcd gives for reads at a revision.
    async fn read_error(&self, e: etcd_client::Error, requested: i64) -> StoreError {
        let msg = e.to_string();
        if msg.contains(COMPACTED) {
            StoreError::Compacted { requested, compacted: self.compacted_revision().await }
        } else if msg.contains(FUTURE) {
            let current = self.current_revision().await.unwrap_or(0);
            StoreError::FutureRevision { requested, current }
        } else {
            StoreError::Backend(msg)
        }
    }

    /// The compacted revision, which etcd reports only by cancelling a watch that starts
    /// before it; 0 if that does not happen within a second.
    pub async fn compacted_revision(&self) -> i64 {
        let probe = async {
            let opts = WatchOptions::new().with_start_revision(1);
            let mut stream = self.watch.clone().watch("\0", Some(opts)).await.ok()?;
            loop {
                let r = stream.message().await.ok()??;
                if r.canceled() {
                    return Some(r.compact_revision());
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(1), probe).await.ok().flatten().unwrap_or(0)
    }

    /// A watch of its own on etcd, from any revision etcd still has.
    async fn direct_watch(&self, prefix: &str, after: i64) -> Result<WatchStream> {
        // etcd would accept a watch from `after + 1` even when `after` itself is compacted;
        // a read at `after` refuses it, which gives both backends the same rule.
        if after > 0 {
            let probe = GetOptions::new().with_revision(after).with_count_only();
            if let Err(e) = sent(|| { let (mut kv, probe) = (self.kv.clone(), probe.clone()); async move { kv.get("\0", Some(probe)).await } }).await {
                return Err(self.read_error(e, after).await);
            }
        }
        let opts = WatchOptions::new().with_prefix().with_prev_key().with_start_revision(after + 1);
        let mut stream = self.watch.clone().watch(prefix, Some(opts)).await.map_err(backend)?;
        // The first response confirms the watch exists; events come after it.
        match stream.message().await.map_err(backend)? {
            Some(r) if r.canceled() => {
                return Err(StoreError::Backend(format!("etcd refused the watch: {}", r.cancel_reason())))
            }
            Some(_) => {}
            None => return Err(StoreError::Backend("etcd closed the watch".into())),
        }
        // The stream reads etcd's responses itself (no relay task): each response's events
        // are handed out from a buffer, and dropping the stream cancels the etcd watch.
        struct State {
            stream: etcd_client::WatchStream,
            buffer: VecDeque<Event>,
            done: bool,
        }
        let state = State { stream, buffer: VecDeque::new(), done: false };
        let events = futures::stream::unfold(state, move |mut st| async move {
            loop {
                if let Some(ev) = st.buffer.pop_front() {
                    return Some((Ok(ev), st));
                }
                if st.done {
                    return None;
                }
                let resp = match st.stream.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        st.done = true;
                        return Some((Err(StoreError::Backend("etcd closed the watch".into())), st));
                    }
                    Err(e) => {
                        st.done = true;
                        return Some((Err(backend(e)), st));
                    }
                };
                if resp.canceled() {
                    st.done = true;
                    let err = if resp.compact_revision() > 0 {
                        StoreError::Compacted { requested: after, compacted: resp.compact_revision() }
                    } else {
                        StoreError::Backend(format!("etcd cancelled the watch: {}", resp.cancel_reason()))
                    };
                    return Some((Err(err), st));
                }
                st.buffer.extend(resp.events().iter().filter_map(to_event));
            }
        });
        Ok(Box::pin(events))
    }

    /// Connects to the cluster and checks that it answers.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdStorage> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10))
            .with_keep_alive_while_idle(true);
        let where_ = config.endpoints.join(",");
        let client = Client::connect(&config.endpoints, Some(opts))
            .await
            .map_err(|e| StoreError::Open(format!("cannot connect to etcd at {where_}: {e}")))?;
        let store = EtcdStorage {
            kv: client.kv_client().max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            hubs: Default::default(),
        };
        tokio::time::timeout(config.connect_timeout, store.current_revision())
            .await
            .map_err(|_| StoreError::Open(format!("etcd at {where_} did not answer")))?
            .map_err(|e| StoreError::Open(format!("etcd at {where_} does not work: {e}")))?;
        Ok(store)
    }

    /// A guarded put or delete: `op` if the key's mod revision is `expected`, else read it.
    async fn guarded(&self, key: &str, expected: i64, op: TxnOp) -> Result<std::result::Result<etcd_client::TxnResponse, Option<KeyValue>>> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([op])
            .or_else([TxnOp::get(key, None)]);
        let resp = sent(|| { let (mut kv, txn) = (self.kv.clone(), txn.clone()); async move { kv.txn(txn).await } }).await.map_err(backend)?;
        if resp.succeeded() {
            Ok(Ok(resp))
        } else {
            Ok(Err(else_kv(resp.op_responses())))
        }
    }
}

/// One etcd watch event as ours.
fn to_event(ev: &etcd_client::Event) -> Option<Event> {
    let kv = to_kv(ev.kv()?);
    let prev = ev.prev_kv().map(to_kv);
    let kind = match ev.event_type() {
        EventType::Delete => EventKind::Delete,
        EventType::Put if kv.create_revision == kv.mod_revision => EventKind::Create,
        EventType::Put => EventKind::Update,
    };
    let kv = if kind == EventKind::Delete {
        KeyValue { create_revision: prev.as_ref().map_or(0, |p| p.create_revision), ..kv }
    } else {
        kv
    };
    Some(Event { kind, kv, prev })
}

#[async_trait]
impl Storage for EtcdStorage {
    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let resp = sent(|| { let (mut kv, txn) = (self.kv.clone(), txn.clone()); async move { kv.txn(txn).await } }).await.map_err(backend)?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.to_string() });
        }
        header_revision(resp.header())
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = sent(|| { let mut kv = self.kv.clone(); async move { kv.get(key, None).await } }).await.map_err(backend)?;
        Ok(resp.kvs().first().map(to_kv))
    }

    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64> {
        match self.guarded(key, expected, TxnOp::put(key, value.to_vec(), None)).await? {
            Ok(resp) => header_revision(resp.header()),
            Err(None) => Err(StoreError::NotFound { key: key.to_string() }),
            Err(Some(cur)) => Err(StoreError::Conflict { key: key.to_string(), expected, actual: cur.mod_revision }),
        }
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<Deleted> {
        let del = TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()));
        let resp = match expected {
            Some(expected) => match self.guarded(key, expected, del).await? {
                Ok(resp) => resp,
                Err(None) => return Err(StoreError::NotFound { key: key.to_string() }),
                Err(Some(cur)) => {
                    return Err(StoreError::Conflict { key: key.to_string(), expected, actual: cur.mod_revision })
                }
            },
            None => {
                let txn = Txn::new().and_then([del]);
                sent(|| { let (mut kv, txn) = (self.kv.clone(), txn.clone()); async move { kv.txn(txn).await } }).await.map_err(backend)?
            }
        };
        let revision = header_revision(resp.header())?;
        let prev = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Delete(d) => d.prev_kvs().first().map(to_kv),
            _ => None,
        });
        match prev {
            Some(prev) => Ok(Deleted { revision, prev }),
            None => Err(StoreError::NotFound { key: key.to_string() }),
        }
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let end = prefix_end(prefix.as_bytes()).unwrap_or_else(|| vec![0]);
        let start: Vec<u8> = match &opts.start_after {
            Some(k) if k.as_str() >= prefix => [k.as_bytes(), &[0]].concat(),
            _ => prefix.as_bytes().to_vec(),
        };
        let mut get = GetOptions::new().with_range(end);
        let requested = opts.revision.unwrap_or(0);
        if requested > 0 {
            get = get.with_revision(requested);
        }
        if opts.limit > 0 {
            get = get.with_limit(opts.limit as i64);
        }
        let resp = match sent(|| { let (mut kv, start, get) = (self.kv.clone(), start.clone(), get.clone()); async move { kv.get(start, Some(get)).await } }).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.read_error(e, requested).await),
        };
        let revision = if requested > 0 { requested } else { header_revision(resp.header())? };
        Ok(ListResult { items: resp.kvs().iter().map(to_kv).collect(), revision, more: resp.more() })
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let end = prefix_end(prefix.as_bytes()).unwrap_or_else(|| vec![0]);
        let count = GetOptions::new().with_range(end).with_count_only();
        let resp = sent(|| { let (mut kv, count) = (self.kv.clone(), count.clone()); async move { kv.get(prefix, Some(count)).await } }).await.map_err(backend)?;
        Ok(resp.count())
    }

    async fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream> {
        fanout::watch(self, prefix, after).await
    }


    async fn compact(&self, revision: i64) -> Result<()> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StoreError::FutureRevision { requested: revision, current });
        }
        let result = sent(|| { let mut kv = self.kv.clone(); async move { kv.compact(revision, Some(CompactionOptions::new().with_physical())).await } }).await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains(COMPACTED) => {
                Err(StoreError::Compacted { requested: revision, compacted: self.compacted_revision().await })
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn current_revision(&self) -> Result<i64> {
        let resp = sent(|| { let mut kv = self.kv.clone(); async move { kv.get("\0", Some(GetOptions::new().with_count_only())).await } }).await.map_err(backend)?;
        header_revision(resp.header())
    }
}
