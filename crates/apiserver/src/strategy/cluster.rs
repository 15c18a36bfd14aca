//! Defaults and validation of the cluster-level kinds: admission configuration, certificate
//! signing requests, flow control, ServiceCIDRs and IPAddresses, RuntimeClasses,
//! PriorityClasses and the CSI kinds — what upstream's defaulters and `validation` packages
//! check for what clients commonly send (required fields, enumerations, immutable fields).
//! CEL expressions and admission webhooks are not evaluated here; CertificateSigningRequests
//! have their own file (`csr.rs`).

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::{obj_at, set_default};
use crate::error::FieldError;
use crate::validation::{is_dns1123_label, is_dns1123_subdomain};

pub(super) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn items<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// `field` must be one of `allowed` when set; `required` makes an absent or empty value an error.
pub(super) fn check_enum(errs: &mut Vec<FieldError>, field: String, v: Option<&Value>, allowed: &[&str], required: bool) {
    match v {
        None | Some(Value::Null) => {
            if required {
                errs.push(FieldError::required(field, ""));
            }
        }
        Some(Value::String(s)) if s.is_empty() && required => errs.push(FieldError::required(field, "")),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => {}
        Some(other) => errs.push(FieldError::not_supported(field, other, allowed)),
    }
}

pub(super) fn immutable(errs: &mut Vec<FieldError>, field: &str, new: Option<&Value>, old: Option<&Value>) {
    if new != old {
        errs.push(FieldError::invalid(field, new.unwrap_or(&Value::Null), "field is immutable"));
    }
}

// ---- defaults --------------------------------------------------------------------------------

fn default_selectors(m: &mut Map<String, Value>) {
    set_default(m, "matchPolicy", json!("Equivalent"));
    set_default(m, "namespaceSelector", json!({}));
    set_default(m, "objectSelector", json!({}));
}

fn default_rules(rules: Option<&mut Value>) {
    for rule in rules.and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(r) = rule.as_object_mut() {
            set_default(r, "scope", json!("*"));
        }
    }
}

/// Webhook configurations: each webhook's policies, selectors, timeout and service port.
pub fn default_webhooks(obj: &mut Value, mutating: bool) {
    let Some(hooks) = obj.get_mut("webhooks").and_then(Value::as_array_mut) else { return };
    for hook in hooks.iter_mut().filter_map(Value::as_object_mut) {
        set_default(hook, "failurePolicy", json!("Fail"));
        default_selectors(hook);
        set_default(hook, "timeoutSeconds", json!(10));
        if mutating {
            set_default(hook, "reinvocationPolicy", json!("Never"));
        }
        default_rules(hook.get_mut("rules"));
        if let Some(svc) = hook.get_mut("clientConfig").and_then(|c| c.get_mut("service")).and_then(Value::as_object_mut) {
            set_default(svc, "port", json!(443));
        }
    }
}

pub fn default_admission_policy(obj: &mut Value) {
    let Some(spec) = obj_at(obj, &["spec"]) else { return };
    set_default(spec, "failurePolicy", json!("Fail"));
    if let Some(mc) = spec.get_mut("matchConstraints").and_then(Value::as_object_mut) {
        default_selectors(mc);
        default_rules(mc.get_mut("resourceRules"));
    }
}

pub fn default_admission_policy_binding(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if let Some(mr) = spec.get_mut("matchResources").and_then(Value::as_object_mut) {
        default_selectors(mr);
        default_rules(mr.get_mut("resourceRules"));
    }
}

pub fn default_flow_schema(obj: &mut Value) {
    if let Some(spec) = obj_at(obj, &["spec"]) {
        set_default(spec, "matchingPrecedence", json!(1000));
    }
}

