//! `bench-swarm [--json out.json] [--ops N] [--idle-services N] [--idle-secs S] [--foreign-secs S]
//!              [--strategies runtime,runtime-3.4,reload] [--phases convergence,churn,idle] [--api-trace]`
//!
//! swarm-lb on a real one-node Swarm, three columns in one run, one after the other, each in
//! its own compose stack on the same local images (`bash scripts/images.sh`), under the same
//! operations and load: the runtime strategy on HAProxy 2.6, the runtime strategy on HAProxy
//! 3.4 (`runtime-3.4`: backends created and deleted without a reload), the reload strategy
//! on 2.6:
//! 1. convergence: a service scaled up and down by 1-2 tasks, N times; per task, Docker's
//!    report (task running timestamp, container start / kill event, service update event) to
//!    HAProxy's change seen on the admin socket (polled every 2 ms). p50 / p99 / max.
//! 2. churn under keep-alive load: scaling, a stop-first and a start-first rolling update, a
//!    routed service created and removed. Failed requests, client retries, reloads, HAProxy
//!    processes left, and websockets held open to a service nothing changes: how many the
//!    proxy cut.
//! 3. idle (runtime strategy only): swarm-lb's CPU over a quiet window with 50 routed services,
//!    then over a window (`--foreign-secs`, 0 to skip) where an unrouted service on the same
//!    node is scaled up and down: what another workload on the node costs swarm-lb.
//!
//! `--api-trace` also polls the task API (every 5 ms) during convergence, splitting each
//! latency into Swarm's part (until the API shows the change) and swarm-lb's; it loads the
//! engine, so headline figures come from runs without it. Per-sample details and swarm-lb's
//! log are saved under the temp dir (paths in the notes); `BENCH_SWARM_RUST_LOG` sets
//! swarm-lb's `RUST_LOG`.
//!
//! Prints a Markdown table and writes the same figures as JSON. Everything it creates is
//! removed at the end, on failure and on Ctrl-C; leftovers of a killed run are removed by the
//! next one.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use swarm_lb_bench::swarm::churn::{self, Step};
use swarm_lb_bench::swarm::convergence::{self, Convergence};
use swarm_lb_bench::swarm::env::{cleanup_leftovers, Bench, Strategy};
use swarm_lb_bench::swarm::idle::{self, Idle};
use swarm_lb_bench::swarm::sockets;
use swarm_lb_bench::swarm::Dist;
use swarm_lb_bench::Report;

const USAGE: &str = "usage: bench-swarm [--json out.json] [--ops N] [--idle-services N] [--idle-secs S] [--foreign-secs S] [--strategies runtime,runtime-3.4,reload] [--phases convergence,churn,idle] [--api-trace]";

