//! A real HAProxy in master-worker mode, the way swarm-lb runs it in production
//! (`haproxy -W -db -S <master.sock> -f <cfg>`), for tests and benchmarks.
//!
//! It runs in a process group of its own: a reload forks a new worker while the old one drains,
//! and killing only the master would leave those workers to exit on their own, holding ports
//! and CPU meanwhile. Drop kills the whole group. Being out of the terminal's group also means
//! a ^C does not reach HAProxy: the caller has to return (and so drop it) to stop it.
//!
//! The same tests run against several HAProxy versions (`$HAPROXY` names the binary, or a
//! wrapper that runs one from another distribution's rootfs): every error names the version
//! `haproxy -v` reported, and a started process prints it on stderr, which the test harness
//! shows with the output of a failed test.

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

use crate::POLL_INTERVAL;

/// Where Debian installs it; a non-root PATH often lacks /usr/sbin.
const DEBIAN_BIN: &str = "/usr/sbin/haproxy";

/// How many lines of HAProxy's log a [`StartError`] carries: its alerts come last.
const ERROR_LOG_LINES: usize = 40;

/// No runnable haproxy binary.
#[derive(Debug)]
pub struct HaproxyNotFound {
    /// The binary that was tried (`haproxy -v` failed or it does not exist).
    pub tried: PathBuf,
}

impl fmt::Display for HaproxyNotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "haproxy not found (tried {}): install HAProxy 2.6 with `apt-get install haproxy`, \
             or point $HAPROXY at a binary",
            self.tried.display()
        )
    }
}

impl std::error::Error for HaproxyNotFound {}

/// The haproxy binary: `$HAPROXY`, else Debian's `/usr/sbin/haproxy`, else `haproxy` on PATH;
/// it must answer `haproxy -v`. Tests may panic with the error: it says how to install one.
pub fn haproxy_bin() -> Result<PathBuf, HaproxyNotFound> {
    haproxy().map(|h| h.path)
}

/// A runnable haproxy binary and the version it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyBin {
    pub path: PathBuf,
    /// From `haproxy -v`'s first line, `HAProxy version <this> <date> ...`: `2.6.12-1+deb12u4`.
    pub version: String,
}

impl fmt::Display for HaproxyBin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HAProxy {} ({})", self.version, self.path.display())
    }
}

/// [`haproxy_bin`] with its version.
pub fn haproxy() -> Result<HaproxyBin, HaproxyNotFound> {
    let path = std::env::var_os("HAPROXY")
        .map(PathBuf::from)
        .or_else(|| {
            let debian = Path::new(DEBIAN_BIN);
            debian.exists().then(|| debian.to_owned())
        })
        .unwrap_or_else(|| PathBuf::from("haproxy"));
    match Command::new(&path).arg("-v").output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let version = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("HAProxy version "))
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("(unknown version)")
                .to_owned();
            Ok(HaproxyBin { path, version })
        }
        _ => Err(HaproxyNotFound { tried: path }),
    }
}