pub fn default_priority_level(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if let Some(limited) = spec.get_mut("limited").and_then(Value::as_object_mut) {
        set_default(limited, "nominalConcurrencyShares", json!(30));
        set_default(limited, "lendablePercent", json!(0));
        if let Some(q) = limited.get_mut("limitResponse").and_then(|r| r.get_mut("queuing")).and_then(Value::as_object_mut) {
            set_default(q, "queues", json!(64));
            set_default(q, "handSize", json!(8));
            set_default(q, "queueLengthLimit", json!(50));
        }
    }
    if let Some(exempt) = spec.get_mut("exempt").and_then(Value::as_object_mut) {
        set_default(exempt, "nominalConcurrencyShares", json!(0));
        set_default(exempt, "lendablePercent", json!(0));
    }
}

pub fn default_priority_class(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        set_default(m, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
}

pub fn default_csi_driver(obj: &mut Value) {
    let Some(spec) = obj_at(obj, &["spec"]) else { return };
    set_default(spec, "attachRequired", json!(true));
    set_default(spec, "podInfoOnMount", json!(false));
    set_default(spec, "storageCapacity", json!(false));
    set_default(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
    set_default(spec, "requiresRepublish", json!(false));
    set_default(spec, "seLinuxMount", json!(false));
    if spec.get("volumeLifecycleModes").and_then(Value::as_array).is_none_or(|m| m.is_empty()) {
        spec.insert("volumeLifecycleModes".into(), json!(["Persistent"]));
    }
}

// ---- validation ------------------------------------------------------------------------------

const OPERATIONS: &[&str] = &["*", "CREATE", "UPDATE", "DELETE", "CONNECT"];

fn validate_rules(errs: &mut Vec<FieldError>, rules: &[Value], at: &str) {
    for (i, rule) in rules.iter().enumerate() {
        let p = format!("{at}[{i}]");
        for f in ["operations", "apiGroups", "apiVersions", "resources"] {
            if rule.get(f).and_then(Value::as_array).is_none_or(|a| a.is_empty()) {
                errs.push(FieldError::required(format!("{p}.{f}"), ""));
            }
        }
        for (j, op) in items(rule, "/operations").iter().enumerate() {
            check_enum(errs, format!("{p}.operations[{j}]"), Some(op), OPERATIONS, false);
        }
        check_enum(errs, format!("{p}.scope"), rule.get("scope"), &["*", "Cluster", "Namespaced"], false);
    }
}

/// Mutating and validating webhook configurations (upstream `ValidateValidatingWebhookConfiguration`).
pub fn validate_webhooks(obj: &Value, mutating: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = Vec::new();
    for (i, hook) in items(obj, "/webhooks").iter().enumerate() {
        let p = format!("webhooks[{i}]");
        let name = str_at(hook, "/name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else if seen.contains(&name) {
            errs.push(FieldError::duplicate(format!("{p}.name"), &json!(name)));
        } else {
            seen.push(name);
            if name.split('.').count() < 3 {
                errs.push(FieldError::invalid(format!("{p}.name"), &json!(name), "should be a domain with at least three segments separated by dots"));
            } else {
                for e in is_dns1123_subdomain(name) {
                    errs.push(FieldError::invalid(format!("{p}.name"), &json!(name), &e));
                }
            }
        }
        let versions = items(hook, "/admissionReviewVersions");
        if versions.is_empty() {
            errs.push(FieldError::required(format!("{p}.admissionReviewVersions"), "must specify one of v1, v1beta1"));
        } else if !versions.iter().any(|v| matches!(v.as_str(), Some("v1" | "v1beta1"))) {
            errs.push(FieldError::invalid(format!("{p}.admissionReviewVersions"), &json!(versions), "must include at least one of v1, v1beta1"));
        }
        match hook.get("sideEffects") {
            None | Some(Value::Null) => errs.push(FieldError::required(format!("{p}.sideEffects"), "must specify one of None, NoneOnDryRun")),
            v => check_enum(&mut errs, format!("{p}.sideEffects"), v, &["None", "NoneOnDryRun"], true),
        }
        let cc = hook.get("clientConfig").unwrap_or(&Value::Null);
        match (cc.get("url").filter(|u| !u.is_null()), cc.get("service").filter(|s| !s.is_null())) {
            (Some(_), Some(_)) | (None, None) => errs.push(FieldError::required(format!("{p}.clientConfig"), "exactly one of url or service is required")),
            (Some(url), None) => {
                let u = url.as_str().unwrap_or("");
                if !u.starts_with("https://") {
                    errs.push(FieldError::invalid(format!("{p}.clientConfig.url"), url, "'https' is the only allowed URL scheme"));
                }
            }
            (None, Some(svc)) => {
                for f in ["namespace", "name"] {
                    if str_at(svc, &format!("/{f}")).is_empty() {
                        errs.push(FieldError::required(format!("{p}.clientConfig.service.{f}"), &format!("service {f} is required")));
                    }
                }
            }
        }
        check_enum(&mut errs, format!("{p}.failurePolicy"), hook.get("failurePolicy"), &["Ignore", "Fail"], false);
        check_enum(&mut errs, format!("{p}.matchPolicy"), hook.get("matchPolicy"), &["Exact", "Equivalent"], false);
        if mutating {
            check_enum(&mut errs, format!("{p}.reinvocationPolicy"), hook.get("reinvocationPolicy"), &["Never", "IfNeeded"], false);
        }
        if let Some(t) = hook.get("timeoutSeconds").and_then(Value::as_i64) {
            if !(1..=30).contains(&t) {
                errs.push(FieldError::invalid(format!("{p}.timeoutSeconds"), &json!(t), "the timeout value must be between 1 and 30 seconds"));
            }
        }
        validate_rules(&mut errs, items(hook, "/rules"), &format!("{p}.rules"));
    }
    errs
}

pub fn validate_admission_policy(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    match spec.get("matchConstraints") {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.matchConstraints", "")),
        Some(mc) => {
            if items(mc, "/resourceRules").is_empty() {
                errs.push(FieldError::required("spec.matchConstraints.resourceRules", ""));
            }
            validate_rules(&mut errs, items(mc, "/resourceRules"), "spec.matchConstraints.resourceRules");
            check_enum(&mut errs, "spec.matchConstraints.matchPolicy".into(), mc.get("matchPolicy"), &["Exact", "Equivalent"], false);
        }
    }
    let validations = items(spec, "/validations");
    if validations.is_empty() && items(spec, "/auditAnnotations").is_empty() {
        errs.push(FieldError::required("spec.validations", "validations or auditAnnotations must contain at least one item"));
    }
    for (i, v) in validations.iter().enumerate() {
        if str_at(v, "/expression").trim().is_empty() {
            errs.push(FieldError::required(format!("spec.validations[{i}].expression"), "expression is not specified"));
        }
    }
    check_enum(&mut errs, "spec.failurePolicy".into(), spec.get("failurePolicy"), &["Ignore", "Fail"], false);
    if let Some(pk) = spec.get("paramKind").filter(|p| !p.is_null()) {
        for f in ["apiVersion", "kind"] {
            if str_at(pk, &format!("/{f}")).is_empty() {
                errs.push(FieldError::required(format!("spec.paramKind.{f}"), ""));
            }
        }
    }
    errs
}

pub fn validate_admission_policy_binding(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if str_at(spec, "/policyName").is_empty() {
        errs.push(FieldError::required("spec.policyName", ""));
    }
    let actions = items(spec, "/validationActions");
    if actions.is_empty() {
        errs.push(FieldError::required("spec.validationActions", "at least one validation action is required"));
    }
    for (i, a) in actions.iter().enumerate() {
        check_enum(&mut errs, format!("spec.validationActions[{i}]"), Some(a), &["Deny", "Warn", "Audit"], true);
    }
    if let Some(pr) = spec.get("paramRef").filter(|p| !p.is_null()) {
        let named = !str_at(pr, "/name").is_empty();
        let selected = pr.get("selector").is_some_and(|s| !s.is_null());
        if named && selected {
            errs.push(FieldError::forbidden("spec.paramRef.name", "name and selector are mutually exclusive"));
        } else if !named && !selected {
            errs.push(FieldError::required("spec.paramRef", "one of name or selector must be specified"));
        }
        check_enum(&mut errs, "spec.paramRef.parameterNotFoundAction".into(), pr.get("parameterNotFoundAction"), &["Allow", "Deny"], true);
    }
    errs
}

const SUBJECT_KINDS: &[&str] = &["ServiceAccount", "Group", "User"];

pub fn validate_flow_schema(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if str_at(spec, "/priorityLevelConfiguration/name").is_empty() {
        errs.push(FieldError::required("spec.priorityLevelConfiguration.name", "must reference a priority level"));
    }
    if let Some(p) = spec.get("matchingPrecedence").and_then(Value::as_i64) {
        if !(1..=10000).contains(&p) {
            errs.push(FieldError::invalid("spec.matchingPrecedence", &json!(p), "must be between 1 and 10000, inclusive"));
        }
    }
    if let Some(dm) = spec.get("distinguisherMethod").filter(|d| !d.is_null()) {
        check_enum(&mut errs, "spec.distinguisherMethod.type".into(), dm.get("type"), &["ByUser", "ByNamespace"], true);
    }
    for (i, rule) in items(spec, "/rules").iter().enumerate() {
        let p = format!("spec.rules[{i}]");
        let subjects = items(rule, "/subjects");
        if subjects.is_empty() {
            errs.push(FieldError::required(format!("{p}.subjects"), "subjects must contain at least one value"));
        }
        for (j, s) in subjects.iter().enumerate() {
            check_enum(&mut errs, format!("{p}.subjects[{j}].kind"), s.get("kind"), SUBJECT_KINDS, true);
        }
        if items(rule, "/resourceRules").is_empty() && items(rule, "/nonResourceRules").is_empty() {
            errs.push(FieldError::required(format!("{p}"), "at least one of resourceRules and nonResourceRules has to be non-empty"));
        }
        for (j, r) in items(rule, "/resourceRules").iter().enumerate() {
            for f in ["verbs", "apiGroups", "resources"] {
                if items(r, &format!("/{f}")).is_empty() {
                    errs.push(FieldError::required(format!("{p}.resourceRules[{j}].{f}"), &format!("{f} must contain at least one value")));
                }
            }
        }
        for (j, r) in items(rule, "/nonResourceRules").iter().enumerate() {
            for f in ["verbs", "nonResourceURLs"] {
                if items(r, &format!("/{f}")).is_empty() {
                    errs.push(FieldError::required(format!("{p}.nonResourceRules[{j}].{f}"), &format!("{f} must contain at least one value")));
                }
            }
        }
    }
    errs
}

pub fn validate_priority_level(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let limited = spec.get("limited").filter(|l| !l.is_null());
    match spec.get("type").and_then(Value::as_str) {
        Some("Limited") => match limited {
            None => errs.push(FieldError::required("spec.limited", "must not be empty when type is Limited")),
            Some(l) => {
                if let Some(n) = l.get("nominalConcurrencyShares").and_then(Value::as_i64).filter(|n| *n < 0) {
                    errs.push(FieldError::invalid("spec.limited.nominalConcurrencyShares", &json!(n), "must be a non-negative integer"));
                }
                let lr = l.get("limitResponse").unwrap_or(&Value::Null);
                check_enum(&mut errs, "spec.limited.limitResponse.type".into(), lr.get("type"), &["Queue", "Reject"], true);
                let queuing = lr.get("queuing").filter(|q| !q.is_null());
                match (str_at(lr, "/type"), queuing) {
                    ("Queue", None) => errs.push(FieldError::required("spec.limited.limitResponse.queuing", "must not be empty if the type is Queue")),
                    ("Reject", Some(_)) => errs.push(FieldError::forbidden("spec.limited.limitResponse.queuing", "must be nil if limited.limitResponse.type is not Limited")),
                    _ => {}
                }
                if let Some(q) = queuing {
                    for f in ["queues", "handSize", "queueLengthLimit"] {
                        if let Some(v) = q.get(f).and_then(Value::as_i64).filter(|v| *v <= 0) {
                            errs.push(FieldError::invalid(format!("spec.limited.limitResponse.queuing.{f}"), &json!(v), "must be positive"));
                        }
                    }
                }
            }
        },
        Some("Exempt") => {
            if limited.is_some() {
                errs.push(FieldError::forbidden("spec.limited", "must be nil if the type is not Limited"));
            }
        }
        None | Some("") => errs.push(FieldError::required("spec.type", "")),
        Some(other) => errs.push(FieldError::not_supported("spec.type", &json!(other), &["Exempt", "Limited"])),
    }
    errs
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else { return false };
    let (Ok(ip), Ok(bits)) = (ip.parse::<IpAddr>(), bits.parse::<u8>()) else { return false };
    bits <= if ip.is_ipv4() { 32 } else { 128 }
}

pub fn validate_service_cidr(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let cidrs = items(obj, "/spec/cidrs");
    if cidrs.is_empty() {
        errs.push(FieldError::required("spec.cidrs", ""));
    } else if cidrs.len() > 2 {
        errs.push(FieldError::invalid("spec.cidrs", &json!(cidrs), "may only hold up to 2 values"));
    }
    for (i, c) in cidrs.iter().enumerate() {
        if !c.as_str().is_some_and(is_cidr) {
            errs.push(FieldError::invalid(format!("spec.cidrs[{i}]"), c, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"));
        }
    }
    errs
}

/// The CIDRs may only gain a second family (a single-stack cluster going dual-stack).
pub fn validate_service_cidr_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let (n, o) = (items(new, "/spec/cidrs"), items(old, "/spec/cidrs"));
    if n.starts_with(o) && (n.len() == o.len() || o.len() == 1) {
        return Vec::new();
    }
    vec![FieldError::invalid("spec.cidrs", &json!(n), "field is immutable")]
}

pub fn validate_ip_address(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(obj, "/metadata/name");
    if !name.is_empty() {
        match name.parse::<IpAddr>() {
            Err(_) => errs.push(FieldError::invalid("metadata.name", &json!(name), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")),
            Ok(ip) if ip.to_string() != name => {
                errs.push(FieldError::invalid("metadata.name", &json!(name), &format!("must be in canonical form ({ip:?})").replace('"', "\\\"")))
            }
            Ok(ip) if ip.is_unspecified() || ip.is_loopback() => errs.push(FieldError::invalid("metadata.name", &json!(name), "may not be in the unspecified or loopback range")),
            Ok(_) => {}
        }
    }
    match obj.pointer("/spec/parentRef").filter(|p| !p.is_null()) {
        None => errs.push(FieldError::required("spec.parentRef", "")),
        Some(p) => {
            for f in ["resource", "name"] {
                if str_at(p, &format!("/{f}")).is_empty() {
                    errs.push(FieldError::required(format!("spec.parentRef.{f}"), ""));
                }
            }
        }
    }
    errs
}

pub fn validate_runtime_class(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match obj.get("handler").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required("handler", "")),
        Some(h) => errs.extend(is_dns1123_label(h).into_iter().map(|e| FieldError::invalid("handler", &json!(h), &e))),
    }
    if let Some(o) = obj.get("overhead").filter(|o| !o.is_null()) {
        if o.get("podFixed").is_some_and(|p| !p.is_object() && !p.is_null()) {
            errs.push(FieldError::invalid("overhead.podFixed", o, "must be a map of resource quantities"));
        }
    }
    errs
}

/// Above this, priorities belong to the system classes.
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

/// The two classes upstream creates and reserves.
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i64, &str)] = &[
    ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
    ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
];

pub fn validate_priority_class(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(obj, "/metadata/name");
    let value = obj.get("value");
    match value.and_then(Value::as_i64) {
        None => errs.push(FieldError::required("value", "")),
        Some(v) if name.starts_with("system-") => {
            let known = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _, _)| *n == name);
            let reason = match known {
                None => Some(format!("{name} is not a known system priority class")),
                Some((_, want, _)) if *want != v => Some(format!("value of {name} PriorityClass must be {want}")),
                Some(_) if obj.get("globalDefault").and_then(Value::as_bool) == Some(true) => Some(format!("globalDefault of {name} PriorityClass must be false")),
                Some(_) => None,
            };
            if let Some(r) = reason {
                errs.push(FieldError::forbidden("metadata.name", &format!("priority class names with 'system-' prefix are reserved for system use only. error: {r}")));
            }
        }
        Some(v) if v > HIGHEST_USER_PRIORITY => {
            errs.push(FieldError::forbidden("value", &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}")))
        }
        Some(v) if v < i32::MIN as i64 => errs.push(FieldError::invalid("value", &json!(v), "must be a 32-bit integer")),
        Some(_) => {}
    }
    check_enum(&mut errs, "preemptionPolicy".into(), obj.get("preemptionPolicy"), &["Never", "PreemptLowerPriority"], false);
    errs
}

