//! Per-kind behaviour of the generic REST store, as upstream's strategies: defaulting, what a
//! create or update may change, generation, and validation. A kind without special rules gets
//! the generic behaviour (metadata validation only).

mod apps;
mod cluster;
mod core;
mod csr;
mod ephemeral;

pub use ephemeral::validate_ephemeral_containers_update;

use serde_json::{Map, Value};
use timonier_api::resources::ResourceDef;

use crate::error::FieldError;
use crate::validation::{validate_metadata, NameRule};

pub use self::cluster::SYSTEM_PRIORITY_CLASSES;
pub use self::csr::{requester, with_requester};
pub use self::core::pod_qos_class;

/// Mutable access to `obj[path...]` as an object, creating empty objects on the way.
pub(crate) fn obj_at<'a>(obj: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = obj;
    for p in path {
        let m = cur.as_object_mut()?;
        let next = m.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if next.is_null() {
            *next = Value::Object(Map::new());
        }
        cur = next;
    }
    cur.as_object_mut()
}

/// Sets `m[key]` to `v` if it is missing or null (or an empty string).
pub(crate) fn set_default(m: &mut Map<String, Value>, key: &str, v: Value) {
    match m.get(key) {
        None | Some(Value::Null) => {
            m.insert(key.into(), v);
        }
        Some(Value::String(s)) if s.is_empty() => {
            m.insert(key.into(), v);
        }
        _ => {}
    }
}

fn is(def: &ResourceDef, group: &str, kind: &str) -> bool {
    def.group == group && def.kind == kind
}

/// How names of this kind are validated.
pub fn name_rule(def: &ResourceDef) -> NameRule {
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Namespace") => NameRule::Label,
        ("", "Service") => NameRule::Dns1035,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        // IPv6 addresses have colons; cluster::validate_ip_address checks the address itself.
        ("flowcontrol.apiserver.k8s.io", _) | ("networking.k8s.io", "IPAddress") => NameRule::PathSegment,
        // `v1.` (the core group) is a valid APIService name; the aggregator checks the rest.
        ("apiregistration.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

/// Whether a DELETE that removes the object answers with the object rather than a `Status`:
/// the registries with `ReturnDeletedObject: true` in upstream's `pkg/registry` (typed clients
/// decode the answer by it — the Python client parses a Service delete as a `V1Service`).
pub fn returns_deleted_object(def: &ResourceDef) -> bool {
    matches!(
        (def.group.as_str(), def.kind.as_str()),
        ("", "Pod" | "PodTemplate" | "Service" | "ServiceAccount" | "PersistentVolume" | "PersistentVolumeClaim" | "ResourceQuota")
            | ("storage.k8s.io", "StorageClass" | "CSIDriver" | "CSINode" | "VolumeAttachment" | "VolumeAttributesClass")
            | ("resource.k8s.io", "DeviceClass" | "ResourceClaim" | "ResourceClaimTemplate" | "ResourceSlice")
    )
}

/// Whether the kind tracks `metadata.generation` (bumped on spec changes).
pub fn has_generation(def: &ResourceDef) -> bool {
    matches!(
        (def.group.as_str(), def.kind.as_str()),
        ("apps", _)
            | ("batch", _)
            | ("", "ReplicationController")
            | ("policy", "PodDisruptionBudget")
            | ("autoscaling", _)
            | ("networking.k8s.io", "Ingress" | "NetworkPolicy")
            | ("apiextensions.k8s.io", _)
            | ("admissionregistration.k8s.io", _)
            | ("flowcontrol.apiserver.k8s.io", _)
    )
}

/// Fills in the defaults upstream's defaulting functions set. Runs on every create and
/// update, so stored objects always carry them.
pub fn default(def: &ResourceDef, obj: &mut Value) {
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Pod") => {
            let mirror = obj.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some();
            if let Some(spec) = obj_at(obj, &["spec"]) {
                core::default_pod_spec(spec);
                core::admit_pod_spec(spec, mirror);
            }
        }
        ("", "PodTemplate") => {
            if let Some(spec) = obj_at(obj, &["template", "spec"]) {
                core::default_pod_spec(spec);
            }
        }
        ("", "Service") => core::default_service(obj),
        ("", "Namespace") => core::default_namespace(obj),
        ("", "Secret") => {
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "type", Value::String("Opaque".into()));
            }
            core::merge_string_data(obj);
        }
        ("", "ReplicationController") => apps::default_replicated(obj),
        ("apps", "Deployment") => apps::default_deployment(obj),
        ("apps", "ReplicaSet") => apps::default_replicated(obj),
        ("apps", "StatefulSet") => apps::default_statefulset(obj),
        ("apps", "DaemonSet") => apps::default_daemonset(obj),
        ("batch", "Job") => apps::default_job(obj),
        ("batch", "CronJob") => apps::default_cronjob(obj),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => cluster::default_webhooks(obj, true),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => cluster::default_webhooks(obj, false),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => cluster::default_admission_policy(obj),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => cluster::default_admission_policy_binding(obj),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => cluster::default_flow_schema(obj),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => cluster::default_priority_level(obj),
        ("scheduling.k8s.io", "PriorityClass") => cluster::default_priority_class(obj),
        ("storage.k8s.io", "CSIDriver") => cluster::default_csi_driver(obj),
        ("storage.k8s.io", "StorageClass") => cluster::default_storage_class(obj),
        ("networking.k8s.io", "NetworkPolicy") => core::default_network_policy(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crate::crd::default_crd(obj),
        ("apiregistration.k8s.io", "APIService") => crate::aggregator::default(obj),
        _ => {}
    }
}

