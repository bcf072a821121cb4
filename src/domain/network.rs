//! Ports, protocols and source address prefixes, as NSG rules and JIT policies name them.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A TCP/UDP port number, 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub struct Port(u16);

impl Port {
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<i64> for Port {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        match u16::try_from(n) {
            Ok(p) if p >= 1 => Ok(Port(p)),
            _ => Err(format!("port {n} is out of range: expected 1 to 65535")),
        }
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The protocol an NSG rule admits: `TCP`, `UDP` or `*` (both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Protocol {
    Tcp,
    Udp,
    Any,
}

impl FromStr for Protocol {
    type Err = String;
    /// Case-insensitive, since ARM itself accepts `Tcp` and `TCP` alike.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "*" => Ok(Protocol::Any),
            _ => Err(format!(
                "unknown protocol {s:?}: expected \"TCP\", \"UDP\" or \"*\""
            )),
        }
    }
}

impl TryFrom<String> for Protocol {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Protocol> for String {
    fn from(p: Protocol) -> String {
        p.to_string()
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Any => "*",
        })
    }
}

/// One IPv4 or IPv6 address or CIDR block. A bare address is a block of one
/// (`/32` or `/128`) and prints without the suffix, as the Azure portal shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourcePrefix(IpNet);

impl SourcePrefix {
    pub fn net(&self) -> IpNet {
        self.0
    }

    /// Whether every address of `other` lies inside this block.
    pub fn contains(&self, other: &SourcePrefix) -> bool {
        self.0.contains(&other.0)
    }

    pub fn from_addr(addr: IpAddr) -> Self {
        SourcePrefix(IpNet::from(addr))
    }
}

impl FromStr for SourcePrefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(addr) = s.parse::<IpAddr>() {
            return Ok(SourcePrefix::from_addr(addr));
        }
        let net: IpNet = s.parse().map_err(|_| {
            format!("{s:?} is not an IPv4 or IPv6 address or CIDR block (such as 203.0.113.7 or 10.0.0.0/8)")
        })?;
        // A block with host bits set (10.0.0.1/8) is most often a typo; saying so beats
        // silently opening the whole /8.
        if net.trunc() != net {
            return Err(format!(
                "{s:?} has host bits set: did you mean {}?",
                net.trunc()
            ));
        }
        Ok(SourcePrefix(net))
    }
}

impl TryFrom<String> for SourcePrefix {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SourcePrefix> for String {
    fn from(p: SourcePrefix) -> String {
        p.to_string()
    }
}

impl fmt::Display for SourcePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            self.0.addr().fmt(f)
        } else {
            self.0.fmt(f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_outside_1_to_65535_are_refused() {
        assert!(Port::try_from(0).is_err());
        assert!(Port::try_from(65536).is_err());
        assert!(Port::try_from(-22).is_err());
        assert_eq!(Port::try_from(22).unwrap().get(), 22);
    }

    #[test]
    fn protocols_parse_in_any_case_and_print_as_azure_does() {
        assert_eq!("tcp".parse::<Protocol>().unwrap().to_string(), "TCP");
        assert_eq!("*".parse::<Protocol>().unwrap(), Protocol::Any);
        assert!("ICMP".parse::<Protocol>().is_err());
    }

    #[test]
    fn prefixes_accept_v4_v6_addresses_and_blocks() {
        assert_eq!(
            "203.0.113.7".parse::<SourcePrefix>().unwrap().to_string(),
            "203.0.113.7"
        );
        assert_eq!(
            "203.0.113.7/32"
                .parse::<SourcePrefix>()
                .unwrap()
                .to_string(),
            "203.0.113.7"
        );
        assert_eq!(
            "10.0.0.0/8".parse::<SourcePrefix>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "2001:db8::/32".parse::<SourcePrefix>().unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            "2001:db8::1".parse::<SourcePrefix>().unwrap().to_string(),
            "2001:db8::1"
        );
        for bad in [
            "",
            "*",
            "Internet",
            "10.0.0.0/33",
            "300.1.1.1",
            "10.0.0.1/8",
            "2001:db8::1/32",
        ] {
            assert!(
                bad.parse::<SourcePrefix>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn containment_is_by_whole_block() {
        let net: SourcePrefix = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(&"10.1.2.3".parse().unwrap()));
        assert!(net.contains(&"10.4.0.0/16".parse().unwrap()));
        assert!(!net.contains(&"0.0.0.0/0".parse().unwrap()));
        assert!(!net.contains(&"11.0.0.1".parse().unwrap()));
        assert!(!net.contains(&"::ffff:10.0.0.1".parse().unwrap()));
    }
}
