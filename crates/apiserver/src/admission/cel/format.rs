//! Kubernetes' format library (`k8s.io/apiserver/pkg/cel/library/format.go`):
//! `format.named(name)` (`optional.none()` for a name it does not know), one zero-argument
//! function per format (`format.dns1123Label()`, …), and `<format>.validate(string)`:
//! `optional.none()` when valid, else the list of errors. The name formats give the server's
//! own validation messages (the `…Prefix` ones accept a trailing `-`, masked as upstream's
//! `maskTrailingDash`); the CRD formats are kube-openapi's `strfmt` checks with upstream's
//! messages: `uri` (Go's `url.ParseRequestURI`, its error), `uuid` ("does not match the UUID
//! format"), `byte` ("invalid base64"), `date` ("invalid date"), `datetime` ("invalid
//! datetime").

use std::any::Any;

use cel::common::types::{CelList, CelOptional, CelString, Type, STRING_TYPE};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{args, net, owned, string_arg};
use crate::validation;

static FORMAT: Type = Type::new_unspecified_type("kubernetes.NamedFormat");

/// The formats offered, by their upstream names.
const FORMATS: &[&str] = &[
    "dns1123Label", "dns1123Subdomain", "dns1035Label", "qualifiedName", "labelValue", "dns1123LabelPrefix", "dns1123SubdomainPrefix", "dns1035LabelPrefix", "uri", "uuid", "byte", "date",
    "datetime",
];

