//! `(actual, desired) -> Plan`: the runtime commands that take HAProxy from what it holds to
//! what Swarm asks for, and a reload only where the Runtime API cannot do it. Before HAProxy
//! 3.4 that is a backend appearing or disappearing, its options changing, or its growing where
//! `add server` is not available; from 3.4 backends are created, moved to a new generation
//! when their options change (`generation`) and retired at runtime, and a reload is left
//! for what no loaded named defaults section covers (a sticky cookie name's first use). Pure
//! and deterministic; slot assignment lives here.

mod backend;
mod generation;
#[cfg(test)]
pub(crate) mod strategy;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::haproxy::{render, Admin, BackendState, Command, DefaultsName, MapPath, ProxyState};
use crate::model::{BackendName, BackendOptions, BackendSpec, Desired, MapValue, NetworkId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSettings {
    /// Slots are allocated in blocks of this many (the HAProxy ingress controller uses 42).
    /// A block of 0 counts as 1.
    pub block: usize,
    /// HAProxy accepts `add server` (2.6+): slots can grow without a reload.
    pub add_server: bool,
    /// The hosts map, as runtime map commands name it.
    pub hosts_map: MapPath,
    /// What HAProxy can do to whole backends at runtime (3.4+); nothing by default.
    pub runtime_backends: RuntimeBackends,
    /// HAProxy takes `http-request set-timeout connect` (3.4+,
    /// [`crate::haproxy::Feature::SetTimeoutConnect`]): `com.docker.lb.timeout_connect` is
    /// the map entry alone, and the planner clears the backend section's `timeout connect`
    /// from every spec (an edit is a map edit). Before 3.4 the section option stays, so an
    /// edit is a section change: one reload.
    pub connect_timeout_rule: bool,
}

/// Backends created and deleted through the Runtime API (HAProxy 3.4+: `add backend <b> from
/// <defaults>`, `publish backend`, `unpublish backend`, `del backend`; docs/benchmarks.md,
/// "HAProxy 3.4 beside 2.6"). The default, for versions before 3.4: neither, every backend that appears or
/// goes takes a reload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeBackends {
    /// A backend that goes is retired at runtime (unpublish, servers to maint, `del server`,
    /// `del backend`) instead of by a reload.
    pub delete: bool,
    /// The named defaults sections the running HAProxy loaded: a new backend whose options
    /// have one here is created at runtime. Empty before 3.4.
    pub defaults: BTreeSet<DefaultsName>,
    /// HAProxy holds the backend CA bundle in its CA store (the config loaded
    /// `haproxy::render::BACKEND_CA_DEFAULTS`), so a server verifying its task's certificate
    /// can be added at runtime.
    pub backend_ca: bool,
}

impl RuntimeBackends {
    /// The loaded defaults section a backend with `options` can be created from.
    pub fn create_from(&self, options: &BackendOptions) -> Option<&DefaultsName> {
        let verify = options.backend_tls.as_ref().is_some_and(|tls| tls.verify);
        if verify && !self.backend_ca {
            return None;
        }
        let want = DefaultsName::for_options(options)?;
        self.defaults.get(&want)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Runtime commands, in order. When `reload` is set they are those for backends that
    /// survive the reload and are applied before it.
    pub runtime: Vec<Command>,
    /// Write `target` and reload: a backend appears or disappears, or must grow without
    /// `add server`.
    pub reload: bool,
    /// What HAProxy holds once the plan is applied, and so what the files must say.
    pub target: ProxyState,
    /// Networks to attach the HAProxy container to before routing, and to detach after.
    pub attach: Vec<NetworkId>,
    pub detach: Vec<NetworkId>,
    /// Backends that go but are not retired by this plan (3.4+): a route named them when it
    /// began, or the caller holds them (`hold` of [`plan_cached`]). They stay in `target` as
    /// HAProxy holds them; a later plan retires them.
    pub held: Vec<BackendName>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.runtime.is_empty() && !self.reload && self.attach.is_empty() && self.detach.is_empty()
    }

