//! `swarm-lb agent`'s server: every subscriber gets the node's hints as a reset, then each
//! change, then heartbeats while nothing changes (the wire: [`super::Message`]).
//!
//! The hints come on a `watch` channel from `crate::swarm::NodeAgent` (the node's container
//! events). Each connection diffs what it sent with the channel's value ([`super::set::delta`]),
//! so a slow subscriber never holds up the others or queues without bound: it skips
//! intermediate states. A write that takes longer than `write_timeout` ends the connection
//! (the subscriber reconnects and gets a reset).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use super::{encode, set, Hint, HintError, Message};

/// Timing of the agent's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// A heartbeat after this long without a message. Subscribers call an agent lost after
    /// a few of these without a line.
    pub heartbeat: Duration,
    /// One write may take this long before the connection is given up.
    pub write_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            heartbeat: Duration::from_secs(1),
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// `swarm-lb agent`: learns this node's Swarm node ID, follows its task containers'
/// events (`crate::swarm::NodeAgent`) and serves them on `listener` until the process ends.
///
/// Errors: this node's ID cannot be read (not in a Swarm, engine away at start); the server
/// task ended (a panic).
pub async fn run(
    docker: crate::swarm::Docker,
    listener: TcpListener,
    agent: crate::swarm::AgentOptions,
    options: ServeOptions,
) -> Result<(), HintError> {
    let watcher = crate::swarm::NodeAgent::new(docker, agent);
    let node = watcher.node_id().await.map_err(HintError::NodeId)?;
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    info!(node = %node, listen = ?listener.local_addr().ok(), "hint agent serving");
    let serving = tokio::spawn(serve(listener, node, rx, options));
    tokio::select! {
        () = watcher.run(tx) => Ok(()),
        r = serving => Err(HintError::ServerEnded {
            reason: match r {
                Ok(()) => "returned".to_owned(),
                Err(e) => e.to_string(),
            },
        }),
    }
}

/// Accepts subscribers on `listener` until the hint channel closes.
pub async fn serve(
    listener: TcpListener,
    node: String,
    hints: watch::Receiver<Arc<Vec<Hint>>>,
    options: ServeOptions,
) {
    let mut closed = hints.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (node, hints) = (node.clone(), hints.clone());
                    tokio::spawn(async move {
                        info!(peer = %peer, "hint subscriber connected");
                        match connection(stream, peer, node, hints, options).await {
                            Ok(()) => info!(peer = %peer, "hint subscriber left"),
                            Err(e) => warn!(peer = %peer, error = %e, "hint subscriber dropped"),
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    warn!(error = %e, "accepting a hint subscriber failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            r = closed.changed() => if r.is_err() { return },
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    node: String,
    mut hints: watch::Receiver<Arc<Vec<Hint>>>,
    options: ServeOptions,
) -> Result<(), HintError> {
    let peer_name = peer.to_string();
    let mut sent = BTreeMap::new();
    let now = hints.borrow_and_update().clone();
    set::delta(&mut sent, &now);
    let reset = Message::Reset {
        node,
        hints: now.to_vec(),
    };
    write(
        &mut stream,
        &peer_name,
        &encode(&reset),
        options.write_timeout,
    )
    .await?;
    let mut beat = tokio::time::interval_at(
        tokio::time::Instant::now() + options.heartbeat,
        options.heartbeat,
    );
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut scratch = [0u8; 64];
    loop {
        tokio::select! {
            r = hints.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                let now = hints.borrow_and_update().clone();
                let changed = set::delta(&mut sent, &now);
                if changed.is_empty() {
                    continue;
                }
                let mut buf = Vec::new();
                for h in changed {
                    debug!(peer = %peer, task = %h.task, state = ?h.state, "hint sent");
                    buf.extend(encode(&Message::Hint(h)));
                }
                write(&mut stream, &peer_name, &buf, options.write_timeout).await?;
                beat.reset();
            }
            _ = beat.tick() => {
                write(&mut stream, &peer_name, &encode(&Message::Alive {}), options.write_timeout).await?;
            }
            // Subscribers never write: this is how a closed connection shows.
            r = stream.read(&mut scratch) => match r {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(source) => return Err(HintError::Io { peer: peer_name, op: "read", source }),
            },
        }
    }
}

async fn write(
    stream: &mut TcpStream,
    peer: &str,
    buf: &[u8],
    deadline: Duration,
) -> Result<(), HintError> {
    match tokio::time::timeout(deadline, stream.write_all(buf)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(HintError::Io {
            peer: peer.to_owned(),
            op: "write",
            source,
        }),
        Err(_) => Err(HintError::Silent {
            peer: peer.to_owned(),
            after: deadline,
        }),
    }
}
