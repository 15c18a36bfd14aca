//! The embedded backend: a kine-style log of revisions in one SQLite file (WAL mode).
//!
//! One table, `log`, holds a row per write: the key, its value (empty for a delete), whether it
//! is a delete, the key's create revision and the revision of the row it replaced. The row id
//! *is* the revision. The current value of a key is its newest row; the value at revision R is
//! its newest row at or below R. Compaction (see `writer`) removes the rows no read at or
//! after the compacted revision can see.
//!
//! Writes go through one writer thread (group commit); reads use a small pool of read-only
//! connections, each read one transaction, so a read sees one committed snapshot.

mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{broadcast, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    prefix_end, Deleted, Event, EventKind, KeyValue, ListOptions, ListResult, Result, Storage,
    StoreError, WatchStream,
};
use writer::{Applied, Op, Request, Writer};

/// Settings of the embedded datastore.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// The database file; its directory is created if missing.
    pub path: PathBuf,
    /// How much history to keep for watches to resume from. Older revisions are compacted
    /// automatically.
    pub history: Duration,
    /// The most writes that share one commit.
    pub max_batch: usize,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> SqliteConfig {
        SqliteConfig { path: path.into(), history: Duration::from_secs(300), max_batch: 512 }
    }
}

/// State the writer thread shares with readers and watchers.
struct Shared {
    /// The revision of the last committed write.
    revision: AtomicI64,
    /// The compacted revision.
    compacted: AtomicI64,
    /// Each committed batch's events, in revision order.
    events: broadcast::Sender<Arc<Vec<Event>>>,
}

struct Inner {
    path: PathBuf,
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Held for the store's lifetime so that no other process opens the same file.
    _lock: File,
}

/// The embedded SQLite datastore. Cheap to clone; the database closes when the last clone
/// and the last watch are dropped.
#[derive(Clone)]
pub struct SqliteStorage {
    inner: Arc<Inner>,
}

/// Batches kept by the event broadcast; a watcher further behind reads the log instead.
const EVENT_BUFFER: usize = 1024;
/// Events buffered per watch stream before the watcher's task waits for its reader.
const WATCH_BUFFER: usize = 256;
/// Rows read per query when a watch replays history.
const REPLAY_PAGE: i64 = 1000;
const READERS_KEPT: usize = 8;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

fn open_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Open(format!("{}: {e}", path.display()))
}

/// Turns SQLite's error codes into what the user should do about them.
fn describe_open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    let hint = match e.sqlite_error_code() {
        Some(NotADatabase) | Some(DatabaseCorrupt) => {
            "the file is not a Timonier database or is corrupt; move it away (or restore a backup) and start again"
        }
        Some(ReadOnly) | Some(CannotOpen) | Some(PermissionDenied) => {
            "the file or its directory cannot be written; choose a writable --data-dir"
        }
        Some(DatabaseBusy) | Some(DatabaseLocked) => {
            "the database is locked by another process; stop it or choose another --data-dir"
        }
        Some(DiskFull) => "the disk is full",
        _ => "",
    };
    if hint.is_empty() {
        open_error(path, e)
    } else {
        open_error(path, format!("{e} ({hint})"))
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    // FULL: the WAL is synced at every commit, so an acknowledged write survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

impl SqliteStorage {
    /// Opens (or creates) the database, refusing clearly if it is corrupt, locked by another
    /// process, or not writable.
    pub fn open(config: SqliteConfig) -> Result<SqliteStorage> {
        let path = config.path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_error(dir, format!("cannot create the directory: {e}")))?;
        }
        let lock_path = path.with_extension("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| open_error(&lock_path, format!("cannot create the lock file: {e}")))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(open_error(
                    &path,
                    "the database is in use by another process (is another timonier server \
                     running with this data directory?)",
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(open_error(&lock_path, format!("cannot lock: {e}")))
            }
        }

        let conn = Connection::open(&path).map_err(|e| describe_open_error(&path, e))?;
        let init = || -> rusqlite::Result<(i64, i64)> {
            configure(&conn)?;
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("the file system does not support WAL mode (got {mode})")),
                ));
            }
            // Checkpoints truncate the WAL back to this size, so it does not stay large.
            conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
            let check: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
            if check != "ok" {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                    Some(check),
                ));
            }
            conn.execute_batch(SCHEMA)?;
            let compacted: i64 = conn
                .query_row("SELECT value FROM meta WHERE name = 'compact_rev'", [], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let max_rev: i64 = conn.query_row("SELECT IFNULL(MAX(rev), 0) FROM log", [], |r| r.get(0))?;
            Ok((max_rev.max(compacted), compacted))
        };
        let (revision, compacted) = init().map_err(|e| describe_open_error(&path, e))?;

        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            events,
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            conn,
            rx,
            shared: shared.clone(),
            max_batch: config.max_batch.clamp(1, 1024),
            history: config.history,
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| open_error(&path, format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStorage {
            inner: Arc::new(Inner {
                path,
                shared,
                tx: Mutex::new(Some(tx)),
                readers: Mutex::new(Vec::new()),
                writer: Mutex::new(Some(handle)),
                _lock: lock,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Rows in the log, live or historical: what compaction keeps bounded.
    pub async fn log_rows(&self) -> Result<i64> {
        self.read(|c| c.query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))).await
    }

    async fn write(&self, op: Op) -> Result<Applied> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Request::Write { op, reply })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a pooled read connection inside one read transaction.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.read(|c| f(c).map_err(backend)))
            .await
            .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    /// Like `read`, for reads at a revision: fails with `Compacted` when the revision is
    /// gone, checked in the same transaction as the read itself.
    async fn read_at<T: Send + 'static>(
        &self,
        revision: i64,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner.read(|c| {
                let compacted = compacted_in(c).map_err(backend)?;
                if revision < compacted {
                    return Err(StoreError::Compacted { requested: revision, compacted });
                }
                f(c).map_err(backend)
            })
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn compacted_in(c: &Connection) -> rusqlite::Result<i64> {
    Ok(c.prepare_cached("SELECT value FROM meta WHERE name = 'compact_rev'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

impl Inner {
    fn send(&self, req: Request) -> Result<()> {
        let tx = self.tx.lock().map_err(|_| StoreError::Closed)?;
        tx.as_ref().ok_or(StoreError::Closed)?.send(req).map_err(|_| StoreError::Closed)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().ok().and_then(|mut p| p.pop());
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| describe_open_error(&self.path, e))?;
                configure(&c).map_err(backend)?;
                c.pragma_update(None, "query_only", true).map_err(backend)?;
                c
            }
        };
        conn.execute_batch("BEGIN").map_err(backend)?;
        let out = f(&conn);
        let end = conn.execute_batch("COMMIT");
        if end.is_ok() {
            if let Ok(mut pool) = self.readers.lock() {
                if pool.len() < READERS_KEPT {
                    pool.push(conn);
                }
            }
        }
        out
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue stops the writer once it has committed what it holds.
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }
}

