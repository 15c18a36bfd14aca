//! Kubernetes' semver library (`k8s.io/apiserver/pkg/cel/library/semverlib.go`, 1.33 with
//! its `normalize` argument): `semver(s)`, `semver(s, normalize)`, `isSemver(s)`,
//! `isSemver(s, normalize)`, and on a version `major()`, `minor()`, `patch()`,
//! `isLessThan(v)`, `isGreaterThan(v)`, `compareTo(v)`; `==` compares as `compareTo` (build
//! metadata ignored). Versions are parsed as `github.com/blang/semver/v4`'s `Parse`, whose
//! error messages `semver()` returns; normalizing drops a leading `v`, fills in a missing
//! minor or patch with `0` and drops leading zeros, as upstream's `normalizeAndParse`.

use std::any::Any;
use std::cmp::Ordering;

use cel::common::types::{CelBool, CelInt, Type, BOOL_TYPE, STRING_TYPE};
use cel::common::value::{StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{args, fail, owned, string_arg};

static SEMVER: Type = Type::new_unspecified_type("kubernetes.Semver");

#[derive(Debug, Clone, PartialEq)]
enum Pre {
    Num(u64),
    Str(String),
}

#[derive(Debug, Clone)]
struct Semver {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<Pre>,
}

impl Val for Semver {
    fn get_type(&self) -> &Type {
        &SEMVER
    }
    fn cel_type() -> &'static Type {
        &SEMVER
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<Semver>().is_some_and(|o| self.compare(o) == Ordering::Equal)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}
impl StaticVal for Semver {}

fn numeric(s: &str) -> bool {
    s.bytes().all(|c| c.is_ascii_digit())
}

fn alphanumeric(s: &str) -> bool {
    s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

fn leading_zero(s: &str) -> bool {
    s.len() > 1 && s.starts_with('0')
}

/// Go's `strconv.ParseUint(s, 10, 64)` for a string of digits.
fn parse_uint(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err(format!("strconv.ParseUint: parsing {s:?}: invalid syntax"));
    }
    s.parse().map_err(|_| format!("strconv.ParseUint: parsing {s:?}: value out of range"))
}

impl Semver {
    /// blang/semver's `Parse`.
    fn parse(s: &str) -> Result<Semver, String> {
        if s.is_empty() {
            return Err("Version string empty".into());
        }
        let parts: Vec<&str> = s.splitn(3, '.').collect();
        let [major, minor, rest] = parts[..] else { return Err("No Major.Minor.Patch elements found".into()) };
        let number = |part: &str, which: &str, title: &str| -> Result<u64, String> {
            if !numeric(part) {
                return Err(format!("Invalid character(s) found in {which} number {part:?}"));
            }
            if leading_zero(part) {
                return Err(format!("{title} number must not contain leading zeroes {part:?}"));
            }
            parse_uint(part)
        };
        let (major, minor) = (number(major, "major", "Major")?, number(minor, "minor", "Minor")?);
        let (mut patch, mut pre, mut build) = (rest, Vec::new(), Vec::new());
        if let Some((p, b)) = patch.split_once('+') {
            build = b.split('.').collect();
            patch = p;
        }
        if let Some((p, r)) = patch.split_once('-') {
            pre = r.split('.').collect();
            patch = p;
        }
        let patch = number(patch, "patch", "Patch")?;
        let pre = pre
            .into_iter()
            .map(|p| {
                if p.is_empty() {
                    Err("Prerelease is empty".to_string())
                } else if numeric(p) {
                    if leading_zero(p) {
                        return Err(format!("Numeric PreRelease version must not contain leading zeroes {p:?}"));
                    }
                    parse_uint(p).map(Pre::Num)
                } else if alphanumeric(p) {
                    Ok(Pre::Str(p.to_string()))
                } else {
                    Err(format!("Invalid character(s) found in prerelease {p:?}"))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Build metadata is checked, and plays no part in comparisons: it is not kept.
        for b in build {
            match b {
                "" => return Err("Build meta data is empty".into()),
                b if alphanumeric(b) => {}
                b => return Err(format!("Invalid character(s) found in build meta data {b:?}")),
            }
        }
        Ok(Semver { major, minor, patch, pre })
    }

    /// Upstream's `normalizeAndParse`.
    fn normalize_and_parse(s: &str) -> Result<Semver, String> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut parts: Vec<String> = s
            .splitn(3, '.')
            .map(|p| {
                if p.len() <= 1 {
                    return p.to_string();
                }
                let trimmed = p.trim_start_matches('0');
                if trimmed.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                    trimmed.to_string()
                } else {
                    format!("0{trimmed}")
                }
            })
            .collect();
        if parts.len() < 3 {
            if parts.last().is_some_and(|p| p.contains(['+', '-'])) {
                return Err("short version cannot contain PreRelease/Build meta data".into());
            }
            parts.resize(3, "0".into());
        }
        Semver::parse(&parts.join("."))
    }

    /// blang/semver's `Compare`: build metadata does not count; a pre-release is lower than
    /// its release; numeric identifiers are lower than alphanumeric ones.
    fn compare(&self, o: &Semver) -> Ordering {
        let core = (self.major, self.minor, self.patch).cmp(&(o.major, o.minor, o.patch));
        if core != Ordering::Equal {
            return core;
        }
        match (self.pre.is_empty(), o.pre.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            _ => {}
        }
        for (a, b) in self.pre.iter().zip(&o.pre) {
            let c = match (a, b) {
                (Pre::Num(x), Pre::Num(y)) => x.cmp(y),
                (Pre::Str(x), Pre::Str(y)) => x.cmp(y),
                (Pre::Num(_), Pre::Str(_)) => Ordering::Less,
                (Pre::Str(_), Pre::Num(_)) => Ordering::Greater,
            };
            if c != Ordering::Equal {
                return c;
            }
        }
        self.pre.len().cmp(&o.pre.len())
    }
}

fn semver_arg(v: &dyn Val) -> Result<&Semver, ExecutionError> {
    v.downcast_ref::<Semver>().ok_or_else(|| ExecutionError::UnexpectedType { got: v.get_type().name().to_string(), want: SEMVER.name().to_string() })
}

fn parse(s: &dyn Val, normalize: bool) -> Result<Result<Semver, String>, ExecutionError> {
    let s = string_arg(s)?;
    Ok(if normalize { Semver::normalize_and_parse(s) } else { Semver::parse(s) })
}

fn bool_arg(v: &dyn Val) -> Result<bool, ExecutionError> {
    v.downcast_ref::<CelBool>().map(|b| *b.inner()).ok_or_else(|| ExecutionError::UnexpectedType { got: v.get_type().name().to_string(), want: "bool".into() })
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(SEMVER.to_owned())?;
    env.add_overload("semver", "string_to_semver", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        parse(s.as_ref(), false)?.map(owned).map_err(|e| fail("semver", e))
    })?;
    env.add_overload("semver", "string_bool_to_semver", vec![STRING_TYPE, BOOL_TYPE], |a| {
        let [s, n] = args(a)?;
        parse(s.as_ref(), bool_arg(n.as_ref())?)?.map(owned).map_err(|e| fail("semver", e))
    })?;
    env.add_overload("isSemver", "is_semver_string", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        Ok(owned(CelBool::from(parse(s.as_ref(), false)?.is_ok())))
    })?;
    env.add_overload("isSemver", "is_semver_string_bool", vec![STRING_TYPE, BOOL_TYPE], |a| {
        let [s, n] = args(a)?;
        Ok(owned(CelBool::from(parse(s.as_ref(), bool_arg(n.as_ref())?)?.is_ok())))
    })?;
    macro_rules! part {
        ($name:literal, $id:literal, $field:ident) => {
            env.add_member_overload($name, $id, SEMVER.to_owned(), vec![], |a| {
                let [v] = args(a)?;
                // Go's `types.Int(v.Major)`: a uint64 as int64.
                Ok(owned(CelInt::from(semver_arg(v.as_ref())?.$field as i64)))
            })?;
        };
    }
    part!("major", "semver_major", major);
    part!("minor", "semver_minor", minor);
    part!("patch", "semver_patch", patch);
    env.add_member_overload("isGreaterThan", "semver_is_greater_than", SEMVER.to_owned(), vec![SEMVER.to_owned()], |a| {
        let [v, o] = args(a)?;
        Ok(owned(CelBool::from(semver_arg(v.as_ref())?.compare(semver_arg(o.as_ref())?) == Ordering::Greater)))
    })?;
    env.add_member_overload("isLessThan", "semver_is_less_than", SEMVER.to_owned(), vec![SEMVER.to_owned()], |a| {
        let [v, o] = args(a)?;
        Ok(owned(CelBool::from(semver_arg(v.as_ref())?.compare(semver_arg(o.as_ref())?) == Ordering::Less)))
    })?;
    env.add_member_overload("compareTo", "semver_compare_to", SEMVER.to_owned(), vec![SEMVER.to_owned()], |a| {
        let [v, o] = args(a)?;
        let c = semver_arg(v.as_ref())?.compare(semver_arg(o.as_ref())?);
        Ok(owned(CelInt::from(c as i64)))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, val};
    use serde_json::json;

    /// The examples of upstream's library documentation and tests.
    #[test]
    fn upstream_examples() {
        for (expr, want) in [
            ("isSemver('1.0.0')", json!(true)),
            ("isSemver('1.0.0-alpha.1+build.5')", json!(true)),
            ("isSemver('hello')", json!(false)),
            ("isSemver('v1.0')", json!(false)),
            ("isSemver('v1.0', true)", json!(true)),
            ("isSemver('1.0', true)", json!(true)),
            ("isSemver('01.01.01', true)", json!(true)),
            ("isSemver('01.01.01')", json!(false)),
            ("isSemver('1.0-alpha', true)", json!(false)),
            ("semver('1.2.3').major()", json!(1)),
            ("semver('1.2.3').minor()", json!(2)),
            ("semver('1.2.3').patch()", json!(3)),
            ("semver('v1.2', true).patch()", json!(0)),
            ("semver('01.01.01', true) == semver('1.1.1')", json!(true)),
            ("semver('1.2.3').compareTo(semver('1.2.3'))", json!(0)),
            ("semver('1.2.3').compareTo(semver('2.0.0'))", json!(-1)),
            ("semver('1.2.3').compareTo(semver('0.1.2'))", json!(1)),
            ("semver('1.2.3').isGreaterThan(semver('1.2.2'))", json!(true)),
            ("semver('1.2.3').isLessThan(semver('1.10.0'))", json!(true)),
            ("semver('1.0.0-alpha').isLessThan(semver('1.0.0'))", json!(true)),
            ("semver('1.0.0-alpha.1').isLessThan(semver('1.0.0-alpha.beta'))", json!(true)),
            ("semver('1.0.0-alpha').isLessThan(semver('1.0.0-alpha.1'))", json!(true)),
            ("semver('1.0.0+a') == semver('1.0.0+b')", json!(true)),
            ("semver('1.0.0') == semver('1.0.1')", json!(false)),
        ] {
            assert_eq!(val(expr), want, "{expr}");
        }
        for (expr, message) in [
            ("semver('200K')", "No Major.Minor.Patch elements found"),
            ("semver('')", "Version string empty"),
            ("semver('1.x.0')", "Invalid character(s) found in minor number \"x\""),
            ("semver('01.0.0')", "Major number must not contain leading zeroes \"01\""),
            ("semver('1.0.0-01')", "Numeric PreRelease version must not contain leading zeroes \"01\""),
            ("semver('1.0.0+')", "Build meta data is empty"),
            ("semver('1..0')", "strconv.ParseUint: parsing \"\": invalid syntax"),
            ("semver('1.0-rc', true)", "short version cannot contain PreRelease/Build meta data"),
        ] {
            let e = err(expr);
            assert!(e.ends_with(&format!("resulted in error: {message}")), "{expr}: {e}");
        }
    }
}
