//! Node hints: what a node's container events say about its Swarm tasks, streamed by
//! `swarm-lb agent` (one per node) to the edges on the other nodes, so that a task that starts
//! or dies there without a service change reaches every edge at once instead of at the next
//! resync (docs/several-nodes.md; DESIGN 3: hints accelerate, the task list decides).
//!
//! A hint carries only what routing needs: the task and service ids Swarm put on the
//! container, its slot, a state and its overlay addresses. Never environment, mounts, other
//! labels or secrets: the agent reads them (one inspection per start), and drops them here.
//!
//! The wire is newline-delimited JSON over plain TCP, one [`Message`] per line. On connect the
//! agent first sends a [`Message::Reset`] (its node and every hint it holds: the subscriber
//! replaces what it had from that node, as linkerd's discovery does after a reconnect), then
//! one [`Message::Hint`] per change, and [`Message::Alive`] when idle, so that a subscriber
//! tells a quiet agent from a lost one.
//!
//! [`set`] is the pure state (the agent's set, the per-connection deltas); [`agent`] serves
//! it; [`subscribe`] is the edge's side. Docker is read in `crate::swarm` only.

pub mod agent;
pub mod set;
pub mod subscribe;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A line longer than this is refused (a subscriber never buffers without bound).
pub const MAX_LINE: usize = 1 << 20;

/// What the node's engine said about a task's container; ordered: a task only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HintState {
    /// Started (healthy, when it has a healthcheck): what Swarm calls running.
    Running,
    /// Got its stop signal: Swarm is stopping it (drain).
    Stopping,
    /// Exited: its slot is free.
    Dead,
}

/// A task's address on one network, as the container got it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintAddress {
    pub network: String,
    pub addr: IpAddr,
}

/// One task on the agent's node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint {
    pub task: String,
    pub service: String,
    /// From the task's name; `None` for a global service's task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    pub state: HintState,
    /// Only for `running`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<HintAddress>,
}

/// One line of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Message {
    /// First on every connection: the agent's Swarm node and every hint it holds.
    Reset { node: String, hints: Vec<Hint> },
    /// A task's hint changed (or is new).
    Hint(Hint),
    /// Nothing changed for a while; the agent is there.
    Alive {},
}

/// Errors of the hint stream, on either side.
#[derive(Debug, thiserror::Error)]
pub enum HintError {
    #[error("hint line is not a message ({len} bytes): {source}")]
    Decode {
        len: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("hint line longer than {max} bytes")]
    LineTooLong { max: usize },
    #[error("hint stream from {peer}: {op}: {source}")]
    Io {
        peer: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("hint stream from {peer}: nothing for {after:?} (no hint, no heartbeat)")]
    Silent {
        peer: String,
        after: std::time::Duration,
    },
    #[error("hint stream from {peer} did not start with a reset")]
    NoReset { peer: String },
    #[error("hint stream from {peer} ended")]
    Ended { peer: String },
    #[error("this node's Swarm node ID: {0}")]
    NodeId(#[source] crate::swarm::SwarmError),
    #[error("the hint server ended: {reason}")]
    ServerEnded { reason: String },
}

impl HintError {
    /// Worth reconnecting (all of them are: the stream falls back to the task list meanwhile);
    /// a protocol error is a wrong peer or version, which a reconnect does not fix at once,
    /// so it is retried at the backoff's pace like the rest.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HintError::Io { .. } | HintError::Silent { .. } | HintError::Ended { .. }
        )
    }
}

/// One message as a line (JSON and `\n`).
pub fn encode(m: &Message) -> Vec<u8> {
    // Serialising these plain structs cannot fail (no maps with non-string keys).
    let mut line = serde_json::to_vec(m).unwrap_or_default();
    line.push(b'\n');
    line
}

/// One line (without its `\n`) as a message.
///
/// Errors: [`HintError::Decode`] for anything that is not one.
pub fn decode(line: &[u8]) -> Result<Message, HintError> {
    serde_json::from_slice(line).map_err(|source| HintError::Decode {
        len: line.len(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_through_one_line_and_the_wire_shape_is_stable() {
        let hint = Hint {
            task: "t1".into(),
            service: "s1".into(),
            slot: Some(2),
            state: HintState::Running,
            addresses: vec![HintAddress {
                network: "n1".into(),
                addr: IpAddr::from([10, 0, 1, 5]),
            }],
        };
        let reset = Message::Reset {
            node: "node1".into(),
            hints: vec![hint.clone()],
        };
        for m in [reset, Message::Hint(hint), Message::Alive {}] {
            let line = encode(&m);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            assert_eq!(decode(&line[..line.len() - 1]).expect("decodes"), m);
        }
        assert_eq!(
            String::from_utf8(encode(&Message::Hint(Hint {
                task: "t".into(),
                service: "s".into(),
                slot: None,
                state: HintState::Dead,
                addresses: vec![],
            })))
            .expect("utf8"),
            "{\"hint\":{\"task\":\"t\",\"service\":\"s\",\"state\":\"dead\"}}\n"
        );
        assert_eq!(encode(&Message::Alive {}), b"{\"alive\":{}}\n");
    }

    #[test]
    fn garbage_or_a_truncated_line_is_an_error_never_a_panic() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"hint\":{\"task\":\"t\"}}",
            b"{\"reset\":{\"node\":1}}",
            b"\xff\xfe",
            b"{\"hint\":{\"task\":\"t\",\"service\":\"s\",\"state\":\"zombie\"}}",
        ] {
            assert!(
                matches!(decode(bad), Err(HintError::Decode { .. })),
                "{bad:?}"
            );
        }
    }
}
