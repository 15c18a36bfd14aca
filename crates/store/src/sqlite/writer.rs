//! The single writer thread: group commit and compaction.
//!
//! All writes go through one thread that owns the only writing connection. It takes every
//! request waiting in its queue (up to `max_batch`), applies them in one transaction and
//! commits once, so concurrent writers share one fsync. Revisions are assigned here, in commit
//! order, which is what makes them global and monotonic.
//!
//! Compaction runs on the same thread, in chunks between write batches: each chunk covers a
//! bounded range of revisions, so a compaction never holds writes back for long, and since a
//! chunk covers more revisions than a write batch can add, it cannot fall behind.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use super::Shared;
use crate::{Deleted, Event, EventKind, KeyValue, StoreError};

pub(super) enum Op {
    Create { key: String, value: Bytes },
    Update { key: String, value: Bytes, expected: i64 },
    Delete { key: String, expected: Option<i64> },
}

impl Op {
    fn key(&self) -> &String {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

pub(super) enum Applied {
    Revision(i64),
    Deleted(Deleted),
}

type Reply = oneshot::Sender<Result<Applied, StoreError>>;

pub(super) enum Request {
    Write { op: Op, reply: Reply },
    /// Answered once the compaction has reached `revision`.
    Compact { revision: i64, reply: oneshot::Sender<Result<(), StoreError>> },
}

/// Revisions one compaction chunk covers. A write batch adds at most `max_batch` (≤ 1024)
/// revisions, so one chunk per batch keeps compaction ahead of any write rate.
const COMPACT_CHUNK: i64 = 10_000;

pub(super) struct Writer {
    pub conn: Connection,
    pub rx: Receiver<Request>,
    pub shared: Arc<Shared>,
    pub max_batch: usize,
    pub history: Duration,
}

/// The latest row of a key.
struct Latest {
    rev: i64,
    create_rev: i64,
    deleted: bool,
    value: Vec<u8>,
}

impl Writer {
    pub fn run(mut self) {
        let mut next_rev = self.shared.revision.load(Ordering::Acquire) + 1;
        let mut compacted = self.shared.compacted.load(Ordering::Acquire);
        let mut compact_target = compacted;
        // (time, revision) samples, one a second, to find the revision of `history` ago.
        let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut compactions: Vec<(i64, oneshot::Sender<Result<(), StoreError>>)> = Vec::new();
        loop {
            let behind = compact_target > compacted;
            let wait = if behind { Duration::ZERO } else { Duration::from_millis(500) };
            let mut next = match self.rx.recv_timeout(wait) {
                Ok(first) => Some(first),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            while let Some(req) = next.take() {
                match req {
                    Request::Write { op, reply } => batch.push((op, reply)),
                    Request::Compact { revision, reply } => {
                        let current = next_rev - 1;
                        if revision > current {
                            let _ = reply.send(Err(StoreError::FutureRevision { requested: revision, current }));
                        } else if revision <= compacted {
                            let _ = reply.send(Err(StoreError::Compacted { requested: revision, compacted }));
                        } else {
                            compact_target = compact_target.max(revision);
                            compactions.push((revision, reply));
                        }
                    }
                }
                if batch.len() < self.max_batch {
                    next = self.rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.commit_batch(&mut batch, &mut next_rev);
            }

            let now = Instant::now();
            if samples.back().is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1)) {
                samples.push_back((now, next_rev - 1));
            }
            while samples.len() > 1 && now.duration_since(samples[1].0) >= self.history {
                samples.pop_front();
            }
            if let Some(&(t, rev)) = samples.front() {
                if now.duration_since(t) >= self.history && rev > compact_target {
                    compact_target = rev;
                }
            }
            if compact_target > compacted {
                let to = compact_target.min(compacted + COMPACT_CHUNK);
                match compact_chunk(&mut self.conn, compacted, to) {
                    Ok(()) => {
                        compacted = to;
                        self.shared.compacted.store(to, Ordering::Release);
                        let (done, pending) =
                            compactions.drain(..).partition::<Vec<_>, _>(|(rev, _)| *rev <= compacted);
                        compactions = pending;
                        for (_, reply) in done {
                            let _ = reply.send(Ok(()));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "compaction failed; will retry");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
    }

    fn commit_batch(&mut self, batch: &mut Vec<(Op, Reply)>, next_rev: &mut i64) {
        let start_rev = *next_rev;
        let mut events = Vec::new();
        let mut results = Vec::with_capacity(batch.len());
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (op, _) in batch.iter() {
                results.push(apply(&tx, op, next_rev, &mut events)?);
            }
            tx.commit()
        })();
        match outcome {
            Ok(()) => {
                self.shared.revision.store(*next_rev - 1, Ordering::Release);
                if !events.is_empty() {
                    // No receivers is fine: nobody is watching.
                    let _ = self.shared.events.send(Arc::new(events));
                }
                for ((_, reply), r) in batch.drain(..).zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                *next_rev = start_rev;
                tracing::error!(error = %e, "datastore write failed");
                let msg = describe_write_error(&e);
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StoreError::Backend(msg.clone())));
                }
            }
        }
    }
}

fn describe_write_error(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => format!("the disk is full: {e}"),
        Some(rusqlite::ErrorCode::ReadOnly) => format!("the database became read-only: {e}"),
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            format!("the database file is corrupt: {e}; restore it from a backup")
        }
        _ => e.to_string(),
    }
}

