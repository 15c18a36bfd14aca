//! Kubernetes' quantity library (`k8s.io/apiserver/pkg/cel/library/quantity.go`):
//! `quantity(string)`, `isQuantity(string)` and, on quantities, `sign`, `isInteger`,
//! `asInteger`, `asApproximateFloat`, `add`, `sub`, `isGreaterThan`, `isLessThan`,
//! `compareTo`, and `==`.
//!
//! Upstream computes with arbitrary-precision decimals; here a quantity is `m × 10^e` with an
//! `i128` mantissa, which holds every quantity a manifest reasonably carries exactly (38
//! digits), and arithmetic that would leave that range is an error rather than a wrong answer.

use std::any::Any;
use std::cmp::Ordering;

use cel::common::types::{CelBool, CelDouble, CelInt, Type, INT_TYPE, STRING_TYPE};
use cel::common::value::{StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{args, fail, owned, string_arg};

static QUANTITY: Type = Type::new_unspecified_type("kubernetes.Quantity");

/// Upstream's `ErrFormatWrong`, the message a client sees for a malformed quantity.
const FORMAT_WRONG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A quantity's exact value, `m × 10^e`, kept normalized (no trailing zeros in `m`, `e == 0`
/// for zero) so that equal values have equal representations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quantity {
    m: i128,
    e: i32,
}

impl Quantity {
    fn new(mut m: i128, mut e: i32) -> Quantity {
        if m == 0 {
            return Quantity { m: 0, e: 0 };
        }
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        Quantity { m, e }
    }

    /// Parses as upstream's `resource.ParseQuantity`: sign, digits with an optional fraction,
    /// then a decimal (`m`, `k`, `M`, …), binary (`Ki`, `Mi`, …) or exponent (`e3`) suffix;
    /// values finer than nano units are rounded up (away from zero), as upstream rounds.
    pub(crate) fn parse(s: &str) -> Result<Quantity, String> {
        let wrong = || FORMAT_WRONG.to_string();
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            Some(_) => (false, s),
            None => return Err(wrong()),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(wrong());
        }
        let valid_suffix = {
            let letters = suffix
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .trim_end_matches(['+', '-']);
            letters.chars().all(|c| "eEinumkKMGTP".contains(c))
                && suffix[letters.len()..]
                    .trim_start_matches(['+', '-'])
                    .chars()
                    .all(|c| c.is_ascii_digit())
                && suffix[letters.len()..].matches(['+', '-']).count() <= 1
        };
        if !valid_suffix {
            return Err(wrong());
        }
        let (binary, exp): (u32, i32) = match suffix {
            "" => (0, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            _ => match suffix
                .strip_prefix(['e', 'E'])
                .and_then(|n| n.parse::<i32>().ok())
            {
                Some(n) => (0, n),
                None => return Err("unable to parse quantity's suffix".into()),
            },
        };
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let too_large = || "quantity is too large for this server's exact arithmetic".to_string();
        let mut m: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| too_large())?
        };
        m = m
            .checked_mul(1i128.checked_shl(binary).ok_or_else(too_large)?)
            .ok_or_else(too_large)?;
        let e = exp
            .checked_sub(i32::try_from(frac.len()).map_err(|_| too_large())?)
            .ok_or_else(too_large)?;
        if negative {
            m = -m;
        }
        Ok(Quantity::new(m, e).round_to_nano())
    }

    fn round_to_nano(self) -> Quantity {
        if self.e >= -9 {
            return self;
        }
        let shift = (-9 - self.e) as u32;
        let Some(div) = 10i128.checked_pow(shift) else {
            // Below any representable nano value: the smallest step, away from zero.
            return Quantity::new(self.m.signum(), -9);
        };
        let (q, r) = (self.m / div, self.m % div);
        Quantity::new(q + r.signum(), -9)
    }

    fn sign(self) -> i64 {
        self.m.signum() as i64
    }

    /// The value as an `int`, if it is an integer that fits.
    fn as_i64(self) -> Option<i64> {
        if self.e < 0 {
            return None;
        }
        let scaled = self.m.checked_mul(10i128.checked_pow(self.e as u32)?)?;
        i64::try_from(scaled).ok()
    }

    fn as_f64(self) -> f64 {
        format!("{}e{}", self.m, self.e).parse().unwrap_or(f64::NAN)
    }

    /// The two mantissas at the smaller exponent, or `None` if that overflows.
    fn aligned(self, o: Quantity) -> Option<(i128, i128, i32)> {
        let e = self.e.min(o.e);
        let a = self
            .m
            .checked_mul(10i128.checked_pow((self.e - e) as u32)?)?;
        let b = o.m.checked_mul(10i128.checked_pow((o.e - e) as u32)?)?;
        Some((a, b, e))
    }

    fn add(self, o: Quantity) -> Option<Quantity> {
        let (a, b, e) = self.aligned(o)?;
        Some(Quantity::new(a.checked_add(b)?, e))
    }

    fn neg(self) -> Quantity {
        Quantity {
            m: -self.m,
            e: self.e,
        }
    }

    /// Orders any two quantities, even those whose alignment would overflow: by sign, then by
    /// the position of the leading digit, then digit by digit.
    fn cmp(self, o: Quantity) -> Ordering {
        match self.m.signum().cmp(&o.m.signum()) {
            Ordering::Equal if self.m == 0 => return Ordering::Equal,
            Ordering::Equal => {}
            other => return other,
        }
        let (da, db) = (
            self.m.unsigned_abs().to_string(),
            o.m.unsigned_abs().to_string(),
        );
        let lead = |d: &str, e: i32| d.len() as i64 + i64::from(e);
        let magnitude = lead(&da, self.e).cmp(&lead(&db, o.e)).then_with(|| {
            let width = da.len().max(db.len());
            format!("{da:0<width$}").cmp(&format!("{db:0<width$}"))
        });
        if self.m < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl Val for Quantity {
    fn get_type(&self) -> &Type {
        &QUANTITY
    }
    fn cel_type() -> &'static Type {
        &QUANTITY
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other
            .downcast_ref::<Quantity>()
            .is_some_and(|o| self.cmp(*o) == Ordering::Equal)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(*self)
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}
impl StaticVal for Quantity {}

fn quantity_arg(v: &dyn Val) -> Result<Quantity, ExecutionError> {
    v.downcast_ref::<Quantity>()
        .copied()
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: v.get_type().name().to_string(),
            want: QUANTITY.name().to_string(),
        })
}

