//! Core-group defaults and validation: pods (and every pod template), services, namespaces,
//! config maps and secrets.

use serde_json::{json, Map, Value};

use super::{obj_at, set_default};
use crate::error::FieldError;
use crate::validation::is_dns1123_label;

fn s(v: &str) -> Value {
    Value::String(v.into())
}

/// The image's tag, or None for `latest`/untagged images (which default to Always pull).
fn pinned_tag(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag != "latest",
        None => false,
    }
}

fn default_container(c: &mut Map<String, Value>) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("").to_string();
    set_default(c, "imagePullPolicy", s(if pinned_tag(&image) { "IfNotPresent" } else { "Always" }));
    set_default(c, "terminationMessagePath", s("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", s("File"));
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", s("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                set_default(h, "path", s("/"));
                set_default(h, "scheme", s("HTTP"));
            }
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(f) = e.get_mut("valueFrom").and_then(|v| v.get_mut("fieldRef")).and_then(Value::as_object_mut) {
                set_default(f, "apiVersion", s("v1"));
            }
        }
    }
}

/// Pod spec defaults (upstream `SetDefaults_PodSpec`, `SetDefaults_Container`, …).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "restartPolicy", s("Always"));
    set_default(spec, "dnsPolicy", s("ClusterFirst"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", s("default-scheduler"));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default_container(c);
            }
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            for src in ["configMap", "secret", "downwardAPI", "projected"] {
                if let Some(m) = v.get_mut(src).and_then(Value::as_object_mut) {
                    set_default(m, "defaultMode", json!(0o644));
                }
            }
            if let Some(h) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
                set_default(h, "type", s(""));
            }
        }
    }
}

