//! Apply throughput: every slot of a 1,000 backends x 42 slots config changed at once, sent
//! through swarm-lb's [`AdminClient::execute`] and through a raw pipelined reference client on
//! the same admin socket, in alternating runs.
//!
//! Two batch forms:
//! - `set server <b>/<s> addr <ip> port <p>` for all 42,000 slots (the slots stay in maint);
//! - the planner's form for a task moving into a slot, `set addr` then `set state ready`:
//!   84,000 commands. Each run starts from every slot in maint (an untimed reset batch), so
//!   every command changes something.
//!
//! Addresses are distinct loopback addresses (`127.R.x.y`, a new `R` and port every run):
//! servers set ready start their health checks, which must only ever reach this machine.
//! Nothing listens there, so each check fails at once and is retried (`fastinter`): while the
//! second form runs, HAProxy also runs tens of thousands of checks and logs the servers going
//! down, for both clients alike. That is HAProxy's own work for a server leaving maint (a
//! check that succeeds costs about the same), but it makes that form's rates much noisier.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use swarm_lb::haproxy::codec;
use swarm_lb::haproxy::{Admin, AdminClient, BackendState, Command, ProxyState, Query, Server};
use swarm_lb::model::{BackendName, Host, Mode, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::procfs::self_cpu_ns;
use super::proxy::Proxy;
use crate::{percentile, Report};

pub const BACKENDS: usize = 1_000;
pub const SLOTS: usize = 42;
/// The share of the raw client's rate the issue asks of swarm-lb's client.
const TARGET_RATIO: f64 = 0.80;
/// Deadline of one timed batch, either client.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// A form stops after this long once it has [`MIN_RUNS`] runs (a loaded machine is slow).
const FORM_BUDGET: Duration = Duration::from_secs(50);
/// Pause after an untimed reset, so that HAProxy's work for it (a log line per server leaving
/// service, checks being cancelled) does not land in the next timed batch.
const SETTLE: Duration = Duration::from_millis(300);
const MIN_RUNS: usize = 3;
const GROUP: &str = "apply";

/// 1,000 task-mode backends of 42 free slots (placeholder address, maint), one host each.
pub fn slotted_state() -> anyhow::Result<ProxyState> {
    let mut state = ProxyState::default();
    for b in 0..BACKENDS {
        let name = backend(b)?;
        let servers = (1..=SLOTS)
            .map(|n| Server::free(ServerName::slot(n)))
            .collect();
        state.hosts.insert(
            swarm_lb::model::MapKey::host(&Host::parse(&format!("{}.example.com", name.as_str()))?),
            swarm_lb::model::MapValue::backend(&name, 0),
        );
        state.backends.insert(
            name,
            std::sync::Arc::new(BackendState {
                options: Default::default(),
                mode: Mode::Task,
                servers,
            }),
        );
    }
    Ok(state)
}

fn backend(b: usize) -> anyhow::Result<BackendName> {
    Ok(BackendName::for_service(&format!("app{b:04}"))?)
}

/// What one timed batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `set addr` for every slot.
    SetAddr,
    /// `set addr` + `set state ready` for every slot, as the planner emits them.
    AddrReady,
}

impl Form {
    fn label(self) -> String {
        match self {
            Form::SetAddr => format!("set addr x{}", BACKENDS * SLOTS),
            Form::AddrReady => format!("set addr + state ready x{}", 2 * BACKENDS * SLOTS),
        }
    }
}

/// The address of slot `i` (0-based over all backends) in run `round`.
fn slot_addr(round: usize, i: usize) -> SocketAddr {
    let r = u8::try_from(1 + round % 250).unwrap_or(1);
    let x = u8::try_from(i / 250).unwrap_or(u8::MAX);
    let y = u8::try_from(i % 250 + 1).unwrap_or(u8::MAX);
    let port = u16::try_from(10_000 + round % 50_000).unwrap_or(10_000);
    SocketAddr::from((Ipv4Addr::new(127, r, x, y), port))
}

