//! Swagger 2.0 (`/openapi/v2`): the v3 schemas rewritten in v2 form, and the protobuf encoding
//! of the whole document as gnostic's `openapi_v2.Document`
//! (github.com/google/gnostic-models, `openapiv2/OpenAPIv2.proto`), which kubectl 1.27/1.28
//! load before `apply`, `create -f`, `diff` and `explain`.
//!
//! Only the fields a Kubernetes document uses are encoded; vendor extensions (`x-…`) travel as
//! `NamedAny` with their value written as JSON, which is valid YAML.

use serde_json::{Map, Value};

use super::schemas::REF_PREFIX;

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";

/// A definition in v2 form: `#/definitions/` references, `$ref` beside its description instead
/// of a one-element `allOf`, no `nullable`/`oneOf`/`anyOf`/`not`, and the two special string
/// types as upstream's v2 writes them.
pub(super) fn definition(name: &str, schema: &Value) -> Value {
    let mut s = schema_v2(schema);
    if let Value::Object(m) = &mut s {
        if name == QUANTITY || name == INT_OR_STRING {
            m.remove("x-kubernetes-int-or-string");
            m.insert("type".into(), Value::String("string".into()));
            if name == INT_OR_STRING {
                m.insert("format".into(), Value::String("int-or-string".into()));
            }
        }
    }
    s
}

fn schema_v2(v: &Value) -> Value {
    let Value::Object(m) = v else { return v.clone() };
    let mut out = Map::new();
    for (k, x) in m {
        match k.as_str() {
            "$ref" => {
                let r = x.as_str().unwrap_or("");
                let r = r.strip_prefix(REF_PREFIX).map(|n| format!("#/definitions/{n}")).unwrap_or_else(|| r.to_string());
                out.insert(k.clone(), Value::String(r));
            }
            "allOf" => match x.as_array().map(Vec::as_slice) {
                Some([only]) if only.get("$ref").is_some() && only.as_object().is_some_and(|o| o.len() == 1) => {
                    if let Value::Object(r) = schema_v2(only) {
                        out.extend(r);
                    }
                }
                Some(list) => {
                    out.insert(k.clone(), Value::Array(list.iter().map(schema_v2).collect()));
                }
                None => {}
            },
            "nullable" | "oneOf" | "anyOf" | "not" => {}
            "properties" => {
                let props: Map<String, Value> = x.as_object().map(|p| p.iter().map(|(n, s)| (n.clone(), schema_v2(s))).collect()).unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" => {
                out.insert(k.clone(), schema_v2(x));
            }
            _ => {
                out.insert(k.clone(), x.clone());
            }
        }
    }
    Value::Object(out)
}

/// A protobuf message being written.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut n: u64) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn msg(&mut self, field: u32, f: impl FnOnce(&mut Pb)) {
        let mut inner = Pb::default();
        f(&mut inner);
        self.bytes(field, &inner.0);
    }

    fn boolean(&mut self, field: u32, b: bool) {
        if b {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, n: i64) {
        self.key(field, 0);
        self.varint(n as u64);
    }

    fn double(&mut self, field: u32, f: f64) {
        self.key(field, 1);
        self.0.extend_from_slice(&f.to_le_bytes());
    }

    /// `Any { yaml }`: the value written as JSON, which YAML parsers accept.
    fn any(&mut self, field: u32, v: &Value) {
        let text = serde_json::to_string(v).unwrap_or_default();
        self.msg(field, |a| a.string(2, &text));
    }

    /// `NamedAny { name, value: Any }` for every `x-…` key of `m`.
    fn extensions(&mut self, field: u32, m: &Map<String, Value>) {
        for (k, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
            self.msg(field, |n| {
                n.string(1, k);
                n.any(2, v);
            });
        }
    }
}

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

fn strings<'a>(m: &'a Map<String, Value>, k: &str) -> impl Iterator<Item = &'a str> {
    m.get(k).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
}

/// Encodes a Swagger 2.0 JSON document as `openapi_v2.Document`.
pub(super) fn encode_document(doc: &Value) -> Vec<u8> {
    let mut pb = Pb::default();
    let Value::Object(d) = doc else { return pb.0 };
    pb.string(1, str_of(d, "swagger"));
    if let Some(Value::Object(info)) = d.get("info") {
        pb.msg(2, |i| {
            i.string(1, str_of(info, "title"));
            i.string(2, str_of(info, "version"));
        });
    }
    if let Some(Value::Object(paths)) = d.get("paths") {
        pb.msg(8, |p| {
            for (name, item) in paths {
                let Value::Object(item) = item else { continue };
                p.msg(2, |np| {
                    np.string(1, name);
                    np.msg(2, |pi| path_item(pi, item));
                });
            }
        });
    }
    if let Some(Value::Object(defs)) = d.get("definitions") {
        pb.msg(9, |p| {
            for (name, s) in defs {
                p.msg(1, |ns| {
                    ns.string(1, name);
                    ns.msg(2, |sm| schema(sm, s, 0));
                });
            }
        });
    }
    pb.0
}

fn path_item(pb: &mut Pb, item: &Map<String, Value>) {
    for (field, method) in [(2, "get"), (3, "put"), (4, "post"), (5, "delete"), (6, "options"), (7, "head"), (8, "patch")] {
        if let Some(Value::Object(op)) = item.get(method) {
            pb.msg(field, |o| operation(o, op));
        }
    }
    for p in item.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        pb.msg(9, |pi| parameter(pi, p));
    }
    pb.extensions(10, item);
}

