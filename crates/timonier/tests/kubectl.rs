//! End to end: the stock kubectl (1.27 and 1.33, the oldest and newest supported) against a
//! real `timonier server`, asserting on what the user sees.

use std::time::{Duration, Instant};

use timonier_testkit::{Kubectl, Server};


const VERSIONS: &[&str] = &["1.27", "1.33"];

fn server() -> Server {
    Server::start(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &[])
}

/// Runs `f` for each supported kubectl version against one fresh server each.
fn each_version(f: impl Fn(&Server, &Kubectl, &str)) {
    for v in VERSIONS {
        let s = server();
        let k = s.kubectl(v);
        f(&s, &k, v);
    }
}

/// Removes terminal colour codes (cluster-info colours its output).
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn lines(s: &str) -> Vec<Vec<String>> {
    s.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

#[test]
fn version_discovery_and_cluster_info() {
    each_version(|s, k, _| {
        let out = k.run(&["version"]);
        let server_line = out.ok().lines().find(|l| l.starts_with("Server Version:")).unwrap_or("").to_string();
        assert!(server_line.contains("v1.33."), "{}", out.stdout);
        let res = k.run(&["api-resources"]);
        let rows = lines(res.ok());
        assert!(rows.iter().any(|r| r[0] == "deployments" && r[1] == "deploy" && r[2] == "apps/v1" && r[3] == "true" && r[4] == "Deployment"), "{}", res.stdout);
        assert!(rows.iter().any(|r| r[0] == "namespaces" && r[1] == "ns" && r[2] == "v1" && r[3] == "false"));
        let versions = k.run(&["api-versions"]);
        for gv in ["apps/v1", "batch/v1", "v1", "rbac.authorization.k8s.io/v1", "networking.k8s.io/v1"] {
            assert!(versions.ok().lines().any(|l| l == gv), "{gv} missing from {}", versions.stdout);
        }
        let info = k.run(&["cluster-info"]);
        assert!(strip_ansi(info.ok()).contains(&format!("Kubernetes control plane is running at https://127.0.0.1:{}", s.port)), "{}", info.stdout);
        assert!(strip_ansi(info.ok()).contains(&format!("CoreDNS is running at https://127.0.0.1:{}/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy", s.port)), "{}", info.stdout);
    });
}

#[test]
fn system_namespaces_and_the_kubernetes_service() {
    each_version(|s, k, _| {
        let out = k.run(&["get", "namespaces"]);
        let rows = lines(out.ok());
        assert_eq!(rows[0], ["NAME", "STATUS", "AGE"]);
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(rows.iter().any(|r| r[0] == ns && r[1] == "Active"), "{ns} missing: {}", out.stdout);
        }
        let svc = k.run(&["get", "svc", "kubernetes", "-o", "wide"]);
        let rows = lines(svc.ok());
        assert_eq!(rows[0], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]);
        assert_eq!(&rows[1][..5], ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]);
        // Its endpoints, as upstream lists them: this server's address and port.
        let port = s.port.to_string();
        let ep = lines(k.run(&["get", "endpoints", "kubernetes"]).ok().to_string().as_str());
        assert_eq!(&ep[1][..2], ["kubernetes", &format!("127.0.0.1:{port}")]);
        let slices = lines(k.run(&["get", "endpointslices", "-l", "kubernetes.io/service-name=kubernetes"]).ok().to_string().as_str());
        assert_eq!(slices[0], ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]);
        assert_eq!(&slices[1][..4], ["kubernetes", "IPv4", port.as_str(), "127.0.0.1"]);
    });
}

