//! A Docker registry token server (the "Bearer" flow of the distribution spec) for tests:
//! checks HTTP basic credentials and issues ES256 JWTs with the `access` the client asked
//! for, signed by a key whose self-signed certificate the registry trusts
//! (`auth.token.rootcertbundle`) and which each token carries in its `x5c` header.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

/// The registry's `auth.token.service`, which tokens carry as their audience.
pub const SERVICE: &str = "timonier-test-registry";
/// The registry's `auth.token.issuer`.
pub const ISSUER: &str = "timonier-test-issuer";

/// A running token server; stopped (its thread joined) when dropped.
pub struct TokenServer {
    addr: String,
    /// The certificate of the signing key, for the registry's `rootcertbundle`.
    pub root_cert: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Issuer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    user: String,
    password: String,
}

impl TokenServer {
    /// Starts a token server on a free loopback port for one user, writing its certificate
    /// into `dir`.
    pub fn start(user: &str, password: &str, dir: &Path) -> Result<TokenServer, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|e| format!("key: {e}"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).map_err(|e| format!("key: {e}"))?;
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec());
        let rc_key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| format!("key: {e}"))?;
        let cert = rcgen::CertificateParams::new(vec![ISSUER.to_string()])
            .and_then(|p| p.self_signed(&rc_key))
            .map_err(|e| format!("certificate: {e}"))?;
        let root_cert = dir.join("token-root.crt");
        std::fs::write(&root_cert, cert.pem()).map_err(|e| e.to_string())?;
        let issuer = Issuer { key, cert_der: cert.der().to_vec(), user: user.into(), password: password.into() };
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("token server: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(c) = conn {
                        let _ = issuer.serve(c);
                    }
                }
            })
        };
        Ok(TokenServer { addr, root_cert, stop, thread: Some(thread) })
    }

    /// The realm the registry sends clients to.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Issuer {
    fn serve(&self, mut c: TcpStream) -> std::io::Result<()> {
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            let n = c.read(&mut b)?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&b[..n]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let target = head.split_whitespace().nth(1).unwrap_or("");
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let scopes: Vec<String> = form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == "scope").map(|(_, v)| v.into_owned()).collect();
        let authorized = head.lines().filter_map(|l| l.split_once(':')).any(|(k, v)| {
            k.eq_ignore_ascii_case("authorization")
                && v.trim().strip_prefix("Basic ").and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()).is_some_and(|d| d == format!("{}:{}", self.user, self.password).as_bytes())
        });
        let (status, body) = match authorized {
            true => ("200 OK", json!({"token": self.token(&scopes)?, "expires_in": 300}).to_string()),
            false => ("401 Unauthorized", json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}).to_string()),
        };
        write!(c, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    }

    /// A JWT granting what each `type:name:actions` scope asks for.
    fn token(&self, scopes: &[String]) -> std::io::Result<String> {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)]});
        let claims = json!({"iss": ISSUER, "sub": self.user, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", scopes.len()), "access": access});
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let sig = self.key.sign(&SystemRandom::new(), input.as_bytes()).map_err(|_| std::io::Error::other("signing failed"))?;
        Ok(format!("{input}.{}", b64(sig.as_ref())))
    }
}
