//! Tests: captured kubectl 1.33 bodies against kubectl 1.31's JSON (this file), hand-encoded
//! bodies for the tricky rules (`objects`), and errors, protobuf semantics, table sanity and a
//! no-panic fuzz (`robustness`).

mod encode;
mod objects;
mod robustness;

use serde_json::{json, Value};

use super::*;

// ---- a tiny protobuf encoder (test only) ----

#[derive(Clone, Default)]
pub(super) struct E(pub(super) Vec<u8>);

pub(super) fn varint(buf: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf.push(b);
            return;
        }
        buf.push(b | 0x80);
    }
}

impl E {
    pub(super) fn new() -> E {
        E(Vec::new())
    }
    pub(super) fn key(mut self, tag: u32, wire_type: u8) -> E {
        varint(&mut self.0, (u64::from(tag) << 3) | u64::from(wire_type));
        self
    }
    /// int32/int64/bool (negative numbers as 10-byte varints, as Go writes them)
    pub(super) fn i(self, tag: u32, v: i64) -> E {
        let mut e = self.key(tag, 0);
        varint(&mut e.0, v as u64);
        e
    }
    pub(super) fn t(self, tag: u32, v: bool) -> E {
        self.i(tag, i64::from(v))
    }
    pub(super) fn b(self, tag: u32, v: &[u8]) -> E {
        let mut e = self.key(tag, 2);
        varint(&mut e.0, v.len() as u64);
        e.0.extend_from_slice(v);
        e
    }
    pub(super) fn s(self, tag: u32, v: &str) -> E {
        self.b(tag, v.as_bytes())
    }
    pub(super) fn m(self, tag: u32, v: E) -> E {
        self.b(tag, &v.0)
    }
    pub(super) fn d(self, tag: u32, v: f64) -> E {
        let mut e = self.key(tag, 1);
        e.0.extend_from_slice(&v.to_le_bytes());
        e
    }
    /// map<string, string> entry
    pub(super) fn kv(self, tag: u32, k: &str, v: &str) -> E {
        self.m(tag, E::new().s(1, k).s(2, v))
    }
    /// map<string, message> entry
    pub(super) fn km(self, tag: u32, k: &str, v: E) -> E {
        self.m(tag, E::new().s(1, k).m(2, v))
    }
}

pub(super) fn body(api_version: &str, kind: &str, obj: E) -> Vec<u8> {
    let env = E::new()
        .m(1, E::new().s(1, api_version).s(2, kind))
        .m(2, obj)
        .s(3, "")
        .s(4, "");
    [MAGIC.as_slice(), &env.0].concat()
}

/// ObjectMeta as Go writes it for a new object: zero strings, generation 0, empty creationTimestamp.
pub(super) fn meta(name: &str) -> E {
    E::new()
        .s(1, name)
        .s(2, "")
        .s(3, "")
        .s(4, "")
        .s(5, "")
        .s(6, "")
        .i(7, 0)
        .m(8, E::new())
}

pub(super) fn qty(s: &str) -> E {
    E::new().s(1, s)
}
pub(super) fn port_int(n: i64) -> E {
    E::new().i(1, 0).i(2, n).s(3, "")
}
pub(super) fn port_str(s: &str) -> E {
    E::new().i(1, 1).i(2, 0).s(3, s)
}

pub(super) fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

// ---- captured bodies ----

pub(super) const SAMPLE_218: &str = "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412b8010a230a0568656c6c6f12001a0022002a0032\
00380042005a0c0a03617070120568656c6c6f1282010801120e0a0c0a03617070120568656c6c6f1a660a1e0a001200\
1a0022002a003200380042005a0c0a03617070120568656c6c6f124412260a0762757379626f78120762757379626f78\
2a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c20100\
22020a00280038001a0c0800100018002000280038001a002200";

#[test]
fn sample_218_bytes_matches_kubectl_131_json() {
    let b = hex(SAMPLE_218);
    assert_eq!(b.len(), 218);
    let want = json!({"kind":"Deployment","apiVersion":"apps/v1",
        "metadata":{"name":"hello","creationTimestamp":null,"labels":{"app":"hello"}},
        "spec":{"replicas":1,"selector":{"matchLabels":{"app":"hello"}},
          "template":{"metadata":{"creationTimestamp":null,"labels":{"app":"hello"}},
            "spec":{"containers":[{"name":"busybox","image":"busybox","resources":{}}]}},
          "strategy":{}},
        "status":{}});
    assert_eq!(decode(&b).unwrap(), want);
    assert_eq!(
        type_meta(&b).unwrap(),
        ("apps/v1".to_string(), "Deployment".to_string())
    );
}

/// (name and command, body, expected JSON) from kubectl-1.33.txt.
pub(super) fn vectors() -> Vec<(&'static str, Vec<u8>, Value)> {
    let text = include_str!("kubectl-1.33.txt");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    lines
        .chunks(3)
        .map(|c| (c[0], hex(c[1]), serde_json::from_str(c[2]).unwrap()))
        .collect()
}

#[test]
fn captured_kubectl_133_bodies_match_kubectl_131_json() {
    let v = vectors();
    assert!(v.len() >= 35, "{} vectors", v.len());
    for (name, body, want) in v {
        let got = decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
    }
}
