//! Printers for the core group (`v1`), and for `events.k8s.io` Events, which share storage and
//! printer with core Events upstream.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use serde_json::Value;

use super::labels::format_labels;
use super::quantity::quantity;
use super::{
    col, containers_and_images, docs, int, none_if_empty, s, translate_timestamp_since, wide, Column, AGE, CONTAINERS, IMAGES, J, NAME,
};

pub(super) const POD: &[Column] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide("IP", "string", docs::CORE_V1_PODSTATUS_PODIP),
    wide("Node", "string", docs::CORE_V1_PODSPEC_NODENAME),
    wide("Nominated Node", "string", docs::CORE_V1_PODSTATUS_NOMINATEDNODENAME),
    wide("Readiness Gates", "string", docs::CORE_V1_PODSPEC_READINESSGATES),
];

/// Keeps the later of two optional times (`metav1.Time.Before` with a zero start).
fn keep_latest(acc: &mut Option<Timestamp>, t: Option<Timestamp>) {
    if let Some(t) = t {
        if acc.is_none_or(|a| a < t) {
            *acc = Some(t);
        }
    }
}

/// The `lastState.terminated.finishedAt` of a container status, if it terminated before.
fn last_finished(status: J<'_>) -> Option<Timestamp> {
    let terminated = status.get("lastState.terminated");
    if terminated.present() {
        terminated.get("finishedAt").time()
    } else {
        None
    }
}

fn condition_status<'a>(conditions: J<'a>, kind: &str) -> Option<&'a str> {
    conditions.items().find(|c| c.get("type").str() == kind).map(|c| c.get("status").str())
}

