//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`), following
//! k8s.io/apimachinery `pkg/util/strategicpatch` as kube-apiserver applies it
//! (`StrategicMergeMapPatch`: parallel lists merged, unmatched nulls ignored).
//!
//! A JSON merge patch where each field's type metadata decides how lists combine:
//! - objects merge recursively, `null` deletes a key;
//! - lists with patch strategy `merge` merge: lists of objects by their merge key
//!   (`containers` by `name`, container `ports` by `containerPort`, ...), lists of scalars
//!   as a set (`finalizers`); other lists, and everything under strategy `replace`, replace;
//! - directives: `$patch: replace|delete` on objects, `$patch: replace|delete` as list items,
//!   `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>` and `$retainKeys`;
//! - order of a merged list, as upstream: the patch's items in the patch's (or
//!   `$setElementOrder`'s) order, interleaved with the live list's other items in theirs;
//!   a patch item the live list lacks goes before the live-only items not placed yet, so
//!   without `$setElementOrder` a new container lands first.
//!
//! The metadata comes from `merge_meta.rs`, generated from the Kubernetes 1.33 OpenAPI (see
//! its header). Deliberate differences from upstream, all on inputs upstream rejects or
//! stores oddly: keys unknown to the metadata are plain JSON where upstream fails with
//! "unable to find api field"; directive keys and `$patch` items are always removed from the
//! result and `null` map values always dropped (upstream leaves some in a replaced value for
//! its typed decoding to drop); `$setElementOrder` over two empty lists is not an error.

#[path = "smp_meta.rs"]
mod meta;
#[path = "merge_meta.rs"]
mod merge_meta;
#[cfg(test)]
#[path = "strategic_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "strategic_kube_tests.rs"]
mod kube_tests;

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use self::meta::{Ctx, FieldMeta, Schema};
use super::PatchError;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList";

static SCHEMA: Schema = Schema::new(merge_meta::TYPES);

/// A strategic merge patch failure, with the HTTP status kube-apiserver answers for it:
/// 400 (a patch that is no object, malformed `$retainKeys` / parallel-list directives),
/// 422 (lists of lists) or 500 (every other error of the Go library, e.g. a missing merge key
/// or an unknown `$patch` value, which upstream does not map to a status and so reports as an
/// InternalError with reason Unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status code upstream answers with.
    pub status: u16,
    /// The error message, worded as upstream's.
    pub message: String,
}

impl Failure {
    fn bad(message: impl Into<String>) -> Self {
        Failure { status: 400, message: message.into() }
    }
    fn internal(message: impl Into<String>) -> Self {
        Failure { status: 500, message: message.into() }
    }
}

impl From<Failure> for PatchError {
    fn from(f: Failure) -> Self {
        match f.status {
            400 => PatchError::BadPatch(f.message),
            _ => PatchError::CannotApply(f.message),
        }
    }
}

/// The OpenAPI definition name of a served kind's root type, e.g. ("apps", "v1",
/// "Deployment") → `io.k8s.api.apps.v1.Deployment`; `None` when there is no SMP metadata.
pub fn root_type(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    merge_meta::KINDS
        .binary_search_by(|(g, v, k, _)| (*g, *v, *k).cmp(&(group, version, kind)))
        .ok()
        .map(|i| merge_meta::KINDS[i].3)
}

/// Whether this kind has strategic-merge-patch metadata. Upstream refuses
/// `application/strategic-merge-patch+json` with 415 for the others (custom resources,
/// unknown kinds): callers serving that content type must check this first.
pub fn supports(group: &str, version: &str, kind: &str) -> bool {
    root_type(group, version, kind).is_some()
}

/// Applies a strategic merge patch to an object of the given kind (`group`, `version`, `kind`).
/// Kinds without metadata (see [`supports`]) get the schema-less form: objects merge, lists
/// replace, directives still apply.
pub fn apply(doc: &Value, patch: &Value, group: &str, version: &str, kind: &str) -> Result<Value, PatchError> {
    apply_detailed(doc, patch, group, version, kind).map_err(PatchError::from)
}

/// Like [`apply`], keeping on failure the exact status upstream would answer.
pub fn apply_detailed(doc: &Value, patch: &Value, group: &str, version: &str, kind: &str) -> Result<Value, Failure> {
    let ctx = root_type(group, version, kind).map_or(Ctx::Unknown, |root| SCHEMA.ctx(root));
    apply_with(SCHEMA, ctx, doc, patch)
}

