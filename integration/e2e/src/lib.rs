//! Harness for swarm-lb's end-to-end scenarios on a real one-node Swarm: the compose stack
//! (stock-layout HAProxy + swarm-lb, locally built images), Docker CLI helpers, an HTTP load
//! generator on loopback, and polling with deadlines.
#![forbid(unsafe_code)]

pub mod docker;
pub mod load;
pub mod stack;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Poll `f` until it returns `Some`, or panic after `within` naming `what`.
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

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
