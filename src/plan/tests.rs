//! The planner's examples and laws. Law 1: a state that already satisfies desired plans to
//! nothing. Law 2: replaying the runtime commands through [`ProxyState::apply`] reaches the
//! target (for reload plans: the part of it that survives the reload).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proptest::prelude::*;

use super::backend::slots_for;
use super::strategy::{actual_and_desired, networks, plan_settings, satisfying};
use super::*;
use crate::haproxy::state::{ApplyError, PLACEHOLDER};
use crate::haproxy::{Admin, BackendState, DefaultsName, Server};
use crate::model::EndpointState::{self, Drain, Ready};
use crate::model::{
    BackendName, BackendOptions, BackendSpec, BackendTls, FailureLimit, Host, MapKey, MapValue,
    Mode, ServerName,
};

// ---- helpers -------------------------------------------------------------------------------

fn be(name: &str) -> BackendName {
    BackendName::parse(name).unwrap()
}
fn host(name: &str) -> MapKey {
    MapKey::host(&Host::parse(name).unwrap())
}
fn val(name: &str) -> MapValue {
    MapValue::backend(&be(name), 0)
}
fn sa(addr: &str) -> SocketAddr {
    addr.parse().unwrap()
}
fn hosts_map() -> MapPath {
    MapPath::new("/etc/haproxy/hosts.map").unwrap()
}
fn settings(block: usize, add_server: bool) -> PlanSettings {
    PlanSettings {
        block,
        add_server,
        hosts_map: hosts_map(),
        runtime_backends: Default::default(),
        connect_timeout_rule: false,
    }
}
fn no_networks() -> BTreeSet<NetworkId> {
    BTreeSet::new()
}

fn task(endpoints: &[(&str, EndpointState)]) -> BackendSpec {
    BackendSpec {
        options: Default::default(),
        service_id: "id".into(),
        mode: Mode::Task,
        network: "n1".into(),
        endpoints: endpoints.iter().map(|(a, s)| (sa(a), *s)).collect(),
    }
}
fn vip(addr: &str) -> BackendSpec {
    BackendSpec {
        options: Default::default(),
        service_id: "id".into(),
        mode: Mode::Vip,
        network: "n1".into(),
        endpoints: [(sa(addr), Ready)].into_iter().collect(),
    }
}
fn desired(backends: Vec<(&str, BackendSpec)>, hosts: &[(&str, &str)]) -> Desired {
    Desired {
        backends: backends
            .into_iter()
            .map(|(n, s)| (be(n), Arc::new(s)))
            .collect(),
        hosts: hosts.iter().map(|(h, b)| (host(h), val(b))).collect(),
        ..Desired::default()
    }
}

/// Task slots `s1..`: `None` is a free slot.
fn slots(servers: &[Option<(&str, Admin)>]) -> BackendState {
    BackendState {
        options: Default::default(),
        mode: Mode::Task,
        servers: servers
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Some((addr, admin)) => Server {
                    name: ServerName::slot(i + 1),
                    addr: sa(addr),
                    admin: *admin,
                },
                None => Server::free(ServerName::slot(i + 1)),
            })
            .collect(),
    }
}
fn vip_state(addr: &str, admin: Admin) -> BackendState {
    BackendState {
        options: Default::default(),
        mode: Mode::Vip,
        servers: vec![Server {
            name: ServerName::vip(),
            addr: sa(addr),
            admin,
        }],
    }
}
fn state(backends: Vec<(&str, BackendState)>, hosts: &[(&str, &str)]) -> ProxyState {
    ProxyState {
        backends: backends
            .into_iter()
            .map(|(n, s)| (be(n), std::sync::Arc::new(s)))
            .collect(),
        hosts: hosts.iter().map(|(h, b)| (host(h), val(b))).collect(),
    }
}

fn set_addr(backend: &str, slot: usize, addr: SocketAddr) -> Command {
    Command::SetAddr {
        backend: be(backend),
        server: ServerName::slot(slot),
        addr,
    }
}
fn set_state(backend: &str, slot: usize, state: Admin) -> Command {
    Command::SetState {
        backend: be(backend),
        server: ServerName::slot(slot),
        state,
    }
}
fn add_server(backend: &str, slot: usize, addr: SocketAddr) -> Command {
    Command::AddServer {
        backend: be(backend),
        server: ServerName::slot(slot),
        addr,
        keywords: Default::default(),
    }
}

fn enable_health(backend: &str, slot: usize) -> Command {
    Command::EnableHealth {
        backend: be(backend),
        server: ServerName::slot(slot),
    }
}

/// `cmds` applied to `state` in order; the index of the first command that does not apply.
/// Also refuses `set server state ready` on a server at the placeholder.
fn replay(state: &ProxyState, cmds: &[Command]) -> Result<ProxyState, (usize, String)> {
    let mut s = state.clone();
    for (i, cmd) in cmds.iter().enumerate() {
        if let Command::SetState {
            backend,
            server,
            state: Admin::Ready,
        } = cmd
        {
            let at_placeholder = s.backends.get(backend).is_some_and(|b| {
                b.servers
                    .iter()
                    .any(|x| x.name == *server && x.addr == PLACEHOLDER)
            });
            if at_placeholder {
                return Err((i, format!("{cmd:?} readies a server at the placeholder")));
            }
        }
        s.apply(cmd)
            .map_err(|e: ApplyError| (i, format!("{cmd:?}: {e}")))?;
    }
    Ok(s)
}

// ---- examples ------------------------------------------------------------------------------

#[test]
fn scaling_a_task_service_up_sends_only_set_server_commands() {
    let actual = state(
        vec![(
            "web",
            slots(&[
                Some(("10.0.0.1:80", Admin::Ready)),
                Some(("10.0.0.2:80", Admin::Ready)),
                None,
                None,
            ]),
        )],
        &[],
    );
    let d = desired(
        vec![(
            "web",
            task(&[
                ("10.0.0.1:80", Ready),
                ("10.0.0.2:80", Ready),
                ("10.0.0.3:80", Ready),
                ("10.0.0.4:80", Ready),
            ]),
        )],
        &[],
    );
    let p = plan(&actual, &no_networks(), &d, &settings(4, true));
    assert!(!p.reload);
    assert_eq!(
        p.runtime,
        vec![
            set_addr("web", 3, sa("10.0.0.3:80")),
            set_state("web", 3, Admin::Ready),
            // A free slot's check was never enabled (see plan::backend).
            enable_health("web", 3),
            set_addr("web", 4, sa("10.0.0.4:80")),
            set_state("web", 4, Admin::Ready),
            enable_health("web", 4),
        ]
    );
    assert_eq!(replay(&actual, &p.runtime).unwrap(), p.target);
}

#[test]
fn scaling_a_task_service_down_drains_then_frees_without_a_reload() {
    let all = [
        ("10.0.0.1:80", Ready),
        ("10.0.0.2:80", Ready),
        ("10.0.0.3:80", Ready),
    ];
    let s = settings(42, true);
    let start = plan(
        &ProxyState::default(),
        &no_networks(),
        &desired(vec![("web", task(&all))], &[]),
        &s,
    )
    .target;

    let stopping = desired(
        vec![(
            "web",
            task(&[all[0], ("10.0.0.2:80", Drain), ("10.0.0.3:80", Drain)]),
        )],
        &[],
    );
    let p = plan(&start, &no_networks(), &stopping, &s);
    assert!(!p.reload);
    assert_eq!(
        p.runtime,
        vec![
            set_state("web", 2, Admin::Drain),
            set_state("web", 3, Admin::Drain)
        ]
    );

    let gone = desired(vec![("web", task(&all[..1]))], &[]);
    let p = plan(&p.target, &no_networks(), &gone, &s);
    assert!(!p.reload);
    assert!(p
        .runtime
        .iter()
        .all(|c| matches!(c, Command::SetAddr { .. } | Command::SetState { .. })));
    assert_eq!(p.target.backends[&be("web")].servers.len(), 42);
}