/// Applies `patch` to `doc`, an object at `ctx` of `schema`.
fn apply_with(schema: Schema, ctx: Ctx, doc: &Value, patch: &Value) -> Result<Value, Failure> {
    let patch = match patch {
        Value::Object(m) => m.clone(),
        Value::Null => return Ok(doc.clone()),
        other => {
            return Err(Failure::bad(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_kind_name(other)
            )))
        }
    };
    let original = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    Merger { schema }.merge_map(original, patch, ctx).map(Value::Object)
}

struct Merger {
    schema: Schema,
}

impl Merger {
    /// Merges `patch` into `original` (upstream `mergeMap`).
    fn merge_map(&self, mut original: Map<String, Value>, mut patch: Map<String, Value>, ctx: Ctx) -> Result<Map<String, Value>, Failure> {
        if let Some(directive) = patch.get(DIRECTIVE) {
            return match directive.as_str() {
                Some("replace") => Ok(clean_map(patch)),
                Some("delete") => Ok(Map::new()),
                _ => Err(Failure::internal(format!(
                    "unknown patch type: {} in map: {}",
                    go_fmt(directive),
                    go_fmt(&Value::Object(patch.clone()))
                ))),
            };
        }
        apply_retain_keys(&mut original, &mut patch)?;
        self.merge_ordered_lists(&mut original, &mut patch, ctx)?;

        // Keys sort `$deleteFromPrimitiveList/x` before `x`: deletions first, then additions.
        for (key, patch_value) in patch {
            let (key, is_delete_list) = match key.strip_prefix(DELETE_PRIMITIVE) {
                Some(_) => (extract_key(&key, DELETE_PRIMITIVE, "invalid patch format of primitive list")?, true),
                None => (key, false),
            };
            if patch_value.is_null() {
                original.remove(&key);
                continue;
            }
            let Some(original_value) = original.remove(&key) else {
                if !is_delete_list {
                    if let Some(v) = clean(patch_value) {
                        original.insert(key, v);
                    }
                }
                continue;
            };
            let merged = match (original_value, patch_value) {
                (Value::Object(o), Value::Object(p)) => {
                    let field = self.schema.field(ctx, &key);
                    if field.strategy.replace {
                        Some(Value::Object(clean_map(p)))
                    } else {
                        Some(Value::Object(self.merge_map(o, p, field.value)?))
                    }
                }
                (Value::Array(o), Value::Array(p)) => {
                    let field = self.schema.field(ctx, &key);
                    Some(Value::Array(self.merge_list_field(o, p, &key, field, is_delete_list)?.list))
                }
                (o, p) if kind_of(&o) != kind_of(&p) && is_delete_list => Some(o),
                (_, p) => clean(p),
            };
            if let Some(v) = merged {
                original.insert(key, v);
            }
        }
        Ok(original)
    }

    /// Merges two lists per the field's strategy (upstream `mergeSliceHandler`). Also returns
    /// the order `$setElementOrder` must treat as the live list's (see [`Merged`]).
    fn merge_list_field(&self, original: Vec<Value>, patch: Vec<Value>, key: &str, field: FieldMeta, is_delete_list: bool) -> Result<Merged, Failure> {
        if field.strategy.merge || is_delete_list {
            self.merge_list(original, patch, key, field, is_delete_list)
        } else {
            Ok(Merged { list: clean_list(patch), server_order: None })
        }
    }

