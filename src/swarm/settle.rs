//! Which services are still moving, and when to look again. Pure: time is passed in.
//!
//! Swarm emits no task events, so after something touches a service the watcher lists tasks
//! at a short interval until the service settles: no task on its way to running, none
//! running that Swarm is stopping, as many running as the service asks for, no rolling
//! update in progress. A service that does not settle within the timeout is given up on
//! (a warning), until another event touches it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::convert::{Listing, ServiceProgress};
use crate::model::{
    labels, tasks_by_service, DesiredTaskState, Service, ServiceId, Task, TaskState,
};

/// How a service is polled while it settles (Swarm emits no task events). Each interval has
/// one name, from the CLI flag (`--settle-poll-ms`, `--settle-burst-ms`) to here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleOptions {
    /// Poll interval in the first moments after a touch: the orchestrator marks the tasks it
    /// stops (desired shutdown) some milliseconds after the service update event, so the
    /// listing taken at the event usually misses it.
    pub burst: Duration,
    /// How long after the last touch to poll at `burst`.
    pub burst_for: Duration,
    /// Poll interval after the burst.
    pub poll: Duration,
    /// How long after the last touch to keep polling at `poll`.
    pub poll_for: Duration,
    /// Poll interval after that, until the timeout (e.g. an image being loaded).
    pub poll_slow: Duration,
    /// Give up on a service that has not settled after this long (warns).
    pub timeout: Duration,
    /// A touched service is watched at least this long even if it looks settled at once:
    /// the listing right after a service update can predate the orchestrator's reaction.
    pub grace: Duration,
}

impl SettleOptions {
    /// The default `poll` (and `--settle-poll-ms`'s).
    pub const POLL: Duration = Duration::from_millis(25);
    /// The default `burst` (and `--settle-burst-ms`'s).
    pub const BURST: Duration = Duration::from_millis(5);

    /// The defaults with these two intervals (the CLI's flags); a `burst` of zero turns the
    /// burst off (`burst_for` zero too).
    pub fn polling(poll: Duration, burst: Duration) -> Self {
        let default = SettleOptions::default();
        SettleOptions {
            poll,
            burst,
            burst_for: if burst.is_zero() {
                Duration::ZERO
            } else {
                default.burst_for
            },
            ..default
        }
    }
}

impl Default for SettleOptions {
    fn default() -> Self {
        SettleOptions {
            burst: Self::BURST,
            burst_for: Duration::from_millis(50),
            poll: Self::POLL,
            poll_for: Duration::from_secs(5),
            poll_slow: Duration::from_millis(250),
            timeout: Duration::from_secs(60),
            grace: Duration::from_millis(250),
        }
    }
}

/// A change in what is being watched, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Settled { service: ServiceId, after: Duration },
    GaveUp { service: ServiceId, after: Duration },
}

#[derive(Debug)]
pub(super) struct Settler {
    opts: SettleOptions,
    /// Service -> (watched since, last touched).
    active: BTreeMap<ServiceId, (Instant, Instant)>,
    gave_up: BTreeSet<ServiceId>,
    last_list: Option<Instant>,
    /// The service cluster this proxy serves: see [`routable`].
    cluster: Option<String>,
}

/// Whether this proxy could route `service` ([`labels::routed_here`]). Services it cannot
/// route are never polled for: on a busy node their churn would otherwise keep the watcher
/// listing every 25 ms for nothing.
pub(super) fn routable(service: &Service, cluster: Option<&str>) -> bool {
    labels::routed_here(service, cluster)
}

impl Settler {
    pub fn new(opts: SettleOptions, cluster: Option<String>) -> Settler {
        Settler {
            opts,
            active: BTreeMap::new(),
            gave_up: BTreeSet::new(),
            last_list: None,
            cluster,
        }
    }

    /// An event changed this service: watch it (again), even if it was given up on.
    pub fn touch(&mut self, service: &str, now: Instant) {
        self.gave_up.remove(service);
        self.active
            .entry(service.to_string())
            .and_modify(|(_, touched)| *touched = now)
            .or_insert((now, now));
    }

    /// A node changed: watch every service that is not settled in the next listing.
    pub fn touch_all_unsettled(&mut self) {
        self.gave_up.clear();
    }