/// Every (backend, slot) pair in config order.
fn slots(names: &[BackendName]) -> impl Iterator<Item = (usize, &BackendName, ServerName)> {
    names.iter().enumerate().flat_map(|(b, name)| {
        (1..=SLOTS).map(move |n| (b * SLOTS + n - 1, name, ServerName::slot(n)))
    })
}

fn batch(names: &[BackendName], form: Form, round: usize) -> Vec<Command> {
    let mut out = Vec::with_capacity(names.len() * SLOTS * 2);
    for (i, name, server) in slots(names) {
        out.push(Command::SetAddr {
            backend: name.clone(),
            server: server.clone(),
            addr: slot_addr(round, i),
        });
        if form == Form::AddrReady {
            out.push(Command::SetState {
                backend: name.clone(),
                server,
                state: Admin::Ready,
            });
        }
    }
    out
}

fn maint_all(names: &[BackendName]) -> Vec<Command> {
    slots(names)
        .map(|(_, name, server)| Command::SetState {
            backend: name.clone(),
            server,
            state: Admin::Maint,
        })
        .collect()
}

/// Who sends a timed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arm {
    /// The reference client ([`raw_pipelined`]).
    Raw,
    /// [`AdminClient::execute`], awaited by the runtime's `block_on` future: where `main.rs` runs
    /// the reconcile loop. (Awaited from a spawned task instead it measured the same, within
    /// the noise, in rate and in CPU.)
    Client,
}

const ARMS: [Arm; 2] = [Arm::Raw, Arm::Client];

impl Arm {
    fn label(self) -> &'static str {
        match self {
            Arm::Raw => "raw pipelined",
            Arm::Client => "AdminClient::execute",
        }
    }
}

pub struct Options {
    pub runs: usize,
}

/// Both forms, `options.runs` timed runs per client each, rotating which client goes first.
/// Leaves every slot in maint.
pub async fn run(proxy: &Proxy, report: &mut Report, options: &Options) -> anyhow::Result<()> {
    let names: Vec<BackendName> = (0..BACKENDS).map(backend).collect::<Result<_, _>>()?;
    let socket = proxy.admin_socket();
    let mut client = AdminClient::new(socket).with_timeout(BATCH_TIMEOUT);
    let mut round = 0;
    for form in [Form::SetAddr, Form::AddrReady] {
        let mut runs = Runs::default();
        let form_started = Instant::now();
        for run in 0..options.runs {
            if run >= MIN_RUNS && form_started.elapsed() > FORM_BUDGET {
                println!(
                    "apply: {}: stopping after {run} runs ({FORM_BUDGET:?} budget)",
                    form.label()
                );
                break;
            }
            let mut rates = [f64::NAN; 2];
            let mut cpu = [f64::NAN; 2];
            for a in 0..ARMS.len() {
                let arm = ARMS[(a + run) % ARMS.len()];
                round += 1;
                let cmds = batch(&names, form, round);
                let count = cmds.len() as f64;
                let cpu_before = self_cpu_ns();
                let started = Instant::now();
                let replies = match arm {
                    Arm::Raw => {
                        tokio::time::timeout(BATCH_TIMEOUT, raw_pipelined(socket, &cmds))
                            .await
                            .context("raw client: batch timed out")??;
                        None
                    }
                    Arm::Client => {
                        // On a worker thread, as swarm-lb's reconciler runs (spawned): the
                        // I/O driver wakes it without a hop to the thread blocking on main.
                        let (back, replies) = tokio::spawn(async move {
                            let replies = client.execute(&cmds).await;
                            (client, replies)
                        })
                        .await
                        .context("client task")?;
                        client = back;
                        Some(replies?)
                    }
                };
                rates[arm as usize] = count / started.elapsed().as_secs_f64();
                if let (Some(before), Some(after)) = (cpu_before, self_cpu_ns()) {
                    cpu[arm as usize] = after.saturating_sub(before) as f64 / 1e6;
                }
                if let Some(replies) = replies {
                    let refused = replies.iter().position(Result::is_err);
                    if let Some(Err(e)) = refused.map(|i| &replies[i]) {
                        bail!("HAProxy refused a command: {e}");
                    }
                } else if run == 0 {
                    // The raw client only counts prompts: check once that HAProxy took it all.
                    check_addresses(&mut client, &names, form, round).await?;
                }
                if form == Form::AddrReady {
                    // Untimed: every slot back to maint, so the next run changes every state.
                    let reset = maint_all(&names);
                    tokio::time::timeout(BATCH_TIMEOUT, raw_pipelined(socket, &reset))
                        .await
                        .context("raw client: reset timed out")??;
                    tokio::time::sleep(SETTLE).await;
                }
            }
            println!(
                "apply: {} run {}: raw {:.0}/s, client {:.0}/s",
                form.label(),
                run + 1,
                rates[Arm::Raw as usize],
                rates[Arm::Client as usize]
            );
            runs.rates.push(rates);
            runs.cpu_ms.push(cpu);
        }
        add_figures(report, form, &runs);
    }
    // An open session would keep the old worker alive after a reload.
    client.disconnect();
    Ok(())
}

