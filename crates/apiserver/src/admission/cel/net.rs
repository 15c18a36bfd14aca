//! Kubernetes' url, ip and cidr libraries (`k8s.io/apiserver/pkg/cel/library/{urls,ip,cidr}.go`).
//!
//! URLs are parsed as Go's `url.ParseRequestURI` then `url.Parse` (absolute URIs and absolute
//! paths; the accessors return what Go's `URL` methods return); addresses and prefixes as
//! `net/netip`, with upstream's refusals of zones and IPv4-mapped IPv6 addresses.

use std::any::Any;
use std::net::IpAddr;

use cel::common::types::{CelBool, CelInt, CelList, CelMap, CelMapKey, CelString, Type, STRING_TYPE};
use cel::common::value::{StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{args, fail, owned, string_arg};

static URL: Type = Type::new_unspecified_type("kubernetes.URL");
static IP: Type = Type::new_unspecified_type("net.IP");
static CIDR: Type = Type::new_unspecified_type("net.CIDR");

macro_rules! static_val {
    ($t:ty, $cel:expr) => {
        impl Val for $t {
            fn get_type(&self) -> &Type {
                &$cel
            }
            fn cel_type() -> &'static Type {
                &$cel
            }
            fn equals(&self, other: &dyn Val) -> bool {
                other.downcast_ref::<$t>().is_some_and(|o| o == self)
            }
            fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
                Box::new(self.clone())
            }
            fn as_any(&self) -> Option<&dyn Any> {
                Some(self)
            }
        }
        impl StaticVal for $t {}
    };
}

/// A URL as Go's `url.URL` holds one.
#[derive(Debug, Clone, PartialEq)]
struct Url {
    scheme: String,
    host: String,
    raw_path: String,
    raw_query: String,
}
static_val!(Url, URL);

/// Go's `shouldEscape` for a path, inverted: what a path keeps as is.
fn path_keeps(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@!'()*".contains(&c)
}

fn unhex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Go's `url.PathUnescape`.
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(h), Some(l)) = (b.get(i + 1).copied().and_then(unhex), b.get(i + 2).copied().and_then(unhex)) else {
                let end = (i + 3).min(b.len());
                return Err(format!("invalid URL escape {:?}", String::from_utf8_lossy(&b[i..end])));
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Go's `validOptionalPort`: empty, or `:` and digits.
fn valid_optional_port(port: &str) -> bool {
    port.is_empty() || port.strip_prefix(':').is_some_and(|p| p.bytes().all(|c| c.is_ascii_digit()))
}

impl Url {
    /// `url.ParseRequestURI`, whose errors read `parse "<s>": <reason>` as Go's.
    fn parse(s: &str) -> Result<Url, String> {
        let err = |reason: &str| format!("parse {s:?}: {reason}");
        if s.bytes().any(|c| c < 0x20 || c == 0x7f) {
            return Err(err("net/url: invalid control character in URL"));
        }
        if s.is_empty() {
            return Err(err("empty url"));
        }
        let mut scheme = String::new();
        let mut rest = s;
        for (i, c) in s.char_indices() {
            match c {
                'a'..='z' | 'A'..='Z' => {}
                '0'..='9' | '+' | '-' | '.' if i > 0 => {}
                ':' if i == 0 => return Err(err("missing protocol scheme")),
                ':' => {
                    scheme = s[..i].to_ascii_lowercase();
                    rest = &s[i + 1..];
                    break;
                }
                _ => break,
            }
        }
        let (rest, raw_query) = match rest.split_once('?') {
            Some((r, q)) => (r, q.to_string()),
            None => (rest, String::new()),
        };
        if !rest.starts_with('/') {
            if !scheme.is_empty() {
                // An opaque URL (`mailto:x`): valid, with neither host nor path.
                return Ok(Url { scheme, host: String::new(), raw_path: String::new(), raw_query });
            }
            return Err(err("invalid URI for request"));
        }
        let (host, path) = match rest.strip_prefix("//").filter(|r| !scheme.is_empty() && !r.starts_with('/')) {
            Some(r) => {
                let (authority, path) = r.find('/').map_or((r, ""), |i| (&r[..i], &r[i..]));
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                if let Some(inner) = host.strip_prefix('[') {
                    let Some(close) = inner.find(']') else { return Err(err("missing ']' in host")) };
                    if !valid_optional_port(&inner[close + 1..]) {
                        return Err(err(&format!("invalid port {:?} after host", &inner[close + 1..])));
                    }
                } else if let Some(i) = host.rfind(':') {
                    if !valid_optional_port(&host[i..]) {
                        return Err(err(&format!("invalid port {:?} after host", &host[i..])));
                    }
                }
                (host.to_string(), path)
            }
            None => (String::new(), rest),
        };
        unescape(path).map_err(|e| err(&e))?;
        Ok(Url { scheme, host, raw_path: path.to_string(), raw_query })
    }

    fn split_host_port(&self) -> (&str, &str) {
        let mut host = self.host.as_str();
        let mut port = "";
        if let Some(i) = host.rfind(':') {
            if valid_optional_port(&host[i..]) {
                port = &host[i + 1..];
                host = &host[..i];
            }
        }
        if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            host = inner;
        }
        (host, port)
    }

    /// Go's `EscapedPath`: the path as written when that is a valid encoding, else escaped.
    fn escaped_path(&self) -> String {
        if self.raw_path.bytes().all(|c| path_keeps(c) || c == b'%') {
            return self.raw_path.clone();
        }
        let decoded = unescape(&self.raw_path).unwrap_or_else(|_| self.raw_path.clone().into_bytes());
        decoded.iter().map(|&c| if path_keeps(c) { (c as char).to_string() } else { format!("%{c:02X}") }).collect()
    }
}

