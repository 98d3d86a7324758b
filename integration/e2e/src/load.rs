//! Continuous HTTP load through HAProxy's published port on loopback: a few keep-alive workers
//! at a fixed rate each, counting successes, non-2xx answers and connection errors.
//!
//! Like any HTTP client (RFC 9112 §9.3.1), a GET on a REUSED keep-alive connection that the
//! server closed before sending a single byte is retried once on a new connection; such retries
//! are counted apart (`client_retries`), never hidden in `ok`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub ok: u64,
    /// Non-2xx answers, by status.
    pub bad_status: BTreeMap<u16, u64>,
    /// Connection errors (refused, reset, timeout, EOF mid-answer).
    pub errors: u64,
    pub client_retries: u64,
    /// First few failures, for the test's message.
    pub samples: Vec<String>,
    /// Answers per body's `task=` line: which tasks served.
    pub by_task: BTreeMap<String, u64>,
}

impl Summary {
    pub fn failed(&self) -> u64 {
        self.errors + self.bad_status.values().sum::<u64>()
    }
    pub fn total(&self) -> u64 {
        self.ok + self.failed()
    }
    fn merge(&mut self, o: Summary) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.client_retries += o.client_retries;
        for (k, v) in o.bad_status {
            *self.bad_status.entry(k).or_default() += v;
        }
        for (k, v) in o.by_task {
            *self.by_task.entry(k).or_default() += v;
        }
        for s in o.samples {
            if self.samples.len() < 10 {
                self.samples.push(s);
            }
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests: {} ok, {} failed (errors {}, status {:?}), {} client retries; first failures: {:?}",
            self.total(),
            self.ok,
            self.failed(),
            self.errors,
            self.bad_status,
            self.client_retries,
            self.samples
        )
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    workers: JoinSet<Summary>,
}

impl Load {
    /// `workers` connections, each sending `GET path` with `Host: host` every `every`.
    pub fn start(port: u16, host: &str, path: &str, workers: usize, every: Duration) -> Load {
        Load::start_at(
            SocketAddr::from(([127, 0, 0, 1], port)),
            host,
            path,
            workers,
            every,
        )
    }

    /// [`Load::start`] against any address (an edge node's published port).
    pub fn start_at(
        addr: SocketAddr,
        host: &str,
        path: &str,
        workers: usize,
        every: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        for _ in 0..workers {
            let stop = stop.clone();
            let req =
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: swarm-lb-e2e\r\n\r\n");
            set.spawn(worker(addr, req, every, stop));
        }
        Load { stop, workers: set }
    }

    pub async fn stop(mut self) -> Summary {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Summary::default();
        while let Some(s) = self.workers.join_next().await {
            total.merge(s.expect("load worker"));
        }
        total
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

enum Outcome {
    Answer {
        status: u16,
        body: String,
        close: bool,
        set_cookie: Option<String>,
    },
    /// The server closed a reused connection before any byte of the answer.
    ClosedBeforeAnswer,
}

async fn worker(addr: SocketAddr, req: String, every: Duration, stop: Arc<AtomicBool>) -> Summary {
    let mut s = Summary::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut tick = tokio::time::interval(every);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let mut retried = false;
        loop {
            let reused = conn.is_some();
            let c = match conn.take() {
                Some(c) => c,
                None => match tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await {
                    Ok(Ok(t)) => BufReader::new(t),
                    Ok(Err(e)) => {
                        fail(&mut s, format!("connect: {e}"));
                        break;
                    }
                    Err(_) => {
                        fail(&mut s, "connect: timeout".into());
                        break;
                    }
                },
            };
            match tokio::time::timeout(TIMEOUT, exchange(c, &req)).await {
                Ok(Ok((
                    Outcome::Answer {
                        status,
                        body,
                        close,
                        ..
                    },
                    c,
                ))) => {
                    if (200..300).contains(&status) {
                        s.ok += 1;
                        let task = body
                            .lines()
                            .find_map(|l| l.strip_prefix("task="))
                            .unwrap_or("?")
                            .to_owned();
                        *s.by_task.entry(task).or_default() += 1;
                    } else {
                        *s.bad_status.entry(status).or_default() += 1;
                        if s.samples.len() < 10 {
                            s.samples.push(format!("status {status}: {}", body.trim()));
                        }
                    }
                    if !close {
                        conn = Some(c);
                    }
                    break;
                }
                Ok(Ok((Outcome::ClosedBeforeAnswer, _))) if reused && !retried => {
                    s.client_retries += 1;
                    retried = true;
                    continue;
                }
                Ok(Ok((Outcome::ClosedBeforeAnswer, _))) => {
                    fail(&mut s, "closed before answer".into());
                    break;
                }
                Ok(Err(e)) => {
                    fail(&mut s, format!("exchange: {e}"));
                    break;
                }
                Err(_) => {
                    fail(&mut s, "exchange: timeout".into());
                    break;
                }
            }
        }
    }
    s
}

fn fail(s: &mut Summary, what: String) {
    s.errors += 1;
    if s.samples.len() < 10 {
        s.samples.push(what);
    }
}

async fn exchange(
    mut c: BufReader<TcpStream>,
    req: &str,
) -> std::io::Result<(Outcome, BufReader<TcpStream>)> {
    c.get_mut().write_all(req.as_bytes()).await?;
    let mut line = String::new();
    if c.read_line(&mut line).await? == 0 {
        return Ok((Outcome::ClosedBeforeAnswer, c));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    let mut close = false;
    let mut set_cookie = None;
    loop {
        line.clear();
        if c.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::other("EOF in headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                len = v
                    .parse()
                    .map_err(|_| std::io::Error::other("bad content-length"))?;
            } else if k == "connection" && v.eq_ignore_ascii_case("close") {
                close = true;
            } else if k == "set-cookie" && set_cookie.is_none() {
                set_cookie = Some(v.to_owned());
            }
        }
    }
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).await?;
    Ok((
        Outcome::Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            close,
            set_cookie,
        },
        c,
    ))
}

