//! What an applied plan changes, named for operators: why a reload happens, and each server
//! and host entry that moves (service, task, slot, address, old -> new state). Pure: the
//! reconciler logs what these return.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::haproxy::{Admin, ProxyState, Server};
use crate::model::{MapKey, Snapshot, TaskState};

/// Why HAProxy is reloaded; the `reason` label of `swarm_lb_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReloadReason {
    /// A routed service appeared: its backend must be declared in the config.
    BackendCreated,
    /// A routed service went away (or stopped being routed).
    BackendRemoved,
    /// A backend changes between task and vip mode.
    ModeChanged,
    /// A backend's balancing options changed (`ip_hash`, sticky cookie labels).
    OptionsChanged,
    /// A backend needs more slots and `add server` is not available.
    SlotsGrown,
    /// `--strategy reload`: every change is a reload.
    StrategyReload,
    /// A basic-auth user list HAProxy has not loaded (`com.docker.lb.auth_basic` naming a new
    /// secret, or one re-created): user lists live in the config on every version.
    UserLists,
    /// Anything else the planner asked a reload for.
    Other,
}

impl ReloadReason {
    /// Every reason, in the order above: the metrics show each at 0 from the start, so "no
    /// reload happened" is a series an operator can watch, not a missing one.
    pub const ALL: [ReloadReason; 8] = [
        ReloadReason::BackendCreated,
        ReloadReason::BackendRemoved,
        ReloadReason::ModeChanged,
        ReloadReason::OptionsChanged,
        ReloadReason::SlotsGrown,
        ReloadReason::StrategyReload,
        ReloadReason::UserLists,
        ReloadReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReloadReason::BackendCreated => "backend_created",
            ReloadReason::BackendRemoved => "backend_removed",
            ReloadReason::ModeChanged => "mode_changed",
            ReloadReason::OptionsChanged => "options_changed",
            ReloadReason::SlotsGrown => "slots_grown",
            ReloadReason::StrategyReload => "strategy_reload",
            ReloadReason::UserLists => "user_lists",
            ReloadReason::Other => "other",
        }
    }
}

impl fmt::Display for ReloadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first reason, in [`ReloadReason`]'s order, that takes HAProxy from `actual` to
/// `target` by a reload; [`ReloadReason::StrategyReload`] when none does and the reload
/// strategy is in force (`by_strategy`).
pub fn reload_reason(actual: &ProxyState, target: &ProxyState, by_strategy: bool) -> ReloadReason {
    if target
        .backends
        .keys()
        .any(|b| !actual.backends.contains_key(b))
    {
        return ReloadReason::BackendCreated;
    }
    if actual
        .backends
        .keys()
        .any(|b| !target.backends.contains_key(b))
    {
        return ReloadReason::BackendRemoved;
    }
    let pairs = || {
        target
            .backends
            .iter()
            .filter_map(|(name, t)| actual.backends.get(name).map(|a| (a, t)))
    };
    if pairs().any(|(a, t)| a.mode != t.mode) {
        return ReloadReason::ModeChanged;
    }
    if pairs().any(|(a, t)| a.options != t.options) {
        return ReloadReason::OptionsChanged;
    }
    if pairs().any(|(a, t)| t.servers.len() > a.servers.len()) && !by_strategy {
        return ReloadReason::SlotsGrown;
    }
    if by_strategy {
        ReloadReason::StrategyReload
    } else {
        ReloadReason::Other
    }
}

/// One server whose address or state changes. `old_*` are `None` for a server that did not
/// exist (added, or in a new backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerChange {
    /// The service of the backend (its name without a generation suffix).
    pub service: String,
    /// The backend (`<service>` or `<service>:<n>`).
    pub backend: String,
    /// `s1..sN`, or `vip`.
    pub slot: String,
    /// The task behind the new address (or, for a freed slot, the old one), as Docker names
    /// it: `<service>.<slot>.<task id>` (`<service>.<task id>` for a global service).
    pub task: Option<String>,
    pub old_addr: Option<SocketAddr>,
    pub new_addr: SocketAddr,
    pub old_state: Option<Admin>,
    pub new_state: Admin,
}