/// Pids of the live (not zombie) processes in process group `pgid`, sorted, read from `/proc`:
/// how a test or benchmark sees old workers leave after a reload, or a group die after Drop.
/// Zombies are left out because a killed worker stays one until its new parent reaps it.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
            state != Some("Z") && pgrp == Some(pgid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The files of one HAProxy: its config, its two sockets and its log.
#[derive(Debug, Clone)]
pub struct Launch {
    pub config: PathBuf,
    /// The master CLI (`-S`): `show proc`, `reload`.
    pub master_socket: PathBuf,
    /// The `stats socket` the config declares; HAProxy counts as started once it accepts a
    /// connection.
    pub admin_socket: PathBuf,
    /// HAProxy's stderr (startup alerts, the master's messages about workers) and, unless
    /// [`Launch::discard_stdout`], its stdout.
    pub log: PathBuf,
    /// Send stdout to /dev/null: a config that logs traffic to stdout writes a line per request
    /// and per server state change, which a benchmark would otherwise pay for on disk.
    pub discard_stdout: bool,
    /// Environment variables for HAProxy, which its config may read (`"${NAME}"`).
    pub env: Vec<(String, String)>,
}

impl Launch {
    /// `haproxy.cfg`, `master.sock`, `admin.sock` and `haproxy.log` in `dir` (the names
    /// swarm-lb's `Files` and the shipped template use), stdout kept in the log.
    pub fn in_dir(dir: &Path) -> Launch {
        Launch {
            config: dir.join("haproxy.cfg"),
            master_socket: dir.join("master.sock"),
            admin_socket: dir.join("admin.sock"),
            log: dir.join("haproxy.log"),
            discard_stdout: false,
            env: Vec::new(),
        }
    }
}

/// Why HAProxy could not be started.
#[derive(Debug)]
pub enum StartError {
    NotFound(HaproxyNotFound),
    Log {
        path: PathBuf,
        source: io::Error,
    },
    Spawn {
        haproxy: HaproxyBin,
        source: io::Error,
    },
    /// `try_wait` on the master failed.
    Wait {
        source: io::Error,
    },
    /// The master exited before `waiting_for` came true (a config it rejects, say).
    Exited {
        haproxy: HaproxyBin,
        status: ExitStatus,
        waiting_for: String,
        /// The end of HAProxy's log.
        log: String,
    },
    /// `waiting_for` did not come true within `within`.
    TimedOut {
        haproxy: HaproxyBin,
        waiting_for: String,
        within: Duration,
        /// The end of HAProxy's log.
        log: String,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NotFound(e) => e.fmt(f),
            StartError::Log { path, source } => {
                write!(f, "creating HAProxy's log {}: {source}", path.display())
            }
            StartError::Spawn { haproxy, source } => write!(f, "spawning {haproxy}: {source}"),
            StartError::Wait { source } => write!(f, "checking on the haproxy master: {source}"),
            StartError::Exited {
                haproxy,
                status,
                waiting_for,
                log,
            } => write!(
                f,
                "{haproxy} exited ({status}) while waiting for {waiting_for}; its log:\n{log}"
            ),
            StartError::TimedOut {
                haproxy,
                waiting_for,
                within,
                log,
            } => write!(
                f,
                "{haproxy}: timed out after {within:?} waiting for {waiting_for}; its log:\n{log}"
            ),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::NotFound(e) => Some(e),
            StartError::Log { source, .. }
            | StartError::Spawn { source, .. }
            | StartError::Wait { source } => Some(source),
            StartError::Exited { .. } | StartError::TimedOut { .. } => None,
        }
    }
}

impl From<HaproxyNotFound> for StartError {
    fn from(e: HaproxyNotFound) -> Self {
        StartError::NotFound(e)
    }
}

/// A socket HAProxy listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::Unix(path) => write!(f, "unix socket {}", path.display()),
            Listener::Tcp(addr) => write!(f, "tcp {addr}"),
        }
    }
}

/// A running master-worker HAProxy in its own process group; Drop kills the group.
#[derive(Debug)]
pub struct HaproxyProcess {
    child: Child,
    launch: Launch,
    haproxy: HaproxyBin,
}

