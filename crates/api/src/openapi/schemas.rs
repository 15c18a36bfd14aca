//! The component schemas: k8s-openapi's schemars output for the built-in kinds, decorated with
//! the extensions upstream publishes, list kinds, and one schema per custom resource version
//! built from its CRD's `openAPIV3Schema`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::extensions::FIELD_EXTENSIONS;
use crate::resources::ResourceDef;

/// Where v3 documents keep their schemas; every `$ref` starts with this.
pub(super) const REF_PREFIX: &str = "#/components/schemas/";
pub(super) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(super) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(super) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(super) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(super) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const GVK_EXT: &str = "x-kubernetes-group-version-kind";

const API_VERSION_DESC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DESC: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// A group/version/kind triple; the core group is "".
pub(super) type Gvk = (String, String, String);

/// Every component schema the documents may need, and which one describes each kind.
pub(super) struct Catalog {
    /// Definition name → OpenAPI v3 schema.
    pub defs: BTreeMap<String, Value>,
    /// Kind → definition name.
    pub by_gvk: HashMap<Gvk, String>,
    /// The kinds whose schema came from a CRD (validated as unstructured objects).
    pub custom: BTreeSet<Gvk>,
}

impl Catalog {
    /// The definition name of a kind's schema, if there is one.
    pub fn name_of(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.by_gvk.get(&(group.to_string(), version.to_string(), kind.to_string())).map(String::as_str)
    }

    /// The named schemas and all they reference, transitively.
    pub fn closure<'a>(&self, roots: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Value> {
        closure(&self.defs, roots)
    }
}

/// Calls `f` with the definition name of every `$ref` inside `v`.
pub(super) fn collect_refs(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(REF_PREFIX) {
                            f(name)
                        }
                    }
                    _ => collect_refs(x, f),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, f)),
        _ => {}
    }
}

/// `{"group":…, "kind":…, "version":…}` as upstream writes it.
pub(super) fn gvk_value(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// Upstream's definition name of a custom resource: the reversed group, version and kind
/// (`com.example.stable.v1.CronTab`).
pub(super) fn custom_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    format!("{}.{version}.{kind}", parts.join("."))
}

/// The schemas in `defs` named by `roots` and all they reference, transitively.
fn closure<'a>(defs: &BTreeMap<String, Value>, roots: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<String> = roots.into_iter().map(str::to_string).collect();
    while let Some(name) = todo.pop() {
        if out.contains_key(&name) {
            continue;
        }
        let Some(schema) = defs.get(&name) else { continue };
        collect_refs(schema, &mut |r| {
            if !out.contains_key(r) {
                todo.push(r.to_string());
            }
        });
        out.insert(name, schema.clone());
    }
    out
}

/// k8s-openapi's schemas of every built-in kind, as build.rs generated them.
pub(crate) struct Builtin {
    /// Definition name → OpenAPI v3 schema.
    pub definitions: BTreeMap<String, Value>,
    /// Kind → definition name.
    pub kinds: HashMap<Gvk, String>,
}

/// The embedded schemas, parsed on first use (the OpenAPI documents are built lazily).
pub(crate) fn builtin() -> &'static Builtin {
    static BUILTIN: std::sync::LazyLock<Builtin> = std::sync::LazyLock::new(|| {
        #[derive(serde::Deserialize)]
        struct Doc {
            definitions: BTreeMap<String, Value>,
            kinds: Vec<[String; 4]>,
        }
        let doc: Doc = serde_json::from_str(include_str!(concat!(env!("OUT_DIR"), "/k8s-schemas.json"))).expect("build.rs writes valid JSON");
        let kinds = doc.kinds.into_iter().map(|[g, v, k, name]| ((g, v, k), name)).collect();
        Builtin { definitions: doc.definitions, kinds }
    });
    &BUILTIN
}

/// Builds the catalog for the served resources (and their subresources' kinds) and the CRD
/// schemas in `custom`.
pub(super) fn build(defs: &[Arc<ResourceDef>], custom: &[(Gvk, Value)]) -> Catalog {
    let custom_gvks: BTreeSet<Gvk> = custom.iter().map(|(g, _)| g.clone()).collect();
    let mut wanted: Vec<Gvk> = Vec::new();
    for d in defs {
        wanted.push((d.group.clone(), d.version.clone(), d.kind.clone()));
        for s in &d.subresources {
            wanted.push((s.group.clone(), s.version.clone(), s.kind.clone()));
        }
    }
    let builtin = builtin();
    let mut by_gvk = HashMap::new();
    for gvk in &wanted {
        if by_gvk.contains_key(gvk) || custom_gvks.contains(gvk) {
            continue;
        }
        if let Some(name) = builtin.kinds.get(gvk) {
            by_gvk.insert(gvk.clone(), name.clone());
        }
    }
    // The served kinds' schemas and all they reference, as a schema generator registering
    // just these kinds would have made them.
    let roots = [OBJECT_META, LIST_META, DELETE_OPTIONS, STATUS, PATCH].into_iter().chain(by_gvk.values().map(String::as_str));
    let mut all = closure(&builtin.definitions, roots);
    apply_field_extensions(&mut all);
    for name in by_gvk.values() {
        unrequire_metadata(&mut all, name);
    }
    by_gvk.insert((String::new(), "v1".into(), "Status".into()), STATUS.into());
    let mut gvks: Vec<(&Gvk, &String)> = by_gvk.iter().collect();
    gvks.sort();
    for (gvk, name) in gvks {
        add_gvk(&mut all, name, &gvk.0, &gvk.1, &gvk.2);
    }
    add_gvk(&mut all, DELETE_OPTIONS, "", "v1", "DeleteOptions");
    let mut catalog = Catalog { defs: all, by_gvk, custom: BTreeSet::new() };
    for ((g, v, k), schema) in custom {
        let name = custom_name(g, v, k);
        catalog.defs.insert(name.clone(), custom_schema(schema, g, v, k));
        catalog.by_gvk.insert((g.clone(), v.clone(), k.clone()), name);
        catalog.custom.insert((g.clone(), v.clone(), k.clone()));
    }
    for d in defs {
        add_list(&mut catalog, d);
    }
    catalog
}

