//! A service's tasks as Swarm reports them (`docker service ps` + one `docker inspect` of all
//! of them): state, the time of the last state change, the address on one network.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{docker, docker_output, now_ns};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: String,
    /// `Status.State`: `running`, `starting`, ...
    pub state: String,
    pub desired: String,
    /// `Status.Timestamp` (ns since the epoch): when the task entered `state`.
    pub since_ns: i64,
    /// Its address on the network asked for.
    pub ip: Option<IpAddr>,
}

/// `docker inspect --format` of a task: one line of `|`-separated fields.
const FORMAT: &str = "{{.ID}}|{{.Status.State}}|{{.DesiredState}}|{{.Status.Timestamp.UnixNano}}|{{range .NetworksAttachments}}{{.Network.ID}}={{range .Addresses}}{{.}},{{end}};{{end}}";

/// Parses one line of [`FORMAT`], keeping the address on `network_id`.
pub fn parse_line(line: &str, network_id: &str) -> Option<TaskInfo> {
    let mut f = line.trim().splitn(5, '|');
    let id = f.next()?.to_owned();
    let state = f.next()?.to_owned();
    let desired = f.next()?.to_owned();
    let since_ns = f.next()?.parse().ok()?;
    let ip = f.next().and_then(|atts| {
        atts.split(';').find_map(|att| {
            let (net, addrs) = att.split_once('=')?;
            (net == network_id)
                .then(|| {
                    addrs
                        .split(',')
                        .find_map(|a| a.split('/').next()?.parse::<IpAddr>().ok())
                })
                .flatten()
        })
    });
    Some(TaskInfo {
        id,
        state,
        desired,
        since_ns,
        ip,
    })
}

/// Tasks of `service` whose desired state is running, by id.
pub async fn desired_running(
    service: &str,
    network_id: &str,
) -> anyhow::Result<BTreeMap<String, TaskInfo>> {
    let ids = docker(&[
        "service",
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        "desired-state=running",
        service,
    ])
    .await?;
    let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut args = vec!["inspect", "--type", "task", "--format", FORMAT];
    args.extend(ids);
    // A task removed between the two calls fails the inspect for that id only.
    let out = docker_output(&args).await?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| parse_line(l, network_id))
        .filter(|t| t.desired == "running")
        .map(|t| (t.id.clone(), t))
        .collect())
}

/// Addresses of the tasks that are running and meant to run, when all `n` of them are.
pub fn all_running(tasks: &BTreeMap<String, TaskInfo>, n: usize) -> Option<Vec<IpAddr>> {
    let mut ips: Vec<IpAddr> = tasks
        .values()
        .filter(|t| t.state == "running")
        .filter_map(|t| t.ip)
        .collect();
    ips.sort();
    (tasks.len() == n && ips.len() == n).then_some(ips)
}

/// What Swarm's task API showed of one task, first seen by [`ApiWatch`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// When the API first listed it with `Status.State` running and `DesiredState` running.
    pub running_ns: Option<i64>,
    /// When the API first listed it with `DesiredState` no longer running.
    pub leaving_ns: Option<i64>,
    /// In that same listing: `UpdatedAt` and `Status.Timestamp`. While the agent has not yet
    /// reported anything since (the status timestamp is still the one of `running`), the
    /// last update of the task is the orchestrator's change of its desired state, so
    /// `UpdatedAt` is the exact moment Swarm decided to stop it.
    pub leaving_updated_ns: Option<i64>,
    pub leaving_status_ns: Option<i64>,
}

/// `GET /tasks` of one service on the Docker socket every few ms, noting what the API (what
/// any driver can list) showed of each task, and when.
pub struct ApiWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<String, Seen>>>,
}

impl ApiWatch {
    pub fn start(service: &str, every: Duration) -> ApiWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<BTreeMap<String, Seen>>> = Arc::new(Mutex::new(BTreeMap::new()));
        let socket = PathBuf::from(
            std::env::var("DOCKER_HOST")
                .ok()
                .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
                .unwrap_or_else(|| "/var/run/docker.sock".to_owned()),
        );
        // Service names are letters, digits and dashes: nothing to escape but the JSON.
        let request = format!(
            "GET /v1.41/tasks?filters=%7B%22service%22%3A%5B%22{service}%22%5D%7D HTTP/1.0\r\nHost: docker\r\n\r\n"
        );
        let (s, k) = (stop.clone(), seen.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                let Ok(tasks) = list(&socket, &request).await else {
                    continue;
                };
                let at = now_ns();
                let Ok(mut seen) = k.lock() else { return };
                for t in tasks {
                    note(seen.entry(t.id.clone()).or_default(), &t, at);
                }
            }
        });
        ApiWatch { stop, seen }
    }

    pub fn seen(&self, task: &str) -> Seen {
        self.seen
            .lock()
            .ok()
            .and_then(|s| s.get(task).copied())
            .unwrap_or_default()
    }
}

