//! Printers for workload controllers and their helpers: `apps`, `batch`, `autoscaling`, `policy`.

use jiff::Timestamp;
use serde_json::Value;

use super::labels::{format_label_selector, format_labels, selector_string};
use super::quantity::{quantity, quantity_ptr};
use super::{
    col, containers_and_images, docs, human_duration, int, s, translate_timestamp_since, wide, Column, AGE, CONTAINERS, IMAGES, J, NAME,
};

pub(super) const DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", docs::EXTENSIONS_V1BETA1_DEPLOYMENTSTATUS_UPDATEDREPLICAS),
    col("Available", "string", docs::EXTENSIONS_V1BETA1_DEPLOYMENTSTATUS_AVAILABLEREPLICAS),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", docs::EXTENSIONS_V1BETA1_DEPLOYMENTSPEC_SELECTOR),
];

pub(super) fn deployment(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers_and_images(o.get("spec.template.spec.containers"));
    // Unlike the other workloads, an empty selector prints as "" here.
    let selector = selector_string(o.get("spec.selector")).unwrap_or_else(|()| "<invalid>".into());
    vec![
        s(o.name()),
        s(format!("{}/{}", o.get("status.readyReplicas").int(), o.get("spec.replicas").int())),
        int(o.get("status.updatedReplicas").int()),
        int(o.get("status.availableReplicas").int()),
        s(o.age(now)),
        names,
        images,
        s(selector),
    ]
}

pub(super) const REPLICA_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", docs::EXTENSIONS_V1BETA1_REPLICASETSPEC_REPLICAS),
    col("Current", "integer", docs::EXTENSIONS_V1BETA1_REPLICASETSTATUS_REPLICAS),
    col("Ready", "integer", docs::EXTENSIONS_V1BETA1_REPLICASETSTATUS_READYREPLICAS),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", docs::EXTENSIONS_V1BETA1_REPLICASETSPEC_SELECTOR),
];

pub(super) fn replica_set(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers_and_images(o.get("spec.template.spec.containers"));
    vec![
        s(o.name()),
        int(o.get("spec.replicas").int()),
        int(o.get("status.replicas").int()),
        int(o.get("status.readyReplicas").int()),
        s(o.age(now)),
        names,
        images,
        s(format_label_selector(o.get("spec.selector"))),
    ]
}

pub(super) const DAEMON_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", docs::EXTENSIONS_V1BETA1_DAEMONSETSTATUS_DESIREDNUMBERSCHEDULED),
    col("Current", "integer", docs::EXTENSIONS_V1BETA1_DAEMONSETSTATUS_CURRENTNUMBERSCHEDULED),
    col("Ready", "integer", docs::EXTENSIONS_V1BETA1_DAEMONSETSTATUS_NUMBERREADY),
    col("Up-to-date", "integer", docs::EXTENSIONS_V1BETA1_DAEMONSETSTATUS_UPDATEDNUMBERSCHEDULED),
    col("Available", "integer", docs::EXTENSIONS_V1BETA1_DAEMONSETSTATUS_NUMBERAVAILABLE),
    col("Node Selector", "string", docs::CORE_V1_PODSPEC_NODESELECTOR),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", docs::EXTENSIONS_V1BETA1_DAEMONSETSPEC_SELECTOR),
];

pub(super) fn daemon_set(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let status = o.get("status");
    let (names, images) = containers_and_images(o.get("spec.template.spec.containers"));
    vec![
        s(o.name()),
        int(status.get("desiredNumberScheduled").int()),
        int(status.get("currentNumberScheduled").int()),
        int(status.get("numberReady").int()),
        int(status.get("updatedNumberScheduled").int()),
        int(status.get("numberAvailable").int()),
        s(format_labels(o.get("spec.template.spec.nodeSelector"))),
        s(o.age(now)),
        names,
        images,
        s(format_label_selector(o.get("spec.selector"))),
    ]
}

pub(super) const STATEFUL_SET: &[Column] = &[NAME, col("Ready", "string", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES];

pub(super) fn stateful_set(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers_and_images(o.get("spec.template.spec.containers"));
    vec![s(o.name()), s(format!("{}/{}", o.get("status.readyReplicas").int(), o.get("spec.replicas").int())), s(o.age(now)), names, images]
}

pub(super) const CONTROLLER_REVISION: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col("Revision", "string", docs::APPS_V1BETA1_CONTROLLERREVISION_REVISION),
    AGE,
];

