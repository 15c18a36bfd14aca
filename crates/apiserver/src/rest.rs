//! The generic REST store: create, get, list, update, patch and delete for every resource,
//! over the store (writes) and the watch cache (reads), with the per-kind strategy applied.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use timonier_api::resources::ResourceDef;
use timonier_api::selector::{FieldSelector, LabelSelector};
use timonier_store::{KeyValue, ListOptions, StoreError};

use crate::admission::Operation;
use crate::error::{ApiError, ApiResult};
use crate::request::Query;
use crate::state::ApiState;
use crate::strategy;

/// Characters of generated name suffixes, as upstream (no vowels, no look-alikes).
const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The current time as Kubernetes writes timestamps (second precision, UTC).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(crate) fn random_suffix(n: usize) -> String {
    let bytes = uuid::Uuid::new_v4();
    bytes.as_bytes().iter().take(n).map(|b| NAME_CHARS[*b as usize % NAME_CHARS.len()] as char).collect()
}

pub fn meta(obj: &Value) -> &Value {
    obj.get("metadata").unwrap_or(&Value::Null)
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    meta(obj).get(field).and_then(Value::as_str).unwrap_or("")
}

fn meta_mut(obj: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    let m = obj.as_object_mut().ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
    let meta = m.entry("metadata").or_insert_with(|| json!({}));
    if meta.is_null() {
        *meta = json!({});
    }
    meta.as_object_mut().ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// Fills in the request's namespace, refusing a body that names another.
fn set_namespace(meta: &mut Map<String, Value>, ns: &str) -> ApiResult<()> {
    match meta.get("namespace").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n != ns => {
            Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"))
        }
        _ => {
            meta.insert("namespace".into(), Value::String(ns.into()));
            Ok(())
        }
    }
}

/// Turns "not found" into success: for controllers, an object that is gone needs nothing.
pub fn ignore_not_found<T>(r: ApiResult<T>) -> ApiResult<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Serializes an object for the store: without resourceVersion, which is the store's
/// revision and is stamped on read.
fn to_stored(obj: &Value) -> ApiResult<Bytes> {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&o).map(Bytes::from).map_err(|e| ApiError::internal(e.to_string()))
}

fn from_stored(kv: &KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    set_rv(&mut v, kv.mod_revision);
    Ok(v)
}

pub fn set_rv(obj: &mut Value, rv: i64) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// Checks apiVersion and kind of a request body against the endpoint, filling them in when
/// absent (as upstream's decoder defaults them).
fn check_type(def: &ResourceDef, obj: &mut Value, kind: &str, api_version: &str) -> ApiResult<()> {
    let m = obj.as_object_mut().ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
    match m.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v != api_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )))
        }
        _ => {
            m.insert("apiVersion".into(), Value::String(api_version.into()));
        }
    }
    match m.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() && k != kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({kind}) for {}",
                def.qualified_plural()
            )))
        }
        _ => {
            m.insert("kind".into(), Value::String(kind.into()));
        }
    }
    Ok(())
}

/// The options of a write request.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// The manager when the request names none: the User-Agent's product, as upstream.
    pub user_agent: Option<String>,
    /// `force` of a server-side apply.
    pub force: bool,
    /// The object's managedFields were already computed (server-side apply).
    pub managed: bool,
    /// `fieldValidation=Strict`: unknown fields are errors.
    pub strict: bool,
}

impl WriteOptions {
    pub fn from_query(q: &Query) -> ApiResult<WriteOptions> {
        let dry_run = match q.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!("unsupported dryRun value {other:?}: only \"All\" is supported")))
            }
        };
        if let Some(fv) = q.get("fieldValidation") {
            if !["", "Strict", "Warn", "Ignore"].contains(&fv) {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {fv:?}"
                )));
            }
        }
        let field_manager = q.get("fieldManager").filter(|m| !m.is_empty()).map(str::to_string);
        if let Some(m) = &field_manager {
            if m.len() > 128 {
                return Err(ApiError::bad_request("fieldManager: Too long: may not be more than 128 bytes".to_string()));
            }
        }
        let strict = q.get("fieldValidation") == Some("Strict");
        Ok(WriteOptions { dry_run, field_manager, force: q.flag("force"), strict, ..Default::default() })
    }

    /// Who the write is recorded under in managedFields.
    pub fn manager(&self) -> String {
        if let Some(m) = &self.field_manager {
            return m.clone();
        }
        let ua = self.user_agent.as_deref().unwrap_or("unknown");
        ua.split('/').next().unwrap_or("unknown").chars().take(128).collect()
    }
}

