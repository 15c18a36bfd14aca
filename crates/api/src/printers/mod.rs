//! Table printers: the columns and cells kube-apiserver computes for `kubectl get`
//! (`meta.k8s.io/v1 Table`), ported from upstream v1.33 (`pkg/printers/internalversion`,
//! the default table convertor of `k8s.io/apiserver`, and the custom resource default).
//!
//! Like kube-apiserver (whose table convertor always asks for wide output), [`cells`] returns a
//! cell for every column, priority-1 (`-o wide`) ones included; kubectl hides those itself.
//! Objects come from users, so every accessor here tolerates missing fields and wrong types:
//! a field of the wrong type reads as absent, and no object shape makes a printer panic.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

mod cluster;
mod corev1;
mod docs;
mod labels;
mod other;
mod quantity;
mod workloads;

#[cfg(test)]
mod tests;

pub use quantity::{canonical_quantity, quantity_value};

/// One column of a Table, as upstream's `TableColumnDefinition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The header kubectl prints, upper-cased (`Name`, `Ready`, …).
    pub name: &'static str,
    /// The OpenAPI type of the cells: `string`, `integer`, `boolean`, `date`.
    pub r#type: &'static str,
    /// An OpenAPI format hint; `name` marks the column holding the object's name.
    pub format: &'static str,
    /// What the column shows, as upstream describes it.
    pub description: &'static str,
    /// 0 for the default view, 1 for columns shown only with `-o wide`.
    pub priority: i32,
}