#[test]
fn deployment_lifecycle_with_the_seed_commands() {
    // kubectl 1.33 sends `create deployment` as protobuf; older ones JSON.
    for v in ["1.27", "1.33"] {
        let s = server();
        let k = s.kubectl(v);
        k.run(&["create", "deployment", "kubernetes-bootcamp", "--image=gcr.io/google-samples/kubernetes-bootcamp:v1"]).ok();
        let out = k.run(&["get", "deployments.apps"]);
        let rows = lines(out.ok());
        assert_eq!(rows[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
        assert_eq!(&rows[1][..4], ["kubernetes-bootcamp", "0/1", "0", "0"]);
        let wide = lines(k.run(&["get", "deploy", "-o", "wide"]).ok().to_string().as_str());
        assert_eq!(wide[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
        assert_eq!(&wide[1][5..], ["kubernetes-bootcamp", "gcr.io/google-samples/kubernetes-bootcamp:v1", "app=kubernetes-bootcamp"]);

        // Defaults a user sees in -o yaml, as upstream fills them.
        let yaml = k.run(&["get", "deploy", "kubernetes-bootcamp", "-o", "yaml"]);
        for line in ["progressDeadlineSeconds: 600", "revisionHistoryLimit: 10", "maxSurge: 25%", "maxUnavailable: 25%", "type: RollingUpdate", "imagePullPolicy: IfNotPresent", "terminationMessagePath: /dev/termination-log", "dnsPolicy: ClusterFirst", "restartPolicy: Always", "generation: 1"] {
            assert!(yaml.ok().contains(line), "{line} missing:\n{}", yaml.stdout);
        }

        k.run(&["scale", "deployments/kubernetes-bootcamp", "--replicas=4"]).ok();
        let jp = k.run(&["get", "deploy", "kubernetes-bootcamp", "-o", "jsonpath={.spec.replicas} {.metadata.generation}"]);
        assert_eq!(jp.ok(), "4 2");
        k.run(&["set", "image", "deployments/kubernetes-bootcamp", "kubernetes-bootcamp=jocatalin/kubernetes-bootcamp:v2"]).ok();
        let jp = k.run(&["get", "deploy", "kubernetes-bootcamp", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}"]);
        assert_eq!(jp.ok(), "jocatalin/kubernetes-bootcamp:v2 3");

        k.run(&["label", "deployment", "kubernetes-bootcamp", "env=test"]).ok();
        k.run(&["annotate", "deployment", "kubernetes-bootcamp", "note=hello"]).ok();
        let labels = k.run(&["get", "deploy", "--show-labels"]);
        assert!(labels.ok().contains("app=kubernetes-bootcamp,env=test"), "{}", labels.stdout);
        assert!(k.run(&["get", "deploy", "-l", "env=test", "-o", "name"]).ok().contains("deployment.apps/kubernetes-bootcamp"));
        assert!(k.run(&["get", "deploy", "-l", "env notin (test)", "-o", "name"]).ok().trim().is_empty());
        let by_name = k.run(&["get", "deploy", "--field-selector", "metadata.name=kubernetes-bootcamp", "-o", "name"]);
        assert_eq!(by_name.ok().trim(), "deployment.apps/kubernetes-bootcamp");
        let tmpl = k.run(&["get", "deploy", "-o", "go-template", "--template", "{{range .items}}{{.metadata.name}}{{\"\\n\"}}{{end}}"]);
        assert_eq!(tmpl.ok(), "kubernetes-bootcamp\n");
        let cc = k.run(&["get", "deploy", "-o", "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas"]);
        assert_eq!(lines(cc.ok())[1], ["kubernetes-bootcamp", "4"]);

        // -o json, then replace with the edited object.
        let json_out = k.run(&["get", "deploy", "kubernetes-bootcamp", "-o", "json"]);
        let mut obj: serde_json::Value = serde_json::from_str(json_out.ok()).expect("kubectl -o json is JSON");
        assert_eq!(obj["kind"], "Deployment");
        obj["spec"]["replicas"] = serde_json::json!(2);
        let replaced = k.run_with_input(&["replace", "-f", "-"], Some(&obj.to_string()));
        assert!(replaced.ok().contains("deployment.apps/kubernetes-bootcamp replaced"), "{}", replaced.stdout);
        assert_eq!(k.run(&["get", "deploy", "kubernetes-bootcamp", "-o", "jsonpath={.spec.replicas}"]).ok(), "2");
        let list: serde_json::Value = serde_json::from_str(k.run(&["get", "deploy", "-o", "json"]).ok()).unwrap();
        assert_eq!(list["kind"], "List");
        assert_eq!(list["items"][0]["metadata"]["name"], "kubernetes-bootcamp");

        k.run(&["delete", "deployment", "kubernetes-bootcamp"]).ok();
        let gone = k.run(&["get", "deploy", "kubernetes-bootcamp"]);
        assert!(gone.err().contains("Error from server (NotFound): deployments.apps \"kubernetes-bootcamp\" not found"), "{}", gone.stderr);
    }
}

#[test]
fn errors_read_like_upstream() {
    each_version(|_, k, v| {
        let missing = k.run(&["get", "configmap", "nope"]);
        assert!(missing.err().contains("Error from server (NotFound): configmaps \"nope\" not found"), "{}", missing.stderr);
        let bad = k.run(&["get", "pods", "-l", "a b"]);
        assert!(bad.err().contains("unable to parse requirement"), "{}", bad.stderr);
        let field = k.run(&["get", "pods", "--field-selector", "spec.nope=x"]);
        assert!(field.err().contains("field label not supported: spec.nope"), "{}", field.stderr);
        let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\nspec:\n  replicas: -1\n  selector:\n    matchLabels: {app: bad}\n  template:\n    metadata:\n      labels: {app: bad}\n    spec:\n      containers: [{name: c, image: busybox}]\n";
        let invalid = k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(manifest));
        assert!(
            invalid.err().contains("The Deployment \"bad\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
            "kubectl {v}: {}",
            invalid.stderr
        );
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\ndata:\n  a: b\n";
        k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(cm)).ok();
        let again = k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(cm));
        assert!(again.err().contains("configmaps \"dup\" already exists"), "{}", again.stderr);
        let stale = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n  resourceVersion: \"1\"\ndata:\n  a: c\n";
        let conflict = k.run_with_input(&["replace", "-f", "-", "--validate=false"], Some(stale));
        assert!(conflict.err().contains("Operation cannot be fulfilled on configmaps \"dup\": the object has been modified"), "{}", conflict.stderr);
        let no_ns = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: missing\n";
        let nsless = k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(no_ns));
        assert!(nsless.err().contains("namespaces \"missing\" not found"), "{}", nsless.stderr);
    });
}

#[test]
fn anonymous_requests_are_refused() {
    let s = server();
    let bin = timonier_testkit::kubectl_bin("1.33");
    let url = format!("https://127.0.0.1:{}", s.port);
    let out = std::process::Command::new(&bin)
        .args(["--server", &url, "--insecure-skip-tls-verify", "--token", "not-a-token", "--cache-dir"])
        .arg(s.dir.path().join("anon-cache"))
        .args(["get", "namespaces"])
        .env("KUBECONFIG", "/dev/null")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("You must be logged in to the server"), "{err}");
    // Without any credentials (kubectl would prompt for a password, so use curl), the
    // version and health endpoints answer and everything else is 401.
    let curl = |path: &str| {
        let out = std::process::Command::new("curl").args(["-sk", &format!("{url}{path}")]).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(curl("/version").contains("\"gitVersion\":\"v1.33."));
    assert_eq!(curl("/healthz"), "ok");
    assert_eq!(curl("/readyz"), "ok");
    assert!(curl("/api/v1/namespaces").contains("\"code\":401"));
}

/// `/metrics` in Prometheus' text format with upstream's names and labels, and the health
/// endpoints' checks, as `kubectl get --raw` shows them on kube-apiserver.
#[test]
fn metrics_and_health_checks() {
    let s = server();
    let k = s.kubectl("1.33");
    k.run(&["create", "configmap", "counted", "--from-literal=a=b"]).ok();
    k.run(&["get", "configmaps"]).ok();
    let metrics = k.run(&["get", "--raw", "/metrics"]).ok().to_string();
    let sample = |prefix: &str| metrics.lines().find(|l| l.starts_with(prefix)).map(str::to_string);
    assert!(metrics.contains("# TYPE apiserver_request_total counter\n"), "{metrics}");
    assert!(metrics.contains("# HELP apiserver_request_total [STABLE] Counter of apiserver requests"), "{metrics}");
    let list = sample("apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\"}");
    assert!(list.is_some(), "no LIST of configmaps counted:\n{metrics}");
    assert!(sample("apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 1").is_some(), "{metrics}");
    assert!(sample("apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\",le=\"0.005\"}").is_some(), "{metrics}");
    // Counted from the cache at scrape time: default, kube-system, kube-public, kube-node-lease.
    assert_eq!(sample("apiserver_storage_objects{resource=\"namespaces\"}").as_deref(), Some("apiserver_storage_objects{resource=\"namespaces\"} 4"), "{metrics}");
    assert!(sample("apiserver_storage_objects{resource=\"deployments.apps\"} 0").is_some(), "{metrics}");
    assert!(sample("etcd_request_duration_seconds_count{operation=\"create\",type=\"configmaps\"}").is_some(), "{metrics}");
    assert!(sample("process_resident_memory_bytes ").is_some(), "{metrics}");
    // Watches are long-running requests while they last.
    let mut watch = k.command(&["get", "configmaps", "--watch"]).stdout(std::process::Stdio::null()).spawn().expect("kubectl get --watch");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let watching = "apiserver_longrunning_requests{component=\"apiserver\",group=\"\",resource=\"configmaps\",scope=\"namespace\",subresource=\"\",verb=\"WATCH\",version=\"v1\"} 1";
    while !k.run(&["get", "--raw", "/metrics"]).ok().contains(watching) {
        assert!(std::time::Instant::now() < deadline, "the watch is not counted as long-running");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = watch.kill();
    let _ = watch.wait();

    let ready = k.run(&["get", "--raw", "/readyz?verbose"]).ok().to_string();
    assert!(ready.starts_with("[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]etcd-readiness ok\n[+]informer-sync ok\n"), "{ready}");
    assert!(ready.ends_with("[+]shutdown ok\nreadyz check passed\n"), "{ready}");
    let live = k.run(&["get", "--raw", "/livez?verbose&exclude=etcd&exclude=nothing"]).ok().to_string();
    assert!(live.contains("[+]etcd excluded: ok\n") && !live.contains("[+]informer-sync"), "{live}");
    assert!(live.ends_with("warn: some health checks cannot be excluded: no matches for \"nothing\"\nlivez check passed\n"), "{live}");
    assert_eq!(k.run(&["get", "--raw", "/readyz/etcd"]).ok(), "ok");
    assert_eq!(k.run(&["get", "--raw", "/livez"]).ok(), "ok");
    assert_ne!(k.run(&["get", "--raw", "/livez/informer-sync"]).code, 0, "a readiness check is not a liveness check");
}

#[test]
fn pagination_and_all_namespaces() {
    each_version(|_, k, _| {
        let mut manifest = String::new();
        for i in 0..23 {
            manifest.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:02}\n  namespace: kube-public\ndata:\n  i: \"{i}\"\n"));
        }
        k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(&manifest)).ok();
        let paged = k.run(&["get", "configmaps", "-n", "kube-public", "--chunk-size=4", "-o", "name"]);
        // kube-public also holds kube-root-ca.crt, as on every cluster, and cluster-info, as on
        // kubeadm's (what joining nodes read).
        let names: Vec<&str> = paged.ok().lines().filter(|n| n.starts_with("configmap/cm-")).collect();
        assert_eq!(names.len(), 23, "{}", paged.stdout);
        assert_eq!(names[0], "configmap/cm-00");
        assert_eq!(names[22], "configmap/cm-22");
        assert!(paged.stdout.contains("configmap/kube-root-ca.crt") && paged.stdout.contains("configmap/cluster-info"), "{}", paged.stdout);
        let table = k.run(&["get", "cm", "-A", "--chunk-size=5"]);
        let rows = lines(table.ok());
        assert_eq!(rows[0], ["NAMESPACE", "NAME", "DATA", "AGE"]);
        assert_eq!(rows.iter().filter(|r| r[0] == "kube-public" && r[1].starts_with("cm-")).count(), 23);
        let sorted = k.run(&["get", "cm", "-n", "kube-public", "--sort-by=.metadata.name", "-o", "name"]);
        assert_eq!(sorted.ok().lines().count(), 25);
    });
}