#[test]
fn scaling_a_vip_service_sends_nothing() {
    // Replicas come and go behind the VIP; the desired state of a vip backend does not move.
    let actual = state(vec![("web", vip_state("10.0.9.2:80", Admin::Ready))], &[]);
    let d = desired(vec![("web", vip("10.0.9.2:80"))], &[]);
    let p = plan(&actual, &no_networks(), &d, &settings(42, true));
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(p.target, actual);
}

#[test]
fn a_vip_address_change_moves_the_vip_server() {
    let vip_cmd = |addr: &str| Command::SetAddr {
        backend: be("web"),
        server: ServerName::vip(),
        addr: sa(addr),
    };
    let d = desired(vec![("web", vip("10.0.9.3:8080"))], &[]);

    let ready = state(vec![("web", vip_state("10.0.9.2:80", Admin::Ready))], &[]);
    let p = plan(&ready, &no_networks(), &d, &settings(42, true));
    assert_eq!(p.runtime, vec![vip_cmd("10.0.9.3:8080")]);
    assert!(!p.reload);

    let maint = state(vec![("web", vip_state("10.0.9.2:80", Admin::Maint))], &[]);
    let p = plan(&maint, &no_networks(), &d, &settings(42, true));
    assert_eq!(
        p.runtime,
        vec![
            vip_cmd("10.0.9.3:8080"),
            Command::SetState {
                backend: be("web"),
                server: ServerName::vip(),
                state: Admin::Ready
            },
            Command::EnableHealth {
                backend: be("web"),
                server: ServerName::vip(),
            },
        ]
    );
}

#[test]
fn a_stopping_task_is_drained_at_once() {
    let actual = state(
        vec![(
            "web",
            slots(&[
                Some(("10.0.0.1:80", Admin::Ready)),
                Some(("10.0.0.2:80", Admin::Ready)),
            ]),
        )],
        &[],
    );
    let d = desired(
        vec![(
            "web",
            task(&[("10.0.0.1:80", Ready), ("10.0.0.2:80", Drain)]),
        )],
        &[],
    );
    let p = plan(&actual, &no_networks(), &d, &settings(42, true));
    assert_eq!(p.runtime, vec![set_state("web", 2, Admin::Drain)]);
    assert!(!p.reload);
}

#[test]
fn a_freed_slot_goes_to_maint_then_back_to_the_placeholder() {
    let actual = state(
        vec![(
            "web",
            slots(&[
                Some(("10.0.0.1:80", Admin::Ready)),
                Some(("10.0.0.2:80", Admin::Drain)),
            ]),
        )],
        &[],
    );
    let d = desired(vec![("web", task(&[("10.0.0.1:80", Ready)]))], &[]);
    let p = plan(&actual, &no_networks(), &d, &settings(42, true));
    assert_eq!(
        p.runtime,
        vec![
            set_state("web", 2, Admin::Maint),
            set_addr("web", 2, PLACEHOLDER)
        ]
    );
    assert!(p.target.backends[&be("web")].servers[1].is_free());
}

#[test]
fn a_drained_endpoint_not_in_haproxy_is_not_added() {
    let d = desired(
        vec![(
            "web",
            task(&[("10.0.0.1:80", Ready), ("10.0.0.2:80", Drain)]),
        )],
        &[],
    );
    let actual = state(
        vec![("web", slots(&[Some(("10.0.0.1:80", Admin::Ready)), None]))],
        &[],
    );
    let p = plan(&actual, &no_networks(), &d, &settings(42, true));
    assert!(p.is_empty(), "{p:?}");

    let fresh = plan(
        &ProxyState::default(),
        &no_networks(),
        &d,
        &settings(42, true),
    );
    let servers = &fresh.target.backends[&be("web")].servers;
    assert!(servers.iter().all(|s| s.addr != sa("10.0.0.2:80")));
    assert_eq!(servers.iter().filter(|s| !s.is_free()).count(), 1);
}

