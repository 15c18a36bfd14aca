//! Test fixtures: pods and nodes from JSON merged onto small defaults, and a cache to schedule
//! them in.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use crate::cache::Cache;

pub fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// A pod `p` in `default` (uid = name) with one busybox container, `extra` merged in.
pub fn pod(extra: Value) -> Pod {
    let mut p = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    merge(&mut p, extra);
    if p["metadata"]["uid"].is_null() {
        let name = p["metadata"]["name"].clone();
        p["metadata"]["uid"] = name;
    }
    serde_json::from_value(p).expect("pod")
}

/// A pod named `name` with labels, bound to `node` ("" for pending), `extra` merged in.
pub fn pod_on(name: &str, node: &str, labels: Value, extra: Value) -> Pod {
    let mut p = json!({"metadata": {"name": name, "labels": labels}, "spec": {"nodeName": node}});
    merge(&mut p, extra);
    pod(p)
}

/// A Ready node with 2 CPUs, 4 GiB and its hostname label, `extra` merged in.
pub fn node(name: &str, extra: Value) -> Node {
    let mut n = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]},
    });
    merge(&mut n, extra);
    serde_json::from_value(n).expect("node")
}

/// A cache holding `nodes` and `pods`, and namespaces `default` and `other`.
pub fn cache(nodes: Vec<Node>, pods: Vec<Pod>) -> Cache {
    let mut c = Cache::default();
    c.apply_namespace("default".into(), [("kubernetes.io/metadata.name".to_string(), "default".to_string())].into());
    c.apply_namespace("other".into(), [("kubernetes.io/metadata.name".to_string(), "other".to_string()), ("team".to_string(), "blue".to_string())].into());
    for n in nodes {
        c.apply_node(Arc::new(n));
    }
    for p in pods {
        c.apply_pod(Arc::new(p));
    }
    c
}