#[test]
fn get_watch_sees_changes() {
    each_version(|_, k, _| {
        let mut watch = k.command(&["get", "configmaps", "-w", "--output-watch-events"]);
        watch.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
        let mut child = timonier_testkit::ChildGuard(watch.spawn().unwrap());
        let stdout = child.0.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut seen = Vec::new();
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let done = line.contains("DELETED");
                seen.push(line);
                if done {
                    break;
                }
            }
            seen
        });
        std::thread::sleep(Duration::from_millis(800));
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  a: b\n";
        k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(cm)).ok();
        k.run(&["label", "configmap", "watched", "x=y"]).ok();
        k.run(&["delete", "configmap", "watched"]).ok();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(child);
        let seen = reader.join().unwrap();
        let kinds: Vec<&str> = seen.iter().filter(|l| l.contains("watched")).filter_map(|l| l.split_whitespace().next()).collect();
        assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"], "{seen:?}");
    });
}

#[test]
fn deleting_a_namespace_empties_it() {
    each_version(|_, k, _| {
        let manifest = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: doomed\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: inside\n  namespace: doomed\n";
        k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(manifest)).ok();
        k.run(&["delete", "namespace", "doomed", "--timeout=30s"]).ok();
        let ns = k.run(&["get", "namespace", "doomed"]);
        assert!(ns.err().contains("namespaces \"doomed\" not found"), "{}", ns.stderr);
        let cm = k.run(&["get", "configmap", "inside", "-n", "doomed"]);
        assert!(cm.err().contains("not found"));
    });
}

