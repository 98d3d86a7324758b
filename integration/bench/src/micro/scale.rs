//! Plan scale: swarm-lb's pure core (`model::desired` + `plan::plan`) on a synthetic Swarm of
//! 1,000 services x 40 tasks, timed per call, and the memory of this process while it holds
//! the snapshot, the desired state, the proxy state and the plan.
//!
//! Two cases: from an empty [`ProxyState`] (what a start or a reload plans: every backend
//! new) and from a state that already satisfies the snapshot after 10% of the tasks moved
//! (Swarm rescheduled them: old task shut down, new one running at a new IP), which plans
//! runtime commands only.

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use anyhow::{ensure, Context};
use swarm_lb::haproxy::{MapPath, ProxyState};
use swarm_lb::model::{
    self, DesiredTaskState, Network, Service, Settings, Snapshot, Task, TaskAddress, TaskState, Vip,
};
use swarm_lb::plan::{self, PlanSettings};

use super::procfs::thread_cpu_ns;
use crate::{percentile, Report};

pub const SERVICES: usize = 1_000;
pub const TASKS: usize = 40;
/// One task in this many moves in the runtime case.
const MOVE_EVERY: usize = 10;
const NETWORK: &str = "ov1netid000000000000000001";
const GROUP: &str = "plan scale";

/// Targets from the issue.
const PLAN_TARGET_MS: f64 = 20.0;
const RSS_TARGET_MIB: f64 = 40.0;

pub struct Options {
    pub warmup: usize,
    pub runs: usize,
}

pub fn run(report: &mut Report, options: &Options) -> anyhow::Result<()> {
    let settings = Settings::default();
    let plan_settings = plan_settings()?;
    let no_routes = BTreeMap::new();

    // The reload case: nothing in HAProxy yet.
    let snap = snapshot(false);
    let desired = model::desired(&snap, &settings, &no_routes);
    ensure!(
        desired.backends.len() == SERVICES && desired.errors.is_empty(),
        "synthetic snapshot: {} backends, errors {:?}",
        desired.backends.len(),
        desired.errors.first()
    );
    let empty = ProxyState::default();
    let none = BTreeSet::new();
    let full = plan::plan(&empty, &none, &desired, &plan_settings);
    ensure!(full.reload, "a plan from an empty proxy must reload");

    // The runtime case: HAProxy holds what the snapshot asked for; then 10% of tasks move.
    let state = full.target.clone();
    ensure!(
        plan::satisfies(&state, &desired),
        "the reload plan's target does not satisfy the desired state"
    );
    let attached: BTreeSet<_> = desired.networks.clone();
    let moved = snapshot(true);
    let desired_moved = model::desired(&moved, &settings, &no_routes);
    let runtime = plan::plan(&state, &attached, &desired_moved, &plan_settings);
    ensure!(
        !runtime.reload && !runtime.runtime.is_empty(),
        "moving tasks must plan runtime commands only (reload {}, {} commands)",
        runtime.reload,
        runtime.runtime.len()
    );
    let servers: usize = full.target.backends.values().map(|b| b.servers.len()).sum();
    println!(
        "plan scale: {SERVICES} services x {TASKS} tasks; reload plan -> {} backends, {servers} \
         servers; runtime plan ({}% moved) -> {} commands ({})",
        full.target.backends.len(),
        100 / MOVE_EVERY,
        runtime.runtime.len(),
        runtime.summary()
    );

    let time = |f: &dyn Fn()| Timing::of(options, f);
    let desired_reload = time(&|| {
        black_box(model::desired(black_box(&snap), &settings, &no_routes));
    });
    let plan_reload = time(&|| {
        black_box(plan::plan(
            &empty,
            &none,
            black_box(&desired),
            &plan_settings,
        ));
    });
    let desired_runtime = time(&|| {
        black_box(model::desired(black_box(&moved), &settings, &no_routes));
    });
    let plan_runtime = time(&|| {
        black_box(plan::plan(
            &state,
            &attached,
            black_box(&desired_moved),
            &plan_settings,
        ));
    });
    let n = options.runs;
    let size = format!("{SERVICES} x {TASKS}");
    for (case, desired, plan) in [
        ("reload case", desired_reload, plan_reload),
        ("10% moved", desired_runtime, plan_runtime),
    ] {
        report.add(
            GROUP,
            &format!("desired, {size}, {case}: wall, median of {n}"),
            round2(desired.wall_ms),
            "ms",
        );
        report.add(
            GROUP,
            &format!("desired, {size}, {case}: CPU, median of {n}"),
            round2(desired.cpu_ms),
            "ms",
        );
        for (what, value) in [("wall", plan.wall_ms), ("CPU", plan.cpu_ms)] {
            report.add_target(
                GROUP,
                &format!("plan, {size}, {case}: {what}, median of {n}"),
                round2(value),
                "ms",
                &format!("< {PLAN_TARGET_MS}"),
                value < PLAN_TARGET_MS,
            );
        }
    }
    report.add(
        GROUP,
        "runtime commands planned, 10% moved",
        runtime.runtime.len() as f64,
        "commands",
    );

    drop((snap, desired, full, state, moved, desired_moved, runtime));
    footprint(report)
}

