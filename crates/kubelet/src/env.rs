//! A container's environment and command line, as the kubelet builds them: service links,
//! `env` (values with `$(VAR)` references, fieldRef, resourceFieldRef, configMapKeyRef,
//! secretKeyRef) and `envFrom`, then `command`/`args` expanded against the result.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

/// What a container's environment may refer to, fetched before it is built.
#[derive(Default)]
pub struct EnvSources {
    pub configmaps: HashMap<String, ConfigMap>,
    pub secrets: HashMap<String, Secret>,
    /// Services of the pod's namespace, plus `kubernetes` of `default`.
    pub services: Vec<Service>,
    pub pod_ip: String,
    pub host_ip: String,
    pub node_name: String,
    /// Node allocatable cpu (cores) and memory (bytes): the default for unset limits.
    pub node_cpu: f64,
    pub node_memory: f64,
}

/// Why a container's configuration cannot be built: the kubelet reports it as
/// `CreateContainerConfigError` with this message.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

/// The names of the ConfigMaps and Secrets a container's environment refers to.
pub fn referenced_objects(c: &Container) -> (Vec<String>, Vec<String>) {
    let (mut cms, mut secrets) = (vec![], vec![]);
    for e in c.env.iter().flatten() {
        if let Some(src) = &e.value_from {
            if let Some(r) = &src.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &src.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for f in c.env_from.iter().flatten() {
        if let Some(r) = &f.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &f.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    (cms, secrets)
}

fn service_env(services: &[Service], out: &mut Vec<(String, String)>) {
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = svc.metadata.name.clone().unwrap_or_default().to_uppercase().replace('-', "_");
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        out.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((format!("{name}_SERVICE_PORT_{}", pn.to_uppercase().replace('-', "_")), p.port.to_string()));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
        out.push((format!("{name}_PORT"), format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port)));
        for p in &ports {
            let pr = proto(p);
            let prefix = format!("{name}_PORT_{}_{pr}", p.port);
            out.push((prefix.clone(), format!("{}://{ip}:{}", pr.to_lowercase(), p.port)));
            out.push((format!("{prefix}_PROTO"), pr.to_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.clone()));
        }
    }
}

/// Expands `$(NAME)` with `vars`; `$$` is a literal `$`, and unknown references stay as
/// written — upstream's `expansion.Expand`.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match vars.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Parses a Kubernetes quantity (`100m`, `1.5`, `128Mi`, `1G`, `1e3`) into base units.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E').unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(n * mult)
}

fn field_ref(pod: &Pod, path: &str, src: &EnvSources) -> Result<String, ConfigError> {
    let m = &pod.metadata;
    let map_value = |map: &Option<BTreeMap<String, String>>, key: &str| map.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default();
    let subscript = |prefix: &str| path.strip_prefix(prefix).and_then(|r| r.strip_prefix("['")).and_then(|r| r.strip_suffix("']"));
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => src.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => src.host_ip.clone(),
        "status.podIP" | "status.podIPs" => src.pod_ip.clone(),
        _ => {
            if let Some(k) = subscript("metadata.labels") {
                map_value(&m.labels, k)
            } else if let Some(k) = subscript("metadata.annotations") {
                map_value(&m.annotations, k)
            } else {
                return Err(ConfigError(format!("unsupported fieldPath: {path}")));
            }
        }
    })
}

