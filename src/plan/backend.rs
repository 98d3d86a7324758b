//! One backend: from the servers HAProxy holds to the servers Swarm asks for. Slot assignment
//! lives here: a task keeps its slot for as long as it lives (consistent hashing and cookies
//! follow slots), new tasks take the lowest free slots, slots never shrink.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::haproxy::state::PLACEHOLDER;
use crate::haproxy::{
    Admin, BackendState, CertPath, Command, DefaultsName, Server, ServerKeywords,
};
use crate::model::{BackendName, BackendSpec, EndpointState, Mode, ServerName};

pub(super) struct BackendPlan {
    /// Runtime commands for this backend, in order; empty when `reload` is set because the
    /// backend cannot be reached at runtime at all (new, or of another mode).
    pub commands: Vec<Command>,
    pub target: BackendState,
    /// The target can only be reached by a reload.
    pub reload: bool,
}

/// How many slots a backend that places `n` endpoints gets: whole blocks, with at least one
/// free slot of headroom (block 42: 0..=41 -> 42, 42 -> 84). A block of 0 counts as 1.
pub(super) fn slots_for(n: usize, block: usize) -> usize {
    let block = block.max(1);
    block * (n / block + 1)
}

pub(super) fn plan_backend(
    name: &BackendName,
    actual: Option<&BackendState>,
    spec: &BackendSpec,
    block: usize,
    add_server: bool,
    ca_file: &CertPath,
) -> BackendPlan {
    let reload = || BackendPlan {
        commands: Vec::new(),
        target: fresh(spec, block),
        reload: true,
    };
    let Some(actual) = actual.filter(|a| well_formed(a, spec.mode)) else {
        return reload();
    };
    let mut plan = match (spec.mode, actual.servers.as_slice()) {
        (Mode::Task, _) => task(name, actual, spec, block, add_server, ca_file),
        (Mode::Vip, [server]) => {
            let target = vip_target(Some(server), spec);
            BackendPlan {
                commands: server_diff(name, server, &target),
                target: BackendState {
                    mode: Mode::Vip,
                    servers: vec![target],
                    options: spec.options.clone(),
                },
                reload: false,
            }
        }
        // `well_formed` rules this out; a reload is the safe answer anyway.
        (Mode::Vip, _) => reload(),
    };
    // Options live in the backend's config section: only a reload changes them. The servers
    // are planned as usual all the same, so every task keeps its slot through it.
    plan.reload |= actual.options != spec.options;
    plan
}

/// Whether `actual` has the shape `mode` needs (slots `s1..sN` in order, or the single `vip`
/// server), so that runtime commands can take it to its target. Anything else is rebuilt by
/// a reload.
pub(super) fn well_formed(actual: &BackendState, mode: Mode) -> bool {
    if actual.mode != mode {
        return false;
    }
    match mode {
        Mode::Task => actual
            .servers
            .iter()
            .enumerate()
            // Compared by index: formatting 42k slot names per pass showed in the plan time.
            .all(|(i, s)| s.name.slot_index() == Some(i + 1)),
        Mode::Vip => {
            matches!(actual.servers.as_slice(), [only] if only.name.as_str() == ServerName::VIP)
        }
    }
}

/// Whether `actual` already is what `spec` asks for: the planner would change nothing.
pub(super) fn satisfies(actual: &BackendState, spec: &BackendSpec) -> bool {
    if !well_formed(actual, spec.mode) || actual.options != spec.options {
        return false;
    }
    match (spec.mode, actual.servers.as_slice()) {
        (Mode::Vip, [server]) => *server == vip_target(Some(server), spec),
        (Mode::Vip, _) => false,
        (Mode::Task, servers) => {
            let endpoints = endpoints(spec);
            let mut seen = BTreeSet::new();
            for server in servers.iter().filter(|s| !s.is_free()) {
                let Some(state) = endpoints.get(&server.addr) else {
                    return false;
                };
                if !seen.insert(server.addr) || kept_admin(server.admin, *state) != server.admin {
                    return false;
                }
            }
            endpoints
                .iter()
                .all(|(addr, state)| *state == EndpointState::Drain || seen.contains(addr))
        }
    }
}