/// What admission adds to a Pod (not to pod templates): the ServiceAccount, the
/// DefaultTolerationSeconds tolerations, the Priority plugin's fields, and service links.
pub fn admit_pod_spec(spec: &mut Map<String, Value>, mirror: bool) {
    set_default(spec, "enableServiceLinks", json!(true));
    // ServiceAccount admission leaves mirror pods alone (the kubelet made them from files).
    if !mirror && !matches!(spec.get("serviceAccountName"), Some(Value::String(n)) if !n.is_empty()) {
        let sa = spec.get("serviceAccount").and_then(Value::as_str).filter(|n| !n.is_empty()).unwrap_or("default").to_string();
        spec.insert("serviceAccountName".into(), s(&sa));
    }
    if let Some(sa) = spec.get("serviceAccountName").cloned() {
        spec.insert("serviceAccount".into(), sa);
    }
    // DefaultTolerationSeconds: unless a toleration already covers the taint (its key, or any
    // key, with NoExecute or any effect).
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(ts) = tolerations.as_array_mut() {
        for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
            let covered = ts.iter().any(|t| {
                let k = t.get("key").and_then(Value::as_str).unwrap_or("");
                let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
                (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
            });
            if !covered {
                ts.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    set_default(spec, "priority", json!(0));
    set_default(spec, "preemptionPolicy", s("PreemptLowerPriority"));
}

/// The pod's QoS class from its containers' requests and limits (upstream `GetPodQOS`).
pub fn pod_qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        for res in ["cpu", "memory"] {
            let req = requests.and_then(|r| r.get(res)).filter(|q| !is_zero_quantity(q));
            let lim = limits.and_then(|l| l.get(res)).filter(|q| !is_zero_quantity(q));
            if req.is_some() || lim.is_some() {
                any = true;
            }
            match (req, lim) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r != l => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn is_zero_quantity(q: &Value) -> bool {
    match q {
        Value::String(s) => s.trim_start_matches('0').is_empty() || s.chars().all(|c| c == '0' || c == '.' || c.is_alphabetic()),
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => true,
    }
}

fn port_ok(v: &Value) -> bool {
    v.as_i64().is_some_and(|p| (1..=65535).contains(&p))
}

pub(super) fn validate_containers(list: &[Value], path: &str, errs: &mut Vec<FieldError>, names: &mut Vec<String>) {
    for (i, c) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required(format!("{at}.name"), "")),
            Some(n) => {
                for e in is_dns1123_label(n) {
                    errs.push(FieldError::invalid(format!("{at}.name"), &s(n), &e));
                }
                if names.iter().any(|x| x == n) {
                    errs.push(FieldError::duplicate(format!("{at}.name"), &s(n)));
                }
                names.push(n.to_string());
            }
        }
        if c.get("image").and_then(Value::as_str).is_none_or(|i| i.trim().is_empty()) {
            errs.push(FieldError::required(format!("{at}.image"), ""));
        }
        if let Some(ports) = c.get("ports").and_then(Value::as_array) {
            for (j, p) in ports.iter().enumerate() {
                let cp = p.get("containerPort").unwrap_or(&Value::Null);
                if !port_ok(cp) {
                    errs.push(FieldError::invalid(format!("{at}.ports[{j}].containerPort"), cp, "must be between 1 and 65535, inclusive"));
                }
                if let Some(hp) = p.get("hostPort").filter(|v| v.as_i64() != Some(0)) {
                    if !port_ok(hp) {
                        errs.push(FieldError::invalid(format!("{at}.ports[{j}].hostPort"), hp, "must be between 1 and 65535, inclusive"));
                    }
                }
                if let Some(proto) = p.get("protocol").and_then(Value::as_str) {
                    if !["TCP", "UDP", "SCTP"].contains(&proto) {
                        errs.push(FieldError::not_supported(format!("{at}.ports[{j}].protocol"), &s(proto), &["SCTP", "TCP", "UDP"]));
                    }
                }
            }
        }
        if let Some(policy) = c.get("imagePullPolicy").and_then(Value::as_str) {
            if !["Always", "IfNotPresent", "Never"].contains(&policy) {
                errs.push(FieldError::not_supported(format!("{at}.imagePullPolicy"), &s(policy), &["Always", "IfNotPresent", "Never"]));
            }
        }
    }
}

/// Pod spec validation (the checks users hit most; upstream `ValidatePodSpec`).
pub fn validate_pod_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = Vec::new();
    match spec.get("containers").and_then(Value::as_array) {
        Some(cs) if !cs.is_empty() => validate_containers(cs, &format!("{path}.containers"), &mut errs, &mut names),
        _ => errs.push(FieldError::required(format!("{path}.containers"), "")),
    }
    if let Some(cs) = spec.get("initContainers").and_then(Value::as_array) {
        validate_containers(cs, &format!("{path}.initContainers"), &mut errs, &mut names);
    }
    if let Some(p) = spec.get("restartPolicy").and_then(Value::as_str) {
        if !["Always", "OnFailure", "Never"].contains(&p) {
            errs.push(FieldError::not_supported(format!("{path}.restartPolicy"), &s(p), &["Always", "OnFailure", "Never"]));
        }
    }
    if let Some(p) = spec.get("dnsPolicy").and_then(Value::as_str) {
        if !["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"].contains(&p) {
            errs.push(FieldError::not_supported(format!("{path}.dnsPolicy"), &s(p), &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]));
        }
    }
    if let Some(g) = spec.get("terminationGracePeriodSeconds") {
        if !g.is_null() && g.as_i64().is_none_or(|g| g < 0) {
            errs.push(FieldError::invalid(format!("{path}.terminationGracePeriodSeconds"), g, "must be greater than or equal to 0"));
        }
    }
    if let Some(vols) = spec.get("volumes").and_then(Value::as_array) {
        let mut seen = Vec::new();
        for (i, v) in vols.iter().enumerate() {
            let n = v.get("name").and_then(Value::as_str).unwrap_or("");
            if n.is_empty() {
                errs.push(FieldError::required(format!("{path}.volumes[{i}].name"), ""));
            } else if seen.contains(&n) {
                errs.push(FieldError::duplicate(format!("{path}.volumes[{i}].name"), &s(n)));
            }
            seen.push(n);
        }
    }
    errs
}