/// Finalises a written object: gives it the zero values Go's encoding of its kind would
/// (upstream stores what its structs encode; typed clients rely on it), then records who
/// changed which fields (managedFields) for a non-apply write.
fn track(def: &ResourceDef, old: Option<&Value>, mut new: Value, opts: &WriteOptions, mode: Mode) -> Value {
    if !timonier_api::resources::is_custom(def) {
        timonier_api::gojson::normalize(&def.group, &def.version, &def.kind, &mut new);
    }
    if opts.managed {
        return new;
    }
    let now = now_rfc3339();
    match mode {
        Mode::Status | Mode::Approval => {
            let scope = timonier_api::patch::apply::Scope::status_subresource(&def.group, &def.version, &def.kind);
            timonier_api::patch::apply::track_update_in(&scope, old, &new, &opts.manager(), &now)
        }
        _ => timonier_api::patch::apply::track_update(old, &new, &opts.manager(), &def.group, &def.version, &def.kind, &now),
    }
}

impl ApiState {
    async fn check_namespace_for_create(&self, def: &ResourceDef, ns: &str) -> ApiResult<()> {
        if !def.namespaced {
            return Ok(());
        }
        // A namespace created just before must be seen.
        self.cache.wait_fresh().await?;
        let namespaces = self.def("", "v1", "namespaces")?;
        let cache = self.cache_of(&namespaces)?;
        match cache.get(&namespaces.key("", ns)) {
            None => Err(ApiError::not_found(&namespaces, ns)),
            Some(n) if !meta_str(&n, "deletionTimestamp").is_empty() => Err(ApiError::forbidden(format!(
                "{} {:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                def.qualified_plural(),
                meta_str(&n, "name")
            ))),
            Some(_) => Ok(()),
        }
    }