#[test]
fn state_survives_a_restart_and_a_sigkill() {
    let mut s = server();
    let k = s.kubectl("1.33");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: durable\ndata:\n  a: b\n";
    k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(cm)).ok();
    s.restart();
    assert_eq!(k.run(&["get", "cm", "durable", "-o", "jsonpath={.data.a}"]).ok(), "b");
    k.run(&["label", "cm", "durable", "after=restart"]).ok();
    s.kill();
    s.restart();
    assert_eq!(k.run(&["get", "cm", "durable", "-o", "jsonpath={.metadata.labels.after}"]).ok(), "restart");
}

#[test]
fn create_generators() {
    // 1.32+ send these bodies as Kubernetes protobuf; 1.27 as JSON.
    each_version(|s, k, v| {
        let file = s.dir.path().join(format!("game-{v}.properties"));
        std::fs::write(&file, "lives=3\n").unwrap();
        let file = file.to_string_lossy().to_string();
        for args in [
            vec!["create", "namespace", "gen"],
            vec!["create", "configmap", "lit", "-n", "gen", "--from-literal=a=1", "--from-literal=b=2"],
            vec!["create", "configmap", "fromfile", "-n", "gen", &format!("--from-file={file}")],
            vec!["create", "secret", "generic", "sec", "-n", "gen", "--from-literal=password=s3cr3t"],
            vec!["create", "serviceaccount", "robot", "-n", "gen"],
            vec!["create", "service", "clusterip", "web", "-n", "gen", "--tcp=80:8080"],
            vec!["create", "service", "nodeport", "np", "-n", "gen", "--tcp=8080:8080"],
            vec!["create", "deployment", "web", "-n", "gen", "--image=nginx:1.27", "--replicas=2", "--port=80"],
            vec!["create", "job", "once", "-n", "gen", "--image=busybox", "--", "echo", "hi"],
            vec!["create", "cronjob", "tick", "-n", "gen", "--image=busybox", "--schedule=*/5 * * * *", "--", "date"],
            vec!["create", "role", "reader", "-n", "gen", "--verb=get,list", "--resource=pods"],
            vec!["create", "rolebinding", "robot-reads", "-n", "gen", "--role=reader", "--serviceaccount=gen:robot"],
        ] {
            let out = k.run(&args);
            assert_eq!(out.code, 0, "kubectl {v} {args:?}: {}{}", out.stdout, out.stderr);
        }
        assert_eq!(k.run(&["get", "cm", "lit", "-n", "gen", "-o", "jsonpath={.data.a}{.data.b}"]).ok(), "12");
        assert_eq!(k.run(&["get", "cm", "fromfile", "-n", "gen", "-o", "jsonpath={.data.game-}"]).code, 0);
        assert!(k.run(&["get", "cm", "fromfile", "-n", "gen", "-o", "yaml"]).ok().contains("lives=3"));
        assert_eq!(k.run(&["get", "secret", "sec", "-n", "gen", "-o", "jsonpath={.data.password}"]).ok(), "czNjcjN0");
        let svc = lines(k.run(&["get", "svc", "-n", "gen"]).ok().to_string().as_str());
        let np = svc.iter().find(|r| r[0] == "np").expect("np service");
        assert_eq!(np[1], "NodePort");
        assert!(np[2].starts_with("10."), "{np:?}");
        assert!(np[4].starts_with("8080:3") && np[4].ends_with("/TCP"), "{np:?}");
        let web = svc.iter().find(|r| r[0] == "web").expect("web service");
        assert_eq!((web[1].as_str(), web[4].as_str()), ("ClusterIP", "80/TCP"));
        assert_ne!(web[2], np[2], "two services got the same cluster IP");
        assert_eq!(k.run(&["get", "deploy", "web", "-n", "gen", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort}"]).ok(), "2 80");
        assert_eq!(k.run(&["get", "job", "once", "-n", "gen", "-o", "jsonpath={.spec.template.spec.restartPolicy}"]).ok(), "Never");
        assert_eq!(k.run(&["get", "cronjob", "tick", "-n", "gen", "-o", "jsonpath={.spec.schedule}"]).ok(), "*/5 * * * *");
        assert!(k.run(&["get", "rolebinding", "robot-reads", "-n", "gen", "-o", "yaml"]).ok().contains("name: robot"));
    });
}

#[test]
fn cascading_deletion_background_foreground_orphan() {
    each_version(|_, k, _| {
        for (policy, owner) in [("background", "o-bg"), ("foreground", "o-fg"), ("orphan", "o-or")] {
            let owner_cm = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {owner}\n");
            k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(&owner_cm)).ok();
            let uid = k.run(&["get", "cm", owner, "-o", "jsonpath={.metadata.uid}"]).ok().to_string();
            let dep = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {owner}-dep\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: {owner}\n    uid: {uid}\n    blockOwnerDeletion: true\n"
            );
            k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(&dep)).ok();
            k.run(&["delete", "cm", owner, &format!("--cascade={policy}"), "--timeout=30s"]).ok();
            let dep_name = format!("{owner}-dep");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let got = k.run(&["get", "cm", &dep_name, "-o", "jsonpath={.metadata.ownerReferences}"]);
                let settled = match policy {
                    "orphan" => got.code == 0 && got.stdout.trim().is_empty(),
                    _ => got.code != 0 && got.stderr.contains("not found"),
                };
                if settled {
                    break;
                }
                assert!(Instant::now() < deadline, "{policy}: dependent not collected: {}{}", got.stdout, got.stderr);
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(k.run(&["get", "cm", owner]).err().contains("not found"));
        }
    });
}