/// One GET on a new connection: (status, body).
pub async fn get(port: u16, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    let r = get_with(port, host, path, "").await?;
    Ok((r.status, r.body))
}

/// One answer with the header a test may look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// The first `Set-Cookie` header's value.
    pub set_cookie: Option<String>,
}

/// One GET on a new connection, with extra header lines (each ending in `\r\n`).
pub async fn get_with(port: u16, host: &str, path: &str, headers: &str) -> std::io::Result<Reply> {
    get_at(
        SocketAddr::from(([127, 0, 0, 1], port)),
        host,
        path,
        headers,
    )
    .await
}

/// [`get_with`] against any address.
pub async fn get_at(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &str,
) -> std::io::Result<Reply> {
    let t = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timeout"))??;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n");
    match tokio::time::timeout(TIMEOUT, exchange(BufReader::new(t), &req)).await {
        Ok(Ok((
            Outcome::Answer {
                status,
                body,
                set_cookie,
                ..
            },
            _,
        ))) => Ok(Reply {
            status,
            body,
            set_cookie,
        }),
        Ok(Ok((Outcome::ClosedBeforeAnswer, _))) => {
            Err(std::io::Error::other("closed before answer"))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::other("timeout")),
    }
}

/// One HTTPS GET through a real TLS client (curl, a new handshake each), `host` resolved to
/// loopback on `port`: the status code, 0 when it failed. `cacert`: verify the chain against
/// that root (else `-k`).
pub fn https_status(port: u16, host: &str, cacert: Option<&std::path::Path>) -> u16 {
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ]);
    match cacert {
        Some(root) => cmd.arg("--cacert").arg(root),
        None => cmd.arg("-k"),
    };
    cmd.arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd.output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// HTTPS load: `workers` threads, each a loop of fresh curl processes ([`https_status`]: a
/// new TLS handshake per request), until stopped.
pub struct HttpsLoad {
    stop: Arc<AtomicBool>,
    /// Requests answered 200 so far.
    pub ok: Arc<std::sync::atomic::AtomicU64>,
    failed: Arc<std::sync::atomic::AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl HttpsLoad {
    pub fn start(
        port: u16,
        host: &str,
        workers: usize,
        cacert: Option<std::path::PathBuf>,
    ) -> HttpsLoad {
        use std::sync::atomic::AtomicU64;
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let threads = (0..workers)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let (host, cacert) = (host.to_owned(), cacert.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match https_status(port, &host, cacert.as_deref()) {
                            200 => ok.fetch_add(1, Ordering::SeqCst),
                            code => {
                                eprintln!("HTTPS load: {code}");
                                failed.fetch_add(1, Ordering::SeqCst)
                            }
                        };
                    }
                })
            })
            .collect();
        HttpsLoad {
            stop,
            ok,
            failed,
            threads,
        }
    }

    /// Stops the load: (requests, failed).
    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let ok = self.ok.load(Ordering::SeqCst);
        let failed = self.failed.load(Ordering::SeqCst);
        (ok + failed, failed)
    }
}

/// The serial of the certificate served on `port` (loopback) for SNI `host`, as
/// `openssl x509 -noout -serial` prints it (`serial=...`, upper-case hex); empty when the
/// handshake failed.
pub fn served_serial(port: u16, host: &str) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {host} </dev/null 2>/dev/null \
         | openssl x509 -noout -serial"
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
