//! `autoscaling/v1` HorizontalPodAutoscalers, stored as `autoscaling/v2` (as upstream).
//!
//! v1 only knows a CPU utilization target; everything else v2 holds travels in the v1 object's
//! annotations, in the form upstream writes them (`pkg/apis/autoscaling/v1/conversion.go`):
//! the other metrics and current metrics as v1 `MetricSpec`/`MetricStatus` lists, the
//! conditions and the behavior as JSON. A v1 client that sends the annotations back thus
//! round-trips every v2 field.

use serde_json::{json, Map, Value};

pub const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
pub const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
pub const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
pub const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// Upstream's `autoscaling.DefaultCPUUtilization`: what a v1 HPA without a target scales on.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

fn is_cpu_resource(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("Resource") && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
}

/// Moves `from[a]` to `to[b]` when present and not null.
fn mv(from: &Value, a: &str, to: &mut Map<String, Value>, b: &str) {
    if let Some(v) = from.pointer(a).filter(|v| !v.is_null()) {
        to.insert(b.into(), v.clone());
    }
}

fn object(m: Map<String, Value>) -> Value {
    Value::Object(m)
}

/// A v2 `MetricSpec` (`side` "target") or `MetricStatus` (`side` "current") as the v1 one of
/// the annotations: v1 names the values after the side (`targetValue`, `currentAverageValue`),
/// except an Object metric's `averageValue`.
fn metric_to_v1(m: &Value, side: &str) -> Value {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    let mut src = Map::new();
    match ty {
        "Object" => {
            mv(m, "/object/describedObject", &mut src, "target");
            mv(m, "/object/metric/name", &mut src, "metricName");
            mv(m, &format!("/object/{side}/value"), &mut src, &format!("{side}Value"));
            mv(m, "/object/metric/selector", &mut src, "selector");
            mv(m, &format!("/object/{side}/averageValue"), &mut src, "averageValue");
            out.insert("object".into(), object(src));
        }
        "Pods" => {
            mv(m, "/pods/metric/name", &mut src, "metricName");
            mv(m, &format!("/pods/{side}/averageValue"), &mut src, &format!("{side}AverageValue"));
            mv(m, "/pods/metric/selector", &mut src, "selector");
            out.insert("pods".into(), object(src));
        }
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" { "resource" } else { "containerResource" };
            mv(m, &format!("/{key}/name"), &mut src, "name");
            mv(m, &format!("/{key}/{side}/averageUtilization"), &mut src, &format!("{side}AverageUtilization"));
            mv(m, &format!("/{key}/{side}/averageValue"), &mut src, &format!("{side}AverageValue"));
            mv(m, &format!("/{key}/container"), &mut src, "container");
            out.insert(key.into(), object(src));
        }
        "External" => {
            mv(m, "/external/metric/name", &mut src, "metricName");
            mv(m, "/external/metric/selector", &mut src, "metricSelector");
            mv(m, &format!("/external/{side}/value"), &mut src, &format!("{side}Value"));
            mv(m, &format!("/external/{side}/averageValue"), &mut src, &format!("{side}AverageValue"));
            out.insert("external".into(), object(src));
        }
        _ => {}
    }
    object(out)
}

/// The v2 `MetricTarget` of a v1 source: utilization, else a value, else an average value.
fn target(m: &Value, utilization: &str, value: &str, average: &str) -> Value {
    let mut t = Map::new();
    if let Some(u) = m.get(utilization).filter(|v| !v.is_null()) {
        t.insert("type".into(), json!("Utilization"));
        t.insert("averageUtilization".into(), u.clone());
    } else if let Some(v) = m.get(value).filter(|v| !v.is_null()) {
        t.insert("type".into(), json!("Value"));
        t.insert("value".into(), v.clone());
    } else if let Some(v) = m.get(average).filter(|v| !v.is_null()) {
        t.insert("type".into(), json!("AverageValue"));
        t.insert("averageValue".into(), v.clone());
    }
    object(t)
}

fn metric_id(src: &Value, name: &str, selector: &str) -> Value {
    let mut id = Map::new();
    mv(src, &format!("/{name}"), &mut id, "name");
    mv(src, &format!("/{selector}"), &mut id, "selector");
    object(id)
}

