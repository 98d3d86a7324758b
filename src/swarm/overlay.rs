//! The fast path's overlay: what this node's container events said about Swarm tasks before
//! the task list says it. Pure: no I/O, time is passed in.
//!
//! Swarm's manager writes task states in batches (see docs/several-nodes.md for how long), so `GET /tasks` shows
//! a task `running` tens of milliseconds after its container started; container events are
//! local and immediate. The overlay keeps, per task, what the events established, and is laid
//! over every listing. The task list stays the source of truth:
//! - Views merge monotonically. A task's state only advances (starting, running, finished)
//!   and its desired state only goes from running to shutdown (Swarm never reuses a task id:
//!   a restart is a new task), so the view published is the furthest of the listing and the
//!   events. An event can move a task forward early; it can never move it back.
//! - An entry is dropped as soon as a listing shows everything it asserts, or, for a task that
//!   no longer runs, once a listing started after the fact no longer holds the task at all
//!   (scaled-down tasks are deleted). In any case it is dropped `ttl` after its last fact, so
//!   a wrong fact cannot stick.
//!
//! Facts from another node's agent (`crate::hints`, an entry with a `node`) follow stricter
//! rules (DESIGN 3): they are laid over a task only while the listing holds it, and put it in
//! early only if the listing has it starting or running with desired state running; a task
//! the listing does not hold is never added, so a task the list removed cannot come back.
//! Such an entry is held `hold` for the listing to show its task, then dropped; and all of a
//! node's entries go when its stream is lost ([`Overlay::forget_node`]).
//!
//! A `start` means `running` only for a container without a healthcheck (Swarm waits for
//! `healthy` otherwise), so the fast path must know the container's config. [`Healthchecks`]
//! remembers it from an inspection at `create`, which comes well before `start` (networks are
//! attached in between); with that and the task's addresses in the last listing,
//! [`running_without_inspection`] publishes a start with no call to the engine at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::convert::merge_sorted;
use super::events::ContainerChange;
use crate::model::{DesiredTaskState, ServiceId, Snapshot, Task, TaskAddress, TaskState};

/// What a container event established about its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fact {
    /// The container runs (started; or healthy, when it has a healthcheck): the task is what
    /// Swarm calls `running`, on these addresses.
    Running { addresses: Vec<TaskAddress> },
    /// The container got its stop signal: Swarm is stopping the task (drain it).
    Stopping,
    /// The container exited: the task is done and its slot free.
    Exited,
}

/// Why an entry left the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// The task list caught up.
    Agreed,
    /// `ttl` passed without the list agreeing.
    Expired,
}

/// An entry that left the overlay, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Dropped {
    pub task: String,
    pub service: ServiceId,
    pub reason: Reason,
    /// Since the entry's last fact.
    pub age: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    service: ServiceId,
    slot: Option<u64>,
    state: Option<TaskState>,
    desired: Option<DesiredTaskState>,
    addresses: Vec<TaskAddress>,
    /// When the last fact was recorded.
    recorded: Instant,
    /// The other node whose agent said it; `None`: this node's own events.
    node: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Overlay {
    ttl: Duration,
    /// How long another node's fact about a task the listing does not hold is kept.
    hold: Duration,
    entries: BTreeMap<String, Entry>,
}

/// How long another node's fact waits for the listing to show its task: a replacement task
/// is listed (starting) before its container starts, so this covers a manager's store lagging.
pub(super) const HOLD: Duration = Duration::from_secs(5);

impl Overlay {
    pub fn new(ttl: Duration) -> Overlay {
        Overlay {
            ttl,
            hold: HOLD.min(ttl),
            entries: BTreeMap::new(),
        }
    }

    /// Adds what `node`'s agent said about its `task` at `now` (see the module doc for how
    /// it counts less than this node's own events). A task this node's events already
    /// speak for stays theirs.
    pub fn record_remote(
        &mut self,
        node: &str,
        task: &str,
        service: &str,
        slot: Option<u64>,
        fact: Fact,
        now: Instant,
    ) {
        let fresh = !self.entries.contains_key(task);
        self.record(task, service, slot, fact, now);
        if fresh {
            if let Some(e) = self.entries.get_mut(task) {
                e.node = Some(node.to_owned());
            }
        }
    }

