//! `timonier token create|list|delete`, as `kubeadm token`: bootstrap tokens are Secrets
//! `kube-system/bootstrap-token-<id>` written with the server's admin credentials (its
//! `<data-dir>/admin.kubeconfig`). A created token is printed as the join token agents take,
//! k3s-style: `K10<sha256 of the cluster CA certificate>::<id>.<secret>`, which tells the
//! agent both how to authenticate and which CA to trust.

use std::path::PathBuf;

use anyhow::{bail, Context};
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use timonier_apiserver::bootstrap_token::{self, DEFAULT_NODE_GROUP, NAMESPACE, SECRET_PREFIX, SECRET_TYPE};

#[derive(clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    /// The server's data directory (its admin credentials and CA are there).
    #[arg(long, global = true, default_value = "/var/lib/timonier/server")]
    data_dir: PathBuf,
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Create a bootstrap token and print the join token for `timonier agent --token`.
    Create {
        /// How long the token is valid (Go duration: 24h, 90m, 1h30m); 0 never expires.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// A note kept with the token.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the bootstrap tokens.
    List,
    /// Delete bootstrap tokens, by id (`abcdef`) or whole (`abcdef.0123456789abcdef`).
    Delete {
        #[arg(required = true)]
        token_ids: Vec<String>,
    },
}

/// A Go duration of hours, minutes and seconds (`24h`, `1h30m`, `90s`, `0`).
fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    if s == "0" {
        return Ok(0);
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().with_context(|| format!("invalid duration {s:?}"))?;
        digits.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => bail!("invalid duration {s:?}: use h, m and s (24h, 1h30m)"),
        };
    }
    if !digits.is_empty() {
        bail!("invalid duration {s:?}: missing unit (24h, 90m)");
    }
    Ok(total)
}

/// Upstream's `ShortHumanDuration`.
fn short_duration(secs: i64) -> String {
    match secs {
        s if s < -1 => "<invalid>".into(),
        s if s < 0 => "0s".into(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s if s < 86400 * 365 => format!("{}d", s / 86400),
        s => format!("{}y", s / 86400 / 365),
    }
}

/// Prints rows as Go's tabwriter does for kubeadm (min width 10, padding 3).
fn print_table(rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == cols {
                line.push_str(cell);
            } else {
                let w = (widths[i] + 3).max(10);
                line.push_str(&format!("{cell:<w$}"));
            }
        }
        println!("{line}");
    }
}

async fn admin_client(data_dir: &std::path::Path) -> anyhow::Result<kube::Client> {
    let path = data_dir.join(timonier_apiserver::ADMIN_KUBECONFIG);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} (run this on a server, with its --data-dir, after it has started)", path.display()))?;
    Ok(crate::agent::client_from_kubeconfig(&text).await?.0)
}

fn value(secret: &Secret, key: &str) -> Option<String> {
    secret.data.as_ref()?.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok())
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let client = admin_client(&args.data_dir).await?;
    let secrets: Api<Secret> = Api::namespaced(client, NAMESPACE);
    match args.command {
        TokenCommand::Create { ttl, description } => {
            let ttl = parse_ttl(&ttl)?;
            let (id, secret) = bootstrap_token::generate_token().map_err(anyhow::Error::msg)?;
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let mut data = json!({
                "token-id": b64(&id),
                "token-secret": b64(&secret),
                "usage-bootstrap-authentication": b64("true"),
                "usage-bootstrap-signing": b64("true"),
                "auth-extra-groups": b64(DEFAULT_NODE_GROUP),
            });
            if ttl > 0 {
                let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(ttl as i64);
                data["expiration"] = json!(b64(&expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
            }
            if let Some(d) = description.filter(|d| !d.is_empty()) {
                data["description"] = json!(b64(&d));
            }
            let obj: Secret = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
                "metadata": {"name": format!("{SECRET_PREFIX}{id}"), "namespace": NAMESPACE},
                "data": data,
            }))?;
            secrets.create(&PostParams::default(), &obj).await.context("cannot create the bootstrap token")?;
            let ca_path = args.data_dir.join("pki").join("ca.crt");
            let ca = std::fs::read_to_string(&ca_path).with_context(|| format!("cannot read the cluster CA {}", ca_path.display()))?;
            let (ca_hash, _) = timonier_apiserver::pki::ca_hashes(&ca).context("the cluster CA is not a certificate")?;
            println!("K10{ca_hash}::{id}.{secret}");
        }
        TokenCommand::List => {
            let lp = ListParams::default().fields(&format!("type={SECRET_TYPE}"));
            let list = secrets.list(&lp).await.context("cannot list the bootstrap tokens")?;
            let mut rows = vec![["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"].map(String::from).to_vec()];
            for s in list.items.iter().filter(|s| s.type_.as_deref() == Some(SECRET_TYPE)) {
                let (Some(id), Some(secret)) = (value(s, "token-id"), value(s, "token-secret")) else { continue };
                let (ttl, expires) = match value(s, "expiration").and_then(|e| e.parse::<jiff::Timestamp>().ok()) {
                    Some(t) => (short_duration(t.as_second() - jiff::Timestamp::now().as_second()), t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    None => ("<forever>".into(), "<never>".into()),
                };
                let mut usages: Vec<String> = s
                    .data
                    .iter()
                    .flatten()
                    .filter(|(k, v)| k.starts_with("usage-bootstrap-") && v.0 == b"true")
                    .map(|(k, _)| k.trim_start_matches("usage-bootstrap-").to_string())
                    .collect();
                usages.sort();
                let or_none = |v: String| if v.is_empty() { "<none>".to_string() } else { v };
                rows.push(vec![
                    format!("{id}.{secret}"),
                    ttl,
                    expires,
                    or_none(usages.join(",")),
                    or_none(value(s, "description").unwrap_or_default()),
                    or_none(value(s, "auth-extra-groups").unwrap_or_default()),
                ]);
            }
            print_table(&rows);
        }
        TokenCommand::Delete { token_ids } => {
            for t in token_ids {
                let id = t.split_once('.').map_or(t.as_str(), |(id, _)| id).to_string();
                if id.len() != 6 || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
                    bail!("given token {t:?} didn't match pattern \"[a-z0-9]{{6}}\" or \"[a-z0-9]{{6}}\\.[a-z0-9]{{16}}\"");
                }
                secrets
                    .delete(&format!("{SECRET_PREFIX}{id}"), &DeleteParams::default())
                    .await
                    .with_context(|| format!("failed to delete bootstrap token {id:?}"))?;
                println!("bootstrap token {id:?} deleted");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_and_durations() {
        assert_eq!(parse_ttl("24h").ok(), Some(86400));
        assert_eq!(parse_ttl("1h30m").ok(), Some(5400));
        assert_eq!(parse_ttl("0").ok(), Some(0));
        assert!(parse_ttl("10").is_err() && parse_ttl("3d").is_err());
        assert_eq!((short_duration(86399), short_duration(59), short_duration(90000)), ("23h".into(), "59s".into(), "1d".into()));
    }
}
