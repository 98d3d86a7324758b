//! The fast path: a container event of a task on this node (start, or healthy for a
//! container with a healthcheck; a stop signal; die) is laid over the last listing at once,
//! through the [`Overlay`](crate::swarm::overlay::Overlay), inspecting the container where the event
//! alone does not say enough (its addresses; whether Swarm waits for its health). At most
//! [`INSPECTIONS`] inspections run at once, the others queued; they outlive a connection of
//! the event stream (the events they are for were received).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use super::{log_dropped, publish, with_deadline, Loop, Pending, State, Watcher};
use crate::fields;
use crate::model::Snapshot;
use crate::swarm::convert::TaskContainer;
use crate::swarm::events::{self, ContainerChange, TaskEvent};
use crate::swarm::overlay::{self, Fact};
use crate::swarm::SwarmError;

/// Container inspections of the fast path in flight at once, at most. One takes a few ms on
/// the local engine: a burst of 100 starts is inspected in about 13 rounds, while the engine
/// keeps room for the listings the same events ask for.
pub(super) const INSPECTIONS: usize = 8;

/// Containers whose healthcheck the fast path remembers, at most (see
/// [`Healthchecks`](crate::swarm::overlay::Healthchecks)).
pub(super) const HEALTHCHECKS_KNOWN: usize = 4096;

/// A fast-path inspection's outcome.
pub(super) struct Inspected {
    event: TaskEvent,
    /// The event's engine time (`timeNano`).
    time_nano: Option<i64>,
    /// How long the inspection took.
    took: Duration,
    result: Result<TaskContainer, SwarmError>,
}

/// What a task container event established, for the overlay and the log.
struct Established {
    event: TaskEvent,
    time_nano: Option<i64>,
    /// `None`: nothing to lay over the listing (the inspection said to wait).
    fact: Option<Fact>,
    /// The inspection it took (zero without one).
    took: Duration,
}

impl Watcher {
    /// A container inspection, with a deadline.
    pub(super) fn inspect(
        &self,
        event: TaskEvent,
        time_nano: Option<i64>,
    ) -> Pending<'_, Inspected> {
        let deadline = self.options.list_timeout;
        Box::pin(async move {
            let begun = Instant::now();
            let result = with_deadline(
                "inspect container",
                deadline,
                self.source.task_container(&event.container),
            )
            .await;
            Inspected {
                event,
                time_nano,
                took: begun.elapsed(),
                result,
            }
        })
    }
}

impl Loop<'_> {
    /// Publishes at once what a batch's task container events say, inspecting containers
    /// where needed.
    pub(super) fn fast_path(&mut self, tasks: Vec<(TaskEvent, Option<i64>)>) {
        let state = &mut self.state;
        let mut established = Vec::new();
        for (event, time_nano) in tasks {
            let fact = match event.change {
                ContainerChange::Created => {
                    // Whether it has a healthcheck, known before it starts.
                    let watcher = self.watcher;
                    self.inspections
                        .push((event, time_nano), |(e, t)| watcher.inspect(e, t));
                    continue;
                }
                ContainerChange::Started | ContainerChange::Healthy => {
                    let known = state.healthchecks.get(&event.container);
                    match overlay::running_without_inspection(
                        event.change,
                        known,
                        state.listed(&event.task),
                    ) {
                        Some(fact) => fact,
                        None => {
                            let watcher = self.watcher;
                            self.inspections
                                .push((event, time_nano), |(e, t)| watcher.inspect(e, t));
                            continue;
                        }
                    }
                }
                ContainerChange::Stopping => Fact::Stopping,
                ContainerChange::Died => {
                    state.healthchecks.forget(&event.container);
                    Fact::Exited
                }
                ContainerChange::Destroyed => {
                    state.healthchecks.forget(&event.container);
                    continue;
                }
            };
            established.push(Established {
                event,
                time_nano,
                fact: Some(fact),
                took: Duration::ZERO,
            });
        }
        if !established.is_empty() {
            publish_facts(established, self.tx, state);
        }
    }

    /// An inspection came back: remember the healthcheck, and for a start or a healthy
    /// event, publish the task running (unless Swarm waits for health, or it already died).
    pub(super) fn on_inspected(&mut self, done: Inspected) {
        let Inspected {
            event,
            time_nano,
            took,
            result,
        } = done;
        let c = match result {
            Ok(c) => c,
            Err(err) => {
                debug!(task = %event.task, container = %event.container, error = %err, "task container not inspected; the task list will tell");
                return;
            }
        };
        // A container that died during the inspection is remembered needlessly; it goes
        // when the map is full.
        self.state
            .healthchecks
            .learn(&event.container, c.healthcheck);
        let fact = match event.change {
            ContainerChange::Created => return,
            // Gone already (a replayed event, a crash): its die says the rest.
            _ if !c.running => None,
            // Swarm waits for healthy; so does the fast path.
            ContainerChange::Started if c.healthcheck => None,
            _ => Some(Fact::Running {
                addresses: c.addresses,
            }),
        };
        let established = Established {
            event,
            time_nano,
            fact,
            took,
        };
        publish_facts(vec![established], self.tx, &mut self.state);
    }
}

/// Records what task container events established and publishes the last listing with it,
/// without listing.
fn publish_facts(
    established: Vec<Established>,
    tx: &watch::Sender<Arc<Snapshot>>,
    state: &mut State,
) {
    let now = Instant::now();
    for e in &established {
        if let Some(f) = &e.fact {
            let ev = &e.event;
            state
                .overlay
                .record(&ev.task, &ev.service, ev.slot, f.clone(), now);
        }
    }
    // Nothing listed yet: the first listing carries the facts.
    let changed = match &state.cache {
        Some((listing, listed_at)) => {
            // What the last listing already shows needs no entry (states only move forward).
            let dropped = state
                .overlay
                .observe(&listing.snapshot.tasks, *listed_at, now);
            log_dropped(&dropped);
            publish(tx, state.overlay.apply(&listing.snapshot), false)
        }
        None => false,
    };
    let published = SystemTime::now();
    for e in &established {
        let latency_us = e
            .time_nano
            .map(events::time_from_nanos)
            .and_then(|t| published.duration_since(t).ok())
            .map_or(0, fields::us);
        debug!(
            task = %e.event.task,
            service = %e.event.service,
            change = ?e.event.change,
            fact = fact_name(e.fact.as_ref()),
            changed,
            latency_us,
            inspect_us = fields::us(e.took),
            "fast path"
        );
    }
}

fn fact_name(f: Option<&Fact>) -> &'static str {
    match f {
        Some(Fact::Running { .. }) => "running",
        Some(Fact::Stopping) => "stopping",
        Some(Fact::Exited) => "exited",
        None => "none",
    }
}
