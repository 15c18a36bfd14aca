//! The usual client libraries work against Timonier unchanged: kube-rs (its client, discovery,
//! and the runtime's watcher and reflector, which controllers are built on).

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, Config, Discovery};
use timonier_testkit::Server;

async fn client(s: &Server) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&s.kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
    Client::try_from(config).expect("client")
}

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": {"app": "kube-rs"}}, "data": {"v": value}})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_client_discovery_and_runtime() {
    let s = Server::start(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let client = client(&s).await;
    let info = client.apiserver_version().await.unwrap();
    assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "33"));

    // Aggregated discovery, as kube-rs runs it.
    let discovery = Discovery::new(client.clone()).run_aggregated().await.unwrap();
    assert!(discovery.groups().any(|g| g.name() == "apps"));

    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // A reflector (list + watch, kube-runtime's default strategy) follows every change.
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = watcher(api.clone(), watcher::Config::default().labels("app=kube-rs")).default_backoff().reflect(writer).applied_objects();
    let follower = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while let Some(r) = s.next().await {
            r.expect("watcher error");
        }
    });
    // A raw watch too, with bookmarks.
    let mut raw = api.watch(&WatchParams::default().labels("app=kube-rs"), "0").await.unwrap().boxed();

    api.create(&PostParams::default(), &cm("a", "1")).await.unwrap();
    api.patch("a", &PatchParams::default(), &Patch::Merge(serde_json::json!({"data": {"v": "2"}}))).await.unwrap();
    let applied = api
        .patch("b", &PatchParams::apply("kube-rs-test").force(), &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "labels": {"app": "kube-rs"}}, "data": {"v": "3"}})))
        .await
        .unwrap();
    assert_eq!(applied.metadata.managed_fields.unwrap()[0].manager.as_deref(), Some("kube-rs-test"));
    let listed = api.list(&ListParams::default().labels("app=kube-rs")).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    assert!(listed.metadata.resource_version.is_some());

    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), raw.try_next()).await.expect("raw watch event").unwrap() {
            Some(WatchEvent::Added(o)) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
            Some(WatchEvent::Modified(o)) => seen.push(format!("MODIFIED {}", o.metadata.name.unwrap())),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED a", "MODIFIED a", "ADDED b"]);

    api.delete("a", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<String> = reader.state().iter().map(|c| c.metadata.name.clone().unwrap()).collect();
        let b = reader.state().iter().find(|c| c.metadata.name.as_deref() == Some("b")).and_then(|c| c.data.clone()).and_then(|d| d.get("v").cloned());
        if names == ["b"] && b.as_deref() == Some("3") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "reflector shows {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    follower.abort();

    // Streaming lists (sendInitialEvents), which kube-rs and client-go can opt into.
    let initial: Vec<_> = watcher(api.clone(), watcher::Config::default().labels("app=kube-rs").streaming_lists())
        .applied_objects()
        .take(1)
        .collect()
        .await;
    assert_eq!(initial.len(), 1);
    assert_eq!(initial[0].as_ref().unwrap().metadata.name.as_deref(), Some("b"));
}

#[test]
fn python_client() {
    let s = Server::start(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client.py");
    let out = std::process::Command::new(timonier_testkit::python()).arg(&script).arg(&s.kubeconfig).output().expect("python3 (scripts/install-deps makes its environment)");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("python client: ok"),
        "the Python client failed (scripts/install-deps installs it in its own environment):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
