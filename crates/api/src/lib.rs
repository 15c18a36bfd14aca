//! The Kubernetes API model Timonier serves, independent of HTTP and storage: which resources
//! exist and how they are named, label and field selectors, the four patch formats, and the
//! table printers behind `kubectl get`.
//!
//! Objects are `serde_json::Value`s here (see DESIGN.md decision 1): the API server stores and
//! serves JSON, and typed views are for logic only.

pub mod openapi;
pub mod patch;
pub mod printers;
pub mod gojson;
pub mod protobuf;
pub mod resources;
pub mod selector;
