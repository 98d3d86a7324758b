//! What HAProxy serves, as it says: `show servers state <backend>` on the admin socket every
//! ~2 ms, each poll on a NEW connection (a kept session would pin an old worker after a reload,
//! and read its stale state), every change of an address's readiness logged with the time the
//! reply arrived. Ready is HAProxy's own fold of the admin bits
//! ([`swarm_lb::haproxy::codec::admin_from_bits`]).
//!
//! The poller is its own OS thread with blocking I/O, at a raised priority when allowed: on
//! two cores busy starting containers, a task on the async runtime was seen to wait 150 ms for
//! its turn, and every such wait is error in a latency sample.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::time::Instant;
use swarm_lb::haproxy::codec::{self, ServerRow};
use swarm_lb::haproxy::{Admin, Query};
use swarm_lb::model::BackendName;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::now_ns;

/// One change of an address's readiness in the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub at_ns: i64,
    /// The previous successful poll: the change happened between the two.
    pub prev_ns: i64,
    pub ip: IpAddr,
    pub ready: bool,
}

#[derive(Debug, Default)]
struct Log {
    ready: BTreeMap<IpAddr, bool>,
    transitions: Vec<Transition>,
    polls: u64,
    failed: u64,
    last_ok_ns: i64,
    max_gap_ns: i64,
}

/// Polls one backend's servers in the background.
pub struct ServerWatch {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
}

/// How the polling went.
#[derive(Debug, Clone, Copy)]
pub struct WatchStats {
    pub polls: u64,
    pub failed: u64,
    /// Longest time between two successful polls: the resolution of every latency measured.
    pub max_gap_ms: f64,
}

impl ServerWatch {
    pub fn start(admin: PathBuf, backend: BackendName, every: Duration) -> ServerWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Log::default()));
        let line = format!(
            "{}\n",
            codec::encode(&Query::ShowServersState {
                backend: Some(backend)
            })
        );
        let (s, l) = (stop.clone(), log.clone());
        std::thread::spawn(move || poll_loop(&admin, &line, every, &s, &l));
        ServerWatch { stop, log }
    }

    /// Addresses HAProxy serves now (as of the last poll).
    pub fn ready(&self) -> Vec<IpAddr> {
        self.log
            .lock()
            .map(|l| {
                l.ready
                    .iter()
                    .filter(|(_, r)| **r)
                    .map(|(ip, _)| *ip)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn polls(&self) -> u64 {
        self.log.lock().map(|l| l.polls).unwrap_or(0)
    }

    /// When `ip` first became ready (`ready`) or stopped being ready (`!ready`) at or after
    /// `since_ns`.
    pub fn first(&self, ip: IpAddr, ready: bool, since_ns: i64) -> Option<Transition> {
        self.log.lock().ok().and_then(|l| {
            l.transitions
                .iter()
                .find(|t| t.ip == ip && t.ready == ready && t.at_ns >= since_ns)
                .copied()
        })
    }

    pub fn stats(&self) -> WatchStats {
        self.log
            .lock()
            .map(|l| WatchStats {
                polls: l.polls,
                failed: l.failed,
                max_gap_ms: super::ms(l.max_gap_ns),
            })
            .unwrap_or(WatchStats {
                polls: 0,
                failed: 0,
                max_gap_ms: f64::NAN,
            })
    }

    /// Restart the gap measurement (e.g. after a pause that is not a measurement).
    pub fn reset_gaps(&self) {
        if let Ok(mut l) = self.log.lock() {
            l.max_gap_ns = 0;
            l.last_ok_ns = 0;
        }
    }
}

impl Drop for ServerWatch {
    fn drop(&mut self) {
        // The thread sees it within one poll (at most the socket timeout).
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn poll_loop(admin: &Path, line: &str, every: Duration, stop: &AtomicBool, log: &Mutex<Log>) {
    raise_priority();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        next += every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
        let rows = poll_once_blocking(admin, line);
        let at = now_ns();
        let Ok(mut l) = log.lock() else { return };
        l.polls += 1;
        let Ok(rows) = rows else {
            l.failed += 1;
            continue;
        };
        let prev = l.last_ok_ns;
        if prev > 0 {
            l.max_gap_ns = l.max_gap_ns.max(at - prev);
        }
        l.last_ok_ns = at;
        let mut now: BTreeMap<IpAddr, bool> = BTreeMap::new();
        for r in &rows {
            let ready = codec::admin_from_bits(r.admin_state) == Admin::Ready;
            // Two slots never hold one address; if they did, ready wins.
            *now.entry(r.addr).or_default() |= ready;
        }
        let before = std::mem::take(&mut l.ready);
        for (ip, was) in &before {
            if *was && !now.get(ip).copied().unwrap_or(false) {
                l.transitions.push(Transition {
                    at_ns: at,
                    prev_ns: prev,
                    ip: *ip,
                    ready: false,
                });
            }
        }
        for (ip, is) in &now {
            if *is && !before.get(ip).copied().unwrap_or(false) {
                l.transitions.push(Transition {
                    at_ns: at,
                    prev_ns: prev,
                    ip: *ip,
                    ready: true,
                });
            }
        }
        l.ready = now;
    }
}

/// `renice -n -10` of the calling thread (Linux priorities are per thread). Best effort: without
/// the privilege the poller runs at normal priority, and its gaps say so.
fn raise_priority() {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(str::to_owned) else {
        return;
    };
    let _ = std::process::Command::new("renice")
        .args(["-n", "-10", "-p", &tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

fn poll_once_blocking(admin: &Path, line: &str) -> anyhow::Result<Vec<ServerRow>> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(admin)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(line.as_bytes())?;
    let mut buf = Vec::with_capacity(4096);
    s.read_to_end(&mut buf)?;
    Ok(codec::parse_servers_state(&String::from_utf8_lossy(&buf))?)
}

/// One `show servers state` on a fresh connection (non-interactive: HAProxy answers, then
/// closes).
pub async fn poll_once(admin: &Path, line: &str) -> anyhow::Result<Vec<ServerRow>> {
    let exchange = async {
        let mut s = UnixStream::connect(admin).await?;
        s.write_all(line.as_bytes()).await?;
        let mut buf = Vec::with_capacity(4096);
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(2), exchange).await??;
    Ok(codec::parse_servers_state(&String::from_utf8_lossy(&buf))?)
}

/// Every backend's servers, one poll.
pub async fn all_rows(admin: &Path) -> anyhow::Result<Vec<ServerRow>> {
    let line = format!(
        "{}\n",
        codec::encode(&Query::ShowServersState { backend: None })
    );
    poll_once(admin, &line).await
}
