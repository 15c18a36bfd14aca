//! Kubernetes' lists library (`isSorted`, `sum`, `min`, `max`, `indexOf`, `lastIndexOf`) and
//! regex library (`find`, `findAll`), as `k8s.io/apiserver/pkg/cel/library/{lists,regex}.go`.

use std::cmp::Ordering;

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelString, CelUInt, DYN_TYPE, INT_TYPE, LIST_TYPE,
    STRING_TYPE,
};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{args, fail, int_arg, owned, string_arg};

/// The elements of a list, borrowed.
fn elements<'b, 'v>(list: &'b (dyn Val + 'v)) -> Result<Vec<&'b (dyn Val + 'v)>, ExecutionError> {
    let iterable = list
        .as_iterable()
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: list.get_type().name().to_string(),
            want: "list".into(),
        })?;
    let mut it = iterable.iter();
    let mut out = Vec::new();
    while let Some(v) = it.next() {
        out.push(v);
    }
    Ok(out)
}

fn compare(function: &str, a: &dyn Val, b: &dyn Val) -> Result<Ordering, ExecutionError> {
    let cmp = a.as_comparer().ok_or_else(|| {
        fail(
            function,
            format!(
                "no such overload: {function} on list of {}",
                a.get_type().name()
            ),
        )
    })?;
    cmp.compare(b)
}

fn is_sorted<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list] = args(a)?;
    let items = elements(list.as_ref())?;
    for pair in items.windows(2) {
        if compare("isSorted", pair[0], pair[1])? == Ordering::Greater {
            return Ok(owned(CelBool::from(false)));
        }
    }
    Ok(owned(CelBool::from(true)))
}

/// `sum()`: ints, uints or doubles (upstream's typed lists); an empty list sums to `0`.
fn sum<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list] = args(a)?;
    let items = elements(list.as_ref())?;
    let overflow = || fail("sum", "integer overflow");
    let Some(first) = items.first() else {
        return Ok(owned(CelInt::from(0)));
    };
    if first.downcast_ref::<CelInt>().is_some() {
        let mut total: i64 = 0;
        for v in &items {
            total = total.checked_add(int_arg(*v)?).ok_or_else(overflow)?;
        }
        return Ok(owned(CelInt::from(total)));
    }
    if first.downcast_ref::<CelUInt>().is_some() {
        let mut total: u64 = 0;
        for v in &items {
            let u = v
                .downcast_ref::<CelUInt>()
                .ok_or_else(|| fail("sum", "mixed element types"))?;
            total = total.checked_add(*u.inner()).ok_or_else(overflow)?;
        }
        return Ok(owned(CelUInt::from(total)));
    }
    if first.downcast_ref::<CelDouble>().is_some() {
        let mut total = 0.0;
        for v in &items {
            total += *v
                .downcast_ref::<CelDouble>()
                .ok_or_else(|| fail("sum", "mixed element types"))?
                .inner();
        }
        return Ok(owned(CelDouble::from(total)));
    }
    Err(fail(
        "sum",
        format!(
            "no such overload: sum on list of {}",
            first.get_type().name()
        ),
    ))
}

fn extreme<'b, 'v>(
    function: &str,
    a: Vec<CowVal<'b, 'v>>,
    keep: Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list] = args(a)?;
    let items = elements(list.as_ref())?;
    let mut best: Option<&(dyn Val + 'v)> = None;
    for v in items {
        best = match best {
            Some(b) if compare(function, v, b)? != keep => Some(b),
            _ => Some(v),
        };
    }
    best.map(|b| CowVal::Owned(b.clone_as_boxed()))
        .ok_or_else(|| fail(function, format!("{function} called on empty list")))
}

fn index_of<'b, 'v>(a: Vec<CowVal<'b, 'v>>, last: bool) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list, x] = args(a)?;
    let items = elements(list.as_ref())?;
    let mut found = items
        .iter()
        .enumerate()
        .filter(|(_, v)| v.equals(x.as_ref()));
    let i = if last { found.last() } else { found.next() }.map_or(-1, |(i, _)| i as i64);
    Ok(owned(CelInt::from(i)))
}

