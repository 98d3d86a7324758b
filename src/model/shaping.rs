//! How a route's responses and requests are shaped (issue 24): `com.docker.lb.hsts` and
//! `com.docker.lb.response_header.<Name>` / `request_header.<Name>`, as hosts map entries read
//! by fixed template rules ([`crate::haproxy::shaping`]), so that an edit is a map edit with no
//! reload on every HAProxy version. Pure: no I/O.
//!
//! HAProxy takes a header *name* only as a literal in the config (`http-request set-header
//! <name> <fmt>`: the name is a string, the value a log-format; configuration.txt, "4.2
//! Actions keywords matrix", `set-header`), so the names a label may carry are the ones the
//! template has rules for: [`RESPONSE_HEADERS`] and [`REQUEST_HEADERS`]. The values are map
//! entries, percent-encoded ([`encode`]) because a map value cannot hold the spaces, quotes
//! and `;` header values do; the rules decode them with `url_dec` (configuration.txt,
//! "7.3.1. Converters": `%XX` decoded, `+` left alone without a `?` before it, and the
//! encoding writes neither).
//!
//! `com.docker.lb.timeout_server` / `timeout_tunnel` ride on the same entries: HAProxy's
//! `http-request set-timeout { server | tunnel } <expr>` (2.4+; configuration.txt, "4.4
//! Actions", `set-timeout`; `client` came later, and `connect` never) sets the stream's
//! timeout at runtime, in milliseconds, but only in a section with the backend capability, so
//! its two rules are written into every HTTP backend (or the named defaults they come from);
//! the values are looked up in the frontend.
//!
//! Any other header name (an RFC 9110 token, [`is_token`], not [`FORBIDDEN_HEADERS`]) cannot
//! have a rule of its own in the config without a reload, so those names go to a Lua action
//! (`haproxy/lua/headers.lua`, loaded by every config, [`crate::haproxy::lua`]): one map entry
//! per service and direction holds the whole list of names and values, which the action
//! reads from a transaction variable and applies with `txn.http:res_set_header` /
//! `req_set_header` (or `..._del_header` for an empty value). The offered names keep their
//! fixed rules: no Lua runs for a service that uses only those.
//!
//! `com.docker.lb.timeout_connect` rides on a `$tc:` entry too; only HAProxy 3.4+ reads it
//! (`set-timeout connect`, refused before 3.4), and before 3.4 it is the backend section's
//! `timeout connect` instead ([`crate::model::SectionOptions::timeout_connect_ms`]; the
//! planner keeps one of the two by the version, [`crate::haproxy::Feature::SetTimeoutConnect`]).
//!
//! Entries of one service `web` (keys never clash with a host: a host cannot hold `$`):
//! - `$web` = `=shaped`: the service has a per-request rule, so the per-header lookups run
//!   (one lookup a request for every other service, and for one with only a health check);
//! - `$h:web` = `=h:<encoded>`: the `Strict-Transport-Security` value, sent on HTTPS only;
//! - `$r:<name>:web` / `$q:<name>:web` = `=h:<encoded>`: set response / request header
//!   `<name>`; `=h:` with nothing after removes it;
//! - `$rl:web` / `$ql:web` = `=l:<name>:<value>[,<name>:<value>...]`, each part
//!   percent-encoded: the response / request headers of other names, for the Lua action
//!   (an empty value removes the header);
//! - `$ts:web` / `$tt:web` / `$tc:web` = `=t:<milliseconds>`: the server / tunnel / connect
//!   timeout;
//! - `$k:web` / `$kh:web` = `=h:<encoded>`: the path and `Host` of the active health check
//!   (`com.docker.lb.health_path` / `health_host`), read by the backend's `http-check send`
//!   rule ([`crate::haproxy::shaping::HEALTH_CHECK_RULES`]), so that editing them is a map
//!   edit; turning the check on or off and its interval are backend options
//!   ([`crate::model::HealthCheck`]).

use std::collections::BTreeMap;

use super::{MapKey, MapValue};