/// A kubectl that authenticates with a bearer token instead of the admin's certificate.
fn with_token(s: &Server, v: &str, token: &str) -> Kubectl {
    let admin = std::fs::read_to_string(&s.kubeconfig).unwrap();
    let cfg: String = admin
        .lines()
        .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
        .map(|l| if l.trim() == "user:" { format!("{l}\n    token: {token}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    let path = s.dir.path().join(format!("kubeconfig-{token}"));
    std::fs::write(&path, cfg).unwrap();
    Kubectl { kubeconfig: path, ..s.kubectl(v) }
}

#[test]
fn rbac_tokens_and_auth_can_i() {
    let dir = timonier_testkit::temp_dir("timonier-tokens-");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "alice-token,alice,1001\nbob-token,bob,1002,\"devs\"\n").unwrap();
    let s = Server::start(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &["--token-auth-file", tokens.to_str().unwrap()]);
    for v in VERSIONS {
        let admin = s.kubectl(v);
        assert_eq!(admin.run(&["auth", "can-i", "create", "pods"]).ok().trim(), "yes");
        assert_eq!(admin.run(&["auth", "can-i", "delete", "nodes", "--as=alice"]).stdout.trim(), "no");
        let alice = with_token(&s, v, "alice-token");
        let denied = alice.run(&["get", "pods"]);
        assert!(
            denied.err().contains("pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
            "{}",
            denied.stderr
        );
        assert_eq!(alice.run(&["auth", "can-i", "list", "pods"]).stdout.trim(), "no");
    }
    let admin = s.kubectl("1.33");
    admin.run(&["create", "rolebinding", "alice-view", "--clusterrole=view", "--user=alice", "-n", "default"]).ok();
    admin.run(&["create", "clusterrolebinding", "devs-edit", "--clusterrole=edit", "--group=devs"]).ok();
    for v in VERSIONS {
        let k = s.kubectl(v);
        let alice = with_token(&s, v, "alice-token");
        let bob = with_token(&s, v, "bob-token");
        let listed = alice.run(&["get", "pods"]);
        assert_eq!(listed.code, 0, "{}", listed.stderr);
        assert_eq!(alice.run(&["auth", "can-i", "list", "pods"]).stdout.trim(), "yes");
        assert_eq!(alice.run(&["auth", "can-i", "list", "pods", "-n", "kube-system"]).stdout.trim(), "no");
        assert_eq!(alice.run(&["auth", "can-i", "create", "deployments"]).stdout.trim(), "no");
        assert_eq!(bob.run(&["auth", "can-i", "create", "deployments", "-n", "kube-public"]).stdout.trim(), "yes");
        assert_eq!(k.run(&["auth", "can-i", "get", "pods", "--as=alice"]).stdout.trim(), "yes");
    }
    let who = with_token(&s, "1.33", "bob-token").run(&["auth", "whoami"]);
    assert!(who.ok().contains("bob") && who.stdout.contains("devs"), "{}", who.stdout);
}

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [cronSpec]
            properties:
              cronSpec: {type: string}
              image: {type: string}
              replicas: {type: integer, minimum: 1}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
";

#[test]
fn custom_resources() {
    each_version(|s, k, _| {
        k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(CRD)).ok();
        k.run(&["wait", "--for", "condition=established", "crd/crontabs.stable.example.com", "--timeout=20s"]).ok();
        let ct = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: nightly\nspec:\n  cronSpec: \"0 3 * * *\"\n  image: backup\n  replicas: 2\n  surprise: pruned\n";
        k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(ct)).ok();
        let rows = lines(k.run(&["get", "ct"]).ok().to_string().as_str());
        assert_eq!(rows[0], ["NAME", "SPEC", "REPLICAS", "AGE"]);
        assert_eq!(&rows[1][..5], ["nightly", "0", "3", "*", "*"]);
        let yaml = k.run(&["get", "crontab", "nightly", "-o", "yaml"]);
        assert!(yaml.ok().contains("cronSpec: 0 3 * * *") && !yaml.stdout.contains("surprise"), "{}", yaml.stdout);
        let bad = ct.replace("nightly", "bad").replace("replicas: 2", "replicas: 0");
        let invalid = k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(&bad));
        assert!(invalid.err().contains("spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"), "{}", invalid.stderr);
        let missing = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: empty\nspec:\n  image: x\n";
        let req = k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(missing));
        assert!(req.err().contains("spec.cronSpec: Required value"), "{}", req.stderr);
        k.run(&["patch", "ct", "nightly", "--type=merge", "-p", "{\"spec\":{\"replicas\":5}}"]).ok();
        assert_eq!(k.run(&["get", "ct", "nightly", "-o", "jsonpath={.spec.replicas}"]).ok(), "5");
        assert!(k.run(&["api-resources", "--api-group=stable.example.com"]).ok().contains("crontabs"));
        // Deleting the CRD deletes its objects and the kind.
        k.run(&["delete", "crd", "crontabs.stable.example.com", "--timeout=30s"]).ok();
        let gone = k.run(&["get", "crontabs.stable.example.com"]);
        assert_ne!(gone.code, 0);
        // Re-created, it comes back empty.
        k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(CRD)).ok();
        k.run(&["wait", "--for", "condition=established", "crd/crontabs.stable.example.com", "--timeout=20s"]).ok();
        let _ = s;
        let empty = k.run(&["get", "crontabs.stable.example.com", "-o", "name"]);
        assert!(empty.ok().trim().is_empty(), "{}", empty.stdout);
    });
}