    /// Merges two lists with strategy `merge` (upstream `mergeSlice`).
    fn merge_list(&self, original: Vec<Value>, patch: Vec<Value>, key: &str, field: FieldMeta, is_delete_list: bool) -> Result<Merged, Failure> {
        if original.is_empty() && patch.is_empty() {
            return Ok(Merged { list: original, server_order: None });
        }
        let of_maps = element_kind(&[&original, &patch])? == Some(Kind::Object);
        let merge_key = field.merge_key;
        let mut server_order = None;
        let (merged, patch, original) = if !of_maps {
            if is_delete_list {
                let doomed: HashSet<String> = patch.iter().map(canon).collect();
                let list = original.into_iter().filter(|v| !doomed.contains(&canon(v))).collect();
                return Ok(Merged { list, server_order: None });
            }
            let mut seen = HashSet::new();
            let merged: Vec<Value> = original.iter().chain(patch.iter()).filter(|v| seen.insert(canon(v))).cloned().collect();
            (merged, patch, original)
        } else {
            if merge_key.is_empty() {
                return Err(Failure::internal(format!("cannot merge lists without merge key for {key}")));
            }
            let (replace, doomed) = list_directives(&patch, merge_key)?;
            let rest: Vec<Value> = patch.into_iter().filter(|v| v.get(DIRECTIVE).is_none()).collect();
            if replace {
                let list = clean_list(rest);
                (list.clone(), Vec::new(), list)
            } else {
                let (kept, stale) = delete_items(&original, &doomed, merge_key);
                let merged = self.merge_items(kept.clone(), rest.clone(), merge_key, field.items)?;
                if !stale.is_empty() {
                    // Go's in-place deletion leaves `stale` at the end of the live list's
                    // array, and merging appends new items over it: what upstream's
                    // `$setElementOrder` then sees as the live order.
                    let appended = merged.iter().skip(kept.len()).take(stale.len()).cloned();
                    let mut order: Vec<Value> = kept.clone();
                    order.extend(appended);
                    let filled = order.len() - kept.len();
                    order.extend(stale.into_iter().rev().skip(filled));
                    server_order = Some(order);
                }
                (merged, rest, kept)
            }
        };
        let keys = ListKeys { of_maps, merge_key };
        let (patch_items, server_only) = keys.partition(merged, &patch)?;
        let list = keys.normalize_order(patch_items, server_only, &patch, &original)?;
        Ok(Merged { list, server_order })
    }

    /// Merges the items of `patch` into `original` by merge key, appending the new ones
    /// (upstream `mergeSliceWithoutSpecialElements`).
    fn merge_items(&self, mut original: Vec<Value>, patch: Vec<Value>, merge_key: &str, ctx: Ctx) -> Result<Vec<Value>, Failure> {
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for (i, item) in original.iter().enumerate() {
            if let Some(k) = item.get(merge_key) {
                by_key.entry(canon(k)).or_insert(i);
            }
        }
        for item in patch {
            let Value::Object(item) = item else {
                return Err(bad_arg_type("map[string]interface {}", &item));
            };
            let Some(k) = item.get(merge_key).map(canon) else {
                return Err(no_merge_key(&item, merge_key));
            };
            match by_key.get(&k) {
                Some(&i) => {
                    let current = match std::mem::take(&mut original[i]) {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    original[i] = Value::Object(self.merge_map(current, item, ctx)?);
                }
                None => {
                    by_key.insert(k, original.len());
                    original.push(Value::Object(clean_map(item)));
                }
            }
        }
        Ok(original)
    }

    /// Processes the `$setElementOrder/<list>` directives of `patch`, merging each such list
    /// now and ordering it (upstream `mergePatchIntoOriginal`).
    fn merge_ordered_lists(&self, original: &mut Map<String, Value>, patch: &mut Map<String, Value>, ctx: Ctx) -> Result<(), Failure> {
        let directives: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ORDER)).cloned().collect();
        for directive in directives {
            let Some(order) = patch.remove(&directive) else { continue };
            let Value::Array(order) = order else {
                return Err(bad_arg_type("[]interface {}", &order));
            };
            let key = extract_key(&directive, SET_ORDER, "invalid patch format of setElementOrder list")?;
            let original_list = take_list(original, &key)?;
            let patch_list = take_list(patch, &key)?;
            let field = self.schema.field(ctx, &key);
            validate_order(patch_list.as_deref().unwrap_or(&[]), &order, field.merge_key)?;

            let empty = Vec::new();
            let kind = element_kind(&[original_list.as_ref().unwrap_or(&empty), patch_list.as_ref().unwrap_or(&empty)])?;
            let mut server_order = original_list.clone().unwrap_or_default();
            let merged = match (original_list, patch_list) {
                (Some(o), None) => o,
                (None, Some(p)) => clean_list(p),
                (Some(o), Some(p)) => {
                    let merged = self.merge_list_field(o, p, &key, field, false)?;
                    if let Some(order) = merged.server_order {
                        server_order = order;
                    }
                    merged.list
                }
                (None, None) => continue,
            };
            let Some(kind) = kind else {
                original.insert(key, Value::Array(merged));
                continue;
            };
            let keys = ListKeys { of_maps: kind == Kind::Object, merge_key: field.merge_key };
            let (patch_items, server_only) = keys.partition(merged, &order)?;
            let ordered = keys.normalize_order(patch_items, server_only, &order, &server_order)?;
            original.insert(key, Value::Array(ordered));
        }
        Ok(())
    }
}

