use serde_json::{json, Value};

use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

fn host(s: &str) -> IpRange {
    IpRange::host(ip(s))
}

/// A running pod; its node is told by its address (this node: 10.244.0.0/24).
fn pod(ns: &str, name: &str, addr: &str, labels: Value) -> Arc<Pod> {
    pod_with(ns, name, addr, labels, json!({}))
}

fn pod_with(ns: &str, name: &str, addr: &str, labels: Value, spec: Value) -> Arc<Pod> {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c"}]);
    }
    Arc::new(serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": spec,
        "status": {"phase": "Running", "podIP": addr, "podIPs": [{"ip": addr}]},
    })).expect("pod"))
}

fn namespace(name: &str, labels: Value) -> Arc<Namespace> {
    let mut labels = labels;
    labels[NAME_LABEL] = json!(name);
    Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("namespace"))
}

fn policy(ns: &str, name: &str, spec: Value) -> Arc<NetworkPolicy> {
    Arc::new(serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})).expect("policy"))
}

fn tcp(first: u16, last: u16) -> PortRange {
    PortRange { protocol: Protocol::Tcp, first, last }
}

fn peers(v: &[&str]) -> Option<Vec<IpRange>> {
    Some(merge_ranges(v.iter().map(|s| host(s))))
}

/// The cluster every case runs in: namespaces `default` and `other` (team=blue), `prod`
/// (team=red); on this node web (app=web, named port http=8080), db (app=db) and client; on
/// other nodes client2 (other), remote (prod) and a finished pod; a host-network pod.
fn cluster() -> (Vec<Arc<Pod>>, Vec<Arc<Namespace>>) {
    let web_spec = json!({"containers": [{"name": "web", "ports": [{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]});
    let pods = vec![
        pod_with("default", "web", "10.244.0.2", json!({"app": "web"}), web_spec.clone()),
        pod("default", "db", "10.244.0.3", json!({"app": "db"})),
        pod("default", "client", "10.244.0.4", json!({"role": "client"})),
        pod("other", "client2", "10.244.1.5", json!({"role": "client"})),
        pod_with("prod", "remote", "10.244.2.6", json!({"app": "web"}), web_spec),
        Arc::new(serde_json::from_value(json!({"metadata": {"namespace": "default", "name": "done", "labels": {"role": "client"}}, "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Succeeded", "podIP": "10.244.1.9"}})).expect("pod")),
        pod_with("default", "hostnet", "192.168.0.10", json!({"role": "client"}), json!({"hostNetwork": true})),
    ];
    let namespaces = vec![namespace("default", json!({})), namespace("other", json!({"team": "blue"})), namespace("prod", json!({"team": "red"}))];
    (pods, namespaces)
}

fn run(policies: Vec<Arc<NetworkPolicy>>) -> PolicyRules {
    let (pods, namespaces) = cluster();
    compute("10.244.0.0/24".parse().expect("cidr"), &policies, &pods, &namespaces)
}

fn only(pod: &str, allow: Vec<Allow>) -> Vec<PodPolicy> {
    vec![PodPolicy { pod: ip(pod), allow }]
}

#[test]
fn selectors() {
    let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string()), ("tier".to_string(), "1".to_string())].into();
    let cases = [
        (json!({}), true),
        (json!({"matchLabels": {"app": "web"}}), true),
        (json!({"matchLabels": {"app": "db"}}), false),
        (json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "web"]}]}), true),
        (json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}), false),
        (json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}), true),
        (json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}), true),
        (json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}), false),
        (json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "Exists"}]}), false),
        (json!({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}), false),
    ];
    for (sel, want) in cases {
        let s: LabelSelector = serde_json::from_value(sel.clone()).expect("selector");
        assert_eq!(selects(&s, &labels), want, "{sel}");
    }
}

