//! Kubernetes protobuf → JSON transcoder for request bodies.
//!
//! kubectl ≥ 1.32 sends `application/vnd.kubernetes.protobuf` bodies for `create deployment`,
//! `create service`, `auth can-i` and other typed-client commands, with no JSON fallback, while
//! Timonier stores and serves JSON. [`decode`] turns such a body into the JSON object kubectl
//! 1.31 would have sent for the same command.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` envelope
//! `{1: typeMeta{1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding, 4: contentType}`; `raw` is
//! the object's own message. The messages come from the generated `table.rs` (see
//! `gen/gen_table.py`): field number → JSON name and kind. On top of the table this module
//! implements the rules Go's encoders imply:
//! * zero values of non-pointer `omitempty` scalars (flag `Z`) are dropped, as Go's JSON encoder
//!   omits them; other zeros (pointer fields such as `replicas: 0`) are kept, and so are empty
//!   messages (`{}`), empty map values and empty list items;
//! * inline embedded structs (flag `I`: `volumeSource`, `handler`, …) are merged into the parent;
//! * a few messages are not objects in JSON (`Special`, in `special.rs`): Time, MicroTime, Duration, Quantity,
//!   IntOrString, RawExtension / FieldsV1 / apiextensions JSON (embedded JSON), Verbs and
//!   ExtraValue (arrays), and the JSONSchemaPropsOr* unions;
//! * repeated occurrences of a singular message field are merged (protobuf semantics), unknown
//!   fields are skipped, wrong wire types are errors. Nothing here panics on any input.
//!
//! The reverse direction, [`encode`] (JSON → protobuf for responses, `encode.rs`), inverts these
//! rules from the same table; [`encodable`] tells which kinds have a protobuf form (built-in kinds,
//! their `…List`s, `Status`, `PartialObjectMetadata(List)`; not `Table`, not custom resources).

mod encode;
mod special;
mod table;
#[cfg(test)]
mod tests;

use base64::Engine as _;
use serde_json::{Map, Value};
use table::{KINDS, MESSAGES};

pub use encode::{encodable, encode, encode_raw};

/// Why a body could not be transcoded; the message names the offending field and message.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`, so it is not a Kubernetes protobuf body.
    #[error("not a Kubernetes protobuf body: missing the \"k8s\\0\" magic prefix")]
    BadMagic,
    /// The data ends inside a field (or a length points past the end).
    #[error("truncated protobuf data in message {message}")]
    Truncated { message: String },
    /// A varint longer than 10 bytes.
    #[error("malformed varint in message {message}")]
    BadVarint { message: String },
    /// Field number 0, or a wire type that protobuf does not define or this decoder does not
    /// accept (groups).
    #[error("invalid field key (field {field}, wire type {wire_type}) in message {message}")]
    BadKey {
        field: u64,
        wire_type: u8,
        message: String,
    },
    /// A known field arrived with a wire type that does not fit its declared type.
    #[error("wrong wire type {found} at field {field} ({json}) of message {message}: expected {expected}")]
    WrongWireType {
        field: u32,
        json: String,
        message: String,
        found: u8,
        expected: &'static str,
    },
    /// The envelope names a kind this server has no message for (answer 415).
    #[error("unknown kind \"{api_version} {kind}\"")]
    UnknownKind { api_version: String, kind: String },
    /// The envelope carries no kind.
    #[error("the runtime.Unknown envelope has no apiVersion/kind")]
    MissingTypeMeta,
    /// `contentEncoding` is set (e.g. gzip); Kubernetes clients never do this.
    #[error("unsupported runtime.Unknown contentEncoding \"{0}\"")]
    UnsupportedEncoding(String),
    /// A value that Go would refuse to turn into JSON (bad embedded JSON, NaN, …).
    #[error("invalid value at field {field} of message {message}: {reason}")]
    InvalidValue {
        field: u32,
        message: String,
        reason: String,
    },
    /// [`encode`]: a JSON value does not fit its protobuf field (wrong JSON type, number out of
    /// range, bad base64 / RFC 3339 / duration); `path` is the JSON path, e.g. `.spec.replicas`.
    #[error("cannot encode {path} as protobuf: {reason}")]
    InvalidJson { path: String, reason: String },
    /// Messages nested deeper than [`MAX_DEPTH`].
    #[error("messages nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

type Result<T> = std::result::Result<T, ProtobufError>;

/// Nesting limit, so hostile input cannot exhaust the stack (real objects nest under 30 levels;
/// a CRD schema takes one to two levels per schema level).
pub const MAX_DEPTH: usize = 200;

