//! The cluster's secrets shared by every server of one datastore — the cluster CA, the
//! front-proxy CA, the service-account signing key, the static token file — so that every
//! server accepts every certificate and token and a client can use any of them. As k3s does
//! with its bootstrap data: the first server stores them once in the datastore, encrypted
//! with a key derived from the server token (`--token`), and the next servers started with the
//! same token read them into their data directory before anything else.
//!
//! Record: `/bootstrap/<sha256(secret)[..16] hex>` → JSON `{"salt", "nonce", "ciphertext"}`
//! (base64), the plaintext a JSON map from file name to content. Key: PBKDF2-HMAC-SHA256 of
//! the token's secret (100,000 rounds, a random salt), then AES-256-GCM. A server token is
//! `K10<sha256 of the CA certificate>::server:<secret>` (or the bare secret); with the `K10`
//! part, the CA read back must match it.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;

use base64::Engine;
use bytes::Bytes;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};
use timonier_store::{Datastore, DynStorage};

use crate::error::ApiError;

const PREFIX: &str = "/bootstrap/";
/// The files shared, as named in the data directory's `pki/`.
const FILES: [&str; 6] = ["ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub"];
const TOKEN_FILE: &str = "token-auth-file";
const ROUNDS: u32 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the datastore: {0}")]
    Store(#[from] timonier_store::StoreError),
    #[error("{0}")]
    Io(String),
    #[error(
        "the datastore already holds a cluster whose server token is not this one: start this server with the first server's --token (its data directory's server-token file)"
    )]
    OtherToken,
    #[error("the cluster's bootstrap data cannot be decrypted with this --token (a wrong token, or damaged data)")]
    Decrypt,
    #[error("the cluster CA in the datastore does not match the hash in the token (K10…): wrong token, or the datastore is not the one it was made for")]
    CaMismatch,
    #[error(
        "this server's CA ({dir}/ca.crt) is not the cluster's: it was made for another cluster; remove {dir} to take the cluster's from the datastore"
    )]
    ForeignCa { dir: String },
}

/// A server token: the secret that derives the key, and the CA hash when it has one.
pub struct ServerToken {
    secret: String,
    ca_hash: Option<String>,
}

impl ServerToken {
    pub fn parse(token: &str) -> ServerToken {
        match token.strip_prefix("K10").and_then(|rest| rest.split_once("::")) {
            Some((hash, rest)) => ServerToken { secret: rest.strip_prefix("server:").unwrap_or(rest).to_string(), ca_hash: Some(hash.to_lowercase()) },
            None => ServerToken { secret: token.to_string(), ca_hash: None },
        }
    }

    /// The full token for other servers to join with: `K10<CA hash>::server:<secret>`.
    pub fn full(&self, ca_cert_pem: &str) -> String {
        let hash = crate::pki::ca_hashes(ca_cert_pem).map(|(der, _)| der).unwrap_or_default();
        format!("K10{hash}::server:{}", self.secret)
    }

    fn key(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.secret.as_bytes());
        let hex: String = digest.as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{PREFIX}{hex}")
    }
}

/// The answer to `GET /v1-timonier/server-bootstrap` (k3s' `/v1-k3s/server-bootstrap`): a
/// server joining with `--server URL --token T` learns there which datastore to share; the CA
/// and keys then come from that datastore, encrypted. Only for Basic `server:<secret>`, the
/// credentials k3s servers join with.
pub struct JoinAnswer {
    digest: Vec<u8>,
    datastore: Datastore,
}

fn sha256(s: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref().to_vec()
}

impl JoinAnswer {
    pub fn new(token: &ServerToken, datastore: &Datastore) -> JoinAnswer {
        JoinAnswer { digest: sha256(&token.secret), datastore: datastore.clone() }
    }