    /// Counts of what the plan does, for one log line per applied plan.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            reload: self.reload,
            attach: self.attach.len(),
            detach: self.detach.len(),
            ..Summary::default()
        };
        for cmd in &self.runtime {
            match cmd {
                Command::AddBackend { .. } => s.add_backend += 1,
                Command::DelBackend { .. } => s.del_backend += 1,
                Command::PublishBackend { .. }
                | Command::UnpublishBackend { .. }
                | Command::SetDynamicCookieKey { .. }
                | Command::EnableDynamicCookie { .. }
                | Command::WaitServerRemovable { .. } => {}
                Command::DelServer { .. } => s.del_server += 1,
                Command::SetAddr { .. } => s.set_addr += 1,
                Command::SetState { .. } => s.set_state += 1,
                Command::AddServer { .. } => s.add_server += 1,
                Command::EnableHealth { .. } => s.enable_health += 1,
                Command::AddMap { .. } => s.add_map += 1,
                Command::SetMap { .. } => s.set_map += 1,
                Command::DelMap { .. } => s.del_map += 1,
                // The planner does not emit certificate commands (the TLS pass does).
                Command::NewSslCert { .. }
                | Command::SetSslCert { .. }
                | Command::CommitSslCert { .. }
                | Command::AbortSslCert { .. }
                | Command::AddSslCrtList { .. }
                | Command::DelSslCrtList { .. }
                | Command::DelSslCert { .. } => {}
            }
        }
        s
    }
}

/// What a plan does, counted by kind (`info!(summary = %plan.summary(), "plan applied")`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub set_addr: usize,
    pub set_state: usize,
    pub enable_health: usize,
    pub add_server: usize,
    pub add_map: usize,
    pub set_map: usize,
    pub del_map: usize,
    pub add_backend: usize,
    pub del_server: usize,
    pub del_backend: usize,
    pub reload: bool,
    pub attach: usize,
    pub detach: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "set_addr={} set_state={} add_server={} enable_health={} add_map={} set_map={} del_map={} add_backend={} del_server={} del_backend={} reload={} attach={} detach={}",
            self.set_addr,
            self.set_state,
            self.add_server,
            self.enable_health,
            self.add_map,
            self.set_map,
            self.del_map,
            self.add_backend,
            self.del_server,
            self.del_backend,
            self.reload,
            self.attach,
            self.detach
        )
    }
}

/// The plan from `actual` (and the networks the proxy is `attached` to, among those the
/// driver manages) to `desired`.
///
/// Runtime commands come in five groups: route deletions first (stop routing before servers
/// go), then map edits towards backends that already have a ready server (a canary's traffic
/// moves off a backend before its tasks drain), then server changes (backend by backend, slot
/// by slot), then the other map additions and edits (route once the servers are there), then
/// deletions of buckets no route points at any more, then backends retired at runtime.
/// Buckets are written before routes in each group, so a route that becomes a split finds its
/// buckets. A backend that is new, gone, changes mode, or must grow without `add server` sets
/// `reload`; `target` then holds it already filled, and map commands naming a backend HAProxy
/// does not hold yet are left to the reload, which reads the map file. `target.hosts` is
/// `desired.hosts`, each backend named as HAProxy serves it (see below).
///
/// With [`RuntimeBackends`] (HAProxy 3.4+) a new backend whose options have a loaded named
/// defaults section is created with the server commands instead (`add backend`, its slots,
/// `publish backend`), so its map entries follow in the same plan; a backend that goes is
/// retired at the end (its map entries are gone by then): `unpublish backend`, each server to
/// maint, `wait srv-removable` for those that held a task, `del server`, `del backend`. A
/// backend whose options or mode change is replaced the same way by its next generation
/// (`<service>:<n>`, see [`generation`]): created and filled, the map entries switched to it,
/// the old one retired.
///
/// A backend that goes is retired only by a plan that begins with no route naming it: the
/// plan that moves or deletes its routes keeps it ([`Plan::held`]), and so does a plan given
/// it in `hold`. A request looks its
/// backend up in the hosts map (`set-var(txn.backend)`) and is sent there by a later rule
/// (`use_backend %[var(txn.backend)]`); HAProxy's CLI runs on another thread, and a backend
/// unpublished between the two rules is not found, so the request fell to `_default`'s 503
/// (seen once in 2,108 requests of an options change on 3.4.7 in CI).
pub fn plan(
    actual: &ProxyState,
    attached: &BTreeSet<NetworkId>,
    desired: &Desired,
    settings: &PlanSettings,
) -> Plan {
    plan_cached(
        actual,
        attached,
        desired,
        settings,
        &mut PlanCache::default(),
        &BTreeSet::new(),
        None,
    )
}

