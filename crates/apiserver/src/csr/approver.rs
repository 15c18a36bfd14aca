//! The CSR approver. Kubelet client certificates are approved as upstream's `csrapproving`
//! controller does: when the requester may `create certificatesigningrequests/selfnodeclient`
//! (a node renewing its own identity: the requester is the CN) or `.../nodeclient` (a
//! bootstrap token's user joining) — asked of the authorizer as its SubjectAccessReview would.
//!
//! Kubelet serving certificates are approved too, which upstream leaves to an external approver
//! (kubeadm documents kubelet-csr-approver; k3s issues them itself): when the requester is the
//! node the CN names, in `system:nodes`, and every name asked for is that node's name or one
//! of the addresses its Node reports.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{has_condition, parse_request, request_der, requester, usages, validate_kubelet_client, validate_kubelet_serving, KUBELET_CLIENT, KUBELET_SERVING, NODES_GROUP, NODE_USER_PREFIX};
use crate::error::ApiResult;
use crate::rbac::Attributes;
use crate::rest::{meta_str, Mode, WriteOptions};
use crate::state::ApiState;

pub async fn controller(state: Arc<ApiState>) {
    crate::bootstrap::on_change_of(state, Duration::from_millis(200), "csrapproving", &[super::CSRS], |state| async move { pass(&state).await }).await
}

async fn pass(state: &Arc<ApiState>) -> ApiResult<()> {
    let def = state.def("certificates.k8s.io", "v1", "certificatesigningrequests")?;
    let pending: Vec<Arc<Value>> = state
        .cache_of(&def)?
        .list(&def.key_prefix())
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| {
            let issued = c.pointer("/status/certificate").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
            !issued && !has_condition(c, "Approved") && !has_condition(c, "Denied")
        })
        .collect();
    for csr in pending {
        let Some(message) = decide(state, &csr) else { continue };
        let name = meta_str(&csr, "name").to_string();
        let approval = json!({"type": "Approved", "status": "True", "reason": "AutoApproved", "message": message});
        let r = state
            .guaranteed_update(&def, "", &name, None, &WriteOptions::default(), |old| {
                let mut new = old.clone();
                if has_condition(old, "Approved") || has_condition(old, "Denied") {
                    return Ok(new);
                }
                let status = new.as_object_mut().map(|m| m.entry("status").or_insert_with(|| json!({})));
                if let Some(conds) = status.and_then(|s| s.as_object_mut()).map(|s| s.entry("conditions").or_insert_with(|| json!([]))).and_then(Value::as_array_mut) {
                    conds.push(approval.clone());
                }
                Ok(new)
            }, Mode::Approval)
            .await;
        match r {
            Ok(_) => tracing::info!(csr = %name, "{message}"),
            Err(e) if e.code == 404 => {}
            Err(e) => tracing::warn!(csr = %name, error = %e, "cannot approve the certificate signing request"),
        }
    }
    Ok(())
}

/// The approval message, when the CSR is one to approve.
fn decide(state: &ApiState, csr: &Value) -> Option<String> {
    let signer = csr.pointer("/spec/signerName").and_then(Value::as_str)?;
    let req = parse_request(&request_der(csr)?)?;
    let usages = usages(csr);
    let who = requester(csr);
    let may = |subresource: &str| {
        let a = Attributes {
            verb: "create".into(),
            group: "certificates.k8s.io".into(),
            resource: "certificatesigningrequests".into(),
            subresource: subresource.into(),
            ..Default::default()
        };
        state.authorize(&who, &a)
    };
    match signer {
        KUBELET_CLIENT if validate_kubelet_client(&req, &usages).is_ok() => {
            if who.name == req.common_name && may("selfnodeclient") {
                return Some("Auto approving self kubelet client certificate after SubjectAccessReview.".into());
            }
            may("nodeclient").then(|| "Auto approving kubelet client certificate after SubjectAccessReview.".into())
        }
        KUBELET_SERVING if validate_kubelet_serving(&req, &usages).is_ok() => {
            let node = req.common_name.strip_prefix(NODE_USER_PREFIX)?;
            let is_node = who.name == req.common_name && who.groups.iter().any(|g| g == NODES_GROUP);
            (is_node && names_are_the_nodes(state, node, &req)).then(|| "Auto approving kubelet serving certificate: requested by the node for its own name and addresses.".into())
        }
        _ => None,
    }
}

/// Whether every DNS name is the node's name or one of its Hostname/DNS addresses, and every
/// IP one of its addresses.
fn names_are_the_nodes(state: &ApiState, node: &str, req: &super::Request) -> bool {
    let Ok(def) = state.def("", "v1", "nodes") else { return false };
    let Some(obj) = state.cache_of(&def).ok().and_then(|c| c.get(&def.key("", node))) else { return false };
    let addresses: Vec<(String, String)> = obj
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| (a["type"].as_str().unwrap_or("").to_string(), a["address"].as_str().unwrap_or("").to_string()))
        .collect();
    let dns_ok = req.dns_names.iter().all(|d| d == node || addresses.iter().any(|(t, a)| matches!(t.as_str(), "Hostname" | "InternalDNS" | "ExternalDNS") && a == d));
    let ip_ok = req.ip_addresses.iter().all(|ip| addresses.iter().any(|(t, a)| matches!(t.as_str(), "InternalIP" | "ExternalIP") && a.parse().ok() == Some(*ip)));
    dns_ok && ip_ok
}
