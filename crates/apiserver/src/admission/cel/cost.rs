//! Runtime cost limits, after upstream's: an expression may cost at most
//! [`PER_CALL_LIMIT`] (`celconfig.PerCallLimit`; past it cel-go cancels the evaluation with
//! "operation cancelled: actual cost limit exceeded"), and one policy evaluation all of
//! [`RUNTIME_BUDGET`] (`celconfig.RuntimeCELCostBudget`; past it "validation failed due to
//! running out of cost budget, no further validation rules will be run").
//!
//! The `cel` crate's interpreter has no cost tracking, so a compiled expression is rewritten
//! to pay as it goes: every comprehension (`all`, `exists`, `map`, `filter`, …) charges each
//! iteration the static cost of its condition and step (cel-go's: 1 per call, identifier or
//! field selection, 10 per list literal, 30 per map literal), `_+_` charges the size of what
//! it builds (a tenth of a string's length, a list's length), `lists.range(n)` charges `n`,
//! and the rest of the expression its static cost once. Once over the limit, the next charge
//! fails: a loop stops at its next iteration, and the error reaches the top (an `all()` that
//! would absorb an error still ends with the limit's error, checked after the evaluation).
//! This bounds the work of any expression; the figures approximate cel-go's, they are not
//! its exact costs (a string function over a long string costs 1 here, not its length).

use std::cell::Cell;