/// Go's `url.ParseRequestURI`: its error, `parse "<s>": <reason>`, when `s` does not parse.
pub(super) fn parse_request_uri(s: &str) -> Result<(), String> {
    Url::parse(s).map(|_| ())
}

/// An address as `netip.Addr` (no zone, never IPv4-mapped).
#[derive(Debug, Clone, PartialEq)]
struct Ip(IpAddr);
static_val!(Ip, IP);

/// A prefix as `netip.Prefix`: the address as written, and the prefix length.
#[derive(Debug, Clone, PartialEq)]
struct Cidr(IpAddr, u8);
static_val!(Cidr, CIDR);

fn parse_addr(s: &str) -> Result<IpAddr, String> {
    if s.contains('%') {
        return Err("IP address with zone value is not allowed".into());
    }
    let addr: IpAddr = s.parse().map_err(|_| format!("IP Address {s:?} parse error during conversion from string: ParseAddr({s:?}): unable to parse IP"))?;
    if let IpAddr::V6(v6) = addr {
        if v6.to_ipv4_mapped().is_some() {
            return Err("IPv4-mapped IPv6 address is not allowed".into());
        }
    }
    Ok(addr)
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let wrong = |why: &str| format!("network address parse error during conversion from string: netip.ParsePrefix({s:?}): {why}");
    let (addr, bits) = s.rsplit_once('/').ok_or_else(|| wrong("no '/'"))?;
    if addr.contains('%') {
        return Err("CIDR with zone value is not allowed".into());
    }
    let ip: IpAddr = addr.parse().map_err(|_| wrong("unable to parse IP"))?;
    if let IpAddr::V6(v6) = ip {
        if v6.to_ipv4_mapped().is_some() {
            return Err("IPv4-mapped IPv6 address is not allowed".into());
        }
    }
    // Go's ParsePrefix: decimal digits, no sign, no leading zero.
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let digits = !bits.is_empty() && bits.bytes().all(|c| c.is_ascii_digit()) && (bits == "0" || !bits.starts_with('0'));
    let len = bits.parse::<u8>().ok().filter(|b| digits && *b <= max).ok_or_else(|| wrong(&format!("bad bits after slash: {bits:?}")))?;
    Ok(Cidr(ip, len))
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.0.is_ipv4() && mask(ip, self.1) == mask(self.0, self.1)
    }

    fn contains_cidr(&self, o: &Cidr) -> bool {
        o.1 >= self.1 && self.contains(o.0)
    }
}

fn is_link_local_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..2] == [169, 254],
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn is_link_local_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
    }
}

/// Go's `Addr.IsGlobalUnicast`.
fn is_global_unicast(ip: IpAddr) -> bool {
    if let IpAddr::V4(v4) = ip {
        if v4.is_broadcast() {
            return false;
        }
    }
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || is_link_local_unicast(ip))
}

fn ip_arg(v: &dyn Val) -> Result<IpAddr, ExecutionError> {
    if let Some(ip) = v.downcast_ref::<Ip>() {
        return Ok(ip.0);
    }
    parse_addr(string_arg(v)?).map_err(|e| fail("ip", e))
}

