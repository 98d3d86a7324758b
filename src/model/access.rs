//! Who may reach a route (issue 23): the address block type [`Cidr`] that `--trusted-proxies`
//! and the `com.docker.lb.ip_allow` / `ip_deny` labels are written in, a service's
//! [`AccessPolicy`] (address lists, rate limit, basic auth), and the hosts map entries that
//! carry every policy ([`map_entries`]). Pure: no I/O.
//!
//! Basic auth (`auth_basic`, `auth_realm`) is one entry, `*<service>` = `=a:<secret>:<realm>`
//! (realm percent-encoded): the template's rules check the request against the `userlist`
//! named after the secret (`crate::haproxy::auth`) and answer 401 with the realm. The user
//! lists themselves live in the config (HAProxy has no runtime command for them), so which
//! secret's list is in force is decided by the reconcile pass (`reconcile/auth.rs`), which
//! may write this entry with another secret than the label names (the last good one).
//!
//! Why map entries: an edit must reach HAProxy without a reload on every version, and the
//! only per-service state fixed template rules can consult at runtime is a map. A map can
//! hold one value per key, and one client address falls in the blocks of many services, so
//! the lookup takes two steps (haproxy/base.cfg, frontend `http`, step 6):
//! 1. the client address as hex (`src,hex`: 8 digits for IPv4, 32 for IPv6) prefixed by its
//!    family finds, with `map_beg`, the longest block key `@4:<hex digits>` /
//!    `@6:<hex digits>` it starts with (each block written as whole hex digits: a `/10` is
//!    four `/12` keys); the value is the key itself, the block's id;
//! 2. `&<service><block id>` (exact match) says `=allow` or `=deny` for every client whose
//!    longest block is that one, and `&<service>` says whether the service has an allow list
//!    (`=closed`: anyone not allowed is refused) or only a deny list (`=open`).
//!
//! Step 2 is right because every block of every service is a key: the blocks of a service
//! that hold a client's address are exactly those that cover the client's longest key.
//!
//! HAProxy reads the same forms (`src` ACL patterns and `map_ip` keys: "IPv4 addresses with an
//! optional netmask ... IPv6 addresses with an optional prefix length", configuration.txt,
//! "7.1.6. Matching IPv4 and IPv6 addresses"); [`Cidr`]'s `Display` is that form, with the
//! host bits cleared, so two spellings of one block are one key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::{MapKey, MapValue};

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

/// What `ip_allow` / `ip_deny` / `rate_limit` say for one service. The default lets everyone
/// in, as often as they like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// `ip_allow`: only clients in these blocks are let in (`None`: no allow list).
    pub allow: Option<Vec<Cidr>>,
    /// `ip_deny`: clients in these blocks are refused, even when `allow` holds them.
    pub deny: Vec<Cidr>,
    /// `rate_limit` (+ `rate_limit_burst`): requests per client address.
    pub rate: Option<RateLimit>,
    /// `auth_basic` (+ `auth_realm`): only the users of an htpasswd file get through.
    pub auth: Option<AuthBasic>,
    /// `auth_forward` (+ `auth_forward_response_headers`): an auth service decides.
    pub forward: Option<ForwardAuth>,
}

/// `auth_forward=<url>` with `auth_forward_response_headers=<Name,...>`: every request is
/// first asked of `url` (GET, by `haproxy/lua/forward_auth.lua`); a 2xx answer lets it through
/// with the named headers of the answer copied onto it (the client's own copies of them are
/// always removed first), any other answer goes back to the client, and no answer is a 503.
/// Both checked by the label parser (`model/labels/access.rs`): `url` is `http://` with a
/// host name or address literal, `response_headers` are header names (`[A-Za-z0-9-]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ForwardAuth {
    pub url: String,
    pub response_headers: Vec<String>,
}

/// The prefix of a forward-auth entry's value.
const FORWARD: &str = "=f:";

/// The key of `service`'s forward-auth entry: `+<service>`.
pub fn forward_key(service: &str) -> MapKey {
    MapKey::access(&format!("+{service}"))
}