    /// POST: creates an object.
    pub async fn create(&self, def: &Arc<ResourceDef>, ns: &str, mut obj: Value, opts: &WriteOptions) -> ApiResult<Value> {
        check_type(def, &mut obj, &def.kind, &def.api_version())?;
        let meta = meta_mut(&mut obj)?;
        if def.namespaced {
            set_namespace(meta, ns)?;
        } else {
            meta.remove("namespace");
        }
        let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        if name.is_empty() {
            if let Some(prefix) = meta.get("generateName").and_then(Value::as_str).filter(|p| !p.is_empty()) {
                // Upstream keeps the prefix short enough that the full name stays valid.
                let prefix: String = prefix.chars().take(58).collect();
                let generated = format!("{prefix}{}", random_suffix(5));
                meta.insert("name".into(), Value::String(generated));
            }
        }
        for (k, v) in [("uid", json!(uuid::Uuid::new_v4().to_string())), ("creationTimestamp", json!(now_rfc3339()))] {
            meta.insert(k.into(), v);
        }
        for k in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            meta.remove(k);
        }
        if meta.get("generation").is_some() {
            meta.remove("generation");
        }
        strategy::default(def, &mut obj);
        strategy::prepare_for_create(def, &mut obj);
        obj = track(def, None, obj, opts, Mode::Main);
        let name = meta_str(&obj, "name").to_string();
        let mut errs = strategy::validate(def, &obj);
        errs.extend(self.validate_custom(def, &mut obj));
        if !errs.is_empty() {
            return Err(ApiError::invalid(def, &name, errs));
        }
        self.check_namespace_for_create(def, ns).await?;
        crate::builtin_admission::admit(self, def, "", Operation::Create, Some(&obj), None)?;
        self.admit_create(def, &mut obj, opts).await?;
        if let Err(e) = self.admit(def, "", Operation::Create, Some(&mut obj), None, opts.dry_run).await {
            if !opts.dry_run {
                self.release(def, &obj).await;
            }
            return Err(e);
        }
        if opts.dry_run {
            return Ok(obj);
        }
        let key = def.key(ns, &name);
        match self.store.create(&key, to_stored(&obj)?).await {
            Ok(rev) => {
                set_rv(&mut obj, rev);
                Ok(obj)
            }
            Err(StoreError::AlreadyExists { .. }) => {
                self.release(def, &obj).await;
                Err(ApiError::already_exists(def, &name))
            }
            Err(e) => {
                self.release(def, &obj).await;
                Err(ApiError::from_store(e))
            }
        }
    }

    /// A custom resource's schema validation and pruning (nothing for built-in kinds).
    pub(crate) fn validate_custom(&self, def: &ResourceDef, obj: &mut Value) -> Vec<crate::error::FieldError> {
        if !timonier_api::resources::is_custom(def) {
            return vec![];
        }
        let Some(crd) = self.crd_for(def) else { return vec![] };
        match crate::crd::version_of(&crd, &def.version).and_then(|v| v.pointer("/schema/openAPIV3Schema")) {
            Some(schema) => crate::crd::validate_and_prune(schema, obj),
            None => vec![],
        }
    }

    /// GET of one object, from the watch cache once it has caught up.
    pub async fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> ApiResult<Arc<Value>> {
        let cache = self.cache_of(def)?;
        self.cache.wait_fresh().await?;
        cache.get(&def.key(ns, name)).ok_or_else(|| ApiError::not_found(def, name))
    }

    /// The object as stored now, with its revision (for read-modify-write).
    async fn read_current(&self, def: &ResourceDef, ns: &str, name: &str) -> ApiResult<(Value, i64)> {
        match self.store.get(&def.key(ns, name)).await.map_err(ApiError::from_store)? {
            Some(kv) => Ok((from_stored(&kv)?, kv.mod_revision)),
            None => Err(ApiError::not_found(def, name)),
        }
    }

    /// LIST: a page of the objects matching the selectors, from the cache (or, for the
    /// later pages of a paginated list, from the store at the first page's revision).
    pub async fn list(&self, def: &ResourceDef, ns: &str, q: &Query) -> ApiResult<ListPage> {
        let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = self.field_selector(def, q.get("fieldSelector").unwrap_or(""))?;
        let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
        let prefix = def.namespace_prefix(ns);
        let matches = |obj: &Value| selects(&labels, &fields, obj);
        if let Some(token) = q.get("continue").filter(|c| !c.is_empty()) {
            let (rev, start) = decode_continue(token, &prefix)?;
            // While the resource is unchanged since the first page, the cache holds that very
            // snapshot; otherwise the store reads it at the first page's revision.
            if rev <= self.cache.revision() {
                if let Some((page, more)) = self.cache_of(def)?.list_after(&prefix, &start, rev, limit.unwrap_or(usize::MAX), matches) {
                    let next = if more { page.last().map(|(k, _)| encode_continue(rev, k, &prefix)) } else { None };
                    return Ok(ListPage { items: page.into_iter().map(|(_, v)| v).collect(), revision: rev, continue_token: next });
                }
            }
            return self.list_from_store(&prefix, rev, Some(start), limit, &matches).await;
        }
        let cache = self.cache_of(def)?;
        let revision = match q.resource_version()? {
            // "0": any revision will do; "" or a specific one: at least the latest.
            Some("0") => self.cache.revision(),
            _ => self.cache.wait_fresh().await?,
        };
        let mut items = Vec::new();
        let mut last_key = String::new();
        let mut next = None;
        for (key, obj) in cache.list(&prefix) {
            if !matches(&obj) {
                continue;
            }
            if limit.is_some_and(|l| items.len() == l) {
                // More follow: the next page starts after the last item of this one.
                next = Some(encode_continue(revision, &last_key, &prefix));
                break;
            }
            last_key = key;
            items.push(obj);
        }
        Ok(ListPage { items, revision, continue_token: next })
    }

    async fn list_from_store(
        &self,
        prefix: &str,
        revision: i64,
        mut start: Option<String>,
        limit: Option<usize>,
        matches: &(dyn Fn(&Value) -> bool + Sync),
    ) -> ApiResult<ListPage> {
        let mut items = Vec::new();
        loop {
            let want = limit.map_or(0, |l| (l - items.len()).max(1));
            let page = self
                .store
                .list(prefix, ListOptions { revision: Some(revision), limit: want, start_after: start.clone() })
                .await
                .map_err(|e| match e {
                    StoreError::Compacted { .. } => ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ),
                    e => ApiError::from_store(e),
                })?;
            for kv in &page.items {
                let obj = from_stored(kv)?;
                if matches(&obj) {
                    items.push(Arc::new(obj));
                }
            }
            start = page.items.last().map(|kv| kv.key.clone());
            let full = limit.is_some_and(|l| items.len() >= l);
            if !page.more || full {
                let next = if page.more { start.map(|s| encode_continue(revision, &s, prefix)) } else { None };
                return Ok(ListPage { items, revision, continue_token: next });
            }
        }
    }

    pub fn field_selector(&self, def: &ResourceDef, s: &str) -> ApiResult<FieldSelector> {
        let fields = FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let allowed = strategy::selectable_fields(def);
        for f in fields.fields() {
            if f != "metadata.name" && f != "metadata.namespace" && !allowed.contains(&f) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {f}"
                )));
            }
        }
        Ok(fields)
    }

    /// PUT: replaces an object (optimistic concurrency on its resourceVersion).
    pub async fn update(&self, def: &Arc<ResourceDef>, ns: &str, name: &str, mut obj: Value, opts: &WriteOptions) -> ApiResult<Value> {
        check_type(def, &mut obj, &def.kind, &def.api_version())?;
        let meta = meta_mut(&mut obj)?;
        match meta.get("name").and_then(Value::as_str) {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            _ => {
                meta.insert("name".into(), Value::String(name.into()));
            }
        }
        if def.namespaced {
            set_namespace(meta, ns)?;
        }
        let precondition = meta.get("resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let precondition = match precondition {
            Some(rv) => Some(crate::request::parse_resource_version(&rv)?),
            None => None,
        };
        self.guaranteed_update(def, ns, name, precondition, opts, |_old| Ok(obj.clone()), Mode::Main).await
    }

    /// Read-modify-write with retries on conflict: `mutate` gets the current object and
    /// returns the desired one, which then goes through the strategy and validation.
    #[allow(clippy::too_many_arguments)]
    pub async fn guaranteed_update(
        &self,
        def: &Arc<ResourceDef>,
        ns: &str,
        name: &str,
        precondition: Option<i64>,
        opts: &WriteOptions,
        mutate: impl Fn(&Value) -> ApiResult<Value>,
        mode: Mode,
    ) -> ApiResult<Value> {
        let key = def.key(ns, name);
        for _ in 0..16 {
            let (old, rev) = self.read_current(def, ns, name).await?;
            if let Some(p) = precondition {
                if p != rev {
                    return Err(ApiError::modified(def, name));
                }
            }
            let mut new = mutate(&old)?;
            check_type(def, &mut new, &def.kind, &def.api_version())?;
            match mode {
                Mode::Main => {
                    preserve_server_metadata(&mut new, &old)?;
                    strategy::default(def, &mut new);
                    // Encoded as it will be stored before the spec is compared with the stored
                    // one: a client that leaves out Go's zero values (`creationTimestamp: null`
                    // in a template) has not changed the spec.
                    if !timonier_api::resources::is_custom(def) {
                        timonier_api::gojson::normalize(&def.group, &def.version, &def.kind, &mut new);
                    }
                    strategy::prepare_for_update(def, &mut new, &old);
                }
                Mode::Whole => preserve_server_metadata(&mut new, &old)?,
                Mode::Status => {
                    // A status write changes the status only.
                    let status = new.get("status").cloned();
                    new = old.clone();
                    if let Some(m) = new.as_object_mut() {
                        match status {
                            Some(s) => m.insert("status".into(), s),
                            None => m.remove("status"),
                        };
                    }
                    strategy::prepare_for_status_update(def, &mut new, &old);
                }
                Mode::Approval => strategy::prepare_for_approval(def, &mut new, &old),
            }
            let mut errs = strategy::validate_update(def, &new, &old);
            if mode == Mode::Status {
                errs.extend(strategy::validate_status_update(def, &new, &old));
            }
            errs.extend(self.validate_custom(def, &mut new));
            if !errs.is_empty() {
                return Err(ApiError::invalid(def, name, errs));
            }
            new = track(def, Some(&old), new, opts, mode);
            let subresource = match mode {
                Mode::Status => "status",
                Mode::Approval => "approval",
                _ => "",
            };
            crate::builtin_admission::admit(self, def, subresource, Operation::Update, Some(&new), Some(&old))?;
            self.admit(def, subresource, Operation::Update, Some(&mut new), Some(&old), opts.dry_run).await?;
            if new == old {
                return Ok(old);
            }
            if opts.dry_run {
                return Ok(new);
            }
            // An update that removes the last finalizer of an object being deleted deletes it.
            if !meta_str(&new, "deletionTimestamp").is_empty() && !holds_deletion(def, &new) {
                return match self.store.delete(&key, Some(rev)).await {
                    Ok(d) => {
                        self.release(def, &new).await;
                        set_rv(&mut new, d.revision);
                        Ok(new)
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(StoreError::NotFound { .. }) => Err(ApiError::not_found(def, name)),
                    Err(e) => Err(ApiError::from_store(e)),
                };
            }
            match self.store.update(&key, to_stored(&new)?, rev).await {
                Ok(r) => {
                    set_rv(&mut new, r);
                    return Ok(new);
                }
                Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
                Err(StoreError::Conflict { .. }) => return Err(ApiError::modified(def, name)),
                Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(def, name)),
                Err(e) => return Err(ApiError::from_store(e)),
            }
        }
        Err(ApiError::conflict(def, name, "too many concurrent updates; try again"))
    }

    /// DELETE of one object: graceful or finalizer-held deletions mark the object; others
    /// remove it. Returns the object (when it still exists) or the removed object.
    pub async fn delete(&self, def: &Arc<ResourceDef>, ns: &str, name: &str, opts: &DeleteOptions) -> ApiResult<(Value, bool)> {
        let key = def.key(ns, name);
        for _ in 0..16 {
            let (old, rev) = self.read_current(def, ns, name).await?;
            if let Some(uid) = &opts.uid {
                if meta_str(&old, "uid") != uid {
                    return Err(ApiError::conflict(def, name, &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&old, "uid")
                    )));
                }
            }
            if let Some(p) = opts.resource_version {
                if p != rev {
                    return Err(ApiError::conflict(def, name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {p}, ResourceVersion in object meta: {rev}"
                    )));
                }
            }
            crate::builtin_admission::admit(self, def, "", Operation::Delete, None, Some(&old))?;
            self.admit(def, "", Operation::Delete, None, Some(&old), opts.dry_run).await?;
            let mut new = old.clone();
            let mut changed = false;
            let grace = self.grace_period(def, &old, opts.grace_period_seconds);
            let mut fins = finalizers(&old);
            match opts.propagation.as_deref() {
                Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
                    fins.push("foregroundDeletion".into());
                    changed = true;
                }
                Some("Orphan") if !fins.iter().any(|f| f == "orphan") => {
                    fins.push("orphan".into());
                    changed = true;
                }
                _ => {}
            }
            if let Some(g) = grace.filter(|g| *g > 0) {
                // Graceful: the node agent finishes the deletion.
                let m = meta_mut(&mut new)?;
                let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(g);
                let current = m.get("deletionGracePeriodSeconds").and_then(Value::as_i64);
                if current.is_none_or(|c| g < c) {
                    m.insert("deletionTimestamp".into(), json!(deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
                    m.insert("deletionGracePeriodSeconds".into(), json!(g));
                    changed = true;
                }
            } else if !fins.is_empty() || namespace_finalizing(def, &old) {
                let m = meta_mut(&mut new)?;
                if m.get("deletionTimestamp").is_none_or(Value::is_null) {
                    m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    m.insert("deletionGracePeriodSeconds".into(), json!(0));
                    changed = true;
                }
            }
            if !fins.is_empty() || grace.is_some_and(|g| g > 0) || namespace_finalizing(def, &old) {
                if changed {
                    if !fins.is_empty() {
                        meta_mut(&mut new)?.insert("finalizers".into(), json!(fins));
                    }
                    if def.plural == "namespaces" {
                        if let Some(m) = new.as_object_mut() {
                            m.insert("status".into(), json!({"phase": "Terminating"}));
                        }
                    }
                }
                if opts.dry_run || !changed {
                    return Ok((new, false));
                }
                match self.store.update(&key, to_stored(&new)?, rev).await {
                    Ok(r) => {
                        set_rv(&mut new, r);
                        return Ok((new, false));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(def, name)),
                    Err(e) => return Err(ApiError::from_store(e)),
                }
            }
            if opts.dry_run {
                return Ok((old, true));
            }
            match self.store.delete(&key, Some(rev)).await {
                Ok(d) => {
                    self.release(def, &old).await;
                    let mut gone = old;
                    set_rv(&mut gone, d.revision);
                    return Ok((gone, true));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(def, name)),
                Err(e) => return Err(ApiError::from_store(e)),
            }
        }
        Err(ApiError::conflict(def, name, "too many concurrent updates; try again"))
    }

    /// The grace period of a deletion: pods bound to a node get one (their node agent
    /// confirms the deletion); everything else is deleted at once.
    fn grace_period(&self, def: &ResourceDef, obj: &Value, requested: Option<i64>) -> Option<i64> {
        if !def.group.is_empty() || def.kind != "Pod" {
            return None;
        }
        let bound = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        let phase = obj.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
        if !bound || phase == "Succeeded" || phase == "Failed" {
            return Some(0);
        }
        let default = obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
        // A requested 0 (`kubectl delete --force --grace-period=0`, or the node agent's
        // confirmation) deletes at once.
        Some(requested.unwrap_or(default).max(0))
    }
}

