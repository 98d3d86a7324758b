//! Interlock labels (`com.docker.lb.*`) on one service -> a typed [`Route`], or an error that
//! names the service, the label and the reason.
//!
//! Label values end up in a map file and in Runtime API commands, so anything that could
//! smuggle HAProxy syntax (whitespace, control characters, `;`, `#`, quotes, `\`) is refused
//! before a value is even parsed; nothing is repaired. The one leniency is for host lists
//! written by hand: items are trimmed of spaces and tabs, empty items are skipped with a
//! warning, and a malformed item is refused alone while the other hosts still route.

use std::collections::{BTreeMap, BTreeSet};

use super::reason::{Reason, UrlError, COOKIE_NAME_MAX};
use super::{
    BackendName, BackendOptions, ContextRoot, Host, Mode, Service, ServiceId, REDIRECT_CODES,
};

pub const PREFIX: &str = "com.docker.lb.";
pub const HOSTS: &str = "com.docker.lb.hosts";
pub const PORT: &str = "com.docker.lb.port";
pub const NETWORK: &str = "com.docker.lb.network";
pub const BACKEND_MODE: &str = "com.docker.lb.backend_mode";
/// Which proxy cluster serves the service; see `Settings::service_cluster`.
pub const SERVICE_CLUSTER: &str = "com.docker.lb.service_cluster";

pub const STICKY_SESSION_COOKIE: &str = "com.docker.lb.sticky_session_cookie";
pub const WEBSOCKET_ENDPOINTS: &str = "com.docker.lb.websocket_endpoints";
pub const IP_HASH: &str = "com.docker.lb.ip_hash";
pub const DEFAULT_BACKEND: &str = "com.docker.lb.default_backend";
pub const CONTEXT_ROOT: &str = "com.docker.lb.context_root";
pub const CONTEXT_ROOT_REWRITE: &str = "com.docker.lb.context_root_rewrite";
/// Beyond Interlock: a service's share of a route it shares with others (canary).
pub const WEIGHT: &str = "com.docker.lb.weight";
pub const REDIRECTS: &str = "com.docker.lb.redirects";
/// Beyond Interlock: the status code of this service's redirects (Interlock answered 302).
pub const REDIRECT_CODE: &str = "com.docker.lb.redirect_code";
pub const MAX_FAILS: &str = "com.docker.lb.max_fails";
pub const FAIL_TIMEOUT: &str = "com.docker.lb.fail_timeout";
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
/// The TLS labels.
pub const TLS: &[&str] = &[
    SSL_CERT,
    SSL_KEY,
    SSL_ONLY,
    SSL_PASSTHROUGH,
    SSL_BACKEND,
    SSL_BACKEND_TLS_VERIFY,
];
/// Longest Docker secret name (the engine's limit).
pub const SECRET_NAME_MAX: usize = 64;

/// nginx's defaults when only one of the two failure labels is set.
pub const MAX_FAILS_DEFAULT: u32 = 1;
pub const FAIL_TIMEOUT_DEFAULT_MS: u32 = 10_000;

/// Most hosts one service may list: a label is not a way to fill HAProxy's map without bound.
pub const HOSTS_MAX: usize = 1000;

/// Largest `com.docker.lb.weight`.
pub const WEIGHT_MAX: u32 = 10_000;

/// Balancing labels implemented in default (task) mode: see [`BackendOptions`].
pub const OPTIONS: &[&str] = &[IP_HASH, STICKY_SESSION_COOKIE, MAX_FAILS, FAIL_TIMEOUT];

/// Per-task features: they need HAProxy to see each task, which a vip backend does not.
pub const TASK_ONLY: &[&str] = &[STICKY_SESSION_COOKIE, IP_HASH, MAX_FAILS, FAIL_TIMEOUT];

/// Accepted values of `com.docker.lb.backend_mode`, for error messages.
pub const MODES: &str = "default, task, vip";

/// Longest value quoted back in an error: a 10 kB label must not become a 10 kB log line.
const SHOWN_MAX: usize = 64;

/// A service's routing, as its labels say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub service_id: ServiceId,
    pub backend: BackendName,
    /// Sorted, without duplicates; [`Host::catch_all`] first for the default backend
    /// (`com.docker.lb.default_backend=true`).
    pub hosts: Vec<Host>,
    pub port: u16,
    /// `com.docker.lb.network` as written (a name or id), if set. The network in use is
    /// [`crate::model::RouteInForce::network`].
    pub network: Option<String>,
    pub mode: Mode,
    /// Default in vip mode (the option labels are warned about there).
    pub options: BackendOptions,
    /// `com.docker.lb.context_root`: only requests under this path (on segment boundaries)
    /// are routed to the service, on each of its hosts.
    pub context_root: Option<ContextRoot>,
    /// `com.docker.lb.context_root_rewrite=true`: the context root is stripped from the path
    /// before the request reaches a task (`/app/x` -> `/x`, `/app` -> `/`).
    pub rewrite: bool,
    /// `com.docker.lb.weight`: the service's share of a route it shares with other services.
    pub weight: Option<u32>,
    /// `com.docker.lb.redirects`, in label order.
    pub redirects: Vec<Redirect>,
    /// The TLS labels at the edge (`ssl_backend` is in [`Route::options`]).
    pub tls: RouteTls,
}

/// What the TLS labels ask of the edge. Problems with them are left-out errors: the service
/// keeps its HTTP routing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTls {
    /// `ssl_cert` + `ssl_key`: terminate HTTPS for the service's hosts with this pair (boxed:
    /// most routes have none, and `Route` stays small).
    pub cert: Option<Box<CertSecrets>>,
    /// `ssl_only=true`: plain HTTP for the service's hosts is redirected to HTTPS.
    pub only: bool,
    /// `ssl_passthrough=true`: TLS for the service's hosts goes to the tasks untouched,
    /// routed by SNI.
    pub passthrough: bool,
}

/// The Docker secrets (names) that hold a service's certificate chain and key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertSecrets {
    pub cert: String,
    pub key: String,
}

/// One `source,target` pair of `com.docker.lb.redirects`: requests for `http://<host><path>`
/// (path on segment boundaries, `None` for all of the host) answer `code` with a `Location`
/// of `target` followed by the rest of the path and the query.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Redirect {
    pub host: Host,
    pub path: Option<ContextRoot>,
    /// `scheme://host[:port][/path]`, no trailing slash.
    pub target: String,
    /// The target's host and path, to find loops.
    pub target_host: Host,
    pub target_path: Option<ContextRoot>,
    pub code: u16,
}

/// Why a service is not routed (or keeps its last good route), or, for the warning variants,
/// what part of its labels is ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("service {service}: label {label}={value:?}: {reason}")]
    Invalid {
        service: String,
        label: String,
        /// The value as written, cut to a few dozen characters.
        value: String,
        /// Boxed: errors travel in `Result`s, which stay small.
        reason: Box<Reason>,
    },
    #[error("service {service}: label {label} is required")]
    Missing { service: String, label: String },
    #[error("service {service}: {reason}")]
    Service {
        service: String,
        reason: Box<Reason>,
    },
    /// Services share a route (a canary) while one of them pins clients to tasks (sticky
    /// cookie, ip_hash), which cannot hold across services: the first by name keeps it.
    #[error(
        "service {service}: route {route} is shared with service {owner}, and service \
         {pinning} pins clients to its tasks ({STICKY_SESSION_COOKIE} or {IP_HASH}), which \
         cannot hold across services: the route stays with service {owner}; remove the \
         label or the shared host to split it"
    )]
    SharedRoute {
        service: String,
        route: String,
        owner: String,
        pinning: String,
    },
    /// A redirect whose source another service routes, or an earlier redirect took.
    #[error(
        "service {service}: label {REDIRECTS}: source {from} is already routed or redirected \
         by service {owner}; this redirect is ignored"
    )]
    RedirectConflict {
        service: String,
        from: String,
        owner: String,
    },
    /// Following the redirects from this one comes back to it.
    #[error(
        "service {service}: label {REDIRECTS}: {from} -> {target} would loop (the target \
         is redirected again, back to the source); this redirect is ignored"
    )]
    RedirectLoop {
        service: String,
        from: String,
        target: String,
    },
    /// Two services ask to be the default backend: the one whose name sorts first is.
    #[error(
        "service {service}: label {DEFAULT_BACKEND}: service {owner} is already the default \
         backend; ignored for this service"
    )]
    DefaultConflict { service: String, owner: String },
    /// Warning: a per-task feature on a vip service.
    #[error(
        "service {service}: label {label} is not offered in vip mode (Swarm's VIP spreads \
         traffic over the tasks); ignored, use {BACKEND_MODE}=default for it"
    )]
    NotInVipMode { service: String, label: String },
    /// Warning: a `com.docker.lb.*` key in another case (`Com.Docker.LB.Hosts`): label keys are
    /// case-sensitive, so it is not read.
    #[error(
        "service {service}: label {label} is not read: label keys are case-sensitive, write \
         {expected}"
    )]
    WrongCase {
        service: String,
        label: String,
        expected: String,
    },
    /// Warning: a `com.docker.lb.*` label nobody knows, most likely misspelled.
    #[error(
        "service {service}: label {label} is not a label swarm-lb knows (misspelled?); ignored"
    )]
    Unknown { service: String, label: String },
    /// Warning: a list label with empty items (a comma at an end, two in a row); they are
    /// skipped.
    #[error(
        "service {service}: label {label} has empty items (a comma at an end or two in a row); \
         they are skipped"
    )]
    EmptyItems { service: String, label: String },
    /// Warning: `backend_mode=vip` on a service Swarm gives no VIP (`--endpoint-mode dnsrr`):
    /// routed to its task addresses instead until it has one.
    #[error(
        "service {service}: label {BACKEND_MODE}=vip: the service has no VIP on network \
         {network} (endpoint mode dnsrr?); routed to its task addresses (default mode) until \
         it has one (`docker service update --endpoint-mode vip`)"
    )]
    NoVip { service: String, network: String },
    /// Notice (info): the service has `com.docker.lb.*` labels but no hosts label (and is not
    /// the default backend), e.g. after `docker service update --label-rm
    /// com.docker.lb.hosts`: the operator asked for no routing, so it is unrouted.
    #[error(
        "service {service}: label {HOSTS} is not set, so the service is not routed (set it, or \
         {DEFAULT_BACKEND}=true, to route it)"
    )]
    NoHosts { service: String },
    /// Warning: the service's labels (or network) are wrong now, it keeps the last route that
    /// worked.
    #[error("service {service}: keeps its last good routing until the errors on it are fixed")]
    KeptLastGood { service: String },
}

