//! Label selectors as the scheduler evaluates them (apimachinery's `labels.Selector`):
//! compiled once per pod, compared and hashed so that pods asking the same question share one
//! precomputed answer (`index.rs`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One requirement: `key op values`, values sorted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.key);
        match self.op {
            Op::In => v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotIn => v.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
        }
    }
}

/// `Nothing` is what a nil `LabelSelector` compiles to (matches no object); `Requirements`
/// with none matches everything (an empty selector `{}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    Nothing,
    Requirements(Vec<Requirement>),
}

impl Selector {
    pub fn everything() -> Selector {
        Selector::Requirements(vec![])
    }

    /// `metav1.LabelSelectorAsSelector`: nil → nothing; matchLabels and matchExpressions
    /// ANDed. An operator the API would have refused compiles to nothing rather than to a
    /// selector broader than asked.
    pub fn from_label_selector(s: Option<&LabelSelector>) -> Selector {
        let Some(s) = s else { return Selector::Nothing };
        let mut reqs: Vec<Requirement> = s.match_labels.iter().flatten().map(|(k, v)| Requirement { key: k.clone(), op: Op::In, values: vec![v.clone()] }).collect();
        for e in s.match_expressions.iter().flatten() {
            let op = match e.operator.as_str() {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                _ => return Selector::Nothing,
            };
            let mut values = e.values.clone().unwrap_or_default();
            values.sort();
            values.dedup();
            reqs.push(Requirement { key: e.key.clone(), op, values });
        }
        Selector::Requirements(normalize(reqs))
    }

    /// `labels.SelectorFromSet`: every pair must be present (a Service's or a
    /// ReplicationController's selector).
    pub fn from_map(m: &Labels) -> Selector {
        Selector::Requirements(m.iter().map(|(k, v)| Requirement { key: k.clone(), op: Op::In, values: vec![v.clone()] }).collect())
    }

    /// `selector.Add(requirements…)`; adding to nothing stays nothing.
    pub fn and(self, other: &Selector) -> Selector {
        match (self, other) {
            (Selector::Requirements(mut a), Selector::Requirements(b)) => {
                a.extend(b.iter().cloned());
                Selector::Requirements(normalize(a))
            }
            _ => Selector::Nothing,
        }
    }

    /// Requirements `key In (value)` for each pair, added to this selector — as upstream's
    /// `mergeLabelSetWithSelector`, which starts from the set, so that nothing plus pairs is
    /// the pairs.
    pub fn with_pairs(&self, pairs: &Labels) -> Selector {
        let from_set = Selector::from_map(pairs);
        match self {
            Selector::Nothing => from_set,
            s => from_set.and(s),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::Requirements(r) => r.iter().all(|r| r.matches(labels)),
        }
    }

    /// `selector.Empty()`: no requirements (`Nothing` is not empty).
    pub fn is_empty(&self) -> bool {
        matches!(self, Selector::Requirements(r) if r.is_empty())
    }
}

fn normalize(mut reqs: Vec<Requirement>) -> Vec<Requirement> {
    reqs.sort();
    reqs.dedup();
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sel(v: serde_json::Value) -> Selector {
        let s: LabelSelector = serde_json::from_value(v).expect("selector");
        Selector::from_label_selector(Some(&s))
    }

    #[test]
    fn selectors_as_apimachinery() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(!Selector::from_label_selector(None).matches(&l));
        assert!(sel(serde_json::json!({})).matches(&l));
        assert!(sel(serde_json::json!({})).is_empty());
        assert!(!Selector::Nothing.is_empty());
        assert!(sel(serde_json::json!({"matchLabels": {"app": "web"}})).matches(&l));
        assert!(!sel(serde_json::json!({"matchLabels": {"app": "db"}})).matches(&l));
        let expr = |op: &str, values: &[&str]| sel(serde_json::json!({"matchExpressions": [{"key": "tier", "operator": op, "values": values}]}));
        assert!(expr("In", &["front", "back"]).matches(&l));
        assert!(!expr("NotIn", &["front"]).matches(&l));
        assert!(expr("NotIn", &["front"]).matches(&labels(&[("app", "web")])));
        assert!(expr("Exists", &[]).matches(&l));
        assert!(!expr("DoesNotExist", &[]).matches(&l));
        assert_eq!(expr("Bogus", &[]), Selector::Nothing);
        // Same question asked two ways is one key.
        let a = sel(serde_json::json!({"matchLabels": {"a": "1", "b": "2"}}));
        let b = sel(serde_json::json!({"matchExpressions": [{"key": "b", "operator": "In", "values": ["2"]}], "matchLabels": {"a": "1"}}));
        assert_eq!(a, b);
        // matchLabelKeys' pairs on top of nothing are the pairs.
        let pairs = labels(&[("pod-template-hash", "abc")]);
        assert!(Selector::Nothing.with_pairs(&pairs).matches(&labels(&[("pod-template-hash", "abc")])));
        assert!(!a.with_pairs(&pairs).matches(&labels(&[("a", "1"), ("b", "2")])));
    }
}
