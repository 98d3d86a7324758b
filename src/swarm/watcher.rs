//! The watch loop: Docker events in, [`Snapshot`]s out on a `watch` channel.
//!
//! Per connection: take a timestamp, open the event stream with `since` that timestamp, THEN
//! list, so that nothing happening during the list is lost (as Vector's docker source does).
//! Every event re-lists (tasks only for a container event) and marks its service as moving;
//! moving services are re-listed at a short interval until they settle (Swarm emits no task
//! events). A periodic full resync covers what no event announced. A snapshot is sent only
//! when it differs from the last one. When the stream ends or fails, reconnect with `since`
//! the last event's time, after a capped exponential backoff.
//!
//! When nothing is moving, the loop sleeps on the stream and the resync timer only.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::backoff::Backoff;
use super::convert::{self, Listing};
use super::events::{self, Batch, Refresh};
use super::settle::{Outcome, SettleOptions, Settler};
use super::{Docker, SwarmError};
use crate::model::Snapshot;

/// Timing of the watch loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    /// Task poll interval while a service is moving (right after an event touched it).
    /// One task list costs about 1 ms on the engine here.
    pub settle_poll: Duration,
    /// How long after the last event to keep polling at `settle_poll`.
    pub settle_fast_for: Duration,
    /// Poll interval after that, for services still moving (e.g. an image being loaded).
    pub settle_poll_slow: Duration,
    /// Stop polling a service that has not settled after this long (warns).
    pub settle_timeout: Duration,
    /// Keep polling a touched service at least this long, even if it looks settled at once:
    /// the listing right after a service update may predate the orchestrator's reaction.
    pub settle_grace: Duration,
    /// Full re-list interval, whatever the events say.
    pub resync: Duration,
    /// Deadline for one listing.
    pub list_timeout: Duration,
    /// Reconnect with `since` this much before the last event seen, so that events in the
    /// same instant are replayed rather than lost (replays only cost a re-list).
    pub since_margin: Duration,
    /// First delay before reconnecting the event stream; doubles on each failure.
    pub backoff_initial: Duration,
    /// Cap of that delay; a connection that lived this long resets it.
    pub backoff_max: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            settle_poll: Duration::from_millis(25),
            settle_fast_for: Duration::from_secs(5),
            settle_poll_slow: Duration::from_millis(250),
            settle_timeout: Duration::from_secs(60),
            settle_grace: Duration::from_millis(250),
            resync: Duration::from_secs(30),
            list_timeout: Duration::from_secs(10),
            since_margin: Duration::from_secs(1),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

impl WatchOptions {
    fn settle(&self) -> SettleOptions {
        SettleOptions {
            fast: self.settle_poll,
            fast_for: self.settle_fast_for,
            slow: self.settle_poll_slow,
            timeout: self.settle_timeout,
            grace: self.settle_grace,
        }
    }
}

/// Follows one Docker engine and publishes its [`Snapshot`]s.
#[derive(Debug)]
pub struct Watcher {
    docker: Docker,
    options: WatchOptions,
}

/// Loop state that outlives one connection of the event stream.
struct State {
    settler: Settler,
    /// The last full listing (services and networks are reused by task-only polls).
    cache: Option<Listing>,
    /// Whether a snapshot was ever sent: the first one is sent even if it equals the
    /// channel's initial value, so receivers can wait for `changed()`.
    published: bool,
}

impl Watcher {
    pub fn new(docker: Docker, options: WatchOptions) -> Watcher {
        Watcher { docker, options }
    }

