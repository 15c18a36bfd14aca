//! Local APIServices: what upstream's autoregistration and CRD registration controllers
//! keep — one per built-in group version (synced once at start, label `onstart`) and one per
//! served CRD group version (synced continuously, label `true`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use timonier_api::resources;

use crate::error::ApiResult;
use crate::rest::{meta_str, DeleteOptions, Mode, WriteOptions};
use crate::state::ApiState;

/// The label upstream's autoregistration controller puts on what it manages.
pub const MANAGED_LABEL: &str = "kube-aggregator.kubernetes.io/automanaged";

/// kube-apiserver 1.33's `apiVersionPriorities` (group priority minimum, version priority):
/// the generic control plane's table merged with kube-apiserver's own entries. Only the group
/// versions this server serves get an APIService (upstream skips the others); the rest of the
/// table orders discovery should one be served.
const PRIORITIES: &[(&str, &str, i64, i64)] = &[
    ("", "v1", 18000, 1),
    ("apps", "v1", 17800, 15),
    ("events.k8s.io", "v1", 17750, 15),
    ("events.k8s.io", "v1beta1", 17750, 5),
    ("authentication.k8s.io", "v1", 17700, 15),
    ("authentication.k8s.io", "v1beta1", 17700, 9),
    ("authentication.k8s.io", "v1alpha1", 17700, 1),
    ("authorization.k8s.io", "v1", 17600, 15),
    ("autoscaling", "v1", 17500, 15),
    ("autoscaling", "v2", 17500, 30),
    ("autoscaling", "v2beta1", 17500, 9),
    ("autoscaling", "v2beta2", 17500, 1),
    ("batch", "v1", 17400, 15),
    ("batch", "v1beta1", 17400, 9),
    ("batch", "v2alpha1", 17400, 9),
    ("certificates.k8s.io", "v1", 17300, 15),
    ("certificates.k8s.io", "v1beta1", 17300, 9),
    ("certificates.k8s.io", "v1alpha1", 17300, 1),
    ("networking.k8s.io", "v1", 17200, 15),
    ("networking.k8s.io", "v1beta1", 17200, 9),
    ("policy", "v1", 17100, 15),
    ("policy", "v1beta1", 17100, 9),
    ("rbac.authorization.k8s.io", "v1", 17000, 15),
    ("storage.k8s.io", "v1", 16800, 15),
    ("storage.k8s.io", "v1beta1", 16800, 9),
    ("storage.k8s.io", "v1alpha1", 16800, 1),
    ("apiextensions.k8s.io", "v1", 16700, 15),
    ("admissionregistration.k8s.io", "v1", 16700, 15),
    ("admissionregistration.k8s.io", "v1beta1", 16700, 12),
    ("admissionregistration.k8s.io", "v1alpha1", 16700, 9),
    ("scheduling.k8s.io", "v1", 16600, 15),
    ("coordination.k8s.io", "v1", 16500, 15),
    ("coordination.k8s.io", "v1beta1", 16500, 13),
    ("coordination.k8s.io", "v1alpha2", 16500, 12),
    ("node.k8s.io", "v1", 16300, 15),
    ("node.k8s.io", "v1beta1", 16300, 9),
    ("node.k8s.io", "v1alpha1", 16300, 1),
    ("discovery.k8s.io", "v1", 16200, 15),
    ("discovery.k8s.io", "v1beta1", 16200, 12),
    ("resource.k8s.io", "v1beta2", 16200, 15),
    ("resource.k8s.io", "v1beta1", 16200, 9),
    ("resource.k8s.io", "v1alpha3", 16200, 1),
    ("flowcontrol.apiserver.k8s.io", "v1", 16100, 21),
    ("flowcontrol.apiserver.k8s.io", "v1beta3", 16100, 18),
    ("flowcontrol.apiserver.k8s.io", "v1beta2", 16100, 15),
    ("flowcontrol.apiserver.k8s.io", "v1beta1", 16100, 12),
    ("flowcontrol.apiserver.k8s.io", "v1alpha1", 16100, 9),
    ("internal.apiserver.k8s.io", "v1alpha1", 16000, 9),
    ("storagemigration.k8s.io", "v1alpha1", 15800, 9),
];

/// The priorities a group version's local APIService is registered with: upstream's table
/// for a built-in one, the CRD registration's otherwise.
pub fn default_priority(group: &str, version: &str) -> (i64, i64) {
    PRIORITIES.iter().find(|p| p.0 == group && p.1 == version).map_or(CRD_PRIORITY, |p| (p.2, p.3))
}

/// What CRD group versions get (upstream's crdregistration controller).
const CRD_PRIORITY: (i64, i64) = (1000, 100);

fn api_service(group: &str, version: &str, (gpm, vp): (i64, i64), managed: &str) -> Value {
    json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": format!("{version}.{group}"), "labels": {MANAGED_LABEL: managed}},
        "spec": {"group": group, "version": version, "groupPriorityMinimum": gpm, "versionPriority": vp},
    })
}