#[test]
fn a_drained_server_that_a_reload_rendered_as_maint_stays_in_maint() {
    let actual = state(
        vec![("web", slots(&[Some(("10.0.0.2:80", Admin::Maint)), None]))],
        &[],
    );
    let d = desired(vec![("web", task(&[("10.0.0.2:80", Drain)]))], &[]);
    let p = plan(&actual, &no_networks(), &d, &settings(42, true));
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn existing_tasks_never_change_slot() {
    let actual = state(
        vec![(
            "web",
            slots(&[
                Some(("10.0.0.1:80", Admin::Ready)),
                None,
                Some(("10.0.0.3:80", Admin::Ready)),
                Some(("10.0.0.4:80", Admin::Drain)),
            ]),
        )],
        &[],
    );
    // .1 and .4 are gone; .2 and .5 are new; .3 stays.
    let d = desired(
        vec![(
            "web",
            task(&[
                ("10.0.0.2:80", Ready),
                ("10.0.0.3:80", Ready),
                ("10.0.0.5:80", Ready),
            ]),
        )],
        &[],
    );
    let p = plan(&actual, &no_networks(), &d, &settings(4, true));
    assert_eq!(
        *p.target.backends[&be("web")],
        slots(&[
            Some(("10.0.0.2:80", Admin::Ready)),
            Some(("10.0.0.5:80", Admin::Ready)),
            Some(("10.0.0.3:80", Admin::Ready)),
            None,
        ])
    );
    assert!(p.runtime.iter().all(|c| !matches!(
        c,
        Command::SetAddr { server, .. } | Command::SetState { server, .. } if *server == ServerName::slot(3)
    )));
    assert_eq!(replay(&actual, &p.runtime).unwrap(), p.target);
}

#[test]
fn a_host_label_change_is_a_map_edit_not_a_reload() {
    let backends = || {
        vec![
            ("api", slots(&[Some(("10.0.0.1:80", Admin::Ready))])),
            ("web", slots(&[Some(("10.0.0.2:80", Admin::Ready))])),
        ]
    };
    let actual = state(backends(), &[("a.example", "web"), ("b.example", "web")]);
    let d = desired(
        vec![
            ("api", task(&[("10.0.0.1:80", Ready)])),
            ("web", task(&[("10.0.0.2:80", Ready)])),
        ],
        &[("a.example", "api"), ("c.example", "web")],
    );
    let p = plan(&actual, &no_networks(), &d, &settings(42, true));
    assert!(!p.reload);
    assert_eq!(
        p.runtime,
        vec![
            Command::DelMap {
                map: hosts_map(),
                key: host("b.example")
            },
            Command::SetMap {
                map: hosts_map(),
                key: host("a.example"),
                value: val("api")
            },
            Command::AddMap {
                map: hosts_map(),
                key: host("c.example"),
                value: val("web")
            },
        ]
    );
    assert_eq!(replay(&actual, &p.runtime).unwrap(), p.target);
}

#[test]
fn a_new_service_is_a_reload_with_its_slots_filled_and_its_hosts_left_to_the_file() {
    let actual = state(
        vec![("web", slots(&[Some(("10.0.0.2:80", Admin::Ready))]))],
        &[("w.example", "web")],
    );
    let d = desired(
        vec![
            (
                "api",
                task(&[("10.0.1.1:80", Ready), ("10.0.1.2:80", Ready)]),
            ),
            ("web", task(&[("10.0.0.2:80", Ready)])),
        ],
        &[("a.example", "api"), ("w.example", "web")],
    );
    let p = plan(&actual, &no_networks(), &d, &settings(42, true));
    assert!(p.reload);
    assert!(p.runtime.is_empty(), "{:?}", p.runtime);
    let api = &p.target.backends[&be("api")];
    assert_eq!(api.servers.len(), 42);
    assert_eq!(
        api.servers[..2]
            .iter()
            .map(|s| (s.addr, s.admin))
            .collect::<Vec<_>>(),
        vec![
            (sa("10.0.1.1:80"), Admin::Ready),
            (sa("10.0.1.2:80"), Admin::Ready)
        ]
    );
    assert!(api.servers[2..].iter().all(Server::is_free));
    assert_eq!(p.target.hosts, d.hosts);
}

#[test]
fn a_removed_service_is_a_reload_and_its_host_entries_are_deleted_first() {
    let actual = state(
        vec![
            ("api", slots(&[Some(("10.0.1.1:80", Admin::Ready))])),
            ("web", slots(&[Some(("10.0.0.2:80", Admin::Ready)), None])),
        ],
        &[("a.example", "api"), ("w.example", "web")],
    );
    let d = desired(
        vec![(
            "web",
            task(&[("10.0.0.2:80", Ready), ("10.0.0.3:80", Ready)]),
        )],
        &[("w.example", "web")],
    );
    let p = plan(&actual, &no_networks(), &d, &settings(42, true));
    assert!(p.reload);
    assert_eq!(
        p.runtime,
        vec![
            Command::DelMap {
                map: hosts_map(),
                key: host("a.example")
            },
            set_addr("web", 2, sa("10.0.0.3:80")),
            set_state("web", 2, Admin::Ready),
            enable_health("web", 2),
        ]
    );
    assert!(!p.target.backends.contains_key(&be("api")));
}

#[test]
fn a_mode_change_is_a_reload() {
    let actual = state(vec![("web", vip_state("10.0.9.2:80", Admin::Ready))], &[]);
    let d = desired(vec![("web", task(&[("10.0.0.1:80", Ready)]))], &[]);
    let p = plan(&actual, &no_networks(), &d, &settings(42, true));
    assert!(p.reload);
    assert!(p.runtime.is_empty());
    assert_eq!(p.target.backends[&be("web")].mode, Mode::Task);
    assert!(satisfies(&p.target, &d));
}

#[test]
fn a_backend_whose_slots_are_out_of_order_is_rebuilt_by_a_reload() {
    let mut web = slots(&[Some(("10.0.0.1:80", Admin::Ready))]);
    web.servers[0].name = ServerName::slot(2);
    let actual = state(vec![("web", web)], &[]);
    let d = desired(vec![("web", task(&[("10.0.0.1:80", Ready)]))], &[]);
    let p = plan(&actual, &no_networks(), &d, &settings(42, true));
    assert!(p.reload);
    assert!(satisfies(&p.target, &d));
}

#[test]
fn growth_past_the_slots_uses_add_server_when_allowed() {
    let actual = state(
        vec![(
            "web",
            slots(&[
                Some(("10.0.0.1:80", Admin::Ready)),
                Some(("10.0.0.2:80", Admin::Ready)),
            ]),
        )],
        &[],
    );
    let d = desired(
        vec![(
            "web",
            task(&[
                ("10.0.0.1:80", Ready),
                ("10.0.0.2:80", Ready),
                ("10.0.0.3:80", Ready),
            ]),
        )],
        &[],
    );
    let p = plan(&actual, &no_networks(), &d, &settings(2, true));
    assert!(!p.reload);
    assert_eq!(
        p.runtime,
        vec![
            add_server("web", 3, sa("10.0.0.3:80")),
            set_state("web", 3, Admin::Ready),
            enable_health("web", 3),
            // A free slot is not checked: no `enable health` until a task takes it.
            add_server("web", 4, PLACEHOLDER),
        ]
    );
    assert_eq!(replay(&actual, &p.runtime).unwrap(), p.target);
}

#[test]
fn a_sticky_backend_grows_by_adding_at_the_placeholder_and_moving_so_haproxy_computes_a_cookie() {
    let sticky = BackendOptions {
        sticky_cookie: Some("sid".into()),
        ..BackendOptions::default()
    };
    let mut web = slots(&[Some(("10.0.0.1:80", Admin::Ready))]);
    web.options = sticky.clone();
    let actual = state(vec![("web", web)], &[]);
    let mut spec = task(&[("10.0.0.1:80", Ready), ("10.0.0.2:80", Ready)]);
    spec.options = sticky;
    let d = desired(vec![("web", spec)], &[]);
    let p = plan(&actual, &no_networks(), &d, &settings(1, true));
    assert!(!p.reload);
    assert_eq!(
        p.runtime,
        vec![
            add_server("web", 2, PLACEHOLDER),
            Command::SetAddr {
                backend: be("web"),
                server: ServerName::slot(2),
                addr: sa("10.0.0.2:80"),
            },
            set_state("web", 2, Admin::Ready),
            enable_health("web", 2),
            // Headroom: a free slot is at the placeholder anyway, and not checked.
            add_server("web", 3, PLACEHOLDER),
        ]
    );
    assert_eq!(replay(&actual, &p.runtime).unwrap(), p.target);
}

#[test]
fn changing_a_backends_options_reloads_and_every_task_keeps_its_slot() {
    let actual = state(
        vec![(
            "web",
            slots(&[None, Some(("10.0.0.2:80", Admin::Ready)), None]),
        )],
        &[("a.example", "web")],
    );
    let mut spec = task(&[("10.0.0.2:80", Ready), ("10.0.0.3:80", Ready)]);
    spec.options.ip_hash = true;
    let d = desired(vec![("web", spec)], &[("a.example", "web")]);
    let p = plan(&actual, &no_networks(), &d, &settings(3, true));
    assert!(p.reload, "options only change with a reload");
    let t = &p.target.backends[&be("web")];
    assert!(t.options.ip_hash);
    assert_eq!(t.servers[1].addr, sa("10.0.0.2:80"), "kept its slot");
    assert_eq!(
        t.servers[0].addr,
        sa("10.0.0.3:80"),
        "the new task takes the lowest free slot"
    );
    // Once HAProxy holds the target, nothing is left to do.
    let again = plan(&p.target, &no_networks(), &d, &settings(3, true));
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn growth_past_the_slots_reloads_when_add_server_is_not_available() {
    let actual = state(
        vec![(
            "web",
            slots(&[
                Some(("10.0.0.1:80", Admin::Ready)),
                Some(("10.0.0.2:80", Admin::Drain)),
            ]),
        )],
        &[],
    );
    let d = desired(
        vec![(
            "web",
            task(&[
                ("10.0.0.1:80", Ready),
                ("10.0.0.3:80", Ready),
                ("10.0.0.4:80", Ready),
            ]),
        )],
        &[],
    );
    let p = plan(&actual, &no_networks(), &d, &settings(2, false));
    assert!(p.reload);
    // What fits is done at once (the freed slot takes a new task); the rest comes with the
    // reload, in a whole new block.
    assert_eq!(
        p.runtime,
        vec![
            set_addr("web", 2, sa("10.0.0.3:80")),
            set_state("web", 2, Admin::Ready)
        ]
    );
    assert_eq!(
        *p.target.backends[&be("web")],
        slots(&[
            Some(("10.0.0.1:80", Admin::Ready)),
            Some(("10.0.0.3:80", Admin::Ready)),
            Some(("10.0.0.4:80", Admin::Ready)),
            None,
        ])
    );
}

#[test]
fn new_backends_get_whole_blocks_with_at_least_one_free_slot() {
    for (n, expected) in [(0, 42), (1, 42), (41, 42), (42, 84), (83, 84), (84, 126)] {
        let endpoints = (0..n)
            .map(|i| {
                let ip = Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250 + 1) as u8);
                (SocketAddr::new(IpAddr::V4(ip), 80), Ready)
            })
            .collect();
        let spec = BackendSpec {
            endpoints,
            ..task(&[])
        };
        let d = desired(vec![("web", spec)], &[]);
        let p = plan(
            &ProxyState::default(),
            &no_networks(),
            &d,
            &settings(42, true),
        );
        assert_eq!(
            p.target.backends[&be("web")].servers.len(),
            expected,
            "{n} endpoints"
        );
        assert_eq!(slots_for(n, 42), expected);
    }
}