/// How much a [`LabelError`] matters, which decides where [`crate::model::Desired`] lists it
/// and how it is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The operator asked for no routing (info).
    Notice,
    /// Part of the labels is ignored or stood in for; the service is still routed.
    Warning,
    /// The service (or part of its routing) is not routed as labelled.
    Error,
}

impl LabelError {
    pub fn severity(&self) -> Severity {
        match self {
            Self::Invalid { .. }
            | Self::Missing { .. }
            | Self::Service { .. }
            | Self::SharedRoute { .. }
            | Self::RedirectConflict { .. }
            | Self::RedirectLoop { .. }
            | Self::DefaultConflict { .. } => Severity::Error,
            Self::NotInVipMode { .. }
            | Self::Unknown { .. }
            | Self::EmptyItems { .. }
            | Self::WrongCase { .. }
            | Self::NoVip { .. }
            | Self::KeptLastGood { .. } => Severity::Warning,
            Self::NoHosts { .. } => Severity::Notice,
        }
    }

    /// The service the problem is on.
    pub fn service(&self) -> &str {
        match self {
            Self::Invalid { service, .. }
            | Self::Missing { service, .. }
            | Self::Service { service, .. }
            | Self::SharedRoute { service, .. }
            | Self::RedirectConflict { service, .. }
            | Self::RedirectLoop { service, .. }
            | Self::DefaultConflict { service, .. }
            | Self::NotInVipMode { service, .. }
            | Self::Unknown { service, .. }
            | Self::EmptyItems { service, .. }
            | Self::WrongCase { service, .. }
            | Self::NoVip { service, .. }
            | Self::NoHosts { service }
            | Self::KeptLastGood { service } => service,
        }
    }

    pub(crate) fn invalid(service: &str, label: &str, value: &str, reason: Reason) -> Self {
        Self::Invalid {
            service: service.to_owned(),
            label: label.to_owned(),
            value: shown(value),
            reason: Box::new(reason),
        }
    }
}

/// Sorts by service, then message, and drops duplicates: the order an operator reads.
pub(crate) fn sort_errors(errors: &mut Vec<LabelError>) {
    errors.sort_by_cached_key(|e| (e.service().to_owned(), e.to_string()));
    errors.dedup();
}

/// A label key as an error shows it: as written when it is plain printable ASCII, else
/// quoted with its control and non-ASCII characters escaped; cut like values.
fn shown_key(key: &str) -> String {
    let cut = shown(key);
    if cut.chars().all(|c| c.is_ascii_graphic()) {
        cut
    } else {
        format!("{cut:?}")
    }
}

fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_MAX) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    }
}

/// What one service's labels ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Route the service this way.
    Route(Route),
    /// No `com.docker.lb.hosts` (and not the default backend): the labels ask for no routing,
    /// e.g. after `--label-rm com.docker.lb.hosts`. Unrouted at once, with a notice, no error
    /// and no last good routing: that is for labels whose values are wrong, not removed.
    NoHosts,
    /// Every error found in the core labels: the service keeps its last good routing.
    Refused(Vec<LabelError>),
}

/// What one service's labels say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub route: Verdict,
    /// Errors on parts left out of a route that stands (a malformed host among good ones).
    pub left_out: Vec<LabelError>,
    /// Labels that are ignored (unknown, not offered in the service's mode) and
    /// items skipped (empty ones in a list).
    pub warnings: Vec<LabelError>,
}

/// Whether a proxy serving `cluster` (`None`: services without a cluster label) routes
/// `service`: it carries a `com.docker.lb.*` label (in any case: a wrongly cased key is
/// reported on it) and that service cluster. The one home of
/// this rule: [`crate::model::desired`] routes only these, and the watcher polls only these.
pub fn routed_here(service: &Service, cluster: Option<&str>) -> bool {
    service.labels.keys().any(|k| is_lb_key(k))
        && service.labels.get(SERVICE_CLUSTER).map(String::as_str) == cluster
}

/// Reads a service's `com.docker.lb.*` labels. `None`: the service has none, it is not meant
/// to be routed. The network is only checked for syntax here; whether the service is on it
/// needs the snapshot (see `model::desired`).
pub fn parse(service: &Service) -> Option<Parsed> {
    let name = service.name.as_str();
    let labels = &service.labels;
    if !labels.keys().any(|k| is_lb_key(k)) {
        return None;
    }
    let mut errors = Vec::new();
    let mut left_out = Vec::new();
    let mut warnings = Vec::new();

    let read = Reader {
        service: name,
        labels,
    };
    let default_backend = read
        .optional(DEFAULT_BACKEND, &mut errors, |s, v| {
            parse_bool(s, DEFAULT_BACKEND, v)
        })
        .map(|v| v.unwrap_or(false));
    let hosts = match labels.get(HOSTS) {
        Some(v) => {
            let list = parse_hosts(name, v);
            if list.skipped_empty {
                warnings.push(LabelError::EmptyItems {
                    service: name.to_owned(),
                    label: HOSTS.to_owned(),
                });
            }
            if list.hosts.is_empty() {
                errors.extend(list.refused);
                None
            } else {
                left_out.extend(list.refused);
                Some(list.hosts)
            }
        }
        // The default backend needs no host of its own.
        None if default_backend == Some(true) => Some(Vec::new()),
        None if errors.is_empty() => {
            warnings.extend(self::warnings(name, labels, None));
            return Some(Parsed {
                route: Verdict::NoHosts,
                left_out,
                warnings,
            });
        }
        None => None,
    };
    let port = match labels.get(PORT) {
        Some(v) => parse_port(name, v).map_err(|e| errors.push(e)).ok(),
        None => {
            errors.push(missing(name, PORT));
            None
        }
    };
    let mode = read
        .optional(BACKEND_MODE, &mut errors, parse_mode)
        .map(|m| m.unwrap_or(Mode::Task));
    let network = read
        .optional(NETWORK, &mut errors, parse_network)
        .map(Option::flatten);
    let backend = BackendName::for_service(name)
        .map_err(|e| {
            errors.push(LabelError::Service {
                service: name.to_owned(),
                reason: Box::new(Reason::BackendName(e)),
            })
        })
        .ok();

    // Interlock's nginx needed the upgrade headers set per path; HAProxy passes a websocket
    // upgrade on any route (`timeout tunnel` applies), so the paths are only checked.
    if let Some(v) = labels.get(WEBSOCKET_ENDPOINTS) {
        match check_paths(name, WEBSOCKET_ENDPOINTS, v) {
            Ok(true) => warnings.push(LabelError::EmptyItems {
                service: name.to_owned(),
                label: WEBSOCKET_ENDPOINTS.to_owned(),
            }),
            Ok(false) => {}
            Err(e) => errors.push(e),
        }
    }
    let options = match mode {
        Some(Mode::Vip) => Some(BackendOptions::default()),
        _ => parse_options(name, labels)
            .map_err(|e| errors.extend(e))
            .ok(),
    };
    let context_root = read
        .optional(CONTEXT_ROOT, &mut errors, parse_context_root)
        .flatten();
    let rewrite = read
        .optional(CONTEXT_ROOT_REWRITE, &mut errors, |s, v| {
            parse_bool(s, CONTEXT_ROOT_REWRITE, v)
        })
        .flatten()
        .unwrap_or_default();
    let weight = read.optional(WEIGHT, &mut errors, parse_weight).flatten();
    let code = read
        .optional(REDIRECT_CODE, &mut errors, parse_redirect_code)
        .flatten()
        .unwrap_or(302);
    let redirects = read
        .optional(REDIRECTS, &mut errors, |s, v| parse_redirects(s, v, code))
        .flatten()
        .unwrap_or_default();

    let tls = parse_tls(name, labels, !redirects.is_empty(), &mut left_out);
    let backend_tls = parse_backend_tls(name, labels, &mut left_out);
    let options = options.map(|o| BackendOptions {
        backend_tls,
        passthrough: tls.passthrough,
        ..o
    });

    warnings.extend(self::warnings(name, labels, mode));
    let hosts = match (hosts, default_backend) {
        (Some(mut hosts), Some(true)) => {
            hosts.insert(0, Host::catch_all());
            Some(hosts)
        }
        (hosts, _) => hosts,
    };
    let route = match (hosts, port, mode, network, backend, options) {
        (Some(hosts), Some(port), Some(mode), Some(network), Some(backend), Some(options))
            if errors.is_empty() =>
        {
            Verdict::Route(Route {
                service_id: service.id.clone(),
                backend,
                hosts,
                port,
                network,
                mode,
                options,
                context_root,
                rewrite,
                weight,
                redirects,
                tls,
            })
        }
        _ => {
            sort_errors(&mut errors);
            Verdict::Refused(errors)
        }
    };
    Some(Parsed {
        route,
        left_out,
        warnings,
    })
}

