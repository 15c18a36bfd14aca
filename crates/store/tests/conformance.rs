//! One conformance suite, run against both backends: the embedded SQLite store and a real etcd
//! server (Debian's `etcd-server`, started on a free loopback port for each test).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use timonier_store::{
    EtcdConfig, EtcdStorage, EventKind, ListOptions, SqliteConfig, SqliteStorage, Storage,
    StoreError, WatchStream,
};

struct Harness {
    store: Arc<dyn Storage>,
    _keep: Box<dyn Any + Send>,
}

fn sqlite() -> Harness {
    let dir = timonier_testkit::temp_dir("timonier-store-");
    let store = SqliteStorage::open(SqliteConfig::new(dir.path().join("state.db"))).expect("open sqlite");
    Harness { store: Arc::new(store), _keep: Box::new(dir) }
}

async fn etcd() -> Harness {
    let etcd = timonier_testkit::Etcd::start().expect("start etcd (install Debian's etcd-server)");
    let store = EtcdStorage::connect(EtcdConfig::new(vec![etcd.endpoint.clone()]))
        .await
        .expect("connect to etcd");
    Harness { store: Arc::new(store), _keep: Box::new(etcd) }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::sqlite();
                    super::$name(h.store.clone()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::etcd().await;
                    super::$name(h.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    crud_and_guards,
    revisions_are_global_and_monotonic,
    concurrent_conflicting_updates_exactly_one_wins,
    concurrent_creates_exactly_one_wins,
    list_by_prefix_in_key_order,
    list_at_a_past_revision,
    pagination_is_consistent_while_writes_continue,
    watch_replays_exactly_the_missed_events,
    watch_from_now_sees_only_new_events,
    idle_watch_stays_alive,
    compacted_reads_and_watches_fail,
    large_values,
    unicode_and_slash_keys,
    many_watchers_see_the_same_events,
    watchers_joining_mid_stream_see_exactly_their_events,
);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next(w: &mut WatchStream) -> timonier_store::Event {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("no watch event within 10 s")
        .expect("watch ended")
        .expect("watch error")
}

async fn nothing_within(w: &mut WatchStream, d: Duration) {
    if let Ok(item) = tokio::time::timeout(d, w.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

async fn crud_and_guards(s: Arc<dyn Storage>) {
    let k = "/registry/configmaps/default/one";
    let r1 = s.create(k, b("v1")).await.unwrap();
    assert!(r1 > 0);
    let kv = s.get(k).await.unwrap().unwrap();
    assert_eq!((kv.value.as_ref(), kv.create_revision, kv.mod_revision), (&b"v1"[..], r1, r1));
    assert!(matches!(s.create(k, b("again")).await, Err(StoreError::AlreadyExists { .. })));

    let r2 = s.update(k, b("v2"), r1).await.unwrap();
    assert!(r2 > r1);
    match s.update(k, b("stale"), r1).await {
        Err(StoreError::Conflict { expected, actual, .. }) => assert_eq!((expected, actual), (r1, r2)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let kv = s.get(k).await.unwrap().unwrap();
    assert_eq!((kv.value.as_ref(), kv.create_revision, kv.mod_revision), (&b"v2"[..], r1, r2));
    assert!(matches!(s.update("/registry/configmaps/default/none", b("x"), 1).await, Err(StoreError::NotFound { .. })));

    assert!(matches!(s.delete(k, Some(r1)).await, Err(StoreError::Conflict { .. })));
    let d = s.delete(k, Some(r2)).await.unwrap();
    assert!(d.revision > r2);
    assert_eq!((d.prev.value.as_ref(), d.prev.mod_revision), (&b"v2"[..], r2));
    assert_eq!(s.get(k).await.unwrap(), None);
    assert!(matches!(s.delete(k, None).await, Err(StoreError::NotFound { .. })));

    let r4 = s.create(k, b("reborn")).await.unwrap();
    let kv = s.get(k).await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r4, r4));
    let d = s.delete(k, None).await.unwrap();
    assert_eq!(d.prev.value.as_ref(), b"reborn");
}

async fn revisions_are_global_and_monotonic(s: Arc<dyn Storage>) {
    let mut last = s.current_revision().await.unwrap();
    for i in 0..20 {
        let key = format!("/registry/pods/ns{}/p{i}", i % 3);
        let r = s.create(&key, b("x")).await.unwrap();
        assert_eq!(r, last + 1, "each write takes the next revision");
        assert_eq!(s.current_revision().await.unwrap(), r);
        last = r;
    }
    // A failed write consumes no revision.
    let _ = s.create("/registry/pods/ns0/p0", b("x")).await.unwrap_err();
    assert_eq!(s.current_revision().await.unwrap(), last);
}

async fn concurrent_conflicting_updates_exactly_one_wins(s: Arc<dyn Storage>) {
    let k = "/registry/deployments/default/web";
    let r = s.create(k, b("0")).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.update(k, Bytes::from(format!("writer {i}")), r).await })
        })
        .collect();
    let mut wins = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(rev) => wins.push((i, rev)),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one writer wins");
    let kv = s.get(k).await.unwrap().unwrap();
    assert_eq!(kv.value, Bytes::from(format!("writer {}", wins[0].0)));
    assert_eq!(kv.mod_revision, wins[0].1);
}

