//! What operators see: the Prometheus [`metrics`], the health of the loops, the [`status`]
//! view (and its HTML [`page`]), and the names of applied [`changes`] for the logs.
//! [`Observer`] is the state shared between the reconciler, the watcher and the [`http`]
//! handlers: metric handles (atomics) and one `parking_lot` mutex, never held across an
//! `.await`.
//!
//! `changes`, `convergence`, `status` and `page` (the HTML of `/`) are pure; `http` is the
//! only I/O here.

pub mod changes;
pub mod convergence;
pub mod http;
pub mod metrics;
pub mod page;
pub mod status;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::haproxy::{BackendState, ProxyState, Server};
use crate::model::{BackendName, Desired, LabelError, Snapshot};

pub use changes::ReloadReason;
pub use convergence::{Convergence, Phase, TaskTimes};
pub use metrics::Metrics;
pub use status::{Certificate, HintSource, Problem, Status};

/// Shared by the reconciler, the watcher and the HTTP handlers (behind an `Arc`).
pub struct Observer {
    pub metrics: Metrics,
    /// Task timestamps older than this are not kept: convergence is measured for changes
    /// swarm-lb saw happen.
    started: SystemTime,
    /// `/healthz` fails when the reconciler loop has not come round for this long.
    stall: Duration,
    shared: Mutex<Shared>,
}

#[derive(Default)]
struct Shared {
    snapshot: Option<Arc<Snapshot>>,
    problems: Vec<Problem>,
    /// The label-problem series exported, so fixed ones go to 0.
    problem_series: BTreeSet<metrics::ProblemLabels>,
    /// The certificate-expiry series exported, so a certificate no longer served loses its.
    cert_series: BTreeSet<metrics::CertLabels>,
    /// Backends with slot series, so a removed backend's series go.
    /// Each backend as the slot gauges last showed it.
    backends: HashMap<BackendName, Arc<BackendState>>,
    haproxy_version: Option<String>,
    passes_ok: u64,
    /// Passes, reloads and certificates as the status view shows them.
    passes: status::Passes,
    certificates: Vec<Certificate>,
    last_pass_ok: bool,
    last_error: Option<String>,
    docker_ok: bool,
    haproxy_ok: bool,
    beat: Option<Instant>,
    task_times: HashMap<String, TaskTimes>,
    /// Service id -> the earliest Docker event naming it not yet followed by a pass that
    /// changed HAProxy for it.
    events: HashMap<String, SystemTime>,
    /// Hint agents followed, by address.
    hint_sources: std::collections::BTreeMap<String, HintSource>,
}

/// What `/healthz` and `/readyz` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The reconciler loop came round within the stall limit.
    pub alive: bool,
    /// Alive, a pass succeeded and the last one did, Docker and HAProxy's admin socket answer.
    pub ready: bool,
    /// Why not, one line each (empty when ready).
    pub reasons: Vec<String>,
}

/// Events older than this without a pass changing their service led to no change: dropped.
const EVENT_HORIZON: Duration = Duration::from_secs(120);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("started", &self.started)
            .field("stall", &self.stall)
            .finish_non_exhaustive()
    }
}

impl Default for Observer {
    fn default() -> Self {
        Self::new(Duration::from_secs(120))
    }
}

impl Observer {
    /// `stall`: how long the reconciler loop may go without coming round before `/healthz`
    /// fails (it comes round at least every proxy check; a reload may hold it up to the
    /// reload timeout).
    pub fn new(stall: Duration) -> Self {
        Observer {
            metrics: Metrics::new(),
            started: SystemTime::now(),
            stall,
            shared: Mutex::new(Shared::default()),
        }
    }

    /// The reconciler loop came round.
    pub fn beat(&self) {
        self.shared.lock().beat = Some(Instant::now());
    }

    /// The snapshot passes now work from (for task names in the status view).
    pub fn snapshot(&self, snap: Arc<Snapshot>) {
        self.shared.lock().snapshot = Some(snap);
    }

