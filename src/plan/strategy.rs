//! Proptest strategies for [`Desired`] and [`ProxyState`] values. Names, hosts, networks and
//! addresses come from small pools so that actual and desired collide: the same backend in
//! both, a task address already in a slot, a host already mapped, duplicates in a backend.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use proptest::collection::{btree_map, btree_set};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use super::{PlanSettings, RuntimeBackends};
use crate::haproxy::state::PLACEHOLDER;
use crate::haproxy::{Admin, BackendState, DefaultsName, MapPath, ProxyState, Server};
use crate::model::{
    BackendName, BackendOptions, BackendSpec, BackendTls, Desired, EndpointState, FailureLimit,
    MapKey, MapValue, Mode, NetworkId, SectionOptions, ServerName, ServerOptions,
};

pub fn backend_name() -> impl Strategy<Value = BackendName> {
    select(vec!["api", "web", "db"]).prop_map(|n| BackendName::for_service(n).expect("valid"))
}

/// A hosts-map key: whole hosts, a context root, buckets of a shared route, the catch-all.
pub fn host() -> impl Strategy<Value = MapKey> {
    select(vec![
        "a.example/",
        "b.example/",
        "b.example/app/",
        "c.example/",
        "~c.example/=0",
        "~c.example/=1",
        "-default-",
    ])
    .prop_map(|k| MapKey::parse(k).expect("valid"))
}

pub fn network() -> impl Strategy<Value = NetworkId> {
    select(vec!["n1", "n2", "n3"]).prop_map(str::to_owned)
}

pub fn networks() -> impl Strategy<Value = BTreeSet<NetworkId>> {
    btree_set(network(), 0..=3)
}

/// A task or VIP address (never the placeholder).
pub fn addr() -> impl Strategy<Value = SocketAddr> {
    select(vec![
        "10.0.0.1:80",
        "10.0.0.2:80",
        "10.0.0.3:80",
        "10.0.0.4:80",
        "10.0.0.5:80",
        "10.0.0.1:8080",
        "10.0.1.9:80",
    ])
    .prop_map(|a| a.parse().expect("valid"))
}

pub fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![3 => Just(Mode::Task), 1 => Just(Mode::Vip)]
}

pub fn endpoint_state() -> impl Strategy<Value = EndpointState> {
    prop_oneof![3 => Just(EndpointState::Ready), 1 => Just(EndpointState::Drain)]
}

pub fn admin() -> impl Strategy<Value = Admin> {
    prop_oneof![Just(Admin::Ready), Just(Admin::Drain), Just(Admin::Maint)]
}

pub fn backend_spec(name: BackendName, mode: Mode) -> impl Strategy<Value = BackendSpec> {
    // The model gives a vip backend exactly one endpoint; none covers a service without one.
    let max = match mode {
        Mode::Task => 6,
        Mode::Vip => 1,
    };
    let options = match mode {
        Mode::Task => options().boxed(),
        Mode::Vip => Just(BackendOptions::default()).boxed(),
    };
    (
        btree_map(addr(), endpoint_state(), 0..=max),
        network(),
        options,
    )
        .prop_map(move |(endpoints, network, options)| BackendSpec {
            service_id: format!("id-{name}"),
            mode,
            network,
            endpoints,
            options,
        })
}

/// Mostly the default options, so that most plans run at runtime.
pub fn options() -> impl Strategy<Value = BackendOptions> {
    prop_oneof![
        3 => Just(BackendOptions::default()),
        1 => (
            any::<bool>(),
            option::of(select(vec!["SRV".to_owned(), "sid".to_owned()])),
            option::of((1u32..=5, 1u32..=20_000)),
            option::of(any::<bool>()),
            any::<bool>(),
            option::of(100u32..=5_000),
            any::<bool>(),
        )
            .prop_map(|(ip_hash, sticky_cookie, limit, tls, passthrough, check, compress)| {
                // A passthrough (TCP) backend has no HTTP check (the labels refuse it).
                let check_inter_ms = check.filter(|_| !passthrough);
                BackendOptions::from_parts(
                    SectionOptions {
                        ip_hash,
                        sticky_cookie,
                        passthrough,
                        httpchk: check_inter_ms.is_some(),
                        compress: compress && !passthrough,
                        timeout_connect_ms: None,
                    },
                    ServerOptions {
                        failure_limit: limit.map(|(max_fails, fail_timeout_ms)| FailureLimit {
                            max_fails,
                            fail_timeout_ms,
                        }),
                        backend_tls: tls.map(|verify| BackendTls { verify }),
                        check_inter_ms,
                    },
                )
            }),
    ]
}