async fn concurrent_creates_exactly_one_wins(s: Arc<dyn Storage>) {
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.create("/registry/namespaces/race", Bytes::from(format!("{i}"))).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(ok, 1);
}

async fn list_by_prefix_in_key_order(s: Arc<dyn Storage>) {
    for k in [
        "/registry/pods/b/2",
        "/registry/pods/a/1",
        "/registry/pods/a/0",
        "/registry/podsecuritypolicies/x",
        "/registry/pod",
        "/registry/services/a/1",
    ] {
        s.create(k, Bytes::from(k.to_string())).await.unwrap();
    }
    let l = s.list("/registry/pods/", ListOptions::default()).await.unwrap();
    let keys: Vec<_> = l.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/registry/pods/a/0", "/registry/pods/a/1", "/registry/pods/b/2"]);
    assert!(!l.more);
    assert_eq!(l.revision, s.current_revision().await.unwrap());
    assert_eq!(s.count("/registry/pods/").await.unwrap(), 3);
    assert_eq!(s.count("/registry/pods/a/").await.unwrap(), 2);
    assert_eq!(s.count("/registry/nothing/").await.unwrap(), 0);
    s.delete("/registry/pods/a/0", None).await.unwrap();
    assert_eq!(s.count("/registry/pods/").await.unwrap(), 2);
    let l = s.list("/registry/pods/", ListOptions::default()).await.unwrap();
    assert_eq!(l.items.len(), 2);
    for kv in &l.items {
        assert_eq!(kv.value, Bytes::from(kv.key.clone()));
    }
}