#[test]
fn a_host_naming_a_backend_that_is_nowhere_is_left_to_the_reload() {
    let actual = state(vec![("web", slots(&[None]))], &[]);
    let d = desired(vec![("web", task(&[]))], &[("x.example", "api")]);
    let p = plan(&actual, &no_networks(), &d, &settings(42, true));
    assert!(p.reload);
    assert!(p.runtime.is_empty());
    assert_eq!(p.target.hosts, d.hosts);
}

#[test]
fn networks_to_attach_and_detach_are_the_differences() {
    let mut d = desired(vec![], &[]);
    d.networks = ["n1", "n2"].map(str::to_owned).into_iter().collect();
    let attached = ["n2", "n3"].map(str::to_owned).into_iter().collect();
    let p = plan(&ProxyState::default(), &attached, &d, &settings(42, true));
    assert_eq!(p.attach, vec!["n1".to_owned()]);
    assert_eq!(p.detach, vec!["n3".to_owned()]);
    assert!(!p.is_empty());
}

#[test]
fn the_summary_counts_commands_by_kind() {
    let actual = state(
        vec![("web", slots(&[Some(("10.0.0.1:80", Admin::Ready)), None]))],
        &[("a.example", "web")],
    );
    let d = desired(
        vec![("web", task(&[("10.0.0.2:80", Ready)]))],
        &[("b.example", "web")],
    );
    let s = plan(&actual, &no_networks(), &d, &settings(42, true)).summary();
    assert_eq!(
        s,
        Summary {
            set_addr: 1,
            set_state: 0,
            del_map: 1,
            add_map: 1,
            ..Summary::default()
        }
    );
    assert_eq!(
        s.to_string(),
        "set_addr=1 set_state=0 add_server=0 enable_health=0 add_map=1 set_map=0 del_map=1 add_backend=0 del_server=0 del_backend=0 reload=false attach=0 detach=0"
    );
}

// ---- laws ----------------------------------------------------------------------------------

/// A reload renders drained servers as maint.
fn drained_as_maint(state: &ProxyState) -> ProxyState {
    let mut s = state.clone();
    for server in s
        .backends
        .values_mut()
        .flat_map(|b| std::sync::Arc::make_mut(b).servers.iter_mut())
    {
        if server.admin == Admin::Drain {
            server.admin = Admin::Maint;
        }
    }
    s
}

/// What the runtime alone must reach in a reload plan: a backend that keeps its mode holds
/// the target's slots (without `add server`, only those it had: the rest come with the
/// reload); any other backend is untouched. Map entries naming a backend HAProxy does not hold
/// yet wait for the reload; the others are the target's.
fn check_before_reload(
    actual: &ProxyState,
    target: &ProxyState,
    runtime: &[Command],
    applied: &ProxyState,
) -> Result<(), TestCaseError> {
    // Backends created and deleted at runtime (3.4+) are the target's already.
    let mut created = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    for cmd in runtime {
        match cmd {
            Command::AddBackend { backend, .. } => {
                created.insert(backend.clone());
            }
            Command::DelBackend { backend } => {
                deleted.insert(backend.clone());
            }
            _ => {}
        }
    }
    let mut held_backends: BTreeSet<_> = actual.backends.keys().cloned().collect();
    held_backends.retain(|b| !deleted.contains(b));
    held_backends.extend(created.iter().cloned());
    prop_assert!(applied.backends.keys().eq(held_backends.iter()));
    for name in &created {
        prop_assert_eq!(&applied.backends[name], &target.backends[name]);
    }
    for (name, a) in actual
        .backends
        .iter()
        .filter(|(n, _)| !deleted.contains(*n))
    {
        let got = &applied.backends[name];
        match target.backends.get(name) {
            Some(t) if t.mode == a.mode => {
                let n = got.servers.len();
                prop_assert!(
                    n == a.servers.len() || n == t.servers.len(),
                    "{name}: {n} servers"
                );
                prop_assert_eq!(&got.servers[..], &t.servers[..n]);
            }
            _ => prop_assert_eq!(got, a),
        }
    }
    let mut hosts = actual.hosts.clone();
    let held = |value: &MapValue| {
        value
            .target_backend()
            .is_none_or(|b| actual.backends.contains_key(&b) || created.contains(&b))
    };
    hosts.retain(|key, _| target.hosts.get(key).is_some_and(|v| !held(v)));
    for (key, value) in &target.hosts {
        if held(value) {
            hosts.insert(key.clone(), value.clone());
        }
    }
    prop_assert_eq!(&applied.hosts, &hosts);
    Ok(())
}

/// The backend a retirement command (`plan::backend::retire`) acts on.
fn retired_backend(cmd: &Command) -> Option<&BackendName> {
    match cmd {
        Command::UnpublishBackend { backend }
        | Command::WaitServerRemovable { backend, .. }
        | Command::DelServer { backend, .. }
        | Command::DelBackend { backend } => Some(backend),
        _ => None,
    }
}

