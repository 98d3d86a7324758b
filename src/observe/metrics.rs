//! The Prometheus registry: every metric swarm-lb exports, named `swarm_lb_*` in base units
//! (seconds), counters ending in `_total`. Encoded in the OpenMetrics text format, which
//! Prometheus scrapes (and `promtool check metrics` reads).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s output: Prometheus' classic text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `reason="backend_created"` etc.: why a reload happened (see [`super::ReloadReason`]).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// A runtime command's kind (`set_addr`, `set_state`, `add_server`, `enable_health`,
/// `add_map`, `set_map`, `del_map`) and result (`ok`, `refused`, `error`: the batch was not
/// answered).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub kind: String,
    pub result: String,
}

/// `result="ok"` or `"failed"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// `phase="task_running"` (Docker's `Status.Timestamp` of the running state -> HAProxy's
/// server ready) or `"task_stopping"` (the task's `UpdatedAt` when Swarm set it to shut down
/// -> HAProxy takes no new traffic to it).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

/// One backend's slots: `state="used"` (holding a task or the VIP) or `"free"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlotLabels {
    /// The service (the backend's name without its generation suffix): the series to group
    /// by, since an options change on HAProxy 3.4+ moves a service to a new backend.
    pub service: String,
    pub backend: String,
    pub state: String,
}

/// A label problem: the service, the label (`-` for a problem of the service as a whole, such
/// as its network) and `severity` (`error`: the label is not applied, the service is unrouted
/// or on its last good routing; `warning`: the label is ignored, routing works).
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ProblemLabels {
    pub service: String,
    pub label: String,
    pub severity: String,
}

/// `node="<Swarm node id>"` of a hint agent (its address until it said which node it is).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