/// `desired` without the section's `timeout connect` where the map entry does its work
/// (`rule`: [`PlanSettings::connect_timeout_rule`]); borrowed when there is none to clear.
fn connect_timeout_in_map(desired: &Desired, rule: bool) -> std::borrow::Cow<'_, Desired> {
    let any = || {
        desired
            .backends
            .values()
            .any(|s| s.options.timeout_connect_ms.is_some())
    };
    if !rule || !any() {
        return std::borrow::Cow::Borrowed(desired);
    }
    let mut owned = desired.clone();
    owned.backends.values_mut().for_each(clear_connect_timeout);
    std::borrow::Cow::Owned(owned)
}

/// `spec` without the section's `timeout connect` (copied only when it has one).
fn clear_connect_timeout(spec: &mut Arc<BackendSpec>) {
    if spec.options.timeout_connect_ms.is_some() {
        Arc::make_mut(spec).options.timeout_connect_ms = None;
    }
}

/// The backends a pass found already as desired, each with the spec and the HAProxy state
/// (the shared value, see [`ProxyState::backends`]) it was planned from: a backend whose spec
/// is equal and whose state is the same value again plans to nothing, without building its
/// target (at 10,000 services, 420,000 slots built and compared per pass). Dropped whole when
/// the settings change. A cache only: [`plan_cached`] gives what [`plan`] gives (the planner
/// is a function of those inputs, so equal inputs give the same empty plan).
#[derive(Debug, Default)]
pub struct PlanCache {
    settings: Option<PlanSettings>,
    settled: HashMap<BackendName, (Arc<BackendSpec>, Arc<BackendState>)>,
    /// The backends the last plan left with commands (not yet known as desired).
    unsettled: BTreeSet<BackendName>,
    /// The last plan created, retired, held or renamed no backend and reloaded nothing (its
    /// own reload; one the caller adds is followed by a full read, so by a full plan): what
    /// a plan of [`plan_cached`]'s `only` needs to take every other backend as settled.
    quiet: bool,
}

impl PlanCache {
    /// What planning `name` (`spec`, from `current`) gave, noted: a backend the plan leaves as
    /// it is is settled and stays shared with `current` (no copy); any other is unsettled, for
    /// the next plan to look at again. Its target and commands.
    fn note(
        &mut self,
        name: &BackendName,
        spec: &Arc<BackendSpec>,
        current: Option<&Arc<BackendState>>,
        b: backend::BackendPlan,
    ) -> (Arc<BackendState>, Vec<Command>) {
        match current {
            Some(a) if b.commands.is_empty() && !b.reload && **a == b.target => {
                self.settled
                    .insert(name.clone(), (Arc::clone(spec), Arc::clone(a)));
                (Arc::clone(a), b.commands)
            }
            _ => {
                self.settled.remove(name);
                self.unsettled.insert(name.clone());
                (Arc::new(b.target), b.commands)
            }
        }
    }
}