    /// The served certificates' notAfter (unix seconds) by (service, certificate secret):
    /// `swarm_lb_certificate_expiry_timestamp_seconds`, a series each, removed when its
    /// certificate is no longer served.
    pub fn cert_expiries(&self, expiries: &std::collections::BTreeMap<(String, String), i64>) {
        let series: BTreeSet<metrics::CertLabels> = expiries
            .keys()
            .map(|(service, secret)| metrics::CertLabels {
                service: service.clone(),
                secret: secret.clone(),
            })
            .collect();
        let mut shared = self.shared.lock();
        let gauges = &self.metrics.cert_expiry;
        for old in shared.cert_series.difference(&series) {
            gauges.remove(old);
        }
        for ((service, secret), not_after) in expiries {
            gauges
                .get_or_create(&metrics::CertLabels {
                    service: service.clone(),
                    secret: secret.clone(),
                })
                .set(*not_after);
        }
        shared.cert_series = series;
    }

    /// The label problems of the desired state and the certificate problems `certs` (errors
    /// naming a service's `ssl_cert`/`ssl_key`): the status view's list, and the
    /// `swarm_lb_label_problems` gauges (1 now, 0 for those fixed, removed with their
    /// service). Notices (a service without hosts: the operator's choice) are not problems.
    pub fn problems(&self, desired: &Desired, certs: &[LabelError], snap: &Snapshot) {
        let all = (desired.errors.iter().map(|e| (e, "error")))
            .chain(certs.iter().map(|e| (e, "error")))
            .chain(desired.warnings.iter().map(|w| (w, "warning")));
        let mut now: Vec<Problem> = Vec::new();
        let mut series: BTreeSet<metrics::ProblemLabels> = BTreeSet::new();
        for (e, severity) in all {
            let p = problem(e, severity);
            if !e.restates_other_errors() {
                series.insert(metrics::ProblemLabels {
                    service: p.service.clone(),
                    label: p.label.clone(),
                    severity: p.severity.clone(),
                });
            }
            now.push(p);
        }
        now.sort();
        now.dedup();
        let services: BTreeSet<&str> = snap.services.iter().map(|s| s.name.as_str()).collect();
        let mut shared = self.shared.lock();
        let gauges = &self.metrics.label_problems;
        for old in &shared.problem_series {
            if series.contains(old) {
                continue;
            }
            if services.contains(old.service.as_str()) {
                gauges.get_or_create(old).set(0);
            } else {
                gauges.remove(old);
            }
        }
        for s in &series {
            gauges.get_or_create(s).set(1);
        }
        // Keep the fixed ones that still show 0 so they can be removed with their service.
        let mut kept = series;
        kept.extend(
            shared
                .problem_series
                .iter()
                .filter(|s| services.contains(s.service.as_str()))
                .cloned(),
        );
        shared.problem_series = kept;
        shared.problems = now;
    }

    /// A pass succeeded and HAProxy now holds `state`; it took `took`.
    pub fn pass_ok(&self, state: &ProxyState, took: Duration) {
        let m = &self.metrics;
        m.passes.get_or_create(&result("ok")).inc();
        m.pass_duration.observe(took.as_secs_f64());
        m.last_success.set(unix_now());
        m.haproxy_up.set(1);
        m.backends.set(gauge(state.backends.len()));
        m.routed_services.set(gauge(state.backends.len()));
        let set = |name: &BackendName, st: &str, n: usize| {
            m.slots
                .get_or_create(&metrics::SlotLabels {
                    service: name.service().to_owned(),
                    backend: name.as_str().to_owned(),
                    state: st.to_owned(),
                })
                .set(gauge(n));
        };
        let mut shared = self.shared.lock();
        // Only backends that changed since the last pass (a backend the state still shares
        // is the same value: see `ProxyState::backends`).
        for (name, b) in &state.backends {
            if shared
                .backends
                .get(name)
                .is_some_and(|seen| Arc::ptr_eq(seen, b))
            {
                continue;
            }
            let free = b.servers.iter().filter(|s| Server::is_free(s)).count();
            set(name, "used", b.servers.len() - free);
            set(name, "free", free);
            shared.backends.insert(name.clone(), b.clone());
        }
        if shared.backends.len() > state.backends.len() {
            let gone: Vec<BackendName> = shared
                .backends
                .keys()
                .filter(|n| !state.backends.contains_key(*n))
                .cloned()
                .collect();
            for name in gone {
                for st in ["used", "free"] {
                    m.slots.remove(&metrics::SlotLabels {
                        service: name.service().to_owned(),
                        backend: name.as_str().to_owned(),
                        state: st.to_owned(),
                    });
                }
                shared.backends.remove(&name);
            }
        }
        shared.passes_ok += 1;
        let now = unix_secs();
        let passes = &mut shared.passes;
        passes.ok += 1;
        passes.last_ok_at = Some(now);
        passes.last = Some(status::LastPass {
            at: now,
            error: None,
            took_ms: Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
        });
        shared.last_pass_ok = true;
        shared.last_error = None;
        shared.haproxy_ok = true;
    }

