//! A real master-worker HAProxy for the micro benchmarks: the config rendered by swarm-lb's own
//! [`render::config`] into a fresh temp dir, run by swarm-lb-testkit's [`HaproxyProcess`]
//! (`haproxy -W -db -S <master> -f <cfg>` in its own process group) on a free port. Drop kills
//! the whole group (master, new and old workers), then removes the dir.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use swarm_lb::haproxy::render::{self, Files, RenderSettings, BASE_TEMPLATE};
use swarm_lb::haproxy::{MapPath, Master, ProxyState};
use swarm_lb_testkit::{HaproxyProcess, Launch};

/// How long HAProxy may take to parse a large config and start its first worker (each of the
/// two waits: the admin socket, then the worker).
const STARTUP: Duration = Duration::from_secs(30);

/// Lines of HAProxy's log quoted in an error.
const LOG_TAIL_LINES: usize = 20;

/// A master-worker HAProxy on a rendered config in a temp dir.
pub struct Proxy {
    // Before `_dir`: fields drop in order, so HAProxy is killed before its dir is removed.
    process: HaproxyProcess,
    _dir: tempfile::TempDir,
    settings: RenderSettings,
    pub config_bytes: usize,
    /// The HTTP frontend's port (127.0.0.1).
    pub http_port: u16,
}

impl Proxy {
    /// Render `state`, write it with [`Files`], start HAProxy and wait until its admin socket
    /// answers and the master lists a worker.
    pub async fn start(state: &ProxyState) -> anyhow::Result<Proxy> {
        Self::start_with(state, Default::default()).await
    }

    /// [`Proxy::start`] with basic-auth user lists in the config.
    pub async fn start_with(
        state: &ProxyState,
        userlists: swarm_lb::haproxy::auth::Userlists,
    ) -> anyhow::Result<Proxy> {
        let dir = tempfile::Builder::new()
            .prefix("swarm-lb-bench-")
            .tempdir()
            .context("creating a temp dir")?;
        let files = Files::new(dir.path());
        let launch = Launch {
            config: files.config_path(),
            // Stdout carries HAProxy's traffic and server-state log (`log stdout`), tens of
            // thousands of lines per batch here: dropped. Stderr keeps startup alerts.
            discard_stdout: true,
            // The template's stats frontend defaults to 127.0.0.1:8405, which a stack on this
            // host may hold: a free port instead.
            env: vec![(
                "SWARM_LB_STATS_BIND".to_owned(),
                format!("127.0.0.1:{}", swarm_lb_testkit::free_port()),
            )],
            ..Launch::in_dir(dir.path())
        };
        let http_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("binding 127.0.0.1:0 for a free port")?
            .port();
        let map = files.map_path();
        let settings = RenderSettings {
            template: template(state)?,
            binds: vec![format!("127.0.0.1:{http_port}")],
            admin_socket: launch.admin_socket.clone(),
            hosts_map: MapPath::new(&map.to_string_lossy())
                .with_context(|| format!("temp dir {} as a map path", dir.path().display()))?,
            https: None,
            trusted_proxies: Vec::new(),
            userlists,
        };
        settings.validate()?;
        let config = render::config(state, &settings);
        files.write_text(&config, &render::hosts_map(state))?;

        let mut process = HaproxyProcess::start(launch, STARTUP).await?;
        // The admin socket accepts before the master has forked the worker that serves it.
        let master = Master::new(process.master_socket());
        process
            .wait_until(STARTUP, "a worker listed by the master", || async {
                let procs = master.show_proc().await.ok()?;
                (!procs.workers.is_empty()).then_some(())
            })
            .await?;
        Ok(Proxy {
            process,
            _dir: dir,
            settings,
            config_bytes: config.len(),
            http_port,
        })
    }

    pub fn admin_socket(&self) -> &Path {
        &self.settings.admin_socket
    }

    pub fn master(&self) -> Master {
        Master::new(self.process.master_socket())
    }

    /// The master's pid, which is also the process group of every HAProxy process it runs.
    pub fn master_pid(&self) -> u32 {
        self.process.pid()
    }

    /// The last lines HAProxy printed on stderr (for error messages).
    pub fn log_tail(&self) -> String {
        self.process.log_tail(LOG_TAIL_LINES)
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
