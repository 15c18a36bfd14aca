//! Node IPAM: gives each node a `spec.podCIDR` out of the cluster's pod range, as
//! kube-controller-manager does with `--allocate-node-cidrs`. The node agent waits for it
//! before wiring pods, so two agents can never hand out the same pod addresses.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::bootstrap::on_change_of;
use crate::error::{ApiError, ApiResult};
use crate::rest::{meta_str, Mode, WriteOptions};
use crate::state::ApiState;

/// The cluster's pod range (DESIGN.md decision 6): 10.244.0.0/16, one /24 per node.
pub const CLUSTER_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 244, 0, 0), 16);
const NODE_PREFIX: u8 = 24;

pub async fn controller(state: Arc<ApiState>) {
    on_change_of(state, Duration::from_millis(200), "node-ipam", &[("", "v1", "nodes")], |state| async move { reconcile(&state).await }).await
}

/// The index (third octet for /24s in a /16) of a node range inside the cluster range.
fn block_index(cidr: &str) -> Option<u32> {
    let (ip, prefix) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    if prefix.parse::<u8>().ok()? != NODE_PREFIX {
        return None;
    }
    let base = u32::from(CLUSTER_CIDR.0);
    let mask = u32::MAX << (32 - CLUSTER_CIDR.1);
    let ip = u32::from(ip);
    (ip & mask == base).then(|| (ip - base) >> (32 - NODE_PREFIX))
}

fn block_cidr(index: u32) -> String {
    let ip = Ipv4Addr::from(u32::from(CLUSTER_CIDR.0) + (index << (32 - NODE_PREFIX)));
    format!("{ip}/{NODE_PREFIX}")
}

async fn reconcile(state: &Arc<ApiState>) -> ApiResult<()> {
    let def = state.def("", "v1", "nodes")?;
    let nodes: Vec<Arc<Value>> = state.cache_of(&def)?.list(&def.key_prefix()).into_iter().map(|(_, v)| v).collect();
    let mut used: BTreeSet<u32> =
        nodes.iter().filter_map(|n| n.pointer("/spec/podCIDR").and_then(Value::as_str)).filter_map(block_index).collect();
    let blocks = 1u32 << (NODE_PREFIX - CLUSTER_CIDR.1);
    for node in nodes.iter().filter(|n| n.pointer("/spec/podCIDR").and_then(Value::as_str).unwrap_or("").is_empty()) {
        let Some(free) = (0..blocks).find(|i| !used.contains(i)) else {
            tracing::warn!(node = meta_str(node, "name"), "no pod range left for this node: the cluster's 10.244.0.0/16 is exhausted");
            return Ok(());
        };
        let cidr = block_cidr(free);
        let name = meta_str(node, "name").to_string();
        let result = state
            .guaranteed_update(&def, "", &name, None, &WriteOptions::default(), |old| {
                let mut new = old.clone();
                if new.pointer("/spec/podCIDR").and_then(Value::as_str).unwrap_or("").is_empty() {
                    new["spec"]["podCIDR"] = json!(cidr);
                    new["spec"]["podCIDRs"] = json!([cidr]);
                }
                Ok(new)
            }, Mode::Main)
            .await;
        match result {
            Ok(_) => {
                tracing::info!(node = %name, pod_cidr = %cidr, "assigned the node its pod range");
                used.insert(free);
            }
            Err(ApiError { code: 404, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip() {
        assert_eq!(block_cidr(0), "10.244.0.0/24");
        assert_eq!(block_cidr(7), "10.244.7.0/24");
        assert_eq!(block_index("10.244.7.0/24"), Some(7));
        assert_eq!(block_index("10.245.7.0/24"), None);
        assert_eq!(block_index("10.244.7.0/25"), None);
        assert_eq!(block_index("garbage"), None);
    }
}
