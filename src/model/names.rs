//! Names that end up inside HAProxy config or Runtime API commands. Each newtype can only be
//! built through a check, so a value that would smuggle syntax (spaces, `;`, `#`, newlines,
//! quotes, backslashes) never reaches the encoder or the renderer.

use std::fmt;
use std::sync::{Arc, OnceLock};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty")]
    Empty,
    #[error("longer than {max} characters")]
    TooLong { max: usize },
    #[error("character {ch:?} is not allowed (allowed: {allowed})")]
    BadChar { ch: char, allowed: &'static str },
    #[error("must start with a letter or digit")]
    BadStart,
    #[error("host label {label:?} is empty, too long or starts/ends with '-'")]
    BadHostLabel { label: String },
    #[error("path segment {segment:?} is empty, '.' or '..'")]
    BadSegment { segment: String },
    #[error("more than {max} path segments")]
    TooDeep { max: usize },
    #[error("map value {value:?} is not one swarm-lb writes")]
    BadMapValue { value: String },
}

fn check(
    s: &str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.chars().count() > max {
        return Err(NameError::TooLong { max });
    }
    if let Some(ch) = s.chars().find(|c| !ok(*c)) {
        return Err(NameError::BadChar { ch, allowed });
    }
    Ok(())
}

/// A HAProxy backend name. Swarm service names (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 63) are
/// valid HAProxy identifiers; names the driver keeps for itself start with `_`, which a Swarm
/// service name cannot. Shared: a clone copies a pointer (every map of the desired routing,
/// the plan cache and HAProxy's state is keyed by backend; at 10,000 services a read of
/// HAProxy made 420,000 of them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendName(std::sync::Arc<str>);

const IDENT_CHARS: &str = "letters, digits, '-', '_', '.'";
fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