pub(super) fn controller_revision(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let owner = o.get("metadata.ownerReferences").items().find(|r| r.get("controller").boolean());
    let controller = match owner {
        None => "<none>".to_string(),
        Some(r) => {
            // `schema.ParseGroupVersion`; upstream fails the whole table on a malformed
            // apiVersion (two or more slashes), where this reads the group as empty.
            let api_version = r.get("apiVersion").str();
            let group = match api_version.split_once('/') {
                Some((g, rest)) if !rest.contains('/') => g,
                _ => "",
            };
            let (kind, name) = (r.get("kind").str(), r.get("name").str());
            match (group, kind) {
                ("", "") => name.to_string(),
                ("", kind) => format!("{}/{name}", kind.to_lowercase()),
                (group, kind) => format!("{}/{name}", format!("{kind}.{group}").to_lowercase()),
            }
        }
    };
    vec![s(o.name()), s(controller), int(o.get("revision").int()), s(o.age(now))]
}

pub(super) const JOB: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", docs::BATCH_V1_JOBSTATUS_SUCCEEDED),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", docs::BATCH_V1_JOBSPEC_SELECTOR),
];

/// `hasJobCondition`: the first condition of that type decides.
fn job_condition(conditions: J<'_>, kind: &str) -> bool {
    conditions.items().find(|c| c.get("type").str() == kind).is_some_and(|c| c.get("status").str() == "True")
}