/// The target after the plans it takes to retire everything that goes: one, or two when the
/// first keeps backends its routes named (see [`crate::plan::Plan::held`]).
fn settled(actual: &ProxyState, d: &Desired, s: &PlanSettings) -> ProxyState {
    let first = plan(actual, &networks_of(d), d, s);
    if first.held.is_empty() {
        return first.target;
    }
    let second = plan(&first.target, &networks_of(d), d, s);
    assert!(second.held.is_empty(), "held twice: {:?}", second.held);
    second.target
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_backend_that_goes_is_kept_while_a_route_names_it_and_retired_by_the_next_plan(
        (actual, d) in actual_and_desired(),
        s in plan_settings(),
    ) {
        let p = plan(&actual, &BTreeSet::new(), &d, &s);
        let routed: BTreeSet<BackendName> =
            actual.hosts.values().filter_map(MapValue::target_backend).collect();
        for b in &p.held {
            prop_assert!(routed.contains(b), "{b} held, no route named it");
            prop_assert_eq!(p.target.backends.get(b), actual.backends.get(b));
            prop_assert!(!p.target.hosts.values().any(|v| v.target_backend().as_ref() == Some(b)));
            prop_assert!(!p.runtime.iter().any(|c| retired_backend(c) == Some(b)), "{b} retired at once");
        }
        let again = plan(&p.target, &BTreeSet::new(), &d, &s);
        prop_assert!(again.held.is_empty(), "{:?}", again.held);
        for b in &p.held {
            prop_assert!(!again.target.backends.contains_key(b));
            let deleted = Command::DelBackend { backend: b.clone() };
            prop_assert!(again.runtime.contains(&deleted), "{b} not deleted");
        }
    }

    #[test]
    fn law_1_a_state_that_satisfies_desired_plans_to_nothing(
        (actual, d) in actual_and_desired(),
        s in plan_settings(),
    ) {
        let target = settled(&actual, &d, &s);
        let again = plan(&target, &networks_of(&d), &d, &s);
        prop_assert!(again.is_empty(), "{again:?}");
        // A reload renders drained servers as maint; that must not loop either.
        let reloaded = drained_as_maint(&target);
        prop_assert!(satisfies(&reloaded, &d));
        let again = plan(&reloaded, &networks_of(&d), &d, &s);
        prop_assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn law_1_holds_for_any_state_that_satisfies_desired(
        (d, actual) in super::strategy::desired().prop_flat_map(|d| (Just(d.clone()), satisfying(&d))),
        s in plan_settings(),
    ) {
        prop_assert!(satisfies(&actual, &d), "{actual:?}");
        let p = plan(&actual, &networks_of(&d), &d, &s);
        prop_assert!(p.is_empty(), "{p:?}");
        prop_assert_eq!(p.target, actual);
    }

    #[test]
    fn law_2_replaying_the_runtime_reaches_the_target(
        (actual, d) in actual_and_desired(),
        s in plan_settings(),
    ) {
        let p = plan(&actual, &BTreeSet::new(), &d, &s);
        let applied = replay(&actual, &p.runtime);
        prop_assert!(applied.is_ok(), "{:?}", applied);
        let applied = applied.unwrap_or_default();
        if p.reload {
            check_before_reload(&actual, &p.target, &p.runtime, &applied)?;
        } else {
            prop_assert_eq!(applied, p.target);
        }
    }

    #[test]
    fn health_checks_are_enabled_exactly_on_servers_that_leave_maint_never_on_free_slots(
        (actual, d) in actual_and_desired(),
        s in plan_settings(),
    ) {
        let p = plan(&actual, &BTreeSet::new(), &d, &s);
        // Replayed in order: at each `enable health` the server must hold an address and
        // have just been taken out of maint; each server taken out of maint is checked.
        let mut state = actual.clone();
        let mut left_maint: BTreeSet<(BackendName, ServerName)> = BTreeSet::new();
        for cmd in &p.runtime {
            match cmd {
                Command::EnableHealth { backend, server } => {
                    let held = state.backends.get(backend)
                        .and_then(|b| b.servers.iter().find(|x| &x.name == server));
                    prop_assert!(
                        held.is_some_and(|x| !x.is_free() && x.admin != Admin::Maint),
                        "{cmd:?} on {held:?}"
                    );
                    left_maint.remove(&(backend.clone(), server.clone()));
                }
                Command::SetState { backend, server, state: to } if *to != Admin::Maint => {
                    let was = state.backends.get(backend)
                        .and_then(|b| b.servers.iter().find(|x| &x.name == server))
                        .map(|x| x.admin);
                    if was.is_none_or(|a| a == Admin::Maint) {
                        left_maint.insert((backend.clone(), server.clone()));
                    }
                }
                _ => {}
            }
            let _ = state.apply(cmd);
        }
        prop_assert!(left_maint.is_empty(), "taken out of maint, never checked: {left_maint:?}");
    }

    #[test]
    fn the_target_satisfies_desired(
        (actual, d) in actual_and_desired(),
        s in plan_settings(),
    ) {
        let p = plan(&actual, &BTreeSet::new(), &d, &s);
        // Apart from the backends it keeps for a later plan to retire.
        let mut kept = p.target.clone();
        for b in &p.held {
            kept.backends.remove(b);
        }
        prop_assert!(satisfies(&kept, &d), "{:?}", p.target);
        // The same routes, each to its service's backend (maybe a new generation of it).
        let by_service = |hosts: &BTreeMap<MapKey, MapValue>| -> BTreeMap<MapKey, MapValue> {
            hosts.iter().map(|(k, v)| {
                let v = match v.target_backend() {
                    Some(b) => v.with_backend(&BackendName::parse(b.service()).expect("valid")),
                    None => v.clone(),
                };
                (k.clone(), v)
            }).collect()
        };
        prop_assert_eq!(by_service(&p.target.hosts), by_service(&d.hosts));
        for (name, spec) in &d.backends {
            let servers = &serving(&p.target, name).servers;
            for (addr, state) in &spec.endpoints {
                let holding: Vec<&Server> = servers.iter().filter(|x| x.addr == *addr).collect();
                match state {
                    Ready if spec.mode == Mode::Vip => {}
                    Ready => prop_assert!(matches!(holding.as_slice(), [x] if x.admin == Admin::Ready)),
                    Drain => prop_assert!(holding.iter().all(|x| x.admin != Admin::Ready)),
                }
            }
            for x in servers {
                prop_assert!(x.is_free() || spec.endpoints.contains_key(&x.addr), "{x:?}");
            }
        }
    }

    #[test]
    fn runtime_commands_delete_routes_first_and_add_routes_last(
        (actual, d) in actual_and_desired(),
        s in plan_settings(),
    ) {
        let p = plan(&actual, &BTreeSet::new(), &d, &s);
        // Route deletions, edits towards serving backends, servers, other edits, buckets
        // nothing points at any more.
        let serving = |value: &MapValue| value.target_backend().is_some_and(|b| {
            actual.backends.get(&b).is_some_and(|b| b.servers.iter().any(|s| s.admin == Admin::Ready))
        });
        // Backends retired at runtime (3.4+) go last, once no route names them.
        let retired = |b: &BackendName| actual.backends.contains_key(b) && !p.target.backends.contains_key(b);
        let group = |c: &Command| match c {
            // A backend an earlier plan created, published again before routes reach it.
            Command::PublishBackend { backend } if actual.backends.contains_key(backend) => 0,
            Command::SetState { backend, .. }
            | Command::UnpublishBackend { backend }
            | Command::WaitServerRemovable { backend, .. }
            | Command::DelServer { backend, .. }
            | Command::DelBackend { backend } if retired(backend) => 5,
            Command::DelMap { key, .. } if key.is_bucket() => 4,
            Command::DelMap { .. } => 0,
            Command::AddMap { value, .. } | Command::SetMap { value, .. } if serving(value) => 1,
            Command::AddMap { .. } | Command::SetMap { .. } => 3,
            _ => 2,
        };
        let groups: Vec<u8> = p.runtime.iter().map(group).collect();
        prop_assert!(groups.windows(2).all(|w| w[0] <= w[1]), "{:?}", p.runtime);
        // Within a group of edits, buckets come before the routes that point at them.
        for w in p.runtime.windows(2) {
            if let (Command::AddMap { key: a, .. } | Command::SetMap { key: a, .. },
                    Command::AddMap { key: b, .. } | Command::SetMap { key: b, .. }) = (&w[0], &w[1]) {
                if group(&w[0]) == group(&w[1]) {
                    prop_assert!(a.is_bucket() || !b.is_bucket(), "{:?}", p.runtime);
                }
            }
        }
    }

    #[test]
    fn a_task_still_desired_keeps_its_slot(
        (actual, d) in actual_and_desired(),
        s in plan_settings(),
    ) {
        let p = plan(&actual, &BTreeSet::new(), &d, &s);
        for (name, a) in &actual.backends {
            let (Some(spec), Some(t)) = (d.backends.get(name), p.target.backends.get(name)) else {
                continue;
            };
            if a.mode != Mode::Task || spec.mode != Mode::Task {
                continue;
            }
            let mut seen = BTreeSet::new();
            for (i, x) in a.servers.iter().enumerate() {
                if x.addr != PLACEHOLDER && spec.endpoints.contains_key(&x.addr) && seen.insert(x.addr) {
                    prop_assert_eq!(t.servers[i].addr, x.addr, "{} slot {}", name, i + 1);
                }
            }
        }
    }

    #[test]
    fn networks_are_attached_and_detached_to_match_desired(
        d in super::strategy::desired(),
        attached in networks(),
    ) {
        let p = plan(&ProxyState::default(), &attached, &d, &settings(42, true));
        let mut after: BTreeSet<NetworkId> = attached.difference(&p.detach.iter().cloned().collect()).cloned().collect();
        after.extend(p.attach.iter().cloned());
        prop_assert_eq!(after, d.networks.clone());
        prop_assert!(p.attach.iter().all(|n| !attached.contains(n)));
        prop_assert!(p.detach.iter().all(|n| attached.contains(n)));
    }
}

/// The backend serving `service` in `state`: its newest generation (see `plan::generation`).
fn serving<'a>(state: &'a ProxyState, service: &BackendName) -> &'a BackendState {
    state
        .backends
        .iter()
        .filter(|(n, _)| n.service() == service.as_str())
        .max_by_key(|(n, _)| n.generation())
        .map(|(_, b)| b)
        .expect("a backend serves the service")
}

