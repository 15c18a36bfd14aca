//! `timonier server --server URL --token T`: a server joining the cluster of the server at
//! URL, as k3s servers join. It checks that server's CA against the hash in the token before
//! sending anything, then asks it, with the server token, which datastore the cluster's servers
//! share (`/v1-timonier/server-bootstrap`). The CA and keys then come from that datastore,
//! encrypted with the token (the API server's `cluster_bootstrap`).

use anyhow::{bail, Context};
use base64::Engine;
use serde_json::Value;
use timonier_kubelet::certificate::discovery::{self, CaPin};
use timonier_store::Datastore;

/// The datastore to share with the server at `server`: `given` (`--datastore`) when it names
/// an etcd cluster, else the one that server uses. Either way the server must accept the token.
pub async fn datastore(server: &str, token: &str, given: &Datastore) -> anyhow::Result<Datastore> {
    let (pin, credentials) = match token.strip_prefix("K10").and_then(|rest| rest.split_once("::")) {
        Some((hash, creds)) => (Some(CaPin::Certificate(hash.to_ascii_lowercase())), creds),
        None => (None, token),
    };
    let Some(secret) = credentials.strip_prefix("server:").or((pin.is_none()).then_some(credentials)) else {
        bail!(
            "--token is an agent's join token ({credentials:?} after the CA hash): a server joins with the server token, the first server's DATA_DIR/server-token (K10…::server:…)"
        );
    };
    let mut config = kube::Config::new(server.parse().with_context(|| format!("--server {server:?} is not a URL"))?);
    match &pin {
        Some(pin) => config.root_cert = Some(timonier_kubelet::pem_certs(&discovery::pinned_ca(server, pin).await?)),
        None => {
            // k3s' short token: nothing to check the server against.
            tracing::warn!("the token has no CA hash (K10<hash>::server:<secret>): trusting whatever certificate {server} presents");
            config.accept_invalid_certs = true;
        }
    }
    let client = kube::Client::try_from(config).with_context(|| format!("cannot build a client for {server}"))?;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("server:{secret}"));
    let request = http::Request::get("/v1-timonier/server-bootstrap")
        .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
        .body(Vec::new())
        .context("cannot build the request")?;
    let answer: Value = match client.request(request).await {
        Ok(v) => v,
        Err(kube::Error::Api(s)) if s.code == 401 => {
            bail!("{server} refused this server token: use the one in its data directory's server-token file")
        }
        Err(kube::Error::Api(s)) => bail!("{server} cannot take another server: {}", s.message),
        Err(e) => return Err(e).with_context(|| format!("cannot ask {server} which datastore its cluster uses")),
    };
    let datastore: Datastore = answer
        .get("datastore")
        .and_then(Value::as_str)
        .context("the server's answer names no datastore")?
        .parse()
        .map_err(|e: String| anyhow::anyhow!("the server's datastore: {e}"))?;
    if matches!(given, Datastore::Etcd { .. }) {
        return Ok(given.clone());
    }
    if let Datastore::Etcd { endpoints } = &datastore {
        let loopback = |e: &String| e.rsplit_once(':').is_some_and(|(h, _)| h == "localhost" || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()));
        let remote = !server.contains("://127.") && !server.contains("://localhost") && !server.contains("://[::1]");
        if remote && endpoints.iter().any(loopback) {
            bail!("{server}'s datastore is {datastore}, a loopback address on its own machine: pass --datastore etcd://… with addresses this machine reaches");
        }
    }
    Ok(datastore)
}
