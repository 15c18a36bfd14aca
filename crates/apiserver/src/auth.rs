//! Authentication: who is calling, from the TLS client certificate (CN = user, O = groups, as
//! upstream) or a bearer token from the static token file; service-account tokens (JWTs) are
//! checked by `ApiState::authenticate_sa_token` (`serviceaccount.rs`), bootstrap tokens by
//! `ApiState::authenticate_bootstrap_token` (`bootstrap_token.rs`).

use std::collections::HashMap;
use std::path::Path;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    fn with_authenticated(mut self) -> UserInfo {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
}

/// The user of a verified client certificate (DER).
pub fn user_from_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some(UserInfo { name, groups }.with_authenticated())
}

/// Static bearer tokens, as upstream's `--token-auth-file`: CSV lines
/// `token,user,uid[,"group1,group2"]`.
#[derive(Debug, Clone, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
    /// The uid column of each token's user (what a TokenReview answers as `user.uid`).
    uids: HashMap<String, String>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<TokenFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
        TokenFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<TokenFile, String> {
        let mut tokens = HashMap::new();
        let mut uids = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 {
                return Err(format!("line {}: expected token,user,uid[,groups]", i + 1));
            }
            let groups = fields.get(3).map(|g| g.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
            tokens.insert(fields[0].clone(), UserInfo { name: fields[1].clone(), groups }.with_authenticated());
            uids.insert(fields[0].clone(), fields[2].clone());
        }
        Ok(TokenFile { tokens, uids })
    }

    pub fn insert(&mut self, token: &str, user: UserInfo) {
        self.tokens.insert(token.to_string(), user.with_authenticated());
    }

    pub fn user(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }

    /// The uid the token file gives the token's user ("" when none).
    pub fn uid(&self, token: &str) -> &str {
        self.uids.get(token).map_or("", String::as_str)
    }
}

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

/// The anonymous user (`system:anonymous` in `system:unauthenticated`) for the one request
/// anonymous clients may make: reading `kube-public/cluster-info`, kubeadm-style discovery.
pub fn anonymous_for(method: &http::Method, path: &str) -> Option<UserInfo> {
    (method == http::Method::GET && path == crate::cluster_info::PATH)
        .then(|| UserInfo { name: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()] })
}

/// The bearer token of an Authorization header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let f = TokenFile::parse("# comment\nabc,alice,1,\"dev,ops\"\nxyz,bob,2\n").unwrap();
        let a = f.user("abc").unwrap();
        assert_eq!(a.name, "alice");
        assert_eq!(a.groups, ["dev", "ops", "system:authenticated"]);
        assert_eq!(f.user("xyz").unwrap().groups, ["system:authenticated"]);
        assert_eq!((f.uid("abc"), f.uid("xyz"), f.uid("nope")), ("1", "2", ""));
        assert!(f.user("nope").is_none());
        assert!(TokenFile::parse("lonely").is_err());
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
    }
}
