//! At most a few calls to the engine at once from one burst of events: a scale-up of 100 tasks
//! on this node is 100 container events, and each may want an inspection. Without a bound
//! they all went to the local engine together, beside the listings the same events asked for.

use std::collections::VecDeque;
use std::future::Future;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

/// Futures made from items by a `start` function, at most `cap` running; the others wait, in
/// the order they came, and start as running ones finish.
pub(super) struct Bounded<I, F> {
    cap: usize,
    running: FuturesUnordered<F>,
    waiting: VecDeque<I>,
}

impl<I, F: Future> Bounded<I, F> {
    pub(super) fn new(cap: usize) -> Self {
        Bounded {
            cap: cap.max(1),
            running: FuturesUnordered::new(),
            waiting: VecDeque::new(),
        }
    }

    /// Starts `item` now, or queues it when `cap` are running.
    pub(super) fn push(&mut self, item: I, start: impl FnOnce(I) -> F) {
        if self.running.len() < self.cap {
            self.running.push(start(item));
        } else {
            self.waiting.push_back(item);
        }
    }

    /// Nothing running (then nothing waits either).
    pub(super) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// The next output, in completion order; the first waiting item starts in its place.
    /// Cancel-safe: nothing is lost when dropped before it resolves.
    pub(super) async fn next(&mut self, start: impl FnOnce(I) -> F) -> Option<F::Output> {
        let out = self.running.next().await?;
        if let Some(item) = self.waiting.pop_front() {
            self.running.push(start(item));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    type Call = Pin<Box<dyn Future<Output = u32> + Send>>;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_a_hundred_runs_at_most_cap_at_once_and_every_one_completes() {
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let start = |n: u32| -> Call {
            let (now, most) = (Arc::clone(&now), Arc::clone(&most));
            Box::pin(async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                n
            })
        };
        let mut calls = Bounded::new(8);
        for n in 0..100 {
            calls.push(n, start);
        }
        let mut done = Vec::new();
        while let Some(n) = calls.next(start).await {
            done.push(n);
        }
        assert!(calls.is_empty());
        assert_eq!(most.load(Ordering::SeqCst), 8);
        done.sort_unstable();
        assert_eq!(done, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_items_start_in_the_order_they_came() {
        let started = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let start = |n: u32| -> Call {
            started.lock().push(n);
            Box::pin(async move { n })
        };
        let mut calls = Bounded::new(1);
        for n in 0..5 {
            calls.push(n, start);
        }
        while calls.next(start).await.is_some() {}
        assert_eq!(*started.lock(), [0, 1, 2, 3, 4]);
    }
}
