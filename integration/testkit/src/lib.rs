//! Test support shared by swarm-lb's integration tests (`tests/`), its end-to-end harness
//! (`integration/e2e`) and its benchmarks (`integration/bench`): a real master-worker HAProxy
//! ([`HaproxyProcess`]), free loopback ports, polling with a deadline, and real TLS tools
//! ([`tls`]).
//!
//! It does not depend on swarm-lb, so that swarm-lb can take it as a dev-dependency: callers
//! render their own configs and add their own readiness checks (a worker listed by the master,
//! say) through [`HaproxyProcess::wait_until`].
#![forbid(unsafe_code)]

mod haproxy;
pub mod tls;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub use haproxy::{
    group_members, haproxy, haproxy_bin, HaproxyBin, HaproxyNotFound, HaproxyProcess, Launch,
    Listener, StartError,
};

/// How often [`poll_until`] and [`HaproxyProcess::wait_until`] look again: soon enough that a
/// test sees a change within a few ms, seldom enough to leave the CPU to what it waits for.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Call `f` until it returns `Some`, at most for `within`; panics naming `what` and `within`
/// after that. `f` is called at least once, also with a zero `within`.
pub async fn poll_until<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A loopback port nobody listens on right now (bind 127.0.0.1:0, read it, release it), and
/// never handed out before by this process: the tests of one binary run in parallel, and two
/// of them given the same port would collide when they bind it on the same `127.0.0.N` (seen
/// as "Address already in use" under load). Another process may still take it before the
/// caller binds it; tests accept that small race.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn poll_until_returns_the_first_value_and_stops_calling() {
        let calls = Cell::new(0);
        let got = poll_until(Duration::from_secs(1), "the third call", || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { (n == 3).then_some(n * 10) }
        })
        .await;
        assert_eq!(got, 30);
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn poll_until_calls_once_even_with_no_time_left() {
        let got = poll_until(Duration::ZERO, "an immediate value", || async { Some(7) }).await;
        assert_eq!(got, 7);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 200ms waiting for something that never comes")]
    async fn poll_until_panics_naming_what_and_the_duration_after_the_deadline() {
        poll_until(
            Duration::from_millis(200),
            "something that never comes",
            || async { None::<()> },
        )
        .await;
    }

    #[test]
    fn free_port_can_be_bound() {
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the free port");
    }
}