/// [`plan`], skipping the backends `cache` knows to be as desired already, and retiring none
/// of the backends in `hold` (the caller's: those whose routes left them a moment ago, see
/// `reconcile::retire`).
///
/// `only`: the caller's promise that `actual` is what this cache's last plan left HAProxy
/// holding (its target as applied and read back, no full read or reload since) and that
/// `desired` differs from that plan's only in these backends' specs and in the hosts map
/// (`model::Change::Backends`); then only they, and the backends the last plan left with
/// commands, are planned (see `plan_only`). A full read after a reload makes the caller pass
/// `None`, so a plan is full again before any `only` plan follows it.
pub fn plan_cached(
    actual: &ProxyState,
    attached: &BTreeSet<NetworkId>,
    desired: &Desired,
    settings: &PlanSettings,
    cache: &mut PlanCache,
    hold: &BTreeSet<BackendName>,
    only: Option<&BTreeSet<BackendName>>,
) -> Plan {
    if cache.settings.as_ref() != Some(settings) {
        cache.settled.clear();
        cache.unsettled.clear();
        cache.quiet = false;
        cache.settings = Some(settings.clone());
    }
    if let Some(plan) =
        only.and_then(|only| plan_only(actual, attached, desired, settings, cache, only))
    {
        return plan;
    }
    if cache.settled.len() > desired.backends.len() {
        cache
            .settled
            .retain(|name, _| desired.backends.contains_key(name));
    }
    let desired = &*connect_timeout_in_map(desired, settings.connect_timeout_rule);
    let resolved = generation::resolve(actual, desired, &settings.runtime_backends);
    let renamed = matches!(resolved, std::borrow::Cow::Owned(_));
    let desired = &*resolved;
    let ca_file = render::backend_ca(&settings.hosts_map);
    let mut reload = false;
    cache.unsettled.clear();
    let mut server_commands = Vec::new();
    let mut backends = BTreeMap::new();
    let mut created = BTreeSet::new();
    for (name, spec) in &desired.backends {
        if !actual.backends.contains_key(name) {
            if let Some(defaults) = settings.runtime_backends.create_from(&spec.options) {
                let target = backend::fresh(spec, settings.block);
                server_commands.extend(backend::create(name, &target, defaults, &ca_file));
                created.insert(name.clone());
                backends.insert(name.clone(), Arc::new(target));
                continue;
            }
        }
        let current = actual.backends.get(name);
        if let (Some(a), Some((s, seen))) = (current, cache.settled.get(name)) {
            if Arc::ptr_eq(a, seen) && (Arc::ptr_eq(s, spec) || s == spec) {
                backends.insert(name.clone(), a.clone());
                continue;
            }
        }
        let b = backend::plan_backend(
            name,
            current.map(|b| &**b),
            spec,
            settings.block,
            settings.add_server,
            &ca_file,
        );
        reload |= b.reload;
        let (target, commands) = cache.note(name, spec, current, b);
        server_commands.extend(commands);
        backends.insert(name.clone(), target);
    }
    let gone: Vec<&BackendName> = actual
        .backends
        .keys()
        .filter(|name| !desired.backends.contains_key(*name))
        .collect();
    let gone_any = gone.first().copied();
    // The backends a route names as the plan begins (also those it moves off or deletes):
    // read through all the routes, so only when a backend goes or a route changes.
    let routed_cell = std::cell::OnceCell::new();
    let routed = || routed_by(&routed_cell, &actual.hosts);
    // Those the desired routes still name: a backend that goes while a route keeps naming it
    // (no model makes that) is retired as before, not kept for ever.
    let still_routed_cell = std::cell::OnceCell::new();
    let still_routed = || routed_by(&still_routed_cell, &desired.hosts);
    let mut retirements = Vec::new();
    let mut held = Vec::new();
    if settings.runtime_backends.delete {
        for name in gone {
            if hold.contains(name) || (routed().contains(name) && !still_routed().contains(name)) {
                backends.insert(name.clone(), actual.backends[name].clone());
                held.push(name.clone());
            } else {
                retirements.extend(backend::retire(name, &actual.backends[name]));
            }
        }
    } else {
        reload |= !gone.is_empty();
    }

    let edits = map_edits(actual, desired, settings, &created, &routed_cell);
    reload |= edits.reload;
    cache.quiet = !reload && !renamed && created.is_empty() && gone_any.is_none();
    Plan {
        runtime: edits.around(server_commands, retirements),
        reload,
        target: ProxyState {
            backends,
            hosts: desired.hosts.clone(),
        },
        attach: desired.networks.difference(attached).cloned().collect(),
        detach: attached.difference(&desired.networks).cloned().collect(),
        held,
    }
}

/// The hosts map commands of a plan, in the groups [`plan`] orders (see there).
#[derive(Debug, Default)]
struct MapEdits {
    deletions: Vec<Command>,
    publish: Vec<Command>,
    early: Vec<Command>,
    late: Vec<Command>,
    bucket_deletions: Vec<Command>,
    /// An entry names a backend HAProxy does not hold and the plan does not create.
    reload: bool,
}