/// One service's labels, read one optional label at a time.
struct Reader<'a> {
    service: &'a str,
    labels: &'a BTreeMap<String, String>,
}

impl Reader<'_> {
    /// `label` through `parse(service, value)`: `Some(None)` when it is not set,
    /// `Some(Some(v))` when it parses, `None` when it does not (the error is in `errors`).
    fn optional<T>(
        &self,
        label: &str,
        errors: &mut Vec<LabelError>,
        parse: impl FnOnce(&str, &str) -> Result<T, LabelError>,
    ) -> Option<Option<T>> {
        let Some(value) = self.labels.get(label) else {
            return Some(None);
        };
        match parse(self.service, value) {
            Ok(v) => Some(Some(v)),
            Err(e) => {
                errors.push(e);
                None
            }
        }
    }
}

fn missing(service: &str, label: &str) -> LabelError {
    LabelError::Missing {
        service: service.to_owned(),
        label: label.to_owned(),
    }
}

fn warnings(
    service: &str,
    labels: &BTreeMap<String, String>,
    mode: Option<Mode>,
) -> Vec<LabelError> {
    let core = [
        HOSTS,
        PORT,
        NETWORK,
        BACKEND_MODE,
        SERVICE_CLUSTER,
        DEFAULT_BACKEND,
        WEBSOCKET_ENDPOINTS,
        CONTEXT_ROOT,
        CONTEXT_ROOT_REWRITE,
        WEIGHT,
        REDIRECTS,
        REDIRECT_CODE,
        SSL_CERT,
        SSL_KEY,
        SSL_ONLY,
        SSL_PASSTHROUGH,
        SSL_BACKEND,
        SSL_BACKEND_TLS_VERIFY,
    ];
    let applied = |k: &str| core.contains(&k) || (mode != Some(Mode::Vip) && OPTIONS.contains(&k));
    // `ip_hash=false` asks for nothing a vip service lacks: no warning for it.
    let off = |k: &str| k == IP_HASH && labels[k].trim().eq_ignore_ascii_case("false");
    labels
        .keys()
        .filter(|k| is_lb_key(k) && !applied(k) && !(mode == Some(Mode::Vip) && off(k)))
        .map(|k| {
            // A key nobody checked: shown escaped, so it cannot forge log lines.
            let (service, label) = (service.to_owned(), shown_key(k));
            if !k.starts_with(PREFIX) {
                let expected = shown_key(&k.to_ascii_lowercase());
                LabelError::WrongCase {
                    service,
                    label,
                    expected,
                }
            } else if mode == Some(Mode::Vip) && TASK_ONLY.contains(&k.as_str()) {
                LabelError::NotInVipMode { service, label }
            } else {
                LabelError::Unknown { service, label }
            }
        })
        .collect()
}

/// A `com.docker.lb.*` key in any case: Docker's label keys are case-sensitive, so one in
/// another case is not read, but it is reported.
fn is_lb_key(key: &str) -> bool {
    key.get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}

/// Refuses a character that could smuggle HAProxy syntax (or is not plain ASCII), naming it.
fn check_chars(service: &str, label: &str, value: &str) -> Result<(), LabelError> {
    match bad_char(label, value) {
        None => Ok(()),
        Some(reason) => Err(LabelError::invalid(service, label, value, reason)),
    }
}

/// Why `value` cannot be taken, if it holds a character that could smuggle HAProxy syntax.
fn bad_char(label: &str, value: &str) -> Option<Reason> {
    let ch = value.chars().find(|&c| {
        c.is_whitespace()
            || c.is_control()
            || !c.is_ascii()
            || matches!(c, ';' | '#' | '"' | '\'' | '`' | '\\')
    })?;
    Some(
        if !ch.is_ascii() && !ch.is_whitespace() && !ch.is_control() {
            Reason::NonAscii { ch }
        } else {
            Reason::Syntax {
                ch,
                in_host: label == HOSTS && ch == ' ',
            }
        },
    )
}

/// What `com.docker.lb.hosts` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostList {
    /// The hosts to route: sorted, without duplicates (`A.example`, `a.example` and
    /// `a.example.` are one host).
    pub hosts: Vec<Host>,
    /// One error per refused item, naming it; the other items still route.
    pub refused: Vec<LabelError>,
    /// Empty items were skipped (a comma at an end, two in a row).
    pub skipped_empty: bool,
}

/// `com.docker.lb.hosts`: comma-separated host names, without ports. Each item is trimmed of
/// spaces and tabs (lists copied from documents, `a.example, b.example ,`); an empty item is
/// skipped; an item that is not a host name (a space or `;` inside, control characters,
/// non-ASCII, a port) is refused alone with an error naming it. A value with no item at all
/// gives one error ("empty").
pub fn parse_hosts(service: &str, value: &str) -> HostList {
    let refuse = |item: &str, why: Reason| {
        LabelError::invalid(
            service,
            HOSTS,
            value,
            Reason::HostLeftOut {
                host: shown(item),
                why: Box::new(why),
            },
        )
    };
    let mut list = HostList::default();
    let mut hosts = BTreeSet::new();
    for item in list_items(value) {
        if item.is_empty() {
            list.skipped_empty = true;
            continue;
        }
        if let Some(reason) = bad_char(HOSTS, item) {
            list.refused.push(refuse(item, reason));
            continue;
        }
        if item.contains(':') {
            list.refused.push(refuse(item, Reason::HostWithPort));
            continue;
        }
        match Host::parse(item) {
            Ok(host) => {
                hosts.insert(host);
            }
            Err(e) => list.refused.push(refuse(item, Reason::Name(e))),
        }
    }
    if hosts.len() > HOSTS_MAX {
        list.refused = vec![LabelError::invalid(
            service,
            HOSTS,
            value,
            Reason::TooManyHosts { count: hosts.len() },
        )];
        return list;
    }
    if hosts.is_empty() && list.refused.is_empty() {
        list.refused.push(LabelError::invalid(
            service,
            HOSTS,
            value,
            Reason::Empty {
                expected: "list at least one host",
            },
        ));
    }
    list.hosts = hosts.into_iter().collect();
    list
}

/// `com.docker.lb.port`: decimal 1..=65535, digits only.
pub fn parse_port(service: &str, value: &str) -> Result<u16, LabelError> {
    check_chars(service, PORT, value)?;
    let invalid = |reason| LabelError::invalid(service, PORT, value, reason);
    if value.is_empty() {
        return Err(invalid(Reason::Empty {
            expected: "give the port the service listens on, 1..=65535",
        }));
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(Reason::PortNotDecimal));
    }
    if value.len() > 1 && value.starts_with('0') {
        return Err(invalid(Reason::PortLeadingZero));
    }
    match value.parse::<u32>() {
        Ok(0) => Err(invalid(Reason::PortZero)),
        Ok(n) => u16::try_from(n).map_err(|_| invalid(Reason::PortOutOfRange)),
        Err(_) => Err(invalid(Reason::PortOutOfRange)),
    }
}

/// `com.docker.lb.backend_mode`: `default` or `task` -> [`Mode::Task`], `vip` -> [`Mode::Vip`].
pub fn parse_mode(service: &str, value: &str) -> Result<Mode, LabelError> {
    check_chars(service, BACKEND_MODE, value)?;
    match value {
        "default" | "task" => Ok(Mode::Task),
        "vip" => Ok(Mode::Vip),
        _ => Err(LabelError::invalid(
            service,
            BACKEND_MODE,
            value,
            Reason::UnknownMode,
        )),
    }
}

/// The balancing option labels of a task-mode service; every error found.
fn parse_options(
    service: &str,
    labels: &BTreeMap<String, String>,
) -> Result<BackendOptions, Vec<LabelError>> {
    let mut errors = Vec::new();
    let read = Reader { service, labels };
    let ip_hash = read
        .optional(IP_HASH, &mut errors, |s, v| parse_bool(s, IP_HASH, v))
        .flatten()
        .unwrap_or_default();
    let sticky_cookie = read
        .optional(STICKY_SESSION_COOKIE, &mut errors, parse_cookie_name)
        .flatten();
    let max_fails = read
        .optional(MAX_FAILS, &mut errors, parse_max_fails)
        .flatten();
    let fail_timeout = read
        .optional(FAIL_TIMEOUT, &mut errors, parse_fail_timeout)
        .flatten();
    // nginx: max_fails=0 turns the accounting off.
    let failure_limit = match (max_fails, fail_timeout) {
        (None, None) | (Some(0), _) => None,
        (max_fails, fail_timeout_ms) => Some(super::FailureLimit {
            max_fails: max_fails.unwrap_or(MAX_FAILS_DEFAULT),
            fail_timeout_ms: fail_timeout_ms.unwrap_or(FAIL_TIMEOUT_DEFAULT_MS),
        }),
    };
    if errors.is_empty() {
        Ok(BackendOptions {
            ip_hash,
            sticky_cookie,
            failure_limit,
            backend_tls: None,
            passthrough: false,
        })
    } else {
        Err(errors)
    }
}

/// `com.docker.lb.max_fails`: failed requests in a row that take a task out, 0..=1000 (0:
/// off, as in nginx).
pub fn parse_max_fails(service: &str, value: &str) -> Result<u32, LabelError> {
    check_chars(service, MAX_FAILS, value)?;
    let plain = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    match value.parse::<u32>() {
        Ok(n) if plain && n <= 1000 => Ok(n),
        _ => Err(LabelError::invalid(
            service,
            MAX_FAILS,
            value,
            Reason::NotACount,
        )),
    }
}

