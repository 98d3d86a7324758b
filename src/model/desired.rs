//! [`desired`]: a Swarm [`Snapshot`] and the labels on its services -> the routing HAProxy
//! should hold ([`Desired`]). Pure: the same input always gives the same output, whatever the
//! order of services, tasks and networks in the snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::labels::{self, sort_errors, LabelError, Route, Severity, Verdict, NETWORK, SSL_ACME};
use super::reason::Reason;
use super::routes::{self, route_key, Claim, RedirectClaim};
use super::{
    BackendName, BackendSpec, Desired, DesiredTaskState, EndpointState, MapKey, Mode, Network,
    NetworkId, Service, ServiceId, Settings, Snapshot, Task, TaskState,
};
use super::{MapValue, RouteInForce};

/// Snapshot + settings (+ the last good route of each service) -> what HAProxy should hold.
///
/// A service whose labels do not parse (or whose network or VIP cannot be used) keeps
/// `last_good[id]` if there is one, with its current tasks or VIP, else it is left out; either
/// way the error is in `Desired::errors` and no other service changes. Services are taken in
/// name order, which decides who keeps a host two services claim.
pub fn desired(
    snap: &Snapshot,
    settings: &Settings,
    last_good: &BTreeMap<ServiceId, Arc<RouteInForce>>,
) -> Desired {
    // No cache to fill: each service's part is used and dropped (no second copy held).
    let mut none = DesiredCache {
        keep: false,
        ..DesiredCache::default()
    };
    desired_cached(snap, settings, last_good, &mut none)
}

/// What each service gave the desired routing at the last pass, with what it was derived
/// from: a service whose value, tasks and last good route are the same as then (the same
/// shared values: see [`Snapshot::services`]) is not parsed and built again. Dropped whole
/// when the networks or the settings change. A cache only: [`desired_cached`] gives what
/// [`desired`] gives.
#[derive(Debug)]
pub struct DesiredCache {
    by_service: HashMap<ServiceId, Cached>,
    networks: Vec<Network>,
    settings: Settings,
    /// Whether parts are kept (false for the one-off [`desired`]).
    keep: bool,
    /// The last output of [`DesiredCache::next`] and what it was derived from.
    prev: Option<Prev>,
}

/// The last pass of [`DesiredCache::next`]: its input (shared values) and its output, which
/// the next pass patches when only some services' backends changed.
#[derive(Debug)]
struct Prev {
    services: Vec<Arc<Service>>,
    tasks: Vec<Arc<Task>>,
    out: Desired,
    /// Backends whose ready-server count weighs in the hosts map (a host several services
    /// share) or whose service redirects: a change of theirs is planned in full.
    shared: HashSet<BackendName>,
    /// Some service redirects (its redirects are checked against every route).
    redirects: bool,
    /// Services routed on (or refused with) their last good route: derived again every
    /// pass, since that route is the last output's.
    consulted: BTreeSet<ServiceId>,
    /// Services whose route was built but left out of the output (another service holds
    /// its backend name): a change of theirs is planned in full.
    dropped: BTreeSet<ServiceId>,
}

/// What [`DesiredCache::next`] changed in the desired routing since its last output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Anything may have changed (the first pass, a service added or removed, a relabel
    /// beyond the service's own map entries, the networks or settings): compare everything.
    All,
    /// Only these backends' specs (their endpoints) changed, and the routes, hosts map
    /// entries, certificates and ACME entries of relabelled services whose map keys are their
    /// own; the networks, the problems, the set of backends and every other backend are the
    /// last output's.
    Backends(BTreeSet<BackendName>),
}

impl Default for DesiredCache {
    fn default() -> Self {
        DesiredCache {
            by_service: HashMap::new(),
            networks: Vec::new(),
            settings: Settings::default(),
            keep: true,
            prev: None,
        }
    }
}

#[derive(Debug)]
struct Cached {
    service: Arc<Service>,
    tasks: Vec<Arc<Task>>,
    /// The last good route the contribution was derived from, when it consulted one (its
    /// labels were refused): a contribution from good labels does not depend on it.
    last_good: Option<Arc<RouteInForce>>,
    contribution: Contribution,
}

impl Cached {
    /// `contribution`, derived from `service`, its `tasks` and the last good route `good`
    /// (kept only if the contribution consulted it).
    fn new(
        service: &Arc<Service>,
        tasks: &[&Arc<Task>],
        good: Option<&Arc<RouteInForce>>,
        contribution: Contribution,
    ) -> Self {
        Cached {
            service: Arc::clone(service),
            tasks: tasks.iter().map(|t| Arc::clone(t)).collect(),
            last_good: good.filter(|_| contribution.consulted).cloned(),
            contribution,
        }
    }
}

/// One service's part of [`Desired`], before the services are put together.
#[derive(Debug, Clone, Default)]
struct Contribution {
    warnings: Vec<LabelError>,
    errors: Vec<LabelError>,
    notices: Vec<LabelError>,
    built: Option<(Arc<RouteInForce>, Arc<BackendSpec>)>,
    /// The labels were refused, so the last good route was consulted (given or not).
    consulted: bool,
}

/// [`desired`], reusing what `cache` holds of the services that did not change (at 10,000
/// services parsing every service's labels and building its backend each pass was a sixth
/// of a change's CPU).
pub fn desired_cached(
    snap: &Snapshot,
    settings: &Settings,
    last_good: &BTreeMap<ServiceId, Arc<RouteInForce>>,
    cache: &mut DesiredCache,
) -> Desired {
    cache.prev = None;
    assemble(snap, settings, last_good, cache).0
}

impl DesiredCache {
    /// The desired routing of `snap`, each service's last good route being the one of this
    /// cache's last output (what [`desired`] gives with that output's `routes` as
    /// `last_good`), and what changed since that output.
    ///
    /// A pass where only some services changed costs what those services cost: the snapshot
    /// is compared with the last one by shared value (one pointer per service and task),
    /// those services are derived again, and when each changed only its endpoints (same
    /// route, network, options, and a ready count no shared host weighs) or its route within
    /// map keys no other service claims (the same backend, network, options and access
    /// lists; no redirect anywhere), the last output is patched ([`Change::Backends`]).
    /// Anything else (a service added or removed, a label problem appearing or going, a host
    /// several services share, `ssl_only` on either side of a relabel, the networks or the
    /// settings, a snapshot not sorted by id, more than max(services / 16, 64) services at
    /// once, services with refused labels counted, which are derived again every pass) is
    /// assembled in full ([`Change::All`]), as [`desired_cached`] does.
    pub fn next(&mut self, snap: &Snapshot, settings: &Settings) -> (Desired, Change) {
        self.keep = true;
        if let Some(patched) = self.patch(snap, settings) {
            return patched;
        }
        let last_good = self.prev.take().map(|p| p.out.routes).unwrap_or_default();
        let (out, meta) = assemble(snap, settings, &last_good, self);
        self.prev = Some(Prev {
            services: snap.services.clone(),
            tasks: snap.tasks.clone(),
            out: out.clone(),
            shared: meta.shared,
            redirects: meta.redirects,
            consulted: meta.consulted,
            dropped: meta.dropped,
        });
        (out, Change::All)
    }

    /// The last output with the backends of the services whose tasks changed replaced, if
    /// that is all that changed (see [`DesiredCache::next`]); `None` to assemble in full.
    fn patch(&mut self, snap: &Snapshot, settings: &Settings) -> Option<(Desired, Change)> {
        let prev = self.prev.as_ref()?;
        if self.networks != snap.networks || self.settings != *settings {
            return None;
        }
        let mut touched: BTreeSet<&str> = prev.consulted.iter().map(String::as_str).collect();
        if prev.services.len() != snap.services.len() {
            return None;
        }
        for (old, new) in prev.services.iter().zip(&snap.services) {
            if Arc::ptr_eq(old, new) {
                continue;
            }
            if old.id != new.id {
                return None;
            }
            touched.insert(new.id.as_str());
        }
        if !changed_tasks(&prev.tasks, &snap.tasks, &mut touched) {
            return None;
        }
        if touched.len() > (snap.services.len() / 16).max(64) {
            return None;
        }
        if touched.is_empty() {
            return Some((prev.out.clone(), Change::Backends(BTreeSet::new())));
        }
        let ctx = Ctx {
            snap,
            settings,
            tasks_of: super::tasks_by_service(&snap.tasks, |id| touched.contains(id)),
        };
        let mut fresh = Vec::with_capacity(touched.len());
        // The map keys the relabelled services take, so that two cannot take one.
        let mut claimed: BTreeSet<MapKey> = BTreeSet::new();
        for service in snap
            .services
            .iter()
            .filter(|s| touched.contains(s.id.as_str()))
        {
            if prev.dropped.contains(&service.id) {
                return None;
            }
            let old = self.by_service.get(&service.id)?;
            let good = prev.out.routes.get(&service.id);
            let new = ctx.contribution(service, good.map(|g| &**g));
            if new.warnings != old.contribution.warnings
                || new.errors != old.contribution.errors
                || new.notices != old.contribution.notices
            {
                return None;
            }
            let mut rekeyed = None;
            match (&old.contribution.built, &new.built) {
                (None, None) => {}
                (Some((r0, s0)), Some((r1, s1))) => {
                    if s0.service_id != s1.service_id
                        || s0.mode != s1.mode
                        || s0.network != s1.network
                        || s0.options != s1.options
                    {
                        return None;
                    }
                    if Arc::ptr_eq(r0, r1) || r0 == r1 {
                        let weighs = prev.shared.contains(&r1.route.backend)
                            && ready_servers(s0) != ready_servers(s1);
                        if weighs {
                            return None;
                        }
                    } else {
                        let built = ((&**r0, &**s0), (&**r1, &**s1));
                        rekeyed = Some(prev.relabel(&service.name, built, &mut claimed)?);
                    }
                }
                _ => return None,
            }
            let tasks = ctx.tasks_of.get(service.id.as_str()).map_or(&[][..], |t| t);
            fresh.push((service, tasks, good.cloned(), new, rekeyed));
        }
        let prev = self.prev.as_mut()?;
        let mut changed = BTreeSet::new();
        for (service, tasks, good, new, rekeyed) in fresh {
            if let Some((gone, came)) = rekeyed {
                let hosts = &mut prev.out.hosts;
                for key in gone.keys().filter(|k| !came.contains_key(*k)) {
                    hosts.remove(key);
                }
                hosts.extend(came);
            }
            if let Some((in_force, _)) = &new.built {
                let route = &in_force.route;
                prev.out.certs.remove(&route.backend);
                prev.out.acme.remove(&route.backend);
                if let Some(cert) = wanted_cert(&service.name, route) {
                    prev.out.certs.insert(route.backend.clone(), cert);
                }
                if let Some(acme) = wanted_acme(&service.name, route) {
                    prev.out.acme.insert(route.backend.clone(), acme);
                }
            }
            if let Some((in_force, spec)) = &new.built {
                let name = in_force.route.backend.clone();
                let same = prev
                    .out
                    .backends
                    .get(&name)
                    .is_some_and(|old| Arc::ptr_eq(old, spec) || old == spec);
                if !same {
                    prev.out.backends.insert(name.clone(), Arc::clone(spec));
                    changed.insert(name);
                }
                prev.out
                    .routes
                    .insert(service.id.clone(), Arc::clone(in_force));
            }
            self.by_service.insert(
                service.id.clone(),
                Cached::new(service, tasks, good.as_ref(), new),
            );
        }
        prev.services.clone_from(&snap.services);
        prev.tasks.clone_from(&snap.tasks);
        Some((prev.out.clone(), Change::Backends(changed)))
    }
}

