//! [`LabelError`]: what is wrong with a service's labels, naming the service and the label.

use super::keys::{
    BACKEND_MODE, DEFAULT_BACKEND, HOSTS, IP_HASH, REDIRECTS, STICKY_SESSION_COOKIE,
};
use crate::model::Reason;

/// Longest value quoted back in an error: a 10 kB label must not become a 10 kB log line.
pub(super) const SHOWN_MAX: usize = 64;

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
pub(super) fn shown_key(key: &str) -> String {
    let cut = shown(key);
    if cut.chars().all(|c| c.is_ascii_graphic()) {
        cut
    } else {
        format!("{cut:?}")
    }
}

pub(super) fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_MAX) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    }
}