fn operation(pb: &mut Pb, op: &Map<String, Value>) {
    strings(op, "tags").for_each(|t| pb.string(1, t));
    pb.string(2, str_of(op, "summary"));
    pb.string(3, str_of(op, "description"));
    pb.string(5, str_of(op, "operationId"));
    strings(op, "produces").for_each(|t| pb.string(6, t));
    strings(op, "consumes").for_each(|t| pb.string(7, t));
    for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        pb.msg(8, |pi| parameter(pi, p));
    }
    if let Some(Value::Object(responses)) = op.get("responses") {
        pb.msg(9, |rs| {
            for (code, r) in responses {
                let Value::Object(r) = r else { continue };
                rs.msg(1, |nr| {
                    nr.string(1, code);
                    nr.msg(2, |rv| {
                        rv.msg(1, |resp| {
                            resp.string(1, str_of(r, "description"));
                            if let Some(s) = r.get("schema") {
                                resp.msg(2, |si| si.msg(1, |sm| schema(sm, s, 0)));
                            }
                        })
                    });
                });
            }
        });
    }
    strings(op, "schemes").for_each(|t| pb.string(10, t));
    pb.extensions(13, op);
}

/// `ParametersItem { parameter: Parameter { body_parameter | non_body_parameter } }`.
fn parameter(pb: &mut Pb, p: &Value) {
    let Value::Object(p) = p else { return };
    let location = str_of(p, "in");
    let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
    pb.msg(1, |param| {
        if location == "body" {
            param.msg(1, |b| {
                b.string(1, str_of(p, "description"));
                b.string(2, str_of(p, "name"));
                b.string(3, location);
                b.boolean(4, required);
                if let Some(s) = p.get("schema") {
                    b.msg(5, |sm| schema(sm, s, 0));
                }
            });
            return;
        }
        // QueryParameterSubSchema and PathParameterSubSchema number their fields alike up to
        // `name`; the path one has no allow_empty_value, so its later fields are one lower.
        let (field, shift) = match location {
            "path" => (4, 1),
            "header" => (1, 1),
            _ => (3, 0),
        };
        param.msg(2, |nb| {
            nb.msg(field, |q| {
                q.boolean(1, required);
                q.string(2, location);
                q.string(3, str_of(p, "description"));
                q.string(4, str_of(p, "name"));
                q.string(6 - shift, str_of(p, "type"));
                q.boolean(20 - shift, p.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false));
            });
        });
    });
}

/// Deeper schemas than this are cut (CRD schemas are user input).
const MAX_DEPTH: usize = 64;

/// `openapi_v2.Schema`.
fn schema(pb: &mut Pb, s: &Value, depth: usize) {
    let Value::Object(m) = s else { return };
    if depth > MAX_DEPTH {
        return;
    }
    pb.string(1, str_of(m, "$ref"));
    pb.string(2, str_of(m, "format"));
    pb.string(3, str_of(m, "title"));
    pb.string(4, str_of(m, "description"));
    if let Some(d) = m.get("default") {
        pb.any(5, d);
    }
    let num = |pb: &mut Pb, field: u32, k: &str| {
        if let Some(f) = m.get(k).and_then(Value::as_f64) {
            pb.double(field, f);
        }
    };
    let int = |pb: &mut Pb, field: u32, k: &str| {
        if let Some(n) = m.get(k).and_then(Value::as_i64) {
            pb.int64(field, n);
        }
    };
    let flag = |pb: &mut Pb, field: u32, k: &str| pb.boolean(field, m.get(k).and_then(Value::as_bool).unwrap_or(false));
    num(pb, 6, "multipleOf");
    num(pb, 7, "maximum");
    flag(pb, 8, "exclusiveMaximum");
    num(pb, 9, "minimum");
    flag(pb, 10, "exclusiveMinimum");
    int(pb, 11, "maxLength");
    int(pb, 12, "minLength");
    pb.string(13, str_of(m, "pattern"));
    int(pb, 14, "maxItems");
    int(pb, 15, "minItems");
    flag(pb, 16, "uniqueItems");
    int(pb, 17, "maxProperties");
    int(pb, 18, "minProperties");
    strings(m, "required").for_each(|r| pb.string(19, r));
    for e in m.get("enum").and_then(Value::as_array).into_iter().flatten() {
        pb.any(20, e);
    }
    match m.get("additionalProperties") {
        Some(Value::Bool(b)) => pb.msg(21, |a| {
            a.key(2, 0);
            a.varint(u64::from(*b));
        }),
        Some(s @ Value::Object(_)) => pb.msg(21, |a| a.msg(1, |sm| schema(sm, s, depth + 1))),
        _ => {}
    }
    match m.get("type") {
        Some(Value::String(t)) => pb.msg(22, |ti| ti.string(1, t)),
        Some(Value::Array(ts)) => pb.msg(22, |ti| ts.iter().filter_map(Value::as_str).for_each(|t| ti.string(1, t))),
        _ => {}
    }
    match m.get("items") {
        Some(s @ Value::Object(_)) => pb.msg(23, |ii| ii.msg(1, |sm| schema(sm, s, depth + 1))),
        Some(Value::Array(list)) => pb.msg(23, |ii| list.iter().for_each(|s| ii.msg(1, |sm| schema(sm, s, depth + 1)))),
        _ => {}
    }
    for s in m.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        pb.msg(24, |sm| schema(sm, s, depth + 1));
    }
    if let Some(Value::Object(props)) = m.get("properties") {
        pb.msg(25, |p| {
            for (name, s) in props {
                p.msg(1, |ns| {
                    ns.string(1, name);
                    ns.msg(2, |sm| schema(sm, s, depth + 1));
                });
            }
        });
    }
    flag(pb, 27, "readOnly");
    if let Some(e) = m.get("example") {
        pb.any(30, e);
    }
    pb.extensions(31, m);
}