impl MapEdits {
    /// The plan's runtime commands: these map edits around the server commands, and the
    /// retirements last.
    fn around(self, server_commands: Vec<Command>, retirements: Vec<Command>) -> Vec<Command> {
        self.deletions
            .into_iter()
            .chain(self.publish)
            .chain(self.early)
            .chain(server_commands)
            .chain(self.late)
            .chain(self.bucket_deletions)
            .chain(retirements)
            .collect()
    }
}

/// The backends a map's routes name (`hosts`: a state's or the desired map), read once into
/// `cell`: only when a backend goes or a route changes.
fn routed_by<'c>(
    cell: &'c std::cell::OnceCell<BTreeSet<BackendName>>,
    hosts: &BTreeMap<crate::model::MapKey, MapValue>,
) -> &'c BTreeSet<BackendName> {
    cell.get_or_init(|| {
        hosts
            .values()
            .filter_map(MapValue::target_backend)
            .collect()
    })
}

/// The hosts map commands from `actual`'s map to `desired`'s (see [`MapEdits`]); `created`:
/// the backends the plan creates. `routed_cell`: the backends `actual`'s routes name, read
/// once.
fn map_edits(
    actual: &ProxyState,
    desired: &Desired,
    settings: &PlanSettings,
    created: &BTreeSet<BackendName>,
    routed_cell: &std::cell::OnceCell<BTreeSet<BackendName>>,
) -> MapEdits {
    let routed = || routed_by(routed_cell, &actual.hosts);
    let mut reload = false;
    let map = &settings.hosts_map;
    // Routes that stop: deleted first, before their servers go. Buckets are only reachable
    // through their route's `~` value, so theirs go last, once nothing points at them.
    let (bucket_deletions, deletions): (Vec<Command>, Vec<Command>) = actual
        .hosts
        .keys()
        .filter(|key| !desired.hosts.contains_key(*key))
        .map(|key| Command::DelMap {
            map: map.clone(),
            key: key.clone(),
        })
        .partition(|cmd| matches!(cmd, Command::DelMap { key, .. } if key.is_bucket()));
    // Edits that send traffic to a backend already serving (one with a ready server) go
    // before the server changes, so that a canary's traffic leaves a backend before its last
    // tasks drain; the others wait for the servers. Within each group buckets come first, so
    // that a route turning into a split finds its buckets there.
    let serving = |value: &MapValue| {
        value.target_backend().is_some_and(|b| {
            actual
                .backends
                .get(&b)
                .is_some_and(|b| b.servers.iter().any(|s| s.admin == Admin::Ready))
        })
    };
    let (mut early, mut late) = (Vec::new(), Vec::new());
    for (key, value) in &desired.hosts {
        let current = actual.hosts.get(key);
        if current == Some(value) {
            continue;
        }
        if value
            .target_backend()
            .is_some_and(|b| !actual.backends.contains_key(&b) && !created.contains(&b))
        {
            // The backend comes with the reload, which reads the map file; forcing the reload
            // here also covers an entry naming no backend at all, so target is still written.
            reload = true;
            continue;
        }
        let (map, key, value) = (map.clone(), key.clone(), value.clone());
        let group = if serving(&value) {
            &mut early
        } else {
            &mut late
        };
        group.push(match current {
            Some(_) => Command::SetMap { map, key, value },
            None => Command::AddMap { map, key, value },
        });
    }
    let buckets_first = |cmds: &mut Vec<Command>| {
        cmds.sort_by_key(|cmd| match cmd {
            Command::AddMap { key, .. } | Command::SetMap { key, .. } => !key.is_bucket(),
            _ => true,
        })
    };
    buckets_first(&mut early);
    buckets_first(&mut late);
    // A backend no route reached yet that this plan does not create was created by an earlier
    // plan that may have stopped before its `publish backend` (3.4+; an unpublished backend
    // answers 503). Publishing is idempotent (`Backend published.` either way), so it is sent
    // again before the first route to it.
    let publish: Vec<Command> =
        if settings.runtime_backends.delete && !(early.is_empty() && late.is_empty()) {
            early
                .iter()
                .chain(&late)
                .filter_map(|cmd| match cmd {
                    Command::AddMap { value, .. } | Command::SetMap { value, .. } => {
                        value.target_backend()
                    }
                    _ => None,
                })
                .filter(|b| !routed().contains(b) && !created.contains(b))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|backend| Command::PublishBackend { backend })
                .collect()
        } else {
            Vec::new()
        };

    MapEdits {
        deletions,
        publish,
        early,
        late,
        bucket_deletions,
        reload,
    }
}

