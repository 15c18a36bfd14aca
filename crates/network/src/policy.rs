//! NetworkPolicy enforcement on this node: what each policy-isolated pod here may receive
//! (ingress) and send (egress), as an nftables table of its own (`inet <bridge>-policy`),
//! replaced whole in one `nft -j` transaction whenever it changes.
//!
//! Where packets are judged: the `forward` hook only. Pod-to-pod traffic on the bridge goes
//! through it (`bridge-nf-call-iptables`), and so does everything routed between the pods and
//! other nodes or the outside. The node's own traffic to its pods (probes) leaves through
//! `output`, and what pods send to their node (cluster DNS on the gateway) arrives through
//! `input`: neither is filtered, as upstream says traffic to and from the pod's node is always
//! allowed. Service traffic is judged after the proxy's DNAT (prerouting), so on the pod's
//! address and target port, as upstream. Ingress is judged on the destination's node, egress
//! on the source's; replies pass by conntrack.
//!
//! Layout — the rule count depends on the number of distinct allow lists, not on pods or
//! peers, which live in sets:
//! ```text
//! table inet tmn0-policy {
//!   set self { ipv4_addr . ipv4_addr }            pod . pod: a pod can always reach itself
//!   map ingress { ipv4_addr : verdict }            isolated pod → jump ingress-N
//!   map egress  { ipv4_addr : verdict }            isolated pod → jump egress-N
//!   set peers-K { ipv4_addr; interval }            a rule's peers (pods, ipBlocks minus except)
//!   set ports-J { inet_proto . inet_service; interval }
//!   set dests-L { ipv4_addr . inet_proto . inet_service }   egress named ports, resolved
//!   chain ingress-N { ip saddr @peers-K meta l4proto . th dport @ports-J return; …; reject }
//!   chain forward { hook forward: ct state established,related accept;
//!                   ip saddr . ip daddr @self accept; ip daddr vmap @ingress; ip saddr vmap @egress }
//! }
//! ```
//! Pods with the same allow list share one chain (a Deployment's replicas, usually).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::cidr::Ipv4Net;
use crate::error::{Error, Result};

/// The transport protocols a NetworkPolicy port names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// `TCP`, `UDP` or `SCTP`, in any case.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// An inclusive range of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl IpRange {
    pub fn host(ip: Ipv4Addr) -> IpRange {
        IpRange { first: ip, last: ip }
    }

    pub fn net(net: Ipv4Net) -> IpRange {
        IpRange { first: net.network(), last: net.broadcast() }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.first <= ip && ip <= self.last
    }

    fn bounds(&self) -> (u32, u32) {
        (u32::from(self.first), u32::from(self.last))
    }

    fn from_bounds(first: u32, last: u32) -> IpRange {
        IpRange { first: Ipv4Addr::from(first), last: Ipv4Addr::from(last) }
    }
}

/// The union of `ranges` as sorted, disjoint, non-adjacent ranges — what an nftables interval
/// set accepts (it refuses overlapping elements).
pub fn merge_ranges(ranges: impl IntoIterator<Item = IpRange>) -> Vec<IpRange> {
    let mut v: Vec<(u32, u32)> = ranges.into_iter().map(|r| r.bounds()).filter(|(a, b)| a <= b).collect();
    v.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out.into_iter().map(|(a, b)| IpRange::from_bounds(a, b)).collect()
}

/// `block` without the addresses of `except` (an ipBlock's `cidr` and `except`).
pub fn subtract(block: IpRange, except: &[IpRange]) -> Vec<IpRange> {
    let mut out = vec![block.bounds()];
    for e in merge_ranges(except.iter().copied()) {
        let (ea, eb) = e.bounds();
        out = out
            .into_iter()
            .flat_map(|(a, b)| {
                let mut keep = Vec::with_capacity(2);
                if eb < a || ea > b {
                    keep.push((a, b));
                } else {
                    if ea > a {
                        keep.push((a, ea - 1));
                    }
                    if eb < b {
                        keep.push((eb + 1, b));
                    }
                }
                keep
            })
            .collect();
    }
    out.into_iter().map(|(a, b)| IpRange::from_bounds(a, b)).collect()
}

