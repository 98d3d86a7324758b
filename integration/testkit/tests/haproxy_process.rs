//! [`HaproxyProcess`] against the real binary (`apt-get install haproxy`; a missing binary
//! fails the test): it comes up on a tiny config, reports a config it rejects with HAProxy's
//! own alert, and Drop leaves no process of its group behind.

use std::path::Path;
use std::time::Duration;

use swarm_lb_testkit::{group_members, poll_until, HaproxyProcess, Launch, StartError};

const STARTUP: Duration = Duration::from_secs(20);

/// The smallest config with an admin socket and a frontend, so that the master forks a worker.
fn tiny_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "global
    stats socket {d}/admin.sock level admin

defaults
    mode http
    timeout connect 1s
    timeout client 1s
    timeout server 1s

frontend http
    bind unix@{d}/http.sock
    default_backend web

backend web
    server s1 127.0.0.1:1 disabled
"
    )
}

/// [`HaproxyProcess::start`] on [`tiny_config`] in `dir`, panicking with its error.
async fn start_tiny(dir: &Path) -> HaproxyProcess {
    let launch = Launch::in_dir(dir);
    std::fs::write(&launch.config, tiny_config(dir)).expect("write config");
    HaproxyProcess::start(launch, STARTUP)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn starts_on_a_tiny_config_and_drop_kills_master_and_worker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut haproxy = start_tiny(dir.path()).await;
    let pgid = haproxy.pid();
    assert!(haproxy.admin_socket().exists());
    assert!(haproxy.master_socket().exists());
    // The master and at least one worker, both in the group the master leads.
    let members = haproxy
        .wait_until(STARTUP, "a worker in the master's group", || async {
            let members = group_members(pgid);
            (members.len() >= 2).then_some(members)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(members.contains(&pgid), "{members:?}");
    assert!(haproxy.processes().contains(&pgid));

    drop(haproxy);
    // Drop waited for the master only; the worker, not our child, dies on its own schedule
    // once SIGKILL reaches it.
    poll_until(
        Duration::from_secs(5),
        "no haproxy process left in the group",
        || async { group_members(pgid).is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_config_haproxy_rejects_fails_the_start_with_its_alert() {
    let dir = tempfile::tempdir().expect("temp dir");
    let launch = Launch::in_dir(dir.path());
    let config = tiny_config(dir.path()) + "    this-is-not-a-keyword\n";
    std::fs::write(&launch.config, config).expect("write config");
    let error = HaproxyProcess::start(launch, STARTUP)
        .await
        .expect_err("a config with an unknown keyword");
    assert!(
        matches!(&error, StartError::Exited { log, .. } if log.contains("this-is-not-a-keyword")),
        "{error}"
    );
    assert!(
        error.to_string().contains("this-is-not-a-keyword"),
        "{error}"
    );
    // The tests run against several versions: the error says which one failed.
    let version = swarm_lb_testkit::haproxy().expect("haproxy").version;
    assert!(
        error.to_string().contains(&format!("HAProxy {version} (")),
        "{error}"
    );
}

#[tokio::test]
async fn a_deadline_that_passes_is_an_error_with_what_was_awaited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut haproxy = start_tiny(dir.path()).await;
    let error = haproxy
        .wait_until(Duration::from_millis(50), "a miracle", || async {
            None::<()>
        })
        .await
        .expect_err("never");
    assert!(
        matches!(&error, StartError::TimedOut { waiting_for, within, .. }
            if waiting_for == "a miracle" && *within == Duration::from_millis(50)),
        "{error}"
    );
}
