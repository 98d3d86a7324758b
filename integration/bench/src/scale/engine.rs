//! A fake Docker Engine API (20.10, API 1.41) on a unix socket: a one-node Swarm of N services
//! of M tasks on one attachable overlay, task addresses on loopback (`127.16.0.0/12`; nothing
//! listens there). It serves exactly what swarm-lb reads (docs/deployment.md, "Docker API calls swarm-lb
//! makes"): `/version`, `/_ping`, `/info`, `/services`, `/tasks` (with `service` and
//! `desired-state` filters), `/networks`, `/containers/{id}/json`, and `/events` with `since`
//! and `type`/`event` filters, history replayed then live. Anything else is answered 404 and
//! counted ([`Engine::unknown`]), so a swarm-lb that starts calling something new is seen.
//!
//! Changes are made in-process ([`Engine::task_up`], [`Engine::task_down`],
//! [`Engine::edit_hosts`]) and emit what a real engine emits, in its order and at about its
//! pace (measured on 20.10: a container's `start` ~10 ms after the service update, the task list
//! showing it running ~20 ms later; `kill`, then `die` ~30 ms later, then the task gone).
//!
//! Every byte written to a client is counted ([`Engine::bytes_sent`]): what swarm-lb read from
//! Docker. List bodies are kept per item, serialised once per change, and written item by item.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;

use super::shapes::{self, ServiceView, TaskView, Templates};
use crate::swarm::now_ns;

pub const HOSTS_LABEL: &str = "com.docker.lb.hosts";
pub const PORT_LABEL: &str = "com.docker.lb.port";
/// The port every task "listens" on (the label's value).
pub const TASK_PORT: u16 = 8080;

/// How the fake engine paces a change (what 20.10 was seen to do).
const CREATE_AFTER: Duration = Duration::from_millis(5);
const START_AFTER: Duration = Duration::from_millis(5);
const LISTED_RUNNING_AFTER: Duration = Duration::from_millis(20);
const KILL_AFTER: Duration = Duration::from_millis(1);
const DIE_AFTER: Duration = Duration::from_millis(30);
const TASK_GONE_AFTER: Duration = Duration::from_millis(20);

/// Events kept for `since` replays (a reconnecting client asks from its last event).
const HISTORY: usize = 100_000;

/// A fake engine serving on a unix socket until dropped.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    templates: Templates,
    live: broadcast::Sender<Arc<Event>>,
    bytes_sent: AtomicU64,
    requests: Mutex<BTreeMap<String, u64>>,
    unknown: Mutex<BTreeMap<String, u64>>,
}

struct Event {
    time_ns: i64,
    kind: &'static str,
    action: String,
    line: String,
}

struct Service {
    id: String,
    name: String,
    version: u64,
    created_ns: i64,
    updated_ns: i64,
    labels: BTreeMap<String, String>,
    replicas: u64,
    previous: Option<(BTreeMap<String, String>, u64)>,
    vip: Ipv4Addr,
    next_slot: u64,
    /// Tasks listed `running` (`ServiceStatus.RunningTasks`).
    running: u64,
    json: Arc<str>,
}

struct Task {
    id: String,
    service: usize,
    slot: u64,
    container_id: String,
    version: u64,
    created_ns: i64,
    updated_ns: i64,
    status_ns: i64,
    state: &'static str,
    desired: &'static str,
    addr: Ipv4Addr,
    container_running: bool,
    json: Arc<str>,
}

struct State {
    services: Vec<Service>,
    /// Task id -> task; `order` keeps the listing order stable.
    tasks: HashMap<String, Task>,
    order: Vec<String>,
    containers: HashMap<String, String>,
    history: std::collections::VecDeque<Arc<Event>>,
    next_ip: u32,
    next_id: u64,
    version: u64,
}

/// One change made to the fake Swarm, and the moment its deciding event was emitted.
#[derive(Debug, Clone)]
pub struct Change {
    pub service: String,
    /// The event latency is measured from (ns since the epoch): a new task's container
    /// `start`, a stopping task's service update (desired state `remove`, `kill` 1 ms later),
    /// a label edit's service update.
    pub origin_ns: i64,
    /// The task's address (task changes).
    pub addr: Option<Ipv4Addr>,
    /// The new host (label edits).
    pub host: Option<String>,
}

