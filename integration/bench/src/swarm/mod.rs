//! bench-swarm's parts: both strategies of swarm-lb on a real one-node Swarm, each in its own
//! compose stack ([`env::Bench`]), measured by what Docker reports ([`events`], [`tasks`]) against
//! what HAProxy holds ([`servers`], polled every ~2 ms). The phases: [`convergence`] (latency
//! from a task's start or kill to HAProxy serving or dropping it), [`churn`] (failed requests
//! under load during scaling, rolling updates and a service coming and going) and [`idle`]
//! (swarm-lb's CPU with many routed services and nothing happening).

pub mod churn;
pub mod convergence;
pub mod env;
pub mod events;
pub mod idle;
pub mod servers;
pub mod sockets;
pub mod tasks;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// The two test images (`scripts/images.sh`): same app, VERSION=1 and 2.
pub const APP1: &str = "swarm-lb/testapp:1";
pub const APP2: &str = "swarm-lb/testapp:2";
/// Port the test app listens on inside its container.
pub const APP_PORT: u16 = 8080;

/// Wall-clock time in ns since the epoch: the clock Docker's event and task timestamps use
/// (same host, same clock).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Nanoseconds -> milliseconds.
pub fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// The Docker CLI, awaited (a blocking call would stall the load generator sharing this
/// runtime's two threads). Stdout, trimmed, on success.
pub async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = docker_output(args).await?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        anyhow::bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }
}

/// The Docker CLI's whole output, whatever its exit status (`docker inspect` of several ids
/// prints those it found and fails for the others).
pub async fn docker_output(args: &[&str]) -> anyhow::Result<std::process::Output> {
    let run = tokio::process::Command::new(swarm_lb_e2e::docker::bin())
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .with_context(|| format!("docker {}: no answer within 120 s", args.join(" ")))?
        .with_context(|| format!("docker {}", args.join(" ")))
}

/// Poll `f` every `every` until it returns `Some`, or fail after `within` naming `what`.
pub async fn wait_for<T, F, Fut>(
    within: Duration,
    every: Duration,
    what: &str,
    mut f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Summary of latency samples (ms).
#[derive(Debug, Clone, Copy)]
pub struct Dist {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Dist {
    pub fn of(samples: &[f64]) -> Dist {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Dist {
            n: v.len(),
            p50: crate::percentile(&v, 50.0),
            p99: crate::percentile(&v, 99.0),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }
}
