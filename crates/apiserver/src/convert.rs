//! Conversion between the served and stored forms of kinds served in two groups: an
//! `events.k8s.io/v1` Event is stored as the `v1` Event it is equivalent to (as upstream), so
//! that events recorded by either API are listed by both — `kubectl describe` reads `v1`,
//! client libraries' event recorders write `events.k8s.io/v1`.

use serde_json::{json, Map, Value};
use timonier_api::resources::ResourceDef;

/// Whether a resource is served in a form other than the stored one.
pub fn converts(def: &ResourceDef) -> bool {
    def.group == "events.k8s.io"
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