/// What a create may not set: the status of kinds whose status is written by controllers.
pub fn prepare_for_create(def: &ResourceDef, obj: &mut Value) {
    if is(def, "apiextensions.k8s.io", "CustomResourceDefinition") {
        crate::crd::prepare_crd(obj);
    }
    if is(def, "certificates.k8s.io", "CertificateSigningRequest") {
        csr::prepare_csr(obj);
    }
    if is(def, "batch", "Job") {
        apps::generate_job_selector(obj);
    }
    if is(def, "apiregistration.k8s.io", "APIService") {
        crate::aggregator::prepare_for_create(obj);
    }
    let Some(m) = obj.as_object_mut() else { return };
    if has_generation(def) {
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("generation".into(), Value::from(1));
        }
    }
    match (def.group.as_str(), def.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {}
        ("apiregistration.k8s.io", "APIService") => {}
        ("", "Pod") => {
            let qos = pod_qos_class(m.get("spec").unwrap_or(&Value::Null));
            m.insert("status".into(), serde_json::json!({"phase": "Pending", "qosClass": qos}));
        }
        ("", "Namespace") => {
            m.insert("status".into(), serde_json::json!({"phase": "Active"}));
        }
        ("", "Service") => {
            m.insert("status".into(), serde_json::json!({"loadBalancer": {}}));
        }
        _ if def.subresource("status").is_some() => {
            m.insert("status".into(), Value::Object(Map::new()));
        }
        _ => {}
    }
}

/// What a main-resource update may not change: the status (when it has its own
/// subresource) and the metadata the server owns; and the generation bump on spec changes.
pub fn prepare_for_update(def: &ResourceDef, new: &mut Value, old: &Value) {
    let Some(m) = new.as_object_mut() else { return };
    if def.subresource("status").is_some() {
        match old.get("status") {
            Some(s) => m.insert("status".into(), s.clone()),
            None => m.remove("status"),
        };
    }
    let spec_changed = spec_of(m) != spec_of(old.as_object().unwrap_or(&Map::new()));
    if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
        let old_gen = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        if has_generation(def) {
            let gen = if spec_changed { old_gen + 1 } else { old_gen };
            meta.insert("generation".into(), Value::from(gen.max(1)));
        } else if old_gen > 0 {
            meta.insert("generation".into(), Value::from(old_gen));
        }
    }
}

/// What a status write sets beyond the status it carries.
pub fn prepare_for_status_update(def: &ResourceDef, new: &mut Value, old: &Value) {
    if is(def, "certificates.k8s.io", "CertificateSigningRequest") {
        csr::prepare_csr_status(new, old);
        csr::csr_condition_timestamps(new, old, &crate::rest::now_rfc3339());
    }
}

/// An approval write (CertificateSigningRequests' `approval` subresource): only the
/// conditions change.
pub fn prepare_for_approval(def: &ResourceDef, new: &mut Value, old: &Value) {
    if is(def, "certificates.k8s.io", "CertificateSigningRequest") {
        csr::prepare_csr_approval(new, old);
        csr::csr_condition_timestamps(new, old, &crate::rest::now_rfc3339());
    }
}

/// What a status write may not change beyond what any update may not.
pub fn validate_status_update(def: &ResourceDef, new: &Value, old: &Value) -> Vec<FieldError> {
    if is(def, "certificates.k8s.io", "CertificateSigningRequest") {
        return csr::validate_csr_status_update(new, old);
    }
    Vec::new()
}