/// Whether something still holds an object's deletion: finalizers (a namespace's
/// `spec.finalizers` too) or a pod's grace period, which its node agent ends.
fn holds_deletion(def: &ResourceDef, obj: &Value) -> bool {
    let graceful = def.group.is_empty()
        && def.kind == "Pod"
        && obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).is_some_and(|g| g > 0);
    graceful || !finalizers(obj).is_empty() || namespace_finalizing(def, obj)
}

fn namespace_finalizing(def: &ResourceDef, obj: &Value) -> bool {
    def.group.is_empty() && def.kind == "Namespace" && obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// What kind of write an update is: to the object, or to its status subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Main,
    Status,
    /// A write of CertificateSigningRequests' `approval` subresource: the conditions only.
    Approval,
    /// A write of the server's own (binding) that may change spec and status together.
    Whole,
}

/// Keeps the metadata only the server sets (uid, creation time, deletion state) from the
/// stored object: clients cannot change them with an update.
fn preserve_server_metadata(new: &mut Value, old: &Value) -> ApiResult<()> {
    let old_meta = meta(old).clone();
    let m = meta_mut(new)?;
    for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace", "name"] {
        match old_meta.get(k) {
            Some(v) => m.insert(k.into(), v.clone()),
            None => m.remove(k),
        };
    }
    if let Some(g) = old_meta.get("generation") {
        m.insert("generation".into(), g.clone());
    }
    m.remove("resourceVersion");
    Ok(())
}