/// `com.docker.lb.fail_timeout`: nginx's time syntax, a whole number with an optional unit
/// `ms`, `s` (the default) or `m`: 1 ms up to 1 h. Milliseconds.
pub fn parse_fail_timeout(service: &str, value: &str) -> Result<u32, LabelError> {
    check_chars(service, FAIL_TIMEOUT, value)?;
    let digits_end = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits_end);
    let scale = match unit {
        "ms" => Some(1u64),
        "" | "s" => Some(1_000),
        "m" => Some(60_000),
        _ => None,
    };
    let ms = match (number.parse::<u64>(), scale) {
        (Ok(n), Some(scale)) if !number.starts_with('0') => n.checked_mul(scale),
        _ => None,
    };
    match ms {
        Some(ms) if (1..=3_600_000).contains(&ms) => Ok(ms as u32),
        _ => Err(LabelError::invalid(
            service,
            FAIL_TIMEOUT,
            value,
            Reason::NotADuration,
        )),
    }
}

/// Checks comma-separated URL paths, each starting with `/`. Like host lists, items are
/// trimmed of spaces and tabs; `Ok(true)`: empty items were skipped.
fn check_paths(service: &str, label: &str, value: &str) -> Result<bool, LabelError> {
    let mut skipped_empty = false;
    for path in list_items(value) {
        if path.is_empty() {
            skipped_empty = true;
            continue;
        }
        check_chars(service, label, path).map_err(|e| match e {
            LabelError::Invalid { reason, .. } => LabelError::invalid(
                service,
                label,
                value,
                Reason::InPath {
                    path: shown(path),
                    why: reason,
                },
            ),
            other => other,
        })?;
        if !path.starts_with('/') {
            return Err(LabelError::invalid(
                service,
                label,
                value,
                Reason::PathNotAbsolute { path: shown(path) },
            ));
        }
    }
    Ok(skipped_empty)
}

/// The items of a comma-separated label, trimmed of the spaces and tabs people put around
/// commas; empty items are kept (as "") for the caller to skip and report.
fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(|i| i.trim_matches([' ', '\t']))
}

/// `com.docker.lb.context_root`: a path prefix such as `/app` or `/api/v1` (see
/// [`ContextRoot`]); `/` alone is no context root and is refused.
pub fn parse_context_root(service: &str, value: &str) -> Result<ContextRoot, LabelError> {
    check_chars(service, CONTEXT_ROOT, value)?;
    ContextRoot::parse(value)
        .map_err(|e| LabelError::invalid(service, CONTEXT_ROOT, value, Reason::NotAContextRoot(e)))
}

/// `com.docker.lb.weight`: a whole number 0..=[`WEIGHT_MAX`] (0: no traffic).
pub fn parse_weight(service: &str, value: &str) -> Result<u32, LabelError> {
    check_chars(service, WEIGHT, value)?;
    let plain = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    match value.parse::<u32>() {
        Ok(w) if plain && w <= WEIGHT_MAX => Ok(w),
        _ => Err(LabelError::invalid(
            service,
            WEIGHT,
            value,
            Reason::NotAWeight,
        )),
    }
}

/// `com.docker.lb.redirect_code`: 301, 302, 307 or 308.
pub fn parse_redirect_code(service: &str, value: &str) -> Result<u16, LabelError> {
    check_chars(service, REDIRECT_CODE, value)?;
    match value.parse::<u16>() {
        Ok(code) if REDIRECT_CODES.contains(&code) && !value.starts_with('0') => Ok(code),
        _ => Err(LabelError::invalid(
            service,
            REDIRECT_CODE,
            value,
            Reason::NotARedirectCode,
        )),
    }
}

/// `com.docker.lb.redirects`: `source,target` pairs separated by `;` (Interlock's syntax),
/// each `http://host[/path]` -> `http[s]://host[:port][/path]`. Items are trimmed of spaces
/// and tabs; `;` ends a pair, so it is the one syntax character allowed in the value.
pub fn parse_redirects(service: &str, value: &str, code: u16) -> Result<Vec<Redirect>, LabelError> {
    let invalid = |reason| LabelError::invalid(service, REDIRECTS, value, reason);
    let mut out = Vec::new();
    for pair in value.split(';').map(|p| p.trim_matches([' ', '\t'])) {
        if pair.is_empty() {
            continue;
        }
        let items: Vec<&str> = list_items(pair).collect();
        let [source, target] = items.as_slice() else {
            return Err(invalid(Reason::NotAPair { pair: shown(pair) }));
        };
        for item in [source, target] {
            if let Some(reason) = bad_char(REDIRECTS, item) {
                return Err(invalid(Reason::InItem {
                    item: shown(item),
                    why: Box::new(reason),
                }));
            }
        }
        let (scheme, host, port, path) = split_url(source).map_err(|why| {
            invalid(Reason::BadSource {
                url: shown(source),
                why,
            })
        })?;
        if scheme != "http" || port.is_some() {
            return Err(invalid(Reason::SourceNotPlainHttp { url: shown(source) }));
        }
        let (t_scheme, t_host, t_port, t_path) = split_url(target).map_err(|why| {
            invalid(Reason::BadTarget {
                url: shown(target),
                why,
            })
        })?;
        let mut url = format!("{t_scheme}://{t_host}");
        if let Some(port) = t_port {
            url.push_str(&format!(":{port}"));
        }
        if let Some(path) = &t_path {
            url.push_str(path.as_str());
        }
        out.push(Redirect {
            host,
            path,
            target: url,
            target_host: t_host,
            target_path: t_path,
            code,
        });
    }
    if out.is_empty() {
        return Err(invalid(Reason::Empty {
            expected: "give at least one `source,target` pair",
        }));
    }
    Ok(out)
}

/// A URL's parts: scheme, host, port, path.
type UrlParts<'a> = (&'a str, Host, Option<u16>, Option<ContextRoot>);

/// `scheme://host[:port][/path]` -> its parts; the reason when it is not one.
fn split_url(url: &str) -> Result<UrlParts<'_>, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::NotAUrl)?;
    if !matches!(scheme, "http" | "https") {
        return Err(UrlError::Scheme {
            scheme: shown(scheme),
        });
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0 && !port.starts_with('0'))
                .ok_or_else(|| UrlError::Port { port: shown(port) })?;
            (host, Some(port))
        }
        None => (authority, None),
    };
    let host = Host::parse(host).map_err(|why| UrlError::Host {
        host: shown(host),
        why,
    })?;
    let path = match path {
        None | Some("/") => None,
        Some(p) => Some(ContextRoot::parse(p).map_err(|why| UrlError::Path {
            path: shown(p),
            why,
        })?),
    };
    Ok((scheme, host, port, path))
}

/// A yes/no label (`ip_hash`, `default_backend`): `true` or `false`.
fn parse_bool(service: &str, label: &str, value: &str) -> Result<bool, LabelError> {
    check_chars(service, label, value)?;
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(LabelError::invalid(service, label, value, Reason::NotABool)),
    }
}

/// A Docker secret name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most [`SECRET_NAME_MAX`]
/// characters: the engine's own rule).
pub fn parse_secret_name(service: &str, label: &str, value: &str) -> Result<String, LabelError> {
    let ok = value.len() <= SECRET_NAME_MAX
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(LabelError::invalid(
            service,
            label,
            value,
            Reason::NotASecretName,
        ))
    }
}

/// The edge TLS labels. Every problem goes to `left_out` and leaves that part out; the
/// service's HTTP routing stands. `redirects`: the service has `com.docker.lb.redirects`,
/// which Interlock documents as not combining with passthrough.
fn parse_tls(
    service: &str,
    labels: &BTreeMap<String, String>,
    redirects: bool,
    left_out: &mut Vec<LabelError>,
) -> RouteTls {
    let read = Reader { service, labels };
    let flag = |label: &str, left_out: &mut Vec<LabelError>| {
        read.optional(label, left_out, |s, v| parse_bool(s, label, v))
            .flatten()
            .unwrap_or(false)
    };
    let only = flag(SSL_ONLY, left_out);
    let mut passthrough = flag(SSL_PASSTHROUGH, left_out);
    let cert = read
        .optional(SSL_CERT, left_out, |s, v| parse_secret_name(s, SSL_CERT, v))
        .flatten();
    let key = read
        .optional(SSL_KEY, left_out, |s, v| parse_secret_name(s, SSL_KEY, v))
        .flatten();
    let mut cert = match (cert, key, labels.get(SSL_CERT), labels.get(SSL_KEY)) {
        (Some(cert), Some(key), _, _) => Some(Box::new(CertSecrets { cert, key })),
        // One of the pair is set but bad: its error is already in `left_out`.
        (_, _, Some(_), Some(_)) | (None, None, _, _) => None,
        (Some(_), None, _, None) => {
            left_out.push(missing_pair(service, SSL_KEY, SSL_CERT));
            None
        }
        (None, Some(_), None, _) => {
            left_out.push(missing_pair(service, SSL_CERT, SSL_KEY));
            None
        }
        _ => None,
    };
    if passthrough && redirects {
        left_out.push(LabelError::invalid(
            service,
            SSL_PASSTHROUGH,
            "true",
            Reason::PassthroughWithRedirects,
        ));
        passthrough = false;
    }
    if passthrough && cert.is_some() {
        if let Some(value) = labels.get(SSL_CERT) {
            left_out.push(LabelError::invalid(
                service,
                SSL_CERT,
                value,
                Reason::PassthroughWithCertificate,
            ));
        }
        cert = None;
    }
    RouteTls {
        cert,
        only,
        passthrough,
    }
}

