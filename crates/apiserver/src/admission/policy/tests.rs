use super::*;
use crate::admission::cel::to_cel;

fn policy_def() -> Arc<ResourceDef> {
    timonier_api::resources::builtin().into_iter().find(|d| d.plural == "validatingadmissionpolicies").unwrap()
}

fn vars(object: Value) -> Vars<'static> {
    let mut v = Vars::default();
    v.set("object", to_cel(&object));
    v
}

fn run(spec: Value, object: Value, fails_closed: bool) -> Outcome {
    evaluate_one(&spec, vars(object.clone()), vars(object), fails_closed)
}

fn messages(o: &Outcome) -> Vec<&str> {
    o.decisions.iter().map(|d| d.message.as_str()).collect()
}

#[test]
fn policies_are_checked_when_written() {
    let def = policy_def();
    let mut ok = json!({"metadata": {"name": "p", "generation": 2}, "spec": {"validations": [{"expression": "object.spec.replicas <= 5"}, {"expression": "semver(object.x).isGreaterThan(semver('1.0.0'))"}]}});
    check_policy(&def, &mut ok).unwrap();
    assert_eq!(ok["status"], json!({"observedGeneration": 2, "typeChecking": {}}));
    let mut bad = json!({"metadata": {"name": "p"}, "spec": {"validations": [{"expression": "object.spec.replicas <="}]}});
    let e = check_policy(&def, &mut bad).unwrap_err();
    assert_eq!(e.code, 422);
    assert!(e.message.contains("spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\": compilation failed"), "{}", e.message);
}

#[test]
fn audit_annotations_are_checked_when_written() {
    let def = policy_def();
    let mut bad = json!({"metadata": {"name": "p"}, "spec": {"auditAnnotations": [
        {"key": "bad key", "valueExpression": "'x'"},
        {"key": "k", "valueExpression": " "},
        {"key": "k", "valueExpression": "'a' +"},
    ]}});
    let e = check_policy(&def, &mut bad).unwrap_err();
    let m = e.message;
    assert!(m.contains("spec.auditAnnotations[0].key: Invalid value: \"p/bad key\": name part must consist of alphanumeric characters"), "{m}");
    assert!(m.contains("spec.auditAnnotations[1].valueExpression: Required value: valueExpression is not specified"), "{m}");
    assert!(m.contains("spec.auditAnnotations[2].key: Duplicate value: \"k\""), "{m}");
    assert!(m.contains("spec.auditAnnotations[2].valueExpression: Invalid value: \"'a' +\": compilation failed"), "{m}");
    let mut ok = json!({"metadata": {"name": "p"}, "spec": {"auditAnnotations": [{"key": "replicas", "valueExpression": "string(object.spec.replicas)"}]}});
    check_policy(&def, &mut ok).unwrap();
}

#[test]
fn validations_messages_and_reasons() {
    let spec = json!({
        "variables": [{"name": "limit", "expression": "duration('1h')"}, {"name": "broken", "expression": "object.nothere"}],
        "validations": [
            {"expression": "duration(object.spec.timeout) <= variables.limit", "messageExpression": "'timeout ' + object.spec.timeout + ' is over ' + string(variables.limit)", "reason": "Forbidden"},
            {"expression": "object.spec.replicas < 3", "message": "  too many  "},
            {"expression": " object.spec.replicas < 2 ", "messageExpression": "'multi\\nline'"},
            {"expression": "variables.broken == 1"},
            {"expression": "isSemver(object.spec.version)"},
        ],
    });
    let o = run(spec, json!({"spec": {"timeout": "90m", "replicas": 4, "version": "1.2.3"}}), true);
    assert_eq!(messages(&o)[..3], ["timeout 90m is over 3600s", "too many", "failed expression: object.spec.replicas < 2"]);
    assert_eq!(o.decisions[0].reason, "Forbidden");
    assert_eq!(o.decisions[1].reason, "Invalid");
    assert_eq!((o.decisions[3].reason, o.decisions[3].index), ("", 3));
    assert!(o.decisions[3].message.starts_with("expression 'variables.broken == 1' resulted in error"), "{}", o.decisions[3].message);
    assert_eq!(o.decisions.len(), 4);
}

