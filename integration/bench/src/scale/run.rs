//! One row of `bench-scale`: N services against a swarm-lb binary and a real HAProxy.
//!
//! 1. The fake engine holds N services of M running tasks ([`Engine`]).
//! 2. swarm-lb is run once against a socket nobody serves: it writes its bootstrap config and
//!    exits; HAProxy (swarm-lb-testkit's [`HaproxyProcess`], `$HAPROXY`) starts on it. swarm-lb
//!    is given the counting relay's path as its admin socket ([`admin::relay`]); the template
//!    (the workspace's `haproxy/base.cfg`, or `--template`) puts HAProxy's own socket beside it.
//! 3. Cold start: swarm-lb started -> every running task's address ready in HAProxy and every
//!    host in the hosts map.
//! 4. K changes in rotation (task up, task down, hosts label edit), one at a time, each timed
//!    from the fake engine's event to what HAProxy holds (`show servers state <backend>` every
//!    2 ms for tasks, `get map` every 2 ms for hosts), then a pause for the settle polls.
//! 5. A quiet window: idle CPU. Then RSS.
//!
//! Nothing here depends on swarm-lb's internals beyond its CLI flags, its bootstrap config, and
//! (optional figures) its `/metrics` names: any swarm-lb binary can be measured.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use swarm_lb::haproxy::Master;
use swarm_lb::model::BackendName;
use swarm_lb_testkit::{HaproxyProcess, Launch};

use super::admin;
use super::engine::Engine;
use super::metrics::{self, Scrape};
use crate::micro::procfs;
use crate::swarm::now_ns;
use crate::swarm::servers::ServerWatch;

/// How often a long cold start says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Options {
    pub swarm_lb: PathBuf,
    /// The template to derive swarm-lb's from (its `stats socket` line is redirected).
    pub template: PathBuf,
    pub tasks: usize,
    pub changes: usize,
    pub idle: Duration,
    /// Pause after each change is seen applied (the watcher's settle polls run meanwhile).
    pub gap: Duration,
    pub cold_deadline: Duration,
    pub change_deadline: Duration,
    pub extra_args: Vec<String>,
    /// Put the counting relay between swarm-lb and the admin socket (admin bytes measured).
    pub relay: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Row {
    pub services: usize,
    pub servers: usize,
    pub cold_start_s: f64,
    pub up_ms: Vec<f64>,
    pub down_ms: Vec<f64>,
    pub label_ms: Vec<f64>,
    pub pass_p50_ms: Option<f64>,
    pub pass_mean_ms: Option<f64>,
    pub passes_per_change: Option<f64>,
    /// Reloads during the changes, and before them (cold start).
    pub reloads: Option<f64>,
    pub cold_reloads: Option<f64>,
    pub cpu_per_change_ms: f64,
    pub docker_bytes_per_change: f64,
    /// `None` without the relay.
    pub admin_read_per_change: Option<f64>,
    pub admin_written_per_change: Option<f64>,
    pub rss_swarm_lb_mib: f64,
    pub rss_haproxy_mib: f64,
    pub idle_cpu_pct: f64,
    pub haproxy_idle_cpu_pct: f64,
    pub idle_docker_bytes: u64,
    pub notes: Vec<String>,
}