/// A backend for a host entry: mostly one of `names`, sometimes any (a dangling entry).
fn host_target(names: Vec<BackendName>) -> BoxedStrategy<MapValue> {
    let backend = if names.is_empty() {
        backend_name().boxed()
    } else {
        prop_oneof![9 => select(names), 1 => backend_name()].boxed()
    };
    let split = MapValue::split(&MapKey::parse("c.example/").expect("valid"));
    let redirect = MapValue::redirect(302, 1, "http://new.example/x");
    prop_oneof![
        16 => (backend, 0usize..=2).prop_map(|(b, strip)| MapValue::backend(&b, strip)),
        1 => Just(split),
        1 => Just(redirect),
    ]
    .boxed()
}

/// Desired state; a host may name a backend that is not desired (the planner must cope).
pub fn desired() -> impl Strategy<Value = Desired> {
    let backends = btree_map(backend_name(), mode(), 0..=3).prop_flat_map(|modes| {
        modes
            .into_iter()
            .map(|(name, mode)| (Just(name.clone()), backend_spec(name, mode)))
            .collect::<Vec<_>>()
    });
    backends
        .prop_flat_map(|backends| {
            let names = backends.iter().map(|(n, _)| n.clone()).collect();
            (
                Just(backends),
                btree_map(host(), host_target(names), 0..=4),
                networks(),
            )
        })
        .prop_map(|(backends, hosts, networks)| Desired {
            backends: backends
                .into_iter()
                .map(|(n, s)| (n, Arc::new(s)))
                .collect(),
            hosts,
            networks,
            routes: BTreeMap::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            notices: Vec::new(),
            certs: BTreeMap::new(),
            acme: BTreeMap::new(),
            extra_secrets: Default::default(),
        })
}

/// A server's content: mostly free or a task address in some admin state; sometimes the
/// placeholder in a state a free slot must not have.
fn server(name: ServerName) -> impl Strategy<Value = Server> {
    prop_oneof![
        2 => Just(Server::free(name.clone())),
        4 => (addr(), admin()).prop_map({
            let name = name.clone();
            move |(addr, admin)| Server { name: name.clone(), addr, admin }
        }),
        1 => admin().prop_map(move |admin| Server { name: name.clone(), addr: PLACEHOLDER, admin }),
    ]
}

/// A well-formed backend as HAProxy reports it: slots `s1..sN`, or the single `vip` server.
pub fn backend_state(mode: Mode) -> BoxedStrategy<BackendState> {
    match mode {
        Mode::Task => (0..=6usize)
            .prop_flat_map(|n| {
                (1..=n)
                    .map(|i| server(ServerName::slot(i)))
                    .collect::<Vec<_>>()
            })
            .prop_flat_map(|servers| (Just(servers), options()))
            .prop_map(|(servers, options)| BackendState {
                mode: Mode::Task,
                servers,
                options,
            })
            .boxed(),
        Mode::Vip => server(ServerName::vip())
            .prop_map(|s| BackendState {
                mode: Mode::Vip,
                servers: vec![s],
                options: BackendOptions::default(),
            })
            .boxed(),
    }
}

/// Any proxy state, independent of a desired one.
pub fn proxy_state() -> impl Strategy<Value = ProxyState> {
    let backends = btree_map(backend_name(), mode(), 0..=3).prop_flat_map(|modes| {
        modes
            .into_iter()
            .map(|(name, mode)| (Just(name), backend_state(mode)))
            .collect::<Vec<_>>()
    });
    let targets = (backend_name(), 0usize..=2).prop_map(|(b, n)| MapValue::backend(&b, n));
    (backends, btree_map(host(), targets, 0..=4)).prop_map(|(backends, hosts)| ProxyState {
        backends: backends
            .into_iter()
            .map(|(n, b)| (n, Arc::new(b)))
            .collect(),
        hosts,
    })
}

/// A proxy state close to `desired`: most desired backends are there in the same mode (so most
/// plans need no reload), some are missing or of the other mode, sometimes one extra.
pub fn proxy_state_near(desired: &Desired) -> impl Strategy<Value = ProxyState> {
    let near: Vec<_> = desired
        .backends
        .iter()
        .map(|(name, spec)| {
            let other = match spec.mode {
                Mode::Task => Mode::Vip,
                Mode::Vip => Mode::Task,
            };
            let mode = prop_oneof![19 => Just(spec.mode), 1 => Just(other)];
            option::weighted(
                0.95,
                (Just(name.clone()), mode.prop_flat_map(backend_state)),
            )
        })
        .collect();
    let extra = option::weighted(0.1, (backend_name(), mode().prop_flat_map(backend_state)));
    let hosts = btree_map(
        host(),
        host_target(desired.backends.keys().cloned().collect()),
        0..=4,
    );
    (near, extra, hosts).prop_map(|(near, extra, hosts)| {
        let mut backends: BTreeMap<_, _> = near
            .into_iter()
            .flatten()
            .map(|(n, b)| (n, Arc::new(b)))
            .collect();
        if let Some((name, state)) = extra {
            backends.entry(name).or_insert(Arc::new(state));
        }
        ProxyState { backends, hosts }
    })
}

