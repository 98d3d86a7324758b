//! What the access rules cost (issue 23): requests per second through one real HAProxy to
//! four services that share one task (a tokio responder answering `200` on keep-alive
//! connections), each with a different policy:
//!
//! - `open`: no policy (the map lookups of steps 6, 7 and 7b find nothing);
//! - `lists`: an allow list and a deny list (`ip_allow=127.0.0.0/8`, `ip_deny=10.0.0.0/8`)
//!   and a rate limit too high to refuse anything (`1000000/s`): the two map lookups, the
//!   stick-table tracking and counting on every request;
//! - `sha512`: the same plus basic auth against a sha-512-crypt hash (5,000 rounds, `openssl
//!   passwd -6`);
//! - `bcrypt`: the same plus basic auth against a bcrypt hash of cost 5 (`htpasswd -B -C 5`);
//! - `forward`: `lists` plus forward auth (`com.docker.lb.auth_forward`) to an auth service in
//!   the benchmark (a tokio responder answering `200` with `X-Auth-User` at once), the header
//!   copied onto the request: the Lua action and one HTTP exchange with the auth service per
//!   request.
//!
//! The four are measured in turn, round after round, in the same run (same HAProxy, same
//! machine load), and each policy's rate is given as a ratio to `open`'s of the same rounds.
//! Every answer must be `200`: a refusal fails the run (the rules must let the client in).

use std::net::SocketAddr;
use std::process::Command as Process;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use swarm_lb::haproxy::auth::Userlists;
use swarm_lb::haproxy::{Admin, BackendState, ProxyState, Server};
use swarm_lb::model::access::{
    map_entries, parse_cidr_list, AccessPolicy, AuthBasic, ForwardAuth, Per, RateLimit,
};
use swarm_lb::model::{htpasswd, BackendName, Host, MapKey, MapValue, Mode, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::proxy::Proxy;
use crate::Report;

const GROUP: &str = "access";

/// How the benchmark runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rounds (each measures every policy once).
    pub rounds: usize,
    /// Length of one measurement.
    pub each: Duration,
    /// Keep-alive connections asking at once.
    pub connections: usize,
}

/// The policies measured, in order: (service, with basic auth against which user list).
/// `forward` asks the auth service instead ([`auth_service`]).
const POLICIES: [(&str, Option<&str>); 5] = [
    ("open", None),
    ("lists", None),
    ("sha512", Some("sha512")),
    ("bcrypt", Some("bcrypt")),
    ("forward", None),
];

/// The user of both lists; its password.
const USER: &str = "bench";
const PASSWORD: &str = "bench-password";

/// A task answering `200` with a 2-byte body to every request, keeping connections open.
async fn responder() -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await
}

/// The auth service of `forward`: `200` with `X-Auth-User` to every request, at once.
async fn auth_service() -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    answering(b"HTTP/1.1 200 OK\r\nx-auth-user: bench\r\ncontent-length: 0\r\n\r\n").await
}

/// A server answering `reply` to every request head, keeping connections open.
async fn answering(
    reply: &'static [u8],
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut have = 0usize;
                loop {
                    match stream.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    // Requests carry no body: answer each complete head.
                    while let Some(end) = find_head_end(&buf[..have]) {
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                        buf.copy_within(end..have, 0);
                        have -= end;
                    }
                    if have == buf.len() {
                        return;
                    }
                }
            });
        }
    });
    Ok((addr, task))
}

/// The end of the first `\r\n\r\n`-terminated head in `buf`.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// One htpasswd line for [`USER`] by a Debian tool.
fn hash_line(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Process::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (apt-get install apache2-utils openssl)"))?;
    if !out.status.success() {
        bail!("{program} {args:?} failed");
    }
    Ok(String::from_utf8(out.stdout)?.trim_end().to_owned())
}

