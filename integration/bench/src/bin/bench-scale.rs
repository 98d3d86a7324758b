//! `bench-scale`: a release swarm-lb against a synthetic Swarm (a fake Docker Engine API, N
//! services of M tasks on loopback addresses) and a real HAProxy, for several N: cold start,
//! one change's latency (event -> HAProxy holds it), pass time, CPU, bytes read from Docker and
//! from the admin socket per change, RSS, idle CPU. One Markdown row per N.
//!
//! ```text
//! cargo build --release --bin swarm-lb
//! cargo run --release -p swarm-lb-bench --bin bench-scale -- [--n 100,1000] [--tasks 3]
//!     [--changes 30] [--idle 20] [--swarm-lb target/release/swarm-lb]
//!     [--haproxy target/haproxy/3.4/haproxy] [--template haproxy/base.cfg]
//!     [--swarm-lb-arg=--resync=30 ...] [--no-relay] [--gap-ms 300] [--cold-deadline 600]
//!     [--change-deadline 60] [--deadline 3600] [--json out.json]
//! ```
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use swarm_lb_bench::micro::procfs;
use swarm_lb_bench::scale::run::{self, Options, Row};
use swarm_lb_bench::{percentile, Report};
use tokio::signal::unix::SignalKind;

const USAGE: &str = "usage: bench-scale [--n 100,1000] [--tasks 3] [--changes 30] [--idle 20 (s)] \
     [--swarm-lb PATH] [--haproxy PATH] [--template PATH] [--swarm-lb-arg ARG ...] [--no-relay] \
     [--gap-ms 300] [--cold-deadline 600 (s)] [--change-deadline 60 (s)] [--deadline 3600 (s, whole run)] \
     [--json out.json]";