/// `printPod`: readiness, the aggregate status (init progress, waiting and termination
/// reasons, Terminating/Unknown on deletion), restarts with the last restart's age.
pub(super) fn pod(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let spec = o.get("spec");
    let status = o.get("status");
    let conditions = status.get("conditions");
    let mut restarts: i64 = 0;
    let mut restartable_restarts: i64 = 0;
    let mut total = spec.get("containers").len();
    let mut ready: i64 = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_restartable_restart: Option<Timestamp> = None;

    let phase = status.get("phase").str();
    let mut reason = match status.get("reason").str() {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    for c in conditions.items() {
        if c.get("type").str() == "PodScheduled" && c.get("reason").str() == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }

    let init_specs = spec.get("initContainers");
    let mut restartable: HashMap<&str, bool> = HashMap::new();
    for c in init_specs.items() {
        let always = c.get("restartPolicy").str() == "Always";
        restartable.insert(c.get("name").str(), always);
        if always {
            total += 1;
        }
    }

    let mut initializing = false;
    for (i, c) in status.get("initContainerStatuses").items().enumerate() {
        restarts = restarts.saturating_add(c.get("restartCount").int());
        keep_latest(&mut last_restart, last_finished(c));
        let is_restartable = restartable.get(c.get("name").str()).copied().unwrap_or(false);
        if is_restartable {
            restartable_restarts = restartable_restarts.saturating_add(c.get("restartCount").int());
            keep_latest(&mut last_restartable_restart, last_finished(c));
        }
        let terminated = c.get("state.terminated");
        let waiting_reason = c.get("state.waiting.reason").str();
        if terminated.present() && terminated.get("exitCode").int() == 0 {
            continue;
        } else if is_restartable && c.get("started").boolean() {
            if c.get("ready").boolean() {
                ready += 1;
            }
            continue;
        } else if terminated.present() {
            reason = match terminated.get("reason").str() {
                "" if terminated.get("signal").int() != 0 => format!("Init:Signal:{}", terminated.get("signal").int()),
                "" => format!("Init:ExitCode:{}", terminated.get("exitCode").int()),
                r => format!("Init:{r}"),
            };
        } else if c.get("state.waiting").present() && !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_status(conditions, "Initialized") == Some("True") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for c in status.get("containerStatuses").list().iter().rev().map(J) {
            restarts = restarts.saturating_add(c.get("restartCount").int());
            keep_latest(&mut last_restart, last_finished(c));
            let waiting = c.get("state.waiting");
            let terminated = c.get("state.terminated");
            if waiting.present() && !waiting.get("reason").str().is_empty() {
                reason = waiting.get("reason").str().to_string();
            } else if terminated.present() && !terminated.get("reason").str().is_empty() {
                reason = terminated.get("reason").str().to_string();
            } else if terminated.present() {
                reason = match terminated.get("signal").int() {
                    0 => format!("ExitCode:{}", terminated.get("exitCode").int()),
                    signal => format!("Signal:{signal}"),
                };
            } else if c.get("ready").boolean() && c.get("state.running").present() {
                has_running = true;
                ready += 1;
            }
        }
        // Back to "Running" if a container still runs after another completed.
        if reason == "Completed" && has_running {
            let pod_ready = conditions.items().any(|c| c.get("type").str() == "Ready" && c.get("status").str() == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    if o.deleting() && status.get("reason").str() == "NodeLost" {
        reason = "Unknown".into();
    } else if o.deleting() && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".into();
    }

    let restarts_cell = match last_restart {
        Some(_) if restarts != 0 => format!("{restarts} ({} ago)", translate_timestamp_since(last_restart, now)),
        _ => restarts.to_string(),
    };

    // v1 → internal conversion: `podIP` wins over `podIPs` when set.
    let pod_ip = match status.get("podIP").str() {
        "" => status.get("podIPs").items().next().map_or("", |ip| ip.get("ip").str()),
        ip => ip,
    };
    let gates = spec.get("readinessGates");
    let readiness_gates = if gates.len() > 0 && gates.0.is_array() {
        let true_conditions = gates.items().filter(|g| condition_status(conditions, g.get("conditionType").str()) == Some("True")).count();
        format!("{true_conditions}/{}", gates.len())
    } else {
        "<none>".into()
    };
    vec![
        s(o.name()),
        s(format!("{ready}/{total}")),
        s(reason),
        s(restarts_cell),
        s(o.age(now)),
        s(none_if_empty(pod_ip)),
        s(none_if_empty(spec.get("nodeName").str())),
        s(none_if_empty(status.get("nominatedNodeName").str())),
        s(readiness_gates),
    ]
}

pub(super) const POD_TEMPLATE: &[Column] = &[
    NAME,
    col("Containers", "string", "Names of each container in the template."),
    col("Images", "string", "Images referenced by each container in the template."),
    col("Pod Labels", "string", "The labels for the pod template."),
];

pub(super) fn pod_template(o: J<'_>, _now: Timestamp) -> Vec<Value> {
    let (names, images) = containers_and_images(o.get("template.spec.containers"));
    vec![s(o.name()), names, images, s(format_labels(o.get("template.metadata.labels")))]
}

pub(super) const REPLICATION_CONTROLLER: &[Column] = &[
    NAME,
    col("Desired", "integer", docs::CORE_V1_REPLICATIONCONTROLLERSPEC_REPLICAS),
    col("Current", "integer", docs::CORE_V1_REPLICATIONCONTROLLERSTATUS_REPLICAS),
    col("Ready", "integer", docs::CORE_V1_REPLICATIONCONTROLLERSTATUS_READYREPLICAS),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", docs::CORE_V1_REPLICATIONCONTROLLERSPEC_SELECTOR),
];

pub(super) fn replication_controller(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers_and_images(o.get("spec.template.spec.containers"));
    vec![
        s(o.name()),
        int(o.get("spec.replicas").int()),
        int(o.get("status.replicas").int()),
        int(o.get("status.readyReplicas").int()),
        s(o.age(now)),
        names,
        images,
        s(format_labels(o.get("spec.selector"))),
    ]
}

pub(super) const SERVICE: &[Column] = &[
    NAME,
    col("Type", "string", docs::CORE_V1_SERVICESPEC_TYPE),
    col("Cluster-IP", "string", docs::CORE_V1_SERVICESPEC_CLUSTERIP),
    col("External-IP", "string", docs::CORE_V1_SERVICESPEC_EXTERNALIPS),
    col("Port(s)", "string", docs::CORE_V1_SERVICESPEC_PORTS),
    AGE,
    wide("Selector", "string", docs::CORE_V1_SERVICESPEC_SELECTOR),
];

/// `loadBalancerStatusStringer` (wide): the sorted, distinct IPs or else hostnames.
pub(super) fn load_balancer_ingress(ingress: J<'_>) -> String {
    let set: BTreeSet<&str> = ingress
        .items()
        .filter_map(|i| match (i.get("ip").str(), i.get("hostname").str()) {
            ("", "") => None,
            ("", host) => Some(host),
            (ip, _) => Some(ip),
        })
        .collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

fn service_external_ip(spec: J<'_>, status: J<'_>) -> String {
    let external: Vec<&str> = spec.get("externalIPs").items().map(|ip| ip.str()).collect();
    match spec.get("type").str() {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".into(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let lb = load_balancer_ingress(status.get("loadBalancer.ingress"));
            if !external.is_empty() {
                let mut all: Vec<&str> = if lb.is_empty() { Vec::new() } else { lb.split(',').collect() };
                all.extend(external);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".into()
            }
        }
        "ExternalName" => spec.get("externalName").str().to_string(),
        _ => "<unknown>".into(),
    }
}

/// `makePortString`: `port/protocol`, or `port:nodePort/protocol`, comma separated.
fn service_ports(ports: J<'_>) -> String {
    let pieces: Vec<String> = ports
        .items()
        .map(|p| {
            let (port, node_port, proto) = (p.get("port").int(), p.get("nodePort").int(), p.get("protocol").str());
            if node_port > 0 {
                format!("{port}:{node_port}/{proto}")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect();
    pieces.join(",")
}

pub(super) fn service(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let spec = o.get("spec");
    // Upstream reads clusterIPs[0]; the registry fills clusterIPs from clusterIP on create.
    let cluster_ip = match spec.get("clusterIPs").items().next() {
        Some(ip) => ip.str(),
        None => none_if_empty(spec.get("clusterIP").str()),
    };
    let ports = service_ports(spec.get("ports"));
    vec![
        s(o.name()),
        s(spec.get("type").str()),
        s(cluster_ip),
        s(service_external_ip(spec, o.get("status"))),
        s(none_if_empty(&ports)),
        s(o.age(now)),
        s(format_labels(spec.get("selector"))),
    ]
}

pub(super) const ENDPOINTS: &[Column] = &[NAME, col("Endpoints", "string", docs::CORE_V1_ENDPOINTS_SUBSETS), AGE];

/// `net.JoinHostPort`: brackets around hosts containing a colon.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `formatEndpoints` with all ports: up to three `ip:port`, then `+ N more...`.
fn format_endpoints(subsets: J<'_>) -> String {
    if subsets.list().is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets.items() {
        let addresses = ss.get("addresses").list();
        let ports = ss.get("ports").list();
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses.iter().map(J) {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(a.get("ip").str().to_string());
            }
            continue;
        }
        for port in ports.iter().map(J) {
            count += addresses.len();
            for a in addresses.iter().map(J) {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(a.get("ip").str(), port.get("port").int()));
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - MAX)
    } else {
        ret
    }
}

pub(super) fn endpoints(o: J<'_>, now: Timestamp) -> Vec<Value> {
    vec![s(o.name()), s(format_endpoints(o.get("subsets"))), s(o.age(now))]
}

pub(super) const NODE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", docs::CORE_V1_NODESYSTEMINFO_KUBELETVERSION),
    wide("Internal-IP", "string", docs::CORE_V1_NODESTATUS_ADDRESSES),
    wide("External-IP", "string", docs::CORE_V1_NODESTATUS_ADDRESSES),
    wide("OS-Image", "string", docs::CORE_V1_NODESYSTEMINFO_OSIMAGE),
    wide("Kernel-Version", "string", docs::CORE_V1_NODESYSTEMINFO_KERNELVERSION),
    wide("Container-Runtime", "string", docs::CORE_V1_NODESYSTEMINFO_CONTAINERRUNTIMEVERSION),
];

/// `findNodeRoles`: `node-role.kubernetes.io/<role>` label keys and the `kubernetes.io/role` value.
fn node_roles(labels: J<'_>) -> String {
    let mut roles = BTreeSet::new();
    for (k, v) in labels.map().into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role);
            }
        } else if k == "kubernetes.io/role" && !v.as_str().unwrap_or("").is_empty() {
            roles.insert(v.as_str().unwrap_or(""));
        }
    }
    roles.into_iter().collect::<Vec<_>>().join(",")
}

