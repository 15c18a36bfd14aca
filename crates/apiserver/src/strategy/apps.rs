//! Workload defaults and validation: deployments, replica sets, stateful sets, daemon sets,
//! jobs and cron jobs — each carrying a pod template.

use serde_json::{json, Map, Value};
use timonier_api::selector::LabelSelector;

use super::core::{default_pod_spec, validate_pod_spec};
use super::{obj_at, set_default};
use crate::error::FieldError;

fn default_template(spec: &mut Map<String, Value>) {
    if let Some(t) = spec.get_mut("template").and_then(Value::as_object_mut) {
        let ps = t.entry("spec").or_insert_with(|| json!({}));
        if let Some(ps) = ps.as_object_mut() {
            default_pod_spec(ps);
        }
    }
}

/// Defaults a workload's update strategy to RollingUpdate, and its `rollingUpdate` fields when
/// that is the type.
fn default_rolling_update(spec: &mut Map<String, Value>, field: &str, rolling: &[(&str, Value)]) {
    let Some(st) = spec.entry(field).or_insert_with(|| json!({})).as_object_mut() else { return };
    set_default(st, "type", json!("RollingUpdate"));
    if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        if let Some(ru) = st.entry("rollingUpdate").or_insert_with(|| json!({})).as_object_mut() {
            for (k, v) in rolling {
                set_default(ru, k, v.clone());
            }
        }
    }
}

pub fn default_deployment(obj: &mut Value) {
    let Some(spec) = obj_at(obj, &["spec"]) else { return };
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    default_rolling_update(spec, "strategy", &[("maxUnavailable", json!("25%")), ("maxSurge", json!("25%"))]);
    default_template(spec);
}

/// ReplicaSets and ReplicationControllers.
pub fn default_replicated(obj: &mut Value) {
    let Some(spec) = obj_at(obj, &["spec"]) else { return };
    set_default(spec, "replicas", json!(1));
    default_template(spec);
}

pub fn default_statefulset(obj: &mut Value) {
    let Some(spec) = obj_at(obj, &["spec"]) else { return };
    set_default(spec, "replicas", json!(1));
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "persistentVolumeClaimRetentionPolicy", json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
    default_rolling_update(spec, "updateStrategy", &[("partition", json!(0))]);
    default_template(spec);
}

pub fn default_daemonset(obj: &mut Value) {
    let Some(spec) = obj_at(obj, &["spec"]) else { return };
    set_default(spec, "revisionHistoryLimit", json!(10));
    default_rolling_update(spec, "updateStrategy", &[("maxUnavailable", json!(1)), ("maxSurge", json!(0))]);
    default_template(spec);
}

pub fn default_job(obj: &mut Value) {
    let Some(spec) = obj_at(obj, &["spec"]) else { return };
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "completions", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if let Some(t) = spec.get_mut("template").and_then(Value::as_object_mut) {
        let ps = t.entry("spec").or_insert_with(|| json!({}));
        if let Some(ps) = ps.as_object_mut() {
            // Jobs have no default restart policy: validation demands OnFailure or Never.
            let had = ps.contains_key("restartPolicy");
            default_pod_spec(ps);
            if !had {
                ps.remove("restartPolicy");
            }
        }
    }
}

pub fn default_cronjob(obj: &mut Value) {
    let Some(spec) = obj_at(obj, &["spec"]) else { return };
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(js) = spec.get_mut("jobTemplate").and_then(|t| t.get_mut("spec")).and_then(Value::as_object_mut) {
        set_default(js, "backoffLimit", json!(6));
        set_default(js, "completionMode", json!("NonIndexed"));
        set_default(js, "suspend", json!(false));
        set_default(js, "podReplacementPolicy", json!("TerminatingOrFailed"));
        if let Some(ps) = js.get_mut("template").and_then(|t| t.get_mut("spec")).and_then(Value::as_object_mut) {
            let had = ps.contains_key("restartPolicy");
            default_pod_spec(ps);
            if !had {
                ps.remove("restartPolicy");
            }
        }
    }
}