/// The plan of a pass where only the backends in `only` (and the hosts map) may have changed
/// in `desired` and `actual` is what the last plan left: those backends and the ones the last
/// plan left with commands are planned, every other one is taken as the settled backend it
/// was, and the map is diffed only when it is not `actual`'s (planning O(change); what stays
/// O(backends) is a pointer copy of `actual`'s backends and a comparison of the two maps, at
/// 10,000 services a small part of what the walk and its diff cost, a fifth of a change's
/// CPU). While a service is served by a later generation (`<service>:<n>`, 3.4) the plans
/// rename it, so they are full, as before this path existed. `None` when the last plan was
/// not quiet (it reloaded, created, retired, held or renamed a backend), or a backend or map
/// entry planned here needs more than runtime commands: the caller plans in full.
fn plan_only(
    actual: &ProxyState,
    attached: &BTreeSet<NetworkId>,
    desired: &Desired,
    settings: &PlanSettings,
    cache: &mut PlanCache,
    only: &BTreeSet<BackendName>,
) -> Option<Plan> {
    if !cache.quiet || desired.backends.len() != actual.backends.len() {
        return None;
    }
    let ca_file = render::backend_ca(&settings.hosts_map);
    let visit: BTreeSet<BackendName> = only.union(&cache.unsettled).cloned().collect();
    let mut planned = Vec::with_capacity(visit.len());
    for name in &visit {
        let mut spec = Arc::clone(desired.backends.get(name)?);
        if settings.connect_timeout_rule {
            clear_connect_timeout(&mut spec);
        }
        let current = actual.backends.get(name)?;
        if generation::replaced(&settings.runtime_backends, &spec, current) {
            return None;
        }
        let b = backend::plan_backend(
            name,
            Some(current),
            &spec,
            settings.block,
            settings.add_server,
            &ca_file,
        );
        if b.reload {
            return None;
        }
        planned.push((name, spec, current, b));
    }
    // The map as the last plan left it (the steady state), or its edits (a label edit).
    let edits = match actual.hosts == desired.hosts {
        true => MapEdits::default(),
        false => map_edits(
            actual,
            desired,
            settings,
            &BTreeSet::new(),
            &std::cell::OnceCell::new(),
        ),
    };
    if edits.reload {
        return None;
    }
    let mut backends = actual.backends.clone();
    let mut server_commands = Vec::new();
    cache.unsettled.clear();
    for (name, spec, current, b) in planned {
        let (target, commands) = cache.note(name, &spec, Some(current), b);
        server_commands.extend(commands);
        backends.insert(name.clone(), target);
    }
    Some(Plan {
        runtime: edits.around(server_commands, Vec::new()),
        reload: false,
        target: ProxyState {
            backends,
            hosts: desired.hosts.clone(),
        },
        attach: desired.networks.difference(attached).cloned().collect(),
        detach: attached.difference(&desired.networks).cloned().collect(),
        held: Vec::new(),
    })
}

/// Whether `state` already is what `desired` asks for, so that [`plan`] changes nothing in
/// HAProxy: the same backends in the same modes, every ready endpoint in a ready server, every
/// drained endpoint absent or in a drain/maint server, no other server in use, free slots at
/// the placeholder in maint, and the same hosts map.
pub fn satisfies(state: &ProxyState, desired: &Desired) -> bool {
    // Each service's newest backend in `state` stands for it (see [`generation`]).
    let desired = &*generation::resolve(state, desired, &RuntimeBackends::default());
    state.hosts == desired.hosts
        && state.backends.len() == desired.backends.len()
        && desired.backends.iter().all(|(name, spec)| {
            state
                .backends
                .get(name)
                .is_some_and(|b| backend::satisfies(b, spec))
        })
}
