//! NetworkPolicies enforced across machines: a control plane and three agents, each on a host
//! of its own (np0, np1, np2), the stock kubectl, busybox pods. A server pod on np2 is
//! reached from clients on the other nodes — directly and through its Service's ClusterIP —
//! under a default deny, podSelector / namespaceSelector allow rules with a named port, a
//! port range (endPort), an egress default deny with ipBlock (and except) and named-port
//! exceptions; deleting the policies restores everything.

mod common;

use std::time::{Duration, Instant};

use common::multinode::MultiNode;
use common::TestImage;

const PREFIX: &str = "np";

fn manifests() -> String {
    let server = "mkdir -p /www && echo hello > /www/index.html && for p in 8080 9090 9095 9100; do httpd -p $p -h /www; done && exec sleep 3600";
    let sleeper = |ns: &str, name: &str, node: u8, labels: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{namespace: {ns}, name: {name}, labels: {labels}}}\nspec:\n  nodeName: {PREFIX}{node}\n  containers: [{{name: c, image: busybox, command: [sleep, \"3600\"]}}]\n---\n")
    };
    let mut m = String::new();
    for (ns, labels) in [("np-srv", "{}"), ("np-cli", "{role: friend}"), ("np-other", "{}")] {
        m += &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {labels}}}\n---\n");
    }
    m += &format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{namespace: np-srv, name: server, labels: {{app: server}}}}
spec:
  nodeName: {PREFIX}2
  containers:
  - name: srv
    image: busybox
    command: [sh, -c, "{server}"]
    ports: [{{name: http, containerPort: 8080}}, {{containerPort: 9090}}, {{containerPort: 9095}}, {{containerPort: 9100}}]
---
apiVersion: v1
kind: Service
metadata: {{namespace: np-srv, name: server}}
spec:
  selector: {{app: server}}
  ports: [{{port: 80, targetPort: 8080}}]
---
"#
    );
    m += &sleeper("np-srv", "client-a", 1, "{role: client}");
    m += &sleeper("np-srv", "client-b", 1, "{role: other}");
    m += &sleeper("np-cli", "friend", 0, "{}");
    m += &sleeper("np-other", "stranger", 0, "{}");
    m
}

const DEFAULT_DENY: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: np-srv, name: default-deny}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"#;

/// Role=client pods of the namespace and every pod of role=friend namespaces, on the
/// container port named http only.
const ALLOW_FRIENDS: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: np-srv, name: allow-friends}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from:
    - podSelector: {matchLabels: {role: client}}
    - namespaceSelector: {matchLabels: {role: friend}}
    ports: [{port: http}]
"#;

/// Any pod of any namespace, on 9090 to 9095.
const ALLOW_RANGE: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: np-srv, name: allow-range}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{namespaceSelector: {}}]
    ports: [{protocol: TCP, port: 9090, endPort: 9095}]
"#;

/// Clients may send only to the LAN but one address, and to the server pod's http port.
fn client_egress(lan: &str, except: &str) -> String {
    format!(
        r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{namespace: np-srv, name: client-egress}}
spec:
  podSelector: {{matchLabels: {{role: client}}}}
  policyTypes: [Egress]
  egress:
  - to: [{{ipBlock: {{cidr: "{lan}", except: ["{except}"]}}}}]
  - to: [{{podSelector: {{matchLabels: {{app: server}}}}}}]
    ports: [{{port: http}}]
"#
    )
}

/// Whether `pod` (in `ns`) gets an answer from `url`: the server's page, or for a TLS server
/// the handshake failure busybox's TLS always ends with (proof that a connection was made).
fn attempt(cluster: &MultiNode, ns: &str, pod: &str, url: &str) -> (bool, String) {
    let out = cluster.kubectl.run(&["exec", "-n", ns, pod, "--", "timeout", "5", "wget", "--no-check-certificate", "-qO-", url]);
    let text = format!("{}{}", out.stdout, out.stderr);
    (text.contains("hello") || text.contains("TLS error from peer"), text)
}

