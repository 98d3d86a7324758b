//! The watch loop: Docker events in, [`Snapshot`]s out on a `watch` channel.
//!
//! Per connection: take a timestamp, open the event stream with `since` that timestamp, THEN
//! list, so that nothing happening during the list is lost (as Vector's docker source does).
//! Every event re-lists (tasks only for a container event) and marks its service as moving;
//! moving services are re-listed at a short interval until they settle (Swarm emits no task
//! events). A periodic full resync covers what no event announced. A snapshot is sent only
//! when it differs from the last one. When the stream ends or fails, reconnect with `since`
//! the last event's time, after a capped exponential backoff.
//!
//! Fast path: a container event of a task on this node (start, or healthy for a container
//! with a healthcheck; a stop signal; die) is laid over the last listing at once, through the
//! [`Overlay`]. Swarm's manager records task states in batches, so its list trails the
//! containers by tens of milliseconds; the events do not. Every listing is published with the
//! overlay on top, and drops what it agrees with. Tasks on other nodes have no events here:
//! settle polling remains their path. The fast path's own code is `watcher/fast_path.rs`.
//!
//! Docker is read through [`Source`] (`source.rs`): the tests drive an in-memory engine on
//! tokio's paused clock.
//!
//! Listings and container inspections run concurrently with the event stream (one listing at
//! a time; requests made meanwhile are merged into the next; at most [`INSPECTIONS`]
//! inspections, the others queued), so an event is never queued behind a slow list.
//!
//! Hints from other nodes' agents (`crate::hints`, [`Watcher::with_hints`]) go into the same
//! overlay under stricter rules (see `overlay`): they only act on tasks the listing holds, and
//! a hint touches its service, so that its tasks are re-listed at once (the fastest way to
//! learn of a crashed task's replacement on another node).
//!
//! When nothing is moving, the loop sleeps on the stream and the resync timer only (plus one
//! timer per overlay entry's expiry, while there is one).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::bounded::Bounded;
use super::convert::{self, Listing};
use super::events::{self, Batch, EventKind, Refresh, TaskEvent};
use super::overlay::{Dropped, Fact, Healthchecks, Overlay, Reason};
use super::reconnect::{Item, Reconnecting};
use super::settle::{routable, Outcome, SettleOptions, Settler};
use super::source::Source;
use super::{Docker, SwarmError};
use crate::backoff::Backoff;
use crate::fields;
use crate::hints::subscribe::RemoteUpdate;
use crate::hints::{Hint, HintState};
use crate::model::{ServiceId, Snapshot, Task, TaskAddress};
use crate::observe::Observer;
use fast_path::{Inspected, HEALTHCHECKS_KNOWN, INSPECTIONS};

mod fast_path;

/// Timing of the watch loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    /// How a service is polled after an event touched it, until it settles.
    pub settle: SettleOptions,
    /// Full re-list interval, whatever the events say.
    pub resync: Duration,
    /// Deadline for one listing.
    pub list_timeout: Duration,
    /// Reconnect with `since` this much before the last event seen, so that events in the
    /// same instant are replayed rather than lost (replays only cost a re-list).
    pub since_margin: Duration,
    /// First delay before reconnecting the event stream; doubles on each failure.
    pub backoff_initial: Duration,
    /// Cap of that delay; a connection that lived this long resets it.
    pub backoff_max: Duration,
    /// Publish this node's task container events at once, laid over the last task list
    /// (see the module doc). Off: tasks change only when a listing shows it.
    pub fast_path: bool,
    /// How long what a container event said may stand without the task list agreeing.
    pub fast_path_ttl: Duration,
    /// Only services this proxy could route are polled while they settle: those with a
    /// `com.docker.lb.*` label and this `com.docker.lb.service_cluster` (`None`: no cluster
    /// label). Others are still listed, just never polled for.
    pub service_cluster: Option<String>,
}

impl WatchOptions {
    /// The default `resync` (and `--resync`'s, which a test of the CLI checks).
    pub const RESYNC: Duration = Duration::from_secs(30);
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            settle: SettleOptions::default(),
            resync: Self::RESYNC,
            list_timeout: Duration::from_secs(10),
            since_margin: Duration::from_secs(1),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            fast_path: true,
            fast_path_ttl: Duration::from_secs(30),
            service_cluster: None,
        }
    }
}

/// Follows one Docker engine and publishes its [`Snapshot`]s.
pub struct Watcher {
    /// Docker, or the tests' in-memory engine.
    source: Box<dyn Source>,
    options: WatchOptions,
    /// Reconnects, resyncs, Docker's health, task timestamps and service events go here.
    observer: Option<Arc<Observer>>,
    /// Other nodes' hints (`--hints`), taken by [`Watcher::run`].
    hints: Option<mpsc::UnboundedReceiver<RemoteUpdate>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("source", &self.source.endpoint())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Loop state that outlives one connection of the event stream.
struct State {
    settler: Settler,
    /// The last full listing (services and networks are reused by task-only polls), and
    /// when its task list was requested.
    cache: Option<(Listing, Instant)>,
    /// The networks of the last full listing, which per-service listings resolve their
    /// network targets with (network events ask for a full listing).
    networks: Option<convert::NetworkIndex>,
    /// The listing to take next, once none is on its way.
    wanted: Option<Refresh>,
    /// The fast path's facts, laid over every listing published.
    overlay: Overlay,
    healthchecks: Healthchecks,
    /// Whether a snapshot was ever sent: the first one is sent even if it equals the
    /// channel's initial value, so receivers can wait for `changed()`.
    published: bool,
    /// The periodic resync asked for a full listing that has not come back yet: when it
    /// does and changes the snapshot, it found what no event had brought
    /// (`swarm_lb_docker_resync_changes_total`).
    resync_due: bool,
}

impl State {
    fn new(o: &WatchOptions) -> State {
        State {
            settler: Settler::new(o.settle, o.service_cluster.clone()),
            cache: None,
            networks: None,
            wanted: None,
            overlay: Overlay::new(o.fast_path_ttl),
            healthchecks: Healthchecks::new(HEALTHCHECKS_KNOWN),
            published: false,
            resync_due: false,
        }
    }

