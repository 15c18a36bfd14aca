//! Kubernetes' authz library (`k8s.io/apiserver/pkg/cel/library/authz.go`): the `authorizer`
//! variable, answered by this server's RBAC authorizer for the requesting user:
//! `authorizer.group(g).resource(r).subresource(s).namespace(ns).name(n).check(verb)`,
//! `authorizer.path(p).check(verb)`, `authorizer.serviceAccount(ns, name)…`,
//! `authorizer.requestResource.check(verb)`, `….fieldSelector(s)` and `….labelSelector(s)`
//! on a resource check (1.31+; RBAC, like upstream's, decides without them: they only
//! matter to webhook authorizers), and on the decision `allowed()`, `reason()`, `errored()`,
//! `error()`. As upstream, an empty path or resource and an invalid service account name or
//! namespace are errors.
//!
//! The checker borrows the server's state for one evaluation, so these values are not
//! `'static` and cannot be downcast: every step goes through [`Indexer::get`] with a
//! `[step, argument…]` list as the index, which is how a plain `fn` overload reaches the
//! borrowed checker. (`authorizer[['group', 'apps']]` therefore works too; it is harmless.)

use cel::common::traits::Indexer;
use cel::common::types::{CelBool, CelList, CelString, Type, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::super::Attributes as Request;
use super::{args, fail, owned, string_arg};
use crate::auth::UserInfo;
use crate::rbac;

/// Whether `user` may do what the attributes say: the server's RBAC authorizer.
pub(crate) type Check<'a> = &'a (dyn Fn(&UserInfo, &rbac::Attributes) -> bool + Send + Sync);

static AUTHORIZER: Type = Type::new_unspecified_type("kubernetes.authorization.Authorizer");
static PATH_CHECK: Type = Type::new_unspecified_type("kubernetes.authorization.PathCheck");
static GROUP_CHECK: Type = Type::new_unspecified_type("kubernetes.authorization.GroupCheck");
static RESOURCE_CHECK: Type = Type::new_unspecified_type("kubernetes.authorization.ResourceCheck");
static DECISION: Type = Type::new_unspecified_type("kubernetes.authorization.Decision");

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    Authorizer,
    Path,
    Group,
    Resource,
    Decision(bool),
}

/// One step of an authorization check: who asks, and what is asked so far.
#[derive(Clone)]
struct Authz<'a> {
    check: Check<'a>,
    user: UserInfo,
    stage: Stage,
    attrs: rbac::Attributes,
    /// What `requestResource` stands for.
    request: rbac::Attributes,
    /// The selectors of a resource check, as written (RBAC does not read them).
    selectors: (String, String),
}

impl std::fmt::Debug for Authz<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({:?}, selectors {:?})", self.get_type().name(), self.attrs, self.selectors)
    }
}

/// The `authorizer` of a request.
pub(super) fn authorizer<'a>(req: &Request, check: Check<'a>) -> Box<dyn Val + 'a> {
    let request = rbac::Attributes {
        group: req.def.group.clone(),
        resource: req.def.plural.clone(),
        subresource: req.subresource.to_string(),
        namespace: req.namespace.clone(),
        name: req.name.clone(),
        ..Default::default()
    };
    Box::new(Authz {
        check,
        user: req.user.clone(),
        stage: Stage::Authorizer,
        attrs: rbac::Attributes::default(),
        request,
        selectors: Default::default(),
    })
}