struct Args {
    ns: Vec<usize>,
    options: Options,
    deadline: Duration,
    json: Option<PathBuf>,
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn parse_args() -> anyhow::Result<Args> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let mut args = Args {
        ns: vec![100, 1000],
        options: Options {
            swarm_lb: target.join("release/swarm-lb"),
            template: workspace().join("haproxy/base.cfg"),
            tasks: 3,
            changes: 30,
            idle: Duration::from_secs(20),
            gap: Duration::from_millis(300),
            cold_deadline: Duration::from_secs(600),
            change_deadline: Duration::from_secs(60),
            extra_args: Vec::new(),
            relay: true,
        },
        deadline: Duration::from_secs(3600),
        json: None,
    };
    let mut it = std::env::args().skip(1);
    let positive = |v: String, name: &str| -> anyhow::Result<u64> {
        match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{name}: expected a positive number, got {v:?}"),
        }
    };
    while let Some(arg) = it.next() {
        let (arg, inline) = match arg.split_once('=') {
            Some((a, v)) if a.starts_with("--") => (a.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        let mut value = |name: &str| match inline.clone() {
            Some(v) => Ok(v),
            None => it.next().with_context(|| format!("{name} needs a value")),
        };
        let o = &mut args.options;
        match arg.as_str() {
            "--n" => {
                args.ns = value("--n")?
                    .split(',')
                    .map(|n| positive(n.trim().replace('_', ""), "--n").map(|n| n as usize))
                    .collect::<anyhow::Result<_>>()?
            }
            "--tasks" => o.tasks = positive(value("--tasks")?, "--tasks")? as usize,
            "--changes" => o.changes = positive(value("--changes")?, "--changes")? as usize,
            "--idle" => o.idle = Duration::from_secs(positive(value("--idle")?, "--idle")?),
            "--gap-ms" => o.gap = Duration::from_millis(positive(value("--gap-ms")?, "--gap-ms")?),
            "--cold-deadline" => {
                o.cold_deadline =
                    Duration::from_secs(positive(value("--cold-deadline")?, "--cold-deadline")?)
            }
            "--change-deadline" => {
                o.change_deadline =
                    Duration::from_secs(positive(value("--change-deadline")?, "--change-deadline")?)
            }
            "--deadline" => {
                args.deadline = Duration::from_secs(positive(value("--deadline")?, "--deadline")?)
            }
            "--swarm-lb" => o.swarm_lb = PathBuf::from(value("--swarm-lb")?),
            "--template" => o.template = PathBuf::from(value("--template")?),
            "--swarm-lb-arg" => o.extra_args.push(value("--swarm-lb-arg")?),
            "--no-relay" => o.relay = false,
            "--haproxy" => {
                // Read by swarm-lb-testkit; set before any thread starts.
                std::env::set_var("HAPROXY", value("--haproxy")?);
            }
            "--json" => args.json = Some(PathBuf::from(value("--json")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if std::env::var_os("HAPROXY").is_none() {
        let h34 = workspace().join("target/haproxy/3.4/haproxy");
        if h34.exists() {
            std::env::set_var("HAPROXY", &h34);
        } else {
            println!(
                "note: {} not found (scripts/images.sh builds it): running the default HAProxy",
                h34.display()
            );
        }
    }
    if !args.options.swarm_lb.exists() {
        bail!(
            "{} not found: `cargo build --release --bin swarm-lb` first, or give --swarm-lb",
            args.options.swarm_lb.display()
        );
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let haproxy = swarm_lb_testkit::haproxy()?;
    let mut report = Report::new();
    println!(
        "{} | {} | swarm-lb {} | load average {:.1}",
        report.machine,
        haproxy,
        args.options.swarm_lb.display(),
        procfs::load_average().unwrap_or(f64::NAN)
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    let result: anyhow::Result<()> = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(SignalKind::terminate())?;
        let all = async {
            for &n in &args.ns {
                let row = run::run(n, &args.options)
                    .await
                    .with_context(|| format!("N={n}"))?;
                for note in &row.notes {
                    println!("note (N={n}): {note}");
                }
                println!("{}\n{}", header(), line(&row));
                rows.push(row);
            }
            anyhow::Ok(())
        };
        tokio::select! {
            r = tokio::time::timeout(args.deadline, all) => match r {
                Ok(r) => r,
                Err(_) => bail!("the whole run took more than {:?} (--deadline)", args.deadline),
            },
            // HAProxy runs in its own process group: return so that dropping it kills it.
            r = tokio::signal::ctrl_c() => { r?; bail!("interrupted") }
            _ = term.recv() => bail!("terminated"),
        }
    });
    println!(
        "\n{} | {} | load average at the end {:.1}\n",
        report.date,
        haproxy,
        procfs::load_average().unwrap_or(f64::NAN)
    );
    println!("{}", header());
    for r in &rows {
        println!("{}", line(r));
    }
    if let Some(path) = &args.json {
        // Report::add prints each figure too: only when they are wanted in a file.
        for r in &rows {
            add_figures(&mut report, r);
        }
        report.haproxy = haproxy.to_string();
        report
            .write_json(path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    result
}

fn header() -> String {
    "| services | servers | cold start | task up p50 / p99 | task down p50 / p99 | label edit p50 / p99 | \
     pass p50 / mean (passes per change) | swarm-lb CPU per change | Docker bytes per change | \
     admin socket read / written per change | swarm-lb RSS | HAProxy worker RSS | idle CPU swarm-lb / HAProxy | reloads: cold start / changes |\n\
     |---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        .to_owned()
}

fn pcts(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (percentile(&s, 50.0), percentile(&s, 99.0))
}

fn dur(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

fn bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.0} KB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn line(r: &Row) -> String {
    let pair = |v: &[f64]| {
        let (p50, p99) = pcts(v);
        format!("{} / {}", dur(p50), dur(p99))
    };
    let pass = match (r.pass_p50_ms, r.pass_mean_ms, r.passes_per_change) {
        (p50, Some(mean), Some(per)) => format!(
            "{} / {} ({per:.1})",
            p50.map(|p| format!("<= {}", dur(p)))
                .unwrap_or_else(|| "-".into()),
            dur(mean)
        ),
        _ => "n/a".into(),
    };
    format!(
        "| {} | {} | {:.2} s | {} | {} | {} | {} | {} | {} | {} / {} | {:.0} MiB | {:.0} MiB | {:.2} % / {:.1} % | {} / {} |",
        r.services,
        r.servers,
        r.cold_start_s,
        pair(&r.up_ms),
        pair(&r.down_ms),
        pair(&r.label_ms),
        pass,
        dur(r.cpu_per_change_ms),
        bytes(r.docker_bytes_per_change),
        r.admin_read_per_change.map(bytes).unwrap_or_else(|| "n/a".into()),
        r.admin_written_per_change.map(bytes).unwrap_or_else(|| "n/a".into()),
        r.rss_swarm_lb_mib,
        r.rss_haproxy_mib,
        r.idle_cpu_pct,
        r.haproxy_idle_cpu_pct,
        r.cold_reloads
            .map(|v| format!("{v:.0}"))
            .unwrap_or_else(|| "n/a".into()),
        r.reloads.map(|v| format!("{v:.0}")).unwrap_or_else(|| "n/a".into()),
    )
}

fn add_figures(report: &mut Report, r: &Row) {
    let g = format!("N={}", r.services);
    let (up50, up99) = pcts(&r.up_ms);
    let (dn50, dn99) = pcts(&r.down_ms);
    let (lb50, lb99) = pcts(&r.label_ms);
    report.add(&g, "servers in HAProxy", r.servers as f64, "");
    report.add(&g, "cold start", r.cold_start_s, "s");
    report.add(&g, "task up p50 (container start -> ready)", up50, "ms");
    report.add(&g, "task up p99", up99, "ms");
    report.add(
        &g,
        "task down p50 (service update -> not ready)",
        dn50,
        "ms",
    );
    report.add(&g, "task down p99", dn99, "ms");
    report.add(
        &g,
        "label edit p50 (service update -> host in map)",
        lb50,
        "ms",
    );
    report.add(&g, "label edit p99", lb99, "ms");
    if let Some(v) = r.pass_mean_ms {
        report.add(&g, "pass mean", v, "ms");
    }
    if let Some(v) = r.pass_p50_ms {
        report.add(&g, "pass p50 (bucket bound)", v, "ms");
    }
    report.add(&g, "swarm-lb CPU per change", r.cpu_per_change_ms, "ms");
    report.add(
        &g,
        "Docker bytes per change",
        r.docker_bytes_per_change,
        "B",
    );
    if let (Some(read), Some(written)) = (r.admin_read_per_change, r.admin_written_per_change) {
        report.add(&g, "admin socket bytes read per change", read, "B");
        report.add(&g, "admin socket bytes written per change", written, "B");
    }
    report.add(&g, "swarm-lb RSS", r.rss_swarm_lb_mib, "MiB");
    report.add(&g, "HAProxy worker RSS", r.rss_haproxy_mib, "MiB");
    report.add(&g, "swarm-lb idle CPU", r.idle_cpu_pct, "% of a core");
    report.add(
        &g,
        "HAProxy worker idle CPU",
        r.haproxy_idle_cpu_pct,
        "% of a core",
    );
    report.add(
        &g,
        "Docker bytes in the idle window",
        r.idle_docker_bytes as f64,
        "B",
    );
    for n in &r.notes {
        report.notes.push(format!("{g}: {n}"));
    }
}