/// A service's map entries (hosts map key -> value).
type Entries = BTreeMap<MapKey, MapValue>;

impl Prev {
    /// The map entries a relabel of `service` (its route and backend before, then after)
    /// removes and adds, when they are the service's own before and after: the same backend,
    /// network and access lists, no redirect anywhere, no `ssl_only` on either side (`!<host>/`
    /// is the host's, whatever the root: two services on one host under two roots share it),
    /// no host it shared, and no key another service holds or (`claimed`) takes in this pass.
    fn relabel(
        &self,
        service: &str,
        ((r0, s0), (r1, s1)): ((&RouteInForce, &BackendSpec), (&RouteInForce, &BackendSpec)),
        claimed: &mut BTreeSet<MapKey>,
    ) -> Option<(Entries, Entries)> {
        let (a, b) = (&r0.route, &r1.route);
        if a.backend != b.backend
            || r0.network != r1.network
            || self.redirects
            || !b.redirects.is_empty()
            || a.tls.only
            || b.tls.only
            || self.shared.contains(&a.backend)
            || a.access != b.access
        {
            return None;
        }
        let gone = own_entries(service, a, s0)?;
        let came = own_entries(service, b, s1)?;
        if gone.iter().any(|(k, v)| self.out.hosts.get(k) != Some(v)) {
            return None;
        }
        for key in came.keys() {
            let taken = !gone.contains_key(key) && self.out.hosts.contains_key(key);
            if taken || !claimed.insert(key.clone()) {
                return None;
            }
        }
        Some((gone, came))
    }
}

/// Adds to `touched` the service of every task that differs between `old` and `new` (both
/// sorted by task id, compared by shared value): added, removed or changed. False if `new`
/// is not sorted by id (then nothing can be told from a walk).
fn changed_tasks<'a>(
    old: &'a [Arc<Task>],
    new: &'a [Arc<Task>],
    touched: &mut BTreeSet<&'a str>,
) -> bool {
    if !new.windows(2).all(|w| w[0].id < w[1].id) {
        return false;
    }
    let (mut i, mut j) = (0, 0);
    loop {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => (i, j) = (i + 1, j + 1),
            (Some(a), Some(b)) => match a.id.cmp(&b.id) {
                std::cmp::Ordering::Equal => {
                    touched.insert(a.service_id.as_str());
                    touched.insert(b.service_id.as_str());
                    (i, j) = (i + 1, j + 1);
                }
                std::cmp::Ordering::Less => {
                    touched.insert(a.service_id.as_str());
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    touched.insert(b.service_id.as_str());
                    j += 1;
                }
            },
            (Some(a), None) => {
                touched.insert(a.service_id.as_str());
                i += 1;
            }
            (None, Some(b)) => {
                touched.insert(b.service_id.as_str());
                j += 1;
            }
            (None, None) => return true,
        }
    }
}

/// The servers a backend counts as in a host several services share (see
/// `model::routes::hosts_map`): one for a VIP, else its ready endpoints.
fn ready_servers(spec: &BackendSpec) -> u32 {
    match spec.mode {
        Mode::Vip => 1,
        Mode::Task => spec
            .endpoints
            .values()
            .filter(|s| **s == EndpointState::Ready)
            .count()
            .try_into()
            .unwrap_or(u32::MAX),
    }
}

/// The map keys `route` (of `service`, with backend `spec`) claims, each with its claim:
/// what `model::routes::hosts_map` turns into entries.
fn claims_of<'r>(
    service: &'r str,
    route: &'r Route,
    spec: &'r BackendSpec,
) -> impl Iterator<Item = (MapKey, Claim)> + 'r {
    let servers = ready_servers(spec);
    let strip = match (&route.context_root, route.rewrite) {
        (Some(root), true) => root.segments(),
        _ => 0,
    };
    route.hosts.iter().map(move |host| {
        // The catch-all takes every path: a context root applies to the service's hosts.
        let strip = if host.is_catch_all() { 0 } else { strip };
        // Passthrough: the HTTPS entry's `^<host>/` key instead of an HTTP route.
        let key = match route.tls.passthrough && !host.is_catch_all() {
            true => MapKey::passthrough(host),
            false => route_key(host, route.context_root.as_ref()),
        };
        let claim = Claim {
            service: service.to_owned(),
            backend: route.backend.clone(),
            strip,
            servers,
            weight: route.weight,
            pins_clients: spec.options.ip_hash || spec.options.sticky_cookie.is_some(),
        };
        (key, claim)
    })
}

/// `com.docker.lb.ssl_only`: one `!<host>/` key per host of `route` (a map edit, no reload).
fn ssl_only_keys(route: &Route) -> impl Iterator<Item = MapKey> + '_ {
    let hosts = route.hosts.iter().filter(|_| route.tls.only);
    hosts.filter(|h| !h.is_catch_all()).map(MapKey::https_only)
}

/// The automatic certificate `route` (of `service`) asks for, if any.
fn wanted_acme(service: &str, route: &Route) -> Option<super::WantedAcme> {
    let acme = route.tls.acme.as_ref()?;
    Some(super::WantedAcme {
        service: service.to_owned(),
        hosts: acme.hosts().to_vec(),
    })
}

/// The certificate from secrets `route` (of `service`) asks for, if any.
fn wanted_cert(service: &str, route: &Route) -> Option<super::WantedCert> {
    let secrets = route.tls.cert.as_ref()?;
    Some(super::WantedCert {
        service: service.to_owned(),
        secrets: (**secrets).clone(),
        hosts: route.hosts.clone(),
    })
}

/// The hosts map entries a route held by its service alone gives (its hosts' keys and header
/// keys; not its access keys, which depend on every service's, nor its `ssl_only` keys, which
/// another service on the same host under another context root gives too): what [`desired`]
/// writes for it when no other service claims those keys. `None` when the route claims a key
/// twice (a split of its own).
fn own_entries(service: &str, route: &Route, spec: &BackendSpec) -> Option<Entries> {
    let mut out = BTreeMap::new();
    for (key, claim) in claims_of(service, route, spec) {
        let value = MapValue::backend(&claim.backend, claim.strip);
        if out.insert(key, value).is_some() {
            return None;
        }
    }
    out.extend(super::shaping::map_entries([(
        route.backend.service(),
        route.shaping.as_ref(),
    )]));
    Some(out)
}

/// What [`assemble`] learnt besides the routing, for [`DesiredCache::next`]'s patches.
#[derive(Debug, Default)]
struct Meta {
    shared: HashSet<BackendName>,
    redirects: bool,
    consulted: BTreeSet<ServiceId>,
    dropped: BTreeSet<ServiceId>,
}

