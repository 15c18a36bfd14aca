//! Who may use the agent's HTTPS API, as the kubelet's `--authorization-mode=Webhook`: the
//! client certificate (from the cluster CA) names a user, and the API server is asked, by a
//! SubjectAccessReview, whether that user may act on this node's `nodes/<subresource>` —
//! `proxy` for logs, exec, attach and port-forward. The API server's own client is allowed;
//! another node's certificate, which the CA signed too, is not. Answers are cached as the
//! kubelet's (5 minutes when allowed, 30 seconds when not).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use kube::api::{Api, PostParams};
use serde_json::json;

/// A user from a verified client certificate: CN, and O as groups.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn from_cert(der: &[u8]) -> Option<User> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let name = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
        let groups = cert.subject().iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
        Some(User { name, groups })
    }
}

/// The `nodes` subresource and verb a request needs (upstream's `GetRequestAttributes`).
pub fn attributes(method: &http::Method, path: &str) -> (&'static str, &'static str) {
    let verb = match *method {
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "get",
    };
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let subresource = match first {
        "stats" => "stats",
        "metrics" => "metrics",
        "logs" => "log",
        "spec" => "spec",
        "checkpoint" => "checkpoint",
        _ => "proxy",
    };
    (verb, subresource)
}

type Key = (User, &'static str, &'static str);

#[derive(Default)]
pub struct Authorizer {
    cache: Mutex<HashMap<Key, (bool, Instant)>>,
}

impl Authorizer {
    /// Whether `user` may `verb` `nodes/<subresource>` of node `node`.
    pub async fn allowed(&self, client: &kube::Client, node: &str, user: &User, verb: &'static str, subresource: &'static str) -> bool {
        let key = (user.clone(), verb, subresource);
        if let Some((answer, until)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            if Instant::now() < *until {
                return *answer;
            }
        }
        let review: SubjectAccessReview = match serde_json::from_value(json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user.name, "groups": user.groups, "resourceAttributes": {"verb": verb, "resource": "nodes", "subresource": subresource, "name": node}},
        })) {
            Ok(r) => r,
            Err(_) => return false,
        };
        let answer = match Api::<SubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &review).await {
            Ok(r) => r.status.is_some_and(|s| s.allowed),
            Err(e) => {
                // Not cached: the next request asks again.
                tracing::warn!(user = %user.name, error = %e, "cannot ask the API server whether a client may use the agent API");
                return false;
            }
        };
        let ttl = if answer { Duration::from_secs(300) } else { Duration::from_secs(30) };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, (_, until)| Instant::now() < *until);
        cache.insert(key, (answer, Instant::now() + ttl));
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_attributes() {
        assert_eq!(attributes(&http::Method::GET, "/containerLogs/ns/p/c"), ("get", "proxy"));
        assert_eq!(attributes(&http::Method::POST, "/exec/ns/p/c"), ("create", "proxy"));
        assert_eq!(attributes(&http::Method::GET, "/stats/summary"), ("get", "stats"));
        assert_eq!(attributes(&http::Method::GET, "/logs/"), ("get", "log"));
    }
}
