//! Pod status from what runs: container states, phase and conditions computed the way the
//! kubelet's `generateAPIPodStatus` and `getPhase` do, so that `kubectl get` and `describe`
//! print what they print upstream.

use serde_json::{json, Map, Value};

/// The state of one container as the agent knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting { reason: String, message: Option<String> },
    Running { started_at: String },
    Terminated { exit_code: i32, signal: Option<i32>, reason: String, message: Option<String>, started_at: String, finished_at: String },
}

impl State {
    pub fn waiting(reason: &str, message: Option<String>) -> State {
        State::Waiting { reason: reason.to_string(), message }
    }

    pub fn to_json(&self) -> Value {
        match self {
            State::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            State::Terminated { exit_code, signal, reason, message, started_at, finished_at } => {
                let mut t = json!({"exitCode": exit_code, "reason": reason, "startedAt": started_at, "finishedAt": finished_at});
                if let Some(s) = signal {
                    t["signal"] = json!(s);
                }
                if let Some(m) = message {
                    t["message"] = json!(m);
                }
                json!({"terminated": t})
            }
        }
    }
}

/// One container's status, the input of [`pod_status`].
#[derive(Debug, Clone)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: State,
    pub last_state: Option<State>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
}

impl ContainerView {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "state": self.state.to_json(),
            "lastState": self.last_state.as_ref().map(State::to_json).unwrap_or_else(|| json!({})),
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
        });
        if let Some(id) = &self.container_id {
            v["containerID"] = json!(id);
        }
        v
    }

    fn succeeded(&self) -> bool {
        matches!(self.state, State::Terminated { exit_code: 0, .. })
    }
}

/// Everything the pod status is made of.
pub struct PodView<'a> {
    pub restart_policy: &'a str,
    pub init: Vec<ContainerView>,
    pub containers: Vec<ContainerView>,
    /// Ephemeral containers: reported, but part of neither the phase nor the conditions.
    pub ephemeral: Vec<ContainerView>,
    pub sandbox_ready: bool,
    pub host_ip: String,
    pub pod_ip: Option<String>,
    pub start_time: String,
    /// Set by the API server at creation (it never changes).
    pub qos_class: String,
    /// `spec.readinessGates` condition types, and the current status conditions (to carry
    /// their values and the transition times of unchanged conditions).
    pub readiness_gates: Vec<String>,
    pub previous_conditions: Vec<Value>,
    pub now: String,
    /// The pod is being deleted and its containers were stopped for good: its phase is
    /// terminal whatever the restart policy (upstream's `podIsTerminal`).
    pub terminating: bool,
}

