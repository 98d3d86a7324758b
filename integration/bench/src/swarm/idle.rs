//! Idle cost: swarm-lb's CPU time over a quiet window with many routed services (one replica
//! each, one overlay), read from `/proc/<pid>/stat` (utime + stime, every thread) of the
//! container's process.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use swarm_lb_e2e::docker::Service;

use super::env::{Bench, Net};
use super::events::EventLog;
use super::servers::all_rows;
use super::{docker, now_ns, wait_for};
use swarm_lb::haproxy::codec::admin_from_bits;
use swarm_lb::haproxy::Admin;

#[derive(Debug, Clone)]
pub struct Idle {
    pub services: usize,
    /// Creating them until every backend served its task.
    pub routed_after_s: f64,
    pub window_s: f64,
    pub cpu_s: f64,
    /// Share of one core over the window.
    pub cpu_pct: f64,
    /// Passes that applied something during the window (expected: none).
    pub plans_applied: usize,
    pub rss_kib: u64,
    /// CPU share of one core in each [`SLICE`] of the window, in order.
    pub slices_pct: Vec<f64>,
    /// Docker events (container start/kill/die, service create/update/remove) on this node
    /// during the window, of any service, and of the bench's own. swarm-lb wakes on the
    /// events of every service, so other work on the node shows in its idle CPU.
    pub events: usize,
    pub own_events: usize,
    /// The same routed services, plus an unrouted service on the node scaled 1 <-> 3 every
    /// [`FOREIGN_PERIOD`]: swarm-lb's CPU share (None: not measured) and the events it saw.
    pub foreign_pct: Option<f64>,
    pub foreign_window_s: f64,
    pub foreign_events: usize,
}

/// How often the unrouted service of the second window changes scale.
pub const FOREIGN_PERIOD: Duration = Duration::from_secs(3);

/// The window is also measured in slices of this length: a burst of outside activity shows
/// as one busy slice.
pub const SLICE: Duration = Duration::from_secs(10);

/// Services created at once: the engine on two cores handles a few creations in parallel.
const CREATE_PARALLEL: usize = 5;

/// Routes `services` services, measures a quiet `window`, then (if `foreign` is not zero) a
/// window of that length while an unrouted service churns.
pub async fn run(
    bench: &Bench,
    net: &Net,
    services: usize,
    foreign: Duration,
    window: Duration,
) -> anyhow::Result<Idle> {
    let started = Instant::now();
    let mut guards: Vec<Service> = Vec::with_capacity(services);
    let hosts: Vec<String> = (0..services)
        .map(|i| format!("idle{i}.{}.test", bench.cluster))
        .collect();
    for chunk in hosts.chunks(CREATE_PARALLEL) {
        let mut creating = tokio::task::JoinSet::new();
        for h in chunk {
            let (name, args) = bench.service_command(net, h, 1, &[]);
            // Guard first: a creation that fails half-way is still removed.
            guards.push(Service { name });
            creating.spawn(async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                docker(&args).await.map(drop)
            });
        }
        while let Some(r) = creating.join_next().await {
            r.context("service creation task")??;
        }
    }
    let names: BTreeSet<String> = guards.iter().map(|s| s.name.clone()).collect();
    let admin = bench.stack.admin_socket();
    wait_for(
        Duration::from_secs(240),
        Duration::from_millis(500),
        &format!("{services} backends each serving a task"),
        || async {
            let rows = all_rows(&admin).await.unwrap_or_default();
            let served: BTreeSet<&str> = rows
                .iter()
                .filter(|r| admin_from_bits(r.admin_state) == Admin::Ready)
                .map(|r| r.backend.as_str())
                .filter(|b| names.contains(*b))
                .collect();
            Ok((served.len() == names.len()).then_some(()))
        },
    )
    .await?;
    let routed_after_s = started.elapsed().as_secs_f64();

    // Quiet first: no pass applying anything for a few seconds, and past the watcher's
    // settle polling of the services just created.
    let mut last = (bench.stack.applied_plans(), Instant::now());
    wait_for(
        Duration::from_secs(120),
        Duration::from_millis(500),
        "swarm-lb to go quiet",
        || {
            let now = bench.stack.applied_plans();
            if now != last.0 {
                last = (now, Instant::now());
            }
            let quiet = last.1.elapsed() >= Duration::from_secs(5);
            async move { Ok(quiet.then_some(())) }
        },
    )
    .await?;

    let pid: u32 = docker(&[
        "inspect",
        "-f",
        "{{.State.Pid}}",
        &bench.stack.swarm_lb_container,
    ])
    .await?
    .parse()
    .context("swarm-lb container's pid")?;
    let ticks = clock_ticks().await as f64;
    let plans_before = bench.stack.applied_plans();
    let events = EventLog::start(now_ns())?;
    let t0 = Instant::now();
    let cpu0 = cpu_ticks(pid)?;
    let mut slices_pct = Vec::new();
    let (mut last_cpu, mut last_t) = (cpu0, t0);
    while t0.elapsed() < window {
        let left = window.saturating_sub(t0.elapsed());
        tokio::time::sleep(left.min(SLICE)).await;
        let (cpu, t) = (cpu_ticks(pid)?, Instant::now());
        let secs = t.duration_since(last_t).as_secs_f64();
        slices_pct.push(100.0 * cpu.saturating_sub(last_cpu) as f64 / ticks / secs);
        (last_cpu, last_t) = (cpu, t);
    }
    let cpu1 = last_cpu;
    let window_s = t0.elapsed().as_secs_f64();
    let cpu_s = cpu1.saturating_sub(cpu0) as f64 / ticks;
    let t0_ns = now_ns() - i64::try_from(t0.elapsed().as_nanos()).unwrap_or(i64::MAX);
    let t1_ns = now_ns();
    let in_window = |e: &super::events::Event| e.time_ns >= t0_ns && e.time_ns <= t1_ns;
    // Counted now: the log goes on recording during the next window.
    let window_events = events.count(in_window);
    let own_events = events.count(|e| in_window(e) && names.contains(&e.service));
    drop(events);
    let (foreign_pct, foreign_window_s, foreign_events) = if foreign.is_zero() {
        (None, 0.0, 0)
    } else {
        let (pct, secs, n) = foreign_churn(bench, pid, ticks, foreign).await?;
        (Some(pct), secs, n)
    };
    let idle = Idle {
        services,
        routed_after_s,
        window_s,
        cpu_s,
        cpu_pct: 100.0 * cpu_s / window_s,
        plans_applied: bench.stack.applied_plans().saturating_sub(plans_before),
        rss_kib: rss_kib(pid).unwrap_or(0),
        slices_pct,
        events: window_events,
        own_events,
        foreign_pct,
        foreign_window_s,
        foreign_events,
    };
    drop(guards);
    Ok(idle)
}