fn node_address<'a>(status: J<'a>, kind: &str) -> &'a str {
    status.get("addresses").items().find(|a| a.get("type").str() == kind).map_or("<none>", |a| a.get("address").str())
}

pub(super) fn node(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let status = o.get("status");
    // The last condition of each type counts; only Ready is shown.
    let ready = status.get("conditions").items().filter(|c| c.get("type").str() == "Ready").last();
    let mut conds: Vec<&str> = vec![match ready {
        Some(c) if c.get("status").str() == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if o.get("spec.unschedulable").boolean() {
        conds.push("SchedulingDisabled");
    }
    let roles = node_roles(o.get("metadata.labels"));
    let info = status.get("nodeInfo");
    let unknown = |v: &str| if v.is_empty() { "<unknown>".to_string() } else { v.to_string() };
    vec![
        s(o.name()),
        s(conds.join(",")),
        s(none_if_empty(&roles)),
        s(o.age(now)),
        s(info.get("kubeletVersion").str()),
        s(node_address(status, "InternalIP")),
        s(node_address(status, "ExternalIP")),
        s(unknown(info.get("osImage").str())),
        s(unknown(info.get("kernelVersion").str())),
        s(unknown(info.get("containerRuntimeVersion").str())),
    ]
}

pub(super) const EVENT: &[Column] = &[
    col("Last Seen", "string", docs::CORE_V1_EVENT_LASTTIMESTAMP),
    col("Type", "string", docs::CORE_V1_EVENT_TYPE),
    col("Reason", "string", docs::CORE_V1_EVENT_REASON),
    col("Object", "string", docs::CORE_V1_EVENT_INVOLVEDOBJECT),
    wide("Subobject", "string", docs::CORE_V1_OBJECTREFERENCE_FIELDPATH),
    wide("Source", "string", docs::CORE_V1_EVENT_SOURCE),
    col("Message", "string", docs::CORE_V1_EVENT_MESSAGE),
    wide("First Seen", "string", docs::CORE_V1_EVENT_FIRSTTIMESTAMP),
    wide("Count", "string", docs::CORE_V1_EVENT_COUNT),
    Column { priority: 1, ..NAME },
];

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

/// `printEvent` over a core/v1 Event.
pub(super) fn event(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let first_ts = o.get("firstTimestamp").time().or_else(|| o.get("eventTime").time());
    let first = translate_timestamp_since(first_ts, now);
    let mut last = match o.get("lastTimestamp").time() {
        Some(t) => translate_timestamp_since(Some(t), now),
        None => first.clone(),
    };
    let mut count = o.get("count").int();
    let series = o.get("series");
    if series.present() {
        last = translate_timestamp_since(series.get("lastObservedTime").time(), now);
        count = series.get("count").int();
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }
    let involved = o.get("involvedObject");
    let kind = involved.get("kind").str().to_lowercase();
    let target = match involved.get("name").str() {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = first_non_empty(o.get("source.component").str(), o.get("reportingComponent").str());
    let instance = first_non_empty(o.get("source.host").str(), o.get("reportingInstance").str());
    let source = if instance.is_empty() { component.to_string() } else { format!("{component}, {instance}") };
    vec![
        s(last),
        s(o.get("type").str()),
        s(o.get("reason").str()),
        s(target),
        s(involved.get("fieldPath").str()),
        s(source),
        s(o.get("message").str().trim()),
        s(first),
        int(count),
        s(o.name()),
    ]
}

/// An events.k8s.io/v1 Event, converted to core/v1 field names first as upstream's shared
/// storage does (`regarding` → `involvedObject`, `note` → `message`, `deprecated*` fields).
pub(super) fn events_event(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let mut core = serde_json::Map::new();
    let pairs = [
        ("metadata", "metadata"),
        ("eventTime", "eventTime"),
        ("series", "series"),
        ("type", "type"),
        ("reason", "reason"),
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ];
    for (from, to) in pairs {
        if let Some(v) = o.map().and_then(|m| m.get(from)) {
            core.insert(to.to_string(), v.clone());
        }
    }
    event(J(&Value::Object(core)), now)
}

pub(super) const NAMESPACE: &[Column] = &[NAME, col("Status", "string", "The status of the namespace"), AGE];

pub(super) fn namespace(o: J<'_>, now: Timestamp) -> Vec<Value> {
    vec![s(o.name()), s(o.get("status.phase").str()), s(o.age(now))]
}

pub(super) const SECRET: &[Column] =
    &[NAME, col("Type", "string", docs::CORE_V1_SECRET_TYPE), col("Data", "string", docs::CORE_V1_SECRET_DATA), AGE];

pub(super) fn secret(o: J<'_>, now: Timestamp) -> Vec<Value> {
    // v1 → internal conversion merges stringData into data.
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for field in ["data", "stringData"] {
        keys.extend(o.get(field).map().into_iter().flatten().map(|(k, _)| k.as_str()));
    }
    vec![s(o.name()), s(o.get("type").str()), int(keys.len() as i64), s(o.age(now))]
}

pub(super) const SERVICE_ACCOUNT: &[Column] = &[NAME, col("Secrets", "string", docs::CORE_V1_SERVICEACCOUNT_SECRETS), AGE];

pub(super) fn service_account(o: J<'_>, now: Timestamp) -> Vec<Value> {
    vec![s(o.name()), int(o.get("secrets").list().len() as i64), s(o.age(now))]
}

pub(super) const PERSISTENT_VOLUME: &[Column] = &[
    NAME,
    col("Capacity", "string", docs::CORE_V1_PERSISTENTVOLUMESPEC_CAPACITY),
    col("Access Modes", "string", docs::CORE_V1_PERSISTENTVOLUMESPEC_ACCESSMODES),
    col("Reclaim Policy", "string", docs::CORE_V1_PERSISTENTVOLUMESPEC_PERSISTENTVOLUMERECLAIMPOLICY),
    col("Status", "string", docs::CORE_V1_PERSISTENTVOLUMESTATUS_PHASE),
    col("Claim", "string", docs::CORE_V1_PERSISTENTVOLUMESPEC_CLAIMREF),
    col("StorageClass", "string", "StorageClass of the pv"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
    col("Reason", "string", docs::CORE_V1_PERSISTENTVOLUMESTATUS_REASON),
    AGE,
    wide("VolumeMode", "string", docs::CORE_V1_PERSISTENTVOLUMESPEC_VOLUMEMODE),
];

/// `helper.GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, each once.
fn access_modes(modes: J<'_>) -> String {
    let has = |m: &str| modes.items().any(|v| v.str() == m);
    let named = [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")];
    named.iter().filter(|(m, _)| has(m)).map(|(_, short)| *short).collect::<Vec<_>>().join(",")
}

const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn unset_if_absent(v: J<'_>) -> String {
    if v.present() {
        v.str().to_string()
    } else {
        "<unset>".into()
    }
}

pub(super) fn persistent_volume(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let spec = o.get("spec");
    let claim_ref = spec.get("claimRef");
    let claim =
        if claim_ref.present() { format!("{}/{}", claim_ref.get("namespace").str(), claim_ref.get("name").str()) } else { String::new() };
    let phase = if o.deleting() { "Terminating" } else { o.get("status.phase").str() };
    let class = match o.get("metadata.annotations").entry(BETA_STORAGE_CLASS) {
        Some(class) => class,
        None => spec.get("storageClassName").str(),
    };
    vec![
        s(o.name()),
        s(quantity(spec.get("capacity.storage").0)),
        s(access_modes(spec.get("accessModes"))),
        s(spec.get("persistentVolumeReclaimPolicy").str()),
        s(phase),
        s(claim),
        s(class),
        s(unset_if_absent(spec.get("volumeAttributesClassName"))),
        s(o.get("status.reason").str()),
        s(o.age(now)),
        s(unset_if_absent(spec.get("volumeMode"))),
    ]
}

pub(super) const PERSISTENT_VOLUME_CLAIM: &[Column] = &[
    NAME,
    col("Status", "string", docs::CORE_V1_PERSISTENTVOLUMECLAIMSTATUS_PHASE),
    col("Volume", "string", docs::CORE_V1_PERSISTENTVOLUMECLAIMSPEC_VOLUMENAME),
    col("Capacity", "string", docs::CORE_V1_PERSISTENTVOLUMECLAIMSTATUS_CAPACITY),
    col("Access Modes", "string", docs::CORE_V1_PERSISTENTVOLUMECLAIMSTATUS_ACCESSMODES),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
    AGE,
    wide("VolumeMode", "string", docs::CORE_V1_PERSISTENTVOLUMECLAIMSPEC_VOLUMEMODE),
];

pub(super) fn persistent_volume_claim(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let spec = o.get("spec");
    let status = o.get("status");
    let phase = if o.deleting() { "Terminating" } else { status.get("phase").str() };
    let volume = spec.get("volumeName").str();
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (quantity(status.get("capacity.storage").0), access_modes(status.get("accessModes")))
    };
    let class = match o.get("metadata.annotations").entry(BETA_STORAGE_CLASS) {
        Some(class) => class,
        None => spec.get("storageClassName").str(),
    };
    vec![
        s(o.name()),
        s(phase),
        s(volume),
        s(capacity),
        s(modes),
        s(class),
        s(unset_if_absent(spec.get("volumeAttributesClassName"))),
        s(o.age(now)),
        s(unset_if_absent(spec.get("volumeMode"))),
    ]
}

pub(super) const CONFIG_MAP: &[Column] = &[NAME, col("Data", "string", docs::CORE_V1_CONFIGMAP_DATA), AGE];

pub(super) fn config_map(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let count = o.get("data").map().map_or(0, |m| m.len()) + o.get("binaryData").map().map_or(0, |m| m.len());
    vec![s(o.name()), int(count as i64), s(o.age(now))]
}

pub(super) const RESOURCE_QUOTA: &[Column] = &[
    NAME,
    col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
    AGE,
];

/// `printResourceQuota`: `resource: used/hard` for every hard limit, `limits.*` in the Limit column.
pub(super) fn resource_quota(o: J<'_>, now: Timestamp) -> Vec<Value> {
    let hard: BTreeMap<&str, &Value> = o.get("status.hard").map().into_iter().flatten().map(|(k, v)| (k.as_str(), v)).collect();
    let used = o.get("status.used");
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for (resource, hard_qty) in hard {
        let text = format!("{resource}: {}/{}", quantity(used.key(resource).0), quantity(hard_qty));
        let mut pieces = resource.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limits.push(text);
        } else {
            requests.push(text);
        }
    }
    vec![s(o.name()), s(requests.join(", ")), s(limits.join(", ")), s(o.age(now))]
}
