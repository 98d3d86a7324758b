//! Failed requests under churn: keep-alive load through HAProxy on one service while a script
//! scales it, rolls it out stop-first then start-first, and creates then removes another
//! routed service. Each step runs under its own load, so failures are attributed to a step;
//! each step counts HAProxy's reloads (`show proc`) and, at its end, the HAProxy processes
//! still alive (old workers held by connections that have not ended yet). Throughout, a few
//! websockets stay open to a third service that nothing changes ([`sockets`]).

use std::future::Future;
use std::time::{Duration, Instant};

use swarm_lb_e2e::load::{self, Load, Summary};

use super::env::{Bench, Net};
use super::sockets;
use super::tasks;
use super::{docker, wait_for, APP1, APP2};

/// Keep-alive connections, each sending one request per [`EVERY`]: ~1,200 requests/s.
pub const WORKERS: usize = 6;
pub const EVERY: Duration = Duration::from_millis(5);
const REPLICAS: u32 = 3;
const CONVERGE: Duration = Duration::from_secs(120);
/// Load keeps running this long after a step's last change converged: what that change does
/// to traffic a moment later (an old worker closing connections, a task draining) counts.
const TAIL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Step {
    pub name: &'static str,
    pub summary: Summary,
    pub reloads: u32,
    pub secs: f64,
    /// `show proc` at the step's end, load still running.
    pub workers: usize,
    pub old_workers: usize,
    /// haproxy processes in the container (master included), same moment.
    pub processes: usize,
    /// The step's own error, if it did not complete (its load figures still count).
    pub error: Option<String>,
    /// Create + remove only: from `docker service create` returning to the first 200 through
    /// HAProxy for the new service's host, in seconds.
    pub first_200_secs: Option<f64>,
}

impl Step {
    /// Changes that must never reload with the runtime strategy.
    pub fn is_routine(&self) -> bool {
        self.name != CREATE_REMOVE && self.name != OPTIONS
    }
}

pub const CREATE_REMOVE: &str = "create + remove a service";
/// A backend option turned on then off (`ip_hash`): one reload each before HAProxy 3.4, a new
/// backend generation each from 3.4.
pub const OPTIONS: &str = "ip_hash on + off";

/// Websockets held open through the whole churn.
pub const SOCKETS: usize = 20;

pub struct Churn {
    pub steps: Vec<Step>,
    /// The websockets to the service nothing changes.
    pub sockets: sockets::Summary,
}

pub async fn run(bench: &Bench, net: &Net) -> anyhow::Result<Churn> {
    let steady_host = format!("{}.steady.test", bench.cluster);
    let steady = bench.service(net, &steady_host, 1, &[]).await?;
    routed(bench, &steady.name, net, 1).await?;
    answers(bench, &steady_host).await?;
    let held = sockets::open(bench.stack.http_port, &steady_host, SOCKETS).await?;
    let steps = steps(bench, net).await;
    let sockets = held.close().await;
    drop(steady);
    Ok(Churn {
        steps: steps?,
        sockets,
    })
}

async fn steps(bench: &Bench, net: &Net) -> anyhow::Result<Vec<Step>> {
    let host = format!("{}.churn.test", bench.cluster);
    let svc = bench
        .service(
            net,
            &host,
            REPLICAS,
            &["--update-parallelism", "1", "--update-delay", "0s"],
        )
        .await?;
    routed(bench, &svc.name, net, REPLICAS as usize).await?;
    answers(bench, &host).await?;

    let mut steps = Vec::new();
    steps.push(step(bench, &host, "scale 3-6-2-4", scale(bench, &svc.name, net)).await);
    steps.push(
        step(
            bench,
            &host,
            "rolling update stop-first",
            update(bench, &svc.name, net, APP2, "stop-first"),
        )
        .await,
    );
    steps.push(
        step(
            bench,
            &host,
            "rolling update start-first",
            update(bench, &svc.name, net, APP1, "start-first"),
        )
        .await,
    );
    steps.push(step(bench, &host, OPTIONS, options(bench, &svc.name)).await);
    steps.push(step(bench, &host, CREATE_REMOVE, create_remove(bench, net)).await);
    Ok(steps)
}

async fn step(
    bench: &Bench,
    host: &str,
    name: &'static str,
    action: impl Future<Output = anyhow::Result<Option<f64>>>,
) -> Step {
    let reloads = bench.stack.reloads().await;
    let started = Instant::now();
    let load = Load::start(bench.stack.http_port, host, "/", WORKERS, EVERY);
    let result = action.await;
    tokio::time::sleep(TAIL).await;
    let procs = bench.stack.master().show_proc().await.ok();
    let processes = haproxy_processes(&bench.stack.haproxy_container)
        .await
        .unwrap_or(0);
    let summary = load.stop().await;
    let step = Step {
        name,
        reloads: bench.stack.reloads().await.saturating_sub(reloads),
        secs: started.elapsed().as_secs_f64(),
        workers: procs.as_ref().map_or(0, |p| p.workers.len()),
        old_workers: procs.as_ref().map_or(0, |p| p.old_workers.len()),
        processes,
        first_200_secs: result.as_ref().ok().copied().flatten(),
        error: result.err().map(|e| format!("{e:#}")),
        summary,
    };
    eprintln!(
        "bench-swarm: [{}] churn step {name}: {} ({} reloads, {:.1} s){}",
        bench.strategy.as_str(),
        step.summary,
        step.reloads,
        step.secs,
        step.error
            .as_deref()
            .map(|e| format!("; FAILED: {e}"))
            .unwrap_or_default()
    );
    step
}

