//! `/livez`, `/readyz` and `/healthz` as kube-apiserver answers them: named checks, each also
//! served alone at `/readyz/<name>`; `?verbose` lists them when all pass, a failure always
//! lists them (the reason withheld, as upstream: it is logged); `?exclude=<name>` leaves a
//! check out. Load balancers and `kubectl get --raw '/readyz?verbose'` read these.

use crate::state::ApiState;

/// Which endpoints run a check: every one, or `/readyz` alone (upstream's readiness-only
/// checks: a server still syncing or shutting down is alive but must not get traffic).
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    All,
    ReadyOnly,
}

/// The checks in upstream's order. Every post-start hook named here is work this server
/// finishes before it listens (bootstrap.rs, rbac, crd.rs), so they pass whenever it answers.
const CHECKS: &[(&str, Scope)] = &[
    ("ping", Scope::All),
    ("log", Scope::All),
    ("etcd", Scope::All),
    ("etcd-readiness", Scope::ReadyOnly),
    ("informer-sync", Scope::ReadyOnly),
    ("poststarthook/start-apiextensions-informers", Scope::All),
    ("poststarthook/start-apiextensions-controllers", Scope::All),
    ("poststarthook/crd-informer-synced", Scope::All),
    ("poststarthook/start-system-namespaces-controller", Scope::All),
    ("poststarthook/bootstrap-controller", Scope::All),
    ("poststarthook/rbac/bootstrap-roles", Scope::All),
    ("poststarthook/scheduling/bootstrap-system-priority-classes", Scope::All),
    ("poststarthook/start-cluster-authentication-info-controller", Scope::All),
    ("poststarthook/apiservice-registration-controller", Scope::All),
    ("poststarthook/apiservice-status-available-controller", Scope::All),
    ("shutdown", Scope::ReadyOnly),
];

/// An answer: the status code and the text body.
pub struct Answer {
    pub code: u16,
    pub body: String,
}

/// Answers `GET /{endpoint}` (`livez`, `readyz` or `healthz`) or `/{endpoint}/{check}`.
/// `None` for a check this endpoint does not have (a 404).
pub async fn answer(state: &ApiState, endpoint: &str, check: &str, query: Option<&str>) -> Option<Answer> {
    let ready = endpoint == "readyz";
    let checks: Vec<&str> = CHECKS.iter().filter(|(_, s)| ready || *s == Scope::All).map(|(n, _)| *n).collect();
    // The datastore is probed once however many checks read it, and only when one does.
    let store = if check.is_empty() || check.starts_with("etcd") { state.probe_store().await } else { Ok(()) };
    let result = |name: &str| -> Result<(), String> {
        match name {
            "etcd" | "etcd-readiness" => store.clone(),
            "informer-sync" if !state.is_ready() => Err("the watch cache is not synced yet".into()),
            "shutdown" if state.is_shutting_down() => Err("process is shutting down".into()),
            _ => Ok(()),
        }
    };
    if !check.is_empty() {
        let name = checks.iter().find(|n| **n == check)?;
        return Some(match result(name) {
            Ok(()) => Answer { code: 200, body: "ok".into() },
            Err(e) => Answer { code: 500, body: format!("internal server error: {e}\n") },
        });
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
    let excluded: Vec<&str> = params.iter().filter(|(k, _)| k == "exclude").map(|(_, v)| v.as_str()).collect();
    let verbose = params.iter().any(|(k, _)| k == "verbose");
    let mut body = String::new();
    let mut failed = false;
    for name in &checks {
        if excluded.contains(name) {
            body.push_str(&format!("[+]{name} excluded: ok\n"));
            continue;
        }
        match result(name) {
            Ok(()) => body.push_str(&format!("[+]{name} ok\n")),
            Err(e) => {
                tracing::warn!(check = name, error = %e, "{endpoint} check failed");
                failed = true;
                body.push_str(&format!("[-]{name} failed: reason withheld\n"));
            }
        }
    }
    let unmatched: Vec<String> = excluded.iter().filter(|e| !checks.contains(e)).map(|e| format!("{e:?}")).collect();
    if !unmatched.is_empty() {
        body.push_str(&format!("warn: some health checks cannot be excluded: no matches for {}\n", unmatched.join(",")));
    }
    Some(if failed {
        Answer { code: 500, body: format!("{body}{endpoint} check failed\n") }
    } else if verbose {
        Answer { code: 200, body: format!("{body}{endpoint} check passed\n") }
    } else {
        Answer { code: 200, body: "ok".into() }
    })
}