    /// A pass failed; `haproxy_down` when HAProxy's admin socket did not answer.
    pub fn pass_failed(&self, error: &str, haproxy_down: bool) {
        self.metrics.passes.get_or_create(&result("failed")).inc();
        if haproxy_down {
            self.metrics.haproxy_up.set(0);
        }
        let mut shared = self.shared.lock();
        shared.passes.failed += 1;
        shared.passes.last = Some(status::LastPass {
            at: unix_secs(),
            error: Some(error.to_owned()),
            took_ms: None,
        });
        shared.last_pass_ok = false;
        shared.last_error = Some(error.to_owned());
        if haproxy_down {
            shared.haproxy_ok = false;
        }
    }

    /// HAProxy answered `show info` (with its version) or not.
    pub fn haproxy(&self, version: Option<String>) {
        self.metrics.haproxy_up.set(i64::from(version.is_some()));
        let mut shared = self.shared.lock();
        shared.haproxy_ok = version.is_some();
        if let Some(v) = version {
            if shared.haproxy_version.as_ref() != Some(&v) {
                let family = &self.metrics.haproxy_version;
                family.clear();
                family
                    .get_or_create(&metrics::VersionLabels { version: v.clone() })
                    .set(1);
                shared.haproxy_version = Some(v);
            }
        }
    }

    /// Whether the last request to Docker (a listing, the event stream) succeeded.
    pub fn docker(&self, ok: bool) {
        self.shared.lock().docker_ok = ok;
    }

    /// Docker's timestamps of the tasks just listed (all of them): the ones since start-up
    /// are kept for [`Observer::with_task_times`].
    pub fn task_times(&self, times: impl IntoIterator<Item = (String, TaskTimes)>) {
        let since = |t: Option<SystemTime>| t.is_some_and(|t| t >= self.started);
        let recent: HashMap<String, TaskTimes> = times
            .into_iter()
            .filter(|(_, t)| since(t.running) || since(t.shutdown))
            .collect();
        self.shared.lock().task_times = recent;
    }

    /// [`Observer::task_times`] of a listing of some services' tasks: added to those known,
    /// which the next whole listing replaces.
    pub fn more_task_times(&self, times: impl IntoIterator<Item = (String, TaskTimes)>) {
        let since = |t: Option<SystemTime>| t.is_some_and(|t| t >= self.started);
        let mut shared = self.shared.lock();
        shared.task_times.extend(
            times
                .into_iter()
                .filter(|(_, t)| since(t.running) || since(t.shutdown)),
        );
    }

    /// Runs `f` on the task timestamps (under the lock: `f` must not block).
    pub fn with_task_times<T>(&self, f: impl FnOnce(&HashMap<String, TaskTimes>) -> T) -> T {
        f(&self.shared.lock().task_times)
    }