/// `(actual, desired)`, mostly near each other, sometimes unrelated.
pub fn actual_and_desired() -> impl Strategy<Value = (ProxyState, Desired)> {
    prop_oneof![
        4 => desired().prop_flat_map(|d| (proxy_state_near(&d), Just(d))),
        1 => (proxy_state(), desired()),
    ]
}

/// HAProxy 3.4+ with named defaults loaded for some option sets of [`options`] (not the
/// `sid` cookie: a backend with it is still created by reload).
pub fn runtime_backends() -> RuntimeBackends {
    let defaults = [
        (false, None, false),
        (true, None, false),
        (false, Some("SRV"), false),
        (true, Some("SRV"), false),
        (false, None, true),
        (true, None, true),
    ]
    .into_iter()
    .filter_map(|(ip_hash, cookie, passthrough)| {
        DefaultsName::for_section(SectionOptions {
            ip_hash,
            sticky_cookie: cookie.map(str::to_owned),
            passthrough,
            httpchk: false,
            compress: false,
            timeout_connect_ms: None,
        })
    })
    .collect();
    RuntimeBackends {
        delete: true,
        defaults,
        backend_ca: true,
    }
}

/// Small blocks so that growth happens; 42 as in production. Half the time HAProxy creates
/// and deletes backends at runtime (3.4+).
pub fn plan_settings() -> impl Strategy<Value = PlanSettings> {
    (select(vec![1usize, 2, 3, 42]), any::<bool>(), any::<bool>()).prop_map(
        |(block, add_server, runtime)| PlanSettings {
            block,
            add_server,
            hosts_map: MapPath::new("/etc/haproxy/hosts.map").expect("valid"),
            runtime_backends: if runtime {
                runtime_backends()
            } else {
                RuntimeBackends::default()
            },
            connect_timeout_rule: false,
        },
    )
}

/// A state that already satisfies `desired`, built independently of the planner: ready
/// endpoints in ready slots, drained ones absent or in drain/maint slots, spare free slots,
/// all in a random slot order.
pub fn satisfying(desired: &Desired) -> impl Strategy<Value = ProxyState> {
    let backends: Vec<_> = desired
        .backends
        .iter()
        .map(|(name, spec)| (Just(name.clone()), satisfying_backend(spec)))
        .collect();
    let hosts = desired.hosts.clone();
    backends.prop_map(move |backends| ProxyState {
        backends: backends
            .into_iter()
            .map(|(n, b)| (n, Arc::new(b)))
            .collect(),
        hosts: hosts.clone(),
    })
}

fn drained_admin() -> impl Strategy<Value = Admin> {
    select(vec![Admin::Drain, Admin::Maint])
}

fn satisfying_backend(spec: &BackendSpec) -> BoxedStrategy<BackendState> {
    let options = spec.options.clone();
    match spec.mode {
        Mode::Task => {
            let ready: Vec<Option<(SocketAddr, Admin)>> = spec
                .endpoints
                .iter()
                .filter(|(_, s)| **s == EndpointState::Ready)
                .map(|(addr, _)| Some((*addr, Admin::Ready)))
                .collect();
            let drained: Vec<_> = spec
                .endpoints
                .iter()
                .filter(|(_, s)| **s == EndpointState::Drain)
                .map(|(addr, _)| {
                    let addr = *addr;
                    option::of(drained_admin()).prop_map(move |a| a.map(|admin| (addr, admin)))
                })
                .collect();
            (drained, 0..=3usize)
                .prop_flat_map(move |(drained, spare)| {
                    let mut contents = ready.clone();
                    contents.extend(drained.into_iter().flatten().map(Some));
                    contents.extend(std::iter::repeat_n(None, spare));
                    Just(contents).prop_shuffle()
                })
                .prop_map(move |contents| BackendState {
                    mode: Mode::Task,
                    options: options.clone(),
                    servers: contents
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let name = ServerName::slot(i + 1);
                            match c {
                                Some((addr, admin)) => Server { name, addr, admin },
                                None => Server::free(name),
                            }
                        })
                        .collect(),
                })
                .boxed()
        }
        Mode::Vip => {
            let vip = |addr, admin| BackendState {
                mode: Mode::Vip,
                options: BackendOptions::default(),
                servers: vec![Server {
                    name: ServerName::vip(),
                    addr,
                    admin,
                }],
            };
            // The strategies give a vip backend at most one endpoint.
            match spec.endpoints.iter().next() {
                Some((addr, EndpointState::Ready)) => Just(vip(*addr, Admin::Ready)).boxed(),
                Some((addr, EndpointState::Drain)) => {
                    let addr = *addr;
                    prop_oneof![
                        Just(vip(PLACEHOLDER, Admin::Maint)),
                        drained_admin().prop_map(move |admin| vip(addr, admin)),
                    ]
                    .boxed()
                }
                None => Just(vip(PLACEHOLDER, Admin::Maint)).boxed(),
            }
        }
    }
}
