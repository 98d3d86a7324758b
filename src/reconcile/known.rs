//! What the reconciler knows HAProxy holds between two full reads, so that one change costs
//! in proportion to itself: a pass plans from the state the last pass left (instead of `show
//! servers state` of every backend and the whole map), and after applying re-reads only the
//! backends its commands touched. A full read happens at the first pass, after a failure, a
//! reload or a new worker, for plans that create or retire backends, and at least every
//! `full_read_every` (the resync): when it finds HAProxy holding something else than what was
//! known, that is a repair (`swarm_lb_resync_repairs_total`), which should never happen.
//! Pure: time is passed in.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::haproxy::{Command, ProxyState};
use crate::model::BackendName;

/// The state HAProxy's worker `pid` held after the last successful pass.
#[derive(Debug)]
pub(super) struct Known {
    pub pid: u32,
    pub state: ProxyState,
    /// When the last full read was made (incremental updates keep it).
    pub full_read_at: Instant,
}

impl Known {
    /// Whether the next pass may plan from this state rather than read everything: the same
    /// worker, and a full read younger than `every`.
    pub fn usable(&self, pid: Option<u32>, now: Instant, every: Duration) -> bool {
        pid == Some(self.pid) && now.saturating_duration_since(self.full_read_at) < every
    }
}

/// When a pass reads HAProxy in full, and what the passes know between two full reads.
#[derive(Debug)]
pub(super) struct Reads {
    /// What HAProxy held after the last successful pass.
    known: Option<Known>,
    /// When HAProxy was last read in full.
    full_read_at: Option<Instant>,
    /// The resync asked for a full read at the next pass.
    due: bool,
    /// The longest a pass plans from `known` before reading everything again.
    every: Duration,
}

/// Where a pass starts from ([`Reads::start`]).
#[derive(Debug)]
pub(super) enum Start {
    /// What the last pass left, usable as it is.
    Known(ProxyState),
    /// A full read is needed; `stale` is what was known (if anything), to compare it with.
    FullRead { stale: Option<Known> },
}

impl Reads {
    /// Nothing known yet: the first pass reads in full; then at least every `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            known: None,
            full_read_at: None,
            due: false,
            every,
        }
    }

    /// Read in full at least this often.
    pub fn set_every(&mut self, every: Duration) {
        self.every = every;
    }

    /// The next pass reads in full (the resync).
    pub fn read_everything_next(&mut self) {
        self.due = true;
    }

    /// What HAProxy holds is not known any more (a pass failed): the next one reads it all.
    pub fn forget(&mut self) {
        self.known = None;
    }

    /// Where the pass at `now`, talking to worker `pid`, starts from. What was known is taken
    /// either way: the pass remembers what it leaves ([`Reads::remember`]).
    pub fn start(&mut self, pid: Option<u32>, now: Instant) -> Start {
        match self.known.take() {
            Some(k) if !self.due && k.usable(pid, now, self.every) => Start::Known(k.state),
            stale => Start::FullRead { stale },
        }
    }

    /// HAProxy was read in full, the read started at `at`.
    pub fn read_in_full(&mut self, at: Instant) {
        self.full_read_at = Some(at);
        self.due = false;
    }

    /// Keep `state` as what worker `pid` holds after this pass; nothing is kept without a
    /// worker or a full read to date it from.
    pub fn remember(&mut self, pid: Option<u32>, state: ProxyState) {
        self.known = match (pid, self.full_read_at) {
            (Some(pid), Some(full_read_at)) => Some(Known {
                pid,
                state,
                full_read_at,
            }),
            _ => None,
        };
    }
}

/// What a runtime batch touched, when the state can be brought up to date by re-reading
/// those backends and replaying the map edits: servers moved, put in a state, added or
/// checked, and map entries. `None` for anything else (backends created, published or
/// retired, cookies keyed): those passes read everything, as their replies can leave
/// HAProxy in more than one state (a retirement waits for connections, say).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Touched<'a> {
    pub backends: BTreeSet<BackendName>,
    pub map_edits: Vec<&'a Command>,
}

