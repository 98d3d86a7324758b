//! The verdicts on services built by hand: no Docker.

use std::collections::BTreeMap;

use super::*;
use crate::model::{shared, Network};

fn service(name: &str, labels: &[(&str, &str)]) -> Service {
    Service {
        id: format!("id-{name}"),
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        networks: vec!["net-front".to_owned()],
        vips: vec![],
    }
}

fn snapshot(services: Vec<Service>) -> Snapshot {
    Snapshot {
        services: shared(services),
        tasks: vec![],
        networks: vec![Network {
            id: "net-front".to_owned(),
            name: "front".to_owned(),
            driver: "overlay".to_owned(),
            attachable: true,
            ingress: false,
        }],
    }
}

fn one(labels: &[(&str, &str)]) -> ServiceCheck {
    let checks = check(
        &snapshot(vec![service("web", labels)]),
        &model::Settings::default(),
    );
    assert_eq!(checks.len(), 1);
    checks.into_iter().next().unwrap()
}

#[test]
fn good_labels_are_routed_with_hosts_mode_network_and_options() {
    let c = one(&[
        ("com.docker.lb.hosts", "b.example,a.example"),
        ("com.docker.lb.port", "8080"),
        ("com.docker.lb.context_root", "/app"),
        ("com.docker.lb.ip_hash", "true"),
    ]);
    assert_eq!(
        c.verdict,
        CheckVerdict::Routed {
            hosts: vec!["a.example".into(), "b.example".into()],
            port: 8080,
            mode: "task",
            network: "front".into(),
            backend: "web".into(),
            options: vec!["context_root=/app".into(), "ip_hash=true".into()],
        }
    );
    assert_eq!(c.errors, Vec::<String>::new());
    assert_eq!(c.warnings, Vec::<String>::new());
    let labels: Vec<&str> = c.changed.iter().map(|ch| ch.label.as_str()).collect();
    // A host list without a wildcard reads as in Interlock.
    assert_eq!(
        labels,
        ["com.docker.lb.context_root", "com.docker.lb.ip_hash"]
    );
    assert_eq!(exit_status(&[c], true), ExitStatus::Routable);
}

#[test]
fn refused_labels_carry_the_daemons_own_error_text_and_exit_1() {
    let c = one(&[
        ("com.docker.lb.hosts", "a.example"),
        ("com.docker.lb.port", "0"),
    ]);
    // What `LabelMemory` logs for the same labels: the `LabelError`'s text.
    let parsed = labels::parse(&service(
        "web",
        &[
            ("com.docker.lb.hosts", "a.example"),
            ("com.docker.lb.port", "0"),
        ],
    ))
    .unwrap();
    let labels::Verdict::Refused(daemon) = parsed.route else {
        panic!("{parsed:?}")
    };
    let daemon: Vec<String> = daemon.iter().map(ToString::to_string).collect();
    assert_eq!(
        c.verdict,
        CheckVerdict::Refused {
            refused: daemon.clone()
        }
    );
    assert_eq!(
        daemon,
        ["service web: label com.docker.lb.port=\"0\": port 0 cannot be connected to: use 1..=65535"]
    );
    assert_eq!(exit_status(&[c], false), ExitStatus::Refused);
}

#[test]
fn a_network_the_service_is_not_on_is_refused_as_desired_refuses_it() {
    let c = one(&[
        ("com.docker.lb.hosts", "a.example"),
        ("com.docker.lb.port", "80"),
        ("com.docker.lb.network", "back"),
    ]);
    let CheckVerdict::Refused { refused } = &c.verdict else {
        panic!("{c:?}")
    };
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with("service web: label com.docker.lb.network="),
        "{refused:?}"
    );
}

#[test]
fn a_host_left_out_among_good_ones_routes_the_rest_and_still_exits_1() {
    let c = one(&[
        ("com.docker.lb.hosts", "a.example,b.example:8080"),
        ("com.docker.lb.port", "80"),
    ]);
    assert!(
        matches!(&c.verdict, CheckVerdict::Routed { hosts, .. } if hosts == &["a.example"]),
        "{c:?}"
    );
    assert_eq!(c.errors.len(), 1, "{c:?}");
    assert!(c.errors[0].contains("b.example:8080"), "{:?}", c.errors);
    assert_eq!(exit_status(&[c], false), ExitStatus::Refused);
}

