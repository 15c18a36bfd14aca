//! CEL for admission (policies' validations and variables, webhooks' matchConditions), on the
//! `cel` crate: the standard library with its `has`/`all`/`exists`/`exists_one`/`map`/
//! `filter` macros, plus its strings (`charAt`, `indexOf`, `lastIndexOf`, `lowerAscii`,
//! `upperAscii`, `replace`, `split`, `substring`, `trim`, `join`, `format`, `reverse`,
//! `strings.quote`), lists (`slice`, `flatten`, …) and math (`math.*`) extensions; durations
//! and timestamps ([`time`]: Go's parsing, the crate's arithmetic, accessors and time
//! zones); and Kubernetes' own libraries (`k8s.io/apiserver/pkg/cel/library`), one module
//! each: [`quantity`], [`lists`] (lists and regex), [`net`] (url, ip, cidr),
//! [`format`] (named formats), [`semver`] and [`authz`] (the `authorizer` variable, for
//! policies and webhooks' matchConditions). Evaluations are bounded by upstream's cost
//! limits ([`cost`]).
//! Not available: cel-go's type checker (an expression is parsed when written; calling an
//! unknown function or field fails when evaluated, not when the policy is created).
//!
//! Expressions are outside input: they are compiled once (cached by their text), and an
//! evaluation that panics inside the library is an evaluation error.

mod authz;
mod cost;
mod format;
mod lists;
mod net;
mod quantity;
mod semver;
mod time;

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use cel::common::types::{CelBool, CelMap, CelMapKey, CelString};
use cel::common::value::{CowVal, Val};
use cel::{Context, Env, ExecutionError, IdedExpr};
use serde_json::Value;

use super::Attributes;

pub(crate) use authz::Check;
pub(crate) use cost::OUT_OF_BUDGET;

/// Compiled programs kept at most (policies are few; this only bounds a misbehaving client).
const MAX_PROGRAMS: usize = 4096;

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        for (name, add) in [
            (
                "strings",
                cel::extensions::strings as fn(&mut Env) -> Result<(), cel::DeclarationError>,
            ),
            ("lists", cel::extensions::lists),
            ("math", cel::extensions::math),
            ("kubernetes quantity", quantity::register),
            ("kubernetes lists and regex", lists::register),
            ("kubernetes url, ip and cidr", net::register),
            ("kubernetes authz", authz::register),
            ("kubernetes format", format::register),
            ("kubernetes semver", semver::register),
            ("durations and timestamps", time::register),
            ("cost limits", cost::register),
        ] {
            if let Err(e) = add(&mut env) {
                tracing::warn!(extension = name, error = %e, "CEL extension not available");
            }
        }
        Arc::new(env)
    })
}

/// The arguments of an overload, the target of a member function first.
fn args<'b, 'v, const N: usize>(
    a: Vec<CowVal<'b, 'v>>,
) -> Result<[CowVal<'b, 'v>; N], ExecutionError> {
    a.try_into()
        .map_err(|a: Vec<_>| ExecutionError::invalid_argument_count(N, a.len()))
}

/// An error a client sees as upstream writes it: [`eval`] shows the message alone.
fn fail(function: &str, message: impl ToString) -> ExecutionError {
    ExecutionError::function_error(function, message)
}

fn owned<'b, 'v, T: Val + 'v>(v: T) -> CowVal<'b, 'v> {
    CowVal::owned(v)
}

fn string_arg<'x, 'v>(v: &'x (dyn Val + 'v)) -> Result<&'x str, ExecutionError> {
    v.downcast_ref::<CelString>()
        .map(|s| s.inner())
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: v.get_type().name().to_string(),
            want: "string".into(),
        })
}

fn int_arg(v: &dyn Val) -> Result<i64, ExecutionError> {
    v.downcast_ref::<cel::common::types::CelInt>()
        .map(|i| *i.inner())
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: v.get_type().name().to_string(),
            want: "int".into(),
        })
}

