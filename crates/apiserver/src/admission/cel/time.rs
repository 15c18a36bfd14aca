//! `duration(…)` and `timestamp(…)` as cel-go converts: a string is read by Go's
//! `time.ParseDuration` and `time.Parse(time.RFC3339, …)`, and one that does not parse is
//! upstream's "type conversion error from 'string' to 'google.protobuf.Duration'" (or
//! `Timestamp`); a timestamp outside years 1 to 9999 is a "timestamp overflow". The `cel`
//! crate's own conversions accept what Go refuses (`duration('1hx')`, `'1e3s'`, a lowercase
//! `t`); compiled expressions call these instead (see `cost::instrument`). Everything else
//! about durations and timestamps — arithmetic, comparisons, `getHours()` and the other
//! accessors, time zones, `string()`, `int()` — is the crate's (its `chrono` feature).

use cel::common::types::{CelDuration, CelTimestamp, DURATION_TYPE, DYN_TYPE, INT_TYPE, STRING_TYPE, TIMESTAMP_TYPE};
use cel::common::value::CowVal;
use cel::{DeclarationError, Env, ExecutionError};
use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta};

use super::{args, fail, owned};

const DURATION: &str = "@k8s.duration";
const TIMESTAMP: &str = "@k8s.timestamp";

/// cel-go's range: `0001-01-01T00:00:00Z` to `9999-12-31T23:59:59Z` in Unix seconds.
const MIN_UNIX: i64 = -62_135_596_800;
const MAX_UNIX: i64 = 253_402_300_799;

/// The function a global call is rewritten to.
pub(super) fn rename(name: &str) -> Option<&'static str> {
    match name {
        "duration" => Some(DURATION),
        "timestamp" => Some(TIMESTAMP),
        _ => None,
    }
}

fn conversion_error(function: &str, to: &str) -> ExecutionError {
    fail(function, format!("type conversion error from 'string' to 'google.protobuf.{to}'"))
}

fn overflow() -> ExecutionError {
    fail("timestamp", "timestamp overflow")
}

/// Go's `leadingInt`: the digits at the start of `s`, `None` past 1<<63.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut x: u64 = 0;
    let mut i = 0;
    while let Some(c) = s.get(i).filter(|c| c.is_ascii_digit()) {
        if x > (1 << 63) / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > 1 << 63 {
            return None;
        }
        i += 1;
    }
    Some((x, &s[i..]))
}

/// Go's `leadingFraction`: digits after the point, with their scale; overflowing digits are
/// skipped.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let (mut x, mut scale, mut overflow, mut i) = (0u64, 1f64, false, 0);
    while let Some(c) = s.get(i).filter(|c| c.is_ascii_digit()) {
        i += 1;
        if overflow {
            continue;
        }
        if x > ((1u64 << 63) - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > 1 << 63 {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[i..])
}

/// Go's `time.ParseDuration`, in nanoseconds: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, units
/// `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m`, `h`.
pub(super) fn parse_go_duration(s: &str) -> Option<i64> {
    let mut b = s.as_bytes();
    let mut neg = false;
    if let Some(&c @ (b'-' | b'+')) = b.first() {
        neg = c == b'-';
        b = &b[1..];
    }
    if b == b"0" {
        return Some(0);
    }
    if b.is_empty() {
        return None;
    }
    let mut d: u64 = 0;
    while !b.is_empty() {
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return None;
        }
        let before = b.len();
        let (mut v, rest) = leading_int(b)?;
        b = rest;
        let pre = before != b.len();
        let (mut f, mut scale, mut post) = (0, 1.0, false);
        if let Some(rest) = b.strip_prefix(b".") {
            let (x, sc, rest2) = leading_fraction(rest);
            post = rest.len() != rest2.len();
            (f, scale, b) = (x, sc, rest2);
        }
        if !pre && !post {
            return None;
        }
        let end = b.iter().position(|c| *c == b'.' || c.is_ascii_digit()).unwrap_or(b.len());
        let unit: u64 = match &b[..end] {
            b"ns" => 1,
            // `us`, `µs` (U+00B5) and `μs` (U+03BC).
            b"us" | [0xC2, 0xB5, b's'] | [0xCE, 0xBC, b's'] => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => return None,
        };
        b = &b[end..];
        if v > (1 << 63) / unit {
            return None;
        }
        v *= unit;
        if f > 0 {
            // As Go: float64 keeps fractions of hours nanosecond-exact.
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > 1 << 63 {
                return None;
            }
        }
        d += v;
        if d > 1 << 63 {
            return None;
        }
    }
    match (neg, d) {
        (true, d) if d == 1 << 63 => Some(i64::MIN),
        (true, d) => Some(-(d as i64)),
        (false, d) => i64::try_from(d).ok(),
    }
}

