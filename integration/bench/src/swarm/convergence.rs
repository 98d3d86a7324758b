//! Convergence: a service scaled up and down by one or two tasks alternately, and for every
//! task that came or went, the time from Docker's report to HAProxy's change.
//!
//! - A new task: from its `Status.Timestamp` once running (the agent's report, read with
//!   `docker inspect` of the task) and, separately, from its container's `start` event, to the
//!   first poll where HAProxy holds its address ready.
//! - A stopping task: from the moment Swarm set its desired state to shutdown (the task's
//!   `UpdatedAt` in the first listing of the task API that shows it leaving, see
//!   [`super::tasks::Seen`]) and, for context, from the service's `update` event (the scale
//!   itself) and from its container's `kill` event, to the first poll where its address is no
//!   longer ready. The kill comes seconds later (Docker waits 2 s between taking a task out
//!   of its own load balancer and signalling it), so that figure is negative: how long before
//!   the signal HAProxy had stopped sending the task traffic.
//!
//! The next operation starts once HAProxy's ready addresses are exactly the running tasks'.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use swarm_lb::model::BackendName;

use super::env::{Bench, Net};
use super::events::EventLog;
use super::servers::{ServerWatch, WatchStats};
use super::tasks::{self, ApiWatch, TaskInfo};
use super::{docker, ms, now_ns, wait_for};

/// Alternating steps, replicas moving between 3 and 5.
const STEPS: [i32; 4] = [2, -1, 1, -2];
const START_REPLICAS: u32 = 3;
/// Poll period of HAProxy's servers.
pub const POLL: Duration = Duration::from_millis(2);
/// One operation must converge within this.
const OP_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone)]
pub struct Convergence {
    pub ops: usize,
    /// ms, one per new task.
    pub start_from_running: Vec<f64>,
    pub start_from_event: Vec<f64>,
    /// ms, one per stopped task (signed).
    pub stop_from_desired: Vec<f64>,
    pub stop_from_kill: Vec<f64>,
    pub stop_from_update: Vec<f64>,
    /// Tasks for which a reference (event, timestamp) or HAProxy's change was not found.
    pub unmatched: Vec<String>,
    /// Wall time of each operation, scale command to convergence (ms).
    pub op_ms: Vec<f64>,
    pub reloads: u32,
    pub watch: Option<WatchStats>,
    /// Time between the poll that saw a change and the one before it, per sample (ms): how
    /// much later than the change itself a sample may be.
    pub uncertainty: Vec<f64>,
    /// With the API trace: container start event -> the task API shows it running (Swarm's
    /// part), and from there -> ready (swarm-lb's part).
    pub api_start_swarm: Vec<f64>,
    pub api_start_lb: Vec<f64>,
    /// With the API trace: service update event -> the task API shows it leaving, and from
    /// there -> not ready.
    pub api_stop_swarm: Vec<f64>,
    pub api_stop_lb: Vec<f64>,
    /// One tab-separated line per sample, for digging.
    pub detail: Vec<String>,
}

/// Header of [`Convergence::detail`].
pub const DETAIL_HEADER: &str =
    "op\tkind\ttask\tip\tdocker_ref\tref_ns\tapi_ns\thaproxy_ns\tprev_poll_ns";