/// The built-in group versions' APIServices, as upstream's `apiServicesToRegister`: every
/// group version served by this server (apiregistration's own aside, as upstream) that the
/// priority table knows.
fn builtin_wanted() -> Vec<Value> {
    let registry = crate::state::Registry::new(resources::builtin());
    let mut out = Vec::new();
    for (group, versions) in registry.groups() {
        for v in versions {
            if let Some(&(_, _, gpm, vp)) = PRIORITIES.iter().find(|p| p.0 == group && p.1 == v) {
                out.push(api_service(&group, &v, (gpm, vp), "onstart"));
            }
        }
    }
    out
}

/// Creates (or brings the spec back of) the built-in group versions' APIServices: run once at
/// start, as upstream's `onstart` registrations.
pub async fn ensure_builtin(state: &Arc<ApiState>) -> ApiResult<()> {
    let def = super::def(state)?;
    for wanted in builtin_wanted() {
        create_or_sync(state, &def, wanted).await?;
    }
    Ok(())
}

/// Creates `wanted`, or sets its spec on the existing one when that one is managed by us
/// (one a user made without the label is left alone, as upstream does).
async fn create_or_sync(state: &Arc<ApiState>, def: &Arc<resources::ResourceDef>, mut wanted: Value) -> ApiResult<()> {
    // As it is stored (Go's encoding drops the core group's empty `group`), so that an
    // unchanged spec is seen as such.
    timonier_api::gojson::normalize(super::GROUP, "v1", "APIService", &mut wanted);
    let name = meta_str(&wanted, "name").to_string();
    let existing = state.cache_of(def)?.get(&def.key("", &name));
    match existing {
        None => match state.create(def, "", wanted, &WriteOptions::default()).await {
            Err(e) if e.code != 409 => Err(e),
            _ => Ok(()),
        },
        Some(old) if old.pointer(&format!("/metadata/labels/{}", MANAGED_LABEL.replace('/', "~1"))).is_some() && old.get("spec") != wanted.get("spec") => {
            let r = state
                .guaranteed_update(def, "", &name, None, &WriteOptions::default(), |o| {
                    let mut n = o.clone();
                    n["spec"] = wanted["spec"].clone();
                    Ok(n)
                }, Mode::Main)
                .await;
            crate::rest::ignore_not_found(r)
        }
        Some(_) => Ok(()),
    }
}

/// One pass of the CRD registration: an APIService per served version of each CRD (unless
/// a built-in serves that group version), and none left for CRD versions that are gone.
pub async fn sync_crds(state: &Arc<ApiState>) -> ApiResult<()> {
    let def = super::def(state)?;
    let crds_def = state.def("apiextensions.k8s.io", "v1", "customresourcedefinitions")?;
    let builtin = crate::state::Registry::new(resources::builtin());
    let mut wanted: BTreeMap<String, Value> = BTreeMap::new();
    for (_, crd) in state.cache_of(&crds_def)?.list(&crds_def.key_prefix()) {
        if !meta_str(&crd, "deletionTimestamp").is_empty() {
            continue;
        }
        let Some(group) = crd.pointer("/spec/group").and_then(Value::as_str) else { continue };
        for v in crd.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten() {
            let Some(version) = v.get("name").and_then(Value::as_str) else { continue };
            if v.get("served").and_then(Value::as_bool) == Some(false) || !builtin.in_group_version(group, version).is_empty() {
                continue;
            }
            let svc = api_service(group, version, CRD_PRIORITY, "true");
            wanted.insert(meta_str(&svc, "name").to_string(), svc);
        }
    }
    for existing in super::all(state)? {
        let name = meta_str(&existing, "name").to_string();
        let managed = existing.pointer(&format!("/metadata/labels/{}", MANAGED_LABEL.replace('/', "~1"))).and_then(Value::as_str);
        if managed == Some("true") && !wanted.contains_key(&name) && meta_str(&existing, "deletionTimestamp").is_empty() {
            crate::rest::ignore_not_found(state.delete(&def, "", &name, &DeleteOptions::default()).await.map(|_| ()))?;
        }
    }
    for (_, svc) in wanted {
        create_or_sync(state, &def, svc).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_and_priorities_as_upstream() {
        let all = builtin_wanted();
        let find = |n: &str| all.iter().find(|s| s["metadata"]["name"] == n).map(|s| (s["spec"]["groupPriorityMinimum"].clone(), s["spec"]["versionPriority"].clone()));
        assert_eq!(find("v1."), Some((json!(18000), json!(1))));
        assert_eq!(find("v1.apps"), Some((json!(17800), json!(15))));
        assert_eq!(find("v2.autoscaling"), Some((json!(17500), json!(30))));
        assert_eq!(find("v1.autoscaling"), Some((json!(17500), json!(15))));
        assert_eq!(find("v1.flowcontrol.apiserver.k8s.io"), Some((json!(16100), json!(21))));
        assert_eq!(find("v1.apiregistration.k8s.io"), None, "upstream registers no APIService for its own group");
        assert!(all.iter().all(|s| super::super::validate(s).is_empty()));
        assert_eq!(all.len(), 20);
    }
}
