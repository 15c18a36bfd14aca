//! Label maps and label selectors as upstream prints them (`labels.FormatLabels`,
//! `metav1.FormatLabelSelector`, `metav1.LabelSelectorAsSelector(...).String()`).

use super::J;

/// `labels.FormatLabels`: `k=v` pairs sorted by key, `<none>` when empty.
pub(super) fn format_labels(map: J<'_>) -> String {
    let mut pairs: Vec<(&str, &str)> = match map.map() {
        Some(m) => m.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))).collect(),
        None => Vec::new(),
    };
    pairs.sort();
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if joined.is_empty() {
        "<none>".into()
    } else {
        joined.join(",")
    }
}

/// `metav1.LabelSelectorAsSelector(sel).String()`: `Ok("")` for a nil or empty selector,
/// `Err` where upstream fails to build the selector (bad operator, key or value).
pub(super) fn selector_string(sel: J<'_>) -> Result<String, ()> {
    if sel.map().is_none() {
        // Nothing() for a nil selector, and a non-object fails to decode upstream; both print "".
        return Ok(String::new());
    }
    let match_labels = sel.get("matchLabels");
    let exprs = sel.get("matchExpressions");
    if match_labels.len() + exprs.len() == 0 {
        return Ok(String::new());
    }
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = match_labels.map() {
        for (k, v) in m {
            let v = v.as_str().unwrap_or("");
            validate_key(k)?;
            validate_value(v)?;
            reqs.push((k.clone(), format!("{k}={v}")));
        }
    }
    for e in exprs.items() {
        let key = e.get("key").str();
        let mut values: Vec<&str> = e.get("values").items().map(|v| v.str()).collect();
        validate_key(key)?;
        let text = match e.get("operator").str() {
            op @ ("In" | "NotIn") => {
                if values.is_empty() {
                    return Err(());
                }
                values.sort();
                let word = if op == "In" { "in" } else { "notin" };
                format!("{key} {word} ({})", values.join(","))
            }
            "Exists" if values.is_empty() => key.to_string(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return Err(()),
        };
        for v in &values {
            validate_value(v)?;
        }
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(","))
}

/// `metav1.FormatLabelSelector`: the selector string, `<none>` when empty, `<error>` when invalid.
pub(super) fn format_label_selector(sel: J<'_>) -> String {
    match selector_string(sel) {
        Err(()) => "<error>".into(),
        Ok(s) if s.is_empty() => "<none>".into(),
        Ok(s) => s,
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters (a label value may be empty).
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain: dot-separated lower-case labels, at most 253 characters.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// `validation.IsQualifiedName`: an optional DNS subdomain prefix and `/`, then a name part.
fn validate_key(key: &str) -> Result<(), ()> {
    let ok = match key.split_once('/') {
        None => is_qualified_name_part(key),
        Some((prefix, name)) => !name.contains('/') && is_dns1123_subdomain(prefix) && is_qualified_name_part(name),
    };
    ok.then_some(()).ok_or(())
}

/// `validation.IsValidLabelValue`: empty, or a qualified name part.
fn validate_value(v: &str) -> Result<(), ()> {
    (v.is_empty() || is_qualified_name_part(v)).then_some(()).ok_or(())
}
