//! The structural schema server-side apply walks objects with, in structured-merge-diff's model:
//! every type is an atom that may be a scalar, a list (atomic, set, or map keyed by fields) and
//! a map (struct fields plus an element type for other keys; atomic or granular). Built-in
//! kinds come from the generated table in `apply_meta.rs`; custom resources from their CRD's
//! OpenAPI v3 schema, or, without one, the "deduced" type (maps granular, lists atomic).

use super::apply_meta::{KEY_DEFAULTS, ROOTS, TYPES, ZEROS};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// Index of a type in a schema's node table.
pub(crate) type TypeId = usize;
/// The deduced type: scalar, atomic list of untyped, granular map of deduced.
pub(crate) const DEDUCED: TypeId = 0;
/// The untyped atomic type (RawExtension, items of deduced lists): a leaf whatever its value.
pub(crate) const UNTYPED_ATOMIC: TypeId = 1;
/// A scalar.
pub(crate) const SCALAR: TypeId = 2;

/// How a list relates to its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListRel {
    /// Owned and replaced as a whole.
    Atomic,
    /// Items are scalars, each owned by value (`v:`).
    Set,
    /// Items are objects, each owned by its key fields (`k:`).
    Map(Vec<String>),
}

/// The list part of an atom.
#[derive(Debug, Clone)]
pub(crate) struct ListNode {
    pub elem: TypeId,
    pub rel: ListRel,
}

/// The map part of an atom: a struct's declared fields, and the type of any other key.
#[derive(Debug, Clone, Default)]
pub(crate) struct MapNode {
    pub fields: BTreeMap<String, TypeId>,
    /// Field defaults; only list-map key fields need them (an item that omits a key field is
    /// keyed by its default).
    pub defaults: BTreeMap<String, Value>,
    /// The type of keys that are not declared fields (deduced for structs, leniently).
    pub elem: TypeId,
    pub atomic: bool,
}

/// A type: any combination of scalar, list and map (only untyped ones have more than one).
#[derive(Debug, Clone, Default)]
pub(crate) struct Atom {
    pub scalar: bool,
    pub list: Option<ListNode>,
    pub map: Option<MapNode>,
}

fn base_nodes() -> Vec<Atom> {
    let untyped_list = || Some(ListNode { elem: UNTYPED_ATOMIC, rel: ListRel::Atomic });
    vec![
        Atom { scalar: true, list: untyped_list(), map: Some(MapNode { elem: DEDUCED, ..Default::default() }) },
        Atom { scalar: true, list: untyped_list(), map: Some(MapNode { elem: UNTYPED_ATOMIC, atomic: true, ..Default::default() }) },
        Atom { scalar: true, ..Default::default() },
    ]
}

/// The schema of an object: a node table and the root type.
///
/// Public so that the API server can build one per custom resource version from its CRD
/// (`TypeSchema::from_openapi_v3`) and keep it alongside the resource.
#[derive(Debug, Clone)]
pub struct TypeSchema {
    pub(crate) nodes: Vec<Atom>,
    pub(crate) root: TypeId,
}

struct Builtin {
    nodes: Vec<Atom>,
    by_name: HashMap<&'static str, TypeId>,
    roots: HashMap<(&'static str, &'static str, &'static str), TypeId>,
    custom_root: TypeId,
}

fn parse_expr(expr: &str, by_name: &HashMap<&'static str, TypeId>, nodes: &mut Vec<Atom>) -> TypeId {
    let push = |nodes: &mut Vec<Atom>, atom: Atom| {
        nodes.push(atom);
        nodes.len() - 1
    };
    match expr {
        "s" => return SCALAR,
        "u" => return DEDUCED,
        "x" => return UNTYPED_ATOMIC,
        _ => {}
    }
    if let Some(rest) = expr.strip_prefix("[a]") {
        let elem = parse_expr(rest, by_name, nodes);
        return push(nodes, Atom { list: Some(ListNode { elem, rel: ListRel::Atomic }), ..Default::default() });
    }
    if let Some(rest) = expr.strip_prefix("[s]") {
        let elem = parse_expr(rest, by_name, nodes);
        return push(nodes, Atom { list: Some(ListNode { elem, rel: ListRel::Set }), ..Default::default() });
    }
    if let Some(rest) = expr.strip_prefix("[m:") {
        if let Some((keys, item)) = rest.split_once(']') {
            let elem = parse_expr(item, by_name, nodes);
            let keys = keys.split(',').map(str::to_string).collect();
            return push(nodes, Atom { list: Some(ListNode { elem, rel: ListRel::Map(keys) }), ..Default::default() });
        }
    }
    for (prefix, atomic) in [("{a}", true), ("{g}", false)] {
        if let Some(rest) = expr.strip_prefix(prefix) {
            let elem = parse_expr(rest, by_name, nodes);
            let map = MapNode { elem, atomic, ..Default::default() };
            return push(nodes, Atom { map: Some(map), ..Default::default() });
        }
    }
    by_name.get(expr).copied().unwrap_or(DEDUCED)
}

fn builtin() -> &'static Builtin {
    static BUILTIN: OnceLock<Builtin> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        let mut nodes = base_nodes();
        let mut by_name = HashMap::new();
        for (name, _, _) in TYPES {
            by_name.insert(*name, nodes.len());
            nodes.push(Atom::default());
        }
        for (name, atomic, fields) in TYPES {
            let mut map = MapNode { elem: DEDUCED, atomic: *atomic, ..Default::default() };
            for (field, expr) in *fields {
                let ty = parse_expr(expr, &by_name, &mut nodes);
                map.fields.insert(field.to_string(), ty);
            }
            for (ty, field, default) in KEY_DEFAULTS {
                if ty == name {
                    if let Ok(v) = serde_json::from_str(default) {
                        map.defaults.insert(field.to_string(), v);
                    }
                }
            }
            nodes[by_name[name]] = Atom { map: Some(map), ..Default::default() };
        }
        let roots = ROOTS.iter().map(|(g, v, k, ty)| ((*g, *v, *k), by_name.get(ty).copied().unwrap_or(DEDUCED))).collect();
        let meta = by_name.get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").copied().unwrap_or(DEDUCED);
        let mut root = MapNode { elem: DEDUCED, ..Default::default() };
        root.fields.insert("apiVersion".into(), SCALAR);
        root.fields.insert("kind".into(), SCALAR);
        root.fields.insert("metadata".into(), meta);
        nodes.push(Atom { map: Some(root), ..Default::default() });
        let custom_root = nodes.len() - 1;
        Builtin { nodes, by_name, roots, custom_root }
    })
}