fn missing_pair(service: &str, absent: &'static str, present: &'static str) -> LabelError {
    LabelError::Service {
        service: service.to_owned(),
        reason: Box::new(Reason::HalfCertPair { present, absent }),
    }
}

/// `ssl_backend` and `ssl_backend_tls_verify`; problems go to `left_out` (plain HTTP to the
/// tasks stands). Verification defaults to `required`, as in Interlock.
fn parse_backend_tls(
    service: &str,
    labels: &BTreeMap<String, String>,
    left_out: &mut Vec<LabelError>,
) -> Option<super::BackendTls> {
    let read = Reader { service, labels };
    let on = read
        .optional(SSL_BACKEND, left_out, |s, v| parse_bool(s, SSL_BACKEND, v))
        .flatten()
        .unwrap_or(false);
    let verify = read
        .optional(SSL_BACKEND_TLS_VERIFY, left_out, |s, v| {
            check_chars(s, SSL_BACKEND_TLS_VERIFY, v)?;
            match v {
                "none" => Ok(false),
                "required" => Ok(true),
                _ => Err(LabelError::invalid(
                    s,
                    SSL_BACKEND_TLS_VERIFY,
                    v,
                    Reason::NotAVerifyMode,
                )),
            }
        })
        .flatten();
    match verify {
        // A bad verify value must not turn verification off.
        None if labels.contains_key(SSL_BACKEND_TLS_VERIFY) && on => None,
        _ if !on => None,
        verify => Some(super::BackendTls {
            verify: verify.unwrap_or(true),
        }),
    }
}

/// `com.docker.lb.sticky_session_cookie`: the cookie's name, 1 to 64 letters, digits, `-`,
/// `_` or `.` (a subset of HTTP's token that needs no quoting anywhere).
pub fn parse_cookie_name(service: &str, value: &str) -> Result<String, LabelError> {
    check_chars(service, STICKY_SESSION_COOKIE, value)?;
    let ok = !value.is_empty()
        && value.len() <= COOKIE_NAME_MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(LabelError::invalid(
            service,
            STICKY_SESSION_COOKIE,
            value,
            Reason::NotACookieName,
        ))
    }
}

