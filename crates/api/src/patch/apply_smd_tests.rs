//! Test cases ported from sigs.k8s.io/structured-merge-diff's `merge` package (leaf, set,
//! multiple appliers, nested, deduced, default keys, duplicates, atomic maps), run against the
//! updater-level operations (`Updater.Apply` / `Updater.Update`) on the same schemas, written as
//! OpenAPI. Expected ownership is written as FieldsV1.

use super::*;
use serde_json::json;

struct Harness {
    scope: Scope,
    live: Value,
    managers: Managed,
}

fn harness(schema: Value) -> Harness {
    let scope = Scope {
        group: String::new(),
        version: "v1".into(),
        kind: "Test".into(),
        subresource: String::new(),
        reset_fields: Vec::new(),
        schema: Some(Arc::new(TypeSchema::from_openapi_v3(&schema))),
    };
    Harness { scope, live: json!({}), managers: Managed::new() }
}

fn applier(name: &str) -> ManagerId {
    ManagerId { manager: name.into(), operation: Operation::Apply, api_version: String::new(), subresource: String::new() }
}

fn updater(name: &str) -> ManagerId {
    ManagerId { manager: name.into(), operation: Operation::Update, api_version: "v1".into(), subresource: String::new() }
}

impl Harness {
    fn apply(&mut self, manager: &str, obj: Value) -> Result<(), Vec<String>> {
        self.apply_with(manager, obj, false)
    }

    fn force_apply(&mut self, manager: &str, obj: Value) {
        self.apply_with(manager, obj, true).expect("force apply cannot conflict");
    }

    fn apply_with(&mut self, manager: &str, obj: Value, force: bool) -> Result<(), Vec<String>> {
        let ctx = Ctx::new(&self.scope);
        let mut managers = self.managers.clone();
        match updater_apply(&ctx, &self.live, &obj, &mut managers, &applier(manager), force) {
            Ok(new) => {
                if let Some(new) = new {
                    self.live = new;
                }
                self.managers = managers;
                Ok(())
            }
            Err(conflicts) => Err(conflicts
                .iter()
                .flat_map(|(id, set)| set.paths().into_iter().map(move |p| format!("{}: {}", id.manager, path_string(&p))))
                .collect()),
        }
    }

    /// Upstream `Updater.Update`.
    fn update(&mut self, manager: &str, obj: Value) {
        let ctx = Ctx::new(&self.scope);
        let id = updater(manager);
        let cmp = updater_update(&ctx, &self.live, &obj, &mut self.managers, &id, true).unwrap();
        let previous = self.managers.get(&id).map(|e| e.set.clone()).unwrap_or_default();
        let set = previous.difference(&cmp.removed).union(&cmp.modified).union(&cmp.added);
        if set.is_empty() {
            self.managers.remove(&id);
        } else {
            self.managers.insert(id, Entry { set, api_version: "v1".into(), time: None });
        }
        self.live = obj;
    }

    fn owned(&self, manager: &str) -> Value {
        self.managers.iter().find(|(id, _)| id.manager == manager).map_or(Value::Null, |(_, e)| e.set.to_fields_v1())
    }

    fn managers(&self) -> Vec<String> {
        self.managers.keys().map(|id| id.manager.clone()).collect()
    }
}

fn leaf_schema() -> Value {
    json!({"type": "object", "properties": {"numeric": {"type": "number"}, "string": {"type": "string"}, "bool": {"type": "boolean"}}})
}

fn set_schema() -> Value {
    json!({"type": "object", "properties": {"list": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}})
}

fn assoc_schema() -> Value {
    json!({"type": "object", "properties": {"list": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}, "value": {"type": "number"}}}}}})
}

fn struct_schema() -> Value {
    json!({"type": "object", "properties": {"struct": {"type": "object", "properties": {
        "name": {"type": "string"}, "value": {"type": "number"}, "scalarField": {"type": "string"},
        "complexField": {"type": "object", "properties": {"name": {"type": "string"}}}}}}})
}

