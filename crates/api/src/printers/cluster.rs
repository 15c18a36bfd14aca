//! Printers for the cluster-level APIs: `admissionregistration.k8s.io`, `certificates.k8s.io`,
//! `flowcontrol.apiserver.k8s.io`, `node.k8s.io`, `scheduling.k8s.io`, the CSI kinds of
//! `storage.k8s.io`, ServiceCIDR and IPAddress of `networking.k8s.io`, and the core
//! ComponentStatus — as upstream v1.33's `pkg/printers/internalversion`.

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::labels::format_label_selector;
use super::quantity::canonical_quantity;
use super::{col, human_duration, int, s, Column, AGE, J, NAME};

pub(super) const COMPONENT_STATUS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the component conditions"),
    col("Message", "string", "Message of the component conditions"),
    col("Error", "string", "Error of the component conditions"),
];

/// The `Healthy` condition: `Healthy`/`Unhealthy` with its message and error, `Unknown` without.
pub(super) fn component_status(o: J<'_>, _now: Timestamp) -> Vec<Value> {
    let (mut status, mut message, mut error) = ("Unknown", "", "");
    if let Some(c) = o.get("conditions").items().find(|c| c.get("type").str() == "Healthy") {
        status = if c.get("status").str() == "True" { "Healthy" } else { "Unhealthy" };
        message = c.get("message").str();
        error = c.get("error").str();
    }
    vec![s(o.name()), s(status), s(message), s(error)]
}

const WEBHOOKS: Column = col("Webhooks", "integer", "Webhooks indicates the number of webhooks registered in this configuration");

/// Mutating and validating webhook configurations print alike.
pub(super) const WEBHOOK_CONFIGURATION: &[Column] = &[NAME, WEBHOOKS, AGE];

pub(super) fn webhook_configuration(o: J<'_>, now: Timestamp) -> Vec<Value> {
    vec![s(o.name()), int(o.get("webhooks").list().len() as i64), s(o.age(now))]
}

pub(super) const VALIDATING_ADMISSION_POLICY: &[Column] = &[
    NAME,
    col("Validations", "integer", "Validations indicates the number of validation rules defined in this configuration"),
    col("ParamKind", "string", "ParamKind specifies the kind of resources used to parameterize this policy"),
    AGE,
];

pub(super) fn validating_admission_policy(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let param = o.get("spec.paramKind");
    let param_kind = if param.present() { format!("{}/{}", param.get("apiVersion").str(), param.get("kind").str()) } else { "<unset>".into() };
    vec![s(o.name()), int(o.get("spec.validations").list().len() as i64), s(param_kind), s(o.age(now))]
}

pub(super) const VALIDATING_ADMISSION_POLICY_BINDING: &[Column] = &[
    NAME,
    col("PolicyName", "string", "PolicyName indicates the policy definition which the policy binding binded to"),
    col("ParamRef", "string", "ParamRef indicates the param resource which sets the configration param"),
    AGE,
];

pub(super) fn validating_admission_policy_binding(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let pr = o.get("spec.paramRef");
    let param = if !pr.present() {
        "<unset>".to_string()
    } else if !pr.get("name").str().is_empty() {
        // Cluster-scoped or not cannot be told from here: upstream writes `*/` without a namespace.
        match pr.get("namespace").str() {
            "" => format!("*/{}", pr.get("name").str()),
            ns => format!("{ns}/{}", pr.get("name").str()),
        }
    } else if pr.get("selector").present() {
        format_label_selector(pr.get("selector"))
    } else {
        "<unset>".to_string()
    };
    vec![s(o.name()), s(o.get("spec.policyName").str()), s(param), s(o.age(now))]
}