    fn want(&mut self, refresh: Refresh) {
        if refresh > Refresh::Nothing {
            self.wanted = self.wanted.max(Some(refresh));
        }
    }

    /// A container event of a task whose service the last listing shows this proxy cannot
    /// route (a service not listed yet is not foreign: it may be new).
    fn foreign(&self, e: &events::Event, cluster: Option<&str>) -> bool {
        let (Some(service), Some((listing, _))) = (&e.service, &self.cache) else {
            return false;
        };
        if e.kind != EventKind::Container {
            return false;
        }
        listing
            .snapshot
            .services
            .iter()
            .find(|s| &s.id == service)
            .is_some_and(|s| !routable(s, cluster))
    }

    /// Records another node's hint unless its service is one this proxy cannot route (by the
    /// last listing); true if recorded.
    fn record_hint(&mut self, node: &str, h: &Hint, cluster: Option<&str>, now: Instant) -> bool {
        let foreign = self.cache.as_ref().is_some_and(|(l, _)| {
            l.snapshot
                .services
                .iter()
                .find(|s| s.id == h.service)
                .is_some_and(|s| !routable(s, cluster))
        });
        if foreign {
            return false;
        }
        let fact = match h.state {
            HintState::Running => Fact::Running {
                addresses: h
                    .addresses
                    .iter()
                    .map(|a| TaskAddress {
                        network: a.network.clone(),
                        addr: a.addr,
                    })
                    .collect(),
            },
            HintState::Stopping => Fact::Stopping,
            HintState::Dead => Fact::Exited,
        };
        self.overlay
            .record_remote(node, &h.task, &h.service, h.slot, fact, now);
        true
    }

    /// The last listing's view of `task` (listings are sorted by id).
    fn listed(&self, task: &str) -> Option<&Task> {
        let tasks = &self.cache.as_ref()?.0.snapshot.tasks;
        let i = tasks.binary_search_by(|t| t.id.as_str().cmp(task)).ok()?;
        tasks.get(i).map(|t| &**t)
    }
}

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A listing's outcome.
struct Listed {
    /// What was asked for.
    refresh: Refresh,
    /// When the request went out: what the reply shows is at least that recent.
    requested: Instant,
    result: Result<Fetched, SwarmError>,
}

enum Fetched {
    All(Listing, convert::Times, convert::NetworkIndex),
    /// The services of the scope that exist (raw: their network targets are resolved with
    /// the last full listing's networks) and their tasks.
    Services(
        BTreeSet<ServiceId>,
        Vec<bollard::models::Service>,
        Vec<Task>,
        convert::Times,
    ),
    Tasks(Vec<Task>, convert::Times),
    /// The tasks of these services only (a poll of settling services).
    ServiceTasks(BTreeSet<ServiceId>, Vec<Task>, convert::Times),
}

/// The most services one poll names in its filter; more are polled with the whole task list
/// (a long filter costs the manager as much, and the URL stays short).
const SCOPED_POLL_MAX: usize = 64;

impl Watcher {
    pub fn new(docker: Docker, options: WatchOptions) -> Watcher {
        Watcher::of(Box::new(docker), options)
    }

    /// A watcher of any [`Source`] (the tests' in-memory engine).
    fn of(source: Box<dyn Source>, options: WatchOptions) -> Watcher {
        Watcher {
            source,
            options,
            observer: None,
            hints: None,
        }
    }

    /// Lay other nodes' hints (from `crate::hints::subscribe`) over the listings too.
    pub fn with_hints(mut self, hints: mpsc::UnboundedReceiver<RemoteUpdate>) -> Watcher {
        self.hints = Some(hints);
        self
    }

    /// Report to `observer` (metrics, Docker's health, task timestamps for convergence).
    pub fn with_observer(mut self, observer: Arc<Observer>) -> Watcher {
        self.observer = Some(observer);
        self
    }

    fn observe(&self, f: impl FnOnce(&Observer)) {
        if let Some(o) = &self.observer {
            f(o);
        }
    }

