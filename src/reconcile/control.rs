//! The control loop: when passes run. On every snapshot change (a burst within the debounce
//! after a pass is one more pass), on the resync timer, when HAProxy's worker changes, and
//! after a failure with capped doubling. Time is tokio's, so paused-clock tests drive it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{error, info, info_span, warn, Instrument};

use super::{ReconcileError, Reconciler, Report};
use crate::backoff::Backoff;
use crate::fields;
use crate::model::Snapshot;

/// When passes run.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Full pass even without a change: HAProxy-side drift is caught here.
    pub resync: Duration,
    /// How often `show info` checks that HAProxy is the same process.
    pub proxy_check: Duration,
    /// Minimum gap between two passes, so bursts coalesce.
    pub debounce: Duration,
    /// Retry delay after a failed pass, doubled up to `max_retry`.
    pub retry: Duration,
    pub max_retry: Duration,
}

/// What the loop drives: the [`Reconciler`], or a scripted stand-in in tests.
pub trait Passes {
    /// One level-triggered pass over `snap`.
    fn pass(
        &mut self,
        snap: &Snapshot,
    ) -> impl Future<Output = Result<Report, ReconcileError>> + Send;
    /// Whether HAProxy's worker is the one the last pass saw (false when unreachable).
    fn proxy_is_same(&mut self) -> impl Future<Output = bool> + Send;
    /// The loop is alive (each turn).
    fn beat(&self) {}
    /// The snapshot the next pass works on.
    fn next_snapshot(&self, _snap: &Arc<Snapshot>) {}
    /// The resync timer fired: the next pass reads HAProxy in full.
    fn resync_due(&mut self) {}
    /// Resolves when something besides Swarm asks for a pass (secrets delivered); never by
    /// default.
    fn woken(&self) -> impl Future<Output = ()> + Send + 'static {
        std::future::pending()
    }
}

impl Passes for Reconciler {
    fn pass(
        &mut self,
        snap: &Snapshot,
    ) -> impl Future<Output = Result<Report, ReconcileError>> + Send {
        Reconciler::pass(self, snap)
    }

    fn proxy_is_same(&mut self) -> impl Future<Output = bool> + Send {
        Reconciler::proxy_is_same(self)
    }

    fn beat(&self) {
        self.observer().beat();
    }

    fn next_snapshot(&self, snap: &Arc<Snapshot>) {
        self.observer().snapshot(Arc::clone(snap));
    }

    fn resync_due(&mut self) {
        Reconciler::read_everything_next(self);
    }

    fn woken(&self) -> impl Future<Output = ()> + Send + 'static {
        let delivery = self.delivery().cloned();
        let acme = self.acme_handle().cloned();
        async move {
            let delivered = async {
                match delivery {
                    Some(d) => d.changed().await,
                    None => std::future::pending().await,
                }
            };
            let acme = async {
                match acme {
                    Some(a) => a.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = delivered => {}
                () = acme => {}
            }
        }
    }
}