/// The magic prefix of Kubernetes protobuf bodies.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Media type of Kubernetes protobuf bodies (`Content-Type` of the requests to transcode).
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Decodes a `k8s\0`-framed Kubernetes protobuf body (runtime.Unknown envelope) into the JSON
/// object kubectl would have sent, with apiVersion and kind from the envelope.
pub fn decode(body: &[u8]) -> std::result::Result<Value, ProtobufError> {
    decode_at(body, 0)
}

/// Whether `apiVersion`/`kind` has a known message (so the server can answer 415 otherwise).
pub fn supports(api_version: &str, kind: &str) -> bool {
    encode::resolve(api_version, kind).is_some()
}

/// Reads only the envelope's `(apiVersion, kind)`, e.g. to route or reject a body before
/// transcoding it.
pub fn type_meta(body: &[u8]) -> std::result::Result<(String, String), ProtobufError> {
    let env = envelope(body)?;
    Ok((env.api_version, env.kind))
}

// ---- table model (used by the generated table.rs) ----

/// Flag: repeated field (JSON array).
const R: u8 = 1;
/// Flag: non-pointer `omitempty` scalar; a zero value is dropped.
const Z: u8 = 2;
/// Flag: inline embedded struct; its fields are merged into the parent object.
const I: u8 = 4;

/// Field types as they appear in k8s-pb; maps have string keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    I32,
    I64,
    Bool,
    Bytes,
    F64,
    Msg(u16),
    MapStr,
    MapBytes,
    MapMsg(u16),
}

/// One field: (number, JSON name, kind, flags).
struct Field(u32, &'static str, Kind, u8);

/// One message: its full proto name, its JSON shape and its fields sorted by number.
struct Message {
    name: &'static str,
    special: Special,
    fields: &'static [Field],
}

/// Messages whose JSON is not a plain object of their fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    None,
    Time,
    MicroTime,
    Duration,
    RawJson,
    StringList,
    IntOrString,
    Quantity,
    SchemaOrArray,
    SchemaOrBool,
    SchemaOrStringArray,
}

/// Kinds that every API group version serves from meta/v1 (`metav1.AddToGroupVersion`).
const META_KINDS: &[&str] = &[
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "Status",
    "UpdateOptions",
    "WatchEvent",
];
const META_PACKAGE: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

fn lookup(api_version: &str, kind: &str) -> Option<u16> {
    if let Ok(i) = KINDS.binary_search_by(|(a, k, _)| (*a, *k).cmp(&(api_version, kind))) {
        return KINDS.get(i).map(|e| e.2);
    }
    let known = api_version == "meta.k8s.io/v1" || KINDS.iter().any(|(a, _, _)| *a == api_version);
    if known && META_KINDS.contains(&kind) {
        return message_by_name(&format!("{META_PACKAGE}.{kind}"));
    }
    None
}

fn message_by_name(name: &str) -> Option<u16> {
    let i = MESSAGES.binary_search_by(|m| m.name.cmp(name)).ok()?;
    u16::try_from(i).ok()
}

fn message(idx: u16) -> &'static Message {
    // Indices come from the generated table itself; the fallback only guards against a bad table.
    MESSAGES.get(usize::from(idx)).unwrap_or(&EMPTY)
}

static EMPTY: Message = Message {
    name: "(unknown)",
    special: Special::None,
    fields: &[],
};

// ---- wire format ----

/// One field value as read from the wire.
#[derive(Clone, Copy, Debug)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32,
}

impl Wire<'_> {
    fn wire_type(&self) -> u8 {
        match self {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Len(_) => 2,
            Wire::Fixed32 => 5,
        }
    }
}

/// Iterates over the `(field number, value)` pairs of one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    message: &'a str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], message: &'a str) -> Self {
        Reader {
            buf,
            pos: 0,
            message,
        }
    }

    fn truncated(&self) -> ProtobufError {
        ProtobufError::Truncated {
            message: self.message.to_string(),
        }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(|| self.truncated())?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(ProtobufError::BadVarint {
                    message: self.message.to_string(),
                });
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ProtobufError::BadVarint {
            message: self.message.to_string(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.truncated())?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next_field(&mut self) -> Result<Option<(u32, Wire<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (num, wt) = (key >> 3, (key & 7) as u8);
        let bad = || ProtobufError::BadKey {
            field: num,
            wire_type: wt,
            message: self.message.to_string(),
        };
        let field = u32::try_from(num)
            .ok()
            .filter(|n| *n != 0 && *n < (1 << 29))
            .ok_or_else(bad)?;
        let value = match wt {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                Wire::Fixed64(u64::from_le_bytes(
                    b.try_into().map_err(|_| self.truncated())?,
                ))
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| self.truncated())?;
                Wire::Len(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32 // no Kubernetes field is fixed32/float: only skipped or rejected
            }
            _ => return Err(bad()),
        };
        Ok(Some((field, value)))
    }
}