fn regex(function: &str, pattern: &str) -> Result<regex::Regex, ExecutionError> {
    // Patterns are outside input: the size limit bounds what one may cost to compile.
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| fail(function, format!("error parsing regexp: {e}")))
}

fn find_all<'b, 'v>(s: &str, pattern: &str, limit: i64) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let re = regex("findAll", pattern)?;
    let take = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    let found: Vec<Box<dyn Val + 'v>> = re
        .find_iter(s)
        .take(take)
        .map(|m| Box::new(CelString::from(m.as_str().to_string())) as Box<dyn Val + 'v>)
        .collect();
    Ok(owned(CelList::from(found)))
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], |a| {
        extreme("min", a, Ordering::Less)
    })?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], |a| {
        extreme("max", a, Ordering::Greater)
    })?;
    env.add_member_overload("indexOf", "list_index_of", LIST_TYPE, vec![DYN_TYPE], |a| {
        index_of(a, false)
    })?;
    env.add_member_overload(
        "lastIndexOf",
        "list_last_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        |a| index_of(a, true),
    )?;
    env.add_member_overload(
        "find",
        "string_find_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        |a| {
            let [s, p] = args(a)?;
            let found = regex("find", string_arg(p.as_ref())?)?
                .find(string_arg(s.as_ref())?)
                .map_or(String::new(), |m| m.as_str().to_string());
            Ok(owned(CelString::from(found)))
        },
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        |a| {
            let [s, p] = args(a)?;
            find_all(string_arg(s.as_ref())?, string_arg(p.as_ref())?, -1)
        },
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string_int",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        |a| {
            let [s, p, n] = args(a)?;
            find_all(
                string_arg(s.as_ref())?,
                string_arg(p.as_ref())?,
                int_arg(n.as_ref())?,
            )
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, val};
    use serde_json::json;

    /// The examples of upstream's library documentation.
    #[test]
    fn upstream_examples() {
        for (expr, want) in [
            ("[1, 2, 3].isSorted()", json!(true)),
            ("['a', 'b', 'b', 'c'].isSorted()", json!(true)),
            ("[2.0, 1.0].isSorted()", json!(false)),
            ("[].isSorted()", json!(true)),
            ("[1, 2, 3].sum()", json!(6)),
            ("[1.0, 2.0, 3.0].sum()", json!(6.0)),
            ("[1u, 2u].sum()", json!(3)),
            ("[].sum()", json!(0)),
            ("[1, 2, 3].min()", json!(1)),
            ("[3, 1, 2].max()", json!(3)),
            ("['b', 'a'].min()", json!("a")),
            ("[1, 2, 2, 3].indexOf(2)", json!(1)),
            ("['a', 'b', 'b', 'c'].lastIndexOf('b')", json!(2)),
            ("[1.0].indexOf(1.1)", json!(-1)),
            ("[].indexOf(1)", json!(-1)),
            ("'abc 123'.find('[0-9]+')", json!("123")),
            ("'abc 123'.find('xyz')", json!("")),
            ("'123 abc 456'.findAll('[0-9]+')", json!(["123", "456"])),
            ("'123 abc 456'.findAll('[0-9]+', 1)", json!(["123"])),
            ("'123 abc 456'.findAll('[0-9]+', 0)", json!([])),
            ("'123 abc 456'.findAll('xyz')", json!([])),
            // The strings extension's indexOf is still there.
            ("'hello'.indexOf('l')", json!(2)),
        ] {
            assert_eq!(val(expr), want, "{expr}");
        }
        assert!(
            err("[].min()").ends_with("min called on empty list"),
            "{}",
            err("[].min()")
        );
        assert!(err("[].max()").ends_with("max called on empty list"));
        assert!(err("[1, 'a'].isSorted()").contains("resulted in error"));
        assert!(err("'abc'.find('[')").contains("error parsing regexp"));
        assert!(err("[9223372036854775807, 1].sum()").ends_with("integer overflow"));
    }
}