/// `show servers state` agrees with the batch of `round` for every slot.
async fn check_addresses(
    client: &mut AdminClient,
    names: &[BackendName],
    form: Form,
    round: usize,
) -> anyhow::Result<()> {
    // Not `actual()`, which also reads a map: only the servers matter here.
    let replies = client
        .query(&[Query::ShowServersState { backend: None }])
        .await?;
    let text = match replies.into_iter().next() {
        Some(Ok(text)) => text,
        Some(Err(e)) => bail!("show servers state refused: {e}"),
        None => bail!("no reply to show servers state"),
    };
    let rows = codec::parse_servers_state(&text)?;
    let want_admin = match form {
        Form::SetAddr => 0x01,
        Form::AddrReady => 0x00,
    };
    let mut checked = 0;
    for row in rows.iter().filter(|r| !r.backend.is_internal()) {
        let b = names
            .binary_search(&row.backend)
            .map_err(|_| anyhow::anyhow!("unexpected backend {}", row.backend))?;
        let n = row
            .server
            .slot_index()
            .with_context(|| format!("unexpected server {}", row.server))?;
        let want = slot_addr(round, b * SLOTS + n - 1);
        ensure!(
            SocketAddr::new(row.addr, row.port) == want,
            "{}/{}: {}:{} after the raw batch, expected {want}",
            row.backend,
            row.server,
            row.addr,
            row.port
        );
        // Bit 0x04 (config `disabled`) stays set; compare the runtime maint bit only.
        ensure!(
            row.admin_state & 0x01 == want_admin,
            "{}/{}: admin state {:#x} after the raw batch",
            row.backend,
            row.server,
            row.admin_state
        );
        checked += 1;
    }
    ensure!(
        checked == BACKENDS * SLOTS,
        "{checked} slots read back, expected {}",
        BACKENDS * SLOTS
    );
    Ok(())
}