/// The endpoints that can go into a slot. The placeholder address is left out: a slot there
/// is a free slot, whatever Swarm reports.
fn endpoints(spec: &BackendSpec) -> BTreeMap<SocketAddr, EndpointState> {
    spec.endpoints
        .iter()
        .filter(|(addr, _)| **addr != PLACEHOLDER)
        .map(|(addr, state)| (*addr, *state))
        .collect()
}

/// The admin state of a server that keeps its endpoint. A drained endpoint in maint stays in
/// maint: maint takes no new traffic either, and a reload renders drained servers as maint,
/// so turning it back to drain would loop.
fn kept_admin(actual: Admin, desired: EndpointState) -> Admin {
    match (desired, actual) {
        (EndpointState::Ready, _) => Admin::Ready,
        (EndpointState::Drain, Admin::Ready) => Admin::Drain,
        (EndpointState::Drain, other) => other,
    }
}

fn ready(addr: SocketAddr, name: ServerName) -> Server {
    Server {
        name,
        addr,
        admin: Admin::Ready,
    }
}

/// The backend as a reload creates it: ready endpoints in slot order (a drained one is not
/// added), or the `vip` server.
pub(super) fn fresh(spec: &BackendSpec, block: usize) -> BackendState {
    let servers = match spec.mode {
        Mode::Task => {
            let ready_addrs: Vec<SocketAddr> = endpoints(spec)
                .into_iter()
                .filter(|(_, state)| *state == EndpointState::Ready)
                .map(|(addr, _)| addr)
                .collect();
            (1..=slots_for(ready_addrs.len(), block))
                .map(|i| match ready_addrs.get(i - 1) {
                    Some(addr) => ready(*addr, ServerName::slot(i)),
                    None => Server::free(ServerName::slot(i)),
                })
                .collect()
        }
        Mode::Vip => vec![vip_target(None, spec)],
    };
    BackendState {
        mode: spec.mode,
        servers,
        options: spec.options.clone(),
    }
}

/// The VIP a vip backend points at: the first ready endpoint, else the first drained one
/// (the model gives exactly one).
fn vip_endpoint(spec: &BackendSpec) -> Option<(SocketAddr, EndpointState)> {
    let endpoints = endpoints(spec);
    let first_ready = endpoints
        .iter()
        .find(|(_, state)| **state == EndpointState::Ready);
    first_ready
        .or_else(|| endpoints.iter().next())
        .map(|(addr, state)| (*addr, *state))
}

fn vip_target(actual: Option<&Server>, spec: &BackendSpec) -> Server {
    let name = ServerName::vip();
    match vip_endpoint(spec) {
        Some((addr, EndpointState::Ready)) => ready(addr, name),
        Some((addr, EndpointState::Drain)) => match actual {
            Some(server) if server.addr == addr => Server {
                name,
                addr,
                admin: kept_admin(server.admin, EndpointState::Drain),
            },
            _ => Server::free(name),
        },
        None => Server::free(name),
    }
}

