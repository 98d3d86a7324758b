//! `swarm-lb check`: what swarm-lb would do with every service of a Swarm, before it runs
//! there (the step of a migration from Interlock). [`check`] is pure: a [`Snapshot`] and the
//! model's settings in, one [`ServiceCheck`] per service out, through [`crate::model::desired`],
//! the very function the daemon builds its routing with, so a refusal reads here as the
//! daemon would log it. [`exit_status`] is what a migration script branches on, [`render`]
//! the text an operator reads. Nothing here reaches HAProxy or writes a file; the command's
//! shell (`commands.rs`) only lists Swarm.

pub mod interlock;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::model::labels::{self, keys, Applies, LabelError};
use crate::model::{self, Mode, Service, Snapshot};

pub use interlock::{InterlockOption, INTERLOCK_LABELS, INTERLOCK_OPTIONS};

/// What swarm-lb would do with one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceCheck {
    pub service: String,
    /// The Swarm service ID.
    pub id: String,
    #[serde(flatten)]
    pub verdict: CheckVerdict,
    /// Errors on parts of a routed service that are left out (a malformed host among good
    /// ones, a conflicting redirect), as the daemon logs them: the service does not route
    /// entirely as labelled.
    pub errors: Vec<String>,
    /// Labels ignored or stood in for (unknown, misspelt, not offered in vip mode), as the
    /// daemon logs them.
    pub warnings: Vec<String>,
    /// The service's Interlock labels that swarm-lb reads differently from Interlock.
    pub changed: Vec<Changed>,
}

/// The verdict on one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum CheckVerdict {
    /// swarm-lb routes it.
    Routed {
        /// Host names, sorted; `*` for the default backend.
        hosts: Vec<String>,
        port: u16,
        /// `task` (the tasks' addresses in slots) or `vip` (the service's VIP).
        mode: &'static str,
        /// The network HAProxy reaches it on (its name).
        network: String,
        /// The HAProxy backend.
        backend: String,
        /// The other labels in force, `label=value` with the `com.docker.lb.` prefix left out.
        options: Vec<String>,
    },
    /// swarm-lb refuses its labels and does not route it; each error as the daemon logs it.
    Refused { refused: Vec<String> },
    /// Not routed by this swarm-lb, and nothing wrong: why.
    Ignored { reason: String },
    /// One of Interlock's own services, which swarm-lb replaces: its configuration options
    /// become swarm-lb flags.
    Interlock { options: Vec<InterlockOption> },
}

/// One Interlock label on a service that swarm-lb reads differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub label: String,
    pub swarm_lb: &'static str,
}

/// What `swarm-lb check` exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    /// 0: every service this swarm-lb would serve routes as labelled (changes of meaning and,
    /// without `--strict`, warnings are reported but do not count).
    Routable = 0,
    /// 1: at least one service is refused or routed with part of its labels left out (with
    /// `--strict`: or carries a warning).
    Refused = 1,
    /// 2: Docker could not be reached or listed (nothing was checked), or the report could
    /// not be written (stdout closed). clap's usage errors exit 2 as well.
    Unreachable = 2,
}

/// Every service of `snap`, by name, as swarm-lb with `settings` would take it: the same
/// [`model::desired`] the daemon runs, with no last good routes (a first start).
pub fn check(snap: &Snapshot, settings: &model::Settings) -> Vec<ServiceCheck> {
    let desired = model::desired(snap, settings, &BTreeMap::new());
    let by_service = |list: &[LabelError], name: &str| -> Vec<String> {
        list.iter()
            .filter(|e| e.service() == name)
            .map(ToString::to_string)
            .collect()
    };
    let mut services: Vec<&Service> = snap.services.iter().map(AsRef::as_ref).collect();
    services.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    services
        .into_iter()
        .map(|service| {
            let name = service.name.as_str();
            let mut errors = by_service(&desired.errors, name);
            let cluster = settings.service_cluster.as_deref();
            let verdict = if interlock::is_interlock_service(name) {
                CheckVerdict::Interlock {
                    options: INTERLOCK_OPTIONS.to_vec(),
                }
            } else if !labels::routed_here(service, cluster) {
                CheckVerdict::Ignored {
                    reason: not_here(service, cluster),
                }
            } else if let Some(in_force) = desired.routes.get(&service.id) {
                routed(snap, &desired, in_force, service)
            } else if !errors.is_empty() {
                CheckVerdict::Refused {
                    refused: std::mem::take(&mut errors),
                }
            } else {
                CheckVerdict::Ignored {
                    reason: by_service(&desired.notices, name).join("; "),
                }
            };
            ServiceCheck {
                service: name.to_owned(),
                id: service.id.clone(),
                verdict,
                errors,
                warnings: by_service(&desired.warnings, name),
                changed: changed(service),
            }
        })
        .collect()
}

/// The verdict on a service the desired routing holds.
fn routed(
    snap: &Snapshot,
    desired: &model::Desired,
    in_force: &model::RouteInForce,
    service: &Service,
) -> CheckVerdict {
    let route = &in_force.route;
    // The mode in force: a vip route on a service without a VIP runs in task mode (with the
    // options of the vip mode it is labelled with).
    let mode = desired
        .backends
        .get(&route.backend)
        .map_or(route.mode, |b| b.mode);
    let network = snap
        .networks
        .iter()
        .find(|n| n.id == in_force.network)
        .map_or_else(|| in_force.network.clone(), |n| n.name.clone());
    let hosts = route.hosts.iter().map(|h| match h.is_catch_all() {
        true => "*".to_owned(),
        false => h.to_string(),
    });
    CheckVerdict::Routed {
        hosts: hosts.collect(),
        port: route.port,
        mode: match mode {
            Mode::Task => "task",
            Mode::Vip => "vip",
        },
        network,
        backend: route.backend.to_string(),
        options: options(service, route.mode),
    }
}