    /// The answer for a request with this `Authorization` header.
    pub fn answer(&self, authorization: Option<&str>) -> Result<Value, ApiError> {
        let credentials = authorization
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| b64().decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok());
        // Digests compared, so that the time taken tells nothing of the secret.
        let secret = credentials.as_deref().and_then(|c| c.strip_prefix("server:"));
        if secret.map(sha256) != Some(self.digest.clone()) {
            return Err(ApiError::unauthorized());
        }
        match &self.datastore {
            Datastore::Sqlite => Err(ApiError::bad_request(
                "this server keeps its state in its own SQLite file, which no other server can share: start the cluster's servers with --datastore etcd://… to add servers",
            )),
            etcd => Ok(json!({"datastore": etcd.to_string()})),
        }
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn cipher(secret: &str, salt: &[u8]) -> Result<LessSafeKey, BootstrapError> {
    let mut key = [0u8; 32];
    let rounds = NonZeroU32::new(ROUNDS).ok_or(BootstrapError::Decrypt)?;
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, rounds, salt, secret.as_bytes(), &mut key);
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).map_err(|_| BootstrapError::Decrypt)?))
}

fn seal(secret: &str, plaintext: &[u8]) -> Result<Value, BootstrapError> {
    let rng = SystemRandom::new();
    let (mut salt, mut nonce) = ([0u8; 16], [0u8; 12]);
    rng.fill(&mut salt).and_then(|_| rng.fill(&mut nonce)).map_err(|_| BootstrapError::Io("no randomness".into()))?;
    let mut data = plaintext.to_vec();
    cipher(secret, &salt)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| BootstrapError::Io("cannot encrypt the bootstrap data".into()))?;
    Ok(json!({"salt": b64().encode(salt), "nonce": b64().encode(nonce), "ciphertext": b64().encode(data)}))
}

fn open(secret: &str, record: &Value) -> Result<Vec<u8>, BootstrapError> {
    let field = |f: &str| record.get(f).and_then(Value::as_str).and_then(|s| b64().decode(s).ok()).ok_or(BootstrapError::Decrypt);
    let (salt, nonce, mut data) = (field("salt")?, field("nonce")?, field("ciphertext")?);
    let nonce = Nonce::try_assume_unique_for_key(&nonce).map_err(|_| BootstrapError::Decrypt)?;
    let plain = cipher(secret, &salt)?.open_in_place(nonce, Aad::empty(), &mut data).map_err(|_| BootstrapError::Decrypt)?;
    Ok(plain.to_vec())
}

fn io(what: &str, path: &Path, e: std::io::Error) -> BootstrapError {
    BootstrapError::Io(format!("cannot {what} {}: {e}", path.display()))
}

/// Before the PKI loads: when the datastore holds the cluster's bootstrap data, puts its files
/// into `pki_dir` (a new server joining) or checks the CA there is the cluster's (a restart).
/// `token_file` receives the shared static token file, if the cluster has one. Returns
/// whether the data was there.
pub async fn fetch(store: &DynStorage, token: &ServerToken, pki_dir: &Path, token_file: &Path) -> Result<bool, BootstrapError> {
    let Some(kv) = store.get(&token.key()).await? else {
        if !store.list(PREFIX, Default::default()).await?.items.is_empty() {
            return Err(BootstrapError::OtherToken);
        }
        return Ok(false);
    };
    let record: Value = serde_json::from_slice(&kv.value).map_err(|_| BootstrapError::Decrypt)?;
    let files: BTreeMap<String, String> = serde_json::from_slice(&open(&token.secret, &record)?).map_err(|_| BootstrapError::Decrypt)?;
    let ca = files.get("ca.crt").ok_or(BootstrapError::Decrypt)?;
    if let Some(hash) = &token.ca_hash {
        if crate::pki::ca_hashes(ca).map(|(der, _)| der).as_deref() != Some(hash.as_str()) {
            return Err(BootstrapError::CaMismatch);
        }
    }
    std::fs::create_dir_all(pki_dir).map_err(|e| io("create", pki_dir, e))?;
    let ours = pki_dir.join("ca.crt");
    match std::fs::read_to_string(&ours) {
        Ok(existing) if existing.trim() == ca.trim() => {}
        Ok(_) => return Err(BootstrapError::ForeignCa { dir: pki_dir.display().to_string() }),
        Err(_) => {
            for (name, content) in files.iter().filter(|(n, _)| n.as_str() != TOKEN_FILE) {
                crate::pki::write(&pki_dir.join(name), content, name.ends_with(".key")).map_err(|e| BootstrapError::Io(e.to_string()))?;
            }
            tracing::info!("joined the cluster: its CA, front-proxy CA and service-account key read from the datastore");
        }
    }
    if let Some(tokens) = files.get(TOKEN_FILE) {
        crate::pki::write(token_file, tokens, true).map_err(|e| BootstrapError::Io(e.to_string()))?;
    }
    Ok(true)
}

