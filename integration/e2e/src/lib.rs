//! Harness for swarm-lb's end-to-end scenarios on a real one-node Swarm: the compose stack
//! (stock-layout HAProxy + swarm-lb, locally built images), Docker CLI helpers, an HTTP load
//! generator on loopback, and polling with deadlines.
#![forbid(unsafe_code)]

pub mod docker;
pub mod load;
pub mod proxy;
pub mod stack;

// Shared with swarm-lb's own tests and the benchmarks; the scenarios import them from here.
pub use swarm_lb_testkit::{free_port, poll_until};

/// A name unique to this process and call, usable as a Swarm service or network name.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
