//! `bench-micro`: swarm-lb's client, reload and planner measured against a real HAProxy that
//! the benchmark starts itself (master-worker, temp dir, free port), without Docker.
//!
//! ```text
//! cargo run --release -p swarm-lb-bench --bin bench-micro -- [--json out.json]
//!     [--runs N] [--reloads N] [--plan-runs N]
//! ```
//!
//! 1. plan scale: `model::desired` + `plan::plan` on 1,000 services x 40 tasks, and the RSS
//!    of a process holding snapshot, desired state, proxy state and plan (a child of this
//!    binary, started with a hidden flag, that holds nothing else);
//! 2. apply: 42,000 `set server addr` (and 84,000 addr + ready) through `AdminClient::execute`
//!    and through a raw pipelined client, alternating;
//! 3. reload of that 42,000-server config through the master CLI;
//! 4. access: requests per second through HAProxy to a service with no policy, and to
//!    services with address lists and a rate limit, and with basic auth (sha-512-crypt,
//!    bcrypt), on their own small HAProxy, in the same run; each as a ratio to no policy;
//! 5. shaping (`--only shaping`, not run by default): requests per second through HAProxy on
//!    routes with two response headers, gzip compression, an HTTP health check, each alone
//!    and all three, beside a route without labels, in alternating rounds of one run.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{bail, Context};
use swarm_lb_bench::micro::{access, apply, procfs, proxy, reload, scale, shaping};
use swarm_lb_bench::Report;
use tokio::signal::unix::SignalKind;

struct Args {
    json: Option<PathBuf>,
    /// Sections to run: `plan`, `apply`, `reload`, `access`, `shaping`.
    only: Vec<String>,
    apply: apply::Options,
    reload: reload::Options,
    scale: scale::Options,
    access: access::Options,
    shaping: shaping::Options,
}

const SECTIONS: [&str; 5] = ["plan", "apply", "reload", "access", "shaping"];

const USAGE: &str = "usage: bench-micro [--json out.json] \
     [--only plan,apply,reload,access,shaping] \
     [--runs N (apply, default 11)] [--reloads N (default 3)] [--plan-runs N (default 21)] \
     [--access-rounds N (default 5)]";

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        json: None,
        // `shaping` only when asked for: its figures are for issue 24's row.
        only: SECTIONS[..4].iter().map(|s| s.to_string()).collect(),
        apply: apply::Options { runs: 11 },
        reload: reload::Options { reloads: 3 },
        scale: scale::Options {
            warmup: 3,
            runs: 21,
        },
        access: access::Options {
            rounds: 5,
            each: std::time::Duration::from_secs(2),
            connections: 8,
        },
        shaping: shaping::Options {
            rounds: 5,
            connections: 16,
            round: std::time::Duration::from_secs(2),
        },
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        let count = |v: String, name: &str| -> anyhow::Result<usize> {
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("{name}: expected a positive count, got {v:?}"),
            }
        };
        match arg.as_str() {
            "--json" => args.json = Some(PathBuf::from(value("--json")?)),
            "--only" => {
                args.only = value("--only")?.split(',').map(str::to_owned).collect();
                if let Some(bad) = args.only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
                    bail!(
                        "--only: unknown section {bad:?}; sections: {}",
                        SECTIONS.join(",")
                    );
                }
            }
            "--runs" => args.apply.runs = count(value("--runs")?, "--runs")?,
            "--reloads" => args.reload.reloads = count(value("--reloads")?, "--reloads")?,
            "--plan-runs" => args.scale.runs = count(value("--plan-runs")?, "--plan-runs")?,
            "--access-rounds" => {
                args.access.rounds = count(value("--access-rounds")?, "--access-rounds")?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some(scale::FOOTPRINT_FLAG) {
        return scale::footprint_child();
    }
    let args = parse_args()?;
    // Fail before anything else runs when there is no HAProxy.
    swarm_lb_testkit::haproxy_bin()?;
    let mut report = Report::new();
    println!("{} | {}", report.machine, report.haproxy);
    if !report.haproxy.contains("version 2.6") {
        println!("note: the figures in the issue were taken on HAProxy 2.6");
    }

    // Wall-clock figures mean little on a machine busy with something else: say how busy.
    let load = procfs::load_average().unwrap_or(f64::NAN);
    report.add("machine", "load average (1 min) at start", load, "");

    // Pure and quick: first, before HAProxy loads the machine.
    if args.runs("plan") {
        scale::run(&mut report, &args.scale)?;
    }
    if !args.runs("apply") && !args.runs("reload") && !args.runs("access") && !args.runs("shaping")
    {
        return finish(&mut report, &args);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(SignalKind::terminate())?;
        tokio::select! {
            r = with_haproxy(&mut report, &args) => r,
            // HAProxy runs in its own process group, out of reach of the terminal's ^C: return
            // so that dropping the proxy kills it.
            r = tokio::signal::ctrl_c() => {
                r?;
                bail!("interrupted")
            }
            _ = term.recv() => bail!("terminated"),
        }
    })?;
    finish(&mut report, &args)
}

impl Args {
    fn runs(&self, section: &str) -> bool {
        self.only.iter().any(|s| s == section)
    }
}

fn finish(report: &mut Report, args: &Args) -> anyhow::Result<()> {
    let load = procfs::load_average().unwrap_or(f64::NAN);
    report.add("machine", "load average (1 min) at the end", load, "");
    println!("\n{}", report.table());
    if let Some(path) = &args.json {
        report
            .write_json(path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

async fn with_haproxy(report: &mut Report, args: &Args) -> anyhow::Result<()> {
    // On its own small HAProxy, first: the large one below would share the machine with it.
    if args.runs("access") {
        access::run(report, &args.access).await?;
    }
    if args.runs("shaping") {
        let (task, server) = shaping::task().await?;
        let proxy = proxy::Proxy::start(&shaping::state(task)?).await?;
        let result = shaping::run(&proxy, report, &args.shaping).await;
        server.abort();
        result?;
    }
    if !args.runs("apply") && !args.runs("reload") {
        return Ok(());
    }
    let state = apply::slotted_state()?;
    let started = std::time::Instant::now();
    let proxy = proxy::Proxy::start(&state).await?;
    println!(
        "haproxy up on a {} KiB config ({} backends x {} slots) in {:.2} s",
        proxy.config_bytes / 1024,
        apply::BACKENDS,
        apply::SLOTS,
        started.elapsed().as_secs_f64()
    );
    if args.runs("apply") {
        apply::run(&proxy, report, &args.apply).await?;
    }
    if args.runs("reload") {
        reload::run(&proxy, report, &args.reload).await?;
    }
    Ok(())
}