/// `ops` scale operations; with `api_trace`, also poll the task API (see [`ApiWatch`]).
pub async fn run(
    bench: &Bench,
    net: &Net,
    ops: usize,
    api_trace: bool,
) -> anyhow::Result<Convergence> {
    let host = format!("{}.conv.test", bench.cluster);
    let svc = bench.service(net, &host, START_REPLICAS, &[]).await?;
    let backend = BackendName::parse(&svc.name).context("service name as a backend name")?;
    let watch = ServerWatch::start(bench.stack.admin_socket(), backend, POLL);
    let mut current = settle(
        &watch,
        &svc.name,
        net,
        START_REPLICAS,
        Duration::from_secs(120),
    )
    .await
    .context("initial replicas routed")?;
    let events = EventLog::start(now_ns() - 1_000_000_000)?;
    // Always on, for the moment Swarm decides to stop a task (only the API tells it); every
    // 5 ms with the trace, whose figures are the times the API showed things.
    let api_every = Duration::from_millis(if api_trace { 5 } else { 20 });
    let api = ApiWatch::start(&svc.name, api_every);
    let reloads_before = bench.stack.reloads().await;
    watch.reset_gaps();

    let mut out = Convergence::default();
    let mut replicas = START_REPLICAS;
    for k in 0..ops {
        let target = replicas.saturating_add_signed(STEPS[k % STEPS.len()]);
        let op_start = now_ns();
        docker(&[
            "service",
            "scale",
            "--detach",
            &format!("{}={target}", svc.name),
        ])
        .await?;
        let settled = settle(&watch, &svc.name, net, target, OP_DEADLINE)
            .await
            .with_context(|| format!("op {k}: {} to {target} replicas", svc.name))?;
        out.op_ms.push(ms(now_ns() - op_start));

        for (id, t) in settled.iter().filter(|(id, _)| !current.contains_key(*id)) {
            let Some(ip) = t.ip else {
                out.unmatched
                    .push(format!("op {k}: new task {id} has no address"));
                continue;
            };
            let Some(ready) = watch.first(ip, true, op_start) else {
                out.unmatched
                    .push(format!("op {k}: new task {id} ({ip}) never seen ready"));
                continue;
            };
            out.uncertainty.push(ms(ready.at_ns - ready.prev_ns));
            out.start_from_running.push(ms(ready.at_ns - t.since_ns));
            let start = events
                .wait(Duration::from_secs(5), |e| {
                    e.kind == "container" && e.action == "start" && &e.task == id
                })
                .await;
            let api_ns = api.seen(id).running_ns;
            if let Some(e) = &start {
                out.start_from_event.push(ms(ready.at_ns - e.time_ns));
                if let Some(a) = api_ns.filter(|_| api_trace) {
                    out.api_start_swarm.push(ms(a - e.time_ns));
                    out.api_start_lb.push(ms(ready.at_ns - a));
                }
            } else {
                out.unmatched
                    .push(format!("op {k}: no start event for task {id}"));
            }
            out.detail.push(format!(
                "{k}\tstart\t{id}\t{ip}\tstart_event\t{}\t{}\t{}\t{}",
                start.map_or(0, |e| e.time_ns),
                api_ns.unwrap_or(0),
                ready.at_ns,
                ready.prev_ns
            ));
            out.detail.push(format!(
                "{k}\tstart\t{id}\t{ip}\ttask_running\t{}\t{}\t{}\t{}",
                t.since_ns,
                api_ns.unwrap_or(0),
                ready.at_ns,
                ready.prev_ns
            ));
        }

        let update = events
            .wait(Duration::from_secs(5), |e| {
                e.kind == "service"
                    && e.action == "update"
                    && e.service == svc.name
                    && e.time_ns >= op_start
            })
            .await;
        for (id, t) in current.iter().filter(|(id, _)| !settled.contains_key(*id)) {
            let Some(ip) = t.ip else { continue };
            let Some(gone) = watch.first(ip, false, op_start) else {
                out.unmatched
                    .push(format!("op {k}: stopped task {id} ({ip}) still ready"));
                continue;
            };
            out.uncertainty.push(ms(gone.at_ns - gone.prev_ns));
            let kill = events
                .wait(Duration::from_secs(10), |e| {
                    e.kind == "container" && e.action == "kill" && &e.task == id
                })
                .await;
            let seen = api.seen(id);
            let api_ns = seen.leaving_ns;
            // Valid while the agent had reported nothing since the task ran.
            let desired_ns = seen
                .leaving_updated_ns
                .filter(|_| seen.leaving_status_ns == Some(t.since_ns));
            match desired_ns {
                Some(d) => out.stop_from_desired.push(ms(gone.at_ns - d)),
                None => out.unmatched.push(format!(
                    "op {k}: no desired-state change time for task {id} (API saw it leaving: \
                     {:?}, status then {:?}, running since {})",
                    seen.leaving_ns, seen.leaving_status_ns, t.since_ns
                )),
            }
            match &kill {
                Some(e) => out.stop_from_kill.push(ms(gone.at_ns - e.time_ns)),
                None => out
                    .unmatched
                    .push(format!("op {k}: no kill event for task {id}")),
            }
            match &update {
                Some(e) => {
                    out.stop_from_update.push(ms(gone.at_ns - e.time_ns));
                    if let Some(a) = api_ns.filter(|_| api_trace) {
                        out.api_stop_swarm.push(ms(a - e.time_ns));
                        out.api_stop_lb.push(ms(gone.at_ns - a));
                    }
                }
                None => out
                    .unmatched
                    .push(format!("op {k}: no service update event")),
            }
            let refs = [
                ("desired_shutdown", desired_ns),
                ("kill_event", kill.as_ref().map(|e| e.time_ns)),
                ("update_event", update.as_ref().map(|e| e.time_ns)),
            ];
            for (what, ref_ns) in refs {
                out.detail.push(format!(
                    "{k}\tstop\t{id}\t{ip}\t{what}\t{}\t{}\t{}\t{}",
                    ref_ns.unwrap_or(0),
                    api_ns.unwrap_or(0),
                    gone.at_ns,
                    gone.prev_ns
                ));
            }
        }
        current = settled;
        replicas = target;
        out.ops += 1;
        // A short breath between operations, as between two operators' commands.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out.reloads = bench.stack.reloads().await.saturating_sub(reloads_before);
    out.watch = Some(watch.stats());
    Ok(out)
}

/// Wait until `n` tasks run and HAProxy serves exactly their addresses; the tasks.
async fn settle(
    watch: &ServerWatch,
    service: &str,
    net: &Net,
    n: u32,
    within: Duration,
) -> anyhow::Result<BTreeMap<String, TaskInfo>> {
    let n = n as usize;
    wait_for(
        within,
        Duration::from_millis(20),
        &format!("{service}: {n} running tasks served"),
        || async {
            let ready = watch.ready();
            // Docker is asked only when HAProxy looks done: its CLI costs CPU that the
            // measured components share.
            if ready.len() != n {
                return Ok(None);
            }
            let tasks = tasks::desired_running(service, &net.id).await?;
            Ok(match tasks::all_running(&tasks, n) {
                Some(ips) if ips == ready => Some(tasks),
                _ => None,
            })
        },
    )
    .await
}