/// Per run (one batch per arm, back to back), indexed by `Arm as usize`.
#[derive(Debug, Default)]
struct Runs {
    /// Commands per second.
    rates: Vec<[f64; 2]>,
    /// CPU time this process spent on the batch (client side: encode, write, read, check).
    cpu_ms: Vec<[f64; 2]>,
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

fn add_figures(report: &mut Report, form: Form, runs: &Runs) {
    let label = form.label();
    let n = runs.rates.len();
    let raw = Arm::Raw as usize;
    let column = |rows: &[[f64; 2]], arm: Arm| sorted(rows.iter().map(|r| r[arm as usize]));
    let mut best = [f64::NAN; 2];
    for arm in ARMS {
        let rates = column(&runs.rates, arm);
        best[arm as usize] = rates.last().copied().unwrap_or(f64::NAN);
        let name = arm.label();
        report.add(
            GROUP,
            &format!("{label}: {name}, best of {n}"),
            best[arm as usize].round(),
            "cmd/s",
        );
        report.add(
            GROUP,
            &format!("{label}: {name}, median of {n}"),
            percentile(&rates, 50.0).round(),
            "cmd/s",
        );
        let cpu = column(&runs.cpu_ms, arm);
        report.add(
            GROUP,
            &format!("{label}: {name}, client-side CPU per batch, median"),
            (percentile(&cpu, 50.0) * 10.0).round() / 10.0,
            "ms",
        );
    }
    let target = format!(">= {:.0}", TARGET_RATIO * 100.0);
    let client = Arm::Client as usize;
    // Each run's batches ran back to back: the ratio within a run is the least disturbed by a
    // machine whose load drifts.
    let paired = sorted(runs.rates.iter().map(|r| r[client] / r[raw]));
    for (what, ratio) in [
        ("median of per-run ratios", percentile(&paired, 50.0)),
        ("best / best", best[client] / best[raw]),
    ] {
        report.add_target(
            GROUP,
            &format!("{label}: AdminClient::execute / raw, {what}"),
            (ratio * 1000.0).round() / 10.0,
            "%",
            &target,
            ratio >= TARGET_RATIO,
        );
    }
}

/// The reference: a fresh connection in prompt mode, every command encoded into one buffer and
/// written in one loop, while a concurrent reader only counts prompts. Writer and reader run
/// joined in one spawned task, on a worker thread, where tokio's I/O driver wakes them without
/// a cross-thread hop (splitting them into two tasks measured no faster and cost more CPU).
pub async fn raw_pipelined(socket: &Path, cmds: &[Command]) -> anyhow::Result<()> {
    let mut payload = String::with_capacity(cmds.len() * 64 + 8);
    payload.push_str("prompt\n");
    for cmd in cmds {
        codec::encode_into(cmd, &mut payload);
        payload.push('\n');
    }
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let (mut rd, mut wr) = stream.into_split();
    // One prompt after `prompt` itself, then one per command.
    let want = cmds.len() + 1;
    let read = async move {
        let mut buf = vec![0u8; 1 << 16];
        let (mut seen, mut state) = (0usize, 0u8);
        while seen < want {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("closed after {seen} of {want} prompts"),
                ));
            }
            seen += count_prompts(&buf[..n], &mut state);
        }
        Ok(())
    };
    let write = async move {
        wr.write_all(payload.as_bytes()).await?;
        // Keep the write half (and so the connection) open until the reader is done.
        Ok::<_, std::io::Error>(wr)
    };
    tokio::spawn(async move { tokio::try_join!(write, read) }).await??;
    Ok(())
}

/// Counts `"\n> "` in a stream read piece by piece; `state` carries a partial match (0..=2
/// bytes of the delimiter) from one piece to the next.
fn count_prompts(piece: &[u8], state: &mut u8) -> usize {
    let mut count = 0;
    for &byte in piece {
        *state = match (*state, byte) {
            (_, b'\n') => 1,
            (1, b'>') => 2,
            (2, b' ') => {
                count += 1;
                0
            }
            _ => 0,
        };
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_counted_across_any_cut_of_the_stream() {
        let stream = b"\n> IP changed\n\n> \n> a > b\n>x\n> ";
        for cut in 0..stream.len() {
            let mut state = 0;
            let n = count_prompts(&stream[..cut], &mut state)
                + count_prompts(&stream[cut..], &mut state);
            assert_eq!(n, 4, "cut at {cut}");
        }
    }

    #[test]
    fn every_slot_of_a_round_gets_its_own_loopback_address() {
        let names: Vec<BackendName> = (0..BACKENDS).map(|b| backend(b).expect("name")).collect();
        let cmds = batch(&names, Form::SetAddr, 7);
        let addrs: std::collections::BTreeSet<SocketAddr> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::SetAddr { addr, .. } => Some(*addr),
                _ => None,
            })
            .collect();
        assert_eq!(addrs.len(), BACKENDS * SLOTS);
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        assert_eq!(
            batch(&names, Form::AddrReady, 7).len(),
            2 * BACKENDS * SLOTS
        );
    }
}
