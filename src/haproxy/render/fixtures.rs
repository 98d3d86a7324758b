//! Test fixtures shared by the render modules' tests: settings on the shipped template and a
//! state with used, drained and free slots, a VIP backend and an IPv6 backend with options.

use std::net::SocketAddr;
use std::path::Path;

use super::{RenderSettings, BASE_TEMPLATE};
use crate::haproxy::command::MapPath;
use crate::haproxy::state::{Admin, BackendState, ProxyState, Server};
use crate::model::{
    BackendName, BackendOptions, BackendTls, FailureLimit, Host, MapKey, MapValue, Mode, ServerName,
};

pub(super) fn settings(dir: &Path) -> RenderSettings {
    RenderSettings {
        template: BASE_TEMPLATE.to_owned(),
        binds: vec!["127.0.0.1:18080".into(), "127.0.0.1:18081".into()],
        admin_socket: dir.join("admin.sock"),
        hosts_map: MapPath::new(&dir.join("hosts.map").to_string_lossy()).unwrap(),
        https: None,
        trusted_proxies: Vec::new(),
        userlists: Default::default(),
    }
}

fn server(slot: usize, addr: &str, admin: Admin) -> Server {
    Server {
        name: ServerName::slot(slot),
        addr: addr.parse::<SocketAddr>().unwrap(),
        admin,
    }
}

/// Slots (used, drained, free), a VIP backend and an IPv6 backend.
pub(super) fn state() -> ProxyState {
    let mut s = ProxyState::default();
    s.backends.insert(
        BackendName::for_service("web").unwrap(),
        std::sync::Arc::new(BackendState {
            options: Default::default(),
            mode: Mode::Task,
            servers: vec![
                server(1, "10.0.1.5:8080", Admin::Ready),
                server(2, "10.0.1.6:8080", Admin::Drain),
                Server::free(ServerName::slot(3)),
            ],
        }),
    );
    s.backends.insert(
        BackendName::for_service("api").unwrap(),
        std::sync::Arc::new(BackendState {
            options: Default::default(),
            mode: Mode::Vip,
            servers: vec![Server {
                name: ServerName::vip(),
                addr: "10.0.2.2:80".parse().unwrap(),
                admin: Admin::Ready,
            }],
        }),
    );
    s.backends.insert(
        BackendName::for_service("v6").unwrap(),
        std::sync::Arc::new(BackendState {
            options: BackendOptions {
                ip_hash: true,
                sticky_cookie: Some("sid".into()),
                failure_limit: Some(FailureLimit {
                    max_fails: 3,
                    fail_timeout_ms: 2500,
                }),
                health_check: None,
                compress: false,
                backend_tls: Some(BackendTls { verify: true }),
                passthrough: false,
                timeout_connect_ms: None,
            },
            mode: Mode::Task,
            servers: vec![server(1, "[fd00::5]:9000", Admin::Ready)],
        }),
    );
    for (host, be) in [
        ("www.example.com", "web"),
        ("api.example.com", "api"),
        ("v6.example.com", "v6"),
    ] {
        s.hosts.insert(
            MapKey::host(&Host::parse(host).unwrap()),
            MapValue::backend(&BackendName::for_service(be).unwrap(), 0),
        );
    }
    s
}
