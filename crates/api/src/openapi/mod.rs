//! The OpenAPI documents kubectl needs for `apply`, `create -f`, `replace`, `diff` and
//! `explain` (`/openapi/v3`, `/openapi/v3/<group-version>`, `/openapi/v2`), built from the
//! resource registry and k8s-openapi's schemas, and the strict field validation behind
//! `fieldValidation=Strict|Warn`.
//!
//! Everything is computed once in [`OpenApi::new`] (at startup, and again when CRDs change);
//! the queries hand out cached, serialized documents.

mod extensions;
pub mod merge;
mod paths;
pub(crate) mod schemas;
mod v2;
mod validate;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::resources::ResourceDef;

/// The Kubernetes version the documents describe (`info.version`).
const VERSION: &str = "v1.33.5";

/// The protobuf Content-Type of `/openapi/v2` (what kubectl 1.27/1.28 ask for).
pub const V2_PROTOBUF_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The served OpenAPI documents and field validator; cheap to query, `Send + Sync`.
pub struct OpenApi {
    /// `api/v1`, `apis/apps/v1`, … → (document, hash).
    v3: BTreeMap<String, (Bytes, String)>,
    /// The group versions in discovery order.
    order: Vec<String>,
    v2_json: Bytes,
    v2_protobuf: Bytes,
    validator: validate::Validator,
}

impl OpenApi {
    /// Builds the documents for these resources. `custom` gives, for custom resources (CRDs),
    /// their openAPIV3Schema (JSON) keyed by (group, version, kind).
    pub fn new(defs: &[Arc<ResourceDef>], custom: &[((String, String, String), serde_json::Value)]) -> OpenApi {
        let catalog = schemas::build(defs, custom);
        let mut order: Vec<(String, String)> = Vec::new();
        for d in defs {
            let gv = (d.group.clone(), d.version.clone());
            if !order.contains(&gv) {
                order.push(gv);
            }
        }
        let mut v3 = BTreeMap::new();
        let mut all_paths = Map::new();
        let mut all_defs = BTreeMap::new();
        for (g, v) in &order {
            let in_gv: Vec<&ResourceDef> = defs.iter().filter(|d| &d.group == g && &d.version == v).map(|d| &**d).collect();
            let items = paths::paths(&in_gv, &catalog);
            let rendered = paths::render(&items, false);
            let mut roots: Vec<String> = Vec::new();
            for p in rendered.values() {
                schemas::collect_refs(p, &mut |r| roots.push(r.to_string()));
            }
            for d in &in_gv {
                for k in [d.kind.clone(), d.list_kind()] {
                    if let Some(name) = catalog.name_of(g, v, &k) {
                        roots.push(name.to_string());
                    }
                }
            }
            let mut components = catalog.closure(roots.iter().map(String::as_str));
            // DeleteOptions is accepted in every group version, as upstream's extension says.
            schemas::add_gvk(&mut components, schemas::DELETE_OPTIONS, g, v, "DeleteOptions");
            let doc = json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": VERSION},
                "paths": rendered,
                "components": {"schemas": &components},
            });
            let bytes = serde_json::to_vec(&doc).unwrap_or_default();
            let hash = content_hash(&bytes);
            v3.insert(gv_path(g, v), (Bytes::from(bytes), hash));
            all_paths.extend(paths::render(&items, true));
            all_defs.extend(components);
        }
        let definitions: Map<String, Value> = all_defs.iter().map(|(n, s)| (n.clone(), v2::definition(n, s))).collect();
        let v2_doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": VERSION},
            "paths": all_paths,
            "definitions": definitions,
        });
        let v2_protobuf = Bytes::from(v2::encode_document(&v2_doc));
        let v2_json = Bytes::from(serde_json::to_vec(&v2_doc).unwrap_or_default());
        let validator = validate::Validator::new(&catalog);
        OpenApi { v3, order: order.iter().map(|(g, v)| gv_path(g, v)).collect(), v2_json, v2_protobuf, validator }
    }

    /// `GET /openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=<H>"}, …}}`;
    /// the hash changes with the document (clients cache by URL).
    pub fn v3_root(&self) -> serde_json::Value {
        let paths: Map<String, Value> = self
            .order
            .iter()
            .filter_map(|p| self.v3.get(p).map(|(_, h)| (p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={h}")}))))
            .collect();
        json!({"paths": paths})
    }

    /// `GET /openapi/v3/<path>` for `api/v1` or `apis/<group>/<version>`: the serialized JSON
    /// document and its hash; None if unknown.
    pub fn v3_document(&self, path: &str) -> Option<(bytes::Bytes, String)> {
        self.v3.get(path.trim_matches('/')).cloned()
    }

    /// `GET /openapi/v2` with Accept `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`:
    /// gnostic's `openapi_v2.Document` with every path and definition.
    pub fn v2_protobuf(&self) -> bytes::Bytes {
        self.v2_protobuf.clone()
    }

    /// `GET /openapi/v2` as JSON (Swagger 2.0).
    pub fn v2_json(&self) -> bytes::Bytes {
        self.v2_json.clone()
    }

    /// `/openapi/v2` with the extension servers' (filtered) documents merged in, in order
    /// ([`merge::merge_v2`]): (JSON, protobuf). Computed on each call; callers cache it.
    pub fn v2_merged(&self, extensions: &[Arc<Value>]) -> (Bytes, Bytes) {
        let Ok(mut doc) = serde_json::from_slice::<Value>(&self.v2_json) else { return (self.v2_json.clone(), self.v2_protobuf.clone()) };
        for e in extensions {
            merge::merge_v2(&mut doc, (**e).clone());
        }
        (Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()), Bytes::from(v2::encode_document(&doc)))
    }

    /// The group versions this document set serves (`api/v1`, `apis/apps/v1`, …).
    pub fn has_v3(&self, path: &str) -> bool {
        self.v3.contains_key(path.trim_matches('/'))
    }

    /// Strict field validation: the unknown and duplicate fields of a request body of this kind,
    /// worded as upstream (`unknown field "spec.replicass"`, `duplicate field "metadata.name"`).
    /// Duplicates are only visible in the raw JSON: pass it when the body was JSON. Kinds
    /// without a schema have no errors.
    pub fn field_errors(&self, group: &str, version: &str, kind: &str, obj: &serde_json::Value, raw_json: Option<&[u8]>) -> Vec<String> {
        self.validator.errors(group, version, kind, obj, raw_json)
    }
}

/// The BadRequest message upstream gives when a create or update body fails strict decoding:
/// `Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.foo"`.
pub fn strict_decoding_message(kind: &str, version: &str, errors: &[String]) -> String {
    format!("{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}", errors.join(", "))
}

/// `api/v1` or `apis/<group>/<version>`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A stable content hash (two FNV-1a passes, 128 bits, upper-case hex), as upstream's URLs
/// carry one.
pub fn content_hash(data: &[u8]) -> String {
    let fnv = |basis: u64| data.iter().fold(basis, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{:016X}{:016X}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142))
}