/// Why a proxy serving `cluster` does not take `service` ([`labels::routed_here`] said no).
fn not_here(service: &Service, cluster: Option<&str>) -> String {
    // The daemon's own rule for "no labels to read".
    if labels::parse(service).is_none() {
        return "no com.docker.lb.* labels".to_owned();
    }
    let ours = match cluster {
        Some(c) => format!("this check's --service-cluster is {c:?}"),
        None => "this check has no --service-cluster".to_owned(),
    };
    let Some(theirs) = service.labels.get(keys::SERVICE_CLUSTER) else {
        return format!(
            "no {} label: served by a swarm-lb without --service-cluster ({ours})",
            keys::SERVICE_CLUSTER
        );
    };
    format!(
        "{}={theirs:?}: served by the swarm-lb started with --service-cluster {theirs:?} \
         ({ours})",
        keys::SERVICE_CLUSTER
    )
}

/// The labels in force besides hosts, port, network and mode, as `label=value`: those
/// swarm-lb reads ([`keys::known`]) and applies in `mode`.
fn options(service: &Service, mode: Mode) -> Vec<String> {
    const SHOWN_ELSEWHERE: [&str; 5] = [
        keys::HOSTS,
        keys::PORT,
        keys::NETWORK,
        keys::BACKEND_MODE,
        keys::SERVICE_CLUSTER,
    ];
    service
        .labels
        .iter()
        .filter(|(k, _)| !SHOWN_ELSEWHERE.contains(&k.as_str()))
        .filter(|(k, _)| {
            keys::known(k).is_some_and(|row| row.applies == Applies::AnyMode || mode == Mode::Task)
        })
        .map(|(k, v)| format!("{}={}", k.strip_prefix(keys::PREFIX).unwrap_or(k), shown(v)))
        .collect()
}

/// A label value as the report shows it: as written when it is printable ASCII, else quoted
/// with its control and other characters escaped, so that no value can forge a line of the
/// report or reach the terminal as an escape sequence.
fn shown(value: &str) -> String {
    match value.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        true => value.to_owned(),
        false => format!("{value:?}"),
    }
}

/// The service's Interlock labels that swarm-lb reads differently.
fn changed(service: &Service) -> Vec<Changed> {
    service
        .labels
        .iter()
        .filter_map(|(k, v)| {
            let how = interlock::interlock_label(k)?.differs(v)?;
            Some(Changed {
                label: k.clone(),
                swarm_lb: how,
            })
        })
        .collect()
}

/// The exit status of a check that found `checks`. `strict`: a warning counts as a refusal.
pub fn exit_status(checks: &[ServiceCheck], strict: bool) -> ExitStatus {
    let refused = checks.iter().any(|c| {
        matches!(c.verdict, CheckVerdict::Refused { .. })
            || !c.errors.is_empty()
            || (strict && !c.warnings.is_empty())
    });
    match refused {
        true => ExitStatus::Refused,
        false => ExitStatus::Routable,
    }
}

/// The text `swarm-lb check` prints: one block per service, then a count, then (when
/// Interlock's own services were found) the table of its options and their flags.
pub fn render(checks: &[ServiceCheck]) -> String {
    let mut out = String::new();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for c in checks {
        let kind = match &c.verdict {
            CheckVerdict::Routed {
                hosts,
                port,
                mode,
                network,
                backend,
                options,
            } => {
                let _ = writeln!(
                    out,
                    "routed    {}: {} -> port {port}, mode {mode}, network {network}, backend {backend}",
                    c.service,
                    hosts.join(",")
                );
                if !options.is_empty() {
                    let _ = writeln!(out, "  options: {}", options.join(" "));
                }
                "routed"
            }
            CheckVerdict::Refused { refused } => {
                let _ = writeln!(out, "refused   {}", c.service);
                for e in refused {
                    let _ = writeln!(out, "  error: {e}");
                }
                "refused"
            }
            CheckVerdict::Ignored { reason } => {
                let _ = writeln!(out, "ignored   {}: {reason}", c.service);
                "ignored"
            }
            CheckVerdict::Interlock { .. } => {
                let _ = writeln!(
                    out,
                    "interlock {}: Interlock's own service; swarm-lb replaces it (its options \
                     become flags, below)",
                    c.service
                );
                "interlock"
            }
        };
        *count.entry(kind).or_default() += 1;
        for e in &c.errors {
            let _ = writeln!(out, "  error: {e}");
        }
        for w in &c.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
        for ch in &c.changed {
            let _ = writeln!(
                out,
                "  changed from Interlock: {}: {}",
                ch.label, ch.swarm_lb
            );
        }
    }
    let summary: Vec<String> = count.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(
        out,
        "# {} service{}: {}",
        checks.len(),
        if checks.len() == 1 { "" } else { "s" },
        match summary.is_empty() {
            true => "none".to_owned(),
            false => summary.join(", "),
        }
    );
    if count.contains_key("interlock") {
        let _ = writeln!(
            out,
            "# Interlock's configuration options and swarm-lb's flags:"
        );
        for o in INTERLOCK_OPTIONS {
            let _ = writeln!(
                out,
                "#   {} -> {}{}{}",
                o.option,
                o.flag.unwrap_or("(no flag)"),
                if o.note.is_empty() { "" } else { ": " },
                o.note
            );
        }
    }
    out
}

#[cfg(test)]
mod tests;
