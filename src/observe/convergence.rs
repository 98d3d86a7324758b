//! Convergence, measured against Docker's own clock: for a task that starts, from its
//! `Status.Timestamp` in the running state to the first pass that saw HAProxy hold its address
//! ready; for a task Swarm stops, from its `UpdatedAt` (when Swarm set its desired state to
//! shutdown) to the first pass that saw HAProxy send it nothing new. Pure: the time of the
//! pass is passed in.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::haproxy::{Admin, ProxyState};
use crate::model::{BackendName, DesiredTaskState, Mode, Snapshot, TaskState};

/// Docker's timestamps of one task, as the task list gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskTimes {
    /// `Status.Timestamp`, when the task's state is `running`: when it started running.
    pub running: Option<SystemTime>,
    /// `UpdatedAt`, when the desired state is not `running`: when Swarm decided to stop it.
    pub shutdown: Option<SystemTime>,
}

/// The `phase` label of `swarm_lb_convergence_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    TaskRunning,
    TaskStopping,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::TaskRunning => "task_running",
            Phase::TaskStopping => "task_stopping",
        }
    }
}

/// What was seen of each task so far. Entries of tasks no longer listed are dropped, in
/// batches ([`Convergence::forget_unlisted`]).
#[derive(Debug, Default)]
pub struct Convergence {
    /// When a pass first saw HAProxy hold the task (by id) in that phase: running, stopping.
    held: [HashMap<String, SystemTime>; 2],
    /// Already measured, per phase.
    done: [HashSet<String>; 2],
    /// How many entries the last [`Convergence::forget_unlisted`] batch left.
    kept: usize,
}

impl Phase {
    fn index(self) -> usize {
        match self {
            Phase::TaskRunning => 0,
            Phase::TaskStopping => 1,
        }
    }
}

impl Convergence {
    /// After a pass that saw HAProxy as `state` at `now`: the samples that became known. A
    /// sample needs Docker's timestamp (from `times`, which holds only tasks that changed
    /// since swarm-lb started); it may arrive after HAProxy held the task (the fast path is
    /// ahead of the task list), so the time HAProxy was first seen holding it is kept. A
    /// timestamp later than that counts as 0. Tasks of vip backends never enter HAProxy and
    /// are not measured; a stopping task is measured only if it was seen served.
    pub fn observe(
        &mut self,
        snap: &Snapshot,
        state: &ProxyState,
        times: &HashMap<String, TaskTimes>,
        now: SystemTime,
    ) -> Vec<(Phase, Duration)> {
        self.observe_changed(snap, state, times, None, now)
    }

    /// How many entries (held and done, both phases) there are: 2 per listed task served and
    /// measured, plus those of tasks gone since the last [`Convergence::forget_unlisted`].
    pub fn entries(&self) -> usize {
        self.held.iter().map(HashMap::len).sum::<usize>()
            + self.done.iter().map(HashSet::len).sum::<usize>()
    }

    /// Drops the entries of tasks `snap` no longer lists, in a batch once the entries grew
    /// by half the listing (1,024 at least) since the last batch: each pass would otherwise
    /// look up every entry in the task list (at 30,000 tasks, 30 % of swarm-lb's CPU per
    /// change went there), while a batch costs O(entries) once per ~tasks/2 new entries:
    /// O(1) per change, amortized. An entry that outlives its task only waits to be dropped:
    /// task ids are never reused.
    fn forget_unlisted(&mut self, snap: &Snapshot) {
        if self.entries() <= self.kept + (snap.tasks.len() / 2).max(1024) {
            return;
        }
        // The watcher lists tasks sorted by id (`swarm::convert::sort_tasks`): a binary search,
        // else (a snapshot made by hand) a set.
        let sorted = snap.tasks.windows(2).all(|w| w[0].id <= w[1].id);
        let ids: HashSet<&str> = match sorted {
            true => HashSet::new(),
            false => snap.tasks.iter().map(|t| t.id.as_str()).collect(),
        };
        let listed = |id: &str| match sorted {
            true => snap
                .tasks
                .binary_search_by(|t| t.id.as_str().cmp(id))
                .is_ok(),
            false => ids.contains(id),
        };
        for held in &mut self.held {
            held.retain(|id, _| listed(id));
        }
        for done in &mut self.done {
            done.retain(|id| listed(id));
        }
        self.kept = self.entries();
    }

