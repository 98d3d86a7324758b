//! Every label swarm-lb reads: its key, and [`LABELS`], the one table of them (which family
//! file reads it, where it applies). The limits the error texts quote live here too.
//!
//! A leaf: it imports nothing of the crate, so [`crate::model::Reason`] and the certificate
//! checks can name labels without importing the parsers that produce their errors.

pub const PREFIX: &str = "com.docker.lb.";

// `service.rs`: which service, reached how.
pub const PORT: &str = "com.docker.lb.port";
pub const NETWORK: &str = "com.docker.lb.network";
pub const BACKEND_MODE: &str = "com.docker.lb.backend_mode";
/// Which proxy cluster serves the service; see `Settings::service_cluster`.
pub const SERVICE_CLUSTER: &str = "com.docker.lb.service_cluster";

// `hosts.rs`: the hosts routed to the service.
pub const HOSTS: &str = "com.docker.lb.hosts";
pub const DEFAULT_BACKEND: &str = "com.docker.lb.default_backend";

// `routing.rs`: paths, shares and redirects on those hosts.
pub const WEBSOCKET_ENDPOINTS: &str = "com.docker.lb.websocket_endpoints";
pub const CONTEXT_ROOT: &str = "com.docker.lb.context_root";
pub const CONTEXT_ROOT_REWRITE: &str = "com.docker.lb.context_root_rewrite";
/// Beyond Interlock: a service's share of a route it shares with others (canary).
pub const WEIGHT: &str = "com.docker.lb.weight";
pub const REDIRECTS: &str = "com.docker.lb.redirects";
/// Beyond Interlock: the status code of this service's redirects (Interlock answered 302).
pub const REDIRECT_CODE: &str = "com.docker.lb.redirect_code";

// `options.rs`: how the backend balances over the tasks.
pub const STICKY_SESSION_COOKIE: &str = "com.docker.lb.sticky_session_cookie";
pub const IP_HASH: &str = "com.docker.lb.ip_hash";
pub const MAX_FAILS: &str = "com.docker.lb.max_fails";
pub const FAIL_TIMEOUT: &str = "com.docker.lb.fail_timeout";

// `tls.rs`.
/// Name of the Docker secret holding the PEM certificate (chain) for the service's hosts.
pub const SSL_CERT: &str = "com.docker.lb.ssl_cert";
/// Name of the Docker secret holding the PEM private key of `ssl_cert`.
pub const SSL_KEY: &str = "com.docker.lb.ssl_key";
/// `true`: plain-HTTP requests for the service's hosts are redirected to HTTPS.
pub const SSL_ONLY: &str = "com.docker.lb.ssl_only";
/// `true`: TLS is not terminated; connections are routed by SNI to the tasks.
pub const SSL_PASSTHROUGH: &str = "com.docker.lb.ssl_passthrough";
/// `true`: HAProxy speaks TLS to the tasks.
pub const SSL_BACKEND: &str = "com.docker.lb.ssl_backend";
/// `none` or `required` (the default): whether HAProxy verifies the tasks' certificates.
pub const SSL_BACKEND_TLS_VERIFY: &str = "com.docker.lb.ssl_backend_tls_verify";
/// `true`: swarm-lb obtains the certificate for the service's hosts from the ACME CA
/// configured with `--acme` (`docs/acme.md`), and renews it. Parsed by `acme.rs`.
pub const SSL_ACME: &str = "com.docker.lb.ssl_acme";

// `access.rs`: who may reach the service.
/// IPv4/IPv6 addresses and CIDRs allowed to reach the service (others get 403).
pub const IP_ALLOW: &str = "com.docker.lb.ip_allow";
/// IPv4/IPv6 addresses and CIDRs refused (403) even when `ip_allow` lets them in.
pub const IP_DENY: &str = "com.docker.lb.ip_deny";

/// Requests per client address per service: `<n>/s` or `<n>/m`.
pub const RATE_LIMIT: &str = "com.docker.lb.rate_limit";
/// Requests beyond `rate_limit` a client may make within one period.
pub const RATE_LIMIT_BURST: &str = "com.docker.lb.rate_limit_burst";
/// The Docker secret holding an htpasswd file: only its users get through (HTTP basic auth).
pub const AUTH_BASIC: &str = "com.docker.lb.auth_basic";
/// The realm the 401 of `auth_basic` names (`WWW-Authenticate: Basic realm="<realm>"`).
pub const AUTH_REALM: &str = "com.docker.lb.auth_realm";
/// `http://<host>[:<port>][/<path>]`: every request is first asked of this URL (forward
/// authentication, Traefik's `forwardAuth`); only a 2xx answer lets it through.
pub const AUTH_FORWARD: &str = "com.docker.lb.auth_forward";
/// The headers of the `auth_forward` answer copied onto the request (`X-Auth-User,...`).
pub const AUTH_FORWARD_RESPONSE_HEADERS: &str = "com.docker.lb.auth_forward_response_headers";