/// The hosts map value of forward auth: `=f:<url percent-encoded>:<Name,Name,...>` (the Lua
/// action decodes the URL; the names are plain header names).
pub fn forward_value(forward: &ForwardAuth) -> MapValue {
    MapValue::access(&format!(
        "{FORWARD}{}:{}",
        crate::model::shaping::encode(&forward.url),
        forward.response_headers.join(",")
    ))
}

fn forward_map_value(value: &str) -> bool {
    let Some((url, names)) = value.strip_prefix(FORWARD).and_then(|r| r.split_once(':')) else {
        return false;
    };
    let url_ok = !url.is_empty()
        && url.len() <= 3 * crate::model::labels::FORWARD_URL_MAX
        && url
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'.' | b'_' | b'~' | b'-'));
    let names_ok = names.len() <= 64 * crate::model::labels::FORWARD_HEADERS_MAX
        && names
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b',' | b'-'));
    url_ok && names_ok
}

/// `auth_basic=<secret>` with `auth_realm=<realm>`: the Docker secret holding the htpasswd
/// file, and the realm the 401 names. Both checked by the label parser: the secret is a
/// Docker secret name (no `:`), the realm printable ASCII without `"` or `\`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuthBasic {
    pub secret: String,
    pub realm: String,
}

/// The prefix of an auth entry's value.
const AUTH: &str = "=a:";

/// The hosts map value of basic auth checked against `secret`'s user list with `realm`:
/// `=a:<secret>:<realm percent-encoded>` (the rules decode it with `url_dec`).
pub fn auth_value(secret: &str, realm: &str) -> MapValue {
    MapValue::access(&format!(
        "{AUTH}{secret}:{}",
        crate::model::shaping::encode(realm)
    ))
}

/// The key of `service`'s auth entry.
pub fn auth_key(service: &str) -> MapKey {
    MapKey::access(&format!("*{service}"))
}

fn auth_map_value(value: &str) -> bool {
    let Some((secret, realm)) = value.strip_prefix(AUTH).and_then(|r| r.split_once(':')) else {
        return false;
    };
    let secret_ok = !secret.is_empty()
        && secret.len() <= 64
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    let realm_ok = !realm.is_empty()
        && realm.len() <= 3 * crate::model::labels::REALM_MAX
        && realm
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'.' | b'_' | b'~' | b'-'));
    secret_ok && realm_ok
}

/// The period of a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Per {
    Second,
    Minute,
}

impl Per {
    /// Its length in seconds (the `Retry-After` of a refusal).
    pub fn seconds(self) -> u32 {
        match self {
            Per::Second => 1,
            Per::Minute => 60,
        }
    }
}

/// `rate_limit=<requests>/s|m` with `rate_limit_burst=<burst>`: each client address may make
/// `requests` per period on average, measured over [`AVERAGE_PERIODS`] periods, and at most
/// `requests + burst` within any one period. Refused requests are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RateLimit {
    /// Requests per period, 1 or more.
    pub requests: u32,
    pub per: Per,
    /// Requests beyond `requests` allowed within one period (0: none).
    pub burst: u32,
}

/// How many periods the average of a [`RateLimit`] is measured over (HAProxy's second
/// counter, `gpc1_rate`, in haproxy/base.cfg's rate tables).
pub const AVERAGE_PERIODS: u64 = 10;

impl RateLimit {
    /// The hosts map value: `=s:<one period cap>:<ten period cap>` (`=m:` per minute).
    fn map_value(&self) -> String {
        let unit = match self.per {
            Per::Second => 's',
            Per::Minute => 'm',
        };
        let short = u64::from(self.requests) + u64::from(self.burst);
        let long = u64::from(self.requests) * AVERAGE_PERIODS;
        format!("={unit}:{short}:{long}")
    }
}

impl AccessPolicy {
    /// Whether `client` is let in: not in a deny block, and in an allow block if there is an
    /// allow list.
    pub fn admits(&self, client: IpAddr) -> bool {
        let allowed = match &self.allow {
            None => true,
            Some(allow) => allow.iter().any(|b| b.contains(client)),
        };
        allowed && !self.deny.iter().any(|b| b.contains(client))
    }