    /// Runs until every receiver of `tx` is dropped. Never returns an error: Docker being
    /// away is retried with backoff (and logged), the last snapshot stays in the channel.
    pub async fn run(mut self, tx: watch::Sender<Arc<Snapshot>>) {
        let hints = self.hints.take();
        let o = &self.options;
        let open = |since| {
            let since = events::since_param(since, o.since_margin);
            info!(endpoint = %self.source.endpoint(), since = %since, "watching Docker events");
            self.source.events(since)
        };
        let backoff = Backoff::new(o.backoff_initial, o.backoff_max).with_jitter();
        let mut stream = Reconnecting::new(open, SystemTime::now(), backoff, o.backoff_max);
        let mut resync = tokio::time::interval(o.resync);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut l = Loop {
            watcher: &self,
            tx: &tx,
            state: State::new(o),
            listing: None,
            inspections: Bounded::new(INSPECTIONS),
            resync,
            hints,
        };
        loop {
            let open = stream.is_open();
            if open {
                l.start_listing();
            }
            // A poll would be a listing: none is due while one is on its way.
            let poll_at = match l.listing {
                None if open => l.state.settler.next_poll(),
                _ => None,
            };
            let expire_at = l.state.overlay.next_expiry().filter(|_| open);
            tokio::select! {
                _ = tx.closed() => return,
                Some(item) = stream.next() => match item {
                    Item::Opened => {
                        if let Err(e) = l.opened().await {
                            stream.end(Some(e));
                            l.ended(true);
                        }
                    }
                    Item::Event(first) => l.on_events(first, &mut stream),
                    Item::Ended { failed } => l.ended(failed),
                },
                done = in_flight(&mut l.listing), if l.listing.is_some() => l.on_listed(done),
                Some(done) = l.inspections.next(|(e, t)| l.watcher.inspect(e, t)),
                    if !l.inspections.is_empty() => {
                    l.on_inspected(done);
                }
                _ = l.resync.tick(), if open => l.on_resync(),
                _ = sleep_until(poll_at), if poll_at.is_some() => l.on_poll_due(),
                _ = sleep_until(expire_at), if expire_at.is_some() => l.on_expiry(),
                u = next_hint(&mut l.hints), if l.hints.is_some() => match u {
                    Some(u) => l.on_hint(u),
                    None => l.hints = None,
                },
            }
        }
    }

    /// Lists everything, or only tasks: of the services in `scope` when it names any (the
    /// services settling), else all of them.
    async fn list(&self, refresh: Refresh, scope: BTreeSet<ServiceId>) -> Listed {
        let requested = Instant::now();
        let deadline = self.options.list_timeout;
        let result = match refresh {
            Refresh::Tasks if !scope.is_empty() => with_deadline(
                "list tasks of services",
                deadline,
                self.source.service_tasks(&scope),
            )
            .await
            .map(|(tasks, times)| Fetched::ServiceTasks(scope, tasks, times)),
            Refresh::Tasks => with_deadline("list tasks", deadline, self.source.tasks())
                .await
                .map(|(tasks, times)| Fetched::Tasks(tasks, times)),
            Refresh::Services if !scope.is_empty() => {
                with_deadline("list services", deadline, self.source.services(&scope))
                    .await
                    .map(|(services, tasks, times)| {
                        Fetched::Services(scope, services, tasks, times)
                    })
            }
            Refresh::Services | Refresh::Full | Refresh::Nothing => {
                with_deadline("list", deadline, self.source.listing())
                    .await
                    .map(|(listing, times, index)| Fetched::All(listing, times, index))
            }
        };
        Listed {
            refresh,
            requested,
            result,
        }
    }
}

/// `call` within `deadline`, a [`SwarmError::Timeout`] naming `op` after it.
async fn with_deadline<T>(
    op: &'static str,
    deadline: Duration,
    call: impl Future<Output = Result<T, SwarmError>>,
) -> Result<T, SwarmError> {
    tokio::time::timeout(deadline, call)
        .await
        .map_err(|_| SwarmError::Timeout {
            op,
            after: deadline,
        })
        .and_then(|r| r)
}

/// The watch loop's state and the work it has in flight; one method per thing that can
/// happen (a `select!` arm in [`Watcher::run`]).
struct Loop<'a> {
    watcher: &'a Watcher,
    tx: &'a watch::Sender<Arc<Snapshot>>,
    state: State,
    /// The listing on its way, if any (one at a time; requests meanwhile are merged into
    /// `state.wanted`). Belongs to one connection of the event stream.
    listing: Option<Pending<'a, Listed>>,
    /// Container inspections of the fast path, at most [`INSPECTIONS`] at once. They outlive a
    /// connection: the events they are for were received.
    inspections: Bounded<(TaskEvent, Option<i64>), Pending<'a, Inspected>>,
    /// Full re-list timer, restarted by every connection's first listing.
    resync: Interval,
    /// Other nodes' hints; `None` without (or once the subscriber is gone).
    hints: Option<mpsc::UnboundedReceiver<RemoteUpdate>>,
}