pub(super) fn touched(cmds: &[Command]) -> Option<Touched<'_>> {
    let mut t = Touched::default();
    for cmd in cmds {
        match cmd {
            Command::SetAddr { backend, .. }
            | Command::SetState { backend, .. }
            | Command::AddServer { backend, .. }
            | Command::EnableHealth { backend, .. } => {
                t.backends.insert(backend.clone());
            }
            Command::AddMap { .. } | Command::SetMap { .. } | Command::DelMap { .. } => {
                t.map_edits.push(cmd);
            }
            _ => return None,
        }
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::{Admin, DefaultsName, MapPath};
    use crate::model::{BackendOptions, MapKey, ServerName};

    fn be(n: &str) -> BackendName {
        BackendName::for_service(n).unwrap()
    }

    #[test]
    fn server_and_map_edits_are_touched_backends_and_replayed_map_edits() {
        let map = MapPath::new("/etc/haproxy/hosts.map").unwrap();
        let del = Command::DelMap {
            map,
            key: MapKey::parse("a.example/").unwrap(),
        };
        let cmds = vec![
            Command::SetAddr {
                backend: be("web"),
                server: ServerName::slot(1),
                addr: "10.0.0.1:80".parse().unwrap(),
            },
            Command::SetState {
                backend: be("api"),
                server: ServerName::slot(2),
                state: Admin::Ready,
            },
            del.clone(),
        ];
        let t = touched(&cmds).expect("incremental");
        assert_eq!(t.backends, BTreeSet::from([be("web"), be("api")]));
        assert_eq!(t.map_edits, vec![&del]);
    }

    #[test]
    fn creating_or_retiring_a_backend_needs_a_full_read() {
        let add = Command::AddBackend {
            backend: be("web"),
            defaults: DefaultsName::for_options(&BackendOptions::default()).unwrap(),
        };
        assert_eq!(touched(&[add]), None);
        assert_eq!(touched(&[Command::DelBackend { backend: be("web") }]), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// The incremental law: for any state and desired routing, bringing the known state up
        /// to date the incremental way (the touched backends as HAProxy then holds them, the map
        /// edits replayed) gives exactly what a full read after the batch gives. Here HAProxy is
        /// the planner's model (`ProxyState::apply`, which law 2 ties to the target).
        #[test]
        fn the_incremental_update_equals_a_full_read_after_any_plan(
            (actual, d) in crate::plan::strategy::actual_and_desired(),
            s in crate::plan::strategy::plan_settings(),
        ) {
            let p = crate::plan::plan(&actual, &Default::default(), &d, &s);
            let mut full = actual.clone();
            for cmd in &p.runtime {
                let _ = full.apply(cmd);
            }
            if let Some(t) = touched(&p.runtime).filter(|_| !p.reload) {
                let mut known = actual.clone();
                for name in &t.backends {
                    match full.backends.get(name) {
                        Some(b) => known.backends.insert(name.clone(), b.clone()),
                        None => known.backends.remove(name),
                    };
                }
                for cmd in t.map_edits {
                    proptest::prop_assert!(known.apply(cmd).is_ok(), "{cmd:?}");
                }
                proptest::prop_assert_eq!(known, full);
            }
        }
    }

    #[test]
    fn a_known_state_is_used_for_the_same_worker_until_the_next_full_read_is_due() {
        let t0 = Instant::now();
        let k = Known {
            pid: 7,
            state: ProxyState::default(),
            full_read_at: t0,
        };
        let every = Duration::from_secs(30);
        assert!(k.usable(Some(7), t0 + Duration::from_secs(29), every));
        assert!(!k.usable(Some(7), t0 + every, every), "resync due");
        assert!(!k.usable(Some(8), t0, every), "another worker");
        assert!(!k.usable(None, t0, every), "haproxy not seen");
    }

    #[test]
    fn a_pass_starts_from_what_the_last_left_until_a_full_read_is_due() {
        let t0 = Instant::now();
        let mut reads = Reads::new(Duration::from_secs(30));
        // Nothing known, and nothing kept without a full read to date it.
        reads.remember(Some(7), ProxyState::default());
        assert!(matches!(
            reads.start(Some(7), t0),
            Start::FullRead { stale: None }
        ));
        reads.read_in_full(t0);
        reads.remember(Some(7), ProxyState::default());
        assert!(matches!(reads.start(Some(7), t0), Start::Known(_)));
        // Taken by the pass: the next starts from what that one remembers.
        assert!(matches!(
            reads.start(Some(7), t0),
            Start::FullRead { stale: None }
        ));
        reads.remember(Some(7), ProxyState::default());
        reads.read_everything_next();
        assert!(matches!(
            reads.start(Some(7), t0),
            Start::FullRead { stale: Some(_) }
        ));
        reads.read_in_full(t0);
        reads.remember(Some(7), ProxyState::default());
        reads.forget();
        assert!(matches!(
            reads.start(Some(7), t0),
            Start::FullRead { stale: None }
        ));
    }
}
