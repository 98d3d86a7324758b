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
//! Entries of one service `web` (keys never clash with a host: a host cannot hold `$`):
//! - `$web` = `=shaped`: the service has a per-request rule, so the per-header lookups run
//!   (one lookup a request for every other service, and for one with only a health check);
//! - `$h:web` = `=h:<encoded>`: the `Strict-Transport-Security` value, sent on HTTPS only;
//! - `$r:<name>:web` / `$q:<name>:web` = `=h:<encoded>`: set response / request header
//!   `<name>`; `=h:` with nothing after removes it;
//! - `$ts:web` / `$tt:web` = `=t:<milliseconds>`: the server / tunnel timeout;
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
    /// `timeout_server`: how long HAProxy waits for the task's response (and between two
    /// reads of it), in milliseconds, 1..=[`TIMEOUT_SERVER_MAX_MS`].
    pub timeout_server: Option<u64>,
    /// `timeout_tunnel`: how long an upgraded connection (websocket) may stay idle, in
    /// milliseconds, 1..=[`TIMEOUT_TUNNEL_MAX_MS`].
    pub timeout_tunnel: Option<u64>,
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

impl Shaping {
    /// Whether nothing is shaped.
    pub fn is_empty(&self) -> bool {
        self.hsts.is_none()
            && self.headers.is_empty()
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
