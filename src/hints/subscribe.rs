//! The edge's side: follow every other node's agent and pass its hints to the watcher.
//!
//! `targets` are `host:port`s resolved to every address they have (`tasks.<agent service>`
//! on the agents' overlay gives one per agent; a list of node addresses works too), again
//! every `rediscover`: a new agent is followed, a vanished one dropped. The agent on this
//! edge's own node announces this node in its reset and is dropped at once (the local
//! fast path covers that node) and not asked again while it keeps that address.
//!
//! Each agent is followed on its own task, reconnecting with the capped backoff. When its
//! stream is lost (closed, refused, silent for `silence`: a lost node sends no RST), the
//! watcher is told [`RemoteUpdate::Lost`] and drops that node's hints: routing falls back
//! to the task list and health checks, and `swarm_lb_node_hints_live{node}` and `/status`
//! show it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::{decode, Hint, HintError, Message, MAX_LINE};
use crate::backoff::Backoff;
use crate::fields;
use crate::observe::Observer;

/// What the watcher is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteUpdate {
    /// An agent's stream (re)started: its node's hints are these, and only these.
    Reset { node: String, hints: Vec<Hint> },
    /// One hint of `node` changed.
    Hint { node: String, hint: Hint },
    /// `node`'s stream is lost: forget its hints.
    Lost { node: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// `host:port` of the agents, each resolved to all its addresses.
    pub targets: Vec<String>,
    /// This edge's Swarm node: its agent is not followed.
    pub own_node: Option<String>,
    /// No line (hint or heartbeat) for this long: the stream is lost.
    pub silence: Duration,
    /// How often the targets are resolved again.
    pub rediscover: Duration,
    pub connect_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl SubscribeOptions {
    pub fn new(targets: Vec<String>, own_node: Option<String>) -> SubscribeOptions {
        SubscribeOptions {
            targets,
            own_node,
            silence: Duration::from_secs(3),
            rediscover: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Follows the agents until `tx`'s receiver is dropped. The channel is unbounded: its
/// inflow is the agents' container events (bounded by the nodes' churn) and the watcher
/// drains it without I/O.
pub async fn run(
    options: SubscribeOptions,
    tx: mpsc::UnboundedSender<RemoteUpdate>,
    observer: Option<Arc<Observer>>,
) {
    let options = Arc::new(options);
    let mut following: HashMap<SocketAddr, AbortHandle> = HashMap::new();
    let mut own: HashSet<SocketAddr> = HashSet::new();
    let mut tasks: JoinSet<SocketAddr> = JoinSet::new();
    let mut tick = tokio::time::interval(options.rediscover);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = tx.closed() => return,
            _ = tick.tick() => {
                let Some(found) = resolve(&options.targets).await else { continue };
                own.retain(|a| found.contains(a));
                following.retain(|addr, handle| {
                    let keep = found.contains(addr);
                    if !keep {
                        info!(agent = %addr, "hint agent no longer resolved; unfollowed");
                        handle.abort();
                    }
                    keep
                });
                for addr in found {
                    if following.contains_key(&addr) || own.contains(&addr) {
                        continue;
                    }
                    let handle = tasks.spawn(follow(addr, options.clone(), tx.clone(), observer.clone()));
                    following.insert(addr, handle);
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                // Only the agent of this edge's own node ends its task (aborted ones aside).
                if let Ok(addr) = done {
                    following.remove(&addr);
                    own.insert(addr);
                }
            }
        }
    }
}

/// Every address of every target; `None` when any failed to resolve (nothing is dropped on
/// a DNS hiccup).
async fn resolve(targets: &[String]) -> Option<BTreeSet<SocketAddr>> {
    let mut found = BTreeSet::new();
    let mut complete = true;
    for t in targets {
        match tokio::net::lookup_host(t.as_str()).await {
            Ok(addrs) => found.extend(addrs),
            Err(e) => {
                debug!(target = %t, error = %e, "hint agents not resolved");
                complete = false;
            }
        }
    }
    (complete || !found.is_empty()).then_some(found)
}

/// The node a connection speaks for, and the telling of its loss (also when the task is
/// aborted: `Drop`).
struct Live {
    agent: SocketAddr,
    node: Option<String>,
    tx: mpsc::UnboundedSender<RemoteUpdate>,
    observer: Option<Arc<Observer>>,
}

impl Live {
    fn live(&mut self, node: &str) {
        if let Some(o) = &self.observer {
            o.hint_source(&self.agent.to_string(), Some(node), true);
        }
        self.node = Some(node.to_owned());
    }

    fn lost(&mut self) {
        if let Some(o) = &self.observer {
            o.hint_source(&self.agent.to_string(), self.node.as_deref(), false);
        }
        if let Some(node) = self.node.take() {
            let _ = self.tx.send(RemoteUpdate::Lost { node });
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.lost();
        if let Some(o) = &self.observer {
            o.forget_hint_source(&self.agent.to_string());
        }
    }
}

/// How a session ended without an error.
enum Ended {
    /// The agent is this edge's own node's.
    Own,
}

/// Follows one agent, reconnecting; returns only if it is this node's own.
async fn follow(
    agent: SocketAddr,
    options: Arc<SubscribeOptions>,
    tx: mpsc::UnboundedSender<RemoteUpdate>,
    observer: Option<Arc<Observer>>,
) -> SocketAddr {
    let mut backoff = Backoff::new(options.backoff_initial, options.backoff_max);
    let mut live = Live {
        agent,
        node: None,
        tx: tx.clone(),
        observer,
    };
    loop {
        let began = Instant::now();
        match session(agent, &options, &tx, &mut live).await {
            Ok(Ended::Own) => {
                info!(agent = %agent, "hint agent of this edge's own node; not followed");
                if let Some(o) = &live.observer {
                    o.forget_hint_source(&agent.to_string());
                }
                live.observer = None;
                return agent;
            }
            Err(e) => {
                let node = live.node.clone().unwrap_or_default();
                live.lost();
                if began.elapsed() >= options.backoff_max {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                warn!(agent = %agent, node = %node, error = %e, transient = e.is_transient(), delay_ms = fields::ms(delay), "hint stream lost; task list only for that node until it returns");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn session(
    agent: SocketAddr,
    options: &SubscribeOptions,
    tx: &mpsc::UnboundedSender<RemoteUpdate>,
    live: &mut Live,
) -> Result<Ended, HintError> {
    let peer = agent.to_string();
    let io = |op| {
        let peer = peer.clone();
        move |source| HintError::Io { peer, op, source }
    };
    let stream =
        match tokio::time::timeout(options.connect_timeout, TcpStream::connect(agent)).await {
            Ok(r) => r.map_err(io("connect"))?,
            Err(_) => {
                return Err(HintError::Silent {
                    peer,
                    after: options.connect_timeout,
                })
            }
        };
    let _ = stream.set_nodelay(true);
    let mut lines = Lines::new(stream, peer.clone());
    let first = lines.next(options.silence).await?;
    let node = match decode(&first)? {
        Message::Reset { node, hints } => {
            if options.own_node.as_deref() == Some(node.as_str()) {
                return Ok(Ended::Own);
            }
            info!(agent = %agent, node = %node, hints = hints.len(), "hints from node live");
            live.live(&node);
            let _ = tx.send(RemoteUpdate::Reset {
                node: node.clone(),
                hints,
            });
            node
        }
        _ => return Err(HintError::NoReset { peer }),
    };
    loop {
        let line = lines.next(options.silence).await?;
        match decode(&line)? {
            Message::Hint(hint) => {
                debug!(node = %node, task = %hint.task, state = ?hint.state, "hint received");
                let _ = tx.send(RemoteUpdate::Hint {
                    node: node.clone(),
                    hint,
                });
            }
            Message::Alive {} => {}
            // A second reset: the agent's view, whole again.
            Message::Reset { hints, .. } => {
                let _ = tx.send(RemoteUpdate::Reset {
                    node: node.clone(),
                    hints,
                });
            }
        }
    }
}

/// Lines of at most [`MAX_LINE`] bytes, each within a deadline.
struct Lines {
    stream: TcpStream,
    peer: String,
    buf: Vec<u8>,
}

impl Lines {
    fn new(stream: TcpStream, peer: String) -> Lines {
        Lines {
            stream,
            peer,
            buf: Vec::new(),
        }
    }

    async fn next(&mut self, silence: Duration) -> Result<Vec<u8>, HintError> {
        let deadline = Instant::now() + silence;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(HintError::LineTooLong { max: MAX_LINE });
            }
            let mut chunk = [0u8; 8192];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => {
                    return Err(HintError::Silent {
                        peer: self.peer.clone(),
                        after: silence,
                    })
                }
                Ok(Err(source)) => {
                    return Err(HintError::Io {
                        peer: self.peer.clone(),
                        op: "read",
                        source,
                    })
                }
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                return Err(HintError::Ended {
                    peer: self.peer.clone(),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hints::agent::{serve, ServeOptions};
    use crate::hints::{HintAddress, HintState};
    use crate::observe::HintSource;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio::sync::watch;

    const WITHIN: Duration = Duration::from_secs(10);

    fn hint(task: &str, state: HintState) -> Hint {
        Hint {
            task: task.into(),
            service: "svc".into(),
            slot: Some(1),
            state,
            addresses: match state {
                HintState::Running => vec![HintAddress {
                    network: "net".into(),
                    addr: std::net::IpAddr::from([10, 0, 0, 5]),
                }],
                _ => vec![],
            },
        }
    }

    fn options(agent: SocketAddr, own: &str) -> SubscribeOptions {
        SubscribeOptions {
            silence: Duration::from_millis(500),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            ..SubscribeOptions::new(vec![agent.to_string()], Some(own.into()))
        }
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<RemoteUpdate>) -> RemoteUpdate {
        tokio::time::timeout(WITHIN, rx.recv())
            .await
            .expect("an update in time")
            .expect("subscriber running")
    }

    async fn until(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + WITHIN;
        while !ok() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_subscriber_gets_the_agents_reset_then_each_change_and_is_told_when_the_agent_goes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let agent = listener.local_addr().expect("addr");
        let (hints, hints_rx) = watch::channel(Arc::new(vec![hint("a", HintState::Running)]));
        let opts = ServeOptions {
            heartbeat: Duration::from_millis(50),
            write_timeout: Duration::from_secs(1),
        };
        tokio::spawn(serve(listener, "n2".into(), hints_rx, opts));
        let observer = Arc::new(Observer::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sub = tokio::spawn(run(options(agent, "n1"), tx, Some(observer.clone())));

        assert_eq!(
            next(&mut rx).await,
            RemoteUpdate::Reset {
                node: "n2".into(),
                hints: vec![hint("a", HintState::Running)]
            }
        );
        hints.send_replace(Arc::new(vec![
            hint("a", HintState::Dead),
            hint("b", HintState::Running),
        ]));
        for want in [hint("a", HintState::Dead), hint("b", HintState::Running)] {
            assert_eq!(
                next(&mut rx).await,
                RemoteUpdate::Hint {
                    node: "n2".into(),
                    hint: want
                }
            );
        }
        let live = HintSource {
            agent: agent.to_string(),
            node: Some("n2".into()),
            live: true,
        };
        assert_eq!(observer.hint_sources(), vec![live.clone()]);
        assert!(observer
            .metrics
            .encode()
            .contains("swarm_lb_node_hints_live{node=\"n2\"} 1"));
        // Heartbeats keep a quiet stream live past the subscriber's silence limit.
        let quiet_until = Instant::now() + Duration::from_secs(1);
        until("a quiet second", || Instant::now() >= quiet_until).await;
        assert!(rx.try_recv().is_err(), "nothing while quiet");
        assert_eq!(observer.hint_sources(), vec![live]);

        // The agent's hints end (it stops): its connections close.
        drop(hints);
        assert_eq!(
            next(&mut rx).await,
            RemoteUpdate::Lost { node: "n2".into() }
        );
        until("the source shown lost", || {
            observer.hint_sources().first().is_some_and(|s| !s.live)
        })
        .await;
        assert!(observer
            .metrics
            .encode()
            .contains("swarm_lb_node_hints_live{node=\"n2\"} 0"));
        sub.abort();
    }

    #[tokio::test]
    async fn the_agent_of_the_edges_own_node_is_not_followed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let agent = listener.local_addr().expect("addr");
        let (_hints, hints_rx) = watch::channel(Arc::new(vec![hint("a", HintState::Running)]));
        tokio::spawn(serve(
            listener,
            "n1".into(),
            hints_rx,
            ServeOptions::default(),
        ));
        let observer = Arc::new(Observer::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sub = tokio::spawn(run(options(agent, "n1"), tx, Some(observer.clone())));
        // It was asked (the source appeared or not, but ended) and said nothing on the channel.
        let asked = Instant::now() + Duration::from_millis(500);
        until("half a second", || Instant::now() >= asked).await;
        assert!(rx.try_recv().is_err(), "nothing from this node's own agent");
        assert_eq!(observer.hint_sources(), vec![]);
        sub.abort();
    }

    #[tokio::test]
    async fn an_agent_that_falls_silent_is_lost_and_followed_again_when_it_speaks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let agent = listener.local_addr().expect("addr");
        // A peer that sends its reset and then nothing (a node lost: no RST, no heartbeat).
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = listener.accept().await {
                let reset = crate::hints::encode(&Message::Reset {
                    node: "n3".into(),
                    hints: vec![],
                });
                let _ = s.write_all(&reset).await;
                held.push(s);
            }
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sub = tokio::spawn(run(options(agent, "n1"), tx, None));
        let reset = RemoteUpdate::Reset {
            node: "n3".into(),
            hints: vec![],
        };
        assert_eq!(next(&mut rx).await, reset);
        assert_eq!(
            next(&mut rx).await,
            RemoteUpdate::Lost { node: "n3".into() }
        );
        assert_eq!(next(&mut rx).await, reset, "reconnected after the backoff");
        sub.abort();
    }

    #[tokio::test]
    async fn garbage_from_an_agent_is_a_lost_stream_not_a_panic() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let agent = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((mut s, _)) = listener.accept().await {
                let reset = crate::hints::encode(&Message::Reset {
                    node: "n3".into(),
                    hints: vec![],
                });
                let body: Vec<u8> = if first {
                    [reset, b"{\"hint\":\n".to_vec()].concat()
                } else {
                    vec![b'x'; MAX_LINE + 10]
                };
                first = false;
                let _ = s.write_all(&body).await;
                tokio::spawn(async move {
                    tokio::time::sleep(WITHIN).await;
                    drop(s);
                });
            }
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sub = tokio::spawn(run(options(agent, "n1"), tx, None));
        assert!(matches!(next(&mut rx).await, RemoteUpdate::Reset { .. }));
        assert_eq!(
            next(&mut rx).await,
            RemoteUpdate::Lost { node: "n3".into() }
        );
        // The next connection sends an endless line: refused without a reset.
        let quiet_until = Instant::now() + Duration::from_millis(300);
        until("a moment", || Instant::now() >= quiet_until).await;
        assert!(rx.try_recv().is_err());
        sub.abort();
    }
}