fn wrong_wire(
    msg: &Message,
    field: u32,
    json: &str,
    found: &Wire<'_>,
    expected: &'static str,
) -> ProtobufError {
    ProtobufError::WrongWireType {
        field,
        json: json.to_string(),
        message: msg.name.to_string(),
        found: found.wire_type(),
        expected,
    }
}

fn invalid(msg: &Message, field: u32, reason: impl Into<String>) -> ProtobufError {
    ProtobufError::InvalidValue {
        field,
        message: msg.name.to_string(),
        reason: reason.into(),
    }
}

// ---- envelope ----

struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
}

const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";

fn envelope(body: &[u8]) -> Result<Envelope<'_>> {
    const TYPE_META: &str = "k8s.io.apimachinery.pkg.runtime.TypeMeta";
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or(ProtobufError::BadMagic)?;
    let mut env = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
    };
    let mut encoding = String::new();
    let mut r = Reader::new(rest, UNKNOWN);
    while let Some((field, w)) = r.next_field()? {
        match field {
            1 => {
                let mut t = Reader::new(envelope_len(w, UNKNOWN, 1, "typeMeta")?, TYPE_META);
                while let Some((f, v)) = t.next_field()? {
                    match f {
                        1 => env.api_version = lossy(envelope_len(v, TYPE_META, 1, "apiVersion")?),
                        2 => env.kind = lossy(envelope_len(v, TYPE_META, 2, "kind")?),
                        _ => {}
                    }
                }
            }
            2 => env.raw = envelope_len(w, UNKNOWN, 2, "raw")?,
            3 => encoding = lossy(envelope_len(w, UNKNOWN, 3, "contentEncoding")?),
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(ProtobufError::UnsupportedEncoding(encoding));
    }
    if env.kind.is_empty() {
        return Err(ProtobufError::MissingTypeMeta);
    }
    Ok(env)
}

fn envelope_len<'a>(w: Wire<'a>, message: &str, field: u32, json: &str) -> Result<&'a [u8]> {
    match w {
        Wire::Len(b) => Ok(b),
        other => Err(ProtobufError::WrongWireType {
            field,
            json: json.to_string(),
            message: message.to_string(),
            found: other.wire_type(),
            expected: "length-delimited",
        }),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn decode_at(body: &[u8], depth: usize) -> Result<Value> {
    let env = envelope(body)?;
    let idx =
        encode::resolve(&env.api_version, &env.kind).ok_or_else(|| ProtobufError::UnknownKind {
            api_version: env.api_version.clone(),
            kind: env.kind.clone(),
        })?;
    let obj = decode_message(idx, env.raw, depth + 1)?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(env.api_version));
    out.insert("kind".into(), Value::String(env.kind));
    if let Value::Object(fields) = obj {
        for (k, v) in fields {
            if k != "apiVersion" && k != "kind" {
                out.insert(k, v);
            }
        }
    }
    Ok(Value::Object(out))
}

// ---- messages ----

fn decode_message(idx: u16, data: &[u8], depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let msg = message(idx);
    if msg.special != Special::None {
        return special::decode(msg, data, depth);
    }
    let mut out = Map::new();
    // Singular message fields: every occurrence's bytes, merged (concatenated) at the end.
    let mut pending: Vec<(usize, Vec<&[u8]>)> = Vec::new();
    let mut r = Reader::new(data, msg.name);
    while let Some((num, w)) = r.next_field()? {
        let Ok(fi) = msg.fields.binary_search_by_key(&num, |f| f.0) else {
            continue; // unknown field: skipped, as Go does
        };
        let f = &msg.fields[fi];
        let Field(_, json, kind, flags) = *f;
        match kind {
            Kind::Msg(t) => {
                let Wire::Len(b) = w else {
                    return Err(wrong_wire(msg, num, json, &w, "length-delimited (message)"));
                };
                if flags & R != 0 {
                    let v = decode_message(t, b, depth + 1)?;
                    push(&mut out, json, v);
                } else if let Some(p) = pending.iter_mut().find(|p| p.0 == fi) {
                    p.1.push(b);
                } else {
                    pending.push((fi, vec![b]));
                }
            }
            Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_) => {
                let Wire::Len(b) = w else {
                    return Err(wrong_wire(
                        msg,
                        num,
                        json,
                        &w,
                        "length-delimited (map entry)",
                    ));
                };
                let (k, v) = map_entry(msg, f, b, depth)?;
                match out.entry(json).or_insert_with(|| Value::Object(Map::new())) {
                    Value::Object(m) => {
                        m.insert(k, v);
                    }
                    slot => *slot = Value::Object(Map::from_iter([(k, v)])),
                }
            }
            _ if flags & R != 0 => {
                if let (Wire::Len(b), Kind::I32 | Kind::I64 | Kind::Bool | Kind::F64) = (w, kind) {
                    for v in packed(msg, f, b)? {
                        push(&mut out, json, v);
                    }
                } else {
                    let v = scalar(msg, f, w)?;
                    push(&mut out, json, v);
                }
            }
            _ => {
                let v = scalar(msg, f, w)?;
                if flags & Z != 0 && is_zero(&v) {
                    out.remove(json);
                } else {
                    out.insert(json.to_string(), v);
                }
            }
        }
    }
    for (fi, parts) in pending {
        let Some(Field(num, json, Kind::Msg(t), flags)) = msg.fields.get(fi) else {
            continue;
        };
        let v = if parts.len() == 1 {
            decode_message(*t, parts[0], depth + 1)?
        } else {
            decode_message(*t, &parts.concat(), depth + 1)?
        };
        if flags & I != 0 {
            match v {
                Value::Object(inner) => out.extend(inner),
                _ => return Err(invalid(msg, *num, "inline field is not an object")),
            }
        } else {
            out.insert(json.to_string(), v);
        }
    }
    Ok(Value::Object(out))
}