    /// Whether the address lists let everyone in (no list to apply; a rate limit or basic
    /// auth may still apply).
    pub fn is_open(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }
}

/// Verdicts of step 2 (see the module doc), and the two kinds of service.
const ALLOW: &str = "=allow";
const DENY: &str = "=deny";
const CLOSED: &str = "=closed";
const OPEN: &str = "=open";

/// Whether `value` is one of the values [`map_entries`] writes.
pub fn is_access_value(value: &str) -> bool {
    matches!(value, ALLOW | DENY | CLOSED | OPEN)
        || block_id(value)
        || rate_value(value)
        || auth_map_value(value)
        || forward_map_value(value)
}

fn rate_value(value: &str) -> bool {
    let Some(rest) = value
        .strip_prefix("=s:")
        .or_else(|| value.strip_prefix("=m:"))
    else {
        return false;
    };
    let number = |n: &str| !n.is_empty() && n.len() <= 12 && n.bytes().all(|b| b.is_ascii_digit());
    matches!(rest.split_once(':'), Some((a, b)) if number(a) && number(b))
}

fn block_id(value: &str) -> bool {
    let hex = |rest: &str, max: usize| {
        rest.len() <= max && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
    };
    match (value.strip_prefix("@4:"), value.strip_prefix("@6:")) {
        (Some(rest), _) => hex(rest, 8),
        (_, Some(rest)) => hex(rest, 32),
        _ => false,
    }
}

/// The block keys of `block`: `@4:`/`@6:` and its prefix in upper-case hex digits, as
/// `src,hex` writes addresses; a prefix that is not a whole number of digits is written as
/// every digit its last bits allow (a `/10` is four keys of three digits).
pub fn block_keys(block: &Cidr) -> Vec<String> {
    let (family, digits) = match block.addr {
        IpAddr::V4(a) => ("@4:", format!("{:08X}", u32::from(a))),
        IpAddr::V6(a) => ("@6:", format!("{:032X}", u128::from(a))),
    };
    let whole = usize::from(block.prefix / 4);
    let rest = u32::from(block.prefix % 4);
    let head = format!("{family}{}", &digits[..whole]);
    if rest == 0 {
        return vec![head];
    }
    // The next digit's top `rest` bits are fixed (host bits are clear); the others run free.
    let fixed = digits[whole..=whole]
        .chars()
        .next()
        .and_then(|c| c.to_digit(16))
        .unwrap_or(0);
    (0..1u32 << (4 - rest))
        .map(|free| format!("{head}{:X}", fixed | free))
        .collect()
}