pub(super) const CERTIFICATE_SIGNING_REQUEST: &[Column] = &[
    NAME,
    AGE,
    col("SignerName", "string", "signerName indicates the requested signer, and is a qualified name."),
    col("Requestor", "string", "request contains an x509 certificate signing request encoded in a \"CERTIFICATE REQUEST\" PEM block. When serialized as JSON or YAML, the data is additionally base64-encoded."),
    col("RequestedDuration", "string", "expirationSeconds is the requested duration of validity of the issued certificate."),
    col("Condition", "string", "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\"."),
];

/// `extractCSRStatus`: Denied over Approved over Pending, then `,Failed` and `,Issued`.
fn csr_condition(o: J<'_>) -> String {
    let conds: Vec<&str> = o.get("status.conditions").items().map(|c| c.get("type").str()).collect();
    let mut status = if conds.contains(&"Denied") {
        "Denied".to_string()
    } else if conds.contains(&"Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if conds.contains(&"Failed") {
        status.push_str(",Failed");
    }
    if !o.get("status.certificate").str().is_empty() {
        status.push_str(",Issued");
    }
    status
}

pub(super) fn certificate_signing_request(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let signer = match o.get("spec.signerName").str() {
        "" => "<none>",
        v => v,
    };
    let expiration = o.get("spec.expirationSeconds");
    let duration = if expiration.present() { human_duration(SignedDuration::from_secs(expiration.int())) } else { "<none>".into() };
    vec![s(o.name()), s(o.age(now)), s(signer), s(o.get("spec.username").str()), s(duration), s(csr_condition(o))]
}

pub(super) const FLOW_SCHEMA: &[Column] = &[
    NAME,
    col("PriorityLevel", "string", "`name` is the name of the priority level configuration being referenced Required."),
    col("MatchingPrecedence", "string", "`matchingPrecedence` is used to choose among the FlowSchemas that match a given request."),
    col("DistinguisherMethod", "string", "`distinguisherMethod` defines how to compute the flow distinguisher for requests that match this schema."),
    AGE,
    col("MissingPL", "string", "references a broken or non-existent PriorityLevelConfiguration"),
];

pub(super) fn flow_schema(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let method = o.get("spec.distinguisherMethod");
    let method = if method.present() { method.get("type").str().to_string() } else { "<none>".into() };
    // The Dangling condition's status, `?` until the configuration controller has looked.
    let missing = o.get("status.conditions").items().find(|c| c.get("type").str() == "Dangling").map_or("?", |c| c.get("status").str());
    vec![
        s(o.name()),
        s(o.get("spec.priorityLevelConfiguration.name").str()),
        int(o.get("spec.matchingPrecedence").int()),
        s(method),
        s(o.age(now)),
        s(missing),
    ]
}

pub(super) const PRIORITY_LEVEL_CONFIGURATION: &[Column] = &[
    NAME,
    col("Type", "string", "`type` indicates whether this priority level is subject to limitation on request execution."),
    col("NominalConcurrencyShares", "string", "`nominalConcurrencyShares` (NCS) contributes to the computation of the NominalConcurrencyLimit (NominalCL) of this level."),
    col("Queues", "string", "`queues` is the number of queues for this priority level."),
    col("HandSize", "string", "`handSize` is a small positive number that configures the shuffle sharding of requests into queues."),
    col("QueueLengthLimit", "string", "`queueLengthLimit` is the maximum number of requests allowed to be waiting in a given queue of this priority level at a time; excess requests are rejected."),
    AGE,
];

/// Integers when the level is limited (and queues), `<none>` otherwise, as upstream's cells.
pub(super) fn priority_level_configuration(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let none = || s("<none>");
    let (mut ncs, mut queues, mut hand, mut limit) = (none(), none(), none(), none());
    let limited = o.get("spec.limited");
    if limited.present() {
        ncs = int(limited.get("nominalConcurrencyShares").int());
        let q = limited.get("limitResponse.queuing");
        if q.present() {
            queues = int(q.get("queues").int());
            hand = int(q.get("handSize").int());
            limit = int(q.get("queueLengthLimit").int());
        }
    }
    vec![s(o.name()), s(o.get("spec.type").str()), ncs, queues, hand, limit, s(o.age(now))]
}