use cel::common::ast::{operators, CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::{CelBytes, CelInt, CelString, DYN_TYPE, INT_TYPE};
use cel::common::value::Val;
use cel::{DeclarationError, Env, ExecutionError};

use super::{args, fail, int_arg};

/// `celconfig.PerCallLimit`.
pub(crate) const PER_CALL_LIMIT: u64 = 1_000_000;
/// `celconfig.RuntimeCELCostBudget`: one (policy, binding, param) evaluation.
pub(crate) const RUNTIME_BUDGET: u64 = 10_000_000;
pub(crate) const COST_LIMIT_EXCEEDED: &str = "operation cancelled: actual cost limit exceeded";
pub(crate) const OUT_OF_BUDGET: &str = "validation failed due to running out of cost budget, no further validation rules will be run";

/// Charges its first argument and returns its second: `@k8s.cost(weight, value)`. Names
/// starting with `@` cannot be written in CEL source, so no expression calls these itself.
const CHARGE: &str = "@k8s.cost";
/// Charges the size of its argument and returns it (after `_+_`).
const CHARGE_SIZE: &str = "@k8s.cost_size";
/// Charges its (int) argument and returns it (`lists.range(n)`).
const CHARGE_COUNT: &str = "@k8s.cost_count";

thread_local! {
    /// The cost spent by the evaluation running on this thread, and its limit.
    static METER: Cell<(u64, u64)> = const { Cell::new((0, PER_CALL_LIMIT)) };
}

fn charge(cost: u64) -> Result<(), ExecutionError> {
    METER.with(|m| {
        let (used, limit) = m.get();
        let used = used.saturating_add(cost);
        m.set((used, limit));
        if used > limit {
            Err(fail("cost", COST_LIMIT_EXCEEDED))
        } else {
            Ok(())
        }
    })
}

/// Runs one evaluation under the per-call limit, after charging `static_cost`. Returns its
/// result and what it cost; the result is the limit's error whenever the limit was passed.
pub(super) fn metered<T>(static_cost: u64, run: impl FnOnce() -> Result<T, ExecutionError>) -> (Result<T, ExecutionError>, u64) {
    METER.with(|m| m.set((0, PER_CALL_LIMIT)));
    let out = match charge(static_cost) {
        Ok(()) => run(),
        Err(e) => Err(e),
    };
    let used = METER.with(|m| m.get().0);
    if used > PER_CALL_LIMIT {
        return (Err(fail("cost", COST_LIMIT_EXCEEDED)), used);
    }
    (out, used)
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload(CHARGE, "k8s_cost", vec![INT_TYPE, DYN_TYPE], |a| {
        let [weight, value] = args(a)?;
        charge(u64::try_from(int_arg(weight.as_ref())?).unwrap_or(0))?;
        Ok(value)
    })?;
    env.add_overload(CHARGE_SIZE, "k8s_cost_size", vec![DYN_TYPE], |a| {
        let [value] = args(a)?;
        charge(size_cost(value.as_ref()))?;
        Ok(value)
    })?;
    env.add_overload(CHARGE_COUNT, "k8s_cost_count", vec![DYN_TYPE], |a| {
        let [value] = args(a)?;
        if let Some(n) = value.downcast_ref::<CelInt>() {
            charge(u64::try_from(*n.inner()).unwrap_or(0))?;
        }
        Ok(value)
    })?;
    Ok(())
}

/// What building `v` costs: a tenth of a string's or bytes' length (cel-go's string traversal
/// factor), a list's or map's length, 1 for anything else.
fn size_cost(v: &dyn Val) -> u64 {
    let size = v.as_sizer().map_or(1, |s| u64::try_from(*s.size().inner()).unwrap_or(0));
    if v.downcast_ref::<CelString>().is_some() || v.downcast_ref::<CelBytes>().is_some() {
        size.div_ceil(10)
    } else {
        size.max(1)
    }
}

/// The cost of evaluating `e` once, loop bodies excluded (their iterations pay for
/// themselves): cel-go's constants — 1 per call, identifier and selection, 10 per list,
/// 30 per map and 40 per struct literal, 0 per literal.
pub(super) fn static_cost(e: &IdedExpr) -> u64 {
    match &e.expr {
        Expr::Unspecified | Expr::Literal(_) => 0,
        Expr::Ident(_) => 1,
        Expr::Select(s) => 1 + static_cost(&s.operand),
        Expr::Call(c) => 1 + c.target.as_deref().map_or(0, static_cost) + c.args.iter().map(static_cost).sum::<u64>(),
        Expr::List(l) => 10 + l.elements.iter().map(static_cost).sum::<u64>(),
        Expr::Map(m) => 30 + m.entries.iter().map(entry_cost).sum::<u64>(),
        Expr::Struct(s) => 40 + s.entries.iter().map(entry_cost).sum::<u64>(),
        Expr::Comprehension(c) => static_cost(&c.iter_range) + static_cost(&c.accu_init) + static_cost(&c.result),
    }
}

fn entry_cost(e: &cel::common::ast::IdedEntryExpr) -> u64 {
    match &e.expr {
        EntryExpr::StructField(f) => static_cost(&f.value),
        EntryExpr::MapEntry(m) => static_cost(&m.key) + static_cost(&m.value),
    }
}

fn call(id: u64, name: &str, args: Vec<IdedExpr>) -> IdedExpr {
    IdedExpr { id, expr: Expr::Call(CallExpr { func_name: name.to_string(), target: None, args }) }
}

fn charged(weight: u64, e: IdedExpr) -> IdedExpr {
    let w = IdedExpr { id: e.id, expr: Expr::Literal(LiteralValue::Int(CelInt::from(i64::try_from(weight).unwrap_or(i64::MAX)))) };
    call(e.id, CHARGE, vec![w, e])
}

/// `e` rewritten to pay for itself as it runs (see the module's documentation), with the
/// global `duration(x)` and `timestamp(x)` calls renamed to `rename`'s names.
pub(super) fn instrument(e: &IdedExpr, rename: fn(&str) -> Option<&'static str>) -> IdedExpr {
    let mut e = e.clone();
    walk(&mut e, rename);
    e
}

fn walk(e: &mut IdedExpr, rename: fn(&str) -> Option<&'static str>) {
    let id = e.id;
    match &mut e.expr {
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => {}
        Expr::Select(s) => walk(&mut s.operand, rename),
        Expr::List(l) => l.elements.iter_mut().for_each(|x| walk(x, rename)),
        Expr::Map(m) => m.entries.iter_mut().for_each(|x| walk_entry(x, rename)),
        Expr::Struct(s) => s.entries.iter_mut().for_each(|x| walk_entry(x, rename)),
        Expr::Call(c) => {
            if let Some(t) = c.target.as_deref_mut() {
                walk(t, rename);
            }
            c.args.iter_mut().for_each(|x| walk(x, rename));
            if c.target.is_none() {
                if let Some(name) = rename(&c.func_name).filter(|_| c.args.len() == 1) {
                    c.func_name = name.to_string();
                }
            }
            // `lists.range(n)` parses as `range` on the target `lists`.
            let lists_range = c.func_name == "lists.range" || (c.func_name == "range" && c.target.as_deref().is_some_and(|t| is_ident(t, "lists")));
            if lists_range && c.args.len() == 1 {
                let n = std::mem::take(&mut c.args[0]);
                c.args[0] = call(n.id, CHARGE_COUNT, vec![n]);
            }
            if c.func_name == operators::ADD && c.target.is_none() {
                let inner = std::mem::take(e);
                *e = call(id, CHARGE_SIZE, vec![inner]);
            }
        }
        Expr::Comprehension(c) => walk_comprehension(c, rename),
    }
}

fn walk_entry(e: &mut cel::common::ast::IdedEntryExpr, rename: fn(&str) -> Option<&'static str>) {
    match &mut e.expr {
        EntryExpr::StructField(f) => walk(&mut f.value, rename),
        EntryExpr::MapEntry(m) => {
            walk(&mut m.key, rename);
            walk(&mut m.value, rename);
        }
    }
}

fn is_ident(e: &IdedExpr, name: &str) -> bool {
    matches!(&e.expr, Expr::Ident(n) if n == name)
}

/// `accu + [items]`: the step of a `map`/`filter`, which the interpreter runs in place as
/// long as it keeps this shape.
fn appended<'e>(e: &'e mut IdedExpr, accu: &str) -> Option<&'e mut IdedExpr> {
    match &mut e.expr {
        Expr::Call(c) if c.func_name == operators::ADD && c.target.is_none() && c.args.len() == 2 => {
            if is_ident(&c.args[0], accu) && matches!(&c.args[1].expr, Expr::List(l) if !l.elements.is_empty()) {
                c.args.get_mut(1)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn walk_comprehension(c: &mut ComprehensionExpr, rename: fn(&str) -> Option<&'static str>) {
    walk(&mut c.iter_range, rename);
    walk(&mut c.accu_init, rename);
    walk(&mut c.result, rename);
    let weight = (static_cost(&c.loop_cond) + static_cost(&c.loop_step)).max(1);
    let accu = c.accu_var.clone();
    // The interpreter appends in place to the result of a `map`/`filter` (a literal
    // condition, a step `@result + [x]` or `cond ? @result + [x] : @result`, the result
    // `@result`): the charge goes inside, keeping that shape.
    if matches!(c.loop_cond.expr, Expr::Literal(_)) && is_ident(&c.result, &accu) {
        if let Some(items) = appended(&mut c.loop_step, &accu) {
            walk_list_charged(items, weight, rename);
            return;
        }
        if let Expr::Call(call) = &mut c.loop_step.expr {
            if call.func_name == operators::CONDITIONAL && call.target.is_none() && call.args.len() == 3 && is_ident(&call.args[2], &accu) {
                let [guard, step, _] = &mut call.args[..] else { return };
                if let Some(items) = appended(step, &accu) {
                    walk(guard, rename);
                    let g = std::mem::take(guard);
                    *guard = charged(weight, g);
                    if let Expr::List(l) = &mut items.expr {
                        l.elements.iter_mut().for_each(|x| walk(x, rename));
                    }
                    return;
                }
            }
        }
    }
    // Any other loop: the condition, evaluated first on every iteration, pays; its error
    // stops the loop at once (a step's error may be deferred by `all`/`exists`).
    walk(&mut c.loop_step, rename);
    walk(&mut c.loop_cond, rename);
    let cond = std::mem::take(&mut c.loop_cond);
    c.loop_cond = charged(weight, cond);
}

fn walk_list_charged(items: &mut IdedExpr, weight: u64, rename: fn(&str) -> Option<&'static str>) {
    if let Expr::List(l) = &mut items.expr {
        for (i, x) in l.elements.iter_mut().enumerate() {
            walk(x, rename);
            if i == 0 {
                let inner = std::mem::take(x);
                *x = charged(weight, inner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comprehension(e: &IdedExpr) -> &ComprehensionExpr {
        match &e.expr {
            Expr::Comprehension(c) => c,
            other => panic!("not a comprehension: {other:?}"),
        }
    }

    fn instrumented(src: &str) -> IdedExpr {
        let program = super::super::env().compile(src).unwrap();
        instrument(program.expression(), super::super::time::rename)
    }

    fn is_call(e: &IdedExpr, name: &str) -> bool {
        matches!(&e.expr, Expr::Call(c) if c.func_name == name)
    }

    #[test]
    fn loops_pay_per_iteration_and_keep_their_shape() {
        // all(): the condition pays.
        let e = instrumented("[1, 2].all(x, x > 0)");
        assert!(is_call(&comprehension(&e).loop_cond, CHARGE));
        // map(): the appended element pays; the step stays `@result + [..]` with a literal
        // condition, so that the interpreter still appends in place.
        let e = instrumented("[1, 2].map(x, x * 2)");
        let c = comprehension(&e);
        assert!(matches!(c.loop_cond.expr, Expr::Literal(_)));
        let Expr::Call(step) = &c.loop_step.expr else { panic!() };
        assert_eq!(step.func_name, operators::ADD);
        let Expr::List(items) = &step.args[1].expr else { panic!() };
        assert!(is_call(&items.elements[0], CHARGE));
        // filter(): the guard pays.
        let e = instrumented("[1, 2].filter(x, x > 1)");
        let Expr::Call(step) = &comprehension(&e).loop_step.expr else { panic!() };
        assert_eq!(step.func_name, operators::CONDITIONAL);
        assert!(is_call(&step.args[0], CHARGE));
        // `_+_` pays for what it builds; duration() and timestamp() are Go's.
        let e = instrumented("'a' + 'b'");
        assert!(is_call(&e, CHARGE_SIZE));
        assert!(is_call(&instrumented("duration('1h')"), "@k8s.duration"));
    }

    #[test]
    fn static_costs_follow_cel_go_constants() {
        assert_eq!(static_cost(&instrumented("1")), 0);
        assert_eq!(static_cost(&instrumented("object.a")), 2);
        assert_eq!(static_cost(&instrumented("[1, x]")), 11);
        assert_eq!(static_cost(&instrumented("{'a': 1}")), 30);
    }
}