async fn list_at_a_past_revision(s: Arc<dyn Storage>) {
    let r1 = s.create("/registry/secrets/ns/a", b("a1")).await.unwrap();
    let r2 = s.create("/registry/secrets/ns/b", b("b1")).await.unwrap();
    s.update("/registry/secrets/ns/a", b("a2"), r1).await.unwrap();
    s.delete("/registry/secrets/ns/b", Some(r2)).await.unwrap();
    s.create("/registry/secrets/ns/c", b("c1")).await.unwrap();

    let at = |rev| ListOptions { revision: Some(rev), ..Default::default() };
    let snapshot = |l: timonier_store::ListResult| -> Vec<(String, String)> {
        l.items.into_iter().map(|kv| (kv.key, String::from_utf8(kv.value.to_vec()).unwrap())).collect()
    };
    let l = s.list("/registry/secrets/", at(r2)).await.unwrap();
    assert_eq!(l.revision, r2);
    assert_eq!(
        snapshot(l),
        [("/registry/secrets/ns/a".into(), "a1".into()), ("/registry/secrets/ns/b".into(), "b1".into())]
    );
    let l = s.list("/registry/secrets/", ListOptions::default()).await.unwrap();
    assert_eq!(
        snapshot(l),
        [("/registry/secrets/ns/a".into(), "a2".into()), ("/registry/secrets/ns/c".into(), "c1".into())]
    );
    let current = s.current_revision().await.unwrap();
    assert!(matches!(
        s.list("/registry/secrets/", at(current + 100)).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

async fn pagination_is_consistent_while_writes_continue(s: Arc<dyn Storage>) {
    let mut expected = BTreeMap::new();
    for i in 0..200 {
        let k = format!("/registry/pods/default/pod-{i:03}");
        let rev = s.create(&k, Bytes::from(format!("v0-{i}"))).await.unwrap();
        expected.insert(k, (format!("v0-{i}"), rev));
    }
    // A writer churns the same keys (updates, deletes, new keys) while we page.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let i = n % 200;
                let k = format!("/registry/pods/default/pod-{i:03}");
                if let Ok(Some(kv)) = s.get(&k).await {
                    if n % 3 == 0 {
                        let _ = s.delete(&k, Some(kv.mod_revision)).await;
                    } else {
                        let _ = s.update(&k, Bytes::from(format!("v{n}")), kv.mod_revision).await;
                    }
                }
                let _ = s.create(&format!("/registry/pods/default/pod-{i:03}-new{n}"), b("new")).await;
                n += 1;
            }
            n
        })
    };
    let first = s.list("/registry/pods/", ListOptions { limit: 7, ..Default::default() }).await.unwrap();
    let revision = first.revision;
    let mut got: Vec<_> = first.items;
    let mut more = first.more;
    while more {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let page = s
            .list(
                "/registry/pods/",
                ListOptions {
                    revision: Some(revision),
                    limit: 7,
                    start_after: got.last().map(|kv| kv.key.clone()),
                },
            )
            .await
            .unwrap();
        assert_eq!(page.revision, revision);
        assert!(page.items.len() <= 7);
        more = page.more;
        got.extend(page.items);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 0, "the writer made progress during paging");
    // The pages, put together, are the state at the first page's revision.
    let at_first_page: BTreeMap<_, _> = s
        .list("/registry/pods/", ListOptions { revision: Some(revision), ..Default::default() })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|kv| (kv.key.clone(), (String::from_utf8(kv.value.to_vec()).unwrap(), kv.mod_revision)))
        .collect();
    let paged: BTreeMap<_, _> = got
        .into_iter()
        .map(|kv| (kv.key.clone(), (String::from_utf8(kv.value.to_vec()).unwrap(), kv.mod_revision)))
        .collect();
    assert_eq!(paged, at_first_page);
    for (k, v) in &paged {
        if let Some(orig) = expected.get(k) {
            if v.1 <= orig.1 {
                assert_eq!(v, orig);
            }
        }
    }
}

async fn watch_replays_exactly_the_missed_events(s: Arc<dyn Storage>) {
    let start = s.create("/registry/pods/ns/before", b("x")).await.unwrap();
    // What happens after `start` — interleaved with writes outside the prefix.
    let a1 = s.create("/registry/pods/ns/a", b("a1")).await.unwrap();
    s.create("/registry/services/ns/a", b("svc")).await.unwrap();
    let a2 = s.update("/registry/pods/ns/a", b("a2"), a1).await.unwrap();
    let del = s.delete("/registry/pods/ns/before", None).await.unwrap();
    s.create("/registry/podtemplates/ns/t", b("t")).await.unwrap();
    let b1 = s.create("/registry/pods/other/b", b("b1")).await.unwrap();

    let mut w = s.watch("/registry/pods/", start).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!((e.kind, e.kv.key.as_str(), e.kv.value.as_ref(), e.revision()), (EventKind::Create, "/registry/pods/ns/a", &b"a1"[..], a1));
    assert_eq!(e.prev, None);
    let e = next(&mut w).await;
    assert_eq!((e.kind, e.kv.value.as_ref(), e.revision(), e.kv.create_revision), (EventKind::Update, &b"a2"[..], a2, a1));
    let prev = e.prev.expect("an update carries the previous value");
    assert_eq!((prev.value.as_ref(), prev.mod_revision), (&b"a1"[..], a1));
    let e = next(&mut w).await;
    assert_eq!((e.kind, e.kv.key.as_str(), e.revision()), (EventKind::Delete, "/registry/pods/ns/before", del.revision));
    assert_eq!(e.prev.expect("a delete carries the deleted value").value.as_ref(), b"x");
    let e = next(&mut w).await;
    assert_eq!((e.kind, e.kv.key.as_str(), e.revision()), (EventKind::Create, "/registry/pods/other/b", b1));
    nothing_within(&mut w, Duration::from_millis(300)).await;

    // And then the live events follow, in order.
    let b2 = s.update("/registry/pods/other/b", b("b2"), b1).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!((e.kind, e.revision(), e.kv.value.as_ref()), (EventKind::Update, b2, &b"b2"[..]));
}

