//! Docker's own account of when things happened: `docker events` (container start/kill/die,
//! service create/update/remove) followed in a child process, each event kept with the
//! engine's `timeNano`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// One event, reduced to what the bench matches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `container` or `service`.
    pub kind: String,
    pub action: String,
    /// Service name: the `name` attribute of a service event, the
    /// `com.docker.swarm.service.name` label of a task's container.
    pub service: String,
    /// The task a container runs (`com.docker.swarm.task.id`); empty for service events.
    pub task: String,
    /// Engine time, ns since the epoch.
    pub time_ns: i64,
}

/// Parses one line of `docker events --format '{{json .}}'`; `None` for anything else.
pub fn parse(line: &str) -> Option<Event> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let attrs = &v["Actor"]["Attributes"];
    let kind = v["Type"].as_str()?.to_owned();
    let service = match kind.as_str() {
        "service" => attrs["name"].as_str(),
        _ => attrs["com.docker.swarm.service.name"].as_str(),
    }
    .unwrap_or("")
    .to_owned();
    Some(Event {
        kind,
        action: v["Action"].as_str()?.to_owned(),
        service,
        task: attrs["com.docker.swarm.task.id"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        time_ns: v["timeNano"].as_i64()?,
    })
}

/// `docker events` running in the background, every event kept.
pub struct EventLog {
    events: Arc<Mutex<Vec<Event>>>,
    _child: Child,
    reader: JoinHandle<()>,
}

impl EventLog {
    /// Follows events from `since_ns` on (engine time): replaying from a moment before the
    /// subscription closes the gap between starting the child and its subscription.
    pub fn start(since_ns: i64) -> anyhow::Result<EventLog> {
        let since = format!(
            "{}.{:09}",
            since_ns.div_euclid(1_000_000_000),
            since_ns.rem_euclid(1_000_000_000)
        );
        let mut child = Command::new(swarm_lb_e2e::docker::bin())
            .args(["events", "--format", "{{json .}}", "--since", &since])
            .args(["--filter", "type=container", "--filter", "type=service"])
            .args(["--filter", "event=start", "--filter", "event=kill"])
            .args(["--filter", "event=die", "--filter", "event=create"])
            .args(["--filter", "event=update", "--filter", "event=remove"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawning docker events")?;
        let stdout = child
            .stdout
            .take()
            .context("docker events without stdout")?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(e) = parse(&line) {
                    if let Ok(mut v) = sink.lock() {
                        v.push(e);
                    }
                }
            }
        });
        Ok(EventLog {
            events,
            _child: child,
            reader,
        })
    }

    /// The first event matching `pred`, if seen yet.
    pub fn find(&self, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        self.events
            .lock()
            .ok()
            .and_then(|v| v.iter().find(|e| pred(e)).cloned())
    }

    /// The first event matching `pred`, waiting up to `within` for it.
    pub async fn wait(&self, within: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(e) = self.find(&pred) {
                return Some(e);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Events seen so far matching `pred`.
    pub fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.events
            .lock()
            .map(|v| v.iter().filter(|e| pred(e)).count())
            .unwrap_or(0)
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_event_names_its_service_and_task() {
        // As Docker 20.10 prints it (trimmed attributes).
        let line = r#"{"status":"start","id":"41eb","from":"swarm-lb/testapp:1","Type":"container","Action":"start","Actor":{"ID":"41eb","Attributes":{"com.docker.swarm.service.id":"ngp4","com.docker.swarm.service.name":"bswtest","com.docker.swarm.task.id":"yxom4","signal":"15"}},"scope":"local","time":1795731623,"timeNano":1795731623363806783}"#;
        let e = parse(line).expect("parsed");
        assert_eq!(
            e,
            Event {
                kind: "container".into(),
                action: "start".into(),
                service: "bswtest".into(),
                task: "yxom4".into(),
                time_ns: 1795731623363806783,
            }
        );
    }

    #[test]
    fn a_service_event_names_its_service() {
        let line = r#"{"Type":"service","Action":"update","Actor":{"ID":"ngp4","Attributes":{"name":"bswtest","replicas.new":"0","replicas.old":"1"}},"scope":"swarm","time":1795731627,"timeNano":1795731627011564386}"#;
        let e = parse(line).expect("parsed");
        assert_eq!(
            (e.kind.as_str(), e.action.as_str(), e.service.as_str()),
            ("service", "update", "bswtest")
        );
        assert_eq!(e.task, "");
    }

    #[test]
    fn garbage_is_not_an_event() {
        assert_eq!(parse("not json"), None);
        assert_eq!(parse(r#"{"Type":"container"}"#), None);
    }
}