/// A v1 `MetricSpec` of the annotation as the v2 `MetricSpec` it stands for.
fn spec_from_v1(m: &Value) -> Value {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let null = Value::Null;
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    match ty {
        "Object" => {
            let s = m.get("object").unwrap_or(&null);
            let mut o = Map::new();
            mv(s, "/target", &mut o, "describedObject");
            o.insert("metric".into(), metric_id(s, "metricName", "selector"));
            o.insert("target".into(), target(s, "", "targetValue", "averageValue"));
            out.insert("object".into(), object(o));
        }
        "Pods" => {
            let s = m.get("pods").unwrap_or(&null);
            let o = json!({"metric": metric_id(s, "metricName", "selector"), "target": target(s, "", "", "targetAverageValue")});
            out.insert("pods".into(), o);
        }
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" { "resource" } else { "containerResource" };
            let s = m.get(key).unwrap_or(&null);
            let mut o = Map::new();
            mv(s, "/name", &mut o, "name");
            mv(s, "/container", &mut o, "container");
            o.insert("target".into(), target(s, "targetAverageUtilization", "", "targetAverageValue"));
            out.insert(key.into(), object(o));
        }
        "External" => {
            let s = m.get("external").unwrap_or(&null);
            let o = json!({"metric": metric_id(s, "metricName", "metricSelector"), "target": target(s, "", "targetValue", "targetAverageValue")});
            out.insert("external".into(), o);
        }
        _ => {}
    }
    object(out)
}

fn current(s: &Value, pairs: &[(&str, &str)]) -> Value {
    let mut c = Map::new();
    for (a, b) in pairs {
        mv(s, &format!("/{a}"), &mut c, b);
    }
    object(c)
}

/// A v1 `MetricStatus` as a v2 one.
fn status_from_v1(m: &Value) -> Value {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let null = Value::Null;
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    match ty {
        "Object" => {
            let s = m.get("object").unwrap_or(&null);
            let mut o = Map::new();
            mv(s, "/target", &mut o, "describedObject");
            o.insert("metric".into(), metric_id(s, "metricName", "selector"));
            o.insert("current".into(), current(s, &[("currentValue", "value"), ("averageValue", "averageValue")]));
            out.insert("object".into(), object(o));
        }
        "Pods" => {
            let s = m.get("pods").unwrap_or(&null);
            out.insert("pods".into(), json!({"metric": metric_id(s, "metricName", "selector"), "current": current(s, &[("currentAverageValue", "averageValue")])}));
        }
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" { "resource" } else { "containerResource" };
            let s = m.get(key).unwrap_or(&null);
            let mut o = Map::new();
            mv(s, "/name", &mut o, "name");
            mv(s, "/container", &mut o, "container");
            o.insert("current".into(), current(s, &[("currentAverageUtilization", "averageUtilization"), ("currentAverageValue", "averageValue")]));
            out.insert(key.into(), object(o));
        }
        "External" => {
            let s = m.get("external").unwrap_or(&null);
            out.insert(
                "external".into(),
                json!({"metric": metric_id(s, "metricName", "metricSelector"), "current": current(s, &[("currentValue", "value"), ("currentAverageValue", "averageValue")])}),
            );
        }
        _ => {}
    }
    object(out)
}

fn list(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The annotation's JSON list, or nothing when it is absent or not JSON (as a client
/// editing the annotation by hand may leave it).
fn annotation_list(annotations: &Map<String, Value>, key: &str) -> Option<Vec<Value>> {
    let s = annotations.get(key)?.as_str()?;
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Array(a)) => Some(a),
        _ => None,
    }
}

/// The served `autoscaling/v1` form of a stored `autoscaling/v2` object.
pub fn from_storage(obj: &Value, api_version: &str) -> Value {
    let mut out = obj.clone();
    let Some(o) = out.as_object_mut() else { return out };
    o.insert("apiVersion".into(), json!(api_version));
    let mut annotations: Map<String, Value> = Map::new();

    if let Some(Value::Object(spec)) = o.get_mut("spec") {
        let metrics = spec.remove("metrics");
        let metrics = list(metrics.as_ref());
        // The first CPU resource metric is the v1 target, if it is a utilization.
        if let Some(u) = metrics.iter().find(|m| is_cpu_resource(m)).and_then(|m| m.pointer("/resource/target/averageUtilization")) {
            spec.insert("targetCPUUtilizationPercentage".into(), u.clone());
        }
        let others: Vec<Value> = metrics
            .iter()
            .filter(|m| !(is_cpu_resource(m) && m.pointer("/resource/target/averageUtilization").is_some_and(|u| !u.is_null())))
            .map(|m| metric_to_v1(m, "target"))
            .collect();
        if !others.is_empty() {
            annotations.insert(METRICS.into(), json!(Value::Array(others).to_string()));
        }
        if let Some(b) = spec.remove("behavior").filter(|b| !b.is_null()) {
            annotations.insert(BEHAVIOR.into(), json!(b.to_string()));
        }
    }
    if let Some(Value::Object(status)) = o.get_mut("status") {
        let metrics = status.remove("currentMetrics");
        let metrics = list(metrics.as_ref());
        if let Some(u) = metrics.iter().find(|m| is_cpu_resource(m)).and_then(|m| m.pointer("/resource/current/averageUtilization")).filter(|u| !u.is_null()) {
            status.insert("currentCPUUtilizationPercentage".into(), u.clone());
        }
        // All of them, the CPU one too: its raw value is only here.
        if !metrics.is_empty() {
            let v1: Vec<Value> = metrics.iter().map(|m| metric_to_v1(m, "current")).collect();
            annotations.insert(CURRENT_METRICS.into(), json!(Value::Array(v1).to_string()));
        }
        let conditions = status.remove("conditions");
        if !list(conditions.as_ref()).is_empty() {
            annotations.insert(CONDITIONS.into(), json!(conditions.unwrap_or_default().to_string()));
        }
    }
    if !annotations.is_empty() {
        let meta = o.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            let a = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = a.as_object_mut() {
                a.extend(annotations);
            }
        }
    }
    // Fields v1 always writes that v2 may omit (status.currentReplicas).
    let (group, version) = api_version.split_once('/').unwrap_or(("autoscaling", "v1"));
    timonier_api::gojson::normalize(group, version, "HorizontalPodAutoscaler", &mut out);
    out
}

