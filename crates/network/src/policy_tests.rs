use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

fn range(a: &str, b: &str) -> IpRange {
    IpRange { first: ip(a), last: ip(b) }
}

fn net(s: &str) -> IpRange {
    IpRange::net(s.parse().expect("cidr"))
}

#[test]
fn ranges_merge_into_disjoint_sorted_intervals() {
    let cases: Vec<(Vec<IpRange>, Vec<IpRange>)> = vec![
        (vec![], vec![]),
        (vec![IpRange::host(ip("10.0.0.2")), IpRange::host(ip("10.0.0.1"))], vec![range("10.0.0.1", "10.0.0.2")]),
        (vec![net("10.0.0.0/24"), IpRange::host(ip("10.0.0.7"))], vec![net("10.0.0.0/24")]),
        (vec![net("10.0.1.0/24"), net("10.0.0.0/24"), IpRange::host(ip("10.0.3.1"))], vec![range("10.0.0.0", "10.0.1.255"), IpRange::host(ip("10.0.3.1"))]),
        (vec![net("0.0.0.0/0"), IpRange::host(ip("255.255.255.255"))], vec![net("0.0.0.0/0")]),
    ];
    for (input, want) in cases {
        assert_eq!(merge_ranges(input.clone()), want, "{input:?}");
    }
}

#[test]
fn ip_blocks_lose_their_exceptions() {
    let cases: Vec<(IpRange, Vec<IpRange>, Vec<IpRange>)> = vec![
        (net("10.0.0.0/16"), vec![], vec![net("10.0.0.0/16")]),
        (net("10.0.0.0/16"), vec![net("10.0.1.0/24")], vec![range("10.0.0.0", "10.0.0.255"), range("10.0.2.0", "10.0.255.255")]),
        (net("10.0.0.0/16"), vec![net("10.0.0.0/24"), net("10.0.255.0/24")], vec![range("10.0.1.0", "10.0.254.255")]),
        (net("10.0.0.0/24"), vec![net("10.0.0.0/16")], vec![]),
        (net("10.0.0.0/24"), vec![net("192.168.0.0/16")], vec![net("10.0.0.0/24")]),
        (net("0.0.0.0/0"), vec![net("0.0.0.0/1")], vec![net("128.0.0.0/1")]),
        (net("0.0.0.0/0"), vec![net("128.0.0.0/1")], vec![net("0.0.0.0/1")]),
    ];
    for (block, except, want) in cases {
        assert_eq!(subtract(block, &except), want, "{block:?} except {except:?}");
    }
}

fn allow(peers: Option<Vec<IpRange>>, ports: Option<Vec<PortRange>>) -> Allow {
    Allow::Peers { peers, ports }
}

fn tcp(first: u16, last: u16) -> PortRange {
    PortRange { protocol: Protocol::Tcp, first, last }
}

/// The commands of a rendered document whose verb is `verb` and object kind `kind`.
fn objects<'a>(doc: &'a Value, verb: &str, kind: &str) -> Vec<&'a Value> {
    doc["nftables"].as_array().expect("commands").iter().filter_map(|c| c.get(verb).and_then(|v| v.get(kind))).collect()
}

fn named<'a>(doc: &'a Value, kind: &str, name: &str) -> &'a Value {
    objects(doc, "add", kind).into_iter().find(|o| o["name"] == name).unwrap_or_else(|| panic!("no {kind} {name} in {doc:#}"))
}

fn chain_rules(doc: &Value, chain: &str) -> Vec<Value> {
    objects(doc, "add", "rule").into_iter().filter(|r| r["chain"] == chain).map(|r| r["expr"].clone()).collect()
}

