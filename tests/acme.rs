//! ACME (issue 25, `docs/acme.md`) against a real HAProxy: the HTTP-01 challenge path of the
//! template, fed at runtime through the challenge map, and what it costs as `show proc`'s
//! reload counter.

mod support;

use support::{http_get_target, reloads, route, task_backend, Backend, Haproxy};
use swarm_lb::haproxy::acme::{self, KeyAuthorization, Token};
use swarm_lb::haproxy::{AdminClient, Command, ProxyState};
use swarm_lb::model::{Host, MapKey, MapValue};

const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
const THUMBPRINT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

async fn run(admin: &mut AdminClient, cmds: &[Command]) {
    let replies = admin.execute(cmds).await.expect("admin socket");
    for (cmd, reply) in cmds.iter().zip(replies) {
        reply.unwrap_or_else(|e| panic!("{}: {e}", cmd.kind()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_token_is_answered_before_routing_and_the_ssl_only_redirect_and_comes_and_goes_with_no_reload(
) {
    let web = Backend::start("web").await;
    let mut state = ProxyState::default();
    route(
        &mut state,
        "web",
        task_backend(&[web.addr], 2),
        &["a.example", "b.example"],
    );
    // a.example is ssl_only: plain HTTP is redirected, but the CA's request must not be.
    let a = Host::parse("a.example").expect("host");
    state
        .hosts
        .insert(MapKey::https_only(&a), MapValue::https_only());
    let haproxy = Haproxy::start(&state).await;
    let port = haproxy.http_port;
    let master = haproxy.master();
    let before = reloads(&master).await;
    let map = acme::acme_map(haproxy.hosts_map());
    assert!(
        haproxy.files.acme_map_path().exists(),
        "the renderer creates the map"
    );
    let mut admin = AdminClient::new(haproxy.admin_socket());
    let token = Token::new(TOKEN).expect("token");
    let auth = KeyAuthorization::new(&token, &format!("{TOKEN}.{THUMBPRINT}")).expect("auth");
    let unknown = format!("{}unknown-token", acme::CHALLENGE_PREFIX);

    // Nothing ordered yet: challenge paths are the services' (b.example routes, a.example
    // redirects like any plain request for it).
    assert_eq!(
        http_get_target(port, "b.example", &unknown).await.status,
        200
    );
    assert_eq!(
        http_get_target(port, "a.example", &unknown).await.status,
        301
    );

    run(
        &mut admin,
        &[
            acme::mark_host(&map, &a),
            acme::put_token(&map, &token, &auth),
        ],
    )
    .await;
    let served_before = web.requests();
    let got = http_get_target(port, "a.example", &token.path()).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body, auth.as_str());
    assert_eq!(got.header("content-type"), Some("text/plain"));
    // The host's port and case do not matter (the Host header as the frontend reads it).
    let got = http_get_target(port, "A.Example:80", &token.path()).await;
    assert_eq!(got.body, auth.as_str());
    let got = http_get_target(port, "a.example", &unknown).await;
    assert_eq!(got.status, 404, "{got:?}");
    assert_eq!(
        web.requests(),
        served_before,
        "no challenge reached the service"
    );
    // Everything else on the ssl_only host is still redirected.
    assert_eq!(http_get_target(port, "a.example", "/").await.status, 301);
    // An unmarked host still routes unknown challenge paths to its service.
    assert_eq!(
        http_get_target(port, "b.example", &unknown).await.status,
        200
    );

    run(&mut admin, &[acme::take_token(&map, &token)]).await;
    assert_eq!(
        http_get_target(port, "a.example", &token.path())
            .await
            .status,
        404
    );
    run(&mut admin, &[acme::unmark_host(&map, &a)]).await;
    assert_eq!(
        http_get_target(port, "a.example", &token.path())
            .await
            .status,
        301
    );
    assert_eq!(reloads(&master).await, before, "no challenge edit reloads");
}
