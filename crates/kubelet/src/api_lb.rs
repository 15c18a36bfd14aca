//! The agent's load balancer to the API servers, as k3s' agent runs one: a TCP proxy on
//! loopback that every API client of the agent goes through, forwarding each connection to one
//! server of the cluster — the last that answered, else the next that does. The agent learns the
//! servers from the `kubernetes` Service's endpoints (every live server, as endpoint_reconciler.rs
//! in the API server writes them), watched and kept in the data directory for the next start, so
//! when its server dies the next connection — a watch re-established, a Lease renewal — reaches
//! another and no pod is touched. TLS passes through untouched: every server's serving
//! certificate names 127.0.0.1 and is signed by the one cluster CA.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Endpoints;
use tokio::net::{TcpListener, TcpStream};

use crate::{Error, Result};

/// How long a server may take to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

struct Servers {
    /// `host:port`, the server the agent was given first (kept even when it is not listed).
    list: Vec<String>,
    /// The one new connections go to first.
    preferred: usize,
}

/// The proxy's address and the servers it knows.
#[derive(Clone)]
pub struct ApiLoadBalancer {
    addr: SocketAddr,
    servers: Arc<RwLock<Servers>>,
}

/// `host:port` of an `https://` URL.
fn authority(url: &str) -> Result<String> {
    let uri: http::Uri = url.parse().map_err(|e| Error::Api(format!("{url:?} is not a URL: {e}")))?;
    let host = uri.host().ok_or_else(|| Error::Api(format!("{url:?} names no host")))?;
    Ok(format!("{host}:{}", uri.port_u16().unwrap_or(443)))
}

impl ApiLoadBalancer {
    /// Listens on a free loopback port and forwards to `server` (a URL) until it learns more.
    pub async fn start(server: &str) -> Result<ApiLoadBalancer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| Error::Api(format!("cannot listen on loopback for the API load balancer: {e}")))?;
        let addr = listener.local_addr().map_err(|e| Error::Api(e.to_string()))?;
        let lb = ApiLoadBalancer { addr, servers: Arc::new(RwLock::new(Servers { list: vec![authority(server)?], preferred: 0 })) };
        let me = lb.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((conn, _)) => {
                        let me = me.clone();
                        tokio::spawn(async move { me.forward(conn).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "API load balancer: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(lb)
    }

    /// The URL the agent's clients use.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The servers, in the order tried.
    pub fn servers(&self) -> Vec<String> {
        let s = self.servers.read().unwrap_or_else(|e| e.into_inner());
        (0..s.list.len()).map(|i| s.list[(s.preferred + i) % s.list.len()].clone()).collect()
    }

    async fn forward(&self, mut conn: TcpStream) {
        for server in self.servers() {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&server)).await {
                Ok(Ok(mut upstream)) => {
                    self.prefer(&server);
                    let _ = conn.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                    return;
                }
                Ok(Err(e)) => tracing::info!(server, error = %e, "API server unreachable; trying the next"),
                Err(_) => tracing::info!(server, "API server did not answer in time; trying the next"),
            }
        }
        tracing::warn!(servers = ?self.servers(), "no API server reachable");
    }

    fn prefer(&self, server: &str) {
        let mut s = self.servers.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = s.list.iter().position(|x| x == server) {
            if s.preferred != i {
                tracing::info!(server, "API load balancer: now using this server");
                s.preferred = i;
            }
        }
    }

    /// Replaces the known servers by `endpoints` (`host:port`), keeping the first one given
    /// and the one in use; whether the list changed.
    fn set(&self, endpoints: Vec<String>) -> bool {
        let mut s = self.servers.write().unwrap_or_else(|e| e.into_inner());
        let (first, current) = (s.list[0].clone(), s.list[s.preferred].clone());
        let mut list = vec![first];
        for e in endpoints.into_iter().chain([current.clone()]) {
            if !list.contains(&e) {
                list.push(e);
            }
        }
        s.preferred = list.iter().position(|x| *x == current).unwrap_or(0);
        if list == s.list {
            return false;
        }
        tracing::info!(servers = ?list, "API servers");
        s.list = list;
        true
    }

    /// Keeps the list of servers equal to the `kubernetes` Service's endpoints, watched
    /// through `client` (which goes through this proxy), so that a server that starts is known
    /// before the one in use can die; each change is kept in `state` for the next start.
    pub async fn follow_endpoints(self, client: kube::Client, state: PathBuf) {
        use futures::StreamExt;
        use kube::runtime::{watcher, WatchStreamExt};
        let api: kube::Api<Endpoints> = kube::Api::namespaced(client, "default");
        let events = watcher(api, watcher::Config::default().fields("metadata.name=kubernetes")).default_backoff().applied_objects();
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(ep) => {
                    let endpoints = endpoints_of(&ep);
                    if !endpoints.is_empty() && self.set(endpoints) {
                        let list = self.servers.read().unwrap_or_else(|e| e.into_inner()).list.join("\n");
                        if let Err(e) = std::fs::write(&state, list + "\n") {
                            tracing::debug!(error = %e, path = %state.display(), "cannot keep the API servers");
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "watching the kubernetes endpoints"),
            }
        }
    }

    /// Adds the servers kept in `state` by an earlier run.
    pub fn remember(&self, state: &std::path::Path) {
        if let Ok(text) = std::fs::read_to_string(state) {
            let kept: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
            let mut s = self.servers.write().unwrap_or_else(|e| e.into_inner());
            for k in kept {
                if !s.list.contains(&k) {
                    s.list.push(k);
                }
            }
        }
    }
}

/// `host:port` of every address of the `kubernetes` Endpoints.
fn endpoints_of(ep: &Endpoints) -> Vec<String> {
    let mut out = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let ports = subset.ports.as_deref().unwrap_or_default();
        let Some(port) = ports.iter().find(|p| p.name.as_deref() == Some("https")).or(ports.first()).map(|p| p.port) else { continue };
        for a in subset.addresses.iter().flatten() {
            let host = if a.ip.contains(':') { format!("[{}]", a.ip) } else { a.ip.clone() };
            out.push(format!("{host}:{port}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn learns_servers_and_keeps_the_first_and_current() {
        let lb = ApiLoadBalancer::start("https://10.0.0.1:6443").await.expect("start");
        assert_eq!(lb.servers(), ["10.0.0.1:6443"]);
        lb.set(vec!["10.0.0.2:6443".into(), "10.0.0.3:6443".into()]);
        assert_eq!(lb.servers(), ["10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:6443"]);
        lb.prefer("10.0.0.3:6443");
        assert_eq!(lb.servers(), ["10.0.0.3:6443", "10.0.0.1:6443", "10.0.0.2:6443"]);
        lb.set(vec!["10.0.0.2:6443".into()]);
        assert_eq!(lb.servers(), ["10.0.0.3:6443", "10.0.0.1:6443", "10.0.0.2:6443"]);
    }

    #[tokio::test]
    async fn forwards_to_the_next_server_that_answers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dead_addr = dead.local_addr().expect("addr");
        drop(dead);
        let live = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let live_addr = live.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut c, _) = live.accept().await.expect("accept");
            c.write_all(b"hello").await.expect("write");
        });
        let lb = ApiLoadBalancer::start(&format!("https://{dead_addr}")).await.expect("start");
        lb.set(vec![live_addr.to_string()]);
        let mut c = TcpStream::connect(lb.addr).await.expect("connect");
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hello");
        assert_eq!(lb.servers()[0], live_addr.to_string());
    }
}