#[test]
fn pods_with_the_same_allow_list_share_a_chain() {
    let peers = vec![IpRange::host(ip("10.244.1.5")), IpRange::host(ip("10.244.1.6"))];
    let rules = PolicyRules {
        ingress: vec![
            PodPolicy { pod: ip("10.244.0.2"), allow: vec![allow(Some(peers.clone()), Some(vec![tcp(8080, 8080)]))] },
            // The same, written differently (unmerged, reordered): same chain.
            PodPolicy { pod: ip("10.244.0.3"), allow: vec![allow(Some(vec![peers[1], peers[0]]), Some(vec![tcp(8080, 8080), tcp(8080, 8080)]))] },
            // Deny all.
            PodPolicy { pod: ip("10.244.0.4"), allow: vec![] },
        ],
        egress: vec![PodPolicy { pod: ip("10.244.0.2"), allow: vec![allow(None, None), allow(Some(peers.clone()), None)] }],
    };
    let doc = render(&rules, "tmn0-policy");
    let cmds = doc["nftables"].as_array().expect("commands");
    assert_eq!(cmds[0], json!({"add": {"table": {"family": "inet", "name": "tmn0-policy"}}}));
    assert_eq!(cmds[1], json!({"delete": {"table": {"family": "inet", "name": "tmn0-policy"}}}));
    let ingress = named(&doc, "map", "ingress");
    assert_eq!(
        ingress["elem"],
        json!([
            ["10.244.0.2", {"jump": {"target": "ingress-0"}}],
            ["10.244.0.3", {"jump": {"target": "ingress-0"}}],
            ["10.244.0.4", {"jump": {"target": "ingress-1"}}],
        ])
    );
    // One peer set for the two pods, merged into one range; one port set.
    assert_eq!(named(&doc, "set", "peers-0")["elem"], json!([{"range": ["10.244.1.5", "10.244.1.6"]}]));
    assert_eq!(named(&doc, "set", "ports-0")["elem"], json!([{"concat": ["tcp", 8080]}]));
    let r = chain_rules(&doc, "ingress-0");
    assert_eq!(r.len(), 2, "{r:#?}");
    assert_eq!(r[0][0]["match"]["left"], json!({"payload": {"protocol": "ip", "field": "saddr"}}));
    assert_eq!(r[0][0]["match"]["right"], "@peers-0");
    assert_eq!(r[0][1]["match"]["right"], "@ports-0");
    assert_eq!(r[0][2], json!({"return": null}));
    assert_eq!(r[1], json!([{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]));
    // Deny all: only the refusal.
    assert_eq!(chain_rules(&doc, "ingress-1"), vec![json!([{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}])]);
    // Allow all makes the other rule moot: a chain that only returns.
    assert_eq!(chain_rules(&doc, "egress-0"), vec![json!([{"return": null}])]);
    // Every isolated pod may reach itself (through a Service).
    let selves = &named(&doc, "set", "self")["elem"];
    assert_eq!(selves.as_array().map(Vec::len), Some(3), "{selves}");
    // The hook chain: conntrack first, then the two maps.
    let fwd = chain_rules(&doc, "forward");
    assert_eq!(fwd.len(), 4);
    assert_eq!(fwd[0][0]["match"]["right"], json!(["established", "related"]));
    assert_eq!(fwd[2][0]["vmap"]["data"], "@ingress");
    assert_eq!(fwd[3][0]["vmap"]["data"], "@egress");
    // Chains come before the maps that jump to them (nft resolves jumps when adding).
    let pos = |kind: &str, name: &str| cmds.iter().position(|c| c["add"][kind]["name"] == name).expect("present");
    assert!(pos("chain", "ingress-1") < pos("map", "ingress"));
}

#[test]
fn egress_rules_match_destinations_and_drop_what_allows_nothing() {
    let rules = PolicyRules {
        ingress: vec![],
        egress: vec![PodPolicy {
            pod: ip("10.244.0.2"),
            allow: vec![
                allow(Some(subtract(net("10.0.0.0/8"), &[net("10.244.0.0/16")])), None),
                allow(None, Some(vec![PortRange { protocol: Protocol::Udp, first: 53, last: 53 }, tcp(9000, 9100), tcp(9050, 9200)])),
                Allow::Endpoints(vec![(ip("10.244.1.9"), Protocol::Tcp, 8080)]),
                // Peers that matched no pod, a named port no pod has: nothing allowed.
                allow(Some(vec![]), None),
                allow(None, Some(vec![])),
                Allow::Endpoints(vec![]),
            ],
        }],
    };
    let doc = render(&rules, "t");
    let r = chain_rules(&doc, "egress-0");
    assert_eq!(r.len(), 4, "{r:#?}");
    // Canonical order: any-peer rules, then peer rules, then destinations.
    assert_eq!(r[0][0]["match"]["right"], "@ports-0");
    assert_eq!(r[1][0]["match"]["left"], json!({"payload": {"protocol": "ip", "field": "daddr"}}));
    assert_eq!(r[2][0]["match"]["right"], "@dests-0");
    assert_eq!(named(&doc, "set", "peers-0")["elem"], json!([{"range": ["10.0.0.0", "10.243.255.255"]}, {"range": ["10.245.0.0", "10.255.255.255"]}]));
    assert_eq!(named(&doc, "set", "ports-0")["elem"], json!([{"concat": ["tcp", {"range": [9000, 9200]}]}, {"concat": ["udp", 53]}]));
    assert_eq!(named(&doc, "set", "dests-0")["elem"], json!([{"concat": ["10.244.1.9", "tcp", 8080]}]));
    assert_eq!(r[3], json!([{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]));
    assert!(named(&doc, "map", "ingress").get("elem").is_none());
}