/// An inclusive range of ports of one protocol (`port` to `endPort`; one port when equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub protocol: Protocol,
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// Every port of `protocol` (a policy port with a protocol and no port).
    pub fn all(protocol: Protocol) -> PortRange {
        PortRange { protocol, first: 0, last: u16::MAX }
    }
}

fn merge_ports(ports: &[PortRange]) -> Vec<PortRange> {
    let mut v: Vec<PortRange> = ports.iter().copied().filter(|p| p.first <= p.last).collect();
    v.sort_unstable();
    let mut out: Vec<PortRange> = Vec::with_capacity(v.len());
    for p in v {
        match out.last_mut() {
            Some(last) if last.protocol == p.protocol && u32::from(p.first) <= u32::from(last.last) + 1 => last.last = last.last.max(p.last),
            _ => out.push(p),
        }
    }
    out
}

/// One thing an isolated pod may do: a rule of a policy, resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Allow {
    /// Traffic with a peer (the source for ingress, the destination for egress) in `peers`
    /// (`None`: any address) on `ports` (`None`: every protocol and port).
    Peers { peers: Option<Vec<IpRange>>, ports: Option<Vec<PortRange>> },
    /// Traffic to exactly these (address, protocol, port): egress rules with named ports,
    /// which each destination pod resolves to its own number.
    Endpoints(Vec<(Ipv4Addr, Protocol, u16)>),
}

impl Allow {
    /// The same allowance in canonical form (merged ranges, sorted), or `None` when it allows
    /// nothing at all (no peer or no port left).
    fn normalized(&self) -> Option<Allow> {
        match self {
            Allow::Peers { peers, ports } => {
                let peers = match peers {
                    Some(p) => Some(Some(merge_ranges(p.iter().copied())).filter(|p| !p.is_empty())?),
                    None => None,
                };
                let ports = match ports {
                    Some(p) => Some(Some(merge_ports(p)).filter(|p| !p.is_empty())?),
                    None => None,
                };
                Some(Allow::Peers { peers, ports })
            }
            Allow::Endpoints(e) => {
                let mut e = e.clone();
                e.sort_unstable();
                e.dedup();
                (!e.is_empty()).then_some(Allow::Endpoints(e))
            }
        }
    }
}

/// What one policy-isolated pod of this node may receive or send: the union of `allow`,
/// nothing else (empty: deny all).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodPolicy {
    pub pod: Ipv4Addr,
    pub allow: Vec<Allow>,
}

/// Every isolated pod of this node, per direction. Pods listed in neither are not isolated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRules {
    pub ingress: Vec<PodPolicy>,
    pub egress: Vec<PodPolicy>,
}

impl PolicyRules {
    pub fn is_empty(&self) -> bool {
        self.ingress.is_empty() && self.egress.is_empty()
    }
}

/// The policy table of the node whose bridge is `bridge`.
pub fn table_name(bridge: &str) -> String {
    format!("{bridge}-policy")
}

/// Gives each distinct value a number, in order of first appearance.
struct Interner<K: Ord> {
    ids: BTreeMap<K, usize>,
    order: Vec<K>,
}

impl<K: Ord + Clone> Interner<K> {
    fn new() -> Self {
        Interner { ids: BTreeMap::new(), order: Vec::new() }
    }

    fn id(&mut self, k: &K) -> usize {
        if let Some(i) = self.ids.get(k) {
            return *i;
        }
        let i = self.order.len();
        self.ids.insert(k.clone(), i);
        self.order.push(k.clone());
        i
    }
}

fn ip_elem(r: &IpRange) -> Value {
    if r.first == r.last {
        json!(r.first.to_string())
    } else {
        json!({"range": [r.first.to_string(), r.last.to_string()]})
    }
}

fn port_elem(p: &PortRange) -> Value {
    let port = if p.first == p.last { json!(p.first) } else { json!({"range": [p.first, p.last]}) };
    json!({"concat": [p.protocol.nft(), port]})
}

