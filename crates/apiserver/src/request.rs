//! What a request asks for, read off its method, path and query string the way upstream's
//! `RequestInfoFactory` does.

use std::collections::HashMap;

use http::Method;

use crate::error::{ApiError, ApiResult};

/// The path of a resource request: `/api/v1/namespaces/{ns}/{resource}/{name}/{sub}/...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    /// Empty for cluster-wide requests.
    pub namespace: String,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// What follows the subresource (the path of a proxy request).
    pub rest: Option<String>,
}

/// Every endpoint the server knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Version,
    /// `/metrics` (metrics.rs).
    Metrics,
    /// `/healthz`, `/livez`, `/readyz`, with an optional check name after it.
    Health(String),
    /// `/api`
    CoreGroup,
    /// `/api/v1`
    CoreVersion(String),
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/apis/{group}/{version}`
    GroupVersion(String, String),
    OpenApiV2,
    OpenApiV3,
    OpenApiV3Doc(String),
    Resource(ResourcePath),
    /// `/v1-timonier/server-bootstrap`: what a server joining with `--server` needs
    /// (cluster_bootstrap.rs).
    ServerBootstrap,
}

/// Subresources of namespaces themselves (`/api/v1/namespaces/{name}/status`), which are not
/// resources inside the namespace.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Splits the path into its parts, decoding percent-escapes in each.
fn parts(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|p| !p.is_empty())
        .map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned())
        .collect()
}

pub fn parse_path(path: &str) -> ApiResult<Endpoint> {
    let p = parts(path);
    let s: Vec<&str> = p.iter().map(String::as_str).collect();
    Ok(match s.as_slice() {
        ["version"] => Endpoint::Version,
        ["metrics"] => Endpoint::Metrics,
        ["v1-timonier", "server-bootstrap"] => Endpoint::ServerBootstrap,
        [h, rest @ ..] if matches!(*h, "healthz" | "livez" | "readyz") && rest.len() <= 1 => {
            Endpoint::Health(rest.first().map(|r| r.to_string()).unwrap_or_default())
        }
        ["api"] => Endpoint::CoreGroup,
        ["api", v] => Endpoint::CoreVersion(v.to_string()),
        ["apis"] => Endpoint::Groups,
        ["apis", g] => Endpoint::Group(g.to_string()),
        ["apis", g, v] => Endpoint::GroupVersion(g.to_string(), v.to_string()),
        ["openapi", "v2"] | ["swagger-2.0.0.pb-v1"] | ["swagger.json"] => Endpoint::OpenApiV2,
        ["openapi", "v3"] => Endpoint::OpenApiV3,
        ["openapi", "v3", rest @ ..] => Endpoint::OpenApiV3Doc(rest.join("/")),
        ["api", v, rest @ ..] => Endpoint::Resource(resource_path("", v, rest)?),
        ["apis", g, v, rest @ ..] => Endpoint::Resource(resource_path(g, v, rest)?),
        _ => return Err(ApiError::path_not_found()),
    })
}

fn resource_path(group: &str, version: &str, rest: &[&str]) -> ApiResult<ResourcePath> {
    let mut r = ResourcePath { group: group.into(), version: version.into(), ..Default::default() };
    let mut cur = rest;
    if cur.first() == Some(&"namespaces") && cur.len() > 1 {
        r.namespace = cur[1].to_string();
        if cur.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&cur[2]) {
            cur = &cur[2..];
        }
    }
    match cur {
        [] => return Err(ApiError::path_not_found()),
        [res, tail @ ..] => {
            r.resource = res.to_string();
            r.name = tail.first().map(|s| s.to_string());
            r.subresource = tail.get(1).map(|s| s.to_string());
            if tail.len() > 2 {
                r.rest = Some(tail[2..].join("/"));
            }
        }
    }
    Ok(r)
}

/// The Kubernetes verb of a resource request.
pub fn verb(method: &Method, path: &ResourcePath, query: &Query) -> &'static str {
    let named = path.name.is_some();
    match *method {
        Method::GET | Method::HEAD if query.flag("watch") => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "",
    }
}

/// The query string, first value of each parameter.
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut m = HashMap::new();
        for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
            m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Query(m)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// A boolean parameter: present and not "false"/"0".
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some(v) if v != "false" && v != "0")
    }

    pub fn int(&self, k: &str) -> ApiResult<Option<i64>> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {v:?} is not an integer"))),
        }
    }

    pub fn insert(&mut self, k: &str, v: &str) {
        self.0.insert(k.into(), v.into());
    }

    /// The `resourceVersion` parameter, checked as upstream's `ValidateListOptions` does
    /// (an unparsable one is a 400, never silently ignored).
    pub fn resource_version(&self) -> ApiResult<Option<&str>> {
        match self.get("resourceVersion") {
            None | Some("") => Ok(None),
            Some(rv) => parse_resource_version(rv).map(|_| Some(rv)),
        }
    }
}

/// A resourceVersion as kube-apiserver's `APIObjectVersioner` parses it (an unsigned integer),
/// with its error message.
pub fn parse_resource_version(rv: &str) -> ApiResult<i64> {
    let bad = |why: &str| {
        ApiError::bad_request(format!("invalid resource version: resourceVersion: Invalid value: {rv:?}: strconv.ParseUint: parsing {rv:?}: {why}"))
    };
    match rv.parse::<u64>() {
        Ok(n) => i64::try_from(n).map_err(|_| bad("value out of range")),
        Err(e) if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) => Err(bad("value out of range")),
        Err(_) => Err(bad("invalid syntax")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse_path(path).unwrap() {
            Endpoint::Resource(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths_parse_like_upstream() {
        let r = res("/api/v1/namespaces/default/pods/web/log");
        assert_eq!((r.namespace.as_str(), r.resource.as_str(), r.name.as_deref(), r.subresource.as_deref()), ("default", "pods", Some("web"), Some("log")));
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!((r.namespace.as_str(), r.resource.as_str(), r.name.as_deref()), ("kube-system", "namespaces", Some("kube-system")));
        let r = res("/api/v1/namespaces/x/status");
        assert_eq!((r.resource.as_str(), r.name.as_deref(), r.subresource.as_deref()), ("namespaces", Some("x"), Some("status")));
        let r = res("/api/v1/namespaces");
        assert_eq!((r.resource.as_str(), r.name), ("namespaces", None));
        let r = res("/apis/apps/v1/deployments");
        assert_eq!((r.group.as_str(), r.namespace.as_str(), r.resource.as_str()), ("apps", "", "deployments"));
        let r = res("/api/v1/namespaces/default/pods/web:8080/proxy/a/b");
        assert_eq!((r.name.as_deref(), r.subresource.as_deref(), r.rest.as_deref()), (Some("web:8080"), Some("proxy"), Some("a/b")));
        let r = res("/api/v1/namespaces/default/configmaps/a%20b");
        assert_eq!(r.name.as_deref(), Some("a b"));
        assert_eq!(parse_path("/version").unwrap(), Endpoint::Version);
        assert_eq!(parse_path("/readyz").unwrap(), Endpoint::Health("".into()));
        assert!(parse_path("/nope").is_err());
        assert!(parse_path("/api/v1/namespaces/default").is_ok());
    }

    #[test]
    fn verbs() {
        let q = Query::parse(Some("watch=true&limit=5"));
        assert_eq!(verb(&Method::GET, &res("/api/v1/pods"), &q), "watch");
        assert_eq!(q.int("limit").unwrap(), Some(5));
        let q = Query::parse(None);
        assert_eq!(verb(&Method::GET, &res("/api/v1/pods"), &q), "list");
        assert_eq!(verb(&Method::DELETE, &res("/api/v1/namespaces/a/pods"), &q), "deletecollection");
        assert!(Query::parse(Some("limit=x")).int("limit").is_err());
    }
}
