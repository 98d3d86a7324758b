//! `swarm-lb agent`'s view of its node: the task containers' events, as the edge's fast path
//! reads them (`start` or `healthy`, a stop signal, `die`), turned into [`Hint`]s and
//! published on a `watch` channel for `crate::hints::agent` to stream.
//!
//! Only container events of this node's engine are read (no Swarm state: the agent needs no
//! manager), from `since` the last one after a reconnect. A start (or healthy) costs one
//! inspection, for the container's overlay addresses and whether Swarm waits for its health;
//! of what the inspection returns only those, the running flag and the healthcheck's
//! presence are kept: never environment, mounts or labels.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info};

use super::events::{self, ContainerChange, TaskEvent};
use super::reconnect::{Item, Reconnecting};
use super::{convert, Docker, SwarmError, NODE_TYPES};
use crate::backoff::Backoff;
use crate::hints::set::HintSet;
use crate::hints::{Hint, HintAddress, HintState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOptions {
    /// How long a stopped or dead task's hint is kept (and sent to new subscribers).
    pub keep: Duration,
    /// Tasks remembered at most.
    pub cap: usize,
    pub since_margin: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub inspect_timeout: Duration,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            keep: Duration::from_secs(60),
            cap: 10_000,
            since_margin: Duration::from_secs(1),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            inspect_timeout: Duration::from_secs(10),
        }
    }
}

/// Follows one node's engine.
#[derive(Debug)]
pub struct NodeAgent {
    docker: Docker,
    options: AgentOptions,
}

type Inspection<'a> = Pin<
    Box<dyn Future<Output = (TaskEvent, Result<convert::TaskContainer, SwarmError>)> + Send + 'a>,
>;

impl NodeAgent {
    pub fn new(docker: Docker, options: AgentOptions) -> NodeAgent {
        NodeAgent { docker, options }
    }

    /// Runs until every receiver of `tx` is dropped; Docker being away is retried with
    /// backoff, the hints held stay published.
    pub async fn run(self, tx: watch::Sender<Arc<Vec<Hint>>>) {
        let o = &self.options;
        let local = self.docker.local();
        let open = |since| {
            let since = events::since_param(since, o.since_margin);
            info!(endpoint = %local.endpoint(), since = %since, "agent watching container events");
            local.events_of(since, &NODE_TYPES).boxed()
        };
        let backoff = Backoff::new(o.backoff_initial, o.backoff_max);
        let mut stream = Reconnecting::new(open, SystemTime::now(), backoff, o.backoff_max);
        let mut set = HintSet::new(o.keep, o.cap);
        let mut inspections: FuturesUnordered<Inspection<'_>> = FuturesUnordered::new();
        loop {
            let expire_at = set.next_expiry();
            let changed = tokio::select! {
                () = tx.closed() => return,
                Some(item) = stream.next() => match item {
                    Item::Event(e) => {
                        if let Some(t) = e.time_nano {
                            stream.set_since(events::time_from_nanos(t));
                        }
                        match e.task {
                            Some(t) => self.on_event(t, &mut set, &mut inspections),
                            None => false,
                        }
                    }
                    Item::Opened | Item::Ended { .. } => false,
                },
                Some((event, result)) = inspections.next(), if !inspections.is_empty() => {
                    on_inspected(event, result, &mut set)
                }
                () = sleep_until(expire_at), if expire_at.is_some() => set.expire(Instant::now()),
            };
            if changed {
                tx.send_replace(Arc::new(set.hints()));
            }
        }
    }

    fn on_event<'a>(
        &'a self,
        t: TaskEvent,
        set: &mut HintSet,
        inspections: &mut FuturesUnordered<Inspection<'a>>,
    ) -> bool {
        let state = match t.change {
            ContainerChange::Started | ContainerChange::Healthy => {
                let deadline = self.options.inspect_timeout;
                let local = self.docker.local();
                inspections.push(Box::pin(async move {
                    let r = tokio::time::timeout(deadline, local.task_container(&t.container))
                        .await
                        .map_err(|_| SwarmError::Timeout {
                            op: "inspect container",
                            after: deadline,
                        })
                        .and_then(|r| r);
                    (t, r)
                }));
                return false;
            }
            ContainerChange::Stopping => HintState::Stopping,
            ContainerChange::Died => HintState::Dead,
            ContainerChange::Created | ContainerChange::Destroyed => return false,
        };
        debug!(task = %t.task, service = %t.service, state = ?state, "task hint");
        set.record(
            Hint {
                task: t.task,
                service: t.service,
                slot: t.slot,
                state,
                addresses: Vec::new(),
            },
            Instant::now(),
        )
    }

    /// This node's Swarm node ID.
    ///
    /// Errors: the engine's, or none reported (not in a Swarm).
    pub async fn node_id(&self) -> Result<String, SwarmError> {
        self.docker.local_node_id().await
    }
}

/// A start's or healthy's inspection: running (unless Swarm waits for health, or it is gone).
fn on_inspected(
    t: TaskEvent,
    result: Result<convert::TaskContainer, SwarmError>,
    set: &mut HintSet,
) -> bool {
    let c = match result {
        Ok(c) => c,
        Err(e) => {
            debug!(task = %t.task, container = %t.container, error = %e, "task container not inspected; no hint");
            return false;
        }
    };
    if !c.running || (t.change == ContainerChange::Started && c.healthcheck) {
        return false;
    }
    debug!(task = %t.task, service = %t.service, "task hint running");
    set.record(
        Hint {
            task: t.task,
            service: t.service,
            slot: t.slot,
            state: HintState::Running,
            addresses: c
                .addresses
                .into_iter()
                .map(|a| HintAddress {
                    network: a.network,
                    addr: a.addr,
                })
                .collect(),
        },
        Instant::now(),
    )
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
