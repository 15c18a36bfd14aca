//! Who the components `timonier server` runs in its own process are to the API server, as a
//! kubeadm control plane's: the scheduler `system:kube-scheduler`, the controller manager
//! `system:kube-controller-manager`, the node agent `system:node:<name>` in `system:nodes`,
//! each with a client certificate of the cluster CA — never the admin's. The controllers
//! write with their own service accounts' tokens (kube-controller-manager's
//! `--use-service-account-credentials`), which the controller manager asks for and renews.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use timonier_apiserver::pki::Pki;

/// A client of `server` with a client certificate for `user` in `groups`, from the CA.
pub async fn component_client(pki: &Pki, server: &str, user: &str, groups: &[&str]) -> anyhow::Result<kube::Client> {
    let cert = pki.issue_client(user, groups).with_context(|| format!("cannot issue the client certificate of {user}"))?;
    let kubeconfig = pki.kubeconfig_for(server, "timonier", &cert);
    Ok(crate::agent::client_from_kubeconfig(&kubeconfig).await?.0)
}

/// How long the controllers' tokens last; they are renewed at a third of it.
const TOKEN_SECONDS: i64 = 3600;

/// Asks for a token of the service account `kube-system/<name>` (made if missing) and writes
/// it to `path`, which the controller's client re-reads every minute.
async fn refresh_token(kcm: &kube::Client, name: &str, path: &Path) -> anyhow::Result<()> {
    let sas: Api<ServiceAccount> = Api::namespaced(kcm.clone(), "kube-system");
    let sa: ServiceAccount = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": "kube-system"}}))?;
    match sas.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create the service account kube-system/{name}")),
    }
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": TOKEN_SECONDS}});
    let answer: serde_json::Value = sas
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("cannot get a token for kube-system/{name}"))?;
    let token = answer.pointer("/status/token").and_then(serde_json::Value::as_str).context("the TokenRequest has no token")?;
    timonier_kubelet::certificate::write_private(path, token)?;
    Ok(())
}

/// The controllers' clients: the controller manager's own for the watch caches, each
/// controller's service account for its writes. Keeps their tokens fresh.
pub async fn controller_clients(kcm: kube::Client, server: &str, ca_pem: &str, dir: PathBuf) -> anyhow::Result<timonier_controllers::Clients> {
    let mut clients = Vec::new();
    for name in timonier_apiserver::rbac::CONTROLLERS {
        let path = dir.join(format!("{name}.token"));
        // The API server may still be starting: retry for a while.
        let mut tries = 0;
        while let Err(e) = refresh_token(&kcm, name, &path).await {
            tries += 1;
            if tries > 60 {
                return Err(e);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut cfg = kube::Config::new(server.parse().context("the server URL is invalid")?);
        cfg.root_cert = Some(timonier_kubelet::pem_certs(ca_pem));
        cfg.auth_info.token_file = Some(path.to_string_lossy().into_owned());
        clients.push(kube::Client::try_from(cfg).context("cannot build a controller's client")?);
    }
    let refresher = kcm.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs((TOKEN_SECONDS / 3) as u64)).await;
            for name in timonier_apiserver::rbac::CONTROLLERS {
                if let Err(e) = refresh_token(&refresher, name, &dir.join(format!("{name}.token"))).await {
                    tracing::warn!(controller = name, error = %e, "cannot renew the controller's token");
                }
            }
        }
    });
    let mut it = clients.into_iter();
    let mut next = || it.next().context("a controller client is missing");
    Ok(timonier_controllers::Clients { informers: kcm, deployment: next()?, replicaset: next()?, endpoint: next()?, endpointslice: next()?, node: next()?, pod_gc: next()? })
}

/// Marks the server's own node as a control-plane node once it has registered (kubeadm's
/// `mark-control-plane` phase, with the admin's credentials: a node may not label itself so).
pub async fn mark_control_plane(admin: kube::Client, node: String) {
    let nodes: Api<Node> = Api::all(admin);
    let patch = json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": "true"}}});
    loop {
        match nodes.patch(&node, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(node = %node, error = %e, "cannot label the control-plane node yet"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