/// `resourceFieldRef`: a container's request or limit divided by `divisor`, rounded up;
/// unset limits default to the node's allocatable, as upstream.
pub fn resource_field(c: &Container, resource: &str, divisor: Option<&str>, src: &EnvSources) -> Result<String, ConfigError> {
    let res = c.resources.as_ref();
    let get = |which: &str, name: &str| {
        let map = if which == "limits" { res.and_then(|r| r.limits.as_ref()) } else { res.and_then(|r| r.requests.as_ref()) };
        map.and_then(|m| m.get(name)).and_then(|q| parse_quantity(&q.0))
    };
    let (which, name) = resource.split_once('.').ok_or_else(|| ConfigError(format!("unsupported container resource: {resource}")))?;
    let value = match (which, name) {
        ("limits", "cpu") => get("limits", "cpu").unwrap_or(src.node_cpu),
        ("limits", "memory") => get("limits", "memory").unwrap_or(src.node_memory),
        ("limits", "ephemeral-storage") => get("limits", "ephemeral-storage").unwrap_or(0.0),
        ("requests", r) => get("requests", r).or_else(|| get("limits", r)).unwrap_or(0.0),
        _ => return Err(ConfigError(format!("unsupported container resource: {resource}"))),
    };
    let divisor = divisor.and_then(parse_quantity).filter(|d| *d > 0.0).unwrap_or(1.0);
    Ok(format!("{}", (value / divisor).ceil() as i64))
}

fn configmap_value(src: &EnvSources, ns: &str, name: &str, key: &str, optional: bool) -> Result<Option<String>, ConfigError> {
    match src.configmaps.get(name) {
        None if optional => Ok(None),
        None => Err(ConfigError(format!("configmap \"{name}\" not found"))),
        Some(cm) => {
            let v = cm.data.as_ref().and_then(|d| d.get(key).cloned()).or_else(|| {
                cm.binary_data.as_ref().and_then(|d| d.get(key)).map(|b| String::from_utf8_lossy(&b.0).into_owned())
            });
            match v {
                Some(v) => Ok(Some(v)),
                None if optional => Ok(None),
                None => Err(ConfigError(format!("couldn't find key {key} in ConfigMap {ns}/{name}"))),
            }
        }
    }
}

fn secret_value(src: &EnvSources, ns: &str, name: &str, key: &str, optional: bool) -> Result<Option<String>, ConfigError> {
    match src.secrets.get(name) {
        None if optional => Ok(None),
        None => Err(ConfigError(format!("secret \"{name}\" not found"))),
        Some(s) => {
            let v = s.data.as_ref().and_then(|d| d.get(key)).map(|b| String::from_utf8_lossy(&b.0).into_owned());
            let v = v.or_else(|| s.string_data.as_ref().and_then(|d| d.get(key).cloned()));
            match v {
                Some(v) => Ok(Some(v)),
                None if optional => Ok(None),
                None => Err(ConfigError(format!("couldn't find key {key} in Secret {ns}/{name}"))),
            }
        }
    }
}

/// The container's environment in order (service links, envFrom, env), later entries
/// overriding earlier ones with the same name.
pub fn container_env(pod: &Pod, c: &Container, src: &EnvSources) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let services: Vec<Service> = if links {
        src.services.clone()
    } else {
        src.services.iter().filter(|s| s.metadata.name.as_deref() == Some("kubernetes") && s.metadata.namespace.as_deref() == Some("default")).cloned().collect()
    };
    service_env(&services, &mut out);
    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        if let Some(r) = &f.config_map_ref {
            match src.configmaps.get(&r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        out.push((format!("{prefix}{k}"), v.clone()));
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
            }
        }
        if let Some(r) = &f.secret_ref {
            match src.secrets.get(&r.name) {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        out.push((format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned()));
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
            }
        }
    }
    let mut vars: HashMap<String, String> = out.iter().cloned().collect();
    for e in c.env.iter().flatten() {
        let value = if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                Some(field_ref(pod, &f.field_path, src)?)
            } else if let Some(r) = &from.resource_field_ref {
                Some(resource_field(c, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()), src)?)
            } else if let Some(r) = &from.config_map_key_ref {
                configmap_value(src, &ns, &r.name, &r.key, r.optional == Some(true))?
            } else if let Some(r) = &from.secret_key_ref {
                secret_value(src, &ns, &r.name, &r.key, r.optional == Some(true))?
            } else {
                None
            }
        } else {
            Some(expand(e.value.as_deref().unwrap_or(""), &vars))
        };
        if let Some(v) = value {
            vars.insert(e.name.clone(), v.clone());
            out.push((e.name.clone(), v));
        }
    }
    // Keep the last value of each name, in first-seen order.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut dedup: Vec<(String, String)> = Vec::new();
    for (k, v) in out {
        match seen.get(&k) {
            Some(&i) => dedup[i].1 = v,
            None => {
                seen.insert(k.clone(), dedup.len());
                dedup.push((k, v));
            }
        }
    }
    Ok(dedup)
}