    /// Docker events named these services at `at` (engine time).
    pub fn service_events<'a>(
        &self,
        services: impl IntoIterator<Item = &'a String>,
        at: SystemTime,
    ) {
        let mut shared = self.shared.lock();
        for s in services {
            shared.events.entry(s.clone()).or_insert(at);
        }
    }

    /// A pass changed HAProxy for `services` (ids) at `now`: observes event -> applied for
    /// each pending event of theirs; forgets events too old to be followed by a change.
    pub fn applied(&self, services: &BTreeSet<String>, now: SystemTime) {
        let mut shared = self.shared.lock();
        shared.events.retain(|service, at| {
            let age = now.duration_since(*at).unwrap_or(Duration::ZERO);
            if services.contains(service) {
                self.metrics.event_to_applied.observe(age.as_secs_f64());
                return false;
            }
            age < EVENT_HORIZON
        });
    }

    /// Convergence samples of a pass.
    pub fn converged(&self, samples: &[(Phase, Duration)]) {
        for (phase, d) in samples {
            self.metrics
                .convergence
                .get_or_create(&metrics::PhaseLabels {
                    phase: phase.as_str().to_owned(),
                })
                .observe(d.as_secs_f64());
        }
    }

    /// A runtime command of `kind` ended with `outcome` (`ok`, `refused`, `error`).
    pub fn command(&self, kind: &str, outcome: &str) {
        self.metrics
            .commands
            .get_or_create(&metrics::CommandLabels {
                kind: kind.to_owned(),
                result: outcome.to_owned(),
            })
            .inc();
    }

    /// A reload for `reason` completed (`ok`) or failed.
    pub fn reload(&self, reason: ReloadReason, ok: bool) {
        let labels = metrics::ReasonLabels {
            reason: reason.as_str().to_owned(),
        };
        if ok {
            self.metrics.reloads.get_or_create(&labels).inc();
        } else {
            self.metrics.reload_failures.get_or_create(&labels).inc();
        }
        let mut shared = self.shared.lock();
        let passes = &mut shared.passes;
        if ok {
            passes.reloads += 1;
        } else {
            passes.reload_failures += 1;
        }
        passes.last_reload = Some(status::LastReload {
            at: unix_secs(),
            reason: labels.reason,
            ok,
        });
    }

    /// The certificates HAProxy serves for services now (the status view's list).
    pub fn certificates(&self, mut certs: Vec<Certificate>) {
        certs.sort();
        self.shared.lock().certificates = certs;
    }

    pub fn health(&self) -> Health {
        let shared = self.shared.lock();
        let mut reasons = Vec::new();
        let alive = shared.beat.is_some_and(|b| b.elapsed() < self.stall);
        if !alive {
            reasons.push(match shared.beat {
                Some(b) => format!(
                    "the reconciler loop has not run for {} s",
                    b.elapsed().as_secs()
                ),
                None => "the reconciler loop has not started".to_owned(),
            });
        }
        if shared.passes_ok == 0 {
            reasons.push("no pass has succeeded yet".to_owned());
        } else if !shared.last_pass_ok {
            let e = shared.last_error.as_deref().unwrap_or("unknown error");
            reasons.push(format!("the last pass failed: {e}"));
        }
        if !shared.docker_ok {
            reasons.push("Docker does not answer".to_owned());
        }
        if !shared.haproxy_ok {
            reasons.push("HAProxy's admin socket does not answer".to_owned());
        }
        Health {
            alive,
            ready: reasons.is_empty(),
            reasons,
        }
    }

    /// What the status view needs from the daemon's memory: the last snapshot and problems.
    /// A hint agent's stream at `agent` is `live` (or lost), speaking for `node` if known:
    /// `swarm_lb_node_hints_live{node}` and the status view.
    pub fn hint_source(&self, agent: &str, node: Option<&str>, live: bool) {
        let label = node.unwrap_or(agent).to_owned();
        if node.is_some() {
            // The series it had under its address, before it said which node it is.
            self.metrics.node_hints_live.remove(&metrics::NodeLabels {
                node: agent.to_owned(),
            });
        }
        self.metrics
            .node_hints_live
            .get_or_create(&metrics::NodeLabels { node: label })
            .set(i64::from(live));
        let mut shared = self.shared.lock();
        let node = node
            .map(str::to_owned)
            .or_else(|| shared.hint_sources.get(agent).and_then(|s| s.node.clone()));
        shared.hint_sources.insert(
            agent.to_owned(),
            HintSource {
                agent: agent.to_owned(),
                node,
                live,
            },
        );
    }

    /// The agent at `agent` is no longer followed (gone from discovery, or this node's own).
    pub fn forget_hint_source(&self, agent: &str) {
        let gone = self.shared.lock().hint_sources.remove(agent);
        if let Some(s) = gone {
            let node = s.node.unwrap_or_else(|| agent.to_owned());
            self.metrics
                .node_hints_live
                .remove(&metrics::NodeLabels { node });
        }
    }

    /// The hint agents followed, by address.
    pub fn hint_sources(&self) -> Vec<HintSource> {
        self.shared.lock().hint_sources.values().cloned().collect()
    }

    pub fn status_inputs(&self) -> (Option<Arc<Snapshot>>, Vec<Problem>) {
        let shared = self.shared.lock();
        (shared.snapshot.clone(), shared.problems.clone())
    }

    /// What the status view shows besides routes and problems: the passes and reloads so
    /// far, the certificates served, and the time it is read at (unix seconds).
    pub fn status_extras(&self) -> (status::Passes, Vec<Certificate>, i64) {
        let shared = self.shared.lock();
        (
            shared.passes.clone(),
            shared.certificates.clone(),
            unix_secs(),
        )
    }
}