#[derive(Debug, Clone, PartialEq)]
struct Format(&'static str);

impl Val for Format {
    fn get_type(&self) -> &Type {
        &FORMAT
    }
    fn cel_type() -> &'static Type {
        &FORMAT
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<Format>().is_some_and(|o| o == self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}
impl StaticVal for Format {}

/// Upstream's `maskTrailingDash`: a prefix may end in `-`, the generated suffix follows it.
/// As upstream, the last *two* characters give way to an `a`.
fn mask_trailing_dash(s: &str) -> String {
    match s.strip_suffix('-') {
        Some(head) if s.len() > 1 => {
            let mut head = head.to_string();
            head.pop();
            head + "a"
        }
        _ => s.to_string(),
    }
}

/// kube-openapi's `IsUUID`: `(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$`.
fn is_uuid(s: &str) -> bool {
    let mut rest = s.as_bytes();
    for (i, n) in [8, 4, 4, 4, 12].into_iter().enumerate() {
        if i > 0 {
            rest = rest.strip_prefix(b"-").unwrap_or(rest);
        }
        match rest.get(..n) {
            Some(group) if group.iter().all(u8::is_ascii_hexdigit) => rest = &rest[n..],
            _ => return false,
        }
    }
    rest.is_empty()
}

/// govalidator's `IsBase64`: whole groups of four of the standard alphabet, the last one
/// possibly padded (`xx==`, `xxx=`); not empty.
fn is_base64(s: &str) -> bool {
    let b = s.as_bytes();
    let alpha = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    if b.is_empty() || !b.len().is_multiple_of(4) {
        return false;
    }
    let (body, last) = b.split_at(b.len() - 4);
    body.iter().all(alpha)
        && match last {
            [a, b2, b'=', b'='] => alpha(a) && alpha(b2),
            [a, b2, c, b'='] => alpha(a) && alpha(b2) && alpha(c),
            _ => last.iter().all(alpha),
        }
}

/// kube-openapi's `IsDate`: Go's `time.Parse("2006-01-02", s)` — four-digit year, two-digit
/// month and day, the day existing in that month.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| b.get(r).filter(|d| d.iter().all(u8::is_ascii_digit)).and_then(|d| std::str::from_utf8(d).ok()?.parse::<u32>().ok());
    match (b.len(), num(0..4), b.get(4), num(5..7), b.get(7), num(8..10)) {
        (10, Some(y), Some(b'-'), Some(m), Some(b'-'), Some(d)) => i32::try_from(y).ok().and_then(|y| chrono::NaiveDate::from_ymd_opt(y, m, d)).is_some(),
        _ => false,
    }
}

/// kube-openapi's `IsDateTime`: lower-cased and split at each `t`, a date, then
/// `^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$` with hours up to
/// 23 and minutes and seconds up to 59.
fn is_datetime(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !is_date(parts[0]) {
        return false;
    }
    let t: Vec<char> = parts[1].chars().collect();
    let two = |i: usize| t.get(i..i + 2).filter(|d| d.iter().all(char::is_ascii_digit)).map(|d| d.iter().collect::<String>());
    let (Some(h), Some(m), Some(sec)) = (two(0), two(3), two(6)) else { return false };
    if t.get(2) != Some(&':') || t.get(5) != Some(&':') {
        return false;
    }
    let zone = |rest: &[char]| match rest {
        ['z'] => true,
        [sign, a, b, ':', c, d] => (*sign == '+' || *sign == '-') && [a, b, c, d].iter().all(|x| x.is_ascii_digit()),
        _ => false,
    };
    // `(.[0-9]+)?`: any one character then digits, or nothing (as the regexp backtracks
    // when a zone like `+05:30` follows the seconds directly).
    let rest = &t[8..];
    let fraction = rest.len() > 1 && rest[0] != '\n' && rest[1].is_ascii_digit();
    let after = if fraction { &rest[1 + rest[1..].iter().take_while(|c| c.is_ascii_digit()).count()..] } else { rest };
    let zone_ok = zone(rest) || (fraction && zone(after));
    zone_ok && h.as_str() <= "23" && m.as_str() <= "59" && sec.as_str() <= "59"
}

fn validate(format: &str, s: &str) -> Vec<String> {
    let one = |ok: bool, message: &str| if ok { vec![] } else { vec![message.to_string()] };
    match format {
        "dns1123Label" => validation::is_dns1123_label(s),
        "dns1123Subdomain" => validation::is_dns1123_subdomain(s),
        "dns1035Label" => validation::is_dns1035_label(s),
        "qualifiedName" => validation::is_qualified_name(s),
        "labelValue" => validation::is_label_value(s),
        "dns1123LabelPrefix" => validation::is_dns1123_label(&mask_trailing_dash(s)),
        "dns1123SubdomainPrefix" => validation::is_dns1123_subdomain(&mask_trailing_dash(s)),
        "dns1035LabelPrefix" => validation::is_dns1035_label(&mask_trailing_dash(s)),
        "uri" => net::parse_request_uri(s).err().into_iter().collect(),
        "uuid" => one(is_uuid(s), "does not match the UUID format"),
        "byte" => one(is_base64(s), "invalid base64"),
        "date" => one(is_date(s), "invalid date"),
        "datetime" => one(is_datetime(s), "invalid datetime"),
        _ => vec![],
    }
}

fn format_arg(v: &dyn Val) -> Result<&Format, ExecutionError> {
    v.downcast_ref::<Format>().ok_or_else(|| ExecutionError::UnexpectedType { got: v.get_type().name().to_string(), want: FORMAT.name().to_string() })
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(FORMAT.to_owned())?;
    // One zero-argument function per format: a plain `fn` cannot capture which.
    macro_rules! named {
        ($($name:literal),*) => {$(
            env.add_overload(concat!("format.", $name), concat!("format_", $name), vec![], |_| Ok(owned(Format($name))))?;
        )*};
    }
    named!(
        "dns1123Label", "dns1123Subdomain", "dns1035Label", "qualifiedName", "labelValue", "dns1123LabelPrefix", "dns1123SubdomainPrefix", "dns1035LabelPrefix", "uri", "uuid", "byte",
        "date", "datetime"
    );
    env.add_overload("format.named", "format_named", vec![STRING_TYPE], |a| {
        let [name] = args(a)?;
        let name = string_arg(name.as_ref())?;
        let found = FORMATS.iter().find(|f| **f == name).map(|f| Box::new(Format(f)) as Box<dyn Val>);
        Ok(owned(CelOptional::from(found)))
    })?;
    env.add_member_overload("validate", "format_validate", FORMAT.to_owned(), vec![STRING_TYPE], |a| {
        let [f, s] = args(a)?;
        let errs = validate(format_arg(f.as_ref())?.0, string_arg(s.as_ref())?);
        let out: Option<Box<dyn Val>> = if errs.is_empty() {
            None
        } else {
            Some(Box::new(CelList::from(errs.into_iter().map(|e| Box::new(CelString::from(e)) as Box<dyn Val>).collect::<Vec<_>>())))
        };
        Ok(CowVal::Owned(Box::new(CelOptional::from(out))))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, val};
    use serde_json::json;

    /// The examples of upstream's library documentation.
    #[test]
    fn formats_validate() {
        for (expr, want) in [
            ("!format.dns1123Label().validate('my-label-name').hasValue()", json!(true)),
            ("format.dns1123Label().validate('MyLabel').hasValue()", json!(true)),
            ("format.dns1123Label().validate('MyLabel').value().size()", json!(1)),
            ("format.dns1123Label().validate('a123456789a123456789a123456789a123456789a123456789a123456789abcd').hasValue()", json!(true)),
            ("!format.dns1123Subdomain().validate('apiextensions.k8s.io').hasValue()", json!(true)),
            ("format.dns1035Label().validate('1abc').hasValue()", json!(true)),
            ("!format.qualifiedName().validate('example.com/MyName').hasValue()", json!(true)),
            ("format.qualifiedName().validate('/x').hasValue()", json!(true)),
            ("!format.labelValue().validate('').hasValue()", json!(true)),
            ("format.labelValue().validate('-x').hasValue()", json!(true)),
            ("!format.dns1123LabelPrefix().validate('my-pod-').hasValue()", json!(true)),
            ("format.dns1123Label().validate('my-pod-').hasValue()", json!(true)),
            ("format.named('dns1123Label').hasValue()", json!(true)),
            ("format.named('nope').hasValue()", json!(false)),
            ("!format.named('labelValue').value().validate('ok').hasValue()", json!(true)),
            // As upstream's maskTrailingDash, the last two characters give way to an `a`.
            ("!format.dns1123LabelPrefix().validate('ab.-').hasValue()", json!(true)),
            ("format.dns1123LabelPrefix().validate('-').hasValue()", json!(true)),
            ("!format.uri().validate('https://example.com/a?b=c').hasValue()", json!(true)),
            ("!format.uri().validate('/relative/path').hasValue()", json!(true)),
            ("format.uri().validate('example.com').value()", json!(["parse \"example.com\": invalid URI for request"])),
            ("!format.uuid().validate('123e4567-e89b-12d3-a456-426614174000').hasValue()", json!(true)),
            ("!format.uuid().validate('123E4567E89B12D3A456426614174000').hasValue()", json!(true)),
            ("format.uuid().validate('123e4567-e89b-12d3-a456-42661417400').value()", json!(["does not match the UUID format"])),
            ("!format.byte().validate('aGVsbG8=').hasValue()", json!(true)),
            ("format.byte().validate('aGVsbG8').value()", json!(["invalid base64"])),
            ("format.byte().validate('').hasValue()", json!(true)),
            ("!format.date().validate('2024-02-29').hasValue()", json!(true)),
            ("format.date().validate('2023-02-29').value()", json!(["invalid date"])),
            ("format.date().validate('2023-2-01').hasValue()", json!(true)),
            ("!format.datetime().validate('2021-01-01T00:00:00Z').hasValue()", json!(true)),
            ("!format.datetime().validate('2021-01-01t10:20:30.123+05:30').hasValue()", json!(true)),
            ("!format.datetime().validate('2021-01-01T10:20:30+05:30').hasValue()", json!(true)),
            ("format.datetime().validate('2021-01-01T24:00:00Z').value()", json!(["invalid datetime"])),
            ("format.datetime().validate('2021-01-01').hasValue()", json!(true)),
            ("format.named('datetime').hasValue() && format.named('uri').hasValue()", json!(true)),
            // The strings extension's format is untouched.
            ("'%s!'.format(['hi'])", json!("hi!")),
        ] {
            assert_eq!(val(expr), want, "{expr}");
        }
        assert_eq!(
            val("format.dns1123Label().validate('MyLabel').value()[0]"),
            json!("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
        );
        assert!(err("format.dns1123Label().validate(1)").contains("resulted in error"));
    }
}
