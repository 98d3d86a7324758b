//! Capped exponential backoff: between reconnects of Docker's event stream, and between
//! retries of a failed reconcile pass.
//!
//! Jitter ([`Backoff::with_jitter`]) is for retries of a server that many clients share: every
//! edge of a cluster reconnects to the same manager after it restarts, and with equal delays
//! they would all come back in the same instant, pass after pass.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// `initial`, then doubling, never above `max`; [`Backoff::reset`] after a healthy stretch.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    jitter: bool,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.min(max);
        Backoff {
            initial,
            max,
            next: initial,
            jitter: false,
        }
    }

    /// Each delay drawn at random between half of it and all of it ("equal jitter"): never
    /// above `max`, and still growing, while clients that failed together spread out.
    pub fn with_jitter(mut self) -> Backoff {
        self.jitter = true;
        self
    }

    /// The delay before the next attempt; the one after it is twice as long (capped).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        if self.jitter {
            let half = d / 2;
            half + half.mul_f64(unit_random())
        } else {
            d
        }
    }

    /// Back to `initial`: the last attempt worked.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// A number in `[0, 1)`. std's `RandomState` is seeded from the OS once per thread and
/// gives each new value other keys, which is random enough to spread retries: no crate needed.
fn unit_random() -> f64 {
    let bits = RandomState::new().hash_one(0u8);
    // The top 53 bits, the precision of an f64 in [0, 1).
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_cap_and_reset_starts_over() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let got: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(
            got,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        b.reset();
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn an_initial_delay_above_the_cap_is_capped() {
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(5));
        assert_eq!(b.next_delay(), Duration::from_secs(5));
        assert_eq!(b.next_delay(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn clients_failing_together_retry_spread_out_within_half_the_delay_and_the_cap() {
        let start = tokio::time::Instant::now();
        let clients: Vec<_> = (0..20)
            .map(|_| {
                tokio::spawn(async move {
                    let mut b = Backoff::new(100 * MS, 300 * MS).with_jitter();
                    let mut retries = Vec::new();
                    for _ in 0..4 {
                        tokio::time::sleep(b.next_delay()).await;
                        retries.push(tokio::time::Instant::now());
                    }
                    retries
                })
            })
            .collect();
        let mut firsts = std::collections::BTreeSet::new();
        for client in clients {
            let retries = client.await.expect("client");
            let mut last = start;
            // The delays without jitter: 100, 200, 300 (capped), 300.
            for (at, full) in retries.iter().zip([100, 200, 300, 300]) {
                let gap = *at - last;
                assert!(
                    gap >= full / 2 * MS && gap <= full * MS,
                    "a gap of {gap:?} for a delay of {full} ms"
                );
                last = *at;
            }
            firsts.insert(retries[0] - start);
        }
        assert!(
            firsts.len() > 10,
            "20 clients, first retries at only {} instants",
            firsts.len()
        );
    }
}
