//! Label and field selectors (stub: being written).

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {}

impl LabelSelector {
    pub fn parse(_s: &str) -> Result<LabelSelector, SelectorError> {
        Ok(LabelSelector {})
    }
    pub fn from_json(_sel: &Value) -> Result<LabelSelector, SelectorError> {
        Ok(LabelSelector {})
    }
    pub fn is_empty(&self) -> bool {
        true
    }
    pub fn matches(&self, _labels: Option<&Map<String, Value>>) -> bool {
        true
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {}

impl FieldSelector {
    pub fn parse(_s: &str) -> Result<FieldSelector, SelectorError> {
        Ok(FieldSelector {})
    }
    pub fn is_empty(&self) -> bool {
        true
    }
    pub fn fields(&self) -> Vec<&str> {
        Vec::new()
    }
    pub fn matches(&self, _get: impl Fn(&str) -> Option<String>) -> bool {
        true
    }
}
