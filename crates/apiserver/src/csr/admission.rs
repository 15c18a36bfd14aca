//! kube-apiserver's certificate admission plugins: `CertificateApproval` (approving or denying
//! needs the `approve` verb on the signer), `CertificateSigning` (writing a certificate needs
//! `sign`) and `CertificateSubjectRestriction` (no `system:masters` client certificates from
//! the `kube-apiserver-client` signer). Writes of the server's own controllers, which have no
//! requesting user, are not checked.

use serde_json::Value;
use timonier_api::resources::ResourceDef;

use super::{parse_request, request_der, KUBE_APISERVER_CLIENT};
use crate::admission::Operation;
use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::rbac::Attributes;
use crate::rest::meta_str;
use crate::state::ApiState;

fn forbidden(def: &ResourceDef, obj: &Value, why: &str) -> ApiError {
    ApiError::forbidden(format!("{} {:?} is forbidden: {why}", def.qualified_plural(), meta_str(obj, "name")))
}

/// Upstream's `IsAuthorizedForSignerName`: the verb on `signers` named by the signer, or by its
/// domain wildcard `<domain>/*`.
fn may(state: &ApiState, user: &UserInfo, verb: &str, signer: &str) -> bool {
    let check = |name: &str| {
        let a = Attributes { verb: verb.into(), group: "certificates.k8s.io".into(), resource: "signers".into(), name: name.into(), ..Default::default() };
        state.authorize(user, &a)
    };
    check(signer) || signer.split_once('/').is_some_and(|(domain, _)| check(&format!("{domain}/*")))
}

fn decisions(obj: &Value) -> Vec<(String, String)> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| matches!(c["type"].as_str(), Some("Approved" | "Denied")))
        .map(|c| (c["type"].as_str().unwrap_or("").to_string(), c["status"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// Admits a write of a CertificateSigningRequest by `user`.
pub fn admit(state: &ApiState, def: &ResourceDef, subresource: &str, op: Operation, obj: &Value, old: Option<&Value>, user: &UserInfo) -> ApiResult<()> {
    let signer = obj.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or("");
    match (op, subresource) {
        (Operation::Create, "") if signer == KUBE_APISERVER_CLIENT => {
            let masters = request_der(obj).and_then(|d| parse_request(&d)).is_some_and(|r| r.organizations.iter().any(|o| o == "system:masters"));
            if masters {
                return Err(forbidden(def, obj, &format!("use of {KUBE_APISERVER_CLIENT} signer with system:masters group is not allowed")));
            }
        }
        (Operation::Update, "approval") => {
            // Only a change of decision needs the right to decide.
            let changed = old.is_none_or(|o| decisions(o) != decisions(obj));
            if changed && !may(state, user, "approve", signer) {
                return Err(forbidden(def, obj, &format!("user not permitted to approve requests with signerName {signer:?}")));
            }
        }
        (Operation::Update, "status") => {
            let cert = |o: &Value| o.pointer("/status/certificate").and_then(Value::as_str).unwrap_or("").to_string();
            let changed = old.is_none_or(|o| cert(o) != cert(obj));
            if changed && !may(state, user, "sign", signer) {
                return Err(forbidden(def, obj, &format!("user not permitted to sign requests with signerName {signer:?}")));
            }
        }
        _ => {}
    }
    Ok(())
}