/// Response headers a `com.docker.lb.response_header.<Name>` label may set or remove
/// (lower case; names are matched without regard to case). The common security and cache
/// headers, and two that leak the task's software. `Strict-Transport-Security` is
/// `com.docker.lb.hsts`'s, which sends it on HTTPS only.
pub const RESPONSE_HEADERS: &[&str] = &[
    "access-control-allow-origin",
    "cache-control",
    "content-security-policy",
    "content-security-policy-report-only",
    "cross-origin-embedder-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
    "permissions-policy",
    "referrer-policy",
    "server",
    "x-content-type-options",
    "x-frame-options",
    "x-powered-by",
    "x-robots-tag",
    "x-xss-protection",
];

/// Request headers a `com.docker.lb.request_header.<Name>` label may set or remove on the way
/// to the task. Not those swarm-lb sets itself (`X-Forwarded-For`, `-Proto`, `Forwarded`),
/// nor the ones that frame or route the request (`Host`, `Content-Length`, ...).
pub const REQUEST_HEADERS: &[&str] = &[
    "accept-encoding",
    "authorization",
    "cookie",
    "user-agent",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-request-id",
    "x-script-name",
];

/// Header names no `response_header.<Name>` / `request_header.<Name>` label may carry, with
/// why (lower case): those that frame or route the message (a wrong one desynchronises
/// HAProxy and the task or the client, RFC 9112, 6 and 11.2), those swarm-lb sets itself, and
/// HSTS, which `com.docker.lb.hsts` sends on HTTPS only.
pub const FORBIDDEN_HEADERS: &[(&str, &str)] = &[
    ("host", "it routes the request"),
    ("content-length", "it frames the message"),
    ("transfer-encoding", "it frames the message"),
    ("connection", "it is hop-by-hop, HAProxy's own"),
    ("keep-alive", "it is hop-by-hop, HAProxy's own"),
    ("proxy-connection", "it is hop-by-hop, HAProxy's own"),
    ("te", "it is hop-by-hop, HAProxy's own"),
    ("trailer", "it frames the message"),
    ("upgrade", "it is hop-by-hop, HAProxy's own"),
    ("x-forwarded-for", "swarm-lb sets it (docs/access.md)"),
    ("x-forwarded-proto", "swarm-lb sets it (docs/access.md)"),
    (
        "forwarded",
        "swarm-lb removes it unless a trusted proxy sent it (docs/access.md)",
    ),
    (
        "strict-transport-security",
        "com.docker.lb.hsts sends it, on HTTPS only",
    ),
];

/// Longest header name a label may carry, in bytes.
pub const HEADER_NAME_MAX: usize = 128;
/// Most headers of names outside [`Direction::offered`] one service may set or remove in one
/// direction.
pub const CUSTOM_HEADERS_MAX: usize = 16;
/// Most bytes of names and values (before encoding) of those headers in one direction: the
/// one map entry that holds them, percent-encoded (at most three times as long), stays well
/// under the Runtime API's 15,360-byte command line (HAPROXY.md) with its key and map path.
pub const CUSTOM_BYTES_MAX: usize = 3072;

/// Whether `name` is an HTTP field name (RFC 9110, 5.1: a `token`, 1*tchar) of at most
/// [`HEADER_NAME_MAX`] bytes.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= HEADER_NAME_MAX
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Why `name` (lower case) may not be set by a label, if it may not.
pub fn forbidden(name: &str) -> Option<&'static str> {
    FORBIDDEN_HEADERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

/// Longest header value a label may give, in bytes (after trimming): an encoded value is at
/// most three times that, well under the Runtime API's 15 KB command line (HAPROXY.md).
pub const HEADER_VALUE_MAX: usize = 1024;

/// Largest HSTS `max-age`, in seconds: ten years (RFC 6797 sets no bound; browsers' preload
/// lists ask for one year or more).
pub const HSTS_MAX_AGE_MAX: u64 = 315_360_000;

/// Which way a header goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// On responses to the client (`response_header.*`).
    Response,
    /// On requests to the task (`request_header.*`).
    Request,
}