fn networks_of(d: &Desired) -> BTreeSet<NetworkId> {
    d.networks.clone()
}

// ---- HAProxy 3.4+: backends at runtime ------------------------------------------------------

fn settings_3_4(block: usize) -> PlanSettings {
    PlanSettings {
        runtime_backends: super::strategy::runtime_backends(),
        connect_timeout_rule: false,
        ..settings(block, true)
    }
}

#[test]
fn on_3_4_a_new_service_is_added_published_then_routed_without_a_reload() {
    let actual = ProxyState::default();
    let d = desired(
        vec![("web", task(&[("10.0.0.1:80", Ready)]))],
        &[("web.test", "web")],
    );
    let p = plan(&actual, &no_networks(), &d, &settings_3_4(2));
    assert!(!p.reload, "{p:?}");
    let web = be("web");
    let s = |n| ServerName::slot(n);
    assert_eq!(
        p.runtime,
        vec![
            Command::AddBackend {
                backend: web.clone(),
                defaults: DefaultsName::for_options(&BackendOptions::default()).unwrap(),
            },
            Command::AddServer {
                backend: web.clone(),
                server: s(1),
                addr: sa("10.0.0.1:80"),
                keywords: Default::default(),
            },
            set_state("web", 1, Admin::Ready),
            Command::EnableHealth {
                backend: web.clone(),
                server: s(1),
            },
            // The free slot: added, never checked (on 3.4 the check of a server in maint
            // runs once enabled).
            Command::AddServer {
                backend: web.clone(),
                server: s(2),
                addr: PLACEHOLDER,
                keywords: Default::default(),
            },
            Command::PublishBackend {
                backend: web.clone()
            },
            Command::AddMap {
                map: hosts_map(),
                key: host("web.test"),
                value: val("web"),
            },
        ]
    );
    assert_eq!(replay(&actual, &p.runtime).unwrap(), p.target);
}

#[test]
fn on_3_4_a_sticky_service_gets_its_cookie_key_before_it_is_published() {
    let mut spec = task(&[("10.0.0.1:80", Ready)]);
    spec.options.sticky_cookie = Some("SRV".into());
    let d = desired(vec![("web", spec)], &[("web.test", "web")]);
    let p = plan(&ProxyState::default(), &no_networks(), &d, &settings_3_4(1));
    assert!(!p.reload);
    let at = |f: fn(&Command) -> bool| p.runtime.iter().position(f).unwrap();
    let key = at(|c| matches!(c, Command::SetDynamicCookieKey { .. }));
    let enable = at(|c| matches!(c, Command::EnableDynamicCookie { .. }));
    let publish = at(|c| matches!(c, Command::PublishBackend { .. }));
    let last_server = p
        .runtime
        .iter()
        .rposition(|c| matches!(c, Command::AddServer { .. }))
        .unwrap();
    assert!(
        last_server < key && key < enable && enable < publish,
        "{:?}",
        p.runtime
    );
}

#[test]
fn on_3_4_options_without_a_loaded_defaults_section_still_take_a_reload() {
    let mut spec = task(&[("10.0.0.1:80", Ready)]);
    // `sid` has no section among the loaded ones.
    spec.options.sticky_cookie = Some("sid".into());
    let d = desired(vec![("web", spec)], &[("web.test", "web")]);
    let p = plan(&ProxyState::default(), &no_networks(), &d, &settings_3_4(1));
    assert!(p.reload);
    assert!(!p
        .runtime
        .iter()
        .any(|c| matches!(c, Command::AddBackend { .. })));
}

#[test]
fn on_3_4_a_service_that_goes_loses_its_routes_then_the_next_plan_unpublishes_empties_and_deletes_it(
) {
    let actual = state(
        vec![
            ("web", slots(&[Some(("10.0.0.1:80", Admin::Ready)), None])),
            ("api", slots(&[Some(("10.0.0.2:80", Admin::Ready))])),
        ],
        &[("web.test", "web"), ("api.test", "api")],
    );
    let d = desired(
        vec![("api", task(&[("10.0.0.2:80", Ready)]))],
        &[("api.test", "api")],
    );
    let routes_go = plan(&actual, &no_networks(), &d, &settings_3_4(1));
    assert!(!routes_go.reload, "{routes_go:?}");
    let web = be("web");
    // First the route goes, and the backend stays for a request that already looked it up.
    assert_eq!(
        routes_go.runtime,
        vec![Command::DelMap {
            map: hosts_map(),
            key: host("web.test"),
        }]
    );
    assert_eq!(routes_go.held, std::slice::from_ref(&web));
    assert_eq!(routes_go.target.backends[&web], actual.backends[&web]);
    // Held by the caller a while longer: still nothing.
    let hold = BTreeSet::from([web.clone()]);
    let s34 = settings_3_4(1);
    let mut cache = PlanCache::default();
    let held = plan_cached(
        &routes_go.target,
        &no_networks(),
        &d,
        &s34,
        &mut cache,
        &hold,
        None,
    );
    assert!(held.is_empty() && held.held == [web.clone()], "{held:?}");
    let actual = routes_go.target;
    let p = plan(&actual, &no_networks(), &d, &settings_3_4(1));
    assert!(!p.reload, "{p:?}");
    assert_eq!(
        p.runtime,
        vec![
            Command::UnpublishBackend {
                backend: web.clone()
            },
            set_state("web", 1, Admin::Maint),
            Command::WaitServerRemovable {
                backend: web.clone(),
                server: ServerName::slot(1),
                timeout_ms: 500,
            },
            Command::DelServer {
                backend: web.clone(),
                server: ServerName::slot(1),
            },
            Command::DelServer {
                backend: web.clone(),
                server: ServerName::slot(2),
            },
            // Empties the session's log buffer, so `Backend deleted.` is not cut off.
            Command::UnpublishBackend {
                backend: web.clone()
            },
            Command::DelBackend { backend: web },
        ]
    );
    assert_eq!(replay(&actual, &p.runtime).unwrap(), p.target);
    // Before 3.4 the same change is one reload.
    assert!(plan(&actual, &no_networks(), &d, &settings(1, true)).reload);
}