/// Run passes until the snapshot source ends: on each snapshot change, on the resync timer,
/// when HAProxy restarts, when [`Passes::woken`] says so, and after failures with capped
/// backoff.
pub async fn run<P: Passes>(
    mut reconciler: P,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    timing: Timing,
) {
    // Both timers tick at once first: the pass after the first one, and a first worker check.
    let mut resync = tokio::time::interval(timing.resync);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut proxy_check = tokio::time::interval(timing.proxy_check);
    proxy_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut retry = Backoff::new(timing.retry, timing.max_retry);
    let mut pending = true;
    // A pass asked for by the last one (a backend held before its retirement).
    let mut follow_up: Option<Instant> = None;
    let mut pass_no: u64 = 0;
    loop {
        reconciler.beat();
        if !pending {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        info!("snapshot source ended; stopping");
                        return;
                    }
                }
                _ = resync.tick() => reconciler.resync_due(),
                () = sleep_until_some(follow_up) => {}
                () = reconciler.woken() => {}
                _ = proxy_check.tick() => {
                    if reconciler.proxy_is_same().await {
                        continue;
                    }
                    info!("haproxy changed or unreachable; reconciling");
                }
            }
        }
        let snap = snapshots.borrow_and_update().clone();
        reconciler.next_snapshot(&snap);
        pass_no += 1;
        let span = info_span!("pass", n = pass_no);
        match reconciler.pass(&snap).instrument(span).await {
            Ok(report) => {
                pending = false;
                follow_up = report.next_pass_in.map(|d| Instant::now() + d);
                retry.reset();
                if !timing.debounce.is_zero() {
                    tokio::time::sleep(timing.debounce).await;
                }
            }
            Err(e) => {
                let delay = retry.next_delay();
                let retry_ms = fields::ms(delay);
                if e.is_transient() {
                    warn!(error = %e, retry_ms, "pass failed; retrying");
                } else {
                    error!(error = %e, retry_ms, "pass failed");
                }
                pending = true;
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use tokio::time::Instant;

    use crate::haproxy::render::FilesError;

    const MS: Duration = Duration::from_millis(1);

    fn timing() -> Timing {
        Timing {
            resync: Duration::from_secs(30),
            proxy_check: Duration::from_secs(1),
            debounce: 5 * MS,
            retry: 200 * MS,
            max_retry: Duration::from_secs(10),
        }
    }

    /// A snapshot told apart by its number of networks.
    fn snap(n: usize) -> Arc<Snapshot> {
        Arc::new(crate::model::fixtures::numbered(n))
    }

    /// Records each pass (when, and which snapshot), fails while `failures` says so, and
    /// answers the worker check from `same_proxy`.
    #[derive(Clone, Default)]
    struct Script {
        passes: Arc<Mutex<Vec<(Instant, usize)>>>,
        failures: Arc<Mutex<VecDeque<bool>>>,
        restarted: Arc<AtomicBool>,
        wake: Arc<tokio::sync::Notify>,
        /// What the next pass's report asks for: a pass after this long.
        next_pass_in: Arc<Mutex<Option<Duration>>>,
    }

    impl Script {
        fn passes(&self) -> Vec<(Instant, usize)> {
            self.passes.lock().expect("passes").clone()
        }

        /// Forget the passes so far (start-up passes).
        fn clear(&self) {
            self.passes.lock().expect("passes").clear();
        }

        fn fail_next(&self, n: usize) {
            self.failures
                .lock()
                .expect("failures")
                .extend((0..n).map(|_| true));
        }
    }

    impl Passes for Script {
        fn pass(
            &mut self,
            snap: &Snapshot,
        ) -> impl Future<Output = Result<Report, ReconcileError>> + Send {
            self.passes
                .lock()
                .expect("passes")
                .push((Instant::now(), snap.networks.len()));
            self.restarted.store(false, Ordering::SeqCst);
            let fail = self
                .failures
                .lock()
                .expect("failures")
                .pop_front()
                .unwrap_or(false);
            std::future::ready(if fail {
                Err(ReconcileError::Files(FilesError {
                    path: "/nowhere".into(),
                    source: std::io::Error::other("scripted failure"),
                }))
            } else {
                Ok(Report {
                    next_pass_in: self.next_pass_in.lock().expect("next").take(),
                    ..Report::default()
                })
            })
        }

        fn proxy_is_same(&mut self) -> impl Future<Output = bool> + Send {
            std::future::ready(!self.restarted.load(Ordering::SeqCst))
        }

        fn woken(&self) -> impl Future<Output = ()> + Send + 'static {
            let wake = Arc::clone(&self.wake);
            async move { wake.notified().await }
        }
    }

    /// Starts the loop on `script` and lets its start-up passes run; returns the sender and
    /// the time the loop went idle.
    async fn started(script: &Script) -> (watch::Sender<Arc<Snapshot>>, Instant) {
        let (tx, rx) = watch::channel(snap(0));
        tokio::spawn(run(script.clone(), rx, timing()));
        tokio::time::sleep(100 * MS).await;
        script.clear();
        (tx, Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_passes_at_start_then_waits_for_a_change() {
        let script = Script::default();
        let (tx, rx) = watch::channel(snap(0));
        let begun = Instant::now();
        tokio::spawn(run(script.clone(), rx, timing()));
        tokio::time::sleep(Duration::from_secs(29)).await;
        // The first pass at once; the resync timer's first tick makes one more after the
        // debounce; then nothing until a change, the resync or a new worker.
        let at: Vec<Duration> = script.passes().iter().map(|(t, _)| *t - begun).collect();
        assert_eq!(at, [Duration::ZERO, 5 * MS]);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_runs_a_pass_at_once_without_a_snapshot_change() {
        let script = Script::default();
        let (_tx, idle) = started(&script).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(script.passes(), [], "nothing changed: no pass");
        // Secrets delivered (the delivery's notify), also while a pass runs: never lost.
        let woken = Instant::now();
        script.wake.notify_one();
        tokio::time::sleep(100 * MS).await;
        assert_eq!(script.passes(), [(woken, 0)]);
        assert!(woken > idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_that_asks_for_another_gets_it_after_the_delay_it_names_and_no_more() {
        let script = Script::default();
        let (_tx, _idle) = started(&script).await;
        // A pass that kept a backend whose routes just left it (see retire::RETIRE_AFTER).
        *script.next_pass_in.lock().expect("next") = Some(Duration::from_secs(1));
        let woken = Instant::now();
        script.wake.notify_one();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            script.passes(),
            [(woken, 0), (woken + Duration::from_secs(1), 0)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_snapshots_1_ms_apart_during_the_debounce_make_one_pass() {
        let script = Script::default();
        let (tx, idle) = started(&script).await;
        tx.send(snap(1)).expect("loop running");
        tokio::time::sleep(MS).await;
        tx.send(snap(2)).expect("loop running");
        tokio::time::sleep(MS).await;
        tx.send(snap(3)).expect("loop running");
        tokio::time::sleep(100 * MS).await;
        // The first change passes at once; the two in its debounce are one pass, on the last.
        assert_eq!(script.passes(), [(idle, 1), (idle + 5 * MS, 3)]);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_passes_wait_200_400_800_ms_and_a_success_resets_the_delay() {
        let script = Script::default();
        let (tx, idle) = started(&script).await;
        script.fail_next(3);
        tx.send(snap(1)).expect("loop running");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let at: Vec<Duration> = script.passes().iter().map(|(t, _)| *t - idle).collect();
        assert_eq!(at, [Duration::ZERO, 200 * MS, 600 * MS, 1400 * MS]);

        script.clear();
        script.fail_next(1);
        let again = Instant::now();
        tx.send(snap(2)).expect("loop running");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let at: Vec<Duration> = script.passes().iter().map(|(t, _)| *t - again).collect();
        assert_eq!(at, [Duration::ZERO, 200 * MS], "back to 200 ms");
    }

    #[tokio::test(start_paused = true)]
    async fn the_retry_delay_stops_doubling_at_its_cap() {
        let script = Script::default();
        let (tx, idle) = started(&script).await;
        script.fail_next(7);
        tx.send(snap(1)).expect("loop running");
        // Before the resync timer's next tick (30 s after the start).
        tokio::time::sleep(Duration::from_secs(29)).await;
        let passes = script.passes();
        let gaps: Vec<Duration> = passes.windows(2).map(|w| w[1].0 - w[0].0).collect();
        let ms = Duration::from_millis;
        assert_eq!(
            gaps,
            [
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(6400),
                ms(10_000)
            ],
            "seven failures (12.8 s capped to 10 s), then a success"
        );
        assert_eq!(passes[0].0, idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_haproxy_restart_triggers_a_pass_at_the_next_worker_check() {
        let script = Script::default();
        let (_tx, idle) = started(&script).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(script.passes(), [], "the same worker: no pass");

        script.restarted.store(true, Ordering::SeqCst);
        let restarted = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let passes = script.passes();
        assert_eq!(passes.len(), 1, "{passes:?}");
        let after = passes[0].0 - restarted;
        assert!(
            after <= Duration::from_secs(1),
            "within a check interval: {after:?}"
        );
        assert!(passes[0].0 > idle);
    }

    #[tokio::test(start_paused = true)]
    async fn the_resync_timer_passes_without_a_change() {
        let script = Script::default();
        let (_tx, _) = started(&script).await;
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(script.passes().len(), 2, "one pass per 30 s");
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_stops_when_the_snapshot_source_ends() {
        let script = Script::default();
        let (tx, rx) = watch::channel(snap(0));
        let running = tokio::spawn(run(script.clone(), rx, timing()));
        tokio::time::sleep(100 * MS).await;
        drop(tx);
        tokio::time::timeout(Duration::from_secs(1), running)
            .await
            .expect("stops")
            .expect("no panic");
    }
}