/// Everything but metadata and status: what "a spec change" means across kinds (ConfigMaps
/// have `data`, RBAC objects `rules`, …).
fn spec_of(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter().filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Validates an object about to be created.
pub fn validate(def: &ResourceDef, obj: &Value) -> Vec<FieldError> {
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    let mut errs = validate_metadata(meta, name_rule(def), def.namespaced);
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Pod") => errs.extend(core::validate_pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec")),
        ("", "Service") => errs.extend(core::validate_service(obj)),
        ("", "ConfigMap") | ("", "Secret") => errs.extend(core::validate_data_keys(obj)),
        ("apps", "Deployment") | ("apps", "ReplicaSet") | ("apps", "StatefulSet") | ("apps", "DaemonSet") => {
            errs.extend(apps::validate_workload(obj))
        }
        ("batch", "Job") => errs.extend(apps::validate_job(obj)),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => errs.extend(crate::crd::validate_crd(obj)),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => errs.extend(cluster::validate_webhooks(obj, true)),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => errs.extend(cluster::validate_webhooks(obj, false)),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => errs.extend(cluster::validate_admission_policy(obj)),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => errs.extend(cluster::validate_admission_policy_binding(obj)),
        ("certificates.k8s.io", "CertificateSigningRequest") => errs.extend(csr::validate_csr(obj)),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => errs.extend(cluster::validate_flow_schema(obj)),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => errs.extend(cluster::validate_priority_level(obj)),
        ("networking.k8s.io", "ServiceCIDR") => errs.extend(cluster::validate_service_cidr(obj)),
        ("networking.k8s.io", "IPAddress") => errs.extend(cluster::validate_ip_address(obj)),
        ("node.k8s.io", "RuntimeClass") => errs.extend(cluster::validate_runtime_class(obj)),
        ("scheduling.k8s.io", "PriorityClass") => errs.extend(cluster::validate_priority_class(obj)),
        ("storage.k8s.io", "CSIDriver") => errs.extend(cluster::validate_csi_driver(obj)),
        ("storage.k8s.io", "CSINode") => errs.extend(cluster::validate_csi_node(obj)),
        ("storage.k8s.io", "CSIStorageCapacity") => errs.extend(cluster::validate_csi_storage_capacity(obj)),
        ("storage.k8s.io", "VolumeAttachment") => errs.extend(cluster::validate_volume_attachment(obj)),
        ("apiregistration.k8s.io", "APIService") => {
            errs.extend(crate::aggregator::validate(obj));
            errs.extend(crate::aggregator::validate_status(obj));
        }
        _ => {}
    }
    errs
}

/// Whether two values are the same Go value: a null field is an absent one (the stored object
/// has `creationTimestamp: null` in a template; a client that drops nulls sends it without).
fn same_value(a: Option<&Value>, b: Option<&Value>) -> bool {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), strip(v))).collect()),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    a.filter(|v| !v.is_null()).map(strip) == b.filter(|v| !v.is_null()).map(strip)
}

/// Validates an update: everything `validate` checks, plus immutable fields.
pub fn validate_update(def: &ResourceDef, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate(def, new);
    if (is(def, "apps", "Deployment") || is(def, "apps", "ReplicaSet") || is(def, "apps", "StatefulSet") || is(def, "apps", "DaemonSet"))
        && !same_value(new.pointer("/spec/selector"), old.pointer("/spec/selector")) {
            errs.push(FieldError::invalid(
                "spec.selector",
                new.pointer("/spec/selector").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    if is(def, "batch", "Job") && !same_value(new.pointer("/spec/template"), old.pointer("/spec/template")) {
        errs.push(FieldError::invalid("spec.template", new.pointer("/spec/template").unwrap_or(&Value::Null), "field is immutable"));
    }
    if is(def, "", "Service") {
        errs.extend(core::validate_service_update(new, old));
    }
    match (def.group.as_str(), def.kind.as_str()) {
        ("certificates.k8s.io", "CertificateSigningRequest") => errs.extend(csr::validate_csr_update(new, old)),
        ("networking.k8s.io", "ServiceCIDR") => errs.extend(cluster::validate_service_cidr_update(new, old)),
        ("scheduling.k8s.io", "PriorityClass") => errs.extend(cluster::validate_priority_class_update(new, old)),
        ("storage.k8s.io", "CSIStorageCapacity") => errs.extend(cluster::validate_csi_storage_capacity_update(new, old)),
        ("storage.k8s.io", "VolumeAttachment") => errs.extend(cluster::validate_volume_attachment_update(new, old)),
        ("node.k8s.io", kind @ "RuntimeClass") | ("networking.k8s.io", kind @ "IPAddress") => errs.extend(cluster::validate_immutable_parts(kind, new, old)),
        _ => {}
    }
    errs
}

/// Field selectors a kind supports beyond metadata.name and metadata.namespace.
pub fn selectable_fields(def: &ResourceDef) -> &'static [&'static str] {
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "Event") | ("events.k8s.io", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "Secret") => &["type"],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Namespace") => &["status.phase"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
        ("batch", "Job") => &["status.successful"],
        ("", "Service") => &["spec.clusterIP", "spec.type"],
        ("certificates.k8s.io", _) => &["spec.signerName"],
        _ => &[],
    }
}

/// The value of a selectable field, as a string (upstream's field sets).
pub fn field_value(obj: &Value, field: &str) -> Option<String> {
    let path = match field {
        "source" => "/source/component".to_string(),
        "status.podIPs" => "/status/podIPs/0/ip".to_string(),
        f => format!("/{}", f.replace('.', "/")),
    };
    match obj.pointer(&path)? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
    .or_else(|| match field {
        "spec.hostNetwork" | "spec.unschedulable" => Some("false".into()),
        _ => None,
    })
}
