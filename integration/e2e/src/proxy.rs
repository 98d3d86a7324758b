//! A Docker API socket proxy the test controls, put between swarm-lb and the engine's socket:
//! a unix socket in a host directory that the swarm-lb container mounts (see
//! [`DockerProxy::compose_override`]). The test can cut every connection and refuse new ones
//! (the event stream breaks while dockerd stays up), delay every request (a slow API), and
//! filter requests by method and path (refused ones get 403, as an API-filtering proxy
//! in front of the Docker socket would answer). Every request is recorded as
//! `METHOD /path` (API version prefix and query left out).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// Decides whether `METHOD /path` (no version prefix, no query) may pass.
pub type Filter = fn(&str, &str) -> bool;

#[derive(Default)]
struct Ctl {
    cut: AtomicBool,
    delay_ms: AtomicU64,
    filter: Mutex<Option<Filter>>,
    /// `METHOD /path` -> how many times it passed.
    passed: Mutex<BTreeMap<String, u64>>,
    /// `METHOD /path` -> how many times it was refused with 403.
    refused: Mutex<BTreeMap<String, u64>>,
    open: AtomicUsize,
    max_open: AtomicUsize,
    /// Requests being delayed right now (waiting to be forwarded), and the most ever.
    waiting: AtomicUsize,
    max_waiting: AtomicUsize,
    accepted: AtomicU64,
}

pub struct DockerProxy {
    dir: PathBuf,
    ctl: Arc<Ctl>,
    kill: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

/// Where the swarm-lb container sees the proxy's directory.
const MOUNT: &str = "/var/run/docker-proxy";

impl DockerProxy {
    /// Listens on `<dir>/docker.sock` (a fresh directory under /tmp) and forwards to
    /// `upstream` (the engine's socket).
    pub fn start(upstream: &str) -> DockerProxy {
        let dir = std::env::temp_dir().join(crate::unique("slb-dproxy"));
        std::fs::create_dir_all(&dir).expect("proxy dir");
        let listener = UnixListener::bind(dir.join("docker.sock")).expect("bind the proxy socket");
        let ctl = Arc::new(Ctl::default());
        let (kill, _) = watch::channel(0u64);
        let task = tokio::spawn(accept(
            listener,
            upstream.to_owned(),
            ctl.clone(),
            kill.clone(),
        ));
        DockerProxy {
            dir,
            ctl,
            kill,
            task,
        }
    }