/// A compiled expression: its syntax tree rewritten to pay for its cost as it runs, and the
/// cost of what it evaluates once.
#[derive(Debug)]
pub(crate) struct Compiled {
    expr: IdedExpr,
    static_cost: u64,
}

fn programs() -> &'static Mutex<HashMap<String, Arc<Compiled>>> {
    static PROGRAMS: OnceLock<Mutex<HashMap<String, Arc<Compiled>>>> = OnceLock::new();
    PROGRAMS.get_or_init(Default::default)
}

/// Compiles `expr` (cached). The error reads as upstream's `compilation failed: …`.
pub(crate) fn compile(expr: &str) -> Result<Arc<Compiled>, String> {
    if let Some(p) = programs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(expr)
    {
        return Ok(p.clone());
    }
    let compiled = catch_unwind(AssertUnwindSafe(|| env().compile(expr)))
        .map_err(|_| "compilation failed: the expression cannot be parsed".to_string())?;
    let program = compiled.map_err(|e| format!("compilation failed: {e}"))?;
    let tree = cost::instrument(program.expression(), time::rename);
    let program = Arc::new(Compiled { static_cost: cost::static_cost(&tree), expr: tree });
    let mut cache = programs().lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= MAX_PROGRAMS {
        cache.clear();
    }
    cache.insert(expr.to_string(), program.clone());
    Ok(program)
}

/// What is left of a runtime cost budget: one policy evaluation's
/// (`celconfig.RuntimeCELCostBudget`), shared by the expressions it evaluates in turn.
pub(crate) struct Budget {
    remaining: Cell<u64>,
    exhausted: Cell<bool>,
}

impl Budget {
    pub(crate) fn new() -> Budget {
        Budget::with(cost::RUNTIME_BUDGET)
    }

    pub(crate) fn with(limit: u64) -> Budget {
        Budget { remaining: Cell::new(limit), exhausted: Cell::new(false) }
    }

    /// An evaluation cost more than was left: upstream stops evaluating the policy.
    pub(crate) fn exhausted(&self) -> bool {
        self.exhausted.get()
    }

    /// The budget the evaluations after this one start from (upstream's `remainingBudget`).
    pub(crate) fn rest(&self) -> Budget {
        Budget { remaining: Cell::new(self.remaining.get()), exhausted: Cell::new(self.exhausted.get()) }
    }

    fn spend(&self, cost: u64) -> bool {
        match self.remaining.get().checked_sub(cost) {
            Some(left) if !self.exhausted.get() => {
                self.remaining.set(left);
                true
            }
            _ => {
                self.exhausted.set(true);
                false
            }
        }
    }
}

/// JSON as CEL sees it: integers are `int` (`uint` only past i64), objects are maps.
pub(crate) fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: HashMap<String, cel::Value> =
                m.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::Map(map.into())
        }
    }
}

/// The variables of one evaluation. `'a` is what the `authorizer` borrows (the server's
/// state), for the evaluation only.
#[derive(Clone, Default)]
pub(crate) struct Vars<'a> {
    vars: Vec<(String, Box<dyn Val + 'a>)>,
}