/// The built-in schema's nodes and the root type of `group`/`version`/`kind`: the generated
/// type for a served kind, or for any other kind (custom resources without a schema) an object
/// whose `apiVersion`, `kind` and `metadata` are typed and whose other fields are deduced, as
/// upstream treats a CRD schema that preserves unknown fields.
pub(crate) fn builtin_root(group: &str, version: &str, kind: &str) -> (&'static [Atom], TypeId) {
    let b = builtin();
    (&b.nodes, b.roots.get(&(group, version, kind)).copied().unwrap_or(b.custom_root))
}

/// The JSON of a kind's Go zero value (`{}` for kinds not served built in): the "old" object
/// of a create, as upstream's `objectCreater.New(kind)` gives it to the field manager.
pub(crate) fn zero_object(group: &str, version: &str, kind: &str) -> Value {
    ZEROS
        .iter()
        .find(|(g, v, k, _)| (*g, *v, *k) == (group, version, kind))
        .and_then(|(_, _, _, z)| serde_json::from_str(z).ok())
        .unwrap_or_else(|| Value::Object(Default::default()))
}

impl TypeSchema {
    /// The schema of a custom resource from its CRD version's `schema.openAPIV3Schema`
    /// (structural): `properties`, `items`, `additionalProperties`, `x-kubernetes-list-type`,
    /// `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`,
    /// `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-int-or-string`, key defaults;
    /// `metadata` is always the standard ObjectMeta, as upstream's CRD handler makes it.
    pub fn from_openapi_v3(schema: &Value) -> TypeSchema {
        let b = builtin();
        let mut nodes = b.nodes.clone();
        let root = visit_openapi(schema, false, &mut nodes);
        let meta = b.by_name.get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").copied().unwrap_or(DEDUCED);
        let root = {
            let mut atom = nodes[root].clone();
            let map = atom.map.get_or_insert_with(|| MapNode { elem: DEDUCED, ..Default::default() });
            map.fields.insert("apiVersion".into(), SCALAR);
            map.fields.insert("kind".into(), SCALAR);
            map.fields.insert("metadata".into(), meta);
            nodes.push(atom);
            nodes.len() - 1
        };
        TypeSchema { nodes, root }
    }

}

fn visit_openapi(s: &Value, preserve: bool, nodes: &mut Vec<Atom>) -> TypeId {
    let preserve = preserve || s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return SCALAR;
    }
    let atom = match s.get("type").and_then(Value::as_str).unwrap_or("") {
        "object" => Atom { map: Some(openapi_object(s, preserve, nodes)), ..Default::default() },
        "array" => Atom { list: Some(openapi_list(s, preserve, nodes)), ..Default::default() },
        "" => {
            if s.get("properties").is_none() && s.get("items").is_none() && s.get("additionalProperties").is_none() {
                return DEDUCED;
            }
            let list = openapi_list(s, preserve, nodes);
            let map = openapi_object(s, preserve, nodes);
            Atom { scalar: true, list: Some(list), map: Some(map) }
        }
        _ => return SCALAR,
    };
    nodes.push(atom);
    nodes.len() - 1
}

