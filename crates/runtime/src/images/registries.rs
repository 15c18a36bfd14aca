//! Where images are pulled from and with which credentials: k3s' `registries.yaml`
//! (`mirrors` with `endpoint` lists and optional `rewrite` rules, `configs` with TLS and auth
//! per registry host), and the registry credentials of a `kubernetes.io/dockerconfigjson`
//! Secret (`imagePullSecrets`).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

/// A user name and password for a registry (HTTP basic, or exchanged for a bearer token).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The registries configuration, in the format of k3s' `/etc/rancher/k3s/registries.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistriesConfig {
    /// Registry host (`docker.io`, `gcr.io`, `*` for every registry) → mirrors to try first.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Endpoint host (`127.0.0.1:5000`, `registry.example.com`) → TLS and auth settings.
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

/// The mirrors of one registry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Mirror {
    /// Endpoint URLs (`http://127.0.0.1:5000`, `https://mirror.example.com`), tried in order
    /// before the registry itself. A URL without a scheme means https.
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regular expression → replacement (`$1`…) applied to the repository path when pulling
    /// from a mirror of this registry; the first rule that matches applies.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

/// Settings for one endpoint host.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistryConfig {
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Credentials used for this endpoint when the pull brings none.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
}

/// TLS settings of an endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsConfig {
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Credentials in `registries.yaml` (`username`/`password`, or `auth` = base64 `user:pass`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthConfig {
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// base64 of `username:password`.
    #[serde(default)]
    pub auth: Option<String>,
    /// A bearer token used as the password with an empty user (registry identity token).
    #[serde(default)]
    pub identitytoken: Option<String>,
}

impl AuthConfig {
    fn credentials(&self) -> Option<Credentials> {
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            return Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            });
        }
        if let Some(a) = &self.auth {
            return decode_basic(a);
        }
        None
    }
}

/// Why a registries file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    /// The file could not be read.
    #[error("cannot read registries config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape, or a rewrite is not a valid regex.
    #[error("invalid registries config {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// One place to try pulling from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    /// The repository path on this endpoint (after rewrites).
    pub repository: String,
    /// Whether certificate verification is off for this endpoint.
    pub insecure_skip_verify: bool,
    /// Credentials from `configs` for this host, if any.
    pub credentials: Option<Credentials>,
    /// Whether this is the registry itself rather than a mirror.
    pub upstream: bool,
}

impl Endpoint {
    /// The endpoint as a URL, for messages.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.plain_http { "http" } else { "https" },
            self.host
        )
    }
}

impl RegistriesConfig {
    /// Reads a `registries.yaml`. A missing file is an empty configuration.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, RegistriesError> {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(s) => Self::parse(&s).map_err(|reason| RegistriesError::Invalid {
                path: path.display().to_string(),
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(RegistriesError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Parses the YAML text of a `registries.yaml`, checking the rewrite rules.
    pub fn parse(yaml: &str) -> Result<Self, String> {
        if yaml.trim().is_empty() {
            return Ok(Self::default());
        }
        let c: Self = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        for (host, m) in &c.mirrors {
            for re in m.rewrite.keys() {
                regex::Regex::new(re).map_err(|e| format!("mirrors.{host}.rewrite {re:?}: {e}"))?;
            }
        }
        Ok(c)
    }

    /// The endpoints to try, in order, for `repository` of `registry` (as normalized:
    /// `docker.io`, `library/busybox`): the mirrors of that registry (or of `*`), then the
    /// registry itself.
    pub fn endpoints(&self, registry: &str, repository: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let mirror = self
            .mirrors
            .get(registry)
            .or_else(|| {
                (registry == "docker.io")
                    .then(|| self.mirrors.get("index.docker.io"))
                    .flatten()
            })
            .or_else(|| self.mirrors.get("*"));
        if let Some(m) = mirror {
            let repo = rewrite(&m.rewrite, repository);
            for url in &m.endpoint {
                // An explicit scheme decides; without one, loopback registries speak plain HTTP.
                let (plain, rest) = match url.split_once("://") {
                    Some((scheme, rest)) => (Some(scheme.eq_ignore_ascii_case("http")), rest),
                    None => (None, url.as_str()),
                };
                let host = rest.split('/').next().unwrap_or("").to_string();
                if host.is_empty() {
                    continue;
                }
                let plain = plain.unwrap_or_else(|| is_loopback(&host));
                out.push(self.endpoint(host, plain, repo.clone(), false));
            }
        }
        let host = registry.to_string();
        // A loopback registry is plain HTTP unless its `configs` entry has TLS settings.
        let plain = is_loopback(&host) && !self.configs.get(&host).is_some_and(|c| c.tls.insecure_skip_verify);
        let upstream = self.endpoint(host, plain, repository.to_string(), true);
        if !out
            .iter()
            .any(|e| e.host == upstream.host && e.repository == upstream.repository)
        {
            out.push(upstream);
        }
        out
    }

    fn endpoint(
        &self,
        host: String,
        plain_http: bool,
        repository: String,
        upstream: bool,
    ) -> Endpoint {
        let cfg = self.configs.get(&host).or_else(|| {
            (host == "docker.io")
                .then(|| self.configs.get("registry-1.docker.io"))
                .flatten()
        });
        Endpoint {
            insecure_skip_verify: cfg.is_some_and(|c| c.tls.insecure_skip_verify),
            credentials: cfg
                .and_then(|c| c.auth.as_ref())
                .and_then(|a| a.credentials()),
            host,
            plain_http,
            repository,
            upstream,
        }
    }
}

fn rewrite(rules: &BTreeMap<String, String>, repository: &str) -> String {
    for (re, to) in rules {
        if let Ok(re) = regex::Regex::new(re) {
            if re.is_match(repository) {
                return re.replace(repository, to.as_str()).into_owned();
            }
        }
    }
    repository.to_string()
}

/// Whether `host[:port]` is a loopback address (`localhost`, `127.x`, `[::1]`), where plain
/// HTTP is allowed as containerd does.
pub fn is_loopback(host: &str) -> bool {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn decode_basic(b64: &str) -> Option<Credentials> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    })
}