async fn scale(bench: &Bench, service: &str, net: &Net) -> anyhow::Result<Option<f64>> {
    for n in [6u32, 2, 4] {
        docker(&["service", "scale", "--detach", &format!("{service}={n}")]).await?;
        routed(bench, service, net, n as usize).await?;
    }
    Ok(None)
}

async fn update(
    bench: &Bench,
    service: &str,
    net: &Net,
    image: &str,
    order: &str,
) -> anyhow::Result<Option<f64>> {
    let n = tasks::desired_running(service, &net.id).await?.len();
    docker(&[
        "service",
        "update",
        "--detach=false",
        "--quiet",
        "--no-resolve-image",
        "--image",
        image,
        "--update-order",
        order,
        service,
    ])
    .await?;
    routed(bench, service, net, n).await?;
    Ok(None)
}

async fn options(bench: &Bench, service: &str) -> anyhow::Result<Option<f64>> {
    for (change, balance) in [
        ("--label-add=com.docker.lb.ip_hash=true", "source"),
        ("--label-rm=com.docker.lb.ip_hash", "roundrobin"),
    ] {
        docker(&["service", "update", "--detach", change, service]).await?;
        // Applied once the files (which mirror HAProxy) give the service's backend, whatever
        // its generation, that balance.
        let from = format!(" from swarm-lb.{balance}");
        wait_for(
            CONVERGE,
            Duration::from_millis(50),
            "the options change applied",
            || async {
                let config = std::fs::read_to_string(bench.stack.config_path()).unwrap_or_default();
                let applied = config.lines().any(|l| {
                    l.strip_prefix("backend ")
                        .and_then(|rest| rest.split_once(' '))
                        .is_some_and(|(name, tail)| {
                            (name == service
                                || name
                                    .strip_prefix(service)
                                    .is_some_and(|g| g.starts_with(':')))
                                && tail == from.trim_start()
                        })
                });
                Ok(applied.then_some(()))
            },
        )
        .await?;
    }
    Ok(None)
}

async fn create_remove(bench: &Bench, net: &Net) -> anyhow::Result<Option<f64>> {
    let host = format!("{}.other.test", bench.cluster);
    let other = bench.service(net, &host, 1, &[]).await?;
    let created = Instant::now();
    answers(bench, &host).await?;
    let first_200 = created.elapsed().as_secs_f64();
    routed(bench, &other.name, net, 1).await?;
    let name = other.name.clone();
    docker(&["service", "rm", &name]).await?;
    // Removed above without blocking the runtime; the guard's own `service rm` would only
    // fail now.
    std::mem::forget(other);
    wait_for(
        CONVERGE,
        Duration::from_millis(50),
        "the removed service's backend to go",
        || async { Ok(bench.stack.servers(&name).await.is_empty().then_some(())) },
    )
    .await?;
    Ok(Some(first_200))
}

/// Wait until HAProxy serves exactly the `n` running tasks of `service`.
pub async fn routed(bench: &Bench, service: &str, net: &Net, n: usize) -> anyhow::Result<()> {
    wait_for(
        CONVERGE,
        Duration::from_millis(50),
        &format!("{service} routed to {n} running tasks"),
        || async {
            let ready = bench.stack.ready_addrs(service).await;
            if ready.len() != n {
                return Ok(None);
            }
            let tasks = tasks::desired_running(service, &net.id).await?;
            let Some(ips) = tasks::all_running(&tasks, n) else {
                return Ok(None);
            };
            let mut ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
            ips.sort();
            Ok((ips == ready).then_some(()))
        },
    )
    .await
}

/// Wait until a request for `host` gets a 200.
async fn answers(bench: &Bench, host: &str) -> anyhow::Result<()> {
    let port = bench.stack.http_port;
    wait_for(
        CONVERGE,
        Duration::from_millis(50),
        &format!("{host} to answer"),
        || async { Ok(matches!(load::get(port, host, "/").await, Ok((200, _))).then_some(())) },
    )
    .await
}

/// haproxy processes (master and workers, old ones included) in `container`.
pub async fn haproxy_processes(container: &str) -> anyhow::Result<usize> {
    let out = docker(&["top", container]).await?;
    Ok(out
        .lines()
        .skip(1)
        .filter(|l| l.contains("haproxy"))
        .count())
}