fn latest(conn: &Connection, key: &str) -> rusqlite::Result<Option<Latest>> {
    conn.prepare_cached(
        "SELECT rev, create_rev, deleted, value FROM log WHERE key = ?1 ORDER BY rev DESC LIMIT 1",
    )?
    .query_row([key.as_bytes()], |row| {
        Ok(Latest {
            rev: row.get(0)?,
            create_rev: row.get(1)?,
            deleted: row.get::<_, i64>(2)? != 0,
            value: row.get(3)?,
        })
    })
    .optional()
}

fn insert(
    conn: &Connection,
    rev: i64,
    key: &str,
    create_rev: i64,
    prev_rev: i64,
    deleted: bool,
    value: &[u8],
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO log (rev, key, create_rev, prev_rev, deleted, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![rev, key.as_bytes(), create_rev, prev_rev, deleted as i64, value])?;
    Ok(())
}

/// Applies one write inside the batch's transaction. The outer error aborts the whole batch
/// (the database failed); the inner one is this request's answer (a conflict, say).
fn apply(
    tx: &Connection,
    op: &Op,
    next_rev: &mut i64,
    events: &mut Vec<Event>,
) -> rusqlite::Result<Result<Applied, StoreError>> {
    let rev = *next_rev;
    let key = op.key();
    let cur = latest(tx, key)?.filter(|l| !l.deleted);
    let prev_kv = |l: &Latest| KeyValue {
        key: key.clone(),
        value: Bytes::from(l.value.clone()),
        create_revision: l.create_rev,
        mod_revision: l.rev,
    };
    let event = match (op, &cur) {
        (Op::Create { .. }, Some(_)) => {
            return Ok(Err(StoreError::AlreadyExists { key: key.clone() }));
        }
        (Op::Create { value, .. }, None) => {
            insert(tx, rev, key, rev, 0, false, value)?;
            let kv = KeyValue { key: key.clone(), value: value.clone(), create_revision: rev, mod_revision: rev };
            Event { kind: EventKind::Create, kv, prev: None }
        }
        (Op::Update { .. } | Op::Delete { .. }, None) => {
            return Ok(Err(StoreError::NotFound { key: key.clone() }));
        }
        (Op::Update { value, expected, .. }, Some(c)) => {
            if c.rev != *expected {
                return Ok(Err(StoreError::Conflict { key: key.clone(), expected: *expected, actual: c.rev }));
            }
            insert(tx, rev, key, c.create_rev, c.rev, false, value)?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: c.create_rev,
                mod_revision: rev,
            };
            Event { kind: EventKind::Update, kv, prev: Some(prev_kv(c)) }
        }
        (Op::Delete { expected, .. }, Some(c)) => {
            if let Some(expected) = expected {
                if c.rev != *expected {
                    return Ok(Err(StoreError::Conflict { key: key.clone(), expected: *expected, actual: c.rev }));
                }
            }
            insert(tx, rev, key, c.create_rev, c.rev, true, &[])?;
            let kv = KeyValue {
                key: key.clone(),
                value: Bytes::new(),
                create_revision: c.create_rev,
                mod_revision: rev,
            };
            Event { kind: EventKind::Delete, kv, prev: Some(prev_kv(c)) }
        }
    };
    *next_rev += 1;
    let applied = match event.kind {
        EventKind::Delete => Applied::Deleted(Deleted {
            revision: rev,
            prev: event.prev.clone().expect("a delete has a previous value"),
        }),
        _ => Applied::Revision(rev),
    };
    events.push(event);
    Ok(Ok(applied))
}

/// Compacts the revisions in `(from, to]`: every row superseded by a row in that range is
/// removed, and so are the tombstones in it. What remains at or below `to` is exactly the
/// state at `to` (one row per live key), which is also the previous value of the first later
/// change of each key — so reads at `to` and watches from `to` stay complete.
fn compact_chunk(conn: &mut Connection, from: i64, to: i64) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM log WHERE rev IN \
         (SELECT prev_rev FROM log WHERE rev > ?1 AND rev <= ?2 AND prev_rev > 0)",
        params![from, to],
    )?;
    tx.execute("DELETE FROM log WHERE rev > ?1 AND rev <= ?2 AND deleted = 1", params![from, to])?;
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('compact_rev', ?1) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        [to],
    )?;
    tx.commit()
}
