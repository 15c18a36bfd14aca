//! The node's client identity: obtained once with bootstrap credentials, kept as the kubelet
//! keeps `kubelet.conf` (a kubeconfig naming the CA and the current certificate files), and
//! renewed before it expires through a request made with the identity itself (approved as
//! `selfnodeclient`). The API client every part of the agent shares sends each request
//! through the client of the current certificate, so a renewal needs no restart.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;

use super::csr::{request_certificate, Request};
use super::{write_private, KeyedCert, Paths};
use crate::{Error, Result};

/// How long a node waits for its client certificate to be approved and signed.
const PATIENCE: Duration = Duration::from_secs(15 * 60);

/// A client certificate of this node, the CA and the server it is for.
#[derive(Clone)]
pub struct NodeIdentity {
    pub server: String,
    pub ca_pem: String,
    pub cert: KeyedCert,
    /// Where the agent's clients actually connect — its load balancer to the servers
    /// (`api_lb`); not kept: the kubeconfig names `server`.
    pub via: Option<String>,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A client of `server` trusting `ca_pem` and presenting `cert`.
pub fn client_with_cert(server: &str, ca_pem: &str, cert: &KeyedCert) -> Result<kube::Client> {
    let mut cfg = kube::Config::new(server.parse().map_err(|e| Error::Certificate(format!("{server:?} is not a URL: {e}")))?);
    cfg.root_cert = Some(crate::pem_certs(ca_pem));
    cfg.auth_info.client_certificate_data = Some(b64(&cert.cert_pem));
    cfg.auth_info.client_key_data = Some(b64(&cert.key_pem).into());
    kube::Client::try_from(cfg).map_err(|e| Error::Certificate(format!("cannot build an API client: {e}")))
}

impl NodeIdentity {
    /// The identity kept in `data_dir`, if there is one.
    pub fn load(data_dir: &Path) -> Option<NodeIdentity> {
        let paths = Paths::new(data_dir);
        let text = std::fs::read_to_string(&paths.kubeconfig).ok()?;
        let kc = kube::config::Kubeconfig::from_yaml(&text).ok()?;
        let server = kc.clusters.first()?.cluster.as_ref()?.server.clone()?;
        let ca_pem = std::fs::read_to_string(&paths.ca).ok()?;
        let cert = KeyedCert::load(&paths.client)?;
        Some(NodeIdentity { server, ca_pem, cert, via: None })
    }

    /// Keeps it in `data_dir`: the CA, the certificate file and a kubeconfig naming both
    /// (usable by kubectl too).
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let paths = Paths::new(data_dir);
        write_private(&paths.ca, &self.ca_pem)?;
        self.cert.save(&paths.client)?;
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: default-cluster\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: default-auth\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: default-context\n  context:\n    cluster: default-cluster\n    user: default-auth\n    namespace: default\ncurrent-context: default-context\npreferences: {{}}\n",
            self.server,
            paths.ca.display(),
            paths.client.display(),
            paths.client.display()
        );
        write_private(&paths.kubeconfig, &kubeconfig)
    }

    /// Whether the certificate can still be used (it is not expired).
    pub fn usable(&self) -> bool {
        self.cert.validity().is_some_and(|v| !v.expired())
    }

    /// Asks for this node's client certificate with bootstrap credentials (`bootstrap`, a
    /// client of `server` trusting `ca_pem`) and keeps the identity in `data_dir`.
    pub async fn bootstrap(bootstrap: &kube::Client, server: &str, ca_pem: &str, node: &str, data_dir: &Path) -> Result<NodeIdentity> {
        let cert = request_certificate(bootstrap, &Request::client(node, true), PATIENCE).await?;
        let id = NodeIdentity { server: server.to_string(), ca_pem: ca_pem.to_string(), cert, via: None };
        id.save(data_dir)?;
        tracing::info!(node, "node client certificate issued; identity kept for restarts");
        Ok(id)
    }

    pub fn client(&self) -> Result<kube::Client> {
        client_with_cert(self.via.as_deref().unwrap_or(&self.server), &self.ca_pem, &self.cert)
    }
}

/// The shared API client whose certificate can change: a `kube::Client` over a service that
/// forwards each request to the client of the current certificate.
#[derive(Clone)]
pub struct RotatingClient {
    current: Arc<RwLock<kube::Client>>,
}

impl RotatingClient {
    /// The handle, and the client to hand out.
    pub fn new(inner: kube::Client) -> (RotatingClient, kube::Client) {
        let handle = RotatingClient { current: Arc::new(RwLock::new(inner)) };
        let client = kube::Client::new(handle.clone(), "default");
        (handle, client)
    }

    /// New requests use `inner`; those under way (watches) finish on the old one.
    pub fn replace(&self, inner: kube::Client) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = inner;
    }
}

impl tower_service::Service<http::Request<kube::client::Body>> for RotatingClient {
    type Response = http::Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let client = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        Box::pin(async move { client.send(req).await })
    }
}

/// Renews the node's client certificate at its rotation deadline, for as long as the agent
/// runs: a new request made with the current identity, the new certificate kept in
/// `data_dir` and used from then on.
pub async fn rotate(mut identity: NodeIdentity, handle: RotatingClient, client: kube::Client, node: String, data_dir: std::path::PathBuf) {
    loop {
        let wait = identity.cert.validity().map(|v| v.until_rotation()).unwrap_or(Duration::from_secs(60));
        // Re-checked at least hourly: a clock jump or a certificate replaced by hand is seen.
        tokio::time::sleep(wait.min(Duration::from_secs(3600))).await;
        if identity.cert.validity().is_some_and(|v| v.until_rotation() > Duration::ZERO) {
            continue;
        }
        tracing::info!(node = %node, "renewing the node's client certificate");
        let renewed = match request_certificate(&client, &Request::client(&node, false), PATIENCE).await {
            Ok(cert) => NodeIdentity { cert, ..identity.clone() },
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the node's client certificate; retrying in 30 s");
                tokio::time::sleep(Duration::from_secs(30)).await;
                continue;
            }
        };
        match renewed.save(&data_dir).and_then(|()| renewed.client()) {
            Ok(c) => {
                handle.replace(c);
                identity = renewed;
                tracing::info!(node = %node, "node client certificate renewed");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot use the renewed client certificate; retrying in 30 s");
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    }
}
