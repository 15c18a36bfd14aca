//! Probes and lifecycle hooks. One prober task per probe of a running container, as
//! upstream's prober workers: it waits `initialDelaySeconds`, probes every `periodSeconds`
//! within `timeoutSeconds`, and flips the container's result only after
//! `successThreshold` / `failureThreshold` consecutive outcomes. Results wake the pod worker,
//! which turns them into readiness, `started`, or a restart.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, GRPCAction, HTTPGetAction, LifecycleHandler, Pod, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use timonier_runtime::shim::{ExecStdio, ShimClient};

use timonier_client::EventType::Warning;
use crate::runtime::NodeRuntime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// The latest settled result of each probe, by (container name, kind).
#[derive(Default)]
pub struct Results {
    map: Mutex<HashMap<(String, Kind), bool>>,
    pub changed: Notify,
}

impl Results {
    pub fn get(&self, container: &str, kind: Kind) -> Option<bool> {
        self.map.lock().ok().and_then(|m| m.get(&(container.to_string(), kind)).copied())
    }

    fn set(&self, container: &str, kind: Kind, ok: bool) {
        let changed = self.map.lock().map(|mut m| m.insert((container.to_string(), kind), ok) != Some(ok)).unwrap_or(false);
        if changed {
            self.changed.notify_one();
        }
    }

    /// Forgets a container's results (its run ended).
    pub fn clear(&self, container: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|(c, _), _| c != container);
        }
    }
}

/// What a probe or hook does.
enum Action {
    Exec(Vec<String>),
    Http { host: String, port: u16, path: String, scheme: String, headers: Vec<(String, String)> },
    Tcp { host: String, port: u16 },
    Grpc { host: String, port: u16, service: String },
    Sleep(i64),
}

fn port_of(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok())
            .ok_or_else(|| format!("couldn't find port: {name} in container {}", c.name)),
    }
}

fn action(exec: Option<&ExecAction>, http: Option<&HTTPGetAction>, tcp: Option<&TCPSocketAction>, sleep: Option<i64>, grpc: Option<&GRPCAction>, c: &Container, pod_ip: &str) -> Result<Action, String> {
    if let Some(e) = exec {
        return Ok(Action::Exec(e.command.clone().unwrap_or_default()));
    }
    if let Some(h) = http {
        return Ok(Action::Http {
            host: h.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_string()),
            port: port_of(&h.port, c)?,
            path: h.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into()),
            scheme: h.scheme.clone().unwrap_or_else(|| "HTTP".into()),
            headers: h.http_headers.iter().flatten().map(|x| (x.name.clone(), x.value.clone())).collect(),
        });
    }
    if let Some(t) = tcp {
        return Ok(Action::Tcp { host: t.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_string()), port: port_of(&t.port, c)? });
    }
    if let Some(s) = sleep {
        return Ok(Action::Sleep(s));
    }
    if let Some(g) = grpc {
        let port = u16::try_from(g.port).map_err(|_| format!("invalid port {}", g.port))?;
        return Ok(Action::Grpc { host: pod_ip.to_string(), port, service: g.service.clone().unwrap_or_default() });
    }
    Err("no handler given".into())
}

/// Where actions run: the container (exec) and the pod's address (http, tcp, grpc).
pub struct Target {
    pub shim: ShimClient,
    pub container_id: String,
    pub pod_ip: String,
    pub container: Container,
}

/// Runs an action; `Err(message)` says why it failed, in upstream's words.
async fn perform(a: &Action, t: &Target, timeout: Duration) -> Result<(), String> {
    match a {
        Action::Exec(cmd) => exec(t, cmd, timeout).await,
        Action::Http { host, port, path, scheme, headers } => {
            let tls = scheme.eq_ignore_ascii_case("HTTPS");
            let url = format!("{}://{host}:{port}{path}", if tls { "https" } else { "http" });
            match tokio::time::timeout(timeout, http_get(host, *port, path, headers, tls)).await {
                Err(_) => Err(format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")),
                Ok(Err(e)) => Err(format!("Get \"{url}\": {e}")),
                Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
                Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
            }
        }
        Action::Tcp { host, port } => match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), *port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: connect: {}", e.to_string().to_lowercase().split(" (os error").next().unwrap_or(""))),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        },
        Action::Grpc { host, port, service } => crate::grpc_probe::check(host, *port, service, timeout).await,
        Action::Sleep(s) => {
            tokio::time::sleep(Duration::from_secs((*s).max(0) as u64)).await;
            Ok(())
        }
    }
}

/// Accepts any server certificate: HTTPS probes skip verification, as upstream's do.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, m: &[u8], c: &rustls::pki_types::CertificateDer<'_>, d: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &rustls::pki_types::CertificateDer<'_>, d: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn http_get(host: &str, port: u16, path: &str, headers: &[(String, String)], tls: bool) -> std::io::Result<u16> {
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    if tls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
        let s = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await?;
        return http_exchange(s, host, port, path, headers).await;
    }
    http_exchange(tcp, host, port, path, headers).await
}