    /// A compose override that points swarm-lb's DOCKER_HOST at this proxy.
    pub fn compose_override(&self) -> String {
        format!(
            "version: \"3.8\"\nservices:\n  swarm-lb:\n    environment:\n      DOCKER_HOST: unix://{MOUNT}/docker.sock\n    volumes:\n      - {}:{MOUNT}\n",
            self.dir.display()
        )
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// Cut: close every open connection now and close new ones at once, until [`restore`].
    pub fn cut(&self) {
        self.ctl.cut.store(true, Ordering::SeqCst);
        self.kill.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.ctl.cut.store(false, Ordering::SeqCst);
    }

    /// Hold every request this long before forwarding it (0: none).
    pub fn set_delay(&self, d: Duration) {
        self.ctl
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_filter(&self, f: Filter) {
        *self.ctl.filter.lock().unwrap() = Some(f);
    }

    pub fn passed(&self) -> BTreeMap<String, u64> {
        self.ctl.passed.lock().unwrap().clone()
    }
    pub fn refused(&self) -> BTreeMap<String, u64> {
        self.ctl.refused.lock().unwrap().clone()
    }
    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.ctl.accepted.load(Ordering::SeqCst)
    }
    /// Connections open now, and the most open at once since the last [`reset_peaks`].
    pub fn open(&self) -> (usize, usize) {
        (
            self.ctl.open.load(Ordering::SeqCst),
            self.ctl.max_open.load(Ordering::SeqCst),
        )
    }
    /// The most requests ever waiting in the delay at once since the last [`reset_peaks`].
    pub fn max_waiting(&self) -> usize {
        self.ctl.max_waiting.load(Ordering::SeqCst)
    }
    pub fn reset_peaks(&self) {
        self.ctl
            .max_open
            .store(self.ctl.open.load(Ordering::SeqCst), Ordering::SeqCst);
        self.ctl
            .max_waiting
            .store(self.ctl.waiting.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.kill.send_modify(|g| *g += 1);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn accept(listener: UnixListener, upstream: String, ctl: Arc<Ctl>, kill: watch::Sender<u64>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if ctl.cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        ctl.accepted.fetch_add(1, Ordering::SeqCst);
        let (ctl, upstream, kill) = (ctl.clone(), upstream.clone(), kill.subscribe());
        tokio::spawn(async move {
            let n = ctl.open.fetch_add(1, Ordering::SeqCst) + 1;
            ctl.max_open.fetch_max(n, Ordering::SeqCst);
            serve(client, &upstream, &ctl, kill).await;
            ctl.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn serve(client: UnixStream, upstream: &str, ctl: &Ctl, mut kill: watch::Receiver<u64>) {
    let Ok(up) = UnixStream::connect(upstream).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (ur, uw) = up.into_split();
    let cw = Arc::new(tokio::sync::Mutex::new(cw));
    let back = tokio::spawn(copy_back(ur, cw.clone()));
    tokio::select! {
        () = requests(cr, uw, cw, ctl) => {}
        _ = kill.changed() => {}
    }
    back.abort();
}

async fn copy_back(
    mut ur: tokio::net::unix::OwnedReadHalf,
    cw: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match ur.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = cw.lock().await.shutdown().await;
                return;
            }
            Ok(n) => {
                if cw.lock().await.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Forwards requests one by one: head, then a Content-Length body; a chunked body (never
/// sent by bollard for the calls swarm-lb makes) makes the rest of the connection a plain copy.
async fn requests(
    mut cr: tokio::net::unix::OwnedReadHalf,
    mut uw: tokio::net::unix::OwnedWriteHalf,
    cw: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    ctl: &Ctl,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // The head.
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match cr.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or("").to_owned();
        let target = words.next().unwrap_or("");
        let path = api_path(target);
        let key = format!("{method} {path}");
        let mut length = 0usize;
        let mut chunked = false;
        for line in head.lines().skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    length = v.trim().parse().unwrap_or(0);
                } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                    chunked = true;
                }
            }
        }
        let filter = *ctl.filter.lock().unwrap();
        if let Some(f) = filter {
            if !f(&method, &path) {
                *ctl.refused.lock().unwrap().entry(key).or_default() += 1;
                let body = br#"{"message":"refused by the API filter of swarm-lb's tests"}"#;
                let reply = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let mut w = cw.lock().await;
                let _ = w.write_all(reply.as_bytes()).await;
                let _ = w.write_all(body).await;
                let _ = w.shutdown().await;
                return;
            }
        }
        *ctl.passed.lock().unwrap().entry(key).or_default() += 1;
        let delay = ctl.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            let n = ctl.waiting.fetch_add(1, Ordering::SeqCst) + 1;
            ctl.max_waiting.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            ctl.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        if chunked {
            if uw.write_all(&buf).await.is_err() {
                return;
            }
            let _ = tokio::io::copy(&mut cr, &mut uw).await;
            return;
        }
        // The body: what is buffered, then the rest.
        while buf.len() < end + length {
            match cr.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        if uw.write_all(&buf[..end + length]).await.is_err() {
            return;
        }
        buf.drain(..end + length);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `/v1.41/networks/abc/connect?x=y` -> `/networks/abc/connect`.
pub fn api_path(target: &str) -> String {
    let path = target.split('?').next().unwrap_or("");
    let rest = path.strip_prefix("/v").and_then(|r| {
        let (v, rest) = r.split_once('/')?;
        v.chars()
            .all(|c| c.is_ascii_digit() || c == '.')
            .then_some(rest)
    });
    match rest {
        Some(r) => format!("/{r}"),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::api_path;

    #[test]
    fn the_version_prefix_and_query_are_left_out_of_the_recorded_path() {
        assert_eq!(
            api_path("/v1.41/networks/abc/connect?x=y"),
            "/networks/abc/connect"
        );
        assert_eq!(api_path("/_ping"), "/_ping");
        assert_eq!(api_path("/version"), "/version");
        assert_eq!(api_path("/events?since=1"), "/events");
    }
}
