//! Why a label value or a service was refused: one variant per rule, so callers and tests
//! match on the rule and the text an operator reads lives in one place.
//!
//! Values inside a reason (an item, a path, a URL) are stored as an error shows them: cut
//! to a few dozen characters by the constructor that builds the [`super::LabelError`].

use super::labels::keys::{
    COOKIE_NAME_MAX, DEFAULT_BACKEND, HOSTS_MAX, MODES, NETWORK, REDIRECTS, SECRET_NAME_MAX,
    SSL_CERT, SSL_KEY, SSL_PASSTHROUGH, WEIGHT_MAX,
};
use super::names::NameError;

/// Why one value (or one item of a list) is refused, or why a service cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    // Characters (every label).
    #[error("character {ch:?} is not allowed: only plain ASCII is accepted")]
    NonAscii { ch: char },
    /// Whitespace, a control character, `;`, `#`, a quote or `\`; `in_host`: a space in a
    /// host name, which gets a hint.
    #[error(
        "character {ch:?} is not allowed: whitespace, control characters, ';', '#', quotes \
         and '\\' could smuggle HAProxy syntax{}",
        if *in_host { "; a host name cannot contain spaces" } else { "" }
    )]
    Syntax { ch: char, in_host: bool },

    // Lists: the item a reason is about.
    #[error("host {host:?} is left out: {why}")]
    HostLeftOut { host: String, why: Box<Reason> },
    #[error("path {path:?}: {why}")]
    InPath { path: String, why: Box<Reason> },
    #[error("{item:?}: {why}")]
    InItem { item: String, why: Box<Reason> },

    // Hosts.
    #[error(
        "it has a port: routing matches the Host header with its port stripped, write the \
         host alone"
    )]
    HostWithPort,
    /// A name that fails its syntax check (a host, a service's backend name).
    #[error("{0}")]
    Name(NameError),
    #[error(
        "{count} hosts: at most {HOSTS_MAX} per service (split them over services, or use \
         {DEFAULT_BACKEND})"
    )]
    TooManyHosts { count: usize },
    /// An empty value; `expected` says what to write instead.
    #[error("empty: {expected}")]
    Empty { expected: &'static str },

    // Numbers and words.
    #[error("not a port number: decimal digits only, no sign, 1..=65535")]
    PortNotDecimal,
    #[error("leading zero: write the port in plain decimal, 1..=65535")]
    PortLeadingZero,
    #[error("port 0 cannot be connected to: use 1..=65535")]
    PortZero,
    #[error("out of range: a port is 1..=65535")]
    PortOutOfRange,
    #[error("unknown mode: accepted values are {MODES}")]
    UnknownMode,
    #[error("not a count: a whole number 0..=1000 (0: off)")]
    NotACount,
    #[error("not a duration: a whole number with ms, s (default) or m, from 1ms to 60m")]
    NotADuration,
    #[error("not a weight: a whole number 0..={WEIGHT_MAX}")]
    NotAWeight,
    #[error("accepted values are 301, 302, 307 and 308")]
    NotARedirectCode,
    #[error("accepted values are true and false")]
    NotABool,
    #[error("not a cookie name: 1 to {COOKIE_NAME_MAX} letters, digits, '-', '_' or '.'")]
    NotACookieName,

    // Access lists (`ip_allow`, `ip_deny`).
    #[error(
        "{0}: write IPv4/IPv6 addresses or CIDRs (10.0.0.0/8, 2001:db8::/32), comma-separated"
    )]
    NotAnAddressBlock(crate::model::access::CidrError),
    #[error("{count} address blocks: at most {max} per label", max = super::labels::keys::ACCESS_BLOCKS_MAX)]
    TooManyBlocks { count: usize },
    #[error("not a rate: <n>/s or <n>/m, n a whole number 1..={max}", max = super::labels::keys::RATE_MAX)]
    NotARate,
    #[error("not a burst: a whole number 0..={max}", max = super::labels::keys::RATE_MAX)]
    NotABurst,
    #[error("a burst needs a rate: set com.docker.lb.rate_limit too")]
    BurstWithoutRate,
    #[error(
        "not a realm: 1 to {max} printable ASCII characters, without '\"' or '\\\\'",
        max = super::labels::keys::REALM_MAX
    )]
    NotARealm,
    #[error("a realm needs a user list: set com.docker.lb.auth_basic too")]
    RealmWithoutAuth,
    /// The secret `auth_basic` names is not an htpasswd file HAProxy can check (the error
    /// names lines and users, never a hash).
    #[error("not an htpasswd file HAProxy can check: {0}")]
    NotAnHtpasswdFile(crate::model::htpasswd::HtpasswdError),
    #[error(
        "not applied with ssl_passthrough: TLS goes to the tasks untouched, so no HTTP rule \
         sees the requests (refused rather than left unenforced)"
    )]
    NotWithPassthrough,
    /// `auth_forward`: why the value is not a URL swarm-lb asks.
    #[error("not a forward-auth URL: {why}")]
    NotAForwardAuthUrl { why: &'static str },
    #[error(
        "not a list of header names: comma-separated names of letters, digits and '-' (at \
         most 64 characters each), at most {max}, none of Host, Content-Length, \
         Transfer-Encoding, Connection, Keep-Alive, TE, Trailer, Upgrade, Proxy-Connection, \
         Cookie, Set-Cookie, X-Forwarded-For, X-Forwarded-Proto, Forwarded",
        max = super::labels::keys::FORWARD_HEADERS_MAX
    )]
    NotAHeaderList,
    #[error("names headers of an answer nobody asks for: set com.docker.lb.auth_forward too")]
    HeadersWithoutForwardAuth,
    #[error(
        "com.docker.lb.auth_basic and com.docker.lb.auth_forward on one service: choose one \
         (both would read the Authorization header)"
    )]
    BasicAndForwardAuth,
    #[error(
        "not applied: the template (--template) loads no Lua (no {{{{lua}}}} line and no plain \
         `global` line), so HAProxy has no forward-auth action (see haproxy/base.cfg)"
    )]
    TemplateWithoutLua,

    // Shaping (`hsts`, `response_header.*`, `request_header.*`).
    #[error(
        "not an HSTS policy: max-age=<seconds>[; includeSubDomains][; preload], seconds \
         0..={max}",
        max = crate::model::shaping::HSTS_MAX_AGE_MAX
    )]
    NotAnHsts,
    #[error(
        "header name {name:?} is not an HTTP token: 1 to {max} letters, digits or \
         !#$%&'*+-.^_`|~ (RFC 9110, 5.1)",
        max = crate::model::shaping::HEADER_NAME_MAX
    )]
    HeaderNotAToken { name: String },
    #[error("header {name:?} is not one a label may set: {why}")]
    HeaderForbidden { name: String, why: &'static str },
    #[error(
        "{count} headers of other names, {bytes} bytes of names and values in this direction: \
         at most {max_count} and {max_bytes} bytes (see docs/shaping.md)",
        max_count = crate::model::shaping::CUSTOM_HEADERS_MAX,
        max_bytes = crate::model::shaping::CUSTOM_BYTES_MAX
    )]
    HeaderListTooLong { count: usize, bytes: usize },
    #[error("header {name:?} is set by {instead}")]
    HeaderElsewhere { name: String, instead: &'static str },
    #[error(
        "character {ch:?} is not allowed in a header value: printable ASCII, spaces and tabs \
         only (CR, LF and NUL would split or end the header)"
    )]
    HeaderValueChar { ch: char },
    #[error("{len} bytes: a header value is at most {max} bytes", max = crate::model::shaping::HEADER_VALUE_MAX)]
    HeaderValueTooLong { len: usize },
    #[error("labels {first} and {second} name the same header (header names ignore case)")]
    HeaderTwice { first: String, second: String },

    #[error("not a timeout: a whole number with ms, s (default), m or h, from 1ms to {max}")]
    NotATimeout { max: &'static str },

    #[error(
        "not a health check path: '/' followed by at most {max} printable ASCII characters, \
         no space",
        max = crate::model::shaping::HEALTH_PATH_MAX
    )]
    NotAHealthPath,
    #[error("not a host name for a health check: letters, digits, '-', '.', an optional :port")]
    NotAHealthHost,
    #[error("needs {needs}")]
    Needs { needs: &'static str },
    #[error("not an interval: a whole number with ms, s (default), m or h, from 100ms to 1h")]
    NotAnInterval,

    // Paths.
    #[error("path {path:?} does not start with '/'")]
    PathNotAbsolute { path: String },
    #[error(
        "not a context root ({0}): a path starting with '/', up to {max} segments of \
         letters, digits, '-', '_', '.', '~', no '..'",
        max = super::MAX_ROOT_SEGMENTS
    )]
    NotAContextRoot(NameError),

    // Redirects.
    #[error("{pair:?} is not a `source,target` pair")]
    NotAPair { pair: String },
    #[error("source {url:?}: {why}")]
    BadSource { url: String, why: UrlError },
    #[error("target {url:?}: {why}")]
    BadTarget { url: String, why: UrlError },
    #[error(
        "source {url:?}: only http://host[/path] sources can be written (a source is \
         matched by host and path, without a port)"
    )]
    SourceNotPlainHttp { url: String },

    // Networks (on the network label when it names one, else on the service).
    #[error("no network has this name or id")]
    NoSuchNetwork,
    #[error("its last good routing used network {network}, which no longer exists")]
    LastGoodNetworkGone { network: String },
    #[error(
        "the service is not on network {network}: add it with `docker service update \
         --network-add {network} {service}`"
    )]
    NotOnNetwork { network: String, service: String },
    #[error(
        "is on no network, so HAProxy cannot reach it: attach it to an attachable overlay \
         network (and set {NETWORK} if it has several)"
    )]
    OnNoNetwork,
    #[error("its network {id} is not known to Docker (removed?)")]
    UnknownNetwork { id: String },
    /// On several networks and none is the default: `names` in the service's order;
    /// `default` the configured default network, if any.
    #[error(
        "is on several networks ({}) and {}: set {NETWORK} to the one HAProxy should join",
        names.join(", "),
        match default {
            Some(d) => format!("the default network {d} is not one of them"),
            None => "no default network is set".to_owned(),
        }
    )]
    SeveralNetworks {
        names: Vec<String>,
        default: Option<String>,
    },
    #[error(
        "network {network} is Swarm's ingress network, which HAProxy must not join: route \
         over an attachable overlay network"
    )]
    IngressNetwork { network: String },
    #[error("HAProxy cannot join network {network}: create it with --attachable")]
    NotAttachable { network: String },

    // TLS.
    #[error(
        "not a Docker secret name (a letter or digit, then letters, digits, '_', '.', '-'; at \
         most {SECRET_NAME_MAX} characters)"
    )]
    NotASecretName,
    /// `ssl_cert` without `ssl_key` or the reverse (a service-level reason).
    #[error("label {present} needs {absent} too: HTTPS is not terminated for it")]
    HalfCertPair {
        present: &'static str,
        absent: &'static str,
    },
    #[error("does not combine with {REDIRECTS} (Interlock's rule): passthrough is left out")]
    PassthroughWithRedirects,
    #[error("{SSL_PASSTHROUGH}=true: the tasks terminate TLS, so the certificate is not used")]
    PassthroughWithCertificate,
    #[error("accepted values are none and required")]
    NotAVerifyMode,
    // ACME (`ssl_acme`, labels/acme.rs).
    #[error(
        "{SSL_CERT}/{SSL_KEY} already give this service's certificate: ssl_acme would be a \
         second source for the same hosts; remove one"
    )]
    AcmeWithCertificate,
    #[error(
        "{SSL_PASSTHROUGH}=true: the tasks terminate TLS, so a certificate swarm-lb obtains \
         would never be served"
    )]
    AcmeWithPassthrough,
    #[error("no ACME CA is configured: start swarm-lb with --acme (and --acme-directory)")]
    AcmeOff,
    /// A host ACME cannot certify over HTTP-01 (`why` says which rule).
    #[error("no certificate is ordered for it: {why}")]
    AcmeHost { why: &'static str },
    #[error("none of the service's hosts can be certified by ACME; no certificate is ordered")]
    AcmeNoHost,
    /// The last order for the service's hosts failed (`error`: the CA's problem, type and
    /// detail, or why it could not be placed); it is retried with backoff, and the
    /// certificate served now (if any) stays.
    #[error("the ACME order failed (retried with backoff): {error}")]
    AcmeOrderFailed { error: String },
    /// The pair the secrets hold is refused (key, dates, names).
    #[error("{0}")]
    Certificate(super::cert::CertProblem),
    /// The secret's content cannot be read where swarm-lb reads secrets (it does not exist,
    /// or is not shared with swarm-lb).
    #[error("the secret cannot be read ({why}): does it exist, and is it given to swarm-lb?")]
    SecretUnreadable { why: String },
    /// HAProxy (or the payload limit) refused the pair.
    #[error("not loaded: {why}")]
    PushRefused { why: String },
    /// Docker lists no secret of that name (`GET /secrets`): nothing is copied for it.
    #[error("Docker lists no secret of that name (create it with `docker secret create`)")]
    SecretUnknown,
    /// The copy job that brings secrets into swarm-lb's secrets volume failed (retried with
    /// backoff).
    #[error("the secret could not be copied for swarm-lb (retried): {why}")]
    SecretDelivery { why: String },

    // Services.
    #[error("its name cannot be a HAProxy backend name: {0}")]
    BackendName(NameError),
    #[error("backend {backend} is already taken by another service")]
    BackendTaken { backend: String },
}

