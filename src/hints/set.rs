//! The agent's hints and what each subscriber has been sent. Pure: time is passed in.
//!
//! The agent keeps, per task of its node, the furthest state its container events showed
//! (a task never moves back: Swarm never reuses a task id). A dead or stopping task is kept
//! `keep` after its last event, long enough for every edge's task list to catch up, then
//! forgotten; a running one is kept until its container dies. Bounded: past `cap` tasks the
//! oldest finished ones go first, then the oldest of all.
//!
//! A subscriber gets the whole set on connect, then [`delta`]s: what changed since what it
//! was sent, level-triggered (a slow subscriber skips intermediate states, never the last).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::{Hint, HintState};

#[derive(Debug, Clone)]
pub struct HintSet {
    keep: Duration,
    cap: usize,
    hints: BTreeMap<String, (Hint, Instant)>,
}

impl HintSet {
    pub fn new(keep: Duration, cap: usize) -> HintSet {
        HintSet {
            keep,
            cap: cap.max(1),
            hints: BTreeMap::new(),
        }
    }

    /// Records `hint` at `now`; true if the set changed. A state behind the one held is
    /// ignored; addresses of a running task are merged.
    pub fn record(&mut self, hint: Hint, now: Instant) -> bool {
        match self.hints.get_mut(&hint.task) {
            Some((held, at)) => {
                if hint.state < held.state {
                    return false;
                }
                let mut next = held.clone();
                next.state = hint.state;
                next.slot = next.slot.or(hint.slot);
                for a in hint.addresses {
                    if !next.addresses.contains(&a) {
                        next.addresses.push(a);
                    }
                }
                *at = now;
                if next == *held {
                    return false;
                }
                *held = next;
                true
            }
            None => {
                if self.hints.len() >= self.cap {
                    self.evict_one();
                }
                self.hints.insert(hint.task.clone(), (hint, now));
                true
            }
        }
    }

    /// Forgets finished tasks whose last event is `keep` old at `now`; true if any went.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.hints.len();
        let keep = self.keep;
        self.hints.retain(|_, (h, at)| {
            h.state == HintState::Running || now.saturating_duration_since(*at) < keep
        });
        self.hints.len() != before
    }

    /// When the next finished task is due to be forgotten.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.hints
            .values()
            .filter(|(h, _)| h.state != HintState::Running)
            .map(|(_, at)| *at + self.keep)
            .min()
    }

    /// Every hint, by task id.
    pub fn hints(&self) -> Vec<Hint> {
        self.hints.values().map(|(h, _)| h.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.hints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hints.is_empty()
    }

    fn evict_one(&mut self) {
        let oldest = |finished: bool| {
            self.hints
                .iter()
                .filter(|(_, (h, _))| !finished || h.state != HintState::Running)
                .min_by_key(|(_, (_, at))| *at)
                .map(|(id, _)| id.clone())
        };
        if let Some(id) = oldest(true).or_else(|| oldest(false)) {
            self.hints.remove(&id);
        }
    }
}

/// What a subscriber that was sent `sent` must be sent now that the set holds `now` (by task
/// id): the hints that are new or differ. `sent` becomes `now`. Hints the set forgot are
/// not sent: the subscriber's own entries expire, and its task list has caught up by then.
pub fn delta(sent: &mut BTreeMap<String, Hint>, now: &[Hint]) -> Vec<Hint> {
    let out: Vec<Hint> = now
        .iter()
        .filter(|h| sent.get(&h.task) != Some(h))
        .cloned()
        .collect();
    *sent = now.iter().map(|h| (h.task.clone(), h.clone())).collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hints::HintAddress;

    const KEEP: Duration = Duration::from_secs(60);
    const MS: Duration = Duration::from_millis(1);

    fn hint(task: &str, state: HintState, last: u8) -> Hint {
        Hint {
            task: task.into(),
            service: "svc".into(),
            slot: Some(1),
            state,
            addresses: if state == HintState::Running {
                vec![HintAddress {
                    network: "net".into(),
                    addr: std::net::IpAddr::from([10, 0, 0, last]),
                }]
            } else {
                vec![]
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_only_moves_forward_and_keeps_its_running_addresses() {
        let t0 = Instant::now();
        let mut s = HintSet::new(KEEP, 100);
        assert!(s.record(hint("a", HintState::Running, 5), t0));
        assert!(!s.record(hint("a", HintState::Running, 5), t0 + MS), "same");
        assert!(s.record(hint("a", HintState::Dead, 0), t0 + 2 * MS));
        assert!(
            !s.record(hint("a", HintState::Running, 5), t0 + 3 * MS),
            "a replayed start cannot revive it"
        );
        let held = &s.hints()[0];
        assert_eq!(held.state, HintState::Dead);
        assert_eq!(held.addresses.len(), 1, "the address it had, for the log");
    }

    #[tokio::test(start_paused = true)]
    async fn finished_tasks_are_forgotten_after_keep_running_ones_never() {
        let t0 = Instant::now();
        let mut s = HintSet::new(KEEP, 100);
        s.record(hint("run", HintState::Running, 5), t0);
        s.record(hint("dead", HintState::Dead, 0), t0 + MS);
        s.record(hint("stop", HintState::Stopping, 0), t0 + 2 * MS);
        assert_eq!(s.next_expiry(), Some(t0 + MS + KEEP));
        tokio::time::advance(KEEP + MS).await;
        assert!(s.expire(Instant::now()));
        assert_eq!(
            s.hints()
                .iter()
                .map(|h| h.task.as_str())
                .collect::<Vec<_>>(),
            ["run", "stop"]
        );
        tokio::time::advance(MS).await;
        assert!(s.expire(Instant::now()));
        assert_eq!(s.len(), 1);
        assert_eq!(s.next_expiry(), None);
        tokio::time::advance(KEEP * 100).await;
        assert!(!s.expire(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_set_is_bounded_and_evicts_the_oldest_finished_task_first() {
        let t0 = Instant::now();
        let mut s = HintSet::new(KEEP, 2);
        s.record(hint("old-run", HintState::Running, 1), t0);
        s.record(hint("dead", HintState::Dead, 0), t0 + MS);
        s.record(hint("new", HintState::Running, 2), t0 + 2 * MS);
        assert_eq!(
            s.hints()
                .iter()
                .map(|h| h.task.as_str())
                .collect::<Vec<_>>(),
            ["new", "old-run"]
        );
        s.record(hint("newer", HintState::Running, 3), t0 + 3 * MS);
        assert_eq!(
            s.hints()
                .iter()
                .map(|h| h.task.as_str())
                .collect::<Vec<_>>(),
            ["new", "newer"]
        );
    }

    #[test]
    fn a_subscriber_is_sent_only_what_changed_since_it_was_last_sent() {
        let mut sent = BTreeMap::new();
        let first = vec![hint("a", HintState::Running, 1)];
        assert_eq!(delta(&mut sent, &first), first, "all of it at first");
        assert_eq!(delta(&mut sent, &first), vec![], "nothing new");
        let second = vec![
            hint("a", HintState::Dead, 1),
            hint("b", HintState::Running, 2),
        ];
        assert_eq!(delta(&mut sent, &second), second);
        // "a" forgotten by the agent: nothing to send.
        let third = vec![hint("b", HintState::Running, 2)];
        assert_eq!(delta(&mut sent, &third), vec![]);
        assert_eq!(sent.len(), 1);
    }
}
