//! [`LabelError`]: what is wrong with a service's labels, naming the service and the label.

use super::keys::{
    BACKEND_MODE, DEFAULT_BACKEND, HOSTS, IP_HASH, REDIRECTS, STICKY_SESSION_COOKIE,
};
use std::fmt;

use crate::model::Reason;

/// Longest value quoted back in an error: a 10 kB label must not become a 10 kB log line.
pub(super) const SHOWN_MAX: usize = 64;

/// Why a service is not routed (or keeps its last good route), or, for the warning variants,
/// what part of its labels is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelError {
    Invalid {
        service: String,
        label: String,
        /// The value as written, cut to a few dozen characters.
        value: String,
        /// Boxed: errors travel in `Result`s, which stay small.
        reason: Box<Reason>,
    },
    Missing {
        service: String,
        label: String,
    },
    Service {
        service: String,
        reason: Box<Reason>,
    },
    /// Services share a route (a canary) while one of them pins clients to tasks (sticky
    /// cookie, ip_hash), which cannot hold across services: the first by name keeps it.
    SharedRoute {
        service: String,
        route: String,
        owner: String,
        pinning: String,
    },
    /// A redirect whose source another service routes, or an earlier redirect took.
    RedirectConflict {
        service: String,
        from: String,
        owner: String,
    },
    /// Following the redirects from this one comes back to it.
    RedirectLoop {
        service: String,
        from: String,
        target: String,
    },
    /// Two services ask to be the default backend: the one whose name sorts first is.
    DefaultConflict {
        service: String,
        owner: String,
    },
    /// Warning: a per-task feature on a vip service.
    NotInVipMode {
        service: String,
        label: String,
    },
    /// Warning: a `com.docker.lb.*` key in another case (`Com.Docker.LB.Hosts`): label keys are
    /// case-sensitive, so it is not read.
    WrongCase {
        service: String,
        label: String,
        expected: String,
    },
    /// Warning: a `com.docker.lb.*` label nobody knows, most likely misspelled.
    Unknown {
        service: String,
        label: String,
    },
    /// Warning: a list label with empty items (a comma at an end, two in a row); they are
    /// skipped.
    EmptyItems {
        service: String,
        label: String,
    },
    /// Warning: `backend_mode=vip` on a service Swarm gives no VIP (`--endpoint-mode dnsrr`):
    /// routed to its task addresses instead until it has one.
    NoVip {
        service: String,
        network: String,
    },
    /// Notice (info): the service has `com.docker.lb.*` labels but no hosts label (and is not
    /// the default backend), e.g. after `docker service update --label-rm
    /// com.docker.lb.hosts`: the operator asked for no routing, so it is unrouted.
    NoHosts {
        service: String,
    },
    /// Warning: the service's labels (or network) are wrong now, it keeps the last route that
    /// worked.
    KeptLastGood {
        service: String,
    },
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "service {}: {}", self.service(), self.detail())
    }
}

impl std::error::Error for LabelError {}

