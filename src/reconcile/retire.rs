//! Retirement bookkeeping (HAProxy 3.4+, where a backend that goes is retired at runtime:
//! `wait srv-removable`, `del server`s, `del backend`). A retirement HAProxy refuses waits for
//! connections still on its servers (a websocket, a long download): nothing routes there any
//! more, so the pass goes on and later passes try it again. [`Retirements`] remembers which
//! retirements were already logged, so that each says one info line when it begins and one
//! when it starts waiting, not one per pass. It also holds a backend whose routes just left
//! it for [`RETIRE_AFTER`] before any plan may retire it (see `plan::plan`: a request that
//! looked the old backend up must still find it). Pure: no I/O, and the clock is the
//! caller's (`now`); the caller logs what [`Retirements::begins`] says and the waits are
//! logged here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use tracing::{debug, info};

use crate::haproxy::codec::ReplyError;
use crate::haproxy::{Command, ProxyState};
use crate::model::BackendName;

/// The retirements already logged, by backend.
#[derive(Debug, Default)]
pub(super) struct Retirements {
    /// Backends being retired whose retirement was already logged: one waiting for a
    /// connection is tried again on later passes without a line each time.
    retiring: BTreeSet<BackendName>,
    /// Retired backends whose wait for open connections was already logged.
    waiting: BTreeSet<BackendName>,
    /// Backends a plan kept although they go ([`crate::plan::Plan::held`]), with the time
    /// the first such plan was made: the moment their routes left them, within a pass.
    held: BTreeMap<BackendName, Instant>,
}

/// How long a backend whose routes moved away or were deleted (HAProxy 3.4+: an old
/// generation, a removed service's backend) stays published before it is retired. A request
/// between its map lookup and its `use_backend` rule needs microseconds; one second covers a
/// worker thread descheduled on a loaded machine many times over, and costs nothing but the
/// old backend's memory for that second.
pub(super) const RETIRE_AFTER: Duration = Duration::from_secs(1);

impl Retirements {
    /// Forget the retirements of backends HAProxy (`actual`, a full or known state) no longer
    /// holds: they are over.
    pub(super) fn forget_done(&mut self, actual: &ProxyState) {
        self.retiring.retain(|b| actual.backends.contains_key(b));
    }

    /// `backend` is being retired this pass: `true` when its retirement begins now (say it at
    /// info), `false` when it is tried again.
    pub(super) fn begins(&mut self, backend: &BackendName) -> bool {
        self.retiring.insert(backend.clone())
    }

    /// The backends no plan may retire at `now`: held less than [`RETIRE_AFTER`] ago.
    pub(super) fn hold(&self, now: Instant) -> BTreeSet<BackendName> {
        self.held
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) < RETIRE_AFTER)
            .map(|(b, _)| b.clone())
            .collect()
    }

    /// A plan made at `now` kept `held` (and retires or keeps every other backend): remember
    /// when each was first held, forget the rest. Returns how long until the first of them may
    /// be retired, for the pass that will do it; `None` when none is held.
    pub(super) fn note_held(&mut self, held: &[BackendName], now: Instant) -> Option<Duration> {
        self.held.retain(|b, _| held.contains(b));
        for b in held {
            self.held.entry(b.clone()).or_insert(now);
        }
        self.held
            .values()
            .map(|since| RETIRE_AFTER.saturating_sub(now.saturating_duration_since(*since)))
            .min()
    }

    /// Sort the refused commands of one batch (command, HAProxy's error, in batch order): a
    /// refused retirement waits for open connections (logged at info once per backend, at
    /// debug on later passes); every other refusal is returned, in order, for the caller to
    /// report. A backend whose retirement is not refused in this batch is no longer waiting.
    pub(super) fn refusals<'c>(
        &mut self,
        refused: impl IntoIterator<Item = (&'c Command, ReplyError)>,
    ) -> Vec<ReplyError> {
        let (waiting, refused): (Vec<_>, Vec<_>) =
            refused.into_iter().partition(|(cmd, _)| is_retirement(cmd));
        let held: BTreeSet<BackendName> = waiting
            .iter()
            .filter_map(|(cmd, _)| retired_backend(cmd).cloned())
            .collect();
        self.waiting.retain(|b| held.contains(b));
        for backend in &held {
            let first = waiting
                .iter()
                .find(|(cmd, _)| retired_backend(cmd) == Some(backend))
                .map(|(_, e)| e.to_string())
                .unwrap_or_default();
            if self.waiting.insert(backend.clone()) {
                info!(service = %backend.service(), backend = %backend, first = %first, "retirement waits for connections still open; tried again at later passes");
            } else {
                debug!(backend = %backend, "retirement still waits for open connections");
            }
        }
        refused.into_iter().map(|(_, e)| e).collect()
    }
}

/// The commands that end a retired backend's servers and the backend itself (see
/// `plan::backend::retire`); the planner sends them for nothing else.
fn is_retirement(cmd: &Command) -> bool {
    retired_backend(cmd).is_some()
}

/// The backend a retirement command ends (see [`is_retirement`]).
fn retired_backend(cmd: &Command) -> Option<&BackendName> {
    match cmd {
        Command::WaitServerRemovable { backend, .. }
        | Command::DelServer { backend, .. }
        | Command::DelBackend { backend } => Some(backend),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::Admin;
    use crate::model::ServerName;

    fn be(n: &str) -> BackendName {
        BackendName::for_service(n).unwrap()
    }

    fn refused(command: &str) -> ReplyError {
        ReplyError {
            command: command.to_owned(),
            message: "refused".to_owned(),
        }
    }

    #[test]
    fn a_refused_retirement_waits_and_other_refusals_are_returned_in_order() {
        let del = Command::DelBackend { backend: be("old") };
        let set = Command::SetState {
            backend: be("web"),
            server: ServerName::slot(1),
            state: Admin::Ready,
        };
        let mut r = Retirements::default();
        let out = r.refusals([(&del, refused("del")), (&set, refused("set"))]);
        assert_eq!(out, [refused("set")]);
        assert!(r.waiting.contains(&be("old")));
        // Not refused in the next batch: no longer waiting.
        assert_eq!(r.refusals([]), []);
        assert!(r.waiting.is_empty());
    }

    #[test]
    fn a_backend_whose_routes_left_is_held_for_one_second_then_let_go() {
        let mut r = Retirements::default();
        let t0 = Instant::now();
        assert_eq!(r.note_held(&[be("web")], t0), Some(RETIRE_AFTER));
        assert_eq!(
            r.hold(t0 + Duration::from_millis(10)),
            BTreeSet::from([be("web")])
        );
        // Held again by the next plan: still counted from the first.
        let later = t0 + Duration::from_millis(400);
        assert_eq!(
            r.note_held(&[be("web")], later),
            Some(Duration::from_millis(600))
        );
        assert!(r.hold(t0 + RETIRE_AFTER).is_empty());
        // A plan that retires it (holds nothing) forgets it.
        assert_eq!(r.note_held(&[], t0 + RETIRE_AFTER), None);
        assert!(r.held.is_empty());
    }

    #[test]
    fn a_retirement_begins_once_until_haproxy_no_longer_holds_the_backend() {
        let mut r = Retirements::default();
        assert!(r.begins(&be("old")));
        assert!(!r.begins(&be("old")));
        r.forget_done(&ProxyState::default());
        assert!(r.begins(&be("old")));
    }
}