/// The host part of a `.dockerconfigjson` `auths` key: `https://index.docker.io/v1/` →
/// `docker.io`, `http://host:5000/v2` → `host:5000`.
fn auths_key_host(key: &str) -> String {
    let rest = key.split_once("://").map(|(_, r)| r).unwrap_or(key);
    let host = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// The credentials a `.dockerconfigjson` (the data of a `kubernetes.io/dockerconfigjson`
/// Secret) holds for `registry_host` (`docker.io`, `gcr.io`, `127.0.0.1:5000`): an `auths`
/// entry whose key names that host (`https://index.docker.io/v1/`, `docker.io`, `host:port`,
/// with or without scheme and path), with `auth` (base64 `user:pass`) or `username` and
/// `password`. Also accepts the legacy `.dockercfg` shape (the `auths` map at the top level).
pub fn credentials_from_dockerconfigjson(json: &[u8], registry_host: &str) -> Option<Credentials> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let auths = v.get("auths").unwrap_or(&v).as_object()?;
    let want = auths_key_host(registry_host);
    for (key, entry) in auths {
        if auths_key_host(key) != want {
            continue;
        }
        let s = |k: &str| {
            entry
                .get(k)
                .and_then(|x| x.as_str())
                .filter(|x| !x.is_empty())
        };
        if let (Some(u), Some(p)) = (s("username"), s("password")) {
            return Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            });
        }
        if let Some(c) = s("auth").and_then(decode_basic) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k3s_registries_yaml() {
        let c = RegistriesConfig::parse(
            r#"
mirrors:
  docker.io: { endpoint: ["http://127.0.0.1:5000"] }
  gcr.io:
    endpoint: ["https://mirror.example.com:8443/v2", "127.0.0.1:5001"]
    rewrite: {"^google-samples/(.*)": "samples/$1"}
configs:
  "127.0.0.1:5000": { tls: { insecure_skip_verify: true }, auth: { username: u, password: p } }
"#,
        )
        .unwrap();
        let e = c.endpoints("docker.io", "library/busybox");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].host, "127.0.0.1:5000");
        assert!(e[0].plain_http && e[0].insecure_skip_verify && !e[0].upstream);
        assert_eq!(e[0].credentials.as_ref().unwrap().username, "u");
        assert_eq!(e[1].host, "docker.io");
        assert!(!e[1].plain_http && e[1].upstream);
        let e = c.endpoints("gcr.io", "google-samples/kubernetes-bootcamp");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].host, "mirror.example.com:8443");
        assert!(!e[0].plain_http);
        assert_eq!(e[0].repository, "samples/kubernetes-bootcamp");
        assert!(e[1].plain_http, "loopback endpoints may be plain HTTP");
        assert_eq!(e[2].repository, "google-samples/kubernetes-bootcamp");
        let e = c.endpoints("localhost:5000", "x");
        assert_eq!(e.len(), 1);
        assert!(e[0].plain_http);
        assert!(RegistriesConfig::parse("mirrors: {a: {rewrite: {'(': 'x'}}}").is_err());
        assert!(RegistriesConfig::parse("").unwrap().mirrors.is_empty());
    }

    #[test]
    fn reads_dockerconfigjson() {
        let j = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dTE6cDE="},
            "127.0.0.1:5000":{"username":"u2","password":"p2"},
            "http://gcr.io/v2/":{"username":"u3","password":"p3","auth":"eDp5"}}}"#;
        let c = |h| credentials_from_dockerconfigjson(j, h).map(|c| (c.username, c.password));
        assert_eq!(c("docker.io"), Some(("u1".into(), "p1".into())));
        assert_eq!(c("index.docker.io"), Some(("u1".into(), "p1".into())));
        assert_eq!(c("127.0.0.1:5000"), Some(("u2".into(), "p2".into())));
        assert_eq!(c("gcr.io"), Some(("u3".into(), "p3".into())));
        assert_eq!(c("quay.io"), None);
        assert_eq!(
            credentials_from_dockerconfigjson(b"nope", "docker.io"),
            None
        );
    }
}
