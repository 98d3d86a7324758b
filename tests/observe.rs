//! The observe layer against a real HAProxy (no Docker): hand-made snapshots go through
//! `Reconciler::pass` with an [`Observer`] served on a free loopback port, and the test reads
//! `/metrics`, `/readyz` and `/status` over HTTP as Prometheus and `swarm-lb status` would.
//! The metrics text is checked with `promtool check metrics`.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::Duration;

use support::{poll_until, Haproxy, STARTUP};
use swarm_lb::haproxy::codec::{self, admin_from_bits};
use swarm_lb::haproxy::render::Files;
use swarm_lb::haproxy::{AdminClient, ProxyState, Query};
use swarm_lb::model::{
    self, DesiredTaskState, Network, Service, Snapshot, Task, TaskAddress, TaskState,
};
use swarm_lb::observe::{http, Observer, Status};
use swarm_lb::plan::PlanSettings;
use swarm_lb::reconcile::{Reconciler, Settings, Strategy};

const NET: &str = "net-1";

fn service(name: &str, labels: &[(&str, &str)]) -> Service {
    Service {
        id: format!("id-{name}"),
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        networks: vec![NET.to_owned()],
        vips: vec![],
    }
}

fn web(port: &str) -> Service {
    service(
        "web",
        &[
            ("com.docker.lb.hosts", "web.test"),
            ("com.docker.lb.port", port),
        ],
    )
}

fn running(service: &str, ns: &[u8]) -> Vec<Task> {
    ns.iter()
        .map(|&n| Task {
            id: format!("task{n}"),
            service_id: format!("id-{service}"),
            slot: Some(n.into()),
            state: TaskState::Running,
            desired_state: DesiredTaskState::Running,
            addresses: vec![TaskAddress {
                network: NET.to_owned(),
                addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)),
            }],
        })
        .collect()
}

fn snapshot(services: Vec<Service>, tasks: Vec<Task>) -> Snapshot {
    Snapshot {
        services: swarm_lb::model::shared(services),
        tasks: swarm_lb::model::shared(tasks),
        networks: vec![Network {
            id: NET.to_owned(),
            name: "front".to_owned(),
            driver: "overlay".to_owned(),
            attachable: true,
            ingress: false,
        }],
    }
}

struct Rig {
    haproxy: Haproxy,
    reconciler: Reconciler,
    observer: Arc<Observer>,
    addr: SocketAddr,
}

impl Rig {
    async fn start() -> Rig {
        let haproxy = Haproxy::start(&ProxyState::default()).await;
        let settings = Settings {
            model: model::Settings::default(),
            plan: PlanSettings {
                block: 4,
                add_server: true,
                hosts_map: haproxy.hosts_map().clone(),
                runtime_backends: Default::default(),
                connect_timeout_rule: false,
            },
            render: haproxy.settings.clone(),
            haproxy_container: None,
            keep_networks: Default::default(),
            reload_timeout: Duration::from_secs(10),
            strategy: Strategy::Runtime,
        };
        let observer = Arc::new(Observer::default());
        let reconciler = Reconciler::new(
            settings,
            AdminClient::new(haproxy.admin_socket()),
            haproxy.master(),
            Files::new(haproxy.config_dir()),
            None,
        )
        .with_observer(observer.clone());
        // Port 0: the kernel picks a free port and keeps it, so no other test can take it
        // between the choice and the bind (a `free_port()` here once raced: AddrInUse).
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("the listener's address");
        let source = http::StatusSource {
            admin_socket: haproxy.admin_socket().to_owned(),
            hosts_map: haproxy.hosts_map().clone(),
        };
        tokio::spawn(http::serve(listener, observer.clone(), source));
        Rig {
            haproxy,
            reconciler,
            observer,
            addr,
        }
    }

    async fn pass(&mut self, snap: Snapshot) {
        self.observer.snapshot(Arc::new(snap.clone()));
        self.reconciler.pass(&snap).await.expect("pass");
        self.reconciler.flush().await.expect("files written");
    }

    async fn get(&self, path: &str) -> (u16, String) {
        http::get(self.addr, path).await.expect("GET")
    }

    /// `/metrics`, checked by promtool, as `name{labels}` -> value.
    async fn metrics(&self) -> BTreeMap<String, f64> {
        let (code, text) = self.get("/metrics").await;
        assert_eq!(code, 200);
        promtool_check(&text);
        samples(&text)
    }
}

/// `name{labels} value` lines of the text format.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn value(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// `promtool check metrics` on `text`: fails with how to install promtool when it is missing,
/// and with promtool's complaints when it has any.
fn promtool_check(text: &str) {
    let mut child = match Process::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool not found ({e}): install it with `apt-get install prometheus` \
             (scripts/setup.sh does)"
        ),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const CREATED: &str = "swarm_lb_reloads_total{reason=\"backend_created\"}";