fn digits(b: &[u8], from: usize, n: usize) -> Option<u32> {
    let part = b.get(from..from + n)?;
    part.iter().try_fold(0u32, |acc, c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
}

/// Go's `time.Parse(time.RFC3339, s)`: `2006-01-02T15:04:05[.frac]Z07:00` — `T` and `Z` in
/// upper case, a fraction of any length after `.` or `,`, a one-digit hour accepted as Go's
/// layout parser does, the day checked against the month. Normalized to UTC.
pub(super) fn parse_go_rfc3339(s: &str) -> Option<DateTime<FixedOffset>> {
    let b = s.as_bytes();
    let (year, month, day) = (digits(b, 0, 4)?, digits(b, 5, 2)?, digits(b, 8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || b.get(10) != Some(&b'T') {
        return None;
    }
    let mut i = 11;
    let hour = match (digits(b, i, 2), digits(b, i, 1)) {
        (Some(h), _) => {
            i += 2;
            h
        }
        (None, Some(h)) => {
            i += 1;
            h
        }
        _ => return None,
    };
    if b.get(i) != Some(&b':') || b.get(i + 3) != Some(&b':') {
        return None;
    }
    let (minute, second) = (digits(b, i + 1, 2)?, digits(b, i + 4, 2)?);
    i += 6;
    let mut nanos = 0u32;
    if matches!(b.get(i), Some(b'.' | b',')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        let frac = &b[i + 1..i + 1 + n];
        for k in 0..9 {
            nanos = nanos * 10 + frac.get(k).map_or(0, |c| u32::from(c - b'0'));
        }
        i += 1 + n;
    }
    let offset = match &b[i..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (digits(b, i + 1, 2)?, digits(b, i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i32::try_from(h * 3600 + m * 60).ok()?;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let local = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?.and_hms_nano_opt(hour, minute, second, nanos)?;
    let utc = local.checked_sub_signed(TimeDelta::seconds(i64::from(offset)))?;
    Some(DateTime::from_naive_utc_and_offset(utc, FixedOffset::east_opt(0)?))
}

fn in_range(t: &DateTime<FixedOffset>) -> bool {
    (MIN_UNIX..=MAX_UNIX).contains(&t.timestamp())
}

fn no_overload<'b, 'v>(function: &str, a: &[CowVal<'b, 'v>]) -> ExecutionError {
    ExecutionError::no_such_overload(function, a.iter().map(|v| v.get_type().name().to_string()).collect())
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload(DURATION, "k8s_string_to_duration", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        let s = super::string_arg(s.as_ref())?;
        let nanos = parse_go_duration(s).ok_or_else(|| conversion_error("duration", "Duration"))?;
        Ok(owned(CelDuration::from(TimeDelta::nanoseconds(nanos))))
    })?;
    env.add_overload(DURATION, "k8s_duration_to_duration", vec![DURATION_TYPE], |a| {
        let [d] = args(a)?;
        Ok(d)
    })?;
    env.add_overload(DURATION, "k8s_int_to_duration", vec![INT_TYPE], |a| {
        let [n] = args(a)?;
        Ok(owned(CelDuration::from(TimeDelta::nanoseconds(super::int_arg(n.as_ref())?))))
    })?;
    env.add_overload(DURATION, "k8s_dyn_to_duration", vec![DYN_TYPE], |a| Err(no_overload("duration", &a)))?;
    env.add_overload(TIMESTAMP, "k8s_string_to_timestamp", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        let t = parse_go_rfc3339(super::string_arg(s.as_ref())?).ok_or_else(|| conversion_error("timestamp", "Timestamp"))?;
        if !in_range(&t) {
            return Err(overflow());
        }
        Ok(owned(CelTimestamp::from(t)))
    })?;
    env.add_overload(TIMESTAMP, "k8s_timestamp_to_timestamp", vec![TIMESTAMP_TYPE], |a| {
        let [t] = args(a)?;
        Ok(t)
    })?;
    env.add_overload(TIMESTAMP, "k8s_int_to_timestamp", vec![INT_TYPE], |a| {
        let [n] = args(a)?;
        let secs = super::int_arg(n.as_ref())?;
        let t = DateTime::from_timestamp(secs, 0).map(|t| t.fixed_offset()).filter(in_range).ok_or_else(overflow)?;
        Ok(owned(CelTimestamp::from(t)))
    })?;
    env.add_overload(TIMESTAMP, "k8s_dyn_to_timestamp", vec![DYN_TYPE], |a| Err(no_overload("timestamp", &a)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, val};
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_parse_as_go() {
        let ns = |s| parse_go_duration(s);
        assert_eq!(ns("1h30m"), Some(5_400_000_000_000));
        assert_eq!(ns("1.5h"), Some(5_400_000_000_000));
        assert_eq!(ns("+2s"), Some(2_000_000_000));
        assert_eq!(ns("-1.5ms"), Some(-1_500_000));
        assert_eq!(ns("300µs"), Some(300_000));
        assert_eq!(ns("0"), Some(0));
        assert_eq!(ns(".5s"), Some(500_000_000));
        assert_eq!(ns("2562047h47m16.854775807s"), Some(i64::MAX));
        assert_eq!(ns("-2562047h47m16.854775808s"), Some(i64::MIN));
        for bad in ["", "1", "1hx", "1e3s", "1 h", "-", ".s", "2562047h47m16.854775808s", "1d"] {
            assert_eq!(ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_parse_as_go() {
        let t = |s| parse_go_rfc3339(s).map(|t| t.to_rfc3339());
        assert_eq!(t("2024-02-29T10:00:00Z").as_deref(), Some("2024-02-29T10:00:00+00:00"));
        assert_eq!(t("2024-01-01T01:30:00+02:00").as_deref(), Some("2023-12-31T23:30:00+00:00"));
        assert_eq!(t("2024-01-01T1:02:03.5Z").as_deref(), Some("2024-01-01T01:02:03.500+00:00"));
        for bad in ["2023-02-29T00:00:00Z", "2024-01-01t00:00:00Z", "2024-01-01T00:00:00z", "2024-01-01T00:00:00", "2024-01-01 00:00:00Z", "2024-01-01T00:00:60Z", "2024-01-01T00:00:00+0200", "2024-1-01T00:00:00Z", "2024-01-01T00:00:00Zjunk"] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_and_timestamps_in_expressions() {
        for (expr, want) in [
            ("duration('1h') > duration('30m')", json!(true)),
            ("duration('90m') == duration('1h30m')", json!(true)),
            ("duration('1h30m').getMinutes()", json!(90)),
            ("duration('1.5s').getMilliseconds()", json!(1500)),
            ("string(duration('1h'))", json!("3600s")),
            ("duration('1h') + duration('1m') == duration('61m')", json!(true)),
            ("timestamp('2024-01-01T00:00:00Z') < timestamp('2024-01-02T00:00:00Z')", json!(true)),
            ("timestamp('2024-01-02T00:00:00Z') - timestamp('2024-01-01T00:00:00Z') == duration('24h')", json!(true)),
            ("timestamp('2024-01-01T00:00:00Z') + duration('36h') == timestamp('2024-01-02T12:00:00Z')", json!(true)),
            ("string(timestamp('2024-01-01T10:00:00+02:00'))", json!("2024-01-01T08:00:00Z")),
            ("timestamp('2024-03-10T10:20:30Z').getHours()", json!(10)),
            ("timestamp('2024-03-10T10:20:30Z').getHours('Europe/Paris')", json!(11)),
            ("timestamp('2024-03-10T10:20:30Z').getHours('+05:30')", json!(15)),
            ("timestamp('2024-03-10T10:20:30Z').getFullYear()", json!(2024)),
            ("timestamp('2024-03-10T10:20:30Z').getDayOfWeek()", json!(0)),
            ("int(timestamp('2009-02-13T23:31:30Z'))", json!(1234567890)),
            ("timestamp(0) == timestamp('1970-01-01T00:00:00Z')", json!(true)),
            ("duration(duration('1s')) == duration('1000ms')", json!(true)),
        ] {
            assert_eq!(val(expr), want, "{expr}");
        }
        assert!(err("duration('1hx')").ends_with("resulted in error: type conversion error from 'string' to 'google.protobuf.Duration'"), "{}", err("duration('1hx')"));
        assert!(err("timestamp('2024-01-01')").ends_with("type conversion error from 'string' to 'google.protobuf.Timestamp'"));
        assert!(err("timestamp('0000-01-01T00:00:00Z')").ends_with("timestamp overflow"));
        assert!(err("timestamp('9999-12-31T23:59:59Z') + duration('1s')").contains("resulted in error"));
        assert!(err("duration(true)").contains("duration"));
        assert!(err("timestamp('2024-01-01T00:00:00Z').getHours('Mars/Olympus')").contains("unknown time zone"));
    }
}