impl Authz<'_> {
    fn step(&self, stage: Stage, edit: impl FnOnce(&mut rbac::Attributes)) -> Self {
        let mut next = self.clone();
        next.stage = stage;
        edit(&mut next.attrs);
        next
    }

    /// The next value for `[step, args…]` (or the `requestResource` field).
    fn next(&self, idx: &dyn Val) -> Result<Self, ExecutionError> {
        if let Some(field) = idx.downcast_ref::<CelString>() {
            return match (self.stage, field.inner()) {
                (Stage::Authorizer, "requestResource") => {
                    let request = self.request.clone();
                    Ok(self.step(Stage::Resource, |a| *a = request))
                }
                (_, f) => Err(ExecutionError::no_such_key(f)),
            };
        }
        let list = idx
            .downcast_ref::<CelList>()
            .ok_or_else(|| ExecutionError::no_such_key("authorizer"))?;
        let items = list.inner();
        let arg = |i: usize| -> Result<String, ExecutionError> {
            items
                .get(i)
                .ok_or_else(|| ExecutionError::invalid_argument_count(i + 1, i))
                .and_then(|v| string_arg(v.as_ref()).map(str::to_string))
        };
        let op = arg(0)?;
        match (self.stage, op.as_str()) {
            (Stage::Authorizer, "path") => {
                let p = arg(1)?;
                if p.trim().is_empty() {
                    return Err(fail("path", "path must not be empty"));
                }
                Ok(self.step(Stage::Path, |a| a.path = Some(p)))
            }
            (Stage::Authorizer, "group") => {
                let g = arg(1)?;
                Ok(self.step(Stage::Group, |a| a.group = g))
            }
            (Stage::Authorizer, "serviceAccount") => {
                let (ns, name) = (arg(1)?, arg(2)?);
                if !crate::validation::is_dns1123_subdomain(&name).is_empty() {
                    return Err(fail("serviceAccount", "Invalid service account name"));
                }
                if !crate::validation::is_dns1123_label(&ns).is_empty() {
                    return Err(fail("serviceAccount", "Invalid service account namespace"));
                }
                let mut next = self.clone();
                // The user a service account's token authenticates as, groups included.
                next.user = UserInfo {
                    name: format!("system:serviceaccount:{ns}:{name}"),
                    groups: vec![
                        "system:serviceaccounts".into(),
                        format!("system:serviceaccounts:{ns}"),
                        "system:authenticated".into(),
                    ],
                };
                Ok(next)
            }
            (Stage::Group, "resource") => {
                let r = arg(1)?;
                if r.trim().is_empty() {
                    return Err(fail("resource", "resource must not be empty"));
                }
                Ok(self.step(Stage::Resource, |a| a.resource = r))
            }
            (Stage::Resource, "subresource") => {
                let s = arg(1)?;
                Ok(self.step(Stage::Resource, |a| a.subresource = s))
            }
            (Stage::Resource, "namespace") => {
                let n = arg(1)?;
                Ok(self.step(Stage::Resource, |a| a.namespace = n))
            }
            (Stage::Resource, "name") => {
                let n = arg(1)?;
                Ok(self.step(Stage::Resource, |a| a.name = n))
            }
            (Stage::Resource, "fieldSelector") => {
                let mut next = self.step(Stage::Resource, |_| {});
                next.selectors.0 = arg(1)?;
                Ok(next)
            }
            (Stage::Resource, "labelSelector") => {
                let mut next = self.step(Stage::Resource, |_| {});
                next.selectors.1 = arg(1)?;
                Ok(next)
            }
            (Stage::Resource | Stage::Path, "check") => {
                let mut attrs = self.attrs.clone();
                attrs.verb = arg(1)?;
                let allowed = (self.check)(&self.user, &attrs);
                Ok(self.step(Stage::Decision(allowed), |a| *a = attrs))
            }
            (_, op) => Err(ExecutionError::no_such_member_overload(
                op,
                vec![self.get_type().name().to_string()],
            )),
        }
    }
}

impl<'a> Val for Authz<'a> {
    fn get_type(&self) -> &Type {
        match self.stage {
            Stage::Authorizer => &AUTHORIZER,
            Stage::Path => &PATH_CHECK,
            Stage::Group => &GROUP_CHECK,
            Stage::Resource => &RESOURCE_CHECK,
            Stage::Decision(_) => &DECISION,
        }
    }
    fn cel_type() -> &'static Type {
        // Not named in overload macros (the type depends on the stage).
        &AUTHORIZER
    }
    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }
}

impl<'a> Indexer for Authz<'a> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        if let (Stage::Decision(allowed), Some(field)) =
            (self.stage, idx.downcast_ref::<CelString>())
        {
            // The decision's accessors: RBAC gives no reason for a denial, and never errs.
            return match field.inner() {
                "allowed" => Ok(owned(CelBool::from(allowed))),
                "errored" => Ok(owned(CelBool::from(false))),
                "reason" | "error" => Ok(owned(CelString::from(String::new()))),
                f => Err(ExecutionError::no_such_key(f)),
            };
        }
        Ok(owned(self.next(idx)?))
    }
    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// `target.<step>(args…)`, through the target's indexer.
