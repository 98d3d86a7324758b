//! Who may reach a route (issue 23): the address block type [`Cidr`] that `--trusted-proxies`
//! and the `com.docker.lb.ip_allow` / `ip_deny` labels are written in. Pure: no I/O.
//!
//! HAProxy reads the same forms (`src` ACL patterns and `map_ip` keys: "IPv4 addresses with an
//! optional netmask ... IPv6 addresses with an optional prefix length", configuration.txt,
//! "7.1.6. Matching IPv4 and IPv6 addresses"); [`Cidr`]'s `Display` is that form, with the
//! host bits cleared, so two spellings of one block are one key.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 address block: an address and a prefix length (`10.0.0.0/8`,
/// `2001:db8::/32`); a bare address is the block of that address alone (`/32`, `/128`).
/// Host bits are cleared on parse (`10.1.2.3/8` is `10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a text is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{text:?} is not an IPv4 or IPv6 address")]
    Address { text: String },
    #[error("{text:?}: prefix length must be a number from 0 to {max}")]
    Prefix { text: String, max: u8 },
    #[error("empty address")]
    Empty,
}

impl Cidr {
    /// The block of `addr` with `prefix` leading bits; `None` when `prefix` is longer than
    /// the address (32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let bits = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (prefix <= bits).then(|| Cidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// The first address of the block.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the block. An IPv4 block does not hold IPv6 addresses (not even
    /// IPv4-mapped ones) and the other way round.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.addr
            }
            _ => false,
        }
    }

    /// Whether every address of `other` is in this block.
    pub fn covers(&self, other: &Cidr) -> bool {
        self.prefix <= other.prefix && self.contains(other.addr)
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `<address>` or `<address>/<prefix>`, nothing else (no spaces, no dotted netmask: the
    /// one form every peer and HAProxy's maps agree on).
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        if text.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Address {
            text: text.to_owned(),
        })?;
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => max,
            // Digits only: `u8::from_str` takes a leading `+`.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or(CidrError::Prefix {
                    text: text.to_owned(),
                    max,
                })?,
            Some(_) => {
                return Err(CidrError::Prefix {
                    text: text.to_owned(),
                    max,
                })
            }
        };
        Ok(Cidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    /// `<address>/<prefix>`, the form HAProxy's `src` patterns and `map_ip` keys read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One `--trusted-proxies` item: a balancer in front of this one, and how it passes the
/// client's address on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrustedProxy {
    /// `<cidr>`: an HTTP balancer; its `X-Forwarded-For` / `X-Forwarded-Proto` are kept.
    Forwarding(Cidr),
    /// `proxy:<cidr>`: a TCP balancer that opens every connection with a PROXY protocol
    /// header (v1 or v2); the address the header gives is the client's. HAProxy cannot make
    /// the header optional per source (a header a plain TCP forwarder relayed from its own
    /// client would be believed: haproxy/haproxy#2450), so from such a source it is required.
    ProxyProtocol(Cidr),
}

/// The prefix of a [`TrustedProxy::ProxyProtocol`] item.
pub const PROXY_PROTOCOL_PREFIX: &str = "proxy:";

impl TrustedProxy {
    /// The address block.
    pub fn cidr(&self) -> Cidr {
        match self {
            TrustedProxy::Forwarding(c) | TrustedProxy::ProxyProtocol(c) => *c,
        }
    }
}

impl FromStr for TrustedProxy {
    type Err = CidrError;

    /// `<cidr>` or `proxy:<cidr>` (see [`Cidr`]'s forms).
    fn from_str(text: &str) -> Result<TrustedProxy, CidrError> {
        match text.strip_prefix(PROXY_PROTOCOL_PREFIX) {
            Some(rest) => rest.parse().map(TrustedProxy::ProxyProtocol),
            None => text.parse().map(TrustedProxy::Forwarding),
        }
    }
}

/// A comma list of blocks (`10.0.0.0/8, 2001:db8::1`): items trimmed of spaces, empty items
/// skipped, sorted, without duplicates. The first bad item is the error.
pub fn parse_cidr_list(text: &str) -> Result<Vec<Cidr>, CidrError> {
    let mut out = text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(Cidr::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_blocks_of_both_families_parse_with_host_bits_cleared() {
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(cidr("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("::/0").to_string(), "::/0");
    }

    #[test]
    fn nonsense_prefixes_and_addresses_are_refused_with_the_text() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0.0/255.0.0.0",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::Prefix { .. })),
                "{bad}"
            );
        }
        for bad in [
            "10.0.0.256",
            "example.com",
            "10.0.0",
            " 10.0.0.1",
            "1.2.3.4 ",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(matches!(err, CidrError::Address { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert_eq!("".parse::<Cidr>(), Err(CidrError::Empty));
    }

    #[test]
    fn containment_stays_within_one_family() {
        let net = cidr("10.0.0.0/8");
        assert!(net.contains("10.255.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(cidr("::/0").contains("2001:db8::5".parse().unwrap()));
        assert!(cidr("0.0.0.0/0").contains("127.0.0.1".parse().unwrap()));
        assert!(net.covers(&cidr("10.1.0.0/16")));
        assert!(!cidr("10.1.0.0/16").covers(&net));
    }

    #[test]
    fn a_trusted_proxy_is_a_block_or_a_proxy_protocol_block() {
        assert_eq!(
            "10.0.0.0/8".parse::<TrustedProxy>(),
            Ok(TrustedProxy::Forwarding(cidr("10.0.0.0/8")))
        );
        assert_eq!(
            "proxy:192.0.2.1".parse::<TrustedProxy>(),
            Ok(TrustedProxy::ProxyProtocol(cidr("192.0.2.1/32")))
        );
        assert!("proxy:".parse::<TrustedProxy>().is_err());
        assert!("tcp:10.0.0.0/8".parse::<TrustedProxy>().is_err());
    }

    #[test]
    fn a_list_is_trimmed_sorted_and_deduplicated_and_fails_on_its_first_bad_item() {
        assert_eq!(
            parse_cidr_list(" 10.0.0.1/8 ,, 10.0.0.0/8, ::1").unwrap(),
            vec![cidr("10.0.0.0/8"), cidr("::1")]
        );
        assert_eq!(parse_cidr_list("").unwrap(), vec![]);
        assert!(matches!(
            parse_cidr_list("10.0.0.0/8, nope"),
            Err(CidrError::Address { .. })
        ));
    }
}