/// A merged list, and the order `$setElementOrder` must then use as the live list's. Upstream
/// deletes items in place and appends to the same Go array, which the caller still holds as
/// "the live list": after `$patch: delete` items, the positions freed at its end show the
/// first appended items, or else stale items. `None`: the live list as it was.
struct Merged {
    list: Vec<Value>,
    server_order: Option<Vec<Value>>,
}

/// How list items are identified when partitioning and ordering a list.
struct ListKeys<'a> {
    of_maps: bool,
    merge_key: &'a str,
}

impl ListKeys<'_> {
    /// The identity used for ordering: the merge key's value for lists of maps, the item
    /// itself otherwise.
    fn order_id(&self, item: &Value) -> Option<String> {
        if self.of_maps {
            item.as_object()?.get(self.merge_key).map(canon)
        } else {
            Some(canon(item))
        }
    }

    /// Splits `merged` into items present in `by` and the others, keeping their order
    /// (upstream `partitionPrimitivesByPresentInList` / `partitionMapsByPresentInList`).
    fn partition(&self, merged: Vec<Value>, by: &[Value]) -> Result<(Vec<Value>, Vec<Value>), Failure> {
        let key_of = |item: &Value| -> Result<Option<String>, Failure> {
            if self.merge_key.is_empty() {
                return Ok(Some(canon(item)));
            }
            let Value::Object(m) = item else { return Err(bad_arg_type("map[string]interface {}", item)) };
            match m.get(self.merge_key) {
                Some(k) => Ok(Some(canon(k))),
                None => Err(no_merge_key(m, self.merge_key)),
            }
        };
        let present: HashSet<String> = if self.merge_key.is_empty() {
            by.iter().map(canon).collect()
        } else {
            by.iter().filter_map(|v| v.get(self.merge_key)).map(canon).collect()
        };
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        for item in merged {
            match key_of(&item)? {
                Some(k) if present.contains(&k) => inside.push(item),
                _ => outside.push(item),
            }
        }
        Ok((inside, outside))
    }

    /// Orders patch items by `patch_order` and server-only items by `server_order`, then
    /// interleaves them keeping both relative orders (upstream `normalizeElementOrder`).
    fn normalize_order(&self, patch_items: Vec<Value>, server_only: Vec<Value>, patch_order: &[Value], server_order: &[Value]) -> Result<Vec<Value>, Failure> {
        let patch_items = self.sort_by(patch_items, patch_order)?;
        let server_only = self.sort_by(server_only, server_order)?;
        let positions = self.positions(server_order);
        let pos = |v: &Value| self.order_id(v).and_then(|k| positions.get(&k).copied());
        let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
        let mut left = server_only.into_iter().peekable();
        let mut right = patch_items.into_iter().peekable();
        loop {
            let take_left = match (left.peek(), right.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(l), Some(r)) => matches!((pos(l), pos(r)), (Some(a), Some(b)) if a < b),
            };
            let next = if take_left { left.next() } else { right.next() };
            out.extend(next);
        }
        Ok(out)
    }

    /// First position of each identity in `order`.
    fn positions(&self, order: &[Value]) -> HashMap<String, usize> {
        let mut positions = HashMap::new();
        for (i, v) in order.iter().enumerate() {
            if let Some(k) = self.order_id(v) {
                positions.entry(k).or_insert(i);
            }
        }
        positions
    }

    /// Stable-sorts `items` by their position in `order`, `$patch: delete` items last
    /// (upstream `normalizeSliceOrder`).
    fn sort_by(&self, items: Vec<Value>, order: &[Value]) -> Result<Vec<Value>, Failure> {
        let mut items = items;
        let mut deleted = Vec::new();
        if self.of_maps {
            for v in items.iter().chain(order.iter()) {
                let Value::Object(m) = v else { return Err(bad_arg_type("map[string]interface {}", v)) };
                if !m.contains_key(self.merge_key) {
                    return Err(no_merge_key(m, self.merge_key));
                }
            }
            let (keep, gone): (Vec<Value>, Vec<Value>) = items.into_iter().partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"));
            items = keep;
            deleted = gone;
        }
        let positions = self.positions(order);
        items.sort_by_key(|v| self.order_id(v).and_then(|k| positions.get(&k).copied()).unwrap_or(usize::MAX));
        items.extend(deleted);
        Ok(items)
    }
}

