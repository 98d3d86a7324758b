//! Real HAProxy, no Docker: the master CLI reload with completion detection, the rollback to
//! the last good files, and HTTP through the rendered frontend and hosts map.

mod support;

use std::time::Duration;

use support::{http_get, poll_until, reloads, route, task_backend, try_http_get, Backend, Haproxy};
use swarm_lb::haproxy::{AdminClient, MasterError, ProxyState};

const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// One backend `web` (its task at `backend`, plus free slots) for `web.example.com`.
fn web_state(backend: &Backend) -> ProxyState {
    let mut state = ProxyState::default();
    route(
        &mut state,
        "web",
        task_backend(&[backend.addr], 4),
        &["web.example.com"],
    );
    state
}

/// Wait until HAProxy's health check sees the backend up and a request gets through.
async fn wait_routed(haproxy: &Haproxy, host: &str, want: &str) {
    poll_until(
        Duration::from_secs(10),
        "a request reaches the backend",
        || async {
            match try_http_get(haproxy.http_port, host).await {
                Ok((200, body)) if body == want => Some(()),
                _ => None,
            }
        },
    )
    .await
}

#[tokio::test]
async fn the_admin_and_master_sockets_are_not_world_accessible() {
    use std::os::unix::fs::PermissionsExt as _;
    let backend = Backend::start("web").await;
    let haproxy = Haproxy::start(&web_state(&backend)).await;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    // The modes the shipped template (stats socket ... mode 660) and docker-compose.yml
    // (-S ...,mode,600) give them.
    assert_eq!(mode(haproxy.admin_socket()), 0o660, "admin socket");
    assert_eq!(mode(haproxy.master_socket()), 0o600, "master socket");
    let compose =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
            .expect("docker-compose.yml");
    assert!(
        compose.contains("-S /var/run/haproxy/master.sock,mode,600"),
        "the compose file runs HAProxy with a private master socket"
    );
    assert!(swarm_lb::haproxy::render::BASE_TEMPLATE.contains("mode 660 level admin"));
}

#[tokio::test]
async fn a_successful_reload_is_detected_with_a_new_worker_pid() {
    let backend = Backend::start("web").await;
    let haproxy = Haproxy::start(&web_state(&backend)).await;
    let master = haproxy.master();
    let before = master.show_proc().await.expect("show proc");
    let count = reloads(&master).await;

    let reloaded = master.reload(RELOAD_TIMEOUT).await.expect("reload");

    assert_eq!(reloaded.old_worker, before.workers.first().map(|w| w.pid));
    assert_ne!(Some(reloaded.new_worker), reloaded.old_worker);
    let after = master.show_proc().await.expect("show proc");
    assert_eq!(
        after.workers.iter().map(|w| w.pid).collect::<Vec<_>>(),
        [reloaded.new_worker]
    );
    assert_eq!(after.failed_reloads, before.failed_reloads);
    assert_eq!(reloads(&master).await, count + 1);
    assert!(reloaded.took < RELOAD_TIMEOUT);
    wait_routed(&haproxy, "web.example.com", "web").await;
}

#[tokio::test]
async fn a_broken_config_fails_the_reload_the_old_worker_keeps_serving_and_restoring_the_good_one_recovers(
) {
    let backend = Backend::start("web").await;
    let haproxy = Haproxy::start(&web_state(&backend)).await;
    wait_routed(&haproxy, "web.example.com", "web").await;
    let master = haproxy.master();
    let before = master.show_proc().await.expect("show proc");

    let mut broken = std::fs::read_to_string(haproxy.config_path()).expect("read config");
    broken.push_str("\nbackend broken\n    this-is-not-a-keyword 1\n");
    std::fs::write(haproxy.config_path(), broken).expect("write broken config");

    let err = master
        .reload(RELOAD_TIMEOUT)
        .await
        .expect_err("HAProxy accepted a broken config");
    let MasterError::ReloadFailed { log } = &err else {
        panic!("expected ReloadFailed, got {err}");
    };
    // 2.7+ hands back HAProxy's own alert; 2.6 has none to give and says where to look.
    assert!(
        log.contains("this-is-not-a-keyword") || log.contains("master's own log"),
        "{log}"
    );
    // HAProxy's reason is in the master's log, whatever the version.
    assert!(
        haproxy.log().contains("this-is-not-a-keyword"),
        "{}",
        haproxy.log()
    );

    let after = master.show_proc().await.expect("show proc");
    let serving =
        |procs: &swarm_lb::haproxy::codec::ProcList| procs.serving_worker().map(|w| w.pid);
    // Same worker (its own reload count still goes up: it survived one more reload).
    assert_eq!(
        serving(&after),
        serving(&before),
        "the old worker was replaced: {after:?}"
    );
    assert_eq!(after.failed_reloads, before.failed_reloads + 1);
    // Where `show proc` lists it depends on the version (measured: 2.6 and 3.0 under
    // `# workers`, 3.2 and 3.4 under `# old workers`, the new worker's section left empty).
    let version = AdminClient::new(haproxy.admin_socket())
        .info()
        .await
        .expect("show info")
        .version;
    if (version.major, version.minor) >= (3, 1) {
        assert!(after.workers.is_empty(), "{version:?}: {after:?}");
    } else {
        assert_eq!(after.workers.len(), 1, "{version:?}: {after:?}");
    }
    assert_eq!(
        http_get(haproxy.http_port, "web.example.com").await,
        (200, "web".to_owned())
    );

    haproxy.files.restore_good().expect("restore good files");
    let reloaded = master
        .reload(RELOAD_TIMEOUT)
        .await
        .expect("reload of the good config");
    assert_eq!(reloaded.old_worker, serving(&before));
    wait_routed(&haproxy, "web.example.com", "web").await;
}

#[tokio::test]
async fn http_reaches_the_backend_named_by_the_host_header_through_the_map() {
    let web = Backend::start("web").await;
    let api = Backend::start("api").await;
    let mut state = web_state(&web);
    route(
        &mut state,
        "api",
        task_backend(&[api.addr], 2),
        &["api.example.com"],
    );
    let haproxy = Haproxy::start(&state).await;

    wait_routed(&haproxy, "web.example.com", "web").await;
    wait_routed(&haproxy, "api.example.com", "api").await;
    // The Host header is matched lower-cased and without its port.
    assert_eq!(
        http_get(haproxy.http_port, "API.Example.com:8080").await,
        (200, "api".to_owned())
    );
    assert!(web.requests() >= 1 && api.requests() >= 2);
}

#[tokio::test]
async fn an_unknown_host_gets_the_503_of_the_default_backend() {
    let web = Backend::start("web").await;
    let haproxy = Haproxy::start(&web_state(&web)).await;

    let (status, body) = http_get(haproxy.http_port, "nobody.example.com").await;

    assert_eq!(status, 503);
    assert_eq!(
        body,
        "swarm-lb: no service is routed for this host and path\n"
    );
    assert_eq!(web.requests(), 0);
}