impl Direction {
    /// The names offered in this direction.
    pub fn offered(self) -> &'static [&'static str] {
        match self {
            Direction::Response => RESPONSE_HEADERS,
            Direction::Request => REQUEST_HEADERS,
        }
    }

    /// The key letter: `r` for responses, `q` for requests.
    fn letter(self) -> char {
        match self {
            Direction::Response => 'r',
            Direction::Request => 'q',
        }
    }
}

/// What a service's shaping labels say. The default changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shaping {
    /// `hsts`: the `Strict-Transport-Security` value, normalised
    /// (`max-age=<s>[; includeSubDomains][; preload]`).
    pub hsts: Option<String>,
    /// Header rules: (direction, lower-case name from [`Direction::offered`]) -> the value to
    /// set (`Some`, trimmed, printable ASCII, spaces and tabs allowed) or `None` to remove it.
    pub headers: BTreeMap<(Direction, &'static str), Option<String>>,
    /// Header rules of any other name (lower case, an [`is_token`] outside
    /// [`FORBIDDEN_HEADERS`]), applied by the Lua action: the same `Some` / `None`.
    pub custom: BTreeMap<(Direction, String), Option<String>>,
    /// `timeout_server`: how long HAProxy waits for the task's response (and between two
    /// reads of it), in milliseconds, 1..=[`TIMEOUT_SERVER_MAX_MS`].
    pub timeout_server: Option<u64>,
    /// `timeout_tunnel`: how long an upgraded connection (websocket) may stay idle, in
    /// milliseconds, 1..=[`TIMEOUT_TUNNEL_MAX_MS`].
    pub timeout_tunnel: Option<u64>,
    /// `timeout_connect`: how long HAProxy waits for a connection to the task to be accepted,
    /// in milliseconds, 1..=[`TIMEOUT_CONNECT_MAX_MS`] (a map entry read on HAProxy 3.4+;
    /// before, the same value is a backend section option).
    pub timeout_connect: Option<u64>,
    /// `health_path`: the path (and query) of the health check's GET, starting with `/`,
    /// printable ASCII without spaces, at most [`HEALTH_PATH_MAX`] bytes.
    pub health_path: Option<String>,
    /// `health_host`: the health check's `Host` header (a host name, maybe `:port`); without
    /// it the check sends no `Host` (HTTP/1.0, HAProxy's `option httpchk` default).
    pub health_host: Option<String>,
}

/// Longest `health_path`, in bytes.
pub const HEALTH_PATH_MAX: usize = 1024;

/// Largest `timeout_server`: one hour (a response slower than that is a job, not a request).
pub const TIMEOUT_SERVER_MAX_MS: u64 = 3_600_000;
/// Largest `timeout_tunnel`: one day (the template's default is one hour).
pub const TIMEOUT_TUNNEL_MAX_MS: u64 = 86_400_000;
/// Largest `timeout_connect`: one minute. A connection a task has not accepted in a minute is
/// a dead task, and the template's `retries 3` makes the client wait up to four times this
/// before its 503; longer would outlast the clients' own patience (and the template's 60 s
/// `timeout client`-scale answers everywhere else).
pub const TIMEOUT_CONNECT_MAX_MS: u64 = 60_000;

impl Shaping {
    /// Whether nothing is shaped.
    pub fn is_empty(&self) -> bool {
        self.hsts.is_none()
            && self.headers.is_empty()
            && self.custom.is_empty()
            && self.timeout_connect.is_none()
            && self.timeout_server.is_none()
            && self.timeout_tunnel.is_none()
            && self.health_path.is_none()
            && self.health_host.is_none()
    }
}

/// The value prefix of a header entry.
const HEADER_VALUE: &str = "=h:";
/// The value prefix of a timeout entry.
const TIMEOUT_VALUE: &str = "=t:";
/// The value prefix of a header list entry (`$rl:` / `$ql:`).
const LIST_VALUE: &str = "=l:";
/// The value of a service's `$<service>` entry.
const SHAPED: &str = "=shaped";

