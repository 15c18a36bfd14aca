//! CEL for admission (policies' validations and variables, webhooks' matchConditions), on the
//! `cel` crate: the standard library with its `has`/`all`/`exists`/`exists_one`/`map`/
//! `filter` macros, plus its strings (`charAt`, `indexOf`, `lastIndexOf`, `lowerAscii`,
//! `upperAscii`, `replace`, `split`, `substring`, `trim`, `join`, `format`, `reverse`,
//! `strings.quote`), lists (`slice`, `flatten`, …) and math (`math.*`) extensions, and
//! Kubernetes' own libraries (`k8s.io/apiserver/pkg/cel/library`), one module each:
//! [`quantity`], [`lists`] (lists and regex), [`net`] (url, ip, cidr), [`format`] (name
//! formats) and [`authz`] (the `authorizer` variable, for policies and webhooks'
//! matchConditions).
//! Not available: `format.uri/uuid/byte/date/datetime`, semver, durations and timestamps, `authorizer`'s
//! fieldSelector/labelSelector, and cost limits.
//!
//! Expressions are outside input: they are compiled once (cached by their text), and an
//! evaluation that panics inside the library is an evaluation error.

mod authz;
mod format;
mod lists;
mod net;
mod quantity;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use cel::common::types::{CelBool, CelMap, CelMapKey, CelString};
use cel::common::value::{CowVal, Val};
use cel::{Context, Env, ExecutionError, Program};
use serde_json::Value;

use super::Attributes;

pub(crate) use authz::Check;

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

fn programs() -> &'static Mutex<HashMap<String, Arc<Program>>> {
    static PROGRAMS: OnceLock<Mutex<HashMap<String, Arc<Program>>>> = OnceLock::new();
    PROGRAMS.get_or_init(Default::default)
}

/// Compiles `expr` (cached). The error reads as upstream's `compilation failed: …`.
pub(crate) fn compile(expr: &str) -> Result<Arc<Program>, String> {
    if let Some(p) = programs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(expr)
    {
        return Ok(p.clone());
    }
    let compiled = catch_unwind(AssertUnwindSafe(|| env().compile(expr)))
        .map_err(|_| "compilation failed: the expression cannot be parsed".to_string())?;
    let program = Arc::new(compiled.map_err(|e| format!("compilation failed: {e}"))?);
    let mut cache = programs().lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= MAX_PROGRAMS {
        cache.clear();
    }
    cache.insert(expr.to_string(), program.clone());
    Ok(program)
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
    /// `object`, `oldObject`, `request`, `params` and `namespaceObject` of a request.
    pub(crate) fn for_request(
        attrs: &Attributes,
        params: Option<&Value>,
        request: &Value,
    ) -> Vars<'a> {
        let mut v = Vars::default();
        v.set(
            "object",
            attrs.object.as_ref().map_or(cel::Value::Null, to_cel),
        );
        v.set("oldObject", attrs.old.map_or(cel::Value::Null, to_cel));
        v.set("request", to_cel(request));
        v.set("params", params.map_or(cel::Value::Null, to_cel));
        v.set(
            "namespaceObject",
            attrs
                .namespace_object
                .as_deref()
                .map_or(cel::Value::Null, to_cel),
        );
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

/// Evaluates `expr` to a value of any type; errors read as upstream's
/// `expression '…' resulted in error: …`.
pub(crate) fn eval_val<'a>(expr: &str, vars: &Vars<'a>) -> Result<Box<dyn Val + 'a>, String> {
    let program = compile(expr)?;
    let mut ctx = Context::with_env(env().clone());
    for (name, value) in &vars.vars {
        ctx.add_variable_as_val(name.clone(), value.clone());
    }
    let run = || cel::Value::resolve_val(program.expression(), &ctx).map(CowVal::into_owned);
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(v)) => Ok(v),
        // A library's own error is shown as upstream shows it: the message alone.
        Ok(Err(ExecutionError::FunctionError { message, .. })) => {
            Err(format!("expression '{expr}' resulted in error: {message}"))
        }
        Ok(Err(e)) => Err(format!("expression '{expr}' resulted in error: {e}")),
        Err(_) => Err(format!(
            "expression '{expr}' resulted in error: evaluation failed"
        )),
    }
}

/// Evaluates `expr` to a plain value (JSON-like types only).
#[cfg(test)]
pub(crate) fn eval(expr: &str, vars: &Vars) -> Result<cel::Value, String> {
    let v = eval_val(expr, vars)?;
    cel::Value::try_from(v.as_ref())
        .map_err(|e| format!("expression '{expr}' resulted in error: {e}"))
}

pub(crate) fn eval_bool(expr: &str, vars: &Vars) -> Result<bool, String> {
    let v = eval_val(expr, vars)?;
    match v.downcast_ref::<CelBool>() {
        Some(b) => Ok(*b.inner()),
        None => Err(format!(
            "expression '{expr}' resulted in error: expected a bool, got {}",
            v.get_type().name()
        )),
    }
}

pub(crate) fn eval_string(expr: &str, vars: &Vars) -> Result<String, String> {
    let v = eval_val(expr, vars)?;
    match v.downcast_ref::<CelString>() {
        Some(s) => Ok(s.inner().to_string()),
        None => Err(format!(
            "expression '{expr}' resulted in error: expected a string, got {}",
            v.get_type().name()
        )),
    }
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
        assert_eq!(
            eval_string("'replicas: ' + string(object.spec.replicas)", &v),
            Ok("replicas: 6".into())
        );
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