    /// Runs until every receiver of `tx` is dropped. Never returns an error: Docker being
    /// away is retried with backoff (and logged), the last snapshot stays in the channel.
    pub async fn run(self, tx: watch::Sender<Arc<Snapshot>>) {
        let o = &self.options;
        let mut backoff = Backoff::new(o.backoff_initial, o.backoff_max);
        let mut state = State {
            settler: Settler::new(o.settle()),
            cache: None,
            published: false,
        };
        let mut since = SystemTime::now();
        loop {
            let opened = Instant::now();
            let since_param = events::since_param(since, o.since_margin);
            info!(endpoint = %self.docker.endpoint(), since = %since_param, "watching Docker events");
            let mut stream = Box::pin(self.docker.events(since_param));
            let mut healthy = false;

            let ended: Option<SwarmError> = 'connection: {
                // The stream's `since` covers anything that happens from here on, so a list
                // taken now misses nothing.
                if let Err(e) = self.refresh(Refresh::Full, &tx, &mut state).await {
                    break 'connection Some(e);
                }
                let mut resync = tokio::time::interval_at(Instant::now() + o.resync, o.resync);
                resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    let poll_at = state.settler.next_poll();
                    tokio::select! {
                        _ = tx.closed() => return,
                        item = stream.next() => {
                            let mut batch = Batch::default();
                            let mut end = match item {
                                Some(Ok(e)) => { note(&e, &mut batch); None }
                                Some(Err(e)) => break 'connection Some(e),
                                None => break 'connection None,
                            };
                            // Take whatever else is already there: a burst is one re-list.
                            while end.is_none() {
                                match stream.next().now_or_never() {
                                    Some(Some(Ok(e))) => note(&e, &mut batch),
                                    Some(Some(Err(e))) => end = Some(Some(e)),
                                    Some(None) => end = Some(None),
                                    None => break,
                                }
                            }
                            healthy = true;
                            if let Some(t) = batch.last_time_nano {
                                since = events::time_from_nanos(t);
                            }
                            self.apply(batch, &tx, &mut state).await;
                            if let Some(end) = end {
                                break 'connection end;
                            }
                        }
                        _ = resync.tick() => {
                            debug!("periodic resync");
                            if let Err(e) = self.refresh(Refresh::Full, &tx, &mut state).await {
                                warn!(error = %e, transient = e.is_transient(), "resync failed");
                            }
                        }
                        _ = sleep_until(poll_at), if poll_at.is_some() => {
                            if let Err(e) = self.refresh(Refresh::Tasks, &tx, &mut state).await {
                                warn!(error = %e, transient = e.is_transient(), "task poll failed");
                            }
                        }
                    }
                }
            };

