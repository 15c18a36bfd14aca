//! CertificateSigningRequests' strategies, as upstream's `certificates` registry: the
//! requester recorded at creation, validation of the request, and what each write may change —
//! the main resource only the spec (immutable), the `approval` subresource only the
//! conditions, the `status` subresource the certificate and conditions other than the
//! Approved/Denied decision.

use serde_json::{json, Value};

use super::cluster::{check_enum, immutable, items, str_at};
use super::obj_at;
use crate::auth::UserInfo;
use crate::error::FieldError;
use crate::validation::{is_dns1123_subdomain, is_qualified_name};

tokio::task_local! {
    /// The user whose request is being served, for the strategies that record it (a
    /// CertificateSigningRequest carries its requester, as upstream reads it from the context).
    static REQUESTER: UserInfo;
}

/// Runs `fut` (the serving of one request) with `user` as the requester strategies see.
pub async fn with_requester<F: std::future::Future>(user: UserInfo, fut: F) -> F::Output {
    REQUESTER.scope(user, fut).await
}

/// The user of the request being served, if any (the server's own writes have none).
pub fn requester() -> Option<UserInfo> {
    REQUESTER.try_with(|u| u.clone()).ok()
}

/// A new CertificateSigningRequest records who asked (upstream's PrepareForCreate) and starts
/// without status.
pub fn prepare_csr(obj: &mut Value) {
    let requester = REQUESTER.try_with(|u| u.clone()).ok();
    let Some(spec) = obj_at(obj, &["spec"]) else { return };
    for k in ["username", "uid", "groups", "extra"] {
        spec.remove(k);
    }
    if let Some(user) = requester {
        spec.insert("username".into(), json!(user.name));
        spec.insert("groups".into(), json!(user.groups));
    }
}

// ---- validation ------------------------------------------------------------------------------

const KEY_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// Whether base64 `request` holds a PEM `CERTIFICATE REQUEST` block.
fn is_csr_pem(request: &str) -> bool {
    use base64::Engine as _;
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(request) else { return false };
    let text = String::from_utf8_lossy(&bytes);
    text.contains("-----BEGIN CERTIFICATE REQUEST-----") && text.contains("-----END CERTIFICATE REQUEST-----")
}

/// `example.com/signer-name`: a DNS subdomain, a slash, then a qualified-name path.
fn signer_name_error(name: &str) -> Option<&'static str> {
    const ERR: &str = "must be a fully qualified domain and path of the form 'example.com/signer-name'";
    let Some((domain, path)) = name.split_once('/') else { return Some(ERR) };
    let ok = !domain.is_empty() && is_dns1123_subdomain(domain).is_empty() && !path.is_empty() && path.split('/').all(|seg| is_qualified_name(seg).is_empty());
    (!ok).then_some(ERR)
}

pub fn validate_csr(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    match spec.get("request").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required("spec.request", "")),
        Some(r) if !is_csr_pem(r) => errs.push(FieldError::invalid("spec.request", &json!(r), "PEM block type must be CERTIFICATE REQUEST")),
        _ => {}
    }
    match str_at(spec, "/signerName") {
        "" => errs.push(FieldError::required("spec.signerName", "")),
        "kubernetes.io/legacy-unknown" => {
            errs.push(FieldError::invalid("spec.signerName", &json!("kubernetes.io/legacy-unknown"), "the legacy signerName is not allowed via this API version"))
        }
        name => {
            if let Some(e) = signer_name_error(name) {
                errs.push(FieldError::invalid("spec.signerName", &json!(name), e));
            }
        }
    }
    let usages = items(spec, "/usages");
    if usages.is_empty() {
        errs.push(FieldError::required("spec.usages", ""));
    }
    for (i, u) in usages.iter().enumerate() {
        check_enum(&mut errs, format!("spec.usages[{i}]"), Some(u), KEY_USAGES, true);
    }
    if let Some(secs) = spec.get("expirationSeconds").filter(|v| !v.is_null()) {
        if secs.as_i64().is_some_and(|s| s < 600) {
            errs.push(FieldError::invalid("spec.expirationSeconds", secs, "may not specify a duration less than 600 seconds (10 minutes)"));
        }
    }
    errs.extend(validate_csr_conditions(obj));
    errs
}

