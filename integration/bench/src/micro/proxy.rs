//! A real master-worker HAProxy for the micro benchmarks: the config rendered by swarm-lb's own
//! [`render::config`] into a fresh temp dir, started as `haproxy -W -db -S <master> -f <cfg>`
//! in its own process group, on a free port. Drop kills the whole group (master, new and old
//! workers) and removes the dir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use swarm_lb::haproxy::render::{self, Files, RenderSettings, BASE_TEMPLATE};
use swarm_lb::haproxy::{MapPath, Master, ProxyState};

/// How long HAProxy may take to parse a large config and start its first worker.
const STARTUP: Duration = Duration::from_secs(30);

/// The haproxy binary: `$HAPROXY`, else Debian's `/usr/sbin/haproxy`, else `haproxy` on PATH.
/// An error saying how to install it when there is none.
pub fn haproxy_bin() -> anyhow::Result<PathBuf> {
    let bin = std::env::var_os("HAPROXY")
        .map(PathBuf::from)
        .or_else(|| {
            let debian = Path::new("/usr/sbin/haproxy");
            debian.exists().then(|| debian.to_owned())
        })
        .unwrap_or_else(|| PathBuf::from("haproxy"));
    match Command::new(&bin).arg("-v").output() {
        Ok(out) if out.status.success() => Ok(bin),
        _ => bail!(
            "haproxy not found (tried {}): install HAProxy 2.6 with `apt-get install haproxy`, \
             or point $HAPROXY at a binary",
            bin.display()
        ),
    }
}

/// A master-worker HAProxy on a rendered config in a temp dir.
pub struct Proxy {
    dir: PathBuf,
    settings: RenderSettings,
    child: Child,
    pub config_bytes: usize,
}

impl Proxy {
    /// Render `state`, write it with [`Files`], start HAProxy and wait until its admin socket
    /// answers and the master lists a worker.
    pub async fn start(state: &ProxyState) -> anyhow::Result<Proxy> {
        let bin = haproxy_bin()?;
        let dir = temp_dir()?;
        let files = Files::new(&dir);
        let http_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("binding 127.0.0.1:0 for a free port")?
            .port();
        let map = files.map_path();
        let settings = RenderSettings {
            template: template(state)?,
            binds: vec![format!("127.0.0.1:{http_port}")],
            admin_socket: dir.join("admin.sock"),
            hosts_map: MapPath::new(&map.to_string_lossy())
                .with_context(|| format!("temp dir {} as a map path", dir.display()))?,
        };
        settings.validate()?;
        let config = render::config(state, &settings);
        files.write_text(&config, &render::hosts_map(state))?;

        // Stdout carries HAProxy's traffic and server-state log (`log stdout`), tens of
        // thousands of lines per batch here: dropped. Stderr keeps startup alerts.
        let log = std::fs::File::create(dir.join("haproxy.log"))?;
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(bin)
                .arg("-W")
                .arg("-db")
                .arg("-S")
                .arg(dir.join("master.sock"))
                .arg("-f")
                .arg(files.config_path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                // Own process group: Drop kills master and every worker, old ones included.
                .process_group(0)
                .spawn()
                .context("spawning haproxy")?
        };
        let mut proxy = Proxy {
            dir,
            settings,
            child,
            config_bytes: config.len(),
        };
        proxy.wait_ready().await?;
        Ok(proxy)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("haproxy exited with {status}:\n{}", self.log_tail());
            }
            let admin_ok = tokio::net::UnixStream::connect(self.admin_socket())
                .await
                .is_ok();
            let worker_ok = match self.master().show_proc().await {
                Ok(procs) => !procs.workers.is_empty(),
                Err(_) => false,
            };
            if admin_ok && worker_ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "haproxy did not come up within {STARTUP:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn admin_socket(&self) -> &Path {
        &self.settings.admin_socket
    }

    pub fn master(&self) -> Master {
        Master::new(self.dir.join("master.sock"))
    }

    /// The master's pid, which is also the process group of every HAProxy process it runs.
    pub fn master_pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines HAProxy printed on stderr (for error messages).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The group id is the master's pid (process_group(0)).
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shipped template, with `no strict-limits` added to `global` when this process may not
/// open as many files as HAProxy wants for `state`.
///
/// HAProxy 2.6 sizes its file-descriptor limit at about one per server with `check` (every
/// rendered server has it) plus its connections, and with `strict-limits` (the default) it
/// refuses to start when it cannot raise the limit that far: 42,000 servers need ~42,240 and
/// some machines cap `nofile` lower (20,000 here, not raisable). Without the strict check it
/// starts with the limit it has; only concurrently open checks and connections need fds.
fn template(state: &ProxyState) -> anyhow::Result<String> {
    let servers: usize = state.backends.values().map(|b| b.servers.len()).sum();
    let wanted = servers as u64 + 1_000;
    match nofile_hard_limit() {
        Some(limit) if limit < wanted => {
            println!(
                "note: nofile hard limit {limit} < ~{wanted} that HAProxy wants for {servers} \
                 checked servers: adding `no strict-limits` to the template's global section"
            );
            let at = BASE_TEMPLATE
                .find("\nglobal\n")
                .context("the shipped template has no `global` line")?;
            let mut template = BASE_TEMPLATE.to_owned();
            template.insert_str(at + "\nglobal\n".len(), "    no strict-limits\n");
            Ok(template)
        }
        _ => Ok(BASE_TEMPLATE.to_owned()),
    }
}

/// The hard `Max open files` of this process (inherited by HAProxy); `None` if unlimited or
/// unreadable.
fn nofile_hard_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// A fresh directory under the system temp dir, unique to this process and moment.
fn temp_dir() -> anyhow::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("swarm-lb-bench-{}-{nanos:08x}", std::process::id()));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
