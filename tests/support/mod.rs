//! Test harness shared by the integration tests (`mod support;`): a real master-worker HAProxy
//! on a rendered config in a temp dir, tiny HTTP backends on loopback, an HTTP client, and
//! polling with a deadline. The process handling and the polling are swarm-lb-testkit's (the
//! benchmarks use them too); the swarm-lb specifics are here. Nothing here sleeps to wait for
//! state: it polls until a deadline.
#![allow(dead_code)] // each test file uses its own part of the harness

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use swarm_lb::haproxy::render::{Files, HttpsSettings, RenderSettings, BASE_TEMPLATE};
use swarm_lb::haproxy::tls::CertFiles;
use swarm_lb::haproxy::tls_profile::TlsProfile;
use swarm_lb::haproxy::{Admin, AdminClient, BackendState, MapPath, Master, ProxyState, Server};
use swarm_lb::model::access::TrustedProxy;
use swarm_lb::model::{BackendName, Host, MapKey, MapValue, Mode, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

// The tests take these from here with the rest of the harness.
#[allow(unused_imports)] // not every test file polls
pub use swarm_lb_testkit::{free_port, poll_until};
use swarm_lb_testkit::{HaproxyProcess, Launch, Listener};

/// How long HAProxy may take to come up, and the default for test polls.
pub const STARTUP: Duration = Duration::from_secs(10);
/// How long one HTTP exchange in a test may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// `SWARM_LB_STATS_BIND` for a test HAProxy on the shipped template: a free loopback port.
pub fn stats_bind() -> (String, String) {
    (
        "SWARM_LB_STATS_BIND".to_owned(),
        format!("127.0.0.1:{}", free_port()),
    )
}

/// A master-worker HAProxy (`-W -db -S`) on a config rendered from `state` in a temp dir.
/// The whole process group is killed on drop.
pub struct Haproxy {
    // Before `dir`: fields drop in order, so HAProxy is killed before its dir is removed.
    /// Always `Some`, but during [`Haproxy::restart`].
    process: Option<HaproxyProcess>,
    dir: tempfile::TempDir,
    pub files: Files,
    pub settings: RenderSettings,
    pub http_port: u16,
    /// With [`Haproxy::start_https`]: the HTTPS port and its certificate files.
    pub https: Option<(u16, CertFiles)>,
}

impl Haproxy {
    /// The master's pid (its worker is its child).
    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("running").pid()
    }

    /// Render `state` with the shipped template, start HAProxy on it and wait until its admin
    /// socket answers and the master lists a worker. The files are then saved as the last
    /// good ones.
    pub async fn start(state: &ProxyState) -> Haproxy {
        Self::start_with(state, false, None, |_| {}).await
    }

    /// [`Haproxy::start`], with `ca_pem` as the CA bundle `ssl_backend` verification uses
    /// (by default the host's bundle, or the fail-closed fallback).
    pub async fn start_trusting(state: &ProxyState, ca_pem: &str) -> Haproxy {
        Self::start_with(state, false, Some(ca_pem), |_| {}).await
    }

    /// [`Haproxy::start`] with an HTTPS bind too (`https`: its port and certificate files, a
    /// self-signed default certificate generated in `certs/`).
    pub async fn start_https(state: &ProxyState) -> Haproxy {
        Self::start_with(state, true, None, |_| {}).await
    }

    /// [`Haproxy::start_https`] with `ca_pem` as the backend CA bundle.
    pub async fn start_https_trusting(state: &ProxyState, ca_pem: &str) -> Haproxy {
        Self::start_with(state, true, Some(ca_pem), |_| {}).await
    }

    /// [`Haproxy::start_https`] with `--trusted-proxies` set to `trusted`.
    pub async fn start_https_behind(state: &ProxyState, trusted: Vec<TrustedProxy>) -> Haproxy {
        Self::start_with(state, true, None, |s| s.trusted_proxies = trusted).await
    }

    /// [`Haproxy::start_https`] with `--tls-profile` set to `profile`.
    pub async fn start_https_profile(state: &ProxyState, profile: TlsProfile) -> Haproxy {
        Self::start_with(state, true, None, |s| {
            if let Some(https) = &mut s.https {
                https.tls_profile = profile;
            }
        })
        .await
    }

    /// [`Haproxy::start`] (`with_https`: [`Haproxy::start_https`]) with the render settings
    /// changed by `tweak` before the config is written (more binds, other options).
    pub async fn start_tweaked(
        state: &ProxyState,
        with_https: bool,
        tweak: impl FnOnce(&mut RenderSettings),
    ) -> Haproxy {
        Self::start_with(state, with_https, None, tweak).await
    }

    async fn start_with(
        state: &ProxyState,
        with_https: bool,
        ca_pem: Option<&str>,
        tweak: impl FnOnce(&mut RenderSettings),
    ) -> Haproxy {
        let dir = tempfile::Builder::new()
            .prefix("swarm-lb-")
            .tempdir()
            .expect("temp dir");
        let files = Files::new(dir.path());
        let launch = Launch {
            config: files.config_path(),
            // The template's stats frontend defaults to 127.0.0.1:8405, which another HAProxy
            // (a stack on this host) may hold: a port of its own, like the frontend's.
            env: vec![stats_bind()],
            ..Launch::in_dir(dir.path())
        };
        let http_port = free_port();
        let https = with_https.then(|| {
            let certs = CertFiles::new(dir.path().join("certs"));
            certs.ensure_default(None).expect("default certificate");
            certs
                .write_crt_list(std::iter::empty())
                .expect("write crt-list");
            (free_port(), certs)
        });
        let map = files.map_path();
        let mut settings = RenderSettings {
            template: BASE_TEMPLATE.to_owned(),
            binds: vec![format!("127.0.0.1:{http_port}")],
            admin_socket: launch.admin_socket.clone(),
            hosts_map: MapPath::new(&map.to_string_lossy()).expect("temp dir path fits MapPath"),
            https: https.as_ref().map(|(port, certs)| HttpsSettings {
                binds: vec![format!("127.0.0.1:{port}")],
                crt_list: certs.crt_list_path(),
                internal: dir.path().join("https.sock"),
                tls_profile: Default::default(),
            }),
            trusted_proxies: Vec::new(),
            userlists: Default::default(),
        };
        tweak(&mut settings);
        settings.validate().expect("harness settings");
        files.write(state, &settings).expect("write config");
        let ca = swarm_lb::haproxy::render::backend_ca_path(&settings);
        match ca_pem {
            Some(pem) => std::fs::write(&ca, pem).expect("write backend CA"),
            None => {
                let certs = CertFiles::new(dir.path().join("certs"));
                certs.ensure_default(None).expect("default certificate");
                swarm_lb::haproxy::tls::install_backend_ca(
                    &ca,
                    Path::new(swarm_lb::haproxy::tls::SYSTEM_CA_BUNDLE),
                    &certs,
                )
                .expect("install backend CA");
            }
        }

        let mut process = started(launch, http_port).await;
        if let Some((port, _)) = &https {
            let tls = Listener::Tcp(SocketAddr::from(([127, 0, 0, 1], *port)));
            process
                .wait_accepting(STARTUP, &tls)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        files.save_good().expect("save good files");
        Haproxy {
            process: Some(process),
            dir,
            files,
            settings,
            http_port,
            https,
        }
    }

    /// Stop HAProxy (master and workers, at once) and start a new one on the files as they
    /// are on disk: what a restart of the container does.
    pub async fn restart(&mut self) {
        let old = self.process.take().expect("running");
        let launch = old.launch().clone();
        // Dropping the process kills its group: the new one can bind the same addresses.
        drop(old);
        self.process = Some(started(launch, self.http_port).await);
    }

    fn process(&self) -> &HaproxyProcess {
        self.process.as_ref().expect("running")
    }
    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn admin_socket(&self) -> &Path {
        &self.settings.admin_socket
    }
    pub fn master_socket(&self) -> &Path {
        self.process().master_socket()
    }
    pub fn config_path(&self) -> PathBuf {
        self.files.config_path()
    }
    pub fn map_path(&self) -> PathBuf {
        self.files.map_path()
    }
    /// The map path as HAProxy names it (`map(...)`, `show map`).
    pub fn hosts_map(&self) -> &MapPath {
        &self.settings.hosts_map
    }
    pub fn master(&self) -> Master {
        Master::new(self.master_socket())
    }
    /// HAProxy's stdout and stderr so far (the master's alerts land here).
    pub fn log(&self) -> String {
        self.process().log()
    }
    /// Render `state` into the config dir (what the driver does before a reload).
    pub fn write(&self, state: &ProxyState) {
        self.files
            .write(state, &self.settings)
            .expect("write config");
    }
}

/// Start HAProxy on `launch` and wait until the worker the master lists answers on the admin
/// socket and the HTTP frontend on `http_port` accepts.
async fn started(launch: Launch, http_port: u16) -> HaproxyProcess {
    let launch_admin = launch.admin_socket.clone();
    let mut process = HaproxyProcess::start(launch, STARTUP)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The admin socket accepts before the master has forked the worker that serves it,
    // and from 3.1 the master lists a worker while it is still starting, when a reload
    // is refused ("Another reload is still in progress"): wait until the worker the
    // master lists answers on the admin socket, which it does only once started.
    let master = Master::new(process.master_socket());
    let admin = launch_admin.clone();
    process
        .wait_until(
            STARTUP,
            "the master's worker to answer on the admin socket",
            || async {
                let procs = master.show_proc().await.ok()?;
                let info = AdminClient::new(&admin).info().await.ok()?;
                procs
                    .workers
                    .iter()
                    .any(|w| w.pid == info.pid)
                    .then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The tests send HTTP through the frontend, which may bind after the admin socket.
    let frontend = Listener::Tcp(SocketAddr::from(([127, 0, 0, 1], http_port)));
    process
        .wait_accepting(STARTUP, &frontend)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    process
}

/// The reload count from `show proc` (every reload, failed ones included).
pub async fn reloads(master: &Master) -> u32 {
    master.show_proc().await.expect("show proc").master.reloads
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers 200 with its name as the body, keeps
/// connections alive, and counts requests. Stops on drop.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Self::start_at(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// On a given address: tests stand in for Swarm tasks with 127.0.0.N, all on one port,
    /// as a service's tasks share `com.docker.lb.port`.
    pub async fn start_at(name: &str, at: SocketAddr) -> Backend {
        let listener = TcpListener::bind(at).await.expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let body: Arc<str> = Arc::from(name);
        let count = requests.clone();
        let fail = failing.clone();
        let task = tokio::spawn(async move {
            // Dropped with this task (on abort): every connection task goes with it.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.spawn(serve(stream, body.clone(), count.clone(), fail.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            requests,
            failing,
            task,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// From now on answer every request `500` (`true`) or `200` again (`false`); connections
    /// are still accepted, so a TCP health check passes.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: TcpStream,
    body: Arc<str>,
    count: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        // Request line and headers; health checks connect and close without one.
        let mut content_length = 0usize;
        let mut close = false;
        let mut line = String::new();
        let mut first = true;
        let mut target = String::new();
        loop {
            line.clear();
            match read.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            if first {
                close = line.trim_end().ends_with("HTTP/1.0");
                target = line.split(' ').nth(1).unwrap_or_default().to_owned();
                first = false;
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        let mut discard = vec![0u8; content_length];
        if read.read_exact(&mut discard).await.is_err() {
            return;
        }
        count.fetch_add(1, Ordering::SeqCst);
        // The request target as the task got it (after any path rewrite), in a header.
        let status = if failing.load(Ordering::SeqCst) {
            "500 Internal Server Error"
        } else {
            "200 OK"
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\nx-target: {target}\r\n\
             content-length: {}\r\n{}\r\n{}",
            body.len(),
            if close { "connection: close\r\n" } else { "" },
            body
        );
        if write.write_all(reply.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// `GET /` with `Host: host` to 127.0.0.1:`port`, one connection: (status, body).
/// A test server's read of one request head: the bytes up to and including the blank line,
/// or `None` when the peer closes first (HAProxy's TCP checks connect and close).
pub async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    Some(raw)
}

pub async fn try_http_get(port: u16, host: &str) -> std::io::Result<(u16, String)> {
    let r = try_http_get_with(port, host, "").await?;
    Ok((r.status, r.body))
}

/// A response: status, header block (status line and headers), body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    /// The value of the first `name` header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// [`try_http_get`] with extra header lines (each ending in `\r\n`), the whole response.
pub async fn try_http_get_with(port: u16, host: &str, headers: &str) -> std::io::Result<Response> {
    try_http_get_target(port, host, "/", headers).await
}

/// `GET <target>` (path and query) with `Host: host` and `headers` (each ending in CRLF).
pub async fn try_http_get_target(
    port: u16,
    host: &str,
    target: &str,
    headers: &str,
) -> std::io::Result<Response> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET {target} HTTP/1.1\r\nhost: {host}\r\n{headers}connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse_response(&raw)
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "http get"))?
}

/// [`try_http_get`], panicking on a transport error.
pub async fn http_get(port: u16, host: &str) -> (u16, String) {
    try_http_get(port, host)
        .await
        .unwrap_or_else(|e| panic!("GET http://127.0.0.1:{port}/ (host {host}): {e}"))
}

/// [`try_http_get_target`] without extra headers, panicking on a transport error.
pub async fn http_get_target(port: u16, host: &str, target: &str) -> Response {
    try_http_get_target(port, host, target, "")
        .await
        .unwrap_or_else(|e| panic!("GET http://127.0.0.1:{port}{target} (host {host}): {e}"))
}

/// [`try_http_get_with`], panicking on a transport error.
pub async fn http_get_with(port: u16, host: &str, headers: &str) -> Response {
    try_http_get_with(port, host, headers)
        .await
        .unwrap_or_else(|e| panic!("GET http://127.0.0.1:{port}/ (host {host}): {e}"))
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if !chunked {
        return Ok(Response {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        });
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or_else(|| bad("chunk size"))?;
        let size = usize::from_str_radix(size.trim(), 16).map_err(|_| bad("chunk size"))?;
        if size == 0 {
            return Ok(Response {
                status,
                head: head.to_owned(),
                body: out,
            });
        }
        let chunk = after.get(..size).ok_or_else(|| bad("short chunk"))?;
        out.push_str(chunk);
        rest = after.get(size + 2..).ok_or_else(|| bad("short chunk"))?;
    }
}

// ---- building states ----

pub fn backend_name(name: &str) -> BackendName {
    BackendName::for_service(name).expect("service name")
}

/// A task-mode backend: `addrs` in the first slots (ready), then free slots up to `slots`.
pub fn task_backend(addrs: &[SocketAddr], slots: usize) -> BackendState {
    let mut servers: Vec<Server> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| Server {
            name: ServerName::slot(i + 1),
            addr: *addr,
            admin: Admin::Ready,
        })
        .collect();
    for n in servers.len() + 1..=slots {
        servers.push(Server::free(ServerName::slot(n)));
    }
    BackendState {
        options: Default::default(),
        mode: Mode::Task,
        servers,
    }
}

/// A vip-mode backend: one server `vip` at `addr`.
pub fn vip_backend(addr: SocketAddr) -> BackendState {
    BackendState {
        options: Default::default(),
        mode: Mode::Vip,
        servers: vec![Server {
            name: ServerName::vip(),
            addr,
            admin: Admin::Ready,
        }],
    }
}

/// Add `backend` under `name` and route each of `hosts` to it.
pub fn route(state: &mut ProxyState, name: &str, backend: BackendState, hosts: &[&str]) {
    let name = backend_name(name);
    for host in hosts {
        state.hosts.insert(
            MapKey::host(&Host::parse(host).expect("host")),
            MapValue::backend(&name, 0),
        );
    }
    state.backends.insert(name, std::sync::Arc::new(backend));
}

/// The driver settings the real-HAProxy suites use for `haproxy`: slots in blocks of `block`,
/// runtime commands (no Docker: no container to attach).
pub fn driver_settings(
    haproxy: &Haproxy,
    block: usize,
    add_server: bool,
) -> swarm_lb::reconcile::Settings {
    swarm_lb::reconcile::Settings {
        model: swarm_lb::model::Settings::default(),
        plan: swarm_lb::plan::PlanSettings {
            block,
            add_server,
            hosts_map: haproxy.hosts_map().clone(),
            runtime_backends: Default::default(),
            connect_timeout_rule: false,
        },
        render: haproxy.settings.clone(),
        haproxy_container: None,
        keep_networks: Default::default(),
        reload_timeout: Duration::from_secs(10),
        strategy: swarm_lb::reconcile::Strategy::Runtime,
    }
}

/// A driver for `haproxy` with [`driver_settings`].
pub fn driver(
    haproxy: &Haproxy,
    block: usize,
    add_server: bool,
) -> swarm_lb::reconcile::Reconciler {
    swarm_lb::reconcile::Reconciler::new(
        driver_settings(haproxy, block, add_server),
        AdminClient::new(haproxy.admin_socket()),
        haproxy.master(),
        Files::new(haproxy.config_dir()),
        None,
    )
}

/// The attachable overlay `front` with id `id`, as the driver suites' snapshots hold it.
pub fn front_network(id: &str) -> swarm_lb::model::Network {
    swarm_lb::model::Network {
        id: id.to_owned(),
        name: "front".to_owned(),
        driver: "overlay".to_owned(),
        attachable: true,
        ingress: false,
    }
}