async fn watch_from_now_sees_only_new_events(s: Arc<dyn Storage>) {
    s.create("/registry/leases/a", b("1")).await.unwrap();
    let now = s.current_revision().await.unwrap();
    let mut w = s.watch("/registry/leases/", now).await.unwrap();
    nothing_within(&mut w, Duration::from_millis(200)).await;
    let r = s.create("/registry/leases/b", b("2")).await.unwrap();
    assert_eq!(next(&mut w).await.revision(), r);
}

async fn idle_watch_stays_alive(s: Arc<dyn Storage>) {
    let now = s.current_revision().await.unwrap();
    let mut w = s.watch("/registry/nodes/", now).await.unwrap();
    nothing_within(&mut w, Duration::from_secs(5)).await;
    let r = s.create("/registry/nodes/n1", b("node")).await.unwrap();
    assert_eq!(next(&mut w).await.revision(), r);
}

async fn compacted_reads_and_watches_fail(s: Arc<dyn Storage>) {
    let r1 = s.create("/registry/jobs/ns/j", b("1")).await.unwrap();
    let r2 = s.update("/registry/jobs/ns/j", b("2"), r1).await.unwrap();
    let r3 = s.update("/registry/jobs/ns/j", b("3"), r2).await.unwrap();
    s.create("/registry/jobs/ns/k", b("k")).await.unwrap();
    s.delete("/registry/jobs/ns/k", None).await.unwrap();
    let r6 = s.update("/registry/jobs/ns/j", b("4"), r3).await.unwrap();

    s.compact(r3).await.unwrap();
    let at = |rev| ListOptions { revision: Some(rev), ..Default::default() };
    assert!(matches!(s.list("/registry/jobs/", at(r2)).await, Err(StoreError::Compacted { .. })));
    assert!(matches!(s.watch("/registry/jobs/", r2).await, Err(StoreError::Compacted { .. })));
    // The compacted revision itself is still readable, and watchable from.
    let l = s.list("/registry/jobs/", at(r3)).await.unwrap();
    assert_eq!(l.items.len(), 1);
    assert_eq!(l.items[0].value.as_ref(), b"3");
    let mut w = s.watch("/registry/jobs/", r3).await.unwrap();
    assert_eq!(next(&mut w).await.kv.key, "/registry/jobs/ns/k");
    assert_eq!(next(&mut w).await.kind, EventKind::Delete);
    let e = next(&mut w).await;
    assert_eq!((e.revision(), e.prev.unwrap().value.as_ref()), (r6, &b"3"[..]));
    // Compacting again below the compacted revision is refused; the current value survives.
    assert!(matches!(s.compact(r2).await, Err(StoreError::Compacted { .. })));
    let current = s.current_revision().await.unwrap();
    assert!(matches!(s.compact(current + 10).await, Err(StoreError::FutureRevision { .. })));
    s.compact(current).await.unwrap();
    assert_eq!(s.get("/registry/jobs/ns/j").await.unwrap().unwrap().value.as_ref(), b"4");
    assert_eq!(s.count("/registry/jobs/").await.unwrap(), 1);
}