    /// Feeds a fresh listing (taken at `now`): drops services that settled or timed out, and
    /// starts watching any unsettled service not given up on (a change this node saw no
    /// event for, e.g. a task failing on another node, found by a resync).
    ///
    /// `scope`: the services whose tasks the listing read anew (a poll of some services, a
    /// service event), `None` for a whole listing. Only those and the services watched are
    /// looked at then: the others' tasks are the last whole listing's, already looked at (at
    /// 10,000 services a poll otherwise grouped 30,000 tasks and judged every service).
    pub fn observe(
        &mut self,
        listing: &Listing,
        scope: Option<&BTreeSet<ServiceId>>,
        now: Instant,
    ) -> Vec<Outcome> {
        self.last_list = Some(now);
        let relevant: Option<HashSet<String>> = scope.map(|scope| {
            scope
                .iter()
                .chain(self.active.keys())
                .chain(&self.gave_up)
                .cloned()
                .collect()
        });
        let in_view = |id: &str| relevant.as_ref().map_or(true, |r| r.contains(id));
        let by_service = tasks_by_service(&listing.snapshot.tasks, in_view);
        let no_tasks: Vec<&Arc<Task>> = Vec::new();
        let settled = |id: &str| {
            let progress = listing
                .progress
                .get(id)
                .copied()
                .unwrap_or(ServiceProgress {
                    // A service that is gone wants no task.
                    desired_tasks: Some(0),
                    updating: false,
                });
            is_settled(progress, by_service.get(id).unwrap_or(&no_tasks))
        };

        let cluster = self.cluster.as_deref();
        let unroutable: BTreeSet<&str> = listing
            .snapshot
            .services
            .iter()
            .filter(|s| in_view(&s.id) && !routable(s, cluster))
            .map(|s| s.id.as_str())
            .collect();
        let mut outcomes = Vec::new();
        let opts = self.opts;
        self.active.retain(|id, (since, touched)| {
            if unroutable.contains(id.as_str()) {
                // Listed once for its event; nothing here depends on it settling.
                return false;
            }
            let after = now.saturating_duration_since(*since);
            if now.saturating_duration_since(*touched) >= opts.grace && settled(id) {
                outcomes.push(Outcome::Settled {
                    service: id.clone(),
                    after,
                });
                false
            } else if after >= opts.timeout {
                outcomes.push(Outcome::GaveUp {
                    service: id.clone(),
                    after,
                });
                self.gave_up.insert(id.clone());
                false
            } else {
                true
            }
        });
        self.gave_up.retain(|id| !settled(id));

        let candidates: Vec<&str> = match scope {
            None => listing
                .snapshot
                .services
                .iter()
                .map(|s| s.id.as_str())
                .chain(by_service.keys().copied())
                .collect(),
            Some(scope) => scope.iter().map(String::as_str).collect(),
        };
        for id in candidates {
            if !unroutable.contains(id)
                && !self.active.contains_key(id)
                && !self.gave_up.contains(id)
                && !settled(id)
            {
                self.active.insert(id.to_string(), (now, now));
            }
        }
        outcomes
    }

    /// A listing was attempted at `now` and failed: the next poll waits a full interval.
    pub fn listed_at(&mut self, now: Instant) {
        self.last_list = Some(now);
    }

    /// When to list tasks next; `None` when nothing is moving (no polling at all).
    pub fn next_poll(&self) -> Option<Instant> {
        let last_touch = self.active.values().map(|(_, touched)| *touched).max()?;
        let Some(last_list) = self.last_list else {
            return Some(last_touch);
        };
        let since_touch = last_list.saturating_duration_since(last_touch);
        let interval = if since_touch < self.opts.burst_for {
            self.opts.burst
        } else if since_touch < self.opts.poll_for {
            self.opts.poll
        } else {
            self.opts.poll_slow
        };
        Some(last_list + interval)
    }

    pub fn watching(&self) -> usize {
        self.active.len()
    }

    /// The services being watched (polled until they settle).
    pub fn active_ids(&self) -> BTreeSet<ServiceId> {
        self.active.keys().cloned().collect()
    }
}