/// Why a URL in `com.docker.lb.redirects` is not one swarm-lb can redirect from or to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a URL: write scheme://host[/path]")]
    NotAUrl,
    #[error("scheme {scheme:?}: only http and https")]
    Scheme { scheme: String },
    #[error("port {port:?} is not 1..=65535")]
    Port { port: String },
    #[error("host {host:?}: {why}")]
    Host { host: String, why: NameError },
    #[error("path {path:?}: {why}")]
    Path { path: String, why: NameError },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_space_in_a_host_gets_the_host_hint_and_elsewhere_does_not() {
        let host = Reason::Syntax {
            ch: ' ',
            in_host: true,
        }
        .to_string();
        let other = Reason::Syntax {
            ch: ' ',
            in_host: false,
        }
        .to_string();
        assert!(
            host.ends_with("; a host name cannot contain spaces"),
            "{host}"
        );
        assert!(!other.contains("host name"), "{other}");
    }

    #[test]
    fn a_nested_reason_names_its_item_then_the_rule() {
        let r = Reason::HostLeftOut {
            host: "a b".to_owned(),
            why: Box::new(Reason::HostWithPort),
        };
        assert_eq!(
            r.to_string(),
            "host \"a b\" is left out: it has a port: routing matches the Host header with \
             its port stripped, write the host alone"
        );
    }

    #[test]
    fn several_networks_names_them_and_says_why_the_default_does_not_apply() {
        let unset = Reason::SeveralNetworks {
            names: vec!["front".into(), "back".into()],
            default: None,
        }
        .to_string();
        assert!(
            unset.contains("(front, back) and no default network is set"),
            "{unset}"
        );
        let other = Reason::SeveralNetworks {
            names: vec!["front".into()],
            default: Some("edge".into()),
        }
        .to_string();
        assert!(
            other.contains("the default network edge is not one of them"),
            "{other}"
        );
    }
}
