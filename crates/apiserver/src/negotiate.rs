//! Content negotiation: what the client sends (JSON, YAML, protobuf) and what it wants back
//! (an object, a Table, metadata only, aggregated discovery).

use bytes::Bytes;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The largest request body accepted, as upstream (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The Kubernetes protobuf media type.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

const ACCEPTED_BODIES: &str = "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// One media range of an Accept header, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaType {
    pub essence: String,
    pub params: Vec<(String, String)>,
}

impl MediaType {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn parse(s: &str) -> MediaType {
        let mut it = s.split(';');
        let essence = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let params = it
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
            })
            .collect();
        MediaType { essence, params }
    }
}

/// Parses an Accept header into its media ranges, in the client's order.
pub fn accept(header: Option<&str>) -> Vec<MediaType> {
    header.unwrap_or("").split(',').filter(|s| !s.trim().is_empty()).map(MediaType::parse).collect()
}

/// The response shape the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The object or list itself.
    Object,
    /// A `meta.k8s.io` Table (`v1` or `v1beta1`).
    Table(&'static str),
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    /// Kubernetes protobuf, for the kinds that have it; otherwise JSON when the client also
    /// accepts it (`json_ok`), else 406 — as kube-apiserver serves custom resources.
    Protobuf { json_ok: bool },
}

/// Chooses the response shape and format for a resource request.
pub fn negotiate(header: Option<&str>) -> ApiResult<(Shape, Format)> {
    let types = accept(header);
    if types.is_empty() {
        return Ok((Shape::Object, Format::Json));
    }
    let json_ok = types.iter().any(|t| matches!(t.essence.as_str(), "application/json" | "application/*" | "*/*"));
    for t in &types {
        let format = match t.essence.as_str() {
            "application/json" | "application/*" | "*/*" => Format::Json,
            "application/yaml" => Format::Yaml,
            // Tables and metadata-only answers exist in JSON only, as upstream.
            "application/vnd.kubernetes.protobuf" if t.param("as").is_none() => Format::Protobuf { json_ok },
            _ => continue,
        };
        let group = t.param("g");
        let version = t.param("v");
        match (t.param("as"), group) {
            (None, _) => return Ok((Shape::Object, format)),
            (Some("Table"), Some("meta.k8s.io")) => match version {
                Some("v1") => return Ok((Shape::Table("v1"), format)),
                Some("v1beta1") => return Ok((Shape::Table("v1beta1"), format)),
                _ => continue,
            },
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => match version {
                Some("v1") => return Ok((Shape::Metadata("v1"), format)),
                Some("v1beta1") => return Ok((Shape::Metadata("v1beta1"), format)),
                _ => continue,
            },
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable("application/json, application/yaml, application/vnd.kubernetes.protobuf"))
}

/// Decodes a request body into a JSON value according to its Content-Type.
pub fn decode_body(content_type: Option<&str>, body: &Bytes) -> ApiResult<Value> {
    let ct = MediaType::parse(content_type.unwrap_or("application/json"));
    match ct.essence.as_str() {
        "application/json" | "" | "application/merge-patch+json" | "application/strategic-merge-patch+json" | "application/json-patch+json" => {
            parse_json(body)
        }
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" | "application/x-yaml" => parse_yaml(body),
        "application/vnd.kubernetes.protobuf" => timonier_api::protobuf::decode(body).map_err(|e| ApiError::bad_request(format!("the request body is not a valid Kubernetes protobuf object: {e}"))),
        other => Err(ApiError::unsupported_media_type(other, ACCEPTED_BODIES)),
    }
}

pub fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

pub fn parse_yaml(body: &[u8]) -> ApiResult<Value> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    let v: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))?;
    serde_json::to_value(v).map_err(|e| ApiError::bad_request(format!("the request body cannot be represented as JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_headers() {
        let get = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(get)).unwrap(), (Shape::Table("v1"), Format::Json));
        assert_eq!(negotiate(Some("application/json")).unwrap(), (Shape::Object, Format::Json));
        assert_eq!(negotiate(None).unwrap(), (Shape::Object, Format::Json));
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf,application/json")).unwrap(), (Shape::Object, Format::Protobuf { json_ok: true }));
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf, */*")).unwrap(), (Shape::Object, Format::Protobuf { json_ok: true }));
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf")).unwrap(), (Shape::Object, Format::Protobuf { json_ok: false }));
        assert!(negotiate(Some("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io")).is_err());
        assert!(negotiate(Some("text/html")).is_err());
        let meta = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(negotiate(Some(meta)).unwrap().0, Shape::Metadata("v1"));
    }

    #[test]
    fn bodies() {
        assert_eq!(decode_body(Some("application/yaml"), &Bytes::from("a: 1\nb: [x]\n")).unwrap(), serde_json::json!({"a": 1, "b": ["x"]}));
        assert!(decode_body(Some("application/json"), &Bytes::from("{")).is_err());
        assert_eq!(decode_body(Some("application/xml"), &Bytes::from("<a/>")).unwrap_err().code, 415);
    }
}