/// `com.docker.lb.network`: a network name or id; only its syntax is checked here.
pub fn parse_network(service: &str, value: &str) -> Result<Option<String>, LabelError> {
    check_chars(service, NETWORK, value)?;
    if value.is_empty() {
        return Err(LabelError::invalid(
            service,
            NETWORK,
            value,
            Reason::Empty {
                expected: "name the network HAProxy should join, or remove the label",
            },
        ));
    }
    Ok(Some(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BackendTls;

    fn service(labels: &[(&str, &str)]) -> Service {
        Service {
            id: "id-web".to_owned(),
            name: "web".to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            networks: vec!["net1".to_owned()],
            vips: vec![],
        }
    }

    fn route(labels: &[(&str, &str)]) -> Result<Route, Vec<LabelError>> {
        match parse(&service(labels))
            .expect("service has lb labels")
            .route
        {
            Verdict::Route(route) => Ok(route),
            Verdict::Refused(errors) => Err(errors),
            Verdict::NoHosts => panic!("labels {labels:?} ask for no routing"),
        }
    }

    /// `Result`-like reading for the tests below.
    impl Verdict {
        fn is_ok(&self) -> bool {
            matches!(self, Verdict::Route(_))
        }
        fn expect(self, what: &str) -> Route {
            match self {
                Verdict::Route(route) => route,
                other => panic!("{what}: {other:?}"),
            }
        }
        fn expect_err(self, what: &str) -> Vec<LabelError> {
            match self {
                Verdict::Refused(errors) => errors,
                other => panic!("{what}: {other:?}"),
            }
        }
        fn unwrap_err(self) -> Vec<LabelError> {
            self.expect_err("refused")
        }
    }

    /// The hosts routed and the errors on items left out.
    fn host_list(value: &str) -> (Vec<String>, Vec<String>) {
        let list = parse_hosts("web", value);
        (
            list.hosts.iter().map(|h| h.to_string()).collect(),
            list.refused.iter().map(|e| e.to_string()).collect(),
        )
    }

    fn errors(labels: &[(&str, &str)]) -> Vec<LabelError> {
        route(labels).expect_err("labels should be refused")
    }

    fn hosts(list: &[&str]) -> Vec<Host> {
        list.iter().map(|h| Host::parse(h).unwrap()).collect()
    }

    #[test]
    fn a_service_without_lb_labels_is_ignored() {
        assert_eq!(
            parse(&service(&[("com.docker.stack.namespace", "x")])),
            None
        );
        assert_eq!(parse(&service(&[("com.docker.lbx", "x")])), None);
    }

    #[test]
    fn good_labels_give_a_route_in_task_mode_by_default() {
        let r = route(&[(HOSTS, "b.example,A.example,b.example"), (PORT, "8080")]).unwrap();
        assert_eq!(
            r,
            Route {
                options: Default::default(),
                service_id: "id-web".to_owned(),
                backend: BackendName::for_service("web").unwrap(),
                hosts: hosts(&["a.example", "b.example"]),
                port: 8080,
                network: None,
                mode: Mode::Task,
                context_root: None,
                rewrite: false,
                weight: None,
                redirects: vec![],
                tls: RouteTls::default(),
            }
        );
    }

    #[test]
    fn each_backend_mode_value_maps_to_its_mode() {
        for (value, mode) in [
            ("default", Mode::Task),
            ("task", Mode::Task),
            ("vip", Mode::Vip),
        ] {
            let r = route(&[(HOSTS, "a.example"), (PORT, "80"), (BACKEND_MODE, value)]).unwrap();
            assert_eq!(r.mode, mode, "{value}");
        }
    }

    #[test]
    fn the_network_label_is_kept_as_written() {
        let r = route(&[(HOSTS, "a.example"), (PORT, "80"), (NETWORK, "front_net")]).unwrap();
        assert_eq!(r.network.as_deref(), Some("front_net"));
    }

    #[test]
    fn hosts_make_the_port_required() {
        let errs = errors(&[(HOSTS, "a.example"), (BACKEND_MODE, "vip")]);
        assert_eq!(errs, vec![missing("web", PORT)]);
        assert_eq!(
            errs[0].to_string(),
            "service web: label com.docker.lb.port is required"
        );
    }

    #[test]
    fn lb_labels_without_hosts_ask_for_no_routing_rather_than_an_error() {
        // What `docker service update --label-rm com.docker.lb.hosts` leaves.
        let parsed = parse(&service(&[(PORT, "8080"), (BACKEND_MODE, "vip")])).unwrap();
        assert_eq!(parsed.route, Verdict::NoHosts);
        assert_eq!(parsed.left_out, vec![]);
        assert_eq!(parsed.warnings, vec![]);
        let notice = LabelError::NoHosts {
            service: "web".to_owned(),
        };
        assert_eq!(
            notice.to_string(),
            "service web: label com.docker.lb.hosts is not set, so the service is not routed \
             (set it, or com.docker.lb.default_backend=true, to route it)"
        );
        // Even with a bad port: nothing is routed, so nothing is wrong with routing.
        let parsed = parse(&service(&[(PORT, "0")])).unwrap();
        assert_eq!(parsed.route, Verdict::NoHosts);
    }

    #[test]
    fn the_default_backend_needs_no_hosts_label() {
        let r = route(&[(DEFAULT_BACKEND, "true"), (PORT, "80")]).unwrap();
        assert_eq!(r.hosts, vec![Host::catch_all()]);
        let errs = errors(&[(DEFAULT_BACKEND, "yes"), (PORT, "80")]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].to_string().contains(DEFAULT_BACKEND), "{errs:?}");
    }

    #[test]
    fn every_bad_core_label_is_reported_at_once() {
        let errs = errors(&[
            (HOSTS, "a b"),
            (PORT, "0"),
            (BACKEND_MODE, "fast"),
            (NETWORK, ""),
        ]);
        let labels: BTreeSet<&str> = errs
            .iter()
            .map(|e| match e {
                LabelError::Invalid { label, .. } => label.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(labels, BTreeSet::from([HOSTS, PORT, BACKEND_MODE, NETWORK]));
    }

    #[test]
    fn hostile_values_are_refused_on_every_core_label_naming_service_and_label() {
        let long = "a".repeat(10_000);
        let hostile: &[(&str, &str)] = &[
            ("newline", "a\nb"),
            ("carriage return", "a\rb"),
            ("semicolon", "a;b"),
            ("hash", "a#b"),
            ("space", "a b"),
            ("tab", "a\tb"),
            ("double quote", "a\"b"),
            ("single quote", "a'b"),
            ("backslash", "a\\b"),
            ("nul", "a\0b"),
            ("unicode", "caf\u{e9}"),
            ("unicode space", "a\u{a0}b"),
            ("empty", ""),
            ("very long", &long),
        ];
        let good: [(&str, &str); 4] = [
            (HOSTS, "a.example"),
            (PORT, "80"),
            (BACKEND_MODE, "task"),
            (NETWORK, "net1"),
        ];
        for label in [HOSTS, PORT, BACKEND_MODE, NETWORK] {
            for (what, value) in hostile {
                // The network label is only resolved against the snapshot, so a long name that
                // is otherwise harmless passes here (and fails in `desired`: no such network).
                if label == NETWORK && *what == "very long" {
                    continue;
                }
                let labels: Vec<(&str, &str)> = good
                    .iter()
                    .map(|&(k, v)| if k == label { (k, *value) } else { (k, v) })
                    .collect();
                let errs = errors(&labels);
                assert_eq!(errs.len(), 1, "{label} {what}: {errs:?}");
                let line = errs[0].to_string();
                assert!(
                    line.starts_with(&format!("service web: label {label}=")),
                    "{label} {what}: {line}"
                );
                assert!(
                    !line.contains('\n') && !line.contains('\r') && !line.contains('\0'),
                    "{line:?}"
                );
                assert!(
                    line.len() < 400,
                    "{label} {what}: error line is {} bytes",
                    line.len()
                );
            }
        }
    }

    #[test]
    fn a_refused_character_is_named_in_the_reason() {
        let (hosts, errs) = host_list("a.example;b.example");
        assert_eq!(hosts, Vec::<String>::new());
        assert!(errs[0].contains("character ';' is not allowed"), "{errs:?}");
        let e = parse_port("web", "80\n").unwrap_err();
        assert!(
            e.to_string().contains(r"character '\n' is not allowed"),
            "{e}"
        );
        let e = parse_mode("web", "v\u{ed}p").unwrap_err();
        assert!(
            e.to_string().contains("character 'í' is not allowed"),
            "{e}"
        );
    }

    #[test]
    fn hosts_separated_by_comma_and_space_are_accepted_as_interlock_documents_them() {
        let (hosts, errs) = host_list("a.example, b.example");
        assert_eq!(hosts, ["a.example", "b.example"]);
        assert_eq!(errs, Vec::<String>::new());
    }

    #[test]
    fn a_host_list_written_by_hand_is_trimmed_and_its_empty_items_skipped() {
        for value in [
            "a.example.test, b.example.test ,c.example.test,",
            "\ta.example.test,\tb.example.test\t,  c.example.test  ",
            ",a.example.test,,b.example.test, ,c.example.test",
            "c.example.test,B.Example.Test,a.example.test.,a.example.test",
        ] {
            let list = parse_hosts("web", value);
            let hosts: Vec<&str> = list.hosts.iter().map(Host::as_str).collect();
            assert_eq!(
                hosts,
                ["a.example.test", "b.example.test", "c.example.test"],
                "{value:?}"
            );
            assert_eq!(list.refused, vec![], "{value:?}");
        }
        assert!(parse_hosts("web", "a.example,").skipped_empty);
        assert!(!parse_hosts("web", "a.example, b.example").skipped_empty);
    }

    #[test]
    fn empty_items_give_one_warning_naming_service_and_label_and_the_hosts_route() {
        let parsed = parse(&service(&[
            (HOSTS, "a.example.test, b.example.test ,c.example.test,,"),
            (PORT, "80"),
        ]))
        .unwrap();
        let Verdict::Route(route) = &parsed.route else {
            panic!("{parsed:?}")
        };
        assert_eq!(route.hosts.len(), 3);
        let lines: Vec<String> = parsed.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            lines,
            [
                "service web: label com.docker.lb.hosts has empty items (a comma at an end or two \
              in a row); they are skipped"
            ]
        );
    }

    #[test]
    fn a_malformed_item_is_refused_alone_naming_it_and_the_other_hosts_route() {
        for (bad, why) in [
            ("b example.test", "cannot contain spaces"),
            ("b;example.test", "character ';'"),
            ("b#example.test", "character '#'"),
            ("b\u{7}example.test", "character '\\u{7}'"),
            ("b\nexample.test", "character '\\n'"),
            ("b\u{0}example.test", "character '\\0'"),
            ("caf\u{e9}.example.test", "only plain ASCII"),
            ("b.example.test:8080", "it has a port"),
            ("b..example.test", "host label"),
            ("b.example.test..", "host label"),
            (".", "host label"),
            ("*.example.test", "character '*'"),
        ] {
            let value = format!("a.example.test, {bad} ,c.example.test");
            let parsed = parse(&service(&[(HOSTS, &value), (PORT, "80")])).unwrap();
            let Verdict::Route(route) = &parsed.route else {
                panic!("{bad:?}: {parsed:?}")
            };
            let hosts: Vec<&str> = route.hosts.iter().map(Host::as_str).collect();
            assert_eq!(hosts, ["a.example.test", "c.example.test"], "{bad:?}");
            assert_eq!(parsed.left_out.len(), 1, "{bad:?}: {:?}", parsed.left_out);
            let line = parsed.left_out[0].to_string();
            assert!(
                line.starts_with("service web: label com.docker.lb.hosts="),
                "{line}"
            );
            assert!(
                line.contains(&format!("host {:?} is left out", bad)),
                "{bad:?}: {line}"
            );
            assert!(line.contains(why), "{bad:?}: {line}");
            assert!(!line.contains('\n') && !line.contains('\0'), "{line:?}");
        }
    }

    #[test]
    fn a_host_list_with_no_good_item_refuses_the_route() {
        for value in ["", " ", ",", " , ,", "a b", "a;b, c#d"] {
            let errs = errors(&[(HOSTS, value), (PORT, "80")]);
            assert!(!errs.is_empty(), "{value:?}");
            for e in &errs {
                assert!(
                    matches!(e, LabelError::Invalid { label, .. } if label == HOSTS),
                    "{value:?}: {e}"
                );
            }
        }
        assert_eq!(errors(&[(HOSTS, "a;b, c#d"), (PORT, "80")]).len(), 2);
        let (_, errs) = host_list(" , ");
        assert_eq!(
            errs,
            ["service web: label com.docker.lb.hosts=\" , \": empty: list at least one host"]
        );
    }

    #[test]
    fn a_host_with_a_port_is_refused_because_routing_strips_ports() {
        let (hosts, errs) = host_list("a.example,b.example:8080");
        assert_eq!(hosts, ["a.example"]);
        assert_eq!(
            errs,
            [
                "service web: label com.docker.lb.hosts=\"a.example,b.example:8080\": host \
              \"b.example:8080\" is left out: it has a port: routing matches the Host header \
              with its port stripped, write the host alone"
            ]
        );
    }

    #[test]
    fn ports_outside_1_to_65535_or_not_plain_decimal_are_refused() {
        for (bad, reason) in [
            ("0", "port 0"),
            ("70000", "out of range"),
            ("65536", "out of range"),
            ("99999999999999999999999", "out of range"),
            ("-1", "digits only"),
            ("+80", "digits only"),
            ("80 ", "character ' '"),
            (" 80", "character ' '"),
            ("0x50", "digits only"),
            ("080", "leading zero"),
            ("8o", "digits only"),
        ] {
            let e = parse_port("web", bad).unwrap_err();
            let line = e.to_string();
            assert!(
                line.starts_with("service web: label com.docker.lb.port="),
                "{line}"
            );
            assert!(line.contains(reason), "{bad:?}: {line}");
        }
        assert_eq!(parse_port("web", "1").unwrap(), 1);
        assert_eq!(parse_port("web", "65535").unwrap(), 65535);
    }

    #[test]
    fn an_unknown_mode_lists_the_accepted_values() {
        let e = parse_mode("web", "Vip").unwrap_err();
        assert_eq!(
            e.to_string(),
            "service web: label com.docker.lb.backend_mode=\"Vip\": unknown mode: accepted \
             values are default, task, vip"
        );
    }

    #[test]
    fn a_very_long_value_is_cut_in_the_error() {
        let e = parse_port("web", &"9".repeat(10_000)).unwrap_err();
        let LabelError::Invalid { value, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(value, &format!("{}...", "9".repeat(SHOWN_MAX)));
    }

    #[test]
    fn ip_hash_and_a_sticky_cookie_become_the_routes_options_without_warnings() {
        let p = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (IP_HASH, "true"),
            (STICKY_SESSION_COOKIE, "session_id-1.x"),
        ]))
        .unwrap();
        assert_eq!(p.warnings, vec![]);
        assert_eq!(
            p.route.expect("route").options,
            BackendOptions {
                ip_hash: true,
                sticky_cookie: Some("session_id-1.x".into()),
                failure_limit: None,
                backend_tls: None,
                passthrough: false,
            }
        );
        let plain = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (IP_HASH, "false"),
        ]))
        .unwrap()
        .route
        .expect("route");
        assert_eq!(plain.options, BackendOptions::default());
    }

    #[test]
    fn default_backend_adds_the_catch_all_key_to_the_hosts_in_either_mode() {
        for mode in ["default", "vip"] {
            let p = parse(&service(&[
                (HOSTS, "b.example,a.example"),
                (PORT, "80"),
                (BACKEND_MODE, mode),
                (DEFAULT_BACKEND, "true"),
            ]))
            .unwrap();
            assert_eq!(p.warnings, vec![]);
            let hosts: Vec<String> = p
                .route
                .expect("route")
                .hosts
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(hosts, ["-default-", "a.example", "b.example"], "{mode}");
        }
        let off = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (DEFAULT_BACKEND, "false"),
        ]))
        .unwrap();
        assert_eq!(off.route.expect("route").hosts, hosts(&["a.example"]));
        let bad = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (DEFAULT_BACKEND, "yes;show info"),
        ]))
        .unwrap();
        let errors = bad.route.expect_err("refused");
        assert!(
            matches!(errors.as_slice(), [LabelError::Invalid { label, .. }] if label == DEFAULT_BACKEND),
            "{errors:?}"
        );
    }

    #[test]
    fn the_hostile_corpus_is_refused_naming_service_and_label_and_nothing_reaches_a_route() {
        let big = "a".repeat(64 * 1024);
        let hostile: &[(&str, String)] = &[
            ("carriage return", "a.example\rb.example".to_owned()),
            ("nul", "a.example\0".to_owned()),
            ("vertical tab", "a.example\u{b}".to_owned()),
            ("form feed", "a\u{c}.example".to_owned()),
            ("tab inside", "a\t.example".to_owned()),
            (
                "newline then config",
                "a.example\n    server x 1.2.3.4:80".to_owned(),
            ),
            ("cyrillic look-alike", "\u{430}.example".to_owned()),
            ("fullwidth dot", "a\u{ff0e}example".to_owned()),
            ("zero-width space", "a\u{200b}.example".to_owned()),
            ("right-to-left override", "a\u{202e}.example".to_owned()),
            ("IDN, not punycode", "b\u{fc}cher.example".to_owned()),
            ("64 KiB", big.clone()),
        ];
        for (what, value) in hostile {
            for label in [
                HOSTS,
                PORT,
                BACKEND_MODE,
                NETWORK,
                CONTEXT_ROOT,
                WEIGHT,
                REDIRECTS,
            ] {
                let mut labels = vec![(HOSTS, "ok.example"), (PORT, "80")];
                labels.retain(|(k, _)| *k != label);
                labels.push((label, value.as_str()));
                let parsed = parse(&service(&labels)).unwrap();
                let problems: Vec<&LabelError> = match &parsed.route {
                    Verdict::Refused(errors) => errors.iter().collect(),
                    Verdict::Route(route) => {
                        // Only a network name passes syntax here (it is looked up later).
                        assert!(
                            label == NETWORK && *what == "64 KiB",
                            "{label} {what}: routed {route:?}"
                        );
                        continue;
                    }
                    Verdict::NoHosts => panic!("{label} {what}"),
                };
                assert!(!problems.is_empty(), "{label} {what}");
                for e in problems {
                    let line = e.to_string();
                    assert!(line.starts_with("service web: label "), "{line}");
                    assert!(line.contains(label), "{label} {what}: {line}");
                    assert!(
                        !line.contains(['\n', '\r', '\0']),
                        "{label} {what}: {line:?}"
                    );
                    assert!(line.len() < 600, "{label} {what}: {} bytes", line.len());
                }
            }
        }
    }

    #[test]
    fn ten_thousand_hosts_on_one_service_are_refused_as_one_error() {
        let many: Vec<String> = (0..10_000).map(|n| format!("h{n}.example")).collect();
        let errs = errors(&[(HOSTS, &many.join(",")), (PORT, "80")]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0]
                .to_string()
                .contains("10000 hosts: at most 1000 per service"),
            "{}",
            errs[0]
        );
        let fine: Vec<String> = (0..HOSTS_MAX).map(|n| format!("h{n}.example")).collect();
        assert_eq!(
            route(&[(HOSTS, &fine.join(",")), (PORT, "80")])
                .unwrap()
                .hosts
                .len(),
            HOSTS_MAX
        );
    }

    #[test]
    fn a_label_key_with_control_characters_is_shown_escaped_so_it_cannot_forge_a_log_line() {
        // Found by the labels fuzz target: the key was echoed raw into the warning.
        let parsed = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            ("com.docker.lb.h\rsts", "x"),
            ("com.docker.lb.x\n2026-01-01 ERROR forged", "x"),
            ("COM.DOCKER.LB.\u{202e}", "x"),
        ]))
        .unwrap();
        assert_eq!(parsed.warnings.len(), 3);
        for w in &parsed.warnings {
            let line = w.to_string();
            assert!(!line.contains(['\r', '\n', '\u{202e}']), "{line:?}");
        }
        assert!(
            parsed
                .warnings
                .iter()
                .any(|w| w.to_string().contains(r#""com.docker.lb.h\rsts""#)),
            "{:?}",
            parsed.warnings
        );
    }

    #[test]
    fn lb_keys_in_another_case_are_not_read_but_reported() {
        let parsed = parse(&service(&[
            ("Com.Docker.LB.hosts", "a.example"),
            ("COM.DOCKER.LB.PORT", "80"),
        ]))
        .expect("reported, not ignored");
        assert_eq!(parsed.route, Verdict::NoHosts);
        let lines: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "service web: label COM.DOCKER.LB.PORT is not read: label keys are case-sensitive, \
                 write com.docker.lb.port",
                "service web: label Com.Docker.LB.hosts is not read: label keys are case-sensitive, \
                 write com.docker.lb.hosts",
            ]
        );
        let mixed = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            ("com.docker.lb.Weight", "3"),
        ]))
        .unwrap();
        assert!(mixed.route.is_ok());
        assert_eq!(mixed.warnings.len(), 1);
    }

    #[test]
    fn max_fails_and_fail_timeout_become_a_failure_limit_with_nginx_defaults() {
        let limit = |labels: &[(&str, &str)]| {
            let mut all = vec![(HOSTS, "a.example"), (PORT, "80")];
            all.extend_from_slice(labels);
            route(&all).expect("route").options.failure_limit
        };
        let l = |max_fails, fail_timeout_ms| {
            Some(crate::model::FailureLimit {
                max_fails,
                fail_timeout_ms,
            })
        };
        assert_eq!(limit(&[]), None);
        assert_eq!(limit(&[(MAX_FAILS, "3"), (FAIL_TIMEOUT, "5s")]), l(3, 5000));
        assert_eq!(limit(&[(MAX_FAILS, "2")]), l(2, 10_000));
        assert_eq!(limit(&[(FAIL_TIMEOUT, "500ms")]), l(1, 500));
        assert_eq!(limit(&[(FAIL_TIMEOUT, "2m")]), l(1, 120_000));
        assert_eq!(limit(&[(FAIL_TIMEOUT, "30")]), l(1, 30_000));
        assert_eq!(
            limit(&[(MAX_FAILS, "0"), (FAIL_TIMEOUT, "30")]),
            None,
            "0 is off"
        );
        for (label, bad) in [
            (MAX_FAILS, "-1"),
            (MAX_FAILS, "1001"),
            (MAX_FAILS, "03"),
            (MAX_FAILS, "x"),
            (FAIL_TIMEOUT, "0"),
            (FAIL_TIMEOUT, "61m"),
            (FAIL_TIMEOUT, "5h"),
            (FAIL_TIMEOUT, "1.5s"),
            (FAIL_TIMEOUT, "s"),
            (FAIL_TIMEOUT, "10 s"),
            (FAIL_TIMEOUT, "99999999999999999999s"),
        ] {
            let errs = errors(&[(HOSTS, "a.example"), (PORT, "80"), (label, bad)]);
            assert!(
                matches!(errs.as_slice(), [LabelError::Invalid { label: l, .. }] if l == label),
                "{label}={bad:?}: {errs:?}"
            );
        }
    }

    #[test]
    fn context_root_weight_and_redirect_labels_are_checked_naming_the_label() {
        let base = [(HOSTS, "a.example"), (PORT, "80")];
        let ok = |labels: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(labels);
            route(&all).expect("route")
        };
        let r = ok(&[
            (CONTEXT_ROOT, "/api/v1/"),
            (CONTEXT_ROOT_REWRITE, "true"),
            (WEIGHT, "0"),
        ]);
        assert_eq!(
            r.context_root.as_ref().map(ContextRoot::as_str),
            Some("/api/v1")
        );
        assert!(r.rewrite);
        assert_eq!(r.weight, Some(0));
        let r = ok(&[(
            REDIRECTS,
            " http://a.example/old , https://b.example:8443/new ;",
        )]);
        assert_eq!(r.redirects.len(), 1);
        assert_eq!(r.redirects[0].target, "https://b.example:8443/new");
        assert_eq!(r.redirects[0].code, 302, "Interlock's code by default");
        for (label, bad, reason) in [
            (CONTEXT_ROOT, "app", "not a context root"),
            (CONTEXT_ROOT, "/", "not a context root"),
            (CONTEXT_ROOT, "/a/../b", "not a context root"),
            (CONTEXT_ROOT, "/a b", "character ' '"),
            (CONTEXT_ROOT, "/a;b", "character ';'"),
            (CONTEXT_ROOT, "/a|b", "not a context root"),
            (CONTEXT_ROOT, "/a%2e%2e", "not a context root"),
            (CONTEXT_ROOT, "/a\nb", "character '\\n'"),
            (CONTEXT_ROOT_REWRITE, "yes", "true and false"),
            (WEIGHT, "-1", "not a weight"),
            (WEIGHT, "10001", "not a weight"),
            (WEIGHT, "1.5", "not a weight"),
            (REDIRECT_CODE, "303", "301, 302, 307 and 308"),
            (REDIRECTS, "http://a.example", "not a `source,target` pair"),
            (
                REDIRECTS,
                "http://a.example,http://b.example,http://c.example",
                "pair",
            ),
            (
                REDIRECTS,
                "https://a.example,http://b.example",
                "only http://host[/path] sources",
            ),
            (
                REDIRECTS,
                "http://a.example:8080,http://b.example",
                "only http://host[/path]",
            ),
            (REDIRECTS, "ftp://a.example,http://b.example", "scheme"),
            (REDIRECTS, "a.example,b.example", "not a URL"),
            (REDIRECTS, "http://a.example,http://b.example/x?y=1", "path"),
            (
                REDIRECTS,
                "http://a.example,http://b example",
                "character ' '",
            ),
            (REDIRECTS, "http://a.example,http://b.example/a|b", "path"),
            (REDIRECTS, "http://a.example,http://b.example:0", "port"),
            (REDIRECTS, ";", "empty"),
        ] {
            let mut all = base.to_vec();
            all.push((label, bad));
            let errs = errors(&all);
            assert_eq!(errs.len(), 1, "{label}={bad:?}: {errs:?}");
            let line = errs[0].to_string();
            assert!(
                line.starts_with(&format!("service web: label {label}=")),
                "{line}"
            );
            assert!(line.contains(reason), "{label}={bad:?}: {line}");
        }
    }

    #[test]
    fn websocket_endpoints_are_checked_and_need_nothing_else_in_either_mode() {
        for mode in ["default", "vip"] {
            let p = parse(&service(&[
                (HOSTS, "a.example"),
                (PORT, "80"),
                (BACKEND_MODE, mode),
                (WEBSOCKET_ENDPOINTS, "/ws,/live/feed"),
            ]))
            .unwrap();
            assert!(p.route.is_ok(), "{mode}");
            assert_eq!(p.warnings, vec![], "{mode}");
        }
        // Written by hand, like host lists: trimmed, empty items skipped with a warning.
        let p = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (WEBSOCKET_ENDPOINTS, " /ws , /live,"),
        ]))
        .unwrap();
        assert!(p.route.is_ok());
        assert_eq!(
            p.warnings,
            vec![LabelError::EmptyItems {
                service: "web".to_owned(),
                label: WEBSOCKET_ENDPOINTS.to_owned()
            }]
        );
        for bad in [
            "ws",
            "/ws, live",
            "/a b",
            "/ws;show info",
            "/ws\nserver x 1.2.3.4:80",
        ] {
            let p = parse(&service(&[
                (HOSTS, "a.example"),
                (PORT, "80"),
                (WEBSOCKET_ENDPOINTS, bad),
            ]))
            .unwrap();
            let errors = p.route.expect_err(bad);
            assert!(
                matches!(errors.as_slice(), [LabelError::Invalid { label, .. }] if label == WEBSOCKET_ENDPOINTS),
                "{bad:?}: {errors:?}"
            );
        }
    }

    #[test]
    fn a_bad_or_hostile_option_label_is_an_error_naming_it_and_leaves_the_route_out() {
        let long = "c".repeat(65);
        let smuggle = |ch| Reason::Syntax { ch, in_host: false };
        for (label, value, reason) in [
            (IP_HASH, "yes", Reason::NotABool),
            (IP_HASH, "", Reason::NotABool),
            (STICKY_SESSION_COOKIE, "", Reason::NotACookieName),
            (STICKY_SESSION_COOKIE, "a=b", Reason::NotACookieName),
            (STICKY_SESSION_COOKIE, "a,b", Reason::NotACookieName),
            (STICKY_SESSION_COOKIE, long.as_str(), Reason::NotACookieName),
            (
                STICKY_SESSION_COOKIE,
                "sid\n    server x 10.9.9.9:80",
                smuggle('\n'),
            ),
            (STICKY_SESSION_COOKIE, "sid insert", smuggle(' ')),
            (STICKY_SESSION_COOKIE, "sid;show info", smuggle(';')),
            (STICKY_SESSION_COOKIE, "sid#x", smuggle('#')),
        ] {
            let p = parse(&service(&[
                (HOSTS, "a.example"),
                (PORT, "80"),
                (label, value),
            ]))
            .unwrap();
            let errors = p.route.expect_err(value);
            assert!(
                matches!(
                    errors.as_slice(),
                    [LabelError::Invalid { service, label: l, reason: r, .. }]
                        if service == "web" && l == label && **r == reason
                ),
                "{label}={value:?}: {errors:?}"
            );
        }
    }

    fn tls_of(labels: &[(&str, &str)]) -> (RouteTls, Option<BackendTls>, Vec<String>) {
        let mut all = vec![(HOSTS, "a.example"), (PORT, "80")];
        all.extend_from_slice(labels);
        let p = parse(&service(&all)).unwrap();
        let left_out = p.left_out.iter().map(ToString::to_string).collect();
        assert_eq!(p.warnings, vec![], "TLS labels are known");
        let r = p.route.expect("a TLS problem never refuses the HTTP route");
        (r.tls, r.options.backend_tls, left_out)
    }

    #[test]
    fn a_certificate_and_key_pair_names_two_secrets() {
        let (tls, _, errors) = tls_of(&[(SSL_CERT, "web.crt"), (SSL_KEY, "web-key_2")]);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(
            tls.cert,
            Some(Box::new(CertSecrets {
                cert: "web.crt".into(),
                key: "web-key_2".into()
            }))
        );
    }

    #[test]
    fn half_a_pair_or_a_bad_secret_name_is_left_out_naming_service_and_label() {
        let (tls, _, errors) = tls_of(&[(SSL_CERT, "web.crt")]);
        assert_eq!(tls.cert, None);
        assert_eq!(
            errors,
            [
                "service web: label com.docker.lb.ssl_cert needs com.docker.lb.ssl_key too: HTTPS \
              is not terminated for it"
            ]
        );
        let (tls, _, errors) = tls_of(&[(SSL_CERT, "-bad"), (SSL_KEY, "k")]);
        assert_eq!(tls.cert, None);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with(
                "service web: label com.docker.lb.ssl_cert=\"-bad\": not a Docker secret name"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn ssl_only_and_passthrough_are_booleans() {
        let (tls, _, errors) = tls_of(&[(SSL_ONLY, "true"), (SSL_PASSTHROUGH, "true")]);
        assert_eq!(errors, Vec::<String>::new());
        assert!(tls.only && tls.passthrough);
        let (tls, _, errors) = tls_of(&[(SSL_ONLY, "yes")]);
        assert!(!tls.only);
        assert_eq!(
            errors,
            ["service web: label com.docker.lb.ssl_only=\"yes\": accepted values are true and false"]
        );
    }

    #[test]
    fn passthrough_with_redirects_is_refused_naming_service_and_label_and_the_redirects_stand() {
        let (tls, _, errors) = tls_of(&[
            (SSL_PASSTHROUGH, "true"),
            (REDIRECTS, "http://a.example,https://a.example"),
        ]);
        assert!(!tls.passthrough);
        assert_eq!(
            errors,
            [
                "service web: label com.docker.lb.ssl_passthrough=\"true\": does not combine with \
              com.docker.lb.redirects (Interlock's rule): passthrough is left out"
            ]
        );
    }

    #[test]
    fn passthrough_with_a_certificate_leaves_the_certificate_out() {
        let (tls, _, errors) =
            tls_of(&[(SSL_PASSTHROUGH, "true"), (SSL_CERT, "c"), (SSL_KEY, "k")]);
        assert!(tls.passthrough);
        assert_eq!(tls.cert, None);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("com.docker.lb.ssl_cert"), "{errors:?}");
    }

    #[test]
    fn ssl_backend_verifies_by_default_and_not_with_none() {
        assert_eq!(
            tls_of(&[(SSL_BACKEND, "true")]).1,
            Some(BackendTls { verify: true })
        );
        assert_eq!(
            tls_of(&[(SSL_BACKEND, "true"), (SSL_BACKEND_TLS_VERIFY, "none")]).1,
            Some(BackendTls { verify: false })
        );
        assert_eq!(tls_of(&[(SSL_BACKEND_TLS_VERIFY, "none")]).1, None);
        let (_, backend, errors) =
            tls_of(&[(SSL_BACKEND, "true"), (SSL_BACKEND_TLS_VERIFY, "optional")]);
        assert_eq!(
            backend, None,
            "a bad verify value never turns verification off"
        );
        assert_eq!(
            errors,
            [
                "service web: label com.docker.lb.ssl_backend_tls_verify=\"optional\": accepted \
              values are none and required"
            ]
        );
    }

    #[test]
    fn ssl_backend_works_in_vip_mode_too() {
        let (_, backend, errors) = tls_of(&[(BACKEND_MODE, "vip"), (SSL_BACKEND, "true")]);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(backend, Some(BackendTls { verify: true }));
    }

    #[test]
    fn per_task_labels_on_a_vip_service_say_vip_mode_does_not_offer_them() {
        let p = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (BACKEND_MODE, "vip"),
            (STICKY_SESSION_COOKIE, "session"),
            (WEBSOCKET_ENDPOINTS, "/ws"),
            (IP_HASH, "true"),
        ]))
        .unwrap();
        assert!(p.route.is_ok());
        let kinds: Vec<&str> = p
            .warnings
            .iter()
            .map(|w| match w {
                LabelError::NotInVipMode { label, .. } => label.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kinds, vec![IP_HASH, STICKY_SESSION_COOKIE]);
        assert!(p.warnings[0]
            .to_string()
            .contains("not offered in vip mode"));
    }

    #[test]
    fn a_misspelled_lb_label_is_a_warning_naming_it() {
        let p = parse(&service(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            ("com.docker.lb.host", "b.example"),
        ]))
        .unwrap();
        assert!(p.route.is_ok());
        assert_eq!(
            p.warnings,
            vec![LabelError::Unknown {
                service: "web".into(),
                label: "com.docker.lb.host".into()
            }]
        );
        assert!(p.warnings[0]
            .to_string()
            .contains("com.docker.lb.host is not a label swarm-lb knows"));
    }

    #[test]
    fn a_service_name_that_cannot_name_a_backend_is_an_error_on_that_service() {
        let mut s = service(&[(HOSTS, "a.example"), (PORT, "80")]);
        s.name = "-web".to_owned();
        let errs = parse(&s).unwrap().route.unwrap_err();
        assert!(
            matches!(&errs[..], [LabelError::Service { service, .. }] if service == "-web"),
            "{errs:?}"
        );
    }
}