pub fn validate_priority_class_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if new.get("value") != old.get("value") {
        errs.push(FieldError::forbidden("value", "may not be changed in an update."));
    }
    immutable(&mut errs, "preemptionPolicy", new.get("preemptionPolicy"), old.get("preemptionPolicy"));
    errs
}

pub fn validate_csi_driver(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(obj, "/metadata/name");
    if name.len() > 63 {
        errs.push(FieldError::too_long("metadata.name", 63));
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    check_enum(&mut errs, "spec.fsGroupPolicy".into(), spec.get("fsGroupPolicy"), &["ReadWriteOnceWithFSType", "File", "None"], false);
    for (i, m) in items(spec, "/volumeLifecycleModes").iter().enumerate() {
        check_enum(&mut errs, format!("spec.volumeLifecycleModes[{i}]"), Some(m), &["Persistent", "Ephemeral"], true);
    }
    let mut audiences = Vec::new();
    for (i, t) in items(spec, "/tokenRequests").iter().enumerate() {
        let a = str_at(t, "/audience");
        if audiences.contains(&a) {
            errs.push(FieldError::duplicate(format!("spec.tokenRequests[{i}].audience"), &json!(a)));
        }
        audiences.push(a);
        if let Some(s) = t.get("expirationSeconds").and_then(Value::as_i64) {
            if s < 600 {
                errs.push(FieldError::invalid(format!("spec.tokenRequests[{i}].expirationSeconds"), &json!(s), "may not specify a duration less than 10 minutes"));
            }
        }
    }
    errs
}

pub fn validate_csi_node(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if obj.pointer("/spec/drivers").is_none_or(Value::is_null) {
        errs.push(FieldError::required("spec.drivers", ""));
    }
    let mut names = Vec::new();
    for (i, d) in items(obj, "/spec/drivers").iter().enumerate() {
        let p = format!("spec.drivers[{i}]");
        let name = str_at(d, "/name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else if names.contains(&name) {
            errs.push(FieldError::duplicate(format!("{p}.name"), &json!(name)));
        }
        names.push(name);
        match str_at(d, "/nodeID") {
            "" => errs.push(FieldError::required(format!("{p}.nodeID"), "")),
            id if id.len() > 192 => errs.push(FieldError::too_long(format!("{p}.nodeID"), 192)),
            _ => {}
        }
    }
    errs
}

pub fn validate_csi_storage_capacity(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match obj.get("storageClassName").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required("storageClassName", "")),
        Some(sc) => errs.extend(is_dns1123_subdomain(sc).into_iter().map(|e| FieldError::invalid("storageClassName", &json!(sc), &e))),
    }
    for f in ["capacity", "maximumVolumeSize"] {
        if let Some(q) = obj.get(f).filter(|q| !q.is_null()) {
            match q.as_str().and_then(timonier_api::printers::quantity_value) {
                None => errs.push(FieldError::invalid(f, q, "must be a quantity")),
                Some(v) if v < 0.0 => errs.push(FieldError::invalid(f, q, "must be greater than or equal to 0")),
                Some(_) => {}
            }
        }
    }
    errs
}

