//! The order of groups and versions in discovery, as kube-aggregator sorts APIServices: groups
//! by `groupPriorityMinimum` (highest first), versions within a group by `versionPriority`
//! (highest first) then by Kubernetes version ordering (`v2`, `v1`, `v1beta2`, `v1beta1`,
//! `v1alpha1`, then other names). The first version is the group's preferred one.
//!
//! The two discovery forms break ties between groups differently upstream, and so here: the
//! legacy `APIGroupList` sorts APIServices by priority then by *APIService name*
//! (`v1.admissionregistration.k8s.io` before `v1.apiextensions.k8s.io`) and takes each group
//! where its first APIService lands; the aggregated form takes each group's highest priority
//! and breaks ties by *group name*. `apiregistration.k8s.io` (which has no APIService) is
//! always first.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::Value;

use crate::state::ApiState;

/// Above the 20000 an APIService may have: the aggregator's own group sorts first.
const APIREGISTRATION_PRIORITY: i64 = 20001;

/// `CompareKubeAwareVersionStrings`: `Greater` when `a` is the more preferred version.
/// Kube-like versions (`v<major>[(alpha|beta)<minor>]`) beat other names: GA before beta before
/// alpha, then higher majors, then higher minors; other names compare reverse-alphabetically,
/// as upstream's (so that, sorted highest first, they come out alphabetically).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    match (parse_kube_version(a), parse_kube_version(b)) {
        (None, None) => b.cmp(a),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some((ma, ta, na)), Some((mb, tb, nb))) => ta.cmp(&tb).then(ma.cmp(&mb)).then(na.cmp(&nb)),
    }
}

/// (major, stability: alpha 0 / beta 1 / GA 2, minor) of a kube-like version.
fn parse_kube_version(v: &str) -> Option<(u64, u8, u64)> {
    let rest = v.strip_prefix('v')?;
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let major: u64 = rest[..digits].parse().ok()?;
    let tail = &rest[digits..];
    if tail.is_empty() {
        return Some((major, 2, 0));
    }
    let (stability, minor) = if let Some(m) = tail.strip_prefix("alpha") {
        (0, m)
    } else if let Some(m) = tail.strip_prefix("beta") {
        (1, m)
    } else {
        return None;
    };
    if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((major, stability, minor.parse().ok()?))
}

/// One group version's place: its APIService's priorities and name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Priority {
    group: i64,
    version: i64,
    name: String,
}

/// The priorities of the group versions, from the APIServices (as a user may change them), or
/// for a group version whose APIService is not there (yet), what it would be registered with:
/// upstream's table for a built-in one, the CRD registration's for the others.
#[derive(Default)]
pub struct Priorities {
    by_gv: HashMap<(String, String), Priority>,
}

impl Priorities {
    pub fn of(state: &ApiState) -> Priorities {
        let mut by_gv = HashMap::new();
        for api in super::all(state).unwrap_or_default() {
            let s = |p: &str| api.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
            let i = |p: &str| api.pointer(p).and_then(Value::as_i64).unwrap_or(0);
            let p = Priority { group: i("/spec/groupPriorityMinimum"), version: i("/spec/versionPriority"), name: crate::rest::meta_str(&api, "name").to_string() };
            by_gv.insert((s("/spec/group"), s("/spec/version")), p);
        }
        Priorities { by_gv }
    }

    fn get(&self, group: &str, version: &str) -> Priority {
        if group == super::GROUP {
            return Priority { group: APIREGISTRATION_PRIORITY, version: 0, name: String::new() };
        }
        if let Some(p) = self.by_gv.get(&(group.to_string(), version.to_string())) {
            return p.clone();
        }
        let (g, v) = super::local::default_priority(group, version);
        Priority { group: g, version: v, name: format!("{version}.{group}") }
    }

    /// Versions of one group, preferred first.
    fn sort_versions(&self, group: &str, versions: &mut [String]) {
        versions.sort_by(|a, b| self.get(group, b).version.cmp(&self.get(group, a).version).then_with(|| compare_versions(b, a)));
    }

    /// Group versions in the legacy `APIGroupList`'s order: groups, each with its versions
    /// (preferred first).
    pub fn legacy(&self, gvs: impl IntoIterator<Item = (String, String)>) -> Vec<(String, Vec<String>)> {
        let mut flat: Vec<(Priority, String, String)> = gvs.into_iter().map(|(g, v)| (self.get(&g, &v), g, v)).collect();
        flat.sort_by(|(a, _, _), (b, _, _)| b.group.cmp(&a.group).then_with(|| a.name.cmp(&b.name)));
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for (_, g, v) in flat {
            match out.iter_mut().find(|(og, _)| *og == g) {
                Some((_, vs)) if !vs.contains(&v) => vs.push(v),
                Some(_) => {}
                None => out.push((g, vec![v])),
            }
        }
        for (g, vs) in &mut out {
            self.sort_versions(g, vs);
        }
        out
    }

