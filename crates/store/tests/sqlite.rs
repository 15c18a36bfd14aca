//! What only the embedded backend has to prove: durability across SIGKILL, clear errors for
//! bad database files, automatic compaction that keeps the file bounded, and watchers that
//! fall behind the in-memory event buffer.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use timonier_store::{ListOptions, SqliteConfig, SqliteStorage, Storage, StoreError};

fn open(path: &Path) -> SqliteStorage {
    SqliteStorage::open(SqliteConfig::new(path)).expect("open")
}

fn open_err(path: &Path) -> String {
    match SqliteStorage::open(SqliteConfig::new(path)) {
        Err(StoreError::Open(msg)) => msg,
        Err(e) => panic!("expected an open error, got {e}"),
        Ok(_) => panic!("opening {} should fail", path.display()),
    }
}

/// The value the child writes for a key: deterministic, so the parent can check it byte for
/// byte, and of varying size (up to 256 KiB) so that some writes span many pages.
fn value_for(key: &str) -> Vec<u8> {
    let seed = key.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let len = 64 + (seed % 7 == 0) as usize * (seed as usize % (256 * 1024)) + (seed as usize % 4096);
    let mut v = Vec::with_capacity(len);
    let mut x = seed | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

const CHILD_ENV: &str = "TIMONIER_STORE_DURABILITY_CHILD";

/// Run by `acknowledged_writes_survive_sigkill` in a child process: writes until killed and
/// prints each acknowledged write.
#[test]
fn durability_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store = Arc::new(open(Path::new(&path)));
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..16 {
            let (store, out) = (store.clone(), out.clone());
            tasks.push(tokio::spawn(async move {
                let counter = format!("/registry/counters/{w}");
                let mut rev = store.create(&counter, Bytes::from("0")).await.unwrap();
                writeln!(out.lock().unwrap(), "SET {counter} 0").unwrap();
                for i in 1.. {
                    let key = format!("/registry/objects/{w}/{i}");
                    store.create(&key, Bytes::from(value_for(&key))).await.unwrap();
                    writeln!(out.lock().unwrap(), "ACK {key}").unwrap();
                    rev = store.update(&counter, Bytes::from(i.to_string()), rev).await.unwrap();
                    writeln!(out.lock().unwrap(), "SET {counter} {i}").unwrap();
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = timonier_testkit::temp_dir("timonier-durability-");
    let db = dir.path().join("state.db");
    for round in 0..3 {
        let mut child = timonier_testkit::ChildGuard(
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "durability_child", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, &db)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            lines
        });
        // Let it write for a while (a different moment each round), then SIGKILL it.
        tokio::time::sleep(Duration::from_millis(700 + 400 * round)).await;
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let lines = reader.join().unwrap();
        let acked: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("ACK ")).collect();
        assert!(acked.len() > 100, "round {round}: the child acknowledged only {} writes", acked.len());

        let store = open(&db);
        for key in &acked {
            let kv = store.get(key).await.unwrap().unwrap_or_else(|| panic!("acknowledged {key} is lost"));
            assert_eq!(kv.value.as_ref(), value_for(key).as_slice(), "{key} is damaged");
        }
        // Nothing half-written: every stored object is whole, acknowledged or not.
        let all = store.list("/registry/objects/", ListOptions::default()).await.unwrap();
        for kv in &all.items {
            assert_eq!(kv.value.as_ref(), value_for(&kv.key).as_slice(), "{} is damaged", kv.key);
        }
        // Counters are at least at their last acknowledged value.
        let mut last_set = std::collections::HashMap::new();
        for l in lines.iter().filter_map(|l| l.strip_prefix("SET ")) {
            let (k, v) = l.rsplit_once(' ').unwrap();
            last_set.insert(k.to_string(), v.parse::<i64>().unwrap());
        }
        for (k, v) in last_set {
            let kv = store.get(&k).await.unwrap().unwrap();
            let stored: i64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
            assert!(stored >= v, "{k}: acknowledged {v}, found {stored}");
        }
        // Clear the slate for the next round's child, which creates the counters again.
        for w in 0..16 {
            let _ = store.delete(&format!("/registry/counters/{w}"), None).await;
        }
        let objs = store.list("/registry/objects/", ListOptions::default()).await.unwrap();
        for kv in objs.items {
            store.delete(&kv.key, None).await.unwrap();
        }
    }
}

#[tokio::test]
async fn reopening_keeps_data_history_and_revisions() {
    let dir = timonier_testkit::temp_dir("timonier-reopen-");
    let db = dir.path().join("state.db");
    let (r1, r2, r3) = {
        let s = open(&db);
        let r1 = s.create("/registry/a/1", Bytes::from("one")).await.unwrap();
        let r2 = s.update("/registry/a/1", Bytes::from("two"), r1).await.unwrap();
        let r3 = s.create("/registry/a/2", Bytes::from("x")).await.unwrap();
        s.delete("/registry/a/2", None).await.unwrap();
        s.compact(r2).await.unwrap();
        (r1, r2, r3)
    };
    let s = open(&db);
    assert_eq!(s.current_revision().await.unwrap(), r3 + 1);
    assert_eq!(s.compacted_revision(), r2);
    assert!(matches!(s.watch("/registry/a/", r1).await, Err(StoreError::Compacted { .. })));
    let mut w = s.watch("/registry/a/", r2).await.unwrap();
    let e = w.next().await.unwrap().unwrap();
    assert_eq!(e.revision(), r3);
    let e = w.next().await.unwrap().unwrap();
    assert_eq!(e.revision(), r3 + 1);
    assert_eq!(e.prev.unwrap().value.as_ref(), b"x");
    assert_eq!(s.create("/registry/a/3", Bytes::from("y")).await.unwrap(), r3 + 2);
}

#[test]
fn a_corrupt_file_is_refused_clearly() {
    let dir = timonier_testkit::temp_dir("timonier-corrupt-");
    let db = dir.path().join("state.db");
    std::fs::write(&db, vec![0x5a; 64 * 1024]).unwrap();
    let msg = open_err(&db);
    assert!(msg.contains("state.db") && msg.contains("corrupt"), "{msg}");

    // A real database with damaged pages.
    let db2 = dir.path().join("damaged.db");
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let s = open(&db2);
        rt.block_on(async {
            for i in 0..2000 {
                s.create(&format!("/registry/x/{i:05}"), Bytes::from(vec![b'v'; 300])).await.unwrap();
            }
        });
    }
    // Fold the WAL into the file, then scribble over pages in the middle of it.
    let c = checkpoint_by_reopening(&db2);
    let len = std::fs::metadata(&db2).unwrap().len();
    assert!(len > 64 * 1024, "database unexpectedly small ({len} bytes; {c})");
    let mut f = std::fs::OpenOptions::new().write(true).open(&db2).unwrap();
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&vec![0xa5; 16 * 1024]).unwrap();
    drop(f);
    let msg = open_err(&db2);
    assert!(msg.contains("corrupt"), "{msg}");
}

