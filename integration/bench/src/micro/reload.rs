//! Reload of the 42,000-server config through the master CLI ([`Master::reload`]): time to the
//! new worker, peak RSS of the new and the old worker, and how many HAProxy processes are alive
//! right after and a few seconds later (old workers leave once their connections end).

use std::time::Duration;

use anyhow::{ensure, Context};
use swarm_lb::haproxy::Master;
use swarm_lb_testkit::group_members;

use super::procfs::status_mib;
use super::proxy::Proxy;
use crate::{percentile, Report};

/// Deadline of one reload.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// When the second process count is taken.
const SETTLE: Duration = Duration::from_secs(3);
/// How long to wait for the old worker to leave before the next reload.
const OLD_WORKER_EXIT: Duration = Duration::from_secs(10);
const GROUP: &str = "reload";

pub struct Options {
    pub reloads: usize,
}

/// `options.reloads` reloads; the first is measured in detail. No admin-socket session may be
/// open (it would keep the old worker alive).
pub async fn run(proxy: &Proxy, report: &mut Report, options: &Options) -> anyhow::Result<()> {
    let master = proxy.master();
    let pgid = proxy.master_pid();
    let mut took = Vec::new();
    for i in 0..options.reloads.max(1) {
        let before = master.show_proc().await?;
        let old = before.workers.first().map(|w| w.pid).context("no worker")?;
        // Its peak so far: the old worker has run every apply batch.
        let old_hwm = status_mib(old, "VmHWM");
        let reloaded = master.reload(RELOAD_TIMEOUT).await.with_context(|| {
            format!(
                "reload {} failed; HAProxy said:\n{}",
                i + 1,
                proxy.log_tail()
            )
        })?;
        took.push(reloaded.took.as_secs_f64() * 1e3);
        let new = reloaded.new_worker;
        let alive_now = group_members(pgid).len();
        let new_hwm_now = status_mib(new, "VmHWM");
        if i == 0 {
            tokio::time::sleep(SETTLE).await;
            let alive_later = group_members(pgid).len();
            // VmHWM only grows: read it again once the new worker has settled.
            let new_hwm = status_mib(new, "VmHWM").or(new_hwm_now);
            let master_rss = status_mib(pgid, "VmRSS");
            report.add(
                GROUP,
                "master CLI reload to new worker (first)",
                round1(took[0]),
                "ms",
            );
            report.add(
                GROUP,
                "new worker peak RSS (VmHWM)",
                round1(new_hwm.unwrap_or(f64::NAN)),
                "MiB",
            );
            report.add(
                GROUP,
                "old worker peak RSS (VmHWM, after all apply runs)",
                round1(old_hwm.unwrap_or(f64::NAN)),
                "MiB",
            );
            report.add(
                GROUP,
                "master RSS after reload",
                round1(master_rss.unwrap_or(f64::NAN)),
                "MiB",
            );
            report.add(
                GROUP,
                "haproxy processes right after reload",
                alive_now as f64,
                "processes",
            );
            report.add(
                GROUP,
                &format!("haproxy processes {} s after reload", SETTLE.as_secs()),
                alive_later as f64,
                "processes",
            );
        }
        wait_old_gone(&master, old).await?;
    }
    if took.len() > 1 {
        let n = took.len();
        took.sort_by(f64::total_cmp);
        report.add(
            GROUP,
            &format!("master CLI reload to new worker, median of {n}"),
            round1(percentile(&took, 50.0)),
            "ms",
        );
        report.add(
            GROUP,
            &format!("master CLI reload to new worker, worst of {n}"),
            round1(took[n - 1]),
            "ms",
        );
    }
    Ok(())
}

/// Polls `show proc` until `old` is no longer listed, so reloads do not pile up workers.
async fn wait_old_gone(master: &Master, old: u32) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + OLD_WORKER_EXIT;
    loop {
        let procs = master.show_proc().await?;
        let listed = procs
            .workers
            .iter()
            .chain(&procs.old_workers)
            .any(|w| w.pid == old);
        if !listed {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "old worker {old} still running {OLD_WORKER_EXIT:?} after the reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