    /// [`Convergence::observe`] after a pass that changed only the backends `changed` (`None`:
    /// any): a task is looked at when its service's backends changed or Docker's timestamps
    /// of it are known, so a pass costs in proportion to its change, not to every task (a
    /// task HAProxy starts or stops holding is in a changed backend in that pass; one whose
    /// timestamp comes later is in `times`).
    pub fn observe_changed(
        &mut self,
        snap: &Snapshot,
        state: &ProxyState,
        times: &HashMap<String, TaskTimes>,
        changed: Option<&BTreeSet<String>>,
        now: SystemTime,
    ) -> Vec<(Phase, Duration)> {
        let names: HashMap<&str, &str> = snap
            .services
            .iter()
            .map(|s| (s.id.as_str(), s.name.as_str()))
            .collect();
        // The services whose backends changed.
        let touched: Option<HashSet<&str>> = changed.map(|c| {
            c.iter()
                .map(|b| BackendName::service_of(b.as_str()))
                .collect()
        });
        let mut candidates = Vec::new();
        for t in &snap.tasks {
            let Some(service) = names.get(t.service_id.as_str()) else {
                continue;
            };
            let look = match &touched {
                None => true,
                Some(touched) => touched.contains(service) || times.contains_key(&t.id),
            };
            if look {
                candidates.push((t, *service));
            }
        }
        // Each candidate service's task servers (every generation): address -> the readiest
        // admin state of a slot holding it (one IP in two slots, an address reused: ready wins).
        let wanted: HashSet<&str> = candidates.iter().map(|(_, s)| *s).collect();
        let mut servers: HashMap<(&str, IpAddr), Admin> = HashMap::new();
        for (name, b) in &state.backends {
            if b.mode != Mode::Task || !wanted.contains(name.service()) {
                continue;
            }
            for s in b.servers.iter().filter(|s| !s.is_free()) {
                let admin = servers
                    .entry((name.service(), s.addr.ip()))
                    .or_insert(s.admin);
                if s.admin == Admin::Ready {
                    *admin = Admin::Ready;
                }
            }
        }
        let serving = state.serving_by_service();
        let mut samples = Vec::new();
        for (t, service) in candidates {
            if !serving
                .get(service)
                .is_some_and(|(_, b)| b.mode == Mode::Task)
            {
                continue;
            }
            let admin = t
                .addresses
                .iter()
                .filter_map(|a| servers.get(&(service, a.addr)))
                .min()
                .copied();
            let ready = admin == Some(Admin::Ready);
            let phase = match t.desired_state {
                DesiredTaskState::Running if t.state == TaskState::Running && ready => {
                    Phase::TaskRunning
                }
                DesiredTaskState::Shutdown
                    if !ready
                        && self.held[Phase::TaskRunning.index()].contains_key(t.id.as_str()) =>
                {
                    Phase::TaskStopping
                }
                _ => continue,
            };
            let i = phase.index();
            let held = match self.held[i].get(t.id.as_str()) {
                Some(held) => *held,
                None => {
                    self.held[i].insert(t.id.clone(), now);
                    now
                }
            };
            if self.done[i].contains(t.id.as_str()) {
                continue;
            }
            let stamp = times.get(&t.id).and_then(|x| match phase {
                Phase::TaskRunning => x.running,
                Phase::TaskStopping => x.shutdown,
            });
            if let Some(stamp) = stamp {
                samples.push((phase, held.duration_since(stamp).unwrap_or(Duration::ZERO)));
                self.done[i].insert(t.id.clone());
            }
        }
        self.forget_unlisted(snap);
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::{BackendState, Server};
    use crate::model::{fixtures, BackendOptions, ServerName};

    const T0: Duration = Duration::from_secs(1_800_000_000);

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + T0 + Duration::from_millis(ms)
    }

    fn snap(desired: DesiredTaskState) -> Snapshot {
        fixtures::web(vec![fixtures::task("t1", 1, "10.0.0.5", desired)])
    }

    fn proxy(admin: Option<Admin>) -> ProxyState {
        let mut s = ProxyState::default();
        let server = match admin {
            Some(admin) => Server {
                name: ServerName::slot(1),
                addr: "10.0.0.5:80".parse().unwrap(),
                admin,
            },
            None => Server::free(ServerName::slot(1)),
        };
        s.backends.insert(
            crate::model::BackendName::for_service("web").unwrap(),
            std::sync::Arc::new(BackendState {
                mode: Mode::Task,
                servers: vec![server],
                options: BackendOptions::default(),
            }),
        );
        s
    }

    fn times(running: Option<u64>, shutdown: Option<u64>) -> HashMap<String, TaskTimes> {
        HashMap::from([(
            "t1".to_owned(),
            TaskTimes {
                running: running.map(at),
                shutdown: shutdown.map(at),
            },
        )])
    }

