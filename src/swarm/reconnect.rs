//! The event stream, reopened whenever it ends or fails, after a capped exponential backoff
//! (kube-runtime's `StreamBackoff` is the model). The watcher polls one endless stream of
//! [`Item`]s instead of holding reconnect and backoff code in its loop.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};
use tracing::{info, warn};

use super::SwarmError;
use crate::backoff::Backoff;
use crate::fields;

/// What the reconnecting stream yields.
#[derive(Debug)]
pub(super) enum Item<T> {
    /// A connection was opened from the last `since`: what happens from now on is covered, so
    /// this is the moment to list.
    Opened,
    Event(T),
    /// The connection ended, or `failed` (already logged); the next opens after a backoff.
    Ended {
        failed: bool,
    },
}

enum Connection<S> {
    /// Open the next one when polled.
    Due,
    Waiting(Pin<Box<Sleep>>),
    Open {
        stream: Pin<Box<S>>,
        opened: Instant,
        /// An event arrived on it: the engine is fine, the next failure starts over.
        healthy: bool,
    },
}

/// Opens a stream with `open(since)`, passes its events on, and after it ends waits
/// [`Backoff::next_delay`] before opening the next. The backoff starts over after a
/// connection that delivered an event or lived at least `healthy_after`.
pub(super) struct Reconnecting<S, F> {
    open: F,
    since: SystemTime,
    backoff: Backoff,
    healthy_after: Duration,
    connection: Connection<S>,
}

impl<T, S, F> Reconnecting<S, F>
where
    S: Stream<Item = Result<T, SwarmError>>,
    F: FnMut(SystemTime) -> S,
{
    pub fn new(open: F, since: SystemTime, backoff: Backoff, healthy_after: Duration) -> Self {
        Reconnecting {
            open,
            since,
            backoff,
            healthy_after,
            connection: Connection::Due,
        }
    }

    /// Where the next connection starts (the last event's time).
    pub fn set_since(&mut self, since: SystemTime) {
        self.since = since;
    }

    /// Whether a connection is open (between [`Item::Opened`] and [`Item::Ended`]).
    pub fn is_open(&self) -> bool {
        matches!(self.connection, Connection::Open { .. })
    }

    /// Ends the open connection from outside (its first listing failed, say): logged, and
    /// the next one opens after the backoff.
    pub fn end(&mut self, error: Option<SwarmError>) {
        let healthy = match &self.connection {
            Connection::Open {
                opened, healthy, ..
            } => *healthy || opened.elapsed() >= self.healthy_after,
            Connection::Due | Connection::Waiting(_) => return,
        };
        if healthy {
            self.backoff.reset();
        }
        let delay = self.backoff.next_delay();
        let delay_ms = fields::ms(delay);
        match error {
            Some(e) => {
                warn!(error = %e, transient = e.is_transient(), delay_ms, "Docker event stream failed; reconnecting")
            }
            None => info!(delay_ms, "Docker event stream ended; reconnecting"),
        }
        self.connection = Connection::Waiting(Box::pin(tokio::time::sleep(delay)));
    }
}

