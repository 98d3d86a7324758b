//! Docker events -> what the watcher must re-read. Pure.
//!
//! Events only say *that* something changed; the watcher always re-lists (level-triggered).
//! What an event decides is how much to re-list and which service to watch until it settles.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{EventMessage, EventMessageTypeEnum};

use crate::model::ServiceId;

/// The event types the watcher subscribes to. Service, network and node events are
/// cluster-wide; container events are local to this node.
pub(super) const TYPES: [EventKind; 4] = [
    EventKind::Service,
    EventKind::Network,
    EventKind::Container,
    EventKind::Node,
];

/// An event's type (`Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventKind {
    Service,
    Network,
    Container,
    Node,
    /// A type the watcher does not subscribe to.
    Other,
}

impl EventKind {
    /// The name the engine uses, in events and in the `type` filter.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Service => "service",
            EventKind::Network => "network",
            EventKind::Container => "container",
            EventKind::Node => "node",
            EventKind::Other => "other",
        }
    }

    fn of(t: Option<EventMessageTypeEnum>) -> EventKind {
        match t {
            Some(EventMessageTypeEnum::SERVICE) => EventKind::Service,
            Some(EventMessageTypeEnum::NETWORK) => EventKind::Network,
            Some(EventMessageTypeEnum::CONTAINER) => EventKind::Container,
            Some(EventMessageTypeEnum::NODE) => EventKind::Node,
            _ => EventKind::Other,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The actions worth a re-list; everything else (exec_*, attach, health probes, network
/// connect/disconnect of every container) is filtered out by the engine, so that an idle
/// cluster with health-checked containers does not wake the watcher. `health_status: healthy`
/// is matched exactly (checked on 20.10): it comes once per change to healthy, not per probe.
pub(super) const ACTIONS: [&str; 9] = [
    "create", "update", "remove", "destroy", "start", "die", "kill", "stop", HEALTHY,
];

const HEALTHY: &str = "health_status: healthy";

/// The container labels (event attributes) Swarm puts on a task's container.
const SERVICE_ID_ATTR: &str = "com.docker.swarm.service.id";
const TASK_ID_ATTR: &str = "com.docker.swarm.task.id";
const TASK_NAME_ATTR: &str = "com.docker.swarm.task.name";

/// Signals that end a process unless it handles them: the usual stop signals (`SIGTERM`, what
/// Swarm sends by default; `SIGINT`, `SIGQUIT`, common `--stop-signal`s) and `SIGKILL`.
/// Others (`SIGHUP`, `SIGUSR1`, ...) ask a running process to reload or report.
const STOP_SIGNALS: [&str; 4] = ["15", "2", "3", "9"];

/// One event, reduced to what the watcher acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Event {
    pub kind: EventKind,
    pub action: String,
    pub actor: String,
    pub refresh: Refresh,
    /// The service whose tasks this event is about, if any.
    pub service: Option<ServiceId>,
    /// Engine time of the event (ns since the epoch).
    pub time_nano: Option<i64>,
    /// What it says about a Swarm task, for the fast path (container events only).
    pub task: Option<TaskEvent>,
}

/// A container event of a Swarm task that changes whether the task can take traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TaskEvent {
    pub task: String,
    pub service: ServiceId,
    pub container: String,
    /// From the task name `<service>.<slot>.<task id>`; `None` for a global service's task
    /// (`<service>.<node id>.<task id>`).
    pub slot: Option<u64>,
    pub change: ContainerChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContainerChange {
    /// `create`: the container exists, not started yet (its config says whether it has a
    /// healthcheck, which decides what its start means).
    Created,
    /// `start`: what Swarm calls running, unless the container has a healthcheck.
    Started,
    /// `health_status: healthy`: what Swarm calls running for a container with a healthcheck.
    Healthy,
    /// `kill` with a stop signal, or `stop`: the task is being stopped.
    Stopping,
    /// `die`: the container exited.
    Died,
    /// `destroy`: the container is removed.
    Destroyed,
}

/// How much to re-read after an event. Ordered: a bigger refresh includes a smaller one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Refresh {
    Nothing,
    /// Only the task list (services and networks did not change).
    Tasks,
    /// The services an event named and their tasks (networks did not change).
    Services,
    /// Services, tasks and networks.
    Full,
}

pub(super) fn event(m: &EventMessage) -> Event {
    let actor = m.actor.as_ref();
    let actor_id = actor.and_then(|a| a.id.clone()).unwrap_or_default();
    let attrs: Option<&HashMap<String, String>> = actor.and_then(|a| a.attributes.as_ref());
    let kind = EventKind::of(m.typ);
    let (refresh, service) = match kind {
        EventKind::Service => (Refresh::Services, Some(actor_id.clone())),
        EventKind::Network | EventKind::Node => (Refresh::Full, None),
        EventKind::Container => {
            match attrs
                .and_then(|a| a.get(SERVICE_ID_ATTR))
                .filter(|s| !s.is_empty())
            {
                Some(svc) => (Refresh::Tasks, Some(svc.clone())),
                // Not a Swarm task (the HAProxy container itself, for one).
                None => (Refresh::Nothing, None),
            }
        }
        EventKind::Other => (Refresh::Nothing, None),
    };
    let action = m.action.clone().unwrap_or_default();
    let task = match (kind, attrs) {
        (EventKind::Container, Some(attrs)) => task_event(&action, &actor_id, attrs),
        _ => None,
    };
    Event {
        kind,
        action,
        actor: actor_id,
        refresh,
        service: service.filter(|s| !s.is_empty()),
        time_nano: m
            .time_nano
            .or_else(|| m.time.and_then(|t| t.checked_mul(1_000_000_000))),
        task,
    }
}

fn task_event(action: &str, container: &str, attrs: &HashMap<String, String>) -> Option<TaskEvent> {
    let attr = |k| attrs.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let change = match action {
        "create" => ContainerChange::Created,
        "start" => ContainerChange::Started,
        HEALTHY => ContainerChange::Healthy,
        "kill" if attr("signal").is_some_and(|s| STOP_SIGNALS.contains(&s)) => {
            ContainerChange::Stopping
        }
        "stop" => ContainerChange::Stopping,
        "die" => ContainerChange::Died,
        "destroy" => ContainerChange::Destroyed,
        _ => return None,
    };
    let task = attr(TASK_ID_ATTR)?;
    if container.is_empty() {
        return None;
    }
    Some(TaskEvent {
        task: task.to_string(),
        service: attr(SERVICE_ID_ATTR)?.to_string(),
        container: container.to_string(),
        slot: attr(TASK_NAME_ATTR).and_then(|name| slot_of(name, task)),
        change,
    })
}

/// `web.3.<task id>` -> 3; a global task's `web.<node id>.<task id>` -> `None`.
fn slot_of(task_name: &str, task: &str) -> Option<u64> {
    let rest = task_name.strip_suffix(task)?.strip_suffix('.')?;
    let (_, slot) = rest.rsplit_once('.')?;
    slot.parse::<u64>().ok().filter(|s| *s > 0)
}

/// Everything a burst of events asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Batch {
    pub refresh: Option<Refresh>,
    pub services: BTreeSet<ServiceId>,
    /// A node changed: any service may have tasks moving.
    pub any_service: bool,
    pub last_time_nano: Option<i64>,
    /// Task container events for the fast path, in arrival order, with their engine time.
    pub tasks: Vec<(TaskEvent, Option<i64>)>,
}