/// [`LabelError::detail`].
pub struct Detail<'a>(&'a LabelError);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            LabelError::Invalid {
                label,
                value,
                reason,
                ..
            } => write!(f, "label {label}={value:?}: {reason}"),
            LabelError::Missing { label, .. } => write!(f, "label {label} is required"),
            LabelError::Service { reason, .. } => write!(f, "{reason}"),
            LabelError::SharedRoute {
                route,
                owner,
                pinning,
                ..
            } => write!(
                f,
                "route {route} is shared with service {owner}, and service {pinning} \
                     pins clients to its tasks ({STICKY_SESSION_COOKIE} or {IP_HASH}), \
                     which cannot hold across services: the route stays with service \
                     {owner}; remove the label or the shared host to split it"
            ),
            LabelError::RedirectConflict { from, owner, .. } => write!(
                f,
                "label {REDIRECTS}: source {from} is already routed or redirected by \
                     service {owner}; this redirect is ignored"
            ),
            LabelError::RedirectLoop { from, target, .. } => write!(
                f,
                "label {REDIRECTS}: {from} -> {target} would loop (the target is \
                     redirected again, back to the source); this redirect is ignored"
            ),
            LabelError::DefaultConflict { owner, .. } => write!(
                f,
                "label {DEFAULT_BACKEND}: service {owner} is already the default \
                     backend; ignored for this service"
            ),
            LabelError::NotInVipMode { label, .. } => write!(
                f,
                "label {label} is not offered in vip mode (Swarm's VIP spreads traffic \
                     over the tasks); ignored, use {BACKEND_MODE}=default for it"
            ),
            LabelError::WrongCase {
                label, expected, ..
            } => write!(
                f,
                "label {label} is not read: label keys are case-sensitive, write \
                     {expected}"
            ),
            LabelError::Unknown { label, .. } => write!(
                f,
                "label {label} is not a label swarm-lb knows (misspelled?); ignored"
            ),
            LabelError::EmptyItems { label, .. } => write!(
                f,
                "label {label} has empty items (a comma at an end or two in a row); \
                     they are skipped"
            ),
            LabelError::NoVip { network, .. } => write!(
                f,
                "label {BACKEND_MODE}=vip: the service has no VIP on network {network} \
                     (endpoint mode dnsrr?); routed to its task addresses (default mode) \
                     until it has one (`docker service update --endpoint-mode vip`)"
            ),
            LabelError::NoHosts { .. } => write!(
                f,
                "label {HOSTS} is not set, so the service is not routed (set it, or \
                     {DEFAULT_BACKEND}=true, to route it)"
            ),
            LabelError::KeptLastGood { .. } => write!(
                f,
                "keeps its last good routing until the errors on it are fixed"
            ),
        }
    }
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

    /// The label the problem is on, as status and metrics name it: `None` for a problem of
    /// the service as a whole (its name, its network, its last good routing).
    pub fn label(&self) -> Option<&str> {
        match self {
            Self::Invalid { label, .. }
            | Self::Missing { label, .. }
            | Self::NotInVipMode { label, .. }
            | Self::Unknown { label, .. }
            | Self::EmptyItems { label, .. }
            | Self::WrongCase { label, .. } => Some(label),
            Self::SharedRoute { .. } | Self::NoHosts { .. } => Some(HOSTS),
            Self::RedirectConflict { .. } | Self::RedirectLoop { .. } => Some(REDIRECTS),
            Self::DefaultConflict { .. } => Some(DEFAULT_BACKEND),
            Self::NoVip { .. } => Some(BACKEND_MODE),
            // Half a certificate pair is a problem of the label that is missing.
            Self::Service { reason, .. } => match **reason {
                Reason::HalfCertPair { absent, .. } => Some(absent),
                _ => None,
            },
            Self::KeptLastGood { .. } => None,
        }
    }

    /// Whether the problem only restates the service's other errors ("keeps its last good
    /// routing"): a status line, not a problem of its own to count.
    pub fn restates_other_errors(&self) -> bool {
        matches!(self, Self::KeptLastGood { .. })
    }

    /// What is wrong, without the service: the error's text after `service <name>: `.
    pub fn detail(&self) -> Detail<'_> {
        Detail(self)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_reads_service_then_detail_and_names_its_label_without_parsing_text() {
        let s = || "web".to_owned();
        let cases = [
            (
                LabelError::invalid("web", HOSTS, "a b", Reason::NotABool),
                Some(HOSTS),
            ),
            (
                LabelError::Missing {
                    service: s(),
                    label: "com.docker.lb.port".into(),
                },
                Some("com.docker.lb.port"),
            ),
            (
                LabelError::RedirectLoop {
                    service: s(),
                    from: "a".into(),
                    target: "b".into(),
                },
                Some(REDIRECTS),
            ),
            (
                LabelError::DefaultConflict {
                    service: s(),
                    owner: "api".into(),
                },
                Some(DEFAULT_BACKEND),
            ),
            (
                LabelError::NoVip {
                    service: s(),
                    network: "front".into(),
                },
                Some(BACKEND_MODE),
            ),
            (LabelError::NoHosts { service: s() }, Some(HOSTS)),
            (LabelError::KeptLastGood { service: s() }, None),
        ];
        for (e, label) in cases {
            assert_eq!(e.label(), label, "{e:?}");
            assert_eq!(e.to_string(), format!("service web: {}", e.detail()));
            assert_eq!(
                e.restates_other_errors(),
                matches!(e, LabelError::KeptLastGood { .. })
            );
        }
    }
}