/// A served certificate: the service whose `ssl_cert` names it and that secret's name (a
/// name, never its content).
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct CertLabels {
    pub service: String,
    pub secret: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric, registered once. Cloning a metric handle shares its value, so the fields can
/// be updated from anywhere that holds the [`Metrics`].
pub struct Metrics {
    registry: Registry,
    /// `swarm_lb_reloads_total{reason}`: reloads that HAProxy completed.
    pub reloads: Family<ReasonLabels, Counter>,
    /// `swarm_lb_reload_failures_total{reason}`: reloads that failed (rolled back).
    pub reload_failures: Family<ReasonLabels, Counter>,
    /// `swarm_lb_runtime_commands_total{kind,result}`.
    pub commands: Family<CommandLabels, Counter>,
    /// `swarm_lb_passes_total{result}`: reconcile passes, applied or not.
    pub passes: Family<ResultLabels, Counter>,
    /// `swarm_lb_pass_duration_seconds`: one reconcile pass, read to re-read.
    pub pass_duration: Histogram,
    /// `swarm_lb_convergence_seconds{phase}`: Docker's timestamp of a task change -> HAProxy
    /// holds it.
    pub convergence: HistogramFamily<PhaseLabels>,
    /// `swarm_lb_event_to_applied_seconds`: a Docker event naming a service -> the pass that
    /// changed HAProxy for that service.
    pub event_to_applied: Histogram,
    /// `swarm_lb_routed_services`: services with a backend.
    pub routed_services: Gauge,
    /// `swarm_lb_backends`: backends HAProxy holds for swarm-lb.
    pub backends: Gauge,
    /// `swarm_lb_backend_slots{backend,state}`.
    pub slots: Family<SlotLabels, Gauge>,
    /// `swarm_lb_label_problems{service,label,severity}`: 1 while the problem is deployed, 0
    /// once fixed; gone when the service is.
    pub label_problems: Family<ProblemLabels, Gauge>,
    /// `swarm_lb_docker_event_stream_reconnects_total`.
    pub event_stream_reconnects: Counter,
    /// `swarm_lb_docker_resyncs_total`: periodic full listings of Swarm.
    pub resyncs: Counter,
    /// `swarm_lb_docker_resync_changes_total`: periodic full listings that changed the
    /// snapshot, i.e. found a change no Docker event (or node hint) had brought. An event
    /// arriving during the listing can also count here, so an occasional one is noise;
    /// many mean the event stream misses changes.
    pub resync_changes: Counter,
    /// `swarm_lb_resync_repairs_total`: full reads of HAProxy (the periodic resync) that found
    /// it holding something other than what the incremental passes knew it held, so the
    /// pass re-planned from the full read. Should stay 0: a bug in the incremental path, or
    /// a change made by hand over the admin socket, counts here.
    pub resync_repairs: Counter,
    /// `swarm_lb_last_successful_pass_timestamp_seconds`: Unix time of the last pass that
    /// succeeded (0: none yet).
    pub last_success: Gauge<f64, AtomicU64>,
    /// `swarm_lb_haproxy_up`: 1 when the last look at HAProxy's admin socket was answered.
    pub haproxy_up: Gauge,
    /// `swarm_lb_haproxy_version{version}`: 1 for the version of the running HAProxy.
    pub haproxy_version: Family<VersionLabels, Gauge>,
    /// `swarm_lb_node_hints_live{node}`: 1 while the hint stream of another node's agent is
    /// live, 0 while it is lost (that node's tasks: task list and health checks only).
    pub node_hints_live: Family<NodeLabels, Gauge>,
    /// `swarm_lb_certificate_expiry_timestamp_seconds{service,secret}`: the notAfter (Unix
    /// time) of each certificate served from a service's `ssl_cert`/`ssl_key` secrets; gone
    /// with the certificate. An expired or unreadable one is a `label_problems` series instead.
    pub cert_expiry: Family<CertLabels, Gauge>,
    /// `swarm_lb_acme_orders_total{result}`: ACME orders this edge placed, by `ok` or
    /// `failed` (`com.docker.lb.ssl_acme`; one edge orders a name set at a time).
    pub acme_orders: Family<ResultLabels, Counter>,
}

/// Buckets (seconds) for convergence and pass time: 0.5 ms to ~16 s, doubling; the targets
/// (p50 < 20 ms, p99 < 100 ms) fall on distinct buckets.
fn latency_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("swarm_lb"),
            reloads: Family::default(),
            reload_failures: Family::default(),
            commands: Family::default(),
            passes: Family::default(),
            pass_duration: latency_buckets(),
            convergence: Family::new_with_constructor(latency_buckets),
            event_to_applied: latency_buckets(),
            routed_services: Gauge::default(),
            backends: Gauge::default(),
            slots: Family::default(),
            label_problems: Family::default(),
            event_stream_reconnects: Counter::default(),
            resyncs: Counter::default(),
            resync_changes: Counter::default(),
            resync_repairs: Counter::default(),
            acme_orders: Family::default(),
            last_success: Gauge::default(),
            haproxy_up: Gauge::default(),
            haproxy_version: Family::default(),
            node_hints_live: Family::default(),
            cert_expiry: Family::default(),
        };
        for reason in super::ReloadReason::ALL {
            let labels = ReasonLabels {
                reason: reason.as_str().to_owned(),
            };
            let _ = m.reloads.get_or_create(&labels);
            let _ = m.reload_failures.get_or_create(&labels);
        }
        let r = &mut m.registry;
        r.register(
            "reloads",
            "HAProxy reloads completed, by reason",
            m.reloads.clone(),
        );
        r.register(
            "reload_failures",
            "HAProxy reloads that failed and were rolled back, by reason",
            m.reload_failures.clone(),
        );
        r.register(
            "runtime_commands",
            "Runtime API commands sent, by kind and result",
            m.commands.clone(),
        );
        r.register("passes", "Reconcile passes, by result", m.passes.clone());
        r.register_with_unit(
            "pass_duration",
            "Duration of a reconcile pass (read, plan, apply, re-read)",
            Unit::Seconds,
            m.pass_duration.clone(),
        );
        r.register_with_unit(
            "convergence",
            "Docker's timestamp of a task change to HAProxy holding it",
            Unit::Seconds,
            m.convergence.clone(),
        );
        r.register_with_unit(
            "event_to_applied",
            "A Docker event naming a service to the pass that changed HAProxy for it",
            Unit::Seconds,
            m.event_to_applied.clone(),
        );
        r.register(
            "routed_services",
            "Services routed (with a backend in HAProxy)",
            m.routed_services.clone(),
        );
        r.register(
            "backends",
            "Backends HAProxy holds for swarm-lb",
            m.backends.clone(),
        );
        r.register(
            "backend_slots",
            "Server slots per backend, used or free",
            m.slots.clone(),
        );
        r.register(
            "label_problems",
            "1 while a service's label problem is deployed, 0 once fixed",
            m.label_problems.clone(),
        );
        r.register(
            "docker_event_stream_reconnects",
            "Reconnections of the Docker event stream",
            m.event_stream_reconnects.clone(),
        );
        r.register(
            "docker_resyncs",
            "Periodic full listings of Swarm",
            m.resyncs.clone(),
        );
        r.register(
            "docker_resync_changes",
            "Periodic full listings of Swarm that changed the snapshot (a change no event brought)",
            m.resync_changes.clone(),
        );
        r.register(
            "resync_repairs",
            "Full reads of HAProxy that found it differing from what incremental passes knew",
            m.resync_repairs.clone(),
        );
        r.register_with_unit(
            "last_successful_pass_timestamp",
            "Unix time of the last successful reconcile pass",
            Unit::Seconds,
            m.last_success.clone(),
        );
        r.register(
            "haproxy_up",
            "1 when HAProxy's admin socket answered the last look",
            m.haproxy_up.clone(),
        );
        r.register(
            "haproxy_version",
            "The running HAProxy's version (value 1)",
            m.haproxy_version.clone(),
        );
        r.register(
            "node_hints_live",
            "1 while another node's hint agent streams to this edge, 0 while its stream is lost",
            m.node_hints_live.clone(),
        );
        r.register(
            "acme_orders",
            "ACME orders this edge placed, by result",
            m.acme_orders.clone(),
        );
        r.register_with_unit(
            "certificate_expiry_timestamp",
            "When each served certificate expires (its notAfter, Unix time)",
            Unit::Seconds,
            m.cert_expiry.clone(),
        );
        // A gauge, not OpenMetrics' `info` type, which Prometheus' classic text parser (and
        // promtool 2.x) refuse.
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        r.register("build_info", "swarm-lb's version (value 1)", build);
        m
    }

    /// A registry with one example series in each labelled family (a family without series is
    /// not written at all), for what must name every metric: the book's metrics reference
    /// (`tests/book.rs`) and the check of the names the alert rules and the dashboard use
    /// (`tests/monitoring.rs`). A new labelled family gets its example here.
    pub fn with_a_series_in_every_family() -> Self {
        let m = Self::new();
        let s = |v: &str| v.to_owned();
        m.commands
            .get_or_create(&CommandLabels {
                kind: s("set_addr"),
                result: s("ok"),
            })
            .inc();
        m.passes
            .get_or_create(&ResultLabels { result: s("ok") })
            .inc();
        m.convergence
            .get_or_create(&PhaseLabels {
                phase: s("task_running"),
            })
            .observe(0.001);
        m.slots
            .get_or_create(&SlotLabels {
                service: s("web"),
                backend: s("web"),
                state: s("used"),
            })
            .set(1);
        m.label_problems
            .get_or_create(&ProblemLabels {
                service: s("web"),
                label: s("com.docker.lb.port"),
                severity: s("error"),
            })
            .set(1);
        m.haproxy_version
            .get_or_create(&VersionLabels {
                version: s("3.4.7"),
            })
            .set(1);
        m.node_hints_live
            .get_or_create(&NodeLabels { node: s("n1") })
            .set(1);
        m.acme_orders
            .get_or_create(&ResultLabels { result: s("ok") })
            .inc();
        m.cert_expiry
            .get_or_create(&CertLabels {
                service: s("web"),
                secret: s("web-cert-1"),
            })
            .set(1_800_000_000);
        m
    }

    /// The whole registry in Prometheus' classic text format ([`CONTENT_TYPE`]), which every
    /// Prometheus and `promtool check metrics` read.
    pub fn encode(&self) -> String {
        classic(&self.encode_openmetrics())
    }

    /// The whole registry in the OpenMetrics text format, as the client library writes it.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// OpenMetrics text -> the classic text format: a counter family is named like its samples