/// Reads the `$patch` items of a merging list of maps (upstream
/// `mergeSliceWithSpecialElements`): whether one says `replace` (the patch's other items
/// become the whole list), and the merge keys of the `delete` ones, in patch order.
fn list_directives(patch: &[Value], merge_key: &str) -> Result<(bool, Vec<String>), Failure> {
    let mut replace = false;
    let mut doomed = Vec::new();
    for item in patch {
        let (Some(directive), Value::Object(m)) = (item.get(DIRECTIVE), item) else { continue };
        match directive.as_str() {
            Some("delete") => match m.get(merge_key) {
                Some(k) => doomed.push(canon(k)),
                None => return Err(no_merge_key(m, merge_key)),
            },
            Some("replace") => replace = true,
            Some("merge") => return Err(Failure::internal("merging lists cannot yet be specified in the patch")),
            _ => return Err(Failure::internal(format!("unknown patch type: {} in map: {}", go_fmt(directive), go_fmt(item)))),
        }
    }
    Ok((replace, doomed))
}

/// Deletes the items whose merge key is in `doomed` (upstream `deleteMatchingEntries`).
/// Returns the kept items and, per deletion in order, the item Go's in-place deletion leaves
/// behind at the end of the array (the list's last item at that time).
fn delete_items(original: &[Value], doomed: &[String], merge_key: &str) -> (Vec<Value>, Vec<Value>) {
    let mut positions: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, item) in original.iter().enumerate() {
        if let Some(k) = item.get(merge_key) {
            positions.entry(canon(k)).or_default().push(i);
        }
    }
    let mut deleted = vec![false; original.len()];
    let mut end = original.len();
    let mut stale = Vec::new();
    for key in doomed {
        for i in positions.remove(key).unwrap_or_default() {
            while end > 0 && deleted[end - 1] {
                end -= 1;
            }
            if let Some(last) = end.checked_sub(1).and_then(|e| original.get(e)) {
                stale.push(last.clone());
            }
            deleted[i] = true;
        }
    }
    let kept = original.iter().zip(&deleted).filter(|(_, d)| !**d).map(|(v, _)| v.clone()).collect();
    (kept, stale)
}

/// Applies a `$retainKeys` directive: keys of `original` not listed are cleared, and every
/// non-null key of the patch must be listed (upstream `applyRetainKeysDirective`).
fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<(), Failure> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else { return Ok(()) };
    let bad = || Failure::bad("invalid patch format of retainKeys");
    let Value::Array(retain) = retain else { return Err(bad()) };
    let retain: HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_PRIMITIVE) || k.starts_with(SET_ORDER) {
            continue;
        }
        if !retain.contains(k.as_str()) {
            return Err(bad());
        }
    }
    original.retain(|k, _| retain.contains(k.as_str()));
    Ok(())
}

