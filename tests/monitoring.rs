//! The shipped monitoring files (`monitoring/`): the alert rules pass `promtool check rules`
//! and their unit tests (`promtool test rules monitoring/alerts_test.yml`), every alert has a
//! case where it fires and one where it does not, every alert is explained in
//! `docs/monitoring.md`, and the alerts and the dashboard name only metrics swarm-lb's registry
//! exports. The dashboard's expressions are run against a real Prometheus in
//! `integration/e2e/tests/prometheus.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use swarm_lb::observe::Metrics;

const PROMTOOL: &str = "promtool";

fn monitoring(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("monitoring")
        .join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `promtool <args>` in `monitoring/` (the test file names `alerts.yml` relative to itself);
/// fails with how to install promtool when it is missing, and with its output when it fails.
fn promtool(args: &[&str]) -> String {
    let out = Command::new(PROMTOOL)
        .args(args)
        .current_dir(monitoring(""))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool not found ({e}): install it with `apt-get install prometheus` \
                 (Debian's package; scripts/setup.sh does)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {}:\n{text}", args.join(" "));
    text
}

/// The names after `- alert:` in the rules file.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

/// `(alertname, fires)` for each `alert_rule_test` entry of a promtool test file: `fires` when
/// its `exp_alerts` lists alerts, not when it is `[]`.
fn rule_test_cases(tests: &str) -> Vec<(String, bool)> {
    let mut cases = Vec::new();
    let mut name: Option<String> = None;
    for line in tests.lines().map(str::trim) {
        if let Some(n) = line.strip_prefix("alertname:") {
            name = Some(n.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("exp_alerts:") {
            let alert = name.take().expect("exp_alerts follows an alertname");
            cases.push((alert, rest.trim() != "[]"));
        }
    }
    cases
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let out = promtool(&["check", "rules", "alerts.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_passes_its_promtool_unit_tests() {
    let out = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() {
    let alerts = alert_names(&read(&monitoring("alerts.yml")));
    assert!(alerts.len() >= 7, "{alerts:?}");
    let cases = rule_test_cases(&read(&monitoring("alerts_test.yml")));
    for alert in &alerts {
        for fires in [true, false] {
            assert!(
                cases.iter().any(|(a, f)| a == alert && *f == fires),
                "monitoring/alerts_test.yml has no case where {alert} {}",
                if fires { "fires" } else { "does not fire" }
            );
        }
    }
    for (a, _) in &cases {
        assert!(
            alerts.contains(a),
            "alerts_test.yml tests {a}, no such alert"
        );
    }
}

#[test]
fn every_alert_is_explained_in_the_monitoring_page() {
    let page = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/monitoring.md"));
    for alert in alert_names(&read(&monitoring("alerts.yml"))) {
        assert!(
            page.lines()
                .any(|l| l.starts_with('#') && l.contains(&format!("`{alert}`"))),
            "docs/monitoring.md has no heading for `{alert}`"
        );
    }
}

/// Every `swarm_lb_*` word of `text`.
fn swarm_lb_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("swarm_lb_"))
        .map(str::to_owned)
        .collect()
}

/// The sample names the registry exports: the `# TYPE` names, and a histogram's `_bucket`,
/// `_sum` and `_count` series.
fn exported_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in Metrics::with_a_series_in_every_family().encode().lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

#[test]
fn the_alerts_and_the_dashboard_name_only_metrics_swarm_lb_exports() {
    let exported = exported_names();
    for name in ["swarm_lb_haproxy_up", "swarm_lb_convergence_seconds_bucket"] {
        assert!(exported.contains(name), "{exported:?}");
    }
    for file in ["alerts.yml", "alerts_test.yml", "grafana-dashboard.json"] {
        for name in swarm_lb_names(&read(&monitoring(file))) {
            assert!(
                exported.contains(&name),
                "monitoring/{file} names {name}, which swarm-lb does not export"
            );
        }
    }
}
