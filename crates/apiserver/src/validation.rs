//! Validation shared by every kind: object names, labels, annotations — with upstream's rules
//! and messages (k8s.io/apimachinery `pkg/util/validation` and `pkg/api/validation`).

use serde_json::Value;

use crate::error::FieldError;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;
const QUALIFIED_NAME_MAX: usize = 63;
const ANNOTATIONS_MAX: usize = 256 * 1024;

fn alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(format!("must be no more than {DNS1123_LABEL_MAX} characters"));
    }
    let ok = !s.is_empty()
        && s.chars().all(|c| alnum_lower(c) || c == '-')
        && s.starts_with(alnum_lower)
        && s.ends_with(alnum_lower);
    if !ok {
        errs.push("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into());
    }
    errs
}

pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!("must be no more than {DNS1123_SUBDOMAIN_MAX} characters"));
    }
    let ok = !s.is_empty()
        && s.split('.').all(|part| {
            !part.is_empty() && part.chars().all(|c| alnum_lower(c) || c == '-') && part.starts_with(alnum_lower) && part.ends_with(alnum_lower)
        });
    if !ok {
        errs.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into());
    }
    errs
}

/// RFC 1035 labels: what Service names must be (they become DNS names, starting with a letter).
pub fn is_dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(format!("must be no more than {DNS1123_LABEL_MAX} characters"));
    }
    let ok = !s.is_empty()
        && s.chars().all(|c| alnum_lower(c) || c == '-')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(alnum_lower);
    if !ok {
        errs.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into());
    }
    errs
}

/// Names that only have to be usable as a path segment (RBAC objects, for example).
pub fn is_path_segment_name(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    for bad in ["/", "%"] {
        if s.contains(bad) {
            return vec![format!("may not contain '{bad}'")];
        }
    }
    vec![]
}

fn qualified_name_part(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.is_empty() {
        errs.push("name part must be non-empty".into());
        return errs;
    }
    if s.len() > QUALIFIED_NAME_MAX {
        errs.push(format!("name part must be no more than {QUALIFIED_NAME_MAX} characters"));
    }
    let ok = s.chars().all(|c| alnum(c) || c == '-' || c == '_' || c == '.') && s.starts_with(alnum) && s.ends_with(alnum);
    if !ok {
        errs.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into());
    }
    errs
}

/// Label and annotation keys: `[prefix/]name`.
pub fn is_qualified_name(s: &str) -> Vec<String> {
    match s.split_once('/') {
        None => qualified_name_part(s),
        Some((prefix, name)) => {
            let mut errs = Vec::new();
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".into());
            } else {
                errs.extend(is_dns1123_subdomain(prefix).into_iter().map(|e| format!("prefix part {e}")));
            }
            if name.contains('/') {
                errs.push("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into());
            } else {
                errs.extend(qualified_name_part(name));
            }
            errs
        }
    }
}

pub fn is_label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        errs.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    let ok = s.is_empty() || (s.chars().all(|c| alnum(c) || c == '-' || c == '_' || c == '.') && s.starts_with(alnum) && s.ends_with(alnum));
    if !ok {
        errs.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into());
    }
    errs
}

/// How a kind's names are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    PathSegment,
}

pub fn validate_name(rule: NameRule, name: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => is_dns1123_subdomain(name),
        NameRule::Label => is_dns1123_label(name),
        NameRule::Dns1035 => is_dns1035_label(name),
        NameRule::PathSegment => is_path_segment_name(name),
    }
}

/// Validates `metadata`: name (or generateName), labels, annotations.
pub fn validate_metadata(meta: &Value, rule: NameRule, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required("metadata.name", "name or generateName is required"));
    } else {
        for e in validate_name(rule, name) {
            errs.push(FieldError::invalid("metadata.name", &Value::String(name.into()), &e));
        }
    }
    if namespaced {
        let ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        }
    }
    match meta.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (k, v) in labels {
                for e in is_qualified_name(k) {
                    errs.push(FieldError::invalid("metadata.labels", &Value::String(k.clone()), &e));
                }
                match v.as_str() {
                    Some(s) => {
                        for e in is_label_value(s) {
                            errs.push(FieldError::invalid("metadata.labels".to_string(), v, &e));
                        }
                    }
                    None => errs.push(FieldError::invalid("metadata.labels", v, "must be a string")),
                }
            }
        }
        Some(other) => errs.push(FieldError::invalid("metadata.labels", other, "must be a map of strings")),
    }
    match meta.get("annotations") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ann)) => {
            let mut total = 0;
            for (k, v) in ann {
                for e in is_qualified_name(&k.to_lowercase()) {
                    errs.push(FieldError::invalid("metadata.annotations", &Value::String(k.clone()), &e));
                }
                total += k.len() + v.as_str().map_or(0, str::len);
                if !v.is_string() {
                    errs.push(FieldError::invalid("metadata.annotations", v, "must be a string"));
                }
            }
            if total > ANNOTATIONS_MAX {
                errs.push(FieldError::too_long("metadata.annotations", ANNOTATIONS_MAX));
            }
        }
        Some(other) => errs.push(FieldError::invalid("metadata.annotations", other, "must be a map of strings")),
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("web-1.example").is_empty());
        assert!(!is_dns1123_subdomain("Web").is_empty());
        assert!(!is_dns1123_subdomain(&"a".repeat(254)).is_empty());
        assert!(is_dns1123_label("kube-system").is_empty());
        assert!(!is_dns1123_label("a.b").is_empty());
        assert!(!is_dns1035_label("1abc").is_empty());
        assert!(is_qualified_name("app.kubernetes.io/name").is_empty());
        assert!(!is_qualified_name("-bad").is_empty());
        assert!(!is_qualified_name("a/b/c").is_empty());
        assert!(is_label_value("").is_empty());
        assert!(!is_label_value(&"x".repeat(64)).is_empty());
    }

    #[test]
    fn metadata() {
        let errs = validate_metadata(&json!({"name": "ok", "namespace": "default", "labels": {"app": "web", "bad key": "x"}}), NameRule::Subdomain, true);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.labels");
        let errs = validate_metadata(&json!({}), NameRule::Subdomain, false);
        assert_eq!(errs[0].full(), "metadata.name: Required value: name or generateName is required");
    }
}
