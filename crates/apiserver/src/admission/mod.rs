//! Dynamic admission: what add-ons (cert-manager, Kyverno, Gatekeeper, …) plug into the
//! write path, as upstream's `k8s.io/apiserver/pkg/admission/plugin/{webhook,policy}`.
//!
//! The REST store makes one call per write ([`ApiState::admit`]) after defaulting and the
//! built-in admission: mutating webhooks run first (and the object, if they changed it, is
//! validated again, since upstream validates after mutating admission), then validating
//! webhooks (in parallel) and ValidatingAdmissionPolicies. The configurations are read from
//! the watch cache on every call (they are cached objects already); compiled CEL programs
//! are kept in `cel.rs`.
//!
//! Who is asking (`userInfo`, `request.userInfo` in CEL) and the warnings to send back are
//! per request: `server.rs` runs each request in a [`request_scope`].

mod cel;
mod client;
mod matching;
mod policy;
mod webhook;

use std::sync::{Arc, Mutex};

use http::{header, Response};
use serde_json::{json, Value};
use timonier_api::resources::ResourceDef;

use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

pub(crate) use policy::check_policy;

/// The operation of an admission request, as AdmissionReview spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }

    /// The `options` object upstream sends with each operation.
    fn options(self, dry_run: bool) -> Value {
        let dry = if dry_run { json!(["All"]) } else { Value::Null };
        let (kind, mut o) = match self {
            Operation::Create => ("CreateOptions", json!({})),
            Operation::Update => ("UpdateOptions", json!({})),
            Operation::Delete => ("DeleteOptions", json!({})),
            Operation::Connect => return Value::Null,
        };
        o["kind"] = json!(kind);
        o["apiVersion"] = json!("meta.k8s.io/v1");
        if !dry.is_null() {
            o["dryRun"] = dry;
        }
        o
    }
}

/// One admission request: what is written, by whom, and how.
pub(crate) struct Attributes<'a> {
    pub def: &'a ResourceDef,
    pub subresource: &'a str,
    pub operation: Operation,
    pub namespace: String,
    pub name: String,
    /// The object written (none for DELETE); mutating webhooks change it.
    pub object: Option<Value>,
    pub old: Option<&'a Value>,
    pub dry_run: bool,
    pub user: UserInfo,
    /// The namespace of a namespaced request, for namespaceSelector and `namespaceObject`.
    pub namespace_object: Option<Arc<Value>>,
    /// The other served versions of the resource (`matchPolicy: Equivalent`).
    pub equivalents: Vec<Arc<ResourceDef>>,
}

impl Attributes<'_> {
    /// The objects whose labels objectSelector sees: the new one and the old one.
    fn objects(&self) -> impl Iterator<Item = &Value> {
        self.object.iter().chain(self.old)
    }
}

/// A request in flight: its user, and the warnings admission wants sent back to the client.
pub struct RequestScope {
    user: Mutex<Option<UserInfo>>,
    warnings: Mutex<Vec<String>>,
}

tokio::task_local! {
    static REQUEST: Arc<RequestScope>;
}

/// Runs one request with its user known to admission, returning the warnings it collected.
pub async fn request_scope<F: std::future::Future>(user: Option<UserInfo>, f: F) -> (F::Output, Vec<String>) {
    let scope = Arc::new(RequestScope { user: Mutex::new(user), warnings: Mutex::new(Vec::new()) });
    let out = REQUEST.scope(scope.clone(), f).await;
    let warnings = std::mem::take(&mut *scope.warnings.lock().unwrap_or_else(|e| e.into_inner()));
    (out, warnings)
}

