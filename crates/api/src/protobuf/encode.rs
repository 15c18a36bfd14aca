//! JSON → Kubernetes protobuf encoder for responses (the inverse of [`super::decode`]).
//!
//! [`encode`] writes what kube-apiserver sends for `Accept: application/vnd.kubernetes.protobuf`:
//! the `k8s\0` magic, then a `runtime.Unknown` envelope `{1: typeMeta{1: apiVersion, 2: kind},
//! 2: raw, 3: contentEncoding "", 4: contentType ""}` whose `raw` is the object's message, built
//! from the same generated table the decoder reads. Go's gogo-protobuf marshalling rules, as
//! Kubernetes' `generated.pb.go` files implement them, are mirrored:
//! * fields in field-number order; repeated fields element by element (proto2: never packed);
//!   maps as entry messages `{1: key, 2: value}` sorted by key (key and value always written);
//! * non-pointer scalars are always written, zero included. A field the JSON omits is written as
//!   zero when Go's JSON encoder would have omitted it (flag `Z`: non-pointer `omitempty`); other
//!   absent or `null` fields are pointers in Go (nil: not written). `[]byte` fields are written iff
//!   present, as gogo does (`if m.X != nil`);
//! * non-pointer message fields (the `omitempty` ones listed in `gen/nonptr_omitempty.txt`,
//!   e.g. `creationTimestamp`, `status`) are written even when absent (`42 00` for a zero Time);
//! * inline structs (flag `I`) are split back out of the parent object and always written;
//! * special messages: Time `{seconds, nanos: 0}`, MicroTime `{seconds, nanos}` (zero time → empty
//!   message), Duration `{duration ns}`, Quantity `{string}`, IntOrString `{type, intVal, strVal}`,
//!   embedded JSON as bytes, Verbs/ExtraValue from arrays, the JSONSchemaPropsOr* unions.
//!
//! JSON fields the table does not know are ignored (as Go's JSON decoder would). A value of the
//! wrong JSON type (a string where a message belongs, 2^31 in an int32, 1.5 in an int64, bad
//! base64, bad RFC 3339) is an error ([`ProtobufError::InvalidJson`]) naming its path; nothing here
//! panics.

use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{
    lookup, message, message_by_name, table::MESSAGES, Field, Kind, ProtobufError, Special, I,
    MAGIC, MAX_DEPTH, META_PACKAGE, R, Z,
};

type Result<T> = std::result::Result<T, ProtobufError>;

/// Encodes a JSON object (with `apiVersion` and `kind`) as a `k8s\0`-framed Kubernetes protobuf
/// body, as kube-apiserver would send it.
pub fn encode(obj: &Value) -> Result<Vec<u8>> {
    let (api_version, kind) = type_of(obj)?;
    let raw = encode_raw(obj)?;
    let mut type_meta = Vec::with_capacity(api_version.len() + kind.len() + 4);
    put_bytes(&mut type_meta, 1, api_version.as_bytes());
    put_bytes(&mut type_meta, 2, kind.as_bytes());
    let mut out = Vec::with_capacity(raw.len() + type_meta.len() + 16);
    out.extend_from_slice(MAGIC);
    put_bytes(&mut out, 1, &type_meta);
    put_bytes(&mut out, 2, &raw);
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    Ok(out)
}

/// Encodes only the object's own message (the envelope's `raw`), without magic or envelope.
pub fn encode_raw(obj: &Value) -> Result<Vec<u8>> {
    let (api_version, kind) = type_of(obj)?;
    let idx = resolve(api_version, kind).ok_or_else(|| ProtobufError::UnknownKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    })?;
    let mut out = Vec::new();
    encode_message(idx, obj, 1, &mut out)?;
    Ok(out)
}

/// Whether objects of `apiVersion`/`kind` can be sent as protobuf: the built-in kinds of the
/// table, their `…List` kinds, `Status` (and the other meta kinds every group serves), and
/// `meta.k8s.io/v1` `PartialObjectMetadata(List)`. Not `Table` (kube-apiserver serves it only as
/// JSON) and not custom resources: answer those 406 Not Acceptable, or fall back to JSON when the
/// Accept header allows it.
pub fn encodable(api_version: &str, kind: &str) -> bool {
    resolve(api_version, kind).is_some()
}