impl<'a> Loop<'a> {
    fn options(&self) -> &'a WatchOptions {
        &self.watcher.options
    }

    /// A connection opened: its `since` covers anything that happens from here on, so a list
    /// taken now misses nothing (and covers whatever was wanted before). An error ends the
    /// connection.
    async fn opened(&mut self) -> Result<(), SwarmError> {
        self.state.wanted = None;
        let first = self.watcher.list(Refresh::Full, BTreeSet::new()).await;
        self.listed(first)?;
        self.resync.reset();
        Ok(())
    }

    /// The connection ended (`failed`: with an error): the listing on its way belonged to it.
    fn ended(&mut self, failed: bool) {
        self.listing = None;
        self.watcher.observe(|o| {
            o.metrics.event_stream_reconnects.inc();
            if failed {
                o.docker(false);
            }
        });
    }

    /// Starts the wanted listing, unless one is on its way.
    fn start_listing(&mut self) {
        if self.listing.is_some() {
            return;
        }
        if let Some(r) = self.state.wanted.take() {
            // Tasks alone need services and networks from an earlier listing.
            let r = if self.state.cache.is_some() {
                r
            } else {
                Refresh::Full
            };
            // Every service still settling, so that none is judged on an older listing.
            let scope = match r {
                Refresh::Tasks | Refresh::Services => self.state.settler.active_ids(),
                _ => BTreeSet::new(),
            };
            let scope = if scope.len() > SCOPED_POLL_MAX {
                BTreeSet::new()
            } else {
                scope
            };
            self.listing = Some(Box::pin(self.watcher.list(r, scope)));
        }
    }

    /// An event arrived: take whatever else is already there (a burst is one re-list), move
    /// the stream's `since`, and act on the batch.
    fn on_events<S, F>(&mut self, first: events::Event, stream: &mut Reconnecting<S, F>)
    where
        S: futures_util::Stream<Item = Result<events::Event, SwarmError>>,
        F: FnMut(SystemTime) -> S + Unpin,
    {
        let cluster = self.options().service_cluster.as_deref();
        let mut batch = Batch::default();
        note(&first, &mut batch, &self.state, cluster);
        let mut ended = None;
        while stream.is_open() {
            match stream.next().now_or_never() {
                Some(Some(Item::Event(e))) => note(&e, &mut batch, &self.state, cluster),
                Some(Some(Item::Ended { failed })) => ended = Some(failed),
                // Only yielded when a closed stream reopens.
                Some(Some(Item::Opened)) | Some(None) | None => break,
            }
        }
        if let Some(t) = batch.last_time_nano {
            stream.set_since(events::time_from_nanos(t));
        }
        self.apply(batch);
        if let Some(failed) = ended {
            self.ended(failed);
        }
    }

    /// The periodic full re-list, whatever the events said.
    fn on_resync(&mut self) {
        debug!("periodic resync");
        self.watcher.observe(|o| {
            o.metrics.resyncs.inc();
        });
        self.state.want(Refresh::Full);
        self.state.resync_due = true;
    }

    /// A moving service is due a look at its tasks.
    fn on_poll_due(&mut self) {
        self.state.want(Refresh::Tasks);
    }

    fn on_listed(&mut self, done: Listed) {
        self.listing = None;
        let refresh = done.refresh;
        if let Err(e) = self.listed(done) {
            if e.is_not_found() && matches!(refresh, Refresh::Tasks | Refresh::Services) {
                // A service of the listing's filter was removed: expected (the container
                // events of its stopping tasks keep touching it for its grace period, and
                // every service removal on the Swarm, swarm-lb's own secrets copy jobs
                // included, does this), and a full listing follows (`listed`). Not a warning:
                // 170 such lines in 20 s were seen on a busy shared Swarm.
                debug!(error = %e, ?refresh, "a listed service is gone; listing everything");
            } else {
                warn!(error = %e, transient = e.is_transient(), ?refresh, "listing failed");
            }
        }
    }

    /// Another node's agent said something: lay it over the last listing at once, and look
    /// at the service's tasks again soon (a hint about a task not listed yet asks for a
    /// listing now).
    fn on_hint(&mut self, update: RemoteUpdate) {
        let now = Instant::now();
        let cluster = self.options().service_cluster.as_deref();
        let state = &mut self.state;
        match update {
            RemoteUpdate::Reset { node, hints } => {
                let forgot = state.overlay.forget_node(&node);
                let mut kept = 0usize;
                for h in &hints {
                    kept += usize::from(state.record_hint(&node, h, cluster, now));
                }
                info!(node = %node, hints = hints.len(), kept, forgot, "node hints reset");
            }
            RemoteUpdate::Hint { node, hint } => {
                if !state.record_hint(&node, &hint, cluster, now) {
                    return;
                }
                state.settler.touch(&hint.service, now);
                if state.listed(&hint.task).is_none() {
                    state.want(Refresh::Tasks);
                }
                debug!(node = %node, task = %hint.task, service = %hint.service, state = ?hint.state, "node hint");
            }
            RemoteUpdate::Lost { node } => {
                let forgot = state.overlay.lose_node(&node);
                info!(node = %node, forgot, "node hints lost; the task list alone for its tasks");
            }
        }
        if let Some((listing, listed_at)) = &state.cache {
            let dropped = state
                .overlay
                .observe(&listing.snapshot.tasks, *listed_at, now);
            log_dropped(&dropped);
            if publish(self.tx, state.overlay.apply(&listing.snapshot), false) {
                debug!(overlay = state.overlay.len(), "snapshot published");
            }
        }
    }

    /// An overlay entry expired: publish the last listing without it.
    fn on_expiry(&mut self) {
        let dropped = self.state.overlay.expire(Instant::now());
        log_dropped(&dropped);
        republish(self.tx, &self.state);
    }

    /// Marks what a burst of events touched and asks for one re-list; publishes at once what
    /// its task container events say (fast path), inspecting containers where needed.
    fn apply(&mut self, batch: Batch) {
        let now = Instant::now();
        let state = &mut self.state;
        for s in &batch.services {
            state.settler.touch(s, now);
        }
        self.watcher.observe(|o| {
            let at = batch
                .last_time_nano
                .map_or_else(SystemTime::now, events::time_from_nanos);
            o.service_events(&batch.services, at);
        });
        if batch.any_service {
            state.settler.touch_all_unsettled();
        }
        state.want(batch.refresh.unwrap_or(Refresh::Nothing));
        if !self.watcher.options.fast_path {
            return;
        }
        self.fast_path(batch.tasks);
    }

    /// A listing came back: publishes it (with the overlay) if that changed the snapshot,
    /// and updates what is moving.
    fn listed(&mut self, done: Listed) -> Result<(), SwarmError> {
        let Listed {
            refresh,
            requested,
            mut result,
        } = done;
        let now = Instant::now();
        self.watcher.observe(|o| o.docker(result.is_ok()));
        if let Ok(Fetched::All(_, times, _) | Fetched::Tasks(_, times)) = &mut result {
            let times = std::mem::take(times);
            self.watcher.observe(|o| o.task_times(times));
        }
        if let Ok(Fetched::ServiceTasks(_, _, times) | Fetched::Services(_, _, _, times)) =
            &mut result
        {
            // Some services' tasks: the others' timestamps stand.
            let times = std::mem::take(times);
            self.watcher.observe(|o| o.more_task_times(times));
        }
        let state = &mut self.state;
        // The last listing is taken, not copied: a poll or a service event at 3,000 services
        // cloned every service and task of it (6 % of the CPU of a change, measured with perf).
        // Every path that returns early puts it back.
        // The services a listing of some of them read anew (`None`: everything).
        let scope = match &result {
            Ok(Fetched::Services(scope, ..) | Fetched::ServiceTasks(scope, ..)) => {
                Some(scope.clone())
            }
            _ => None,
        };
        let listing = match (result, state.cache.take()) {
            (Ok(Fetched::All(l, _, index)), prev) => {
                state.networks = Some(index);
                // What did not change stays the same shared values (see `convert::share`).
                match prev {
                    Some((prev, _)) => convert::share_listing(&prev.snapshot, l),
                    None => l,
                }
            }
            (Ok(Fetched::Services(scope, raw, tasks, _)), Some((prev, at))) => {
                match &state.networks {
                    Some(index) => convert::merge_services(prev, index, &scope, &raw, tasks),
                    None => {
                        state.cache = Some((prev, at));
                        state.want(Refresh::Full);
                        return Ok(());
                    }
                }
            }
            (Ok(Fetched::Tasks(tasks, _)), Some((prev, _))) => Listing {
                snapshot: Snapshot {
                    tasks: convert::sort_tasks(convert::share(&prev.snapshot.tasks, tasks, |t| {
                        &t.id
                    })),
                    ..prev.snapshot
                },
                progress: prev.progress,
            },
            (Ok(Fetched::ServiceTasks(scope, tasks, _)), Some((prev, _))) => Listing {
                snapshot: Snapshot {
                    tasks: convert::merge_service_tasks(prev.snapshot.tasks, &scope, tasks),
                    ..prev.snapshot
                },
                progress: prev.progress,
            },
            // Only a full listing is taken before the first one succeeds.
            (Ok(Fetched::Tasks(..) | Fetched::ServiceTasks(..) | Fetched::Services(..)), None) => {
                state.want(Refresh::Full);
                return Ok(());
            }
            (Err(e), cache) => {
                state.cache = cache;
                if matches!(refresh, Refresh::Tasks | Refresh::Services) && !e.is_transient() {
                    // A service of the poll's filter is gone (Docker answers 404): its
                    // removal event asks for everything anyway; do not wait for it.
                    state.want(Refresh::Full);
                }
                // Counts as a poll, so a failing engine is retried at the poll interval,
                // not in a tight loop.
                state.settler.listed_at(now);
                return Err(e);
            }
        };
        let dropped = state
            .overlay
            .observe(&listing.snapshot.tasks, requested, now);
        log_dropped(&dropped);
        let snap = state.overlay.apply(&listing.snapshot);
        let (services, tasks, networks) =
            (snap.services.len(), snap.tasks.len(), snap.networks.len());
        let changed = publish(self.tx, snap, !state.published);
        // A full listing after the resync asked for one: did it find what events missed?
        let resync_found = refresh == Refresh::Full && std::mem::take(&mut state.resync_due);
        if resync_found && changed && state.published {
            info!(
                services,
                tasks, "the periodic resync changed the snapshot: a change no event brought"
            );
            self.watcher.observe(|o| {
                o.metrics.resync_changes.inc();
            });
        }
        state.published = true;
        if changed {
            debug!(
                services,
                tasks,
                networks,
                list_us = fields::us(now.duration_since(requested)),
                moving = state.settler.watching(),
                overlay = state.overlay.len(),
                "snapshot published"
            );
        }
        for outcome in state.settler.observe(&listing, scope.as_ref(), now) {
            match outcome {
                Outcome::Settled { service, after } => {
                    debug!(service = %service, after_ms = fields::ms(after), "service settled")
                }
                Outcome::GaveUp { service, after } => warn!(
                    service = %service,
                    after_ms = fields::ms(after),
                    "service did not settle; polling stops until its next event"
                ),
            }
        }
        state.cache = Some((listing, requested));
        Ok(())
    }
}