    /// The aggregated form's order of groups: the highest priority of each group's versions,
    /// then the group's name.
    pub fn aggregated_group_order(&self, a: (&str, &[String]), b: (&str, &[String])) -> Ordering {
        let top = |(g, vs): (&str, &[String])| vs.iter().map(|v| self.get(g, v).group).max().unwrap_or(0);
        top(b).cmp(&top(a)).then_with(|| a.0.cmp(b.0))
    }

    /// Sorts the versions (JSON objects with a `version`) of one group, preferred first.
    pub fn sort_version_objects(&self, group: &str, versions: &mut [Value]) {
        let name = |v: &Value| v.get("version").and_then(Value::as_str).unwrap_or("").to_string();
        versions.sort_by(|a, b| {
            let (a, b) = (name(a), name(b));
            self.get(group, &b).version.cmp(&self.get(group, &a).version).then_with(|| compare_versions(&b, &a))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_aware_versions_as_upstream() {
        let mut vs = vec!["v1alpha1", "foo10", "v2", "v1beta1", "v11alpha2", "v1", "foo1", "v12", "v10beta3", "v1beta2", "v3beta1"];
        vs.sort_by(|a, b| compare_versions(b, a));
        assert_eq!(vs, ["v12", "v2", "v1", "v10beta3", "v3beta1", "v1beta2", "v1beta1", "v11alpha2", "v1alpha1", "foo1", "foo10"]);
        assert_eq!(compare_versions("v1beta", "v1"), Ordering::Less, "not kube-like");
    }

    fn prio(entries: &[(&str, &str, i64, i64)]) -> Priorities {
        let by_gv = entries
            .iter()
            .map(|&(g, v, gp, vp)| ((g.to_string(), v.to_string()), Priority { group: gp, version: vp, name: format!("{v}.{g}") }))
            .collect();
        Priorities { by_gv }
    }

    #[test]
    fn groups_by_priority_then_name_versions_by_priority_then_version() {
        let p = prio(&[("apps", "v1", 17800, 15), ("autoscaling", "v1", 17500, 15), ("autoscaling", "v2", 17500, 30), ("x.io", "v1beta1", 100, 100),
            ("x.io", "v1", 100, 100), ("x.io", "v2alpha1", 100, 200), ("b.io", "v1", 100, 1), ("a.io", "v1", 100, 1)]);
        let gvs = ["x.io/v1beta1", "autoscaling/v1", "b.io/v1", "apps/v1", "x.io/v1", "autoscaling/v2", "a.io/v1", "x.io/v2alpha1", "apiregistration.k8s.io/v1"];
        let order = p.legacy(gvs.iter().map(|gv| gv.split_once('/').map(|(g, v)| (g.to_string(), v.to_string())).unwrap_or_default()));
        let flat: Vec<String> = order.iter().map(|(g, vs)| format!("{g}:{}", vs.join(","))).collect();
        assert_eq!(flat, ["apiregistration.k8s.io:v1", "apps:v1", "autoscaling:v2,v1", "a.io:v1", "b.io:v1", "x.io:v2alpha1,v1,v1beta1"]);
        let vs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(p.aggregated_group_order(("b.io", &vs(&["v1"])), ("a.io", &vs(&["v1"]))), Ordering::Greater);
        assert_eq!(p.aggregated_group_order(("apps", &vs(&["v1"])), ("a.io", &vs(&["v1"]))), Ordering::Less);
        // Without an APIService: upstream's table, or the CRD registration's priorities.
        let none = Priorities::default();
        let order = none.legacy([("zz.example.com".into(), "v1".into()), ("batch".into(), "v1".into()), ("apps".into(), "v1".into())]);
        assert_eq!(order.iter().map(|(g, _)| g.as_str()).collect::<Vec<_>>(), ["apps", "batch", "zz.example.com"]);
    }

    #[test]
    fn legacy_ties_break_on_apiservice_names_aggregated_on_group_names() {
        // "v1.b.io" < "v2.a.io": the legacy list has b.io first, the aggregated one a.io.
        let p = prio(&[("a.io", "v2", 100, 1), ("b.io", "v1", 100, 1)]);
        let order = p.legacy([("a.io".into(), "v2".into()), ("b.io".into(), "v1".into())]);
        assert_eq!(order.iter().map(|(g, _)| g.as_str()).collect::<Vec<_>>(), ["b.io", "a.io"]);
        let vs = |v: &str| vec![v.to_string()];
        assert_eq!(p.aggregated_group_order(("a.io", &vs("v2")), ("b.io", &vs("v1"))), Ordering::Less);
    }
}