const SET_ADDR: &str = "swarm_lb_runtime_commands_total{kind=\"set_addr\",result=\"ok\"}";
const PORT_PROBLEM: &str =
    "swarm_lb_label_problems{service=\"web\",label=\"com.docker.lb.port\",severity=\"error\"}";

#[tokio::test]
async fn metrics_count_the_reload_of_a_new_service_then_only_runtime_commands_for_scaling() {
    let mut rig = Rig::start().await;
    rig.pass(snapshot(vec![web("8080")], running("web", &[1, 2])))
        .await;
    let created = rig.metrics().await;
    // From 3.4 the backend is created at runtime: no reload at all.
    let info = AdminClient::new(rig.haproxy.admin_socket())
        .info()
        .await
        .expect("show info");
    let reloads = f64::from(u8::from((info.version.major, info.version.minor) < (3, 4)));
    assert_eq!(value(&created, CREATED), reloads, "{created:#?}");
    assert_eq!(value(&created, "swarm_lb_routed_services"), 1.0);
    assert_eq!(
        value(
            &created,
            "swarm_lb_backend_slots{service=\"web\",backend=\"web\",state=\"used\"}"
        ),
        2.0
    );
    assert_eq!(value(&created, "swarm_lb_passes_total{result=\"ok\"}"), 1.0);
    assert_eq!(value(&created, "swarm_lb_haproxy_up"), 1.0);

    rig.pass(snapshot(vec![web("8080")], running("web", &[1, 2, 3])))
        .await;
    let scaled = rig.metrics().await;
    assert_eq!(value(&scaled, CREATED), reloads, "scaling must not reload");
    assert!(
        value(&scaled, SET_ADDR) > value(&created, SET_ADDR),
        "set_addr did not rise: {scaled:#?}"
    );
    assert_eq!(
        value(
            &scaled,
            "swarm_lb_backend_slots{service=\"web\",backend=\"web\",state=\"used\"}"
        ),
        3.0
    );
    assert_eq!(value(&scaled, "swarm_lb_pass_duration_seconds_count"), 2.0);
}

#[tokio::test]
async fn a_hostile_label_sets_its_problem_gauge_until_it_is_fixed() {
    let mut rig = Rig::start().await;
    rig.pass(snapshot(vec![web("8080")], running("web", &[1])))
        .await;
    rig.pass(snapshot(vec![web("80;evil")], running("web", &[1])))
        .await;
    let bad = rig.metrics().await;
    assert_eq!(value(&bad, PORT_PROBLEM), 1.0, "{bad:#?}");
    let (_, json) = rig.get("/status").await;
    let status: Status = serde_json::from_str(&json).expect("status JSON");
    assert!(
        status
            .problems
            .iter()
            .any(|p| p.service == "web" && p.label == "com.docker.lb.port"),
        "{status:#?}"
    );
    rig.pass(snapshot(vec![web("8080")], running("web", &[1])))
        .await;
    let fixed = rig.metrics().await;
    assert_eq!(fixed.get(PORT_PROBLEM), Some(&0.0), "{fixed:#?}");
}

#[tokio::test]
async fn status_matches_show_servers_state_and_readyz_needs_docker_and_a_pass() {
    let mut rig = Rig::start().await;
    rig.observer.beat();
    assert_eq!(rig.get("/healthz").await.0, 200);
    let (code, why) = rig.get("/readyz").await;
    assert_eq!(code, 503);
    assert!(why.contains("no pass"), "{why}");
    rig.pass(snapshot(vec![web("8080")], running("web", &[1, 2])))
        .await;
    rig.observer.docker(true);
    poll_until(STARTUP, "/readyz answering 200", || async {
        (rig.get("/readyz").await == (200, "ready\n".to_owned())).then_some(())
    })
    .await;

    let (code, json) = rig.get("/status").await;
    assert_eq!(code, 200, "{json}");
    let status: Status = serde_json::from_str(&json).expect("status JSON");
    let mut rt = AdminClient::new(rig.haproxy.admin_socket());
    let replies = rt
        .query(&[Query::ShowServersState { backend: None }])
        .await
        .expect("show servers state");
    let rows = codec::parse_servers_state(replies[0].as_ref().expect("reply")).expect("parse");
    let web = status
        .routes
        .iter()
        .find(|r| r.backend == "web")
        .expect("web routed");
    assert_eq!(web.hosts, ["web.test"]);
    let mut used: Vec<_> = rows
        .iter()
        .filter(|r| r.backend.as_str() == "web" && r.port != 1)
        .collect();
    // HAProxy lists the servers of a backend created at runtime (3.4+) in another order
    // than the slots'.
    used.sort_by_key(|r| r.server.slot_index());
    assert_eq!(web.servers.len(), used.len());
    let free = rows
        .iter()
        .filter(|r| r.backend.as_str() == "web" && r.port == 1)
        .count();
    assert_eq!(web.free_slots, free);
    for (s, row) in web.servers.iter().zip(&used) {
        assert_eq!(s.slot, row.server.as_str());
        assert_eq!(s.address, SocketAddr::new(row.addr, row.port).to_string());
        let admin = format!("{:?}", admin_from_bits(row.admin_state)).to_lowercase();
        assert_eq!(s.state, admin);
        let n = row.addr.to_string().rsplit('.').next().unwrap().to_owned();
        assert_eq!(s.task.as_deref(), Some(format!("web.{n}.task{n}").as_str()));
    }
    let table = swarm_lb::observe::status::render(&status);
    assert!(table.contains("web.test"), "{table}");
}