#[test]
fn leaf_apply_twice() {
    let mut h = harness(leaf_schema());
    h.apply("default", json!({"numeric": 1, "string": "string"})).unwrap();
    h.apply("default", json!({"numeric": 2, "string": "string", "bool": false})).unwrap();
    assert_eq!(h.live, json!({"numeric": 2, "string": "string", "bool": false}));
    assert_eq!(h.owned("default"), json!({"f:bool": {}, "f:numeric": {}, "f:string": {}}));
}

#[test]
fn leaf_apply_update_apply_no_conflict() {
    let mut h = harness(leaf_schema());
    h.apply("default", json!({"numeric": 1, "string": "string"})).unwrap();
    h.update("controller", json!({"numeric": 1, "string": "string", "bool": true}));
    h.apply("default", json!({"numeric": 2, "string": "string"})).unwrap();
    assert_eq!(h.live, json!({"numeric": 2, "string": "string", "bool": true}));
    assert_eq!(h.owned("default"), json!({"f:numeric": {}, "f:string": {}}));
    assert_eq!(h.owned("controller"), json!({"f:bool": {}}));
}

#[test]
fn leaf_apply_update_apply_with_conflict_then_force() {
    let mut h = harness(leaf_schema());
    h.apply("default", json!({"numeric": 1, "string": "string"})).unwrap();
    h.update("controller", json!({"numeric": 1, "string": "controller string", "bool": true}));
    let err = h.apply("default", json!({"numeric": 2, "string": "user string"})).unwrap_err();
    assert_eq!(err, vec!["controller: .string"]);
    h.force_apply("default", json!({"numeric": 2, "string": "user string"}));
    assert_eq!(h.live, json!({"numeric": 2, "string": "user string", "bool": true}));
    assert_eq!(h.owned("default"), json!({"f:numeric": {}, "f:string": {}}));
    assert_eq!(h.owned("controller"), json!({"f:bool": {}}));
}

#[test]
fn leaf_apply_twice_remove() {
    let mut h = harness(leaf_schema());
    h.apply("default", json!({"numeric": 1, "string": "string", "bool": false})).unwrap();
    h.apply("default", json!({"string": "new string"})).unwrap();
    assert_eq!(h.live, json!({"string": "new string"}));
    assert_eq!(h.owned("default"), json!({"f:string": {}}));
}

#[test]
fn leaf_update_apply_omits() {
    let mut h = harness(leaf_schema());
    h.apply("default", json!({"numeric": 2})).unwrap();
    h.update("controller", json!({"numeric": 1}));
    h.apply("default", json!({})).unwrap();
    assert_eq!(h.live, json!({"numeric": 1}));
    assert_eq!(h.managers(), vec!["controller"]);
    assert_eq!(h.owned("controller"), json!({"f:numeric": {}}));
}

#[test]
fn leaf_update_takes_ownership_and_empties_applier() {
    let mut h = harness(leaf_schema());
    h.apply("default", json!({"string": "string"})).unwrap();
    h.update("controller", json!({"string": "new string"}));
    assert_eq!(h.managers(), vec!["controller"]);
    assert_eq!(h.owned("controller"), json!({"f:string": {}}));
}

#[test]
fn leaf_apply_remove_empty_set() {
    let mut h = harness(leaf_schema());
    h.apply("default", json!({"string": "string"})).unwrap();
    h.apply("default", json!({})).unwrap();
    assert_eq!(h.live, json!({}));
    assert!(h.managers.is_empty());
}

#[test]
fn set_apply_twice() {
    let mut h = harness(set_schema());
    h.apply("default", json!({"list": ["a", "c"]})).unwrap();
    h.apply("default", json!({"list": ["a", "b", "c", "d"]})).unwrap();
    assert_eq!(h.live, json!({"list": ["a", "b", "c", "d"]}));
    assert_eq!(h.owned("default"), json!({"f:list": {"v:\"a\"": {}, "v:\"b\"": {}, "v:\"c\"": {}, "v:\"d\"": {}}}));
}