/// Checks that the patch list's items appear in the `$setElementOrder` list in the same
/// relative order (upstream `validatePatchWithSetOrderList`).
fn validate_order(patch_list: &[Value], order: &[Value], merge_key: &str) -> Result<(), Failure> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut items = Vec::with_capacity(patch_list.len());
    for v in patch_list {
        if merge_key.is_empty() {
            items.push(v);
            continue;
        }
        let Value::Object(m) = v else { return Err(bad_arg_type("map[string]interface {}", v)) };
        if m.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
            items.push(v);
        }
    }
    let same = |a: &Value, b: &Value| -> Result<bool, Failure> {
        if merge_key.is_empty() {
            return Ok(canon(a) == canon(b));
        }
        let (Value::Object(a), Value::Object(b)) = (a, b) else {
            let not_map = if a.is_object() { b } else { a };
            return Err(bad_arg_type("map[string]interface {}", not_map));
        };
        match (a.get(merge_key), b.get(merge_key)) {
            (Some(x), Some(y)) => Ok(canon(x) == canon(y)),
            (None, _) => Err(no_merge_key(a, merge_key)),
            (_, None) => Err(no_merge_key(b, merge_key)),
        }
    };
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order.len() {
        if items[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if same(items[p], &order[o])? {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() && o >= order.len() {
        return Err(Failure::internal(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ORDER} list:\n{}\n",
            go_fmt(&Value::Array(patch_list.to_vec())),
            go_fmt(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

/// Removes and returns `map[key]`, which must be a list if present.
fn take_list(map: &mut Map<String, Value>, key: &str) -> Result<Option<Vec<Value>>, Failure> {
    match map.remove(key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(other) => Err(bad_arg_type("[]interface {}", &other)),
    }
}

/// `$setElementOrder/containers` → `containers`; anything else after the prefix is malformed.
fn extract_key(directive: &str, prefix: &str, error: &str) -> Result<String, Failure> {
    match directive.split_once('/') {
        Some((head, rest)) if head == prefix => Ok(rest.to_string()),
        _ => Err(Failure::bad(error)),
    }
}

/// The JSON kinds, standing in for Go's dynamic types of decoded JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(_) => Kind::Number,
        Value::String(_) => Kind::String,
        Value::Array(_) => Kind::Array,
        Value::Object(_) => Kind::Object,
    }
}

/// The common kind of the items of `lists`, `None` if they are all empty (upstream
/// `sliceElementType`).
fn element_kind(lists: &[&Vec<Value>]) -> Result<Option<Kind>, Failure> {
    let mut kind = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let k = kind_of(v);
        match kind {
            None if k == Kind::Array => return Err(Failure { status: 422, message: "lists of lists are not supported".into() }),
            None => kind = Some(k),
            Some(prev) if prev != k => {
                let all: Vec<Value> = lists.iter().map(|l| Value::Array(l.to_vec())).collect();
                return Err(Failure::internal(format!("list element types are not identical: {}", go_fmt(&Value::Array(all)))));
            }
            Some(_) => {}
        }
    }
    Ok(kind)
}

/// Drops what must not be stored from a value taken from the patch: objects carrying
/// `$patch`, `null` object members and directive keys (upstream `removeDirectives` and
/// `discardNullValuesFromPatch`). `None` means "drop the value".
fn clean(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) if m.contains_key(DIRECTIVE) => None,
        Value::Object(m) => Some(Value::Object(clean_map(m))),
        Value::Array(a) => Some(Value::Array(clean_list(a))),
        other => Some(other),
    }
}

/// Cleans the members of an object that is kept (its own `$patch` key included).
fn clean_map(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter()
        .filter(|(k, v)| !v.is_null() && !is_directive_key(k))
        .filter_map(|(k, v)| clean(v).map(|v| (k, v)))
        .collect()
}

fn clean_list(a: Vec<Value>) -> Vec<Value> {
    a.into_iter().filter_map(clean).collect()
}

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.strip_prefix(SET_ORDER).is_some_and(|r| r.starts_with('/'))
        || k.strip_prefix(DELETE_PRIMITIVE).is_some_and(|r| r.starts_with('/'))
}

/// A string identifying a JSON value for equality (merge keys, set items); integral
/// numbers compare equal whatever their representation.
fn canon(v: &Value) -> String {
    match v {
        Value::Number(n) => number_text(n),
        other => other.to_string(),
    }
}

fn number_text(n: &serde_json::Number) -> String {
    if n.is_f64() {
        let f = n.as_f64().unwrap_or(0.0);
        if f.fract() == 0.0 && f.abs() < 1e15 {
            return format!("{}", f as i64);
        }
    }
    n.to_string()
}

/// Renders a value the way Go's `%v` renders decoded JSON, for upstream-like messages.
fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_text(n),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let parts: Vec<String> = entries.iter().map(|(k, v)| format!("{k}:{}", go_fmt(v))).collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's type name of a decoded JSON value.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn json_kind_name(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        _ => "object",
    }
}

fn bad_arg_type(expected: &str, actual: &Value) -> Failure {
    Failure::internal(format!("expected a {expected}, but received a {}", go_type(actual)))
}

fn no_merge_key(m: &Map<String, Value>, key: &str) -> Failure {
    Failure::internal(format!("map: {} does not contain declared merge key: {key}", go_fmt(&Value::Object(m.clone()))))
}