/// (`x_total`, where OpenMetrics names the family `x`), and `# UNIT` and `# EOF` lines go.
/// The samples are the same in both.
fn classic(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(p);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn counters_end_in_total_and_durations_in_seconds() {
        let m = Metrics::new();
        m.reloads
            .get_or_create(&ReasonLabels {
                reason: "backend_created".into(),
            })
            .inc();
        m.pass_duration.observe(0.003);
        m.event_stream_reconnects.inc();
        let text = m.encode();
        assert!(
            text.lines()
                .any(|l| l == "swarm_lb_reloads_total{reason=\"backend_created\"} 1"),
            "{text}"
        );
        // Every other reason is there at 0 from the start: "no reload" is a series.
        assert_eq!(
            line(&text, "swarm_lb_reloads_total{reason=\"backend_removed\"}"),
            Some("swarm_lb_reloads_total{reason=\"backend_removed\"} 0"),
            "{text}"
        );
        assert_eq!(
            line(&text, "swarm_lb_reload_failures_total{reason=\"other\"}"),
            Some("swarm_lb_reload_failures_total{reason=\"other\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("swarm_lb_pass_duration_seconds_bucket{le=\"0.004\"} 1"),
            "{text}"
        );
        assert!(text.contains("swarm_lb_pass_duration_seconds_count 1"));
        assert!(text.contains("swarm_lb_docker_event_stream_reconnects_total 1"));
        assert!(text.contains(&format!(
            "swarm_lb_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(
            text.contains("# TYPE swarm_lb_reloads_total counter\n"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(m.encode_openmetrics().trim_end().ends_with("# EOF"));
    }

    #[test]
    fn every_metric_is_named_with_the_swarm_lb_prefix() {
        let m = Metrics::new();
        m.slots
            .get_or_create(&SlotLabels {
                service: "web".into(),
                backend: "web".into(),
                state: "used".into(),
            })
            .set(3);
        for l in m.encode().lines().filter(|l| !l.starts_with("# EOF")) {
            let name = l
                .strip_prefix("# HELP ")
                .or_else(|| l.strip_prefix("# TYPE "))
                .or_else(|| l.strip_prefix("# UNIT "))
                .unwrap_or(l);
            assert!(name.starts_with("swarm_lb_"), "{l}");
        }
    }

    #[test]
    fn a_label_value_with_quotes_is_escaped() {
        let m = Metrics::new();
        m.label_problems
            .get_or_create(&ProblemLabels {
                service: "web".into(),
                label: "com.docker.lb.hosts".into(),
                severity: "error".into(),
            })
            .set(1);
        m.haproxy_version
            .get_or_create(&VersionLabels {
                version: "2.6\"x\n".into(),
            })
            .set(1);
        let text = m.encode();
        assert!(text.contains(
            "swarm_lb_label_problems{service=\"web\",label=\"com.docker.lb.hosts\",severity=\"error\"} 1"
        ), "{text}");
        assert!(text.contains(r#"version="2.6\"x\n""#), "{text}");
    }
}
