//! Tests of the merge algorithm against upstream's own test cases, on upstream's `MergeItem`
//! test struct, plus the error paths and a no-panic check.

use serde_json::json;

use super::meta::{Field, Schema, Shape::*, TypeDef, MERGE, MERGE_RETAIN, NONE, NONE_RETAIN, REPLACE};
use super::*;

/// The `MergeItem` / `RetainKeysMergeItem` test structs of upstream's patch_test.go.
static MERGE_ITEM_TYPES: &[TypeDef] = &[
    TypeDef {
        name: "mergeItem",
        fields: &[
            Field { name: "mergeItemPtr", shape: List, ty: "mergeItem", strategy: MERGE, merge_key: "name" },
            Field { name: "mergingIntList", shape: List, ty: "", strategy: MERGE, merge_key: "" },
            Field { name: "mergingList", shape: List, ty: "mergeItem", strategy: MERGE, merge_key: "name" },
            Field { name: "nonMergingList", shape: List, ty: "mergeItem", strategy: NONE, merge_key: "" },
            Field { name: "replacingItem", shape: Object, ty: "", strategy: REPLACE, merge_key: "" },
            Field { name: "retainKeysMap", shape: Object, ty: "retainKeysMergeItem", strategy: NONE_RETAIN, merge_key: "" },
            Field { name: "retainKeysMergingList", shape: List, ty: "mergeItem", strategy: MERGE_RETAIN, merge_key: "name" },
            Field { name: "valuesByName", shape: MapOf, ty: "mergeItem", strategy: NONE, merge_key: "" },
        ],
    },
    TypeDef {
        name: "retainKeysMergeItem",
        fields: &[
            Field { name: "mergingIntList", shape: List, ty: "", strategy: MERGE, merge_key: "" },
            Field { name: "mergingList", shape: List, ty: "mergeItem", strategy: MERGE, merge_key: "name" },
            Field { name: "nonMergingList", shape: List, ty: "mergeItem", strategy: NONE, merge_key: "" },
        ],
    },
];

const MERGE_ITEM: Schema = Schema::new(MERGE_ITEM_TYPES);

fn apply_item(original: &Value, patch: &Value) -> Result<Value, Failure> {
    apply_with(MERGE_ITEM, MERGE_ITEM.ctx("mergeItem"), original, patch)
}