impl Drop for ApiWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One task as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTask {
    pub id: String,
    pub state: String,
    pub desired: String,
    pub updated_ns: Option<i64>,
    pub status_ns: Option<i64>,
}

/// Records the first sighting of each state of `t` in `e`.
fn note(e: &mut Seen, t: &ApiTask, at: i64) {
    if t.state == "running" && t.desired == "running" && e.running_ns.is_none() {
        e.running_ns = Some(at);
    }
    if t.desired != "running" && e.leaving_ns.is_none() {
        e.leaving_ns = Some(at);
        e.leaving_updated_ns = t.updated_ns;
        e.leaving_status_ns = t.status_ns;
    }
}

/// Every task the request lists.
async fn list(socket: &std::path::Path, request: &str) -> anyhow::Result<Vec<ApiTask>> {
    let exchange = async {
        let mut s = UnixStream::connect(socket).await?;
        s.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(16 * 1024);
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), exchange).await??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP body"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    parse_api_tasks(body)
}

/// The tasks of a `GET /tasks` body.
pub fn parse_api_tasks(body: &str) -> anyhow::Result<Vec<ApiTask>> {
    let v: serde_json::Value = serde_json::from_str(body)?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(ApiTask {
                id: t["ID"].as_str()?.to_owned(),
                state: t["Status"]["State"].as_str()?.to_owned(),
                desired: t["DesiredState"].as_str()?.to_owned(),
                updated_ns: t["UpdatedAt"].as_str().and_then(rfc3339_ns),
                status_ns: t["Status"]["Timestamp"].as_str().and_then(rfc3339_ns),
            })
        })
        .collect())
}

/// `2026-11-26T23:08:55.223422744Z` (UTC, as Docker writes times) -> ns since the epoch;
/// `None` where [`swarm_lb::swarm::rfc3339`] gives none (other forms, Go's zero time).
pub fn rfc3339_ns(s: &str) -> Option<i64> {
    let since_epoch = swarm_lb::swarm::rfc3339(s)?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    i64::try_from(since_epoch.as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_line_gives_its_address_on_the_network_asked_for() {
        let line =
            "yxom4|running|running|1795731623364959643|netA=10.0.27.3/24,;netB=10.0.9.4/24,;";
        let t = parse_line(line, "netB").expect("parsed");
        assert_eq!(t.id, "yxom4");
        assert_eq!(t.state, "running");
        assert_eq!(t.since_ns, 1795731623364959643);
        assert_eq!(t.ip, Some("10.0.9.4".parse().unwrap()));
        assert_eq!(parse_line(line, "other").and_then(|t| t.ip), None);
    }

    #[test]
    fn docker_times_read_as_nanoseconds_since_the_epoch() {
        assert_eq!(rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        // `docker inspect` printed UnixNano 1795734535223422744 for this UpdatedAt.
        assert_eq!(
            rfc3339_ns("2026-11-26T23:08:55.223422744Z"),
            Some(1795734535223422744)
        );
        assert_eq!(
            rfc3339_ns("2024-02-29T12:00:00.5Z"),
            Some(1709208000500000000)
        );
        assert_eq!(rfc3339_ns("2024-02-29T12:00:00"), None);
        assert_eq!(rfc3339_ns("garbage"), None);
        // Docker's "never": Go's zero time, before the epoch.
        assert_eq!(rfc3339_ns("0001-01-01T00:00:00Z"), None);
        assert_eq!(rfc3339_ns("2024-02-29T12:00:00.1234567891Z"), None);
    }

    #[test]
    fn a_task_leaving_keeps_the_times_of_the_listing_that_first_showed_it() {
        let body = r#"[{"ID":"t1","UpdatedAt":"2026-11-26T23:08:55.223422744Z","DesiredState":"remove","Status":{"Timestamp":"2026-11-26T23:08:51.157841719Z","State":"running"}}]"#;
        let tasks = parse_api_tasks(body).expect("parsed");
        let mut seen = Seen::default();
        note(&mut seen, &tasks[0], 42);
        let later = ApiTask {
            updated_ns: Some(1),
            ..tasks[0].clone()
        };
        note(&mut seen, &later, 43);
        assert_eq!(seen.leaving_ns, Some(42));
        assert_eq!(seen.leaving_updated_ns, Some(1795734535223422744));
        assert_eq!(seen.leaving_status_ns, Some(1795734531157841719));
        assert_eq!(seen.running_ns, None);
    }

    #[test]
    fn a_truncated_task_line_is_skipped() {
        assert_eq!(parse_line("yxom4|running", "n"), None);
        assert_eq!(parse_line("yxom4|running|running|notanumber|", "n"), None);
    }
}