/// One hosts-map entry that changes: `None` on a side where the host is not routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostChange {
    pub host: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Every server and host entry that differs between `actual` and `target`, servers in
/// backend then slot order. Servers of removed backends are not listed (the backend goes
/// with them); free slots of a new backend neither.
pub fn server_changes(
    actual: &ProxyState,
    target: &ProxyState,
    snap: &Snapshot,
) -> Vec<ServerChange> {
    let mut out = Vec::new();
    // The address whose task names each change, looked up once the changes are known.
    let mut addresses: Vec<Option<IpAddr>> = Vec::new();
    for (name, t) in &target.backends {
        let before = actual.backends.get(name);
        // The same shared value: nothing changed in it (see `ProxyState::backends`).
        if before.is_some_and(|b| std::sync::Arc::ptr_eq(b, t)) {
            continue;
        }
        for server in &t.servers {
            let old = before.and_then(|b| b.servers.iter().find(|s| s.name == server.name));
            let changed = match old {
                Some(o) => o.addr != server.addr || o.admin != server.admin,
                None => !server.is_free(),
            };
            if !changed {
                continue;
            }
            // The task is the one at the address the slot holds now, else the one it held.
            let at = |s: &Server| (!s.is_free()).then_some(s.addr.ip());
            addresses.push(at(server).or_else(|| old.and_then(at)));
            out.push(ServerChange {
                service: name.service().to_owned(),
                backend: name.as_str().to_owned(),
                slot: server.name.as_str().to_owned(),
                task: None,
                old_addr: old.map(|o| o.addr),
                new_addr: server.addr,
                old_state: old.map(|o| o.admin),
                new_state: server.admin,
            });
        }
    }
    if !out.is_empty() {
        // Only the changed services' tasks are indexed (naming every task of every service
        // took 7 % of a pass at 10,000 services).
        let services: HashSet<&str> = out.iter().map(|c| c.service.as_str()).collect();
        let tasks = TaskIndex::of(snap, Some(&services));
        let names: Vec<Option<String>> = out
            .iter()
            .zip(&addresses)
            .map(|(c, ip)| ip.and_then(|ip| tasks.name(&c.service, ip)))
            .collect();
        for (c, name) in out.iter_mut().zip(names) {
            c.task = name;
        }
    }
    out
}

/// Routes of the hosts map that differ between `actual` and `target`, in key order. A route
/// several services share is one change showing each service's share (`split v1 80% v2 20%`),
/// not one per bucket.
pub fn host_changes(actual: &ProxyState, target: &ProxyState) -> Vec<HostChange> {
    if actual.hosts == target.hosts {
        return Vec::new();
    }
    let mut hosts: Vec<_> = actual
        .hosts
        .keys()
        .chain(target.hosts.keys())
        .filter(|k| !k.is_bucket())
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
        .into_iter()
        .filter_map(|h| {
            let old = route_text(actual, h);
            let new = route_text(target, h);
            (old != new).then(|| HostChange {
                host: h.as_str().to_owned(),
                old,
                new,
            })
        })
        .collect()
}

/// What a route key does in `state`, as a log line shows it.
fn route_text(state: &ProxyState, key: &MapKey) -> Option<String> {
    let value = state.hosts.get(key)?;
    if !value.as_str().starts_with('~') {
        return Some(value.as_str().to_owned());
    }
    let prefix = format!("~{key}=");
    let mut shares: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, v) in state.hosts.range(MapKey::bucket(key, 0)..) {
        if !k.as_str().starts_with(&prefix) {
            break;
        }
        *shares.entry(v.as_str()).or_default() += 1;
    }
    let total = shares.values().sum::<usize>().max(1);
    let parts: Vec<String> = shares
        .iter()
        .map(|(b, n)| format!("{b} {}%", n * 100 / total))
        .collect();
    Some(format!("split {}", parts.join(" ")))
}

