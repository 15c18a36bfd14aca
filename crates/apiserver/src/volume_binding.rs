//! The persistent-volume binder (upstream's PV controller, for statically provisioned
//! volumes): new PersistentVolumes become Available; each Pending PersistentVolumeClaim is
//! bound to the smallest Available volume of its class that offers its access modes and
//! size (or to the one it names); a volume whose claim is gone becomes Released.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::bootstrap::on_change_of;
use crate::error::ApiResult;
use crate::rest::{ignore_not_found, meta_str, Mode, WriteOptions};
use crate::state::ApiState;

pub async fn controller(state: Arc<ApiState>) {
    on_change_of(state, Duration::from_millis(300), "persistentvolume-binder", &[("", "v1", "persistentvolumes"), ("", "v1", "persistentvolumeclaims")], |state| async move { reconcile(&state).await }).await
}

fn quantity_bytes(q: Option<&Value>) -> f64 {
    q.and_then(Value::as_str).and_then(timonier_api::printers::quantity_value).unwrap_or(0.0)
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn phase(obj: &Value) -> &str {
    obj.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

/// Whether volume `pv` can serve claim `pvc`.
fn fits(pv: &Value, pvc: &Value) -> bool {
    let class = |o: &Value| o.pointer("/spec/storageClassName").and_then(Value::as_str).unwrap_or("").to_string();
    let modes = strings(pv.pointer("/spec/accessModes"));
    let wanted = strings(pvc.pointer("/spec/accessModes"));
    class(pv) == class(pvc)
        && wanted.iter().all(|m| modes.contains(m))
        && quantity_bytes(pv.pointer("/spec/capacity/storage")) >= quantity_bytes(pvc.pointer("/spec/resources/requests/storage"))
        && pv.pointer("/spec/volumeMode").and_then(Value::as_str).unwrap_or("Filesystem") == pvc.pointer("/spec/volumeMode").and_then(Value::as_str).unwrap_or("Filesystem")
}

async fn set_phase(state: &ApiState, pv_def: &Arc<timonier_api::resources::ResourceDef>, name: &str, phase: &'static str) -> ApiResult<()> {
    let r = state
        .guaranteed_update(pv_def, "", name, None, &WriteOptions::default(), |old| {
            let mut new = old.clone();
            new["status"] = json!({"phase": phase});
            Ok(new)
        }, Mode::Status)
        .await;
    ignore_not_found(r)
}

async fn reconcile(state: &Arc<ApiState>) -> ApiResult<()> {
    let pv_def = state.def("", "v1", "persistentvolumes")?;
    let pvc_def = state.def("", "v1", "persistentvolumeclaims")?;
    let pvs: Vec<Arc<Value>> = state.cache_of(&pv_def)?.list(&pv_def.key_prefix()).into_iter().map(|(_, v)| v).collect();
    let pvcs: Vec<Arc<Value>> = state.cache_of(&pvc_def)?.list(&pvc_def.key_prefix()).into_iter().map(|(_, v)| v).collect();
    let claim_uid = |pv: &Value| pv.pointer("/spec/claimRef/uid").and_then(Value::as_str).map(str::to_string);
    let mut taken: Vec<String> = pvs.iter().filter(|pv| claim_uid(pv).is_some()).map(|pv| meta_str(pv, "name").to_string()).collect();
    for pv in &pvs {
        let name = meta_str(pv, "name");
        match claim_uid(pv) {
            None if phase(pv).is_empty() || phase(pv) == "Pending" => set_phase(state, &pv_def, name, "Available").await?,
            Some(uid) => {
                let claimed = pvcs.iter().any(|c| meta_str(c, "uid") == uid);
                if !claimed && phase(pv) == "Bound" {
                    set_phase(state, &pv_def, name, "Released").await?;
                }
            }
            None => {}
        }
    }
    for pvc in pvcs.iter().filter(|c| phase(c) != "Bound" && meta_str(c, "deletionTimestamp").is_empty()) {
        let named = pvc.pointer("/spec/volumeName").and_then(Value::as_str).filter(|n| !n.is_empty());
        let mut candidates: Vec<&Arc<Value>> = pvs
            .iter()
            .filter(|pv| !taken.iter().any(|t| t == meta_str(pv, "name")) || claim_uid(pv).as_deref() == Some(meta_str(pvc, "uid")))
            .filter(|pv| named.is_none_or(|n| n == meta_str(pv, "name")))
            .filter(|pv| meta_str(pv, "deletionTimestamp").is_empty() && fits(pv, pvc))
            .collect();
        candidates.sort_by(|a, b| {
            quantity_bytes(a.pointer("/spec/capacity/storage")).partial_cmp(&quantity_bytes(b.pointer("/spec/capacity/storage"))).unwrap_or(std::cmp::Ordering::Equal)
        });
        let Some(pv) = candidates.first() else {
            if phase(pvc).is_empty() {
                let r = state
                    .guaranteed_update(&pvc_def, meta_str(pvc, "namespace"), meta_str(pvc, "name"), None, &WriteOptions::default(), |old| {
                        let mut new = old.clone();
                        new["status"] = json!({"phase": "Pending"});
                        Ok(new)
                    }, Mode::Status)
                    .await;
                ignore_not_found(r)?;
            }
            continue;
        };
        let (pv_name, ns, claim) = (meta_str(pv, "name").to_string(), meta_str(pvc, "namespace").to_string(), meta_str(pvc, "name").to_string());
        let claim_ref = json!({"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns, "name": claim, "uid": meta_str(pvc, "uid"), "resourceVersion": meta_str(pvc, "resourceVersion")});
        let r = state
            .guaranteed_update(&pv_def, "", &pv_name, None, &WriteOptions::default(), |old| {
                let mut new = old.clone();
                new["spec"]["claimRef"] = claim_ref.clone();
                new["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] = json!("yes");
                Ok(new)
            }, Mode::Main)
            .await;
        match r {
            Ok(_) => {}
            Err(e) if e.code == 404 => continue,
            Err(e) => return Err(e),
        }
        set_phase(state, &pv_def, &pv_name, "Bound").await?;
        let capacity = pv.pointer("/spec/capacity").cloned().unwrap_or(json!({}));
        let modes = pv.pointer("/spec/accessModes").cloned().unwrap_or(json!([]));
        let pvn = pv_name.clone();
        let r = state
            .guaranteed_update(&pvc_def, &ns, &claim, None, &WriteOptions::default(), |old| {
                let mut new = old.clone();
                new["spec"]["volumeName"] = json!(pvn);
                new["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] = json!("yes");
                new["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] = json!("yes");
                Ok(new)
            }, Mode::Main)
            .await;
        ignore_not_found(r)?;
        let r = state
            .guaranteed_update(&pvc_def, &ns, &claim, None, &WriteOptions::default(), |old| {
                let mut new = old.clone();
                new["status"] = json!({"phase": "Bound", "accessModes": modes, "capacity": capacity});
                Ok(new)
            }, Mode::Status)
            .await;
        ignore_not_found(r)?;
        taken.push(pv_name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn capacities_compare_in_bytes() {
        let q = |s: &str| super::quantity_bytes(Some(&serde_json::json!(s)));
        assert_eq!(q("1e3"), 1000.0);
        assert_eq!(q("1Gi"), 1073741824.0);
        assert!(q("500M") < q("1Gi"));
        assert_eq!(q("not a quantity"), 0.0);
    }
}