/// The stored `autoscaling/v2` form of a served `autoscaling/v1` object.
pub fn to_storage(obj: Value) -> Value {
    let mut out = obj;
    let Some(o) = out.as_object_mut() else { return out };
    o.insert("apiVersion".into(), json!("autoscaling/v2"));
    // The round-trip annotations become fields again and are not stored.
    let mut annotations = Map::new();
    if let Some(Value::Object(a)) = o.get_mut("metadata").and_then(|m| m.get_mut("annotations")) {
        for k in [METRICS, CURRENT_METRICS, CONDITIONS, BEHAVIOR] {
            if let Some(v) = a.remove(k) {
                annotations.insert(k.into(), v);
            }
        }
        let empty = a.is_empty();
        if empty {
            if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("annotations");
            }
        }
    }

    if let Some(Value::Object(spec)) = o.get_mut("spec") {
        let mut metrics = Vec::new();
        if let Some(u) = spec.remove("targetCPUUtilizationPercentage").filter(|u| !u.is_null()) {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": u}}}));
        }
        metrics.extend(annotation_list(&annotations, METRICS).unwrap_or_default().iter().map(spec_from_v1));
        // v1 once had an implicit CPU target applied by the controller; v2 makes it explicit.
        if metrics.is_empty() {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}));
        }
        spec.insert("metrics".into(), Value::Array(metrics));
        if let Some(b) = annotations.get(BEHAVIOR).and_then(Value::as_str).and_then(|s| serde_json::from_str::<Value>(s).ok()) {
            spec.insert("behavior".into(), b);
        }
    }
    if let Some(Value::Object(status)) = o.get_mut("status") {
        let cpu = status.remove("currentCPUUtilizationPercentage").filter(|u| !u.is_null());
        // The annotation has more than the CPU percentage: it wins.
        let metrics: Vec<Value> = match annotation_list(&annotations, CURRENT_METRICS) {
            Some(ms) => ms.iter().map(status_from_v1).collect(),
            None => cpu.map(|u| vec![json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}})]).unwrap_or_default(),
        };
        if !metrics.is_empty() {
            status.insert("currentMetrics".into(), Value::Array(metrics));
        }
        if let Some(c) = annotation_list(&annotations, CONDITIONS) {
            status.insert("conditions".into(), Value::Array(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_target_round_trips() {
        let v1 = json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50},
        });
        let v2 = to_storage(v1.clone());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(v2["spec"]["metrics"], json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]));
        assert!(v2["spec"].get("targetCPUUtilizationPercentage").is_none());
        let back = from_storage(&v2, "autoscaling/v1");
        assert_eq!(back["spec"], v1["spec"]);
        assert!(back["metadata"].get("annotations").is_none());
    }

    #[test]
    fn no_target_is_the_default_cpu_target() {
        let v2 = to_storage(json!({"metadata": {"name": "x"}, "spec": {"maxReplicas": 3}}));
        assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80);
    }

    #[test]
    fn other_metrics_status_and_behavior_travel_in_annotations() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "a"}}}, "target": {"type": "Value", "value": "30"}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 2,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40, "averageValue": "200m"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            },
        });
        let v1 = from_storage(&v2, "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 40);
        let a = &v1["metadata"]["annotations"];
        assert_eq!(a["team"], "a");
        let others: Value = serde_json::from_str(a[METRICS].as_str().unwrap()).unwrap();
        assert_eq!(others[0], json!({"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}}));
        assert_eq!(others[1], json!({"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}}));
        assert!(a.get(CONDITIONS).is_some() && a.get(BEHAVIOR).is_some() && a.get(CURRENT_METRICS).is_some());
        assert!(v1["spec"].get("metrics").is_none() && v1["status"].get("conditions").is_none());
        // And back: every v2 field restored, the round-trip annotations gone (the v1 view
        // has Go's zero fields, such as a null creationTimestamp, added).
        let mut back = to_storage(v1);
        back["metadata"].as_object_mut().unwrap().remove("creationTimestamp");
        assert_eq!(back, v2);
    }
}