// `shaping.rs`: how responses and requests are shaped.
/// `max-age=<seconds>[; includeSubDomains][; preload]`: `Strict-Transport-Security` on HTTPS.
pub const HSTS: &str = "com.docker.lb.hsts";
/// A family of labels: the key's last part names a response header to set (empty: remove).
pub const RESPONSE_HEADER: &str = "com.docker.lb.response_header.<Name>";
/// The same for a request header, on the way to the task.
pub const REQUEST_HEADER: &str = "com.docker.lb.request_header.<Name>";
/// How long HAProxy waits for the task's response: `90s`, `5m`, `500ms` (up to 1 h).
pub const TIMEOUT_SERVER: &str = "com.docker.lb.timeout_server";
/// How long an upgraded connection (websocket) may stay idle (up to 24 h).
pub const TIMEOUT_TUNNEL: &str = "com.docker.lb.timeout_tunnel";
/// How long HAProxy waits for the task to accept a connection: `500ms`, `5s` (up to 60 s).
pub const TIMEOUT_CONNECT: &str = "com.docker.lb.timeout_connect";
/// `true`: HAProxy compresses the usual text responses (gzip or deflate, as the client asks).
pub const COMPRESS: &str = "com.docker.lb.compress";
/// Active health check: the path of an HTTP GET each task must answer with 2xx or 3xx.
pub const HEALTH_PATH: &str = "com.docker.lb.health_path";
/// The `Host` header of that GET (none without it).
pub const HEALTH_HOST: &str = "com.docker.lb.health_host";
/// Time between two checks of a task: `5s`, `500ms` (100 ms to 1 h; default 2 s).
pub const HEALTH_INTERVAL: &str = "com.docker.lb.health_interval";
/// What stands for the header name in [`RESPONSE_HEADER`] and [`REQUEST_HEADER`]'s rows.
pub const NAME_PART: &str = "<Name>";

/// The file of `model/labels/` that reads a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `service.rs`: port, network, backend mode, service cluster.
    Service,
    /// `hosts.rs`: the host list and the default backend.
    Hosts,
    /// `routing.rs`: context roots, websocket paths, canary weights, redirects.
    Routing,
    /// `options.rs`: the backend's balancing options.
    Options,
    /// `tls.rs`: certificates at the edge, passthrough, TLS to the tasks.
    Tls,
    /// `access.rs`: who may reach the service, and how often.
    Access,
    /// `shaping.rs`: HSTS and headers set or removed on responses and requests.
    Shaping,
}

/// Where a label applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Applies {
    /// In either backend mode.
    AnyMode,
    /// In task (default) mode only: the label needs HAProxy to see each task, which a vip
    /// backend does not; on a vip service it is ignored with a warning.
    TaskMode,
}

/// One label swarm-lb reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub key: &'static str,
    pub family: Family,
    pub applies: Applies,
}

const fn label(key: &'static str, family: Family, applies: Applies) -> Label {
    Label {
        key,
        family,
        applies,
    }
}

use Applies::{AnyMode, TaskMode};

/// Every label swarm-lb reads, one row each: a `com.docker.lb.*` key not in it is reported
/// as unknown.
pub const LABELS: &[Label] = &[
    label(PORT, Family::Service, AnyMode),
    label(NETWORK, Family::Service, AnyMode),
    label(BACKEND_MODE, Family::Service, AnyMode),
    label(SERVICE_CLUSTER, Family::Service, AnyMode),
    label(HOSTS, Family::Hosts, AnyMode),
    label(DEFAULT_BACKEND, Family::Hosts, AnyMode),
    label(WEBSOCKET_ENDPOINTS, Family::Routing, AnyMode),
    label(CONTEXT_ROOT, Family::Routing, AnyMode),
    label(CONTEXT_ROOT_REWRITE, Family::Routing, AnyMode),
    label(WEIGHT, Family::Routing, AnyMode),
    label(REDIRECTS, Family::Routing, AnyMode),
    label(REDIRECT_CODE, Family::Routing, AnyMode),
    label(IP_HASH, Family::Options, TaskMode),
    label(STICKY_SESSION_COOKIE, Family::Options, TaskMode),
    label(MAX_FAILS, Family::Options, TaskMode),
    label(FAIL_TIMEOUT, Family::Options, TaskMode),
    label(SSL_CERT, Family::Tls, AnyMode),
    label(SSL_KEY, Family::Tls, AnyMode),
    label(SSL_ACME, Family::Tls, AnyMode),
    label(SSL_ONLY, Family::Tls, AnyMode),
    label(SSL_PASSTHROUGH, Family::Tls, AnyMode),
    label(SSL_BACKEND, Family::Tls, AnyMode),
    label(SSL_BACKEND_TLS_VERIFY, Family::Tls, AnyMode),
    label(IP_ALLOW, Family::Access, AnyMode),
    label(IP_DENY, Family::Access, AnyMode),
    label(RATE_LIMIT, Family::Access, AnyMode),
    label(RATE_LIMIT_BURST, Family::Access, AnyMode),
    label(AUTH_BASIC, Family::Access, AnyMode),
    label(AUTH_REALM, Family::Access, AnyMode),
    label(AUTH_FORWARD, Family::Access, AnyMode),
    label(AUTH_FORWARD_RESPONSE_HEADERS, Family::Access, AnyMode),
    label(HSTS, Family::Shaping, AnyMode),
    label(RESPONSE_HEADER, Family::Shaping, AnyMode),
    label(REQUEST_HEADER, Family::Shaping, AnyMode),
    label(TIMEOUT_SERVER, Family::Shaping, AnyMode),
    label(TIMEOUT_TUNNEL, Family::Shaping, AnyMode),
    label(TIMEOUT_CONNECT, Family::Shaping, AnyMode),
    label(HEALTH_PATH, Family::Shaping, TaskMode),
    label(HEALTH_HOST, Family::Shaping, TaskMode),
    label(HEALTH_INTERVAL, Family::Shaping, TaskMode),
    label(COMPRESS, Family::Shaping, TaskMode),
];

