//! Routing: from an HTTP request to discovery, health, or the REST store, and back to a
//! response in the shape the client negotiated.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use timonier_api::patch::{self, PatchError};
use timonier_api::resources::{self, ResourceDef};

use crate::auth::UserInfo;
use crate::rbac::Attributes;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::{self, Format, Shape, MAX_BODY};
use crate::request::{parse_path, verb, Endpoint, Query, ResourcePath};
use crate::rest::{meta_str, DeleteOptions, Mode, WriteOptions};
use crate::server::{full, streaming, Body};
use crate::state::ApiState;
use crate::table::{self, Include};
use crate::{convert, discovery, strategy, watch};

/// The version this server reports: kubectl's dispatcher picks the matching client by it.
pub const KUBE_VERSION: &str = "v1.33.5";

pub fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    respond(code, "application/json", json_bytes(v))
}

/// JSON as Go's encoder writes it: a trailing newline, and `Status` in its struct's field order.
fn json_bytes(v: &Value) -> Vec<u8> {
    if v.get("kind").and_then(Value::as_str) == Some("Status") && v.get("apiVersion").and_then(Value::as_str) == Some("v1") {
        return crate::error::status_json(v);
    }
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
}

fn respond(code: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .body(full(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &e.status())
}

fn render(code: StatusCode, v: &Value, format: Format, content_type: &str) -> Response<Body> {
    match format {
        Format::Json => respond(code, content_type, json_bytes(v)),
        Format::Yaml => respond(code, "application/yaml", serde_yaml::to_string(v).unwrap_or_default().into_bytes()),
        Format::Protobuf { json_ok } => {
            let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
            let encoded = timonier_api::protobuf::encodable(api_version, kind).then(|| timonier_api::protobuf::encode(v));
            match encoded {
                Some(Ok(bytes)) => respond(code, negotiate::PROTOBUF, bytes),
                Some(Err(e)) if !json_ok => error_response(&ApiError::internal(format!("cannot encode the answer as protobuf: {e}"))),
                None if !json_ok => error_response(&ApiError::not_acceptable("application/json, application/yaml")),
                _ => respond(code, content_type, json_bytes(v)),
            }
        }
    }
}

/// Reads the request body, refusing more than `MAX_BODY` bytes with a 413. The excess is read
/// and discarded (up to `MAX_DRAIN`) before answering: a client that sends its whole body before
/// reading the response (Python's urllib3, Go without Expect: 100-continue) would otherwise see
/// the connection reset instead of the Status.
async fn read_body(mut body: hyper::body::Incoming) -> ApiResult<Bytes> {
    use hyper::body::Body as _;
    const MAX_DRAIN: u64 = 64 * 1024 * 1024;
    if body.size_hint().lower() > MAX_DRAIN {
        return Err(ApiError::too_large(MAX_BODY));
    }
    let mut buf = Vec::new();
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        seen += data.len() as u64;
        if seen <= MAX_BODY as u64 {
            buf.extend_from_slice(&data);
        } else if seen > MAX_DRAIN {
            break;
        } else {
            buf = Vec::new();
        }
    }
    if seen > MAX_BODY as u64 {
        return Err(ApiError::too_large(MAX_BODY));
    }
    Ok(Bytes::from(buf))
}

pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": KUBE_VERSION,
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "timonier",
        "compiler": "rustc",
        "platform": format!("linux/{}", if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// Handles one request from an authenticated (or anonymous) client.
pub async fn handle(state: Arc<ApiState>, req: Request<hyper::body::Incoming>, user: Option<UserInfo>, server_address: String) -> Response<Body> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let info = crate::metrics::RequestInfo::of(req.method(), req.uri().path(), req.uri().query(), content_type);
    let _in_flight = info.as_ref().and_then(|i| i.in_flight());
    let started = std::time::Instant::now();
    let response = match route(state, req, user, server_address).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    if let Some(info) = info {
        info.observe(response.status().as_u16(), started.elapsed(), hyper::body::Body::size_hint(response.body()).exact());
    }
    response
}

