//! Writes the OpenAPI v3 schemas of every built-in kind (k8s-openapi's schemars output) to
//! `$OUT_DIR/k8s-schemas.json`: the library embeds the JSON instead of the schema-building
//! code of a thousand types, 3 MB of machine code in the binary.

#[path = "build/kinds.rs"]
mod kinds;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

fn main() {
    println!("cargo:rerun-if-changed=build/kinds.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let mut gen = schemars::generate::SchemaSettings::openapi3().into_generator();
    let _ = gen.subschema_for::<meta::ObjectMeta>();
    let _ = gen.subschema_for::<meta::ListMeta>();
    let _ = gen.subschema_for::<meta::DeleteOptions>();
    let _ = gen.subschema_for::<meta::Status>();
    let _ = gen.subschema_for::<meta::Patch>();
    let kinds = kinds::register_all(&mut gen);
    let definitions: serde_json::Map<String, serde_json::Value> = gen.take_definitions(true);
    let doc = serde_json::json!({"definitions": definitions, "kinds": kinds});
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo")).join("k8s-schemas.json");
    std::fs::write(&out, serde_json::to_vec(&doc).expect("JSON")).expect("cannot write k8s-schemas.json");
}