fn openapi_object(s: &Value, preserve: bool, nodes: &mut Vec<Atom>) -> MapNode {
    let mut map = MapNode { elem: DEDUCED, ..Default::default() };
    if let Some(Value::Object(props)) = s.get("properties") {
        for (name, prop) in props {
            let ty = visit_openapi(prop, preserve, nodes);
            map.fields.insert(name.clone(), ty);
            if let Some(d) = prop.get("default") {
                map.defaults.insert(name.clone(), d.clone());
            }
        }
    }
    if let Some(ap @ Value::Object(_)) = s.get("additionalProperties") {
        map.elem = visit_openapi(ap, preserve, nodes);
    }
    map.atomic = s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
    map
}

fn openapi_list(s: &Value, preserve: bool, nodes: &mut Vec<Atom>) -> ListNode {
    let elem = match s.get("items") {
        Some(items @ Value::Object(_)) => visit_openapi(items, preserve, nodes),
        _ => UNTYPED_ATOMIC,
    };
    let str_list = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
    };
    let rel = match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListRel::Set,
        Some("map") => {
            let keys = str_list(s.get("x-kubernetes-list-map-keys"));
            if keys.is_empty() {
                ListRel::Atomic
            } else {
                ListRel::Map(keys)
            }
        }
        Some(_) => ListRel::Atomic,
        None => match s.get("x-kubernetes-patch-strategy").and_then(Value::as_str) {
            Some("merge") | Some("merge,retainKeys") => match s.get("x-kubernetes-patch-merge-key").and_then(Value::as_str) {
                Some(k) => ListRel::Map(vec![k.to_string()]),
                None => ListRel::Set,
            },
            _ => ListRel::Atomic,
        },
    };
    ListNode { elem, rel }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_table_is_consistent() {
        let b = builtin();
        assert!(TYPES.windows(2).all(|w| w[0].0 < w[1].0));
        for (name, _, fields) in TYPES {
            assert!(fields.windows(2).all(|w| w[0].0 < w[1].0), "{name}");
            for (field, expr) in *fields {
                // Every named type in an expression is in the table.
                if let Some(i) = expr.find("io.") {
                    assert!(b.by_name.contains_key(&expr[i..]), "{name}.{field}: {expr}");
                }
            }
        }
        for (g, _, k, ty) in ROOTS {
            assert!(b.by_name.contains_key(ty), "{g}/{k}");
        }
        for (ty, field, _) in KEY_DEFAULTS {
            assert!(b.by_name.contains_key(ty), "{ty}.{field}");
        }
        assert_eq!(ZEROS.len(), ROOTS.len());
        for (g, v, k, z) in ZEROS {
            assert!(b.roots.contains_key(&(*g, *v, *k)), "{g}/{v} {k}");
            assert!(serde_json::from_str::<Value>(z).is_ok_and(|z| z.is_object()), "{k}");
        }
        assert_eq!(zero_object("apps", "v1", "Deployment")["spec"]["strategy"], serde_json::json!({}));
        let hpa = |v| nodes_field(b, ("autoscaling", v, "HorizontalPodAutoscaler"), "spec");
        assert_ne!(hpa("v1"), hpa("v2"), "versions of a kind have their own types");
    }

    fn nodes_field(b: &Builtin, root: (&'static str, &'static str, &'static str), field: &str) -> TypeId {
        b.nodes[b.roots[&root]].map.as_ref().unwrap().fields[field]
    }

    #[test]
    fn well_known_fields_have_upstream_semantics() {
        let (nodes, pod) = builtin_root("", "v1", "Pod");
        let field = |ty: TypeId, name: &str| nodes[ty].map.as_ref().unwrap().fields[name];
        let spec = field(pod, "spec");
        let containers = nodes[field(spec, "containers")].list.clone().unwrap();
        assert_eq!(containers.rel, ListRel::Map(vec!["name".into()]));
        let ports = nodes[field(containers.elem, "ports")].list.clone().unwrap();
        assert_eq!(ports.rel, ListRel::Map(vec!["containerPort".into(), "protocol".into()]));
        assert_eq!(nodes[ports.elem].map.as_ref().unwrap().defaults["protocol"], "TCP");
        assert_eq!(nodes[field(containers.elem, "args")].list.as_ref().unwrap().rel, ListRel::Atomic);
        assert!(nodes[field(spec, "nodeSelector")].map.as_ref().unwrap().atomic);
        let meta = field(pod, "metadata");
        assert_eq!(nodes[field(meta, "finalizers")].list.as_ref().unwrap().rel, ListRel::Set);
        assert!(!nodes[field(meta, "labels")].map.as_ref().unwrap().atomic);
        let (nodes, dep) = builtin_root("apps", "v1", "Deployment");
        let selector = nodes[dep].map.as_ref().unwrap().fields["spec"];
        let selector = nodes[selector].map.as_ref().unwrap().fields["selector"];
        assert!(nodes[selector].map.as_ref().unwrap().atomic, "LabelSelector is an atomic struct");
    }
}