async fn route(state: Arc<ApiState>, req: Request<hyper::body::Incoming>, user: Option<UserInfo>, server_address: String) -> ApiResult<Response<Body>> {
    let endpoint = parse_path(req.uri().path());
    // Health and version are public, as upstream's system:public-info-viewer allows.
    match &endpoint {
        Ok(Endpoint::Version) => return Ok(json_response(StatusCode::OK, &version_info())),
        Ok(Endpoint::Health(check)) => {
            let endpoint = req.uri().path().trim_start_matches('/').split('/').next().unwrap_or("");
            let Some(a) = crate::health::answer(&state, endpoint, check, req.uri().query()).await else { return Err(ApiError::path_not_found()) };
            let code = StatusCode::from_u16(a.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = respond(code, "text/plain; charset=utf-8", a.body.into_bytes());
            r.headers_mut().insert("x-content-type-options", http::HeaderValue::from_static("nosniff"));
            return Ok(r);
        }
        // Authenticated by the server token rather than a user (the joining server has none).
        Ok(Endpoint::ServerBootstrap) => {
            let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            let join = state.server_join.get().ok_or_else(ApiError::unauthorized)?;
            return join.answer(authorization).map(|v| json_response(StatusCode::OK, &v));
        }
        _ => {}
    }
    // Anonymous requests are refused, but for what a joining node reads before it trusts the
    // server (`kube-public/cluster-info`), which RBAC then lets `system:anonymous` get.
    let user = user.or_else(|| crate::auth::anonymous_for(req.method(), req.uri().path()));
    let Some(user) = user else { return Err(ApiError::unauthorized()) };
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let registry = state.registry();
    let endpoint = endpoint?;
    let user = impersonate(&state, user, &req)?;
    crate::admission::set_user(&user);
    if !matches!(endpoint, Endpoint::Resource(_)) {
        let a = Attributes { verb: "get".into(), path: Some(req.uri().path().to_string()), ..Default::default() };
        if !state.authorize(&user, &a) {
            return Err(ApiState::forbidden(&user, &a));
        }
    }
    // Group versions of non-local APIServices are served by their extension servers.
    if let Some(api) = crate::aggregator::target(&state, &endpoint) {
        return crate::aggregator::proxy(state, req, &endpoint, user, api).await;
    }
    match endpoint {
        Endpoint::CoreGroup => Ok(match discovery::aggregated_version(accept.as_deref()) {
            Some(v) => respond(StatusCode::OK, &discovery::aggregated_content_type(v), serde_json::to_vec(&discovery::aggregated(&registry, true, v)).unwrap_or_default()),
            None => json_response(StatusCode::OK, &discovery::api_versions(&server_address)),
        }),
        Endpoint::Groups => Ok(match discovery::aggregated_version(accept.as_deref()) {
            Some(v) => {
                let mut doc = discovery::aggregated(&registry, false, v);
                crate::aggregator::discovery::add_aggregated(&state, &mut doc);
                respond(StatusCode::OK, &discovery::aggregated_content_type(v), serde_json::to_vec(&doc).unwrap_or_default())
            }
            None => {
                let mut list = discovery::api_group_list(&registry);
                crate::aggregator::discovery::add_groups(&state, &mut list);
                json_response(StatusCode::OK, &list)
            }
        }),
        Endpoint::CoreVersion(v) => discovery::api_resource_list(&registry, "", &v).map(|l| json_response(StatusCode::OK, &l)).ok_or_else(ApiError::path_not_found),
        Endpoint::Group(g) => crate::aggregator::discovery::api_group(&state, &registry, &g)
            .map(|l| json_response(StatusCode::OK, &l))
            .ok_or_else(ApiError::path_not_found),
        Endpoint::GroupVersion(g, v) => discovery::api_resource_list(&registry, &g, &v).map(|l| json_response(StatusCode::OK, &l)).ok_or_else(ApiError::path_not_found),
        Endpoint::OpenApiV2 => {
            // With the extension servers' documents merged in.
            let (json, protobuf) = crate::aggregator::openapi::v2(&state, &state.openapi());
            let pb = accept.as_deref().is_some_and(|a| a.contains("protobuf")) || req.uri().path().ends_with(".pb-v1");
            let (ct, doc) = if pb { (timonier_api::openapi::V2_PROTOBUF_CONTENT_TYPE, protobuf) } else { ("application/json", json) };
            Ok(Response::builder().header(header::CONTENT_TYPE, ct).body(full(doc)).unwrap_or_else(|_| Response::new(full(Bytes::new()))))
        }
        Endpoint::OpenApiV3 => Ok(json_response(StatusCode::OK, &crate::aggregator::openapi::v3_root(&state, state.openapi().v3_root()))),
        Endpoint::OpenApiV3Doc(p) => match state.openapi().v3_document(&p) {
            Some((doc, _)) => Ok(Response::builder().header(header::CONTENT_TYPE, "application/json").body(full(doc)).unwrap_or_else(|_| Response::new(full(Bytes::new())))),
            // An extension server's group version, or nothing.
            None => crate::aggregator::openapi::v3_document(state, req, user, &p).await.unwrap_or_else(|| Err(ApiError::path_not_found())),
        },
        Endpoint::Resource(path) => strategy::with_requester(user.clone(), resource(state, req, path, accept.as_deref(), user)).await,
        Endpoint::Metrics => {
            Ok(respond(StatusCode::OK, timonier_metrics::CONTENT_TYPE, crate::metrics::render(&state)))
        }
        Endpoint::Version | Endpoint::Health(_) | Endpoint::ServerBootstrap => Err(ApiError::path_not_found()),
    }
}

/// `Impersonate-User` / `Impersonate-Group` (`kubectl --as`): allowed to those who may
/// `impersonate` users and groups.
fn impersonate(state: &ApiState, user: UserInfo, req: &Request<hyper::body::Incoming>) -> ApiResult<UserInfo> {
    let Some(name) = req.headers().get("impersonate-user").and_then(|v| v.to_str().ok()) else { return Ok(user) };
    let mut groups: Vec<String> = req.headers().get_all("impersonate-group").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
    let check = |resource: &str, namespace: &str, name: &str| {
        let a = Attributes { verb: "impersonate".into(), resource: resource.into(), namespace: namespace.into(), name: name.into(), ..Default::default() };
        if state.authorize(&user, &a) {
            Ok(())
        } else {
            let scope = if namespace.is_empty() { "at the cluster scope".to_string() } else { format!("in the namespace {namespace:?}") };
            Err(ApiError::forbidden(format!("{resource} {name:?} is forbidden: User {:?} cannot impersonate resource {resource:?} in API group \"\" {scope}", user.name)))
        }
    };
    // A service account is impersonated as such, with its fixed groups unless some are given.
    match name.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':')) {
        Some((sa_ns, sa_name)) => {
            check("serviceaccounts", sa_ns, sa_name)?;
            if groups.is_empty() {
                groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{sa_ns}")];
            }
        }
        None => check("users", "", name)?,
    }
    for g in req.headers().get_all("impersonate-group").iter().filter_map(|v| v.to_str().ok()) {
        check("groups", "", g)?;
    }
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    Ok(UserInfo { name: name.to_string(), groups })
}