pub fn validate_csi_storage_capacity_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    immutable(&mut errs, "storageClassName", new.get("storageClassName"), old.get("storageClassName"));
    immutable(&mut errs, "nodeTopology", new.get("nodeTopology"), old.get("nodeTopology"));
    errs
}

pub fn validate_volume_attachment(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if str_at(spec, "/attacher").is_empty() {
        errs.push(FieldError::required("spec.attacher", ""));
    }
    if str_at(spec, "/nodeName").is_empty() {
        errs.push(FieldError::required("spec.nodeName", ""));
    }
    let source = spec.get("source").unwrap_or(&Value::Null);
    let pv = source.get("persistentVolumeName").is_some_and(|v| !v.is_null());
    let inline = source.get("inlineVolumeSpec").is_some_and(|v| !v.is_null());
    if pv == inline {
        errs.push(FieldError::required("spec.source", "must specify exactly one of inlineVolumeSpec and persistentVolumeName"));
    }
    errs
}

pub fn validate_volume_attachment_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    immutable(&mut errs, "spec", new.get("spec"), old.get("spec"));
    errs
}

/// Updates of the other kinds with immutable parts.
pub fn validate_immutable_parts(kind: &str, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match kind {
        "RuntimeClass" => immutable(&mut errs, "handler", new.get("handler"), old.get("handler")),
        "IPAddress" => immutable(&mut errs, "spec.parentRef", new.pointer("/spec/parentRef"), old.pointer("/spec/parentRef")),
        _ => {}
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(FieldError::full).collect()
    }

    #[test]
    fn webhook_defaults_and_validation() {
        let mut obj = json!({"webhooks": [{"name": "a.b.c", "clientConfig": {"service": {"namespace": "ns", "name": "svc"}}, "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}], "sideEffects": "None", "admissionReviewVersions": ["v1"]}]});
        default_webhooks(&mut obj, true);
        let hook = &obj["webhooks"][0];
        assert_eq!((hook["failurePolicy"].clone(), hook["matchPolicy"].clone(), hook["timeoutSeconds"].clone()), (json!("Fail"), json!("Equivalent"), json!(10)));
        assert_eq!((hook["reinvocationPolicy"].clone(), hook["rules"][0]["scope"].clone()), (json!("Never"), json!("*")));
        assert_eq!(hook["clientConfig"]["service"]["port"], 443);
        assert!(validate_webhooks(&obj, true).is_empty());
        let bad = json!({"webhooks": [{"name": "hook", "clientConfig": {}, "timeoutSeconds": 31, "sideEffects": "Some"}, {"name": "hook"}]});
        let got = messages(validate_webhooks(&bad, false));
        for want in [
            "webhooks[0].name: Invalid value: \"hook\": should be a domain with at least three segments separated by dots",
            "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
            "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\"",
            "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
            "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
            "webhooks[1].name: Duplicate value: \"hook\"",
            "webhooks[1].sideEffects: Required value: must specify one of None, NoneOnDryRun",
        ] {
            assert!(got.iter().any(|g| g == want), "{want} not in {got:#?}");
        }
    }

    #[test]
    fn priority_classes_reserve_the_system_prefix() {
        let pc = |name: &str, value: i64| json!({"metadata": {"name": name}, "value": value});
        assert!(validate_priority_class(&pc("system-node-critical", 2_000_001_000)).is_empty());
        assert!(validate_priority_class(&pc("high", 1_000_000_000)).is_empty());
        assert_eq!(
            messages(validate_priority_class(&pc("system-node-critical", 5))),
            ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-node-critical PriorityClass must be 2000001000"]
        );
        assert_eq!(messages(validate_priority_class(&pc("huge", 1_000_000_001))), ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]);
        assert_eq!(messages(validate_priority_class(&json!({"metadata": {"name": "x"}}))), ["value: Required value"]);
        assert_eq!(messages(validate_priority_class_update(&pc("a", 2), &pc("a", 1))), ["value: Forbidden: may not be changed in an update."]);
        let mut obj = pc("a", 1);
        default_priority_class(&mut obj);
        assert_eq!(obj["preemptionPolicy"], "PreemptLowerPriority");
    }

    #[test]
    fn networking_and_storage() {
        assert!(validate_service_cidr(&json!({"spec": {"cidrs": ["10.96.0.0/12", "fd00::/108"]}})).is_empty());
        assert_eq!(messages(validate_service_cidr(&json!({"spec": {}}))), ["spec.cidrs: Required value"]);
        let one = json!({"spec": {"cidrs": ["10.96.0.0/12"]}});
        assert!(validate_service_cidr_update(&json!({"spec": {"cidrs": ["10.96.0.0/12", "fd00::/108"]}}), &one).is_empty());
        assert_eq!(messages(validate_service_cidr_update(&json!({"spec": {"cidrs": ["10.0.0.0/8"]}}), &one)), ["spec.cidrs: Invalid value: [\"10.0.0.0/8\"]: field is immutable"]);
        let ip = |name: &str| json!({"metadata": {"name": name}, "spec": {"parentRef": {"resource": "services", "name": "s"}}});
        assert!(validate_ip_address(&ip("10.96.0.10")).is_empty());
        assert!(validate_ip_address(&ip("2001:db8::1")).is_empty());
        assert_eq!(messages(validate_ip_address(&ip("2001:db8:0::1"))).len(), 1);
        assert_eq!(messages(validate_ip_address(&json!({"metadata": {"name": "10.0.0.1"}, "spec": {}}))), ["spec.parentRef: Required value"]);
        let mut driver = json!({"spec": {}});
        default_csi_driver(&mut driver);
        assert_eq!(driver["spec"]["volumeLifecycleModes"], json!(["Persistent"]));
        assert_eq!(driver["spec"]["attachRequired"], true);
        assert!(validate_csi_driver(&json!({"metadata": {"name": "d"}, "spec": driver["spec"].clone()})).is_empty());
        assert_eq!(
            messages(validate_csi_node(&json!({"spec": {"drivers": [{"name": "d"}, {"name": "d", "nodeID": "n"}]}}))),
            ["spec.drivers[0].nodeID: Required value", "spec.drivers[1].name: Duplicate value: \"d\""]
        );
        assert_eq!(messages(validate_csi_storage_capacity(&json!({"capacity": "-1Gi"}))), ["storageClassName: Required value", "capacity: Invalid value: \"-1Gi\": must be greater than or equal to 0"]);
        let va = json!({"spec": {"attacher": "a", "nodeName": "n", "source": {"persistentVolumeName": "pv"}}});
        assert!(validate_volume_attachment(&va).is_empty());
        assert_eq!(messages(validate_volume_attachment_update(&json!({"spec": {"attacher": "b"}}), &va)).len(), 1);
    }

    #[test]
    fn flow_control() {
        let mut pl = json!({"spec": {"type": "Limited", "limited": {"limitResponse": {"type": "Queue", "queuing": {}}}}});
        default_priority_level(&mut pl);
        assert_eq!(pl["spec"]["limited"]["nominalConcurrencyShares"], 30);
        assert_eq!(pl["spec"]["limited"]["limitResponse"]["queuing"], json!({"queues": 64, "handSize": 8, "queueLengthLimit": 50}));
        assert!(validate_priority_level(&pl).is_empty());
        assert_eq!(messages(validate_priority_level(&json!({"spec": {"type": "Limited"}}))), ["spec.limited: Required value: must not be empty when type is Limited"]);
        assert_eq!(messages(validate_priority_level(&json!({"spec": {"type": "Exempt", "limited": {}}}))), ["spec.limited: Forbidden: must be nil if the type is not Limited"]);
        let mut fs = json!({"spec": {"priorityLevelConfiguration": {"name": "p"}}});
        default_flow_schema(&mut fs);
        assert_eq!(fs["spec"]["matchingPrecedence"], 1000);
        assert!(validate_flow_schema(&fs).is_empty());
        fs["spec"]["matchingPrecedence"] = json!(0);
        assert_eq!(messages(validate_flow_schema(&fs)), ["spec.matchingPrecedence: Invalid value: 0: must be between 1 and 10000, inclusive"]);
    }
}

/// Upstream's SetDefaults_StorageClass.
pub fn default_storage_class(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    set_default(m, "reclaimPolicy", json!("Delete"));
    set_default(m, "volumeBindingMode", json!("Immediate"));
}