#[test]
fn rule_computation() {
    // (what, policies, expected ingress, expected egress)
    let cases: Vec<(&str, Vec<Arc<NetworkPolicy>>, Vec<PodPolicy>, Vec<PodPolicy>)> = vec![
        ("no policy: nobody isolated", vec![], vec![], vec![]),
        (
            "default deny ingress in default: every local pod of default isolated, allowed nothing",
            vec![policy("default", "deny", json!({"podSelector": {}, "policyTypes": ["Ingress"]}))],
            ["10.244.0.2", "10.244.0.3", "10.244.0.4"].iter().map(|p| PodPolicy { pod: ip(p), allow: vec![] }).collect(),
            vec![],
        ),
        (
            "no policyTypes and no egress rules: ingress only",
            vec![policy("default", "p", json!({"podSelector": {"matchLabels": {"app": "web"}}}))],
            only("10.244.0.2", vec![]),
            vec![],
        ),
        (
            "no policyTypes with egress rules: both",
            vec![policy("default", "p", json!({"podSelector": {"matchLabels": {"app": "web"}}, "egress": [{}]}))],
            only("10.244.0.2", vec![]),
            only("10.244.0.2", vec![Allow::Peers { peers: None, ports: None }]),
        ),
        (
            "a policy of another namespace selects nothing here",
            vec![policy("prod", "deny", json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))],
            vec![],
            vec![],
        ),
        (
            "podSelector peer: pods of the policy's namespace only (not client2 of other, not finished or host-network pods)",
            vec![policy("default", "p", json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}))],
            only("10.244.0.2", vec![Allow::Peers { peers: peers(&["10.244.0.4"]), ports: None }]),
            vec![],
        ),
        (
            "namespaceSelector peer: every pod of the selected namespaces",
            vec![policy("default", "p", json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]}))],
            only("10.244.0.2", vec![Allow::Peers { peers: peers(&["10.244.1.5"]), ports: None }]),
            vec![],
        ),
        (
            "both selectors in one peer: pods of those namespaces that match; two peers: either",
            vec![policy("default", "p", json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
                {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}]},
                {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}}}, {"podSelector": {"matchLabels": {"app": "db"}}}]},
            ]}))],
            only("10.244.0.2", vec![Allow::Peers { peers: peers(&["10.244.0.2", "10.244.2.6"]), ports: None }, Allow::Peers { peers: peers(&["10.244.0.3", "10.244.1.5"]), ports: None }]),
            vec![],
        ),
        (
            "peers matching no pod allow nothing",
            vec![policy("default", "p", json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "none"}}}]}]}))],
            only("10.244.0.2", vec![]),
            vec![],
        ),
        (
            "ipBlock with except, IPv6 blocks ignored; ports with endPort, protocol alone, default TCP",
            vec![policy("default", "p", json!({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"], "egress": [{
                "to": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}, {"ipBlock": {"cidr": "fd00::/8"}}],
                "ports": [{"port": 80}, {"protocol": "TCP", "port": 30000, "endPort": 30100}, {"protocol": "UDP"}],
            }]}))],
            vec![],
            only("10.244.0.3", vec![Allow::Peers {
                peers: Some(vec![IpRange { first: ip("192.168.0.0"), last: ip("192.168.0.255") }, IpRange { first: ip("192.168.2.0"), last: ip("192.168.255.255") }]),
                ports: Some(vec![tcp(80, 80), tcp(30000, 30100), PortRange::all(Protocol::Udp)]),
            }]),
        ),
        (
            "ingress named port: resolved on the isolated pod (web has http=8080, db has none)",
            vec![policy("default", "p", json!({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}, {"port": "dns", "protocol": "UDP"}, {"port": "dns"}]}]}))],
            vec![
                PodPolicy { pod: ip("10.244.0.2"), allow: vec![Allow::Peers { peers: None, ports: Some(vec![tcp(8080, 8080), PortRange { protocol: Protocol::Udp, first: 5353, last: 5353 }]) }] },
                PodPolicy { pod: ip("10.244.0.3"), allow: vec![] },
                PodPolicy { pod: ip("10.244.0.4"), allow: vec![] },
            ],
            vec![],
        ),
        (
            "egress named port: resolved on each destination pod among the peers",
            vec![policy("default", "p", json!({"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"], "egress": [
                {"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}, {"port": 53, "protocol": "UDP"}]},
            ]}))],
            vec![],
            only("10.244.0.4", vec![
                Allow::Peers { peers: peers(&["10.244.0.2", "10.244.0.3", "10.244.0.4", "10.244.1.5", "10.244.2.6"]), ports: Some(vec![PortRange { protocol: Protocol::Udp, first: 53, last: 53 }]) },
                Allow::Endpoints(vec![(ip("10.244.0.2"), Protocol::Tcp, 8080), (ip("10.244.2.6"), Protocol::Tcp, 8080)]),
            ]),
        ),
        (
            "policies add up; an empty rule allows everything",
            vec![
                policy("default", "a", json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]})),
                policy("default", "b", json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 8080}]}]})),
                policy("default", "c", json!({"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{}]})),
            ],
            vec![
                PodPolicy { pod: ip("10.244.0.2"), allow: vec![Allow::Peers { peers: None, ports: Some(vec![tcp(8080, 8080)]) }, Allow::Peers { peers: peers(&["10.244.0.3"]), ports: None }] },
                PodPolicy { pod: ip("10.244.0.3"), allow: vec![Allow::Peers { peers: None, ports: None }] },
            ],
            vec![],
        ),
    ];
    for (what, policies, ingress, egress) in cases {
        let got = run(policies);
        assert_eq!(got.ingress, ingress, "{what}: ingress");
        assert_eq!(got.egress, egress, "{what}: egress");
    }
}

#[test]
fn result_does_not_depend_on_cache_order() {
    let policies = vec![
        policy("default", "a", json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]})),
        policy("default", "b", json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})),
    ];
    let (mut pods, mut namespaces) = cluster();
    let cidr: Ipv4Net = "10.244.0.0/24".parse().expect("cidr");
    let one = compute(cidr, &policies, &pods, &namespaces);
    pods.reverse();
    namespaces.reverse();
    let reversed: Vec<Arc<NetworkPolicy>> = policies.iter().rev().cloned().collect();
    assert_eq!(compute(cidr, &reversed, &pods, &namespaces), one);
}

#[test]
fn trimmed_pods_keep_what_policies_read() {
    let mut p: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "web", "labels": {"app": "web"}, "annotations": {"big": "x"}, "managedFields": [{"manager": "kubectl"}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "img", "env": [{"name": "A", "value": "1"}], "ports": [{"name": "http", "containerPort": 8080}]}], "volumes": [{"name": "v", "emptyDir": {}}]},
        "status": {"phase": "Running", "podIP": "10.244.0.2", "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .expect("pod");
    super::super::trim(&mut p);
    let v = serde_json::to_value(&p).expect("json");
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"namespace": "default", "name": "web", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": "10.244.0.2"},
        })
    );
}