fn task(
    name: &BackendName,
    actual: &BackendState,
    spec: &BackendSpec,
    block: usize,
    add_server: bool,
    ca_file: &CertPath,
) -> BackendPlan {
    let endpoints = endpoints(spec);
    let mut servers = actual.servers.clone();

    // Keep every endpoint where it is; free every slot whose address is not desired (and any
    // second slot holding an address already kept).
    let mut placed = BTreeSet::new();
    for server in &mut servers {
        let keep = match endpoints.get(&server.addr) {
            Some(state) if placed.insert(server.addr) => Some(*state),
            _ => None,
        };
        match keep {
            Some(state) => server.admin = kept_admin(server.admin, state),
            None => *server = Server::free(server.name.clone()),
        }
    }

    // New ready endpoints into the lowest free slots; a drained one not in HAProxy stays out.
    let mut new = endpoints
        .iter()
        .filter(|(addr, state)| **state == EndpointState::Ready && !placed.contains(*addr))
        .map(|(addr, _)| *addr);
    for server in servers.iter_mut().filter(|s| s.is_free()) {
        let Some(addr) = new.next() else { break };
        *server = ready(addr, server.name.clone());
    }
    let overflow: Vec<SocketAddr> = new.collect();

    let mut commands: Vec<Command> = actual
        .servers
        .iter()
        .zip(&servers)
        .flat_map(|(a, t)| server_diff(name, a, t))
        .collect();

    let mut reload = false;
    if !overflow.is_empty() {
        let first = servers.len() + 1;
        for i in 0..slots_for(overflow.len(), block) {
            let slot = ServerName::slot(first + i);
            servers.push(match overflow.get(i) {
                Some(addr) => ready(*addr, slot),
                None => Server::free(slot),
            });
        }
        // A server added at runtime inherits no `default-server`: `add server` repeats the
        // backend's keywords (failure limit, TLS to the task).
        if add_server {
            let keywords = ServerKeywords::for_options(&spec.options, ca_file);
            // HAProxy (2.6) gives a runtime-added server no dynamic cookie; `set server addr`
            // computes one. A sticky backend's servers are added at the placeholder and moved.
            let sticky = spec.options.sticky_cookie.is_some();
            for server in &servers[actual.servers.len()..] {
                let moved = sticky && server.addr != PLACEHOLDER;
                commands.push(Command::AddServer {
                    backend: name.clone(),
                    server: server.name.clone(),
                    addr: if moved { PLACEHOLDER } else { server.addr },
                    keywords: keywords.clone(),
                });
                if moved {
                    commands.push(Command::SetAddr {
                        backend: name.clone(),
                        server: server.name.clone(),
                        addr: server.addr,
                    });
                }
                commands.extend(check_and_set_state(name, server));
            }
        } else {
            reload = true;
        }
    }

    BackendPlan {
        commands,
        target: BackendState {
            mode: Mode::Task,
            servers,
            options: spec.options.clone(),
        },
        reload,
    }
}

/// How long `wait srv-removable` may hold the admin session per server that held a task, in
/// milliseconds. Short: a server still busy (a websocket to a removed service) makes its `del
/// server` fail, and the next pass tries again, while the rest of the pass is not held up.
pub(super) const REMOVABLE_WAIT_MS: u32 = 500;

/// The commands that create `target` (as [`fresh`] builds it) at runtime from `defaults`
/// (HAProxy 3.4+), in the order measured on 3.4.7: `add backend` (unpublished), each server
/// added, checked and put in its state, the dynamic cookie key set and enabled (a sticky
/// backend sends an empty cookie before), then `publish backend`. Routing reaches it only
/// through map entries, which the plan adds after these.
pub(super) fn create(
    name: &BackendName,
    target: &BackendState,
    defaults: &DefaultsName,
    ca_file: &CertPath,
) -> Vec<Command> {
    let mut out = vec![Command::AddBackend {
        backend: name.clone(),
        defaults: defaults.clone(),
    }];
    let keywords = ServerKeywords::for_options(&target.options, ca_file);
    for server in &target.servers {
        out.push(Command::AddServer {
            backend: name.clone(),
            server: server.name.clone(),
            addr: server.addr,
            keywords: keywords.clone(),
        });
        out.extend(check_and_set_state(name, server));
    }
    if target.options.sticky_cookie.is_some() {
        // The service's name as the key, as the config renders it, whatever the generation.
        let key = BackendName::parse(name.service()).unwrap_or_else(|_| name.clone());
        out.push(Command::SetDynamicCookieKey {
            backend: name.clone(),
            key,
        });
        out.push(Command::EnableDynamicCookie {
            backend: name.clone(),
        });
    }
    out.push(Command::PublishBackend {
        backend: name.clone(),
    });
    out
}