/// Options of a DELETE, from its body (`DeleteOptions`) and query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<i64>,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn parse(body: Option<&Value>, q: &Query) -> ApiResult<DeleteOptions> {
        let mut o = DeleteOptions {
            grace_period_seconds: q.int("gracePeriodSeconds")?,
            propagation: q.get("propagationPolicy").map(str::to_string),
            dry_run: q.get("dryRun") == Some("All"),
            ..Default::default()
        };
        if let Some(b) = body.filter(|b| b.is_object()) {
            if let Some(g) = b.get("gracePeriodSeconds").and_then(Value::as_i64) {
                o.grace_period_seconds = Some(g);
            }
            if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
                o.propagation = Some(p.into());
            } else if b.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
                o.propagation = Some("Orphan".into());
            }
            if let Some(p) = b.get("preconditions") {
                o.uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
                if let Some(rv) = p.get("resourceVersion").and_then(Value::as_str) {
                    o.resource_version = Some(crate::request::parse_resource_version(rv)?);
                }
            }
            if let Some(d) = b.get("dryRun").and_then(Value::as_array) {
                o.dry_run |= d.iter().any(|v| v == "All");
            }
        }
        if let Some(p) = &o.propagation {
            if !["Background", "Foreground", "Orphan"].contains(&p.as_str()) {
                return Err(ApiError::invalid_delete(p));
            }
        }
        Ok(o)
    }
}

impl ApiError {
    fn invalid_delete(policy: &str) -> ApiError {
        ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {policy:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        ))
    }
}

/// One page of a list.
pub struct ListPage {
    pub items: Vec<Arc<Value>>,
    pub revision: i64,
    pub continue_token: Option<String>,
}

/// Whether an object passes the label and field selectors.
pub fn selects(labels: &LabelSelector, fields: &FieldSelector, obj: &Value) -> bool {
    labels.matches(meta(obj).get("labels").and_then(Value::as_object))
        && fields.matches(|f| match f {
            "metadata.name" => Some(meta_str(obj, "name").to_string()),
            "metadata.namespace" => Some(meta_str(obj, "namespace").to_string()),
            other => strategy::field_value(obj, other)
        })
}

fn encode_continue(revision: i64, last_key: &str, prefix: &str) -> String {
    use base64::Engine;
    let start = last_key.strip_prefix(prefix).unwrap_or(last_key);
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> ApiResult<(i64, String)> {
    use base64::Engine;
    let bad = || ApiError::bad_request("continue key is not valid: ".to_string() + token);
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, format!("{prefix}{start}")))
}