/// Waits until `pod` reaches `url` (`allowed`) or is refused: the agents apply a change a
/// moment after the API has it.
#[track_caller]
fn expect(cluster: &MultiNode, what: &str, ns: &str, pod: &str, url: &str, allowed: bool) {
    let verb = if allowed { "reaches" } else { "is refused" };
    let deadline = Instant::now() + Duration::from_secs(30);
    let last = loop {
        let (ok, text) = attempt(cluster, ns, pod, url);
        if ok == allowed {
            break text;
        }
        if Instant::now() > deadline {
            // Fails with the cluster's state and logs.
            cluster.wait(&format!("{what}: {ns}/{pod} {verb} {url} (last answer: {text:?})"), Duration::ZERO, |_| false);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !allowed {
        assert!(!last.contains("bad address"), "{what}: {pod} could not even resolve {url}: {last}");
    }
}

fn apply(cluster: &MultiNode, yaml: &str) {
    cluster.kubectl.run_with_input(&["apply", "-f", "-"], Some(yaml)).ok();
}

#[test]
fn policies_across_nodes() {
    let cluster = MultiNode::start(PREFIX, 2, &[TestImage::Busybox], "vxlan");
    let k = &cluster.kubectl;
    apply(&cluster, &manifests());
    for (ns, pod) in [("np-srv", "server"), ("np-srv", "client-a"), ("np-srv", "client-b"), ("np-cli", "friend"), ("np-other", "stranger")] {
        cluster.wait(&format!("{ns}/{pod} Ready"), Duration::from_secs(90), |k| {
            k.run(&["get", "pod", "-n", ns, pod, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]).stdout == "True"
        });
    }
    let server_ip = k.run(&["get", "pod", "-n", "np-srv", "server", "-o", "jsonpath={.status.podIP}"]).ok().to_string();
    let url = |port: u16| format!("http://{server_ip}:{port}/");
    let service = "http://server.np-srv.svc.cluster.local/";
    let node2 = cluster.agent(&format!("{PREFIX}2")).host.ip;
    let kubelet2 = format!("https://{node2}:10250/");
    let api = "https://kubernetes.default.svc.cluster.local/readyz";

    // No policy: open.
    expect(&cluster, "open", "np-srv", "client-a", &url(8080), true);
    expect(&cluster, "open", "np-other", "stranger", &url(9100), true);
    expect(&cluster, "open", "np-srv", "client-a", &kubelet2, true);

    // Default deny ingress: clients on other nodes are refused, directly and through the Service.
    apply(&cluster, DEFAULT_DENY);
    expect(&cluster, "default deny", "np-srv", "client-a", &url(8080), false);
    expect(&cluster, "default deny", "np-cli", "friend", &url(8080), false);
    expect(&cluster, "default deny", "np-srv", "client-a", service, false);
    // Only the server is isolated: its node's other traffic flows.
    expect(&cluster, "default deny, not isolated", "np-srv", "client-b", &kubelet2, true);

    // podSelector and namespaceSelector peers on a named port.
    apply(&cluster, ALLOW_FRIENDS);
    expect(&cluster, "podSelector", "np-srv", "client-a", &url(8080), true);
    expect(&cluster, "podSelector", "np-srv", "client-b", &url(8080), false);
    expect(&cluster, "namespaceSelector", "np-cli", "friend", &url(8080), true);
    expect(&cluster, "namespaceSelector", "np-other", "stranger", &url(8080), false);
    expect(&cluster, "named port", "np-srv", "client-a", &url(9090), false);
    // A ClusterIP whose endpoint is the protected pod on another node: judged after DNAT,
    // on the client pod's address.
    expect(&cluster, "Service", "np-srv", "client-a", service, true);
    expect(&cluster, "Service", "np-srv", "client-b", service, false);

    // A port range.
    apply(&cluster, ALLOW_RANGE);
    expect(&cluster, "endPort", "np-other", "stranger", &url(9090), true);
    expect(&cluster, "endPort", "np-other", "stranger", &url(9095), true);
    expect(&cluster, "endPort", "np-other", "stranger", &url(9100), false);
    expect(&cluster, "endPort", "np-other", "stranger", &url(8080), false);

    // Egress default deny of the clients, with an ipBlock (minus one host) and a named port.
    // The test LAN is a /24 holding every node and the API server.
    let [a, b, c, _] = node2.octets();
    let lan = format!("{a}.{b}.{c}.0/24");
    apply(&cluster, &client_egress(&lan, &format!("{node2}/32")));
    expect(&cluster, "egress ipBlock", "np-srv", "client-a", api, true);
    expect(&cluster, "egress ipBlock except", "np-srv", "client-a", &kubelet2, false);
    expect(&cluster, "egress named port", "np-srv", "client-a", &url(8080), true);
    expect(&cluster, "egress named port", "np-srv", "client-a", &url(9090), false);
    expect(&cluster, "egress, not isolated", "np-srv", "client-b", &url(9090), true);
    expect(&cluster, "egress, not isolated", "np-srv", "client-b", &kubelet2, true);

    // Deleting the policies restores traffic.
    k.run(&["delete", "networkpolicy", "-n", "np-srv", "--all"]).ok();
    expect(&cluster, "restored", "np-srv", "client-b", &url(8080), true);
    expect(&cluster, "restored", "np-other", "stranger", &url(9100), true);
    expect(&cluster, "restored", "np-srv", "client-a", &kubelet2, true);
    expect(&cluster, "restored", "np-srv", "client-a", service, true);
}