fn cidr_arg(v: &dyn Val) -> Result<Cidr, ExecutionError> {
    if let Some(c) = v.downcast_ref::<Cidr>() {
        return Ok(c.clone());
    }
    parse_cidr(string_arg(v)?).map_err(|e| fail("cidr", e))
}

fn url_arg(v: &dyn Val) -> Result<&Url, ExecutionError> {
    v.downcast_ref::<Url>().ok_or_else(|| ExecutionError::UnexpectedType { got: v.get_type().name().to_string(), want: URL.name().to_string() })
}

fn register_url(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(URL.to_owned())?;
    env.add_overload("url", "string_to_url", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        Url::parse(string_arg(s.as_ref())?).map(owned).map_err(|e| fail("url", format!("URL parse error during conversion from string: {e}")))
    })?;
    env.add_overload("isURL", "is_url_string", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        Ok(owned(CelBool::from(Url::parse(string_arg(s.as_ref())?).is_ok())))
    })?;
    env.add_member_overload("getScheme", "url_get_scheme", URL.to_owned(), vec![], |a| {
        let [u] = args(a)?;
        Ok(owned(CelString::from(url_arg(u.as_ref())?.scheme.clone())))
    })?;
    env.add_member_overload("getHost", "url_get_host", URL.to_owned(), vec![], |a| {
        let [u] = args(a)?;
        Ok(owned(CelString::from(url_arg(u.as_ref())?.host.clone())))
    })?;
    env.add_member_overload("getHostname", "url_get_hostname", URL.to_owned(), vec![], |a| {
        let [u] = args(a)?;
        Ok(owned(CelString::from(url_arg(u.as_ref())?.split_host_port().0.to_string())))
    })?;
    env.add_member_overload("getPort", "url_get_port", URL.to_owned(), vec![], |a| {
        let [u] = args(a)?;
        Ok(owned(CelString::from(url_arg(u.as_ref())?.split_host_port().1.to_string())))
    })?;
    env.add_member_overload("getEscapedPath", "url_get_escaped_path", URL.to_owned(), vec![], |a| {
        let [u] = args(a)?;
        Ok(owned(CelString::from(url_arg(u.as_ref())?.escaped_path())))
    })?;
    env.add_member_overload("getQuery", "url_get_query", URL.to_owned(), vec![], |a| {
        let [u] = args(a)?;
        // Go's `Query()`: `+` is a space, pairs that do not decode are dropped.
        let mut query: Vec<(String, Vec<String>)> = Vec::new();
        for (k, v) in form_urlencoded::parse(url_arg(u.as_ref())?.raw_query.as_bytes()) {
            match query.iter_mut().find(|(key, _)| *key == k) {
                Some((_, values)) => values.push(v.into_owned()),
                None => query.push((k.into_owned(), vec![v.into_owned()])),
            }
        }
        let map: std::collections::HashMap<CelMapKey<'_>, Box<dyn Val>> = query
            .into_iter()
            .map(|(k, vs)| (CelMapKey::from(k), Box::new(CelList::from(vs.into_iter().map(|v| Box::new(CelString::from(v)) as Box<dyn Val>).collect::<Vec<_>>())) as Box<dyn Val>))
            .collect();
        Ok(owned(CelMap::from(map)))
    })?;
    Ok(())
}

fn register_ip(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(IP.to_owned())?;
    env.add_overload("ip", "string_to_ip", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        parse_addr(string_arg(s.as_ref())?).map(|ip| owned(Ip(ip))).map_err(|e| fail("ip", e))
    })?;
    env.add_overload("isIP", "is_ip", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        Ok(owned(CelBool::from(parse_addr(string_arg(s.as_ref())?).is_ok())))
    })?;
    env.add_overload("ip.isCanonical", "ip_is_canonical", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        let s = string_arg(s.as_ref())?;
        let ip = parse_addr(s).map_err(|e| fail("ip.isCanonical", e))?;
        Ok(owned(CelBool::from(ip.to_string() == s)))
    })?;
    env.add_overload("string", "ip_to_string", vec![IP.to_owned()], |a| {
        let [ip] = args(a)?;
        Ok(owned(CelString::from(ip_arg(ip.as_ref())?.to_string())))
    })?;
    env.add_member_overload("family", "ip_family", IP.to_owned(), vec![], |a| {
        let [ip] = args(a)?;
        Ok(owned(CelInt::from(if ip_arg(ip.as_ref())?.is_ipv4() { 4 } else { 6 })))
    })?;
    // One overload per test: a plain `fn` cannot capture which test it is.
    macro_rules! ip_test {
        ($name:literal, $test:expr) => {
            env.add_member_overload($name, concat!("ip_", $name), IP.to_owned(), vec![], |a| {
                let [ip] = args(a)?;
                let test: fn(IpAddr) -> bool = $test;
                Ok(owned(CelBool::from(test(ip_arg(ip.as_ref())?))))
            })?;
        };
    }
    ip_test!("isUnspecified", |ip| ip.is_unspecified());
    ip_test!("isLoopback", |ip| ip.is_loopback());
    ip_test!("isLinkLocalMulticast", is_link_local_multicast);
    ip_test!("isLinkLocalUnicast", is_link_local_unicast);
    ip_test!("isGlobalUnicast", is_global_unicast);
    Ok(())
}

