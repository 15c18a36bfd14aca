//! Ephemeral containers (`pods/ephemeralcontainers`): what may be added to a running pod, as
//! upstream's `ValidatePodEphemeralContainersUpdate` says.

use serde_json::{json, Value};

use super::core::validate_containers;
use crate::error::FieldError;

/// Fields an ephemeral container may not set: it is a debugging aid with no guarantees
/// (no ports, probes, lifecycle hooks or resources).
const FORBIDDEN: &[(&str, &str)] = &[
    ("ports", "Ports"),
    ("livenessProbe", "LivenessProbe"),
    ("readinessProbe", "ReadinessProbe"),
    ("startupProbe", "StartupProbe"),
    ("lifecycle", "Lifecycle"),
    ("resizePolicy", "ResizePolicy"),
    ("restartPolicy", "RestartPolicy"),
];

fn list<'a>(spec: &'a Value, name: &str) -> &'a [Value] {
    spec.get(name).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn is_set(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// Errors of an update of a pod's ephemeral containers: the existing ones stay as they are,
/// new ones are valid containers whose names no other container of the pod has.
pub fn validate_ephemeral_containers_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = new.get("spec").unwrap_or(&Value::Null);
    let path = "spec.ephemeralContainers";
    let eph = list(spec, "ephemeralContainers");
    // Names are unique across all of the pod's containers.
    let mut names: Vec<String> = ["containers", "initContainers"]
        .iter()
        .flat_map(|l| list(spec, l))
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    validate_containers(eph, path, &mut errs, &mut names);
    let targets: Vec<&str> = ["containers", "initContainers"].iter().flat_map(|l| list(spec, l)).filter_map(|c| c.get("name").and_then(Value::as_str)).collect();
    for (i, c) in eph.iter().enumerate() {
        let at = format!("{path}[{i}]");
        for (field, label) in FORBIDDEN {
            if is_set(c.get(*field)) {
                errs.push(FieldError::forbidden(format!("{at}.{field}"), &format!("cannot be set for an Ephemeral Container ({label})")));
            }
        }
        if is_set(c.get("resources")) {
            errs.push(FieldError::forbidden(format!("{at}.resources"), "cannot be set for an Ephemeral Container"));
        }
        if let Some(t) = c.get("targetContainerName").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            if !targets.contains(&t) {
                errs.push(FieldError {
                    reason: "FieldValueNotFound",
                    field: format!("{at}.targetContainerName"),
                    message: format!("Not found: {}", json!(t)),
                });
            }
        }
    }
    // Existing ephemeral containers may be neither removed nor changed.
    let old_spec = old.get("spec").unwrap_or(&Value::Null);
    for o in list(old_spec, "ephemeralContainers") {
        let name = o.get("name").and_then(Value::as_str).unwrap_or("");
        match eph.iter().position(|c| c.get("name").and_then(Value::as_str) == Some(name)) {
            None => errs.push(FieldError::forbidden(path, &format!("existing ephemeral containers {} may not be removed", json!(name)))),
            Some(i) if eph[i] != *o => {
                errs.push(FieldError::forbidden(format!("{path}[{i}]"), &format!("existing ephemeral containers {} may not be changed", json!(name))))
            }
            Some(_) => {}
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(eph: Value) -> Value {
        json!({"spec": {"containers": [{"name": "app", "image": "nginx"}], "ephemeralContainers": eph}})
    }

    #[test]
    fn adding_is_allowed_and_nothing_else() {
        let old = pod(json!([]));
        let dbg = json!({"name": "dbg", "image": "busybox", "targetContainerName": "app"});
        assert!(validate_ephemeral_containers_update(&pod(json!([dbg.clone()])), &old).is_empty());
        let with = pod(json!([dbg.clone()]));
        let removed = validate_ephemeral_containers_update(&pod(json!([])), &with);
        assert_eq!(removed[0].full(), "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be removed");
        let changed = validate_ephemeral_containers_update(&pod(json!([{"name": "dbg", "image": "alpine", "targetContainerName": "app"}])), &with);
        assert!(changed[0].full().contains("may not be changed"), "{}", changed[0].full());
        let dup = validate_ephemeral_containers_update(&pod(json!([{"name": "app", "image": "busybox"}])), &old);
        assert_eq!(dup[0].full(), "spec.ephemeralContainers[0].name: Duplicate value: \"app\"");
        let ports = validate_ephemeral_containers_update(&pod(json!([{"name": "p", "image": "busybox", "ports": [{"containerPort": 80}]}])), &old);
        assert!(ports.iter().any(|e| e.field == "spec.ephemeralContainers[0].ports"), "{ports:?}");
        let target = validate_ephemeral_containers_update(&pod(json!([{"name": "t", "image": "busybox", "targetContainerName": "nope"}])), &old);
        assert_eq!(target[0].field, "spec.ephemeralContainers[0].targetContainerName");
    }
}