/// Where the footprint child writes its figures, one `<field> <MiB>` per line.
pub const FOOTPRINT_FLAG: &str = "--footprint-child";

/// Runs this binary again as a child that builds only what the driver holds in the runtime
/// case (one snapshot, its desired state, the proxy state, the plan) and reports its own RSS:
/// the timing loops above leave freed memory in this process's heap, which would be counted.
fn footprint(report: &mut Report) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let out = std::process::Command::new(&exe)
        .arg(FOOTPRINT_FLAG)
        .output()
        .with_context(|| format!("running {} {FOOTPRINT_FLAG}", exe.display()))?;
    ensure!(
        out.status.success(),
        "footprint child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> anyhow::Result<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .with_context(|| format!("no {name} in the footprint child's output {text:?}"))
    };
    let (start, rss, hwm) = (field("start")?, field("VmRSS")?, field("VmHWM")?);
    report.add(GROUP, "process RSS before building anything", start, "MiB");
    report.add_target(
        GROUP,
        "RSS holding snapshot + desired + state + plan (10% moved)",
        rss,
        "MiB",
        &format!("< {RSS_TARGET_MIB}"),
        rss < RSS_TARGET_MIB,
    );
    report.add_target(
        GROUP,
        "peak RSS (VmHWM) building them",
        hwm,
        "MiB",
        &format!("< {RSS_TARGET_MIB}"),
        hwm < RSS_TARGET_MIB,
    );
    Ok(())
}

/// The child's side of [`footprint`]: what the reconcile loop holds after planning the
/// runtime case. The proxy state is built the way HAProxy came to hold it (the target of the
/// plan from an empty proxy); the structures that made it are dropped first.
pub fn footprint_child() -> anyhow::Result<()> {
    let mib = |field| super::procfs::self_status_mib(field).unwrap_or(f64::NAN);
    println!("start {:.1}", mib("VmRSS"));
    let settings = Settings::default();
    let plan_settings = plan_settings()?;
    let no_routes = BTreeMap::new();
    let state = {
        let snap = snapshot(false);
        let desired = model::desired(&snap, &settings, &no_routes);
        plan::plan(
            &ProxyState::default(),
            &BTreeSet::new(),
            &desired,
            &plan_settings,
        )
        .target
    };
    let snap = snapshot(true);
    let desired = model::desired(&snap, &settings, &no_routes);
    let plan = plan::plan(&state, &desired.networks, &desired, &plan_settings);
    ensure!(!plan.reload, "the runtime case must not reload");
    black_box((&snap, &desired, &state, &plan));
    println!("VmRSS {:.1}", mib("VmRSS"));
    println!("VmHWM {:.1}", mib("VmHWM"));
    Ok(())
}