/// The hosts map entries that carry `policies` (service name, its policy; see the module
/// doc): one `@<family>:<hex>` key per block key in use, then per service with address lists
/// its `&<service>` entry and its `&<service><block id>` verdicts, per service with a rate
/// limit its `%<service>` entry (`=s:<cap>:<ten period cap>`, `=m:` per minute), and per
/// service with basic auth its `*<service>` entry ([`auth_value`] of the secret the label
/// names), per service with forward auth its `+<service>` entry ([`forward_value`]). Services with an open policy get nothing. Deterministic: the same policies give the same entries.
pub fn map_entries<'a>(
    policies: impl IntoIterator<Item = (&'a str, &'a AccessPolicy)>,
) -> BTreeMap<MapKey, MapValue> {
    struct Keys<'p> {
        service: &'p str,
        closed: bool,
        allow: BTreeSet<String>,
        deny: BTreeSet<String>,
    }
    let policies: Vec<(&str, &AccessPolicy)> = policies.into_iter().collect();
    let mut out = BTreeMap::new();
    // `%<service>`: the rate limit, read by the rate rules (haproxy/base.cfg, step 7).
    for (service, policy) in &policies {
        if let Some(rate) = &policy.rate {
            out.insert(
                MapKey::access(&format!("%{service}")),
                MapValue::access(&rate.map_value()),
            );
        }
        // `*<service>`: basic auth, read by the auth rules (step 7b).
        if let Some(auth) = &policy.auth {
            out.insert(auth_key(service), auth_value(&auth.secret, &auth.realm));
        }
        // `+<service>`: forward auth, read by the same step's Lua action.
        if let Some(forward) = &policy.forward {
            out.insert(forward_key(service), forward_value(forward));
        }
    }
    let keys_of =
        |blocks: &[Cidr]| -> BTreeSet<String> { blocks.iter().flat_map(block_keys).collect() };
    let services: Vec<Keys> = policies
        .iter()
        .filter(|(_, p)| !p.is_open())
        .map(|(service, p)| Keys {
            service,
            closed: p.allow.is_some(),
            allow: keys_of(p.allow.as_deref().unwrap_or_default()),
            deny: keys_of(&p.deny),
        })
        .collect();
    let all: BTreeSet<String> = services
        .iter()
        .flat_map(|s| s.allow.iter().chain(&s.deny).cloned())
        .collect();
    for key in &all {
        out.insert(MapKey::access(key), MapValue::access(key));
    }
    for s in &services {
        let kind = if s.closed { CLOSED } else { OPEN };
        out.insert(
            MapKey::access(&format!("&{}", s.service)),
            MapValue::access(kind),
        );
        // Every key under one of the service's blocks (keys sort after their prefixes).
        let mut verdicts: BTreeMap<&String, &str> = BTreeMap::new();
        for (blocks, verdict) in [(&s.allow, ALLOW), (&s.deny, DENY)] {
            for block in blocks {
                let under = all.range(block.clone()..);
                for key in under.take_while(|k| k.starts_with(block.as_str())) {
                    // Deny wins: it is written second.
                    verdicts.insert(key, verdict);
                }
            }
        }
        for (key, verdict) in verdicts {
            out.insert(
                MapKey::access(&format!("&{}{key}", s.service)),
                MapValue::access(verdict),
            );
        }
    }
    out
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

    fn policy(allow: Option<&str>, deny: &str) -> AccessPolicy {
        AccessPolicy {
            allow: allow.map(|a| parse_cidr_list(a).unwrap()),
            deny: parse_cidr_list(deny).unwrap(),
            rate: None,
            auth: None,
            forward: None,
        }
    }

    #[test]
    fn blocks_are_written_as_whole_hex_digits_like_src_hex() {
        assert_eq!(block_keys(&cidr("127.0.0.0/8")), ["@4:7F"]);
        assert_eq!(block_keys(&cidr("127.0.0.3")), ["@4:7F000003"]);
        assert_eq!(block_keys(&cidr("0.0.0.0/0")), ["@4:"]);
        assert_eq!(
            block_keys(&cidr("10.64.0.0/10")),
            ["@4:0A4", "@4:0A5", "@4:0A6", "@4:0A7"]
        );
        assert_eq!(block_keys(&cidr("2001:db8::/32")), ["@6:20010DB8"]);
        assert_eq!(block_keys(&cidr("::1")), [format!("@6:{:032X}", 1)]);
        assert_eq!(block_keys(&cidr("128.0.0.0/1")).len(), 8);
    }

    /// What the template does with the entries, in Rust: the longest block key the client's
    /// hex starts with, then the service's verdict for it.
    fn lookup(map: &BTreeMap<MapKey, MapValue>, service: &str, client: IpAddr) -> bool {
        let get = |k: &str| map.get(&MapKey::parse(k).unwrap()).map(MapValue::as_str);
        let Some(kind) = get(&format!("&{service}")) else {
            return true;
        };
        let hex = match client {
            IpAddr::V4(a) => format!("@4:{:08X}", u32::from(a)),
            IpAddr::V6(a) => format!("@6:{:032X}", u128::from(a)),
        };
        let block = map
            .keys()
            .map(MapKey::as_str)
            .filter(|k| k.starts_with('@') && hex.starts_with(k))
            .max_by_key(|k| k.len());
        let verdict = block.and_then(|b| get(&format!("&{service}{b}")));
        match verdict {
            Some(v) => v == ALLOW,
            None => kind == OPEN,
        }
    }

    #[test]
    fn the_two_step_lookup_agrees_with_the_policies_for_nested_and_shared_blocks() {
        let web = policy(
            Some("10.0.0.0/8, 192.0.2.0/24, 2001:db8::/32"),
            "10.1.0.0/16, 10.1.2.3",
        );
        let api = policy(Some("10.1.0.0/16"), "");
        let blog = policy(None, "10.64.0.0/10, 192.0.2.128/25");
        let open = AccessPolicy::default();
        let all = [
            ("web", &web),
            ("api", &api),
            ("blog", &blog),
            ("open", &open),
        ];
        let map = map_entries(all);
        assert!(!map.keys().any(|k| k.as_str().starts_with("&open")));
        for client in [
            "10.0.0.1",
            "10.1.0.1",
            "10.1.2.3",
            "10.1.2.4",
            "10.64.0.1",
            "10.127.255.255",
            "10.128.0.1",
            "192.0.2.1",
            "192.0.2.200",
            "198.51.100.1",
            "2001:db8::1",
            "2001:db9::1",
            "::1",
        ] {
            let ip: IpAddr = client.parse().unwrap();
            for (service, p) in all {
                assert_eq!(
                    lookup(&map, service, ip),
                    p.admits(ip),
                    "{service} {client}"
                );
            }
        }
        // Deterministic.
        assert_eq!(map, map_entries(all));
    }

    #[test]
    fn a_rate_limit_is_one_entry_with_its_one_period_cap_and_its_ten_period_cap() {
        let api = AccessPolicy {
            rate: Some(RateLimit {
                requests: 20,
                per: Per::Minute,
                burst: 5,
            }),
            ..AccessPolicy::default()
        };
        let map = map_entries([("api", &api)]);
        assert_eq!(
            map.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>(),
            ["%api =m:25:200"]
        );
    }

    #[test]
    fn basic_auth_is_one_entry_naming_the_secret_with_the_realm_percent_encoded() {
        let api = AccessPolicy {
            auth: Some(AuthBasic {
                secret: "api-users.v2".into(),
                realm: "Staff only: \"x\"".replace('"', "'"),
            }),
            ..AccessPolicy::default()
        };
        let map = map_entries([("api", &api)]);
        assert_eq!(
            map.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>(),
            ["*api =a:api-users.v2:Staff%20only%3A%20%27x%27"]
        );
        for value in map.values() {
            assert!(MapValue::parse(value.as_str()).is_ok(), "{value}");
        }
        assert!(!is_access_value("=a:users"));
        assert!(!is_access_value("=a::realm"));
        assert!(!is_access_value("=a:us ers:realm"));
    }

    #[test]
    fn forward_auth_is_one_entry_with_the_url_percent_encoded_and_the_header_names() {
        let web = AccessPolicy {
            forward: Some(ForwardAuth {
                url: "http://authelia:9091/api/verify?rd=https://login.example/".into(),
                response_headers: vec!["Remote-User".into(), "Remote-Groups".into()],
            }),
            ..AccessPolicy::default()
        };
        let map = map_entries([("web", &web)]);
        assert_eq!(
            map.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>(),
            ["+web =f:http%3A%2F%2Fauthelia%3A9091%2Fapi%2Fverify%3Frd%3Dhttps%3A%2F%2Flogin.example%2F:Remote-User,Remote-Groups"]
        );
        for value in map.values() {
            assert!(MapValue::parse(value.as_str()).is_ok(), "{value}");
        }
        assert!(is_access_value("=f:http%3A%2F%2Fa:"));
        assert!(!is_access_value("=f::X"));
        assert!(!is_access_value("=f:http://a:X"));
        assert!(!is_access_value("=f:a:X Y"));
    }

    #[test]
    fn every_value_written_is_one_the_map_reader_accepts() {
        let mut web = policy(Some("10.0.0.0/8, ::/0"), "10.1.0.0/13");
        web.rate = Some(RateLimit {
            requests: 1_000_000,
            per: Per::Second,
            burst: 1_000_000,
        });
        for (_, value) in map_entries([("web", &web)]) {
            assert!(is_access_value(value.as_str()), "{value}");
        }
        assert!(!is_access_value("@4:7g"));
        assert!(!is_access_value("web"));
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