/// The backends whose servers, hosts or existence differ between `actual` and `target`.
pub fn changed_backends(actual: &ProxyState, target: &ProxyState) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = actual
        .backends
        .keys()
        .chain(target.backends.keys())
        .filter(|b| actual.backends.get(*b) != target.backends.get(*b))
        .map(|b| b.as_str().to_owned())
        .collect();
    for h in host_changes(actual, target) {
        out.extend(h.old);
        out.extend(h.new);
    }
    out
}

/// A word for a server state in logs and the status view.
pub fn admin_name(a: Admin) -> &'static str {
    match a {
        Admin::Ready => "ready",
        Admin::Drain => "drain",
        Admin::Maint => "maint",
    }
}

/// Task names by (service name, task IP), as Docker names tasks. Where several tasks of a
/// service held one IP (an address reused after a task ended), the one not finished wins.
pub(crate) struct TaskIndex<'a> {
    by_ip: HashMap<(&'a str, IpAddr), (String, bool)>,
}

impl<'a> TaskIndex<'a> {
    pub(crate) fn new(snap: &'a Snapshot) -> Self {
        Self::of(snap, None)
    }

    /// [`TaskIndex::new`] for the tasks of the services named `services` only (`None`: all).
    pub(crate) fn of(snap: &'a Snapshot, services: Option<&HashSet<&str>>) -> Self {
        let names: HashMap<&str, &str> = snap
            .services
            .iter()
            .filter(|s| services.map_or(true, |only| only.contains(s.name.as_str())))
            .map(|s| (s.id.as_str(), s.name.as_str()))
            .collect();
        let mut by_ip: HashMap<(&str, IpAddr), (String, bool)> = HashMap::new();
        for t in &snap.tasks {
            let Some(service) = names.get(t.service_id.as_str()).copied() else {
                continue;
            };
            let name = match t.slot {
                Some(slot) => format!("{service}.{slot}.{}", t.id),
                None => format!("{service}.{}", t.id),
            };
            let live = t.state != TaskState::Finished;
            for a in &t.addresses {
                let slot = by_ip
                    .entry((service, a.addr))
                    .or_insert((name.clone(), live));
                if live && !slot.1 {
                    *slot = (name.clone(), live);
                }
            }
        }
        TaskIndex { by_ip }
    }

    pub(crate) fn name(&self, service: &str, ip: IpAddr) -> Option<String> {
        self.by_ip.get(&(service, ip)).map(|(n, _)| n.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::state::PLACEHOLDER;
    use crate::haproxy::BackendState;
    use crate::model::{
        BackendName, BackendOptions, DesiredTaskState, Host, MapKey, MapValue, Mode, ServerName,
        Service, Task, TaskAddress,
    };

    fn be(n: &str) -> BackendName {
        BackendName::for_service(n).unwrap()
    }

    fn state(servers: &[(&str, &str, Admin)]) -> ProxyState {
        let mut s = ProxyState::default();
        s.backends.insert(
            be("web"),
            std::sync::Arc::new(BackendState {
                mode: Mode::Task,
                options: BackendOptions::default(),
                servers: servers
                    .iter()
                    .map(|(n, a, admin)| Server {
                        name: ServerName::parse(n).unwrap(),
                        addr: if a.is_empty() {
                            PLACEHOLDER
                        } else {
                            a.parse().unwrap()
                        },
                        admin: *admin,
                    })
                    .collect(),
            }),
        );
        s
    }

    fn snap() -> Snapshot {
        Snapshot {
            services: crate::model::shared(vec![Service {
                id: "sid".into(),
                name: "web".into(),
                labels: Default::default(),
                networks: vec!["n".into()],
                vips: vec![],
            }]),
            tasks: crate::model::shared(vec![Task {
                id: "t2".into(),
                service_id: "sid".into(),
                slot: Some(2),
                state: TaskState::Running,
                desired_state: DesiredTaskState::Running,
                addresses: vec![TaskAddress {
                    network: "n".into(),
                    addr: "10.0.0.2".parse().unwrap(),
                }],
            }]),
            networks: vec![],
        }
    }

    #[test]
    fn a_slot_filled_by_a_task_names_the_task_its_address_and_both_states() {
        let actual = state(&[("s1", "", Admin::Maint)]);
        let target = state(&[("s1", "10.0.0.2:80", Admin::Ready)]);
        let changes = server_changes(&actual, &target, &snap());
        assert_eq!(
            changes,
            vec![ServerChange {
                service: "web".into(),
                backend: "web".into(),
                slot: "s1".into(),
                task: Some("web.2.t2".into()),
                old_addr: Some(PLACEHOLDER),
                new_addr: "10.0.0.2:80".parse().unwrap(),
                old_state: Some(Admin::Maint),
                new_state: Admin::Ready,
            }]
        );
    }

    #[test]
    fn a_freed_slot_names_the_task_it_held_and_unchanged_slots_are_not_listed() {
        let actual = state(&[
            ("s1", "10.0.0.2:80", Admin::Ready),
            ("s2", "", Admin::Maint),
        ]);
        let target = state(&[("s1", "", Admin::Maint), ("s2", "", Admin::Maint)]);
        let changes = server_changes(&actual, &target, &snap());
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].task.as_deref(), Some("web.2.t2"));
        assert_eq!(changes[0].new_state, Admin::Maint);
    }