fn push(out: &mut Map<String, Value>, json: &str, v: Value) {
    match out.entry(json).or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(a) => a.push(v),
        slot => *slot = Value::Array(vec![v]),
    }
}

/// Decodes a map entry `{1: key, 2: value}`; a missing value is the value type's zero.
fn map_entry(msg: &Message, f: &Field, b: &[u8], depth: usize) -> Result<(String, Value)> {
    let mut key = String::new();
    let mut val: Option<Wire<'_>> = None;
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut r = Reader::new(b, msg.name);
    while let Some((num, w)) = r.next_field()? {
        match (num, w) {
            (1, Wire::Len(k)) => key = lossy(k),
            (1, other) => {
                return Err(wrong_wire(
                    msg,
                    f.0,
                    f.1,
                    &other,
                    "length-delimited (map key)",
                ))
            }
            (2, Wire::Len(v)) => {
                parts.push(v);
                val = Some(Wire::Len(v));
            }
            (2, other) => {
                return Err(wrong_wire(
                    msg,
                    f.0,
                    f.1,
                    &other,
                    "length-delimited (map value)",
                ))
            }
            _ => {}
        }
    }
    let v = match f.2 {
        Kind::MapStr => match val {
            Some(Wire::Len(v)) => Value::String(lossy(v)),
            _ => Value::String(String::new()),
        },
        Kind::MapBytes => match val {
            Some(Wire::Len(v)) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(v))
            }
            _ => Value::String(String::new()),
        },
        Kind::MapMsg(t) => decode_message(t, &parts.concat(), depth + 1)?,
        _ => Value::Null,
    };
    Ok((key, v))
}

/// Decodes one scalar value of field `f`.
fn scalar(msg: &Message, f: &Field, w: Wire<'_>) -> Result<Value> {
    let Field(num, json, kind, _) = *f;
    Ok(match (kind, w) {
        (Kind::Str, Wire::Len(b)) => Value::String(lossy(b)),
        (Kind::Bytes, Wire::Len(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Kind::I32, Wire::Varint(v)) => Value::from(v as i32),
        (Kind::I64, Wire::Varint(v)) => Value::from(v as i64),
        (Kind::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        (Kind::F64, Wire::Fixed64(v)) => {
            float(f64::from_bits(v)).ok_or_else(|| invalid(msg, num, "NaN or infinite double"))?
        }
        (Kind::Str | Kind::Bytes, other) => {
            return Err(wrong_wire(msg, num, json, &other, "length-delimited"))
        }
        (Kind::F64, other) => return Err(wrong_wire(msg, num, json, &other, "fixed64 (double)")),
        (_, other) => return Err(wrong_wire(msg, num, json, &other, "varint")),
    })
}

/// Decodes a packed repeated numeric field.
fn packed(msg: &Message, f: &Field, b: &[u8]) -> Result<Vec<Value>> {
    let mut r = Reader::new(b, msg.name);
    let mut out = Vec::new();
    while r.pos < b.len() {
        let w = if f.2 == Kind::F64 {
            let chunk = r.take(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(chunk);
            Wire::Fixed64(u64::from_le_bytes(a))
        } else {
            Wire::Varint(r.varint()?)
        };
        out.push(scalar(msg, f, w)?);
    }
    Ok(out)
}

/// A double as Go's JSON encoder writes it: integral values (below 1e21) without a fraction.
fn float(v: f64) -> Option<Value> {
    if !v.is_finite() {
        return None;
    }
    if v.fract() == 0.0 && v.abs() < 9.0e18 {
        return Some(Value::from(v as i64));
    }
    serde_json::Number::from_f64(v).map(Value::Number)
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        _ => false,
    }
}
