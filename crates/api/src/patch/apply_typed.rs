//! Schema-driven walks over JSON values, as structured-merge-diff's `typed` package does them:
//! the set of fields a value sets (`ToFieldSet`), merging an applied configuration into an
//! object (`Merge`), comparing two objects (`Compare`), removing fields (`RemoveItems`),
//! `EnsureNamedFieldsAreMembers`, and the validation of applied configurations.
//!
//! Live objects are walked leniently: a list whose items cannot be keyed is treated as atomic
//! and a value of the wrong shape as a leaf, so nothing stored can make these walks fail.

use super::apply_fieldpath::{values_equal, Path, PathElement, Set};
use super::apply_schema::{Atom, ListNode, ListRel, MapNode, TypeId};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

const MAP: u8 = 1;
const SCALAR: u8 = 2;
const LIST: u8 = 4;

/// Which parts of an atom apply to a value (upstream's `deduceAtom`): the matching part, or the
/// whole atom when none matches (null, or a value of the wrong shape).
fn deduce(atom: &Atom, v: &Value) -> u8 {
    match v {
        Value::Number(_) | Value::String(_) | Value::Bool(_) if atom.scalar => SCALAR,
        Value::Array(_) if atom.list.is_some() => LIST,
        Value::Object(_) if atom.map.is_some() => MAP,
        _ => parts(atom),
    }
}

fn parts(atom: &Atom) -> u8 {
    (if atom.map.is_some() { MAP } else { 0 }) | (if atom.scalar { SCALAR } else { 0 }) | (if atom.list.is_some() { LIST } else { 0 })
}

/// What a walk does with a value, in upstream's `handleAtom` order (map, scalar, list).
#[derive(Clone, Copy)]
enum Kind<'a> {
    Map(&'a MapNode),
    Scalar,
    List(&'a ListNode),
}

fn handler(atom: &Atom, bits: u8) -> Kind<'_> {
    match (&atom.map, &atom.list) {
        (Some(m), _) if bits & MAP != 0 => Kind::Map(m),
        _ if bits & SCALAR != 0 => Kind::Scalar,
        (_, Some(l)) if bits & LIST != 0 => Kind::List(l),
        _ => Kind::Scalar,
    }
}

fn kind_of<'a>(nodes: &'a [Atom], ty: TypeId, v: &Value) -> Kind<'a> {
    let atom = atom(nodes, ty);
    handler(atom, deduce(atom, v))
}

fn atom(nodes: &[Atom], ty: TypeId) -> &Atom {
    static LEAF: Atom = Atom { scalar: true, list: None, map: None };
    nodes.get(ty).unwrap_or(&LEAF)
}

fn field_type(map: &MapNode, key: &str) -> TypeId {
    map.fields.get(key).copied().unwrap_or(map.elem)
}

fn empty_or_none_list(v: Option<&Vec<Value>>) -> bool {
    v.is_none_or(|l| l.is_empty())
}

fn empty_or_none_map(v: Option<&Map<String, Value>>) -> bool {
    v.is_none_or(|m| m.is_empty())
}