fn ip_field(field: &str) -> Value {
    json!({"payload": {"protocol": "ip", "field": field}})
}

fn l4_port() -> [Value; 2] {
    [json!({"meta": {"key": "l4proto"}}), json!({"payload": {"protocol": "th", "field": "dport"}})]
}

fn matches(left: Value, set: String) -> Value {
    json!({"match": {"op": "==", "left": left, "right": format!("@{set}")}})
}

/// The nft JSON commands replacing the table `table` with `rules` (one transaction: adding
/// then deleting the table makes the deletion valid whether or not it exists, so no packet
/// ever sees a half-written table).
pub fn render(rules: &PolicyRules, table: &str) -> Value {
    let t = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.insert("family".into(), json!("inet"));
            o.insert("table".into(), json!(table));
        }
        v
    };
    let mut peers: Interner<Vec<IpRange>> = Interner::new();
    let mut ports: Interner<Vec<PortRange>> = Interner::new();
    let mut dests: Interner<Vec<(Ipv4Addr, Protocol, u16)>> = Interner::new();
    let mut chains: Vec<Value> = Vec::new();
    let mut rules_out: Vec<Value> = Vec::new();
    let mut maps: Vec<Value> = Vec::new();
    let mut selves: Vec<Ipv4Addr> = Vec::new();
    for (dir, list, peer_field) in [("ingress", &rules.ingress, "saddr"), ("egress", &rules.egress, "daddr")] {
        let mut groups: Interner<Vec<Allow>> = Interner::new();
        let mut elems = Vec::new();
        for pod in list {
            let mut allow: Vec<Allow> = pod.allow.iter().filter_map(Allow::normalized).collect();
            allow.sort();
            allow.dedup();
            // Allowing everything makes the rest moot.
            if allow.contains(&Allow::Peers { peers: None, ports: None }) {
                allow = vec![Allow::Peers { peers: None, ports: None }];
            }
            let g = groups.id(&allow);
            elems.push(json!([pod.pod.to_string(), {"jump": {"target": format!("{dir}-{g}")}}]));
            selves.push(pod.pod);
        }
        for (g, allow) in groups.order.iter().enumerate() {
            let chain = format!("{dir}-{g}");
            chains.push(t(json!({"name": chain})));
            for a in allow {
                let mut expr = Vec::new();
                match a {
                    Allow::Peers { peers: p, ports: q } => {
                        if let Some(p) = p {
                            expr.push(matches(ip_field(peer_field), format!("peers-{}", peers.id(p))));
                        }
                        if let Some(q) = q {
                            expr.push(matches(json!({"concat": l4_port()}), format!("ports-{}", ports.id(q))));
                        }
                    }
                    Allow::Endpoints(e) => {
                        let [proto, port] = l4_port();
                        expr.push(matches(json!({"concat": [ip_field("daddr"), proto, port]}), format!("dests-{}", dests.id(e))));
                    }
                }
                expr.push(json!({"return": null}));
                rules_out.push(t(json!({"chain": chain, "expr": expr})));
            }
            let everything = allow.first() == Some(&Allow::Peers { peers: None, ports: None });
            if !everything {
                // A refusal the client sees at once (kube-router's choice), rather than a
                // silent drop that leaves it waiting for a timeout.
                rules_out.push(t(json!({"chain": chain, "expr": [{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]})));
            }
        }
        let mut map = json!({"name": dir, "type": "ipv4_addr", "map": "verdict"});
        if !elems.is_empty() {
            map["elem"] = Value::Array(elems);
        }
        maps.push(t(map));
    }
    selves.sort_unstable();
    selves.dedup();
    let mut sets: Vec<Value> = Vec::new();
    let with_elems = |mut set: Value, elems: Vec<Value>| {
        if !elems.is_empty() {
            set["elem"] = Value::Array(elems);
        }
        set
    };
    let self_elems = selves.iter().map(|ip| json!({"concat": [ip.to_string(), ip.to_string()]})).collect();
    sets.push(t(with_elems(json!({"name": "self", "type": ["ipv4_addr", "ipv4_addr"]}), self_elems)));
    for (i, p) in peers.order.iter().enumerate() {
        sets.push(t(with_elems(json!({"name": format!("peers-{i}"), "type": "ipv4_addr", "flags": ["interval"]}), p.iter().map(ip_elem).collect())));
    }
    for (i, p) in ports.order.iter().enumerate() {
        sets.push(t(with_elems(json!({"name": format!("ports-{i}"), "type": ["inet_proto", "inet_service"], "flags": ["interval"]}), p.iter().map(port_elem).collect())));
    }
    for (i, d) in dests.order.iter().enumerate() {
        let elems = d.iter().map(|(ip, proto, port)| json!({"concat": [ip.to_string(), proto.nft(), port]})).collect();
        sets.push(t(with_elems(json!({"name": format!("dests-{i}"), "type": ["ipv4_addr", "inet_proto", "inet_service"]}), elems)));
    }
    let forward = [
        json!([{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]),
        json!([matches(json!({"concat": [ip_field("saddr"), ip_field("daddr")]}), "self".into()), {"accept": null}]),
        json!([{"vmap": {"key": ip_field("daddr"), "data": "@ingress"}}]),
        json!([{"vmap": {"key": ip_field("saddr"), "data": "@egress"}}]),
    ];
    let mut cmds = vec![json!({"add": {"table": {"family": "inet", "name": table}}}), json!({"delete": {"table": {"family": "inet", "name": table}}}), json!({"add": {"table": {"family": "inet", "name": table}}})];
    cmds.extend(sets.into_iter().map(|s| json!({"add": {"set": s}})));
    // Chains before the maps whose verdicts jump to them.
    cmds.extend(chains.into_iter().map(|c| json!({"add": {"chain": c}})));
    cmds.push(json!({"add": {"chain": t(json!({"name": "forward", "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}))}}));
    cmds.extend(maps.into_iter().map(|m| json!({"add": {"map": m}})));
    cmds.extend(rules_out.into_iter().map(|r| json!({"add": {"rule": r}})));
    cmds.extend(forward.into_iter().map(|expr| json!({"add": {"rule": t(json!({"chain": "forward", "expr": expr}))}})));
    json!({"nftables": cmds})
}

/// Runs `nft -j -f -` on `doc`.
fn nft_json(doc: &Value) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Policy(format!("cannot run nft (install Debian's nftables): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(doc.to_string().as_bytes()).map_err(|e| Error::Policy(format!("nft: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Policy(format!("nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::Policy(format!("nft refused the rules: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

/// Makes the table exactly `rules`; no table at all when no pod is isolated, so that a
/// cluster without policies pays nothing per packet.
pub(crate) fn apply(rules: &PolicyRules, table: &str) -> Result<()> {
    if rules.is_empty() {
        return remove(table);
    }
    nft_json(&render(rules, table))
}

/// Removes the table, if any.
pub(crate) fn remove(table: &str) -> Result<()> {
    let t = json!({"family": "inet", "name": table});
    nft_json(&json!({"nftables": [{"add": {"table": t}}, {"delete": {"table": t}}]}))
}

/// Bridged pod-to-pod packets reach the `forward` hook only with `bridge-nf-call-iptables`
/// (per network namespace; 1 in a new one, but a host may have turned it off).
pub(crate) fn enable_bridge_netfilter() -> Result<()> {
    const PATH: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    match std::fs::read_to_string(PATH) {
        Ok(v) if v.trim() == "1" => Ok(()),
        Ok(_) => std::fs::write(PATH, "1").map_err(|e| Error::Policy(format!("{PATH}: {e}; pods on one node would bypass their policies"))),
        Err(e) => Err(Error::Policy(format!("{PATH}: {e}; the kernel needs CONFIG_BRIDGE_NETFILTER (or `modprobe br_netfilter`) for policies between pods of one node"))),
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