/// Adds service `api<n>` with one task, and times the pass that routes it (a reload before
/// 3.4, runtime commands from 3.4).
async fn add_api(rig: &mut Rig, snap: &mut Snapshot, n: u8) -> Duration {
    let name = format!("api{n}");
    let host = format!("{name}.test");
    snap.services.push(std::sync::Arc::new(service(
        &name,
        &[
            ("com.docker.lb.hosts", &host),
            ("com.docker.lb.port", "8080"),
        ],
    )));
    snap.tasks
        .extend(swarm_lb::model::shared(running(&name, &[10 + n])));
    let started = std::time::Instant::now();
    rig.pass(snap.clone()).await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100_status_requests_is_answered_while_a_change_converges_at_its_usual_speed() {
    let mut rig = Rig::start().await;
    let mut snap = snapshot(vec![web("8080")], running("web", &[1]));
    rig.pass(snap.clone()).await;
    let alone = add_api(&mut rig, &mut snap, 1).await;

    let addr = rig.addr;
    let burst: Vec<_> = (0..100)
        .map(|_| tokio::spawn(async move { http::get(addr, "/status").await }))
        .collect();
    let during = add_api(&mut rig, &mut snap, 2).await;
    let mut codes = BTreeMap::new();
    for request in burst {
        let (code, body) = request.await.expect("request task").expect("GET /status");
        assert!(code == 200, "{code}: {body}");
        *codes.entry(code).or_insert(0) += 1;
    }
    assert_eq!(codes, BTreeMap::from([(200, 100)]));
    assert!(
        during <= alone * 3 + Duration::from_millis(500),
        "the change took {during:?} under the burst, {alone:?} alone"
    );
    let (code, json) = rig.get("/status").await;
    assert_eq!(code, 200, "{json}");
    let status: Status = serde_json::from_str(&json).expect("status JSON");
    let api2 = status.routes.iter().find(|r| r.backend == "api2");
    assert!(
        api2.is_some_and(|r| r.servers.len() == 1),
        "api2 routed to its task: {status:#?}"
    );
}

/// `GET /` as a browser sends it: the status code, the response head (lower case) and the
/// body.
async fn get_page(addr: SocketAddr) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: status\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut raw = Vec::new();
    tokio::time::timeout(STARTUP, stream.read_to_end(&mut raw))
        .await
        .expect("the page within the start-up deadline")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    (head.to_lowercase(), body.to_owned())
}

#[tokio::test]
async fn the_status_page_is_html_without_scripts_that_shows_a_hostile_label_as_text() {
    let mut rig = Rig::start().await;
    let hostile = "\"><img src=x onerror=alert(1)>.test";
    let evil = service(
        "evil",
        &[
            ("com.docker.lb.hosts", hostile),
            ("com.docker.lb.port", "8080"),
        ],
    );
    let mut tasks = running("web", &[1, 2]);
    tasks.extend(running("evil", &[3]));
    rig.pass(snapshot(vec![web("8080"), evil], tasks)).await;

    let (head, body) = get_page(rig.addr).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    let csp = head
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .unwrap_or_else(|| panic!("no Content-Security-Policy: {head}"));
    assert!(
        csp.contains("default-src 'none'") && csp.contains("style-src 'unsafe-inline'"),
        "{csp}"
    );
    assert!(!csp.contains("script-src"), "{csp}");
    assert!(body.contains("<h3>web.test</h3>"), "{body}");
    assert!(
        body.contains("web.1.task1") && body.contains("web.2.task2"),
        "{body}"
    );
    assert!(body.contains("1 succeeded, 0 failed"), "{body}");
    assert!(
        body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "the hostile value as text: {body}"
    );
    assert!(
        !body.contains("<img") && !body.contains("<script"),
        "{body}"
    );
}
