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