/// The phase by upstream's rules: Pending until every init container succeeded and no app
/// container is still waiting for its first start; Succeeded / Failed once all stopped for
/// good; Running otherwise.
pub fn phase(v: &PodView) -> &'static str {
    let init_failed = v.init.iter().any(|c| matches!(c.state, State::Terminated { exit_code, .. } if exit_code != 0));
    if !v.init.iter().all(ContainerView::succeeded) {
        if init_failed && v.restart_policy == "Never" {
            return "Failed";
        }
        return "Pending";
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &v.containers {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated { exit_code, .. } => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } => match &c.last_state {
                Some(State::Terminated { exit_code, .. }) => {
                    stopped += 1;
                    if *exit_code == 0 {
                        succeeded += 1;
                    }
                }
                _ => waiting += 1,
            },
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if v.terminating {
            if succeeded == stopped {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if v.restart_policy == "Always" {
            "Running"
        } else if succeeded == stopped {
            "Succeeded"
        } else if v.restart_policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

fn condition(v: &PodView, kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> Value {
    let status = if ok { "True" } else { "False" };
    let previous = v.previous_conditions.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(kind));
    let since = match previous {
        Some(p) if p.get("status").and_then(Value::as_str) == Some(status) => {
            p.get("lastTransitionTime").cloned().unwrap_or_else(|| json!(v.now))
        }
        _ => json!(v.now),
    };
    let mut c = Map::new();
    c.insert("type".into(), json!(kind));
    c.insert("status".into(), json!(status));
    c.insert("lastProbeTime".into(), Value::Null);
    c.insert("lastTransitionTime".into(), since);
    if let Some(r) = reason {
        c.insert("reason".into(), json!(r));
    }
    if let Some(m) = message {
        c.insert("message".into(), json!(m));
    }
    Value::Object(c)
}

/// The pod's `status` as the kubelet posts it.
pub fn pod_status(v: &PodView) -> Value {
    let phase = phase(v);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let incomplete: Vec<&str> = v.init.iter().filter(|c| !c.succeeded()).map(|c| c.name.as_str()).collect();
    let unready: Vec<&str> = v.containers.iter().filter(|c| !c.ready).map(|c| c.name.as_str()).collect();
    let list = |names: &[&str]| format!("[{}]", names.join(" "));
    let initialized = incomplete.is_empty();
    let containers_ready = unready.is_empty() && initialized;
    let gates_ok = v.readiness_gates.iter().all(|g| {
        v.previous_conditions
            .iter()
            .any(|c| c.get("type").and_then(Value::as_str) == Some(g.as_str()) && c.get("status").and_then(Value::as_str) == Some("True"))
    });
    let (cr_reason, cr_message) = if containers_ready {
        (None, None)
    } else if terminal {
        (Some("PodCompleted"), None)
    } else if !initialized {
        (Some("ContainersNotInitialized"), Some(format!("containers with incomplete status: {}", list(&incomplete))))
    } else {
        (Some("ContainersNotReady"), Some(format!("containers with unready status: {}", list(&unready))))
    };
    let mut conditions = vec![
        condition(v, "PodReadyToStartContainers", v.sandbox_ready && !terminal, None, None),
        condition(
            v,
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
            (!initialized).then(|| format!("containers with incomplete status: {}", list(&incomplete))),
        ),
        condition(v, "Ready", containers_ready && gates_ok, cr_reason, cr_message.clone()),
        condition(v, "ContainersReady", containers_ready, cr_reason, cr_message),
        condition(v, "PodScheduled", true, None, None),
    ];
    if terminal && initialized {
        // A pod whose containers all ran to completion stays Initialized.
        conditions[1] = condition(v, "Initialized", true, Some("PodCompleted"), None);
    }
    // Conditions owned by others (readiness gates) are carried over.
    let ours = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"];
    for c in &v.previous_conditions {
        if !c.get("type").and_then(Value::as_str).is_some_and(|t| ours.contains(&t)) {
            conditions.push(c.clone());
        }
    }
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": v.host_ip,
        "hostIPs": [{"ip": v.host_ip}],
        "startTime": v.start_time,
        "containerStatuses": v.containers.iter().map(ContainerView::to_json).collect::<Vec<_>>(),
        "qosClass": v.qos_class,
    });
    if !v.init.is_empty() {
        status["initContainerStatuses"] = json!(v.init.iter().map(ContainerView::to_json).collect::<Vec<_>>());
    }
    if !v.ephemeral.is_empty() {
        // Upstream's prober sets `started` on init and app containers only.
        let without_started = |c: &ContainerView| {
            let mut j = c.to_json();
            if let Some(o) = j.as_object_mut() {
                o.remove("started");
            }
            j
        };
        status["ephemeralContainerStatuses"] = json!(v.ephemeral.iter().map(without_started).collect::<Vec<_>>());
    }
    if let Some(ip) = &v.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, state: State, last: Option<State>) -> ContainerView {
        ContainerView {
            name: name.into(),
            image: "i".into(),
            image_id: "id".into(),
            container_id: None,
            ready: matches!(state, State::Running { .. }),
            started: matches!(state, State::Running { .. }),
            state,
            last_state: last,
            restart_count: 0,
        }
    }

    fn pod<'a>(policy: &'a str, init: Vec<ContainerView>, containers: Vec<ContainerView>) -> PodView<'a> {
        PodView {
            restart_policy: policy,
            init,
            containers,
            ephemeral: vec![],
            sandbox_ready: true,
            host_ip: "10.0.0.1".into(),
            pod_ip: Some("10.244.0.2".into()),
            start_time: "t".into(),
            qos_class: "BestEffort".into(),
            readiness_gates: vec![],
            previous_conditions: vec![],
            now: "now".into(),
            terminating: false,
        }
    }

    fn term(code: i32) -> State {
        State::Terminated { exit_code: code, signal: None, reason: if code == 0 { "Completed".into() } else { "Error".into() }, message: None, started_at: "a".into(), finished_at: "b".into() }
    }

    #[test]
    fn phases() {
        let running = State::Running { started_at: "t".into() };
        assert_eq!(phase(&pod("Always", vec![], vec![view("a", State::waiting("ContainerCreating", None), None)])), "Pending");
        assert_eq!(phase(&pod("Always", vec![], vec![view("a", running.clone(), None)])), "Running");
        assert_eq!(phase(&pod("Never", vec![], vec![view("a", term(0), None)])), "Succeeded");
        assert_eq!(phase(&pod("Never", vec![], vec![view("a", term(1), None)])), "Failed");
        assert_eq!(phase(&pod("OnFailure", vec![], vec![view("a", term(0), None)])), "Succeeded");
        assert_eq!(phase(&pod("Always", vec![], vec![view("a", State::waiting("CrashLoopBackOff", None), Some(term(1)))])), "Running");
        assert_eq!(phase(&pod("Always", vec![view("i", running, None)], vec![view("a", State::waiting("PodInitializing", None), None)])), "Pending");
        assert_eq!(phase(&pod("Never", vec![view("i", term(2), None)], vec![view("a", State::waiting("PodInitializing", None), None)])), "Failed");
        // Deleted and stopped: terminal whatever the restart policy.
        let stopped = |code| PodView { terminating: true, ..pod("Always", vec![], vec![view("a", term(code), None)]) };
        assert_eq!(phase(&stopped(0)), "Succeeded");
        assert_eq!(phase(&stopped(143)), "Failed");
    }

    #[test]
    fn conditions_name_unready_containers() {
        let s = pod_status(&pod("Always", vec![], vec![view("a", State::waiting("ContainerCreating", None), None), view("b", State::Running { started_at: "t".into() }, None)]));
        let ready = s["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["message"], "containers with unready status: [a]");
        assert_eq!(s["podIP"], "10.244.0.2");
    }
}