impl<'a> Vars<'a> {
    /// `object`, `oldObject`, `request`, `params` and `namespaceObject` of a request, from
    /// its AdmissionRequest (`request`, whose objects are in the version the webhook or
    /// policy matched): the objects are variables of their own, and, as upstream's
    /// `CreateAdmissionRequest`, not in `request`.
    pub(crate) fn for_request(attrs: &Attributes, params: Option<&Value>, request: &Value) -> Vars<'a> {
        let mut v = Vars::default();
        let mut request = request.clone();
        let mut take = |field: &str| request.as_object_mut().and_then(|r| r.remove(field)).unwrap_or(Value::Null);
        let (object, old) = (take("object"), take("oldObject"));
        v.set("object", to_cel(&object));
        v.set("oldObject", to_cel(&old));
        v.set("request", to_cel(&request));
        v.set("params", params.map_or(cel::Value::Null, to_cel));
        v.set("namespaceObject", attrs.namespace_object.as_deref().map_or(cel::Value::Null, to_cel));
        v
    }

    /// Offers `authorizer` (and `authorizer.requestResource`), checking with `check` for the
    /// requesting user, as upstream does for policies and webhooks' matchConditions.
    pub(crate) fn with_authorizer(mut self, attrs: &Attributes, check: Check<'a>) -> Vars<'a> {
        self.set_val("authorizer", authz::authorizer(attrs, check));
        self
    }

    pub(crate) fn set(&mut self, name: &str, value: cel::Value) {
        // Every JSON value converts; anything else is left unset (the expression then fails
        // on an undeclared reference rather than seeing a wrong value).
        if let Ok(v) = Box::<dyn Val>::try_from(value) {
            self.set_val(name, v);
        }
    }

    pub(crate) fn set_val(&mut self, name: &str, value: Box<dyn Val + 'a>) {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value));
    }

    /// `variables`: the policy's named values, of any type (quantities, urls, …) included.
    pub(crate) fn set_variables(&mut self, values: &HashMap<String, Box<dyn Val + 'a>>) {
        let map: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = values
            .iter()
            .map(|(k, v)| (CelMapKey::from(k.clone()), v.clone()))
            .collect();
        self.set_val("variables", Box::new(CelMap::from(map)));
    }
}

/// Evaluates `expr` to a value of any type, with a budget of its own.
#[cfg(test)]
pub(crate) fn eval_val<'a>(expr: &str, vars: &Vars<'a>) -> Result<Box<dyn Val + 'a>, String> {
    eval_val_in(expr, vars, &Budget::new())
}

/// Evaluates `expr` to a value of any type, spending from `budget`: past it, the error is
/// [`OUT_OF_BUDGET`] and the budget is [exhausted](Budget::exhausted). Errors read as
/// upstream's `expression '…' resulted in error: …`.
pub(crate) fn eval_val_in<'a>(expr: &str, vars: &Vars<'a>, budget: &Budget) -> Result<Box<dyn Val + 'a>, String> {
    if budget.exhausted() {
        return Err(OUT_OF_BUDGET.to_string());
    }
    let program = compile(expr)?;
    let mut ctx = Context::with_env(env().clone());
    for (name, value) in &vars.vars {
        ctx.add_variable_as_val(name.clone(), value.clone());
    }
    let run = || cel::Value::resolve_val(&program.expr, &ctx).map(CowVal::into_owned);
    let (out, spent) = match catch_unwind(AssertUnwindSafe(|| cost::metered(program.static_cost, run))) {
        Ok(result) => result,
        Err(_) => return Err(format!("expression '{expr}' resulted in error: evaluation failed")),
    };
    if !budget.spend(spent) {
        return Err(OUT_OF_BUDGET.to_string());
    }
    match out {
        Ok(v) => Ok(v),
        // A library's own error is shown as upstream shows it: the message alone.
        Err(ExecutionError::FunctionError { message, .. }) => Err(format!("expression '{expr}' resulted in error: {message}")),
        Err(e) => Err(format!("expression '{expr}' resulted in error: {e}")),
    }
}

/// Evaluates `expr` to a plain value (JSON-like types only).
#[cfg(test)]
pub(crate) fn eval(expr: &str, vars: &Vars) -> Result<cel::Value, String> {
    let v = eval_val(expr, vars)?;
    cel::Value::try_from(v.as_ref())
        .map_err(|e| format!("expression '{expr}' resulted in error: {e}"))
}

#[cfg(test)]
pub(crate) fn eval_bool(expr: &str, vars: &Vars) -> Result<bool, String> {
    eval_bool_in(expr, vars, &Budget::new())
}

