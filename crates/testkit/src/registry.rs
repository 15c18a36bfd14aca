//! A real image registry for tests: Debian's `docker-registry` (distribution 2.8) on a free
//! loopback port, storing in a temporary directory, with its own config (never Debian's
//! default `/etc/docker/registry/config.yml`, which listens on every interface).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::token_auth::{self, TokenServer};
use crate::{free_port, ChildGuard};

/// A running `docker-registry`, killed (by PID) and its directory removed when dropped.
pub struct Registry {
    addr: String,
    tls: bool,
    _child: ChildGuard,
    /// Dropped after the registry: its token server, if it has one.
    _token_server: Option<TokenServer>,
    dir: tempfile::TempDir,
}

/// How a registry authenticates its clients.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    /// HTTP basic auth against an htpasswd file.
    Basic(&'a str, &'a str),
    /// The Bearer-token flow, with a token server that takes these basic credentials.
    Token(&'a str, &'a str),
}

const DEFAULT_BIN: &str = "/usr/bin/docker-registry";

/// The registry binary: `$DOCKER_REGISTRY_BIN`, else Debian's, installed with apt-get if
/// missing and we are root.
fn registry_bin() -> Result<PathBuf, String> {
    if let Ok(b) = std::env::var("DOCKER_REGISTRY_BIN") {
        return Ok(b.into());
    }
    if !Path::new(DEFAULT_BIN).exists() && unsafe { libc::geteuid() } == 0 {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-q", "docker-registry"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if Path::new(DEFAULT_BIN).exists() {
        Ok(DEFAULT_BIN.into())
    } else {
        Err(format!(
            "{DEFAULT_BIN} is missing: install Debian's docker-registry (scripts/install-deps)"
        ))
    }
}

/// Status code of `GET /v2/` on `addr`, if it answers.
fn v2_status(addr: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

impl Registry {
    /// Starts an open (no auth) registry.
    pub fn start() -> Result<Registry, String> {
        Self::launch(Auth::None, false, "127.0.0.1", None)
    }

    /// An open registry listening on `ip` (a test LAN's address, for hosts in other network
    /// namespaces) instead of loopback.
    pub fn start_on(ip: std::net::Ipv4Addr) -> Result<Registry, String> {
        Self::launch(Auth::None, false, &ip.to_string(), None)
    }

    /// An open registry on `ip:port` exactly (an address a configuration named before the
    /// registry could start).
    pub fn start_at(ip: std::net::Ipv4Addr, port: u16) -> Result<Registry, String> {
        Self::launch(Auth::None, false, &ip.to_string(), Some(port))
    }

    /// Starts an open registry that serves HTTPS with a self-signed certificate (for
    /// 127.0.0.1 and localhost).
    pub fn start_tls() -> Result<Registry, String> {
        Self::launch(Auth::None, true, "127.0.0.1", None)
    }

    /// Starts a registry requiring HTTP basic auth (htpasswd, bcrypt) for `username`.
    pub fn start_with_auth(username: &str, password: &str) -> Result<Registry, String> {
        Self::launch(Auth::Basic(username, password), false, "127.0.0.1", None)
    }

    /// Starts a registry using the Bearer-token flow: it sends clients to a token server (on
    /// another loopback port) that takes `username`'s basic credentials and issues JWTs.
    pub fn start_with_token_auth(username: &str, password: &str) -> Result<Registry, String> {
        Self::launch(Auth::Token(username, password), false, "127.0.0.1", None)
    }

    fn launch(auth: Auth, tls: bool, host: &str, fixed_port: Option<u16>) -> Result<Registry, String> {
        let bin = registry_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("timonier-registry-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).map_err(|e| e.to_string())?;
        let mut auth_yaml = String::new();
        let mut token_server = None;
        match auth {
            Auth::None => {}
            Auth::Basic(user, pass) => {
                let hash = bcrypt::hash_with_result(pass, 5)
                    .map_err(|e| format!("bcrypt: {e}"))?
                    .format_for_version(bcrypt::Version::TwoY);
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).map_err(|e| e.to_string())?;
                auth_yaml = format!(
                    "auth:\n  htpasswd:\n    realm: timonier-test\n    path: {}\n",
                    htpasswd.display()
                );
            }
            Auth::Token(user, pass) => {
                let server = TokenServer::start(user, pass, dir.path())?;
                auth_yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    server.realm(),
                    token_auth::SERVICE,
                    token_auth::ISSUER,
                    server.root_cert.display()
                );
                token_server = Some(server);
            }
        }
        let mut tls_yaml = String::new();
        if tls {
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).map_err(|e| format!("certificate: {e}"))?;
            let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
            std::fs::write(&crt, cert.cert.pem()).map_err(|e| e.to_string())?;
            std::fs::write(&key, cert.signing_key.serialize_pem()).map_err(|e| e.to_string())?;
            tls_yaml = format!("  tls:\n    certificate: {}\n    key: {}\n", crt.display(), key.display());
        }
        for _ in 0..5 {
            let port = fixed_port.unwrap_or_else(free_port);
            let addr = format!("{host}:{port}");
            let config = dir.path().join("config.yml");
            let yaml = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls_yaml}{auth_yaml}",
                storage.display()
            );
            std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
            let log = std::fs::File::create(dir.path().join("registry.log"))
                .map_err(|e| e.to_string())?;
            let child = Command::new(&bin)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
            let mut guard = ChildGuard(child);
            // Plain HTTP to a TLS port gets Go's "400 Bad Request": that is ready too.
            let want = match (tls, auth) {
                (true, _) => 400,
                (false, Auth::None) => 200,
                (false, _) => 401,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = guard.0.try_wait() {
                    break; // port taken, most likely: retry with another
                }
                if v2_status(&addr) == Some(want) {
                    return Ok(Registry {
                        addr,
                        tls,
                        _child: guard,
                        _token_server: token_server,
                        dir,
                    });
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            drop(guard);
        }
        let log = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        Err(format!("docker-registry did not start; its log:\n{log}"))
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://…` for [`Registry::start_tls`]; [`crate::images::push`]
    /// takes it too.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// The registry's directory (config, storage, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the registry logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}
