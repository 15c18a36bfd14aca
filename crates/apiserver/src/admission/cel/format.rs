//! Kubernetes' format library (`k8s.io/apiserver/pkg/cel/library/format.go`), for the name
//! formats: `format.dns1123Label()`, `dns1123Subdomain()`, `dns1035Label()`,
//! `qualifiedName()`, `labelValue()`, the `…Prefix()` forms (a trailing `-` allowed, as for
//! `generateName`), `format.named(name)`, and `<format>.validate(string)`: `optional.none()`
//! when valid, else the list of errors, with the server's own validation messages.
//! Not offered: `uri`, `uuid`, `byte`, `date`, `datetime`.

use std::any::Any;

use cel::common::types::{CelList, CelOptional, CelString, Type, STRING_TYPE};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{args, owned, string_arg};
use crate::validation;

static FORMAT: Type = Type::new_unspecified_type("kubernetes.NamedFormat");

/// The formats offered, by their upstream names.
const FORMATS: &[&str] = &[
    "dns1123Label", "dns1123Subdomain", "dns1035Label", "qualifiedName", "labelValue", "dns1123LabelPrefix", "dns1123SubdomainPrefix", "dns1035LabelPrefix",
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
fn mask_trailing_dash(s: &str) -> String {
    match s.strip_suffix('-') {
        Some(head) if s.len() > 1 => format!("{head}a"),
        _ => s.to_string(),
    }
}

fn validate(format: &str, s: &str) -> Vec<String> {
    match format {
        "dns1123Label" => validation::is_dns1123_label(s),
        "dns1123Subdomain" => validation::is_dns1123_subdomain(s),
        "dns1035Label" => validation::is_dns1035_label(s),
        "qualifiedName" => validation::is_qualified_name(s),
        "labelValue" => validation::is_label_value(s),
        "dns1123LabelPrefix" => validation::is_dns1123_label(&mask_trailing_dash(s)),
        "dns1123SubdomainPrefix" => validation::is_dns1123_subdomain(&mask_trailing_dash(s)),
        "dns1035LabelPrefix" => validation::is_dns1035_label(&mask_trailing_dash(s)),
        _ => vec![],
    }
}

fn format_arg<'x>(v: &'x dyn Val) -> Result<&'x Format, ExecutionError> {
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
    named!("dns1123Label", "dns1123Subdomain", "dns1035Label", "qualifiedName", "labelValue", "dns1123LabelPrefix", "dns1123SubdomainPrefix", "dns1035LabelPrefix");
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