/// The commands that delete `actual` at runtime (HAProxy 3.4+), once no map entry names it:
/// `unpublish backend`, every server to maint, `wait srv-removable` for a server that held a
/// task and was not in maint yet (connections may remain), `del server`, `unpublish backend`
/// again (see below), `del backend`.
pub(super) fn retire(name: &BackendName, actual: &BackendState) -> Vec<Command> {
    let mut out = vec![Command::UnpublishBackend {
        backend: name.clone(),
    }];
    for server in &actual.servers {
        if server.admin != Admin::Maint {
            out.push(set_state(name, &server.name, Admin::Maint));
        }
    }
    for server in &actual.servers {
        // Only a server this plan puts in maint is waited for. One already in maint was
        // retired by an earlier pass whose `del server` was refused (a websocket still on it)
        // or drained before: `del server` answers at once either way, and waiting again on
        // every pass would hold each pass, for every service, 500 ms per such server for as
        // long as the connection lives (found by a newcomer: convergence 5 ms -> 545 ms).
        if !server.is_free() && server.admin != Admin::Maint {
            out.push(Command::WaitServerRemovable {
                backend: name.clone(),
                server: server.name.clone(),
                timeout_ms: REMOVABLE_WAIT_MS,
            });
        }
        out.push(Command::DelServer {
            backend: name.clone(),
            server: server.name.clone(),
        });
    }
    // Again, right before `del backend`: HAProxy's session keeps the log lines of the
    // commands before (`Server <b>/<s> is going DOWN ...`, `Server deleted.`) and prints them
    // in the `del backend` reply, up to about 1 KB, after which `Backend deleted.` itself is
    // cut off (measured on 3.4.7 with 42 slots: a 1,016-byte reply, the backend deleted).
    // `unpublish backend` (idempotent) empties that buffer.
    if !actual.servers.is_empty() {
        out.push(Command::UnpublishBackend {
            backend: name.clone(),
        });
    }
    out.push(Command::DelBackend {
        backend: name.clone(),
    });
    out
}

/// What follows the `add server` of `server`: its state (`add server` starts in maint), then,
/// for a server that takes traffic, its health check enabled (a runtime-added server is not
/// checked until told to be). A free slot's check stays off: enabled on a server that is still
/// in maint, HAProxy checks it anyway (measured on 2.6.12 and 3.4.7: ~10 checks/s per slot at
/// `inter 100`, against the placeholder), and a runtime-created backend's ~39 free slots cost
/// 62 % of a core at 1,000 services. The check is enabled when a task takes the slot
/// ([`server_diff`]) and pauses by itself when the slot goes back to maint.
fn check_and_set_state<'a>(
    backend: &'a BackendName,
    server: &'a Server,
) -> impl Iterator<Item = Command> + 'a {
    let serving = server.admin != Admin::Maint;
    let state = serving.then(|| set_state(backend, &server.name, server.admin));
    let enable = serving.then(|| enable_health(backend, &server.name));
    state.into_iter().chain(enable)
}

/// `enable health <b>/<s>`. Sent whenever a server takes traffic (out of maint): idempotent on
/// a server whose check runs already (loaded from the config, or enabled by an earlier use),
/// and it starts the check of a slot added at runtime whose check was never enabled.
fn enable_health(backend: &BackendName, server: &ServerName) -> Command {
    Command::EnableHealth {
        backend: backend.clone(),
        server: server.clone(),
    }
}

fn set_state(backend: &BackendName, server: &ServerName, state: Admin) -> Command {
    Command::SetState {
        backend: backend.clone(),
        server: server.clone(),
        state,
    }
}

/// The commands that turn server `a` into `t` (same name). A server leaving traffic goes to
/// maint before its address moves; a server taking traffic gets its address first, so no
/// server is ever ready at the placeholder.
fn server_diff(backend: &BackendName, a: &Server, t: &Server) -> Vec<Command> {
    let mut out = Vec::new();
    let mut admin = a.admin;
    if a.addr != t.addr {
        if t.admin == Admin::Maint && admin != Admin::Maint {
            out.push(set_state(backend, &t.name, Admin::Maint));
            admin = Admin::Maint;
        }
        out.push(Command::SetAddr {
            backend: backend.clone(),
            server: t.name.clone(),
            addr: t.addr,
        });
    }
    if admin != t.admin {
        out.push(set_state(backend, &t.name, t.admin));
        if admin == Admin::Maint {
            out.push(enable_health(backend, &t.name));
        }
    }
    out
}