impl<T, S, F> Stream for Reconnecting<S, F>
where
    S: Stream<Item = Result<T, SwarmError>>,
    F: FnMut(SystemTime) -> S + Unpin,
{
    type Item = Item<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item<T>>> {
        let this = self.get_mut();
        loop {
            match &mut this.connection {
                Connection::Waiting(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    this.connection = Connection::Due;
                }
                Connection::Due => {
                    this.connection = Connection::Open {
                        stream: Box::pin((this.open)(this.since)),
                        opened: Instant::now(),
                        healthy: false,
                    };
                    return Poll::Ready(Some(Item::Opened));
                }
                Connection::Open {
                    stream, healthy, ..
                } => {
                    return Poll::Ready(Some(match ready!(stream.poll_next_unpin(cx)) {
                        Some(Ok(event)) => {
                            *healthy = true;
                            Item::Event(event)
                        }
                        Some(Err(e)) => {
                            this.end(Some(e));
                            Item::Ended { failed: true }
                        }
                        None => {
                            this.end(None);
                            Item::Ended { failed: false }
                        }
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use futures_util::stream;

    const MS: Duration = Duration::from_millis(1);

    type Script = Arc<Mutex<Vec<Vec<Result<u32, SwarmError>>>>>;

    fn failure() -> Result<u32, SwarmError> {
        Err(SwarmError::Stream {
            message: "gone".into(),
        })
    }

    /// A stream opener that plays one scripted connection per open (then ends at once), and
    /// records when each was opened and from which `since`.
    fn opener(
        script: Script,
        opens: Arc<Mutex<Vec<(Instant, SystemTime)>>>,
    ) -> impl FnMut(SystemTime) -> stream::Iter<std::vec::IntoIter<Result<u32, SwarmError>>> + Unpin
    {
        move |since| {
            opens.lock().expect("opens").push((Instant::now(), since));
            let mut script = script.lock().expect("script");
            let items = if script.is_empty() {
                Vec::new()
            } else {
                script.remove(0)
            };
            stream::iter(items)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_connections_reopen_after_doubling_delays_that_an_event_resets() {
        let script: Script = Arc::new(Mutex::new(vec![
            vec![failure()],
            vec![failure()],
            vec![failure()],
            vec![Ok(7), failure()],
            vec![],
        ]));
        let opens = Arc::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut s = Reconnecting::new(
            opener(script, Arc::clone(&opens)),
            t0,
            Backoff::new(100 * MS, 300 * MS),
            Duration::from_secs(60),
        );
        let start = Instant::now();
        let mut seen = Vec::new();
        while seen.len() < 12 {
            let item = s.next().await.expect("endless");
            seen.push(match item {
                Item::Opened => "opened".to_owned(),
                Item::Event(n) => {
                    s.set_since(t0 + Duration::from_secs(u64::from(n)));
                    format!("event {n}")
                }
                Item::Ended { .. } => "ended".to_owned(),
            });
        }
        assert_eq!(
            seen,
            [
                "opened", "ended", "opened", "ended", "opened", "ended", "opened", "event 7",
                "ended", "opened", "ended", "opened"
            ]
        );
        let opens = opens.lock().expect("opens").clone();
        let at: Vec<Duration> = opens.iter().map(|(t, _)| *t - start).collect();
        // 100, 200, then 300 (capped); an event resets: 100; then 200.
        assert_eq!(
            at,
            [
                Duration::ZERO,
                100 * MS,
                300 * MS,
                600 * MS,
                700 * MS,
                900 * MS
            ]
        );
        assert_eq!(
            opens[4].1,
            t0 + Duration::from_secs(7),
            "since the last event"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_ended_from_outside_waits_its_delay_and_does_not_reopen_before() {
        let script: Script = Arc::new(Mutex::new(vec![]));
        let opens = Arc::default();
        let mut s = Reconnecting::<_, _>::new(
            opener(script, Arc::clone(&opens)),
            SystemTime::UNIX_EPOCH,
            Backoff::new(100 * MS, 300 * MS),
            Duration::from_secs(60),
        );
        assert!(matches!(s.next().await, Some(Item::Opened)));
        assert!(s.is_open());
        s.end(Some(SwarmError::Stream {
            message: "first listing failed".into(),
        }));
        assert!(!s.is_open());
        let mut next = s.next();
        assert!(futures_util::poll!(&mut next).is_pending());
        tokio::time::advance(99 * MS).await;
        assert!(futures_util::poll!(&mut next).is_pending());
        tokio::time::advance(MS).await;
        assert!(matches!(
            futures_util::poll!(&mut next),
            Poll::Ready(Some(Item::Opened))
        ));
    }
}