    /// `node`'s stream is lost: its entries that put a task in go (the list alone decides
    /// again), those that take one out stay until the list agrees or the ttl passes (the
    /// container's stop or death was seen; a node whose engine stops kills its containers, and
    /// their deaths often come just before its agent's stream ends). Returns how many went.
    pub fn lose_node(&mut self, node: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| {
            e.node.as_deref() != Some(node)
                || e.state == Some(TaskState::Finished)
                || e.desired == Some(DesiredTaskState::Shutdown)
        });
        before - self.entries.len()
    }

    /// Drops every entry `node`'s agent made (its stream restarted with a reset, which
    /// states all it knows); returns how many.
    pub fn forget_node(&mut self, node: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.node.as_deref() != Some(node));
        before - self.entries.len()
    }

    /// Adds what an event of `task` (of `service`) established at `now`.
    pub fn record(
        &mut self,
        task: &str,
        service: &str,
        slot: Option<u64>,
        fact: Fact,
        now: Instant,
    ) {
        let e = self
            .entries
            .entry(task.to_string())
            .or_insert_with(|| Entry {
                service: service.to_string(),
                slot,
                state: None,
                desired: None,
                addresses: Vec::new(),
                recorded: now,
                node: None,
            });
        e.recorded = now;
        e.slot = e.slot.or(slot);
        match fact {
            Fact::Running { addresses } => {
                e.state = later_state(e.state, Some(TaskState::Running));
                for a in addresses {
                    if !e.addresses.contains(&a) {
                        e.addresses.push(a);
                    }
                }
            }
            Fact::Stopping => e.desired = Some(DesiredTaskState::Shutdown),
            Fact::Exited => {
                e.state = Some(TaskState::Finished);
                e.desired = Some(DesiredTaskState::Shutdown);
            }
        }
    }

    /// Feeds a listing of all tasks (sorted by id, as listings are) whose request went out at
    /// `listed_at`: drops the entries it agrees with, and those older than the ttl at `now`.
    pub fn observe(
        &mut self,
        listed: &[Arc<Task>],
        listed_at: Instant,
        now: Instant,
    ) -> Vec<Dropped> {
        let find = |id: &str| {
            let i = listed.binary_search_by(|t| t.id.as_str().cmp(id)).ok()?;
            listed.get(i)
        };
        let mut dropped = Vec::new();
        let hold = self.hold;
        self.entries.retain(|id, e| {
            let listed = find(id);
            let agreed = match listed {
                Some(t) => e.agrees_with(t),
                // Absent from a listing that predates the fact says nothing. Absent from a
                // later one: the task was deleted (scale-down). A task said to run is kept
                // anyway: a manager's store may lag the leader by a few ms, and the ttl bounds it.
                None => listed_at >= e.recorded && e.state != Some(TaskState::Running),
            };
            let age = now.saturating_duration_since(e.recorded);
            // Another node's fact about a task the list does not hold is held only `hold`.
            let limit = match (&e.node, listed) {
                (Some(_), None) => hold,
                _ => self.ttl,
            };
            let reason = if agreed {
                Reason::Agreed
            } else if age >= limit {
                Reason::Expired
            } else {
                return true;
            };
            dropped.push(Dropped {
                task: id.clone(),
                service: e.service.clone(),
                reason,
                age,
            });
            false
        });
        dropped
    }

    /// Drops the entries whose last fact is `ttl` old at `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Dropped> {
        let ttl = self.ttl;
        let mut dropped = Vec::new();
        self.entries.retain(|id, e| {
            let age = now.saturating_duration_since(e.recorded);
            if age < ttl {
                return true;
            }
            dropped.push(Dropped {
                task: id.clone(),
                service: e.service.clone(),
                reason: Reason::Expired,
                age,
            });
            false
        });
        dropped
    }

    /// When the oldest entry expires; `None` when the overlay is empty (no timer at all).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.recorded + self.ttl).min()
    }

    /// `snapshot` (a listing) with every entry laid over it: a listed task takes the furthest
    /// state and desired state of the two views and gains the addresses the event found on
    /// networks the listing has none for; a task not listed yet is added if its container runs.
    pub fn apply(&self, snapshot: &Snapshot) -> Snapshot {
        if self.entries.is_empty() {
            return snapshot.clone();
        }
        // The listing is sorted by task id: each entry finds its task by a binary search
        // (at 30,000 tasks, looking every task up among the entries was a twenty-fifth of a
        // change's CPU).
        let mut tasks = snapshot.tasks.clone();
        let mut unlisted = Vec::new();
        for (id, e) in &self.entries {
            match tasks.binary_search_by(|t| t.id.as_str().cmp(id)) {
                Ok(i) => {
                    let over = e.over(&tasks[i]);
                    if over != *tasks[i] {
                        tasks[i] = Arc::new(over);
                    }
                }
                // Never another node's: the list decides which tasks exist.
                Err(_) if e.state == Some(TaskState::Running) && e.node.is_none() => {
                    unlisted.push(Arc::new(e.unlisted(id)));
                }
                Err(_) => {}
            }
        }
        Snapshot {
            services: snapshot.services.clone(),
            tasks: merge_sorted(tasks, unlisted),
            networks: snapshot.networks.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

impl Entry {
    /// The listing shows at least what this entry asserts (addresses aside: the listing's
    /// are Swarm's own allocation, the ones the container got).
    fn agrees_with(&self, t: &Task) -> bool {
        let state = self
            .state
            .map_or(true, |s| state_rank(t.state) >= state_rank(s));
        let desired = self
            .desired
            .map_or(true, |d| desired_rank(t.desired_state) >= desired_rank(d));
        state && desired
    }

    fn over(&self, t: &Task) -> Task {
        // Another node's "running" puts in only a task Swarm wants running.
        let state = match (&self.node, self.state) {
            (Some(_), Some(TaskState::Running)) if t.desired_state != DesiredTaskState::Running => {
                None
            }
            (_, s) => s,
        };
        let mut addresses = t.addresses.clone();
        for a in &self.addresses {
            if !t.addresses.iter().any(|l| l.network == a.network) {
                addresses.push(a.clone());
            }
        }
        Task {
            id: t.id.clone(),
            service_id: t.service_id.clone(),
            slot: t.slot.or(self.slot),
            state: later_state(Some(t.state), state).unwrap_or(t.state),
            desired_state: match self.desired {
                Some(d) if desired_rank(d) > desired_rank(t.desired_state) => d,
                _ => t.desired_state,
            },
            addresses,
        }
    }

    fn unlisted(&self, id: &str) -> Task {
        Task {
            id: id.to_string(),
            service_id: self.service.clone(),
            slot: self.slot,
            state: self.state.unwrap_or(TaskState::Starting),
            desired_state: self.desired.unwrap_or(DesiredTaskState::Running),
            addresses: self.addresses.clone(),
        }
    }
}

/// Whether each of this node's task containers has a healthcheck, learnt from inspections.
/// Forgotten when the container dies or is destroyed; bounded, in case those events are
/// missed: when full it starts over (the fast path then inspects at `start` again).
#[derive(Debug, Clone)]
pub(super) struct Healthchecks {
    known: HashMap<String, bool>,
    cap: usize,
}

impl Healthchecks {
    pub fn new(cap: usize) -> Healthchecks {
        Healthchecks {
            known: HashMap::new(),
            cap,
        }
    }

    pub fn learn(&mut self, container: &str, healthcheck: bool) {
        if self.known.len() >= self.cap && !self.known.contains_key(container) {
            self.known.clear();
        }
        self.known.insert(container.to_string(), healthcheck);
    }

    pub fn get(&self, container: &str) -> Option<bool> {
        self.known.get(container).copied()
    }

    pub fn forget(&mut self, container: &str) {
        self.known.remove(container);
    }
}

/// What a `start` or `healthy` event says without inspecting the container, if enough is
/// known: for a start, that the container has no healthcheck; for both, the task listed with
/// its addresses (Swarm allocates them before the container is created).
pub(super) fn running_without_inspection(
    change: ContainerChange,
    healthcheck: Option<bool>,
    listed: Option<&Task>,
) -> Option<Fact> {
    let addressed = listed.is_some_and(|t| !t.addresses.is_empty());
    let ready = match change {
        ContainerChange::Started => healthcheck == Some(false),
        ContainerChange::Healthy => true,
        _ => false,
    };
    (ready && addressed).then_some(Fact::Running {
        addresses: Vec::new(),
    })
}

fn state_rank(s: TaskState) -> u8 {
    match s {
        TaskState::Starting => 0,
        TaskState::Running => 1,
        TaskState::Finished => 2,
    }
}

fn desired_rank(d: DesiredTaskState) -> u8 {
    match d {
        DesiredTaskState::Running => 0,
        DesiredTaskState::Shutdown => 1,
    }
}

fn later_state(a: Option<TaskState>, b: Option<TaskState>) -> Option<TaskState> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if state_rank(y) > state_rank(x) { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DesiredTaskState as D, TaskState as S};

    const MS: Duration = Duration::from_millis(1);
    const TTL: Duration = Duration::from_secs(30);
    const NET: &str = "net";

    fn addr(last: u8) -> TaskAddress {
        TaskAddress {
            network: NET.into(),
            addr: std::net::IpAddr::from([10, 0, 1, last]),
        }
    }

    fn task(id: &str, state: TaskState, desired: DesiredTaskState) -> Task {
        Task {
            id: id.into(),
            service_id: "svc".into(),
            slot: Some(1),
            state,
            desired_state: desired,
            addresses: vec![addr(5)],
        }
    }

    fn snap(tasks: Vec<Task>) -> Snapshot {
        Snapshot {
            tasks: crate::model::shared(tasks),
            ..Snapshot::default()
        }
    }

    fn running(last: u8) -> Fact {
        Fact::Running {
            addresses: vec![addr(last)],
        }
    }

    /// (state, desired state, addresses) of task `id` in `s`, if there.
    fn view(s: &Snapshot, id: &str) -> Option<(TaskState, DesiredTaskState, Vec<TaskAddress>)> {
        s.tasks
            .iter()
            .find(|t| t.id == id)
            .map(|t| (t.state, t.desired_state, t.addresses.clone()))
    }

    #[test]
    fn a_task_that_starts_before_it_is_listed_is_added_running_with_its_addresses() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        o.record("new", "svc", Some(3), running(9), t0);
        let listed = snap(vec![task("old", S::Running, D::Running)]);
        let out = o.apply(&listed);
        assert_eq!(
            out.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["new", "old"],
            "sorted by id, as listings are"
        );
        let new = out.tasks.iter().find(|t| t.id == "new").expect("added");
        assert_eq!(
            &**new,
            &Task {
                id: "new".into(),
                service_id: "svc".into(),
                slot: Some(3),
                state: S::Running,
                desired_state: D::Running,
                addresses: vec![addr(9)],
            }
        );
        // A listing without it (even one taken later: the store may lag) keeps it.
        assert_eq!(o.observe(&listed.tasks, t0 + 10 * MS, t0 + 10 * MS), vec![]);
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn a_task_listed_as_starting_shows_running_once_its_container_starts() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        let listed = snap(vec![task("a", S::Starting, D::Running)]);
        o.record("a", "svc", Some(1), running(5), t0);
        assert_eq!(
            view(&o.apply(&listed), "a"),
            Some((S::Running, D::Running, vec![addr(5)]))
        );
        // The same listing again: still behind, the entry stays.
        assert_eq!(o.observe(&listed.tasks, t0 + MS, t0 + MS), vec![]);
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn an_event_address_fills_only_networks_the_listing_has_no_address_on() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        let mut bare = task("a", S::Starting, D::Running);
        bare.addresses.clear();
        let other = TaskAddress {
            network: "other".into(),
            addr: std::net::IpAddr::from([10, 0, 2, 7]),
        };
        o.record(
            "a",
            "svc",
            None,
            Fact::Running {
                addresses: vec![addr(5), other.clone()],
            },
            t0,
        );
        let filled = o.apply(&snap(vec![bare]));
        assert_eq!(filled.tasks[0].addresses, vec![addr(5), other.clone()]);
        let mut listed = task("a", S::Starting, D::Running);
        listed.addresses = vec![addr(6)];
        let kept = o.apply(&snap(vec![listed]));
        assert_eq!(
            kept.tasks[0].addresses,
            vec![addr(6), other],
            "the listing's own address on a network wins"
        );
    }

    #[test]
    fn the_list_agreeing_drops_the_entry_and_the_listing_shows_through_unchanged() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        o.record("a", "svc", Some(1), running(5), t0);
        let caught_up = snap(vec![task("a", S::Running, D::Running)]);
        assert_eq!(o.apply(&caught_up), caught_up, "nothing to add");
        // A listing sent before the event still agrees: states only move forward.
        let dropped = o.observe(&caught_up.tasks, t0 - 50 * MS, t0 + 5 * MS);
        assert_eq!(
            dropped,
            vec![Dropped {
                task: "a".into(),
                service: "svc".into(),
                reason: Reason::Agreed,
                age: 5 * MS
            }]
        );
        assert_eq!(o.len(), 0);
        assert_eq!(o.next_expiry(), None, "no timer left");
    }

    #[test]
    fn kill_drains_then_die_finishes_and_a_later_list_that_dropped_the_task_clears_it() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        let listed = snap(vec![task("a", S::Running, D::Running)]);
        o.record("a", "svc", Some(1), Fact::Stopping, t0);
        assert_eq!(
            view(&o.apply(&listed), "a"),
            Some((S::Running, D::Shutdown, vec![addr(5)])),
            "drained at once"
        );
        o.record("a", "svc", Some(1), Fact::Exited, t0 + 30 * MS);
        assert_eq!(
            view(&o.apply(&listed), "a").map(|v| (v.0, v.1)),
            Some((S::Finished, D::Shutdown)),
            "slot freed"
        );
        // The list shows desired shutdown only: not yet everything the entry says.
        let draining = snap(vec![task("a", S::Running, D::Shutdown)]);
        assert_eq!(
            o.observe(&draining.tasks, t0 + 40 * MS, t0 + 41 * MS),
            vec![]
        );
        // A listing sent before the die that lacks the task says nothing...
        assert_eq!(o.observe(&[], t0 + 20 * MS, t0 + 42 * MS), vec![]);
        assert_eq!(o.len(), 1);
        // ...one sent after it does: the task was deleted.
        let dropped = o.observe(&[], t0 + 50 * MS, t0 + 52 * MS);
        assert_eq!(
            dropped.iter().map(|d| d.reason).collect::<Vec<_>>(),
            [Reason::Agreed]
        );
    }

    #[test]
    fn a_die_without_a_kill_frees_the_slot_and_a_finished_listing_agrees() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        let listed = snap(vec![task("a", S::Running, D::Running)]);
        o.record("a", "svc", Some(1), Fact::Exited, t0);
        assert_eq!(
            view(&o.apply(&listed), "a").map(|v| (v.0, v.1)),
            Some((S::Finished, D::Shutdown))
        );
        // Swarm marks a crashed task failed; its desired state follows later.
        let failed = snap(vec![task("a", S::Finished, D::Running)]);
        assert_eq!(o.observe(&failed.tasks, t0 + MS, t0 + MS), vec![]);
        let done = snap(vec![task("a", S::Finished, D::Shutdown)]);
        assert_eq!(o.observe(&done.tasks, t0 + 2 * MS, t0 + 2 * MS).len(), 1);
    }

    #[test]
    fn an_event_never_moves_a_task_back() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        // A start replayed after a reconnect, for a task the list already has finished.
        o.record("a", "svc", Some(1), running(5), t0);
        let finished = snap(vec![task("a", S::Finished, D::Shutdown)]);
        assert_eq!(o.apply(&finished), finished);
        // And a start after the die (events of one burst, in any order) cannot revive it.
        let mut o = Overlay::new(TTL);
        o.record("b", "svc", Some(1), Fact::Exited, t0);
        o.record("b", "svc", Some(1), running(5), t0 + MS);
        let listed = snap(vec![task("b", S::Running, D::Running)]);
        assert_eq!(
            view(&o.apply(&listed), "b").map(|v| (v.0, v.1)),
            Some((S::Finished, D::Shutdown))
        );
        // A drained task stays drained although the (older) listing says running.
        let mut o = Overlay::new(TTL);
        o.record("c", "svc", Some(1), Fact::Stopping, t0);
        o.record("c", "svc", Some(1), running(5), t0 + MS);
        let listed = snap(vec![task("c", S::Starting, D::Running)]);
        assert_eq!(
            view(&o.apply(&listed), "c").map(|v| (v.0, v.1)),
            Some((S::Running, D::Shutdown))
        );
    }

    #[test]
    fn a_task_started_then_stopped_before_it_is_listed_shows_draining() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        o.record("a", "svc", None, running(5), t0);
        o.record("a", "svc", None, Fact::Stopping, t0 + MS);
        assert_eq!(
            view(&o.apply(&Snapshot::default()), "a").map(|v| (v.0, v.1)),
            Some((S::Running, D::Shutdown))
        );
        o.record("a", "svc", None, Fact::Exited, t0 + 2 * MS);
        assert_eq!(
            view(&o.apply(&Snapshot::default()), "a"),
            None,
            "a finished task never listed stays out"
        );
    }

    #[test]
    fn an_entry_the_list_never_agrees_with_expires_after_the_ttl_of_its_last_fact() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        let listed = snap(vec![task("a", S::Running, D::Running)]);
        // A SIGTERM that the task survived, say: the list keeps it running.
        o.record("a", "svc", Some(1), Fact::Stopping, t0);
        o.record("b", "svc", None, running(9), t0 + 10 * MS);
        assert_eq!(o.next_expiry(), Some(t0 + TTL));
        assert_eq!(
            o.observe(&listed.tasks, t0 + TTL - MS, t0 + TTL - MS),
            vec![]
        );
        assert_eq!(
            o.expire(t0 + TTL),
            vec![Dropped {
                task: "a".into(),
                service: "svc".into(),
                reason: Reason::Expired,
                age: TTL
            }]
        );
        assert_eq!(
            o.apply(&listed).tasks,
            vec![listed.tasks[0].clone(), {
                let mut b = task("b", S::Running, D::Running);
                b.slot = None;
                b.addresses = vec![addr(9)];
                Arc::new(b)
            }]
        );
        assert_eq!(o.next_expiry(), Some(t0 + 10 * MS + TTL));
        // A listing also drops what is too old.
        let dropped = o.observe(&listed.tasks, t0, t0 + 10 * MS + TTL);
        assert_eq!(
            dropped
                .iter()
                .map(|d| (d.task.as_str(), d.reason))
                .collect::<Vec<_>>(),
            [("b", Reason::Expired)]
        );
        assert_eq!(o.apply(&listed), listed, "the list alone again");
    }

    #[test]
    fn a_start_skips_the_inspection_only_without_healthcheck_and_with_listed_addresses() {
        use ContainerChange::*;
        let listed = task("a", S::Starting, D::Running);
        let mut bare = listed.clone();
        bare.addresses.clear();
        let fact = Fact::Running { addresses: vec![] };
        let running = Some(fact.clone());
        assert_eq!(
            running_without_inspection(Started, Some(false), Some(&listed)),
            running
        );
        assert_eq!(
            running_without_inspection(Started, Some(true), Some(&listed)),
            None
        );
        assert_eq!(
            running_without_inspection(Started, None, Some(&listed)),
            None
        );
        assert_eq!(
            running_without_inspection(Started, Some(false), Some(&bare)),
            None
        );
        assert_eq!(running_without_inspection(Started, Some(false), None), None);
        assert_eq!(
            running_without_inspection(Healthy, None, Some(&listed)),
            running
        );
        assert_eq!(running_without_inspection(Healthy, Some(true), None), None);
        for other in [Created, Stopping, Died, Destroyed] {
            assert_eq!(
                running_without_inspection(other, Some(false), Some(&listed)),
                None
            );
        }
        // What it adds on top of the listing is the state alone.
        let mut o = Overlay::new(TTL);
        o.record("a", "svc", Some(1), fact, Instant::now());
        assert_eq!(
            view(&o.apply(&snap(vec![listed])), "a"),
            Some((S::Running, D::Running, vec![addr(5)]))
        );
    }

    #[test]
    fn healthchecks_are_remembered_per_container_until_forgotten_and_bounded() {
        let mut h = Healthchecks::new(2);
        h.learn("c1", false);
        h.learn("c2", true);
        assert_eq!(
            (h.get("c1"), h.get("c2"), h.get("c3")),
            (Some(false), Some(true), None)
        );
        h.learn("c2", false);
        assert_eq!(h.get("c2"), Some(false), "relearning is not growth");
        h.forget("c1");
        assert_eq!(h.get("c1"), None);
        h.learn("c1", true);
        h.learn("c3", true);
        assert_eq!(
            (h.get("c1"), h.get("c2"), h.get("c3")),
            (None, None, Some(true))
        );
    }

    #[test]
    fn a_new_fact_restarts_the_entrys_ttl() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        o.record("a", "svc", Some(1), running(5), t0);
        o.record("a", "svc", Some(1), Fact::Stopping, t0 + 20 * MS);
        assert_eq!(o.expire(t0 + TTL), vec![]);
        assert_eq!(o.next_expiry(), Some(t0 + 20 * MS + TTL));
    }

    // Another node's agent (crate::hints): the list decides which tasks exist.

    #[tokio::test(start_paused = true)]
    async fn a_remote_hint_about_a_task_the_list_does_not_hold_is_held_then_applied_once_listed() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        o.record_remote("n2", "new", "svc", Some(2), running(9), t0);
        let without = snap(vec![task("old", S::Running, D::Running)]);
        assert_eq!(o.apply(&without), without, "held: never added by a hint");
        tokio::time::advance(HOLD - MS).await;
        assert_eq!(
            o.observe(&without.tasks, Instant::now(), Instant::now()),
            vec![]
        );
        // The list confirms it (starting: Swarm's manager trails the container).
        let mut new = task("new", S::Starting, D::Running);
        new.addresses = vec![addr(9)];
        let with = snap(vec![new, task("old", S::Running, D::Running)]);
        assert_eq!(
            view(&o.apply(&with), "new"),
            Some((S::Running, D::Running, vec![addr(9)])),
            "put in early"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_remote_hint_the_list_never_confirms_is_dropped_after_the_hold() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        o.record_remote("n2", "ghost", "svc", None, running(9), t0);
        tokio::time::advance(HOLD).await;
        let now = Instant::now();
        let dropped = o.observe(&[], now, now);
        assert_eq!(
            dropped
                .iter()
                .map(|d| (d.task.as_str(), d.reason))
                .collect::<Vec<_>>(),
            [("ghost", Reason::Expired)]
        );
        assert_eq!(o.len(), 0);
        // The task then listed: no stale fact left to lay over it.
        let listed = snap(vec![task("ghost", S::Starting, D::Running)]);
        assert_eq!(o.apply(&listed), listed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_running_hint_puts_in_only_a_task_swarm_wants_running() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        o.record_remote("n2", "a", "svc", Some(1), running(5), t0);
        let stopping = snap(vec![task("a", S::Starting, D::Shutdown)]);
        assert_eq!(
            view(&o.apply(&stopping), "a").map(|v| (v.0, v.1)),
            Some((S::Starting, D::Shutdown)),
            "Swarm is stopping it: not put in"
        );
        let finished = snap(vec![task("a", S::Finished, D::Running)]);
        assert_eq!(o.apply(&finished), finished, "never moves a task back");
        let starting = snap(vec![task("a", S::Starting, D::Running)]);
        assert_eq!(
            view(&o.apply(&starting), "a").map(|v| (v.0, v.1)),
            Some((S::Running, D::Running))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_hint_never_brings_back_a_task_the_list_removed() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        let listed = snap(vec![task("a", S::Running, D::Running)]);
        o.record_remote("n2", "a", "svc", Some(1), running(5), t0);
        assert_eq!(o.apply(&listed), listed, "already running: nothing to add");
        tokio::time::advance(10 * MS).await;
        // Scaled down: the list no longer holds it, the entry still says running.
        let gone = snap(vec![]);
        o.observe(&gone.tasks, Instant::now(), Instant::now());
        assert_eq!(o.apply(&gone).tasks, vec![], "not resurrected");
        // Nor by the same hint sent again (a reconnect's reset).
        o.record_remote("n2", "a", "svc", Some(1), running(5), Instant::now());
        assert_eq!(o.apply(&gone).tasks, vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_stop_or_death_takes_a_listed_task_out_before_the_list_does() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        let listed = snap(vec![
            task("a", S::Running, D::Running),
            task("b", S::Running, D::Running),
        ]);
        o.record_remote("n2", "a", "svc", Some(1), Fact::Stopping, t0);
        o.record_remote("n2", "b", "svc", Some(2), Fact::Exited, t0);
        let out = o.apply(&listed);
        assert_eq!(
            view(&out, "a").map(|v| (v.0, v.1)),
            Some((S::Running, D::Shutdown)),
            "drained"
        );
        assert_eq!(
            view(&out, "b").map(|v| (v.0, v.1)),
            Some((S::Finished, D::Shutdown)),
            "out"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_node_stream_drops_that_nodes_hints_only_and_the_list_shows_through() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        let listed = snap(vec![
            task("a", S::Running, D::Running),
            task("b", S::Starting, D::Running),
            task("c", S::Running, D::Running),
        ]);
        o.record_remote("n2", "a", "svc", Some(1), Fact::Exited, t0);
        o.record_remote("n3", "b", "svc", Some(2), running(5), t0);
        o.record("c", "svc", Some(3), Fact::Stopping, t0);
        assert_eq!(o.forget_node("n2"), 1);
        let out = o.apply(&listed);
        assert_eq!(
            view(&out, "a").map(|v| v.0),
            Some(S::Running),
            "the list's view"
        );
        assert_eq!(
            view(&out, "b").map(|v| v.0),
            Some(S::Running),
            "n3 still live"
        );
        assert_eq!(
            view(&out, "c").map(|v| v.1),
            Some(D::Shutdown),
            "local kept"
        );
        assert_eq!(o.forget_node("n3"), 1);
        assert_eq!(o.forget_node("n3"), 0);
        assert_eq!(o.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_stream_keeps_the_deaths_it_reported_until_the_list_agrees_and_drops_the_rest() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        let listed = snap(vec![
            task("a", S::Running, D::Running),
            task("b", S::Starting, D::Running),
            task("c", S::Running, D::Running),
        ]);
        o.record_remote("n3", "a", "svc", Some(1), Fact::Exited, t0);
        o.record_remote("n3", "b", "svc", Some(2), running(5), t0);
        o.record_remote("n3", "c", "svc", Some(3), Fact::Stopping, t0);
        assert_eq!(o.lose_node("n3"), 1, "only the running hint goes");
        let out = o.apply(&listed);
        assert_eq!(view(&out, "a").map(|v| v.0), Some(S::Finished), "still out");
        assert_eq!(
            view(&out, "b").map(|v| v.0),
            Some(S::Starting),
            "the list's view"
        );
        assert_eq!(
            view(&out, "c").map(|v| v.1),
            Some(D::Shutdown),
            "still drained"
        );
        // Until the list agrees (the node declared down: its tasks shut down)...
        tokio::time::advance(20 * MS).await;
        let down = snap(vec![
            task("a", S::Finished, D::Shutdown),
            task("c", S::Running, D::Shutdown),
        ]);
        let now = Instant::now();
        assert_eq!(o.observe(&down.tasks, now, now).len(), 2);
        assert_eq!(o.len(), 0);
        // ...or the ttl passes.
        o.record_remote("n3", "d", "svc", None, Fact::Exited, now);
        o.lose_node("n3");
        assert_eq!(o.expire(now + TTL).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_this_nodes_events_speak_for_stays_theirs_and_may_be_added_unlisted() {
        let t0 = Instant::now();
        let mut o = Overlay::new(TTL);
        o.record("a", "svc", Some(1), running(5), t0);
        o.record_remote("n2", "a", "svc", Some(1), Fact::Stopping, t0 + MS);
        assert_eq!(o.forget_node("n2"), 0, "the entry is this node's");
        assert_eq!(
            view(&o.apply(&Snapshot::default()), "a").map(|v| (v.0, v.1)),
            Some((S::Running, D::Shutdown))
        );
    }
}
