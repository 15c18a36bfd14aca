//! Strict field validation (`fieldValidation=Strict|Warn`): the unknown and duplicate fields of
//! a request body, reported as upstream's JSON decoder (sigs.k8s.io/json) and CRD pruning
//! report them: `unknown field "spec.template.spec.containers[0].imagee"`,
//! `duplicate field "metadata.name"`.
//!
//! The schemas are compiled once into a graph of shapes; a body is walked against it. Duplicate
//! keys only survive in the raw JSON, so the body is re-read from its bytes when they are given,
//! keeping every key in document order.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::schemas::{Catalog, Gvk, REF_PREFIX};

/// Upstream stops collecting after this many strict errors.
const MAX_ERRORS: usize = 100;
/// Bodies nested deeper than this are not inspected further.
const MAX_DEPTH: usize = 200;
/// The index of the shape that allows anything.
const ANY: usize = 0;

/// What a schema allows, as far as field names go.
enum Shape {
    /// Anything (free-form objects, scalars, int-or-string, raw extensions).
    Any,
    /// An object with known fields; `extra` describes the others when a schema is given for
    /// them, `preserve` keeps unknown ones (`x-kubernetes-preserve-unknown-fields`).
    Object { props: HashMap<String, usize>, extra: Option<usize>, preserve: bool },
    /// A list of items of one shape.
    Array(usize),
    /// A map with values of one shape.
    Map(usize),
}

/// The compiled shapes of every kind.
pub(super) struct Validator {
    shapes: Vec<Shape>,
    roots: HashMap<Gvk, (usize, bool)>,
}

/// Compiles schemas into shapes, one per definition name (so recursive types terminate).
struct Compiler<'a> {
    defs: &'a BTreeMap<String, Value>,
    shapes: Vec<Shape>,
    named: HashMap<String, usize>,
}

impl Compiler<'_> {
    fn named(&mut self, name: &str) -> usize {
        if let Some(&i) = self.named.get(name) {
            return i;
        }
        let i = self.shapes.len();
        self.shapes.push(Shape::Any);
        self.named.insert(name.to_string(), i);
        if let Some(schema) = self.defs.get(name) {
            let shape = self.shape(schema, 0);
            self.shapes[i] = shape;
        }
        i
    }

    fn index(&mut self, schema: &Value, depth: usize) -> usize {
        if let Some(name) = ref_of(schema) {
            return self.named(name);
        }
        let shape = self.shape(schema, depth + 1);
        self.shapes.push(shape);
        self.shapes.len() - 1
    }

    fn shape(&mut self, schema: &Value, depth: usize) -> Shape {
        let Value::Object(m) = schema else { return Shape::Any };
        if depth > MAX_DEPTH {
            return Shape::Any;
        }
        if ref_of(schema).is_some() {
            // A definition that only aliases another: none exist in the catalog.
            return Shape::Any;
        }
        let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
        if flag("x-kubernetes-int-or-string") {
            return Shape::Any;
        }
        let preserve = flag("x-kubernetes-preserve-unknown-fields");
        if let Some(items) = m.get("items") {
            return match items {
                Value::Object(_) => Shape::Array(self.index(items, depth)),
                _ => Shape::Any,
            };
        }
        let mut props = HashMap::new();
        if let Some(Value::Object(p)) = m.get("properties") {
            for (name, s) in p {
                let i = self.index(s, depth);
                props.insert(name.clone(), i);
            }
        }
        if flag("x-kubernetes-embedded-resource") {
            for k in ["apiVersion", "kind", "metadata"] {
                props.entry(k.to_string()).or_insert(ANY);
            }
        }
        let extra = match m.get("additionalProperties") {
            Some(s @ Value::Object(_)) => Some(self.index(s, depth)),
            _ => None,
        };
        match (m.get("properties").is_some() || !props.is_empty(), extra) {
            (false, Some(x)) if !preserve => Shape::Map(x),
            (false, _) => Shape::Any,
            (true, extra) => {
                let preserve = preserve || matches!(m.get("additionalProperties"), Some(Value::Bool(true)));
                Shape::Object { props, extra, preserve }
            }
        }
    }
}

/// The definition a schema stands for: `{"$ref"}` or a one-element `allOf` of it.
fn ref_of(schema: &Value) -> Option<&str> {
    let r = schema.get("$ref").or_else(|| match schema.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        Some([only]) if schema.get("properties").is_none() => only.get("$ref"),
        _ => None,
    })?;
    r.as_str()?.strip_prefix(REF_PREFIX)
}

impl Validator {
    /// Compiles the shapes of every kind in the catalog.
    pub fn new(catalog: &Catalog) -> Validator {
        let mut c = Compiler { defs: &catalog.defs, shapes: vec![Shape::Any], named: HashMap::new() };
        let mut roots = HashMap::new();
        for (gvk, name) in &catalog.by_gvk {
            let i = c.named(name);
            roots.insert(gvk.clone(), (i, catalog.custom.contains(gvk)));
        }
        Validator { shapes: c.shapes, roots }
    }