/// The daemon's defaults: blocks of 42 slots, `add server` available (2.6).
fn plan_settings() -> anyhow::Result<PlanSettings> {
    Ok(PlanSettings {
        block: 42,
        add_server: true,
        hosts_map: MapPath::new("/etc/haproxy/hosts.map").context("map path")?,
        runtime_backends: Default::default(),
        connect_timeout_rule: false,
    })
}

/// Per-call medians of one function.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Wall time: what a caller waits, including time the machine gave to other processes.
    wall_ms: f64,
    /// CPU time of the calling thread: the function's own cost, whatever else runs.
    cpu_ms: f64,
}

impl Timing {
    /// Medians over `options.runs` calls, after `options.warmup` untimed ones.
    fn of(options: &Options, f: &dyn Fn()) -> Timing {
        for _ in 0..options.warmup {
            f();
        }
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..options.runs.max(1) {
            let cpu_before = thread_cpu_ns();
            let started = Instant::now();
            f();
            wall.push(started.elapsed().as_secs_f64() * 1e3);
            if let (Some(before), Some(after)) = (cpu_before, thread_cpu_ns()) {
                cpu.push(after.saturating_sub(before) as f64 / 1e6);
            }
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            percentile(&v, 50.0)
        };
        Timing {
            wall_ms: median(wall),
            cpu_ms: median(cpu),
        }
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// 1,000 routed services (hosts + port labels) on one attachable overlay network, 40 running
/// tasks each at distinct IPs. With `moved`, one task in [`MOVE_EVERY`] of each service was
/// rescheduled: the old task is shut down (Swarm keeps it in the task list) and a new one runs
/// at a new IP.
pub fn snapshot(moved: bool) -> Snapshot {
    let mut services = Vec::with_capacity(SERVICES);
    let mut tasks = Vec::with_capacity(SERVICES * TASKS * 2);
    for s in 0..SERVICES {
        let name = format!("app{s:04}");
        let id = format!("svcid{s:021}");
        services.push(Service {
            id: id.clone(),
            name: name.clone(),
            labels: BTreeMap::from([
                (
                    "com.docker.lb.hosts".to_owned(),
                    format!("{name}.example.com"),
                ),
                ("com.docker.lb.port".to_owned(), "8080".to_owned()),
                ("com.docker.stack.namespace".to_owned(), "bench".to_owned()),
            ]),
            networks: vec![NETWORK.to_owned()],
            vips: vec![Vip {
                network: NETWORK.to_owned(),
                addr: ip(1, s),
            }],
        });
        for t in 0..TASKS {
            let k = s * TASKS + t;
            let task = |suffix: &str, addr, state, desired_state| Task {
                id: format!("task{k:020}{suffix}"),
                service_id: id.clone(),
                slot: Some(t as u64 + 1),
                state,
                desired_state,
                addresses: vec![TaskAddress {
                    network: NETWORK.to_owned(),
                    addr,
                }],
            };
            if moved && t % MOVE_EVERY == 0 {
                tasks.push(task(
                    "",
                    ip(2, k),
                    TaskState::Finished,
                    DesiredTaskState::Shutdown,
                ));
                tasks.push(task(
                    "b",
                    ip(3, k),
                    TaskState::Running,
                    DesiredTaskState::Running,
                ));
            } else {
                tasks.push(task(
                    "",
                    ip(2, k),
                    TaskState::Running,
                    DesiredTaskState::Running,
                ));
            }
        }
    }
    Snapshot {
        services: swarm_lb::model::shared(services),
        tasks: swarm_lb::model::shared(tasks),
        networks: vec![Network {
            id: NETWORK.to_owned(),
            name: "bench-overlay".to_owned(),
            driver: "overlay".to_owned(),
            attachable: true,
            ingress: false,
        }],
    }
}

/// `10.<block>.x.y`, distinct for every `k` below 62,500. Never contacted: planning only.
fn ip(block: u8, k: usize) -> IpAddr {
    let (x, y) = (k / 250, k % 250 + 1);
    IpAddr::V4(Ipv4Addr::new(
        10,
        block,
        u8::try_from(x).unwrap_or(u8::MAX),
        u8::try_from(y).unwrap_or(u8::MAX),
    ))
}
