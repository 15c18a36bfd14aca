//! CEL for admission (policies' validations and variables, webhooks' matchConditions), on the
//! `cel` crate: the standard library with its `has`/`all`/`exists`/`exists_one`/`map`/
//! `filter` macros, plus its strings (`charAt`, `indexOf`, `lastIndexOf`, `lowerAscii`,
//! `upperAscii`, `replace`, `split`, `substring`, `trim`, `join`, `format`, `reverse`,
//! `strings.quote`), lists (`slice`, `flatten`, …) and math (`math.*`) extensions.
//! Not available: Kubernetes' own libraries (`quantity`, `url`, `ip`/`cidr`, `authorizer`,
//! regex `find`/`findAll`, lists' `isSorted`/`sum`/`min`/`max`/`indexOf`), durations and
//! timestamps, and cost limits.
//!
//! Expressions are outside input: they are compiled once (cached by their text), and an
//! evaluation that panics inside the library is an evaluation error.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use cel::{Context, Env, Program};
use serde_json::Value;

use super::Attributes;

/// Compiled programs kept at most (policies are few; this only bounds a misbehaving client).
const MAX_PROGRAMS: usize = 4096;

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        for (name, add) in [
            ("strings", cel::extensions::strings as fn(&mut Env) -> Result<(), cel::DeclarationError>),
            ("lists", cel::extensions::lists),
            ("math", cel::extensions::math),
        ] {
            if let Err(e) = add(&mut env) {
                tracing::warn!(extension = name, error = %e, "CEL extension not available");
            }
        }
        Arc::new(env)
    })
}

fn programs() -> &'static Mutex<HashMap<String, Arc<Program>>> {
    static PROGRAMS: OnceLock<Mutex<HashMap<String, Arc<Program>>>> = OnceLock::new();
    PROGRAMS.get_or_init(Default::default)
}

/// Compiles `expr` (cached). The error reads as upstream's `compilation failed: …`.
pub(crate) fn compile(expr: &str) -> Result<Arc<Program>, String> {
    if let Some(p) = programs().lock().unwrap_or_else(|e| e.into_inner()).get(expr) {
        return Ok(p.clone());
    }
    let compiled = catch_unwind(AssertUnwindSafe(|| env().compile(expr))).map_err(|_| "compilation failed: the expression cannot be parsed".to_string())?;
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
            let map: HashMap<String, cel::Value> = m.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::Map(map.into())
        }
    }
}

/// The variables of one evaluation.
#[derive(Clone, Default)]
pub(crate) struct Vars {
    vars: Vec<(String, cel::Value)>,
}

impl Vars {
    /// `object`, `oldObject`, `request`, `params` and `namespaceObject` of a request.
    pub(crate) fn for_request(attrs: &Attributes, params: Option<&Value>, request: &Value) -> Vars {
        let mut v = Vars::default();
        v.set("object", attrs.object.as_ref().map_or(cel::Value::Null, to_cel));
        v.set("oldObject", attrs.old.map_or(cel::Value::Null, to_cel));
        v.set("request", to_cel(request));
        v.set("params", params.map_or(cel::Value::Null, to_cel));
        v.set("namespaceObject", attrs.namespace_object.as_deref().map_or(cel::Value::Null, to_cel));
        v
    }

    pub(crate) fn set(&mut self, name: &str, value: cel::Value) {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value));
    }
}

/// Evaluates `expr`; errors read as upstream's `expression '…' resulted in error: …`.
pub(crate) fn eval(expr: &str, vars: &Vars) -> Result<cel::Value, String> {
    let program = compile(expr)?;
    let mut ctx = Context::with_env(env().clone());
    for (name, value) in &vars.vars {
        ctx.add_variable_from_value(name.clone(), value.clone());
    }
    match catch_unwind(AssertUnwindSafe(|| program.execute(&ctx))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("expression '{expr}' resulted in error: {e}")),
        Err(_) => Err(format!("expression '{expr}' resulted in error: evaluation failed")),
    }
}

pub(crate) fn eval_bool(expr: &str, vars: &Vars) -> Result<bool, String> {
    match eval(expr, vars)? {
        cel::Value::Bool(b) => Ok(b),
        other => Err(format!("expression '{expr}' resulted in error: expected a bool, got {:?}", other.type_of())),
    }
}

pub(crate) fn eval_string(expr: &str, vars: &Vars) -> Result<String, String> {
    match eval(expr, vars)? {
        cel::Value::String(s) => Ok(s.to_string()),
        other => Err(format!("expression '{expr}' resulted in error: expected a string, got {:?}", other.type_of())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(obj: Value) -> Vars {
        let mut v = Vars::default();
        v.set("object", to_cel(&obj));
        v
    }

    #[test]
    fn kubernetes_style_expressions() {
        let v = vars(json!({"spec": {"replicas": 6, "containers": [{"name": "a", "image": "nginx:1"}]}, "metadata": {"labels": {"env": "prod"}}}));
        assert_eq!(eval_bool("object.spec.replicas <= 5", &v), Ok(false));
        assert_eq!(eval_bool("has(object.spec.replicas)", &v), Ok(true));
        assert_eq!(eval_bool("has(object.spec.paused)", &v), Ok(false));
        assert_eq!(eval_bool("object.spec.containers.all(c, c.image.startsWith('nginx'))", &v), Ok(true));
        assert_eq!(eval_bool("object.spec.containers.exists(c, c.name == 'b')", &v), Ok(false));
        assert_eq!(eval_bool("size(object.spec.containers) == 1 && 'env' in object.metadata.labels", &v), Ok(true));
        assert_eq!(eval_bool("object.metadata.labels.env.upperAscii() == 'PROD'", &v), Ok(true));
        assert_eq!(eval_string("'replicas: ' + string(object.spec.replicas)", &v), Ok("replicas: 6".into()));
        assert!(eval_bool("object.spec.nothere == 1", &v).unwrap_err().contains("resulted in error"));
        assert!(eval_bool("object.spec.replicas", &v).unwrap_err().contains("expected a bool"));
        assert!(compile("object.spec.replicas <=").unwrap_err().starts_with("compilation failed"));
    }
}