#[test]
fn match_conditions_false_wins_over_errors() {
    let spec = |second: &str| json!({"matchConditions": [{"name": "a", "expression": "object.nothere"}, {"name": "b", "expression": second}], "validations": [{"expression": "false"}]});
    assert!(run(spec("false"), json!({}), true).decisions.is_empty());
    let o = run(spec("true"), json!({}), true);
    assert_eq!(o.decisions.len(), 1);
    assert!(o.decisions[0].message.starts_with("expression 'object.nothere' resulted in error"), "{:?}", o.decisions);
}

#[test]
fn audit_annotations_are_evaluated() {
    let spec = json!({"auditAnnotations": [
        {"key": "replicas", "valueExpression": "'replicas: ' + string(object.spec.replicas)"},
        {"key": "empty", "valueExpression": "'  '"},
        {"key": "none", "valueExpression": "null"},
        {"key": "number", "valueExpression": "object.spec.replicas"},
        {"key": "broken", "valueExpression": "object.nothere"},
    ]});
    let o = run(spec.clone(), json!({"spec": {"replicas": 4}}), true);
    assert_eq!(o.annotations, vec![("replicas".to_string(), "replicas: 4".to_string())]);
    assert_eq!(o.annotation_errors.len(), 2);
    assert_eq!(o.annotation_errors[0], "valueExpression 'object.spec.replicas' resulted in unsupported return type: int. Return type must be either string or null.");
    assert!(o.annotation_errors[1].starts_with("expression 'object.nothere' resulted in error"));
    // Under failurePolicy: Ignore an evaluation error leaves the annotation out; a wrong type
    // still denies.
    let o = run(spec, json!({"spec": {"replicas": 4}}), false);
    assert_eq!(o.annotation_errors.len(), 1);
    // Audit annotations see the policy's variables.
    let o = run(json!({"variables": [{"name": "who", "expression": "'team ' + object.owner"}], "auditAnnotations": [{"key": "k", "valueExpression": "variables.who"}]}), json!({"owner": "a"}), true);
    assert_eq!(o.annotations, vec![("k".to_string(), "team a".to_string())]);
    let long = run(json!({"auditAnnotations": [{"key": "k", "valueExpression": "lists.range(20000).map(i, 'é').join('')"}]}), json!({}), true);
    assert!(long.annotations[0].1.len() <= MAX_ANNOTATION_BYTES, "{}", long.annotations[0].1.len());
}

#[test]
fn expressions_past_the_cost_limit_are_cancelled() {
    let items: Vec<i64> = (0..400).collect();
    let object = json!({"items": items});
    let heavy = "object.items.all(x, object.items.all(y, x + y >= 0))";
    let o = run(json!({"validations": [{"expression": heavy}, {"expression": "object.items.size() == 400"}]}), object.clone(), true);
    assert_eq!(messages(&o), [format!("expression '{heavy}' resulted in error: operation cancelled: actual cost limit exceeded")]);
    // map() and filter() pay as they go too.
    let mapped = "object.items.map(x, object.items.filter(y, y > x)).size() > 0";
    let o = run(json!({"validations": [{"expression": mapped}]}), object.clone(), true);
    assert!(messages(&o)[0].ends_with("operation cancelled: actual cost limit exceeded"), "{:?}", messages(&o));
    // A cheap one is not.
    let o = run(json!({"validations": [{"expression": "object.items.all(x, x < 400)"}]}), object.clone(), true);
    assert!(o.decisions.is_empty());
    // Ten expressions at the limit exhaust the evaluation's budget: upstream then stops.
    let many: Vec<Value> = (0..12).map(|_| json!({"expression": heavy})).collect();
    let o = run(json!({"validations": many}), object, true);
    assert_eq!(messages(&o), [cel::OUT_OF_BUDGET]);
    // Building a huge list at once is charged before it is built: past the per-call limit,
    // or (as cel-go's actual cost counts the whole call) past the evaluation's budget.
    let o = run(json!({"validations": [{"expression": "lists.range(2000000).size() > 0"}]}), json!({}), true);
    assert!(messages(&o)[0].ends_with("operation cancelled: actual cost limit exceeded"), "{:?}", messages(&o));
    let o = run(json!({"validations": [{"expression": "lists.range(100000000).size() > 0"}]}), json!({}), true);
    assert_eq!(messages(&o), [cel::OUT_OF_BUDGET]);
}