/// swarm-lb's CPU share over `window` while an unrouted service is scaled 1 <-> 3 every
/// [`FOREIGN_PERIOD`]; the window's length and the Docker events of that service.
async fn foreign_churn(
    bench: &Bench,
    pid: u32,
    ticks: f64,
    window: Duration,
) -> anyhow::Result<(f64, f64, usize)> {
    let other = bench.unrouted_service(1).await?;
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        "the unrouted service's task to run",
        || async {
            let tasks = super::tasks::desired_running(&other.name, "-").await?;
            Ok((tasks.values().filter(|t| t.state == "running").count() == 1).then_some(()))
        },
    )
    .await?;
    let events = EventLog::start(now_ns())?;
    let t0 = Instant::now();
    let cpu0 = cpu_ticks(pid)?;
    let mut replicas = 1;
    while t0.elapsed() < window {
        replicas = if replicas == 1 { 3 } else { 1 };
        docker(&[
            "service",
            "scale",
            "--detach",
            &format!("{}={replicas}", other.name),
        ])
        .await?;
        // The workload's own pace, not a wait for state.
        tokio::time::sleep(FOREIGN_PERIOD.min(window.saturating_sub(t0.elapsed()))).await;
    }
    let cpu1 = cpu_ticks(pid)?;
    let secs = t0.elapsed().as_secs_f64();
    let pct = 100.0 * cpu1.saturating_sub(cpu0) as f64 / ticks / secs;
    let n = events.count(|e| e.service == other.name);
    Ok((pct, secs, n))
}

/// utime + stime of the whole process (all threads), in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("parsing /proc/{pid}/stat: {stat:?}"))
}

/// Fields 14 and 15 (utime, stime) of `/proc/<pid>/stat`; the command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after its closing one.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 (state) is f[0], so field n is f[n - 3].
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `getconf CLK_TCK` (100 on Linux unless the kernel says otherwise).
async fn clock_ticks() -> u64 {
    tokio::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .await
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_spaces_in_the_name() {
        let stat = "4242 (swarm lb) S 4200 4242 4242 0 -1 4194560 1219 0 0 0 37 12 0 0 20 0 9 0 1337 123 456";
        assert_eq!(parse_cpu_ticks(stat), Some(49));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1 2"), None);
    }
}
