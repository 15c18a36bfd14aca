//! Tests: upstream `printers_test.go` and `duration_test.go` expectations, ported, plus
//! robustness against arbitrary object shapes.

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use super::*;

mod cluster;
mod core;
mod pod;
mod rest;
mod workloads;

/// The server clock in every test.
pub(super) fn now() -> Timestamp {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

/// An RFC 3339 timestamp `secs` seconds before [`now`] (after it when negative).
pub(super) fn ago(secs: i64) -> String {
    (now() - SignedDuration::from_secs(secs)).to_string()
}

pub(super) const MIN: i64 = 60;
pub(super) const DAY: i64 = 86400;

/// The cells of one object, checked to match the column count.
pub(super) fn row(group: &str, kind: &str, obj: Value) -> Vec<Value> {
    let cells = cells(group, kind, &obj, now());
    assert_eq!(cells.len(), columns(group, kind).len(), "{group}/{kind} cells vs columns");
    cells
}

/// The first `n` cells (the non-wide ones, for upstream tests that print without `Wide`).
pub(super) fn first(group: &str, kind: &str, obj: Value, n: usize) -> Value {
    Value::Array(row(group, kind, obj).into_iter().take(n).collect())
}

fn hd(nanos: i64) -> String {
    human_duration(SignedDuration::from_nanos(nanos))
}

#[test]
fn human_duration_matches_upstream() {
    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;
    const MS: i64 = 1_000_000;
    let cases: &[(i64, &str)] = &[
        (S, "1s"),
        (70 * S, "70s"),
        (190 * S, "3m10s"),
        (70 * M, "70m"),
        (47 * H, "47h"),
        (49 * H, "2d1h"),
        ((8 * 24 + 2) * H, "8d"),
        (367 * 24 * H, "367d"),
        ((365 * 2 * 24 + 25) * H, "2y1d"),
        ((365 * 8 * 24 + 2) * H, "8y"),
        // Boundaries.
        (-2 * S, "<invalid>"),
        (-2 * S + 1, "0s"),
        (0, "0s"),
        (S - MS, "0s"),
        (2 * M - MS, "119s"),
        (2 * M, "2m"),
        (2 * M + S, "2m1s"),
        (10 * M - MS, "9m59s"),
        (10 * M, "10m"),
        (10 * M + S, "10m"),
        (3 * H - MS, "179m"),
        (3 * H, "3h"),
        (3 * H + M, "3h1m"),
        (8 * H - MS, "7h59m"),
        (8 * H, "8h"),
        (8 * H + 59 * M, "8h"),
        (2 * 24 * H - MS, "47h"),
        (2 * 24 * H, "2d"),
        (2 * 24 * H + H, "2d1h"),
        (8 * 24 * H - MS, "7d23h"),
        (8 * 24 * H, "8d"),
        (8 * 24 * H + 23 * H, "8d"),
        (2 * 365 * 24 * H - MS, "729d"),
        (2 * 365 * 24 * H, "2y"),
        (2 * 365 * 24 * H + 23 * H, "2y"),
        (2 * 365 * 24 * H + 23 * H + 59 * M, "2y"),
        (2 * 365 * 24 * H + 24 * H - MS, "2y"),
        (2 * 365 * 24 * H + 24 * H, "2y1d"),
        (3 * 365 * 24 * H, "3y"),
        (4 * 365 * 24 * H, "4y"),
        (5 * 365 * 24 * H, "5y"),
        (6 * 365 * 24 * H, "6y"),
        (7 * 365 * 24 * H, "7y"),
        (8 * 365 * 24 * H - MS, "7y364d"),
        (8 * 365 * 24 * H, "8y"),
        (8 * 365 * 24 * H + 364 * 24 * H, "8y"),
        (9 * 365 * 24 * H, "9y"),
        (5 * S, "5s"),
        (125 * S, "2m5s"),
        (15 * M, "15m"),
        (3 * H + 5 * M, "3h5m"),
        (2 * 24 * H + 3 * H, "2d3h"),
        (5 * 24 * H, "5d"),
        ((3 * 365 + 45) * 24 * H, "3y45d"),
    ];
    for (nanos, want) in cases {
        assert_eq!(hd(*nanos), *want, "{nanos}ns");
    }
    // Go's Duration saturates at about 292 years.
    assert_eq!(human_duration(SignedDuration::from_hours(24 * 365 * 1000)), "292y");
}

#[test]
fn translate_timestamp_since_matches_upstream() {
    let since = |secs: f64| {
        let ts = now() - SignedDuration::try_from_secs_f64(secs).unwrap();
        translate_timestamp_since(Some(ts), now())
    };
    assert_eq!(since(-2.1), "<invalid>");
    assert_eq!(since(-1.9), "0s");
    assert_eq!(since(0.0), "0s");
    assert_eq!(translate_timestamp_since(None, now()), "<unknown>");
    assert_eq!(since(30.0), "30s");
    assert_eq!(since(300.0), "5m");
    assert_eq!(since(6000.0), "100m");
    assert_eq!(since(2.0 * DAY as f64), "2d");
    assert_eq!(since(90.0 * DAY as f64), "90d");
    assert_eq!(since(10.0 * 365.0 * DAY as f64), "10y");
    // Go's zero time is unset, whatever the spelling.
    assert_eq!(J(&json!("0001-01-01T00:00:00Z")).time(), None);
    assert_eq!(J(&json!("")).time(), None);
    assert_eq!(J(&json!("garbage")).time(), None);
}

#[test]
fn quantities_print_canonically() {
    let cases = [
        ("1Gi", "1Gi"),
        ("1024Mi", "1Gi"),
        ("300Mi", "300Mi"),
        ("307200Ki", "300Mi"),
        ("1025Mi", "1025Mi"),
        ("5000m", "5"),
        ("0.5", "500m"),
        ("1000M", "1G"),
        ("0.001T", "1G"),
        ("1000u", "1m"),
        ("1.08", "1080m"),
        ("1080000000n", "1080m"),
        ("0", "0"),
        ("00", "0"),
        ("0Ki", "0"),
        (".001e12", "1e9"),
        ("0.001e0", "1e-3"),
        ("1000e-12", "1e-9"),
        ("1E3", "1E3"),
        ("1e3", "1e3"),
        ("2000", "2k"),
        ("2048", "2048"),
        ("0.5Ki", "512"),
        ("1.5Gi", "1536Mi"),
        ("100m", "100m"),
        ("-1Gi", "-1Gi"),
        ("-1500m", "-1500m"),
        ("3.001n", "4n"),
        ("0.0000000001", "1n"),
        ("9Ei", "9223372036854775807"),
        ("100.035Ki", "102435840m"),
        ("4Gi", "4Gi"),
        ("10Gi", "10Gi"),
    ];
    for (input, want) in cases {
        assert_eq!(canonical_quantity(input).as_deref(), Some(want), "{input}");
    }
    for bad in ["", "abc", "1Qi", "1.2.3", "e", "1e", "5x"] {
        assert_eq!(canonical_quantity(bad), None, "{bad}");
    }
    assert_eq!(quantity::quantity(&json!(5)), "5");
    assert_eq!(quantity::quantity(&Value::Null), "0");
    assert_eq!(quantity::quantity_ptr(&Value::Null), "<nil>");
    assert_eq!(quantity::quantity(&json!("weird")), "weird");
}

#[test]
fn label_selectors_print_as_upstream() {
    let sel = |v: Value| labels::format_label_selector(J(&v));
    assert_eq!(sel(Value::Null), "<none>");
    assert_eq!(sel(json!({})), "<none>");
    assert_eq!(sel(json!({"matchLabels": {"foo": "bar"}})), "foo=bar");
    assert_eq!(
        sel(json!({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "tier", "operator": "NotIn", "values": ["x"]},
            {"key": "c", "operator": "Exists"},
            {"key": "d", "operator": "DoesNotExist"}
        ]})),
        "a=1,b=2,c,!d,env in (dev,prod),tier notin (x)"
    );
    assert_eq!(sel(json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})), "<error>");
    assert_eq!(sel(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})), "<error>");
    assert_eq!(sel(json!({"matchLabels": {"bad key": "x"}})), "<error>");
    assert_eq!(sel(json!({"matchLabels": {"example.com/app": "web"}})), "example.com/app=web");
    assert_eq!(labels::format_labels(J(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
    assert_eq!(labels::format_labels(J(&json!({}))), "<none>");
}

#[test]
fn default_convertors_match_upstream() {
    for (group, kind) in [
        ("", "LimitRange"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ] {
        let names: Vec<_> = columns(group, kind).iter().map(|c| (c.name, c.r#type)).collect();
        assert_eq!(names, [("Name", "string"), ("Created At", "date")]);
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2024-03-04T05:06:07Z"}});
        assert_eq!(row(group, kind, obj), [json!("x"), json!("2024-03-04T05:06:07Z")]);
        assert_eq!(row(group, kind, json!({})), [json!(""), json!("0001-01-01T00:00:00Z")]);
    }
    // Custom resources without printer columns: Name and a JSONPath `date` Age.
    let names: Vec<_> = columns("example.com", "Widget").iter().map(|c| (c.name, c.r#type, c.format)).collect();
    assert_eq!(names, [("Name", "string", "name"), ("Age", "date", "")]);
    let cr = |ts: Value| row("example.com", "Widget", json!({"metadata": {"name": "w", "creationTimestamp": ts}}));
    assert_eq!(cr(json!(ago(5 * MIN))), [json!("w"), json!("5m")]);
    assert_eq!(cr(json!("not a time")), [json!("w"), json!("<invalid>")]);
    assert_eq!(cr(json!("")), [json!("w"), json!("<unknown>")]);
    assert_eq!(cr(Value::Null), [json!("w"), Value::Null]);
}

#[test]
fn columns_carry_upstream_metadata() {
    let pod = columns("", "Pod");
    let names: Vec<_> = pod.iter().map(|c| c.name).collect();
    assert_eq!(names, ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]);
    assert_eq!(pod[0].format, "name");
    assert!(pod[0].description.starts_with("Name must be unique within a namespace."));
    assert!(pod[4].description.starts_with("CreationTimestamp is a timestamp"));
    assert_eq!(pod.iter().map(|c| c.priority).collect::<Vec<_>>(), [0, 0, 0, 0, 0, 1, 1, 1, 1]);
    let job: Vec<_> = columns("batch", "Job").iter().map(|c| c.name).collect();
    assert_eq!(job, ["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"]);
    let event: Vec<_> = columns("", "Event").iter().map(|c| (c.name, c.priority)).collect();
    assert_eq!(
        event,
        [
            ("Last Seen", 0),
            ("Type", 0),
            ("Reason", 0),
            ("Object", 0),
            ("Subobject", 1),
            ("Source", 1),
            ("Message", 0),
            ("First Seen", 1),
            ("Count", 1),
            ("Name", 1)
        ]
    );
    assert_eq!(columns("events.k8s.io", "Event"), columns("", "Event"));
    assert_eq!(columns("autoscaling", "Scale")[0].format, "");
}

/// Every kind with a sample object, for the shape-robustness test.
fn samples() -> Vec<(&'static str, &'static str, Value)> {
    let mut all = Vec::new();
    all.extend(pod::samples());
    all.extend(core::samples());
    all.extend(workloads::samples());
    all.extend(rest::samples());
    all.extend(cluster::samples());
    all
}

/// Every leaf and branch of `v`, as JSON pointers.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        _ => {}
    }
}

#[test]
fn odd_shapes_never_panic() {
    let replacements = [
        Value::Null,
        json!(7),
        json!(-3),
        json!(1.5),
        json!(1e300),
        json!(u64::MAX),
        json!("x"),
        json!(""),
        json!(true),
        json!([]),
        json!([null, 1, "a"]),
        json!({}),
        json!({"a": null}),
    ];
    let samples = samples();
    let mut kinds: Vec<(&str, &str)> = samples.iter().map(|(g, k, _)| (*g, *k)).collect();
    kinds.extend([
        ("", "LimitRange"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("example.com", "Unknown"),
    ]);
    for (group, kind) in &kinds {
        for whole in replacements.iter().chain([&json!({"metadata": null, "spec": 5, "status": "x"})]) {
            row(group, kind, whole.clone());
        }
    }
    let mut variants = 0;
    for (group, kind, sample) in &samples {
        row(group, kind, sample.clone());
        let mut paths = Vec::new();
        pointers(sample, String::new(), &mut paths);
        for path in &paths {
            for replacement in &replacements {
                let mut obj = sample.clone();
                *obj.pointer_mut(path).unwrap() = replacement.clone();
                row(group, kind, obj);
                variants += 1;
            }
        }
    }
    assert!(variants > 1000, "{variants} variants");
}
