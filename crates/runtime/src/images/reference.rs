//! Image references, normalized the way containerd and the kubelet do: `busybox` is
//! `docker.io/library/busybox:latest`, `localhost:5000/x` keeps its registry.

use super::error::{Error, Result};

/// Returns the fully qualified form of an image reference: registry, repository, and a tag
/// (`latest` unless a tag or digest is given), so that one image has one name whatever the
/// user typed.
pub fn normalize(reference: &str) -> Result<String> {
    let bad = |reason: &str| Error::InvalidReference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    };
    if reference.is_empty() {
        return Err(bad("empty"));
    }
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => {
            validate_digest(d)
                .map_err(|_| bad("the digest after @ must be sha256:<64 hex digits>"))?;
            (n, Some(d))
        }
        None => (reference, None),
    };
    // A tag is a ':' after the last '/' (a ':' before it is a registry port).
    let (name, tag) = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    let (domain, path) = match name.split_once('/') {
        Some((d, rest)) if d.contains('.') || d.contains(':') || d == "localhost" => {
            (d, rest.to_string())
        }
        _ => ("docker.io", name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    if path.is_empty() || path.split('/').any(|c| c.is_empty() || !valid_component(c)) {
        return Err(bad(
            "repository names are lowercase letters, digits and . _ - separated by /",
        ));
    }
    if domain.is_empty()
        || !domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    {
        return Err(bad("invalid registry host"));
    }
    let mut out = format!("{domain}/{path}");
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(bad(
                "a tag is up to 128 letters, digits, _ . - and does not start with . or -",
            ));
        }
        out = format!("{out}:{tag}");
    } else if digest.is_none() {
        out.push_str(":latest");
    }
    if let Some(d) = digest {
        out = format!("{out}@{d}");
    }
    Ok(out)
}

/// The digest part of a normalized reference (`name@sha256:…`), if it has one.
pub fn digest_of(normalized: &str) -> Option<&str> {
    normalized.split_once('@').map(|(_, d)| d)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    alnum(b[0]) && alnum(b[b.len() - 1]) && b.iter().all(|&x| alnum(x) || b"._-".contains(&x))
}

/// Checks that `d` is `sha256:<64 lowercase hex>` and returns the hex part, the only digest
/// algorithm the store accepts (the one every registry and `docker save` uses).
pub fn validate_digest(d: &str) -> Result<&str> {
    match d.strip_prefix("sha256:") {
        Some(h)
            if h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(h)
        }
        _ => Err(Error::InvalidReference {
            reference: d.to_string(),
            reason: "expected a digest sha256:<64 lowercase hex digits>".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_containerd() {
        let n = |s| normalize(s).unwrap();
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1.35"), "docker.io/library/busybox:1.35");
        assert_eq!(n("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("index.docker.io/foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(n("localhost:5000/x/y"), "localhost:5000/x/y:latest");
        assert_eq!(
            n("127.0.0.1:5000/test/busybox:httpd"),
            "127.0.0.1:5000/test/busybox:httpd"
        );
        assert_eq!(
            n("gcr.io/google-samples/kubernetes-bootcamp:v1"),
            "gcr.io/google-samples/kubernetes-bootcamp:v1"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        for bad in ["", "BusyBox", "a//b", "x:", "x@sha256:12", "-a"] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }
}
