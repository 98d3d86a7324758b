//! Holding back a reload HAProxy refused. A refused reload is retried by the control loop
//! within seconds; when what it would load has not changed (same template, same backends with
//! the same options and slot counts), HAProxy refuses it again, and every attempt costs a
//! worker start, and for a refused `bind` the admin socket's path (taken back by a reload of
//! the last good files). Each such cycle also ages the serving worker towards
//! `mworker-max-reloads`, cutting long connections. So the same reload waits, 10 s after the
//! first refusal, doubling to 5 minutes; a change in what it would load is tried at once.
//! Runtime changes go on meanwhile. Pure: the caller passes the time.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use tokio::time::Instant;

use crate::haproxy::ProxyState;

const FIRST_HOLD: Duration = Duration::from_secs(10);
const MAX_HOLD: Duration = Duration::from_secs(300);

/// What a reload loads, as far as HAProxy can refuse it: the template and each backend's
/// name, mode, options and slot count (server addresses and states are runtime matters).
pub(super) fn reload_key(target: &ProxyState, template: &str) -> u64 {
    let mut h = DefaultHasher::new();
    template.hash(&mut h);
    for (name, b) in &target.backends {
        name.as_str().hash(&mut h);
        b.mode.hash(&mut h);
        b.options.hash(&mut h);
        b.servers.len().hash(&mut h);
    }
    h.finish()
}

#[derive(Debug, Default)]
pub(super) struct ReloadHold {
    refused: Option<Refusal>,
}

#[derive(Debug, Clone, Copy)]
struct Refusal {
    key: u64,
    at: Instant,
    times: u32,
}

impl ReloadHold {
    /// How long the reload of `key` must still wait (`None`: try it now).
    pub fn held(&self, key: u64, now: Instant) -> Option<(Duration, u32)> {
        let r = self.refused?;
        if r.key != key {
            return None;
        }
        let until = r.at + hold_for(r.times);
        (now < until).then(|| (until - now, r.times))
    }

    /// HAProxy refused the reload of `key` at `now`.
    pub fn refused(&mut self, key: u64, now: Instant) {
        let times = match self.refused {
            Some(r) if r.key == key => r.times + 1,
            _ => 1,
        };
        self.refused = Some(Refusal {
            key,
            at: now,
            times,
        });
    }

    /// A reload went through: nothing is held any more.
    pub fn accepted(&mut self) {
        self.refused = None;
    }
}

fn hold_for(times: u32) -> Duration {
    let doublings = times.saturating_sub(1).min(16);
    FIRST_HOLD.saturating_mul(1 << doublings).min(MAX_HOLD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::{Admin, BackendState, Server};
    use crate::model::{BackendName, Mode, ServerName};

    fn state(backends: &[(&str, usize)]) -> ProxyState {
        let mut s = ProxyState::default();
        for (name, slots) in backends {
            let servers = (0..*slots)
                .map(|i| Server::free(ServerName::slot(i + 1)))
                .collect();
            s.backends.insert(
                BackendName::parse(name).expect("name"),
                std::sync::Arc::new(BackendState {
                    mode: Mode::Task,
                    servers,
                    options: Default::default(),
                }),
            );
        }
        s
    }

    #[test]
    fn the_same_refused_reload_waits_longer_each_time_up_to_five_minutes() {
        let t0 = Instant::now();
        let key = reload_key(&state(&[("web", 42)]), "template");
        let mut hold = ReloadHold::default();
        assert_eq!(hold.held(key, t0), None, "nothing refused yet");
        hold.refused(key, t0);
        assert_eq!(hold.held(key, t0), Some((Duration::from_secs(10), 1)));
        assert_eq!(hold.held(key, t0 + Duration::from_secs(10)), None);
        let t1 = t0 + Duration::from_secs(10);
        hold.refused(key, t1);
        assert_eq!(
            hold.held(key, t1 + Duration::from_secs(5)),
            Some((Duration::from_secs(15), 2))
        );
        let mut t = t1;
        for _ in 0..20 {
            hold.refused(key, t);
            t += Duration::from_secs(1);
        }
        assert_eq!(
            hold.held(key, t).map(|(d, _)| d),
            Some(MAX_HOLD - Duration::from_secs(1))
        );
        hold.accepted();
        assert_eq!(hold.held(key, t), None);
    }

    #[test]
    fn a_change_in_what_the_reload_loads_is_tried_at_once_but_runtime_state_is_not_such_a_change() {
        let t0 = Instant::now();
        let refused = reload_key(&state(&[("web", 42)]), "template");
        let mut hold = ReloadHold::default();
        hold.refused(refused, t0);
        // Another backend, more slots, another template: a different reload.
        for other in [
            reload_key(&state(&[("web", 42), ("api", 42)]), "template"),
            reload_key(&state(&[("web", 84)]), "template"),
            reload_key(&state(&[("web", 42)]), "fixed template"),
        ] {
            assert_ne!(other, refused);
            assert_eq!(hold.held(other, t0), None);
        }
        // A slot's address and state are runtime matters: the same reload.
        let mut moved = state(&[("web", 42)]);
        let web = BackendName::parse("web").expect("name");
        let slot =
            &mut std::sync::Arc::make_mut(moved.backends.get_mut(&web).expect("web")).servers[0];
        slot.addr = "10.0.0.7:8080".parse().expect("addr");
        slot.admin = Admin::Ready;
        assert_eq!(reload_key(&moved, "template"), refused);
    }
}
