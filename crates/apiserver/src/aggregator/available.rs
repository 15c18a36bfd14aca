//! The availability controller (upstream's local and remote `AvailableConditionController`s
//! in one level-triggered loop), and the CRD registration pass, in the server process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Empty;
use serde_json::{json, Value};

use super::proxy::{read_limited, resolve, send, set_user, Unreachable};
use crate::auth::UserInfo;
use crate::error::ApiResult;
use crate::rest::{meta_str, now_rfc3339, Mode, WriteOptions};
use crate::state::ApiState;

/// How often non-local APIServices are checked when nothing changed (upstream resyncs every
/// 30 s but requeues failures within milliseconds; a short period catches a server going away).
const REMOTE_PERIOD: Duration = Duration::from_secs(5);

/// Upstream's discovery check: each try is bounded (5 s client timeout).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest discovery document read from an extension server.
const MAX_DISCOVERY: usize = 4 * 1024 * 1024;

/// What the registration and availability passes read.
const WATCHED: &[crate::bootstrap::Watched] = &[("apiextensions.k8s.io", "v1", "customresourcedefinitions"), ("apiregistration.k8s.io", "v1", "apiservices")];

/// Runs the CRD registration whenever CRDs or APIServices change, and the availability checks
/// then and every `REMOTE_PERIOD` (extension servers come and go without a write).
pub async fn controller(state: Arc<ApiState>) {
    let mut last_rev = -1;
    let mut last_remote = Instant::now() - REMOTE_PERIOD;
    loop {
        let rev = crate::bootstrap::last_change_of(&state, WATCHED);
        let changed = rev != last_rev;
        if changed {
            last_rev = rev;
            if let Err(e) = super::local::sync_crds(&state).await {
                tracing::warn!(controller = "apiservice-registration", error = %e, "controller pass failed; will retry");
                last_rev = -1;
            }
        }
        if changed || last_remote.elapsed() >= REMOTE_PERIOD {
            last_remote = Instant::now();
            if let Err(e) = check_all(&state).await {
                tracing::warn!(controller = "apiservice-availability", error = %e, "controller pass failed; will retry");
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn check_all(state: &Arc<ApiState>) -> ApiResult<()> {
    let all = super::all(state)?;
    let remote: Vec<(String, String)> = all
        .iter()
        .filter(|a| a.pointer("/spec/service").is_some_and(|s| !s.is_null()))
        .map(|a| (str_at(a, "/spec/group"), str_at(a, "/spec/version")))
        .collect();
    state.aggregator.retain_remote(|gv| remote.contains(gv));
    let remote_names: Vec<String> = all.iter().filter(|a| a.pointer("/spec/service").is_some_and(|s| !s.is_null())).map(|a| meta_str(a, "name").to_string()).collect();
    state.aggregator.openapi.retain(&remote_names);
    // Checked one after the other: a slow extension server delays the others' checks, never
    // any request.
    for api in all {
        if !meta_str(&api, "deletionTimestamp").is_empty() {
            continue;
        }
        let condition = if api.pointer("/spec/service").is_none_or(Value::is_null) {
            super::local_condition(&now_rfc3339())
        } else {
            let gv = (str_at(&api, "/spec/group"), str_at(&api, "/spec/version"));
            match check_remote(state, &api).await {
                Ok(doc) => {
                    state.aggregator.set_remote(gv, Some(doc));
                    super::openapi::refresh_in_background(state, &api);
                    json!({"type": "Available", "status": "True", "lastTransitionTime": now_rfc3339(), "reason": "Passed", "message": "all checks passed"})
                }
                Err(u) => {
                    state.aggregator.set_remote(gv, None);
                    json!({"type": "Available", "status": "False", "lastTransitionTime": now_rfc3339(), "reason": u.reason, "message": u.message})
                }
            }
        };
        write_condition(state, &api, condition).await?;
    }
    Ok(())
}

fn str_at(v: &Value, p: &str) -> String {
    v.pointer(p).and_then(Value::as_str).unwrap_or("").to_string()
}

/// Writes the Available condition when it differs from the stored one (upstream issues no
/// no-op updates).
async fn write_condition(state: &Arc<ApiState>, api: &Value, condition: Value) -> ApiResult<()> {
    let mut wanted = api.clone();
    super::set_condition(&mut wanted, condition);
    if wanted.get("status") == api.get("status") {
        return Ok(());
    }
    let current = super::available_condition(api);
    let now = super::available_condition(&wanted);
    if current.map(|c| (&c["status"], &c["reason"])) != now.map(|c| (&c["status"], &c["reason"])) {
        tracing::info!(name = meta_str(api, "name"), status = ?now.map(|c| &c["status"]), reason = ?now.map(|c| &c["reason"]), "changing APIService availability");
    }
    let def = super::def(state)?;
    let status = wanted["status"].clone();
    let r = state
        .guaranteed_update(&def, "", meta_str(api, "name"), None, &WriteOptions::default(), |old| {
            let mut n = old.clone();
            n["status"] = status.clone();
            Ok(n)
        }, Mode::Status)
        .await;
    crate::rest::ignore_not_found(r)
}

/// Upstream's remote checks: the Service, its port, a ready endpoint, then a GET of the
/// discovery document as `system:kube-aggregator` in `system:masters` answered with a 2xx.
/// The document is returned for discovery.
async fn check_remote(state: &Arc<ApiState>, api: &Value) -> Result<Value, Unreachable> {
    let addr = resolve(state, api)?.to_string();
    let (group, version) = (str_at(api, "/spec/group"), str_at(api, "/spec/version"));
    let path = if meta_str(api, "name") == "v1." { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
    let failed = |e: String| Unreachable { reason: "FailedDiscoveryCheck", message: e };
    let url = |addr: String| format!("https://{addr}{path}");
    let mut req = Request::get(path.as_str()).header(http::header::ACCEPT, "application/json").body(Empty::<bytes::Bytes>::new()).map_err(|e| failed(e.to_string()))?;
    set_user(req.headers_mut(), &UserInfo { name: "system:kube-aggregator".into(), groups: vec!["system:masters".into()] });
    let attempt = async {
        let resp = send(state, api, req, CHECK_TIMEOUT).await.map_err(|e| format!("failing or missing response from {}: {e}", url(addr.clone())))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("failing or missing response from {}: bad status from {}: {}", url(addr.clone()), url(addr.clone()), status.as_u16()));
        }
        read_limited(resp.into_body(), MAX_DISCOVERY).await.map_err(|e| format!("failing or missing response from {}: {e}", url(addr.clone())))
    };
    let body = tokio::time::timeout(CHECK_TIMEOUT + Duration::from_secs(1), attempt).await.map_err(|_| failed(format!("timed out waiting for {}", url(addr.clone()))))?.map_err(failed)?;
    // A 2xx passes the check, as upstream; resources are advertised only from a document
    // that parses as an APIResourceList.
    let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(if doc.get("resources").is_some_and(Value::is_array) { doc } else { json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{group}/{version}"), "resources": []}) })
}
