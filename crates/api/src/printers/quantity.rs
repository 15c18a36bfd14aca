//! `resource.Quantity` as upstream prints it (`Quantity.String()`): parsed, rounded up to nano
//! precision and put in canonical form (`1024Mi` → `1Gi`, `0.5` → `500m`, `1000` → `1k`).

use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

struct Parsed<'a> {
    positive: bool,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

/// Splits a quantity into sign, integer digits, fraction digits and suffix, as upstream's
/// `parseQuantityString` does (leading zeros stripped, `1.G` accepted).
fn split(s: &str) -> Option<Parsed<'_>> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    let mut p = Parsed { positive, num: "0", denom: "", suffix: "" };
    if pos >= end {
        return Some(p);
    }
    let start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos > start {
        p.num = &s[start..pos];
    }
    if pos >= end {
        return Some(p);
    }
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        p.denom = &s[start..pos];
        if pos >= end {
            return Some(p);
        }
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return None;
    }
    p.suffix = &s[suffix_start..];
    Some(p)
}

/// The base, exponent and format a suffix stands for.
fn interpret(suffix: &str) -> Option<(u32, i32, Format)> {
    let dec = [("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15), ("E", 18)];
    if let Some((_, e)) = dec.iter().find(|(s, _)| *s == suffix) {
        return Some((10, *e, Format::DecimalSI));
    }
    let bin = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40), ("Pi", 50), ("Ei", 60)];
    if let Some((_, e)) = bin.iter().find(|(s, _)| *s == suffix) {
        return Some((2, *e, Format::BinarySI));
    }
    let rest = suffix.strip_prefix(['e', 'E'])?;
    let e: i64 = rest.parse().ok()?;
    Some((10, e as i32, Format::DecimalExponent))
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

/// The value of a quantity in base units (`100m` → 0.1, `1Gi` → 1073741824), for arithmetic
/// such as summing requests; `None` when it does not parse.
pub fn quantity_value(s: &str) -> Option<f64> {
    let p = split(s)?;
    let (base, exponent, _) = interpret(p.suffix)?;
    let digits: f64 = format!("{}.{}", p.num, if p.denom.is_empty() { "0" } else { p.denom }).parse().ok()?;
    let v = digits * f64::from(base).powi(exponent);
    Some(if p.positive { v } else { -v })
}

/// The canonical form `Quantity.String()` prints for a quantity string, `None` when it does not
/// parse (or is too large for this port's 128-bit arithmetic).
pub fn canonical_quantity(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some("0".into());
    }
    let p = split(s)?;
    let (base, exponent, mut format) = interpret(p.suffix)?;
    let digits = format!("{}{}", p.num, p.denom);
    let digits = digits.trim_start_matches('0');
    let denom_len = p.denom.len() as i32;

    // Upstream keeps the original string when it parsed it on its int64 fast path and the
    // string was already canonical; reproduce that choice.
    let small: Option<i64> = if digits.is_empty() { Some(0) } else { digits.parse().ok() };
    let fast = match format {
        Format::BinarySI => exponent >= 0 && p.denom.is_empty() && 15 - p.num.len() as i32 - (exponent as f32 * 3.0 / 10.0) as i32 > 0,
        _ => 18 - (p.num.len() + p.denom.len()) as i32 >= 0 && exponent - denom_len >= -9,
    };
    if fast {
        if let Some(v) = small {
            let mantissa = if base == 2 { 1i64.checked_shl(exponent as u32) } else { Some(1) };
            if mantissa.and_then(|m| v.checked_mul(m)).is_some() {
                let keep = match format {
                    Format::BinarySI => exponent % 10 == 0 && v & 0x07 != 0,
                    _ => {
                        let shifted = format!("{}{}", p.num, p.denom);
                        (exponent - denom_len) % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0')
                    }
                };
                if keep {
                    return Some(s.to_string());
                }
            }
        }
    }

    // The exact value, |value| = m × 10^scale.
    let mut m: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    let mut scale: i32;
    if base == 2 {
        m = m.checked_mul(1i128.checked_shl(exponent as u32)?)?;
        scale = -denom_len;
    } else {
        scale = exponent.checked_sub(denom_len)?;
    }
    // Round non-zero values up (away from zero) to nano precision.
    if m != 0 && scale < -9 {
        let shift = (-9 - scale) as u32;
        m = match pow10(shift) {
            Some(div) => m / div + i128::from(m % div != 0),
            None => 1,
        };
        scale = -9;
    }
    if format == Format::BinarySI {
        let cap = i64::MAX as i128;
        let over = if scale >= 0 {
            pow10(scale as u32).and_then(|f| m.checked_mul(f)).is_none_or(|v| v > cap)
        } else {
            pow10((-scale) as u32).and_then(|f| cap.checked_mul(f)).is_some_and(|c| m > c)
        };
        if over {
            m = cap;
            scale = 0;
        }
        if m != 0 && scale < 0 && pow10((-scale) as u32).is_none_or(|one| m < one) {
            format = Format::DecimalSI;
        }
    }
    if m == 0 {
        return Some("0".into());
    }
    let sign = if p.positive { "" } else { "-" };

    if format == Format::BinarySI {
        // Between -1024 and 1024, or not a whole number: shown in decimal.
        let whole = if scale >= 0 {
            pow10(scale as u32).and_then(|f| m.checked_mul(f))
        } else {
            pow10((-scale) as u32).filter(|d| m % d == 0).map(|d| m / d)
        };
        match whole {
            Some(v) if v >= 1024 => {
                let (mut v, mut times) = (v, 0);
                while v >= 1024 && v % 1024 == 0 && times < 6 {
                    v /= 1024;
                    times += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][times];
                return Some(format!("{sign}{v}{suffix}"));
            }
            _ => format = Format::DecimalSI,
        }
    }

    // Decimal: move factors of ten into the exponent, then lower it to a multiple of three.
    while m >= 10 && m % 10 == 0 {
        m /= 10;
        scale += 1;
    }
    match scale.rem_euclid(3) {
        1 => {
            m = m.checked_mul(10)?;
            scale -= 1;
        }
        2 => {
            m = m.checked_mul(100)?;
            scale -= 2;
        }
        _ => {}
    }
    let suffix = match format {
        Format::DecimalExponent if scale == 0 => String::new(),
        Format::DecimalExponent => format!("e{scale}"),
        _ => match scale {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            // Upstream finds no suffix for other exponents and prints none.
            _ => "",
        }
        .to_string(),
    };
    Some(format!("{sign}{m}{suffix}"))
}

/// A quantity field as `Quantity.String()` prints it: `0` when unset, the raw text if unparsable.
pub(super) fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => canonical_quantity(s.trim()).unwrap_or_else(|| s.clone()),
        Value::Number(n) => {
            let text = n.to_string();
            canonical_quantity(&text).unwrap_or(text)
        }
        _ => "0".into(),
    }
}

/// A `*resource.Quantity` field: `<nil>` when unset, as Go prints a nil pointer's `String()`.
pub(super) fn quantity_ptr(v: &Value) -> String {
    if v.is_null() {
        "<nil>".into()
    } else {
        quantity(v)
    }
}
