//! Requests per second through HAProxy with issue 24's shaping: one route with everything on
//! (two response headers, compression, an HTTP health check), one per feature alone, and one
//! without labels, in the same run and the same HAProxy: rounds alternate between the hosts
//! so that a busy machine weighs on all alike. The task is a tokio server in this process
//! answering a 4 KiB `text/html` page with keep-alive; the clients keep their connections
//! alive and ask for gzip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use swarm_lb::haproxy::{Admin, BackendState, ProxyState, Server};
use swarm_lb::model::shaping::{map_entries, Direction, Shaping};
use swarm_lb::model::{
    BackendName, BackendOptions, HealthCheck, Host, MapKey, MapValue, Mode, ServerName,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::proxy::Proxy;
use crate::Report;

/// Rounds, concurrency and round length.
pub struct Options {
    pub rounds: usize,
    pub connections: usize,
    pub round: Duration,
}

/// The routes, each to the same task: (service and host label, what it turns on).
const ROUTES: [(&str, &str); 6] = [
    ("plain", "no label"),
    ("headers", "2 response headers"),
    ("lua", "2 response headers, other names (Lua)"),
    ("gzip", "compress=true (gzip)"),
    ("check", "health_path (HTTP check every 2 s)"),
    ("shaped", "headers + gzip + HTTP health check"),
];
/// Read buffer of the clients, in bytes.
const BUF: usize = 16 * 1024;

/// The page the task answers: 4 KiB of repeated HTML.
fn page() -> String {
    "<p>swarm-lb shapes a route: headers, compression, health checks.</p>\n".repeat(60)
}

/// The host of route `name`.
fn host(name: &str) -> String {
    format!("{name}.test")
}

/// The [`ROUTES`] to one task at `task`: `plain` without labels, `headers` with
/// `response_header.X-Frame-Options` and `Content-Security-Policy`, `lua` with two headers of
/// names without a fixed rule (`X-Custom-Frame`, `X-Custom-Policy`: the Lua action), `gzip` with
/// `compress=true`, `check` with `health_path=/healthz` (every 2 s), `shaped` with all.
pub fn state(task: SocketAddr) -> anyhow::Result<ProxyState> {
    let mut state = ProxyState::default();
    let mut shapings = Vec::new();
    for (service, _) in ROUTES {
        let headers = matches!(service, "headers" | "shaped");
        let gzip = matches!(service, "gzip" | "shaped");
        let check = matches!(service, "check" | "shaped");
        let options = BackendOptions {
            compress: gzip,
            health_check: check.then_some(HealthCheck { interval_ms: 2_000 }),
            ..BackendOptions::default()
        };
        let mut shaping = Shaping {
            health_path: check.then(|| "/healthz".to_owned()),
            ..Shaping::default()
        };
        if service == "lua" {
            // Names without a fixed rule: the Lua action sets them.
            shaping.custom.insert(
                (Direction::Response, "x-custom-frame".to_owned()),
                Some("DENY".to_owned()),
            );
            shaping.custom.insert(
                (Direction::Response, "x-custom-policy".to_owned()),
                Some("default-src 'self'".to_owned()),
            );
        }
        if headers {
            shaping.headers.insert(
                (Direction::Response, "x-frame-options"),
                Some("DENY".to_owned()),
            );
            shaping.headers.insert(
                (Direction::Response, "content-security-policy"),
                Some("default-src 'self'".to_owned()),
            );
        }
        let name = BackendName::for_service(service).context("backend name")?;
        let host = host(service);
        let host = Host::parse(&host).map_err(|e| anyhow::anyhow!("host {host}: {e:?}"))?;
        state
            .hosts
            .insert(MapKey::host(&host), MapValue::backend(&name, 0));
        state.backends.insert(
            name,
            Arc::new(BackendState {
                options,
                mode: Mode::Task,
                servers: vec![Server {
                    name: ServerName::slot(1),
                    addr: task,
                    admin: Admin::Ready,
                }],
            }),
        );
        shapings.push((service, shaping));
    }
    let entries: BTreeMap<MapKey, MapValue> = map_entries(
        shapings
            .iter()
            .map(|(service, shaping)| (*service, shaping)),
    );
    state.hosts.extend(entries);
    Ok(state)
}

/// The stand-in task: HTTP/1.1 keep-alive, every request answered with [`page`].
pub async fn task() -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let body: Arc<str> = Arc::from(page());
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                let mut line = String::new();
                loop {
                    // Headers up to the blank line; requests carry no body here.
                    loop {
                        line.clear();
                        match read.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                         content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((addr, handle))
}

/// One response read off a keep-alive connection: its head, then a `content-length` body or
/// a chunked one (what HAProxy sends when it compresses). The decoded size is not needed.
async fn read_response(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> anyhow::Result<u16> {
    let mut line = String::new();
    read.read_line(&mut line).await?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("status line {line:?}"))?;
    let (mut length, mut chunked) = (0usize, false);
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            bail!("closed in the head");
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse()?;
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut buf = vec![0u8; BUF];
    if !chunked {
        let mut left = length;
        while left > 0 {
            let n = read.read(&mut buf[..left.min(BUF)]).await?;
            if n == 0 {
                bail!("closed in the body");
            }
            left -= n;
        }
        return Ok(status);
    }
    loop {
        line.clear();
        read.read_line(&mut line).await?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .with_context(|| format!("chunk size {line:?}"))?;
        let mut left = size + 2; // the chunk and its CRLF
        while left > 0 {
            let n = read.read(&mut buf[..left.min(BUF)]).await?;
            if n == 0 {
                bail!("closed in a chunk");
            }
            left -= n;
        }
        if size == 0 {
            return Ok(status);
        }
    }
}

/// Requests per second for `host` over `connections` keep-alive connections for `round`.
async fn round(port: u16, host: &str, connections: usize, round: Duration) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let request = format!(
        "GET / HTTP/1.1\r\nhost: {host}\r\naccept-encoding: gzip\r\nuser-agent: bench-micro\r\n\r\n"
    );
    let mut clients = Vec::new();
    for _ in 0..connections {
        let (done, stop, request) = (done.clone(), stop.clone(), request.clone());
        clients.push(tokio::spawn(async move {
            let stream = TcpStream::connect(("127.0.0.1", port)).await?;
            stream.set_nodelay(true)?;
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            while !stop.load(Ordering::Relaxed) {
                write.write_all(request.as_bytes()).await?;
                let status = read_response(&mut read).await?;
                if status != 200 {
                    bail!("status {status}");
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(round).await;
    stop.store(true, Ordering::Relaxed);
    let counted = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for client in clients {
        client.await??;
    }
    Ok(counted as f64 / elapsed)
}

/// Checks that each route is shaped as it says (gzip-encoded, headers set, or not), then
/// alternates rounds over the routes and reports the median of each.
pub async fn run(proxy: &Proxy, report: &mut Report, options: &Options) -> anyhow::Result<()> {
    let port = proxy.http_port;
    for (service, _) in ROUTES {
        let host = host(service);
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let request = format!(
            "GET / HTTP/1.1\r\nhost: {host}\r\naccept-encoding: gzip\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        let head = head.split("\r\n\r\n").next().unwrap_or("");
        let gzip = head.contains("content-encoding: gzip");
        let headers = head.contains("x-frame-options: deny");
        if (service == "lua") != head.contains("x-custom-frame: deny") {
            bail!("{host}: the Lua headers only on route lua, got head:\n{head}");
        }
        let want = (
            matches!(service, "gzip" | "shaped"),
            matches!(service, "headers" | "shaped"),
        );
        if (gzip, headers) != want {
            bail!("{host}: expected (gzip, headers) = {want:?}, got head:\n{head}");
        }
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); ROUTES.len()];
    for _ in 0..options.rounds {
        for (i, (service, _)) in ROUTES.iter().enumerate() {
            rates[i].push(round(port, &host(service), options.connections, options.round).await?);
        }
    }
    let medians: Vec<f64> = rates
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    println!(
        "shaping: {} rounds of {:?} x {} connections, 4 KiB text/html page, clients asking for gzip",
        options.rounds, options.round, options.connections
    );
    for ((_, what), rate) in ROUTES.iter().zip(&medians) {
        println!(
            "  {what:<40} {rate:>8.0} req/s ({:+.1} % against no label)",
            (rate / medians[0] - 1.0) * 100.0
        );
        report.add("shaping", what, *rate, "req/s");
    }
    Ok(())
}