/// The path element of a list item (upstream's `listItemToPathElement`).
pub(crate) fn list_item_pe(nodes: &[Atom], list: &ListNode, item: &Value) -> Result<PathElement, String> {
    match &list.rel {
        ListRel::Map(keys) => {
            let obj = match item {
                Value::Object(o) => o,
                Value::Null => return Err("associative list with keys may not have a null element".into()),
                _ => return Err("associative list with keys may not have non-map elements".into()),
            };
            let defaults = atom(nodes, list.elem).map.as_ref().map(|m| &m.defaults);
            let mut fields = Vec::new();
            for k in keys {
                if let Some(v) = obj.get(k) {
                    fields.push((k.clone(), v.clone()));
                } else if let Some(d) = defaults.and_then(|d| d.get(k)) {
                    fields.push((k.clone(), d.clone()));
                }
            }
            if fields.is_empty() {
                let quoted: Vec<String> = keys.iter().map(|k| super::apply_fieldpath::go_quote(k)).collect();
                return Err(format!(
                    "associative list with keys has an element that omits all key fields [{}] (and doesn't have default values for any key fields)",
                    quoted.join(" ")
                ));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
        ListRel::Set => match item {
            Value::Object(_) => Err("associative list without keys has an element that's a map type".into()),
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            Value::Null => Err("associative list without keys has an element that's an explicit null".into()),
            v => Ok(PathElement::Value(v.clone())),
        },
        ListRel::Atomic => Err("invalid indexing of non-associative list".into()),
    }
}

/// The path elements of every item, or `None` when one cannot be keyed (the list is then
/// handled as atomic).
fn item_pes(nodes: &[Atom], list: &ListNode, items: &[Value]) -> Option<Vec<PathElement>> {
    items.iter().map(|item| list_item_pe(nodes, list, item).ok()).collect()
}

/// The fields `v` sets: every leaf, every list item and map key, atomic values as a whole.
pub(crate) fn to_field_set(nodes: &[Atom], ty: TypeId, v: &Value) -> Set {
    let mut set = Set::new();
    field_set_walk(nodes, ty, v, &mut Vec::new(), &mut set);
    set
}

fn field_set_walk(nodes: &[Atom], ty: TypeId, v: &Value, path: &mut Path, set: &mut Set) {
    match kind_of(nodes, ty, v) {
        Kind::Scalar => set.insert(path),
        Kind::List(list) => {
            if list.rel == ListRel::Atomic {
                return set.insert(path);
            }
            let Some(items) = v.as_array() else { return };
            let Some(pes) = item_pes(nodes, list, items) else { return set.insert(path) };
            let mut seen = BTreeSet::new();
            let mut duplicates = BTreeSet::new();
            for pe in &pes {
                if !seen.insert(pe) && duplicates.insert(pe) {
                    path.push(pe.clone());
                    set.insert(path);
                    path.pop();
                }
            }
            for (pe, item) in pes.iter().zip(items) {
                if duplicates.contains(pe) {
                    continue;
                }
                path.push(pe.clone());
                field_set_walk(nodes, list.elem, item, path, set);
                set.insert(path);
                path.pop();
            }
        }
        Kind::Map(map) => {
            if map.atomic {
                return set.insert(path);
            }
            let Some(obj) = v.as_object() else { return };
            for (k, val) in obj {
                path.push(PathElement::Field(k.clone()));
                field_set_walk(nodes, field_type(map, k), val, path, set);
                let empty = val.is_null() || val.as_object().is_some_and(Map::is_empty);
                if empty || !map.fields.contains_key(k) {
                    set.insert(path);
                }
                path.pop();
            }
        }
    }
}

/// Merges `rhs` (an applied configuration) into `lhs` (the live object): granular maps key by
/// key, associative lists item by item in upstream's order, everything else replaced by `rhs`.
pub(crate) fn merge(nodes: &[Atom], ty: TypeId, lhs: Option<&Value>, rhs: Option<&Value>) -> Option<Value> {
    let (l, r) = match (lhs, rhs) {
        (None, None) => return None,
        (Some(l), None) => return Some(l.clone()),
        (None, Some(r)) => return Some(r.clone()),
        (Some(l), Some(r)) => (l, r),
    };
    match kind_of(nodes, ty, r) {
        Kind::Scalar => Some(r.clone()),
        Kind::List(list) => {
            let (la, ra) = (l.as_array(), r.as_array());
            if list.rel == ListRel::Atomic || (empty_or_none_list(la) && empty_or_none_list(ra)) {
                return Some(r.clone());
            }
            match merge_list_items(nodes, list, la.map(Vec::as_slice).unwrap_or(&[]), ra.map(Vec::as_slice).unwrap_or(&[])) {
                Some(out) if out.is_empty() => None,
                Some(out) => Some(Value::Array(out)),
                None => Some(r.clone()),
            }
        }
        Kind::Map(map) => {
            let (lm, rm) = (l.as_object(), r.as_object());
            if map.atomic || (empty_or_none_map(lm) && empty_or_none_map(rm)) {
                return Some(r.clone());
            }
            let mut out = Map::new();
            let keys: BTreeSet<&String> = lm.into_iter().flat_map(|m| m.keys()).chain(rm.into_iter().flat_map(|m| m.keys())).collect();
            for k in keys {
                let merged = merge(nodes, field_type(map, k), lm.and_then(|m| m.get(k)), rm.and_then(|m| m.get(k)));
                if let Some(v) = merged {
                    out.insert(k.clone(), v);
                }
            }
            if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            }
        }
    }
}

/// Upstream's `visitListItems` of the merging walker: live items keep their places, applied
/// items follow the applied order, shared items are merged. `None` when an item cannot be keyed
/// or the configuration repeats a key.
fn merge_list_items(nodes: &[Atom], list: &ListNode, lhs: &[Value], rhs: &[Value]) -> Option<Vec<Value>> {
    let rhs_pes = item_pes(nodes, list, rhs)?;
    let lhs_pes = item_pes(nodes, list, lhs)?;
    let mut observed_rhs: BTreeMap<&PathElement, &Value> = BTreeMap::new();
    for (pe, item) in rhs_pes.iter().zip(rhs) {
        if observed_rhs.insert(pe, item).is_some() {
            return None;
        }
    }
    // A duplicated live key maps to None: such items are not merged with the applied one.
    let mut observed_lhs: BTreeMap<&PathElement, Option<&Value>> = BTreeMap::new();
    for (pe, item) in lhs_pes.iter().zip(lhs) {
        observed_lhs.entry(pe).and_modify(|v| *v = None).or_insert(Some(item));
    }
    let mut shared = rhs_pes.iter().filter(|pe| observed_lhs.contains_key(pe));
    let mut next_shared = shared.next();
    let mut merged_rhs: BTreeSet<&PathElement> = BTreeSet::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let (l_len, r_len) = (lhs_pes.len(), rhs_pes.len());
    let (mut li, mut ri) = (0, 0);
    let mut budget = 2 * (l_len + r_len) + 2;
    while li < l_len || ri < r_len {
        if budget == 0 {
            return None;
        }
        budget -= 1;
        if li < l_len && ri < r_len {
            let pe = &lhs_pes[li];
            if *pe == rhs_pes[ri] {
                merged_rhs.insert(pe);
                let l_child = observed_lhs.get(pe).copied().flatten();
                let r_child = observed_rhs.get(pe).copied();
                out.extend(merge(nodes, list.elem, l_child, r_child));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if observed_rhs.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < l_len {
            let pe = &lhs_pes[li];
            if !observed_rhs.contains_key(pe) {
                out.extend(merge(nodes, list.elem, Some(&lhs[li]), None));
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < r_len {
            let pe = &rhs_pes[ri];
            merged_rhs.insert(pe);
            let l_child = observed_lhs.get(pe).copied().flatten();
            out.extend(merge(nodes, list.elem, l_child, Some(&rhs[ri])));
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    Some(out)
}

/// The fields removed, modified and added going from one object to another.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub removed: Set,
    pub modified: Set,
    pub added: Set,
}

impl Comparison {
    /// Drops `fields` and everything under them from the three sets (`ExcludeFields`).
    pub(crate) fn exclude(self, fields: &Set) -> Comparison {
        Comparison {
            removed: self.removed.recursive_difference(fields),
            modified: self.modified.recursive_difference(fields),
            added: self.added.recursive_difference(fields),
        }
    }
}

/// Compares `lhs` (old) with `rhs` (new).
pub(crate) fn compare(nodes: &[Atom], ty: TypeId, lhs: &Value, rhs: &Value) -> Comparison {
    let mut c = Comparison::default();
    compare_walk(nodes, ty, Some(lhs), Some(rhs), &mut Vec::new(), &mut c);
    c
}

fn compare_walk(nodes: &[Atom], ty: TypeId, l: Option<&Value>, r: Option<&Value>, path: &mut Path, c: &mut Comparison) {
    let atom = atom(nodes, ty);
    let in_leaf = match (l, r) {
        (None, None) => return,
        (Some(lv), None) => compare_kind(nodes, handler(atom, deduce(atom, lv)), l, r, path, c),
        (None, Some(rv)) => compare_kind(nodes, handler(atom, deduce(atom, rv)), l, r, path, c),
        (Some(lv), Some(rv)) => {
            let (bl, br) = (deduce(atom, lv), deduce(atom, rv));
            if bl != br {
                compare_kind(nodes, handler(atom, bl), l, r, path, c);
            }
            compare_kind(nodes, handler(atom, br), l, r, path, c)
        }
    };
    if !in_leaf {
        if l.is_none() {
            c.added.insert(path);
        } else if r.is_none() {
            c.removed.insert(path);
        }
    }
}

fn compare_leaf(l: Option<&Value>, r: Option<&Value>, path: &Path, c: &mut Comparison) -> bool {
    match (l, r) {
        (None, _) => c.added.insert(path),
        (_, None) => c.removed.insert(path),
        (Some(a), Some(b)) if !values_equal(a, b) => c.modified.insert(path),
        _ => {}
    }
    true
}

/// Compares with one handler; returns whether the value was a leaf.
fn compare_kind(nodes: &[Atom], kind: Kind, l: Option<&Value>, r: Option<&Value>, path: &mut Path, c: &mut Comparison) -> bool {
    match kind {
        Kind::Scalar => compare_leaf(l, r, path, c),
        Kind::List(list) => {
            let (la, ra) = (l.and_then(Value::as_array), r.and_then(Value::as_array));
            if list.rel == ListRel::Atomic || (empty_or_none_list(la) && empty_or_none_list(ra)) {
                return compare_leaf(l, r, path, c);
            }
            let (la, ra) = (la.map(Vec::as_slice).unwrap_or(&[]), ra.map(Vec::as_slice).unwrap_or(&[]));
            let (Some(lp), Some(rp)) = (item_pes(nodes, list, la), item_pes(nodes, list, ra)) else {
                return compare_leaf(l, r, path, c);
            };
            let mut order: Vec<&PathElement> = Vec::new();
            let mut lv: BTreeMap<&PathElement, Vec<&Value>> = BTreeMap::new();
            for (pe, item) in lp.iter().zip(la) {
                lv.entry(pe)
                    .or_insert_with(|| {
                        order.push(pe);
                        Vec::new()
                    })
                    .push(item);
            }
            let mut rv: BTreeMap<&PathElement, Vec<&Value>> = BTreeMap::new();
            for (pe, item) in rp.iter().zip(ra) {
                if !rv.contains_key(pe) && !lv.contains_key(pe) {
                    order.push(pe);
                }
                rv.entry(pe).or_default().push(item);
            }
            for pe in order {
                let ll = lv.get(pe).map(Vec::as_slice).unwrap_or(&[]);
                let rl = rv.get(pe).map(Vec::as_slice).unwrap_or(&[]);
                path.push(pe.clone());
                if ll.len() <= 1 && rl.len() <= 1 {
                    compare_walk(nodes, list.elem, ll.first().copied(), rl.first().copied(), path, c);
                } else if ll.len() >= 2 && rl.len() >= 2 {
                    if ll.len() != rl.len() || ll.iter().zip(rl).any(|(a, b)| !values_equal(a, b)) {
                        c.modified.insert(path);
                    }
                } else if ll.len() >= 2 {
                    if let Some(first) = rl.first() {
                        compare_walk(nodes, list.elem, None, Some(first), path, c);
                    }
                    c.removed.insert(path);
                } else {
                    if let Some(first) = ll.first() {
                        compare_walk(nodes, list.elem, Some(first), None, path, c);
                    }
                    c.added.insert(path);
                }
                path.pop();
            }
            false
        }
        Kind::Map(map) => {
            let (lm, rm) = (l.and_then(Value::as_object), r.and_then(Value::as_object));
            if map.atomic || (empty_or_none_map(lm) && empty_or_none_map(rm)) {
                return compare_leaf(l, r, path, c);
            }
            let keys: BTreeSet<&String> = lm.into_iter().flat_map(|m| m.keys()).chain(rm.into_iter().flat_map(|m| m.keys())).collect();
            for k in keys {
                path.push(PathElement::Field(k.clone()));
                compare_walk(nodes, field_type(map, k), lm.and_then(|m| m.get(k)), rm.and_then(|m| m.get(k)), path, c);
                path.pop();
            }
            false
        }
    }
}

/// `v` without the fields of `to_remove` (upstream `RemoveItems`): a removed map key or list
/// item goes entirely; a map or list the removal leaves empty becomes null, as upstream (the
/// caller drops such nulls from the final object).
pub(crate) fn remove_items(nodes: &[Atom], ty: TypeId, v: &Value, to_remove: &Set) -> Value {
    match kind_of(nodes, ty, v) {
        Kind::Scalar => v.clone(),
        Kind::List(list) => {
            let Some(items) = v.as_array().filter(|a| !a.is_empty()) else { return Value::Null };
            if list.rel == ListRel::Atomic {
                return Value::Null;
            }
            let mut out = Vec::new();
            for item in items {
                let Ok(pe) = list_item_pe(nodes, list, item) else {
                    out.push(item.clone());
                    continue;
                };
                if to_remove.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                match to_remove.with_prefix(&pe) {
                    Some(sub) => out.push(remove_items(nodes, list.elem, item, sub)),
                    None => out.push(item.clone()),
                }
            }
            if out.is_empty() {
                Value::Null
            } else {
                Value::Array(out)
            }
        }
        Kind::Map(map) => {
            let Some(obj) = v.as_object().filter(|m| !m.is_empty()) else { return Value::Null };
            if map.atomic {
                return Value::Null;
            }
            let mut out = Map::new();
            for (k, val) in obj {
                let pe = PathElement::Field(k.clone());
                if to_remove.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                let kept = match to_remove.with_prefix(&pe) {
                    Some(sub) => remove_items(nodes, field_type(map, k), val, sub),
                    None => val.clone(),
                };
                out.insert(k.clone(), kept);
            }
            if out.is_empty() {
                Value::Null
            } else {
                Value::Object(out)
            }
        }
    }
}

/// Upstream's `EnsureNamedFieldsAreMembers`: a struct field that has owned children becomes a
/// member itself, so that removing the set removes the emptied struct too.
pub(crate) fn ensure_named_fields_are_members(nodes: &[Atom], ty: Option<TypeId>, set: &Set) -> Set {
    let atom = ty.map(|t| atom(nodes, t));
    let mut out = Set::new();
    for pe in set.members() {
        out.insert_member(pe.clone());
    }
    for (pe, child) in set.children() {
        let child_ty = match (pe, atom) {
            (PathElement::Field(name), Some(Atom { map: Some(map), .. })) => {
                if map.fields.contains_key(name) {
                    out.insert_member(pe.clone());
                }
                Some(field_type(map, name))
            }
            (PathElement::Key(_), Some(Atom { list: Some(list), .. })) => Some(list.elem),
            _ => None,
        };
        out.set_child(pe.clone(), ensure_named_fields_are_members(nodes, child_ty, child));
    }
    out
}

/// Checks an applied configuration as upstream's typed conversion does for what matters to
/// merging: every item of an associative list can be keyed, and no key repeats.
pub(crate) fn validate(nodes: &[Atom], ty: TypeId, v: &Value) -> Result<(), String> {
    let mut errors = Vec::new();
    validate_walk(nodes, ty, v, &mut String::new(), &mut errors);
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(format!("errors:\n  {}", errors.join("\n  "))),
    }
}

fn validate_walk(nodes: &[Atom], ty: TypeId, v: &Value, path: &mut String, errors: &mut Vec<String>) {
    match kind_of(nodes, ty, v) {
        Kind::Scalar => {}
        Kind::List(list) => {
            let Some(items) = v.as_array() else { return };
            if list.rel == ListRel::Atomic {
                return;
            }
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                match list_item_pe(nodes, list, item) {
                    Err(e) => errors.push(format!("{path}: element {i}: {e}")),
                    Ok(pe) => {
                        let len = path.len();
                        path.push_str(&pe.to_string());
                        if seen.contains(&pe) {
                            errors.push(format!("{}: duplicate entries for key {pe}", &path[..len]));
                        } else {
                            validate_walk(nodes, list.elem, item, path, errors);
                        }
                        path.truncate(len);
                        seen.insert(pe);
                    }
                }
            }
        }
        Kind::Map(map) => {
            if map.atomic {
                return;
            }
            let Some(obj) = v.as_object() else { return };
            for (k, val) in obj {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                validate_walk(nodes, field_type(map, k), val, path, errors);
                path.truncate(len);
            }
        }
    }
}