/// The desired routing put together from every service's contribution (those `cache` holds
/// for services that did not change, the others derived and kept).
fn assemble(
    snap: &Snapshot,
    settings: &Settings,
    last_good: &BTreeMap<ServiceId, Arc<RouteInForce>>,
    cache: &mut DesiredCache,
) -> (Desired, Meta) {
    if cache.networks != snap.networks || cache.settings != *settings {
        cache.by_service.clear();
        cache.networks = snap.networks.clone();
        cache.settings = settings.clone();
    }
    let tasks_of = super::tasks_by_service(&snap.tasks, |_| true);
    let ctx = Ctx {
        snap,
        settings,
        tasks_of,
    };
    let mut services: Vec<&Arc<Service>> = snap.services.iter().collect();
    services.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));

    let mut out = Desired::default();
    let mut meta = Meta::default();
    let mut claims: BTreeMap<MapKey, Vec<Claim>> = BTreeMap::new();
    let mut ssl_only: BTreeSet<MapKey> = BTreeSet::new();
    let mut redirects = Vec::new();
    let no_tasks = Vec::new();
    let mut seen: HashSet<&str> = HashSet::with_capacity(services.len());
    for service in services {
        seen.insert(service.id.as_str());
        let tasks = ctx.tasks_of.get(service.id.as_str()).unwrap_or(&no_tasks);
        let good = last_good.get(&service.id);
        let hit = cache.by_service.get(&service.id).is_some_and(|c| {
            Arc::ptr_eq(&c.service, service)
                && c.tasks.len() == tasks.len()
                && c.tasks.iter().zip(tasks).all(|(a, b)| Arc::ptr_eq(a, b))
                && (!c.contribution.consulted
                    || match (&c.last_good, good) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                        (None, None) => true,
                        _ => false,
                    })
        });
        let fresh: Contribution;
        let c = if hit {
            match cache.by_service.get(&service.id) {
                Some(cached) => &cached.contribution,
                None => continue,
            }
        } else {
            let contribution = ctx.contribution(service, good.map(|g| &**g));
            if cache.keep {
                cache.by_service.insert(
                    service.id.clone(),
                    Cached::new(service, tasks, good, contribution),
                );
                match cache.by_service.get(&service.id) {
                    Some(cached) => &cached.contribution,
                    None => continue,
                }
            } else {
                fresh = contribution;
                &fresh
            }
        };
        if c.consulted {
            meta.consulted.insert(service.id.clone());
        }
        out.warnings.extend(c.warnings.iter().cloned());
        out.errors.extend(c.errors.iter().cloned());
        out.notices.extend(c.notices.iter().cloned());
        let Some((in_force, spec)) = &c.built else {
            continue;
        };
        let route = &in_force.route;
        if out.backends.contains_key(&route.backend) {
            // Swarm service names are unique, so only a stale last good route can get here.
            out.errors.push(LabelError::Service {
                service: service.name.clone(),
                reason: Box::new(Reason::BackendTaken {
                    backend: route.backend.to_string(),
                }),
            });
            meta.dropped.insert(service.id.clone());
            continue;
        }
        for (key, claim) in claims_of(&service.name, route, spec) {
            claims.entry(key).or_default().push(claim);
        }
        if let Some(acme) = wanted_acme(&service.name, route) {
            out.acme.insert(route.backend.clone(), acme);
        }
        if let Some(cert) = wanted_cert(&service.name, route) {
            out.certs.insert(route.backend.clone(), cert);
        }
        ssl_only.extend(ssl_only_keys(route));
        if !route.redirects.is_empty() {
            meta.shared.insert(route.backend.clone());
            meta.redirects = true;
        }
        redirects.extend(route.redirects.iter().map(|r| RedirectClaim {
            service: service.name.clone(),
            redirect: r.clone(),
        }));
        out.networks.insert(spec.network.clone());
        out.backends.insert(route.backend.clone(), Arc::clone(spec));
        out.routes.insert(service.id.clone(), Arc::clone(in_force));
    }
    if cache.by_service.len() > seen.len() {
        cache.by_service.retain(|id, _| seen.contains(id.as_str()));
    }
    for claimants in claims.values().filter(|c| c.len() > 1) {
        meta.shared
            .extend(claimants.iter().map(|c| c.backend.clone()));
    }
    out.hosts = routes::hosts_map(claims, redirects, &mut out.errors);
    // `com.docker.lb.ssl_only`: one `!<host>/` entry per host (a map edit, no reload).
    out.hosts
        .extend(ssl_only.into_iter().map(|k| (k, MapValue::https_only())));
    // `ip_allow` / `ip_deny`: entries of the same map (`model::access`), no reload.
    out.hosts.extend(super::access::map_entries(
        out.routes
            .values()
            .map(|r| (r.route.backend.service(), r.route.access.as_ref())),
    ));
    // `hsts`, `response_header.*`, `request_header.*` (`model::shaping`): the same, no reload.
    out.hosts.extend(super::shaping::map_entries(
        out.routes
            .values()
            .map(|r| (r.route.backend.service(), r.route.shaping.as_ref())),
    ));
    sort_errors(&mut out.errors);
    sort_errors(&mut out.warnings);
    sort_errors(&mut out.notices);
    for (list, severity) in [
        (&out.errors, Severity::Error),
        (&out.warnings, Severity::Warning),
        (&out.notices, Severity::Notice),
    ] {
        debug_assert!(
            list.iter().all(|e| e.severity() == severity),
            "{severity:?} list holds {list:?}"
        );
    }
    (out, meta)
}

impl Ctx<'_> {
    /// What `service` gives the desired routing on its own: its label problems, and its route
    /// in force and backend if it is routed (by its labels, else by `last_good`).
    fn contribution(&self, service: &Service, last_good: Option<&RouteInForce>) -> Contribution {
        let mut c = Contribution::default();
        if !labels::routed_here(service, self.settings.service_cluster.as_deref()) {
            return c;
        }
        // Always some: a service routed here has a `com.docker.lb.*` label.
        let Some(parsed) = labels::parse(service) else {
            return c;
        };
        c.warnings.extend(parsed.warnings);
        c.errors.extend(parsed.left_out);
        let built = match parsed.route {
            Verdict::Route(route)
                if self.settings.template_without_lua && route.access.forward.is_some() =>
            {
                let url = route.access.forward.as_ref().map_or("", |f| f.url.as_str());
                Err(vec![LabelError::invalid(
                    &service.name,
                    labels::AUTH_FORWARD,
                    url,
                    Reason::TemplateWithoutLua,
                )])
            }
            Verdict::Route(mut route) => {
                if route.tls.acme.is_some() && !self.settings.acme {
                    let value = service.labels.get(SSL_ACME).map_or("", String::as_str);
                    c.errors.push(LabelError::invalid(
                        &service.name,
                        SSL_ACME,
                        value,
                        Reason::AcmeOff,
                    ));
                    route.tls.acme = None;
                }
                self.build(service, *route, None, &mut c.warnings)
            }
            Verdict::NoHosts => {
                c.notices.push(LabelError::NoHosts {
                    service: service.name.clone(),
                });
                return c;
            }
            Verdict::Refused(errors) => Err(errors),
        };
        c.built = match built {
            Ok((route, spec)) => Some((Arc::new(route), Arc::new(spec))),
            Err(errors) => {
                c.errors.extend(errors);
                c.consulted = true;
                let Some(good) = last_good else {
                    return c;
                };
                let (route, network) = (good.route.clone(), Some(good.network.as_str()));
                match self.build(service, route, network, &mut c.warnings) {
                    Ok(built) => {
                        c.warnings.push(LabelError::KeptLastGood {
                            service: service.name.clone(),
                        });
                        Some((Arc::new(built.0), Arc::new(built.1)))
                    }
                    Err(errors) => {
                        c.errors.extend(errors);
                        None
                    }
                }
            }
        };
        c
    }
}

struct Ctx<'a> {
    snap: &'a Snapshot,
    settings: &'a Settings,
    tasks_of: HashMap<&'a str, Vec<&'a Arc<Task>>>,
}

impl Ctx<'_> {
    /// The route in force (with the id of the network in use) and its backend. `last_good`:
    /// the route is the last good one, on this network id; else it is what the labels say
    /// now. A vip route on a service without a VIP on that network (endpoint mode dnsrr)
    /// falls back to its task addresses, with a warning in `warnings`.
    fn build(
        &self,
        service: &Service,
        route: Route,
        last_good: Option<&str>,
        warnings: &mut Vec<LabelError>,
    ) -> Result<(RouteInForce, BackendSpec), Vec<LabelError>> {
        let wanted = match (last_good, route.network.as_deref()) {
            (Some(id), _) => Wanted::LastGood(id),
            (None, Some(written)) => Wanted::Labelled(written),
            (None, None) => Wanted::Unnamed,
        };
        let network = self.network(service, wanted).map_err(|e| vec![e])?;
        let task_endpoints = || self.task_endpoints(service, &network.id, route.port);
        let (mode, endpoints) = match route.mode {
            Mode::Task => (Mode::Task, task_endpoints()),
            Mode::Vip => match self.vip(service, network, route.port) {
                Some(addr) => (Mode::Vip, BTreeMap::from([(addr, EndpointState::Ready)])),
                None => {
                    warnings.push(LabelError::NoVip {
                        service: service.name.clone(),
                        network: network.name.clone(),
                    });
                    (Mode::Task, task_endpoints())
                }
            },
        };
        let spec = BackendSpec {
            service_id: service.id.clone(),
            mode,
            network: network.id.clone(),
            endpoints,
            options: route.options.clone(),
        };
        let route = RouteInForce {
            route,
            network: network.id.clone(),
        };
        Ok((route, spec))
    }

    /// The network HAProxy reaches the service on: the one asked for, checked to be one
    /// HAProxy can join.
    fn network(&self, service: &Service, wanted: Wanted<'_>) -> Result<&Network, LabelError> {
        let on: BTreeSet<&NetworkId> = service.networks.iter().collect();
        let net = match wanted {
            Wanted::Labelled(reference) | Wanted::LastGood(reference) => {
                self.named(service, reference, wanted, &on)
            }
            Wanted::Unnamed => self.unnamed(&on),
        }
        .map_err(|reason| wanted.error(&service.name, reason))?;
        joinable(net).map_err(|reason| wanted.error(&service.name, reason))?;
        Ok(net)
    }

    /// The network `reference` names, which the service must be on.
    fn named(
        &self,
        service: &Service,
        reference: &str,
        wanted: Wanted<'_>,
        on: &BTreeSet<&NetworkId>,
    ) -> Result<&Network, Reason> {
        let Some(net) = self.lookup(reference, on) else {
            return Err(match wanted {
                Wanted::LastGood(_) => Reason::LastGoodNetworkGone {
                    network: reference.to_owned(),
                },
                Wanted::Labelled(_) | Wanted::Unnamed => Reason::NoSuchNetwork,
            });
        };
        if !on.contains(&net.id) {
            return Err(Reason::NotOnNetwork {
                network: net.name.clone(),
                service: service.name.clone(),
            });
        }
        Ok(net)
    }

    /// No network named: the service's only one, else the default network if it is on it.
    fn unnamed(&self, on: &BTreeSet<&NetworkId>) -> Result<&Network, Reason> {
        match on.iter().collect::<Vec<_>>().as_slice() {
            [] => Err(Reason::OnNoNetwork),
            [one] => self.by_id(one).ok_or_else(|| Reason::UnknownNetwork {
                id: one.to_string(),
            }),
            several => {
                let default = self
                    .settings
                    .default_network
                    .as_deref()
                    .and_then(|d| self.lookup(d, on))
                    .filter(|n| on.contains(&n.id));
                default.ok_or_else(|| Reason::SeveralNetworks {
                    names: several
                        .iter()
                        .map(|id| self.by_id(id).map_or(id.as_str(), |n| n.name.as_str()))
                        .map(str::to_owned)
                        .collect(),
                    default: self.settings.default_network.clone(),
                })
            }
        }
    }

    fn by_id(&self, id: &str) -> Option<&Network> {
        self.snap.networks.iter().find(|n| n.id == id)
    }

    /// A network by exact id, else by name, preferring one the service is on.
    fn lookup(&self, reference: &str, on: &BTreeSet<&NetworkId>) -> Option<&Network> {
        super::find_network(&self.snap.networks, reference, |n| on.contains(&n.id))
    }

    /// Every running task with an address on `network`: ready, or draining when Swarm is
    /// stopping it.
    fn task_endpoints(
        &self,
        service: &Service,
        network: &NetworkId,
        port: u16,
    ) -> BTreeMap<SocketAddr, EndpointState> {
        let mut endpoints = BTreeMap::new();
        let tasks = self.tasks_of.get(service.id.as_str()).into_iter().flatten();
        for task in tasks.filter(|t| t.state == TaskState::Running) {
            let ips = task
                .addresses
                .iter()
                .filter(|a| &a.network == network)
                .map(|a| a.addr);
            let Some(ip) = pick(ips) else {
                continue;
            };
            let state = match task.desired_state {
                DesiredTaskState::Running => EndpointState::Ready,
                DesiredTaskState::Shutdown => EndpointState::Drain,
            };
            // Two tasks on one address can only be an old one leaving and a new one: serve.
            endpoints
                .entry(SocketAddr::new(ip, port))
                .and_modify(|s: &mut EndpointState| *s = (*s).min(state))
                .or_insert(state);
        }
        endpoints
    }

    /// The service's VIP on `network`, if Swarm gave it one (not in endpoint mode dnsrr).
    fn vip(&self, service: &Service, network: &Network, port: u16) -> Option<SocketAddr> {
        let ips = service
            .vips
            .iter()
            .filter(|v| v.network == network.id)
            .map(|v| v.addr);
        pick(ips).map(|ip| SocketAddr::new(ip, port))
    }
}