fn problem(e: &LabelError, severity: &str) -> Problem {
    let service = e.service().to_owned();
    let label = e.label().unwrap_or("-").to_owned();
    let reason = e.detail().to_string();
    Problem {
        service,
        label,
        severity: severity.to_owned(),
        reason,
    }
}

fn result(r: &str) -> metrics::ResultLabels {
    metrics::ResultLabels {
        result: r.to_owned(),
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels;

    fn desired_with(errors: Vec<LabelError>) -> Desired {
        Desired {
            errors,
            ..Desired::default()
        }
    }

    fn snap_with(names: &[&str]) -> Snapshot {
        Snapshot {
            services: names
                .iter()
                .map(|n| crate::model::Service {
                    id: format!("id-{n}"),
                    name: (*n).to_owned(),
                    labels: Default::default(),
                    networks: vec![],
                    vips: vec![],
                })
                .map(std::sync::Arc::new)
                .collect(),
            ..Snapshot::default()
        }
    }

    fn port_error(service: &str) -> LabelError {
        LabelError::Invalid {
            service: service.into(),
            label: labels::PORT.into(),
            value: "0".into(),
            reason: Box::new(crate::model::Reason::PortZero),
        }
    }

    const GAUGE: &str =
        "swarm_lb_label_problems{service=\"web\",label=\"com.docker.lb.port\",severity=\"error\"}";

    #[test]
    fn a_label_problem_gauge_is_1_while_deployed_0_once_fixed_and_gone_with_its_service() {
        let o = Observer::default();
        let snap = snap_with(&["web"]);
        o.problems(&desired_with(vec![port_error("web")]), &[], &snap);
        assert!(o.metrics.encode().contains(&format!("{GAUGE} 1")));
        assert_eq!(o.status_inputs().1[0].label, labels::PORT);
        o.problems(&Desired::default(), &[], &snap);
        assert!(o.metrics.encode().contains(&format!("{GAUGE} 0")));
        assert!(o.status_inputs().1.is_empty());
        o.problems(&Desired::default(), &[], &Snapshot::default());
        assert!(!o.metrics.encode().contains(GAUGE));
    }

    #[test]
    fn a_certificate_problem_is_a_label_problem_in_status_and_metrics() {
        let o = Observer::default();
        let snap = snap_with(&["web"]);
        let missing = LabelError::Invalid {
            service: "web".into(),
            label: labels::SSL_KEY.into(),
            value: "web-key".into(),
            reason: Box::new(crate::model::Reason::SecretUnknown),
        };
        o.problems(&Desired::default(), &[missing], &snap);
        assert!(o.metrics.encode().contains(
            "swarm_lb_label_problems{service=\"web\",label=\"com.docker.lb.ssl_key\",severity=\"error\"} 1"
        ));
        let shown = &o.status_inputs().1[0];
        assert_eq!(
            (shown.label.as_str(), shown.severity.as_str()),
            (labels::SSL_KEY, "error")
        );
        assert!(shown.reason.contains("Docker lists no secret"), "{shown:?}");
    }

    #[test]
    fn a_served_certificate_has_an_expiry_series_until_it_is_no_longer_served() {
        let o = Observer::default();
        let series =
            "swarm_lb_certificate_expiry_timestamp_seconds{service=\"web\",secret=\"web-cert-1\"}";
        let mut served = std::collections::BTreeMap::new();
        served.insert(("web".to_owned(), "web-cert-1".to_owned()), 1_800_000_000);
        o.cert_expiries(&served);
        assert!(
            o.metrics
                .encode()
                .contains(&format!("{series} 1800000000\n")),
            "{}",
            o.metrics.encode()
        );
        // Rotated to another secret: the old series goes, the new one comes.
        served.clear();
        served.insert(("web".to_owned(), "web-cert-2".to_owned()), 1_900_000_000);
        o.cert_expiries(&served);
        let text = o.metrics.encode();
        assert!(!text.contains(series), "{text}");
        assert!(
            text.contains("secret=\"web-cert-2\"} 1900000000\n"),
            "{text}"
        );
    }

    #[test]
    fn the_status_view_counts_passes_and_reloads_and_keeps_the_last_of_each() {
        let o = Observer::default();
        assert_eq!(o.status_extras().0, status::Passes::default());
        o.pass_ok(&ProxyState::default(), Duration::from_millis(7));
        o.reload(ReloadReason::BackendCreated, true);
        o.pass_failed("admin socket: connection refused", true);
        o.reload(ReloadReason::BackendCreated, false);
        let (p, certs, at) = o.status_extras();
        assert_eq!((p.ok, p.failed, p.reloads, p.reload_failures), (1, 1, 1, 1));
        let last = p.last.expect("a last pass");
        assert_eq!(
            last.error.as_deref(),
            Some("admin socket: connection refused")
        );
        assert!(p.last_ok_at.is_some_and(|t| t <= last.at && last.at <= at));
        let reload = p.last_reload.expect("a last reload");
        assert_eq!(
            (reload.reason.as_str(), reload.ok),
            ("backend_created", false)
        );
        assert!(certs.is_empty());
    }

    #[test]
    fn ready_needs_a_successful_pass_docker_and_haproxy() {
        let o = Observer::default();
        o.beat();
        let h = o.health();
        assert!(h.alive && !h.ready);
        o.docker(true);
        o.pass_ok(&ProxyState::default(), Duration::from_millis(2));
        assert_eq!(o.health().reasons, Vec::<String>::new());
        o.pass_failed("admin socket: connection refused", true);
        let h = o.health();
        assert!(h.alive && !h.ready);
        assert!(
            h.reasons.iter().any(|r| r.contains("connection refused")),
            "{h:?}"
        );
        assert!(!Observer::new(Duration::ZERO).health().alive);
    }

    #[test]
    fn an_event_is_measured_by_the_first_pass_that_changes_its_service() {
        let o = Observer::default();
        let t0 = SystemTime::now();
        o.service_events([&"a".to_owned(), &"b".to_owned()], t0);
        o.applied(
            &BTreeSet::from(["a".to_owned()]),
            t0 + Duration::from_millis(7),
        );
        let text = o.metrics.encode();
        assert!(
            text.contains("swarm_lb_event_to_applied_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("swarm_lb_event_to_applied_seconds_sum 0.007"),
            "{text}"
        );
        // b's event led to no change; once it is too old it is dropped unmeasured.
        o.applied(&BTreeSet::new(), t0 + EVENT_HORIZON);
        o.applied(&BTreeSet::from(["b".to_owned()]), t0 + EVENT_HORIZON);
        assert!(o
            .metrics
            .encode()
            .contains("swarm_lb_event_to_applied_seconds_count 1"));
    }

    #[test]
    fn only_task_timestamps_since_start_up_are_kept() {
        let o = Observer::default();
        let old = TaskTimes {
            running: Some(UNIX_EPOCH),
            shutdown: None,
        };
        let new = TaskTimes {
            running: Some(SystemTime::now() + Duration::from_secs(1)),
            shutdown: None,
        };
        o.task_times([("old".to_owned(), old), ("new".to_owned(), new)]);
        let kept: Vec<String> = o.with_task_times(|t| t.keys().cloned().collect());
        assert_eq!(kept, ["new"]);
    }

    #[test]
    fn a_listing_of_some_services_adds_its_timestamps_and_a_whole_listing_replaces_them() {
        let o = Observer::default();
        let at = TaskTimes {
            running: Some(SystemTime::now() + Duration::from_secs(1)),
            shutdown: None,
        };
        let keys = |o: &Observer| {
            let mut k: Vec<String> = o.with_task_times(|t| t.keys().cloned().collect());
            k.sort();
            k
        };
        o.task_times([("a".to_owned(), at)]);
        o.more_task_times([("b".to_owned(), at)]);
        assert_eq!(keys(&o), ["a", "b"]);
        o.task_times([("c".to_owned(), at)]);
        assert_eq!(keys(&o), ["c"]);
    }
}
