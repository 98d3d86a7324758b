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
pub(super) const TYPES: [&str; 4] = ["service", "network", "container", "node"];

/// The actions worth a re-list; everything else (exec_*, attach, health probes, network
/// connect/disconnect of every container) is filtered out by the engine, so that an idle
/// cluster with health-checked containers does not wake the watcher.
pub(super) const ACTIONS: [&str; 8] = [
    "create", "update", "remove", "destroy", "start", "die", "kill", "stop",
];

/// The container label (event attribute) Swarm puts on a task's container.
const SERVICE_ID_ATTR: &str = "com.docker.swarm.service.id";

/// One event, reduced to what the watcher acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Event {
    pub kind: String,
    pub action: String,
    pub actor: String,
    pub refresh: Refresh,
    /// The service whose tasks this event is about, if any.
    pub service: Option<ServiceId>,
    /// Engine time of the event (ns since the epoch).
    pub time_nano: Option<i64>,
}

/// How much to re-read after an event. Ordered: a bigger refresh includes a smaller one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Refresh {
    Nothing,
    /// Only the task list (services and networks did not change).
    Tasks,
    /// Services, tasks and networks.
    Full,
}

pub(super) fn event(m: &EventMessage) -> Event {
    let actor = m.actor.as_ref();
    let actor_id = actor.and_then(|a| a.id.clone()).unwrap_or_default();
    let attrs: Option<&HashMap<String, String>> = actor.and_then(|a| a.attributes.as_ref());
    let (refresh, service) = match m.typ {
        Some(EventMessageTypeEnum::SERVICE) => (Refresh::Full, Some(actor_id.clone())),
        Some(EventMessageTypeEnum::NETWORK) | Some(EventMessageTypeEnum::NODE) => {
            (Refresh::Full, None)
        }
        Some(EventMessageTypeEnum::CONTAINER) => {
            match attrs
                .and_then(|a| a.get(SERVICE_ID_ATTR))
                .filter(|s| !s.is_empty())
            {
                Some(svc) => (Refresh::Tasks, Some(svc.clone())),
                // Not a Swarm task (the HAProxy container itself, for one).
                None => (Refresh::Nothing, None),
            }
        }
        _ => (Refresh::Nothing, None),
    };
    Event {
        kind: m.typ.map(|t| t.to_string()).unwrap_or_default(),
        action: m.action.clone().unwrap_or_default(),
        actor: actor_id,
        refresh,
        service: service.filter(|s| !s.is_empty()),
        time_nano: m
            .time_nano
            .or_else(|| m.time.and_then(|t| t.checked_mul(1_000_000_000))),
    }
}

/// Everything a burst of events asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Batch {
    pub refresh: Option<Refresh>,
    pub services: BTreeSet<ServiceId>,
    /// A node changed: any service may have tasks moving.
    pub any_service: bool,
    pub last_time_nano: Option<i64>,
}

impl Batch {
    pub fn add(&mut self, e: &Event) {
        self.refresh = self.refresh.max(Some(e.refresh));
        if let Some(s) = &e.service {
            self.services.insert(s.clone());
        }
        if e.kind == "node" {
            self.any_service = true;
        }
        if let Some(t) = e.time_nano {
            self.last_time_nano = self.last_time_nano.max(Some(t));
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
    fn a_service_event_asks_for_a_full_relist_and_names_the_service() {
        let e = &fixture()[0];
        assert_eq!((e.kind.as_str(), e.action.as_str()), ("service", "update"));
        assert_eq!(e.refresh, Refresh::Full);
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
