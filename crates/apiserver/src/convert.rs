//! Conversion between the served and stored forms of kinds served in two groups: an
//! `events.k8s.io/v1` Event is stored as the `v1` Event it is equivalent to (as upstream), so
//! that events recorded by either API are listed by both — `kubectl describe` reads `v1`,
//! client libraries' event recorders write `events.k8s.io/v1`. `autoscaling/v1`
//! HorizontalPodAutoscalers are stored as `autoscaling/v2` ones (`hpa.rs`).

mod hpa;

use serde_json::{json, Map, Value};
use timonier_api::resources::ResourceDef;

fn is_hpa_v1(def: &ResourceDef) -> bool {
    def.group == "autoscaling" && def.version == "v1" && def.plural == "horizontalpodautoscalers"
}

/// Whether a resource is served in a form other than the stored one.
pub fn converts(def: &ResourceDef) -> bool {
    def.group == "events.k8s.io" || is_hpa_v1(def)
}

/// The group, version and resource whose form is stored, for a resource that converts.
pub fn storage_of(def: &ResourceDef) -> Option<(&'static str, &'static str, &'static str)> {
    if def.group == "events.k8s.io" {
        Some(("", "v1", "events"))
    } else if is_hpa_v1(def) {
        Some(("autoscaling", "v2", "horizontalpodautoscalers"))
    } else {
        None
    }
}

/// Whether tables print the stored form: upstream prints HPAs from the internal version,
/// whose metrics only v2 has (a v1 view would print `<none>` targets).
pub fn prints_stored(def: &ResourceDef) -> bool {
    is_hpa_v1(def)
}

fn mv(from: &mut Map<String, Value>, to: &mut Map<String, Value>, a: &str, b: &str) {
    if let Some(v) = from.remove(a) {
        if !v.is_null() {
            to.insert(b.into(), v);
        }
    }
}

/// The stored (`v1`) form of a served object.
pub fn to_storage(def: &ResourceDef, obj: Value) -> Value {
    if !converts(def) {
        return obj;
    }
    if is_hpa_v1(def) {
        return hpa::to_storage(obj);
    }
    let Value::Object(mut src) = obj else { return obj };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    src.remove("apiVersion");
    src.remove("kind");
    for (a, b) in [
        ("metadata", "metadata"),
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("reason", "reason"),
        ("type", "type"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("related", "related"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ] {
        mv(&mut src, &mut out, a, b);
    }
    if let Some(Value::Object(mut series)) = src.remove("series") {
        let mut s = Map::new();
        mv(&mut series, &mut s, "count", "count");
        mv(&mut series, &mut s, "lastObservedTime", "lastObservedTime");
        out.insert("series".into(), Value::Object(s));
    }
    out.entry("involvedObject").or_insert_with(|| json!({}));
    Value::Object(out)
}

/// The served form of a stored object.
pub fn from_storage(def: &ResourceDef, obj: &Value) -> Value {
    if !converts(def) {
        return obj.clone();
    }
    if is_hpa_v1(def) {
        return hpa::from_storage(obj, &def.api_version());
    }
    let Some(src) = obj.as_object() else { return obj.clone() };
    let mut src = src.clone();
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(def.api_version()));
    out.insert("kind".into(), json!("Event"));
    src.remove("apiVersion");
    src.remove("kind");
    for (a, b) in [
        ("metadata", "metadata"),
        ("involvedObject", "regarding"),
        ("message", "note"),
        ("reason", "reason"),
        ("type", "type"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("related", "related"),
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
        ("series", "series"),
    ] {
        mv(&mut src, &mut out, a, b);
    }
    // eventTime is required in events.k8s.io/v1; old v1 events only have timestamps.
    if !out.contains_key("eventTime") {
        let t = out.get("deprecatedFirstTimestamp").cloned().or_else(|| obj.pointer("/metadata/creationTimestamp").cloned());
        if let Some(Value::String(t)) = t {
            out.insert("eventTime".into(), json!(t.replace('Z', ".000000Z")));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let defs = timonier_api::resources::builtin();
        let ev = defs.iter().find(|d| d.group == "events.k8s.io").unwrap();
        let served = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": "default"},
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
            "note": "Pulled image", "reason": "Pulled", "type": "Normal",
            "eventTime": "2026-11-25T10:00:00.000000Z", "reportingController": "kubelet", "reportingInstance": "node-1",
            "series": {"count": 2, "lastObservedTime": "2026-11-25T10:01:00.000000Z"},
        });
        let stored = to_storage(ev, served.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "web");
        assert_eq!(stored["message"], "Pulled image");
        assert_eq!(stored["reportingComponent"], "kubelet");
        assert_eq!(from_storage(ev, &stored), served);
    }
}
