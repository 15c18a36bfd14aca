//! The compiled-in admission plugins that judge who writes (upstream runs them before the
//! dynamic webhooks and policies of `admission/`): NodeRestriction and the certificate
//! plugins. Writes made by the server's own loops have no requesting user and pass.

use serde_json::Value;
use timonier_api::resources::ResourceDef;

use crate::admission::Operation;
use crate::error::ApiResult;
use crate::state::ApiState;

/// Admits one write of `def` (`obj` the object written, `old` the stored one).
pub fn admit(state: &ApiState, def: &ResourceDef, subresource: &str, op: Operation, obj: Option<&Value>, old: Option<&Value>) -> ApiResult<()> {
    let Some(user) = crate::strategy::requester() else { return Ok(()) };
    crate::node_restriction::admit(state, def, subresource, op, obj, old, &user)?;
    if def.group == "certificates.k8s.io" && def.kind == "CertificateSigningRequest" {
        if let Some(obj) = obj {
            crate::csr::admit(state, def, subresource, op, obj, old, &user)?;
        }
    }
    Ok(())
}