/// Cases ported from k8s.io/apimachinery `pkg/util/strategicpatch/patch_test.go`
/// (Apache-2.0): `customStrategicMergePatchTestCaseData`, `customStrategicMergePatchRawTestCases`,
/// `createStrategicMergePatchTestCaseData`, `strategicMergePatchRawTestCases` and
/// `replaceRawExtensionPatchTestCases`, converted to JSON. Each is (description, object,
/// patch, expected result or `error: <message part>`); "(three-way)" marks the application
/// of a case's three-way patch to its current object. Upstream applies the YAML-table cases
/// with merging lists pre-sorted by merge key; they are given sorted here.
const UPSTREAM_CASES: &[(&str, &str, &str, &str)] = &[
    ("unique scalars when merging lists", r#"{"mergingIntList":[1,2]}"#, r#"{"mergingIntList":[2,3]}"#, r#"{"mergingIntList":[1,2,3]}"#),
    ("delete map from nested map", r#"{"simpleMap":{"key1":1,"key2":1}}"#, r#"{"simpleMap":{"$patch":"delete"}}"#, r#"{"simpleMap":{}}"#),
    ("delete all items from merging list", r#"{"mergingList":[{"name":1},{"name":2}]}"#, r#"{"mergingList":[{"$patch":"replace"}]}"#, r#"{"mergingList":[]}"#),
    ("merge empty merging lists", r#"{"mergingList":[]}"#, r#"{"mergingList":[]}"#, r#"{"mergingList":[]}"#),
    ("delete all keys from map", r#"{"name":1,"value":1}"#, r#"{"$patch":"replace"}"#, r#"{}"#),
    ("add key and delete all keys from map", r#"{"name":1,"value":1}"#, r#"{"$patch":"replace","other":"a"}"#, r#"{"other":"a"}"#),
    ("delete all duplicate entries in a merging list", r#"{"mergingList":[{"name":1},{"name":1},{"name":2,"value":"a"},{"name":3},{"name":3}]}"#, r#"{"mergingList":[{"$patch":"delete","name":1},{"$patch":"delete","name":3}]}"#, r#"{"mergingList":[{"name":2,"value":"a"}]}"#),
    ("retainKeys map can add a field when no retainKeys directive present", r#"{"retainKeysMap":{"name":"foo"}}"#, r#"{"retainKeysMap":{"value":"bar"}}"#, r#"{"retainKeysMap":{"name":"foo","value":"bar"}}"#),
    ("retainKeys map can change a field when no retainKeys directive present", r#"{"retainKeysMap":{"name":"foo","value":"a"}}"#, r#"{"retainKeysMap":{"value":"b"}}"#, r#"{"retainKeysMap":{"name":"foo","value":"b"}}"#),
    ("retainKeys map can delete a field when no retainKeys directive present", r#"{"retainKeysMap":{"name":"foo","value":"a"}}"#, r#"{"retainKeysMap":{"value":null}}"#, r#"{"retainKeysMap":{"name":"foo"}}"#),
    ("retainKeys map merge an empty map", r#"{"retainKeysMap":{"name":"foo","value":"a"}}"#, r#"{"retainKeysMap":{}}"#, r#"{"retainKeysMap":{"name":"foo","value":"a"}}"#),
    ("retainKeys list can add a field when no retainKeys directive present", r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo"}]}"#, r#"{"retainKeysMergingList":[{"name":"foo","value":"a"}]}"#, r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]}"#),
    ("retainKeys list can change a field when no retainKeys directive present", r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]}"#, r#"{"retainKeysMergingList":[{"name":"foo","value":"b"}]}"#, r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"b"}]}"#),
    ("retainKeys list can delete a field when no retainKeys directive present", r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]}"#, r#"{"retainKeysMergingList":[{"name":"foo","value":null}]}"#, r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo"}]}"#),
    ("preserve the order from the patch in a merging list", r#"{"mergingList":[{"name":1},{"name":2,"value":"b"},{"name":3}]}"#, r#"{"mergingList":[{"name":1,"value":"a"},{"name":2,"other":"x"},{"name":3,"value":"c"}]}"#, r#"{"mergingList":[{"name":1,"value":"a"},{"name":2,"other":"x","value":"b"},{"name":3,"value":"c"}]}"#),
    ("preserve the order from the patch in a merging list 2", r#"{"mergingList":[{"name":1},{"name":2,"value":"b"},{"name":3}]}"#, r#"{"mergingList":[{"name":1,"value":"a"},{"name":3,"value":"c"}]}"#, r#"{"mergingList":[{"name":1,"value":"a"},{"name":2,"value":"b"},{"name":3,"value":"c"}]}"#),
    ("preserve the order from the patch in a merging int list", r#"{"mergingIntList":[1,2,3]}"#, r#"{"mergingIntList":[1,2,3]}"#, r#"{"mergingIntList":[1,2,3]}"#),
    ("preserve the order from the patch in a merging int list", r#"{"mergingIntList":[1,2,3]}"#, r#"{"mergingIntList":[1,3]}"#, r#"{"mergingIntList":[1,2,3]}"#),
    ("$setElementOrder contains item that is not present in the list to be merged", r#"{"mergingList":[{"name":1},{"name":3}]}"#, r#"{"$setElementOrder/mergingList":[{"name":3},{"name":2},{"name":1}],"mergingList":[{"name":3,"value":3},{"name":1,"value":1}]}"#, r#"{"mergingList":[{"name":3,"value":3},{"name":1,"value":1}]}"#),
    ("$setElementOrder contains item that is not present in the int list to be merged", r#"{"mergingIntList":[1,3]}"#, r#"{"$setElementOrder/mergingIntList":[3,2,1]}"#, r#"{"mergingIntList":[3,1]}"#),
    ("should check if order in $setElementOrder and patch list match", r#"{"mergingList":[{"name":1},{"name":3},{"name":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":1},{"name":2},{"name":3}],"mergingList":[{"name":3,"value":3},{"name":1,"value":1}]}"#, r#"error: doesn't match"#),
    ("$setElementOrder contains item that is not present in the int list to be merged", r#"{"mergingIntList":[1,3,2]}"#, r#"{"$setElementOrder/mergingIntList":[1,2,3],"mergingIntList":[3,1]}"#, r#"error: doesn't match"#),
    ("missing merge key should error out", r#"{"mergingList":[{"name":1,"value":"a"}]}"#, r#"{"mergingList":[{"value":"b"}]}"#, r#"error: does not contain declared merge key"#),
    ("$deleteFromPrimitiveList of nonexistent item in primitive list should not add the item to the list", r#"{"mergingIntList":[1,2]}"#, r#"{"$deleteFromPrimitiveList/mergingIntList":[3]}"#, r#"{"mergingIntList":[1,2]}"#),
    ("$deleteFromPrimitiveList on empty primitive list should not add the item to the list", r#"{"mergingIntList":null}"#, r#"{"$deleteFromPrimitiveList/mergingIntList":[3]}"#, r#"{"mergingIntList":null}"#),
    ("$deleteFromPrimitiveList on nonexistent primitive list should not add the primitive list", r#"{"foo":["bar"]}"#, r#"{"$deleteFromPrimitiveList/mergingIntList":[3]}"#, r#"{"foo":["bar"]}"#),
    ("$deleteFromPrimitiveList should delete item from a list with merge patch strategy", r#"{"mergingIntList":[1,2,3]}"#, r#"{"$deleteFromPrimitiveList/mergingIntList":[2]}"#, r#"{"mergingIntList":[1,3]}"#),
    ("$deleteFromPrimitiveList should delete item from a list without merge patch strategy", r#"{"nonMergingIntList":[1,2,3]}"#, r#"{"$deleteFromPrimitiveList/nonMergingIntList":[2]}"#, r#"{"nonMergingIntList":[1,3]}"#),
    ("nil original (three-way)", r#"{"name":1,"other":"a"}"#, r#"{"value":1}"#, r#"{"name":1,"other":"a","value":1}"#),
    ("add field and delete field from map", r#"{"name":1}"#, r#"{"name":null,"value":1}"#, r#"{"value":1}"#),
    ("add field and delete field from map with conflict (three-way)", r#"{"name":"a","other":"a"}"#, r#"{"name":null,"value":1}"#, r#"{"other":"a","value":1}"#),
    ("delete field from nested map", r#"{"simpleMap":{"key1":1,"key2":1}}"#, r#"{"simpleMap":{"key2":null}}"#, r#"{"simpleMap":{"key1":1}}"#),
    ("delete all fields from map", r#"{"name":1,"value":1}"#, r#"{"name":null,"value":null}"#, r#"{}"#),
    ("add field and delete all fields from map", r#"{"name":1,"value":1}"#, r#"{"name":null,"other":"a","value":null}"#, r#"{"other":"a"}"#),
    ("replace list of scalars", r#"{"nonMergingIntList":[1,2]}"#, r#"{"nonMergingIntList":[2,3]}"#, r#"{"nonMergingIntList":[2,3]}"#),
    ("delete all maps from merging list", r#"{"mergingList":[{"name":1},{"name":2}]}"#, r#"{"mergingList":[{"$patch":"delete","name":1},{"$patch":"delete","name":2}]}"#, r#"{"mergingList":[]}"#),
    ("defined null values should propagate overwrite current fields (with conflict)", r#"{"name":2}"#, r#"{"name":1,"other":null,"value":1}"#, r#"{"name":1,"value":1}"#),
    ("defined null values should propagate removing original fields", r#"{"name":"original-name","value":"original-value"}"#, r#"{"name":"modified-name","value":null}"#, r#"{"name":"modified-name"}"#),
    ("nil patch with retainKeys map", r#"{"name":"a","retainKeysMap":{"name":"foo"}}"#, r#"{}"#, r#"{"name":"a","retainKeysMap":{"name":"foo"}}"#),
    ("nested patch merge with empty list", r#"{"name":"hi"}"#, r#"{"mergingList":[{"name":"hello"},{"$patch":"delete","name":"doesntexist"}]}"#, r#"{"mergingList":[{"name":"hello"}],"name":"hi"}"#),
    ("delete items in lists of scalars", r#"{"mergingIntList":[1,2,3]}"#, r#"{"$deleteFromPrimitiveList/mergingIntList":[3],"$setElementOrder/mergingIntList":[1,2]}"#, r#"{"mergingIntList":[1,2]}"#),
    ("delete all duplicate items in lists of scalars", r#"{"mergingIntList":[1,2,3,3]}"#, r#"{"$deleteFromPrimitiveList/mergingIntList":[3],"$setElementOrder/mergingIntList":[1,2]}"#, r#"{"mergingIntList":[1,2]}"#),
    ("add and delete items in lists of scalars", r#"{"mergingIntList":[1,2,3]}"#, r#"{"$deleteFromPrimitiveList/mergingIntList":[3],"$setElementOrder/mergingIntList":[1,2,4],"mergingIntList":[4]}"#, r#"{"mergingIntList":[1,2,4]}"#),
    ("merge lists of maps", r#"{"mergingList":[{"name":1},{"name":2,"value":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":4},{"name":1},{"name":2},{"name":3}],"mergingList":[{"name":4,"value":4},{"name":3,"value":3}]}"#, r#"{"mergingList":[{"name":4,"value":4},{"name":1},{"name":2,"value":2},{"name":3,"value":3}]}"#),
    ("merge lists of maps with conflict (three-way)", r#"{"mergingList":[{"name":1,"other":"a"},{"name":2,"other":"b","value":3}]}"#, r#"{"$setElementOrder/mergingList":[{"name":1},{"name":2},{"name":3}],"mergingList":[{"name":2,"value":2},{"name":3,"value":3}]}"#, r#"{"mergingList":[{"name":1,"other":"a"},{"name":2,"other":"b","value":2},{"name":3,"value":3}]}"#),
    ("add field to map in merging list with conflict (three-way)", r#"{"mergingList":[{"name":1,"other":"a"},{"name":3,"other":"b","value":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]}"#, r#"{"mergingList":[{"name":1,"other":"a","value":1},{"name":2,"value":2},{"name":3,"other":"b","value":2}]}"#),
    ("add an item that already exists in current object in merging list", r#"{"mergingList":[{"name":1,"value":"a"},{"name":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":1},{"name":2},{"name":3}],"mergingList":[{"name":3}]}"#, r#"{"mergingList":[{"name":1,"value":"a"},{"name":2},{"name":3}]}"#),
    ("add an item that already exists in current object in merging list (three-way)", r#"{"mergingList":[{"name":1,"other":"x","value":"a"},{"name":2},{"name":3}]}"#, r#"{}"#, r#"{"mergingList":[{"name":1,"other":"x","value":"a"},{"name":2},{"name":3}]}"#),
    ("delete map from merging list", r#"{"mergingList":[{"name":1},{"name":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":2}],"mergingList":[{"$patch":"delete","name":1}]}"#, r#"{"mergingList":[{"name":2}]}"#),
    ("delete missing map from merging list (three-way)", r#"{"mergingList":[{"name":2,"other":"b"}]}"#, r#"{"$setElementOrder/mergingList":[{"name":2}],"mergingList":[{"$patch":"delete","name":1}]}"#, r#"{"mergingList":[{"name":2,"other":"b"}]}"#),
    ("add map and delete map from merging list", r#"{"mergingList":[{"name":1},{"name":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":2},{"name":3}],"mergingList":[{"name":3},{"$patch":"delete","name":1}]}"#, r#"{"mergingList":[{"name":2},{"name":3}]}"#),
    ("add map and delete map from merging list (three-way)", r#"{"mergingList":[{"name":1},{"name":2,"other":"b"},{"name":4,"other":"c"}]}"#, r#"{"$setElementOrder/mergingList":[{"name":2},{"name":3}],"mergingList":[{"name":3},{"$patch":"delete","name":1}]}"#, r#"{"mergingList":[{"name":2,"other":"b"},{"name":4,"other":"c"},{"name":3}]}"#),
    ("add map and delete map from merging list with conflict (three-way)", r#"{"mergingList":[{"name":1,"other":"a"},{"name":4,"other":"c"}]}"#, r#"{"$setElementOrder/mergingList":[{"name":2},{"name":3}],"mergingList":[{"name":2},{"name":3},{"$patch":"delete","name":1}]}"#, r#"{"mergingList":[{"name":4,"other":"c"},{"name":2},{"name":3}]}"#),
    ("delete field from map in merging list", r#"{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":null}]}"#, r#"{"mergingList":[{"name":1},{"name":2,"value":2}]}"#),
    ("delete missing field from map in merging list (three-way)", r#"{"mergingList":[{"name":1,"other":"a"},{"name":2,"other":"b","value":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":null}]}"#, r#"{"mergingList":[{"name":1,"other":"a"},{"name":2,"other":"b","value":2}]}"#),
    ("replace non merging list nested in merging list", r#"{"mergingList":[{"name":1,"nonMergingList":[{"name":1},{"name":2,"value":2}]},{"name":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}]}]}"#, r#"{"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}]},{"name":2}]}"#),
    ("replace non merging list nested in merging list with deletion conflict (three-way)", r#"{"mergingList":[{"name":1,"nonMergingList":[{"name":2,"value":2}],"other":"a"},{"name":2,"other":"b"}]}"#, r#"{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}]}]}"#, r#"{"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}],"other":"a"},{"name":2,"other":"b"}]}"#),
    ("add field to map in merging list nested in merging list", r#"{"mergingList":[{"mergingList":[{"name":1},{"name":2,"value":2}],"name":1},{"name":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":1}],"name":1}]}"#, r#"{"mergingList":[{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}],"name":1},{"name":2}]}"#),
    ("add field to map in merging list nested in merging list with deletion conflict (three-way)", r#"{"mergingList":[{"mergingList":[{"name":2,"other":"d","value":2}],"name":1,"other":"a"},{"name":2,"other":"b"}]}"#, r#"{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":1}],"name":1}]}"#, r#"{"mergingList":[{"mergingList":[{"name":1,"value":1},{"name":2,"other":"d","value":2}],"name":1,"other":"a"},{"name":2,"other":"b"}]}"#),
    ("add map to merging list by pointer", r#"{"mergeItemPtr":[{"name":1}]}"#, r#"{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"mergeItemPtr":[{"name":2}]}"#, r#"{"mergeItemPtr":[{"name":1},{"name":2}]}"#),
    ("add field to map in merging list by pointer", r#"{"mergeItemPtr":[{"mergeItemPtr":[{"name":1},{"name":2,"value":2}],"name":1},{"name":2}]}"#, r#"{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"mergeItemPtr":[{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"mergeItemPtr":[{"name":1,"value":1}],"name":1}]}"#, r#"{"mergeItemPtr":[{"mergeItemPtr":[{"name":1,"value":1},{"name":2,"value":2}],"name":1},{"name":2}]}"#),
    ("merge lists of scalars", r#"{"mergingIntList":[1,2]}"#, r#"{"$setElementOrder/mergingIntList":[1,2,3],"mergingIntList":[3]}"#, r#"{"mergingIntList":[1,2,3]}"#),
    ("add duplicate field to map in merging int list (three-way)", r#"{"mergingIntList":[1,2,3]}"#, r#"{}"#, r#"{"mergingIntList":[1,2,3]}"#),
    ("add an item in a list of primitives and preserve order", r#"{"mergingIntList":[1,2]}"#, r#"{"$setElementOrder/mergingIntList":[3,1,2],"mergingIntList":[3]}"#, r#"{"mergingIntList":[3,1,2]}"#),
    ("delete an item in a list of primitives and preserve order", r#"{"mergingIntList":[1,2,3]}"#, r#"{"$deleteFromPrimitiveList/mergingIntList":[3],"$setElementOrder/mergingIntList":[2,1]}"#, r#"{"mergingIntList":[2,1]}"#),
    ("add an item in a list and preserve order", r#"{"mergingList":[{"name":1},{"name":2,"value":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":3},{"name":1},{"name":2}],"mergingList":[{"name":3,"value":3}]}"#, r#"{"mergingList":[{"name":3,"value":3},{"name":1},{"name":2,"value":2}]}"#),
    ("add multiple items in a list and preserve order", r#"{"mergingList":[{"name":1},{"name":2,"value":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":1},{"name":4},{"name":2},{"name":3}],"mergingList":[{"name":4,"value":4},{"name":3,"value":3}]}"#, r#"{"mergingList":[{"name":1},{"name":4,"value":4},{"name":2,"value":2},{"name":3,"value":3}]}"#),
    ("delete an item in a list and preserve order", r#"{"mergingList":[{"name":1},{"name":3,"value":3},{"name":2,"value":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":2},{"name":1}],"mergingList":[{"$patch":"delete","name":3}]}"#, r#"{"mergingList":[{"name":2,"value":2},{"name":1}]}"#),
    ("change an item in a list and preserve order", r#"{"mergingList":[{"name":1},{"name":3,"value":3},{"name":2,"value":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":2},{"name":3},{"name":1}],"mergingList":[{"name":3,"value":"x"}]}"#, r#"{"mergingList":[{"name":2,"value":2},{"name":3,"value":"x"},{"name":1}]}"#),
    ("add and delete an item in a list and preserve order", r#"{"mergingList":[{"name":1},{"name":3,"value":3},{"name":2,"value":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":4},{"name":2},{"name":1}],"mergingList":[{"name":4,"value":4},{"$patch":"delete","name":3}]}"#, r#"{"mergingList":[{"name":4,"value":4},{"name":2,"value":2},{"name":1}]}"#),
    ("add and delete an item in a list and preserve order (three-way)", r#"{"mergingList":[{"name":1,"other":"a"},{"name":2,"other":"b","value":2},{"name":3,"value":3}]}"#, r#"{"$setElementOrder/mergingList":[{"name":4},{"name":2},{"name":1}],"mergingList":[{"name":4,"value":4},{"$patch":"delete","name":3}]}"#, r#"{"mergingList":[{"name":4,"value":4},{"name":2,"other":"b","value":2},{"name":1,"other":"a"}]}"#),
    ("set elements order in a list", r#"{"mergingList":[{"name":1},{"name":3,"value":3},{"name":4,"value":4},{"name":2,"value":2}]}"#, r#"{"$setElementOrder/mergingList":[{"name":4},{"name":2},{"name":3},{"name":1}]}"#, r#"{"mergingList":[{"name":4,"value":4},{"name":2,"value":2},{"name":3,"value":3},{"name":1}]}"#),
    ("set elements order in a list with server-only items (three-way)", r#"{"mergingList":[{"name":1,"other":"a"},{"name":3,"value":3},{"name":4,"value":4},{"name":2,"value":2},{"name":9}]}"#, r#"{"$setElementOrder/mergingList":[{"name":4},{"name":2},{"name":3},{"name":1}]}"#, r#"{"mergingList":[{"name":4,"value":4},{"name":2,"value":2},{"name":3,"value":3},{"name":1,"other":"a"},{"name":9}]}"#),
    ("set elements order in a list with server-only items 2", r#"{"mergingList":[{"name":1},{"name":2,"value":2},{"name":3,"value":3},{"name":4,"value":4}]}"#, r#"{"$setElementOrder/mergingList":[{"name":2},{"name":1},{"name":4},{"name":3}]}"#, r#"{"mergingList":[{"name":2,"value":2},{"name":1},{"name":4,"value":4},{"name":3,"value":3}]}"#),
    ("set elements order in a list with server-only items 3 (three-way)", r#"{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2},{"name":7},{"name":9},{"name":8},{"name":3,"value":3},{"name":4,"value":4}]}"#, r#"{"$setElementOrder/mergingList":[{"name":2},{"name":1},{"name":4},{"name":3}]}"#, r#"{"mergingList":[{"name":2,"value":2},{"name":1,"other":"a"},{"name":7},{"name":9},{"name":8},{"name":4,"value":4},{"name":3,"value":3}]}"#),
    ("add and delete an item in a int list and preserve order", r#"{"mergingIntList":[1,3,2]}"#, r#"{"$deleteFromPrimitiveList/mergingIntList":[3],"$setElementOrder/mergingIntList":[4,2,1],"mergingIntList":[4]}"#, r#"{"mergingIntList":[4,2,1]}"#),
    ("set elements order in a int list", r#"{"mergingIntList":[1,3,4,2]}"#, r#"{"$setElementOrder/mergingIntList":[4,2,3,1]}"#, r#"{"mergingIntList":[4,2,3,1]}"#),
    ("set elements order in a int list with server-only items (three-way)", r#"{"mergingIntList":[1,3,4,2,9]}"#, r#"{"$setElementOrder/mergingIntList":[4,2,3,1]}"#, r#"{"mergingIntList":[4,2,3,1,9]}"#),
    ("set elements order in a int list with server-only items 3", r#"{"mergingIntList":[1,2,3,2,4]}"#, r#"{"$setElementOrder/mergingIntList":[2,1,4,3,2]}"#, r#"{"mergingIntList":[2,2,1,4,3]}"#),
    ("retainKeys map should clear defaulted field", r#"{}"#, r#"{"retainKeysMap":{"other":"bar"}}"#, r#"{"retainKeysMap":{"other":"bar"}}"#),
    ("retainKeys map should clear defaulted field with conflict (discriminated union)", r#"{}"#, r#"{"retainKeysMap":{"name":"type2","other":"bar"}}"#, r#"{"retainKeysMap":{"name":"type2","other":"bar"}}"#),
    ("retainKeys map adds a field and clear a field (three-way)", r#"{"retainKeysMap":{"name":"foo","other":"a"}}"#, r#"{"retainKeysMap":{"$retainKeys":["name","value"],"value":"bar"}}"#, r#"{"retainKeysMap":{"name":"foo","value":"bar"}}"#),
    ("retainKeys map deletes a field and clears a field (three-way)", r#"{"retainKeysMap":{"name":"foo","other":"a","value":"bar"}}"#, r#"{"retainKeysMap":{"$retainKeys":["name"],"value":null}}"#, r#"{"retainKeysMap":{"name":"foo"}}"#),
    ("retainKeys map nested map with no change", r#"{"retainKeysMap":{"name":"foo","simpleMap":{"key1":"a"}}}"#, r#"{"retainKeysMap":{"$retainKeys":["name","simpleMap","value"],"value":"bar"}}"#, r#"{"retainKeysMap":{"name":"foo","simpleMap":{"key1":"a"},"value":"bar"}}"#),
    ("retainKeys map changes a field in a nested map", r#"{"retainKeysMap":{"name":"foo","simpleMap":{"key1":"a","key2":"b"},"value":"bar"}}"#, r#"{"retainKeysMap":{"$retainKeys":["name","simpleMap","value"],"simpleMap":{"key1":"x"}}}"#, r#"{"retainKeysMap":{"name":"foo","simpleMap":{"key1":"x","key2":"b"},"value":"bar"}}"#),
    ("retainKeys map replaces non-merging list", r#"{"retainKeysMap":{"name":"foo","nonMergingList":[{"name":"a"},{"name":"b"}],"value":"bar"}}"#, r#"{"retainKeysMap":{"$retainKeys":["name","nonMergingList","value"],"nonMergingList":[{"name":"a"},{"name":"c"},{"name":"b"}]}}"#, r#"{"retainKeysMap":{"name":"foo","nonMergingList":[{"name":"a"},{"name":"c"},{"name":"b"}],"value":"bar"}}"#),
    ("retainKeys map deletes nested non-merging list", r#"{"retainKeysMap":{"name":"foo","nonMergingList":[{"name":"a"},{"name":"b"}]}}"#, r#"{"retainKeysMap":{"$retainKeys":["name","value"],"nonMergingList":null,"value":"bar"}}"#, r#"{"retainKeysMap":{"name":"foo","value":"bar"}}"#),
    ("retainKeys map adds an item in nested merging int list", r#"{"retainKeysMap":{"mergingIntList":[1,2],"name":"foo"}}"#, r#"{"retainKeysMap":{"$retainKeys":["mergingIntList","name"],"$setElementOrder/mergingIntList":[1,2,4],"mergingIntList":[4]}}"#, r#"{"retainKeysMap":{"mergingIntList":[1,2,4],"name":"foo"}}"#),
    ("retainKeys map adds an item and deletes an item in nested merging int list", r#"{"retainKeysMap":{"mergingIntList":[1,2,3],"name":"foo"}}"#, r#"{"retainKeysMap":{"$deleteFromPrimitiveList/mergingIntList":[2],"$retainKeys":["mergingIntList","name"],"$setElementOrder/mergingIntList":[1,3,5],"mergingIntList":[5]}}"#, r#"{"retainKeysMap":{"mergingIntList":[1,3,5],"name":"foo"}}"#),
    ("retainKeys map adds an item in nested merging list", r#"{"retainKeysMap":{"mergingList":[{"name":"a"},{"name":"b"}],"name":"foo"}}"#, r#"{"retainKeysMap":{"$retainKeys":["mergingList","name"],"$setElementOrder/mergingList":[{"name":"a"},{"name":"b"},{"name":"c"}],"mergingList":[{"name":"c"}]}}"#, r#"{"retainKeysMap":{"mergingList":[{"name":"a"},{"name":"b"},{"name":"c"}],"name":"foo"}}"#),
    ("retainKeys map changes an item in nested merging list", r#"{"retainKeysMap":{"mergingList":[{"name":"a"},{"name":"b","value":"foo"}],"name":"foo"}}"#, r#"{"retainKeysMap":{"$retainKeys":["mergingList","name"],"$setElementOrder/mergingList":[{"name":"a"},{"name":"b"}],"mergingList":[{"name":"b","value":"bar"}]}}"#, r#"{"retainKeysMap":{"mergingList":[{"name":"a"},{"name":"b","value":"bar"}],"name":"foo"}}"#),
    ("retainKeys map deletes an item in nested merging list (three-way)", r#"{"retainKeysMap":{"mergingList":[{"name":"a"},{"name":"b"},{"name":"x"}],"name":"foo"}}"#, r#"{"retainKeysMap":{"$retainKeys":["mergingList","name"],"$setElementOrder/mergingList":[{"name":"a"}],"mergingList":[{"$patch":"delete","name":"b"}]}}"#, r#"{"retainKeysMap":{"mergingList":[{"name":"a"},{"name":"x"}],"name":"foo"}}"#),
    ("retainKeys list of maps clears a field (three-way)", r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","other":"x","value":"a"}]}"#, r#"{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo"}]}"#, r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]}"#),
    ("retainKeys list of maps changes a field and clear a field", r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"old"}]}"#, r#"{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo","value":"new"}]}"#, r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"new"}]}"#),
    ("retainKeys list of maps adds a field and clear a field (three-way)", r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","other":"x"}]}"#, r#"{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo","value":"a"}]}"#, r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]}"#),
    ("retainKeys list of maps deletes a field and clear a field (three-way)", r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","other":"x","value":"a"}]}"#, r#"{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name"],"name":"foo","value":null}]}"#, r#"{"retainKeysMergingList":[{"name":"bar"},{"name":"foo"}]}"#),
    ("delete and reorder in one list, reorder in another", r#"{"mergeItemPtr":[{"name":"c","value":"c"},{"name":"d","value":"d"}],"mergingList":[{"name":"a","value":"a"},{"name":"b","value":"b"}]}"#, r#"{"$setElementOrder/mergeItemPtr":[{"name":"d"},{"name":"c"}],"$setElementOrder/mergingList":[{"name":"b"}],"mergingList":[{"$patch":"delete","name":"a"}]}"#, r#"{"mergeItemPtr":[{"name":"d","value":"d"},{"name":"c","value":"c"}],"mergingList":[{"name":"b","value":"b"}]}"#),
    ("replace RawExtension field, rest unchanched", r#"{"name":"my-object","other":"current-other","replacingItem":{"Field":"Period","Some":"Generic","The":"RawExtension","Yaml":"Inside"},"value":"some-value"}"#, r#"{"mergingList":[{"name":1},{"name":2},{"name":3}],"replacingItem":{"Newly":"Modified","The":"RawExtension","Yaml":"Inside"}}"#, r#"{"mergingList":[{"name":1},{"name":2},{"name":3}],"name":"my-object","other":"current-other","replacingItem":{"Newly":"Modified","The":"RawExtension","Yaml":"Inside"},"value":"some-value"}"#),
    ("replace RawExtension field and merge list", r#"{"mergingList":[{"name":1}],"name":"my-object","other":"current-other","replacingItem":{"Field":"Period","Some":"Generic","The":"RawExtension","Yaml":"Inside"},"value":"some-value"}"#, r#"{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":2}],"replacingItem":{"Newly":"Modified","The":"RawExtension","Yaml":"Inside"}}"#, r#"{"mergingList":[{"name":1},{"name":2}],"name":"my-object","other":"current-other","replacingItem":{"Newly":"Modified","The":"RawExtension","Yaml":"Inside"},"value":"some-value"}"#),
];

#[test]
fn upstream_cases() {
    let mut failed = Vec::new();
    for (desc, original, patch, expected) in UPSTREAM_CASES {
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or_else(|e| panic!("{desc}: {e}"));
        let got = apply_item(&parse(original), &parse(patch));
        let ok = match (expected.strip_prefix("error: "), &got) {
            (Some(want), Err(e)) => e.message.contains(want),
            (None, Ok(v)) => *v == parse(expected),
            _ => false,
        };
        if !ok {
            failed.push(format!("{desc}:\n  expected {expected}\n  got      {got:?}"));
        }
    }
    assert!(UPSTREAM_CASES.len() >= 90);
    assert!(failed.is_empty(), "{} of {} cases failed:\n{}", failed.len(), UPSTREAM_CASES.len(), failed.join("\n"));
}

fn status_of(original: Value, patch: Value) -> u16 {
    match apply_item(&original, &patch) {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.status,
    }
}

#[test]
fn map_directives() {
    let doc = json!({"simpleMap": {"a": "1"}, "name": "x"});
    assert_eq!(apply_item(&doc, &json!({"simpleMap": {"$patch": "replace", "b": "2", "c": null}})).unwrap(), json!({"simpleMap": {"b": "2"}, "name": "x"}));
    assert_eq!(apply_item(&doc, &json!({"simpleMap": {"$patch": "delete", "b": "2"}})).unwrap(), json!({"simpleMap": {}, "name": "x"}));
    // `merge` is no map directive upstream; neither is anything else.
    assert_eq!(status_of(doc.clone(), json!({"simpleMap": {"$patch": "merge"}})), 500);
    let err = apply_item(&doc, &json!({"$patch": "frobnicate"})).unwrap_err();
    assert!(err.message.starts_with("unknown patch type: frobnicate in map:"), "{}", err.message);
    assert!(matches!(PatchError::from(err), PatchError::CannotApply(_)));
}

#[test]
fn list_directives_and_merge_keys() {
    let doc = json!({"mergingList": [{"name": "a", "value": "1"}, {"name": "b"}]});
    assert_eq!(status_of(doc.clone(), json!({"mergingList": [{"name": "a", "$patch": "merge"}]})), 500);
    assert_eq!(status_of(doc.clone(), json!({"mergingList": [{"name": "a", "$patch": "bogus"}]})), 500);
    let err = apply_item(&doc, &json!({"mergingList": [{"$patch": "delete"}]})).unwrap_err();
    assert_eq!(err.message, "map: map[$patch:delete] does not contain declared merge key: name");
    let err = apply_item(&doc, &json!({"mergingList": [{"value": "2"}]})).unwrap_err();
    assert_eq!((err.status, err.message.as_str()), (500, "map: map[value:2] does not contain declared merge key: name"));
    // Mixed item types and lists of lists.
    assert_eq!(status_of(doc.clone(), json!({"mergingList": ["a"]})), 500);
    assert_eq!(status_of(json!({"mergingIntList": [[1]]}), json!({"mergingIntList": [[2]]})), 422);
    // A merge key may be a number, compared by value.
    let got = apply_item(&json!({"mergingList": [{"name": 1, "value": "a"}]}), &json!({"mergingList": [{"name": 1.0, "other": "b"}]})).unwrap();
    assert_eq!(got, json!({"mergingList": [{"name": 1.0, "value": "a", "other": "b"}]}));
    // Without `$setElementOrder`, new items go first (upstream's order merging puts patch
    // items unknown to the live list before the live ones).
    let got = apply_item(&doc, &json!({"mergingList": [{"name": "c"}]})).unwrap();
    assert_eq!(got["mergingList"], json!([{"name": "c"}, {"name": "a", "value": "1"}, {"name": "b"}]));
}

#[test]
fn malformed_parallel_lists_are_bad_requests() {
    let doc = json!({"mergingIntList": [1, 2], "retainKeysMap": {"name": "a", "value": "b"}});
    for patch in [
        json!({"$setElementOrder": [1]}),
        json!({"$setElementOrderX/mergingIntList": [1]}),
        json!({"$deleteFromPrimitiveList": [1]}),
        json!({"$deleteFromPrimitiveListmergingIntList": [1]}),
        json!({"retainKeysMap": {"$retainKeys": "name"}}),
        json!({"retainKeysMap": {"$retainKeys": ["name"], "value": "c"}}),
    ] {
        let err = apply_item(&doc, &patch).unwrap_err();
        assert_eq!(err.status, 400, "{patch}: {err:?}");
        assert!(matches!(PatchError::from(err), PatchError::BadPatch(_)));
    }
    // A `$setElementOrder` that is no list is a type error (500) upstream.
    assert_eq!(status_of(doc.clone(), json!({"$setElementOrder/mergingIntList": "x"})), 500);
    // ... and `null` for the list it orders.
    assert_eq!(status_of(json!({"mergingIntList": null}), json!({"$setElementOrder/mergingIntList": [1]})), 500);
}

#[test]
fn retain_keys_ignores_nulls_and_parallel_lists() {
    let doc = json!({"retainKeysMap": {"name": "a", "value": "b", "other": "c", "mergingIntList": [1, 2]}});
    let patch = json!({"retainKeysMap": {"$retainKeys": ["name", "mergingIntList"], "value": null, "$deleteFromPrimitiveList/mergingIntList": [1], "$setElementOrder/mergingIntList": [2]}});
    assert_eq!(apply_item(&doc, &patch).unwrap(), json!({"retainKeysMap": {"name": "a", "mergingIntList": [2]}}));
}

#[test]
fn primitive_lists() {
    let doc = json!({"mergingIntList": [1, 2, 3], "nonMergingIntList": [1, 2]});
    // Union, duplicates dropped, patch order kept for the patch's items, new ones first.
    assert_eq!(apply_item(&doc, &json!({"mergingIntList": [4, 2, 4]})).unwrap()["mergingIntList"], json!([4, 1, 2, 3]));
    assert_eq!(apply_item(&doc, &json!({"nonMergingIntList": [3]})).unwrap()["nonMergingIntList"], json!([3]));
    // Deletion and addition in one patch.
    let got = apply_item(&doc, &json!({"$deleteFromPrimitiveList/mergingIntList": [1, 3], "mergingIntList": [5]})).unwrap();
    assert_eq!(got["mergingIntList"], json!([5, 2]));
    // `null` as the deletion list clears the list, as upstream.
    assert_eq!(apply_item(&doc, &json!({"$deleteFromPrimitiveList/mergingIntList": null})).unwrap(), json!({"nonMergingIntList": [1, 2]}));
}

#[test]
fn typed_map_values_descend_into_their_type() {
    let doc = json!({"valuesByName": {"x": {"mergingList": [{"name": "a", "value": "1"}]}}});
    let got = apply_item(&doc, &json!({"valuesByName": {"x": {"mergingList": [{"name": "b"}]}}})).unwrap();
    assert_eq!(got, json!({"valuesByName": {"x": {"mergingList": [{"name": "b"}, {"name": "a", "value": "1"}]}}}));
}

#[test]
fn directives_never_reach_the_result() {
    let patch = json!({
        "simpleMap": {"$retainKeys": ["a"], "a": "1", "$setElementOrder/x": [], "$deleteFromPrimitiveList/y": ["z"]},
        "mergingList": [{"name": "n", "nonMergingList": [{"name": "m", "$patch": "delete"}, {"name": "k", "v": null}]}, {"name": "gone", "$patch": "delete"}],
        "nonMergingList": [{"$patch": "replace"}, {"name": "kept", "mergingList": [{"name": "q", "$patch": "replace"}]}],
        "replacingItem": {"$patch": "replace", "inner": {"$retainKeys": ["a"], "a": null}},
        "$setElementOrder/mergingList": [{"name": "n"}],
        "$setElementOrder/mergeItemPtr": [{"name": "p"}],
    });
    let got = apply_item(&json!({"replacingItem": {"old": true}, "nonMergingList": []}), &patch).unwrap();
    assert_eq!(
        got,
        json!({
            "simpleMap": {"a": "1"},
            "mergingList": [{"name": "n", "nonMergingList": [{"name": "k"}]}],
            "nonMergingList": [{"name": "kept", "mergingList": []}],
            "replacingItem": {"inner": {}},
        })
    );
    assert!(!got.to_string().contains('$'));
}

#[test]
fn whole_document_edge_cases() {
    let doc = json!({"name": "x"});
    assert_eq!(apply_item(&doc, &Value::Null).unwrap(), doc);
    assert_eq!(apply_item(&doc, &json!({})).unwrap(), doc);
    assert_eq!(status_of(doc.clone(), json!([{"op": "add"}])), 400);
    assert_eq!(status_of(doc.clone(), json!("str")), 400);
    assert_eq!(apply_item(&doc, &json!({"$patch": "delete"})).unwrap(), json!({}));
    assert_eq!(apply_item(&json!(null), &json!({"name": "y"})).unwrap(), json!({"name": "y"}));
}

/// A small deterministic generator of nasty patches: directive keys and values in every
/// position, merge keys present or not, mismatched types. Nothing may panic.
#[test]
fn arbitrary_input_never_panics() {
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }
    const KEYS: &[&str] = &[
        "name", "value", "mergingList", "nonMergingList", "mergingIntList", "mergeItemPtr", "retainKeysMap", "retainKeysMergingList",
        "replacingItem", "valuesByName", "$patch", "$retainKeys", "$setElementOrder/mergingList", "$setElementOrder/mergingIntList",
        "$deleteFromPrimitiveList/mergingIntList", "$deleteFromPrimitiveList/mergingList", "$setElementOrder/", "$setElementOrder",
    ];
    fn gen(r: &mut Rng, depth: u32) -> Value {
        match if depth == 0 { r.next(6) } else { r.next(9) } {
            0 => Value::Null,
            1 => json!(r.next(3)),
            2 => json!(["a", "b", "delete", "replace", "merge"][r.next(5) as usize]),
            3 => json!(r.next(2) == 0),
            4 => json!(1.5),
            5 => json!({"name": r.next(3)}),
            6 | 7 => {
                let mut m = Map::new();
                for _ in 0..r.next(4) {
                    m.insert(KEYS[r.next(KEYS.len() as u64) as usize].to_string(), gen(r, depth - 1));
                }
                Value::Object(m)
            }
            _ => Value::Array((0..r.next(4)).map(|_| gen(r, depth - 1)).collect()),
        }
    }
    let mut r = Rng(7);
    for _ in 0..20_000 {
        let doc = gen(&mut r, 4);
        let patch = gen(&mut r, 4);
        let _ = apply_item(&doc, &patch);
        let _ = apply(&doc, &patch, "apps", "v1", "Deployment");
    }
}

/// Every built-in kind served takes strategic merge patches (kube-apiserver refuses them only
/// for custom resources); webhooks merge on `name`, APIService conditions on `type`.
#[test]
fn cluster_kinds_take_strategic_merge_patches() {
    for (g, k) in [
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("node.k8s.io", "RuntimeClass"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("apiregistration.k8s.io", "APIService"),
    ] {
        assert!(supports(g, "v1", k), "{g} {k}");
    }
    let doc = json!({"webhooks": [{"name": "a", "timeoutSeconds": 10}, {"name": "b"}]});
    let got = apply(&doc, &json!({"webhooks": [{"name": "a", "timeoutSeconds": 5}]}), "admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration").unwrap();
    assert_eq!(got, json!({"webhooks": [{"name": "a", "timeoutSeconds": 5}, {"name": "b"}]}));
    let doc = json!({"status": {"conditions": [{"type": "Available", "status": "False"}]}});
    let got = apply(&doc, &json!({"status": {"conditions": [{"type": "Other", "status": "True"}]}}), "apiregistration.k8s.io", "v1", "APIService").unwrap();
    assert_eq!(got["status"]["conditions"].as_array().map(Vec::len), Some(2));
}