    #[test]
    fn reload_reasons_come_in_a_fixed_order() {
        let empty = ProxyState::default();
        let one = state(&[("s1", "", Admin::Maint)]);
        assert_eq!(
            reload_reason(&empty, &one, false),
            ReloadReason::BackendCreated
        );
        assert_eq!(
            reload_reason(&one, &empty, false),
            ReloadReason::BackendRemoved
        );
        let two = state(&[("s1", "", Admin::Maint), ("s2", "", Admin::Maint)]);
        assert_eq!(reload_reason(&one, &two, false), ReloadReason::SlotsGrown);
        let mut sticky = one.clone();
        std::sync::Arc::make_mut(sticky.backends.get_mut(&be("web")).unwrap())
            .options
            .ip_hash = true;
        assert_eq!(
            reload_reason(&one, &sticky, true),
            ReloadReason::OptionsChanged
        );
        assert_eq!(
            reload_reason(&one, &two, true),
            ReloadReason::StrategyReload
        );
        assert_eq!(reload_reason(&one, &one, false), ReloadReason::Other);
    }

    #[test]
    fn a_canary_split_changing_is_one_line_with_the_shares_not_one_per_bucket() {
        let key = MapKey::host(&Host::parse("demo.test").unwrap());
        let split = |v1: usize| {
            let mut s = ProxyState::default();
            s.hosts.insert(key.clone(), MapValue::split(&key));
            for n in 0..100 {
                let b = if n < v1 { "v1" } else { "v2" };
                s.hosts
                    .insert(MapKey::bucket(&key, n), MapValue::backend(&be(b), 0));
            }
            s
        };
        let mut single = ProxyState::default();
        single
            .hosts
            .insert(key.clone(), MapValue::backend(&be("v1"), 0));
        let c = host_changes(&single, &split(80));
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].old.as_deref(), Some("v1"));
        assert_eq!(c[0].new.as_deref(), Some("split v1 80% v2 20%"));
        let c = host_changes(&split(80), &split(50));
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].new.as_deref(), Some("split v1 50% v2 50%"));
        assert_eq!(host_changes(&split(80), &split(80)), vec![]);
    }

    #[test]
    fn host_changes_list_added_moved_and_removed_hosts() {
        let mut a = ProxyState::default();
        let mut b = ProxyState::default();
        let key = |h: &str| MapKey::host(&Host::parse(h).unwrap());
        let to = |b: &str| MapValue::backend(&be(b), 0);
        a.hosts.insert(key("a.test"), to("web"));
        a.hosts.insert(key("b.test"), to("web"));
        b.hosts.insert(key("b.test"), to("api"));
        b.hosts.insert(key("c.test"), to("web"));
        let c = host_changes(&a, &b);
        let hosts: Vec<_> = c
            .iter()
            .map(|h| (h.host.as_str(), h.old.as_deref(), h.new.as_deref()))
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("a.test/", Some("web"), None),
                ("b.test/", Some("web"), Some("api")),
                ("c.test/", None, Some("web")),
            ]
        );
    }
}