#[test]
fn interlock_labels_read_differently_are_named_and_warnings_count_only_when_strict() {
    let c = one(&[
        ("com.docker.lb.hosts", "a.example"),
        ("com.docker.lb.port", "80"),
        ("com.docker.lb.backend_mode", "vip"),
        ("com.docker.lb.sticky_session_cookie", "session"),
        ("com.docker.lb.websocket_endpoints", "/ws"),
        ("com.docker.lb.hots", "typo.example"),
    ]);
    // No VIP in the snapshot: vip mode falls back to the tasks, with the daemon's warning.
    assert!(
        matches!(&c.verdict, CheckVerdict::Routed { mode: "task", options, .. }
            if options == &["websocket_endpoints=/ws"]),
        "{c:?}"
    );
    let changed: Vec<&str> = c.changed.iter().map(|ch| ch.label.as_str()).collect();
    assert_eq!(
        changed,
        [
            "com.docker.lb.backend_mode",
            "com.docker.lb.sticky_session_cookie",
            "com.docker.lb.websocket_endpoints",
        ]
    );
    let warnings = c.warnings.join("\n");
    assert!(
        warnings.contains("com.docker.lb.hots is not a label swarm-lb knows"),
        "{warnings}"
    );
    assert!(
        warnings.contains("com.docker.lb.sticky_session_cookie is not offered in vip mode"),
        "{warnings}"
    );
    let checks = [c];
    assert_eq!(exit_status(&checks, false), ExitStatus::Routable);
    assert_eq!(exit_status(&checks, true), ExitStatus::Refused);
    let text = render(&checks);
    assert!(
        text.contains("changed from Interlock: com.docker.lb.websocket_endpoints: only checked"),
        "{text}"
    );
}

#[test]
fn services_without_labels_another_cluster_or_no_hosts_are_ignored_and_interlocks_own_flagged() {
    let snap = snapshot(vec![
        service("db", &[("com.docker.stack.namespace", "app")]),
        service(
            "east",
            &[
                ("com.docker.lb.hosts", "e.example"),
                ("com.docker.lb.port", "80"),
                ("com.docker.lb.service_cluster", "east"),
            ],
        ),
        service("nohosts", &[("com.docker.lb.port", "80")]),
        service("ucp-interlock-proxy", &[]),
    ]);
    let checks = check(&snap, &model::Settings::default());
    let verdicts: Vec<(&str, &str)> = checks
        .iter()
        .map(|c| {
            let kind = match &c.verdict {
                CheckVerdict::Routed { .. } => "routed",
                CheckVerdict::Refused { .. } => "refused",
                CheckVerdict::Ignored { .. } => "ignored",
                CheckVerdict::Interlock { .. } => "interlock",
            };
            (c.service.as_str(), kind)
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("db", "ignored"),
            ("east", "ignored"),
            ("nohosts", "ignored"),
            ("ucp-interlock-proxy", "interlock"),
        ]
    );
    let reason = |i: usize| match &checks[i].verdict {
        CheckVerdict::Ignored { reason } => reason.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(reason(0), "no com.docker.lb.* labels");
    assert!(
        reason(1).contains("--service-cluster \"east\""),
        "{}",
        reason(1)
    );
    assert!(
        reason(2).contains("com.docker.lb.hosts is not set"),
        "{}",
        reason(2)
    );
    assert_eq!(exit_status(&checks, true), ExitStatus::Routable);
    let text = render(&checks);
    assert!(
        text.contains("# 4 services: 3 ignored, 1 interlock"),
        "{text}"
    );
    assert!(
        text.contains("#   ServiceCluster -> --service-cluster / SWARM_LB_SERVICE_CLUSTER"),
        "{text}"
    );
    // Served by the east proxy: a check with its flag routes it.
    let east = model::Settings {
        service_cluster: Some("east".into()),
        ..Default::default()
    };
    let checks = check(&snap, &east);
    assert!(
        matches!(checks[1].verdict, CheckVerdict::Routed { .. }),
        "{:?}",
        checks[1]
    );
    assert!(matches!(&checks[0].verdict, CheckVerdict::Ignored { .. }));
}

#[test]
fn the_json_form_is_one_object_per_service_tagged_by_its_verdict() {
    let c = one(&[
        ("com.docker.lb.hosts", "a.example"),
        ("com.docker.lb.port", "0"),
    ]);
    let json = serde_json::to_value([c]).unwrap();
    assert_eq!(json[0]["service"], "web");
    assert_eq!(json[0]["verdict"], "refused");
    assert!(json[0]["refused"][0]
        .as_str()
        .unwrap()
        .contains("com.docker.lb.port"));
    assert_eq!(json[0]["changed"], serde_json::json!([]));
    assert_eq!(json[0]["errors"], serde_json::json!([]));
}

#[test]
fn a_value_that_could_forge_a_report_line_is_shown_escaped() {
    assert_eq!(shown("/app"), "/app");
    assert_eq!(shown("max-age=60; preload"), "max-age=60; preload");
    assert_eq!(
        shown("x\nrouted    evil: a -> port 1"),
        "\"x\\nrouted    evil: a -> port 1\""
    );
    assert_eq!(shown("\u{1b}[31m"), "\"\\u{1b}[31m\"");
}