/// The process to run: `command` replaces the image's ENTRYPOINT, `args` its CMD (and a
/// `command` alone drops the CMD), each expanded against the container's environment.
pub fn command_line(c: &Container, entrypoint: &[String], cmd: &[String], env: &[(String, String)]) -> Vec<String> {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let (ep, args): (Vec<String>, Vec<String>) = match (&c.command, &c.args) {
        (Some(command), Some(args)) => (command.clone(), args.clone()),
        (Some(command), None) => (command.clone(), vec![]),
        (None, Some(args)) => (entrypoint.to_vec(), args.clone()),
        (None, None) => (entrypoint.to_vec(), cmd.to_vec()),
    };
    let expand_all = |v: Vec<String>, expanding: bool| -> Vec<String> {
        if expanding {
            v.iter().map(|s| expand(s, &vars)).collect()
        } else {
            v
        }
    };
    let mut out = expand_all(ep, c.command.is_some());
    out.extend(expand_all(args, c.args.is_some()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion_follows_upstream() {
        let vars: HashMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$(A", &vars), "$(A");
        assert_eq!(expand("é$", &vars), "é$");
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("128Mi"), Some(134217728.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("x"), None);
    }

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web"}},
            "spec": {"containers": containers}}))
        .unwrap()
    }

    #[test]
    fn env_sources_and_errors() {
        let p = pod(json!([{"name": "c", "image": "i", "env": [
            {"name": "A", "value": "a"},
            {"name": "B", "value": "$(A)-b"},
            {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "M", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        ]}]));
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "my-svc", "namespace": "ns"},
            "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})).unwrap();
        let src = EnvSources { pod_ip: "10.244.0.2".into(), node_memory: 1024.0 * 1024.0 * 1024.0, services: vec![svc], ..Default::default() };
        let c = &p.spec.as_ref().unwrap().containers[0];
        let env: HashMap<String, String> = container_env(&p, c, &src).unwrap().into_iter().collect();
        assert_eq!(env["B"], "a-b");
        assert_eq!(env["N"], "p");
        assert_eq!(env["L"], "web");
        assert_eq!(env["IP"], "10.244.0.2");
        assert_eq!(env["M"], "1024");
        assert_eq!(env["MY_SVC_SERVICE_HOST"], "10.96.0.5");
        assert_eq!(env["MY_SVC_SERVICE_PORT_HTTP"], "80");
        assert_eq!(env["MY_SVC_PORT_80_TCP_ADDR"], "10.96.0.5");
        assert_eq!(env["MY_SVC_PORT"], "tcp://10.96.0.5:80");

        let p = pod(json!([{"name": "c", "image": "i", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}]));
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(container_env(&p, c, &EnvSources::default()).unwrap_err().0, "configmap \"cm\" not found");
    }

    #[test]
    fn command_and_args_replace_the_image() {
        let c: Container = serde_json::from_value(json!({"name": "c", "args": ["$(X)"]})).unwrap();
        let env = vec![("X".to_string(), "1".to_string())];
        assert_eq!(command_line(&c, &["ep".into()], &["cmd".into()], &env), vec!["ep", "1"]);
        let c: Container = serde_json::from_value(json!({"name": "c", "command": ["sh"]})).unwrap();
        assert_eq!(command_line(&c, &["ep".into()], &["cmd".into()], &env), vec!["sh"]);
        let c: Container = serde_json::from_value(json!({"name": "c"})).unwrap();
        assert_eq!(command_line(&c, &["ep".into()], &["cmd".into()], &env), vec!["ep", "cmd"]);
    }
}