/// The message of a kind, including `…List` kinds and meta.k8s.io PartialObjectMetadata(List).
pub(super) fn resolve(api_version: &str, kind: &str) -> Option<u16> {
    if kind == "Table" && api_version.starts_with("meta.k8s.io/") {
        return None; // metav1.Table is +protobuf=false
    }
    if let Some(i) = lookup(api_version, kind) {
        return Some(i);
    }
    if api_version == "meta.k8s.io/v1"
        && matches!(kind, "PartialObjectMetadata" | "PartialObjectMetadataList")
    {
        return message_by_name(&format!("{META_PACKAGE}.{kind}"));
    }
    let item = kind.strip_suffix("List")?;
    let i = lookup(api_version, item)?;
    let list = message_by_name(&format!("{}List", message(i).name))?;
    // Only a real list message: {1: ListMeta metadata, 2: repeated items}.
    let fields = message(list).fields;
    let ok = fields.iter().any(|f| f.1 == "items" && f.3 & R != 0);
    ok.then_some(list)
}

fn type_of(obj: &Value) -> Result<(&str, &str)> {
    let Value::Object(m) = obj else {
        return Err(bad(
            "",
            format!("expected a JSON object, found {}", shape(obj)),
        ));
    };
    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind) = (s("apiVersion"), s("kind"));
    if kind.is_empty() || api_version.is_empty() {
        return Err(ProtobufError::MissingTypeMeta);
    }
    Ok((api_version, kind))
}

// ---- errors ----