#[derive(Debug, Clone)]
struct Args {
    json: Option<PathBuf>,
    ops: usize,
    idle_services: usize,
    idle_secs: u64,
    foreign_secs: u64,
    strategies: Vec<Strategy>,
    convergence: bool,
    churn: bool,
    idle: bool,
    api_trace: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        json: None,
        ops: 50,
        idle_services: 50,
        idle_secs: 60,
        foreign_secs: 30,
        strategies: vec![Strategy::Runtime, Strategy::Runtime34, Strategy::Reload],
        convergence: true,
        churn: true,
        idle: true,
        api_trace: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--json" => a.json = Some(PathBuf::from(value()?)),
            "--ops" => a.ops = value()?.parse().map_err(|e| format!("--ops: {e}"))?,
            "--idle-services" => {
                a.idle_services = value()?
                    .parse()
                    .map_err(|e| format!("--idle-services: {e}"))?
            }
            "--idle-secs" => {
                a.idle_secs = value()?.parse().map_err(|e| format!("--idle-secs: {e}"))?
            }
            "--foreign-secs" => {
                a.foreign_secs = value()?
                    .parse()
                    .map_err(|e| format!("--foreign-secs: {e}"))?
            }
            "--strategies" => {
                a.strategies = value()?
                    .split(',')
                    .map(|s| Strategy::parse(s).ok_or(format!("unknown strategy {s:?}")))
                    .collect::<Result<_, _>>()?
            }
            "--phases" => {
                let v = value()?;
                let phases: Vec<&str> = v.split(',').collect();
                if let Some(bad) = phases
                    .iter()
                    .find(|p| !["convergence", "churn", "idle"].contains(p))
                {
                    return Err(format!("unknown phase {bad:?}"));
                }
                a.convergence = phases.contains(&"convergence");
                a.churn = phases.contains(&"churn");
                a.idle = phases.contains(&"idle");
            }
            "--api-trace" => a.api_trace = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("bench-swarm: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    swarm_lb_e2e::docker::require_engine();
    for left in cleanup_leftovers() {
        eprintln!("bench-swarm: removed leftover {left}");
    }
    let mut report = Report::new();
    let outcome = {
        let run = run(&args, &mut report);
        tokio::select! {
            r = run => r,
            r = tokio::signal::ctrl_c() => {
                r.map_err(anyhow::Error::from).and_then(|()| Err(anyhow::anyhow!("interrupted; cleaned up")))
            }
        }
    };
    println!("\n{}", report.table());
    if let Some(path) = &args.json {
        if let Err(e) = report.write_json(path) {
            eprintln!("bench-swarm: writing {}: {e:#}", path.display());
            return ExitCode::FAILURE;
        }
    }
    match outcome {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("bench-swarm: {failed} phase(s) failed; see the notes");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench-swarm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every phase, each bounded in time; a phase that fails is noted and the others still run.
/// Returns how many failed.
async fn run(args: &Args, report: &mut Report) -> anyhow::Result<usize> {
    let mut failed = 0;
    for &strategy in &args.strategies {
        if !(args.convergence || args.churn) {
            break;
        }
        let s = strategy.as_str();
        eprintln!("bench-swarm: [{s}] bringing the stack up");
        let mut bench = Bench::up(strategy).await;
        let net = bench.network().await?;
        if args.convergence {
            eprintln!(
                "bench-swarm: [{s}] convergence over {} scale operations",
                args.ops
            );
            let limit = Duration::from_secs(120 + 8 * args.ops as u64);
            let conv = convergence::run(&bench, &net, args.ops, args.api_trace);
            match bounded(limit, conv).await {
                Ok(c) => {
                    convergence_figures(report, strategy, &c);
                    save_detail(report, strategy, &c);
                }
                Err(e) => {
                    failed += 1;
                    report.note(format!("{s}: convergence failed: {e:#}"));
                }
            }
        }
        if args.churn {
            eprintln!("bench-swarm: [{s}] churn under load");
            match bounded(Duration::from_secs(480), churn::run(&bench, &net)).await {
                Ok(c) => {
                    failed += c.steps.iter().filter(|s| s.error.is_some()).count();
                    churn_figures(report, strategy, &c.steps);
                    socket_figures(report, strategy, &c.sockets);
                }
                Err(e) => {
                    failed += 1;
                    report.note(format!("{s}: churn failed: {e:#}"));
                }
            }
        }
        save_log(report, &bench, "convergence-churn");
        eprintln!("bench-swarm: [{s}] cleaning up");
        drop(bench);
    }
    if args.idle {
        eprintln!(
            "bench-swarm: [runtime] idle CPU with {} routed services",
            args.idle_services
        );
        let mut bench = Bench::up(Strategy::Runtime).await;
        let net = bench.network().await?;
        let window = Duration::from_secs(args.idle_secs);
        let limit = Duration::from_secs(420) + window;
        let foreign = Duration::from_secs(args.foreign_secs);
        let limit = limit + foreign;
        let run = idle::run(&bench, &net, args.idle_services, window, foreign);
        match bounded(limit, run).await {
            Ok(i) => idle_figures(report, &i),
            Err(e) => {
                failed += 1;
                report.note(format!("runtime: idle failed: {e:#}"));
            }
        }
        save_log(report, &bench, "idle");
        eprintln!("bench-swarm: [runtime] cleaning up");
        drop(bench);
    }
    Ok(failed)
}

async fn bounded<T>(
    limit: Duration,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .with_context(|| format!("did not finish within {limit:?}"))?
}

/// swarm-lb's log, kept for digging into a figure.
fn save_log(report: &mut Report, bench: &Bench, phases: &str) {
    let path = std::env::temp_dir().join(format!(
        "bench-swarm-{}-{phases}-{}.log",
        bench.strategy.as_str(),
        std::process::id()
    ));
    match std::fs::write(&path, bench.stack.swarm_lb_log()) {
        Ok(()) => report.note(format!(
            "{} {phases}: swarm-lb log saved to {}",
            bench.strategy.as_str(),
            path.display()
        )),
        Err(e) => report.note(format!("could not save swarm-lb log: {e}")),
    }
}

/// Per-sample timestamps of the convergence phase, kept for digging into a figure.
fn save_detail(report: &mut Report, strategy: Strategy, c: &Convergence) {
    let path = std::env::temp_dir().join(format!(
        "bench-swarm-{}-{}-samples.tsv",
        strategy.as_str(),
        std::process::id()
    ));
    let mut text = String::from(convergence::DETAIL_HEADER);
    text.push('\n');
    for line in &c.detail {
        text.push_str(line);
        text.push('\n');
    }
    match std::fs::write(&path, text) {
        Ok(()) => report.note(format!(
            "{}: convergence samples saved to {}",
            strategy.as_str(),
            path.display()
        )),
        Err(e) => report.note(format!("could not save samples: {e}")),
    }
}

fn latency(report: &mut Report, group: &str, name: &str, samples: &[f64], targets: bool) {
    let d = Dist::of(samples);
    let (p50, p99) = (format!("{name}, p50"), format!("{name}, p99"));
    if targets {
        report.add_target(group, &p50, d.p50, "ms", "< 20", d.p50 < 20.0);
        report.add_target(group, &p99, d.p99, "ms", "< 100", d.p99 < 100.0);
    } else {
        report.add(group, &p50, d.p50, "ms");
        report.add(group, &p99, d.p99, "ms");
    }
    report.add(group, &format!("{name}, max"), d.max, "ms");
    report.add(group, &format!("{name}, samples"), d.n as f64, "");
}

fn convergence_figures(report: &mut Report, strategy: Strategy, c: &Convergence) {
    let group = format!("{} convergence", strategy.as_str());
    let g = group.as_str();
    let product = strategy.is_runtime();
    report.add(
        g,
        "scale operations (3..5 replicas, +-1/2)",
        c.ops as f64,
        "",
    );
    latency(
        report,
        g,
        "new task: task running (Status.Timestamp) -> ready",
        &c.start_from_running,
        product,
    );
    latency(
        report,
        g,
        "new task: container start event -> ready",
        &c.start_from_event,
        product,
    );
    latency(
        report,
        g,
        "stopping task: desired shutdown (task UpdatedAt) -> not ready",
        &c.stop_from_desired,
        product,
    );
    latency(
        report,
        g,
        "stopping task: scale (service update event) -> not ready",
        &c.stop_from_update,
        false,
    );
    latency(
        report,
        g,
        "stopping task: container kill event -> not ready (negative: before the signal)",
        &c.stop_from_kill,
        false,
    );
    if !c.api_start_swarm.is_empty() || !c.api_stop_swarm.is_empty() {
        let traced = [
            (
                "API trace: container start event -> task API shows running",
                &c.api_start_swarm,
            ),
            (
                "API trace: task API shows running -> ready",
                &c.api_start_lb,
            ),
            (
                "API trace: service update event -> task API shows leaving",
                &c.api_stop_swarm,
            ),
            (
                "API trace: task API shows leaving -> not ready",
                &c.api_stop_lb,
            ),
        ];
        for (name, samples) in traced {
            latency(report, g, name, samples, false);
        }
    }
    let unc = Dist::of(&c.uncertainty);
    report.add(
        g,
        "poll gap before each measured change, p99",
        unc.p99,
        "ms",
    );
    report.add(
        g,
        "poll gap before each measured change, max",
        unc.max,
        "ms",
    );
    let op = Dist::of(&c.op_ms);
    report.add(g, "scale command -> converged, p50", op.p50, "ms");
    if product {
        report.add_target(
            g,
            "reloads during scale operations",
            f64::from(c.reloads),
            "",
            "= 0",
            c.reloads == 0,
        );
    } else {
        report.add(
            g,
            "reloads during scale operations",
            f64::from(c.reloads),
            "",
        );
    }
    if let Some(w) = c.watch {
        report.add(g, "admin socket polls", w.polls as f64, "");
        report.add(g, "admin socket poll: longest gap", w.max_gap_ms, "ms");
    }
    for u in c.unmatched.iter().take(10) {
        report.note(format!("{}: unmatched sample: {u}", strategy.as_str()));
    }
}

fn socket_figures(report: &mut Report, strategy: Strategy, s: &sockets::Summary) {
    let g = format!("{} churn", strategy.as_str());
    report.add(
        &g,
        "websockets to an unchanged service, cut during the churn",
        s.cut.len() as f64,
        &format!("of {}", s.opened),
    );
    if let (Some(first), Some(last)) = (s.cut.first(), s.cut.last()) {
        report.note(format!(
            "{}: websockets cut between {:.1} s and {:.1} s into the churn; first: {}",
            strategy.as_str(),
            first.after.as_secs_f64(),
            last.after.as_secs_f64(),
            first.reason
        ));
    }
}

fn churn_figures(report: &mut Report, strategy: Strategy, steps: &[Step]) {
    let group = format!("{} churn", strategy.as_str());
    let g = group.as_str();
    let product = strategy.is_runtime();
    let (mut total, mut failed, mut retries) = (0u64, 0u64, 0u64);
    let (mut routine_reloads, mut other_reloads) = (0u32, 0u32);
    for st in steps {
        let s = &st.summary;
        total += s.total();
        failed += s.failed();
        retries += s.client_retries;
        if st.is_routine() {
            routine_reloads += st.reloads;
        } else {
            other_reloads += st.reloads;
        }
        report.add(
            g,
            &format!("{}: failed / requests", st.name),
            s.failed() as f64,
            &format!("of {}", s.total()),
        );
        report.add(
            g,
            &format!("{}: client retries", st.name),
            s.client_retries as f64,
            "",
        );
        report.add(
            g,
            &format!("{}: reloads", st.name),
            f64::from(st.reloads),
            "",
        );
        if s.failed() > 0 {
            report.note(format!(
                "{} churn, {}: {} failed (errors {}, statuses {:?}); first: {:?}",
                strategy.as_str(),
                st.name,
                s.failed(),
                s.errors,
                s.bad_status,
                s.samples
            ));
        }
        if let Some(e) = &st.error {
            report.note(format!(
                "{} churn, {}: step failed: {e}",
                strategy.as_str(),
                st.name
            ));
        }
    }
    report.add(g, "requests", total as f64, "");
    if product {
        report.add_target(
            g,
            "failed (non-2xx + connection errors)",
            failed as f64,
            "",
            "= 0",
            failed == 0,
        );
    } else {
        report.add(g, "failed (non-2xx + connection errors)", failed as f64, "");
    }
    report.add(
        g,
        "client retries (reused connection closed)",
        retries as f64,
        "",
    );
    report.add(
        g,
        "failed, counting client retries as failures",
        (failed + retries) as f64,
        "",
    );
    if product {
        report.add_target(
            g,
            "reloads, scale + rolling updates",
            f64::from(routine_reloads),
            "",
            "= 0",
            routine_reloads == 0,
        );
    } else {
        report.add(
            g,
            "reloads, scale + rolling updates",
            f64::from(routine_reloads),
            "",
        );
    }
    report.add(
        g,
        "reloads, options + create + remove",
        f64::from(other_reloads),
        "",
    );
    if let Some(secs) = steps.iter().find_map(|s| s.first_200_secs) {
        report.add(
            g,
            "new service: create -> first 200 through HAProxy (ms)",
            (secs * 1000.0).round(),
            "one sample",
        );
    }
    if let Some(last) = steps.last() {
        report.add(
            g,
            "old workers at the end (load running)",
            last.old_workers as f64,
            "",
        );
        report.add(
            g,
            "haproxy processes in the container at the end",
            last.processes as f64,
            "incl. master",
        );
    }
    let most = steps.iter().map(|s| s.processes).max().unwrap_or(0);
    report.add(
        g,
        "haproxy processes, most at a step's end",
        most as f64,
        "incl. master",
    );
}

fn idle_figures(report: &mut Report, i: &Idle) {
    let g = "runtime idle";
    report.add(g, "routed services (1 task each)", i.services as f64, "");
    report.add(g, "created -> all served", i.routed_after_s, "s");
    report.add(g, "window", i.window_s, "s");
    report.add(g, "swarm-lb CPU time in the window", i.cpu_s, "s");
    report.add_target(
        g,
        "swarm-lb CPU, share of one core",
        i.cpu_pct,
        "%",
        "< 1",
        i.cpu_pct < 1.0,
    );
    let mut slices = i.slices_pct.clone();
    slices.sort_by(f64::total_cmp);
    report.add(
        g,
        &format!("swarm-lb CPU, median {} s slice", idle::SLICE.as_secs()),
        swarm_lb_bench::percentile(&slices, 50.0),
        "%",
    );
    report.add(
        g,
        "swarm-lb CPU, busiest slice",
        slices.last().copied().unwrap_or(f64::NAN),
        "%",
    );
    report.add(
        g,
        "Docker events on the node in the window (any service)",
        i.events as f64,
        "",
    );
    report.add(
        g,
        "passes that applied a plan in the window",
        i.plans_applied as f64,
        "",
    );
    report.add(g, "swarm-lb RSS", i.rss_kib as f64 / 1024.0, "MiB");
    if i.events > i.own_events {
        report.note(format!(
            "runtime idle: {} Docker events of OTHER services on this node during the window \
             (another workload); swarm-lb re-lists tasks on every container event of any \
             service, so its idle figure includes that work",
            i.events - i.own_events
        ));
    }
    if let Some(pct) = i.foreign_pct {
        report.add(
            g,
            &format!(
                "swarm-lb CPU while an UNROUTED service churns (1<->3 tasks every {} s, {:.0} s)",
                idle::FOREIGN_PERIOD.as_secs(),
                i.foreign_window_s
            ),
            pct,
            "%",
        );
        report.add(
            g,
            "Docker events of that unrouted service",
            i.foreign_events as f64,
            "",
        );
    }
    report.note(format!(
        "runtime idle: CPU per {} s slice (% of a core): {:?}",
        idle::SLICE.as_secs(),
        i.slices_pct
            .iter()
            .map(|p| (p * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    ));
}