/// The state and user lists: one backend per policy, all on the responder (`auth`: the
/// auth service of `forward`).
fn setup(task: SocketAddr, auth_at: SocketAddr) -> anyhow::Result<(ProxyState, Userlists)> {
    let sha512 = format!(
        "{USER}:{}",
        hash_line("openssl", &["passwd", "-6", PASSWORD])?
    );
    let bcrypt = hash_line("htpasswd", &["-nbB", "-C", "5", USER, PASSWORD])?;
    let lists = Userlists::new(
        [
            ("sha512".to_owned(), htpasswd::parse(&sha512)?),
            ("bcrypt".to_owned(), htpasswd::parse(&bcrypt)?),
        ]
        .into(),
    );
    let mut state = ProxyState::default();
    let mut policies = Vec::new();
    for (service, auth) in POLICIES {
        let name = BackendName::parse(service)?;
        state.hosts.insert(
            MapKey::host(&Host::parse(&format!("{service}.example"))?),
            MapValue::backend(&name, 0),
        );
        state.backends.insert(
            name,
            Arc::new(BackendState {
                options: Default::default(),
                mode: Mode::Task,
                servers: vec![Server {
                    name: ServerName::slot(1),
                    addr: task,
                    admin: Admin::Ready,
                }],
            }),
        );
        if service != "open" {
            policies.push((
                service,
                AccessPolicy {
                    allow: Some(parse_cidr_list("127.0.0.0/8")?),
                    deny: parse_cidr_list("10.0.0.0/8")?,
                    rate: Some(RateLimit {
                        requests: 1_000_000,
                        per: Per::Second,
                        burst: 0,
                    }),
                    auth: auth.map(|secret| AuthBasic {
                        secret: secret.to_owned(),
                        realm: "bench".to_owned(),
                    }),
                    forward: (service == "forward").then(|| ForwardAuth {
                        url: format!("http://{auth_at}/verify"),
                        response_headers: vec!["X-Auth-User".to_owned()],
                    }),
                },
            ));
        }
    }
    state
        .hosts
        .extend(map_entries(policies.iter().map(|(s, p)| (*s, p))));
    Ok((state, lists))
}

/// RFC 4648 base64, for the `Authorization` header.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `connections` keep-alive clients asking `host` for `each`: answers per second. Any answer
/// other than `200` is an error.
async fn measure(port: u16, host: &str, each: Duration, connections: usize) -> anyhow::Result<f64> {
    let request = format!(
        "GET / HTTP/1.1\r\nhost: {host}\r\nauthorization: Basic {}\r\n\r\n",
        base64(format!("{USER}:{PASSWORD}").as_bytes())
    );
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..connections {
        let (request, done, stop) = (request.clone(), done.clone(), stop.clone());
        let host = host.to_owned();
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
            let mut buf = vec![0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                stream.write_all(request.as_bytes()).await?;
                let mut have = 0usize;
                // HAProxy's answers here are small: read until the head and its body.
                loop {
                    let n = stream.read(&mut buf[have..]).await?;
                    if n == 0 {
                        bail!("haproxy closed the connection");
                    }
                    have += n;
                    if let Some(end) = find_head_end(&buf[..have]) {
                        let head = String::from_utf8_lossy(&buf[..end]);
                        if !head.starts_with("HTTP/1.1 200") {
                            bail!("{host}: {}", head.lines().next().unwrap_or(""));
                        }
                        if have >= end + 2 {
                            break;
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    tokio::time::sleep(each).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for client in clients {
        client.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// Runs the benchmark on its own HAProxy and adds its figures to `report`.
pub async fn run(report: &mut Report, options: &Options) -> anyhow::Result<()> {
    let (task, responder) = responder().await?;
    let (auth_at, auth) = auth_service().await?;
    let (state, lists) = setup(task, auth_at)?;
    let proxy = Proxy::start_with(&state, lists).await?;
    let port = proxy.http_port;
    // Warm up: every route once (connections, the first crypt(3) call).
    for (service, _) in POLICIES {
        measure(
            port,
            &format!("{service}.example"),
            Duration::from_millis(200),
            1,
        )
        .await?;
    }
    let mut rates = vec![Vec::new(); POLICIES.len()];
    for _ in 0..options.rounds {
        for (i, (service, _)) in POLICIES.iter().enumerate() {
            let host = format!("{service}.example");
            rates[i].push(measure(port, &host, options.each, options.connections).await?);
        }
    }
    responder.abort();
    auth.abort();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        crate::percentile(&v, 50.0)
    };
    let open = median(&rates[0]);
    for (i, (service, _)) in POLICIES.iter().enumerate() {
        let rate = median(&rates[i]);
        report.add(
            GROUP,
            &format!(
                "{service}: requests per second (median of {} x {:.1} s, {} connections)",
                options.rounds,
                options.each.as_secs_f64(),
                options.connections
            ),
            rate,
            "req/s",
        );
        if i > 0 {
            report.add(GROUP, &format!("{service} / open"), rate / open, "ratio");
        }
    }
    Ok(())
}