const fn col(name: &'static str, r#type: &'static str, description: &'static str) -> Column {
    Column { name, r#type, format: "", description, priority: 0 }
}

const fn wide(name: &'static str, r#type: &'static str, description: &'static str) -> Column {
    Column { name, r#type, format: "", description, priority: 1 }
}

const NAME: Column = Column { name: "Name", r#type: "string", format: "name", description: docs::META_V1_OBJECTMETA_NAME, priority: 0 };
const AGE: Column = col("Age", "string", docs::META_V1_OBJECTMETA_CREATIONTIMESTAMP);
const CONTAINERS: Column = wide("Containers", "string", "Names of each container in the template.");
const IMAGES: Column = wide("Images", "string", "Images referenced by each container in the template.");

/// What custom resources without printer columns show (the CRD default column `Age`).
const NAME_AGE: &[Column] = &[NAME, col("Age", "date", docs::META_V1_OBJECTMETA_CREATIONTIMESTAMP)];

/// The default table convertor of `k8s.io/apiserver`, used by built-ins without a printer.
const NAME_CREATED_AT: &[Column] = &[NAME, col("Created At", "date", docs::META_V1_OBJECTMETA_CREATIONTIMESTAMP)];

type CellFn = fn(J<'_>, Timestamp) -> Vec<Value>;

fn printer(group: &str, kind: &str) -> Option<(&'static [Column], CellFn)> {
    Some(match (group, kind) {
        ("", "Pod") => (corev1::POD, corev1::pod),
        ("", "PodTemplate") => (corev1::POD_TEMPLATE, corev1::pod_template),
        ("", "ReplicationController") => (corev1::REPLICATION_CONTROLLER, corev1::replication_controller),
        ("", "Service") => (corev1::SERVICE, corev1::service),
        ("", "Endpoints") => (corev1::ENDPOINTS, corev1::endpoints),
        ("", "Node") => (corev1::NODE, corev1::node),
        ("", "Event") => (corev1::EVENT, corev1::event),
        ("events.k8s.io", "Event") => (corev1::EVENT, corev1::events_event),
        ("", "Namespace") => (corev1::NAMESPACE, corev1::namespace),
        ("", "Secret") => (corev1::SECRET, corev1::secret),
        ("", "ServiceAccount") => (corev1::SERVICE_ACCOUNT, corev1::service_account),
        ("", "PersistentVolume") => (corev1::PERSISTENT_VOLUME, corev1::persistent_volume),
        ("", "PersistentVolumeClaim") => (corev1::PERSISTENT_VOLUME_CLAIM, corev1::persistent_volume_claim),
        ("", "ConfigMap") => (corev1::CONFIG_MAP, corev1::config_map),
        ("", "ResourceQuota") => (corev1::RESOURCE_QUOTA, corev1::resource_quota),
        ("apps", "Deployment") => (workloads::DEPLOYMENT, workloads::deployment),
        ("apps", "ReplicaSet") => (workloads::REPLICA_SET, workloads::replica_set),
        ("apps", "DaemonSet") => (workloads::DAEMON_SET, workloads::daemon_set),
        ("apps", "StatefulSet") => (workloads::STATEFUL_SET, workloads::stateful_set),
        ("apps", "ControllerRevision") => (workloads::CONTROLLER_REVISION, workloads::controller_revision),
        ("batch", "Job") => (workloads::JOB, workloads::job),
        ("batch", "CronJob") => (workloads::CRON_JOB, workloads::cron_job),
        ("autoscaling", "HorizontalPodAutoscaler") => (workloads::HPA, workloads::hpa),
        ("autoscaling", "Scale") => (workloads::SCALE, workloads::scale),
        ("policy", "PodDisruptionBudget") => (workloads::PDB, workloads::pdb),
        ("networking.k8s.io", "Ingress") => (other::INGRESS, other::ingress),
        ("networking.k8s.io", "IngressClass") => (other::INGRESS_CLASS, other::ingress_class),
        ("networking.k8s.io", "NetworkPolicy") => (other::NETWORK_POLICY, other::network_policy),
        ("rbac.authorization.k8s.io", "RoleBinding") => (other::ROLE_BINDING, other::role_binding),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => (other::CLUSTER_ROLE_BINDING, other::role_binding),
        ("coordination.k8s.io", "Lease") => (other::LEASE, other::lease),
        ("storage.k8s.io", "StorageClass") => (other::STORAGE_CLASS, other::storage_class),
        ("discovery.k8s.io", "EndpointSlice") => (other::ENDPOINT_SLICE, other::endpoint_slice),
        ("", "ComponentStatus") => (cluster::COMPONENT_STATUS, cluster::component_status),
        ("apiregistration.k8s.io", "APIService") => (cluster::API_SERVICE, cluster::api_service),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration") => {
            (cluster::WEBHOOK_CONFIGURATION, cluster::webhook_configuration)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => (cluster::VALIDATING_ADMISSION_POLICY, cluster::validating_admission_policy),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            (cluster::VALIDATING_ADMISSION_POLICY_BINDING, cluster::validating_admission_policy_binding)
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => (cluster::CERTIFICATE_SIGNING_REQUEST, cluster::certificate_signing_request),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => (cluster::FLOW_SCHEMA, cluster::flow_schema),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => (cluster::PRIORITY_LEVEL_CONFIGURATION, cluster::priority_level_configuration),
        ("networking.k8s.io", "ServiceCIDR") => (cluster::SERVICE_CIDR, cluster::service_cidr),
        ("networking.k8s.io", "IPAddress") => (cluster::IP_ADDRESS, cluster::ip_address),
        ("node.k8s.io", "RuntimeClass") => (cluster::RUNTIME_CLASS, cluster::runtime_class),
        ("scheduling.k8s.io", "PriorityClass") => (cluster::PRIORITY_CLASS, cluster::priority_class),
        ("storage.k8s.io", "CSIDriver") => (cluster::CSI_DRIVER, cluster::csi_driver),
        ("storage.k8s.io", "CSINode") => (cluster::CSI_NODE, cluster::csi_node),
        ("storage.k8s.io", "CSIStorageCapacity") => (cluster::CSI_STORAGE_CAPACITY, cluster::csi_storage_capacity),
        ("storage.k8s.io", "VolumeAttachment") => (cluster::VOLUME_ATTACHMENT, cluster::volume_attachment),
        // Upstream registers no printer for these; their storage uses the default convertor.
        ("", "LimitRange")
        | ("rbac.authorization.k8s.io", "Role")
        | ("rbac.authorization.k8s.io", "ClusterRole")
        | ("apiextensions.k8s.io", "CustomResourceDefinition") => (NAME_CREATED_AT, name_created_at),
        _ => return None,
    })
}

/// The column definitions upstream prints for this kind ("" = core group); Name/Age for unknown kinds.
pub fn columns(group: &str, kind: &str) -> &'static [Column] {
    printer(group, kind).map_or(NAME_AGE, |(columns, _)| columns)
}

/// One row's cells for `obj` (a JSON object of that kind), as JSON values (strings, integers),
/// computed as upstream does; `now` is the server's clock for ages.
/// A few cells are booleans (StorageClass) or null (a custom resource's missing `Age`), as upstream.
pub fn cells(group: &str, kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    match printer(group, kind) {
        Some((_, cells)) => cells(J(obj), now),
        None => name_age(J(obj), now),
    }
}

/// A row's `conditions` (`TableRowCondition`s; empty means omit them): upstream marks Pods that
/// finished, Succeeded or Failed, with `Completed`.
pub fn row_conditions(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
    if (group, kind) != ("", "Pod") {
        return Vec::new();
    }
    let (reason, message) = match J(obj).get("status.phase").str() {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return Vec::new(),
    };
    vec![serde_json::json!({"type": "Completed", "status": "True", "reason": reason, "message": message})]
}

/// apimachinery's `duration.HumanDuration`: a succinct duration with two or three significant figures.
pub fn human_duration(d: SignedDuration) -> String {
    // Go's time.Duration is an int64 of nanoseconds and `Time.Sub` saturates.
    let nanos = d.as_nanos().clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    const SEC: i64 = 1_000_000_000;
    const MIN: i64 = 60 * SEC;
    const HOUR: i64 = 60 * MIN;
    let seconds = nanos / SEC;
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = nanos / MIN;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = nanos / HOUR;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

/// Upstream's `translateTimestampSince`: the age of a timestamp, `<unknown>` when unset.
pub fn translate_timestamp_since(ts: Option<Timestamp>, now: Timestamp) -> String {
    match ts {
        None => "<unknown>".into(),
        Some(ts) => human_duration(now.duration_since(ts)),
    }
}

/// Go's zero `time.Time`, which `metav1.Time` treats as unset.
const GO_ZERO_SECOND: i64 = -62_135_596_800;

/// A `metav1.Time` / `metav1.MicroTime` JSON value: `None` when null, absent, zero or unparsable.
fn parse_time(v: &Value) -> Option<Timestamp> {
    parse_time_str(v.as_str()?).ok().flatten()
}

/// A timestamp string: `Ok(None)` for Go's zero time (and the empty string), `Err` when invalid.
fn parse_time_str(t: &str) -> Result<Option<Timestamp>, jiff::Error> {
    if t.is_empty() {
        return Ok(None);
    }
    let ts: Timestamp = t.parse()?;
    Ok((ts.as_second() != GO_ZERO_SECOND || ts.subsec_nanosecond() != 0).then_some(ts))
}

static NULL: Value = Value::Null;

/// A read-only view of a JSON value that reads absent or mistyped fields as Go zero values.
#[derive(Clone, Copy)]
pub(crate) struct J<'a>(pub(crate) &'a Value);

impl<'a> J<'a> {
    /// A field by dotted path (`"status.phase"`); null when anything along the way is missing.
    fn get(self, path: &str) -> J<'a> {
        let mut v = self.0;
        for key in path.split('.') {
            v = match v {
                Value::Object(m) => m.get(key).unwrap_or(&NULL),
                _ => &NULL,
            };
        }
        J(v)
    }
    /// A field by exact key (for keys with dots, such as resource names).
    fn key(self, key: &str) -> J<'a> {
        J(self.0.as_object().and_then(|m| m.get(key)).unwrap_or(&NULL))
    }
    /// Present and not null (a Go pointer or slice that is set).
    fn present(self) -> bool {
        !self.0.is_null()
    }
    fn str(self) -> &'a str {
        self.0.as_str().unwrap_or("")
    }
    fn int(self) -> i64 {
        match self.0 {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)).unwrap_or(0),
            _ => 0,
        }
    }
    fn boolean(self) -> bool {
        self.0.as_bool().unwrap_or(false)
    }
    fn list(self) -> &'a [Value] {
        self.0.as_array().map_or(&[], |a| a.as_slice())
    }
    fn items(self) -> impl Iterator<Item = J<'a>> {
        self.list().iter().map(J)
    }
    fn map(self) -> Option<&'a Map<String, Value>> {
        self.0.as_object()
    }
    fn len(self) -> i64 {
        match self.0 {
            Value::Array(a) => a.len() as i64,
            Value::Object(m) => m.len() as i64,
            _ => 0,
        }
    }
    fn time(self) -> Option<Timestamp> {
        parse_time(self.0)
    }
    /// A time where Go would use a set pointer's value: Go's zero time when null or unparsable.
    fn time_or_zero(self) -> Timestamp {
        self.time().unwrap_or_else(|| Timestamp::from_second(GO_ZERO_SECOND).unwrap_or(Timestamp::MIN))
    }
    fn name(self) -> &'a str {
        self.get("metadata.name").str()
    }
    fn age(self, now: Timestamp) -> String {
        translate_timestamp_since(self.get("metadata.creationTimestamp").time(), now)
    }
    fn deleting(self) -> bool {
        self.get("metadata.deletionTimestamp").present()
    }
    /// A string-valued map entry such as a label or annotation.
    fn entry(self, key: &str) -> Option<&'a str> {
        self.map()?.get(key).map(|v| v.as_str().unwrap_or(""))
    }
}

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn int(v: i64) -> Value {
    Value::from(v)
}