/// Service defaults: type, session affinity, port protocols and target ports, IP families.
pub fn default_service(obj: &mut Value) {
    let Some(spec) = obj_at(obj, &["spec"]) else { return };
    set_default(spec, "type", s("ClusterIP"));
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if ty == "ExternalName" {
        return;
    }
    set_default(spec, "sessionAffinity", s("None"));
    set_default(spec, "internalTrafficPolicy", s("Cluster"));
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", s("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    set_default(spec, "ipFamilyPolicy", s("SingleStack"));
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", s("TCP"));
            if let Some(port) = p.get("port").cloned() {
                let unset = match p.get("targetPort") {
                    None | Some(Value::Null) => true,
                    Some(Value::Number(n)) => n.as_i64() == Some(0),
                    Some(Value::String(t)) => t.is_empty(),
                    _ => false,
                };
                if unset {
                    p.insert("targetPort".into(), port);
                }
            }
        }
    }
}

pub fn validate_service(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP");
    let types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !types.contains(&ty) {
        errs.push(FieldError::not_supported("spec.type", &s(ty), &types));
        return errs;
    }
    let ports = spec.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if ports.is_empty() && ty != "ExternalName" && !headless {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let port = p.get("port").unwrap_or(&Value::Null);
        if !port_ok(port) {
            errs.push(FieldError::invalid(format!("spec.ports[{i}].port"), port, "must be between 1 and 65535, inclusive"));
        }
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
        }
        if !name.is_empty() {
            if names.contains(&name) {
                errs.push(FieldError::duplicate(format!("spec.ports[{i}].name"), &s(name)));
            }
            names.push(name);
        }
        if let Some(proto) = p.get("protocol").and_then(Value::as_str) {
            if !["TCP", "UDP", "SCTP"].contains(&proto) {
                errs.push(FieldError::not_supported(format!("spec.ports[{i}].protocol"), &s(proto), &["SCTP", "TCP", "UDP"]));
            }
        }
        if let Some(np) = p.get("nodePort").filter(|v| !v.is_null() && v.as_i64() != Some(0)) {
            if ty == "ClusterIP" {
                errs.push(FieldError::forbidden(format!("spec.ports[{i}].nodePort"), "may not be used when `type` is 'ClusterIP'"));
            } else if !np.as_i64().is_some_and(|n| (30000..=32767).contains(&n)) {
                errs.push(FieldError::invalid(format!("spec.ports[{i}].nodePort"), np, "provided port is not in the valid range. The range of valid ports is 30000-32767"));
            }
        }
        match p.get("targetPort") {
            Some(Value::Number(n)) if !n.as_i64().is_some_and(|t| (1..=65535).contains(&t)) => {
                errs.push(FieldError::invalid(format!("spec.ports[{i}].targetPort"), &Value::Number(n.clone()), "must be between 1 and 65535, inclusive"))
            }
            Some(Value::String(t)) if !is_dns1123_label(t).is_empty() || t.len() > 15 => errs.push(FieldError::invalid(
                format!("spec.ports[{i}].targetPort"),
                &s(t),
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            )),
            _ => {}
        }
    }
    if let Some(ip) = spec.get("clusterIP").and_then(Value::as_str) {
        if !ip.is_empty() && ip != "None" && ip.parse::<std::net::Ipv4Addr>().is_err() {
            errs.push(FieldError::invalid("spec.clusterIP", &s(ip), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
        }
    }
    errs
}

pub fn validate_service_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let old_ip = old.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
    let new_ip = new.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
    if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
        return vec![FieldError::invalid("spec.clusterIPs[0]", &s(new_ip), "may not change once set")];
    }
    vec![]
}

