//! Several machines in one cluster: a server with its agent and two agents on hosts of their
//! own (network namespaces on a test LAN), the stock kubectl. Pods talk across hosts through
//! both network backends: pod to pod, to a ClusterIP whose endpoint is on another node, to a
//! NodePort of a node that runs none of the Service's pods, and cluster DNS on every node.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::multinode::MultiNode;
use common::TestImage;

/// The tests share the cgroup and bridge names of their nodes: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn manifests(prefix: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  nodeName: {prefix}2
  containers: [{{name: web, image: "gcr.io/google-samples/kubernetes-bootcamp:v1", ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client1}}
spec:
  nodeName: {prefix}1
  containers: [{{name: c, image: busybox, command: [sleep, "3600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client0}}
spec:
  nodeName: {prefix}0
  containers: [{{name: c, image: busybox, command: [sleep, "3600"]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 8080, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-np}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 8080, targetPort: 8080}}]
"#
    )
}

fn get(cluster: &MultiNode, pod: &str, url: &str) -> String {
    let out = cluster.kubectl.run(&["exec", pod, "--", "timeout", "5", "wget", "--no-check-certificate", "-qO-", url]);
    format!("{}{}", out.stdout, out.stderr)
}

fn cross_host_traffic(backend: &str, prefix: &str) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = MultiNode::start(prefix, 2, &[TestImage::Busybox, TestImage::Bootcamp(1)], backend);
    let k = &cluster.kubectl;
    k.run_with_input(&["apply", "-f", "-"], Some(&manifests(prefix))).ok();
    for pod in ["web", "client1", "client0"] {
        cluster.wait(&format!("{pod} Ready"), Duration::from_secs(90), |k| {
            k.run(&["get", "pod", pod, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]).stdout == "True"
        });
    }
    let ip_of = |pod: &str| k.run(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"]).ok().to_string();
    let (web, c1, c0) = (ip_of("web"), ip_of("client1"), ip_of("client0"));
    let cidr_of = |node: &str| k.run(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"]).ok().to_string();
    let prefix_of = |ip: &str| ip.rsplit_once('.').map(|(p, _)| p.to_string()).unwrap_or_default();
    assert!(cidr_of(&format!("{prefix}2")).starts_with(&prefix_of(&web)), "web {web} in node 2's range");
    assert_ne!(prefix_of(&web), prefix_of(&c1), "pods of different nodes have addresses from different ranges");
    assert_ne!(prefix_of(&c0), prefix_of(&c1));
    let hello = "Hello Kubernetes bootcamp! | Running on: web | v=1";

    // Pod to pod across hosts, both ways, and from the server's node.
    let out = get(&cluster, "client1", &format!("http://{web}:8080/"));
    assert!(out.contains(hello), "{backend}: client1 ({c1}) -> web ({web}): {out}");
    let out = get(&cluster, "client0", &format!("http://{web}:8080/"));
    assert!(out.contains(hello), "{backend}: client0 ({c0}) -> web ({web}): {out}");
    let ping = k.run(&["exec", "web", "--", "ping", "-c1", "-W2", &c1]);
    assert!(ping.stdout.contains("1 packets received"), "{backend}: web -> client1: {ping:?}");

    // A ClusterIP whose only endpoint is on another node, by name through cluster DNS.
    for pod in ["client1", "client0"] {
        let out = get(&cluster, pod, "http://web.default.svc.cluster.local:8080/");
        assert!(out.contains(hello), "{backend}: {pod} -> Service web: {out}");
        let out = get(&cluster, pod, "http://web:8080/");
        assert!(out.contains(hello), "{backend}: {pod} -> web (short name): {out}");
    }

    // A NodePort of node 1, which runs none of the Service's pods, from outside the cluster.
    let node_port = k.run(&["get", "svc", "web-np", "-o", "jsonpath={.spec.ports[0].nodePort}"]).ok().to_string();
    let host1 = cluster.agent(&format!("{prefix}1")).host.ip;
    let out = std::process::Command::new("curl").args(["-s", "--max-time", "5", &format!("http://{host1}:{node_port}/")]).output().expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains(hello), "{backend}: NodePort {host1}:{node_port} -> web on node 2: {body:?}");

    // The kubernetes Service (the API server on another machine) from a pod on a joined node.
    // busybox's TLS shares no cipher suite with the server's: the server's handshake alert is
    // the proof that the connection reached it (a dead route would time out instead).
    let out = get(&cluster, "client1", "https://kubernetes.default.svc.cluster.local/readyz");
    assert!(out.contains("TLS error from peer"), "{backend}: client1 -> kubernetes:443: {out:?}");
}

#[test]
fn pods_talk_across_hosts_vxlan() {
    cross_host_traffic("vxlan", "mnvx");
}

#[test]
fn pods_talk_across_hosts_host_gw() {
    cross_host_traffic("host-gw", "mnhg");
}