/// Opening and closing the store checkpoints its WAL into the main file.
fn checkpoint_by_reopening(db: &Path) -> String {
    drop(open(db));
    let wal = db.with_extension("db-wal");
    format!("wal: {:?}", std::fs::metadata(wal).map(|m| m.len()).ok())
}

#[test]
fn a_database_in_use_is_refused_clearly() {
    let dir = timonier_testkit::temp_dir("timonier-locked-");
    let db = dir.path().join("state.db");
    let first = open(&db);
    let msg = open_err(&db);
    assert!(msg.contains("in use by another process"), "{msg}");
    drop(first);
    drop(open(&db));
}

#[test]
fn an_unwritable_location_is_refused_clearly() {
    let dir = timonier_testkit::temp_dir("timonier-unwritable-");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let msg = open_err(&file.join("state.db"));
    assert!(msg.contains("cannot create the directory"), "{msg}");

    // A read-only file system (root ignores permission bits, so a mount is the real test).
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let mnt = dir.path().join("ro");
    std::fs::create_dir(&mnt).unwrap();
    let status = Command::new("mount").args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"]).arg(&mnt).status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("skipping the read-only mount case: cannot mount tmpfs here");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mnt);
    let msg = open_err(&mnt.join("state.db"));
    assert!(msg.contains("ro/state.db") || msg.contains("ro/state.lock"), "{msg}");
    assert!(msg.to_lowercase().contains("read-only") || msg.contains("writable"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_keeps_history_and_file_bounded() {
    let dir = timonier_testkit::temp_dir("timonier-compaction-");
    let db = dir.path().join("state.db");
    let mut cfg = SqliteConfig::new(&db);
    cfg.history = Duration::from_secs(1);
    let s = Arc::new(SqliteStorage::open(cfg).unwrap());
    let keys = 200;
    for i in 0..keys {
        s.create(&format!("/registry/pods/ns/p{i}"), Bytes::from(vec![b'x'; 2048])).await.unwrap();
    }
    let churn = |secs: u64| {
        let s = s.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut tasks = Vec::new();
            for w in 0..8 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let k = format!("/registry/pods/ns/p{}", (w * 25) + (n % 25));
                        let kv = s.get(&k).await.unwrap().unwrap();
                        s.update(&k, Bytes::from(vec![b'y'; 2048]), kv.mod_revision).await.unwrap();
                        n += 1;
                    }
                    n
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total
        }
    };
    let size = || {
        let f = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        f(&db) + f(&db.with_extension("db-wal"))
    };
    let w1 = churn(4).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let size1 = size();
    let w2 = churn(4).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let size2 = size();
    let current = s.current_revision().await.unwrap();
    let compacted = s.compacted_revision();
    let rows = s.log_rows().await.unwrap();
    eprintln!("writes {w1}+{w2}, revision {current}, compacted {compacted}, rows {rows}, size {size1} -> {size2} (wal {:?})", std::fs::metadata(db.with_extension("db-wal")).map(|m| m.len()));
    assert!(w1 > 1000 && w2 > 1000, "too few writes to test anything ({w1}, {w2})");
    assert!(compacted > current - (w2 as i64) / 2, "compaction lags: compacted {compacted}, current {current}");
    // After the churn stops, the log holds the live keys and little more.
    assert!(rows < keys as i64 + (w2 as i64) / 2, "{rows} rows for {keys} keys");
    // The second round of churn reuses the space freed by compacting the first.
    assert!(size2 < size1 + size1 / 2 + 4 * 1024 * 1024, "file grows under churn: {size1} -> {size2}");
    // Everything live is intact.
    assert_eq!(s.count("/registry/pods/").await.unwrap(), keys as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_catches_up_from_the_log() {
    let dir = timonier_testkit::temp_dir("timonier-lag-");
    let s = open(&dir.path().join("state.db"));
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch("/registry/events/", start).await.unwrap();
    // Far more single-write batches than the broadcast buffer holds, none read yet.
    for i in 0..5000 {
        s.create(&format!("/registry/events/e{i:05}"), Bytes::from("e")).await.unwrap();
    }
    for i in 0..5000 {
        let e = tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(e.kv.key, format!("/registry/events/e{i:05}"));
        assert_eq!(e.revision(), start + 1 + i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_overtaken_by_compaction_gets_compacted() {
    let dir = timonier_testkit::temp_dir("timonier-overtaken-");
    let s = open(&dir.path().join("state.db"));
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch("/registry/events/", start).await.unwrap();
    for i in 0..5000 {
        s.create(&format!("/registry/events/e{i}"), Bytes::from("e")).await.unwrap();
        s.delete(&format!("/registry/events/e{i}"), None).await.unwrap();
    }
    s.compact(s.current_revision().await.unwrap()).await.unwrap();
    let mut seen = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap() {
            Some(Ok(_)) => seen += 1,
            Some(Err(StoreError::Compacted { .. })) => break,
            other => panic!("expected a compacted error after {seen} events, got {other:?}"),
        }
    }
    assert!(seen < 10_000);
}
