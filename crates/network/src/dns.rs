//! Cluster DNS, served by each node for its own pods (the job CoreDNS does elsewhere): UDP on
//! the bridge's gateway address, where the Service proxy sends the `kube-dns` ClusterIP.
//!
//! Authoritative for `cluster.local`: `<service>.<namespace>.svc.cluster.local` answers the
//! Service's ClusterIP (a headless Service: its ready endpoints), with CoreDNS's TTL of 5 s;
//! other names of the zone are NXDOMAIN. Names outside it are relayed to the node's own
//! resolvers, as CoreDNS's `forward . /etc/resolv.conf`. Only A questions get answers;
//! other types of a known name get an empty NOERROR, as from CoreDNS for a Service without
//! IPv6.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::UdpSocket;

/// The cluster's DNS domain.
pub const ZONE: &str = "cluster.local";
const TTL: u32 = 5;
const TYPE_A: u16 = 1;

/// The names the node answers for, and where it forwards the rest.
#[derive(Clone, Default)]
pub struct ClusterDns {
    records: Arc<RwLock<HashMap<String, Vec<Ipv4Addr>>>>,
}

impl ClusterDns {
    /// Replaces the records: fully qualified names (no trailing dot) → addresses.
    pub fn set_records(&self, records: HashMap<String, Vec<Ipv4Addr>>) {
        if let Ok(mut r) = self.records.write() {
            *r = records;
        }
    }

    /// Serves DNS on `addr` (UDP) until the task is dropped; `upstreams` get the names
    /// outside the zone.
    pub async fn serve(self, addr: SocketAddr, upstreams: Vec<SocketAddr>) -> std::io::Result<()> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        tracing::info!(%addr, "cluster DNS listening");
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = match socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "dns receive");
                    continue;
                }
            };
            let query = buf[..n].to_vec();
            match self.answer(&query) {
                Answer::Reply(reply) => {
                    let _ = socket.send_to(&reply, from).await;
                }
                Answer::Forward => {
                    let (socket, upstreams) = (socket.clone(), upstreams.clone());
                    tokio::spawn(async move {
                        if let Some(reply) = forward(&query, &upstreams).await {
                            let _ = socket.send_to(&reply, from).await;
                        }
                    });
                }
                Answer::Drop => {}
            }
        }
    }

    fn answer(&self, query: &[u8]) -> Answer {
        let Some(q) = Question::parse(query) else { return Answer::Drop };
        if q.opcode != 0 {
            return Answer::Reply(reply(query, &q, 4, &[], false)); // NOTIMP
        }
        let name = q.name.to_ascii_lowercase();
        if name != ZONE && !name.ends_with(&format!(".{ZONE}")) {
            return Answer::Forward;
        }
        let records = self.records.read().map(|r| r.get(&name).cloned()).unwrap_or(None);
        match records {
            None => Answer::Reply(reply(query, &q, 3, &[], true)), // NXDOMAIN
            Some(ips) if q.qtype == TYPE_A => Answer::Reply(reply(query, &q, 0, &ips, true)),
            Some(_) => Answer::Reply(reply(query, &q, 0, &[], true)),
        }
    }
}

enum Answer {
    Reply(Vec<u8>),
    Forward,
    Drop,
}

/// The first question of a query.
struct Question {
    name: String,
    qtype: u16,
    opcode: u8,
    /// Where the question section ends (answers follow it in the reply).
    end: usize,
}

impl Question {
    fn parse(msg: &[u8]) -> Option<Question> {
        if msg.len() < 12 || msg[2] & 0x80 != 0 || u16::from_be_bytes([msg[4], msg[5]]) == 0 {
            return None; // too short, a response, or no question
        }
        let opcode = (msg[2] >> 3) & 0x0f;
        let mut labels = vec![];
        let mut i = 12;
        loop {
            let len = *msg.get(i)? as usize;
            i += 1;
            if len == 0 {
                break;
            }
            if len > 63 {
                return None; // compression is not used in questions
            }
            labels.push(String::from_utf8_lossy(msg.get(i..i + len)?).into_owned());
            i += len;
        }
        let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
        msg.get(i + 3)?;
        Some(Question { name: labels.join("."), qtype, opcode, end: i + 4 })
    }
}

/// A reply to `query` with `rcode` and one A record per address.
fn reply(query: &[u8], q: &Question, rcode: u8, ips: &[Ipv4Addr], authoritative: bool) -> Vec<u8> {
    let mut r = Vec::with_capacity(q.end + ips.len() * 16);
    r.extend_from_slice(&query[..2]); // id
    let rd = query[2] & 0x01;
    r.push(0x80 | (q.opcode << 3) | if authoritative { 0x04 } else { 0 } | rd);
    r.push(0x80 | rcode); // RA, rcode
    r.extend_from_slice(&1u16.to_be_bytes()); // one question
    r.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]); // no authority or additional records
    r.extend_from_slice(&query[12..q.end]);
    for ip in ips {
        r.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        r.extend_from_slice(&TYPE_A.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes()); // IN
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(&ip.octets());
    }
    r
}

/// Relays a query to the first upstream that answers within 2 s.
async fn forward(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let Ok(s) = UdpSocket::bind(if up.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).await else { continue };
        if s.send_to(query, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf)).await {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

/// The node's resolvers (`nameserver` lines of /etc/resolv.conf), for names outside the zone.
pub fn host_resolvers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn answers_services_and_refuses_unknown_names() {
        let dns = ClusterDns::default();
        let mut r = HashMap::new();
        r.insert("web.default.svc.cluster.local".to_string(), vec![Ipv4Addr::new(10, 96, 0, 7)]);
        dns.set_records(r);
        let Answer::Reply(a) = dns.answer(&query("Web.default.svc.cluster.local", 1)) else { panic!() };
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
        assert_eq!(&a[a.len() - 4..], &[10, 96, 0, 7]);
        let Answer::Reply(a) = dns.answer(&query("nope.default.svc.cluster.local", 1)) else { panic!() };
        assert_eq!(a[3] & 0x0f, 3, "NXDOMAIN");
        let Answer::Reply(a) = dns.answer(&query("web.default.svc.cluster.local", 28)) else { panic!() };
        assert_eq!((a[3] & 0x0f, u16::from_be_bytes([a[6], a[7]])), (0, 0), "AAAA: empty NOERROR");
        assert!(matches!(dns.answer(&query("example.org", 1)), Answer::Forward));
        assert!(matches!(dns.answer(&[0u8; 5]), Answer::Drop));
    }
}