            if healthy || opened.elapsed() >= o.backoff_max {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            let delay_ms = delay.as_millis() as u64;
            match ended {
                Some(e) => {
                    warn!(error = %e, transient = e.is_transient(), delay_ms, "Docker event stream failed; reconnecting")
                }
                None => info!(delay_ms, "Docker event stream ended; reconnecting"),
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Marks what a burst of events touched, then re-lists once.
    async fn apply(&self, batch: Batch, tx: &watch::Sender<Arc<Snapshot>>, state: &mut State) {
        let now = Instant::now();
        for s in &batch.services {
            state.settler.touch(s, now);
        }
        if batch.any_service {
            state.settler.touch_all_unsettled();
        }
        let refresh = batch.refresh.unwrap_or(Refresh::Nothing);
        if refresh == Refresh::Nothing {
            return;
        }
        if let Err(e) = self.refresh(refresh, tx, state).await {
            warn!(error = %e, transient = e.is_transient(), "re-list after event failed");
        }
    }

    /// Lists (everything, or only tasks on top of the cached services and networks),
    /// publishes the snapshot if it changed, and updates what is moving.
    async fn refresh(
        &self,
        refresh: Refresh,
        tx: &watch::Sender<Arc<Snapshot>>,
        state: &mut State,
    ) -> Result<(), SwarmError> {
        let started = Instant::now();
        let deadline = self.options.list_timeout;
        let timeout = |op| SwarmError::Timeout {
            op,
            after: deadline,
        };
        let listing = match (refresh, &state.cache) {
            (Refresh::Tasks, Some(prev)) => {
                let tasks = tokio::time::timeout(deadline, self.docker.tasks()).await;
                tasks
                    .map_err(|_| timeout("list tasks"))
                    .and_then(|r| r)
                    .map(|tasks| Listing {
                        snapshot: Snapshot {
                            services: prev.snapshot.services.clone(),
                            tasks: convert::sort_tasks(tasks),
                            networks: prev.snapshot.networks.clone(),
                        },
                        progress: prev.progress.clone(),
                    })
            }
            _ => {
                let all = tokio::time::timeout(deadline, self.docker.listing()).await;
                all.map_err(|_| timeout("list")).and_then(|r| r)
            }
        };
        let now = Instant::now();
        let listing = match listing {
            Ok(l) => l,
            Err(e) => {
                // Counts as a poll, so a failing engine is retried at the poll interval,
                // not in a tight loop.
                state.settler.listed_at(now);
                return Err(e);
            }
        };
        let snap = &listing.snapshot;
        let changed = publish(tx, snap.clone(), !state.published);
        state.published = true;
        if changed {
            debug!(
                services = snap.services.len(),
                tasks = snap.tasks.len(),
                networks = snap.networks.len(),
                list_us = now.duration_since(started).as_micros() as u64,
                moving = state.settler.watching(),
                "snapshot published"
            );
        }
        for outcome in state.settler.observe(&listing, now) {
            match outcome {
                Outcome::Settled { service, after } => {
                    debug!(service = %service, after_ms = after.as_millis() as u64, "service settled")
                }
                Outcome::GaveUp { service, after } => warn!(
                    service = %service,
                    after_ms = after.as_millis() as u64,
                    "service did not settle; polling stops until its next event"
                ),
            }
        }
        state.cache = Some(listing);
        Ok(())
    }
}

fn note(e: &events::Event, batch: &mut Batch) {
    debug!(
        kind = %e.kind,
        action = %e.action,
        actor = %e.actor,
        service = e.service.as_deref().unwrap_or(""),
        "docker event"
    );
    batch.add(e);
}

/// Sends `snap` if it differs from what the channel holds (or if `force`); true if sent.
fn publish(tx: &watch::Sender<Arc<Snapshot>>, snap: Snapshot, force: bool) -> bool {
    tx.send_if_modified(|cur| {
        if !force && **cur == snap {
            return false;
        }
        *cur = Arc::new(snap);
        true
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Network;

    fn snap(n: usize) -> Snapshot {
        Snapshot {
            networks: (0..n)
                .map(|i| Network {
                    id: format!("n{i}"),
                    name: format!("net{i}"),
                    driver: "overlay".into(),
                    attachable: true,
                    ingress: false,
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn an_unchanged_snapshot_is_not_sent_again() {
        let (tx, mut rx) = watch::channel(Arc::new(Snapshot::default()));
        assert!(publish(&tx, snap(1), false));
        assert!(rx.has_changed().expect("open"));
        rx.borrow_and_update();
        assert!(!publish(&tx, snap(1), false));
        assert!(!rx.has_changed().expect("open"));
        assert!(publish(&tx, snap(2), false));
        assert_eq!(rx.borrow_and_update().networks.len(), 2);
    }

    #[test]
    fn the_first_snapshot_is_sent_even_if_equal_to_the_initial_value() {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        assert!(publish(&tx, Snapshot::default(), true));
        assert!(rx.has_changed().expect("open"));
    }

    /// A fake engine on a unix socket: fixed lists (tasks replaceable), and an event stream
    /// per connection that waits for a scripted line, sends it, and closes.
    mod fake {
        use std::collections::VecDeque;
        use std::sync::{Arc, Mutex};

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::{UnixListener, UnixStream};
        use tokio::sync::{mpsc, oneshot};

        pub const SERVICES: &str = include_str!("../../tests/fixtures/docker-1.41/services.json");
        pub const TASKS: &str = include_str!("../../tests/fixtures/docker-1.41/tasks.json");
        pub const NETWORKS: &str = include_str!("../../tests/fixtures/docker-1.41/networks.json");

        #[derive(Clone)]
        pub struct Engine {
            pub tasks: Arc<Mutex<String>>,
            pub scripts: Arc<Mutex<VecDeque<oneshot::Receiver<String>>>>,
            pub event_requests: mpsc::UnboundedSender<String>,
        }

        pub fn serve(listener: UnixListener, engine: Engine) {
            tokio::spawn(async move {
                while let Ok((s, _)) = listener.accept().await {
                    tokio::spawn(handle(s, engine.clone()));
                }
            });
        }

        async fn handle(mut s: UnixStream, engine: Engine) {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let target = head.split(' ').nth(1).unwrap_or_default().to_string();
            let path = target.split('?').next().unwrap_or_default().to_string();
            let reply = |body: &str| {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let out = if path.ends_with("/version") {
                reply(r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#)
            } else if path.ends_with("/services") {
                reply(SERVICES)
            } else if path.ends_with("/tasks") {
                let tasks = engine.tasks.lock().expect("tasks").clone();
                reply(&tasks)
            } else if path.ends_with("/networks") {
                reply(NETWORKS)
            } else if path.ends_with("/events") {
                let _ = engine.event_requests.send(target.clone());
                let script = engine.scripts.lock().expect("scripts").pop_front();
                let header = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                if s.write_all(header.as_bytes()).await.is_err() {
                    return;
                }
                match script {
                    Some(line) => match line.await {
                        Ok(line) => format!("{line}\n"),
                        Err(_) => return,
                    },
                    None => std::future::pending().await,
                }
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = s.write_all(out.as_bytes()).await;
            let _ = s.shutdown().await;
        }

        /// `since` from `/v1.41/events?since=...&...`.
        pub fn since(target: &str) -> String {
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix("since="))
                .unwrap_or_default()
                .to_string()
        }
    }

    #[tokio::test]
    async fn an_event_relists_and_a_dropped_stream_reconnects_since_the_last_event() {
        use std::collections::VecDeque;
        use std::sync::Mutex;
        use tokio::sync::{mpsc, oneshot};

        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
        let (release, script) = oneshot::channel::<String>();
        let (req_tx, mut requests) = mpsc::unbounded_channel();
        let engine = fake::Engine {
            tasks: Arc::new(Mutex::new(fake::TASKS.to_string())),
            scripts: Arc::new(Mutex::new(VecDeque::from([script]))),
            event_requests: req_tx,
        };
        fake::serve(listener, engine.clone());

        let endpoint = format!("unix://{}", sock.display());
        let docker = Docker::connect(Some(&endpoint))
            .await
            .expect("connect to the fake");
        assert_eq!(docker.api_version(), "1.41");
        let options = WatchOptions {
            backoff_initial: Duration::from_millis(10),
            ..WatchOptions::default()
        };
        let (tx, mut rx) = watch::channel(Arc::new(Snapshot::default()));
        let run = tokio::spawn(Watcher::new(docker, options).run(tx));
        let within = Duration::from_secs(10);

        // The stream is opened (since = now - margin) before the first listing.
        let first = tokio::time::timeout(within, requests.recv())
            .await
            .expect("events request")
            .expect("open");
        let since: f64 = fake::since(&first).parse().expect("since is seconds.nanos");
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!(
            (now - 1.0 - since).abs() < 5.0,
            "since {since} vs now {now}"
        );
        tokio::time::timeout(within, rx.changed())
            .await
            .expect("first snapshot")
            .expect("open");
        assert_eq!(rx.borrow_and_update().tasks.len(), 5);

        // A task disappears; an event says the service changed; then the stream drops.
        let tasks: Vec<serde_json::Value> = serde_json::from_str(fake::TASKS).expect("fixture");
        *engine.tasks.lock().expect("tasks") = serde_json::to_string(&tasks[1..]).expect("json");
        let event = r#"{"Type":"service","Action":"update","Actor":{"ID":"btrao17gkwp6g12j40iqj7crs","Attributes":{"name":"fx-web"}},"scope":"swarm","time":1795729106,"timeNano":1795729106712866649}"#;
        release.send(event.to_string()).expect("fake waiting");
        tokio::time::timeout(within, rx.changed())
            .await
            .expect("snapshot after the event")
            .expect("open");
        assert_eq!(rx.borrow_and_update().tasks.len(), 4);

        let second = tokio::time::timeout(within, requests.recv())
            .await
            .expect("reconnect")
            .expect("open");
        assert_eq!(fake::since(&second), "1795729105.712866649", "{second}");

        drop(rx);
        tokio::time::timeout(within, run)
            .await
            .expect("stops without receivers")
            .expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_to_poll_sleeps_forever() {
        let mut idle = Box::pin(sleep_until(None));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(futures_util::poll!(idle.as_mut()).is_pending());
        let at = Instant::now() + Duration::from_millis(25);
        let mut due = Box::pin(sleep_until(Some(at)));
        assert!(futures_util::poll!(due.as_mut()).is_pending());
        tokio::time::advance(Duration::from_millis(25)).await;
        assert!(futures_util::poll!(due.as_mut()).is_ready());
    }
}