/// Adds admission's warnings as `Warning: 299 - "<text>"` headers, as upstream sends them.
pub fn add_warnings<B>(mut r: Response<B>, warnings: &[String]) -> Response<B> {
    for w in warnings {
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - {}", serde_json::to_string(w).unwrap_or_default())) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// The user the request acts as, once impersonation (`kubectl --as`) has been applied: what
/// webhooks see in `userInfo` and policies in `request.userInfo` and `authorizer`.
pub fn set_user(user: &UserInfo) {
    let _ = REQUEST.try_with(|s| *s.user.lock().unwrap_or_else(|e| e.into_inner()) = Some(user.clone()));
}

/// An annotation of the request's audit event (upstream's `Attributes.AddAnnotation`). This
/// server writes no audit log: annotations are logged, at info level under the
/// `timonier::audit` target.
fn audit_annotation(key: &str, value: &str) {
    tracing::info!(target: "timonier::audit", key, value, "admission audit annotation");
}

fn warn(text: String) {
    let _ = REQUEST.try_with(|s| s.warnings.lock().unwrap_or_else(|e| e.into_inner()).push(text));
}

/// The requesting user; writes made by the server itself (its controllers) are the
/// loopback client's, as upstream.
fn current_user() -> UserInfo {
    REQUEST.try_with(|s| s.user.lock().unwrap_or_else(|e| e.into_inner()).clone()).ok().flatten().unwrap_or_else(|| UserInfo {
        name: "system:apiserver".into(),
        groups: vec!["system:authenticated".into(), "system:masters".into()],
    })
}

/// Upstream exempts the admission configuration kinds themselves from dynamic admission, so
/// that a broken webhook can always be removed.
fn exempt(def: &ResourceDef) -> bool {
    def.group == "admissionregistration.k8s.io"
}

impl ApiState {
    /// Dynamic admission of one write: `obj` is the object written (mutated in place by
    /// mutating webhooks), `old` the stored one (update, delete).
    pub(crate) async fn admit(
        &self,
        def: &ResourceDef,
        subresource: &str,
        operation: Operation,
        obj: Option<&mut Value>,
        old: Option<&Value>,
        dry_run: bool,
    ) -> ApiResult<()> {
        if exempt(def) {
            // Not admitted, but a policy's expressions are checked when it is written.
            if let (Some(o), "validatingadmissionpolicies", "") = (obj, def.plural.as_str(), subresource) {
                return check_policy(def, o);
            }
            return Ok(());
        }
        let configs = self.admission_configs();
        if configs.is_empty() {
            return Ok(());
        }
        let source = obj.as_deref().or(old);
        let namespace = source.map(|o| crate::rest::meta_str(o, "namespace").to_string()).unwrap_or_default();
        let name = source.map(|o| crate::rest::meta_str(o, "name").to_string()).unwrap_or_default();
        let namespace_object = if def.namespaced && !namespace.is_empty() { self.namespace_object(&namespace) } else { None };
        let mut attrs = Attributes {
            def,
            subresource,
            operation,
            namespace,
            name,
            object: obj.as_deref().cloned(),
            old,
            dry_run,
            user: current_user(),
            namespace_object,
            equivalents: matching::equivalents(&self.registry().all, def, subresource),
        };
        if !configs.mutating.is_empty() && attrs.object.is_some() {
            webhook::mutate(self, &configs.mutating, &mut attrs).await?;
            if let (Some(new), Some(out)) = (attrs.object.as_ref(), obj) {
                if new != &*out {
                    *out = new.clone();
                    self.revalidate(def, subresource, out, old)?;
                }
            }
        }
        if !configs.validating.is_empty() {
            webhook::validate(self, &configs.validating, &attrs).await?;
        }
        if !configs.policies.is_empty() {
            policy::validate(self, &configs, &attrs)?;
        }
        Ok(())
    }

    /// Dynamic admission of `pods/{exec,attach,portforward}` (CONNECT): the object is the
    /// options the query gives, as upstream's `PodExecOptions` & co.
    pub(crate) async fn admit_connect(&self, ns: &str, name: &str, sub: &str, query: &str) -> ApiResult<()> {
        let def = self.def("", "v1", "pods")?;
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let all = |k: &str| -> Vec<Value> { pairs.iter().filter(|(n, _)| n == k).map(|(_, v)| json!(v)).collect() };
        let flag = |k: &str| pairs.iter().any(|(n, v)| n == k && (v == "true" || v == "1"));
        let one = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| json!(v)).unwrap_or(Value::Null);
        let mut options = match sub {
            "portforward" => json!({"kind": "PodPortForwardOptions", "ports": all("port").iter().filter_map(|p| p.as_str()?.parse::<i64>().ok()).collect::<Vec<_>>()}),
            "exec" => json!({"kind": "PodExecOptions", "command": all("command"), "container": one("container"), "stdin": flag("stdin"), "stdout": flag("stdout"), "stderr": flag("stderr"), "tty": flag("tty")}),
            _ => json!({"kind": "PodAttachOptions", "container": one("container"), "stdin": flag("stdin"), "stdout": flag("stdout"), "stderr": flag("stderr"), "tty": flag("tty")}),
        };
        options["apiVersion"] = json!("v1");
        // The options have no metadata: the request's namespace and name go in separately.
        let mut attrs_obj = options;
        attrs_obj["metadata"] = json!({"name": name, "namespace": ns});
        self.admit(&def, sub, Operation::Connect, Some(&mut attrs_obj), None, false).await
    }

    /// Upstream validates the object after mutating admission: a webhook cannot make it
    /// invalid.
    fn revalidate(&self, def: &ResourceDef, subresource: &str, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
        if !subresource.is_empty() {
            return Ok(());
        }
        let mut errs = match old {
            Some(old) => crate::strategy::validate_update(def, obj, old),
            None => crate::strategy::validate(def, obj),
        };
        errs.extend(self.validate_custom(def, obj));
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(def, crate::rest::meta_str(obj, "name"), errs))
        }
    }

    fn namespace_object(&self, ns: &str) -> Option<Arc<Value>> {
        let def = self.def("", "v1", "namespaces").ok()?;
        self.cache_of(&def).ok()?.get(&def.key("", ns))
    }

    /// The admission configurations, from the watch cache, in upstream's order (by name).
    fn admission_configs(&self) -> Configs {
        let list = |plural: &str| -> Vec<Arc<Value>> {
            let Ok(def) = self.def("admissionregistration.k8s.io", "v1", plural) else { return vec![] };
            let Ok(cache) = self.cache_of(&def) else { return vec![] };
            // Keys are `<prefix>/<name>`: the list comes sorted by name.
            cache.list(&def.namespace_prefix("")).into_iter().map(|(_, v)| v).collect()
        };
        let hooks = |configs: Vec<Arc<Value>>| -> Vec<webhook::Hook> {
            configs
                .iter()
                .flat_map(|c| {
                    let config = crate::rest::meta_str(c, "name").to_string();
                    c.get("webhooks").and_then(Value::as_array).cloned().unwrap_or_default().into_iter().map(move |w| webhook::Hook { config: config.clone(), spec: w })
                })
                .collect()
        };
        let policies = list("validatingadmissionpolicies");
        let bindings = if policies.is_empty() { vec![] } else { list("validatingadmissionpolicybindings") };
        Configs {
            mutating: hooks(list("mutatingwebhookconfigurations")),
            validating: hooks(list("validatingwebhookconfigurations")),
            policies,
            bindings,
        }
    }
}

