//! Real HAProxy, no Docker: `haproxy -c` accepts what the renderer writes (slots used, drained
//! and free, a VIP backend, IPv6, every balancing option), without a warning.

use std::net::SocketAddr;
use std::path::Path;

use swarm_lb::haproxy::render::{Files, RenderSettings, BASE_TEMPLATE};
use swarm_lb::haproxy::{Admin, BackendState, MapPath, ProxyState, Server};
use swarm_lb::model::{
    BackendName, BackendOptions, BackendTls, FailureLimit, HealthCheck, Mode, ServerName,
};

fn settings(dir: &Path) -> RenderSettings {
    RenderSettings {
        template: BASE_TEMPLATE.to_owned(),
        binds: vec!["127.0.0.1:18080".into(), "127.0.0.1:18081".into()],
        admin_socket: dir.join("admin.sock"),
        hosts_map: MapPath::new(&dir.join("hosts.map").to_string_lossy()).expect("map path"),
        // HTTPS on, so that `haproxy -c` checks the HTTPS entry and the TLS bind too.
        https: Some(swarm_lb::haproxy::render::HttpsSettings {
            binds: vec!["127.0.0.1:18443".into()],
            crt_list: dir.join("certs").join("crt-list"),
            internal: dir.join("https.sock"),
            // The longest profile (`@SECLEVEL=0`, every suite list): HAProxy loads it too.
            tls_profile: swarm_lb::haproxy::tls_profile::TlsProfile::Old,
        }),
        // Both kinds of trusted proxy, both families: the `src` conditions load too.
        trusted_proxies: ["10.0.0.0/8", "2001:db8::/32", "proxy:192.0.2.10"]
            .iter()
            .map(|s| s.parse().expect("trusted proxy"))
            .collect(),
        // A basic-auth user list, so that `haproxy -c` checks the userlist section and its
        // rules too: a real sha-512-crypt hash of 1,000 rounds (crypt(3) with
        // `$6$rounds=1000$`), because 3.4 warns at load about any hash that takes 10 ms or
        // more to check (5,000 rounds, `openssl passwd -6`'s, took 10-13 ms here under load).
        userlists: swarm_lb::haproxy::auth::Userlists::new(
            [(
                "staff".to_owned(),
                swarm_lb::model::htpasswd::parse(
                    "alice:$6$rounds=1000$rendercheck$yrlHWkR8VX8jXNxexxQCeVIgAgZ/Iv6pjN2Lhr7Xrx/a9aQxEnkyAamcPEjn/5pVp6mPStnoWDnEiRWQUb4CT.",
                )
                .expect("htpasswd line"),
            )]
            .into(),
        ),
    }
}

fn server(slot: usize, addr: &str, admin: Admin) -> Server {
    Server {
        name: ServerName::slot(slot),
        addr: addr.parse::<SocketAddr>().expect("address"),
        admin,
    }
}

fn backend(state: &mut ProxyState, name: &str, b: BackendState) {
    state
        .backends
        .insert(BackendName::for_service(name).expect("name"), b.into());
}

/// Slots (used, drained, free), a VIP backend and an IPv6 backend with every option.
fn state() -> ProxyState {
    let mut s = ProxyState::default();
    backend(
        &mut s,
        "web",
        BackendState {
            options: BackendOptions::default(),
            mode: Mode::Task,
            servers: vec![
                server(1, "10.0.1.5:8080", Admin::Ready),
                server(2, "10.0.1.6:8080", Admin::Drain),
                Server::free(ServerName::slot(3)),
            ],
        },
    );
    backend(
        &mut s,
        "api",
        BackendState {
            options: BackendOptions::default(),
            mode: Mode::Vip,
            servers: vec![Server {
                name: ServerName::vip(),
                addr: "10.0.2.2:80".parse().expect("address"),
                admin: Admin::Ready,
            }],
        },
    );
    backend(
        &mut s,
        "v6",
        BackendState {
            options: BackendOptions {
                ip_hash: true,
                sticky_cookie: Some("sid".into()),
                failure_limit: Some(FailureLimit {
                    max_fails: 3,
                    fail_timeout_ms: 2500,
                }),
                health_check: Some(HealthCheck { interval_ms: 750 }),
                compress: true,
                backend_tls: Some(BackendTls { verify: true }),
                passthrough: false,
                // com.docker.lb.timeout_connect before 3.4: the section's own line.
                timeout_connect_ms: Some(2500),
            },
            mode: Mode::Task,
            servers: vec![server(1, "[fd00::5]:9000", Admin::Ready)],
        },
    );
    s
}

#[test]
fn haproxy_accepts_a_rendered_config_with_slots_vip_drained_and_ipv6() {
    check(|_| {});
}

#[test]
fn haproxy_accepts_the_config_without_https_or_trusted_proxies_too() {
    // The `always_false` conditions and no TLS lines: still no warning.
    check(|s| {
        s.https = None;
        s.trusted_proxies.clear();
    });
}

fn check(tweak: impl FnOnce(&mut RenderSettings)) {
    let dir = tempfile::Builder::new()
        .prefix("swarm-lb-render-")
        .tempdir()
        .expect("temp dir");
    let files = Files::new(dir.path());
    let mut settings = settings(dir.path());
    tweak(&mut settings);
    settings.validate().expect("settings");
    files.write(&state(), &settings).expect("write files");
    let certs = swarm_lb::haproxy::tls::CertFiles::new(dir.path().join("certs"));
    certs.ensure_default(None).expect("default certificate");
    certs.write_crt_list(std::iter::empty()).expect("crt-list");
    swarm_lb::haproxy::tls::install_backend_ca(
        &swarm_lb::haproxy::render::backend_ca_path(&settings),
        std::path::Path::new(swarm_lb::haproxy::tls::SYSTEM_CA_BUNDLE),
        &certs,
    )
    .expect("backend CA");
    let bin = swarm_lb_testkit::haproxy_bin().unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(bin)
        .arg("-c")
        .arg("-f")
        .arg(files.config_path())
        .output()
        .unwrap_or_else(|e| panic!("running haproxy -c: {e}"));
    assert!(
        out.status.success(),
        "haproxy -c refused the rendered config:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("[WARNING]"), "haproxy -c warns:\n{stderr}");
}