/// Status conditions: known types with a status, Approved and Denied exclusive.
fn validate_csr_conditions(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let conds = items(obj, "/status/conditions");
    let has = |t: &str| conds.iter().any(|c| str_at(c, "/type") == t);
    for (i, c) in conds.iter().enumerate() {
        let p = format!("status.conditions[{i}]");
        let t = str_at(c, "/type");
        if t.is_empty() {
            errs.push(FieldError::required(format!("{p}.type"), ""));
        }
        match str_at(c, "/status") {
            "" => errs.push(FieldError::required(format!("{p}.status"), "")),
            s if matches!(t, "Approved" | "Denied") && s != "True" => errs.push(FieldError::not_supported(format!("{p}.status"), &json!(s), &["True"])),
            s => check_enum(&mut errs, format!("{p}.status"), Some(&json!(s)), &["True", "False", "Unknown"], true),
        }
        if t == "Denied" && has("Approved") {
            errs.push(FieldError::invalid(format!("{p}.type"), &json!(t), "Approved and Denied conditions are mutually exclusive"));
        }
        if conds.iter().take(i).any(|o| matches!(t, "Approved" | "Denied" | "Failed") && str_at(o, "/type") == t) {
            errs.push(FieldError::duplicate(format!("{p}.type"), &json!(t)));
        }
    }
    errs
}

/// Updates: the request is immutable, and a decision once made stays.
pub fn validate_csr_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    immutable(&mut errs, "spec", new.get("spec"), old.get("spec"));
    for t in ["Approved", "Denied", "Failed"] {
        let had = items(old, "/status/conditions").iter().any(|c| str_at(c, "/type") == t);
        let has = items(new, "/status/conditions").iter().any(|c| str_at(c, "/type") == t);
        if had && !has {
            errs.push(FieldError::forbidden("status.conditions", &format!("updates may not remove a condition of type {t:?}")));
        }
    }
    let old_cert = str_at(old, "/status/certificate");
    if !old_cert.is_empty() && str_at(new, "/status/certificate") != old_cert {
        errs.push(FieldError::forbidden("status.certificate", "updates may not modify existing certificate content"));
    }
    errs
}

/// A status write (upstream's `csrStatusStrategy`): the spec stays, and the decision
/// conditions stay as they were — a status write that adds or removes one is refused by
/// [`validate_csr_status_update`].
pub fn prepare_csr_status(new: &mut Value, old: &Value) {
    new["spec"] = old.get("spec").cloned().unwrap_or(Value::Null);
    let old_conds = items(old, "/status/conditions").to_vec();
    let Some(conds) = new.pointer_mut("/status/conditions").and_then(Value::as_array_mut) else { return };
    for t in ["Approved", "Denied"] {
        let olds: Vec<&Value> = old_conds.iter().filter(|c| str_at(c, "/type") == t).collect();
        let news: Vec<usize> = conds.iter().enumerate().filter(|(_, c)| str_at(c, "/type") == t).map(|(i, _)| i).collect();
        if olds.len() == news.len() {
            for (i, o) in news.into_iter().zip(olds) {
                conds[i] = o.clone();
            }
        }
    }
}

/// An approval write (upstream's `csrApprovalStrategy`): only the conditions change.
pub fn prepare_csr_approval(new: &mut Value, old: &Value) {
    let conds = new.pointer("/status/conditions").cloned();
    *new = old.clone();
    if let Some(m) = new.as_object_mut() {
        let status = m.entry("status").or_insert_with(|| json!({}));
        if let (Some(s), Some(c)) = (status.as_object_mut(), conds) {
            s.insert("conditions".into(), c);
        }
    }
}

/// A status write may not add or remove the decision (upstream's
/// `ValidateCertificateSigningRequestStatusUpdate`).
pub fn validate_csr_status_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for t in ["Approved", "Denied"] {
        let count = |v: &Value| items(v, "/status/conditions").iter().filter(|c| str_at(c, "/type") == t).count();
        let (had, has) = (count(old), count(new));
        if has > had {
            errs.push(FieldError::forbidden("status.conditions", &format!("updates may not add a condition of type {t:?}")));
        }
    }
    errs
}

