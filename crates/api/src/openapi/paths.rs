//! The `paths` of the documents: for every resource and subresource, the operations upstream
//! publishes, each carrying `x-kubernetes-action` and `x-kubernetes-group-version-kind`. Write
//! operations carry `dryRun`, `fieldManager` and `fieldValidation`: kubectl looks for exactly
//! that (a PATCH operation of the kind with a `fieldValidation` query parameter) to decide that
//! the server validates fields itself.

use serde_json::{json, Map, Value};

use super::schemas::{Catalog, DELETE_OPTIONS, PATCH, STATUS};
use crate::resources::ResourceDef;

/// A query parameter: name, type, description.
pub(super) type Param = (&'static str, &'static str, &'static str);

const PRETTY: Param = ("pretty", "string", "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).");
const DRY_RUN: Param = ("dryRun", "string", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed");
const FIELD_MANAGER: Param = ("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.");
const FIELD_VALIDATION: Param = ("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.");
const FORCE: Param = ("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.");
const LIST: &[Param] = &[
    ("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
    ("continue", "string", "The continue option should be set when retrieving more results from the server."),
    ("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
    ("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
    ("limit", "integer", "limit is a maximum number of responses to return for a list call."),
    ("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
    ("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
    ("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
    ("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    ("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
];
const DELETE: &[Param] = &[
    DRY_RUN,
    ("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
    ("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean", "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error."),
    ("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7."),
    ("propagationPolicy", "string", "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
];
const EXEC: &[Param] = &[
    ("command", "string", "Command is the remote command to execute. argv array. Not executed within a shell."),
    ("container", "string", "Container in which to execute the command. Defaults to only container if there is only one container in the pod."),
    ("stderr", "boolean", "Redirect the standard error stream of the pod for this call."),
    ("stdin", "boolean", "Redirect the standard input stream of the pod for this call. Defaults to false."),
    ("stdout", "boolean", "Redirect the standard output stream of the pod for this call."),
    ("tty", "boolean", "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false."),
];
const LOG: &[Param] = &[
    ("container", "string", "The container for which to stream logs. Defaults to only container if there is one container in the pod."),
    ("follow", "boolean", "Follow the log stream of the pod. Defaults to false."),
    ("insecureSkipTLSVerifyBackend", "boolean", "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to."),
    ("limitBytes", "integer", "If set, the number of bytes to read from the server before terminating the log output."),
    ("previous", "boolean", "Return previous terminated container logs. Defaults to false."),
    ("sinceSeconds", "integer", "A relative time in seconds before the current time from which to show logs."),
    ("stream", "string", "Specify which container log stream to return to the client. Acceptable values are \"All\", \"Stdout\" and \"Stderr\"."),
    ("tailLines", "integer", "If set, the number of lines from the end of the logs to show."),
    ("timestamps", "boolean", "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false."),
];

/// What an operation takes and returns, by definition name.
#[derive(Default)]
pub(super) struct Payload {
    /// The request body's schema (None: no body).
    pub body: Option<String>,
    /// Whether the body is a patch (the four patch content types).
    pub patch: bool,
    /// The schema of the 200 answer.
    pub response: Option<String>,
    /// Whether 201 Created is also a success.
    pub created: bool,
}

/// One operation of one path.
pub(super) struct Op {
    /// `get`, `put`, `post`, `patch` or `delete`.
    pub method: &'static str,
    /// `x-kubernetes-action`.
    pub action: &'static str,
    pub operation_id: String,
    pub description: String,
    pub tag: String,
    /// `x-kubernetes-group-version-kind`.
    pub gvk: (String, String, String),
    pub params: Vec<Param>,
    pub payload: Payload,
}

/// A path with its operations; `namespace` and `name` are path parameters when present.
pub(super) struct PathItem {
    pub path: String,
    pub kind: String,
    pub namespace: bool,
    pub name: bool,
    pub ops: Vec<Op>,
}

/// `rbac.authorization.k8s.io` → ["rbac", "authorization"]; the core group is "core".
fn group_words(group: &str) -> Vec<String> {
    if group.is_empty() {
        return vec!["core".into()];
    }
    group.trim_end_matches(".k8s.io").split(['.', '-']).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The tag upstream gives the operations of a group version: `apps_v1`, `rbacAuthorization_v1`.
pub(super) fn tag(group: &str, version: &str) -> String {
    let words = group_words(group);
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        out.push_str(&if i == 0 { w.clone() } else { capitalize(w) });
    }
    format!("{out}_{version}")
}

/// The paths of one group version's resources.
pub(super) fn paths(defs: &[&ResourceDef], catalog: &Catalog) -> Vec<PathItem> {
    let mut out = Vec::new();
    for d in defs {
        resource_paths(d, catalog, &mut out);
    }
    out
}

fn resource_paths(d: &ResourceDef, catalog: &Catalog, out: &mut Vec<PathItem>) {
    let prefix = if d.group.is_empty() { format!("/api/{}", d.version) } else { format!("/apis/{}/{}", d.group, d.version) };
    let scope = if d.namespaced { "/namespaces/{namespace}" } else { "" };
    let words: String = group_words(&d.group).iter().map(|w| capitalize(w)).collect();
    let gv = format!("{words}{}", capitalize(&d.version));
    let ns_word = if d.namespaced { "Namespaced" } else { "" };
    let tag = tag(&d.group, &d.version);
    let gvk = (d.group.clone(), d.version.clone(), d.kind.clone());
    let schema = catalog.name_of(&d.group, &d.version, &d.kind).map(str::to_string);
    let list_schema = catalog.name_of(&d.group, &d.version, &d.list_kind()).map(str::to_string);
    let kind = &d.kind;
    let op = |method, action, verb: &str, sub: &str, description: String, params: Vec<Param>, payload: Payload, gvk: &(String, String, String)| Op {
        method,
        action,
        operation_id: format!("{verb}{gv}{ns_word}{kind}{}", capitalize(sub)),
        description,
        tag: tag.clone(),
        gvk: gvk.clone(),
        params,
        payload,
    };
    let write = vec![DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
    let mut patch_params = write.clone();
    patch_params.push(FORCE);

    let mut collection = Vec::new();
    if d.has_verb("list") {
        let payload = Payload { response: list_schema.clone(), ..Payload::default() };
        collection.push(op("get", "list", "list", "", format!("list or watch objects of kind {kind}"), LIST.to_vec(), payload, &gvk));
    }
    if d.has_verb("create") {
        let payload = Payload { body: schema.clone(), response: schema.clone(), created: true, ..Payload::default() };
        collection.push(op("post", "post", "create", "", format!("create a {kind}"), write.clone(), payload, &gvk));
    }
    if d.has_verb("deletecollection") {
        let mut params = DELETE.to_vec();
        params.extend_from_slice(LIST);
        let payload = Payload { body: Some(DELETE_OPTIONS.into()), response: Some(STATUS.into()), ..Payload::default() };
        collection.push(op("delete", "deletecollection", "deleteCollection", "", format!("delete collection of {kind}"), params, payload, &gvk));
    }
    if !collection.is_empty() {
        out.push(PathItem { path: format!("{prefix}{scope}/{}", d.plural), kind: kind.clone(), namespace: d.namespaced, name: false, ops: collection });
    }
    if d.namespaced && d.has_verb("list") {
        let payload = Payload { response: list_schema.clone(), ..Payload::default() };
        let mut o = op("get", "list", "list", "", format!("list or watch objects of kind {kind}"), LIST.to_vec(), payload, &gvk);
        o.operation_id = format!("list{gv}{kind}ForAllNamespaces");
        out.push(PathItem { path: format!("{prefix}/{}", d.plural), kind: kind.clone(), namespace: false, name: false, ops: vec![o] });
    }

    let mut item = Vec::new();
    if d.has_verb("get") {
        let payload = Payload { response: schema.clone(), ..Payload::default() };
        item.push(op("get", "get", "read", "", format!("read the specified {kind}"), vec![], payload, &gvk));
    }
    if d.has_verb("update") {
        let payload = Payload { body: schema.clone(), response: schema.clone(), created: true, ..Payload::default() };
        item.push(op("put", "put", "replace", "", format!("replace the specified {kind}"), write.clone(), payload, &gvk));
    }
    if d.has_verb("patch") {
        let payload = Payload { body: Some(PATCH.into()), patch: true, response: schema.clone(), created: true };
        item.push(op("patch", "patch", "patch", "", format!("partially update the specified {kind}"), patch_params.clone(), payload, &gvk));
    }
    if d.has_verb("delete") {
        let payload = Payload { body: Some(DELETE_OPTIONS.into()), response: Some(STATUS.into()), ..Payload::default() };
        item.push(op("delete", "delete", "delete", "", format!("delete a {kind}"), DELETE.to_vec(), payload, &gvk));
    }
    if !item.is_empty() {
        out.push(PathItem { path: format!("{prefix}{scope}/{}/{{name}}", d.plural), kind: kind.clone(), namespace: d.namespaced, name: true, ops: item });
    }

    for s in &d.subresources {
        let sgvk = (s.group.clone(), s.version.clone(), s.kind.clone());
        let sschema = catalog.name_of(&s.group, &s.version, &s.kind).map(str::to_string);
        let connect = matches!(s.name.as_str(), "exec" | "attach" | "portforward" | "proxy");
        let name = s.name.as_str();
        let mut ops = Vec::new();
        for verb in &s.verbs {
            let o = match (verb.as_str(), connect) {
                ("get", true) | ("create", true) | ("update", true) | ("patch", true) | ("delete", true) => {
                    let (method, http) = match verb.as_str() {
                        "get" => ("get", "Get"),
                        "create" => ("post", "Post"),
                        "update" => ("put", "Put"),
                        "patch" => ("patch", "Patch"),
                        _ => ("delete", "Delete"),
                    };
                    let params = match name {
                        "exec" => EXEC.to_vec(),
                        "attach" => EXEC.iter().copied().filter(|p| p.0 != "command").collect(),
                        "portforward" => vec![("ports", "integer", "List of ports to forward. Required when using WebSockets")],
                        _ => vec![("path", "string", "Path is the URL path to use for the current proxy request to pod.")],
                    };
                    let mut o = op(method, "connect", "connect", name, format!("connect {} requests to {name} of {kind}", http.to_uppercase()), params, Payload::default(), &sgvk);
                    o.operation_id = format!("connect{gv}{http}{ns_word}{kind}{}", capitalize(name));
                    o
                }
                ("get", false) => {
                    let (params, response) = if name == "log" { (LOG.to_vec(), None) } else { (vec![], sschema.clone()) };
                    op("get", "get", "read", name, format!("read {name} of the specified {kind}"), params, Payload { response, ..Payload::default() }, &sgvk)
                }
                ("update", false) => {
                    let payload = Payload { body: sschema.clone(), response: sschema.clone(), created: true, ..Payload::default() };
                    op("put", "put", "replace", name, format!("replace {name} of the specified {kind}"), write.clone(), payload, &sgvk)
                }
                ("patch", false) => {
                    let payload = Payload { body: Some(PATCH.into()), patch: true, response: sschema.clone(), created: true };
                    op("patch", "patch", "patch", name, format!("partially update {name} of the specified {kind}"), patch_params.clone(), payload, &sgvk)
                }
                ("create", false) => {
                    let payload = Payload { body: sschema.clone(), response: sschema.clone(), created: true, ..Payload::default() };
                    op("post", "post", "create", name, format!("create {name} of a {kind}"), write.clone(), payload, &sgvk)
                }
                _ => continue,
            };
            ops.push(o);
        }
        if !ops.is_empty() {
            out.push(PathItem { path: format!("{prefix}{scope}/{}/{{name}}/{name}", d.plural), kind: kind.clone(), namespace: d.namespaced, name: true, ops });
        }
    }
}

/// `{"$ref": …}` to a definition, in the given document flavour.
fn schema_ref(name: &str, v2: bool) -> Value {
    if v2 {
        json!({"$ref": format!("#/definitions/{name}")})
    } else {
        json!({"$ref": format!("{}{name}", super::schemas::REF_PREFIX)})
    }
}

/// A parameter object: v3 puts the type in `schema`, v2 beside the name.
fn param(name: &str, location: &str, ty: &str, description: &str, required: bool, v2: bool) -> Value {
    let mut p = Map::new();
    p.insert("name".into(), json!(name));
    p.insert("in".into(), json!(location));
    p.insert("description".into(), json!(description));
    if required {
        p.insert("required".into(), json!(true));
    }
    if v2 {
        p.insert("type".into(), json!(ty));
        p.insert("uniqueItems".into(), json!(true));
    } else {
        p.insert("schema".into(), json!({"type": ty, "uniqueItems": true}));
    }
    Value::Object(p)
}

const PATCH_TYPES: &[&str] = &["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"];
const PRODUCES: &[&str] = &["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"];

/// Renders path items as an OpenAPI `paths` object, v3 (`v2 == false`) or Swagger 2.0.
pub(super) fn render(items: &[PathItem], v2: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for item in items {
        let mut path = Map::new();
        let mut common = Vec::new();
        if item.name {
            common.push(param("name", "path", "string", &format!("name of the {}", item.kind), true, v2));
        }
        if item.namespace {
            common.push(param("namespace", "path", "string", "object name and auth scope, such as for teams and projects", true, v2));
        }
        common.push(param(PRETTY.0, "query", PRETTY.1, PRETTY.2, false, v2));
        path.insert("parameters".into(), Value::Array(common));
        for op in &item.ops {
            path.insert(op.method.into(), render_op(op, v2));
        }
        out.insert(item.path.clone(), Value::Object(path));
    }
    out
}

fn render_op(op: &Op, v2: bool) -> Value {
    let mut o = Map::new();
    o.insert("tags".into(), json!([op.tag]));
    o.insert("description".into(), json!(op.description));
    o.insert("operationId".into(), json!(op.operation_id));
    let mut params: Vec<Value> = Vec::new();
    let body_types: Vec<&str> = if op.payload.patch { PATCH_TYPES.to_vec() } else { vec!["*/*"] };
    if let Some(body) = &op.payload.body {
        if v2 {
            params.push(json!({"name": "body", "in": "body", "required": true, "schema": schema_ref(body, true)}));
        } else {
            let content: Map<String, Value> = body_types.iter().map(|t| (t.to_string(), json!({"schema": schema_ref(body, false)}))).collect();
            o.insert("requestBody".into(), json!({"content": content, "required": op.payload.body.is_some()}));
        }
    }
    params.extend(op.params.iter().map(|(n, t, d)| param(n, "query", t, d, false, v2)));
    o.insert("parameters".into(), Value::Array(params));
    let ok = |desc: &str| -> Value {
        match &op.payload.response {
            Some(r) if v2 => json!({"description": desc, "schema": schema_ref(r, true)}),
            Some(r) => {
                let content: Map<String, Value> = PRODUCES.iter().map(|t| (t.to_string(), json!({"schema": schema_ref(r, false)}))).collect();
                json!({"description": desc, "content": content})
            }
            None => json!({"description": desc}),
        }
    };
    let mut responses = Map::new();
    responses.insert("200".into(), ok("OK"));
    if op.payload.created {
        responses.insert("201".into(), ok("Created"));
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    o.insert("responses".into(), Value::Object(responses));
    if v2 {
        if op.payload.body.is_some() {
            o.insert("consumes".into(), json!(body_types));
        }
        o.insert("produces".into(), json!(PRODUCES));
        o.insert("schemes".into(), json!(["https"]));
    }
    o.insert("x-kubernetes-action".into(), json!(op.action));
    o.insert("x-kubernetes-group-version-kind".into(), super::schemas::gvk_value(&op.gvk.0, &op.gvk.1, &op.gvk.2));
    Value::Object(o)
}