fn key_range(prefix: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    (prefix.as_bytes().to_vec(), prefix_end(prefix.as_bytes()))
}

fn row_key(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Reads the events in `(after, ...]` under a prefix, at most `REPLAY_PAGE` of them.
fn replay_page(c: &Connection, lo: &[u8], hi: Option<&[u8]>, after: i64) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = c.prepare_cached(
        "SELECT l.rev, l.key, l.create_rev, l.deleted, l.value, p.rev, p.create_rev, p.value
         FROM log l LEFT JOIN log p ON p.rev = l.prev_rev AND l.prev_rev > 0
         WHERE l.rev > ?1 AND l.key >= ?2 AND (?3 IS NULL OR l.key < ?3)
         ORDER BY l.rev LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![after, lo, hi, REPLAY_PAGE], |r| {
        let key = row_key(r.get(1)?);
        let rev: i64 = r.get(0)?;
        let deleted = r.get::<_, i64>(3)? != 0;
        let prev_rev: Option<i64> = r.get(5)?;
        let prev = match prev_rev {
            Some(prev_rev) => Some(KeyValue {
                key: key.clone(),
                value: Bytes::from(r.get::<_, Vec<u8>>(7)?),
                create_revision: r.get(6)?,
                mod_revision: prev_rev,
            }),
            None => None,
        };
        let kind = if deleted {
            EventKind::Delete
        } else if prev.is_some() {
            EventKind::Update
        } else {
            EventKind::Create
        };
        Ok(Event {
            kind,
            kv: KeyValue { key, value: Bytes::from(r.get::<_, Vec<u8>>(4)?), create_revision: r.get(2)?, mod_revision: rev },
            prev,
        })
    })?;
    rows.collect()
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        match self.write(Op::Create { key: key.to_string(), value }).await? {
            Applied::Revision(r) => Ok(r),
            Applied::Deleted(d) => Ok(d.revision),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let k = key.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT rev, create_rev, deleted, value FROM log WHERE key = ?1 ORDER BY rev DESC LIMIT 1",
            )?
            .query_row([k.as_bytes()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, Vec<u8>>(3)?))
            })
            .optional()
            .map(|row| {
                row.filter(|(_, _, deleted, _)| *deleted == 0).map(|(rev, create, _, value)| KeyValue {
                    key: k.clone(),
                    value: Bytes::from(value),
                    create_revision: create,
                    mod_revision: rev,
                })
            })
        })
        .await
    }

    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64> {
        match self.write(Op::Update { key: key.to_string(), value, expected }).await? {
            Applied::Revision(r) => Ok(r),
            Applied::Deleted(d) => Ok(d.revision),
        }
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<Deleted> {
        match self.write(Op::Delete { key: key.to_string(), expected }).await? {
            Applied::Deleted(d) => Ok(d),
            Applied::Revision(_) => Err(StoreError::Backend("a delete produced no tombstone".into())),
        }
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let current = self.inner.shared.revision.load(Ordering::Acquire);
        let revision = match opts.revision {
            None | Some(0) => current,
            Some(r) if r > current => {
                return Err(StoreError::FutureRevision { requested: r, current })
            }
            Some(r) => r,
        };
        let (lo, hi) = key_range(prefix);
        let lo = match opts.start_after {
            // The smallest key after `k` is `k` followed by a NUL byte.
            Some(k) if k.as_bytes() >= lo.as_slice() => [k.as_bytes(), &[0]].concat(),
            _ => lo,
        };
        let limit = opts.limit;
        self.read_at(revision, move |c| {
            let mut stmt = c.prepare_cached(
                // Walks the (key, rev) index in key order, keeping each key's newest row at
                // the revision: no temporary sort of whole rows.
                "SELECT l.key, l.rev, l.create_rev, l.value FROM log l
                 WHERE l.key >= ?1 AND (?2 IS NULL OR l.key < ?2) AND l.deleted = 0
                   AND l.rev = (SELECT MAX(rev) FROM log WHERE key = l.key AND rev <= ?3)
                 ORDER BY l.key LIMIT ?4",
            )?;
            // One more than asked tells whether another page follows.
            let fetch = if limit == 0 { -1 } else { limit as i64 + 1 };
            let mut items = stmt
                .query_map(params![lo, hi, revision, fetch], |r| {
                    Ok(KeyValue {
                        key: row_key(r.get(0)?),
                        mod_revision: r.get(1)?,
                        create_revision: r.get(2)?,
                        value: Bytes::from(r.get::<_, Vec<u8>>(3)?),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let more = limit > 0 && items.len() > limit;
            items.truncate(if limit == 0 { items.len() } else { limit });
            Ok(ListResult { items, revision, more })
        })
        .await
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let (lo, hi) = key_range(prefix);
        self.read(move |c| {
            c.prepare_cached(
                "SELECT COUNT(*) FROM log l
                 WHERE l.key >= ?1 AND (?2 IS NULL OR l.key < ?2) AND l.deleted = 0
                   AND l.rev = (SELECT MAX(rev) FROM log WHERE key = l.key)",
            )?
            .query_row(params![lo, hi], |r| r.get(0))
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream> {
        // Subscribe before reading history, so nothing committed in between is missed;
        // events seen twice are dropped by revision.
        let mut live = self.inner.shared.events.subscribe();
        let compacted = self.inner.shared.compacted.load(Ordering::Acquire);
        if after < compacted {
            return Err(StoreError::Compacted { requested: after, compacted });
        }
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        let store = self.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut last = after;
            let mut replay = true;
            loop {
                if replay {
                    match store.replay(&prefix, &mut last, &tx).await {
                        Ok(true) => replay = false,
                        Ok(false) => return,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
                let batch = tokio::select! {
                    _ = tx.closed() => return,
                    b = live.recv() => b,
                };
                match batch {
                    Ok(batch) => {
                        for ev in batch.iter() {
                            if ev.revision() <= last || !ev.kv.key.starts_with(&prefix) {
                                continue;
                            }
                            last = ev.revision();
                            if tx.send(Ok(ev.clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Too slow for the broadcast: read what was missed from the log.
                    Err(broadcast::error::RecvError::Lagged(_)) => replay = true,
                    Err(broadcast::error::RecvError::Closed) => {
                        let _ = tx.send(Err(StoreError::Closed)).await;
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Request::Compact { revision, reply })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.inner.shared.revision.load(Ordering::Acquire))
    }
}

impl SqliteStorage {
    /// The compacted revision: the oldest revision reads and watches can still start from.
    pub fn compacted_revision(&self) -> i64 {
        self.inner.shared.compacted.load(Ordering::Acquire)
    }

    /// Sends the logged events after `*last` under `prefix`, page by page, advancing `*last`.
    /// Returns false when the watcher has gone.
    async fn replay(
        &self,
        prefix: &str,
        last: &mut i64,
        tx: &tokio::sync::mpsc::Sender<Result<Event>>,
    ) -> Result<bool> {
        let (lo, hi) = key_range(prefix);
        let lo = Arc::new(lo);
        let hi = Arc::new(hi);
        loop {
            let after = *last;
            let (lo, hi) = (lo.clone(), hi.clone());
            let page = self
                .read_at(after, move |c| replay_page(c, &lo, hi.as_deref(), after))
                .await?;
            let full = page.len() as i64 == REPLAY_PAGE;
            for ev in page {
                *last = ev.revision();
                if tx.send(Ok(ev)).await.is_err() {
                    return Ok(false);
                }
            }
            if !full {
                return Ok(true);
            }
        }
    }
}