fn bad(path: &str, reason: impl Into<String>) -> ProtobufError {
    ProtobufError::InvalidJson {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Prefixes the JSON path of an error on its way up (free on the success path).
fn at(seg: &str, e: ProtobufError) -> ProtobufError {
    match e {
        ProtobufError::InvalidJson { path, reason } => ProtobufError::InvalidJson {
            path: format!("{seg}{path}"),
            reason,
        },
        other => other,
    }
}

fn shape(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---- wire helpers ----

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, tag: u32, wire_type: u8) {
    put_varint(out, (u64::from(tag) << 3) | u64::from(wire_type));
}

fn put_bytes(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    put_key(out, tag, 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// int32/int64/bool/enum as Go writes them: `uint64(v)`, negative int32 sign-extended (10 bytes).
fn put_int(out: &mut Vec<u8>, tag: u32, v: i64) {
    put_key(out, tag, 0);
    put_varint(out, v as u64);
}

/// Writes a nested message through `f` with its length prefix.
fn put_nested(
    out: &mut Vec<u8>,
    tag: u32,
    f: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let mut buf = Vec::new();
    f(&mut buf)?;
    put_bytes(out, tag, &buf);
    Ok(())
}

// ---- non-pointer message fields ----

fn norm(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// For every message of the table, which of its fields are non-pointer `omitempty` (per
/// `gen/nonptr_omitempty.txt`, carried in the binary): Go writes them even when JSON omits them.
fn nonptr() -> &'static Vec<Vec<bool>> {
    static NONPTR: OnceLock<Vec<Vec<bool>>> = OnceLock::new();
    NONPTR.get_or_init(|| {
        let mut listed = std::collections::HashMap::<String, Vec<String>>::new();
        for line in include_str!("gen/nonptr_omitempty.txt").lines() {
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some(m) if !m.starts_with('#') => {
                    listed.insert(norm(m), parts.map(norm).collect());
                }
                _ => {}
            }
        }
        MESSAGES
            .iter()
            .map(|m| {
                let names = listed.get(&norm(m.name));
                m.fields
                    .iter()
                    .map(|f| names.is_some_and(|n| n.contains(&norm(f.1))))
                    .collect()
            })
            .collect()
    })
}

fn is_nonptr(idx: u16, field_pos: usize) -> bool {
    nonptr()
        .get(usize::from(idx))
        .and_then(|m| m.get(field_pos))
        .copied()
        .unwrap_or(false)
}

// ---- messages ----

/// Encodes message `idx` from `v`; `Value::Null` stands for the Go zero value of a non-pointer
/// field (a zero struct, a zero Time, …).
fn encode_message(idx: u16, v: &Value, depth: usize, out: &mut Vec<u8>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let msg = message(idx);
    if msg.special != Special::None {
        return encode_special(msg.special, idx, v, depth, out);
    }
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    let obj = match v {
        Value::Object(m) => m,
        Value::Null => EMPTY.get_or_init(Map::new),
        other => {
            return Err(bad(
                "",
                format!(
                    "expected an object ({}), found {}",
                    short(msg.name),
                    shape(other)
                ),
            ))
        }
    };
    for (pos, f) in msg.fields.iter().enumerate() {
        let Field(tag, json, kind, flags) = *f;
        if flags & I != 0 {
            // Inline struct: its fields live in this same JSON object.
            let Kind::Msg(t) = kind else { continue };
            put_nested(out, tag, |b| encode_message(t, v, depth + 1, b))?;
            continue;
        }
        let val = obj.get(json).unwrap_or(&Value::Null);
        encode_field(idx, pos, f, val, depth, out).map_err(|e| at(&format!(".{json}"), e))?;
    }
    Ok(())
}

fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn encode_field(
    idx: u16,
    pos: usize,
    f: &Field,
    val: &Value,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    let Field(tag, _, kind, flags) = *f;
    match kind {
        Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_) => {
            let m = match val {
                Value::Null => return Ok(()),
                Value::Object(m) => m,
                other => {
                    return Err(bad(
                        "",
                        format!("expected a map object, found {}", shape(other)),
                    ))
                }
            };
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable(); // Go: sort.Strings, byte order
            for k in keys {
                let v = &m[k.as_str()];
                put_nested(out, tag, |e| {
                    put_bytes(e, 1, k.as_bytes());
                    match kind {
                        Kind::MapStr => match v {
                            Value::String(s) => put_bytes(e, 2, s.as_bytes()),
                            Value::Null => put_bytes(e, 2, b""),
                            other => {
                                return Err(bad(
                                    "",
                                    format!("expected a string, found {}", shape(other)),
                                ))
                            }
                        },
                        Kind::MapBytes if !v.is_null() => put_bytes(e, 2, &bytes_of(v)?),
                        Kind::MapMsg(t) => {
                            put_nested(e, 2, |b| encode_message(t, v, depth + 1, b))?;
                        }
                        _ => {}
                    }
                    Ok(())
                })
                .map_err(|e| at(&format!("[{k:?}]"), e))?;
            }
            Ok(())
        }
        _ if flags & R != 0 => {
            let items = match val {
                Value::Null => return Ok(()),
                Value::Array(a) => a,
                other => {
                    return Err(bad(
                        "",
                        format!("expected an array, found {}", shape(other)),
                    ))
                }
            };
            for (i, item) in items.iter().enumerate() {
                let r = match kind {
                    Kind::Msg(t) => put_nested(out, tag, |b| encode_message(t, item, depth + 1, b)),
                    _ if item.is_null() && kind == Kind::Bytes => Ok(()),
                    _ => scalar(out, tag, kind, item),
                };
                r.map_err(|e| at(&format!("[{i}]"), e))?;
            }
            Ok(())
        }
        Kind::Msg(t) => {
            if val.is_null() && !is_nonptr(idx, pos) {
                return Ok(()); // nil pointer
            }
            put_nested(out, tag, |b| encode_message(t, val, depth + 1, b))
        }
        Kind::Bytes => {
            if val.is_null() {
                Ok(()) // nil slice: gogo writes []byte only when non-nil
            } else {
                scalar(out, tag, kind, val)
            }
        }
        _ => {
            if val.is_null() {
                if flags & Z != 0 {
                    zero(out, tag, kind);
                }
                Ok(())
            } else {
                scalar(out, tag, kind, val)
            }
        }
    }
}

fn zero(out: &mut Vec<u8>, tag: u32, kind: Kind) {
    match kind {
        Kind::Str | Kind::Bytes => put_bytes(out, tag, b""),
        Kind::F64 => {
            put_key(out, tag, 1);
            out.extend_from_slice(&0f64.to_le_bytes());
        }
        _ => put_int(out, tag, 0),
    }
}

fn scalar(out: &mut Vec<u8>, tag: u32, kind: Kind, v: &Value) -> Result<()> {
    match (kind, v) {
        (Kind::Str, Value::String(s)) => put_bytes(out, tag, s.as_bytes()),
        (Kind::Bytes, _) => put_bytes(out, tag, &bytes_of(v)?),
        (Kind::Bool, Value::Bool(b)) => put_int(out, tag, i64::from(*b)),
        (Kind::I32, Value::Number(n)) => {
            let i = n
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| bad("", format!("{n} is not an int32")))?;
            put_int(out, tag, i64::from(i));
        }
        (Kind::I64, Value::Number(n)) => {
            let i = n
                .as_i64()
                .ok_or_else(|| bad("", format!("{n} is not an int64")))?;
            put_int(out, tag, i);
        }
        (Kind::F64, Value::Number(n)) => {
            let f = n
                .as_f64()
                .ok_or_else(|| bad("", format!("{n} is not a double")))?;
            put_key(out, tag, 1);
            out.extend_from_slice(&f.to_le_bytes());
        }
        (k, other) => {
            let want = match k {
                Kind::Str => "a string",
                Kind::Bool => "a boolean",
                Kind::I32 | Kind::I64 | Kind::F64 => "a number",
                _ => "a scalar",
            };
            return Err(bad("", format!("expected {want}, found {}", shape(other))));
        }
    }
    Ok(())
}

/// `[]byte` in Go's JSON: standard base64 with padding.
fn bytes_of(v: &Value) -> Result<Vec<u8>> {
    let Value::String(s) = v else {
        return Err(bad(
            "",
            format!("expected a base64 string, found {}", shape(v)),
        ));
    };
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| bad("", format!("invalid base64: {e}")))
}