/// k8s-openapi makes every kind's `metadata` a required field (its Rust type is not optional);
/// upstream's documents never require it, and kubectl 1.27's client-side validation would
/// refuse a manifest without one.
fn unrequire_metadata(all: &mut BTreeMap<String, Value>, name: &str) {
    let Some(Value::Object(schema)) = all.get_mut(name) else { return };
    let Some(Value::Array(required)) = schema.get_mut("required") else { return };
    required.retain(|r| r != "metadata");
    if required.is_empty() {
        schema.remove("required");
    }
}

/// Appends a GVK to a definition's `x-kubernetes-group-version-kind` list.
pub(super) fn add_gvk(all: &mut BTreeMap<String, Value>, name: &str, group: &str, version: &str, kind: &str) {
    let Some(Value::Object(schema)) = all.get_mut(name) else { return };
    let entry = schema.entry(GVK_EXT).or_insert_with(|| json!([]));
    if let Value::Array(list) = entry {
        let v = gvk_value(group, version, kind);
        if !list.contains(&v) {
            list.push(v);
        }
    }
}

/// Puts the generated per-field extensions on the properties of the definitions present.
fn apply_field_extensions(all: &mut BTreeMap<String, Value>) {
    for e in FIELD_EXTENSIONS {
        let Some(prop) = all.get_mut(e.ty).and_then(|s| s.get_mut("properties")).and_then(|p| p.get_mut(e.field)) else { continue };
        let Value::Object(prop) = prop else { continue };
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                prop.insert(k.into(), Value::String(v.into()));
            }
        };
        put("x-kubernetes-patch-strategy", e.patch_strategy);
        put("x-kubernetes-patch-merge-key", e.merge_key);
        put("x-kubernetes-list-type", e.list_type);
        put("x-kubernetes-map-type", e.map_type);
        if !e.list_map_keys.is_empty() {
            prop.insert("x-kubernetes-list-map-keys".into(), json!(e.list_map_keys));
        }
    }
}

/// A `{"allOf": [{"$ref": …}]}` property with a description, upstream's shape for a field of a
/// named type.
fn ref_prop(name: &str, description: &str) -> Value {
    json!({"allOf": [{"$ref": format!("{REF_PREFIX}{name}")}], "description": description})
}

/// Adds `<Kind>List` next to the kind's schema (`io.k8s.api.apps.v1.DeploymentList`).
fn add_list(catalog: &mut Catalog, d: &ResourceDef) {
    let Some(item) = catalog.name_of(&d.group, &d.version, &d.kind).map(str::to_string) else { return };
    let list_kind = d.list_kind();
    let name = format!("{item}List");
    if !catalog.defs.contains_key(&name) {
        let schema = json!({
            "description": format!("{list_kind} is a list of {} objects.", d.kind),
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"description": API_VERSION_DESC, "type": "string"},
                "items": {"description": format!("List of {}.", d.plural), "type": "array", "items": {"$ref": format!("{REF_PREFIX}{item}")}},
                "kind": {"description": KIND_DESC, "type": "string"},
                "metadata": ref_prop(LIST_META, LIST_METADATA_DESC),
            },
            GVK_EXT: [gvk_value(&d.group, &d.version, &list_kind)],
        });
        catalog.defs.insert(name.clone(), schema);
    }
    let gvk = (d.group.clone(), d.version.clone(), list_kind);
    if catalog.custom.contains(&(d.group.clone(), d.version.clone(), d.kind.clone())) {
        catalog.custom.insert(gvk.clone());
    }
    catalog.by_gvk.entry(gvk).or_insert(name);
}

/// A custom resource's schema: its `openAPIV3Schema` with `apiVersion`, `kind`, `metadata`
/// (ObjectMeta by `$ref`, as upstream publishes) and the GVK extension. Any `$ref` in the CRD
/// (forbidden upstream) is dropped so that no reference dangles.
fn custom_schema(schema: &Value, group: &str, version: &str, kind: &str) -> Value {
    let mut s = match schema {
        Value::Object(m) => {
            let mut m = m.clone();
            strip_refs(&mut m);
            m
        }
        _ => Map::new(),
    };
    s.entry("type").or_insert_with(|| json!("object"));
    let props = s.entry("properties").or_insert_with(|| json!({}));
    if !props.is_object() {
        *props = json!({});
    }
    if let Value::Object(p) = props {
        p.entry("apiVersion").or_insert_with(|| json!({"description": API_VERSION_DESC, "type": "string"}));
        p.entry("kind").or_insert_with(|| json!({"description": KIND_DESC, "type": "string"}));
        p.insert("metadata".into(), ref_prop(OBJECT_META, METADATA_DESC));
    }
    s.insert(GVK_EXT.into(), json!([gvk_value(group, version, kind)]));
    Value::Object(s)
}

fn strip_refs(m: &mut Map<String, Value>) {
    m.remove("$ref");
    for v in m.values_mut() {
        strip_refs_value(v);
    }
}

fn strip_refs_value(v: &mut Value) {
    match v {
        Value::Object(m) => strip_refs(m),
        Value::Array(a) => a.iter_mut().for_each(strip_refs_value),
        _ => {}
    }
}