impl HaproxyProcess {
    /// Start `haproxy -W -db -S <master> -f <config>` and wait, at most `within`, until its
    /// admin socket accepts a connection. The config must declare that socket; the files it
    /// names must exist.
    ///
    /// The admin socket accepting is neither a worker serving (up to 3.0 the master binds the
    /// listeners before it forks, so a connection can wait in the backlog meanwhile) nor any
    /// other listener bound: callers that need a worker wait for one with
    /// [`HaproxyProcess::wait_until`], and for the other sockets they use with
    /// [`HaproxyProcess::wait_accepting`].
    pub async fn start(launch: Launch, within: Duration) -> Result<HaproxyProcess, StartError> {
        let haproxy = haproxy()?;
        // Shown with the output of a test that fails: which of the versions it ran against.
        eprintln!("testkit: starting {haproxy}");
        let log = File::create(&launch.log).map_err(|source| StartError::Log {
            path: launch.log.clone(),
            source,
        })?;
        let stdout = if launch.discard_stdout {
            Stdio::null()
        } else {
            let copy = log.try_clone().map_err(|source| StartError::Log {
                path: launch.log.clone(),
                source,
            })?;
            Stdio::from(copy)
        };
        // As docker-compose.yml runs it: the master CLI for its owner only.
        let mut master = launch.master_socket.as_os_str().to_owned();
        master.push(",mode,600");
        let mut command = Command::new(&haproxy.path);
        // The shipped template's stats frontend binds $SWARM_LB_STATS_BIND, 127.0.0.1:8405 by
        // default: on a port of its own, a test HAProxy never holds the one a running product
        // stack publishes.
        if std::env::var_os("SWARM_LB_STATS_BIND").is_none() {
            command.env(
                "SWARM_LB_STATS_BIND",
                format!("127.0.0.1:{}", crate::free_port()),
            );
        }
        let child = command
            .arg("-W")
            .arg("-db")
            .arg("-S")
            .arg(master)
            .arg("-f")
            .arg(&launch.config)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            // Its own group, led by the master: see the module doc.
            .process_group(0)
            .spawn()
            .map_err(|source| StartError::Spawn {
                haproxy: haproxy.clone(),
                source,
            })?;
        let mut process = HaproxyProcess {
            child,
            launch,
            haproxy,
        };
        let admin = Listener::Unix(process.launch.admin_socket.clone());
        process.wait_accepting(within, &admin).await?;
        Ok(process)
    }

    /// Wait, at most `within`, until `listener` accepts a connection. Wait for each socket a
    /// caller is about to use: HAProxy binds its listeners one after the other (from 3.1 in
    /// the worker, after the master is up; a unix socket under a temporary name first), so
    /// one accepting says nothing of another.
    pub async fn wait_accepting(
        &mut self,
        within: Duration,
        listener: &Listener,
    ) -> Result<(), StartError> {
        let what = format!("{listener} to accept a connection");
        self.wait_until(within, &what, || async {
            match listener {
                Listener::Unix(path) => UnixStream::connect(path).await.ok().map(drop),
                Listener::Tcp(addr) => TcpStream::connect(addr).await.ok().map(drop),
            }
        })
        .await
    }

    /// Call `check` until it returns `Some`, at most for `within`, every [`POLL_INTERVAL`];
    /// fails with the end of the log when the master exits first or the time is up.
    pub async fn wait_until<T, F, Fut>(
        &mut self,
        within: Duration,
        what: &str,
        mut check: F,
    ) -> Result<T, StartError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|source| StartError::Wait { source })?
            {
                return Err(StartError::Exited {
                    haproxy: self.haproxy.clone(),
                    status,
                    waiting_for: what.to_owned(),
                    log: self.log_tail(ERROR_LOG_LINES),
                });
            }
            if let Some(v) = check().await {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return Err(StartError::TimedOut {
                    haproxy: self.haproxy.clone(),
                    waiting_for: what.to_owned(),
                    within,
                    log: self.log_tail(ERROR_LOG_LINES),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The master's pid, which is also the process group of every HAProxy process it runs.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The binary it runs and the version that reported.
    pub fn haproxy(&self) -> &HaproxyBin {
        &self.haproxy
    }

    /// The paths it was started with.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    pub fn master_socket(&self) -> &Path {
        &self.launch.master_socket
    }

    pub fn admin_socket(&self) -> &Path {
        &self.launch.admin_socket
    }

    /// The live processes of its group: the master, its worker and old workers still
    /// draining after a reload. See [`group_members`].
    pub fn processes(&self) -> Vec<u32> {
        group_members(self.pid())
    }

    /// Everything HAProxy wrote to its log so far (empty if it cannot be read).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.launch.log).unwrap_or_default()
    }

    /// The last `lines` lines of [`HaproxyProcess::log`], for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for HaproxyProcess {
    fn drop(&mut self) {
        // The group id is the master's pid (process_group(0)). `kill` rather than a syscall:
        // no unsafe, no libc dependency.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Should `kill` be missing, at least the master; then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
