//! The cluster's state store: a revisioned key-value store with watch.
//!
//! Every object of the cluster lives here as bytes (a JSON document) under a key laid out as
//! kube-apiserver lays out etcd: `/registry/<resource>/<namespace>/<name>`. The semantics are
//! etcd v3's, because that is what the API server is written against: one global revision that
//! grows with every write, compare-and-swap on a key's mod revision, reads at a past revision,
//! and watches that replay history from any revision not yet compacted.
//!
//! Two backends implement [`Storage`]:
//! - [`SqliteStorage`], the embedded default: a kine-style log of revisions in one SQLite file,
//!   with group commit and automatic compaction;
//! - [`EtcdStorage`], for clusters of servers sharing an etcd v3 cluster.
//!
//! **API boundary:** only the API server uses this crate.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

mod etcd;
mod sqlite;

pub use etcd::{EtcdConfig, EtcdStorage};
pub use sqlite::{SqliteConfig, SqliteStorage};

/// A key's value at some revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision at which the key was (last) created.
    pub create_revision: i64,
    /// The revision of the write that produced this value.
    pub mod_revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Create,
    Update,
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The key after the change. For a delete, `value` is empty and `mod_revision` is the
    /// revision of the delete.
    pub kv: KeyValue,
    /// The key before the change; `None` for a create.
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// The result of a delete: the revision it happened at and the value it removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    pub revision: i64,
    pub prev: KeyValue,
}

/// How to list a prefix.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Read at this revision; `None` (or 0) reads at the current revision. Pages of one list
    /// pass the revision of the first page so that the whole list is one consistent snapshot.
    pub revision: Option<i64>,
    /// At most this many items; 0 means no limit.
    pub limit: usize,
    /// Start strictly after this key (the last key of the previous page).
    pub start_after: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct ListResult {
    /// Items in key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: i64,
    /// Whether more items follow the last one returned.
    pub more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    #[error("conflict on key {key:?}: expected revision {expected}, found {actual}")]
    Conflict { key: String, expected: i64, actual: i64 },
    #[error("revision {requested} has been compacted; the oldest available revision is {compacted}")]
    Compacted { requested: i64, compacted: i64 },
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision { requested: i64, current: i64 },
    #[error("cannot open the datastore: {0}")]
    Open(String),
    #[error("datastore error: {0}")]
    Backend(String),
    #[error("the datastore is shut down")]
    Closed,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of changes in revision order. It ends with an error item if the backend can no
/// longer serve it (for example [`StoreError::Compacted`] when a slow watcher fell behind the
/// compacted revision); the caller then lists again and starts a new watch.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// A revisioned key-value store with etcd v3 semantics.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it exists. Returns the
    /// revision of the write.
    async fn create(&self, key: &str, value: Bytes) -> Result<i64>;

    /// Reads the current value of `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Replaces `key` if its mod revision is still `expected`; otherwise fails with
    /// [`StoreError::Conflict`] (or [`StoreError::NotFound`] if it is gone). Returns the
    /// revision of the write.
    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64>;

    /// Deletes `key`, if its mod revision is still `expected` when one is given.
    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<Deleted>;

    /// Lists the keys under `prefix` in key order.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// Counts the keys under `prefix` at the current revision.
    async fn count(&self, prefix: &str) -> Result<i64>;

    /// Watches `prefix` (a whole key watches just that key's prefix range; callers that want
    /// one key filter by key) for every change with a revision strictly greater than `after`.
    /// Fails with [`StoreError::Compacted`] if `after` is below the compacted revision: the
    /// events after it may be gone.
    async fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream>;

    /// Forgets the history before `revision`: reads and watches below it fail with
    /// [`StoreError::Compacted`].
    async fn compact(&self, revision: i64) -> Result<()>;

    /// The latest revision (the revision of the last write).
    async fn current_revision(&self) -> Result<i64>;
}

pub type DynStorage = Arc<dyn Storage>;

/// The first key after every key that starts with `prefix`: the end of a prefix range, as
/// etcd computes it. `None` means the range is unbounded (the prefix is empty or all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Where the cluster's state lives, as given on the command line (`--datastore`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Datastore {
    /// The embedded SQLite file in the data directory.
    Sqlite,
    /// An etcd v3 cluster: `etcd://host:port[,host:port...]`.
    Etcd { endpoints: Vec<String> },
}

impl std::fmt::Display for Datastore {
    /// As the flag takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Datastore::Sqlite => f.write_str("sqlite"),
            Datastore::Etcd { endpoints } => write!(f, "etcd://{}", endpoints.join(",")),
        }
    }
}

impl std::str::FromStr for Datastore {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "sqlite" {
            return Ok(Datastore::Sqlite);
        }
        let Some(rest) = s.strip_prefix("etcd://") else {
            return Err(format!(
                "unknown datastore {s:?}: use `sqlite` or `etcd://HOST:PORT[,HOST:PORT...]`"
            ));
        };
        let endpoints: Vec<String> = rest
            .split(',')
            .map(|e| e.trim().trim_start_matches("etcd://").to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err("etcd datastore needs at least one HOST:PORT endpoint".into());
        }
        for e in &endpoints {
            let (host, port) = e
                .rsplit_once(':')
                .ok_or_else(|| format!("etcd endpoint {e:?} must be HOST:PORT"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(format!("etcd endpoint {e:?} must be HOST:PORT"));
            }
        }
        Ok(Datastore::Etcd { endpoints })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/registry/pods/"), Some(b"/registry/pods0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn datastore_parses() {
        assert_eq!("sqlite".parse(), Ok(Datastore::Sqlite));
        assert_eq!(
            "etcd://127.0.0.1:2379,10.0.0.2:2379".parse(),
            Ok(Datastore::Etcd { endpoints: vec!["127.0.0.1:2379".into(), "10.0.0.2:2379".into()] })
        );
        assert!("etcd://".parse::<Datastore>().is_err());
        assert!("etcd://host".parse::<Datastore>().is_err());
        assert!("postgres://x".parse::<Datastore>().is_err());
    }
}