/// No task on its way to running, none running that Swarm is stopping, the running count
/// as asked, no rolling update. A task starting that Swarm no longer wants (desired
/// shutdown) will never serve, so it does not hold a service unsettled.
pub(super) fn is_settled(progress: ServiceProgress, tasks: &[&Arc<Task>]) -> bool {
    if progress.updating {
        return false;
    }
    let mut running = 0u64;
    for t in tasks {
        match (t.state, t.desired_state) {
            (TaskState::Starting, DesiredTaskState::Running) => return false,
            (TaskState::Running, DesiredTaskState::Shutdown) => return false,
            (TaskState::Running, DesiredTaskState::Running) => running += 1,
            _ => {}
        }
    }
    match progress.desired_tasks {
        Some(n) => n == running,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Service, Snapshot};

    const MS: Duration = Duration::from_millis(1);

    fn opts() -> SettleOptions {
        SettleOptions {
            burst: 5 * MS,
            burst_for: 50 * MS,
            poll: 25 * MS,
            poll_for: 5000 * MS,
            poll_slow: 250 * MS,
            timeout: 60_000 * MS,
            grace: 200 * MS,
        }
    }

    fn task(id: &str, svc: &str, state: TaskState, desired: DesiredTaskState) -> Task {
        Task {
            id: id.into(),
            service_id: svc.into(),
            slot: None,
            state,
            desired_state: desired,
            addresses: vec![],
        }
    }

    fn listing(replicas: u64, tasks: Vec<Task>) -> Listing {
        Listing {
            snapshot: Snapshot {
                services: crate::model::shared(vec![Service {
                    id: "s".into(),
                    name: "s".into(),
                    labels: [(labels::HOSTS.to_owned(), "s.example".to_owned())].into(),
                    networks: vec![],
                    vips: vec![],
                }]),
                tasks: crate::model::shared(tasks),
                networks: vec![],
            },
            progress: BTreeMap::from([(
                "s".to_string(),
                ServiceProgress {
                    desired_tasks: Some(replicas),
                    updating: false,
                },
            )]),
        }
    }

    use DesiredTaskState::{Running as WantRun, Shutdown as WantStop};
    use TaskState::{Finished, Running, Starting};

    #[test]
    fn a_service_is_settled_only_when_its_tasks_are_where_it_wants_them() {
        let p = |n| ServiceProgress {
            desired_tasks: Some(n),
            updating: false,
        };
        let run = Arc::new(task("a", "s", Running, WantRun));
        let old = Arc::new(task("o", "s", Finished, WantStop));
        assert!(is_settled(p(1), &[&run, &old]));
        assert!(!is_settled(p(2), &[&run]), "one task missing");
        assert!(!is_settled(p(0), &[&run]), "one task too many");
        assert!(!is_settled(
            p(1),
            &[&run, &Arc::new(task("b", "s", Starting, WantRun))]
        ));
        assert!(!is_settled(
            p(1),
            &[&run, &Arc::new(task("b", "s", Running, WantStop))]
        ));
        assert!(is_settled(
            p(1),
            &[&run, &Arc::new(task("b", "s", Starting, WantStop))]
        ));
        let updating = ServiceProgress {
            desired_tasks: Some(1),
            updating: true,
        };
        assert!(!is_settled(updating, &[&run]));
        let unknown = ServiceProgress {
            desired_tasks: None,
            updating: false,
        };
        assert!(is_settled(unknown, &[&run, &run]));
    }

    #[test]
    fn nothing_touched_and_all_settled_means_no_polling() {
        let now = Instant::now();
        let mut s = Settler::new(opts(), None);
        let out = s.observe(
            &listing(1, vec![task("a", "s", Running, WantRun)]),
            None,
            now,
        );
        assert_eq!(out, vec![]);
        assert_eq!(s.next_poll(), None);
    }

    #[test]
    fn a_touched_service_is_polled_in_a_burst_then_fast_until_it_settles_after_the_grace() {
        let t0 = Instant::now();
        let mut s = Settler::new(opts(), None);
        s.touch("s", t0);
        assert_eq!(s.next_poll(), Some(t0), "first listing at once");
        let starting = listing(
            2,
            vec![
                task("a", "s", Running, WantRun),
                task("b", "s", Starting, WantRun),
            ],
        );
        assert_eq!(s.observe(&starting, None, t0), vec![]);
        assert_eq!(
            s.next_poll(),
            Some(t0 + 5 * MS),
            "a burst right after the touch"
        );
        assert_eq!(s.observe(&starting, None, t0 + 45 * MS), vec![]);
        assert_eq!(s.next_poll(), Some(t0 + 50 * MS));
        assert_eq!(s.observe(&starting, None, t0 + 50 * MS), vec![]);
        assert_eq!(s.next_poll(), Some(t0 + 75 * MS), "then the fast interval");
        let done = listing(
            2,
            vec![
                task("a", "s", Running, WantRun),
                task("b", "s", Running, WantRun),
            ],
        );
        assert_eq!(
            s.observe(&done, None, t0 + 100 * MS),
            vec![],
            "still in the grace period"
        );
        assert_eq!(
            s.observe(&done, None, t0 + 200 * MS),
            vec![Outcome::Settled {
                service: "s".into(),
                after: 200 * MS
            }]
        );
        assert_eq!(s.next_poll(), None);
    }

    #[test]
    fn polling_slows_down_after_the_fast_window_and_gives_up_at_the_timeout() {
        let t0 = Instant::now();
        let mut s = Settler::new(opts(), None);
        s.touch("s", t0);
        let stuck = listing(1, vec![task("b", "s", Starting, WantRun)]);
        s.observe(&stuck, None, t0 + 6000 * MS);
        assert_eq!(s.next_poll(), Some(t0 + 6250 * MS));
        let out = s.observe(&stuck, None, t0 + 60_000 * MS);
        assert_eq!(
            out,
            vec![Outcome::GaveUp {
                service: "s".into(),
                after: 60_000 * MS
            }]
        );
        assert_eq!(s.next_poll(), None);
        // A resync that finds it still stuck does not start polling again...
        assert_eq!(s.observe(&stuck, None, t0 + 90_000 * MS), vec![]);
        assert_eq!(s.watching(), 0);
        // ...but a new event does.
        s.touch("s", t0 + 91_000 * MS);
        assert_eq!(s.watching(), 1);
    }

    #[test]
    fn a_resync_that_finds_a_service_moving_starts_watching_it() {
        let t0 = Instant::now();
        let mut s = Settler::new(opts(), None);
        s.observe(
            &listing(2, vec![task("a", "s", Running, WantRun)]),
            None,
            t0,
        );
        assert_eq!(s.watching(), 1);
        assert_eq!(s.next_poll(), Some(t0 + 5 * MS));
    }

    #[test]
    fn a_removed_service_settles_once_its_tasks_are_gone() {
        let t0 = Instant::now();
        let mut s = Settler::new(opts(), None);
        s.touch("s", t0);
        let mut gone = listing(0, vec![task("a", "s", Running, WantStop)]);
        gone.snapshot.services.clear();
        gone.progress.clear();
        assert_eq!(s.observe(&gone, None, t0 + 300 * MS), vec![]);
        Arc::make_mut(&mut gone.snapshot.tasks[0]).state = Finished;
        assert!(matches!(
            s.observe(&gone, None, t0 + 400 * MS)[..],
            [Outcome::Settled { .. }]
        ));
    }

    #[test]
    fn a_listing_of_other_services_leaves_an_unsettled_service_to_the_next_whole_listing() {
        let t0 = Instant::now();
        let mut s = Settler::new(opts(), None);
        let stuck = listing(1, vec![task("b", "s", Starting, WantRun)]);
        let others = BTreeSet::from(["other".to_owned()]);
        s.observe(&stuck, Some(&others), t0);
        assert_eq!(s.watching(), 0, "not read anew by this listing");
        let mine = BTreeSet::from(["s".to_owned()]);
        s.observe(&stuck, Some(&mine), t0);
        assert_eq!(s.watching(), 1, "read anew: watched");
        let mut fresh = Settler::new(opts(), None);
        fresh.observe(&stuck, None, t0);
        assert_eq!(
            fresh.watching(),
            1,
            "a whole listing looks at every service"
        );
    }

    #[test]
    fn a_new_touch_restarts_the_burst() {
        let t0 = Instant::now();
        let mut s = Settler::new(opts(), None);
        s.touch("s", t0);
        let stuck = listing(1, vec![task("b", "s", Starting, WantRun)]);
        s.observe(&stuck, None, t0 + 7000 * MS);
        assert_eq!(s.next_poll(), Some(t0 + 7250 * MS));
        s.touch("s", t0 + 7100 * MS);
        s.observe(&stuck, None, t0 + 7100 * MS);
        assert_eq!(s.next_poll(), Some(t0 + 7105 * MS));
    }

    #[test]
    fn a_service_this_proxy_cannot_route_is_never_polled_for() {
        let moving = vec![task("t1", "s", Starting, WantRun)];
        let mut other_cluster = listing(1, moving.clone());
        Arc::make_mut(&mut other_cluster.snapshot.services[0])
            .labels
            .insert(labels::SERVICE_CLUSTER.to_owned(), "other".to_owned());
        let mut unlabelled = listing(1, moving.clone());
        Arc::make_mut(&mut unlabelled.snapshot.services[0])
            .labels
            .clear();
        for l in [other_cluster, unlabelled] {
            let mut s = Settler::new(opts(), None);
            let now = Instant::now();
            s.touch("s", now);
            s.observe(&l, None, now);
            assert_eq!(s.watching(), 0);
            assert_eq!(s.next_poll(), None);
        }
        // The same moving service, routable here, is polled.
        let mut s = Settler::new(opts(), None);
        s.observe(&listing(1, moving), None, Instant::now());
        assert_eq!(s.watching(), 1);
    }
}