// ---- special messages ----

fn encode_special(
    special: Special,
    idx: u16,
    v: &Value,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    match special {
        Special::Time | Special::MicroTime => {
            let (secs, nanos) = match v {
                Value::Null => return Ok(()),
                Value::String(s) => parse_time(s)?,
                other => {
                    return Err(bad(
                        "",
                        format!("expected an RFC 3339 time string, found {}", shape(other)),
                    ))
                }
            };
            // Go's zero time marshals to an empty message.
            if secs == -62_135_596_800 && nanos == 0 {
                return Ok(());
            }
            put_int(out, 1, secs);
            // metav1.Time.ProtoTime() leaves Nanos zero (JSON keeps only seconds); MicroTime keeps it.
            let nanos = if special == Special::MicroTime {
                nanos
            } else {
                0
            };
            put_int(out, 2, i64::from(nanos));
        }
        Special::Duration => {
            let d = match v {
                Value::Null => 0,
                Value::String(s) => {
                    parse_duration(s).ok_or_else(|| bad("", format!("invalid duration {s:?}")))?
                }
                other => {
                    return Err(bad(
                        "",
                        format!("expected a duration string, found {}", shape(other)),
                    ))
                }
            };
            put_int(out, 1, d);
        }
        Special::RawJson => {
            if !v.is_null() {
                let raw = serde_json::to_vec(v).map_err(|e| bad("", e.to_string()))?;
                put_bytes(out, 1, &raw);
            }
        }
        Special::StringList => match v {
            Value::Null => {}
            Value::Array(a) => {
                for (i, s) in a.iter().enumerate() {
                    scalar(out, 1, Kind::Str, s).map_err(|e| at(&format!("[{i}]"), e))?;
                }
            }
            other => {
                return Err(bad(
                    "",
                    format!("expected an array of strings, found {}", shape(other)),
                ))
            }
        },
        Special::IntOrString => {
            let (typ, int_val, str_val) = match v {
                Value::Null => (0, 0, ""),
                Value::String(s) => (1, 0, s.as_str()),
                Value::Number(n) => {
                    let i = n
                        .as_i64()
                        .and_then(|i| i32::try_from(i).ok())
                        .ok_or_else(|| bad("", format!("{n} is not an int32")))?;
                    (0, i, "")
                }
                other => {
                    return Err(bad(
                        "",
                        format!("expected an integer or a string, found {}", shape(other)),
                    ))
                }
            };
            put_int(out, 1, typ);
            put_int(out, 2, i64::from(int_val));
            put_bytes(out, 3, str_val.as_bytes());
        }
        Special::Quantity => {
            let s = match v {
                Value::Null => "0".to_string(),
                Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(bad(
                        "",
                        format!("expected a quantity string, found {}", shape(other)),
                    ))
                }
            };
            put_bytes(out, 1, s.as_bytes());
        }
        Special::SchemaOrArray | Special::SchemaOrBool | Special::SchemaOrStringArray => {
            encode_union(special, idx, v, depth, out)?;
        }
        Special::None => {}
    }
    Ok(())
}

