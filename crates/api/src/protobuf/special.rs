//! Messages whose JSON form is not an object of their fields (see [`Special`]), transcoded the way
//! their Go types marshal to JSON.

use serde_json::Value;

use super::{
    decode_at, decode_message, invalid, wrong_wire, Kind, Message, Reader, Result, Special, Wire,
    MAGIC,
};

pub(super) fn decode(msg: &Message, data: &[u8], depth: usize) -> Result<Value> {
    match msg.special {
        Special::Time | Special::MicroTime => time(msg, data),
        Special::Duration => {
            let mut nanos = 0i64;
            for_each(msg, data, |num, w| {
                if num == 1 {
                    nanos = varint(msg, num, "duration", w)? as i64;
                }
                Ok(())
            })?;
            Ok(Value::String(go_duration(nanos)))
        }
        Special::RawJson => {
            let mut raw: &[u8] = &[];
            for_each(msg, data, |num, w| {
                if num == 1 {
                    raw = bytes(msg, num, "raw", w)?;
                }
                Ok(())
            })?;
            raw_json(msg, raw, depth)
        }
        Special::StringList => {
            let mut items = Vec::new();
            for_each(msg, data, |num, w| {
                if num == 1 {
                    items.push(Value::String(
                        String::from_utf8_lossy(bytes(msg, num, "items", w)?).into_owned(),
                    ));
                }
                Ok(())
            })?;
            Ok(Value::Array(items))
        }
        Special::IntOrString => {
            let (mut typ, mut int_val, mut str_val) = (0u64, 0i32, String::new());
            for_each(msg, data, |num, w| {
                match num {
                    1 => typ = varint(msg, num, "type", w)?,
                    2 => int_val = varint(msg, num, "intVal", w)? as i32,
                    3 => {
                        str_val =
                            String::from_utf8_lossy(bytes(msg, num, "strVal", w)?).into_owned()
                    }
                    _ => {}
                }
                Ok(())
            })?;
            match typ {
                0 => Ok(Value::from(int_val)),
                1 => Ok(Value::String(str_val)),
                t => Err(invalid(
                    msg,
                    1,
                    format!("IntOrString type {t} is neither 0 (int) nor 1 (string)"),
                )),
            }
        }
        Special::Quantity => {
            // A missing string is the zero Quantity, which Go writes as "0".
            let mut s = None;
            for_each(msg, data, |num, w| {
                if num == 1 {
                    s = Some(String::from_utf8_lossy(bytes(msg, num, "string", w)?).into_owned());
                }
                Ok(())
            })?;
            Ok(Value::String(s.unwrap_or_else(|| "0".to_string())))
        }
        Special::SchemaOrArray | Special::SchemaOrBool | Special::SchemaOrStringArray => {
            union(msg, data, depth)
        }
        // Callers only dispatch special messages here.
        Special::None => Err(invalid(msg, 0, "not a special message")),
    }
}

/// The JSONSchemaPropsOr* unions of apiextensions (Go's custom MarshalJSON):
/// OrArray `{1: schema, 2: repeated schemas}` → the array if non-empty, else the schema or null;
/// OrBool `{1: allows, 2: schema}` → the schema if set, else the bool;
/// OrStringArray `{1: schema, 2: repeated property}` → the strings if non-empty, else the schema or null.
fn union(msg: &Message, data: &[u8], depth: usize) -> Result<Value> {
    let schema_index = |tag: u32| {
        msg.fields.iter().find(|f| f.0 == tag).and_then(|f| {
            if let Kind::Msg(t) = f.2 {
                Some(t)
            } else {
                None
            }
        })
    };
    let (schema_tag, list_tag) = if msg.special == Special::SchemaOrBool {
        (2, 0)
    } else {
        (1, 2)
    };
    let mut schema: Option<Vec<&[u8]>> = None;
    let mut list = Vec::new();
    let mut allows = false;
    for_each(msg, data, |num, w| {
        if num == schema_tag {
            schema
                .get_or_insert_with(Vec::new)
                .push(bytes(msg, num, "schema", w)?);
        } else if num == list_tag {
            let b = bytes(msg, num, "items", w)?;
            list.push(match (msg.special, schema_index(2)) {
                (Special::SchemaOrArray, Some(t)) => decode_message(t, b, depth + 1)?,
                _ => Value::String(String::from_utf8_lossy(b).into_owned()),
            });
        } else if num == 1 && msg.special == Special::SchemaOrBool {
            allows = varint(msg, num, "allows", w)? != 0;
        }
        Ok(())
    })?;
    if !list.is_empty() {
        return Ok(Value::Array(list));
    }
    match (schema, schema_index(schema_tag)) {
        (Some(parts), Some(t)) => decode_message(t, &parts.concat(), depth + 1),
        _ if msg.special == Special::SchemaOrBool => Ok(Value::Bool(allows)),
        _ => Ok(Value::Null),
    }
}