impl Batch {
    /// An event received but not acted on: only the stream position moves.
    pub fn saw(&mut self, e: &Event) {
        if let Some(t) = e.time_nano {
            self.last_time_nano = self.last_time_nano.max(Some(t));
        }
    }

    pub fn add(&mut self, e: &Event) {
        self.refresh = self.refresh.max(Some(e.refresh));
        if let Some(s) = &e.service {
            self.services.insert(s.clone());
        }
        if e.kind == EventKind::Node {
            self.any_service = true;
        }
        self.saw(e);
        if let Some(task) = &e.task {
            self.tasks.push((task.clone(), e.time_nano));
        }
    }
}

/// The `since` parameter: `seconds.nanoseconds` (the engine's format), `margin` earlier than
/// `t`, so that events in the same instant as the last one seen are replayed, not lost.
pub(super) fn since_param(t: SystemTime, margin: Duration) -> String {
    let t = t.checked_sub(margin).unwrap_or(UNIX_EPOCH);
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// Engine nanoseconds -> a time (negative values clamp to the epoch).
pub(super) fn time_from_nanos(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: &str = include_str!("../../tests/fixtures/docker-1.41/events.jsonl");

    fn fixture() -> Vec<Event> {
        EVENTS
            .lines()
            .map(|l| event(&serde_json::from_str(l).expect("event fixture line")))
            .collect()
    }

    #[test]
    fn a_service_event_asks_for_that_service_and_its_tasks_and_names_it() {
        let e = &fixture()[0];
        assert_eq!((e.kind.as_str(), e.action.as_str()), ("service", "update"));
        assert_eq!(e.refresh, Refresh::Services);
        assert_eq!(e.service.as_deref(), Some("btrao17gkwp6g12j40iqj7crs"));
        assert_eq!(e.time_nano, Some(1795729106712866649));
    }

    #[test]
    fn a_task_container_event_asks_for_tasks_of_its_service() {
        let e = &fixture()[3];
        assert_eq!((e.kind.as_str(), e.action.as_str()), ("container", "start"));
        assert_eq!(e.refresh, Refresh::Tasks);
        assert_eq!(e.service.as_deref(), Some("btrao17gkwp6g12j40iqj7crs"));
    }

    #[test]
    fn a_network_event_asks_for_a_full_relist_without_a_service() {
        let e = &fixture()[4];
        assert_eq!((e.kind.as_str(), e.action.as_str()), ("network", "create"));
        assert_eq!((e.refresh, e.service.clone()), (Refresh::Full, None));
    }

    #[test]
    fn a_plain_container_event_asks_for_nothing() {
        let m: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "container", "Action": "start",
            "Actor": {"ID": "abc", "Attributes": {"name": "haproxy"}}, "time": 5
        }))
        .expect("json");
        let e = event(&m);
        assert_eq!(
            (e.refresh, e.service, e.time_nano),
            (Refresh::Nothing, None, Some(5_000_000_000))
        );
        assert_eq!(event(&EventMessage::default()).refresh, Refresh::Nothing);
    }

    #[test]
    fn a_burst_of_events_merges_into_the_biggest_refresh_and_all_services() {
        let mut b = Batch::default();
        for e in fixture() {
            b.add(&e);
        }
        assert_eq!(b.refresh, Some(Refresh::Full));
        assert_eq!(
            b.services.iter().map(String::as_str).collect::<Vec<_>>(),
            ["btrao17gkwp6g12j40iqj7crs", "rvwduq39hvmwff3ysb4ygoui5"]
        );
        assert!(!b.any_service);
        let mut tasks_only = Batch::default();
        tasks_only.add(&fixture()[3]);
        assert_eq!(tasks_only.refresh, Some(Refresh::Tasks));
    }

    const TASK_EVENTS: &str =
        include_str!("../../tests/fixtures/docker-1.41/events-task-container.jsonl");

    fn task_fixture() -> Vec<Event> {
        TASK_EVENTS
            .lines()
            .map(|l| event(&serde_json::from_str(l).expect("event fixture line")))
            .collect()
    }

    #[test]
    fn a_task_containers_start_kill_die_and_stop_say_what_happened_to_the_task() {
        let events = task_fixture();
        let changes: Vec<(&str, Option<ContainerChange>)> = events
            .iter()
            .map(|e| (e.action.as_str(), e.task.as_ref().map(|t| t.change)))
            .collect();
        use ContainerChange::*;
        assert_eq!(
            changes,
            [
                ("start", Some(Started)),
                ("kill", Some(Stopping)),
                ("die", Some(Died)),
                ("stop", Some(Stopping)),
                ("start", Some(Started)),
                ("health_status: healthy", Some(Healthy)),
            ]
        );
        assert_eq!(
            events[0].task,
            Some(TaskEvent {
                task: "jb3mpkwhy2hwtc6lkbd8ifisk".into(),
                service: "kj0yvt0dcwfmmunxb1tovjtha".into(),
                container: "8e9e194b072c4e6d02649a4b965e3b60c007714259e2753461671605df45cfcc"
                    .into(),
                slot: Some(2),
                change: Started,
            })
        );
        assert_eq!(events[0].time_nano, Some(1795731653421180357));
        let healthy = &events[5];
        assert_eq!(healthy.refresh, Refresh::Tasks);
        assert_eq!(
            healthy.task.as_ref().map(|t| (t.task.as_str(), t.slot)),
            Some(("zina1ok0uefqzqiebtk1szscs", Some(1)))
        );
    }

    #[test]
    fn a_batch_keeps_task_events_in_order_with_their_time() {
        let mut b = Batch::default();
        for e in task_fixture().iter().take(3) {
            b.add(e);
        }
        let got: Vec<(ContainerChange, Option<i64>)> =
            b.tasks.iter().map(|(t, at)| (t.change, *at)).collect();
        assert_eq!(
            got,
            [
                (ContainerChange::Started, Some(1795731653421180357)),
                (ContainerChange::Stopping, Some(1795731659082407610)),
                (ContainerChange::Died, Some(1795731659110667437)),
            ]
        );
    }

    #[test]
    fn only_stop_signals_and_only_task_containers_count_as_stopping() {
        let kill = |signal: &str, task: Option<&str>| {
            let mut attrs = serde_json::json!({
                "com.docker.swarm.service.id": "svc",
                "com.docker.swarm.task.name": "web.4.t1",
                "signal": signal,
            });
            if let Some(t) = task {
                attrs["com.docker.swarm.task.id"] = t.into();
            }
            let m: EventMessage = serde_json::from_value(serde_json::json!({
                "Type": "container", "Action": "kill",
                "Actor": {"ID": "c1", "Attributes": attrs}, "timeNano": 7
            }))
            .expect("json");
            event(&m).task.map(|t| (t.change, t.slot))
        };
        for sig in ["15", "9", "2", "3"] {
            assert_eq!(
                kill(sig, Some("t1")),
                Some((ContainerChange::Stopping, Some(4))),
                "{sig}"
            );
        }
        for sig in ["1", "10", "28", "", "TERM"] {
            assert_eq!(kill(sig, Some("t1")), None, "signal {sig:?} only re-lists");
        }
        assert_eq!(kill("15", None), None, "not a task's container");
        let other: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "container", "Action": "pause",
            "Actor": {"ID": "c1", "Attributes": {
                "com.docker.swarm.service.id": "svc", "com.docker.swarm.task.id": "t1"}}
        }))
        .expect("json");
        assert_eq!(event(&other).task, None);
    }

    #[test]
    fn a_task_containers_create_and_destroy_are_task_events_too() {
        let create = &fixture()[1];
        assert_eq!(create.action, "create");
        assert_eq!(
            create
                .task
                .as_ref()
                .map(|t| (t.change, t.task.as_str(), t.slot)),
            Some((
                ContainerChange::Created,
                "l4jr87dy66e2q3hp643mbj1h6",
                Some(2)
            ))
        );
        let destroy: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "container", "Action": "destroy",
            "Actor": {"ID": "c1", "Attributes": {
                "com.docker.swarm.service.id": "svc", "com.docker.swarm.task.id": "t1"}}
        }))
        .expect("json");
        assert_eq!(
            event(&destroy).task.map(|t| t.change),
            Some(ContainerChange::Destroyed)
        );
    }

    #[test]
    fn the_slot_comes_from_a_replicated_tasks_name_only() {
        assert_eq!(slot_of("web.3.abc", "abc"), Some(3));
        assert_eq!(slot_of("my.web.12.abc", "abc"), Some(12));
        assert_eq!(slot_of("web.hxx0e8a6rlcjofo6589cq5r0b.abc", "abc"), None);
        assert_eq!(slot_of("web.0.abc", "abc"), None);
        assert_eq!(slot_of("web.3.abc", "xyz"), None);
        assert_eq!(slot_of("abc", "abc"), None);
        assert_eq!(slot_of("3abc", "abc"), None);
    }

    #[test]
    fn since_is_seconds_dot_nanoseconds_a_margin_earlier() {
        let t = time_from_nanos(1_795_729_106_712_866_649);
        assert_eq!(
            since_param(t, Duration::from_millis(500)),
            "1795729106.212866649"
        );
        assert_eq!(since_param(t, Duration::ZERO), "1795729106.712866649");
        assert_eq!(
            since_param(UNIX_EPOCH, Duration::from_secs(1)),
            "0.000000000"
        );
        assert_eq!(time_from_nanos(-3), UNIX_EPOCH);
    }
}
