//! The shipped monitoring files against a real Prometheus (Debian's `prometheus` package):
//! the server scrapes a running stack's swarm-lb `/metrics` and HAProxy's built-in exporter
//! every second, with `monitoring/alerts.yml` loaded, while a routed service takes traffic and
//! scales and another one carries a bad label. Then every expression of
//! `monitoring/grafana-dashboard.json` (its panels' targets and its variables) must return
//! data from Prometheus' HTTP API, every alert rule must evaluate without error, and the
//! label-problem alert must be pending for the bad service. Grafana itself is not run: what a
//! panel shows is its query's answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use swarm_lb::observe::http;
use swarm_lb_e2e::docker::{Network, Service};
use swarm_lb_e2e::load::Load;
use swarm_lb_e2e::stack::Stack;
use swarm_lb_e2e::{free_port, poll_until, unique};

const APP: &str = "swarm-lb/testapp:1";
const PROMETHEUS: &str = "/usr/bin/prometheus";
const CONVERGE: Duration = Duration::from_secs(90);
/// How long every dashboard expression gets to return data once traffic and a scale happened.
const QUERIES: Duration = Duration::from_secs(90);

/// What the test puts in place of Grafana's variables: the `rate()` window Grafana would pick
/// for a 1 s scrape interval and a short range, and `.*` (the dashboard's "All") for the
/// instance pickers.
const SUBSTITUTIONS: &[(&str, &str)] = &[
    ("$__rate_interval", "1m"),
    ("$__interval", "15s"),
    ("$__range", "5m"),
    ("$instance", ".*"),
    ("$haproxy", ".*"),
];

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// A Prometheus server on a free loopback port, its storage in a temporary directory, killed
/// on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes swarm-lb's listener and HAProxy's exporter (jobs named as in README's example)
    /// every second, with the shipped alert rules loaded.
    fn start(swarm_lb: SocketAddr, haproxy: SocketAddr) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} not found: install it with `apt-get install prometheus` \
             (Debian's package; scripts/setup.sh does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let rules = repo_file("monitoring/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n\
             \x20 - job_name: swarm-lb\n    static_configs:\n      - targets: ['{swarm_lb}']\n\
             \x20 - job_name: haproxy\n    static_configs:\n      - targets: ['{haproxy}']\n",
            rules = rules.display()
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {PROMETHEUS}: {e}"));
        Prometheus { child, addr, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Option<Value> {
        match http::get(self.addr, path).await {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// The `data.result` of an instant query (an empty list when Prometheus does not answer).
    async fn query(&self, expr: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        self.get(&path)
            .await
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("---- prometheus log (last lines, newest first):");
            for l in tail {
                eprintln!("{l}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s` as a URL query value: everything but RFC 3986's unreserved characters escaped.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One PromQL expression of the dashboard, and where it is.
#[derive(Debug, Clone)]
struct Query {
    /// `panel "<title>" target <refId>` or `variable <name>`.
    place: String,
    expr: String,
}

/// Grafana's variables replaced by [`SUBSTITUTIONS`]; fails on one it does not know.
fn substitute(place: &str, expr: &str) -> String {
    let mut out = expr.to_owned();
    for (var, value) in SUBSTITUTIONS {
        out = out.replace(var, value);
    }
    assert!(
        !out.contains('$'),
        "{place}: a Grafana variable the test does not know: {expr}"
    );
    out
}

/// Every panel target's `expr` (rows' nested panels too) and every query variable's
/// `label_values(metric, label)` as `count by (label) (metric)`.
fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    fn panels(list: &Value, out: &mut Vec<Query>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                let place = format!(
                    "panel \"{title}\" target {}",
                    t["refId"].as_str().unwrap_or("?")
                );
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{place} has no expr"));
                out.push(Query {
                    expr: substitute(&place, expr),
                    place,
                });
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let place = format!("variable {}", v["name"].as_str().unwrap_or("?"));
        let def = v["definition"].as_str().unwrap_or("");
        let args = def
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|r| r.rsplit_once(','))
            .unwrap_or_else(|| panic!("{place}: not label_values(metric, label): {def}"));
        out.push(Query {
            expr: format!("count by ({}) ({})", args.1.trim(), args.0.trim()),
            place,
        });
    }
    out
}

/// Data a panel can draw: at least one sample whose value is a number (not NaN, which a
/// quantile of a window without observations gives).
fn has_data(result: &[Value]) -> bool {
    result.iter().any(|r| {
        r["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    })
}

/// Wait until HAProxy holds `n` ready servers for `service`.
async fn ready_servers(stack: &Stack, service: &Service, n: usize) {
    poll_until(
        CONVERGE,
        &format!("{} on {n} ready servers", service.name),
        || async { (stack.ready_addrs(&service.name).await.len() == n).then_some(()) },
    )
    .await;
}

#[test]
fn the_dashboard_parses_every_panel_and_variable_query() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("monitoring/grafana-dashboard.json"))
            .expect("read the dashboard"),
    )
    .expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() > 20, "{queries:#?}");
    assert!(queries.iter().any(|q| q.expr.contains("haproxy_")));
    assert!(queries
        .iter()
        .any(|q| q.expr == "count by (instance) (swarm_lb_build_info)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_expression_returns_data_from_a_real_prometheus_scraping_a_stack() {
    let started = Instant::now();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("monitoring/grafana-dashboard.json"))
            .expect("read the dashboard"),
    )
    .expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard);

    let cluster = unique("c");
    let image = swarm_lb_e2e::docker::swarm_lb_image();
    let stack = Stack::up(&[
        ("SWARM_LB_SERVICE_CLUSTER", cluster.as_str()),
        ("SWARM_LB_IMAGE", image.as_str()),
    ])
    .await;
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let prometheus = Prometheus::start(loopback(stack.metrics_port), loopback(stack.stats_port));
    poll_until(Duration::from_secs(30), "prometheus ready", || async {
        matches!(http::get(prometheus.addr, "/-/ready").await, Ok((200, _))).then_some(())
    })
    .await;
    poll_until(CONVERGE, "both scrape targets up", || async {
        let targets = prometheus.get("/api/v1/targets").await?;
        let active = targets["data"]["activeTargets"].as_array()?.clone();
        (active.len() == 2 && active.iter().all(|t| t["health"] == "up")).then_some(())
    })
    .await;

    // A routed service with traffic (and requests for a host nobody serves: _default's 503),
    // scaled so that convergence and runtime commands are measured, and a service whose port
    // label is refused. The convergence histogram's series is created by its first sample, so
    // `rate()` sees an increase only from a later one: scale once more after Prometheus
    // holds the series.
    let net = Network::create(&unique("net"));
    let host = format!("{}.test", unique("prom"));
    let web = Service::routed(&unique("prom"), APP, &cluster, &net, &host, 1, &[]);
    ready_servers(&stack, &web, 1).await;
    web.scale(2);
    ready_servers(&stack, &web, 2).await;
    poll_until(CONVERGE, "a convergence sample in prometheus", || async {
        let got = prometheus.query("swarm_lb_convergence_seconds_count").await;
        has_data(&got).then_some(())
    })
    .await;
    let bad = Service::create(
        &unique("bad"),
        APP,
        &[
            "--network",
            &net.name,
            "--label",
            &format!("com.docker.lb.hosts=bad-{host}"),
            "--label",
            "com.docker.lb.port=0",
            "--label",
            &format!("com.docker.lb.service_cluster={cluster}"),
        ],
    );
    let load = Load::start(stack.http_port, &host, "/", 2, Duration::from_millis(50));
    let unknown = Load::start(
        stack.http_port,
        "nobody-serves-this.test",
        "/",
        1,
        Duration::from_millis(200),
    );
    web.scale(3);
    ready_servers(&stack, &web, 3).await;

    // Every expression, in rounds, until each returned data once or the deadline passed.
    let total = queries.len();
    let mut pending: Vec<(Query, Vec<Value>)> =
        queries.into_iter().map(|q| (q, Vec::new())).collect();
    let asked = Instant::now();
    let deadline = asked + QUERIES;
    let mut last = String::new();
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for (q, _) in pending {
            let result = prometheus.query(&q.expr).await;
            if has_data(&result) {
                last = q.place;
            } else {
                still.push((q, result));
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let summary = load.stop().await;
    let _ = unknown.stop().await;
    assert!(
        pending.is_empty(),
        "dashboard expressions without data after {QUERIES:?}:\n{}",
        pending
            .iter()
            .map(|(q, last)| format!("  {}: {}\n    last answer: {last:?}", q.place, q.expr))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(summary.ok > 0, "no request reached the service: {summary}");
    eprintln!(
        "all {total} expressions returned data within {:.1} s (the last: {last})",
        asked.elapsed().as_secs_f64()
    );

    // The shipped rules load into the real server and evaluate without error; the bad label
    // makes SwarmLbLabelProblem pending (its `for` is 5 minutes) for that service.
    poll_until(
        CONVERGE,
        "every alert rule evaluated without error",
        || async {
            let rules = prometheus.get("/api/v1/rules").await?;
            let all: Vec<Value> = rules["data"]["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            (all.len() >= 7
                && all
                    .iter()
                    .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z"))
            .then_some(())
        },
    )
    .await;
    poll_until(
        CONVERGE,
        "SwarmLbLabelProblem pending for the bad service",
        || async {
            let alerts = prometheus.get("/api/v1/alerts").await?;
            alerts["data"]["alerts"]
                .as_array()?
                .iter()
                .any(|a| {
                    a["labels"]["alertname"] == "SwarmLbLabelProblem"
                        && a["labels"]["service"] == bad.name.as_str()
                        && a["labels"]["label"] == "com.docker.lb.port"
                        && a["state"] == "pending"
                })
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "every dashboard expression returned data; {summary}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
