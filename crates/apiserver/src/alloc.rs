//! Cluster IPs and node ports for Services.
//!
//! Each allocation is a key in the store (`/registry/ranges/serviceips/<ip>`,
//! `/registry/ranges/servicenodeports/<port>`) made with the store's create, which fails if the
//! key exists: so two servers sharing a datastore can never hand out the same IP or port, and
//! there is no bitmap to keep consistent. The Service's deletion removes its keys.

use std::net::Ipv4Addr;

use bytes::Bytes;
use serde_json::{json, Value};
use timonier_api::resources::ResourceDef;
use timonier_store::StoreError;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::rest::{meta_str, WriteOptions};
use crate::state::ApiState;

/// The Service CIDR (10.96.0.0/12) and node-port range (30000–32767).
#[derive(Debug, Clone)]
pub struct ServiceRanges {
    pub base: u32,
    pub prefix: u8,
    pub node_ports: (u16, u16),
}

impl Default for ServiceRanges {
    fn default() -> ServiceRanges {
        ServiceRanges { base: u32::from(Ipv4Addr::new(10, 96, 0, 0)), prefix: 12, node_ports: (30000, 32767) }
    }
}

impl ServiceRanges {
    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip >= self.base && ip < self.base + self.size()
    }

    /// The API server's own Service IP: the first address of the range.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    pub fn dns_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 10)
    }
}

fn ip_key(ip: Ipv4Addr) -> String {
    format!("/registry/ranges/serviceips/{ip}")
}

fn port_key(port: u16) -> String {
    format!("/registry/ranges/servicenodeports/{port}")
}

fn random_u32() -> u32 {
    let b = uuid::Uuid::new_v4();
    let b = b.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl ApiState {
    /// Admission on create: allocates a Service's cluster IP and node ports.
    pub async fn admit_create(&self, def: &ResourceDef, obj: &mut Value, opts: &WriteOptions) -> ApiResult<()> {
        if def.group.is_empty() && def.kind == "Pod" {
            return self.admit_pod(obj).await;
        }
        if !(def.group.is_empty() && def.kind == "Service") || opts.dry_run {
            return Ok(());
        }
        let owner = format!("{}/{}", meta_str(obj, "namespace"), meta_str(obj, "name"));
        let name = meta_str(obj, "name").to_string();
        let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
        if ty == "ExternalName" {
            return Ok(());
        }
        let mut taken: Vec<String> = Vec::new();
        let result = self.allocate(def, obj, &owner, &name, &ty, &mut taken).await;
        if result.is_err() {
            for k in taken {
                let _ = self.store.delete(&k, None).await;
            }
        }
        result
    }

    async fn allocate(&self, def: &ResourceDef, obj: &mut Value, owner: &str, name: &str, ty: &str, taken: &mut Vec<String>) -> ApiResult<()> {
        let requested = obj.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
        let spec = obj.get_mut("spec").and_then(Value::as_object_mut).ok_or_else(|| ApiError::bad_request("spec must be an object"))?;
        if requested == "None" {
            spec.insert("clusterIPs".into(), json!(["None"]));
        } else {
            let ip = if requested.is_empty() {
                self.allocate_ip(owner, taken).await?
            } else {
                let ip: Ipv4Addr = requested
                    .parse()
                    .map_err(|_| ApiError::invalid(def, name, vec![FieldError::invalid("spec.clusterIP", &json!(requested), "must be a valid IP address")]))?;
                if !self.services.contains(ip) {
                    return Err(ApiError::invalid(def, name, vec![FieldError::invalid(
                        "spec.clusterIPs",
                        &json!([requested]),
                        &format!("failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
                    )]));
                }
                if !self.reserve(&ip_key(ip), owner, taken).await? {
                    return Err(ApiError::invalid(def, name, vec![FieldError::invalid(
                        "spec.clusterIPs",
                        &json!([requested]),
                        &format!("failed to allocate IP {ip}: provided IP is already allocated"),
                    )]));
                }
                ip
            };
            spec.insert("clusterIP".into(), json!(ip.to_string()));
            spec.insert("clusterIPs".into(), json!([ip.to_string()]));
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            let n = spec.get("ports").and_then(Value::as_array).map_or(0, Vec::len);
            for i in 0..n {
                let wanted = spec["ports"][i].get("nodePort").and_then(Value::as_u64).filter(|p| *p != 0);
                let port = match wanted {
                    Some(p) => {
                        let p = p as u16;
                        if !self.reserve(&port_key(p), owner, taken).await? {
                            return Err(ApiError::invalid(def, name, vec![FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                &json!(p),
                                "provided port is already allocated",
                            )]));
                        }
                        p
                    }
                    None => self.allocate_port(owner, taken).await?,
                };
                spec["ports"][i]["nodePort"] = json!(port);
            }
        }
        Ok(())
    }

    /// Creates a reservation key; false if someone holds it.
    async fn reserve(&self, key: &str, owner: &str, taken: &mut Vec<String>) -> ApiResult<bool> {
        match self.store.create(key, Bytes::from(owner.to_string())).await {
            Ok(_) => {
                taken.push(key.to_string());
                Ok(true)
            }
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(ApiError::from_store(e)),
        }
    }

    async fn allocate_ip(&self, owner: &str, taken: &mut Vec<String>) -> ApiResult<Ipv4Addr> {
        let size = self.services.size();
        // Random probes first (cheap while the range is sparse), then a full scan.
        for _ in 0..64 {
            let off = 2 + random_u32() % (size - 3);
            let ip = Ipv4Addr::from(self.services.base + off);
            if self.reserve(&ip_key(ip), owner, taken).await? {
                return Ok(ip);
            }
        }
        for off in 2..size - 1 {
            let ip = Ipv4Addr::from(self.services.base + off);
            if self.reserve(&ip_key(ip), owner, taken).await? {
                return Ok(ip);
            }
        }
        Err(ApiError::internal("failed to allocate a service IP: range is full"))
    }

    async fn allocate_port(&self, owner: &str, taken: &mut Vec<String>) -> ApiResult<u16> {
        let (lo, hi) = self.services.node_ports;
        let span = (hi - lo + 1) as u32;
        let start = random_u32() % span;
        for i in 0..span {
            let port = lo + ((start + i) % span) as u16;
            if self.reserve(&port_key(port), owner, taken).await? {
                return Ok(port);
            }
        }
        Err(ApiError::internal("failed to allocate a node port: range is full"))
    }

    /// Releases what a deleted object held (a Service's IP and node ports).
    pub async fn release(&self, def: &ResourceDef, obj: &Value) {
        if !(def.group.is_empty() && def.kind == "Service") {
            return;
        }
        let owner = format!("{}/{}", meta_str(obj, "namespace"), meta_str(obj, "name"));
        let mut keys = Vec::new();
        if let Some(ip) = obj.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|s| s.parse::<Ipv4Addr>().ok()) {
            keys.push(ip_key(ip));
        }
        for p in obj.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                keys.push(port_key(n as u16));
            }
        }
        for k in keys {
            // Only release what this Service holds (a failed create must not free another's).
            if let Ok(Some(kv)) = self.store.get(&k).await {
                if kv.value.as_ref() == owner.as_bytes() {
                    let _ = self.store.delete(&k, Some(kv.mod_revision)).await;
                }
            }
        }
    }
}