/// Selector required, non-empty and matching the template's labels; replicas ≥ 0; a valid
/// pod template.
pub fn validate_workload(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if let Some(r) = spec.get("replicas") {
        if !r.is_null() && r.as_i64().is_none_or(|r| r < 0) {
            errs.push(FieldError::invalid("spec.replicas", r, "must be greater than or equal to 0"));
        }
    }
    match spec.get("selector") {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => match LabelSelector::from_json(sel) {
            Err(e) => errs.push(FieldError::invalid("spec.selector", sel, &e.to_string())),
            Ok(s) if s.is_empty() => errs.push(FieldError::invalid("spec.selector", sel, "empty selector is invalid for deployment")),
            Ok(s) => {
                let labels = spec.pointer("/template/metadata/labels").and_then(Value::as_object);
                if !s.matches(labels) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        &Value::Object(labels.cloned().unwrap_or_default()),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    match spec.get("template") {
        Some(t) if !t.is_null() => errs.extend(validate_pod_spec(t.get("spec").unwrap_or(&Value::Null), "spec.template.spec")),
        _ => errs.push(FieldError::required("spec.template", "")),
    }
    errs
}

pub fn validate_job(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let ps = spec.pointer("/template/spec").unwrap_or(&Value::Null);
    errs.extend(validate_pod_spec(ps, "spec.template.spec"));
    match ps.get("restartPolicy").and_then(Value::as_str) {
        Some("OnFailure") | Some("Never") => {}
        other => errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            &other.map(|s| Value::String(s.into())).unwrap_or(Value::String(String::new())),
            &["OnFailure", "Never"],
        )),
    }
    for f in ["parallelism", "completions", "backoffLimit"] {
        if let Some(v) = spec.get(f).filter(|v| !v.is_null()) {
            if v.as_i64().is_none_or(|n| n < 0) {
                errs.push(FieldError::invalid(format!("spec.{f}"), v, "must be greater than or equal to 0"));
            }
        }
    }
    errs
}

/// Upstream's Job PrepareForCreate (generateSelector) unless `spec.manualSelector` is true:
/// the template gets the job-name and controller-uid labels (legacy and
/// `batch.kubernetes.io/` forms, kept where the user set them) and the selector matches
/// `batch.kubernetes.io/controller-uid`. The uid has been assigned by then.
pub fn generate_job_selector(obj: &mut Value) {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    let Some(spec) = obj_at(obj, &["spec"]) else { return };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let Some(template) = spec.get_mut("template").and_then(Value::as_object_mut) else { return };
    let meta = template.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        if let Some(labels) = labels.as_object_mut() {
            for (k, v) in [
                ("job-name", &name),
                ("batch.kubernetes.io/job-name", &name),
                ("controller-uid", &uid),
                ("batch.kubernetes.io/controller-uid", &uid),
            ] {
                labels.entry(k).or_insert_with(|| json!(v));
            }
        }
    }
    let selector = spec.entry("selector").or_insert_with(|| json!({}));
    if !selector.is_object() {
        *selector = json!({});
    }
    if let Some(sel) = selector.as_object_mut() {
        let ml = sel.entry("matchLabels").or_insert_with(|| json!({}));
        if !ml.is_object() {
            *ml = json!({});
        }
        if let Some(ml) = ml.as_object_mut() {
            ml.entry("batch.kubernetes.io/controller-uid").or_insert_with(|| json!(uid));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_selector_generated_unless_manual() {
        let mut job = json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"metadata": {"labels": {"job-name": "mine"}}, "spec": {}}}});
        generate_job_selector(&mut job);
        assert_eq!(job["spec"]["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}));
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"job-name": "mine", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1", "batch.kubernetes.io/controller-uid": "u-1"})
        );
        let mut manual = json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"manualSelector": true, "template": {}}});
        generate_job_selector(&mut manual);
        assert!(manual["spec"].get("selector").is_none());
    }

    #[test]
    fn secret_string_data_and_network_policy_and_storage_class_defaults() {
        let mut secret = json!({"data": {"a": "eA==", "k": "b2xk"}, "stringData": {"k": "v"}});
        super::super::core::merge_string_data(&mut secret);
        assert_eq!(secret, json!({"data": {"a": "eA==", "k": "dg=="}}));
        let mut np = json!({"spec": {"podSelector": {}, "egress": [{}]}});
        super::super::core::default_network_policy(&mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        let mut sc = json!({"provisioner": "x"});
        super::super::cluster::default_storage_class(&mut sc);
        assert_eq!((sc["reclaimPolicy"].clone(), sc["volumeBindingMode"].clone()), (json!("Delete"), json!("Immediate")));
    }

    #[test]
    fn csr_conditions_get_timestamps() {
        let old = json!({"status": {"conditions": [{"type": "Approved", "status": "True", "lastTransitionTime": "t0", "lastUpdateTime": "t0"}]}});
        let mut new = json!({"status": {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Failed", "status": "True"}]}});
        super::super::csr::csr_condition_timestamps(&mut new, &old, "now");
        assert_eq!(new["status"]["conditions"][0]["lastTransitionTime"], "t0");
        assert_eq!(new["status"]["conditions"][0]["lastUpdateTime"], "now");
        assert_eq!(new["status"]["conditions"][1]["lastTransitionTime"], "now");
    }
}