/// The JSONSchemaPropsOr* unions (inverse of the decoder's `union`).
fn encode_union(
    special: Special,
    idx: u16,
    v: &Value,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    let msg = message(idx);
    let schema = |tag: u32| {
        msg.fields
            .iter()
            .find(|f| f.0 == tag)
            .and_then(|f| match f.2 {
                Kind::Msg(t) => Some(t),
                _ => None,
            })
    };
    let no_schema = || {
        bad(
            "",
            format!("table has no schema field in {}", short(msg.name)),
        )
    };
    match (special, v) {
        (_, Value::Null) => {
            if special == Special::SchemaOrBool {
                put_int(out, 1, 0);
            }
        }
        (Special::SchemaOrBool, Value::Bool(b)) => put_int(out, 1, i64::from(*b)),
        (Special::SchemaOrBool, Value::Object(_)) => {
            put_int(out, 1, 1);
            let t = schema(2).ok_or_else(no_schema)?;
            put_nested(out, 2, |b| encode_message(t, v, depth + 1, b))?;
        }
        (Special::SchemaOrArray | Special::SchemaOrStringArray, Value::Object(_)) => {
            let t = schema(1).ok_or_else(no_schema)?;
            put_nested(out, 1, |b| encode_message(t, v, depth + 1, b))?;
        }
        (Special::SchemaOrArray, Value::Array(items)) => {
            let t = schema(1).ok_or_else(no_schema)?;
            for (i, item) in items.iter().enumerate() {
                if !item.is_object() {
                    return Err(bad(
                        &format!("[{i}]"),
                        format!("expected a schema object, found {}", shape(item)),
                    ));
                }
                put_nested(out, 2, |b| encode_message(t, item, depth + 1, b))
                    .map_err(|e| at(&format!("[{i}]"), e))?;
            }
        }
        (Special::SchemaOrStringArray, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                scalar(out, 2, Kind::Str, item).map_err(|e| at(&format!("[{i}]"), e))?;
            }
        }
        (_, other) => {
            let want = match special {
                Special::SchemaOrBool => "a schema object or a boolean",
                Special::SchemaOrArray => "a schema object or an array of schemas",
                _ => "a schema object or an array of strings",
            };
            return Err(bad("", format!("expected {want}, found {}", shape(other))));
        }
    }
    Ok(())
}

/// RFC 3339 (Go's `time.Parse(time.RFC3339, …)`) → Unix seconds and nanoseconds.
fn parse_time(s: &str) -> Result<(i64, i32)> {
    let ts: jiff::Timestamp = s
        .parse()
        .map_err(|e| bad("", format!("invalid RFC 3339 time {s:?}: {e}")))?;
    Ok((ts.as_second(), ts.subsec_nanosecond()))
}

/// Go's `time.ParseDuration`: `[-+]` then one or more `<decimal>[.<decimal>]<unit>`, units
/// ns us µs μs ms s m h; `"0"` alone is allowed. `None` when malformed or out of int64 range.
pub(super) fn parse_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_end);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let e = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(e)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_end = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let mut v = int.checked_mul(scale)?;
        if !frac_part.is_empty() {
            // Go truncates the fraction to the unit's precision.
            let digits = &frac_part[..frac_part.len().min(30)];
            let f: u128 = digits.parse().ok()?;
            let div = 10u128.checked_pow(digits.len() as u32)?;
            v = v.checked_add(f.checked_mul(scale)? / div)?;
        }
        total = total.checked_add(v)?;
        if total > 1u128 << 63 {
            return None;
        }
        rest = next;
    }
    if neg {
        i64::try_from(-(total as i128)).ok()
    } else {
        i64::try_from(total).ok()
    }
}