/// Upstream's populateConditionTimestamps for CertificateSigningRequest status and approval
/// writes: a condition without `lastUpdateTime` gets now; without `lastTransitionTime`, the
/// old condition's of the same type and status, else now.
pub fn csr_condition_timestamps(new: &mut Value, old: &Value, now: &str) {
    let old_conds = old.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let Some(conds) = new.pointer_mut("/status/conditions").and_then(Value::as_array_mut) else { return };
    for c in conds.iter_mut().filter_map(Value::as_object_mut) {
        if c.get("lastUpdateTime").is_none_or(Value::is_null) {
            c.insert("lastUpdateTime".into(), json!(now));
        }
        if c.get("lastTransitionTime").is_none_or(Value::is_null) {
            let same = old_conds.iter().find(|o| o.get("type") == c.get("type") && o.get("status") == c.get("status"));
            let t = same.and_then(|o| o.get("lastTransitionTime")).filter(|t| !t.is_null()).cloned().unwrap_or_else(|| json!(now));
            c.insert("lastTransitionTime".into(), t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(FieldError::full).collect()
    }

    #[test]
    fn certificate_signing_requests() {
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE REQUEST-----\nMII=\n-----END CERTIFICATE REQUEST-----\n");
        let csr = |spec: Value| json!({"metadata": {"name": "c"}, "spec": spec});
        assert!(validate_csr(&csr(json!({"request": pem, "signerName": "example.com/signer", "usages": ["client auth"]}))).is_empty());
        let got = messages(validate_csr(&csr(json!({"request": "Zm9v", "signerName": "nodomain", "usages": ["flying"], "expirationSeconds": 60}))));
        assert_eq!(
            got,
            [
                "spec.request: Invalid value: \"Zm9v\": PEM block type must be CERTIFICATE REQUEST",
                "spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form 'example.com/signer-name'",
                "spec.usages[0]: Unsupported value: \"flying\": supported values: \"signing\", \"digital signature\", \"content commitment\", \"key encipherment\", \"key agreement\", \"data encipherment\", \"cert sign\", \"crl sign\", \"encipher only\", \"decipher only\", \"any\", \"server auth\", \"client auth\", \"code signing\", \"email protection\", \"s/mime\", \"ipsec end system\", \"ipsec tunnel\", \"ipsec user\", \"timestamping\", \"ocsp signing\", \"microsoft sgc\", \"netscape sgc\"",
                "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)",
            ]
        );
        let decided = json!({"spec": {}, "status": {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}});
        assert!(messages(validate_csr_conditions(&decided)).contains(&"status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive".to_string()));
        let approved = json!({"spec": {}, "status": {"conditions": [{"type": "Approved", "status": "True"}]}});
        assert_eq!(messages(validate_csr_update(&json!({"spec": {}}), &approved)), ["status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""]);
    }

    #[test]
    fn requester_is_recorded_on_csrs() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let user = UserInfo { name: "alice".into(), groups: vec!["devs".into(), "system:authenticated".into()] };
        let mut obj = json!({"spec": {"username": "mallory", "uid": "forged"}});
        rt.block_on(with_requester(user, async { prepare_csr(&mut obj) }));
        assert_eq!(obj["spec"], json!({"username": "alice", "groups": ["devs", "system:authenticated"]}));
    }

    #[test]
    fn status_and_approval_writes() {
        let old = json!({"spec": {"signerName": "a/b"}, "status": {"conditions": [{"type": "Approved", "status": "True", "reason": "AutoApproved"}]}});
        let mut status = json!({"spec": {"signerName": "x/y"}, "status": {"certificate": "Zm9v", "conditions": [{"type": "Approved", "status": "True", "reason": "Forged"}]}});
        prepare_csr_status(&mut status, &old);
        assert_eq!((status["spec"]["signerName"].as_str(), status["status"]["conditions"][0]["reason"].as_str()), (Some("a/b"), Some("AutoApproved")));
        let denied = json!({"status": {"conditions": [{"type": "Denied", "status": "True"}]}});
        assert_eq!(messages(validate_csr_status_update(&denied, &json!({}))), ["status.conditions: Forbidden: updates may not add a condition of type \"Denied\""]);
        let mut approval = json!({"spec": {}, "status": {"certificate": "Zm9v", "conditions": [{"type": "Denied", "status": "True"}]}});
        prepare_csr_approval(&mut approval, &json!({"spec": {"signerName": "a/b"}}));
        assert_eq!(approval, json!({"spec": {"signerName": "a/b"}, "status": {"conditions": [{"type": "Denied", "status": "True"}]}}));
    }
}
