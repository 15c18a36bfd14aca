//! A minimal IPv4 CIDR type, so the crate's public API does not depend on an external IP crate.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::Error;

/// An IPv4 network such as `10.244.0.0/24`. The address is always normalised to the network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// Builds a network; host bits of `addr` are cleared. Fails if `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, Error> {
        if prefix > 32 {
            return Err(Error::InvalidCidr(format!("{addr}/{prefix}")));
        }
        let bits = u32::from(addr) & Self::mask_of(prefix);
        Ok(Self { addr: Ipv4Addr::from(bits), prefix })
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast (last) address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !Self::mask_of(self.prefix))
    }

    /// The gateway by convention: the first address after the network address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(1))
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.prefix) == u32::from(self.addr)
    }

    /// Number of addresses in the network (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (a, p) = s.split_once('/').ok_or_else(|| Error::InvalidCidr(s.to_string()))?;
        let addr: Ipv4Addr = a.trim().parse().map_err(|_| Error::InvalidCidr(s.to_string()))?;
        let prefix: u8 = p.trim().parse().map_err(|_| Error::InvalidCidr(s.to_string()))?;
        Self::new(addr, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_math() {
        let n: Ipv4Net = "10.244.0.7/24".parse().unwrap();
        assert_eq!(n.to_string(), "10.244.0.0/24");
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 244, 0, 1));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 244, 0, 255));
        assert!(n.contains(Ipv4Addr::new(10, 244, 0, 200)));
        assert!(!n.contains(Ipv4Addr::new(10, 244, 1, 2)));
        assert_eq!(n.size(), 256);
        assert!("10.0.0.0".parse::<Ipv4Net>().is_err());
        assert!("10.0.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("x/8".parse::<Ipv4Net>().is_err());
    }
}