/// `value` percent-encoded: every byte outside `[A-Za-z0-9._~-]` as `%XX` (upper-case hex),
/// so the result is one map token and `url_dec` gives `value` back.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `value` is one of the values [`map_entries`] writes.
pub fn is_shaping_value(value: &str) -> bool {
    if value == SHAPED {
        return true;
    }
    if let Some(ms) = value.strip_prefix(TIMEOUT_VALUE) {
        return !ms.is_empty() && ms.len() <= 9 && ms.bytes().all(|b| b.is_ascii_digit());
    }
    if let Some(list) = value.strip_prefix(LIST_VALUE) {
        return !list.is_empty()
            && list.len() <= 3 * CUSTOM_BYTES_MAX + 2 * CUSTOM_HEADERS_MAX
            && list.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'.' | b'_' | b'~' | b'-' | b'%' | b':' | b',')
            });
    }
    let Some(rest) = value.strip_prefix(HEADER_VALUE) else {
        return false;
    };
    rest.len() <= 3 * HEADER_VALUE_MAX
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-' | b'%'))
}

/// The hosts map entries that carry `shapings` (service name, its shaping; see the module
/// doc). Services that shape nothing get nothing. Deterministic.
pub fn map_entries<'a>(
    shapings: impl IntoIterator<Item = (&'a str, &'a Shaping)>,
) -> BTreeMap<MapKey, MapValue> {
    let mut out = BTreeMap::new();
    let value =
        |v: Option<&str>| MapValue::access(&format!("{HEADER_VALUE}{}", encode(v.unwrap_or(""))));
    for (service, shaping) in shapings {
        if shaping.is_empty() {
            continue;
        }
        // The flag turns on the per-request lookups (one per offered header, 27); the health
        // check's entries are read by the check alone, so a route with only a health check
        // does not pay for them.
        let per_request = Shaping {
            health_path: None,
            health_host: None,
            ..shaping.clone()
        };
        if !per_request.is_empty() {
            out.insert(
                MapKey::access(&format!("${service}")),
                MapValue::access(SHAPED),
            );
        }
        if let Some(hsts) = &shaping.hsts {
            out.insert(MapKey::access(&format!("$h:{service}")), value(Some(hsts)));
        }
        for (key, ms) in [
            ("ts", shaping.timeout_server),
            ("tt", shaping.timeout_tunnel),
            ("tc", shaping.timeout_connect),
        ] {
            if let Some(ms) = ms {
                out.insert(
                    MapKey::access(&format!("${key}:{service}")),
                    MapValue::access(&format!("{TIMEOUT_VALUE}{ms}")),
                );
            }
        }
        for (key, v) in [("k", &shaping.health_path), ("kh", &shaping.health_host)] {
            if let Some(v) = v {
                out.insert(MapKey::access(&format!("${key}:{service}")), value(Some(v)));
            }
        }
        for ((direction, name), v) in &shaping.headers {
            out.insert(
                MapKey::access(&format!("${}:{name}:{service}", direction.letter())),
                value(v.as_deref()),
            );
        }
        for direction in [Direction::Response, Direction::Request] {
            let list: Vec<String> = shaping
                .custom
                .iter()
                .filter(|((d, _), _)| *d == direction)
                .map(|((_, name), v)| {
                    format!("{}:{}", encode(name), encode(v.as_deref().unwrap_or("")))
                })
                .collect();
            if !list.is_empty() {
                out.insert(
                    MapKey::access(&format!("${}l:{service}", direction.letter())),
                    MapValue::access(&format!("{LIST_VALUE}{}", list.join(","))),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_unreserved_bytes_and_writes_every_other_as_percent_hex() {
        assert_eq!(
            encode("max-age=31536000; preload"),
            "max-age%3D31536000%3B%20preload"
        );
        assert_eq!(encode("default-src 'self'"), "default-src%20%27self%27");
        assert_eq!(encode("a+b?c%"), "a%2Bb%3Fc%25");
        assert_eq!(encode(""), "");
    }

    /// HAProxy's `url_dec` (without `in_form`), in Rust: what the template rules do.
    fn url_dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_printable_value_comes_back_through_url_dec() {
        let all: String = (0x20u8..0x7f).map(char::from).collect::<String>() + "\t";
        assert_eq!(url_dec(&encode(&all)), all);
        assert!(is_shaping_value(&format!("=h:{}", encode(&all))));
    }

    #[test]
    fn a_service_gets_its_flag_its_hsts_and_one_entry_per_header_and_removal_is_empty() {
        let mut shaping = Shaping {
            hsts: Some("max-age=60".to_owned()),
            ..Shaping::default()
        };
        shaping.headers.insert(
            (Direction::Response, "x-frame-options"),
            Some("DENY".to_owned()),
        );
        shaping
            .headers
            .insert((Direction::Request, "authorization"), None);
        shaping.health_path = Some("/healthz?full=1".to_owned());
        shaping.health_host = Some("check.example".to_owned());
        let map = map_entries([("web", &shaping), ("plain", &Shaping::default())]);
        let lines: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
        assert_eq!(
            lines,
            [
                "$h:web =h:max-age%3D60",
                "$k:web =h:%2Fhealthz%3Ffull%3D1",
                "$kh:web =h:check.example",
                "$q:authorization:web =h:",
                "$r:x-frame-options:web =h:DENY",
                "$web =shaped",
            ]
        );
        for (k, v) in &map {
            assert!(MapKey::parse(k.as_str()).is_ok(), "{k}");
            assert!(is_shaping_value(v.as_str()), "{v}");
        }
        // A health check alone: its entries, without the flag of the per-request rules.
        let checked = Shaping {
            health_path: Some("/healthz".to_owned()),
            ..Shaping::default()
        };
        let lines: Vec<String> = map_entries([("api", &checked)])
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        assert_eq!(lines, ["$k:api =h:%2Fhealthz"]);
    }

    #[test]
    fn other_names_are_one_list_entry_per_direction_and_the_connect_timeout_its_own() {
        let mut shaping = Shaping {
            timeout_connect: Some(300),
            ..Shaping::default()
        };
        shaping.custom.insert(
            (Direction::Response, "x-custom-thing".to_owned()),
            Some("a, b".to_owned()),
        );
        shaping
            .custom
            .insert((Direction::Response, "x-odd#".to_owned()), None);
        shaping.custom.insert(
            (Direction::Request, "x-tenant".to_owned()),
            Some("blue".to_owned()),
        );
        let map = map_entries([("web", &shaping)]);
        let lines: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
        assert_eq!(
            lines,
            [
                "$ql:web =l:x-tenant:blue",
                "$rl:web =l:x-custom-thing:a%2C%20b,x-odd%23:",
                "$tc:web =t:300",
                "$web =shaped",
            ]
        );
        for (k, v) in &map {
            assert!(MapKey::parse(k.as_str()).is_ok(), "{k}");
            assert!(is_shaping_value(v.as_str()), "{v}");
            assert!(MapValue::parse(v.as_str()).is_ok(), "{v}");
        }
        assert!(!is_shaping_value("=l:"));
        assert!(!is_shaping_value("=l:a b:c"));
    }

    #[test]
    fn a_token_is_tchar_only_and_the_forbidden_names_have_a_reason() {
        for ok in ["X-Custom-Thing", "x", "!#$%&'*+-.^_`|~09aZ"] {
            assert!(is_token(ok), "{ok}");
        }
        let long = "x".repeat(HEADER_NAME_MAX + 1);
        for bad in ["", "a b", "a:b", "a\r", "caf\u{e9}", "(x)", long.as_str()] {
            assert!(!is_token(bad), "{bad:?}");
        }
        for (name, _) in FORBIDDEN_HEADERS {
            assert!(is_token(name) && forbidden(name).is_some(), "{name}");
            assert!(!RESPONSE_HEADERS.contains(name) && !REQUEST_HEADERS.contains(name));
        }
        assert_eq!(forbidden("x-custom-thing"), None);
    }

    #[test]
    fn offered_names_are_lower_case_tokens_and_no_framing_or_forwarding_header() {
        for name in RESPONSE_HEADERS.iter().chain(REQUEST_HEADERS) {
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{name}"
            );
        }
        for forbidden in [
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "x-forwarded-for",
            "x-forwarded-proto",
            "forwarded",
            "strict-transport-security",
        ] {
            assert!(!RESPONSE_HEADERS.contains(&forbidden), "{forbidden}");
            assert!(!REQUEST_HEADERS.contains(&forbidden), "{forbidden}");
        }
    }
}