pub(super) const SERVICE_CIDR: &[Column] = &[
    NAME,
    col("CIDRs", "string", "CIDRs defines the IP blocks in CIDR notation (e.g. \"192.168.0.0/24\" or \"2001:db8::/64\") from which to assign service cluster IPs. Max of two CIDRs is allowed, one of each IP family. This field is immutable."),
    AGE,
];

pub(super) fn service_cidr(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let cidrs: Vec<&str> = o.get("spec.cidrs").items().map(|c| c.str()).collect();
    vec![s(o.name()), s(cidrs.join(",")), s(o.age(now))]
}

/// Upstream defines two columns for IPAddress but prints three cells (the age too); kubectl
/// shows the cells that have a column. Kept as upstream sends it.
pub(super) const IP_ADDRESS: &[Column] = &[
    NAME,
    col("ParentRef", "string", "ParentRef references the resource that an IPAddress is attached to. An IPAddress must reference a parent object."),
];

pub(super) fn ip_address(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let p = o.get("spec.parentRef");
    let parent = if p.present() {
        // `schema.GroupResource.String()`, lower-cased: `services` or `services.example.com`.
        let (group, resource) = (p.get("group").str(), p.get("resource").str());
        let mut out = if group.is_empty() { resource.to_lowercase() } else { format!("{resource}.{group}").to_lowercase() };
        if !p.get("namespace").str().is_empty() {
            out = format!("{out}/{}", p.get("namespace").str());
        }
        format!("{out}/{}", p.get("name").str())
    } else {
        "<none>".into()
    };
    vec![s(o.name()), s(parent), s(o.age(now))]
}

pub(super) const RUNTIME_CLASS: &[Column] = &[NAME, col("Handler", "string", ""), AGE];

pub(super) fn runtime_class(o: J<'_>, now: Timestamp) -> Vec<Value> {
    vec![s(o.name()), s(o.get("handler").str()), s(o.age(now))]
}

pub(super) const PRIORITY_CLASS: &[Column] = &[
    NAME,
    col("Value", "integer", "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."),
    col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority."),
    AGE,
    col("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."),
];

pub(super) fn priority_class(o: J<'_>, now: Timestamp) -> Vec<Value> {
    vec![
        s(o.name()),
        int(o.get("value").int()),
        Value::Bool(o.get("globalDefault").boolean()),
        s(o.age(now)),
        s(o.get("preemptionPolicy").str()),
    ]
}

pub(super) const CSI_DRIVER: &[Column] = &[
    NAME,
    col("AttachRequired", "boolean", "attachRequired indicates this CSI volume driver requires an attach operation (because it implements the CSI ControllerPublishVolume() method), and that the Kubernetes attach detach controller should call the attach volume interface which checks the volumeattachment status and waits until the volume is attached before proceeding to mounting."),
    col("PodInfoOnMount", "boolean", "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations, if set to true."),
    col("StorageCapacity", "boolean", "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report by creating CSIStorageCapacity objects with capacity information, if set to true."),
    col("TokenRequests", "string", "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication."),
    col("RequiresRepublish", "boolean", "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume. This field defaults to false."),
    col("Modes", "string", "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports."),
    AGE,
];