fn none_if_empty(v: &str) -> &str {
    if v.is_empty() {
        "<none>"
    } else {
        v
    }
}

/// Upstream's `layoutContainerCells`: container names and images, comma separated.
fn containers_and_images(containers: J<'_>) -> (Value, Value) {
    let names: Vec<&str> = containers.items().map(|c| c.get("name").str()).collect();
    let images: Vec<&str> = containers.items().map(|c| c.get("image").str()).collect();
    (s(names.join(",")), s(images.join(",")))
}

/// The default row of custom resources: the name and the `Age` JSONPath `date` column (null when
/// the timestamp is absent or not a string, `<invalid>` when it does not parse).
fn name_age(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let age = match o.get("metadata.creationTimestamp").0 {
        Value::String(t) if t.is_empty() || t == "null" => s("<unknown>"),
        Value::String(t) => match parse_time_str(t) {
            Ok(ts) => s(translate_timestamp_since(ts, now)),
            Err(_) => s("<invalid>"),
        },
        _ => Value::Null,
    };
    vec![s(o.name()), age]
}

/// The default table convertor: name and creation time in RFC 3339, UTC.
fn name_created_at(o: J<'_>, _now: Timestamp) -> Vec<Value> {
    let created = match o.get("metadata.creationTimestamp").time() {
        Some(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "0001-01-01T00:00:00Z".into(),
    };
    vec![s(o.name()), s(created)]
}