#[test]
fn on_3_4_an_options_change_is_a_new_generation_switched_in_then_the_old_one_retired() {
    let actual = state(
        vec![("web", slots(&[Some(("10.0.0.1:80", Admin::Ready)), None]))],
        &[("web.test", "web")],
    );
    let mut spec = task(&[("10.0.0.1:80", Ready)]);
    spec.options.ip_hash = true;
    let d = desired(vec![("web", spec)], &[("web.test", "web")]);
    let p = plan(&actual, &no_networks(), &d, &settings_3_4(2));
    assert!(!p.reload, "{p:?}");
    let next = BackendName::parse("web:2").unwrap();
    let at = |f: &dyn Fn(&Command) -> bool| p.runtime.iter().position(f).expect("present");
    let created = at(
        &|c| matches!(c, Command::AddBackend { backend, defaults } if *backend == next && defaults.as_str() == "swarm-lb.source"),
    );
    let published = at(&|c| matches!(c, Command::PublishBackend { backend } if *backend == next));
    let switched = at(&|c| matches!(c, Command::SetMap { value, .. } if value.as_str() == "web:2"));
    assert!(
        created < published && published < switched,
        "{:?}",
        p.runtime
    );
    // The old generation stays, for a request that looked it up before the switch; the next
    // plan retires it.
    assert!(
        !p.runtime.iter().any(|c| retired_backend(c).is_some()),
        "{:?}",
        p.runtime
    );
    assert_eq!(p.held, [be("web")]);
    assert_eq!(replay(&actual, &p.runtime).unwrap(), p.target);
    let retire = plan(&p.target, &no_networks(), &d, &settings_3_4(2));
    let at = |f: &dyn Fn(&Command) -> bool| retire.runtime.iter().position(f).expect("present");
    let unpublished =
        at(&|c| matches!(c, Command::UnpublishBackend { backend } if *backend == be("web")));
    let deleted = at(&|c| matches!(c, Command::DelBackend { backend } if *backend == be("web")));
    assert!(unpublished < deleted, "{:?}", retire.runtime);
    assert!(retire.held.is_empty());
    assert_eq!(replay(&p.target, &retire.runtime).unwrap(), retire.target);
    let p = Plan {
        target: retire.target,
        ..p
    };
    // The task is in the new generation, ready, before the map moves.
    assert_eq!(p.target.backends.keys().collect::<Vec<_>>(), [&next]);
    assert_eq!(p.target.backends[&next].servers[0].addr, sa("10.0.0.1:80"));
    assert_eq!(p.target.backends[&next].servers[0].admin, Admin::Ready);
    assert_eq!(p.target.hosts[&host("web.test")], val("web:2"));
    // The next pass finds the new generation serving: nothing to do.
    let again = plan(&p.target, &no_networks(), &d, &settings_3_4(2));
    assert!(again.is_empty(), "{again:?}");
    assert!(satisfies(&p.target, &d));
}

#[test]
fn on_3_4_a_mode_change_is_a_new_generation_too() {
    let actual = state(
        vec![("web", slots(&[Some(("10.0.0.1:80", Admin::Ready))]))],
        &[("web.test", "web")],
    );
    let d = desired(vec![("web", vip("10.0.9.9:80"))], &[("web.test", "web")]);
    let p = plan(&actual, &no_networks(), &d, &settings_3_4(1));
    assert!(!p.reload, "{p:?}");
    let next = BackendName::parse("web:2").unwrap();
    assert_eq!(p.target.backends[&next].mode, Mode::Vip);
    assert_eq!(replay(&actual, &p.runtime).unwrap(), p.target);
}

#[test]
fn before_3_4_an_options_change_keeps_the_name_and_takes_one_reload() {
    let actual = state(
        vec![("web", slots(&[Some(("10.0.0.1:80", Admin::Ready))]))],
        &[("web.test", "web")],
    );
    let mut spec = task(&[("10.0.0.1:80", Ready)]);
    spec.options.ip_hash = true;
    let d = desired(vec![("web", spec)], &[("web.test", "web")]);
    let p = plan(&actual, &no_networks(), &d, &settings(1, true));
    assert!(p.reload);
    assert!(p.target.backends.contains_key(&be("web")));
    assert_eq!(p.target.hosts[&host("web.test")], val("web"));
}

#[test]
fn on_3_4_a_failure_limit_and_tls_to_the_tasks_are_added_with_every_server() {
    let mut spec = task(&[("10.0.0.1:80", Ready)]);
    spec.options.failure_limit = Some(FailureLimit {
        max_fails: 2,
        fail_timeout_ms: 3000,
    });
    spec.options.backend_tls = Some(BackendTls { verify: true });
    let d = desired(vec![("web", spec.clone())], &[("web.test", "web")]);
    let p = plan(&ProxyState::default(), &no_networks(), &d, &settings_3_4(1));
    assert!(!p.reload, "created at runtime: {p:?}");
    let ca = crate::haproxy::CertPath::new("/etc/haproxy/backend-ca.pem").unwrap();
    let want = crate::haproxy::ServerKeywords::for_options(&spec.options, &ca);
    let added: Vec<_> = p
        .runtime
        .iter()
        .filter_map(|c| match c {
            Command::AddServer { keywords, .. } => Some(keywords),
            _ => None,
        })
        .collect();
    assert!(
        !added.is_empty() && added.iter().all(|k| **k == want),
        "{added:?}"
    );
    assert_eq!(
        replay(&ProxyState::default(), &p.runtime).unwrap(),
        p.target
    );
    // Without the CA bundle in HAProxy's store, a verifying backend still takes a reload.
    let mut no_ca = settings_3_4(1);
    no_ca.runtime_backends.backend_ca = false;
    assert!(plan(&ProxyState::default(), &no_networks(), &d, &no_ca).reload);
}

#[test]
fn a_backend_with_a_failure_limit_grows_with_add_server_on_any_version() {
    let limit = FailureLimit {
        max_fails: 3,
        fail_timeout_ms: 1000,
    };
    let mut actual = state(
        vec![("web", slots(&[Some(("10.0.0.1:80", Admin::Ready))]))],
        &[("web.test", "web")],
    );
    std::sync::Arc::make_mut(actual.backends.get_mut(&be("web")).unwrap())
        .options
        .failure_limit = Some(limit);
    let mut spec = task(&[("10.0.0.1:80", Ready), ("10.0.0.2:80", Ready)]);
    spec.options.failure_limit = Some(limit);
    let d = desired(vec![("web", spec)], &[("web.test", "web")]);
    let p = plan(&actual, &no_networks(), &d, &settings(1, true));
    assert!(!p.reload, "{p:?}");
    assert!(p.runtime.iter().any(|c| matches!(
        c,
        Command::AddServer { keywords, .. } if keywords.options().failure_limit == Some(limit)
    )));
}