/// The right-hand side of `add`/`sub`: a quantity or an int.
fn operand(v: &dyn Val) -> Result<Quantity, ExecutionError> {
    match v.downcast_ref::<CelInt>() {
        Some(i) => Ok(Quantity::new(i128::from(*i.inner()), 0)),
        None => quantity_arg(v),
    }
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(QUANTITY.to_owned())?;
    env.add_overload("quantity", "string_to_quantity", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        Quantity::parse(string_arg(s.as_ref())?)
            .map(owned)
            .map_err(|e| fail("quantity", e))
    })?;
    env.add_overload("isQuantity", "is_quantity_string", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        Ok(owned(CelBool::from(
            Quantity::parse(string_arg(s.as_ref())?).is_ok(),
        )))
    })?;
    env.add_member_overload("sign", "quantity_sign", QUANTITY.to_owned(), vec![], |a| {
        let [q] = args(a)?;
        Ok(owned(CelInt::from(quantity_arg(q.as_ref())?.sign())))
    })?;
    env.add_member_overload(
        "isInteger",
        "quantity_is_integer",
        QUANTITY.to_owned(),
        vec![],
        |a| {
            let [q] = args(a)?;
            Ok(owned(CelBool::from(
                quantity_arg(q.as_ref())?.as_i64().is_some(),
            )))
        },
    )?;
    env.add_member_overload(
        "asInteger",
        "quantity_as_integer",
        QUANTITY.to_owned(),
        vec![],
        |a| {
            let [q] = args(a)?;
            quantity_arg(q.as_ref())?
                .as_i64()
                .map(|i| owned(CelInt::from(i)))
                .ok_or_else(|| fail("asInteger", "cannot convert value to integer"))
        },
    )?;
    env.add_member_overload(
        "asApproximateFloat",
        "quantity_as_float",
        QUANTITY.to_owned(),
        vec![],
        |a| {
            let [q] = args(a)?;
            Ok(owned(CelDouble::from(quantity_arg(q.as_ref())?.as_f64())))
        },
    )?;
    for (rhs, suffix) in [(QUANTITY.to_owned(), "quantity"), (INT_TYPE, "int")] {
        env.add_member_overload(
            "add",
            &format!("quantity_add_{suffix}"),
            QUANTITY.to_owned(),
            vec![rhs.to_owned()],
            |a| {
                let [q, r] = args(a)?;
                quantity_arg(q.as_ref())?
                    .add(operand(r.as_ref())?)
                    .map(owned)
                    .ok_or_else(|| fail("add", "quantity overflow"))
            },
        )?;
        env.add_member_overload(
            "sub",
            &format!("quantity_sub_{suffix}"),
            QUANTITY.to_owned(),
            vec![rhs],
            |a| {
                let [q, r] = args(a)?;
                quantity_arg(q.as_ref())?
                    .add(operand(r.as_ref())?.neg())
                    .map(owned)
                    .ok_or_else(|| fail("sub", "quantity overflow"))
            },
        )?;
    }
    env.add_member_overload(
        "isGreaterThan",
        "quantity_is_greater_than",
        QUANTITY.to_owned(),
        vec![QUANTITY.to_owned()],
        |a| {
            let [q, r] = args(a)?;
            Ok(owned(CelBool::from(
                quantity_arg(q.as_ref())?.cmp(quantity_arg(r.as_ref())?) == Ordering::Greater,
            )))
        },
    )?;
    env.add_member_overload(
        "isLessThan",
        "quantity_is_less_than",
        QUANTITY.to_owned(),
        vec![QUANTITY.to_owned()],
        |a| {
            let [q, r] = args(a)?;
            Ok(owned(CelBool::from(
                quantity_arg(q.as_ref())?.cmp(quantity_arg(r.as_ref())?) == Ordering::Less,
            )))
        },
    )?;
    env.add_member_overload(
        "compareTo",
        "quantity_compare_to",
        QUANTITY.to_owned(),
        vec![QUANTITY.to_owned()],
        |a| {
            let [q, r] = args(a)?;
            Ok(owned(CelInt::from(
                quantity_arg(q.as_ref())?.cmp(quantity_arg(r.as_ref())?) as i64,
            )))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, val};
    use super::*;
    use serde_json::json;

    #[test]
    fn parsing_is_exact() {
        assert_eq!(
            Quantity::parse("1.5Gi"),
            Ok(Quantity::new(15 * (1 << 30), -1))
        );
        assert_eq!(Quantity::parse("100m"), Ok(Quantity::new(1, -1)));
        assert_eq!(Quantity::parse("1e3"), Ok(Quantity::new(1, 3)));
        assert_eq!(
            Quantity::parse("-0.0000000001"),
            Ok(Quantity::new(-1, -9)),
            "rounded up to nano, away from zero"
        );
        for bad in ["", "abc", "1.2.3", "1Qi", "--1", ".", "1 Gi"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Quantity::parse("1Qi").unwrap_err(), FORMAT_WRONG);
    }

    /// The examples of upstream's library documentation and the "CEL in Kubernetes" page.
    #[test]
    fn upstream_examples() {
        for (expr, want) in [
            (
                "quantity('50M').isGreaterThan(quantity('10M'))",
                json!(true),
            ),
            (
                "quantity('150Mi').isGreaterThan(quantity('100Mi'))",
                json!(true),
            ),
            ("quantity('50M').isLessThan(quantity('100M'))", json!(true)),
            ("quantity('200M').compareTo(quantity('0.2G'))", json!(0)),
            ("quantity('100Mi').compareTo(quantity('200Mi'))", json!(-1)),
            (
                "quantity('50M').add(quantity('10M')) == quantity('60M')",
                json!(true),
            ),
            (
                "quantity('50M').add(20) == quantity('50000020')",
                json!(true),
            ),
            (
                "quantity('50M').sub(quantity('20M')) == quantity('30M')",
                json!(true),
            ),
            ("quantity('50k').sub(20) == quantity('49980')", json!(true)),
            ("quantity('1.5').isInteger()", json!(false)),
            ("quantity('500000G').isInteger()", json!(true)),
            ("quantity('50k').asInteger()", json!(50000)),
            ("quantity('1Ki').asInteger()", json!(1024)),
            ("quantity('50M').asApproximateFloat()", json!(50000000.0)),
            (
                "quantity('9999999999999999999999999999999999999G').asApproximateFloat()",
                json!(1e46),
            ),
            (
                "quantity('9999999999999999999999999999999999999G').isInteger()",
                json!(false),
            ),
            ("quantity('-50M').sign()", json!(-1)),
            ("quantity('0').sign()", json!(0)),
            ("quantity('1Gi') == quantity('1024Mi')", json!(true)),
            ("quantity('1G') == quantity('1Gi')", json!(false)),
            ("isQuantity('1.3G')", json!(true)),
            ("isQuantity('1.3Gi')", json!(true)),
            ("isQuantity('1,3G')", json!(false)),
            ("isQuantity('10000k')", json!(true)),
            ("isQuantity('200K')", json!(false)),
            ("isQuantity('Three')", json!(false)),
            ("isQuantity('Mi')", json!(false)),
        ] {
            assert_eq!(val(expr), want, "{expr}");
        }
        assert!(
            err("quantity('Three')").ends_with(FORMAT_WRONG),
            "{}",
            err("quantity('Three')")
        );
        assert!(err("quantity('200K')").ends_with("unable to parse quantity's suffix"));
        assert!(err("quantity('1.5').asInteger()").ends_with("cannot convert value to integer"));
        assert!(err("quantity('1E30').asInteger()").ends_with("cannot convert value to integer"));
        assert!(err("quantity('1').add('2')").contains("resulted in error"));
    }
}