/// After the PKI exists (the first server): stores its shared files, encrypted, for the next
/// servers. A record written meanwhile by another first server wins; the caller then fails
/// with [`fetch`]'s error on its next start.
pub async fn store(store: &DynStorage, token: &ServerToken, pki_dir: &Path, token_file: Option<&Path>) -> Result<(), BootstrapError> {
    let mut files = BTreeMap::new();
    for name in FILES {
        let path = pki_dir.join(name);
        files.insert(name.to_string(), std::fs::read_to_string(&path).map_err(|e| io("read", &path, e))?);
    }
    if let Some(path) = token_file {
        files.insert(TOKEN_FILE.to_string(), std::fs::read_to_string(path).map_err(|e| io("read", path, e))?);
    }
    let plain = serde_json::to_vec(&files).map_err(|e| BootstrapError::Io(e.to_string()))?;
    let record = serde_json::to_vec(&seal(&token.secret, &plain)?).map_err(|e| BootstrapError::Io(e.to_string()))?;
    match store.create(&token.key(), Bytes::from(record)).await {
        Ok(_) => Ok(()),
        Err(timonier_store::StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_with_its_secret_only() {
        let sealed = seal("s3cret", b"{\"ca.crt\":\"x\"}").expect("seal");
        assert_eq!(open("s3cret", &sealed).expect("open"), b"{\"ca.crt\":\"x\"}");
        assert!(matches!(open("other", &sealed), Err(BootstrapError::Decrypt)));
    }

    #[test]
    fn only_the_server_token_learns_the_datastore() {
        let etcd: Datastore = "etcd://10.0.0.1:2379,10.0.0.2:2379".parse().expect("datastore");
        let join = JoinAnswer::new(&ServerToken::parse("K10ab::server:pw"), &etcd);
        let basic = |c: &str| format!("Basic {}", b64().encode(c));
        assert_eq!(join.answer(Some(&basic("server:pw"))).expect("answer")["datastore"], "etcd://10.0.0.1:2379,10.0.0.2:2379");
        for wrong in [None, Some(basic("server:other")), Some(basic("node:pw")), Some("Bearer pw".to_string()), Some("Basic %%%".to_string())] {
            assert_eq!(join.answer(wrong.as_deref()).map_err(|e| e.code).err(), Some(401), "{wrong:?}");
        }
        let sqlite = JoinAnswer::new(&ServerToken::parse("pw"), &Datastore::Sqlite);
        assert_eq!(sqlite.answer(Some(&basic("server:pw"))).map_err(|e| e.code).err(), Some(400));
    }

    #[test]
    fn tokens_as_k3s_writes_them() {
        let t = ServerToken::parse("K10ABCD::server:pw");
        assert_eq!((t.secret.as_str(), t.ca_hash.as_deref()), ("pw", Some("abcd")));
        let bare = ServerToken::parse("pw");
        assert_eq!((bare.secret.as_str(), bare.ca_hash.as_deref()), ("pw", None));
        assert_eq!(t.key(), bare.key());
    }
}