/// Whether HAProxy may join `net`: not Swarm's ingress, and attachable.
fn joinable(net: &Network) -> Result<(), Reason> {
    if net.ingress {
        return Err(Reason::IngressNetwork {
            network: net.name.clone(),
        });
    }
    if !net.attachable {
        return Err(Reason::NotAttachable {
            network: net.name.clone(),
        });
    }
    Ok(())
}

/// Which network a route asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted<'r> {
    /// `com.docker.lb.network` as written: a name or an id.
    Labelled(&'r str),
    /// The network id the last good routing used.
    LastGood(&'r str),
    /// None named: the service's only network, or the default one.
    Unnamed,
}

impl Wanted<'_> {
    /// An error about the network: on the label when the labels named it, else on the
    /// service.
    fn error(self, service: &str, reason: Reason) -> LabelError {
        match self {
            Wanted::Labelled(value) => LabelError::invalid(service, NETWORK, value, reason),
            Wanted::LastGood(_) | Wanted::Unnamed => LabelError::Service {
                service: service.to_owned(),
                reason: Box::new(reason),
            },
        }
    }
}

/// One address out of several on a network (dual stack): IPv4 first, then the lowest.
fn pick(ips: impl Iterator<Item = IpAddr>) -> Option<IpAddr> {
    ips.min_by_key(|ip| (ip.is_ipv6(), *ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::{BACKEND_MODE, HOSTS, PORT, STICKY_SESSION_COOKIE};
    use crate::model::{BackendName, Host, MapValue, TaskAddress, Vip};

    const FRONT: &str = "n-front";
    const BACK: &str = "n-back";
    const INGRESS: &str = "n-ingress";
    const CLOSED: &str = "n-closed";

    fn network(id: &str, name: &str, attachable: bool, ingress: bool) -> Network {
        Network {
            id: id.to_owned(),
            name: name.to_owned(),
            driver: "overlay".to_owned(),
            attachable,
            ingress,
        }
    }

    fn networks() -> Vec<Network> {
        vec![
            network(FRONT, "front", true, false),
            network(BACK, "back", true, false),
            network(INGRESS, "ingress", false, true),
            network(CLOSED, "closed", false, false),
        ]
    }

    fn service(name: &str, nets: &[&str], labels: &[(&str, &str)]) -> Service {
        Service {
            id: format!("id-{name}"),
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            networks: nets.iter().map(|n| n.to_string()).collect(),
            vips: vec![],
        }
    }

    fn routed(name: &str, hosts: &str) -> Service {
        service(name, &[FRONT], &[(HOSTS, hosts), (PORT, "8080")])
    }

    fn task(service: &str, n: u8, state: TaskState, desired_state: DesiredTaskState) -> Task {
        Task {
            id: format!("t-{service}-{n}"),
            service_id: format!("id-{service}"),
            slot: Some(n.into()),
            state,
            desired_state,
            addresses: vec![
                TaskAddress {
                    network: FRONT.to_owned(),
                    addr: ip(&format!("10.0.1.{n}")),
                },
                TaskAddress {
                    network: BACK.to_owned(),
                    addr: ip(&format!("10.0.2.{n}")),
                },
            ],
        }
    }

    fn running(service: &str, n: u8) -> Task {
        task(service, n, TaskState::Running, DesiredTaskState::Running)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn backend(name: &str) -> BackendName {
        BackendName::for_service(name).unwrap()
    }

    fn host(h: &str) -> MapKey {
        MapKey::host(&Host::parse(h).unwrap())
    }

    fn to(b: &str) -> MapValue {
        MapValue::backend(&backend(b), 0)
    }

    fn snapshot(services: Vec<Service>, tasks: Vec<Task>) -> Snapshot {
        Snapshot {
            services: crate::model::shared(services),
            tasks: crate::model::shared(tasks),
            networks: networks(),
        }
    }

    fn no_settings() -> Settings {
        Settings {
            default_network: None,
            service_cluster: None,
            template_without_lua: false,
            acme: false,
        }
    }

    fn run(snap: &Snapshot) -> Desired {
        desired(snap, &no_settings(), &BTreeMap::new())
    }

    fn lines(errors: &[LabelError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_first_service_by_name_labelled_default_backend_takes_the_catch_all_key() {
        let mut b = routed("b-site", "b.example");
        b.labels
            .insert(labels::DEFAULT_BACKEND.to_owned(), "true".to_owned());
        let mut a = routed("a-site", "a.example");
        a.labels
            .insert(labels::DEFAULT_BACKEND.to_owned(), "true".to_owned());
        let d = run(&snapshot(
            vec![b, a],
            vec![running("a-site", 1), running("b-site", 2)],
        ));
        let hosts: Vec<(String, String)> = d
            .hosts
            .iter()
            .map(|(h, b)| (h.to_string(), b.to_string()))
            .collect();
        assert_eq!(
            hosts,
            [
                ("-default-".to_owned(), "a-site".to_owned()),
                ("a.example/".to_owned(), "a-site".to_owned()),
                ("b.example/".to_owned(), "b-site".to_owned()),
            ]
        );
        assert_eq!(
            lines(&d.errors),
            ["service b-site: label com.docker.lb.default_backend: service a-site is already the \
              default backend; ignored for this service"]
        );
        assert_eq!(d.backends.len(), 2, "both are still routed on their hosts");
    }

    #[test]
    fn services_without_lb_labels_are_ignored_silently() {
        let snap = snapshot(
            vec![service("db", &[BACK], &[("owner", "team")])],
            vec![running("db", 1)],
        );
        assert_eq!(run(&snap), Desired::default());
    }

    #[test]
    fn a_proxy_serves_only_the_services_of_its_service_cluster() {
        let mut blue = routed("blue", "blue.example");
        blue.labels
            .insert(labels::SERVICE_CLUSTER.to_owned(), "east".to_owned());
        let plain = routed("plain", "plain.example");
        let snap = snapshot(
            vec![blue, plain],
            vec![running("blue", 1), running("plain", 2)],
        );
        let names = |d: &Desired| -> Vec<String> {
            d.backends.keys().map(|b| b.as_str().to_owned()).collect()
        };
        assert_eq!(names(&run(&snap)), ["plain"]);
        let east = Settings {
            service_cluster: Some("east".to_owned()),
            ..no_settings()
        };
        let d = desired(&snap, &east, &BTreeMap::new());
        assert_eq!(names(&d), ["blue"]);
        assert_eq!(d.warnings, vec![], "service_cluster is a known label");
    }

    #[test]
    fn a_task_mode_service_routes_its_running_tasks_on_its_only_network() {
        let snap = snapshot(
            vec![routed("web", "a.example,b.example")],
            vec![running("web", 1), running("web", 2)],
        );
        let d = run(&snap);
        assert_eq!(d.errors, vec![]);
        assert_eq!(d.warnings, vec![]);
        let spec = &d.backends[&backend("web")];
        assert_eq!(spec.mode, Mode::Task);
        assert_eq!(spec.network, FRONT);
        assert_eq!(
            spec.endpoints,
            BTreeMap::from([
                (addr("10.0.1.1:8080"), EndpointState::Ready),
                (addr("10.0.1.2:8080"), EndpointState::Ready),
            ])
        );
        assert_eq!(
            d.hosts,
            BTreeMap::from([
                (host("a.example"), to("web")),
                (host("b.example"), to("web"))
            ])
        );
        assert_eq!(d.networks, BTreeSet::from([FRONT.to_owned()]));
        assert_eq!(
            d.routes["id-web"].network, FRONT,
            "the route in force pins its network"
        );
    }

    #[test]
    fn a_running_task_swarm_is_stopping_is_drained_at_once() {
        let snap = snapshot(
            vec![routed("web", "a.example")],
            vec![
                running("web", 1),
                task("web", 2, TaskState::Running, DesiredTaskState::Shutdown),
            ],
        );
        let d = run(&snap);
        assert_eq!(
            d.backends[&backend("web")].endpoints,
            BTreeMap::from([
                (addr("10.0.1.1:8080"), EndpointState::Ready),
                (addr("10.0.1.2:8080"), EndpointState::Drain),
            ])
        );
    }

    #[test]
    fn starting_and_finished_tasks_are_not_endpoints() {
        let mut no_address = running("web", 5);
        no_address.addresses.retain(|a| a.network != FRONT);
        let snap = snapshot(
            vec![routed("web", "a.example")],
            vec![
                task("web", 1, TaskState::Starting, DesiredTaskState::Running),
                task("web", 2, TaskState::Finished, DesiredTaskState::Shutdown),
                task("web", 3, TaskState::Finished, DesiredTaskState::Running),
                running("web", 4),
                no_address,
            ],
        );
        let d = run(&snap);
        assert_eq!(
            d.backends[&backend("web")].endpoints,
            BTreeMap::from([(addr("10.0.1.4:8080"), EndpointState::Ready)])
        );
    }

    #[test]
    fn a_task_service_with_no_running_task_still_has_its_backend() {
        let d = run(&snapshot(vec![routed("web", "a.example")], vec![]));
        assert_eq!(d.backends[&backend("web")].endpoints, BTreeMap::new());
        assert_eq!(d.hosts[&host("a.example")], to("web"));
    }

    #[test]
    fn a_vip_service_has_exactly_its_vip_on_the_chosen_network() {
        let mut api = service(
            "api",
            &[FRONT, BACK],
            &[
                (HOSTS, "api.example"),
                (PORT, "9000"),
                (BACKEND_MODE, "vip"),
                (NETWORK, "back"),
            ],
        );
        api.vips = vec![
            Vip {
                network: FRONT.to_owned(),
                addr: ip("10.0.1.100"),
            },
            Vip {
                network: BACK.to_owned(),
                addr: ip("10.0.2.100"),
            },
        ];
        let d = run(&snapshot(
            vec![api],
            vec![running("api", 1), running("api", 2)],
        ));
        assert_eq!(d.errors, vec![]);
        let spec = &d.backends[&backend("api")];
        assert_eq!(spec.mode, Mode::Vip);
        assert_eq!(spec.network, BACK);
        assert_eq!(
            spec.endpoints,
            BTreeMap::from([(addr("10.0.2.100:9000"), EndpointState::Ready)])
        );
    }

    #[test]
    fn a_vip_service_without_a_vip_falls_back_to_its_tasks_with_a_warning_and_back_to_the_vip() {
        // `docker service create --endpoint-mode dnsrr` with backend_mode=vip.
        let mut api = service(
            "api",
            &[FRONT],
            &[
                (HOSTS, "api.example"),
                (PORT, "9000"),
                (BACKEND_MODE, "vip"),
            ],
        );
        api.vips = vec![Vip {
            network: BACK.to_owned(),
            addr: ip("10.0.2.100"),
        }];
        let tasks = vec![running("api", 1), running("api", 2)];
        let d = run(&snapshot(
            vec![api.clone(), routed("web", "a.example")],
            tasks.clone(),
        ));
        assert_eq!(d.errors, vec![]);
        assert_eq!(
            lines(&d.warnings),
            vec![
                "service api: label com.docker.lb.backend_mode=vip: the service has no VIP on \
                 network front (endpoint mode dnsrr?); routed to its task addresses (default \
                 mode) until it has one (`docker service update --endpoint-mode vip`)"
            ]
        );
        let spec = &d.backends[&backend("api")];
        assert_eq!(spec.mode, Mode::Task);
        assert_eq!(
            spec.endpoints,
            BTreeMap::from([
                (addr("10.0.1.1:9000"), EndpointState::Ready),
                (addr("10.0.1.2:9000"), EndpointState::Ready),
            ])
        );
        assert_eq!(d.hosts[&host("api.example")], to("api"));
        assert_eq!(
            d.routes["id-api"].route.mode,
            Mode::Vip,
            "the route keeps what the label says"
        );
        assert!(d.backends.contains_key(&backend("web")));

        // `docker service update --endpoint-mode vip`: the VIP, and no warning.
        api.vips.push(Vip {
            network: FRONT.to_owned(),
            addr: ip("10.0.1.100"),
        });
        let d = run(&snapshot(vec![api.clone()], tasks.clone()));
        assert_eq!(d.warnings, vec![]);
        let spec = &d.backends[&backend("api")];
        assert_eq!(spec.mode, Mode::Vip);
        assert_eq!(
            spec.endpoints,
            BTreeMap::from([(addr("10.0.1.100:9000"), EndpointState::Ready)])
        );

        // ... and back to dnsrr.
        api.vips.clear();
        let d = run(&snapshot(vec![api], tasks));
        assert_eq!(d.backends[&backend("api")].mode, Mode::Task);
        assert_eq!(d.warnings.len(), 1);
    }

    #[test]
    fn a_bad_label_edit_keeps_the_last_good_route_with_current_tasks_and_leaves_others_alone() {
        let before = snapshot(
            vec![routed("web", "a.example"), routed("shop", "shop.example")],
            vec![running("web", 1), running("shop", 7)],
        );
        let first = run(&before);
        assert_eq!(first.errors, vec![]);

        let mut web = routed("web", "a.example,new.example");
        web.labels.insert(PORT.to_owned(), "70000".to_owned());
        // Swarm rolled web meanwhile: task 1 is stopping, task 2 runs.
        let after = snapshot(
            vec![web, routed("shop", "shop.example")],
            vec![
                task("web", 1, TaskState::Running, DesiredTaskState::Shutdown),
                running("web", 2),
                running("shop", 7),
            ],
        );
        let second = desired(&after, &no_settings(), &first.routes);
        assert_eq!(
            lines(&second.errors),
            vec!["service web: label com.docker.lb.port=\"70000\": out of range: a port is 1..=65535"]
        );
        assert_eq!(
            second.warnings,
            vec![LabelError::KeptLastGood {
                service: "web".to_owned()
            }]
        );
        assert_eq!(second.routes, first.routes);
        assert_eq!(
            second.backends[&backend("web")].endpoints,
            BTreeMap::from([
                (addr("10.0.1.1:8080"), EndpointState::Drain),
                (addr("10.0.1.2:8080"), EndpointState::Ready),
            ])
        );
        assert_eq!(
            second.hosts, first.hosts,
            "the half-edited host list is not applied"
        );
        assert_eq!(
            second.backends[&backend("shop")],
            first.backends[&backend("shop")]
        );

        // The kept route keeps being kept on later passes.
        let third = desired(&after, &no_settings(), &second.routes);
        assert_eq!(third, second);
    }

    #[test]
    fn a_service_that_never_had_a_good_route_is_left_out_with_its_error() {
        let mut web = routed("web", "a.example");
        web.labels
            .insert(BACKEND_MODE.to_owned(), "sticky".to_owned());
        let d = run(&snapshot(vec![web], vec![running("web", 1)]));
        assert_eq!(d.backends, BTreeMap::new());
        assert_eq!(d.hosts, BTreeMap::new());
        assert_eq!(d.routes, BTreeMap::new());
        assert_eq!(d.networks, BTreeSet::new());
        assert_eq!(
            lines(&d.errors),
            vec![
                "service web: label com.docker.lb.backend_mode=\"sticky\": unknown mode: accepted \
                 values are default, task, vip"
            ]
        );
    }

    #[test]
    fn removing_every_lb_label_unroutes_the_service_even_with_a_last_good_route() {
        let first = run(&snapshot(vec![routed("web", "a.example")], vec![]));
        let d = desired(
            &snapshot(vec![service("web", &[FRONT], &[])], vec![]),
            &no_settings(),
            &first.routes,
        );
        assert_eq!(d, Desired::default());
    }

    #[test]
    fn removing_the_hosts_label_unroutes_the_service_with_a_notice_not_its_last_good_route() {
        let first = run(&snapshot(
            vec![routed("web", "a.example"), routed("other", "b.example")],
            vec![running("web", 1), running("other", 2)],
        ));
        // `docker service update --label-rm com.docker.lb.hosts web`: the port stays.
        let d = desired(
            &snapshot(
                vec![
                    service("web", &[FRONT], &[(PORT, "8080")]),
                    routed("other", "b.example"),
                ],
                vec![running("web", 1), running("other", 2)],
            ),
            &no_settings(),
            &first.routes,
        );
        assert_eq!(d.errors, vec![]);
        assert_eq!(d.warnings, vec![]);
        assert_eq!(
            lines(&d.notices),
            [
                "service web: label com.docker.lb.hosts is not set, so the service is not routed \
              (set it, or com.docker.lb.default_backend=true, to route it)"
            ]
        );
        assert!(!d.backends.contains_key(&backend("web")));
        assert!(
            !d.routes.contains_key("id-web"),
            "no last good route is kept"
        );
        assert_eq!(
            d.hosts,
            BTreeMap::from([(host("b.example"), to("other"))]),
            "nothing else changes"
        );
        assert_eq!(
            d.backends[&backend("other")],
            first.backends[&backend("other")]
        );
    }

    #[test]
    fn the_default_backend_without_a_hosts_label_stays_routed_as_the_default() {
        let d = run(&snapshot(
            vec![service(
                "web",
                &[FRONT],
                &[(labels::DEFAULT_BACKEND, "true"), (PORT, "8080")],
            )],
            vec![running("web", 1)],
        ));
        assert_eq!(d.errors, vec![]);
        assert_eq!(d.notices, vec![]);
        assert_eq!(d.hosts, BTreeMap::from([(MapKey::catch_all(), to("web"))]));
        assert_eq!(d.backends[&backend("web")].endpoints.len(), 1);
    }

    #[test]
    fn a_malformed_host_is_an_error_while_the_other_hosts_of_the_service_route() {
        let d = run(&snapshot(
            vec![routed("web", "a.example, b;example ,c.example.,")],
            vec![running("web", 1)],
        ));
        assert_eq!(
            lines(&d.errors),
            ["service web: label com.docker.lb.hosts=\"a.example, b;example ,c.example.,\": host \
              \"b;example\" is left out: character ';' is not allowed: whitespace, control \
              characters, ';', '#', quotes and '\\' could smuggle HAProxy syntax"]
        );
        assert_eq!(
            lines(&d.warnings),
            ["service web: label com.docker.lb.hosts has empty items (a comma at an end or two in \
              a row); they are skipped"]
        );
        assert_eq!(
            d.hosts,
            BTreeMap::from([
                (host("a.example"), to("web")),
                (host("c.example"), to("web")),
            ])
        );
    }

    #[test]
    fn attaching_a_second_network_keeps_the_last_good_route_on_the_first() {
        let first = run(&snapshot(
            vec![routed("web", "a.example")],
            vec![running("web", 1)],
        ));
        let mut web = routed("web", "a.example");
        web.networks.push(BACK.to_owned());
        let d = desired(
            &snapshot(vec![web], vec![running("web", 1)]),
            &no_settings(),
            &first.routes,
        );
        assert_eq!(
            lines(&d.errors),
            vec![
                "service web: is on several networks (back, front) and no default network is set: \
                 set com.docker.lb.network to the one HAProxy should join"
            ]
        );
        assert_eq!(d.backends, first.backends);
        assert_eq!(
            d.warnings,
            vec![LabelError::KeptLastGood {
                service: "web".to_owned()
            }]
        );
    }

    /// The hosts map as `key value` strings, for readable assertions.
    fn map_lines(d: &Desired) -> Vec<String> {
        d.hosts.iter().map(|(k, v)| format!("{k} {v}")).collect()
    }

    /// How many buckets of `route` name each backend.
    fn buckets(d: &Desired, route: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (k, v) in &d.hosts {
            if k.as_str().starts_with(&format!("~{route}=")) {
                *out.entry(v.to_string()).or_default() += 1;
            }
        }
        out
    }

    fn with(mut svc: Service, labels: &[(&str, &str)]) -> Service {
        for (k, v) in labels {
            svc.labels.insert(k.to_string(), v.to_string());
        }
        svc
    }

    #[test]
    fn services_sharing_a_host_split_it_by_their_ready_tasks_as_interlock_did() {
        // v1 with 4 replicas, v2 (the canary) with 1: about 20 % for v2.
        let tasks: Vec<Task> = (1..=4)
            .map(|n| running("v1", n))
            .chain([running("v2", 9)])
            .collect();
        let d = run(&snapshot(
            vec![
                routed("v1", "demo.example,v1.example"),
                routed("v2", "demo.example"),
            ],
            tasks,
        ));
        assert_eq!(d.errors, vec![]);
        assert_eq!(d.hosts[&host("demo.example")].as_str(), "~demo.example/");
        assert_eq!(d.hosts[&host("v1.example")], to("v1"));
        assert_eq!(
            buckets(&d, "demo.example/"),
            BTreeMap::from([("v1".to_owned(), 80), ("v2".to_owned(), 20)])
        );
        assert_eq!(d.backends.len(), 2, "each service keeps its own backend");
    }

    #[test]
    fn a_claimant_without_ready_tasks_gets_no_traffic_and_promotion_moves_it_all() {
        let d = run(&snapshot(
            vec![routed("v1", "demo.example"), routed("v2", "demo.example")],
            vec![
                running("v2", 1),
                running("v2", 2),
                task("v1", 3, TaskState::Running, DesiredTaskState::Shutdown),
            ],
        ));
        assert_eq!(
            buckets(&d, "demo.example/"),
            BTreeMap::from([("v2".to_owned(), 100)])
        );
    }

    #[test]
    fn a_vip_claimant_counts_once_so_four_and_one_replicas_split_evenly() {
        let vip = |name: &str, n: u8| {
            let mut s = with(routed(name, "demo.example"), &[(BACKEND_MODE, "vip")]);
            s.vips = vec![Vip {
                network: FRONT.to_owned(),
                addr: ip(&format!("10.0.1.{}", 200 + n)),
            }];
            s
        };
        let tasks: Vec<Task> = (1..=4)
            .map(|n| running("v1", n))
            .chain([running("v2", 9)])
            .collect();
        let d = run(&snapshot(vec![vip("v1", 1), vip("v2", 2)], tasks));
        assert_eq!(
            buckets(&d, "demo.example/"),
            BTreeMap::from([("v1".to_owned(), 50), ("v2".to_owned(), 50)])
        );
    }

    #[test]
    fn a_vip_claimant_beside_task_claimants_counts_as_one_server() {
        let mut api = with(routed("v2", "demo.example"), &[(BACKEND_MODE, "vip")]);
        api.vips = vec![Vip {
            network: FRONT.to_owned(),
            addr: ip("10.0.1.200"),
        }];
        let d = run(&snapshot(
            vec![routed("v1", "demo.example"), api],
            (1..=3).map(|n| running("v1", n)).collect(),
        ));
        assert_eq!(d.errors, vec![]);
        assert_eq!(
            buckets(&d, "demo.example/"),
            BTreeMap::from([("v1".to_owned(), 75), ("v2".to_owned(), 25)])
        );
    }

    #[test]
    fn weights_split_a_shared_host_between_services_and_an_unset_weight_counts_as_one() {
        let d = run(&snapshot(
            vec![
                with(routed("v1", "demo.example"), &[(labels::WEIGHT, "90")]),
                with(routed("v2", "demo.example"), &[(labels::WEIGHT, "10")]),
                routed("v3", "other.example"),
                with(routed("v4", "other.example"), &[(labels::WEIGHT, "3")]),
            ],
            (1..=4).map(|n| running("v1", n)).collect(),
        ));
        assert_eq!(d.errors, vec![]);
        assert_eq!(
            buckets(&d, "demo.example/"),
            BTreeMap::from([("v1".to_owned(), 90), ("v2".to_owned(), 10)])
        );
        assert_eq!(
            buckets(&d, "other.example/"),
            BTreeMap::from([("v3".to_owned(), 25), ("v4".to_owned(), 75)])
        );
    }

    #[test]
    fn a_sticky_or_ip_hash_claimant_keeps_a_shared_host_with_the_first_service_and_an_error() {
        for label in [(STICKY_SESSION_COOKIE, "sid"), (labels::IP_HASH, "true")] {
            let d = run(&snapshot(
                vec![
                    routed("alpha", "shared.example,a.example"),
                    with(routed("zeta", "shared.example,z.example"), &[label]),
                ],
                vec![running("alpha", 1), running("zeta", 2)],
            ));
            assert_eq!(
                lines(&d.errors),
                vec![format!(
                    "service zeta: route shared.example/ is shared with service alpha, and service \
                     zeta pins clients to its tasks (com.docker.lb.sticky_session_cookie or \
                     com.docker.lb.ip_hash), which cannot hold across services: the route stays \
                     with service alpha; remove the label or the shared host to split it"
                )]
            );
            assert_eq!(
                map_lines(&d),
                [
                    "a.example/ alpha",
                    "shared.example/ alpha",
                    "z.example/ zeta"
                ]
            );
            assert!(d.backends.contains_key(&backend("zeta")));
        }
    }

    #[test]
    fn context_roots_route_paths_of_a_host_and_the_rest_goes_to_the_service_without_one() {
        let d = run(&snapshot(
            vec![
                routed("site", "shop.example"),
                with(
                    routed("api", "shop.example"),
                    &[(labels::CONTEXT_ROOT, "/api")],
                ),
                with(
                    routed("apiv2", "shop.example"),
                    &[
                        (labels::CONTEXT_ROOT, "/api/v2/"),
                        (labels::CONTEXT_ROOT_REWRITE, "true"),
                    ],
                ),
            ],
            vec![running("site", 1), running("api", 2), running("apiv2", 3)],
        ));
        assert_eq!(d.errors, vec![]);
        assert_eq!(
            map_lines(&d),
            [
                "shop.example/ site",
                "shop.example/api/ api",
                "shop.example/api/v2/ apiv2|2",
            ]
        );
    }

    #[test]
    fn services_sharing_a_host_and_a_context_root_are_a_canary_group() {
        let root = [(labels::CONTEXT_ROOT, "/app")];
        let d = run(&snapshot(
            vec![
                with(routed("v1", "demo.example"), &root),
                with(routed("v2", "demo.example"), &root),
            ],
            vec![running("v1", 1), running("v2", 2)],
        ));
        assert_eq!(
            d.hosts[&MapKey::parse("demo.example/app/").unwrap()].as_str(),
            "~demo.example/app/"
        );
        assert_eq!(
            buckets(&d, "demo.example/app/"),
            BTreeMap::from([("v1".to_owned(), 50), ("v2".to_owned(), 50)])
        );
    }

    #[test]
    fn redirects_take_their_source_route_and_keep_the_rest_of_the_path() {
        let d = run(&snapshot(
            vec![with(
                routed("web", "old.example,new.example"),
                &[
                    (labels::REDIRECTS, "http://old.example,http://new.example; http://new.example/legacy,https://new.example/v2"),
                    (labels::REDIRECT_CODE, "308"),
                ],
            )],
            vec![running("web", 1)],
        ));
        assert_eq!(d.errors, vec![]);
        assert_eq!(
            map_lines(&d),
            [
                "new.example/ web",
                "new.example/legacy/ >308|1|https://new.example/v2",
                "old.example/ >308|0|http://new.example",
            ]
        );
    }

    #[test]
    fn ssl_only_adds_an_https_only_map_entry_per_host_beside_the_route() {
        let d = run(&snapshot(
            vec![with(
                routed("web", "a.example,b.example"),
                &[(labels::SSL_ONLY, "true")],
            )],
            vec![running("web", 1)],
        ));
        assert_eq!(d.errors, vec![]);
        assert_eq!(
            map_lines(&d),
            [
                "!a.example/ !https",
                "!b.example/ !https",
                "a.example/ web",
                "b.example/ web",
            ]
        );
    }

    #[test]
    fn a_redirect_loop_between_two_services_is_refused_with_an_error_on_each() {
        let d = run(&snapshot(
            vec![
                with(
                    routed("a", "a.example"),
                    &[(labels::REDIRECTS, "http://x.example,http://y.example")],
                ),
                with(
                    routed("b", "b.example"),
                    &[(labels::REDIRECTS, "http://y.example,http://x.example/in")],
                ),
                with(
                    routed("c", "c.example"),
                    &[(
                        labels::REDIRECTS,
                        "http://c.example/old,http://c.example/old/new",
                    )],
                ),
            ],
            vec![],
        ));
        assert_eq!(
            lines(&d.errors),
            [
                "service a: label com.docker.lb.redirects: http://x.example -> http://y.example \
                 would loop (the target is redirected again, back to the source); this redirect \
                 is ignored",
                "service b: label com.docker.lb.redirects: http://y.example -> \
                 http://x.example/in would loop (the target is redirected again, back to the \
                 source); this redirect is ignored",
                "service c: label com.docker.lb.redirects: http://c.example/old -> \
                 http://c.example/old/new would loop (the target is redirected again, back to \
                 the source); this redirect is ignored",
            ]
        );
        assert_eq!(
            map_lines(&d),
            ["a.example/ a", "b.example/ b", "c.example/ c"]
        );
    }

    #[test]
    fn a_redirect_from_a_route_another_service_holds_is_refused() {
        let d = run(&snapshot(
            vec![
                routed("alpha", "taken.example"),
                with(
                    routed("beta", "b.example"),
                    &[(labels::REDIRECTS, "http://taken.example,http://b.example")],
                ),
            ],
            vec![],
        ));
        assert_eq!(
            lines(&d.errors),
            [
                "service beta: label com.docker.lb.redirects: source http://taken.example is \
              already routed or redirected by service alpha; this redirect is ignored"
            ]
        );
        assert_eq!(map_lines(&d), ["b.example/ beta", "taken.example/ alpha"]);
    }

    #[test]
    fn the_output_does_not_depend_on_the_order_of_the_snapshot() {
        let services = vec![
            routed("zeta", "shared.example"),
            routed("alpha", "shared.example"),
            service(
                "mid",
                &[FRONT],
                &[(PORT, "x"), ("com.docker.lb.ssl_cert", "c")],
            ),
        ];
        let tasks = vec![running("zeta", 1), running("alpha", 2), running("alpha", 3)];
        let a = run(&snapshot(services.clone(), tasks.clone()));
        let mut reversed = snapshot(
            services.into_iter().rev().collect(),
            tasks.into_iter().rev().collect(),
        );
        reversed.networks.reverse();
        assert_eq!(run(&reversed), a);
    }

    #[test]
    fn the_network_label_picks_a_network_by_name_or_by_id() {
        for reference in ["back", BACK] {
            let web = service(
                "web",
                &[FRONT, BACK],
                &[(HOSTS, "a.example"), (PORT, "80"), (NETWORK, reference)],
            );
            let d = run(&snapshot(vec![web], vec![running("web", 1)]));
            assert_eq!(d.errors, vec![], "{reference}");
            assert_eq!(d.backends[&backend("web")].network, BACK);
            assert_eq!(
                d.backends[&backend("web")]
                    .endpoints
                    .keys()
                    .collect::<Vec<_>>(),
                vec![&addr("10.0.2.1:80")]
            );
        }
    }

    #[test]
    fn a_network_label_naming_a_network_the_service_is_not_on_is_an_error() {
        let web = service(
            "web",
            &[FRONT],
            &[(HOSTS, "a.example"), (PORT, "80"), (NETWORK, "back")],
        );
        let d = run(&snapshot(vec![web], vec![]));
        assert_eq!(
            lines(&d.errors),
            vec![
                "service web: label com.docker.lb.network=\"back\": the service is not on network \
                 back: add it with `docker service update --network-add back web`"
            ]
        );
        assert_eq!(d.backends, BTreeMap::new());
    }

    #[test]
    fn a_network_label_naming_no_network_is_an_error() {
        let web = service(
            "web",
            &[FRONT],
            &[(HOSTS, "a.example"), (PORT, "80"), (NETWORK, "nope")],
        );
        let d = run(&snapshot(vec![web], vec![]));
        assert_eq!(
            lines(&d.errors),
            vec![
                "service web: label com.docker.lb.network=\"nope\": no network has this name or id"
            ]
        );
    }

    #[test]
    fn a_very_long_network_label_names_no_network_and_stays_a_short_log_line() {
        let long = "n".repeat(10_000);
        let web = service(
            "web",
            &[FRONT],
            &[(HOSTS, "a.example"), (PORT, "80"), (NETWORK, &long)],
        );
        let d = run(&snapshot(vec![web], vec![]));
        assert_eq!(d.errors.len(), 1);
        let line = d.errors[0].to_string();
        assert!(
            line.starts_with("service web: label com.docker.lb.network=\"nnn"),
            "{line}"
        );
        assert!(
            line.ends_with("...\": no network has this name or id"),
            "{line}"
        );
        assert!(line.len() < 200, "{} bytes", line.len());
    }

    #[test]
    fn a_service_on_several_networks_uses_the_default_network_when_it_is_on_it() {
        let web = service("web", &[FRONT, BACK], &[(HOSTS, "a.example"), (PORT, "80")]);
        let snap = snapshot(vec![web], vec![running("web", 1)]);
        let settings = Settings {
            default_network: Some("back".to_owned()),
            service_cluster: None,
            template_without_lua: false,
            acme: false,
        };
        let d = desired(&snap, &settings, &BTreeMap::new());
        assert_eq!(d.errors, vec![]);
        assert_eq!(d.backends[&backend("web")].network, BACK);

        let elsewhere = Settings {
            default_network: Some("other".to_owned()),
            service_cluster: None,
            template_without_lua: false,
            acme: false,
        };
        let d = desired(&snap, &elsewhere, &BTreeMap::new());
        assert_eq!(
            lines(&d.errors),
            vec![
                "service web: is on several networks (back, front) and the default network other \
                 is not one of them: set com.docker.lb.network to the one HAProxy should join"
            ]
        );
        assert_eq!(d.backends, BTreeMap::new());
    }

    #[test]
    fn a_service_on_no_network_is_an_error_because_haproxy_cannot_reach_it() {
        let web = service("web", &[], &[(HOSTS, "a.example"), (PORT, "80")]);
        let d = run(&snapshot(vec![web], vec![]));
        assert_eq!(d.errors.len(), 1);
        assert!(
            d.errors[0]
                .to_string()
                .starts_with("service web: is on no network"),
            "{}",
            d.errors[0]
        );
        assert!(d.errors[0].to_string().contains(NETWORK));
    }

    #[test]
    fn the_ingress_network_is_refused() {
        let web = service("web", &[INGRESS], &[(HOSTS, "a.example"), (PORT, "80")]);
        let d = run(&snapshot(vec![web], vec![]));
        assert_eq!(d.errors.len(), 1);
        assert!(
            d.errors[0]
                .to_string()
                .contains("network ingress is Swarm's ingress network"),
            "{}",
            d.errors[0]
        );
        assert_eq!(d.networks, BTreeSet::new());
    }

    #[test]
    fn a_network_haproxy_cannot_join_is_an_error_on_that_service_alone() {
        let shut = service("shut", &[CLOSED], &[(HOSTS, "s.example"), (PORT, "80")]);
        let labelled = service(
            "labelled",
            &[FRONT, CLOSED],
            &[(HOSTS, "l.example"), (PORT, "80"), (NETWORK, "closed")],
        );
        let d = run(&snapshot(
            vec![shut, labelled, routed("web", "a.example")],
            vec![],
        ));
        assert_eq!(
            lines(&d.errors),
            vec![
                "service labelled: label com.docker.lb.network=\"closed\": HAProxy cannot join \
                 network closed: create it with --attachable",
                "service shut: HAProxy cannot join network closed: create it with --attachable",
            ]
        );
        assert_eq!(d.backends.keys().collect::<Vec<_>>(), vec![&backend("web")]);
        assert_eq!(d.networks, BTreeSet::from([FRONT.to_owned()]));
    }

    #[test]
    fn the_networks_to_join_are_those_of_every_routed_backend() {
        let api = service(
            "api",
            &[FRONT, BACK],
            &[(HOSTS, "api.example"), (PORT, "80"), (NETWORK, "back")],
        );
        let d = run(&snapshot(vec![api, routed("web", "a.example")], vec![]));
        assert_eq!(
            d.networks,
            BTreeSet::from([BACK.to_owned(), FRONT.to_owned()])
        );
    }

    #[test]
    fn unsupported_and_unknown_labels_are_warnings_and_the_route_works() {
        let mut web = routed("web", "a.example");
        web.labels
            .insert(STICKY_SESSION_COOKIE.to_owned(), "sid".to_owned());
        web.labels
            .insert("com.docker.lb.prot".to_owned(), "80".to_owned());
        let mut api = service(
            "api",
            &[FRONT],
            &[
                (HOSTS, "api.example"),
                (PORT, "80"),
                (BACKEND_MODE, "vip"),
                (STICKY_SESSION_COOKIE, "sid"),
            ],
        );
        api.vips = vec![Vip {
            network: FRONT.to_owned(),
            addr: ip("10.0.1.200"),
        }];
        let d = run(&snapshot(vec![web, api], vec![running("web", 1)]));
        assert_eq!(d.errors, vec![]);
        assert_eq!(d.backends.len(), 2);
        assert_eq!(
            lines(&d.warnings),
            vec![
                "service api: label com.docker.lb.sticky_session_cookie is not offered in vip mode \
                 (Swarm's VIP spreads traffic over the tasks); ignored, use \
                 com.docker.lb.backend_mode=default for it",
                "service web: label com.docker.lb.prot is not a label swarm-lb knows (misspelled?); ignored",
            ]
        );
        assert_eq!(
            d.backends[&BackendName::for_service("web").expect("name")]
                .options
                .sticky_cookie
                .as_deref(),
            Some("sid")
        );
        assert_eq!(
            d.backends[&BackendName::for_service("api").expect("name")].options,
            crate::model::BackendOptions::default(),
            "vip mode takes no options"
        );
    }

    #[test]
    fn a_failing_last_good_route_leaves_the_service_out_with_both_errors() {
        let mut api = service(
            "api",
            &[FRONT],
            &[(HOSTS, "api.example"), (PORT, "80"), (BACKEND_MODE, "vip")],
        );
        api.vips = vec![Vip {
            network: FRONT.to_owned(),
            addr: ip("10.0.1.200"),
        }];
        let first = run(&snapshot(vec![api.clone()], vec![]));
        assert!(first.backends.contains_key(&backend("api")));
        // The service leaves the network its route used, and its port label breaks.
        api.networks = vec![BACK.to_owned()];
        api.labels.insert(PORT.to_owned(), "-1".to_owned());
        let d = desired(&snapshot(vec![api], vec![]), &no_settings(), &first.routes);
        assert_eq!(d.backends, BTreeMap::new());
        assert_eq!(d.routes, BTreeMap::new());
        assert_eq!(d.errors.len(), 2, "{:?}", d.errors);
        assert!(d.errors.iter().all(|e| e.service() == "api"));
    }

    #[test]
    fn a_task_starting_or_a_relabel_to_a_free_host_patches_the_service_alone_and_a_shared_host_assembles_everything(
    ) {
        let mut snap = snapshot(
            vec![routed("web", "a.example"), routed("api", "b.example")],
            vec![running("web", 1), running("api", 1)],
        );
        snap.tasks.sort_by(|a, b| a.id.cmp(&b.id));
        let settings = no_settings();
        let mut cache = DesiredCache::default();
        assert_eq!(cache.next(&snap, &settings).1, Change::All);

        snap.tasks.push(Arc::new(running("web", 2)));
        snap.tasks.sort_by(|a, b| a.id.cmp(&b.id));
        let (d, change) = cache.next(&snap, &settings);
        assert_eq!(change, Change::Backends(BTreeSet::from([backend("web")])));
        assert_eq!(d, desired(&snap, &settings, &BTreeMap::new()));
        assert_eq!(d.backends[&backend("web")].endpoints.len(), 2);

        let (_, change) = cache.next(&snap, &settings);
        assert_eq!(change, Change::Backends(BTreeSet::new()), "nothing changed");

        // A relabel to a host no other service holds: the service's own map entries.
        for s in snap.services.iter_mut().filter(|s| s.name == "api") {
            *s = Arc::new(routed("api", "c.example"));
        }
        let (d, change) = cache.next(&snap, &settings);
        assert_eq!(change, Change::Backends(BTreeSet::new()));
        assert_eq!(d, desired(&snap, &settings, &BTreeMap::new()));
        assert_eq!(d.hosts[&host("c.example")], to("api"));
        assert!(!d.hosts.contains_key(&host("b.example")));

        // A relabel to a host web holds splits it: everything is assembled again.
        for s in snap.services.iter_mut().filter(|s| s.name == "api") {
            *s = Arc::new(routed("api", "a.example"));
        }
        let (d, change) = cache.next(&snap, &settings);
        assert_eq!(change, Change::All);
        assert_eq!(d, desired(&snap, &settings, &BTreeMap::new()));
    }

    #[test]
    fn a_relabel_keeps_the_ssl_only_entry_another_service_on_the_host_still_asks_for() {
        use crate::model::labels::{CONTEXT_ROOT, SSL_ONLY};
        let a = |h: &str| {
            service(
                "a",
                &[FRONT],
                &[
                    (HOSTS, h),
                    (PORT, "8080"),
                    (CONTEXT_ROOT, "/x"),
                    (SSL_ONLY, "true"),
                ],
            )
        };
        let b = service(
            "b",
            &[FRONT],
            &[(HOSTS, "a.example"), (PORT, "8080"), (SSL_ONLY, "true")],
        );
        let mut snap = snapshot(
            vec![a("a.example"), b],
            vec![running("a", 1), running("b", 1)],
        );
        snap.tasks.sort_by(|x, y| x.id.cmp(&y.id));
        let settings = no_settings();
        let mut cache = DesiredCache::default();
        let (first, _) = cache.next(&snap, &settings);
        assert_eq!(first, desired(&snap, &settings, &BTreeMap::new()));
        let https_only = MapKey::https_only(&Host::parse("a.example").unwrap());
        assert_eq!(first.hosts.get(&https_only), Some(&MapValue::https_only()));
        for s in snap.services.iter_mut().filter(|s| s.name == "a") {
            *s = Arc::new(a("c.example"));
        }
        let (now, _) = cache.next(&snap, &settings);
        assert_eq!(now.hosts.get(&https_only), Some(&MapValue::https_only()));
        assert_eq!(now, desired(&snap, &settings, &first.routes));
    }

    /// A service of the pool the cache property draws from: routed, a shared host, a bad
    /// port (refused: kept last good), no hosts (a notice), sticky, or not ours.
    fn variant(name: &str, v: u8) -> Service {
        match v % 8 {
            0 => routed(name, &format!("{name}.example")),
            7 => service(
                name,
                &[FRONT],
                &[
                    (HOSTS, "shared.example"),
                    (PORT, "80"),
                    (crate::model::labels::CONTEXT_ROOT, &format!("/{name}")),
                    (crate::model::labels::SSL_ONLY, "true"),
                ],
            ),
            6 => routed(name, &format!("{name}.example,{name}.other.example")),
            1 => routed(name, "shared.example"),
            2 => service(name, &[FRONT], &[(HOSTS, "bad.example"), (PORT, "0")]),
            3 => service(name, &[FRONT], &[(PORT, "8080")]),
            4 => service(
                name,
                &[FRONT],
                &[
                    (HOSTS, "sticky.example"),
                    (PORT, "80"),
                    (STICKY_SESSION_COOKIE, "sid"),
                ],
            ),
            _ => service(name, &[FRONT], &[("other", "x")]),
        }
    }

    /// The snapshot the cache properties start from: service `s<i>` of variant `v` with `n`
    /// running tasks, for each `(v, n)` of `first`.
    fn pool(first: &[(u8, u8)]) -> Snapshot {
        let mut snap = Snapshot {
            networks: networks(),
            ..Snapshot::default()
        };
        for (i, (v, n)) in first.iter().enumerate() {
            let name = format!("s{i}");
            snap.services.push(Arc::new(variant(&name, *v)));
            for k in 0..*n {
                snap.tasks.push(Arc::new(running(&name, k + 1)));
            }
        }
        snap
    }

    proptest::proptest! {
        /// The cache is a cache only: after a pass over one snapshot, a pass over the next
        /// (services kept as the same values, relabelled, added or removed; tasks kept, moved
        /// or stopped; the last good routes of the first pass) gives exactly what a pass
        /// without the cache gives.
        #[test]
        fn the_desired_routing_from_the_cache_equals_the_routing_computed_afresh(
            first in proptest::collection::vec((0u8..6, 0u8..4), 1..8),
            edits in proptest::collection::vec((0u8..4, 0u8..6, 0u8..4), 8),
        ) {
            let name = |i: usize| format!("s{i}");
            let snap = pool(&first);
            let settings = Settings::default();
            let mut cache = DesiredCache::default();
            let before = desired_cached(&snap, &settings, &BTreeMap::new(), &mut cache);
            let mut next = snap.clone();
            for (i, (edit, v, n)) in edits.iter().enumerate().take(first.len()) {
                let id = format!("id-{}", name(i));
                match edit {
                    // Kept as it is.
                    0 => {}
                    // Relabelled.
                    1 => {
                        for s in next.services.iter_mut().filter(|s| s.id == id) {
                            *s = Arc::new(variant(&name(i), *v));
                        }
                    }
                    // Tasks moved: some stop, one starts.
                    2 => {
                        next.tasks.retain(|t| t.service_id != id || t.slot != Some(1));
                        next.tasks.push(Arc::new(task(
                            &name(i),
                            10 + n,
                            TaskState::Running,
                            DesiredTaskState::Shutdown,
                        )));
                    }
                    // Removed with its tasks.
                    _ => {
                        next.services.retain(|s| s.id != id);
                        next.tasks.retain(|t| t.service_id != id);
                    }
                }
            }
            next.tasks.sort_by(|a, b| a.id.cmp(&b.id));
            let cached = desired_cached(&next, &settings, &before.routes, &mut cache);
            proptest::prop_assert_eq!(cached, desired(&next, &settings, &before.routes));
        }

        /// [`DesiredCache::next`] over a sequence of snapshots (most edits move tasks, so
        /// that its patches are taken) gives at each step what [`desired`] gives with the
        /// last step's routes as the last good ones, and a [`Change::Backends`] it reports
        /// names every backend whose spec differs from the last step's, nothing else
        /// differing but the routes, the hosts map and the certificates.
        #[test]
        fn the_incremental_routing_equals_the_routing_computed_afresh_at_every_step(
            first in proptest::collection::vec((0u8..8, 0u8..4), 1..8),
            steps in proptest::collection::vec(
                proptest::collection::vec((0u8..10, 0u8..8, 0u8..6), 8),
                1..6,
            ),
        ) {
            let name = |i: usize| format!("s{i}");
            let mut snap = pool(&first);
            snap.services.sort_by(|a, b| a.id.cmp(&b.id));
            snap.tasks.sort_by(|a, b| a.id.cmp(&b.id));
            let settings = Settings::default();
            let mut cache = DesiredCache::default();
            let (mut last, _) = cache.next(&snap, &settings);
            proptest::prop_assert_eq!(&last, &desired(&snap, &settings, &BTreeMap::new()));
            for edits in &steps {
                let mut next = snap.clone();
                for (i, (edit, v, n)) in edits.iter().enumerate().take(first.len()) {
                    let id = format!("id-{}", name(i));
                    let (svc, n) = (name(i), n + 1);
                    let tasks = &mut next.tasks;
                    match edit {
                        0 => {}
                        // Moved to its own other host (or back).
                        1 => {
                            for s in next.services.iter_mut().filter(|s| s.id == id) {
                                *s = Arc::new(variant(&svc, if n % 2 == 0 { 0 } else { 6 }));
                            }
                        }
                        // Relabelled.
                        2 => {
                            for s in next.services.iter_mut().filter(|s| s.id == id) {
                                *s = Arc::new(variant(&svc, *v));
                            }
                        }
                        // A task starts (or is replaced by an equal value: a new pointer).
                        3 | 4 => {
                            tasks.retain(|t| t.id != format!("t-{svc}-{n}"));
                            tasks.push(Arc::new(running(&svc, n)));
                        }
                        // A task Swarm stops: drained.
                        5 | 6 => {
                            tasks.retain(|t| t.id != format!("t-{svc}-{n}"));
                            tasks.push(Arc::new(task(
                                &svc,
                                n,
                                TaskState::Running,
                                DesiredTaskState::Shutdown,
                            )));
                        }
                        // A task gone.
                        7 | 8 => tasks.retain(|t| t.id != format!("t-{svc}-{n}")),
                        // The service removed with its tasks.
                        _ => {
                            next.services.retain(|s| s.id != id);
                            next.tasks.retain(|t| t.service_id != id);
                        }
                    }
                }
                next.tasks.sort_by(|a, b| a.id.cmp(&b.id));
                let (now, change) = cache.next(&next, &settings);
                let afresh = desired(&next, &settings, &last.routes);
                proptest::prop_assert_eq!(&now, &afresh);
                if let Change::Backends(changed) = change {
                    let differ: BTreeSet<BackendName> = last
                        .backends
                        .iter()
                        .filter(|(b, spec)| now.backends.get(*b) != Some(*spec))
                        .map(|(b, _)| b.clone())
                        .collect();
                    proptest::prop_assert_eq!(&differ, &changed);
                    let strip = |d: &Desired| Desired {
                        backends: BTreeMap::new(),
                        routes: BTreeMap::new(),
                        hosts: BTreeMap::new(),
                        certs: BTreeMap::new(),
                        acme: BTreeMap::new(),
                        ..d.clone()
                    };
                    proptest::prop_assert_eq!(strip(&last), strip(&now));
                    proptest::prop_assert_eq!(
                        last.backends.keys().collect::<Vec<_>>(),
                        now.backends.keys().collect::<Vec<_>>()
                    );
                }
                last = now;
                snap = next;
            }
        }
    }
}