#[test]
fn set_apply_update_apply_with_overlap() {
    let mut h = harness(set_schema());
    h.apply("default", json!({"list": ["a", "c"]})).unwrap();
    h.update("controller", json!({"list": ["a", "b", "c", "d"]}));
    h.apply("default", json!({"list": ["a", "b", "c"]})).unwrap();
    assert_eq!(h.live, json!({"list": ["a", "b", "c", "d"]}));
    assert_eq!(h.owned("default"), json!({"f:list": {"v:\"a\"": {}, "v:\"b\"": {}, "v:\"c\"": {}}}));
    assert_eq!(h.owned("controller"), json!({"f:list": {"v:\"b\"": {}, "v:\"d\"": {}}}));
}

#[test]
fn set_apply_twice_reorder() {
    let mut h = harness(set_schema());
    h.apply("default", json!({"list": ["a", "b", "c", "d"]})).unwrap();
    h.apply("default", json!({"list": ["a", "d", "c", "b"]})).unwrap();
    assert_eq!(h.live, json!({"list": ["a", "d", "c", "b"]}));
}

#[test]
fn set_apply_update_apply_reorder() {
    let mut h = harness(set_schema());
    h.apply("default", json!({"list": ["a", "b", "c", "d"]})).unwrap();
    h.update("controller", json!({"list": ["a", "d", "c", "b"]}));
    h.apply("default", json!({"list": ["a", "b", "c", "d"]})).unwrap();
    assert_eq!(h.live, json!({"list": ["a", "b", "c", "d"]}));
    assert_eq!(h.managers(), vec!["default"]);
}

#[test]
fn set_apply_twice_remove() {
    let mut h = harness(set_schema());
    h.apply("default", json!({"list": ["a", "b", "c", "d"]})).unwrap();
    h.apply("default", json!({"list": ["a", "c"]})).unwrap();
    assert_eq!(h.live, json!({"list": ["a", "c"]}));
    assert_eq!(h.owned("default"), json!({"f:list": {"v:\"a\"": {}, "v:\"c\"": {}}}));
}

#[test]
fn multiple_appliers_remove_one() {
    let mut h = harness(assoc_schema());
    h.apply("apply-one", json!({"list": [{"name": "a"}, {"name": "b"}]})).unwrap();
    h.apply("apply-two", json!({"list": [{"name": "c"}]})).unwrap();
    h.apply("apply-one", json!({"list": [{"name": "a"}]})).unwrap();
    assert_eq!(h.live, json!({"list": [{"name": "a"}, {"name": "c"}]}));
    assert_eq!(h.owned("apply-one"), json!({"f:list": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}}}}));
    assert_eq!(h.owned("apply-two"), json!({"f:list": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}}}}));
}

#[test]
fn multiple_appliers_remove_one_keep_one() {
    let mut h = harness(assoc_schema());
    h.apply("apply-one", json!({"list": [{"name": "a"}, {"name": "b"}, {"name": "c"}]})).unwrap();
    h.apply("apply-two", json!({"list": [{"name": "c"}, {"name": "d"}]})).unwrap();
    h.apply("apply-one", json!({"list": [{"name": "a"}]})).unwrap();
    assert_eq!(h.live, json!({"list": [{"name": "a"}, {"name": "c"}, {"name": "d"}]}));
    assert_eq!(
        h.owned("apply-two"),
        json!({"f:list": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}}, "k:{\"name\":\"d\"}": {".": {}, "f:name": {}}}})
    );
}