async fn http_exchange(mut s: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin, host: &str, port: u16, path: &str, headers: &[(String, String)]) -> std::io::Result<u16> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < 12 {
        let n = s.read(&mut buf[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| std::io::Error::other("malformed HTTP response"))
}

async fn exec(t: &Target, cmd: &[String], timeout: Duration) -> Result<(), String> {
    let (r, w) = nix::unistd::pipe().map_err(|e| e.to_string())?;
    let w2: OwnedFd = w.try_clone().map_err(|e| e.to_string())?;
    let proc = t
        .shim
        .exec(&t.container_id, cmd.to_vec(), vec![], None, ExecStdio::Pipes { stdin: None, stdout: Some(w), stderr: Some(w2) })
        .await
        .map_err(|e| e.to_string())?;
    let mut out = tokio::fs::File::from_std(std::fs::File::from(r));
    let reader = async move {
        let mut buf = Vec::new();
        let _ = (&mut out).take(10 * 1024).read_to_end(&mut buf).await;
        buf
    };
    match tokio::time::timeout(timeout, async { tokio::join!(proc.wait(), reader) }).await {
        Err(_) => Err(format!("command {cmd:?} timed out")),
        Ok((Ok(0), _)) => Ok(()),
        Ok((Ok(_), output)) => Err(String::from_utf8_lossy(&output).trim_end().to_string()),
        Ok((Err(e), _)) => Err(e.to_string()),
    }
}

/// Runs a lifecycle hook (postStart, preStop) to completion.
pub async fn run_hook(h: &LifecycleHandler, t: &Target, timeout: Duration) -> Result<(), String> {
    let a = action(h.exec.as_ref(), h.http_get.as_ref(), h.tcp_socket.as_ref(), h.sleep.as_ref().map(|s| s.seconds), None, &t.container, &t.pod_ip)?;
    perform(&a, t, timeout).await
}

/// The probes of a container, by kind.
pub fn probes_of(c: &Container) -> Vec<(Kind, Probe)> {
    let mut out = vec![];
    if let Some(p) = &c.startup_probe {
        out.push((Kind::Startup, p.clone()));
    }
    if let Some(p) = &c.liveness_probe {
        out.push((Kind::Liveness, p.clone()));
    }
    if let Some(p) = &c.readiness_probe {
        out.push((Kind::Readiness, p.clone()));
    }
    out
}

/// Starts the prober of one probe of a running container; abort the handle when the run ends.
pub fn spawn(node: Arc<NodeRuntime>, pod: Arc<Pod>, kind: Kind, probe: Probe, target: Target, results: Arc<Results>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let c = target.container.name.clone();
        let a = match action(probe.exec.as_ref(), probe.http_get.as_ref(), probe.tcp_socket.as_ref(), None, probe.grpc.as_ref(), &target.container, &target.pod_ip) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(container = %c, error = %e, "invalid probe");
                return;
            }
        };
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        let success_needed = probe.success_threshold.unwrap_or(1).max(1);
        let failure_needed = probe.failure_threshold.unwrap_or(3).max(1);
        tokio::time::sleep(Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64)).await;
        let (mut ok_run, mut fail_run) = (0, 0);
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            // A startup probe stops once it succeeded; liveness and readiness wait for it.
            if kind != Kind::Startup && probes_of(&target.container).iter().any(|(k, _)| *k == Kind::Startup) && results.get(&c, Kind::Startup) != Some(true) {
                continue;
            }
            match perform(&a, &target, timeout).await {
                Ok(()) => {
                    fail_run = 0;
                    ok_run += 1;
                    if ok_run >= success_needed {
                        results.set(&c, kind, true);
                        if kind == Kind::Startup {
                            return;
                        }
                    }
                }
                Err(msg) => {
                    ok_run = 0;
                    fail_run += 1;
                    let fp = format!("spec.containers{{{c}}}");
                    node.recorder.pod_event(&pod, Some(fp), Warning, "Unhealthy", &format!("{} probe failed: {msg}", kind.label())).await;
                    if fail_run >= failure_needed {
                        results.set(&c, kind, false);
                        if kind != Kind::Readiness {
                            return;
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot HTTPS server with a self-signed certificate, answering `status`.
    async fn https_server(status: u16) -> u16 {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut s = acceptor.accept(tcp).await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
            let _ = s.shutdown().await;
        });
        port
    }

    #[tokio::test]
    async fn https_probes_skip_verification_and_read_the_status() {
        let port = https_server(204).await;
        assert_eq!(http_get("127.0.0.1", port, "/healthz", &[], true).await.unwrap(), 204);
        let port = https_server(503).await;
        assert_eq!(http_get("127.0.0.1", port, "/", &[("X-Probe".into(), "1".into())], true).await.unwrap(), 503);
    }
}