async fn resource(state: Arc<ApiState>, req: Request<hyper::body::Incoming>, path: ResourcePath, accept: Option<&str>, user: UserInfo) -> ApiResult<Response<Body>> {
    let def = state.def(&path.group, &path.version, &path.resource)?;
    let q = Query::parse(req.uri().query());
    let verb = verb(req.method(), &path, &q);
    let a = Attributes {
        verb: verb.into(),
        group: def.group.clone(),
        resource: def.plural.clone(),
        subresource: path.subresource.clone().unwrap_or_default(),
        namespace: if def.namespaced { path.namespace.clone() } else { String::new() },
        name: path.name.clone().unwrap_or_default(),
        path: None,
    };
    // As upstream's request info: a list or watch of one object by its name is about it.
    let field_selector = q.get("fieldSelector").map(str::to_string);
    let mut a = a;
    if a.name.is_empty() && matches!(verb, "list" | "watch") {
        if let Some(name) = field_selector.as_deref().and_then(|fs| fs.split(',').find_map(|r| r.trim().strip_prefix("metadata.name=").map(|n| n.trim_start_matches('=')))) {
            a.name = name.to_string();
        }
    }
    state.check(&user, &a, field_selector.as_deref())?;
    if resources::is_review(&def) {
        if verb != "create" {
            return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"));
        }
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = read_body(req.into_body()).await?;
        let obj = decode(content_type.as_deref(), &body)?;
        let answer = match def.kind.as_str() {
            "SelfSubjectReview" => ApiState::whoami(&user, obj),
            "TokenReview" => state.token_review(obj)?,
            _ => state.review(&user, &def.kind, obj, &path.namespace)?,
        };
        return Ok(json_response(StatusCode::CREATED, &answer));
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    // Cluster-scoped resources have no namespace (the namespaces resource names itself).
    let ns = if def.namespaced { path.namespace.clone() } else { String::new() };
    if !def.namespaced && !path.namespace.is_empty() && def.plural != "namespaces" {
        return Err(ApiError::path_not_found());
    }
    if let Some(sub) = &path.subresource {
        let name = path.name.clone().unwrap_or_default();
        if sub == "proxy" && def.group.is_empty() && def.plural == "nodes" && !name.is_empty() {
            let (method, query) = (req.method().clone(), req.uri().query().map(str::to_string));
            return crate::kubelet_proxy::node_proxy(state, &method, &name, path.rest.as_deref().unwrap_or(""), query.as_deref()).await;
        }
        if sub == "proxy" && matches!(def.plural.as_str(), "pods" | "services") && !name.is_empty() {
            return crate::object_proxy::proxy(state, req, &def, &ns, &name, path.rest.as_deref().unwrap_or("")).await;
        }
        return subresource(state, req, &def, &ns, &name, sub, &q, accept).await;
    }
    if def.namespaced && ns.is_empty() && matches!(verb, "create" | "get" | "update" | "patch" | "delete" | "deletecollection") {
        return Err(ApiError::path_not_found());
    }
    if path.name.is_none() && matches!(verb, "update" | "patch") {
        return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"));
    }
    if !def.has_verb(verb) {
        return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource".to_string()));
    }
    let (shape, format) = negotiate::negotiate(accept)?;
    // Answered live, never stored (live.rs).
    if def.group.is_empty() && def.kind == "ComponentStatus" {
        let r = match &path.name {
            Some(name) => render_object(&state, &def, &state.component_status(&def, name).await?, shape, format, &q)?,
            None => {
                let items = state.component_statuses().await.into_iter().map(Arc::new).collect();
                list_response(&state, &def, crate::rest::ListPage { items, revision: state.cache.revision(), continue_token: None }, shape, format, &q)?
            }
        };
        return Ok(with_warnings(r, &[crate::live::COMPONENT_STATUS_WARNING.to_string()]));
    }
    if def.group.is_empty() && def.kind == "Binding" {
        let binding = decode(content_type.as_deref(), &read_body(req.into_body()).await?)?;
        return Ok(json_response(StatusCode::CREATED, &state.create_binding(&def, &ns, &binding).await?));
    }
    let name = path.name.clone().unwrap_or_default();
    let result = strategy::with_requester(user, serve_verb(&state, req, &def, &ns, &name, verb, shape, format, &q, content_type)).await;
    // A CRD change changes what is served: bring the registry along before answering, so
    // that the next request can use the new kind.
    if result.is_ok() && def.kind == "CustomResourceDefinition" && !matches!(verb, "get" | "list" | "watch") {
        state.cache.wait_fresh().await?;
        state.sync_crds().await?;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn serve_verb(
    state: &Arc<ApiState>,
    req: Request<hyper::body::Incoming>,
    def: &Arc<ResourceDef>,
    ns: &str,
    name: &str,
    verb: &str,
    shape: Shape,
    format: Format,
    q: &Query,
    content_type: Option<String>,
) -> ApiResult<Response<Body>> {
    let (state, def, ns, name, q) = (state.clone(), def.clone(), ns.to_string(), name.to_string(), q.clone());
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string);
    // Writes go through the stored form's resource (events.k8s.io events are v1 events).
    let sdef = storage_def(&state, &def)?;
    match verb {
        "get" => {
            q.resource_version()?;
            let obj = state.get(&def, &ns, &name).await?;
            Ok(render_object(&state, &def, &obj, shape, format, &q)?)
        }
        "list" => {
            let page = state.list(&def, &ns, &q).await?;
            list_response(&state, &def, page, shape, format, &q)
        }
        "watch" => {
            // Watch events are streamed as JSON only.
            if format == (Format::Protobuf { json_ok: false }) {
                return Err(ApiError::not_acceptable("application/json, application/yaml"));
            }
            let rx = watch::start(&state, def.clone(), &ns, &q, shape).await?;
            let ct = match shape {
                Shape::Table(v) => table::content_type(v),
                _ => "application/json".into(),
            };
            Ok(streaming(StatusCode::OK, &ct, rx))
        }
        "create" => {
            let body = read_body(req.into_body()).await?;
            let mut obj = decode(content_type.as_deref(), &body)?;
            let warnings = check_fields(&state, &def, &q, content_type.as_deref(), &body, &mut obj)?;
            let obj = convert::to_storage(&def, obj);
            let opts = write_options(&q, &user_agent)?;
            let created = state.create(&sdef, &ns, obj, &opts).await?;
            render_object(&state, &def, &created, shape, format, &q).map(|mut r| {
                *r.status_mut() = StatusCode::CREATED;
                with_warnings(r, &warnings)
            })
        }
        "update" => {
            let body = read_body(req.into_body()).await?;
            let mut obj = decode(content_type.as_deref(), &body)?;
            let warnings = check_fields(&state, &def, &q, content_type.as_deref(), &body, &mut obj)?;
            let obj = convert::to_storage(&def, obj);
            let opts = write_options(&q, &user_agent)?;
            let updated = state.update(&sdef, &ns, &name, obj, &opts).await?;
            render_object(&state, &def, &updated, shape, format, &q).map(|r| with_warnings(r, &warnings))
        }
        "patch" => {
            let body = read_body(req.into_body()).await?;
            let opts = write_options(&q, &user_agent)?;
            let (obj, created) = patch_object(&state, &def, &sdef, &ns, &name, content_type.as_deref(), &body, &opts, Mode::Main).await?;
            render_object(&state, &def, &obj, shape, format, &q).map(|mut r| {
                if created {
                    *r.status_mut() = StatusCode::CREATED;
                }
                r
            })
        }
        "delete" => {
            let body = read_body(req.into_body()).await?;
            let opts_body = if body.is_empty() { None } else { Some(negotiate::decode_body(content_type.as_deref(), &body)?) };
            let opts = DeleteOptions::parse(opts_body.as_ref(), &q)?;
            let (obj, gone) = state.delete(&sdef, &ns, &name, &opts).await?;
            if gone && !strategy::returns_deleted_object(&def) {
                Ok(json_response(StatusCode::OK, &success(&def, &obj)))
            } else {
                render_object(&state, &def, &obj, Shape::Object, format, &q)
            }
        }
        "deletecollection" => {
            let body = read_body(req.into_body()).await?;
            let opts_body = if body.is_empty() { None } else { Some(negotiate::decode_body(content_type.as_deref(), &body)?) };
            let opts = DeleteOptions::parse(opts_body.as_ref(), &q)?;
            let mut lq = q.clone();
            lq.insert("limit", "0");
            let page = state.list(&def, &ns, &lq).await?;
            let mut deleted = Vec::new();
            for obj in page.items {
                let n = meta_str(&obj, "name").to_string();
                let ons = meta_str(&obj, "namespace").to_string();
                match state.delete(&sdef, &ons, &n, &opts).await {
                    Ok((o, _)) => deleted.push(std::sync::Arc::new(o)),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let page = crate::rest::ListPage { items: deleted, revision: state.cache.revision(), continue_token: None };
            list_response(&state, &def, page, Shape::Object, format, &q)
        }
        _ => Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource")),
    }
}

/// Strict field validation of a create/update body (`fieldValidation`: Strict, kubectl's
/// default, refuses unknown and duplicate fields with upstream's 400; Warn, the default, returns
/// them as warnings; Ignore skips). Protobuf bodies cannot carry unknown fields.
/// Field validation of a request body: unknown or duplicate fields are an error with
/// `fieldValidation=Strict`, a warning otherwise (`Warn`, the default) or nothing (`Ignore`);
/// unknown fields of built-in kinds are dropped, as upstream's typed decoding drops them.
fn check_fields(state: &ApiState, def: &ResourceDef, q: &Query, content_type: Option<&str>, body: &[u8], obj: &mut Value) -> ApiResult<Vec<String>> {
    let directive = q.get("fieldValidation").unwrap_or("");
    let ct = content_type.unwrap_or("application/json").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let raw = matches!(ct.as_str(), "application/json" | "").then_some(body);
    let errors = state.openapi().field_errors(&def.group, &def.version, &def.kind, obj, raw);
    if directive == "Strict" && !errors.is_empty() {
        let kind = obj.get("kind").and_then(Value::as_str).filter(|k| !k.is_empty()).unwrap_or(&def.kind);
        let version = obj.get("apiVersion").and_then(Value::as_str).map(|v| v.rsplit('/').next().unwrap_or(v)).unwrap_or(&def.version);
        return Err(ApiError::bad_request(timonier_api::openapi::strict_decoding_message(kind, version, &errors)));
    }
    prune_unknown(obj, &errors);
    if directive == "Ignore" || ct == "application/vnd.kubernetes.protobuf" {
        return Ok(vec![]);
    }
    Ok(errors)
}

/// Removes the fields named by `unknown field "a.b[0].c"` errors.
fn prune_unknown(obj: &mut Value, errors: &[String]) {
    for e in errors {
        let Some(path) = e.strip_prefix("unknown field \"").and_then(|p| p.strip_suffix('"')) else { continue };
        let mut steps: Vec<Result<usize, &str>> = Vec::new();
        for part in path.split('.') {
            let (name, rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
            if !name.is_empty() {
                steps.push(Err(name));
            }
            for idx in rest.split('[').filter(|s| !s.is_empty()) {
                if let Ok(i) = idx.trim_end_matches(']').parse() {
                    steps.push(Ok(i));
                }
            }
        }
        remove_at(obj, &steps);
    }
}

fn remove_at(v: &mut Value, steps: &[Result<usize, &str>]) {
    match steps {
        [Err(k)] => {
            if let Some(m) = v.as_object_mut() {
                m.remove(*k);
            }
        }
        [Ok(i), rest @ ..] if !rest.is_empty() => {
            if let Some(n) = v.get_mut(*i) {
                remove_at(n, rest);
            }
        }
        [Err(k), rest @ ..] if !rest.is_empty() => {
            if let Some(n) = v.get_mut(*k) {
                remove_at(n, rest);
            }
        }
        _ => {}
    }
}

/// Adds `Warning: 299 - "<text>"` headers, as upstream sends warnings.
fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - {}", serde_json::to_string(w).unwrap_or_default())) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

fn write_options(q: &Query, user_agent: &Option<String>) -> ApiResult<WriteOptions> {
    let mut o = WriteOptions::from_query(q)?;
    o.user_agent = user_agent.clone();
    Ok(o)
}

/// Decodes a create/update body: JSON, YAML or Kubernetes protobuf (kubectl ≥ 1.32).
fn decode(content_type: Option<&str>, body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let v = negotiate::decode_body(content_type, body)?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    Ok(v)
}

/// The Status of a completed deletion.
fn success(def: &ResourceDef, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": meta_str(obj, "name"), "group": def.group, "kind": def.plural, "uid": meta_str(obj, "uid")},
    })
}

/// The resource whose form is stored, through which a converted resource's writes go.
fn storage_def(state: &ApiState, def: &Arc<ResourceDef>) -> ApiResult<Arc<ResourceDef>> {
    match convert::storage_of(def) {
        Some((g, v, r)) => state.def(g, v, r),
        None => Ok(def.clone()),
    }
}

fn render_object(state: &ApiState, def: &ResourceDef, obj: &Value, shape: Shape, format: Format, q: &Query) -> ApiResult<Response<Body>> {
    let converted;
    let obj = if convert::converts(def) {
        converted = convert::from_storage(def, obj);
        &converted
    } else {
        obj
    };
    Ok(match shape {
        Shape::Object => render(StatusCode::OK, obj, format, "application/json"),
        Shape::Table(v) => {
            let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
            let crd = state.crd_for(def);
            let t = table::table(def, &[Arc::new(obj.clone())], Include::from_query(q)?, v, json!({"resourceVersion": rv}), crd.as_deref());
            render(StatusCode::OK, &t, format, &table::content_type(v))
        }
        Shape::Metadata(v) => render(StatusCode::OK, &table::partial(obj, v), format, "application/json"),
    })
}

fn list_response(state: &ApiState, def: &ResourceDef, mut page: crate::rest::ListPage, shape: Shape, format: Format, q: &Query) -> ApiResult<Response<Body>> {
    if convert::converts(def) {
        page.items = page.items.iter().map(|o| Arc::new(convert::from_storage(def, o))).collect();
    }
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    match shape {
        Shape::Table(v) => {
            let crd = state.crd_for(def);
            let t = table::table(def, &page.items, Include::from_query(q)?, v, meta, crd.as_deref());
            Ok(render(StatusCode::OK, &t, format, &table::content_type(v)))
        }
        Shape::Metadata(v) => {
            let items: Vec<Value> = page.items.iter().map(|o| table::partial(o, v)).collect();
            let l = json!({"kind": "PartialObjectMetadataList", "apiVersion": format!("meta.k8s.io/{v}"), "metadata": meta, "items": items});
            Ok(render(StatusCode::OK, &l, format, "application/json"))
        }
        Shape::Object if format == Format::Json => {
            // Written item by item: a list of 10,000 objects is never copied as one Value.
            let mut out = Vec::with_capacity(page.items.len() * 1024 + 128);
            out.extend_from_slice(format!("{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":", def.list_kind(), def.api_version()).as_bytes());
            serde_json::to_writer(&mut out, &meta).map_err(|e| ApiError::internal(e.to_string()))?;
            out.extend_from_slice(b",\"items\":[");
            for (i, item) in page.items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut out, &**item).map_err(|e| ApiError::internal(e.to_string()))?;
            }
            out.extend_from_slice(b"]}");
            Ok(respond(StatusCode::OK, "application/json", out))
        }
        Shape::Object => {
            let items: Vec<Value> = page.items.iter().map(|o| (**o).clone()).collect();
            let l = json!({"kind": def.list_kind(), "apiVersion": def.api_version(), "metadata": meta, "items": items});
            Ok(render(StatusCode::OK, &l, format, "application/yaml"))
        }
    }
}

/// Applies a PATCH of any of the four types to the current object and writes the result.
/// Returns the object and whether it was created (server-side apply of an absent object).
#[allow(clippy::too_many_arguments)]
async fn patch_object(
    state: &Arc<ApiState>,
    served: &Arc<ResourceDef>,
    def: &Arc<ResourceDef>,
    ns: &str,
    name: &str,
    content_type: Option<&str>,
    body: &Bytes,
    opts: &WriteOptions,
    mode: Mode,
) -> ApiResult<(Value, bool)> {
    let ct = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let patch_doc = match ct.as_str() {
        "application/json-patch+json" | "application/merge-patch+json" | "application/strategic-merge-patch+json" => negotiate::parse_json(body)?,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => negotiate::parse_yaml(body)?,
        other => {
            return Err(ApiError::unsupported_media_type(
                other,
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
            ))
        }
    };
    if ct == "application/apply-patch+yaml" || ct == "application/apply-patch+cbor" {
        return server_side_apply(state, served, def, ns, name, patch_doc, opts, mode).await;
    }
    if ct == "application/strategic-merge-patch+json" && !patch::strategic::supports(&served.group, &served.version, &served.kind) {
        return Err(ApiError::unsupported_media_type(
            &ct,
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    let (group, version, kind) = (served.group.clone(), served.version.clone(), served.kind.clone());
    let strict = opts.strict;
    let mutate = |stored: &Value| -> ApiResult<Value> {
        // Patches apply to the served form.
        let old = &convert::from_storage(served, stored);
        let out = match ct.as_str() {
            "application/json-patch+json" => patch::json_patch(old, &patch_doc),
            "application/merge-patch+json" => Ok(patch::merge_patch(old, &patch_doc)),
            _ => patch::strategic::apply(old, &patch_doc, &group, &version, &kind),
        };
        let mut out = out.map_err(|e| match e {
            PatchError::BadPatch(m) => ApiError::bad_request(m),
            PatchError::CannotApply(m) => ApiError::invalid(def, name, vec![crate::error::FieldError { reason: "FieldValueInvalid", field: String::new(), message: m }]),
        })?;
        // A resourceVersion in the patch is a precondition; otherwise the read one applies.
        let wanted = out.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
        let have = old.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("");
        if let Some(w) = wanted.filter(|w| !w.is_empty()) {
            if w != have {
                return Err(ApiError::modified(def, name));
            }
        }
        if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        // What the patch produced is decoded as a body would be: unknown fields are an
        // error when strict, and dropped otherwise.
        let errors = state.openapi().field_errors(&group, &version, &kind, &out, None);
        if strict && !errors.is_empty() {
            return Err(ApiError::bad_request(format!("strict decoding error: {}", errors.join(", "))));
        }
        prune_unknown(&mut out, &errors);
        Ok(convert::to_storage(served, out))
    };
    let obj = state.guaranteed_update(def, ns, name, None, opts, mutate, mode).await?;
    Ok((obj, false))
}

fn apply_error(e: patch::apply::ApplyError) -> ApiError {
    let status = e.to_status();
    ApiError {
        code: e.code(),
        reason: if e.code() == 409 { "Conflict" } else { "BadRequest" },
        message: status["message"].as_str().unwrap_or("").to_string(),
        details: status.get("details").cloned(),
    }
}

/// Server-side apply: the configuration is merged into the live object by field ownership
/// (creating it when absent), then goes through defaulting and validation like any write.
#[allow(clippy::too_many_arguments)]
async fn server_side_apply(
    state: &Arc<ApiState>,
    served: &Arc<ResourceDef>,
    def: &Arc<ResourceDef>,
    ns: &str,
    name: &str,
    applied: Value,
    opts: &WriteOptions,
    mode: Mode,
) -> ApiResult<(Value, bool)> {
    if opts.field_manager.is_none() {
        return Err(ApiError::bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set"));
    }
    if !applied.is_object() {
        return Err(ApiError::bad_request("the applied configuration must be an object"));
    }
    let manager = opts.manager();
    let scope = match mode {
        Mode::Status => patch::apply::Scope::status_subresource(&served.group, &served.version, &served.kind),
        _ => patch::apply::Scope::main_resource(&served.group, &served.version, &served.kind),
    };
    let mut managed_opts = opts.clone();
    managed_opts.managed = true;
    if mode == Mode::Main {
        match state.get(def, ns, name).await {
            Err(e) if e.code == 404 => {
                let mut cfg = applied.clone();
                if let Some(m) = cfg.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.entry("name").or_insert_with(|| json!(name));
                }
                let obj = patch::apply::apply_in(&scope, None, &cfg, &manager, opts.force, &crate::rest::now_rfc3339()).map_err(apply_error)?;
                let created = state.create(def, ns, convert::to_storage(served, obj), &managed_opts).await?;
                return Ok((created, true));
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    let force = opts.force;
    let mutate = |stored: &Value| -> ApiResult<Value> {
        let live = convert::from_storage(served, stored);
        let out = patch::apply::apply_in(&scope, Some(&live), &applied, &manager, force, &crate::rest::now_rfc3339()).map_err(apply_error)?;
        Ok(convert::to_storage(served, out))
    };
    let obj = state.guaranteed_update(def, ns, name, None, &managed_opts, mutate, mode).await?;
    Ok((obj, false))
}

#[allow(clippy::too_many_arguments)]
async fn subresource(
    state: Arc<ApiState>,
    req: Request<hyper::body::Incoming>,
    def: &Arc<ResourceDef>,
    ns: &str,
    name: &str,
    sub: &str,
    q: &Query,
    accept: Option<&str>,
) -> ApiResult<Response<Body>> {
    if def.subresource(sub).is_none() || name.is_empty() {
        return Err(ApiError::path_not_found());
    }
    if def.plural == "pods" && matches!(sub, "exec" | "attach" | "portforward") {
        return crate::kubelet_proxy::stream(state, req, ns, name, sub).await;
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let method = req.method().clone();
    let (shape, format) = negotiate::negotiate(accept)?;
    let opts = write_options(q, &user_agent)?;
    match (sub, &method) {
        ("status" | "approval", &Method::GET) => {
            let obj = state.get(def, ns, name).await?;
            render_object(&state, def, &obj, shape, format, q)
        }
        ("status" | "approval", &Method::PUT) => {
            let body = read_body(req.into_body()).await?;
            let obj = decode(content_type.as_deref(), &body)?;
            let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok());
            let sdef = storage_def(&state, def)?;
            let mode = if sub == "approval" { Mode::Approval } else { Mode::Status };
            let updated = state.guaranteed_update(&sdef, ns, name, rv, &opts, |_| Ok(convert::to_storage(def, obj.clone())), mode).await?;
            render_object(&state, def, &updated, shape, format, q)
        }
        ("status" | "approval", &Method::PATCH) => {
            let body = read_body(req.into_body()).await?;
            let sdef = storage_def(&state, def)?;
            let mode = if sub == "approval" { Mode::Approval } else { Mode::Status };
            let (obj, _) = patch_object(&state, def, &sdef, ns, name, content_type.as_deref(), &body, &opts, mode).await?;
            render_object(&state, def, &obj, shape, format, q)
        }
        ("token", &Method::POST) if def.plural == "serviceaccounts" => {
            let body = read_body(req.into_body()).await?;
            let request = decode(content_type.as_deref(), &body)?;
            if let Some(user) = strategy::requester() {
                let mut named = request.clone();
                named["metadata"]["name"] = json!(name);
                state.admit_node_token_request(&user, ns, &named)?;
            }
            Ok(json_response(StatusCode::CREATED, &state.token_request(def, ns, name, request).await?))
        }
        ("ephemeralcontainers", &Method::GET) if def.plural == "pods" => {
            let obj = state.get(def, ns, name).await?;
            render_object(&state, def, &obj, shape, format, q)
        }
        ("ephemeralcontainers", &Method::PUT | &Method::PATCH) if def.plural == "pods" => {
            let body = read_body(req.into_body()).await?;
            let how = if method == Method::PUT { None } else { Some(content_type.as_deref().unwrap_or("")) };
            let updated = crate::ephemeral::update(&state, def, ns, name, how, content_type.as_deref(), &body, &opts).await?;
            render_object(&state, def, &updated, shape, format, q)
        }
        ("log", &Method::GET) if def.plural == "pods" => crate::kubelet_proxy::pod_log(state.clone(), ns, name, q).await,
        ("binding", &Method::POST) => {
            let body = read_body(req.into_body()).await?;
            let binding = decode(content_type.as_deref(), &body)?;
            Ok(json_response(StatusCode::CREATED, &state.bind(ns, name, &binding).await?))
        }
        ("eviction", &Method::POST) => {
            let body = read_body(req.into_body()).await?;
            let eviction = decode(content_type.as_deref(), &body)?;
            Ok(json_response(StatusCode::CREATED, &state.evict(ns, name, &eviction, q).await?))
        }
        ("scale", &Method::GET) => {
            let obj = state.get(def, ns, name).await?;
            Ok(json_response(StatusCode::OK, &scale_of(&obj)?))
        }
        ("scale", &Method::PUT) | ("scale", &Method::PATCH) => {
            let body = read_body(req.into_body()).await?;
            let is_put = method == Method::PUT;
            let scale_patch = if is_put { decode(content_type.as_deref(), &body)? } else { Value::Null };
            let ct = content_type.clone();
            let mutate = |old: &Value| -> ApiResult<Value> {
                let scale = scale_of(old)?;
                let new_scale = if is_put {
                    scale_patch.clone()
                } else {
                    let p = negotiate::parse_json(&body)?;
                    match ct.as_deref().unwrap_or("").split(';').next().unwrap_or("") {
                        "application/json-patch+json" => patch::json_patch(&scale, &p).map_err(|e| ApiError::bad_request(e.to_string()))?,
                        _ => patch::merge_patch(&scale, &p),
                    }
                };
                let replicas = new_scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                if replicas < 0 {
                    return Err(ApiError::invalid(
                        &ResourceDef { kind: "Scale".into(), group: "autoscaling".into(), ..(**def).clone() },
                        name,
                        vec![crate::error::FieldError::invalid("spec.replicas", &json!(replicas), "must be greater than or equal to 0")],
                    ));
                }
                let mut new = old.clone();
                new["spec"]["replicas"] = json!(replicas);
                Ok(new)
            };
            let updated = state.guaranteed_update(def, ns, name, None, &opts, mutate, Mode::Main).await?;
            Ok(json_response(StatusCode::OK, &scale_of(&updated)?))
        }
        _ => Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource")),
    }
}

/// The `autoscaling/v1 Scale` view of a scalable object.
fn scale_of(obj: &Value) -> ApiResult<Value> {
    let selector = match obj.pointer("/spec/selector") {
        Some(sel) if sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some() => {
            timonier_api::selector::LabelSelector::from_json(sel).map(|s| s.to_string()).unwrap_or_default()
        }
        // ReplicationControllers have a plain map selector.
        Some(Value::Object(m)) => {
            let mut parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
            parts.sort();
            parts.join(",")
        }
        _ => String::new(),
    };
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    }))
}