pub(super) fn csi_driver(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let flag = |path: &str, default: bool| {
        let v = o.get(path);
        if v.present() {
            v.boolean()
        } else {
            default
        }
    };
    let modes: Vec<&str> = o.get("spec.volumeLifecycleModes").items().map(|m| m.str()).collect();
    let modes = if modes.is_empty() { "<none>".to_string() } else { modes.join(",") };
    // A set but empty list prints as an empty string, an absent one as `<unset>`.
    let tokens = o.get("spec.tokenRequests");
    let tokens = if tokens.present() {
        tokens.items().map(|t| t.get("audience").str()).collect::<Vec<_>>().join(",")
    } else {
        "<unset>".to_string()
    };
    vec![
        s(o.name()),
        Value::Bool(flag("spec.attachRequired", true)),
        Value::Bool(flag("spec.podInfoOnMount", false)),
        Value::Bool(flag("spec.storageCapacity", false)),
        s(tokens),
        Value::Bool(flag("spec.requiresRepublish", false)),
        s(modes),
        s(o.age(now)),
    ]
}

pub(super) const CSI_NODE: &[Column] = &[NAME, col("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"), AGE];

pub(super) fn csi_node(o: J<'_>, now: Timestamp) -> Vec<Value> {
    vec![s(o.name()), int(o.get("spec.drivers").list().len() as i64), s(o.age(now))]
}

pub(super) const CSI_STORAGE_CAPACITY: &[Column] = &[
    NAME,
    col("StorageClassName", "string", "storageClassName represents the name of the StorageClass that the reported capacity applies to. It must meet the same requirements as the name of a StorageClass object (non-empty, DNS subdomain). If that object no longer exists, the CSIStorageCapacity object is obsolete and should be removed by its creator. This field is immutable."),
    col("Capacity", "string", "capacity is the value reported by the CSI driver in its GetCapacityResponse for a GetCapacityRequest with topology and parameters that match the previous fields."),
];

pub(super) fn csi_storage_capacity(o: J<'_>, _now: Timestamp) -> Vec<Value> {
    let capacity = match o.get("capacity").0 {
        Value::String(q) => canonical_quantity(q).unwrap_or_else(|| q.clone()),
        Value::Number(n) => n.to_string(),
        _ => "<unset>".into(),
    };
    vec![s(o.name()), s(o.get("storageClassName").str()), s(capacity)]
}

pub(super) const VOLUME_ATTACHMENT: &[Column] = &[
    NAME,
    Column { name: "Attacher", r#type: "string", format: "name", description: "attacher indicates the name of the volume driver that MUST handle this request. This is the name returned by GetPluginName().", priority: 0 },
    col("PV", "string", "persistentVolumeName represents the name of the persistent volume to attach."),
    col("Node", "string", "nodeName represents the node that the volume should be attached to."),
    col("Attached", "boolean", "attached indicates the volume is successfully attached. This field must only be set by the entity completing the attach operation, i.e. the external-attacher."),
    AGE,
];

pub(super) fn volume_attachment(o: J<'_>, now: Timestamp) -> Vec<Value> {
    vec![
        s(o.name()),
        s(o.get("spec.attacher").str()),
        s(o.get("spec.source.persistentVolumeName").str()),
        s(o.get("spec.nodeName").str()),
        Value::Bool(o.get("status.attached").boolean()),
        s(o.age(now)),
    ]
}

/// kube-aggregator's `apiservices` table (`pkg/registry/apiservice/etcd`): `Local` for what
/// the server itself serves, and the Available condition with its reason unless it is True.
pub(super) const API_SERVICE: &[Column] = &[
    NAME,
    col("Service", "string", "The reference to the service that hosts this API endpoint."),
    col("Available", "string", "Whether this service is available."),
    AGE,
];

pub(super) fn api_service(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let svc = o.get("spec.service");
    let service = if svc.present() { format!("{}/{}", svc.get("namespace").str(), svc.get("name").str()) } else { "Local".to_string() };
    let available = match o.get("status.conditions").items().find(|c| c.get("type").str() == "Available") {
        None => "Unknown".to_string(),
        Some(c) if c.get("status").str() == "True" || c.get("reason").str().is_empty() => c.get("status").str().to_string(),
        Some(c) => format!("{} ({})", c.get("status").str(), c.get("reason").str()),
    };
    vec![s(o.name()), s(service), s(available), s(o.age(now))]
}