fn via_indexer<'b, 'v>(
    step: &str,
    a: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let mut a = a.into_iter();
    let target = a
        .next()
        .ok_or_else(ExecutionError::missing_argument_or_target)?;
    let mut index: Vec<Box<dyn Val + 'v>> = vec![Box::new(CelString::from(step.to_string()))];
    index.extend(a.map(CowVal::into_owned));
    let indexer = target
        .as_indexer()
        .ok_or_else(|| fail(step, "not an authorizer value"))?;
    let out = indexer.get(&CelList::from(index))?;
    Ok(CowVal::Owned(out.into_owned()))
}

fn decision_field<'b, 'v>(
    field: &str,
    a: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [d] = args(a)?;
    let indexer = d
        .as_indexer()
        .ok_or_else(|| fail(field, "not a decision"))?;
    let out = indexer.get(&CelString::from(field.to_string()))?;
    Ok(CowVal::Owned(out.into_owned()))
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    for t in [
        &AUTHORIZER,
        &PATH_CHECK,
        &GROUP_CHECK,
        &RESOURCE_CHECK,
        &DECISION,
    ] {
        env.add_type(t.to_owned())?;
    }
    let s = || STRING_TYPE;
    env.add_member_overload(
        "path",
        "authorizer_path",
        AUTHORIZER.to_owned(),
        vec![s()],
        |a| via_indexer("path", a),
    )?;
    env.add_member_overload(
        "group",
        "authorizer_group",
        AUTHORIZER.to_owned(),
        vec![s()],
        |a| via_indexer("group", a),
    )?;
    env.add_member_overload(
        "serviceAccount",
        "authorizer_serviceaccount",
        AUTHORIZER.to_owned(),
        vec![s(), s()],
        |a| via_indexer("serviceAccount", a),
    )?;
    env.add_member_overload(
        "resource",
        "groupcheck_resource",
        GROUP_CHECK.to_owned(),
        vec![s()],
        |a| via_indexer("resource", a),
    )?;
    env.add_member_overload(
        "subresource",
        "resourcecheck_subresource",
        RESOURCE_CHECK.to_owned(),
        vec![s()],
        |a| via_indexer("subresource", a),
    )?;
    env.add_member_overload(
        "namespace",
        "resourcecheck_namespace",
        RESOURCE_CHECK.to_owned(),
        vec![s()],
        |a| via_indexer("namespace", a),
    )?;
    env.add_member_overload(
        "name",
        "resourcecheck_name",
        RESOURCE_CHECK.to_owned(),
        vec![s()],
        |a| via_indexer("name", a),
    )?;
    env.add_member_overload(
        "fieldSelector",
        "authorizer_fieldselector",
        RESOURCE_CHECK.to_owned(),
        vec![s()],
        |a| via_indexer("fieldSelector", a),
    )?;
    env.add_member_overload(
        "labelSelector",
        "authorizer_labelselector",
        RESOURCE_CHECK.to_owned(),
        vec![s()],
        |a| via_indexer("labelSelector", a),
    )?;
    env.add_member_overload(
        "check",
        "resourcecheck_check",
        RESOURCE_CHECK.to_owned(),
        vec![s()],
        |a| via_indexer("check", a),
    )?;
    env.add_member_overload(
        "check",
        "pathcheck_check",
        PATH_CHECK.to_owned(),
        vec![s()],
        |a| via_indexer("check", a),
    )?;
    env.add_member_overload(
        "allowed",
        "decision_allowed",
        DECISION.to_owned(),
        vec![],
        |a| decision_field("allowed", a),
    )?;
    env.add_member_overload(
        "errored",
        "decision_errored",
        DECISION.to_owned(),
        vec![],
        |a| decision_field("errored", a),
    )?;
    env.add_member_overload(
        "reason",
        "decision_reason",
        DECISION.to_owned(),
        vec![],
        |a| decision_field("reason", a),
    )?;
    env.add_member_overload(
        "error",
        "decision_error",
        DECISION.to_owned(),
        vec![],
        |a| decision_field("error", a),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{eval_bool, Vars};
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_go_to_the_authorizer_for_the_requesting_user() {
        let def = timonier_api::resources::builtin()
            .into_iter()
            .find(|d| d.plural == "deployments")
            .unwrap();
        let req = Request {
            def: &def,
            subresource: "",
            operation: super::super::super::Operation::Create,
            namespace: "ns1".into(),
            name: "web".into(),
            object: Some(json!({})),
            old: None,
            dry_run: false,
            user: UserInfo {
                name: "alice".into(),
                groups: vec![],
            },
            namespace_object: None,
            equivalents: vec![],
        };
        // alice may list pods in ns1, and get /healthz; the service account ns1/robot may
        // create deployments anywhere.
        let rbac_rules = |u: &UserInfo, a: &rbac::Attributes| match u.name.as_str() {
            "alice" => {
                (a.group.is_empty()
                    && a.resource == "pods"
                    && a.namespace == "ns1"
                    && a.verb == "list")
                    || (a.path.as_deref() == Some("/healthz") && a.verb == "get")
            }
            "system:serviceaccount:ns1:robot" => {
                a.group == "apps"
                    && a.resource == "deployments"
                    && a.verb == "create"
                    && u.groups.contains(&"system:serviceaccounts:ns1".to_string())
            }
            _ => false,
        };
        let vars = Vars::default().with_authorizer(&req, &rbac_rules);
        for (expr, want) in [
            ("authorizer.group('').resource('pods').namespace('ns1').check('list').allowed()", true),
            ("authorizer.group('').resource('pods').namespace('ns2').check('list').allowed()", false),
            ("authorizer.group('').resource('pods').namespace('ns1').name('x').check('delete').allowed()", false),
            ("authorizer.path('/healthz').check('get').allowed()", true),
            ("authorizer.path('/metrics').check('get').allowed()", false),
            ("authorizer.requestResource.check('create').allowed()", false),
            ("authorizer.serviceAccount('ns1', 'robot').requestResource.check('create').allowed()", true),
            ("authorizer.serviceAccount('ns1', 'robot').group('apps').resource('deployments').check('create').allowed()", true),
            ("authorizer.serviceAccount('ns2', 'robot').group('apps').resource('deployments').check('create').allowed()", false),
            ("authorizer.path('/healthz').check('get').reason() == '' && !authorizer.path('/x').check('get').errored()", true),
            // Selectors are carried; RBAC decides without them, as upstream's.
            ("authorizer.group('').resource('pods').namespace('ns1').fieldSelector('spec.nodeName=n1').labelSelector('app=web').check('list').allowed()", true),
            ("authorizer.group('').resource('pods').labelSelector('app in (').namespace('ns1').check('list').allowed()", true),
        ] {
            assert_eq!(eval_bool(expr, &vars), Ok(want), "{expr}");
        }
        // Steps out of order are no overloads, as upstream's type checker would say.
        assert!(eval_bool("authorizer.resource('pods').check('get').allowed()", &vars).is_err());
        assert!(eval_bool("authorizer.group('').check('get').allowed()", &vars).is_err());
        for (expr, message) in [
            ("authorizer.path(' ').check('get').allowed()", "path must not be empty"),
            ("authorizer.group('apps').resource('').check('get').allowed()", "resource must not be empty"),
            ("authorizer.serviceAccount('ns1', 'Bad_Name').path('/').check('get').allowed()", "Invalid service account name"),
            ("authorizer.serviceAccount('not@valid', 'robot').path('/').check('get').allowed()", "Invalid service account namespace"),
        ] {
            let e = eval_bool(expr, &vars).unwrap_err();
            assert!(e.ends_with(message), "{expr}: {e}");
        }
        // Without the variable (e.g. a test's bare Vars), `authorizer` is undeclared.
        assert!(eval_bool(
            "authorizer.path('/').check('get').allowed()",
            &Vars::default()
        )
        .is_err());
    }
}