async fn large_values(s: Arc<dyn Storage>) {
    let big: Bytes = (0..(3 * 1024 * 1024 / 2)).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let now = s.current_revision().await.unwrap();
    let mut w = s.watch("/registry/configmaps/", now).await.unwrap();
    for i in 0..4 {
        s.create(&format!("/registry/configmaps/big/{i}"), big.clone()).await.unwrap();
    }
    assert_eq!(s.get("/registry/configmaps/big/2").await.unwrap().unwrap().value, big);
    let l = s.list("/registry/configmaps/", ListOptions::default()).await.unwrap();
    assert_eq!(l.items.len(), 4);
    assert!(l.items.iter().all(|kv| kv.value == big));
    for _ in 0..4 {
        assert_eq!(next(&mut w).await.kv.value.len(), big.len());
    }
}

async fn unicode_and_slash_keys(s: Arc<dyn Storage>) {
    let keys = [
        "/registry/configmaps/défaut/été-😀",
        "/registry/configmaps/défaut/a/b/c/d",
        "/registry/configmaps/défaut/a",
        "/registry/configmaps/défaut/日本語",
        "/registry/configmaps/défaut/ÿ\u{10ffff}",
    ];
    let now = s.current_revision().await.unwrap();
    let mut w = s.watch("/registry/configmaps/défaut/", now).await.unwrap();
    for k in keys {
        s.create(k, Bytes::from(k.to_string())).await.unwrap();
    }
    for k in keys {
        assert_eq!(s.get(k).await.unwrap().unwrap().value, Bytes::from(k.to_string()));
        assert_eq!(next(&mut w).await.kv.key, k);
    }
    let listed: Vec<_> =
        s.list("/registry/configmaps/défaut/", ListOptions::default()).await.unwrap().items.into_iter().map(|kv| kv.key).collect();
    let mut sorted: Vec<_> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(listed, sorted);
    let sub: Vec<_> =
        s.list("/registry/configmaps/défaut/a/", ListOptions::default()).await.unwrap().items.into_iter().map(|kv| kv.key).collect();
    assert_eq!(sub, ["/registry/configmaps/défaut/a/b/c/d"]);
    // Paging through multi-byte keys.
    let mut after = None;
    let mut paged = Vec::new();
    loop {
        let page = s
            .list("/registry/configmaps/défaut/", ListOptions { limit: 2, start_after: after.clone(), ..Default::default() })
            .await
            .unwrap();
        paged.extend(page.items.iter().map(|kv| kv.key.clone()));
        after = page.items.last().map(|kv| kv.key.clone());
        if !page.more {
            break;
        }
    }
    assert_eq!(paged, sorted);
}

async fn many_watchers_see_the_same_events(s: Arc<dyn Storage>) {
    let now = s.current_revision().await.unwrap();
    let mut watchers = Vec::new();
    for _ in 0..50 {
        watchers.push(s.watch("/registry/events/", now).await.unwrap());
    }
    let mut revs = Vec::new();
    for i in 0..100 {
        revs.push(s.create(&format!("/registry/events/ns/e{i}"), b("e")).await.unwrap());
    }
    for w in &mut watchers {
        for r in &revs {
            assert_eq!(next(w).await.revision(), *r);
        }
    }
}

async fn watchers_joining_mid_stream_see_exactly_their_events(s: Arc<dyn Storage>) {
    let base = s.current_revision().await.unwrap();
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..400 {
                last = s.create(&format!("/registry/mid/k{i:04}"), Bytes::from(format!("{i}"))).await.unwrap();
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            last
        })
    };
    // Watchers start at revisions before, during and (for one) far before the writes.
    let mut watchers = vec![(base, s.watch("/registry/mid/", base).await.unwrap())];
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(3)).await;
        let at = s.current_revision().await.unwrap();
        watchers.push((at, s.watch("/registry/mid/", at).await.unwrap()));
    }
    let last = writer.await.unwrap();
    for (after, mut w) in watchers {
        let mut expect = after + 1;
        while expect <= last {
            let ev = next(&mut w).await;
            assert_eq!(ev.revision(), expect, "watcher from {after}");
            expect += 1;
        }
        nothing_within(&mut w, Duration::from_millis(50)).await;
    }
}
