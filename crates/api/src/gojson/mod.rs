//! Objects as Go's `encoding/json` writes them.
//!
//! kube-apiserver decodes every write into the kind's Go struct and encodes it back, so clients
//! never see what was sent, only what the struct makes of it:
//! - a non-pointer field without `omitempty` is always written, with its zero value when unset
//!   (a new ReplicationController has `status: {replicas: 0}`) — typed clients rely on it: the
//!   official Python client rejects a `V1ReplicationControllerStatus` without `replicas`;
//! - a non-pointer struct is always written, at least `{}` (`omitempty` never omits a struct),
//!   and so are the types with their own encoding: a zero `metav1.Time` is `null`
//!   (`creationTimestamp: null` in pod templates), a zero `Quantity` `"0"`, a zero
//!   `IntOrString` `0`;
//! - a non-pointer `omitempty` scalar, slice or map is dropped when zero or empty;
//! - a nil pointer, slice or map without `omitempty` is `null`;
//! - a pointer keeps what it was given: `replicas: 0`, `backoffLimit: 0` or
//!   `automountServiceAccountToken: false` mean something.
//!
//! The server stores JSON values and never round-trips them through typed structs (they would
//! drop unknown fields), so [`normalize`] applies those rules to the value instead, from a
//! table generated from the Go struct tags (`table.rs`). Only types and fields where a rule
//! can change something are in the table, so a walk visits only those paths.

mod table;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

/// One API type: its fields that Go's encoding can change, sorted by JSON name.
pub(crate) struct Type {
    /// The OpenAPI definition name, for the tests that check the table against k8s-openapi.
    #[cfg_attr(not(test), allow(dead_code))]
    pub name: &'static str,
    pub fields: &'static [Field],
}

/// A field: its JSON name, what Go writes when it is unset or zero, and where to descend.
pub(crate) struct Field(pub &'static str, pub Presence, pub Shape);

/// What Go writes for a field, by the field's Go type and `omitempty`. Every case the
/// generator knows is here, also those no served type has today (float, Duration, map of
/// structs).
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// A pointer with `omitempty`: written as given (only descended into).
    Keep,
    /// A non-pointer `omitempty` scalar, slice or map: dropped when zero, empty or null.
    OmitEmpty,
    /// A pointer, slice or map without `omitempty`: `null` when unset.
    Null,
    /// Non-pointer scalars without `omitempty`: their zero value when unset or null.
    ZeroStr,
    ZeroInt,
    ZeroBool,
    ZeroFloat,
    /// A non-pointer struct: `{}` when unset or null, then its own fields.
    ZeroObj,
    /// A non-pointer `metav1.Time`, `MicroTime`, `RawExtension` or `JSON`: `null` when unset.
    ZeroNull,
    /// A non-pointer `resource.Quantity`: `"0"` when unset or null.
    ZeroQuantity,
    /// A non-pointer `metav1.Duration`: `"0s"` when unset or null.
    ZeroDuration,
}

/// Where a field's value leads: nowhere, to one object, or to the objects of a list or map
/// (the index is the element type's in `TYPES`).
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Leaf,
    Obj(u16),
    List(u16),
    Map(u16),
}

/// Gives a built-in object the fields and zero values Go's encoding of its kind would, and
/// drops the zero values Go omits. Returns false (and leaves the object alone) for a kind the
/// table does not know — custom resources, whose schema decides.
pub fn normalize(group: &str, version: &str, kind: &str, obj: &mut Value) -> bool {
    let Some(ty) = kind_type(group, version, kind) else { return false };
    if let Value::Object(m) = obj {
        walk(ty, m);
    }
    true
}

/// The table entry of a kind's root type.
fn kind_type(group: &str, version: &str, kind: &str) -> Option<&'static Type> {
    let i = table::KINDS.binary_search_by(|&(g, v, k, _)| (g, v, k).cmp(&(group, version, kind))).ok()?;
    Some(&table::TYPES[usize::from(table::KINDS[i].3)])
}

fn walk(ty: &Type, m: &mut Map<String, Value>) {
    for Field(name, presence, shape) in ty.fields {
        let name = *name;
        let zero = match presence {
            Presence::Keep => None,
            Presence::OmitEmpty => {
                if m.get(name).is_some_and(is_empty) {
                    m.remove(name);
                }
                None
            }
            Presence::Null | Presence::ZeroNull => {
                if !m.contains_key(name) {
                    m.insert(name.to_string(), Value::Null);
                }
                None
            }
            Presence::ZeroStr => Some(Value::String(String::new())),
            Presence::ZeroInt => Some(Value::from(0)),
            Presence::ZeroBool => Some(Value::Bool(false)),
            Presence::ZeroFloat => Some(Value::from(0.0)),
            Presence::ZeroObj => Some(Value::Object(Map::new())),
            Presence::ZeroQuantity => Some(Value::String("0".into())),
            Presence::ZeroDuration => Some(Value::String("0s".into())),
        };
        if let Some(zero) = zero {
            // Go decodes an explicit null into a non-pointer field as its zero value.
            match m.get_mut(name) {
                Some(v) if v.is_null() => *v = zero,
                Some(_) => {}
                None => {
                    m.insert(name.to_string(), zero);
                }
            }
        }
        if *shape != Shape::Leaf {
            if let Some(v) = m.get_mut(name) {
                descend(*shape, v);
            }
        }
    }
}

fn descend(shape: Shape, v: &mut Value) {
    match (shape, v) {
        (Shape::Obj(i), Value::Object(m)) => walk(&table::TYPES[usize::from(i)], m),
        (Shape::List(i), Value::Array(items)) => {
            let ty = &table::TYPES[usize::from(i)];
            for item in items {
                if let Value::Object(m) = item {
                    walk(ty, m);
                }
            }
        }
        (Shape::Map(i), Value::Object(entries)) => {
            let ty = &table::TYPES[usize::from(i)];
            for item in entries.values_mut() {
                if let Value::Object(m) = item {
                    walk(ty, m);
                }
            }
        }
        // A value of another JSON type is validation's to reject; leave it as it is.
        _ => {}
    }
}

/// Whether Go's `omitempty` would drop a value: false, 0, "", an empty slice or map, or nil.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}
