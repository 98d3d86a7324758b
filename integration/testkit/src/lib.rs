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
pub mod pebble;
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

/// A loopback port nobody listens on right now, below the kernel's ephemeral range, and never
/// handed out before by this process.
///
/// - Below the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 by
///   default): the kernel gives those ports to outgoing connections, so a port read back from
///   `bind(:0)` could become some client's source port before HAProxy or a test binds it (seen
///   as "Address already in use" under load).
/// - Below 30000 too: Swarm gives ports from 30000-32767 to services published without a
///   port of their own.
/// - Never handed out twice by this process: the tests of one binary run in parallel.
/// - Each process starts at its own offset (from its pid), so that test binaries running
///   at the same time (the two e2e stacks) rarely try the same port; the bind check below
///   catches the rest except for a window of microseconds.
///
/// Where the caller binds the listener itself, `bind(:0)` and `local_addr()` is better still.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    const LOWEST: u16 = 10_000;
    const SWARM_DYNAMIC_PORTS_START: u16 = 30_000;
    let end = ephemeral_ports_start().clamp(LOWEST + 1_000, SWARM_DYNAMIC_PORTS_START);
    let span = u32::from(end - LOWEST);
    let offset = std::process::id().wrapping_mul(7_919) % span;
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for step in 0..span {
        let port = LOWEST + ((offset + step) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free loopback port between {LOWEST} and {end}: every one is bound or already given");
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_ports_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
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

    #[test]
    fn free_ports_are_distinct_and_below_the_ephemeral_range() {
        let start = ephemeral_ports_start();
        let ports: BTreeSet<u16> = (0..200).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 200, "a port was handed out twice");
        let above: Vec<u16> = ports.iter().copied().filter(|&p| p >= start).collect();
        assert!(
            above.is_empty(),
            "ports in the ephemeral range (from {start}): {above:?}"
        );
    }
}