#[test]
fn binding_eviction_and_disruption_budgets() {
    let s = server();
    let k = s.kubectl("1.33");
    let pods = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\n  labels: {app: db}\nspec:\n  containers: [{name: c, image: busybox}]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p2\n  labels: {app: web}\nspec:\n  containers: [{name: c, image: busybox}]\n";
    k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(pods)).ok();
    k.run(&["create", "pdb", "db", "--selector=app=db", "--min-available=1"]).ok();
    // The budget's status says no disruption is allowed (the pod is not Ready).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = lines(k.run(&["get", "pdb", "db"]).ok().to_string().as_str());
        if rows.len() > 1 && rows[1][..4] == ["db", "1", "N/A", "0"] {
            break;
        }
        assert!(Instant::now() < deadline, "pdb status: {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Binding assigns a node once; a second binding conflicts.
    let raw = |path: &str, body: &str| {
        let f = s.dir.path().join("body.json");
        std::fs::write(&f, body).unwrap();
        k.run(&["create", "--raw", path, "-f", f.to_str().unwrap()])
    };
    raw("/api/v1/namespaces/default/pods/p2/binding", r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p2"},"target":{"kind":"Node","name":"node-a"}}"#).ok();
    assert_eq!(k.run(&["get", "pod", "p2", "-o", "jsonpath={.spec.nodeName} {.status.conditions[0].type}={.status.conditions[0].status}"]).ok(), "node-a PodScheduled=True");
    let again = raw("/api/v1/namespaces/default/pods/p2/binding", r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p2"},"target":{"kind":"Node","name":"node-b"}}"#);
    assert!(again.err().contains("already assigned to node"), "{}", again.stderr);
    // Eviction respects the budget (429), and evicts what no budget covers. A Pending pod
    // would be deleted whatever its budget says (upstream's canIgnorePDB): p1 runs, unready.
    k.run(&["patch", "pod", "p1", "--subresource=status", "--type=merge", "-p", r#"{"status":{"phase":"Running"}}"#]).ok();
    let blocked = raw("/api/v1/namespaces/default/pods/p1/eviction", r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p1","namespace":"default"}}"#);
    assert!(blocked.err().contains("Cannot evict pod as it would violate the pod's disruption budget"), "{}", blocked.stderr);
    assert_eq!(k.run(&["get", "pod", "p1", "-o", "name"]).ok().trim(), "pod/p1");
    k.run(&["delete", "pdb", "db"]).ok();
    raw("/api/v1/namespaces/default/pods/p1/eviction", r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p1","namespace":"default"}}"#).ok();
    assert!(k.run(&["get", "pod", "p1"]).err().contains("not found"));
}

#[test]
fn events_in_both_apis_and_describe() {
    each_version(|_, k, _| {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers: [{name: c, image: busybox}]\n";
        k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(pod)).ok();
        let uid = k.run(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]).ok().to_string();
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.000000Z").to_string();
        let ev = format!(
            "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: web.pulled\n  namespace: default\nregarding:\n  apiVersion: v1\n  kind: Pod\n  name: web\n  namespace: default\n  uid: {uid}\nreason: Pulled\nnote: 'Successfully pulled image \"busybox\"'\ntype: Normal\neventTime: \"{now}\"\nreportingController: kubelet\nreportingInstance: node-1\naction: Pulling\n"
        );
        k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(&ev)).ok();
        let core = k.run(&["get", "events", "-o", "jsonpath={.items[0].message}|{.items[0].involvedObject.name}|{.items[0].reportingComponent}"]);
        assert_eq!(core.ok(), "Successfully pulled image \"busybox\"|web|kubelet");
        let new = k.run(&["get", "events.events.k8s.io", "web.pulled", "-o", "jsonpath={.note}|{.regarding.kind}"]);
        assert_eq!(new.ok(), "Successfully pulled image \"busybox\"|Pod");
        let table = k.run(&["get", "events"]);
        let rows = lines(table.ok());
        assert_eq!(rows[0], ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
        assert!(rows[1].contains(&"pod/web".to_string()) && rows[1].contains(&"Pulled".to_string()), "{rows:?}");
        let describe = k.run(&["describe", "pod", "web"]);
        let text = describe.ok();
        assert!(text.contains("Events:") && text.contains("Normal  Pulled") && text.contains("Successfully pulled image"), "{text}");
        assert!(text.lines().any(|l| l.starts_with("Labels:") && l.trim_end().ends_with("app=web")), "{text}");
    });
}

const APP: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  labels: {tier: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      containers:
      - name: app
        image: nginx:1.26
        env:
        - {name: MODE, value: one}
";

#[test]
fn apply_diff_edit_patch_wait_and_delete() {
    each_version(|s, k, v| {
        let validate: &[&str] = &[];
        let apply = |manifest: &str, extra: &[&str]| {
            let mut args = vec!["apply", "-f", "-"];
            args.extend_from_slice(extra);
            args.extend_from_slice(validate);
            k.run_with_input(&args, Some(manifest))
        };
        assert!(apply(APP, &[]).ok().contains("deployment.apps/app created"));
        assert!(apply(APP, &[]).ok().contains("deployment.apps/app unchanged"));
        let changed = APP.replace("replicas: 2", "replicas: 3").replace("nginx:1.26", "nginx:1.27");
        let d = k.run_with_input(&["diff", "-f", "-"], Some(&changed));
        assert_eq!(d.code, 1, "kubectl {v} diff: {}{}", d.stdout, d.stderr);
        assert!(d.stdout.contains("-  replicas: 2") && d.stdout.contains("+  replicas: 3"), "{}", d.stdout);
        assert!(apply(&changed, &[]).ok().contains("deployment.apps/app configured"));
        assert_eq!(k.run(&["get", "deploy", "app", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.metadata.generation}"]).ok(), "3 nginx:1.27 2");
        // Removing a field from the applied manifest removes it from the object.
        let no_env = changed.replace("        env:\n        - {name: MODE, value: one}\n", "");
        apply(&no_env, &[]).ok();
        assert_eq!(k.run(&["get", "deploy", "app", "-o", "jsonpath={.spec.template.spec.containers[0].env}"]).ok(), "");
        // Server-side apply takes over.
        let ssa = apply(&changed.replace("replicas: 3", "replicas: 4"), &["--server-side", "--force-conflicts"]);
        assert!(ssa.ok().contains("serverside-applied"), "{}", ssa.stdout);
        assert_eq!(k.run(&["get", "deploy", "app", "-o", "jsonpath={.spec.replicas}"]).ok(), "4");

        // patch, every type.
        k.run(&["patch", "deploy", "app", "-p", "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"app\",\"image\":\"nginx:1.28\"}]}}}}"]).ok();
        k.run(&["patch", "deploy", "app", "--type=merge", "-p", "{\"metadata\":{\"labels\":{\"tier\":\"front\"}}}"]).ok();
        k.run(&["patch", "deploy", "app", "--type=json", "-p", "[{\"op\":\"test\",\"path\":\"/spec/replicas\",\"value\":4},{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":1}]"]).ok();
        let failed = k.run(&["patch", "deploy", "app", "--type=json", "-p", "[{\"op\":\"test\",\"path\":\"/spec/replicas\",\"value\":9}]"]);
        assert_ne!(failed.code, 0);
        // kubectl patch sends no fieldValidation: unknown fields are dropped, with a warning.
        let unknown = k.run(&["patch", "deploy", "app", "--type=merge", "-p", "{\"spec\":{\"replicass\":3}}"]);
        assert_eq!(unknown.code, 0, "{}", unknown.stderr);
        assert!(!k.run(&["get", "deploy", "app", "-o", "yaml"]).ok().contains("replicass"));
        assert_eq!(k.run(&["get", "deploy", "app", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.labels.tier} {.spec.replicas}"]).ok(), "nginx:1.28 front 1");
        k.run(&["set", "env", "deploy/app", "COLOR=blue"]).ok();
        assert_eq!(k.run(&["get", "deploy", "app", "-o", "jsonpath={.spec.template.spec.containers[0].env[?(@.name==\"COLOR\")].value}"]).ok(), "blue");

        // edit with EDITOR set to a script.
        let editor = s.dir.path().join(format!("editor-{v}.sh"));
        std::fs::write(&editor, "#!/bin/sh\nsed -i 's/replicas: 1/replicas: 5/' \"$1\"\n").unwrap();
        std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut edit = k.command(&["edit", "deploy", "app"]);
        edit.env("EDITOR", &editor).env("KUBE_EDITOR", &editor);
        let out = edit.output().unwrap();
        assert!(out.status.success(), "edit: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(k.run(&["get", "deploy", "app", "-o", "jsonpath={.spec.replicas}"]).ok(), "5");

        // wait: for a jsonpath, for a condition, for deletion.
        k.run(&["wait", "deploy/app", "--for=jsonpath={.spec.replicas}=5", "--timeout=10s"]).ok();
        let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: waiting\n";
        k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(ns)).ok();
        k.run(&["wait", "namespace/waiting", "--for=jsonpath={.status.phase}=Active", "--timeout=10s"]).ok();
        let mut waiter = k.command(&["wait", "namespace/waiting", "--for=delete", "--timeout=30s"]);
        let waiter = waiter.stdout(std::process::Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        k.run(&["delete", "namespace", "waiting", "--wait=false"]).ok();
        let out = waiter.wait_with_output().unwrap();
        assert!(out.status.success(), "wait --for=delete: {}", String::from_utf8_lossy(&out.stdout));

        // delete -l and --all.
        for i in 0..3 {
            let cm = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: del-{i}\n  labels: {{batch: \"{}\"}}\n", i % 2);
            k.run_with_input(&["create", "-f", "-", "--validate=false"], Some(&cm)).ok();
        }
        assert!(k.run(&["delete", "cm", "-l", "batch=0"]).ok().contains("configmap \"del-0\" deleted"));
        assert_eq!(k.run(&["get", "cm", "-l", "batch", "-o", "name"]).ok().trim(), "configmap/del-1");
        k.run(&["delete", "cm", "--all"]).ok();
        assert!(k.run(&["get", "cm", "-l", "batch", "-o", "name"]).ok().trim().is_empty());
        k.run(&["delete", "-f", "-"]).ok();
    });
}

#[test]
fn server_side_apply_conflicts_and_managed_fields() {
    each_version(|_, k, _| {
        k.run_with_input(&["apply", "-f", "-"], Some(APP)).ok();
        // kubectl's own server-side apply takes over what its client-side apply managed
        // (the last-applied annotation), without conflicts, as upstream.
        k.run_with_input(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&APP.replace("replicas: 2", "replicas: 3"))).ok();
        assert_eq!(k.run(&["get", "deploy", "app", "-o", "jsonpath={.spec.replicas}"]).ok(), "3");
        let yaml = k.run(&["get", "deploy", "app", "-o", "yaml", "--show-managed-fields"]);
        assert!(yaml.ok().contains("manager: kubectl") && yaml.stdout.contains("operation: Apply") && yaml.stdout.contains("f:replicas: {}"), "{}", yaml.stdout);
        // Another manager's update of a field makes a later apply conflict...
        k.run(&["scale", "deploy", "app", "--replicas=4"]).ok();
        let conflict = k.run_with_input(&["apply", "--server-side", "-f", "-"], Some(&APP.replace("replicas: 2", "replicas: 3")));
        assert!(conflict.err().contains("Apply failed with 1 conflict: conflict with"), "{}", conflict.stderr);
        assert!(conflict.stderr.contains(".spec.replicas"), "{}", conflict.stderr);
        k.run_with_input(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&APP.replace("replicas: 2", "replicas: 3"))).ok();
        // ...and a second applier conflicts with the first, then shares a field whose value
        // it agrees on.
        let other = k.run_with_input(&["apply", "--server-side", "--field-manager=ops", "-f", "-"], Some(&APP.replace("replicas: 2", "replicas: 5")));
        assert!(other.err().contains("conflict with \"kubectl\""), "{}", other.stderr);
        k.run_with_input(&["apply", "--server-side", "--field-manager=ops", "-f", "-"], Some(&APP.replace("replicas: 2", "replicas: 3"))).ok();
        k.run(&["delete", "deploy", "app"]).ok();
    });
}

#[test]
fn hpa_served_as_autoscaling_v1_and_v2() {
    // kubectl autoscale writes autoscaling/v1 up to 1.31 and v2 since; both views are one object.
    each_version(|_, k, v| {
        assert!(k.run(&["api-versions"]).ok().lines().any(|l| l == "autoscaling/v1"), "kubectl {v}");
        k.run(&["create", "deployment", "web", "--image=nginx", "--replicas=1"]).ok();
        k.run(&["autoscale", "deployment", "web", "--min=1", "--max=3", "--cpu-percent=50"]).ok();
        // The preferred version, v2: the target is a metric.
        assert_eq!(
            k.run(&["get", "hpa", "web", "-o", "jsonpath={.apiVersion} {.spec.metrics[0].resource.name} {.spec.metrics[0].resource.target.averageUtilization}"]).ok(),
            "autoscaling/v2 cpu 50",
            "kubectl {v}"
        );
        assert_eq!(
            k.run(&["get", "horizontalpodautoscalers.v1.autoscaling", "web", "-o", "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage} {.spec.maxReplicas}"]).ok(),
            "autoscaling/v1 50 3",
            "kubectl {v}"
        );
        let table = k.run(&["get", "hpa"]);
        let rows = lines(table.ok());
        let web = rows.iter().find(|r| r[0] == "web").unwrap_or_else(|| panic!("kubectl {v}: {}", table.stdout));
        assert_eq!(web[1], "Deployment/web", "kubectl {v}: {}", table.stdout);
        assert!(table.stdout.contains("/50%"), "kubectl {v}: {}", table.stdout);
        // A v1 write of a v2-only metric keeps it, through the annotations.
        let memory = r#"{"metadata":{"annotations":{"autoscaling.alpha.kubernetes.io/metrics":"[{\"type\":\"Resource\",\"resource\":{\"name\":\"memory\",\"targetAverageValue\":\"100Mi\"}}]"}}}"#;
        k.run(&["patch", "horizontalpodautoscalers.v1.autoscaling", "web", "--type=merge", "-p", memory]).ok();
        assert_eq!(
            k.run(&["get", "hpa", "web", "-o", "jsonpath={.spec.metrics[*].resource.name} {.metadata.annotations}"]).ok(),
            "cpu memory ",
            "kubectl {v}"
        );
        // Lists and watches in v1 convert every object.
        let list = k.run(&["get", "--raw", "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"]);
        assert!(list.ok().contains(r#""targetCPUUtilizationPercentage":50"#), "kubectl {v}: {}", list.stdout);
        let watch = k.run(&["get", "--raw", "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers?watch=1&timeoutSeconds=1"]);
        assert!(watch.stdout.contains(r#""type":"ADDED""#) && watch.stdout.contains(r#""targetCPUUtilizationPercentage":50"#), "kubectl {v}: {}", watch.stdout);
        assert!(!watch.stdout.contains(r#""metrics":["#), "kubectl {v}: {}", watch.stdout);
        k.run(&["delete", "hpa", "web"]).ok();
    });
}
