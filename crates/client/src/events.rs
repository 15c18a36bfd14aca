//! Events about pods, written as core/v1 Events the way Kubernetes components' recorders do:
//! one object per (pod, reason, message), whose `count` and `lastTimestamp` grow when it
//! repeats, so that `kubectl describe pod` shows `Warning BackOff 3m (x12 over 5m)` and, in
//! its "From" column, the component (`kubelet`, `default-scheduler`).

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;


use crate::now_rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// (pod uid + field path, reason, message): what makes two events the same event.
type EventKey = (String, String, String);

pub struct Recorder {
    client: Client,
    /// `source.component`: who reports (`kubelet`, `default-scheduler`).
    component: String,
    /// `source.host`: the node of a node-level component.
    host: Option<String>,
    /// The name and count of each event already written, by its identity.
    seen: Mutex<HashMap<EventKey, (String, i32)>>,
}

impl Recorder {
    pub fn new(client: Client, component: &str, host: Option<&str>) -> Recorder {
        Recorder { client, component: component.to_string(), host: host.map(str::to_string), seen: Mutex::new(HashMap::new()) }
    }

    /// Records an event about `pod`, optionally about one of its containers (`field_path`
    /// such as `spec.containers{web}`). Failures are logged, never returned: an event that
    /// cannot be written must not stop the pod.
    pub async fn pod_event(&self, pod: &Pod, field_path: Option<String>, kind: EventType, reason: &str, message: &str) {
        self.event(pod, field_path, kind, reason, message).await
    }

    /// Records an event about any namespaced object (a ReplicaSet, a Deployment…), as
    /// [`Recorder::pod_event`] does about pods.
    pub async fn event<K: kube::Resource<DynamicType = ()>>(&self, obj: &K, field_path: Option<String>, kind: EventType, reason: &str, message: &str) {
        let meta = obj.meta();
        let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let pod_name = meta.name.clone().unwrap_or_default();
        let uid = meta.uid.clone().unwrap_or_default();
        let key = (format!("{uid}/{}", field_path.as_deref().unwrap_or("")), reason.to_string(), message.to_string());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = now_rfc3339();
        let previous = self.seen.lock().ok().and_then(|s| s.get(&key).cloned());
        if let Some((name, count)) = previous {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            if api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                if let Ok(mut s) = self.seen.lock() {
                    s.insert(key, (name, count + 1));
                }
                return;
            }
        }
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let name = format!("{pod_name}.{:x}", nanos as u64);
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                // A cluster-scoped object (a Node) has no namespace; its events live in `default`.
                "apiVersion": K::api_version(&()), "kind": K::kind(&()), "name": pod_name, "namespace": meta.namespace, "uid": uid,
                "resourceVersion": meta.resource_version.clone().unwrap_or_default(),
                "fieldPath": field_path,
            },
            "reason": reason,
            "message": message,
            "type": if kind == EventType::Normal { "Normal" } else { "Warning" },
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": self.host.as_deref().unwrap_or(&self.component),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        let event: Event = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build an event");
                return;
            }
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if let Ok(mut s) = self.seen.lock() {
                    s.insert(key, (name, 1));
                }
            }
            Err(e) => tracing::debug!(pod = %pod_name, reason, error = %e, "cannot record an event"),
        }
    }

    /// Forgets the events of a pod that is gone, so the map does not grow forever.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut s) = self.seen.lock() {
            s.retain(|(k, _, _), _| !k.starts_with(uid));
        }
    }
}