impl BackendName {
    /// A backend named after a Swarm service.
    pub fn for_service(name: &str) -> Result<Self, NameError> {
        check(name, 63, IDENT_CHARS, ident_char)?;
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(NameError::BadStart);
        }
        Ok(Self(name.into()))
    }
    /// A backend of the driver's own (`_` prefix, cannot clash with a service).
    pub fn internal(suffix: &str) -> Result<Self, NameError> {
        let name = format!("_{suffix}");
        check(&name, 64, IDENT_CHARS, ident_char)?;
        Ok(Self(name.into()))
    }
    /// Any identifier HAProxy reported (parsers use this; it still refuses syntax characters).
    pub fn parse(name: &str) -> Result<Self, NameError> {
        check(name, 127, IDENT_CHARS, |c| ident_char(c) || c == ':')?;
        Ok(Self(name.into()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_internal(&self) -> bool {
        self.0.starts_with('_')
    }

    /// The service this backend routes to: the name without its generation suffix (`web` for
    /// `web` and `web:3`).
    pub fn service(&self) -> &str {
        Self::service_of(&self.0)
    }

    /// [`BackendName::service`] of a backend name given as text.
    pub fn service_of(name: &str) -> &str {
        match name.rsplit_once(GENERATION_SEP) {
            Some((service, n)) if parse_generation(n).is_some() => service,
            _ => name,
        }
    }

    /// Which backend of its service this is: 1 for the name of the service itself, `n` for
    /// `<service>:<n>` (n >= 2).
    pub fn generation(&self) -> u32 {
        self.0
            .rsplit_once(GENERATION_SEP)
            .and_then(|(_, n)| parse_generation(n))
            .unwrap_or(1)
    }

    /// The backend that replaces this one when its options or mode change on HAProxy 3.4+
    /// (created beside it, the hosts map switched to it in one step, this one retired):
    /// `<service>:<generation + 1>`. `:` is a HAProxy identifier character that a Swarm
    /// service name cannot hold, so the name cannot clash with a service's.
    pub fn next_generation(&self) -> BackendName {
        BackendName(
            format!(
                "{}{GENERATION_SEP}{}",
                self.service(),
                self.generation().saturating_add(1)
            )
            .into(),
        )
    }
}

const GENERATION_SEP: char = ':';

/// `n` of a `<service>:<n>` generation suffix: digits without a leading zero, at least 2.
fn parse_generation(n: &str) -> Option<u32> {
    if n.starts_with('0') {
        return None;
    }
    n.parse::<u32>().ok().filter(|n| *n >= 2)
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A server name inside a backend: slots `s1..sN`, or `vip`. Interned: the names of the
/// first [`ServerName::INTERNED`] slots and `vip` are shared values (every backend's `s1` is
/// the same allocation), so 420,000 slots at 10,000 services hold no string of their own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerName(Arc<str>);

/// The slot number of a slot name (`s7` -> 7): exactly the form [`ServerName::slot`] writes,
/// digits only (no sign), no leading zero.
fn slot_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix('s')?;
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The interned names: `vip`, then `s1..s{INTERNED}`.
fn interned() -> &'static [Arc<str>] {
    static NAMES: OnceLock<Vec<Arc<str>>> = OnceLock::new();
    NAMES.get_or_init(|| {
        std::iter::once(Arc::from(ServerName::VIP))
            .chain((1..=ServerName::INTERNED).map(|n| Arc::from(format!("s{n}"))))
            .collect()
    })
}

impl ServerName {
    pub const VIP: &'static str = "vip";
    /// How many slot names are interned (24 blocks of 42).
    pub const INTERNED: usize = 1008;
    pub fn slot(n: usize) -> Self {
        match interned().get(n) {
            Some(name) if n >= 1 => Self(Arc::clone(name)),
            _ => Self(Arc::from(format!("s{n}"))),
        }
    }
    pub fn vip() -> Self {
        Self(Arc::clone(&interned()[0]))
    }
    pub fn parse(name: &str) -> Result<Self, NameError> {
        check(name, 127, IDENT_CHARS, |c| ident_char(c) || c == ':')?;
        // A name HAProxy reports (`show servers state`) shares the interned value too.
        Ok(match slot_index(name) {
            Some(n) if n <= Self::INTERNED => Self::slot(n),
            _ if name == Self::VIP => Self::vip(),
            _ => Self(Arc::from(name)),
        })
    }
    /// The slot number when this is a slot name (`s7` -> 7).
    pub fn slot_index(&self) -> Option<usize> {
        slot_index(&self.0)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host name as matched against the lower-cased `Host` header (port stripped): RFC 1123
/// labels of `[a-z0-9-]`, dot separated, at most 253 characters. Upper case is folded, and one
/// trailing dot (an absolute name, RFC 1034 section 3.1: `a.example.` is `a.example`) is
/// dropped; the frontend drops it from the `Host` header the same way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Host(String);

/// The hosts map key of the service that takes every request whose host no service claims
/// (`com.docker.lb.default_backend=true`). Not a host name (a label cannot start with `-`),
/// so it never collides with one; the frontend looks it up when the host is not found.
pub const CATCH_ALL: &str = "-default-";

impl Host {
    /// The [`CATCH_ALL`] key.
    pub fn catch_all() -> Self {
        Self(CATCH_ALL.to_owned())
    }
    pub fn is_catch_all(&self) -> bool {
        self.0 == CATCH_ALL
    }

    /// Errors: empty, longer than 253, a character outside `[A-Za-z0-9.-]`, or a label that
    /// is empty (`a..b`, `.`, `a..` with two trailing dots), longer than 63 or starts or
    /// ends with `-`.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let absolute = raw.strip_suffix('.').filter(|rest| !rest.is_empty());
        let host = absolute.unwrap_or(raw).to_ascii_lowercase();
        check(&host, 253, "letters, digits, '-', '.'", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.')
        })?;
        for label in host.split('.') {
            if label.is_empty()
                || label.len() > 63
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return Err(NameError::BadHostLabel {
                    label: label.to_owned(),
                });
            }
        }
        Ok(Self(host))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A host a service may claim (`com.docker.lb.hosts`): a host name ([`Host::parse`]), or a
    /// wildcard `*.<parent>` that matches any host of exactly one more label than `<parent>`
    /// (`a.example.com` for `*.example.com`, never `example.com` nor `a.b.example.com`), as a
    /// certificate's wildcard name does (RFC 6125, 6.4.3), so that a wildcard certificate
    /// covers what a wildcard host routes. `<parent>` must have two labels or more (no
    /// `*.com`). Errors: those of [`Host::parse`] on the parent, [`NameError::BadHostLabel`]
    /// for a one-label parent, and a `*` anywhere else.
    pub fn parse_claim(raw: &str) -> Result<Self, NameError> {
        let Some(parent) = raw.strip_prefix(WILDCARD) else {
            return Self::parse(raw);
        };
        let parent = Self::parse(parent)?;
        if !parent.0.contains('.') {
            return Err(NameError::BadHostLabel {
                label: format!("{WILDCARD}{parent}"),
            });
        }
        Ok(Self(format!("{WILDCARD}{parent}")))
    }

    /// Whether this is a `*.<parent>` wildcard ([`Host::parse_claim`]).
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with(WILDCARD)
    }
}

/// How a wildcard host starts.
pub const WILDCARD: &str = "*.";

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Most path segments a context root (or a redirect's source path) may have: the frontend has
/// one `set-path` rule per depth it can strip (haproxy/base.cfg).
pub const MAX_ROOT_SEGMENTS: usize = 8;

/// A path prefix routed on segment boundaries (`com.docker.lb.context_root`): `/app`,
/// `/api/v1`. Stored without a trailing slash, each segment 1..=64 of `[A-Za-z0-9._~-]`
/// (no `.` or `..` segment), at most [`MAX_ROOT_SEGMENTS`] segments. Paths are case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContextRoot(String);

impl ContextRoot {
    /// Errors: not starting with `/`, empty or `.`/`..` segments, other characters, too deep.
    /// One trailing slash is accepted (`/app/` is `/app`).
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let Some(rest) = raw.strip_prefix('/') else {
            return Err(NameError::BadStart);
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(NameError::Empty);
        }
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.len() > MAX_ROOT_SEGMENTS {
            return Err(NameError::TooDeep {
                max: MAX_ROOT_SEGMENTS,
            });
        }
        for seg in &segments {
            check(seg, 64, "letters, digits, '-', '_', '.', '~'", |c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')
            })
            .map_err(|e| match e {
                NameError::Empty => NameError::BadSegment {
                    segment: String::new(),
                },
                other => other,
            })?;
            if *seg == "." || *seg == ".." {
                return Err(NameError::BadSegment {
                    segment: (*seg).to_owned(),
                });
            }
        }
        Ok(Self(format!("/{rest}")))
    }
    /// `/app`: no trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// How many path segments it has (`/api/v1` -> 2): what `context_root_rewrite` strips.
    pub fn segments(&self) -> usize {
        self.0.matches('/').count()
    }
}

