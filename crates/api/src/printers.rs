//! Table printers (stub: being written).

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub r#type: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

const NAME_AGE: &[Column] = &[
    Column { name: "Name", r#type: "string", format: "name", description: "Name must be unique within a namespace.", priority: 0 },
    Column { name: "Age", r#type: "date", format: "", description: "CreationTimestamp is a timestamp representing the server time when this object was created.", priority: 0 },
];

pub fn columns(_group: &str, _kind: &str) -> &'static [Column] {
    NAME_AGE
}

pub fn cells(_group: &str, _kind: &str, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    vec![obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null), Value::String(String::new())]
}
