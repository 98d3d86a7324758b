//! ACME (issue 25, `docs/acme.md`) against a real HAProxy: the HTTP-01 challenge path of the
//! template, fed at runtime through the challenge map, and what it costs as `show proc`'s
//! reload counter.

mod support;

use support::{http_get_target, reloads, route, task_backend, Backend, Haproxy};
use swarm_lb::haproxy::acme::{self, KeyAuthorization, Token};
use swarm_lb::haproxy::{AdminClient, Command, ProxyState};
use swarm_lb::model::{Host, MapKey, MapValue};
use swarm_lb_testkit::pebble::Pebble;

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

// ---- Pebble: a real ACME server validating through HAProxy ----

/// `curl --cacert <root>` to `https://<host>:<port>/` resolved to loopback: the status, or
/// curl's complaint (a chain it could not verify).
fn verified_get(port: u16, host: &str, root: &std::path::Path) -> Result<u16, String> {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(root)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_two_hosts_is_issued_by_pebble_over_haproxys_challenge_map_and_served_verified_with_no_reload(
) {
    use swarm_lb::acme::client::Patience;
    use swarm_lb::acme::settings::{AcmeFlags, AcmeSettings};
    use swarm_lb::acme::{AcmeClient, HaproxyChallenges};

    let web = Backend::start("web").await;
    let hosts = ["a.example", "b.example"];
    let mut state = ProxyState::default();
    route(&mut state, "web", task_backend(&[web.addr], 2), &hosts);
    let haproxy = Haproxy::start_https(&state).await;
    let (https_port, certs) = haproxy.https.as_ref().expect("HTTPS");
    let master = haproxy.master();
    let before = reloads(&master).await;
    let pebble = Pebble::start(haproxy.http_port).await;

    let settings = AcmeSettings::new(&AcmeFlags {
        directory: &pebble.directory,
        email: Some("ops@swarm-lb.example"),
        ca_bundle: Some(&pebble.ca_bundle),
        ..AcmeFlags::default()
    })
    .expect("settings");
    let (client, credentials) = AcmeClient::create(&settings).await.expect("account");
    assert_eq!(format!("{credentials:?}"), "Credentials(<redacted>)");
    let map = acme::acme_map(haproxy.hosts_map());
    let mut admin = AdminClient::new(haproxy.admin_socket());
    let names: Vec<Host> = hosts
        .iter()
        .map(|h| Host::parse(h).expect("host"))
        .collect();
    let marks: Vec<Command> = names.iter().map(|h| acme::mark_host(&map, h)).collect();
    run(&mut admin, &marks).await;

    let mut answers = HaproxyChallenges::new(AdminClient::new(haproxy.admin_socket()), map.clone());
    let started = std::time::Instant::now();
    let issued = match client
        .order(&names, &mut answers, Patience::default())
        .await
    {
        Ok(issued) => issued,
        Err(e) => panic!("order: {e}\n{}\n{}", pebble.log(), haproxy.log()),
    };
    let took = started.elapsed();
    // Pebble's VA really fetched the answers through HAProxy (no PEBBLE_VA_ALWAYS_VALID):
    // HAProxy's own log has one answered challenge per host.
    support::poll_until(
        support::STARTUP,
        "HAProxy to log the CA's requests",
        || async {
            let log = haproxy.log();
            let answered = log
                .lines()
                .filter(|l| l.contains("GET /.well-known/acme-challenge/") && l.contains(" 200 "))
                .count();
            (answered >= hosts.len()).then_some(())
        },
    )
    .await;
    // Every answer was withdrawn: the CA's paths are 404s again.
    let left = http_get_target(
        haproxy.http_port,
        "a.example",
        "/.well-known/acme-challenge/x",
    )
    .await;
    assert_eq!(left.status, 404);

    // The pair passes the checks a labelled pair gets, and its renewal falls inside its
    // lifetime, two thirds in.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let info = issued
        .check(&names, now)
        .expect("the issued pair checks out");
    let (not_before, not_after) = issued.validity().expect("validity");
    assert_eq!(not_after, info.not_after);
    let renew = swarm_lb::acme::schedule::renew_at(not_before, not_after);
    assert!(not_before <= now && now < renew && renew < not_after);
    eprintln!(
        "issued: serial {}, lifetime {} s, renewal due in {} s",
        info.serial,
        not_after - not_before,
        renew - now
    );

    // Served through the existing TLS path (Runtime API, then files), as the driver does.
    let info = admin.info().await.expect("show info");
    let list = certs.crt_list().expect("crt-list");
    let cert = certs.cert("acme-web").expect("cert path");
    let pem = issued.pem().expect("pem");
    let cmds = swarm_lb::haproxy::tls::push_commands(&list, &cert, pem.clone(), true, info.version)
        .expect("fits the payload limit");
    run(&mut admin, &cmds).await;
    certs.write_cert(&cert, &pem).expect("write cert");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(cert.as_str())
            .expect("cert file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key's file is the owner's only");

    let root = pebble.issuing_root();
    for host in hosts {
        let status = verified_get(*https_port, host, &root)
            .unwrap_or_else(|e| panic!("{host}: the served chain is not Pebble's: {e}"));
        assert_eq!(status, 200, "{host}");
    }
    assert_eq!(
        reloads(&master).await,
        before,
        "issuing and serving reload nothing"
    );
    eprintln!(
        "order for {} hosts through HAProxy's challenge map: {} ms",
        hosts.len(),
        took.as_millis()
    );
}

/// Answers nothing: the CA's requests meet HAProxy's 404 for an ACME host.
struct Silent;

impl swarm_lb::acme::Challenges for Silent {
    async fn publish(
        &mut self,
        _: &Token,
        _: &KeyAuthorization,
    ) -> Result<(), swarm_lb::acme::client::ChallengesError> {
        Ok(())
    }
    async fn withdraw(&mut self, _: &Token) -> Result<(), swarm_lb::acme::client::ChallengesError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_validation_gives_the_cas_problem_and_http_keeps_routing_with_no_reload() {
    use swarm_lb::acme::client::Patience;
    use swarm_lb::acme::settings::{AcmeFlags, AcmeSettings};
    use swarm_lb::acme::AcmeClient;

    let web = Backend::start("web").await;
    let mut state = ProxyState::default();
    route(
        &mut state,
        "web",
        task_backend(&[web.addr], 2),
        &["a.example"],
    );
    let haproxy = Haproxy::start(&state).await;
    let master = haproxy.master();
    let before = reloads(&master).await;
    let pebble = Pebble::start(haproxy.http_port).await;
    let settings = AcmeSettings::new(&AcmeFlags {
        directory: &pebble.directory,
        ca_bundle: Some(&pebble.ca_bundle),
        ..AcmeFlags::default()
    })
    .expect("settings");
    let (client, _) = AcmeClient::create(&settings).await.expect("account");
    let map = acme::acme_map(haproxy.hosts_map());
    let a = Host::parse("a.example").expect("host");
    let mut admin = AdminClient::new(haproxy.admin_socket());
    run(&mut admin, &[acme::mark_host(&map, &a)]).await;

    let error = client
        .order(std::slice::from_ref(&a), &mut Silent, Patience::default())
        .await
        .expect_err("nothing answers the challenge");
    let text = error.to_string();
    eprintln!("the order's error: {text}");
    // Pebble's problem document, as an operator would read it in status.
    assert!(text.contains("unauthorized"), "{text}");
    assert!(text.contains("404"), "{text}");
    assert!(
        text.contains("/.well-known/acme-challenge/<token> "),
        "the token the CA quotes is redacted: {text}"
    );
    assert!(
        error.is_transient(),
        "a failed validation is retried: {text}"
    );
    assert_eq!(
        support::http_get(haproxy.http_port, "a.example").await.0,
        200
    );
    assert_eq!(reloads(&master).await, before);
}

/// The serial of the certificate served for `host` on `port` (hex, upper case, no leading
/// zeros), by openssl's own client.
fn served_serial(port: u16, host: &str) -> Option<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername {host} </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let serial = text.trim().strip_prefix("serial=")?;
    Some(serial.trim_start_matches('0').to_uppercase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_certificate_is_replaced_in_place_under_https_load_with_no_failed_request_and_no_reload(
) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use swarm_lb::acme::client::Patience;
    use swarm_lb::acme::schedule;
    use swarm_lb::acme::settings::{AcmeFlags, AcmeSettings};
    use swarm_lb::acme::{AcmeClient, HaproxyChallenges};

    const VALIDITY_S: u64 = 60;
    let web = Backend::start("web").await;
    let mut state = ProxyState::default();
    route(
        &mut state,
        "web",
        task_backend(&[web.addr], 2),
        &["a.example"],
    );
    let haproxy = Haproxy::start_https(&state).await;
    let (https_port, certs) = haproxy.https.as_ref().expect("HTTPS");
    let https_port = *https_port;
    let master = haproxy.master();
    let before = reloads(&master).await;
    let pebble = Pebble::start_issuing_for(haproxy.http_port, Some(VALIDITY_S)).await;
    let settings = AcmeSettings::new(&AcmeFlags {
        directory: &pebble.directory,
        ca_bundle: Some(&pebble.ca_bundle),
        ..AcmeFlags::default()
    })
    .expect("settings");
    let (client, _) = AcmeClient::create(&settings).await.expect("account");
    let map = acme::acme_map(haproxy.hosts_map());
    let a = Host::parse("a.example").expect("host");
    let mut admin = AdminClient::new(haproxy.admin_socket());
    run(&mut admin, &[acme::mark_host(&map, &a)]).await;
    let mut answers = HaproxyChallenges::new(AdminClient::new(haproxy.admin_socket()), map.clone());
    let hosts = std::slice::from_ref(&a);
    let version = admin.info().await.expect("show info").version;
    let list = certs.crt_list().expect("crt-list");
    let cert = certs.cert("acme-web").expect("cert path");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64
    };

    let first = client
        .order(hosts, &mut answers, Patience::default())
        .await
        .unwrap_or_else(|e| panic!("first order: {e}\n{}", pebble.log()));
    let (not_before, not_after) = first.validity().expect("validity");
    assert!(
        (not_after - not_before).abs_diff(VALIDITY_S as i64) <= 1,
        "Pebble issued for {VALIDITY_S} s: {not_before}..{not_after}"
    );
    assert_eq!(
        schedule::renew_at(not_before, not_after) - not_before,
        (not_after - not_before) * 2 / 3
    );
    // Pebble 2.4 offers no ACME Renewal Information (RFC 9773): its directory has no
    // `renewalInfo`, the client says so without a request, and renewal is at two thirds.
    let directory = pebble.directory_document();
    eprintln!("Pebble's directory: {directory}");
    assert!(
        directory.contains("newOrder") && !directory.contains("renewalInfo"),
        "{directory}"
    );
    let id = swarm_lb::acme::client::certificate_id(&first.chain).expect("ARI id of the leaf");
    assert_eq!(client.renewal_info(&id).await.expect("renewal info"), None);
    assert_eq!(
        schedule::renewal(now(), not_before, not_after, None, 0.5),
        (
            schedule::renew_at(not_before, not_after),
            schedule::Basis::TwoThirds
        )
    );
    let first_serial = first.check(hosts, now()).expect("first pair").serial;
    let pem = first.pem().expect("pem");
    let cmds = swarm_lb::haproxy::tls::push_commands(&list, &cert, pem.clone(), true, version)
        .expect("fits");
    run(&mut admin, &cmds).await;
    certs.write_cert(&cert, &pem).expect("write cert");
    let want_first = first_serial.trim_start_matches('0').to_owned();
    support::poll_until(support::STARTUP, "the first certificate served", || async {
        (served_serial(https_port, "a.example").as_deref() == Some(want_first.as_str()))
            .then_some(())
    })
    .await;

    // HTTPS load, each request a new TLS handshake verified against Pebble's root.
    let root = pebble.issuing_root();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed, root) = (stop.clone(), ok.clone(), failed.clone(), root.clone());
        std::thread::spawn(move || {
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match verified_get(https_port, "a.example", &root) {
                    Ok(200) => ok.fetch_add(1, Ordering::SeqCst),
                    other => {
                        errors.push(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
            errors
        })
    };
    support::poll_until(support::STARTUP, "load to start", || async {
        (ok.load(Ordering::SeqCst) >= 5).then_some(())
    })
    .await;

    // The renewal: a new order, its pair replacing the served one in place (set + commit: the
    // crt-list entry stays, so no handshake finds the name unserved).
    let second = client
        .order(hosts, &mut answers, Patience::default())
        .await
        .unwrap_or_else(|e| panic!("second order: {e}\n{}", pebble.log()));
    let second_serial = second.check(hosts, now()).expect("second pair").serial;
    assert_ne!(second_serial, first_serial);
    let pem = second.pem().expect("pem");
    let cmds = swarm_lb::haproxy::tls::push_commands(&list, &cert, pem.clone(), false, version)
        .expect("fits");
    run(&mut admin, &cmds).await;
    certs.write_cert(&cert, &pem).expect("write cert");
    let want = second_serial.trim_start_matches('0').to_owned();
    support::poll_until(support::STARTUP, "the new serial served", || async {
        (served_serial(https_port, "a.example").as_deref() == Some(want.as_str())).then_some(())
    })
    .await;
    let at_switch = ok.load(Ordering::SeqCst);
    support::poll_until(support::STARTUP, "load on the new certificate", || async {
        (ok.load(Ordering::SeqCst) >= at_switch + 5).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let errors = load.join().expect("load thread");
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("renewal under load: {ok} verified HTTPS requests, {failed} failed");
    assert_eq!(failed, 0, "{errors:?}");
    assert_eq!(reloads(&master).await, before, "no reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_challenge_answers_the_map_file_holds_and_the_file_is_the_owners_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let web = Backend::start("web").await;
    let mut state = ProxyState::default();
    route(
        &mut state,
        "web",
        task_backend(&[web.addr], 2),
        &["a.example"],
    );
    let haproxy = Haproxy::start(&state).await;
    let port = haproxy.http_port;
    let map = acme::acme_map(haproxy.hosts_map());
    let a = Host::parse("a.example").expect("host");
    let token = Token::new(TOKEN).expect("token");
    let auth = KeyAuthorization::new(&token, &format!("{TOKEN}.{THUMBPRINT}")).expect("auth");
    let mut admin = AdminClient::new(haproxy.admin_socket());
    run(
        &mut admin,
        &[
            acme::mark_host(&map, &a),
            acme::put_token(&map, &token, &auth),
        ],
    )
    .await;
    haproxy
        .files
        .write_acme_map(&acme::map_text(
            std::slice::from_ref(&a),
            &[(token.clone(), auth.clone())],
        ))
        .expect("write the map file");
    let mode = std::fs::metadata(haproxy.files.acme_map_path())
        .expect("map file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let master = haproxy.master();
    let before = reloads(&master).await;
    master
        .reload(std::time::Duration::from_secs(10))
        .await
        .expect("reload");
    support::poll_until(
        support::STARTUP,
        "the new worker to answer the token",
        || async {
            let got = support::try_http_get_target(port, "a.example", &token.path(), "")
                .await
                .ok()?;
            (got.body == auth.as_str() && reloads(&master).await > before).then_some(())
        },
    )
    .await;
    let unknown = format!("{}unknown-token", acme::CHALLENGE_PREFIX);
    assert_eq!(
        http_get_target(port, "a.example", &unknown).await.status,
        404,
        "the host's mark came back from the file too"
    );
}
