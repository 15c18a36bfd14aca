//! The workload controllers on the control plane alone (no node runs the pods, so none gets
//! ready): Deployments make ReplicaSets named by their template hash, ReplicaSets make,
//! adopt, replace and remove pods, with upstream's events and the columns kubectl prints.
//! Rollouts with running pods are in pods.rs (`deployments_scale_roll_out_and_roll_back`).

use std::time::{Duration, Instant};

use serde_json::Value;
use timonier_testkit::{Kubectl, Server};

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn names(k: &Kubectl, kind: &str, selector: &str) -> Vec<String> {
    let list: Value = serde_json::from_str(k.run(&["get", kind, "-l", selector, "-o", "json"]).ok()).unwrap();
    list["items"].as_array().into_iter().flatten().filter(|o| o["metadata"]["deletionTimestamp"].is_null()).filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string)).collect()
}

#[test]
fn deployments_make_replicasets_and_replicasets_keep_their_pods() {
    let s = Server::start_control_plane(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let k = s.kubectl("1.33");
    k.run(&["create", "deployment", "web", "--image=busybox", "--replicas=3"]).ok();
    wait_for("3 pods", || names(&k, "pods", "app=web").len() == 3);
    let rs = names(&k, "rs", "app=web");
    assert_eq!(rs.len(), 1, "{rs:?}");
    let rs = rs[0].clone();
    let hash = rs.strip_prefix("web-").expect("rs named after the deployment").to_string();
    let pods = names(&k, "pods", "app=web");
    assert!(pods.iter().all(|p| p.starts_with(&format!("{rs}-")) && p.len() == rs.len() + 6), "{pods:?}");
    let pod: Value = serde_json::from_str(k.run(&["get", "pod", &pods[0], "-o", "json"]).ok()).unwrap();
    assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], hash.as_str());
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["name"], rs.as_str());
    assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    wait_for("deployment events", || k.events_of("web").contains(&format!("ScalingReplicaSet   deployment-controller   Scaled up replica set {rs} from 0 to 3")));
    assert!(k.events_of(&rs).contains("SuccessfulCreate   replicaset-controller   Created pod: "), "{}", k.events_of(&rs));
    // Nothing runs the pods: 0 of 3 ready, all 3 up to date.
    wait_for("deployment status", || {
        let row = k.run(&["get", "deployment", "web", "--no-headers"]).ok().to_string();
        row.split_whitespace().take(4).collect::<Vec<_>>() == ["web", "0/3", "3", "0"]
    });
    let out = k.run(&["rollout", "status", "deployment/web", "--timeout=2s"]);
    assert!(out.stdout.contains("Waiting for deployment \"web\" rollout to finish: 0 of 3 updated replicas are available..."), "{out:?}");
    let d: Value = serde_json::from_str(k.run(&["get", "deployment", "web", "-o", "json"]).ok()).unwrap();
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    let conds = d["status"]["conditions"].to_string();
    assert!(conds.contains("MinimumReplicasUnavailable") && conds.contains("ReplicaSetUpdated"), "{conds}");

    // No progress within progressDeadlineSeconds: the rollout has timed out, as kubectl says.
    k.run(&["patch", "deployment", "web", "-p", r#"{"spec":{"progressDeadlineSeconds":2}}"#]).ok();
    wait_for("progress deadline", || k.run(&["get", "deployment", "web", "-o", "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}"]).stdout == "ProgressDeadlineExceeded");
    let out = k.run(&["rollout", "status", "deployment/web", "--timeout=5s"]);
    assert!(out.err().contains("deployment \"web\" exceeded its progress deadline"), "{out:?}");
    k.run(&["patch", "deployment", "web", "-p", r#"{"spec":{"progressDeadlineSeconds":600}}"#]).ok();

    // Self-healing: a deleted pod is replaced; scaling down removes pods.
    k.run(&["delete", "pod", &pods[0], "--wait=false"]).ok();
    wait_for("a replacement", || {
        let now = names(&k, "pods", "app=web");
        now.len() == 3 && !now.contains(&pods[0])
    });
    k.run(&["scale", "deployment", "web", "--replicas=1"]).ok();
    wait_for("1 pod", || names(&k, "pods", "app=web").len() == 1);
    assert!(k.events_of(&rs).contains("SuccessfulDelete   replicaset-controller   Deleted pod: "));

    // A new template makes a second ReplicaSet with the next revision.
    k.run(&["set", "image", "deployment/web", "busybox=busybox:2"]).ok();
    wait_for("a second replicaset", || names(&k, "rs", "app=web").len() == 2);
    let rs2 = names(&k, "rs", "app=web").into_iter().find(|n| *n != rs).unwrap();
    let rev = k.run(&["get", "rs", &rs2, "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"]).ok().to_string();
    assert_eq!(rev, "2");

    // A bare ReplicaSet adopts a matching orphan and makes only what is missing.
    k.run(&["run", "orphan", "--image=busybox", "--labels=tier=cache"]).ok();
    let yaml = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: cache}\nspec:\n  replicas: 2\n  selector: {matchLabels: {tier: cache}}\n  template:\n    metadata: {labels: {tier: cache}}\n    spec: {containers: [{name: c, image: busybox}]}\n";
    k.run_with_input(&["apply", "-f", "-"], Some(yaml)).ok();
    wait_for("cache has 2 pods", || names(&k, "pods", "tier=cache").len() == 2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(names(&k, "pods", "tier=cache").len(), 2);
    let orphan: Value = serde_json::from_str(k.run(&["get", "pod", "orphan", "-o", "json"]).ok()).unwrap();
    assert_eq!(orphan["metadata"]["ownerReferences"][0]["name"], "cache");
    // Deleting the ReplicaSet deletes its pods (garbage collection through ownerReferences).
    k.run(&["delete", "rs", "cache"]).ok();
    wait_for("cache pods gone", || names(&k, "pods", "tier=cache").is_empty());
}

/// Endpoints and EndpointSlices follow the pods a Service selects. No kubelet runs here, so
/// the test gives pods their IP and readiness itself, through the status subresource.
#[test]
fn services_get_the_endpoints_of_their_pods() {
    let s = Server::start_control_plane(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &[]);
    let k = s.kubectl("1.33");
    let pod = |name: &str, ip: &str, ready: bool| {
        let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: web}}}}\nspec:\n  containers: [{{name: c, image: busybox, ports: [{{name: http, containerPort: 8080}}]}}]\n");
        k.run_with_input(&["apply", "-f", "-"], Some(&yaml)).ok();
        let status = format!(r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"{}"}}]}}}}"#, if ready { "True" } else { "False" });
        k.run(&["patch", "pod", name, "--subresource=status", "--type=merge", "-p", &status]).ok();
    };
    pod("a", "10.244.0.10", true);
    pod("b", "10.244.0.11", false);
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: web, port: 80, targetPort: http}]\n";
    k.run_with_input(&["apply", "-f", "-"], Some(svc)).ok();
    let endpoints = |k: &Kubectl| -> Value { serde_json::from_str(&k.run(&["get", "endpoints", "web", "-o", "json"]).stdout).unwrap_or(Value::Null) };
    wait_for("endpoints", || endpoints(&k)["subsets"][0]["addresses"][0]["ip"] == "10.244.0.10");
    let e = endpoints(&k);
    assert_eq!(e["subsets"][0]["notReadyAddresses"][0]["ip"], "10.244.0.11", "{e}");
    assert_eq!(e["subsets"][0]["ports"][0]["port"], 8080, "{e}");
    assert_eq!(e["subsets"][0]["addresses"][0]["targetRef"]["name"], "a");
    let row = k.run(&["get", "endpoints", "web", "--no-headers"]).ok().to_string();
    assert_eq!(row.split_whitespace().nth(1), Some("10.244.0.10:8080"), "{row}");
    let slices: Value = serde_json::from_str(k.run(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json"]).ok()).unwrap();
    let slice = &slices["items"][0];
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"][0]["port"], 8080);
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    let eps = slice["endpoints"].as_array().cloned().unwrap_or_default();
    assert_eq!(eps.len(), 2, "{slice}");
    assert!(eps.iter().any(|e| e["addresses"][0] == "10.244.0.11" && e["conditions"]["ready"] == false));
    let describe = k.run(&["describe", "service", "web"]).ok().to_string();
    assert!(describe.lines().any(|l| l.starts_with("Endpoints:") && l.contains("10.244.0.10:8080")), "{describe}");
    // b becomes ready, a goes away.
    k.run(&["patch", "pod", "b", "--subresource=status", "--type=merge", "-p", r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#]).ok();
    k.run(&["delete", "pod", "a", "--grace-period=0", "--force"]).ok();
    wait_for("b alone", || {
        let e = endpoints(&k);
        e["subsets"][0]["addresses"].as_array().is_some_and(|a| a.len() == 1 && a[0]["ip"] == "10.244.0.11") && e["subsets"][0]["notReadyAddresses"].is_null()
    });
    // Without pods: no subsets, `<none>` in kubectl's column.
    k.run(&["delete", "pod", "b", "--grace-period=0", "--force"]).ok();
    wait_for("no endpoints", || endpoints(&k)["subsets"].is_null());
    let row = k.run(&["get", "endpoints", "web", "--no-headers"]).ok().to_string();
    assert_eq!(row.split_whitespace().nth(1), Some("<none>"), "{row}");
    // Deleting the Service deletes its Endpoints and EndpointSlice.
    k.run(&["delete", "service", "web"]).ok();
    wait_for("endpoints gone", || k.run(&["get", "endpoints", "web"]).code != 0 && k.run(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "name"]).stdout.trim().is_empty());
}