pub(super) fn job(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let (spec, status) = (o.get("spec"), o.get("status"));
    let succeeded = status.get("succeeded").int();
    let completions = if spec.get("completions").present() {
        format!("{succeeded}/{}", spec.get("completions").int())
    } else {
        match spec.get("parallelism").int() {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        }
    };
    let duration = match (status.get("startTime"), status.get("completionTime")) {
        (start, _) if !start.present() => String::new(),
        (start, end) if !end.present() => human_duration(now.duration_since(start.time_or_zero())),
        (start, end) => human_duration(end.time_or_zero().duration_since(start.time_or_zero())),
    };
    let conditions = status.get("conditions");
    let state = if job_condition(conditions, "Complete") {
        "Complete"
    } else if job_condition(conditions, "Failed") {
        "Failed"
    } else if o.deleting() {
        "Terminating"
    } else if job_condition(conditions, "Suspended") {
        "Suspended"
    } else if job_condition(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = containers_and_images(spec.get("template.spec.containers"));
    vec![s(o.name()), s(state), s(completions), s(duration), s(o.age(now)), names, images, s(format_label_selector(spec.get("selector")))]
}

pub(super) const CRON_JOB: &[Column] = &[
    NAME,
    col("Schedule", "string", docs::BATCH_V1BETA1_CRONJOBSPEC_SCHEDULE),
    col("Timezone", "string", docs::BATCH_V1BETA1_CRONJOBSPEC_TIMEZONE),
    col("Suspend", "boolean", docs::BATCH_V1BETA1_CRONJOBSPEC_SUSPEND),
    col("Active", "integer", docs::BATCH_V1BETA1_CRONJOBSTATUS_ACTIVE),
    col("Last Schedule", "string", docs::BATCH_V1BETA1_CRONJOBSTATUS_LASTSCHEDULETIME),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", docs::BATCH_V1_JOBSPEC_SELECTOR),
];

pub(super) fn cron_job(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let spec = o.get("spec");
    let last = o.get("status.lastScheduleTime");
    let last = if last.present() { translate_timestamp_since(last.time(), now) } else { "<none>".into() };
    let time_zone = spec.get("timeZone");
    let time_zone = if time_zone.present() { time_zone.str() } else { "<none>" };
    // `printBoolPtr`: a string cell, although the column says boolean.
    let suspend = match spec.get("suspend").0.as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let (names, images) = containers_and_images(spec.get("jobTemplate.spec.template.spec.containers"));
    vec![
        s(o.name()),
        s(spec.get("schedule").str()),
        s(time_zone),
        s(suspend),
        int(o.get("status.active").list().len() as i64),
        s(last),
        s(o.age(now)),
        names,
        images,
        s(format_label_selector(spec.get("jobTemplate.spec.selector"))),
    ]
}

pub(super) const HPA: &[Column] = &[
    NAME,
    col("Reference", "string", docs::AUTOSCALING_V2BETA1_HORIZONTALPODAUTOSCALERSPEC_SCALETARGETREF),
    col("Targets", "string", docs::AUTOSCALING_V2BETA1_HORIZONTALPODAUTOSCALERSPEC_METRICS),
    col("MinPods", "string", docs::AUTOSCALING_V2BETA1_HORIZONTALPODAUTOSCALERSPEC_MINREPLICAS),
    col("MaxPods", "string", docs::AUTOSCALING_V2BETA1_HORIZONTALPODAUTOSCALERSPEC_MAXREPLICAS),
    col("Replicas", "string", docs::AUTOSCALING_V2BETA1_HORIZONTALPODAUTOSCALERSTATUS_CURRENTREPLICAS),
    AGE,
];

/// One External or Object metric: `current/target`, `(avg)` for average-value targets.
fn value_metric(spec: J<'_>, status: J<'_>) -> String {
    let target = spec.get("target");
    if target.get("averageValue").present() {
        let current = status.get("current.averageValue");
        let current = if status.present() && current.present() { quantity(current.0) } else { "<unknown>".into() };
        format!("{current}/{} (avg)", quantity(target.get("averageValue").0))
    } else {
        let current = if status.present() { quantity_ptr(status.get("current.value").0) } else { "<unknown>".into() };
        format!("{current}/{}", quantity_ptr(target.get("value").0))
    }
}

/// One Resource or ContainerResource metric: `name: current/target`, values or utilizations.
fn resource_metric(spec: J<'_>, status: J<'_>) -> String {
    let name = spec.get("name").str();
    let target = spec.get("target");
    if target.get("averageValue").present() {
        let current = if status.present() { quantity_ptr(status.get("current.averageValue").0) } else { "<unknown>".into() };
        format!("{name}: {current}/{}", quantity(target.get("averageValue").0))
    } else {
        let utilization = status.get("current.averageUtilization");
        let current = if status.present() && utilization.present() { format!("{}%", utilization.int()) } else { "<unknown>".into() };
        let wanted = target.get("averageUtilization");
        let wanted = if wanted.present() { format!("{}%", wanted.int()) } else { "<auto>".into() };
        format!("{name}: {current}/{wanted}")
    }
}

/// `formatHPAMetrics`: two metrics, then `+ N more...`; statuses pair with specs by index.
fn hpa_metrics(specs: J<'_>, statuses: J<'_>) -> String {
    if specs.list().is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 2;
    let statuses = statuses.list();
    let mut list: Vec<String> = Vec::new();
    for (i, spec) in specs.items().enumerate() {
        let status = statuses.get(i).map_or(J(&Value::Null), J);
        list.push(match spec.get("type").str() {
            "External" => value_metric(spec.get("external"), status.get("external")),
            "Pods" => {
                let current = status.get("pods");
                let current = if current.present() { quantity_ptr(current.get("current.averageValue").0) } else { "<unknown>".into() };
                format!("{current}/{}", quantity_ptr(spec.get("pods.target.averageValue").0))
            }
            "Object" => value_metric(spec.get("object"), status.get("object")),
            "Resource" => resource_metric(spec.get("resource"), status.get("resource")),
            "ContainerResource" => resource_metric(spec.get("containerResource"), status.get("containerResource")),
            _ => "<unknown type>".into(),
        });
    }
    let count = list.len();
    if count > MAX {
        list.truncate(MAX);
        format!("{} + {} more...", list.join(", "), count - MAX)
    } else {
        list.join(", ")
    }
}

pub(super) fn hpa(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let spec = o.get("spec");
    let target = spec.get("scaleTargetRef");
    let min = spec.get("minReplicas");
    let min = if min.present() { min.int().to_string() } else { "<unset>".into() };
    vec![
        s(o.name()),
        s(format!("{}/{}", target.get("kind").str(), target.get("name").str())),
        s(hpa_metrics(spec.get("metrics"), o.get("status.currentMetrics"))),
        s(min),
        int(spec.get("maxReplicas").int()),
        int(o.get("status.currentReplicas").int()),
        s(o.age(now)),
    ]
}

pub(super) const SCALE: &[Column] = &[
    Column { format: "", ..NAME },
    col("Desired", "integer", docs::AUTOSCALING_V1_SCALESPEC_REPLICAS),
    col("Available", "integer", docs::AUTOSCALING_V1_SCALESTATUS_REPLICAS),
    AGE,
];

pub(super) fn scale(o: J<'_>, now: Timestamp) -> Vec<Value> {
    vec![s(o.name()), int(o.get("spec.replicas").int()), int(o.get("status.replicas").int()), s(o.age(now))]
}

pub(super) const PDB: &[Column] = &[
    NAME,
    col("Min Available", "string", "The minimum number of pods that must be available."),
    col("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
    col("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
    AGE,
];

/// An `*intstr.IntOrString`: its text, `N/A` when unset.
fn int_or_string(v: J<'_>) -> String {
    match v.0 {
        Value::Null => "N/A".into(),
        Value::String(s) => s.clone(),
        Value::Number(_) => v.int().to_string(),
        other => other.to_string(),
    }
}

pub(super) fn pdb(o: J<'_>, now: Timestamp) -> Vec<Value> {
    vec![
        s(o.name()),
        s(int_or_string(o.get("spec.minAvailable"))),
        s(int_or_string(o.get("spec.maxUnavailable"))),
        int(o.get("status.disruptionsAllowed").int()),
        s(o.age(now)),
    ]
}