/// swarm-lb as a child process; killed on drop.
struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `http`: the port of `--bind`, the same for the bootstrap run and the measured one (a
/// different one is another config: swarm-lb would reload at its first pass).
fn swarm_lb_command(o: &Options, dir: &Path, docker: &str, listen: &str, http: u16) -> Command {
    let mut cmd = Command::new(&o.swarm_lb);
    // Nothing from the caller's environment may change what is measured.
    for (key, _) in std::env::vars() {
        if key.starts_with("SWARM_LB_") || key == "DOCKER_HOST" {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "info")
        .arg("run")
        .arg(format!("--docker=unix://{docker}"))
        .arg(format!(
            "--admin-socket={}",
            dir.join("admin.sock").display()
        ))
        .arg(format!(
            "--master-socket={}",
            dir.join("master.sock").display()
        ))
        .arg(format!("--config-dir={}", dir.join("etc").display()))
        .arg(format!("--template={}", dir.join("template.cfg").display()))
        .arg(format!("--bind=127.0.0.1:{http}"))
        .arg("--https-bind=")
        .arg(format!("--listen={listen}"))
        .args(&o.extra_args)
        .stdin(Stdio::null());
    cmd
}

/// The template for swarm-lb: with the relay, HAProxy's admin socket moved to
/// `<admin socket>.haproxy`, where the relay forwards to; and `no strict-limits` in `global`.
///
/// HAProxy sizes its file-descriptor limit at about one per checked server, and with
/// `strict-limits` (the default) a worker that cannot raise it that far exits: 1,000 x 42 slots
/// want ~42,000 and this machine's hard `nofile` is 20,000 (not raisable), so any reload of that
/// config failed and swarm-lb retried it every pass (seen). bench-micro does the same.
fn template(source: &Path, relay: bool) -> anyhow::Result<String> {
    let mut text = std::fs::read_to_string(source)
        .with_context(|| format!("reading the template {}", source.display()))?;
    const LINE: &str = "stats socket {{admin_socket}} ";
    if relay {
        if !text.contains(LINE) {
            bail!(
                "{}: no `{LINE}` line to redirect through the counting relay (--no-relay)",
                source.display()
            );
        }
        text = text.replacen(LINE, "stats socket {{admin_socket}}.haproxy ", 1);
    }
    let at = text
        .find("\nglobal\n")
        .with_context(|| format!("{}: no `global` section", source.display()))?;
    text.insert_str(at + "\nglobal\n".len(), "    no strict-limits\n");
    Ok(text)
}

pub async fn run(n: usize, o: &Options) -> anyhow::Result<Row> {
    let dir = tempfile::Builder::new()
        .prefix("swarm-lb-bench-scale-")
        .tempdir_in("/tmp")
        .context("creating a temp dir in /tmp (HAProxy's chroot wrapper sees /tmp)")?;
    let d = dir.path();
    std::fs::create_dir_all(d.join("etc"))?;
    std::fs::write(d.join("template.cfg"), template(&o.template, o.relay)?)?;
    let log = |name: &str| -> anyhow::Result<Stdio> {
        Ok(Stdio::from(std::fs::File::create(d.join(name))?))
    };

    // Bootstrap: swarm-lb writes the empty config, then fails to reach a Docker that is not there.
    let listen = format!("127.0.0.1:{}", swarm_lb_testkit::free_port());
    let http = swarm_lb_testkit::free_port();
    let nobody = d.join("nobody.sock").display().to_string();
    let status = swarm_lb_command(o, d, &nobody, &listen, http)
        .stdout(log("bootstrap.log")?)
        .stderr(log("bootstrap.err")?)
        .status()
        .with_context(|| format!("running {}", o.swarm_lb.display()))?;
    let config = d.join("etc/haproxy.cfg");
    if !config.exists() {
        bail!(
            "swarm-lb ({status}) wrote no bootstrap config; its stderr:\n{}",
            std::fs::read_to_string(d.join("bootstrap.err")).unwrap_or_default()
        );
    }

    let engine = Engine::start(&d.join("docker.sock"), n, o.tasks)?;
    let (haproxy_socket, counts) = if o.relay {
        let real = d.join("admin.sock.haproxy");
        let counts = admin::relay(&d.join("admin.sock"), real.clone())?;
        (real, Some(counts))
    } else {
        (d.join("admin.sock"), None)
    };
    let relayed = |f: fn(&admin::Counts) -> &std::sync::atomic::AtomicU64| {
        counts
            .as_ref()
            .map(|c| f(c).load(std::sync::atomic::Ordering::Relaxed))
    };
    let launch = Launch {
        config,
        master_socket: d.join("master.sock"),
        admin_socket: haproxy_socket.clone(),
        log: d.join("haproxy.log"),
        // HAProxy logs a line per server state change (every failed health check) to stdout.
        discard_stdout: true,
        env: Vec::new(),
    };
    let mut haproxy = HaproxyProcess::start(launch, Duration::from_secs(30)).await?;
    let master = Master::new(haproxy.master_socket());
    haproxy
        .wait_until(
            Duration::from_secs(30),
            "a worker listed by the master",
            || async {
                let procs = master.show_proc().await.ok()?;
                (!procs.workers.is_empty()).then_some(())
            },
        )
        .await?;

    // Cold start.
    let started = Instant::now();
    let docker = d.join("docker.sock").display().to_string();
    let child = swarm_lb_command(o, d, &docker, &listen, http)
        .stdout(log("swarm-lb.log")?)
        .stderr(log("swarm-lb.err")?)
        .spawn()
        .with_context(|| format!("starting {}", o.swarm_lb.display()))?;
    let mut daemon = Daemon { child };
    let pid = daemon.child.id();
    let map = d.join("etc/hosts.map");
    let want_hosts: BTreeSet<String> = (0..n).map(|i| format!("s{i}.example/")).collect();
    let want_addrs: BTreeSet<IpAddr> = engine
        .running()
        .into_iter()
        .map(|(_, a)| IpAddr::V4(a))
        .collect();
    let deadline = started + o.cold_deadline;
    let mut last_progress = Instant::now();
    loop {
        if let Some(status) = daemon.child.try_wait()? {
            bail!(
                "swarm-lb exited ({status}) during the cold start; the end of its log:\n{}",
                swarm_lb_log(d)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "N={n}: not all routed {:?} after swarm-lb started (--cold-deadline); the end of its log:\n{}",
                o.cold_deadline,
                swarm_lb_log(d)
            );
        }
        let keys: std::collections::HashSet<String> = admin::map_keys(&haproxy_socket, &map)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect();
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            let hosts = want_hosts.iter().filter(|h| keys.contains(*h)).count();
            println!(
                "N={n}: cold start: {hosts} of {n} hosts in the map after {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
        if want_hosts.iter().all(|h| keys.contains(h)) {
            let ready = admin::ready_servers(&haproxy_socket)
                .await
                .unwrap_or_default();
            let ready: BTreeSet<IpAddr> = ready.into_iter().map(|(_, a)| a).collect();
            if want_addrs.is_subset(&ready) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut row = Row {
        services: n,
        cold_start_s: started.elapsed().as_secs_f64(),
        ..Row::default()
    };
    row.servers = admin::ask(
        &haproxy_socket,
        "show servers state",
        Duration::from_secs(60),
    )
    .await
    .map(|r| {
        r.lines()
            .filter(|l| !l.starts_with('#'))
            .count()
            .saturating_sub(1)
    })
    .unwrap_or(0);
    println!(
        "N={n}: cold start {:.2} s, {} servers in HAProxy",
        row.cold_start_s, row.servers
    );
    // Let the start-up's settle polls and file writes end before the changes are measured.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Changes.
    let metrics_url = listen.clone();
    let before = metrics::scrape(&metrics_url).await.ok();
    let cpu0 = cpu_ticks(pid);
    let docker0 = engine.bytes_sent();
    let read0 = relayed(|c| &c.read);
    let written0 = relayed(|c| &c.written);
    let t0 = Instant::now();
    for j in 0..o.changes {
        let i = (j * 37 + j / 3) % n;
        let what = ["task up", "task down", "label edit"][j % 3];
        let ms = match j % 3 {
            0 | 1 => {
                let name = engine.service_name(i);
                let backend = BackendName::for_service(&name)
                    .map_err(|e| anyhow::anyhow!("service name {name}: {e}"))?;
                let watch =
                    ServerWatch::start(haproxy_socket.clone(), backend, Duration::from_millis(2));
                wait_for(o.change_deadline, "the first poll of the backend", || {
                    (watch.polls() >= 2).then_some(())
                })
                .await?;
                let change = if j % 3 == 0 {
                    engine.task_up(i).await
                } else {
                    match engine.task_down(i).await {
                        Some(c) => c,
                        None => continue,
                    }
                };
                let addr = IpAddr::V4(change.addr.context("a task change has an address")?);
                let ready = j % 3 == 0;
                let seen = wait_for(
                    o.change_deadline,
                    &format!("{what} of {} ({addr}) in HAProxy", change.service),
                    || watch.first(addr, ready, 0),
                )
                .await?;
                (seen.at_ns - change.origin_ns) as f64 / 1e6
            }
            _ => {
                let change = engine.edit_hosts(i, j).await;
                let key = format!("{}/", change.host.as_deref().unwrap_or_default());
                let until = Instant::now() + o.change_deadline;
                loop {
                    if admin::map_has(&haproxy_socket, &map, &key).await? {
                        break (now_ns() - change.origin_ns) as f64 / 1e6;
                    }
                    if Instant::now() > until {
                        bail!(
                            "label edit of {}: {key} not in the hosts map after {:?}",
                            change.service,
                            o.change_deadline
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        };
        match j % 3 {
            0 => row.up_ms.push(ms),
            1 => row.down_ms.push(ms),
            _ => row.label_ms.push(ms),
        }
        println!("N={n}: change {:>2} {what:<10} s{i}: {ms:.1} ms", j + 1);
        tokio::time::sleep(o.gap).await;
    }
    let k = o.changes.max(1) as f64;
    let window = t0.elapsed();
    row.cpu_per_change_ms = cpu_ticks(pid).saturating_sub(cpu0) as f64 * tick_ms() / k;
    row.docker_bytes_per_change = engine.bytes_sent().saturating_sub(docker0) as f64 / k;
    let per_change =
        |now: Option<u64>, then: Option<u64>| Some(now?.saturating_sub(then?) as f64 / k);
    row.admin_read_per_change = per_change(relayed(|c| &c.read), read0);
    row.admin_written_per_change = per_change(relayed(|c| &c.written), written0);
    let after = metrics::scrape(&metrics_url).await.ok();
    row.cold_reloads = before
        .as_ref()
        .filter(|b| b.has(RELOADS))
        .map(|b| b.sum(RELOADS));
    if let (Some(a), Some(b)) = (&before, &after) {
        pass_figures(&mut row, a, b, k);
    } else {
        row.notes
            .push("swarm-lb's /metrics not read: pass figures missing".into());
    }
    row.notes.push(format!(
        "changes took {:.1} s with a {:?} pause after each",
        window.as_secs_f64(),
        o.gap
    ));

    // Idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let worker = haproxy_worker(&haproxy);
    let (cpu0, hcpu0, docker0) = (
        cpu_ticks(pid),
        worker.map(cpu_ticks).unwrap_or(0),
        engine.bytes_sent(),
    );
    let idle_start = Instant::now();
    tokio::time::sleep(o.idle).await;
    let secs = idle_start.elapsed().as_secs_f64();
    row.idle_cpu_pct = cpu_ticks(pid).saturating_sub(cpu0) as f64 * tick_ms() / 10.0 / secs;
    row.haproxy_idle_cpu_pct =
        worker.map(cpu_ticks).unwrap_or(0).saturating_sub(hcpu0) as f64 * tick_ms() / 10.0 / secs;
    row.idle_docker_bytes = engine.bytes_sent().saturating_sub(docker0);
    row.rss_swarm_lb_mib = procfs::status_mib(pid, "VmRSS").unwrap_or(f64::NAN);
    row.rss_haproxy_mib = worker
        .and_then(|w| procfs::status_mib(w, "VmRSS"))
        .unwrap_or(f64::NAN);
    let unknown = engine.unknown();
    if !unknown.is_empty() {
        row.notes.push(format!(
            "Docker API calls the fake does not serve (answered 404): {unknown:?}"
        ));
    }
    row.notes
        .push(format!("Docker API requests: {:?}", engine.requests()));
    // Issue 22: what the periodic full read found other than the incremental passes knew
    // (should be 0); a full read comes at least every 2 x --resync (60 s), so a run shorter
    // than that may hold none.
    if let Ok(end) = metrics::scrape(&metrics_url).await {
        if end.has(REPAIRS) {
            row.notes.push(format!(
                "resync repairs over the whole run ({REPAIRS}): {}",
                end.sum(REPAIRS)
            ));
        }
    }
    if let Some(status) = daemon.child.try_wait()? {
        row.notes
            .push(format!("swarm-lb exited during the run: {status}"));
    }
    drop(daemon);
    drop(haproxy);
    Ok(row)
}

const RELOADS: &str = "swarm_lb_reloads_total";
const REPAIRS: &str = "swarm_lb_resync_repairs_total";

fn pass_figures(row: &mut Row, a: &Scrape, b: &Scrape, k: f64) {
    const PASS: &str = "swarm_lb_pass_duration_seconds";
    let count = b.sum(&format!("{PASS}_count")) - a.sum(&format!("{PASS}_count"));
    let sum = b.sum(&format!("{PASS}_sum")) - a.sum(&format!("{PASS}_sum"));
    if count > 0.0 {
        row.pass_mean_ms = Some(sum / count * 1e3);
        row.passes_per_change = Some(count / k);
        row.pass_p50_ms = metrics::quantile_delta(a, b, PASS, 0.5).map(|s| s * 1e3);
    }
    let reloads = b.sum("swarm_lb_reloads_total") - a.sum("swarm_lb_reloads_total");
    if b.has("swarm_lb_reloads_total") {
        row.reloads = Some(reloads);
    }
}

/// Poll `f` every millisecond until it gives a value or `within` passes.
async fn wait_for<T>(
    within: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let until = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > until {
            bail!("timed out after {within:?} waiting for {what} (--change-deadline)");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The newest HAProxy worker (the master is the group leader).
fn haproxy_worker(h: &HaproxyProcess) -> Option<u32> {
    h.processes().into_iter().filter(|p| *p != h.pid()).max()
}

/// utime + stime of `pid`, all threads, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    // After `)`: state is field 3, so utime (14) and stime (15) are the 12th and 13th here.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// One clock tick in ms (`getconf CLK_TCK`, 100 on Linux).
fn tick_ms() -> f64 {
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    1000.0 / hz
}

/// The end of swarm-lb's log (tracing writes to stdout) and of its stderr.
fn swarm_lb_log(dir: &Path) -> String {
    format!(
        "{}\n{}",
        tail(&dir.join("swarm-lb.log"), 20),
        tail(&dir.join("swarm-lb.err"), 10)
    )
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