impl fmt::Display for ContextRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key of the hosts map. The frontend looks up `<host><path>/` with `map_beg` (longest
/// prefix wins, measured on 2.6.12 whatever the insertion order), so:
/// - `<host>/` routes a whole host, `<host>/app/` the context root `/app` of it (the trailing
///   `/` keeps `/apple` out of `/app`);
/// - `-default-` ([`CATCH_ALL`]) is looked up when nothing matched;
/// - `~<key>=<n>` is bucket `n` (0..[`BUCKETS`]) of a route several services share, looked up
///   by exact match when the route's value is [`MapValue::split`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapKey(String);

/// How many buckets a shared route's traffic is cut into (each request draws one): the
/// resolution of a canary split is 1 %.
pub const BUCKETS: usize = 100;

/// Characters a map key or value may hold: no whitespace or HAProxy syntax, no `|`.
fn map_char(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, ';' | '#' | '"' | '\'' | '`' | '\\' | '|')
}

impl MapKey {
    /// `<host>/`, or `-default-` for [`Host::catch_all`].
    pub fn host(host: &Host) -> Self {
        if host.is_catch_all() {
            return Self::catch_all();
        }
        Self(format!("{host}/"))
    }
    /// `!<host>/`: the host is `com.docker.lb.ssl_only` (the frontend redirects plain HTTP
    /// for it to HTTPS when this key is present; its value is [`MapValue::https_only`]).
    pub fn https_only(host: &Host) -> Self {
        Self(format!("!{host}/"))
    }
    /// `^<host>/`: TLS with this SNI is passed through to the value's backend
    /// (`com.docker.lb.ssl_passthrough`), looked up by the HTTPS entry before termination.
    pub fn passthrough(host: &Host) -> Self {
        Self(format!("^{host}/"))
    }
    /// `<host><root>/`.
    pub fn context_root(host: &Host, root: &ContextRoot) -> Self {
        Self(format!("{host}{root}/"))
    }
    pub fn catch_all() -> Self {
        Self(CATCH_ALL.to_owned())
    }
    /// Bucket `n` of the shared route `route`.
    pub fn bucket(route: &MapKey, n: usize) -> Self {
        Self(format!("~{route}={n}"))
    }
    /// An access key (`@<family>:<hex>`, `&<service>[<block>]`) built by
    /// [`super::access::map_entries`] from checked parts.
    pub(crate) fn access(key: &str) -> Self {
        Self(key.to_owned())
    }
    /// A key read back from HAProxy; refuses syntax characters.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        check(
            raw,
            512,
            "printable ASCII without ; # quotes \\ |",
            map_char,
        )?;
        Ok(Self(raw.to_owned()))
    }
    pub fn is_bucket(&self) -> bool {
        self.0.starts_with('~')
    }
    pub fn is_catch_all(&self) -> bool {
        self.0 == CATCH_ALL
    }
    /// The host part of a route key (`a.example` of `a.example/app/`).
    pub fn host_part(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value of the hosts map: what the frontend does with a request (haproxy/base.cfg reads
/// its `|`-separated fields):
/// - `<backend>` or `<backend>|<n>`: route to the backend, after stripping `n` leading path
///   segments (`context_root_rewrite`);
/// - `~<key>`: the route is shared; draw a bucket and look up `~<key>=<bucket>`;
/// - `><code>|<n>|<url>`: redirect (`code` 301, 302, 307 or 308) to `<url>` followed by the
///   path with `n` leading segments stripped, and the query.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapValue(String);

/// Redirect status codes a redirect may use.
pub const REDIRECT_CODES: [u16; 4] = [301, 302, 307, 308];

/// The value of every [`MapKey::https_only`] entry.
const HTTPS_ONLY: &str = "!https";

impl MapValue {
    pub fn backend(backend: &BackendName, strip: usize) -> Self {
        match strip {
            0 => Self(backend.to_string()),
            n => Self(format!("{backend}|{n}")),
        }
    }
    /// The value of a [`MapKey::https_only`] entry.
    pub fn https_only() -> Self {
        Self(HTTPS_ONLY.to_owned())
    }
    pub fn split(route: &MapKey) -> Self {
        Self(format!("~{route}"))
    }
    /// `url` must already be checked (no syntax characters, no `|`).
    pub fn redirect(code: u16, strip: usize, url: &str) -> Self {
        Self(format!(">{code}|{strip}|{url}"))
    }
    /// An access value (see [`super::access::map_entries`]).
    pub(crate) fn access(value: &str) -> Self {
        Self(value.to_owned())
    }
    /// A value of the ACME challenge map (a key authorization, or the ACME-host marker),
    /// built by [`crate::haproxy::acme`] from checked parts.
    pub(crate) fn acme(value: &str) -> Self {
        Self(value.to_owned())
    }
    /// A value read back from HAProxy, checked to be one of the three forms or an access
    /// value ([`super::access::is_access_value`]).
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let bad = || NameError::BadMapValue {
            value: raw.chars().take(64).collect(),
        };
        if super::access::is_access_value(raw) || super::shaping::is_shaping_value(raw) {
            return Ok(Self(raw.to_owned()));
        }
        if let Some(route) = raw.strip_prefix('~') {
            MapKey::parse(route).map_err(|_| bad())?;
            return Ok(Self(raw.to_owned()));
        }
        if raw == HTTPS_ONLY {
            return Ok(Self(raw.to_owned()));
        }
        let mut fields = raw.split('|');
        let head = fields.next().unwrap_or_default();
        let strip_ok = |f: Option<&str>| {
            f.is_some_and(|n| n.parse::<usize>().is_ok_and(|n| n <= MAX_ROOT_SEGMENTS))
        };
        if let Some(code) = head.strip_prefix('>') {
            let code_ok = code
                .parse::<u16>()
                .is_ok_and(|c| REDIRECT_CODES.contains(&c));
            let (strip, url) = (fields.next(), fields.next());
            let url_ok = url.is_some_and(|u| !u.is_empty() && u.chars().all(map_char));
            if code_ok && strip_ok(strip) && url_ok && fields.next().is_none() {
                return Ok(Self(raw.to_owned()));
            }
            return Err(bad());
        }
        BackendName::parse(head).map_err(|_| bad())?;
        match fields.next() {
            None => Ok(Self(raw.to_owned())),
            strip if strip_ok(strip) && fields.next().is_none() => Ok(Self(raw.to_owned())),
            _ => Err(bad()),
        }
    }
    /// This value sent to `backend` instead (its strip count kept); other forms unchanged.
    pub fn with_backend(&self, backend: &BackendName) -> MapValue {
        if self.target_backend().is_none() {
            return self.clone();
        }
        match self.0.split_once('|') {
            Some((_, rest)) => Self(format!("{backend}|{rest}")),
            None => Self(backend.to_string()),
        }
    }
    /// The backend a request is sent to, for a backend value.
    pub fn target_backend(&self) -> Option<BackendName> {
        if self.0.starts_with(['~', '>', '!', '=', '@']) {
            return None;
        }
        BackendName::parse(self.0.split('|').next()?).ok()
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MapValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_host_has_one_star_label_left_of_a_parent_of_two_labels_or_more() {
        let ok = |raw: &str| Host::parse_claim(raw).map(|h| h.to_string());
        assert_eq!(ok("*.Example.COM."), Ok("*.example.com".to_owned()));
        assert_eq!(ok("a.example.com"), Ok("a.example.com".to_owned()));
        assert!(Host::parse_claim("*.example.com").unwrap().is_wildcard());
        for bad in [
            "*.com",
            "*",
            "*.",
            "a.*.example.com",
            "**.example.com",
            "*a.example.com",
            "*.*.example.com",
        ] {
            assert!(Host::parse_claim(bad).is_err(), "{bad}");
        }
        assert!(
            Host::parse("*.example.com").is_err(),
            "only a claim may be a wildcard"
        );
    }

    #[test]
    fn service_names_with_syntax_characters_are_refused() {
        for bad in ["a b", "a;b", "a#b", "a\nb", "", "-a", "a\"b", "a\\b", "a/b"] {
            assert!(BackendName::for_service(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            BackendName::for_service("web_1.v2-x").unwrap().as_str(),
            "web_1.v2-x"
        );
    }

    #[test]
    fn backend_generations_name_their_service_and_count_up() {
        let web = BackendName::for_service("web").unwrap();
        assert_eq!((web.service(), web.generation()), ("web", 1));
        let second = web.next_generation();
        assert_eq!(second.as_str(), "web:2");
        assert_eq!((second.service(), second.generation()), ("web", 2));
        assert_eq!(second.next_generation().as_str(), "web:3");
        assert!(
            BackendName::for_service("web:2").is_err(),
            "no service holds ':'"
        );
        // Not generation suffixes: the name is the service.
        for odd in ["web:1", "web:02", "web:x", "a:b:"] {
            let b = BackendName::parse(odd).unwrap();
            assert_eq!((b.service(), b.generation()), (odd, 1), "{odd}");
        }
        let v = MapValue::backend(&web, 2).with_backend(&second);
        assert_eq!(v.as_str(), "web:2|2");
        assert_eq!(MapValue::parse("web:2|2").unwrap(), v);
        let redirect = MapValue::redirect(301, 0, "http://x.example/");
        assert_eq!(redirect.with_backend(&second), redirect);
    }

    #[test]
    fn internal_backends_cannot_clash_with_services() {
        let b = BackendName::internal("default").unwrap();
        assert!(b.is_internal());
        assert!(BackendName::for_service(b.as_str()).is_err());
    }

    #[test]
    fn slot_names_round_trip_their_index() {
        assert_eq!(ServerName::slot(12).slot_index(), Some(12));
        assert_eq!(ServerName::vip().slot_index(), None);
        assert_eq!(ServerName::parse("s01").unwrap().slot_index(), None);
    }

    #[test]
    fn slot_and_vip_names_are_shared_values_whether_made_or_parsed_from_haproxy() {
        let shared = |a: &ServerName, b: &ServerName| Arc::ptr_eq(&a.0, &b.0);
        assert!(shared(&ServerName::slot(12), &ServerName::slot(12)));
        assert!(shared(
            &ServerName::slot(12),
            &ServerName::parse("s12").unwrap()
        ));
        assert!(shared(
            &ServerName::vip(),
            &ServerName::parse("vip").unwrap()
        ));
        let last = ServerName::INTERNED;
        assert!(shared(&ServerName::slot(last), &ServerName::slot(last)));
        // Past the interned ones, and names that are not slots: values of their own, equal
        // by content all the same.
        let past = ServerName::slot(last + 1);
        assert!(!shared(&past, &ServerName::slot(last + 1)));
        assert_eq!(past, ServerName::parse(&format!("s{}", last + 1)).unwrap());
        assert_eq!(ServerName::slot(0).as_str(), "s0");
        assert_eq!(ServerName::parse("s0").unwrap().as_str(), "s0");
        assert_eq!(ServerName::parse("s01").unwrap().as_str(), "s01");
    }

    #[test]
    fn hosts_are_folded_and_checked_label_by_label() {
        assert_eq!(
            Host::parse("App.Example.COM").unwrap().as_str(),
            "app.example.com"
        );
        for bad in [
            "a..b", "-a.b", "a-.b", "a b", "a;b", "a#b", "a\nb", "a:80", "*.a", "",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_absolute_host_name_with_one_trailing_dot_is_the_same_host() {
        assert_eq!(
            Host::parse("A.Example.test.").unwrap().as_str(),
            "a.example.test"
        );
        assert_eq!(Host::parse("localhost.").unwrap().as_str(), "localhost");
        for bad in [".", "..", "a.example.test..", ".a.example"] {
            assert!(Host::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}

#[cfg(test)]
mod map_tests {
    use super::*;

    #[test]
    fn context_roots_are_checked_segment_by_segment() {
        assert_eq!(ContextRoot::parse("/app").unwrap().as_str(), "/app");
        assert_eq!(ContextRoot::parse("/app/").unwrap().as_str(), "/app");
        assert_eq!(ContextRoot::parse("/api/v1").unwrap().segments(), 2);
        for bad in [
            "",
            "/",
            "app",
            "/a//b",
            "/..",
            "/a/../b",
            "/./a",
            "/a b",
            "/a;b",
            "/a#b",
            "/a%20",
            "/a?b",
            "/a=b",
            "/a|b",
            "/1/2/3/4/5/6/7/8/9",
            "//",
        ] {
            assert!(ContextRoot::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn map_keys_name_hosts_context_roots_and_buckets() {
        let host = Host::parse("a.example").unwrap();
        let root = ContextRoot::parse("/api/v1").unwrap();
        assert_eq!(MapKey::host(&host).as_str(), "a.example/");
        assert_eq!(MapKey::host(&Host::catch_all()).as_str(), "-default-");
        let route = MapKey::context_root(&host, &root);
        assert_eq!(route.as_str(), "a.example/api/v1/");
        assert_eq!(route.host_part(), "a.example");
        let bucket = MapKey::bucket(&route, 7);
        assert_eq!(bucket.as_str(), "~a.example/api/v1/=7");
        assert!(bucket.is_bucket() && !route.is_bucket());
        assert_eq!(MapKey::parse(bucket.as_str()).unwrap(), bucket);
        assert!(MapKey::parse("a b").is_err() && MapKey::parse("a|b").is_err());
    }

    #[test]
    fn map_values_round_trip_and_name_their_backend() {
        let web = BackendName::for_service("web").unwrap();
        let route = MapKey::parse("a.example/").unwrap();
        for (value, text, backend) in [
            (MapValue::backend(&web, 0), "web", Some(web.clone())),
            (MapValue::backend(&web, 2), "web|2", Some(web.clone())),
            (MapValue::split(&route), "~a.example/", None),
            (
                MapValue::redirect(302, 1, "http://new.example/b"),
                ">302|1|http://new.example/b",
                None,
            ),
        ] {
            assert_eq!(value.as_str(), text);
            assert_eq!(MapValue::parse(text).unwrap(), value);
            assert_eq!(value.target_backend(), backend, "{text}");
        }
        for bad in [
            "",
            "web|",
            "web|x",
            "web|1|2",
            "web|99",
            ">303|0|http://x",
            ">302|0|",
            ">302|0",
            "~",
            "a b",
            ">302|0|http://x y",
        ] {
            assert!(MapValue::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