    /// The strict decoding errors of a body of this kind (see `OpenApi::field_errors`).
    pub fn errors(&self, group: &str, version: &str, kind: &str, obj: &Value, raw_json: Option<&[u8]>) -> Vec<String> {
        let Some(&(root, custom)) = self.roots.get(&(group.to_string(), version.to_string(), kind.to_string())) else {
            return Vec::new();
        };
        let node = raw_json.and_then(|raw| serde_json::from_slice::<Node>(raw).ok()).unwrap_or_else(|| Node::from_value(obj, 0));
        let mut w = Walk { shapes: &self.shapes, custom, path: String::new(), dups: Vec::new(), unknown: Vec::new(), seen: HashSet::new() };
        w.node(&node, root, 0);
        if custom {
            // Unstructured objects: the decoder reports duplicates, then pruning reports the
            // unknown fields, sorted.
            w.unknown.sort();
            w.dups.extend(w.unknown);
            w.dups.truncate(MAX_ERRORS);
            return w.dups;
        }
        w.unknown
    }
}

/// A JSON document keeping every key, duplicates included, in order.
enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Scalar,
}

impl Node {
    fn from_value(v: &Value, depth: usize) -> Node {
        if depth > MAX_DEPTH {
            return Node::Scalar;
        }
        match v {
            Value::Object(m) => Node::Object(m.iter().map(|(k, x)| (k.clone(), Node::from_value(x, depth + 1))).collect()),
            Value::Array(a) => Node::Array(a.iter().map(|x| Node::from_value(x, depth + 1)).collect()),
            _ => Node::Scalar,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(x) = seq.next_element::<Node>()? {
            out.push(x);
        }
        Ok(Node::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value::<Node>()?;
            out.push((k, v));
        }
        Ok(Node::Object(out))
    }
}

/// One walk of a body against a shape, collecting errors as upstream words them.
struct Walk<'a> {
    shapes: &'a [Shape],
    /// Custom resources are decoded as unstructured: duplicates count everywhere.
    custom: bool,
    /// The current field path, upstream style (`spec.containers[0]`).
    path: String,
    dups: Vec<String>,
    unknown: Vec<String>,
    seen: HashSet<String>,
}

impl Walk<'_> {
    fn report(&mut self, duplicate: bool, key: &str) {
        let path = if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) };
        let msg = format!("{} field {}", if duplicate { "duplicate" } else { "unknown" }, quote(&path));
        if self.seen.len() >= MAX_ERRORS || !self.seen.insert(msg.clone()) {
            return;
        }
        // Built-in kinds report both kinds of error in document order, in one list.
        if duplicate && self.custom {
            self.dups.push(msg);
        } else {
            self.unknown.push(msg);
        }
    }

    fn child(&mut self, key: &str, node: &Node, shape: usize, depth: usize) {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        self.node(node, shape, depth + 1);
        self.path.truncate(len);
    }

    fn node(&mut self, node: &Node, shape: usize, depth: usize) {
        if depth > MAX_DEPTH || self.seen.len() >= MAX_ERRORS {
            return;
        }
        let Some(s) = self.shapes.get(shape) else { return };
        match (node, s) {
            (Node::Object(fields), Shape::Object { props, extra, preserve }) => {
                let mut keys = HashSet::new();
                for (k, v) in fields {
                    let first = keys.insert(k.as_str());
                    if let Some(&i) = props.get(k) {
                        if !first {
                            self.report(true, k);
                        }
                        self.child(k, v, i, depth);
                        continue;
                    }
                    if !first && self.custom {
                        self.report(true, k);
                    }
                    match (extra, preserve) {
                        (Some(x), _) => self.child(k, v, *x, depth),
                        (None, false) => self.report(false, k),
                        (None, true) => self.child(k, v, ANY, depth),
                    }
                }
            }
            (Node::Object(fields), Shape::Map(values)) => {
                let mut keys = HashSet::new();
                for (k, v) in fields {
                    if !keys.insert(k.as_str()) {
                        self.report(true, k);
                    }
                    self.child(k, v, *values, depth);
                }
            }
            (Node::Object(fields), Shape::Any) if self.custom => {
                let mut keys = HashSet::new();
                for (k, v) in fields {
                    if !keys.insert(k.as_str()) {
                        self.report(true, k);
                    }
                    self.child(k, v, shape, depth);
                }
            }
            (Node::Array(items), Shape::Array(item)) => {
                for (i, x) in items.iter().enumerate() {
                    let len = self.path.len();
                    self.path.push_str(&format!("[{i}]"));
                    self.node(x, *item, depth + 1);
                    self.path.truncate(len);
                }
            }
            (Node::Array(items), Shape::Any) if self.custom => {
                for (i, x) in items.iter().enumerate() {
                    let len = self.path.len();
                    self.path.push_str(&format!("[{i}]"));
                    self.node(x, shape, depth + 1);
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }
}

/// Go's `strconv.Quote` for the common case: JSON string escaping.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}