pub fn default_namespace(obj: &mut Value) {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(labels) = obj_at(obj, &["metadata", "labels"]) {
        if !name.is_empty() {
            labels.insert("kubernetes.io/metadata.name".into(), s(&name));
        }
    }
    if let Some(spec) = obj_at(obj, &["spec"]) {
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
}

/// ConfigMap and Secret keys must be valid file names.
pub fn validate_data_keys(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for field in ["data", "binaryData", "stringData"] {
        if let Some(m) = obj.get(field).and_then(Value::as_object) {
            for k in m.keys() {
                let ok = !k.is_empty() && k.len() <= 253 && k.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) && k != "." && k != "..";
                if !ok {
                    errs.push(FieldError::invalid(
                        format!("{field}[{k}]"),
                        &s(k),
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    ));
                }
            }
        }
    }
    if let Some(v) = obj.get("data").and_then(Value::as_object) {
        for (k, val) in v {
            if !val.is_string() && !val.is_null() {
                errs.push(FieldError::invalid(format!("data[{k}]"), val, "must be a string"));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_by_tag() {
        let mut spec = json!({"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx:1.27"}, {"name": "c", "image": "localhost:5000/x:latest"}, {"name": "d", "image": "localhost:5000/x"}]});
        default_pod_spec(spec.as_object_mut().unwrap());
        admit_pod_spec(spec.as_object_mut().unwrap(), false);
        let policies: Vec<_> = spec["containers"].as_array().unwrap().iter().map(|c| c["imagePullPolicy"].as_str().unwrap()).collect();
        assert_eq!(policies, ["Always", "IfNotPresent", "Always", "Always"]);
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["serviceAccountName"], "default");
    }

    #[test]
    fn default_tolerations_unless_already_tolerated() {
        let mut plain = json!({"containers": []});
        admit_pod_spec(plain.as_object_mut().unwrap(), false);
        let keys: Vec<_> = plain["tolerations"].as_array().unwrap().iter().map(|t| (t["key"].as_str().unwrap(), t["tolerationSeconds"].as_i64())).collect();
        assert_eq!(keys, [("node.kubernetes.io/not-ready", Some(300)), ("node.kubernetes.io/unreachable", Some(300))]);
        // A mirror pod that tolerates every NoExecute taint gets neither, and no service account.
        let mut mirror = json!({"containers": [], "tolerations": [{"operator": "Exists", "effect": "NoExecute"}]});
        admit_pod_spec(mirror.as_object_mut().unwrap(), true);
        assert_eq!(mirror["tolerations"], json!([{"operator": "Exists", "effect": "NoExecute"}]));
        assert!(mirror.get("serviceAccountName").is_none());
    }

    #[test]
    fn qos() {
        assert_eq!(pod_qos_class(&json!({"containers": [{"name": "a"}]})), "BestEffort");
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(pod_qos_class(&g), "Guaranteed");
        assert_eq!(pod_qos_class(&json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]})), "Burstable");
    }

    #[test]
    fn pod_validation_messages() {
        let errs = validate_pod_spec(&json!({"containers": [{"name": "a"}, {"name": "a", "image": "x", "ports": [{"containerPort": 70000}]}]}), "spec");
        let msgs: Vec<_> = errs.iter().map(FieldError::full).collect();
        assert!(msgs.contains(&"spec.containers[0].image: Required value".to_string()), "{msgs:?}");
        assert!(msgs.contains(&"spec.containers[1].name: Duplicate value: \"a\"".to_string()), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.starts_with("spec.containers[1].ports[0].containerPort: Invalid value: 70000")), "{msgs:?}");
        assert_eq!(validate_pod_spec(&json!({}), "spec")[0].full(), "spec.containers: Required value");
    }

    #[test]
    fn service_defaults() {
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 8080}]}});
        default_service(&mut svc);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
        assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
    }
}

/// A Secret's `stringData` is write-only: upstream's conversion into the internal type merges
/// each entry into `data` (base64, overriding a `data` entry of the same key) and drops the
/// field, so nothing stores or answers it.
pub fn merge_string_data(obj: &mut Value) {
    use base64::Engine as _;
    let Some(m) = obj.as_object_mut() else { return };
    let Some(Value::Object(strings)) = m.remove("stringData") else { return };
    let data = m.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in strings {
            let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            data.insert(k, Value::String(base64::engine::general_purpose::STANDARD.encode(text)));
        }
    }
}

/// Upstream's SetDefaults_NetworkPolicySpec: no policyTypes means Ingress, plus Egress when
/// egress rules are given.
pub fn default_network_policy(obj: &mut Value) {
    let Some(spec) = obj_at(obj, &["spec"]) else { return };
    if spec.get("policyTypes").and_then(Value::as_array).is_some_and(|t| !t.is_empty()) {
        return;
    }
    let mut types = vec![s("Ingress")];
    if spec.get("egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty()) {
        types.push(s("Egress"));
    }
    spec.insert("policyTypes".into(), Value::Array(types));
}