/// The admission configurations in force for one request.
pub(crate) struct Configs {
    mutating: Vec<webhook::Hook>,
    validating: Vec<webhook::Hook>,
    policies: Vec<Arc<Value>>,
    bindings: Vec<Arc<Value>>,
}

impl Configs {
    fn is_empty(&self) -> bool {
        self.mutating.is_empty() && self.validating.is_empty() && (self.policies.is_empty() || self.bindings.is_empty())
    }
}

/// `<resource>.<group> "<name>" is forbidden: <message>`, upstream's `admission.NewForbidden`,
/// with the code and reason the caller gives.
fn forbidden(attrs: &Attributes, code: u16, reason: &'static str, message: &str) -> ApiError {
    let resource = if attrs.def.group.is_empty() { attrs.def.plural.clone() } else { format!("{}.{}", attrs.def.plural, attrs.def.group) };
    ApiError::new(code, reason, format!("{resource} {:?} is forbidden: {message}", attrs.name)).with_details(json!({
        "name": attrs.name, "group": attrs.def.group, "kind": attrs.def.plural, "causes": [{"message": message}],
    }))
}

/// A `metav1.StatusReason` from outside input, as the `&'static str` errors carry; reasons
/// this server does not know are dropped (the message still says what happened).
fn known_reason(reason: &str) -> &'static str {
    const REASONS: &[&str] = &[
        "Unauthorized", "Forbidden", "NotFound", "AlreadyExists", "Conflict", "Gone", "Invalid", "ServerTimeout", "Timeout",
        "TooManyRequests", "BadRequest", "MethodNotAllowed", "NotAcceptable", "RequestEntityTooLarge", "UnsupportedMediaType",
        "InternalError", "Expired", "ServiceUnavailable",
    ];
    REASONS.iter().find(|r| **r == reason).copied().unwrap_or("")
}