/// The next hint; never ready without a receiver.
async fn next_hint(
    hints: &mut Option<mpsc::UnboundedReceiver<RemoteUpdate>>,
) -> Option<RemoteUpdate> {
    match hints.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The listing on its way; never ready without one.
async fn in_flight<T>(listing: &mut Option<Pending<'_, T>>) -> T {
    match listing.as_mut() {
        Some(l) => l.await,
        None => std::future::pending().await,
    }
}

fn log_dropped(dropped: &[Dropped]) {
    for d in dropped {
        let age_ms = fields::ms(d.age);
        match d.reason {
            Reason::Agreed => {
                debug!(task = %d.task, service = %d.service, age_ms, "task list caught up with the fast path")
            }
            Reason::Expired => warn!(
                task = %d.task,
                service = %d.service,
                age_ms,
                "the task list never showed what the container events said; dropped"
            ),
        }
    }
}

/// Publishes the last listing with the overlay as it is now (after an expiry).
fn republish(tx: &watch::Sender<Arc<Snapshot>>, state: &State) {
    if let Some((listing, _)) = &state.cache {
        if publish(tx, state.overlay.apply(&listing.snapshot), false) {
            debug!(overlay = state.overlay.len(), "snapshot published");
        }
    }
}

/// Adds one event to the batch. A container event of a service this proxy cannot route
/// (by the last listing) only moves `since`: on a busy node other workloads' tasks would
/// otherwise cost a task list, and container inspections, each.
fn note(e: &events::Event, batch: &mut Batch, state: &State, cluster: Option<&str>) {
    let foreign = state.foreign(e, cluster);
    debug!(
        kind = %e.kind,
        action = %e.action,
        actor = %e.actor,
        service = e.service.as_deref().unwrap_or(""),
        foreign,
        "docker event"
    );
    if foreign {
        batch.saw(e);
    } else {
        batch.add(e);
    }
}

/// Sends `snap` if it differs from what the channel holds (or if `force`); true if sent.
fn publish(tx: &watch::Sender<Arc<Snapshot>>, snap: Snapshot, force: bool) -> bool {
    tx.send_if_modified(|cur| {
        if !force && **cur == snap {
            return false;
        }
        *cur = Arc::new(snap);
        true
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::fixtures::numbered as snap;
    use crate::swarm::source::memory;

    #[test]
    fn an_unchanged_snapshot_is_not_sent_again() {
        let (tx, mut rx) = watch::channel(Arc::new(Snapshot::default()));
        assert!(publish(&tx, snap(1), false));
        assert!(rx.has_changed().expect("open"));
        rx.borrow_and_update();
        assert!(!publish(&tx, snap(1), false));
        assert!(!rx.has_changed().expect("open"));
        assert!(publish(&tx, snap(2), false));
        assert_eq!(rx.borrow_and_update().networks.len(), 2);
    }

    #[test]
    fn the_first_snapshot_is_sent_even_if_equal_to_the_initial_value() {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        assert!(publish(&tx, Snapshot::default(), true));
        assert!(rx.has_changed().expect("open"));
    }

    #[test]
    fn a_container_event_of_a_service_this_proxy_cannot_route_only_moves_the_stream_position() {
        use crate::model::{labels, Service};
        let service = |id: &str, labels: &[(&str, &str)]| Service {
            id: id.into(),
            name: id.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            networks: vec![],
            vips: vec![],
        };
        let mut state = State {
            settler: Settler::new(SettleOptions::default(), None),
            cache: None,
            networks: None,
            wanted: None,
            overlay: Overlay::new(Duration::from_secs(30)),
            healthchecks: Healthchecks::new(8),
            published: false,
            resync_due: false,
        };
        let listing = Listing {
            snapshot: Snapshot {
                services: crate::model::shared(vec![
                    service("routed", &[(labels::HOSTS, "a.example")]),
                    service("plain", &[("other", "x")]),
                    service(
                        "elsewhere",
                        &[(labels::HOSTS, "b.example"), (labels::SERVICE_CLUSTER, "b")],
                    ),
                ]),
                ..Snapshot::default()
            },
            progress: Default::default(),
        };
        let container_event = |service: &str, t: i64| events::Event {
            kind: EventKind::Container,
            action: "start".into(),
            actor: "c1".into(),
            refresh: Refresh::Tasks,
            service: Some(service.into()),
            time_nano: Some(t),
            task: None,
        };

        let mut batch = Batch::default();
        note(&container_event("plain", 1), &mut batch, &state, None);
        assert_eq!(batch.refresh, Some(Refresh::Tasks), "nothing listed yet");

        state.cache = Some((listing, Instant::now()));
        for (i, foreign) in ["plain", "elsewhere"].into_iter().enumerate() {
            let mut batch = Batch::default();
            note(
                &container_event(foreign, 10 + i as i64),
                &mut batch,
                &state,
                None,
            );
            assert_eq!(
                (batch.refresh, batch.services.len(), batch.last_time_nano),
                (None, 0, Some(10 + i as i64)),
                "{foreign}"
            );
        }
        for kept in ["routed", "new-service"] {
            let mut batch = Batch::default();
            note(&container_event(kept, 20), &mut batch, &state, None);
            assert_eq!(batch.refresh, Some(Refresh::Tasks), "{kept}");
            assert!(batch.services.contains(kept));
        }
        let mut batch = Batch::default();
        note(
            &container_event("elsewhere", 30),
            &mut batch,
            &state,
            Some("b"),
        );
        assert_eq!(batch.refresh, Some(Refresh::Tasks), "routable by cluster b");
        let mut batch = Batch::default();
        let mut service_event = container_event("plain", 40);
        service_event.kind = EventKind::Service;
        service_event.refresh = Refresh::Full;
        note(&service_event, &mut batch, &state, None);
        assert_eq!(
            batch.refresh,
            Some(Refresh::Full),
            "a service event may make it routable"
        );
    }

    /// A watcher of `engine` with a short reconnect backoff, publishing on a new channel.
    fn watch(
        engine: &memory::Engine,
        options: WatchOptions,
    ) -> (
        Watcher,
        watch::Sender<Arc<Snapshot>>,
        watch::Receiver<Arc<Snapshot>>,
    ) {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let options = WatchOptions {
            backoff_initial: Duration::from_millis(10),
            ..options
        };
        (Watcher::of(Box::new(engine.clone()), options), tx, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_resync_that_finds_a_change_no_event_brought_counts_it_and_one_that_finds_none_does_not(
    ) {
        // A stream that stays open and says nothing.
        let (_silent, script) = tokio::sync::oneshot::channel::<String>();
        let (engine, _opened) = memory::Engine::new([script]);
        let options = WatchOptions {
            resync: Duration::from_secs(30),
            ..WatchOptions::default()
        };
        let (watcher, tx, mut rx) = watch(&engine, options);
        let observer = Arc::new(Observer::default());
        let run = tokio::spawn(watcher.with_observer(Arc::clone(&observer)).run(tx));
        let within = Duration::from_secs(10);
        tokio::time::timeout(within, rx.changed())
            .await
            .expect("first snapshot")
            .expect("open");
        let count = || observer.metrics.resync_changes.get();
        // Resyncs of an unchanged Swarm: nothing found.
        tokio::time::sleep(Duration::from_secs(65)).await;
        assert_eq!(count(), 0);
        assert!(observer.metrics.resyncs.get() >= 2);
        // A task goes without any event: the next resync finds it, once.
        let tasks: Vec<serde_json::Value> = serde_json::from_str(memory::TASKS).expect("fixture");
        *engine.tasks.lock().expect("tasks") = serde_json::to_string(&tasks[1..]).expect("json");
        tokio::time::timeout(Duration::from_secs(40), rx.changed())
            .await
            .expect("the resync's snapshot")
            .expect("open");
        assert_eq!(rx.borrow_and_update().tasks.len(), 4);
        assert_eq!(count(), 1);
        tokio::time::sleep(Duration::from_secs(65)).await;
        assert_eq!(count(), 1, "later resyncs found nothing new");
        drop(rx);
        run.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_relists_and_a_dropped_stream_reconnects_since_the_last_event() {
        use tokio::sync::oneshot;

        let (release, script) = oneshot::channel::<String>();
        let (engine, mut opened) = memory::Engine::new([script]);
        let (watcher, tx, mut rx) = watch(&engine, WatchOptions::default());
        let run = tokio::spawn(watcher.run(tx));
        let within = Duration::from_secs(10);

        // The stream is opened (since = now - margin) before the first listing.
        let first = tokio::time::timeout(within, opened.recv())
            .await
            .expect("events request")
            .expect("open");
        let since: f64 = first.parse().expect("since is seconds.nanos");
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!(
            (now - 1.0 - since).abs() < 5.0,
            "since {since} vs now {now}"
        );
        tokio::time::timeout(within, rx.changed())
            .await
            .expect("first snapshot")
            .expect("open");
        assert_eq!(rx.borrow_and_update().tasks.len(), 5);

        // A task disappears; an event says the service changed; then the stream drops.
        let tasks: Vec<serde_json::Value> = serde_json::from_str(memory::TASKS).expect("fixture");
        *engine.tasks.lock().expect("tasks") = serde_json::to_string(&tasks[1..]).expect("json");
        let event = r#"{"Type":"service","Action":"update","Actor":{"ID":"btrao17gkwp6g12j40iqj7crs","Attributes":{"name":"fx-web"}},"scope":"swarm","time":1795729106,"timeNano":1795729106712866649}"#;
        release.send(event.to_string()).expect("engine waiting");
        tokio::time::timeout(within, rx.changed())
            .await
            .expect("snapshot after the event")
            .expect("open");
        assert_eq!(rx.borrow_and_update().tasks.len(), 4);

        let second = tokio::time::timeout(within, opened.recv())
            .await
            .expect("reconnect")
            .expect("open");
        assert_eq!(second, "1795729105.712866649");

        drop(rx);
        tokio::time::timeout(within, run)
            .await
            .expect("stops without receivers")
            .expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_containers_start_kill_and_die_are_published_before_the_task_list_shows_them() {
        use crate::model::{DesiredTaskState, TaskState};
        use tokio::sync::oneshot;

        const TASK: &str = "l4jr87dy66e2q3hp643mbj1h6";
        // The manager has not caught up: the list says starting, all along.
        let mut tasks: Vec<serde_json::Value> =
            serde_json::from_str(memory::TASKS).expect("fixture");
        for t in &mut tasks {
            if t["ID"] == TASK {
                t["Status"]["State"] = "starting".into();
            }
        }
        let mut container: serde_json::Value =
            serde_json::from_str(memory::CONTAINER).expect("fixture");
        container["State"] = serde_json::json!({"Running": true});
        let (releases, scripts): (Vec<_>, Vec<_>) =
            (0..3).map(|_| oneshot::channel::<String>()).unzip();
        let (engine, _opened) = memory::Engine::new(scripts);
        *engine.tasks.lock().expect("tasks") = serde_json::to_string(&tasks).expect("json");
        *engine.container.lock().expect("container") = container.to_string();
        let (watcher, tx, mut rx) = watch(&engine, WatchOptions::default());
        let run = tokio::spawn(watcher.run(tx));
        let within = Duration::from_secs(10);
        type View = (TaskState, DesiredTaskState, usize);
        fn view(s: &Snapshot) -> Option<View> {
            s.tasks
                .iter()
                .find(|t| t.id == TASK)
                .map(|t| (t.state, t.desired_state, t.addresses.len()))
        }
        async fn wait(rx: &mut watch::Receiver<Arc<Snapshot>>, want: View, what: &str) {
            let seen = tokio::time::timeout(Duration::from_secs(10), async {
                while view(&rx.borrow_and_update()) != Some(want) {
                    rx.changed().await.expect("watcher running");
                }
            })
            .await;
            assert!(seen.is_ok(), "{what}: last {:?}", view(&rx.borrow()));
        }
        wait(
            &mut rx,
            (TaskState::Starting, DesiredTaskState::Running, 1),
            "first listing",
        )
        .await;

        // The start event from the capture; kill and die of the same container.
        let start: serde_json::Value =
            serde_json::from_str(memory::EVENTS.lines().nth(3).expect("start line")).expect("json");
        let mut kill = start.clone();
        kill["Action"] = "kill".into();
        kill["Actor"]["Attributes"]["signal"] = "15".into();
        let mut die = start.clone();
        die["Action"] = "die".into();
        let mut releases = releases.into_iter();
        let mut send = |event: serde_json::Value| {
            releases
                .next()
                .expect("a script left")
                .send(event.to_string())
                .expect("engine waiting")
        };
        send(start);
        wait(
            &mut rx,
            (TaskState::Running, DesiredTaskState::Running, 1),
            "running on the start event",
        )
        .await;
        send(kill);
        wait(
            &mut rx,
            (TaskState::Running, DesiredTaskState::Shutdown, 1),
            "draining on the kill event",
        )
        .await;
        send(die);
        wait(
            &mut rx,
            (TaskState::Finished, DesiredTaskState::Shutdown, 1),
            "finished on the die event",
        )
        .await;

        drop(rx);
        tokio::time::timeout(within, run)
            .await
            .expect("stops without receivers")
            .expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn another_nodes_death_hint_takes_a_listed_task_out_at_once_and_outlives_a_lost_stream_but_not_a_reset(
    ) {
        use crate::hints::subscribe::RemoteUpdate;
        use crate::hints::{Hint, HintState};
        use crate::model::TaskState;

        const TASK: &str = "l4jr87dy66e2q3hp643mbj1h6";
        const SERVICE: &str = "btrao17gkwp6g12j40iqj7crs";
        let (engine, _opened) = memory::Engine::new([]);
        let (hints, hints_rx) = mpsc::unbounded_channel();
        let (watcher, tx, mut rx) = watch(&engine, WatchOptions::default());
        let run = tokio::spawn(watcher.with_hints(hints_rx).run(tx));
        let state = |s: &Snapshot| s.tasks.iter().find(|t| t.id == TASK).map(|t| t.state);
        async fn wait(
            rx: &mut watch::Receiver<Arc<Snapshot>>,
            f: impl Fn(&Snapshot) -> bool,
            what: &str,
        ) {
            let seen = tokio::time::timeout(Duration::from_secs(10), async {
                while !f(&rx.borrow_and_update()) {
                    rx.changed().await.expect("watcher running");
                }
            })
            .await;
            assert!(seen.is_ok(), "{what}");
        }
        wait(
            &mut rx,
            |s| state(s) == Some(TaskState::Running),
            "listed running",
        )
        .await;
        let dead = |task: &str| Hint {
            task: task.into(),
            service: SERVICE.into(),
            slot: Some(1),
            state: HintState::Dead,
            addresses: vec![],
        };
        hints
            .send(RemoteUpdate::Hint {
                node: "n2".into(),
                hint: dead(TASK),
            })
            .expect("watcher listening");
        wait(
            &mut rx,
            |s| state(s) == Some(TaskState::Finished),
            "out on the hint",
        )
        .await;
        // A hint about a task the list does not hold adds nothing.
        let mut unknown = dead("nosuchtask");
        unknown.state = HintState::Running;
        hints
            .send(RemoteUpdate::Hint {
                node: "n2".into(),
                hint: unknown,
            })
            .expect("watcher listening");
        hints
            .send(RemoteUpdate::Lost { node: "n2".into() })
            .expect("watcher listening");
        // Another node's hint after it: seen only once the loss was handled (one channel).
        const OTHER: &str = "3ltsl1813b3uzm46aipmnoqwr";
        hints
            .send(RemoteUpdate::Hint {
                node: "n9".into(),
                hint: dead(OTHER),
            })
            .expect("watcher listening");
        let other = |s: &Snapshot| s.tasks.iter().find(|t| t.id == OTHER).map(|t| t.state);
        wait(
            &mut rx,
            |s| other(s) == Some(TaskState::Finished),
            "the sync hint",
        )
        .await;
        assert_eq!(
            state(&rx.borrow_and_update()),
            Some(TaskState::Finished),
            "a death seen stays seen when the stream is lost"
        );
        assert_eq!(rx.borrow().tasks.len(), 5, "nothing added");
        // The agent back with a reset that no longer holds it: the list's view again.
        hints
            .send(RemoteUpdate::Reset {
                node: "n2".into(),
                hints: vec![],
            })
            .expect("watcher listening");
        wait(
            &mut rx,
            |s| state(s) == Some(TaskState::Running) && s.tasks.len() == 5,
            "the list's view again, nothing added",
        )
        .await;
        drop(rx);
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("stops without receivers")
            .expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_to_poll_sleeps_forever() {
        let mut idle = Box::pin(sleep_until(None));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(futures_util::poll!(idle.as_mut()).is_pending());
        let at = Instant::now() + Duration::from_millis(25);
        let mut due = Box::pin(sleep_until(Some(at)));
        assert!(futures_util::poll!(due.as_mut()).is_pending());
        tokio::time::advance(Duration::from_millis(25)).await;
        assert!(futures_util::poll!(due.as_mut()).is_ready());
    }
}