/// The row of `key`, if swarm-lb reads it (keys are case-sensitive). A row whose key ends
/// in [`NAME_PART`] is a family: it holds every key of its prefix followed by a name (the
/// name itself is checked by the family's parser).
pub fn known(key: &str) -> Option<&'static Label> {
    LABELS.iter().find(|l| match l.key.strip_suffix(NAME_PART) {
        Some(prefix) => key.len() > prefix.len() && key.starts_with(prefix),
        None => l.key == key,
    })
}

/// Longest Docker secret name (the engine's limit).
pub const SECRET_NAME_MAX: usize = 64;

/// Most hosts one service may list: a label is not a way to fill HAProxy's map without bound.
pub const HOSTS_MAX: usize = 10_000;

/// Most address blocks one `ip_allow` or `ip_deny` label may list (each is a few map
/// entries per service it applies to).
pub const ACCESS_BLOCKS_MAX: usize = 1000;

/// Largest `rate_limit` count and `rate_limit_burst`.
pub const RATE_MAX: u32 = 1_000_000;
/// Most characters of an `auth_realm`.
pub const REALM_MAX: usize = 128;

/// Longest `auth_forward` URL.
pub const FORWARD_URL_MAX: usize = 512;
/// Most headers `auth_forward_response_headers` may name.
pub const FORWARD_HEADERS_MAX: usize = 32;

/// Largest `com.docker.lb.weight`.
pub const WEIGHT_MAX: u32 = 10_000;

/// Longest cookie name accepted by `com.docker.lb.sticky_session_cookie`.
pub const COOKIE_NAME_MAX: usize = 64;

/// Accepted values of `com.docker.lb.backend_mode`, for error messages.
pub const MODES: &str = "default, task, vip";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_has_one_row_under_the_prefix() {
        let mut keys: Vec<&str> = LABELS.iter().map(|l| l.key).collect();
        assert!(keys.iter().all(|k| k.starts_with(PREFIX)), "{keys:?}");
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key has two rows");
    }

    #[test]
    fn the_book_documents_each_label_of_the_table_once_and_no_other() {
        // The book's label tables (docs/: labels, TLS, access, shaping): one row per label (or
        // pair), the key(s) in the first cell.
        let pages = [
            include_str!("../../../docs/labels.md"),
            include_str!("../../../docs/tls.md"),
            include_str!("../../../docs/access.md"),
            include_str!("../../../docs/shaping.md"),
        ];
        let mut documented: Vec<(&str, bool)> = Vec::new();
        for row in pages
            .iter()
            .flat_map(|page| page.lines())
            .filter(|l| l.starts_with("| `com.docker.lb."))
        {
            let mut cells = row.split('|').skip(1);
            let (keys, meaning) = (cells.next().unwrap_or(""), cells.next().unwrap_or(""));
            let task_only = meaning.trim_start().starts_with("default mode only");
            documented.extend(keys.split('`').skip(1).step_by(2).map(|k| (k, task_only)));
        }
        documented.sort_unstable();
        let mut table: Vec<(&str, bool)> = LABELS
            .iter()
            .map(|l| (l.key, l.applies == Applies::TaskMode))
            .collect();
        table.sort_unstable();
        assert_eq!(
            documented, table,
            "the book's rows (key, \"default mode only\") against LABELS"
        );
    }
}