fn register_cidr(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(CIDR.to_owned())?;
    env.add_overload("cidr", "string_to_cidr", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        parse_cidr(string_arg(s.as_ref())?).map(owned).map_err(|e| fail("cidr", e))
    })?;
    env.add_overload("isCIDR", "is_cidr", vec![STRING_TYPE], |a| {
        let [s] = args(a)?;
        Ok(owned(CelBool::from(parse_cidr(string_arg(s.as_ref())?).is_ok())))
    })?;
    env.add_overload("string", "cidr_to_string", vec![CIDR.to_owned()], |a| {
        let [c] = args(a)?;
        let c = cidr_arg(c.as_ref())?;
        Ok(owned(CelString::from(format!("{}/{}", c.0, c.1))))
    })?;
    for (arg, id) in [(IP.to_owned(), "cidr_contains_ip_ip"), (STRING_TYPE, "cidr_contains_ip_string")] {
        env.add_member_overload("containsIP", id, CIDR.to_owned(), vec![arg], |a| {
            let [c, ip] = args(a)?;
            Ok(owned(CelBool::from(cidr_arg(c.as_ref())?.contains(ip_arg(ip.as_ref())?))))
        })?;
    }
    for (arg, id) in [(CIDR.to_owned(), "cidr_contains_cidr_cidr"), (STRING_TYPE, "cidr_contains_cidr_string")] {
        env.add_member_overload("containsCIDR", id, CIDR.to_owned(), vec![arg], |a| {
            let [c, o] = args(a)?;
            Ok(owned(CelBool::from(cidr_arg(c.as_ref())?.contains_cidr(&cidr_arg(o.as_ref())?))))
        })?;
    }
    env.add_member_overload("ip", "cidr_ip", CIDR.to_owned(), vec![], |a| {
        let [c] = args(a)?;
        Ok(owned(Ip(cidr_arg(c.as_ref())?.0)))
    })?;
    env.add_member_overload("masked", "cidr_masked", CIDR.to_owned(), vec![], |a| {
        let [c] = args(a)?;
        let c = cidr_arg(c.as_ref())?;
        Ok(owned(Cidr(mask(c.0, c.1), c.1)))
    })?;
    env.add_member_overload("prefixLength", "cidr_prefix_length", CIDR.to_owned(), vec![], |a| {
        let [c] = args(a)?;
        Ok(owned(CelInt::from(i64::from(cidr_arg(c.as_ref())?.1))))
    })?;
    Ok(())
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    register_url(env)?;
    register_ip(env)?;
    register_cidr(env)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, val};
    use serde_json::json;

    /// The examples of upstream's library documentation.
    #[test]
    fn urls() {
        for (expr, want) in [
            ("url('https://example.com/path').getScheme()", json!("https")),
            ("url('https://example.com:80/').getHost()", json!("example.com:80")),
            ("url('https://example.com/').getHost()", json!("example.com")),
            ("url('https://[::1]:80/').getHost()", json!("[::1]:80")),
            ("url('https://[::1]:80/').getHostname()", json!("::1")),
            ("url('https://example.com:80/').getHostname()", json!("example.com")),
            ("url('https://example.com:80/').getPort()", json!("80")),
            ("url('https://example.com/').getPort()", json!("")),
            ("url('https://example.com/path').getEscapedPath()", json!("/path")),
            ("url('https://example.com/path with spaces/').getEscapedPath()", json!("/path%20with%20spaces/")),
            ("url('https://example.com/').getEscapedPath()", json!("/")),
            ("url('https://example.com/path?k1=a&k2=b&k2=c').getQuery()", json!({"k1": ["a"], "k2": ["b", "c"]})),
            ("url('https://example.com/').getQuery()", json!({})),
            ("url('/absolute-path').getHost()", json!("")),
            ("isURL('https://example.com/')", json!(true)),
            ("isURL('/absolute-path')", json!(true)),
            ("isURL('example.com')", json!(false)),
            ("isURL('https://example.com:port/')", json!(false)),
            ("url('https://example.com') == url('https://example.com')", json!(true)),
        ] {
            assert_eq!(val(expr), want, "{expr}");
        }
        assert!(err("url('example.com')").ends_with("URL parse error during conversion from string: parse \"example.com\": invalid URI for request"), "{}", err("url('example.com')"));
    }

    #[test]
    fn ips_and_cidrs() {
        for (expr, want) in [
            ("isIP('127.0.0.1')", json!(true)),
            ("isIP('::1')", json!(true)),
            ("isIP('1.2.3.04')", json!(false)),
            ("isIP('::ffff:1.2.3.4')", json!(false)),
            ("isIP('fe80::1%eth0')", json!(false)),
            ("ip.isCanonical('127.0.0.1')", json!(true)),
            ("ip.isCanonical('2001:db8::abcd')", json!(true)),
            ("ip.isCanonical('2001:DB8::ABCD')", json!(false)),
            ("ip.isCanonical('2001:db8:0:0:0:0:0:abcd')", json!(false)),
            ("ip('127.0.0.1').family()", json!(4)),
            ("ip('::1').family()", json!(6)),
            ("ip('0.0.0.0').isUnspecified()", json!(true)),
            ("ip('::').isUnspecified()", json!(true)),
            ("ip('127.0.0.1').isLoopback()", json!(true)),
            ("ip('::1').isLoopback()", json!(true)),
            ("ip('224.0.0.1').isLinkLocalMulticast()", json!(true)),
            ("ip('ff02::1').isLinkLocalMulticast()", json!(true)),
            ("ip('224.0.1.1').isLinkLocalMulticast()", json!(false)),
            ("ip('169.254.169.254').isLinkLocalUnicast()", json!(true)),
            ("ip('fe80::1').isLinkLocalUnicast()", json!(true)),
            ("ip('192.168.0.1').isGlobalUnicast()", json!(true)),
            ("ip('2001:db8::1').isGlobalUnicast()", json!(true)),
            ("ip('255.255.255.255').isGlobalUnicast()", json!(false)),
            ("ip('ff00::1').isGlobalUnicast()", json!(false)),
            ("string(ip('2001:DB8::1'))", json!("2001:db8::1")),
            ("ip('127.0.0.1') == ip('127.0.0.1')", json!(true)),
            ("isCIDR('192.168.0.0/24')", json!(true)),
            ("isCIDR('192.168.0.0/33')", json!(false)),
            ("isCIDR('192.168.0.0')", json!(false)),
            ("isCIDR('::ffff:1.2.3.0/120')", json!(false)),
            ("cidr('192.168.0.0/24').containsIP(ip('192.168.0.1'))", json!(true)),
            ("cidr('192.168.0.0/24').containsIP(ip('192.168.1.1'))", json!(false)),
            ("cidr('192.168.0.0/24').containsIP('192.168.0.1')", json!(true)),
            ("cidr('::/0').containsIP('192.168.0.1')", json!(false)),
            ("cidr('192.168.0.0/24').containsCIDR(cidr('192.168.0.0/25'))", json!(true)),
            ("cidr('192.168.0.0/24').containsCIDR('192.168.0.0/23')", json!(false)),
            ("cidr('192.168.0.0/16').containsCIDR('192.168.10.0/24')", json!(true)),
            ("cidr('192.168.0.0/24').ip() == ip('192.168.0.0')", json!(true)),
            ("cidr('192.168.1.5/24').ip() == ip('192.168.1.5')", json!(true)),
            ("cidr('192.168.1.5/24').masked() == cidr('192.168.1.0/24')", json!(true)),
            ("cidr('192.168.0.0/24').prefixLength()", json!(24)),
            ("string(cidr('::1/128'))", json!("::1/128")),
            ("string(cidr('192.168.1.5/24').masked())", json!("192.168.1.0/24")),
        ] {
            assert_eq!(val(expr), want, "{expr}");
        }
        assert!(err("ip('::ffff:1.2.3.4')").ends_with("IPv4-mapped IPv6 address is not allowed"));
        assert!(err("ip('fe80::1%eth0')").ends_with("IP address with zone value is not allowed"));
        assert!(err("ip('1.2.3')").contains("parse error during conversion from string"));
        assert!(err("cidr('1.2.3.0/33')").contains("network address parse error during conversion from string"));
    }
}