/// Embedded JSON (`RawExtension.raw`, `FieldsV1.Raw`, apiextensions `JSON.raw`); an embedded
/// Kubernetes protobuf object (`k8s\0…`) is transcoded too. Empty → null, as in Go.
fn raw_json(msg: &Message, raw: &[u8], depth: usize) -> Result<Value> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if raw.starts_with(MAGIC) {
        return decode_at(raw, depth + 1);
    }
    serde_json::from_slice(raw).map_err(|e| invalid(msg, 1, format!("embedded JSON: {e}")))
}

/// `metav1.Time` (seconds precision, as Go's proto decoder and JSON encoder keep) and
/// `metav1.MicroTime` (6 decimals) as RFC 3339 UTC; empty or zero time → null.
fn time(msg: &Message, data: &[u8]) -> Result<Value> {
    if data.is_empty() {
        return Ok(Value::Null);
    }
    let (mut secs, mut nanos) = (0i64, 0i64);
    for_each(msg, data, |num, w| {
        match num {
            1 => secs = varint(msg, num, "seconds", w)? as i64,
            2 => nanos = i64::from(varint(msg, num, "nanos", w)? as i32),
            _ => {}
        }
        Ok(())
    })?;
    let micro = msg.special == Special::MicroTime;
    // time.Unix(secs, nanos) normalizes nanos into [0, 1e9).
    let secs = secs
        .checked_add(nanos.div_euclid(1_000_000_000))
        .ok_or_else(|| invalid(msg, 1, "time out of range"))?;
    let nanos = if micro {
        nanos.rem_euclid(1_000_000_000)
    } else {
        0
    };
    // Go's zero time.Time (0001-01-01T00:00:00Z) marshals as null.
    if secs == -62_135_596_800 && nanos == 0 {
        return Ok(Value::Null);
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return Err(invalid(msg, 1, format!("year {y} outside [0, 9999]")));
    }
    let (hh, mm, ss) = (rem / 3600, rem / 60 % 60, rem % 60);
    let mut s = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}");
    if micro {
        s.push_str(&format!(".{:06}", nanos / 1000));
    }
    s.push('Z');
    Ok(Value::String(s))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Go's `time.Duration.String()`: "1h2m3.5s", "1.5ms", "0s".
pub(super) fn go_duration(d: i64) -> String {
    let neg = d < 0;
    let mut u = d.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0 => return "0s".to_string(),
            1..=999 => (0, "ns"),
            1_000..=999_999 => (3, "µs"),
            _ => (6, "ms"),
        };
        let frac = fraction(&mut u, prec);
        out = format!("{u}{frac}{unit}");
    } else {
        let frac = fraction(&mut u, 9);
        let (s, m, h) = (u % 60, u / 60 % 60, u / 3600);
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if u >= 60 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&format!("{s}{frac}s"));
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// Splits off the last `prec` decimal digits of `u` as ".ddd" without trailing zeros.
fn fraction(u: &mut u64, prec: u32) -> String {
    let p = 10u64.pow(prec);
    let f = *u % p;
    *u /= p;
    if f == 0 {
        return String::new();
    }
    let digits = format!("{f:0width$}", width = prec as usize);
    format!(".{}", digits.trim_end_matches('0'))
}

fn for_each<'a>(
    msg: &'a Message,
    data: &'a [u8],
    mut f: impl FnMut(u32, Wire<'a>) -> Result<()>,
) -> Result<()> {
    let mut r = Reader::new(data, msg.name);
    while let Some((num, w)) = r.next_field()? {
        f(num, w)?;
    }
    Ok(())
}

fn varint(msg: &Message, num: u32, json: &str, w: Wire<'_>) -> Result<u64> {
    match w {
        Wire::Varint(v) => Ok(v),
        other => Err(wrong_wire(msg, num, json, &other, "varint")),
    }
}

fn bytes<'a>(msg: &Message, num: u32, json: &str, w: Wire<'a>) -> Result<&'a [u8]> {
    match w {
        Wire::Len(b) => Ok(b),
        other => Err(wrong_wire(msg, num, json, &other, "length-delimited")),
    }
}