pub(crate) fn eval_bool_in(expr: &str, vars: &Vars, budget: &Budget) -> Result<bool, String> {
    let v = eval_val_in(expr, vars, budget)?;
    match v.downcast_ref::<CelBool>() {
        Some(b) => Ok(*b.inner()),
        None => Err(format!(
            "expression '{expr}' resulted in error: expected a bool, got {}",
            v.get_type().name()
        )),
    }
}

/// A string value, `None` for `null`, or else the value's type name (an audit annotation's
/// valueExpression must give a string or null; a messageExpression, a string).
pub(crate) fn string_or_null(v: &dyn Val) -> Result<Option<String>, String> {
    if let Some(s) = v.downcast_ref::<CelString>() {
        return Ok(Some(s.inner().to_string()));
    }
    if v.downcast_ref::<cel::common::types::CelNull>().is_some() {
        return Ok(None);
    }
    Err(v.get_type().name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(obj: Value) -> Vars<'static> {
        let mut v = Vars::default();
        v.set("object", to_cel(&obj));
        v
    }

    /// The value of a variable-free expression, as JSON (panics, in tests, on an error).
    pub(super) fn val(expr: &str) -> Value {
        let v = eval(expr, &Vars::default()).unwrap_or_else(|e| panic!("{e}"));
        to_json(&v)
    }

    fn to_json(v: &cel::Value) -> Value {
        match v {
            cel::Value::Bool(b) => json!(b),
            cel::Value::Int(i) => json!(i),
            cel::Value::UInt(u) => json!(u),
            cel::Value::Float(f) => json!(f),
            cel::Value::String(s) => json!(s.as_str()),
            cel::Value::List(l) => Value::Array(l.iter().map(to_json).collect()),
            cel::Value::Map(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m.map.iter() {
                    out.insert(k.to_string(), to_json(v));
                }
                Value::Object(out)
            }
            cel::Value::Null => Value::Null,
            other => json!(format!("{other:?}")),
        }
    }

    /// The error of an expression that must fail.
    pub(super) fn err(expr: &str) -> String {
        match eval_val(expr, &Vars::default()) {
            Ok(v) => panic!("{expr} evaluated to {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn kubernetes_style_expressions() {
        let v = vars(
            json!({"spec": {"replicas": 6, "containers": [{"name": "a", "image": "nginx:1"}]}, "metadata": {"labels": {"env": "prod"}}}),
        );
        assert_eq!(eval_bool("object.spec.replicas <= 5", &v), Ok(false));
        assert_eq!(eval_bool("has(object.spec.replicas)", &v), Ok(true));
        assert_eq!(eval_bool("has(object.spec.paused)", &v), Ok(false));
        assert_eq!(
            eval_bool(
                "object.spec.containers.all(c, c.image.startsWith('nginx'))",
                &v
            ),
            Ok(true)
        );
        assert_eq!(
            eval_bool("object.spec.containers.exists(c, c.name == 'b')", &v),
            Ok(false)
        );
        assert_eq!(
            eval_bool(
                "size(object.spec.containers) == 1 && 'env' in object.metadata.labels",
                &v
            ),
            Ok(true)
        );
        assert_eq!(
            eval_bool("object.metadata.labels.env.upperAscii() == 'PROD'", &v),
            Ok(true)
        );
        let s = eval_val("'replicas: ' + string(object.spec.replicas)", &v).map(|v| string_or_null(v.as_ref()));
        assert_eq!(s, Ok(Ok(Some("replicas: 6".into()))));
        assert!(eval_bool("object.spec.nothere == 1", &v)
            .unwrap_err()
            .contains("resulted in error"));
        assert!(eval_bool("object.spec.replicas", &v)
            .unwrap_err()
            .contains("expected a bool"));
        assert!(compile("object.spec.replicas <=")
            .unwrap_err()
            .starts_with("compilation failed"));
    }
}