#[test]
fn multiple_appliers_same_value_no_conflict_change_value_conflict() {
    let mut h = harness(assoc_schema());
    h.apply("apply-one", json!({"list": [{"name": "a", "value": 1}]})).unwrap();
    h.apply("apply-two", json!({"list": [{"name": "a", "value": 1}]})).unwrap();
    let err = h.apply("apply-two", json!({"list": [{"name": "a", "value": 2}]})).unwrap_err();
    assert_eq!(err, vec![r#"apply-one: .list[name="a"].value"#]);
}

#[test]
fn unset_scalar_sole_owner() {
    let mut h = harness(struct_schema());
    h.apply("apply-one", json!({"struct": {"name": "a", "scalarField": "a"}})).unwrap();
    h.apply("apply-one", json!({"struct": {"name": "a"}})).unwrap();
    assert_eq!(h.live, json!({"struct": {"name": "a"}}));
    assert_eq!(h.owned("apply-one"), json!({"f:struct": {"f:name": {}}}));
}

#[test]
fn unset_scalar_shared_with_applier() {
    let mut h = harness(struct_schema());
    h.apply("apply-one", json!({"struct": {"name": "a", "scalarField": "a"}})).unwrap();
    h.apply("apply-two", json!({"struct": {"scalarField": "a"}})).unwrap();
    h.apply("apply-one", json!({"struct": {"name": "a"}})).unwrap();
    assert_eq!(h.live, json!({"struct": {"name": "a", "scalarField": "a"}}));
    assert_eq!(h.owned("apply-two"), json!({"f:struct": {"f:scalarField": {}}}));
}

#[test]
fn unset_scalar_shared_with_updater() {
    let mut h = harness(struct_schema());
    h.update("updater", json!({"struct": {"name": "a", "scalarField": "a"}}));
    h.apply("applier", json!({"struct": {"name": "a", "scalarField": "a"}})).unwrap();
    h.apply("applier", json!({"struct": {"name": "a"}})).unwrap();
    assert_eq!(h.live, json!({"struct": {"name": "a", "scalarField": "a"}}));
    assert_eq!(h.owned("updater"), json!({"f:struct": {".": {}, "f:name": {}, "f:scalarField": {}}}));
    assert_eq!(h.owned("applier"), json!({"f:struct": {"f:name": {}}}));
}

#[test]
fn updater_claims_field() {
    let mut h = harness(struct_schema());
    h.apply("applier", json!({"struct": {"name": "a", "scalarField": "a"}})).unwrap();
    h.update("updater", json!({"struct": {"name": "a", "scalarField": "b"}}));
    assert_eq!(h.owned("updater"), json!({"f:struct": {"f:scalarField": {}}}));
    assert_eq!(h.owned("applier"), json!({"f:struct": {"f:name": {}}}));
}

#[test]
fn unset_complex_sole_owner_and_shared() {
    let mut h = harness(struct_schema());
    h.apply("apply-one", json!({"struct": {"name": "a", "complexField": {"name": "b"}}})).unwrap();
    h.apply("apply-one", json!({"struct": {"name": "a"}})).unwrap();
    assert_eq!(h.live, json!({"struct": {"name": "a"}}));

    let mut h = harness(struct_schema());
    h.apply("apply-one", json!({"struct": {"name": "a", "complexField": {"name": "b"}}})).unwrap();
    h.apply("apply-two", json!({"struct": {"complexField": {"name": "b"}}})).unwrap();
    h.apply("apply-one", json!({"struct": {"name": "a"}})).unwrap();
    assert_eq!(h.live, json!({"struct": {"name": "a", "complexField": {"name": "b"}}}));
    assert_eq!(h.owned("apply-two"), json!({"f:struct": {"f:complexField": {"f:name": {}}}}));
}

#[test]
fn struct_apply_remove_all_and_dangling() {
    let mut h = harness(struct_schema());
    h.apply("default", json!({"struct": {"name": "a", "value": 1}})).unwrap();
    h.apply("default", json!({})).unwrap();
    assert_eq!(h.live, json!({}));
    assert!(h.managers.is_empty());

    let mut h = harness(struct_schema());
    h.apply("default", json!({"struct": {"name": "a"}})).unwrap();
    h.apply("default", json!({"struct": null})).unwrap();
    assert_eq!(h.live, json!({"struct": null}));
    assert_eq!(h.owned("default"), json!({"f:struct": {}}));
}

#[test]
fn struct_apply_update_remove_dangling_dict_and_null() {
    for last in [json!({}), json!({"struct": {}}), json!({"struct": null})] {
        let mut h = harness(struct_schema());
        h.apply("default", json!({"struct": {"name": "a"}})).unwrap();
        h.update("controller", json!({"struct": {"name": "a", "value": 1}}));
        h.apply("default", last.clone()).unwrap();
        assert_eq!(h.live, json!({"struct": {"value": 1}}), "after applying {last}");
    }
}

#[test]
fn deduced_list_is_atomic_and_maps_granular() {
    let mut h = harness(json!({}));
    h.apply("default", json!({"list": ["a", "b"], "map": {"a": 1}})).unwrap();
    assert_eq!(h.owned("default"), json!({"f:list": {}, "f:map": {".": {}, "f:a": {}}}));
    h.apply("default", json!({"list": ["c"], "map": {"b": 2}})).unwrap();
    assert_eq!(h.live, json!({"list": ["c"], "map": {"b": 2}}));
    h.update("controller", json!({"list": ["d"], "map": {"b": 2, "c": 3}}));
    let err = h.apply("default", json!({"list": ["e"], "map": {"b": 2}})).unwrap_err();
    assert_eq!(err, vec!["controller: .list"]);
}

#[test]
fn atomic_map_force() {
    let schema = json!({"type": "object", "properties": {"atomicMap": {"type": "object", "x-kubernetes-map-type": "atomic",
        "additionalProperties": {"type": "string"}}}});
    let mut h = harness(schema);
    h.apply("apply-one", json!({"atomicMap": {"field1": "a"}})).unwrap();
    assert_eq!(h.apply("apply-two", json!({"atomicMap": {"field2": "b"}})).unwrap_err(), vec!["apply-one: .atomicMap"]);
    h.force_apply("apply-two", json!({"atomicMap": {"field2": "b"}}));
    assert_eq!(h.live, json!({"atomicMap": {"field2": "b"}}));
    assert_eq!(h.managers(), vec!["apply-two"]);
    assert_eq!(h.owned("apply-two"), json!({"f:atomicMap": {}}));
}

#[test]
fn default_keys_identify_items() {
    let schema = json!({"type": "object", "properties": {"containerPorts": {"type": "array", "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["port", "protocol"], "items": {"type": "object", "properties": {
            "port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}, "name": {"type": "string"}}}}}});
    let mut h = harness(schema.clone());
    h.apply("default", json!({"containerPorts": [{"port": 80}, {"port": 80, "protocol": "UDP"}]})).unwrap();
    assert_eq!(
        h.owned("default"),
        json!({"f:containerPorts": {
            "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}},
            "k:{\"port\":80,\"protocol\":\"UDP\"}": {".": {}, "f:port": {}, "f:protocol": {}}}})
    );
    let mut h = harness(schema);
    h.apply("apply-one", json!({"containerPorts": [{"port": 80, "protocol": "TCP", "name": "foo"}]})).unwrap();
    let err = h.apply("apply-two", json!({"containerPorts": [{"port": 80, "name": "bar"}]})).unwrap_err();
    assert_eq!(err, vec![r#"apply-one: .containerPorts[port=80,protocol="TCP"].name"#]);
}

#[test]
fn duplicates_in_live_list_are_replaced_by_force_apply() {
    let schema = json!({"type": "object", "properties": {"list": {"type": "array", "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "properties": {"name": {"type": "string"}, "value1": {"type": "integer"}}}}}});
    let mut h = harness(schema);
    h.update("updater", json!({"list": [{"name": "a", "value1": 1}, {"name": "a", "value1": 2}, {"name": "b", "value1": 3}]}));
    assert_eq!(h.owned("updater"), json!({"f:list": {".": {}, "k:{\"name\":\"a\"}": {}, "k:{\"name\":\"b\"}": {".": {}, "f:name": {}, "f:value1": {}}}}));
    let conflicts = h.apply("applier", json!({"list": [{"name": "a", "value1": 3}]})).unwrap_err();
    assert_eq!(conflicts, vec![r#"updater: .list[name="a"]"#]);
    h.force_apply("applier", json!({"list": [{"name": "a", "value1": 3}]}));
    assert_eq!(h.live, json!({"list": [{"name": "a", "value1": 3}, {"name": "b", "value1": 3}]}));
    assert_eq!(h.owned("applier"), json!({"f:list": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}, "f:value1": {}}}}));
    assert_eq!(h.owned("updater"), json!({"f:list": {".": {}, "k:{\"name\":\"b\"}": {".": {}, "f:name": {}, "f:value1": {}}}}));
}

#[test]
fn duplicates_in_live_set_are_merged_by_force_apply() {
    let schema = json!({"type": "object", "properties": {"set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "integer"}}}});
    let mut h = harness(schema);
    h.update("updater", json!({"set": [1, 1, 3, 4]}));
    assert_eq!(h.apply("applier", json!({"set": [1]})).unwrap_err(), vec!["updater: .set[=1]"]);
    h.force_apply("applier", json!({"set": [1]}));
    assert_eq!(h.live, json!({"set": [1, 3, 4]}));
    assert_eq!(h.owned("updater"), json!({"f:set": {".": {}, "v:3": {}, "v:4": {}}}));
    assert_eq!(h.owned("applier"), json!({"f:set": {"v:1": {}}}));
}

#[test]
fn merge_keeps_live_order_and_inserts_applied_items() {
    // typed/merge_test.go: "list of maps": live items stay, applied ones follow the applied order.
    let h = harness(assoc_schema());
    let ctx = Ctx::new(&h.scope);
    let lhs = json!({"list": [{"name": "a"}, {"name": "b"}, {"name": "c"}]});
    let rhs = json!({"list": [{"name": "c", "value": 1}, {"name": "d"}, {"name": "a", "value": 2}]});
    let merged = typed::merge(ctx.nodes, ctx.root, Some(&lhs), Some(&rhs)).unwrap();
    let names: Vec<&str> = merged["list"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["b", "c", "d", "a"]);
    assert_eq!(merged["list"][1]["value"], 1);
}

#[test]
fn fields_v1_round_trip_and_order() {
    let raw = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:list": {"k:{\"b\":2,\"a\":\"x\"}": {".": {}, "f:a": {}},
        "v:3": {}, "i:0": {}}, "f:replicas": {}}, "x:unknown": {}});
    let set = Set::from_fields_v1(&raw).unwrap();
    let paths: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
    assert_eq!(
        paths,
        [".metadata.labels", ".metadata.labels.app", ".spec.replicas", r#".spec.list[a="x",b=2]"#, ".spec.list[=3]", ".spec.list[0]", r#".spec.list[a="x",b=2].a"#]
    );
    let back = set.to_fields_v1();
    assert_eq!(back["f:spec"]["f:list"]["k:{\"a\":\"x\",\"b\":2}"], json!({".": {}, "f:a": {}}));
    assert_eq!(Set::from_fields_v1(&back).unwrap(), set);
    assert!(Set::from_fields_v1(&json!({"f:a": 1})).is_err());
    assert!(Set::from_fields_v1(&json!({"k:[1]": {}})).is_err());
    assert!(Set::from_fields_v1(&json!({"q": {}})).is_err());
}

#[test]
fn go_compatible_key_serialization() {
    let pe = PathElement::Key(vec![("name".into(), json!("<a&b>"))]);
    assert_eq!(pe.serialize(), r#"k:{"name":"\u003ca\u0026b\u003e"}"#);
    assert_eq!(PathElement::Value(json!(1.5)).serialize(), "v:1.5");
    assert_eq!(PathElement::Value(json!(2.0)).serialize(), "v:2");
    assert_eq!(PathElement::Key(vec![("port".into(), json!(80)), ("protocol".into(), json!("TCP"))]).to_string(), r#"[port=80,protocol="TCP"]"#);
}
