//! Kubernetes' url, ip and cidr libraries (`k8s.io/apiserver/pkg/cel/library/{urls,ip,cidr}.go`).

use cel::{DeclarationError, Env};

pub(super) fn register(_env: &mut Env) -> Result<(), DeclarationError> {
    Ok(())
}