    #[test]
    fn a_pass_scoped_to_its_changed_backends_measures_a_task_whose_timestamp_comes_later() {
        let mut c = Convergence::default();
        let s = snap(DesiredTaskState::Running);
        let web = BTreeSet::from(["web".to_owned()]);
        let none = BTreeSet::new();
        // The pass that put the task in: its backend changed, Docker's timestamp not known yet.
        let first = c.observe_changed(
            &s,
            &proxy(Some(Admin::Ready)),
            &HashMap::new(),
            Some(&web),
            at(5),
        );
        assert!(first.is_empty());
        // A later pass changed nothing; the task list now gives the timestamp: measured from
        // when HAProxy was first seen holding the task.
        let got = c.observe_changed(
            &s,
            &proxy(Some(Admin::Ready)),
            &times(Some(3), None),
            Some(&none),
            at(50),
        );
        assert_eq!(got, vec![(Phase::TaskRunning, Duration::from_millis(2))]);
    }

    #[test]
    fn a_pass_that_changed_other_backends_leaves_a_task_without_timestamps_alone() {
        let mut c = Convergence::default();
        let s = snap(DesiredTaskState::Running);
        let api = BTreeSet::from(["api".to_owned()]);
        let got = c.observe_changed(
            &s,
            &proxy(Some(Admin::Ready)),
            &HashMap::new(),
            Some(&api),
            at(5),
        );
        assert!(got.is_empty());
        assert!(c.held.iter().all(HashMap::is_empty), "{c:?}");
    }

    #[test]
    fn a_task_held_ready_is_measured_once_from_its_running_timestamp() {
        let mut c = Convergence::default();
        let s = snap(DesiredTaskState::Running);
        let got = c.observe(
            &s,
            &proxy(Some(Admin::Ready)),
            &times(Some(10), None),
            at(13),
        );
        assert_eq!(got, vec![(Phase::TaskRunning, Duration::from_millis(3))]);
        let again = c.observe(
            &s,
            &proxy(Some(Admin::Ready)),
            &times(Some(10), None),
            at(50),
        );
        assert!(again.is_empty());
    }

    #[test]
    fn a_timestamp_that_arrives_after_haproxy_held_the_task_counts_from_the_first_sight() {
        let mut c = Convergence::default();
        let s = snap(DesiredTaskState::Running);
        // The fast path put the task in HAProxy before the task list said it runs.
        assert!(c
            .observe(&s, &proxy(Some(Admin::Ready)), &HashMap::new(), at(5))
            .is_empty());
        let got = c.observe(
            &s,
            &proxy(Some(Admin::Ready)),
            &times(Some(4), None),
            at(90),
        );
        assert_eq!(got, vec![(Phase::TaskRunning, Duration::from_millis(1))]);
    }

    #[test]
    fn a_stopping_task_is_measured_when_haproxy_stops_sending_it_traffic() {
        let mut c = Convergence::default();
        c.observe(
            &snap(DesiredTaskState::Running),
            &proxy(Some(Admin::Ready)),
            &HashMap::new(),
            at(0),
        );
        let stopping = snap(DesiredTaskState::Shutdown);
        let t = times(None, Some(100));
        assert!(c
            .observe(&stopping, &proxy(Some(Admin::Ready)), &t, at(102))
            .is_empty());
        let got = c.observe(&stopping, &proxy(Some(Admin::Drain)), &t, at(109));
        assert_eq!(got, vec![(Phase::TaskStopping, Duration::from_millis(9))]);
    }

    #[test]
    fn a_stopping_task_never_seen_served_and_a_task_no_longer_listed_are_not_measured() {
        let mut c = Convergence::default();
        let t = times(None, Some(100));
        assert!(c
            .observe(&snap(DesiredTaskState::Shutdown), &proxy(None), &t, at(120))
            .is_empty());
        c.observe(
            &snap(DesiredTaskState::Running),
            &proxy(Some(Admin::Ready)),
            &HashMap::new(),
            at(0),
        );
        assert!(c
            .observe(&Snapshot::default(), &proxy(None), &t, at(1))
            .is_empty());
    }

    #[test]
    fn entries_of_tasks_no_longer_listed_are_dropped_in_one_batch_once_more_than_1024_accumulated()
    {
        let mut c = Convergence::default();
        let listed = snap(DesiredTaskState::Running);
        c.observe(&listed, &proxy(Some(Admin::Ready)), &HashMap::new(), at(0));
        assert_eq!(c.entries(), 1, "{c:?}");
        for i in 0..1023 {
            c.held[0].insert(format!("gone{i}"), at(0));
        }
        // 1,024 entries: not yet a batch, so a pass does not look each one up.
        c.observe(&listed, &proxy(Some(Admin::Ready)), &HashMap::new(), at(1));
        assert_eq!(c.entries(), 1024);
        c.done[1].insert("gone-too".into());
        c.observe(&listed, &proxy(Some(Admin::Ready)), &HashMap::new(), at(2));
        assert_eq!(c.entries(), 1, "only t1's entry is left: {c:?}");
        assert!(c.held[0].contains_key("t1"));
    }
}