#[test]
fn on_3_4_an_empty_backend_left_by_a_refused_del_backend_is_filled_and_published_again() {
    // `del backend` refused after its servers went: HAProxy holds `web` with no server,
    // unpublished and unrouted, and the service is back.
    let mut actual = ProxyState::default();
    actual.backends.insert(
        be("web"),
        std::sync::Arc::new(BackendState {
            mode: Mode::Task,
            servers: Vec::new(),
            options: BackendOptions::default(),
        }),
    );
    let d = desired(
        vec![("web", task(&[("10.0.0.1:80", Ready)]))],
        &[("web.test", "web")],
    );
    let p = plan(&actual, &no_networks(), &d, &settings_3_4(1));
    assert!(!p.reload, "{p:?}");
    assert!(!p
        .runtime
        .iter()
        .any(|c| matches!(c, Command::AddBackend { .. })));
    let published = p
        .runtime
        .iter()
        .position(|c| matches!(c, Command::PublishBackend { backend } if *backend == be("web")))
        .expect("published again");
    let routed = p
        .runtime
        .iter()
        .position(|c| matches!(c, Command::AddMap { .. }))
        .unwrap();
    assert!(published < routed, "{:?}", p.runtime);
    // Gone instead: it is deleted.
    let gone = plan(
        &actual,
        &no_networks(),
        &desired(vec![], &[]),
        &settings_3_4(1),
    );
    assert_eq!(
        gone.runtime,
        vec![
            Command::UnpublishBackend { backend: be("web") },
            Command::DelBackend { backend: be("web") },
        ]
    );
}

#[test]
fn on_3_4_a_retirement_tried_again_does_not_wait_for_servers_already_in_maint() {
    // An earlier pass put web's servers in maint and its `del server` was refused (a
    // websocket): this pass tries `del server` again without `wait srv-removable`.
    let actual = state(
        vec![("web", slots(&[Some(("10.0.0.1:80", Admin::Maint)), None]))],
        &[],
    );
    let p = plan(
        &actual,
        &no_networks(),
        &desired(vec![], &[]),
        &settings_3_4(1),
    );
    assert!(!p
        .runtime
        .iter()
        .any(|c| matches!(c, Command::WaitServerRemovable { .. })));
    assert!(p
        .runtime
        .iter()
        .any(|c| matches!(c, Command::DelServer { server, .. } if *server == ServerName::slot(1))));
}

proptest! {
    /// The plan cache is a cache only: after planning one (actual, desired), planning another
    /// whose actual shares backends with the first (same values, so the cache may hit) gives
    /// exactly the uncached plan, and planning the first again does too.
    #[test]
    fn a_plan_from_the_cache_equals_the_plan_made_afresh(
        (actual, d) in strategy::actual_and_desired(),
        (other, d2) in strategy::actual_and_desired(),
        s in strategy::plan_settings(),
    ) {
        let mut cache = crate::plan::PlanCache::default();
        let first = crate::plan::plan_cached(&actual, &no_networks(), &d, &s, &mut cache, &BTreeSet::new(), None);
        prop_assert_eq!(&first, &plan(&actual, &no_networks(), &d, &s));
        let again = crate::plan::plan_cached(&actual, &no_networks(), &d, &s, &mut cache, &BTreeSet::new(), None);
        prop_assert_eq!(again, first);
        // The second actual keeps the first one's value of each backend both name.
        let mut mixed = other.clone();
        for (name, b) in &actual.backends {
            if mixed.backends.contains_key(name) {
                mixed.backends.insert(name.clone(), b.clone());
            }
        }
        prop_assert_eq!(
            crate::plan::plan_cached(&mixed, &no_networks(), &d2, &s, &mut cache, &BTreeSet::new(), None),
            plan(&mixed, &no_networks(), &d2, &s)
        );
        prop_assert_eq!(
            crate::plan::plan_cached(&mixed, &no_networks(), &d, &s, &mut cache, &BTreeSet::new(), None),
            plan(&mixed, &no_networks(), &d, &s)
        );
    }
}

proptest! {
    /// A plan of only the backends whose endpoints changed, from what the last plan left,
    /// is the plan made afresh: step by step, each plan applied (its target is what HAProxy
    /// then holds), some backends' endpoints edited (one taken out, drained or added) and at
    /// times a route moved to another host.
    #[test]
    fn a_plan_of_only_the_changed_backends_equals_the_plan_made_afresh(
        (actual, d) in strategy::actual_and_desired(),
        s in strategy::plan_settings(),
        steps in proptest::collection::vec(proptest::collection::vec(0u8..5, 8), 1..5),
    ) {
        let mut cache = crate::plan::PlanCache::default();
        let first = crate::plan::plan_cached(&actual, &no_networks(), &d, &s, &mut cache, &BTreeSet::new(), None);
        let (mut held, mut d) = (first.target, d);
        for (k, edits) in steps.iter().enumerate() {
            let mut next = d.clone();
            let mut changed = BTreeSet::new();
            for ((name, spec), edit) in next.backends.iter_mut().zip(edits) {
                let spec = Arc::make_mut(spec);
                let first = spec.endpoints.keys().next().copied();
                match (edit, first) {
                    (1, Some(a)) => { spec.endpoints.remove(&a); }
                    (2, Some(a)) => { spec.endpoints.insert(a, Drain); }
                    (3, _) => {
                        let n = u8::try_from(k).unwrap_or(0);
                        spec.endpoints.insert(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, n, 1)), 80), Ready);
                    }
                    _ => continue,
                }
                changed.insert(name.clone());
            }
            // A label edit: a route moves to another host (its map entries, no backend).
            if let (Some(&4), Some(name)) = (edits.last(), next.backends.keys().next().cloned()) {
                let gone: Vec<_> = next.hosts.iter().filter(|(_, v)| v.target_backend() == Some(name.clone())).map(|(k, _)| k.clone()).collect();
                for key in gone {
                    next.hosts.remove(&key);
                }
                next.hosts.insert(host(&format!("moved{k}.example")), MapValue::backend(&name, 0));
            }
            let only = crate::plan::plan_cached(&held, &no_networks(), &next, &s, &mut cache, &BTreeSet::new(), Some(&changed));
            prop_assert_eq!(&only, &plan(&held, &no_networks(), &next, &s));
            (held, d) = (only.target, next);
        }
    }
}

#[test]
fn a_connect_timeout_is_a_reload_before_3_4_and_nothing_for_the_planner_on_3_4() {
    let actual = state(
        vec![("web", slots(&[Some(("10.0.0.1:80", Admin::Ready))]))],
        &[("web.test", "web")],
    );
    let mut spec = task(&[("10.0.0.1:80", Ready)]);
    spec.options.timeout_connect_ms = Some(500);
    let d = desired(vec![("web", spec)], &[("web.test", "web")]);
    // Before 3.4: the backend section's `timeout connect`, one reload, the name kept.
    let p = plan(&actual, &no_networks(), &d, &settings(1, true));
    assert!(p.reload);
    assert_eq!(
        p.target.backends[&be("web")].options.timeout_connect_ms,
        Some(500)
    );
    // 3.4: the map entry alone (the model's, not the planner's): no reload, no generation.
    let mut on_3_4 = settings_3_4(1);
    on_3_4.connect_timeout_rule = true;
    let p = plan(&actual, &no_networks(), &d, &on_3_4);
    assert!(p.is_empty(), "{p:?}");
}