impl Engine {
    /// `services` services of `tasks` running tasks each, labelled `s<i>.example`, port
    /// [`TASK_PORT`]; serving on `socket`.
    pub fn start(socket: &Path, services: usize, tasks: usize) -> anyhow::Result<Engine> {
        let templates = Templates::new().context("parsing the Docker fixtures")?;
        let now = now_ns();
        let mut state = State {
            services: Vec::with_capacity(services),
            tasks: HashMap::with_capacity(services * tasks),
            order: Vec::with_capacity(services * tasks),
            containers: HashMap::new(),
            history: Default::default(),
            next_ip: u32::from(Ipv4Addr::new(127, 16, 1, 0)),
            next_id: 1,
            version: 10,
        };
        for i in 0..services {
            let labels = BTreeMap::from([
                (HOSTS_LABEL.to_owned(), format!("s{i}.example")),
                (PORT_LABEL.to_owned(), TASK_PORT.to_string()),
            ]);
            let vip = state.ip();
            let version = state.bump();
            state.services.push(Service {
                id: format!("bsvc{i:021}"),
                name: format!("s{i}"),
                version,
                created_ns: now,
                updated_ns: now,
                labels,
                replicas: tasks as u64,
                previous: None,
                vip,
                next_slot: 1,
                running: 0,
                json: Arc::from(""),
            });
            for _ in 0..tasks {
                let id = state.new_task(i, now, "running", "running");
                if let Some(t) = state.tasks.get_mut(&id) {
                    t.container_running = true;
                }
            }
        }
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            templates,
            live: broadcast::channel(16_384).0,
            bytes_sent: AtomicU64::new(0),
            requests: Mutex::default(),
            unknown: Mutex::default(),
        });
        {
            let mut s = lock(&inner.state);
            let ids: Vec<String> = s.order.clone();
            for id in ids {
                s.render_task(&inner.templates, &id);
            }
            for i in 0..s.services.len() {
                s.render_service(&inner.templates, i);
            }
        }
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("binding the fake engine on {}", socket.display()))?;
        let engine = Engine { inner };
        let serving = engine.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(s));
            }
        });
        Ok(engine)
    }

    /// Bytes written to clients so far (headers, bodies, event lines).
    pub fn bytes_sent(&self) -> u64 {
        self.inner.bytes_sent.load(Ordering::Relaxed)
    }

    /// Requests served so far, by `METHOD /path` (ids replaced by `{id}`).
    pub fn requests(&self) -> BTreeMap<String, u64> {
        lock(&self.inner.requests).clone()
    }

    /// Requests answered 404 because the fake does not know them, by `METHOD /path`.
    pub fn unknown(&self) -> BTreeMap<String, u64> {
        lock(&self.inner.unknown).clone()
    }

    /// Every running task as (service name, address): what HAProxy must end up serving.
    pub fn running(&self) -> Vec<(String, Ipv4Addr)> {
        let s = lock(&self.inner.state);
        s.order
            .iter()
            .filter_map(|id| s.tasks.get(id))
            .filter(|t| t.state == "running" && t.desired == "running")
            .map(|t| (s.services[t.service].name.clone(), t.addr))
            .collect()
    }

    pub fn service_name(&self, i: usize) -> String {
        lock(&self.inner.state).services[i].name.clone()
    }

    /// Scale service `i` up by one, as `docker service scale` does: the service update event,
    /// a new task (listed `preparing`, then `starting`), its container's `create` and `start`
    /// events, then the task listed `running`.
    pub async fn task_up(&self, i: usize) -> Change {
        let t = &self.inner.templates;
        let (id, service) = {
            let mut s = lock(&self.inner.state);
            let now = now_ns();
            let old = s.services[i].replicas;
            s.update_service(t, i, now, |svc| svc.replicas += 1);
            let id = s.new_task(i, now, "preparing", "running");
            s.render_task(t, &id);
            let svc = &s.services[i];
            let line = shapes::service_event(&svc.id, &svc.name, Some((old, old + 1)), now);
            let name = svc.name.clone();
            self.emit(&mut s, now, "service", "update", line);
            (id, name)
        };
        tokio::time::sleep(CREATE_AFTER).await;
        self.task_step(&id, "starting", Some("create"), |_| {});
        tokio::time::sleep(START_AFTER).await;
        let origin_ns = self.task_step(&id, "starting", Some("start"), |t| {
            t.container_running = true;
        });
        tokio::time::sleep(LISTED_RUNNING_AFTER).await;
        self.task_step(&id, "running", None, |_| {});
        let addr = lock(&self.inner.state).tasks.get(&id).map(|t| t.addr);
        Change {
            service,
            origin_ns,
            addr,
            host: None,
        }
    }

    /// Scale service `i` down by one (its highest slot): the service update with the task's
    /// desired state `remove`, its container's `kill` (signal 15), `die` ~30 ms later with the
    /// task listed `shutdown`, then the task gone from the list (20.10 deletes a scaled-down
    /// task once it stopped). `None` when the service has no running task.
    pub async fn task_down(&self, i: usize) -> Option<Change> {
        let t = &self.inner.templates;
        let (id, service, addr, origin_ns) = {
            let mut s = lock(&self.inner.state);
            let id = s
                .order
                .iter()
                .filter_map(|id| s.tasks.get(id))
                .filter(|t| t.service == i && t.desired == "running" && t.state == "running")
                .max_by_key(|t| t.slot)
                .map(|t| t.id.clone())?;
            let now = now_ns();
            let old = s.services[i].replicas;
            s.update_service(t, i, now, |svc| {
                svc.replicas = svc.replicas.saturating_sub(1)
            });
            let version = s.bump();
            let task = s.tasks.get_mut(&id)?;
            task.desired = "remove";
            task.version = version;
            task.updated_ns = now;
            s.render_task(t, &id);
            let svc = &s.services[i];
            let line = shapes::service_event(&svc.id, &svc.name, Some((old, old - 1)), now);
            let name = svc.name.clone();
            let addr = s.tasks.get(&id).map(|t| t.addr);
            self.emit(&mut s, now, "service", "update", line);
            (id, name, addr, now)
        };
        tokio::time::sleep(KILL_AFTER).await;
        self.task_step(&id, "running", Some("kill"), |_| {});
        tokio::time::sleep(DIE_AFTER).await;
        self.task_step(&id, "shutdown", Some("die"), |t| {
            t.container_running = false
        });
        tokio::time::sleep(TASK_GONE_AFTER).await;
        {
            let mut s = lock(&self.inner.state);
            if let Some(task) = s.tasks.remove(&id) {
                s.containers.remove(&task.container_id);
            }
            s.order.retain(|o| o != &id);
        }
        Some(Change {
            service,
            origin_ns,
            addr,
            host: None,
        })
    }

    /// Point service `i`'s hosts label at a new host (`s<i>-e<n>.example`): one service update
    /// event.
    pub async fn edit_hosts(&self, i: usize, n: usize) -> Change {
        let t = &self.inner.templates;
        let mut s = lock(&self.inner.state);
        let now = now_ns();
        let host = format!("s{i}-e{n}.example");
        let h = host.clone();
        s.update_service(t, i, now, move |svc| {
            svc.labels.insert(HOSTS_LABEL.to_owned(), h);
        });
        let svc = &s.services[i];
        let line = shapes::service_event(&svc.id, &svc.name, None, now);
        let service = svc.name.clone();
        self.emit(&mut s, now, "service", "update", line);
        Change {
            service,
            origin_ns: now,
            addr: None,
            host: Some(host),
        }
    }

    /// Move task `id` to `state`, apply `edit`, and emit its container's `action`; returns
    /// the time of the change.
    fn task_step(
        &self,
        id: &str,
        state: &'static str,
        action: Option<&str>,
        edit: impl FnOnce(&mut Task),
    ) -> i64 {
        let t = &self.inner.templates;
        let mut s = lock(&self.inner.state);
        let now = now_ns();
        let version = s.bump();
        let Some(task) = s.tasks.get_mut(id) else {
            return now;
        };
        let mut running = None;
        if task.state != state {
            if task.state == "running" {
                running = Some(false);
            } else if state == "running" {
                running = Some(true);
            }
            task.state = state;
            task.status_ns = now;
            task.version = version;
            task.updated_ns = now;
        }
        edit(task);
        let service = task.service;
        s.render_task(t, id);
        if let Some(up) = running {
            let svc = &mut s.services[service];
            svc.running = if up {
                svc.running + 1
            } else {
                svc.running.saturating_sub(1)
            };
            s.render_service(t, service);
        }
        if let Some(action) = action {
            if let Some(line) = s
                .task_view(id)
                .map(|(v, name)| shapes::container_event(action, &v, name, now))
            {
                self.emit(&mut s, now, "container", action, line);
            }
        }
        now
    }

    fn emit(&self, s: &mut State, time_ns: i64, kind: &'static str, action: &str, line: String) {
        let event = Arc::new(Event {
            time_ns,
            kind,
            action: action.to_owned(),
            line,
        });
        if s.history.len() >= HISTORY {
            s.history.pop_front();
        }
        s.history.push_back(event.clone());
        // Sent under the state lock: a stream that subscribes while replaying the history
        // (under the same lock) sees each event exactly once.
        let _ = self.inner.live.send(event);
    }

    async fn serve(self, mut s: UnixStream) {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            if head.len() > 64 * 1024 {
                return;
            }
        };
        let text = String::from_utf8_lossy(&head[..end]).into_owned();
        let mut words = text.split_whitespace();
        let method = words.next().unwrap_or_default().to_owned();
        let target = words.next().unwrap_or_default().to_owned();
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        // `/v1.41/tasks` -> `/tasks`.
        let path = match path.strip_prefix("/v") {
            Some(rest) => rest.find('/').map_or(path, |i| &rest[i..]),
            None => path,
        };
        let query = parse_query(query);
        let filters = query
            .get("filters")
            .map(|f| parse_filters(f))
            .unwrap_or_default();
        let route = route_name(&method, path);
        *lock(&self.inner.requests).entry(route.clone()).or_default() += 1;
        let reply = match (method.as_str(), path) {
            ("GET" | "HEAD", "/_ping") => Reply::Text("OK".into()),
            ("GET", "/version") => Reply::Json(vec![Arc::from(shapes::version())]),
            ("GET", "/info") => {
                let n = lock(&self.inner.state).tasks.len();
                Reply::Json(vec![Arc::from(shapes::info(n))])
            }
            ("GET", "/networks") => {
                Reply::Json(vec![Arc::from(self.inner.templates.networks.as_str())])
            }
            ("GET", "/services") => Reply::List(self.services(&filters)),
            ("GET", "/tasks") => Reply::List(self.tasks(&filters)),
            ("GET", "/events") => {
                let since = query.get("since").and_then(|s| parse_since(s));
                return self.events(s, since, filters).await;
            }
            ("GET", p) if p.starts_with("/containers/") && p.ends_with("/json") => {
                let id = &p["/containers/".len()..p.len() - "/json".len()];
                match self.container(id) {
                    Some(body) => Reply::Json(vec![Arc::from(body)]),
                    None => Reply::NotFound(format!("No such container: {id}")),
                }
            }
            _ => {
                *lock(&self.inner.unknown).entry(route).or_default() += 1;
                Reply::NotFound(format!("page not found: {method} {path}"))
            }
        };
        let sent = reply.write(&mut s).await;
        self.inner.bytes_sent.fetch_add(sent, Ordering::Relaxed);
    }

    fn services(&self, filters: &BTreeMap<String, Vec<String>>) -> Vec<Arc<str>> {
        // Only swarm-lb's secrets jobs filter services (by a label none of these carry).
        if filters.contains_key("label") {
            return Vec::new();
        }
        let s = lock(&self.inner.state);
        s.services
            .iter()
            .filter(|svc| matches(filters, "id", &svc.id) && matches(filters, "name", &svc.name))
            .map(|svc| svc.json.clone())
            .collect()
    }

    fn tasks(&self, filters: &BTreeMap<String, Vec<String>>) -> Vec<Arc<str>> {
        let s = lock(&self.inner.state);
        s.order
            .iter()
            .filter_map(|id| s.tasks.get(id))
            .filter(|t| {
                let svc = &s.services[t.service];
                (matches(filters, "service", &svc.id) || matches(filters, "service", &svc.name))
                    && matches(filters, "desired-state", t.desired)
            })
            .map(|t| t.json.clone())
            .collect()
    }

    fn container(&self, id: &str) -> Option<String> {
        let s = lock(&self.inner.state);
        let task = s.containers.get(id)?;
        let t = s.tasks.get(task)?;
        let (view, name) = s.task_view(task)?;
        Some(
            self.inner
                .templates
                .container(&view, name, t.container_running),
        )
    }

    /// The event stream: the history from `since`, then live events, filtered, until the
    /// client goes (or falls too far behind: it reconnects with `since`, as from a real engine).
    async fn events(
        self,
        mut s: UnixStream,
        since: Option<i64>,
        filters: BTreeMap<String, Vec<String>>,
    ) {
        let wanted =
            |e: &Event| matches(&filters, "type", e.kind) && matches(&filters, "event", &e.action);
        let (backlog, mut live) = {
            let st = lock(&self.inner.state);
            let backlog: Vec<Arc<Event>> = match since {
                Some(since) => st
                    .history
                    .iter()
                    .filter(|e| e.time_ns >= since && wanted(e))
                    .cloned()
                    .collect(),
                None => Vec::new(),
            };
            (backlog, self.inner.live.subscribe())
        };
        let header = "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n\
                      Docker-Experimental: false\r\nOstype: linux\r\nServer: Docker/20.10.24 (linux)\r\n\
                      Connection: close\r\n\r\n";
        if s.write_all(header.as_bytes()).await.is_err() {
            return;
        }
        let mut sent = header.len() as u64;
        for e in backlog {
            if write_line(&mut s, &e.line).await.is_err() {
                self.inner.bytes_sent.fetch_add(sent, Ordering::Relaxed);
                return;
            }
            sent += e.line.len() as u64 + 1;
        }
        self.inner.bytes_sent.fetch_add(sent, Ordering::Relaxed);
        loop {
            match live.recv().await {
                Ok(e) if wanted(&e) => {
                    if write_line(&mut s, &e.line).await.is_err() {
                        return;
                    }
                    self.inner
                        .bytes_sent
                        .fetch_add(e.line.len() as u64 + 1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

async fn write_line(s: &mut UnixStream, line: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    s.write_all(&buf).await
}

impl State {
    fn ip(&mut self) -> Ipv4Addr {
        let ip = Ipv4Addr::from(self.next_ip);
        self.next_ip += 1;
        ip
    }

    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// A new task of service `i` in the list (not rendered).
    fn new_task(
        &mut self,
        i: usize,
        now: i64,
        state: &'static str,
        desired: &'static str,
    ) -> String {
        let n = self.next_id;
        self.next_id += 1;
        let id = format!("btsk{n:021}");
        let container_id = format!("{n:064x}");
        let addr = self.ip();
        let version = self.bump();
        let svc = &mut self.services[i];
        let slot = svc.next_slot;
        svc.next_slot += 1;
        if state == "running" {
            svc.running += 1;
        }
        self.containers.insert(container_id.clone(), id.clone());
        self.tasks.insert(
            id.clone(),
            Task {
                id: id.clone(),
                service: i,
                slot,
                container_id,
                version,
                created_ns: now,
                updated_ns: now,
                status_ns: now,
                state,
                desired,
                addr,
                container_running: false,
                json: Arc::from(""),
            },
        );
        self.order.push(id.clone());
        id
    }

    fn task_view(&self, id: &str) -> Option<(TaskView<'_>, &str)> {
        let t = self.tasks.get(id)?;
        let svc = &self.services[t.service];
        Some((
            TaskView {
                id: &t.id,
                service_id: &svc.id,
                slot: t.slot,
                container_id: &t.container_id,
                version: t.version,
                created_ns: t.created_ns,
                updated_ns: t.updated_ns,
                status_ns: t.status_ns,
                state: t.state,
                desired: t.desired,
                addr: t.addr,
            },
            &svc.name,
        ))
    }

    fn render_task(&mut self, templates: &Templates, id: &str) {
        let Some(json) = self
            .task_view(id)
            .map(|(v, _)| Arc::<str>::from(templates.task(&v)))
        else {
            return;
        };
        if let Some(t) = self.tasks.get_mut(id) {
            t.json = json;
        }
    }

    fn update_service(
        &mut self,
        templates: &Templates,
        i: usize,
        now: i64,
        edit: impl FnOnce(&mut Service),
    ) {
        let version = self.bump();
        let svc = &mut self.services[i];
        svc.previous = Some((svc.labels.clone(), svc.replicas));
        svc.version = version;
        svc.updated_ns = now;
        edit(svc);
        self.render_service(templates, i);
    }

    fn render_service(&mut self, templates: &Templates, i: usize) {
        let svc = &self.services[i];
        let json = templates.service(&ServiceView {
            id: &svc.id,
            name: &svc.name,
            version: svc.version,
            created_ns: svc.created_ns,
            updated_ns: svc.updated_ns,
            labels: &svc.labels,
            replicas: svc.replicas,
            running: svc.running,
            previous: svc.previous.as_ref().map(|(l, r)| (l, *r)),
            vip: svc.vip,
        });
        self.services[i].json = Arc::from(json);
    }
}

enum Reply {
    Text(String),
    /// A body made of these parts, written one after the other.
    Json(Vec<Arc<str>>),
    /// A JSON array of these items.
    List(Vec<Arc<str>>),
    NotFound(String),
}

impl Reply {
    /// Writes the reply and closes; returns the bytes written.
    async fn write(self, s: &mut UnixStream) -> u64 {
        let (status, ctype, parts, list) = match self {
            Reply::Text(t) => (
                "200 OK",
                "text/plain; charset=utf-8",
                vec![Arc::from(t)],
                false,
            ),
            Reply::Json(parts) => ("200 OK", "application/json", parts, false),
            Reply::List(items) => ("200 OK", "application/json", items, true),
            Reply::NotFound(message) => (
                "404 Not Found",
                "application/json",
                vec![Arc::from(
                    serde_json::json!({ "message": message }).to_string(),
                )],
                false,
            ),
        };
        let mut len: usize = parts.iter().map(|p| p.len()).sum();
        if list {
            len += 2 + parts.len().saturating_sub(1);
        } else {
            // Docker ends a JSON body with a newline.
            len += 1;
        }
        let header = format!(
            "HTTP/1.1 {status}\r\nApi-Version: 1.41\r\nContent-Type: {ctype}\r\n\
             Docker-Experimental: false\r\nOstype: linux\r\nServer: Docker/20.10.24 (linux)\r\n\
             Content-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        let total = (header.len() + len) as u64;
        let mut w = BufWriter::with_capacity(256 * 1024, s);
        let result = async {
            w.write_all(header.as_bytes()).await?;
            if list {
                w.write_all(b"[").await?;
            }
            for (i, p) in parts.iter().enumerate() {
                if list && i > 0 {
                    w.write_all(b",").await?;
                }
                w.write_all(p.as_bytes()).await?;
            }
            w.write_all(if list { b"]" } else { b"\n" }).await?;
            w.flush().await?;
            w.get_mut().shutdown().await
        }
        .await;
        if result.is_ok() {
            total
        } else {
            0
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `GET /containers/abc/json` -> `GET /containers/{id}/json`.
fn route_name(method: &str, path: &str) -> String {
    let path = match path.strip_prefix("/containers/") {
        Some(rest) => match rest.split_once('/') {
            Some((_, tail)) => format!("/containers/{{id}}/{tail}"),
            None => "/containers/{id}".to_owned(),
        },
        None => path.to_owned(),
    };
    format!("{method} {path}")
}

/// A filter absent, or listing `value`.
fn matches(filters: &BTreeMap<String, Vec<String>>, key: &str, value: &str) -> bool {
    filters
        .get(key)
        .is_none_or(|vs| vs.iter().any(|v| v == value))
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Docker's `filters`: `{"type":["service"]}` or `{"type":{"service":true}}`.
fn parse_filters(json: &str) -> BTreeMap<String, Vec<String>> {
    let Ok(serde_json::Value::Object(o)) = serde_json::from_str(json) else {
        return BTreeMap::new();
    };
    o.into_iter()
        .map(|(k, v)| {
            let values = match v {
                serde_json::Value::Array(a) => a
                    .into_iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                serde_json::Value::Object(m) => m.into_iter().map(|(k, _)| k).collect(),
                _ => Vec::new(),
            };
            (k, values)
        })
        .collect()
}

/// `1795729105.712866649` or `1795729105` -> ns.
fn parse_since(s: &str) -> Option<i64> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0i64;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        let scale = 10i64.pow(9 - digits.len() as u32);
        nanos = digits.parse::<i64>().ok()? * scale;
    }
    Some(secs * 1_000_000_000 + nanos)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_filters_and_since_are_read_as_docker_reads_them() {
        let q = parse_query("since=1795729105.712866649&filters=%7B%22type%22%3A%5B%22service%22%2C%22container%22%5D%7D");
        assert_eq!(parse_since(&q["since"]), Some(1_795_729_105_712_866_649));
        assert_eq!(parse_since("17"), Some(17_000_000_000));
        assert_eq!(parse_since("1.5"), Some(1_500_000_000));
        let f = parse_filters(&q["filters"]);
        assert!(matches(&f, "type", "container"));
        assert!(!matches(&f, "type", "network"));
        assert!(matches(&f, "event", "anything"));
        let f = parse_filters(r#"{"service":{"abc":true}}"#);
        assert!(matches(&f, "service", "abc"));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn container_paths_are_counted_under_one_route() {
        assert_eq!(
            route_name("GET", "/containers/abc/json"),
            "GET /containers/{id}/json"
        );
        assert_eq!(route_name("GET", "/tasks"), "GET /tasks");
    }
}
