//! The effect shell. One [`Reconciler::pass`] reads the whole desired state (from a Swarm
//! snapshot) and HAProxy's actual state, plans, applies (network attachments, runtime commands,
//! files, and a reload only when the plan says so), then re-reads HAProxy so that the files on
//! disk describe exactly what it holds. [`run`] drives passes: on every snapshot change (bursts
//! coalesce), on a resync timer, and when HAProxy restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::haproxy::codec::{ReplyError, Version};
use crate::haproxy::render::{self, Files, FilesError, RenderSettings};
use crate::haproxy::{ClientError, Command, Master, MasterError, ProxyState, Runtime};
use crate::model::{
    self, BackendName, BackendOptions, Desired, NetworkId, Route, ServiceId, Snapshot,
};
use crate::observe::changes::{self, ReloadReason};
use crate::observe::{Convergence, Observer};
use crate::plan::{self, Plan, PlanSettings};
use crate::swarm::{self, SwarmError};

/// How changes reach HAProxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Runtime API for routine changes; config write + reload only when a backend appears or
    /// disappears. The product.
    Runtime,
    /// Every change rewrites the config and reloads, as reload-based drivers do. For benchmarks.
    Reload,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub model: model::Settings,
    pub plan: PlanSettings,
    pub render: RenderSettings,
    /// The HAProxy container to attach to routed services' networks (none: attach nothing).
    pub haproxy_container: Option<String>,
    /// Networks (names or ids) the driver never detaches the container from.
    pub keep_networks: BTreeSet<String>,
    pub reload_timeout: Duration,
    pub strategy: Strategy,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Master(#[from] MasterError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    #[error("{failed} of {total} runtime commands refused; first: {first}")]
    Refused {
        failed: usize,
        total: usize,
        first: ReplyError,
    },
}

impl ReconcileError {
    /// A retry soon may succeed (socket away during a reload, Docker briefly unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Client(e) => e.is_transient(),
            ReconcileError::Master(e) => e.is_transient(),
            ReconcileError::Swarm(e) => e.is_transient(),
            // The next pass re-reads and re-plans; a refusal that persists is reported again.
            ReconcileError::Refused { .. } => true,
            ReconcileError::Files(_) => false,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub commands: usize,
    pub reloads: usize,
    pub attached: usize,
    pub detached: usize,
    pub files_written: bool,
}

impl Report {
    pub fn changed(&self) -> bool {
        self.commands > 0 || self.reloads > 0 || self.attached > 0 || self.detached > 0
    }
}

pub struct Reconciler {
    settings: Settings,
    runtime: Runtime,
    master: Master,
    files: Files,
    docker: Option<swarm::Docker>,
    last_good: BTreeMap<ServiceId, Route>,
    /// Problems already logged, so a bad label is reported when it appears, not every pass.
    reported: BTreeSet<String>,
    /// The files' content as last written (or read at start).
    written: Option<(String, String)>,
    /// HAProxy's identity (pid) and whether it takes `add server`, learnt from `show info`.
    proxy: Option<(u32, Version)>,
    /// The last write of the files, still running on the blocking pool: the pass does not
    /// wait for its fsyncs (20-90 ms on a busy disk); the next write, a reload or
    /// [`Reconciler::flush`] does.
    writing: Option<tokio::task::JoinHandle<Result<(), FilesError>>>,
    /// The HAProxy container's networks (id, name) as last inspected or changed by this
    /// driver, and when inspected: an inspection per pass cost 2-11 ms.
    networks: Option<(BTreeSet<(NetworkId, String)>, Instant)>,
    /// Each backend's balancing options as in the config HAProxy loaded: the Runtime API
    /// cannot show them, so they are laid over what it reads back.
    loaded: BTreeMap<BackendName, BackendOptions>,
    /// Whether the config HAProxy loaded was rendered from the current template: after an
    /// upgrade of swarm-lb (or a changed --template, --bind...) it is not, and the frontend
    /// HAProxy runs may not read the map the way this version writes it: one reload.
    template_loaded: bool,
    /// Metrics, health and status, shared with the HTTP handlers.
    observer: Arc<Observer>,
    convergence: Convergence,
}

/// Applied changes logged one line each per pass, at most; the rest are counted.
const CHANGES_LOGGED: usize = 200;

/// How long the HAProxy container's networks are trusted without inspecting it again (a
/// network someone detached by hand is re-attached within this).
const NETWORKS_TTL: Duration = Duration::from_secs(10);

impl Reconciler {
    pub fn new(
        settings: Settings,
        runtime: Runtime,
        master: Master,
        files: Files,
        docker: Option<swarm::Docker>,
    ) -> Self {
        let written = files.read().ok();
        // The last config HAProxy accepted from this driver, else the one on disk.
        let good = std::fs::read_to_string(Files::good_path(&files.config_path())).ok();
        let loaded_config = good
            .as_deref()
            .or(written.as_ref().map(|(config, _)| config.as_str()));
        let loaded = loaded_config
            .map(render::backend_options)
            .unwrap_or_default();
        let template_loaded =
            loaded_config.map_or(true, |c| render::from_template(c, &settings.render));
        Self {
            settings,
            runtime,
            master,
            files,
            docker,
            last_good: BTreeMap::new(),
            reported: BTreeSet::new(),
            written,
            proxy: None,
            writing: None,
            networks: None,
            loaded,
            template_loaded,
            observer: Arc::new(Observer::default()),
            convergence: Convergence::default(),
        }
    }

    /// Report to `observer` (shared with the HTTP listener and the watcher) instead of a
    /// private one.
    pub fn with_observer(mut self, observer: Arc<Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Where this reconciler reports its metrics and health.
    pub fn observer(&self) -> &Arc<Observer> {
        &self.observer
    }

    pub fn runtime(&mut self) -> &mut Runtime {
        &mut self.runtime
    }

    pub fn set_strategy(&mut self, strategy: Strategy) {
        self.settings.strategy = strategy;
    }

    /// The routing Swarm asks for; logs label problems once, when they appear.
    pub fn desired(&mut self, snap: &Snapshot) -> Desired {
        let desired = model::desired(snap, &self.settings.model, &self.last_good);
        let mut now = BTreeSet::new();
        for e in &desired.errors {
            let msg = e.to_string();
            if !self.reported.contains(&msg) {
                error!(error = %msg, "service not routed as labelled");
            }
            now.insert(msg);
        }
        for w in &desired.warnings {
            let msg = w.to_string();
            if !self.reported.contains(&msg) {
                warn!(warning = %msg, "label not applied");
            }
            now.insert(msg);
        }
        for n in &desired.notices {
            let msg = n.to_string();
            if !self.reported.contains(&msg) {
                info!(service = n.service(), notice = %msg, "service not routed");
            }
            now.insert(msg);
        }
        self.reported = now;
        self.last_good = desired.routes.clone();
        self.observer.problems(&desired, snap);
        desired
    }

    /// Read HAProxy (and the container's managed networks) and plan, without applying.
    pub async fn plan(
        &mut self,
        snap: &Snapshot,
    ) -> Result<(Desired, ProxyState, Plan), ReconcileError> {
        let desired = self.desired(snap);
        self.learn_proxy().await?;
        let actual = self.actual().await?;
        let attached = self.managed_networks(snap, &desired).await?;
        let mut plan = plan::plan(&actual, &attached, &desired, &self.plan_settings());
        if !self.template_loaded && !plan.reload {
            info!(
                "haproxy runs a config from another template or settings (an upgrade?); one reload"
            );
            plan.reload = true;
        }
        Ok((desired, actual, plan))
    }

    /// One level-triggered pass: plan from the whole state, apply, re-read, write the files.
    /// Its outcome, duration and convergence go to the observer.
    pub async fn pass(&mut self, snap: &Snapshot) -> Result<Report, ReconcileError> {
        let started = Instant::now();
        let result = self.apply_pass(snap, started).await;
        if let Err(e) = &result {
            let haproxy_down = matches!(e, ReconcileError::Client(c) if c.is_transient());
            self.observer.pass_failed(&e.to_string(), haproxy_down);
        }
        result
    }

    /// After a successful pass that left HAProxy as `state`: metrics, and convergence of the
    /// tasks and events it completed (`changed`: the backends it changed).
    fn observe_pass(
        &mut self,
        snap: &Snapshot,
        state: &ProxyState,
        changed: &BTreeSet<String>,
        started: Instant,
    ) {
        let now = SystemTime::now();
        let observer = &self.observer;
        let convergence = &mut self.convergence;
        let samples =
            observer.with_task_times(|times| convergence.observe(snap, state, times, now));
        observer.converged(&samples);
        if !changed.is_empty() {
            let ids = snap
                .services
                .iter()
                .filter(|s| changed.contains(&s.name))
                .map(|s| s.id.clone())
                .collect();
            observer.applied(&ids, now);
        }
        observer.pass_ok(state, started.elapsed());
    }

    async fn apply_pass(
        &mut self,
        snap: &Snapshot,
        started: Instant,
    ) -> Result<Report, ReconcileError> {
        let (_, actual, plan) = self.plan(snap).await?;
        let mut report = Report::default();
        if plan.is_empty() {
            // The files must still say what HAProxy holds (first pass after a restart, say).
            report.files_written = self.write_files(&actual, false).await?;
            self.observe_pass(snap, &actual, &BTreeSet::new(), started);
            return Ok(report);
        }
        self.attach(&plan.attach).await?;
        report.attached = plan.attach.len();

        let by_strategy = self.settings.strategy == Strategy::Reload;
        let reload = plan.reload || by_strategy;
        log_changes(snap, &actual, &plan.target);
        if self.settings.strategy == Strategy::Runtime {
            self.execute(&plan.runtime).await?;
            report.commands = plan.runtime.len();
        }
        if reload {
            let reason = changes::reload_reason(&actual, &plan.target, by_strategy);
            info!(reason = %reason, backends = plan.target.backends.len(), "reloading haproxy");
            self.reload(&plan.target, reason).await?;
            report.reloads = 1;
        }
        // Re-read: the files describe what HAProxy holds, not what we hoped it would.
        let now = self.actual().await?;
        report.files_written = self.write_files(&now, false).await?;
        if now != plan.target {
            debug!("haproxy differs from the plan target after applying (a reload renders drained servers as maint); next pass checks it");
        }

        self.detach(&plan.detach).await?;
        report.detached = plan.detach.len();
        self.observe_pass(
            snap,
            &now,
            &changes::changed_backends(&actual, &plan.target),
            started,
        );
        info!(
            summary = %plan.summary(),
            commands = report.commands,
            reloads = report.reloads,
            attached = report.attached,
            detached = report.detached,
            took_us = started.elapsed().as_micros() as u64,
            "plan applied"
        );
        Ok(report)
    }

    fn plan_settings(&self) -> PlanSettings {
        let mut s = self.settings.plan.clone();
        // `add server` is GA from 2.6; older versions grow by reload.
        s.add_server = s.add_server
            && self
                .proxy
                .is_some_and(|(_, v)| (v.major, v.minor) >= (2, 6));
        s
    }

    /// What HAProxy holds: its runtime state with the options of the config it loaded.
    async fn actual(&mut self) -> Result<ProxyState, ReconcileError> {
        let mut state = self.runtime.actual(&self.settings.plan.hosts_map).await?;
        for (name, backend) in &mut state.backends {
            backend.options = self.loaded.get(name).cloned().unwrap_or_default();
        }
        Ok(state)
    }

    /// A new worker loaded the files on disk, which are what `written` says (after a reload
    /// by this driver, its target): their backend options are now HAProxy's.
    fn learn_loaded(&mut self) {
        if let Some((config, _)) = &self.written {
            self.loaded = render::backend_options(config);
            self.template_loaded = render::from_template(config, &self.settings.render);
        }
    }

    /// `show info`: notice a restarted HAProxy (new pid) and learn its version.
    async fn learn_proxy(&mut self) -> Result<(), ReconcileError> {
        let info = self.runtime.info().await?;
        let v = info.version;
        self.observer
            .haproxy(Some(format!("{}.{}.{}", v.major, v.minor, v.patch)));
        match self.proxy {
            Some((pid, _)) if pid == info.pid => {}
            Some((pid, _)) => {
                info!(old_pid = pid, new_pid = info.pid, "haproxy worker changed");
                self.learn_loaded();
            }
            None => {
                let v = info.version;
                info!(pid = info.pid, version = %format!("{}.{}.{}", v.major, v.minor, v.patch), "haproxy found");
            }
        }
        self.proxy = Some((info.pid, info.version));
        Ok(())
    }

    /// The networks the driver manages on the HAProxy container: overlay networks other than
    /// ingress and the kept ones. Without a container, the desired ones (nothing to attach).
    async fn managed_networks(
        &mut self,
        snap: &Snapshot,
        desired: &Desired,
    ) -> Result<BTreeSet<NetworkId>, ReconcileError> {
        let (Some(docker), Some(container)) = (&self.docker, &self.settings.haproxy_container)
        else {
            return Ok(desired.networks.clone());
        };
        let on = match &self.networks {
            Some((on, at)) if at.elapsed() < NETWORKS_TTL => on.clone(),
            _ => {
                let on: BTreeSet<(NetworkId, String)> = docker
                    .container_networks(container)
                    .await?
                    .into_iter()
                    .collect();
                self.networks = Some((on.clone(), Instant::now()));
                on
            }
        };
        let keep = &self.settings.keep_networks;
        Ok(on
            .into_iter()
            .filter(|(id, name)| {
                let overlay = snap
                    .networks
                    .iter()
                    .any(|n| &n.id == id && n.driver == "overlay" && !n.ingress);
                overlay && !keep.contains(id) && !keep.contains(name)
            })
            .map(|(id, _)| id)
            .collect())
    }

    async fn attach(&mut self, networks: &[NetworkId]) -> Result<(), ReconcileError> {
        let (Some(docker), Some(container)) = (&self.docker, &self.settings.haproxy_container)
        else {
            return Ok(());
        };
        if !networks.is_empty() {
            // Attached or not, the next pass looks again.
            self.networks = None;
        }
        // One network that cannot be joined must not hold back every other service: its own
        // routes stay unreachable and the error names it; the next pass tries again.
        for network in networks {
            match docker.connect_network(network, container).await {
                Ok(()) => {
                    info!(network = %network, container = %container, "haproxy attached to network")
                }
                Err(e) => {
                    error!(network = %network, container = %container, error = %e, "cannot attach haproxy to network")
                }
            }
        }
        Ok(())
    }

    async fn detach(&mut self, networks: &[NetworkId]) -> Result<(), ReconcileError> {
        let (Some(docker), Some(container)) = (&self.docker, &self.settings.haproxy_container)
        else {
            return Ok(());
        };
        if !networks.is_empty() {
            self.networks = None;
        }
        for network in networks {
            match docker.disconnect_network(network, container).await {
                Ok(()) => {
                    info!(network = %network, container = %container, "haproxy detached from network")
                }
                Err(e) => {
                    warn!(network = %network, container = %container, error = %e, "cannot detach haproxy from network")
                }
            }
        }
        Ok(())
    }

    async fn execute(&mut self, cmds: &[Command]) -> Result<(), ReconcileError> {
        if cmds.is_empty() {
            return Ok(());
        }
        let replies = match self.runtime.execute(cmds).await {
            Ok(r) => r,
            Err(e) => {
                for cmd in cmds {
                    self.observer.command(changes::command_kind(cmd), "error");
                }
                return Err(e.into());
            }
        };
        for (cmd, reply) in cmds.iter().zip(&replies) {
            let outcome = if reply.is_ok() { "ok" } else { "refused" };
            self.observer.command(changes::command_kind(cmd), outcome);
        }
        let mut refused = replies.into_iter().filter_map(Result::err);
        if let Some(first) = refused.next() {
            let failed = 1 + refused.count();
            return Err(ReconcileError::Refused {
                failed,
                total: cmds.len(),
                first,
            });
        }
        Ok(())
    }

    /// Write `target`, reload, and on failure put the last good files back.
    async fn reload(
        &mut self,
        target: &ProxyState,
        reason: ReloadReason,
    ) -> Result<(), ReconcileError> {
        self.write_files(target, true).await?;
        let result = self.master.reload(self.settings.reload_timeout).await;
        self.observer.reload(reason, result.is_ok());
        // The old session would keep the old worker alive.
        self.runtime.disconnect();
        match result {
            Ok(r) => {
                // Master::reload logs the reload itself.
                self.learn_loaded();
                self.on_files(Files::save_good).await?;
                self.reach_worker(r.new_worker).await
            }
            Err(e) => {
                error!(error = %e, "reload failed; restoring the last good config");
                self.on_files(Files::restore_good).await?;
                self.written = self.files.read().ok();
                Err(e.into())
            }
        }
    }

    /// Make the admin session talk to the new worker. The stats socket is handed over from
    /// the old worker (`expose-fd listeners`), so until the old one stops listening a new
    /// connection may still land on it, and commands sent there would be lost with it.
    async fn reach_worker(&mut self, pid: u32) -> Result<(), ReconcileError> {
        let deadline = Instant::now() + self.settings.reload_timeout;
        loop {
            match self.runtime.info().await {
                Ok(info) if info.pid == pid => return Ok(()),
                Ok(info) => debug!(
                    pid = info.pid,
                    want = pid,
                    "admin session reached the old worker"
                ),
                Err(e) => debug!(error = %e, "admin socket not ready after reload"),
            }
            self.runtime.disconnect();
            if Instant::now() >= deadline {
                return Err(ReconcileError::Client(ClientError::Timeout {
                    path: self.runtime.path().to_owned(),
                    timeout_ms: self.settings.reload_timeout.as_millis() as u64,
                }));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Render the files and, when their content changes, start writing them on the blocking
    /// pool (after any write still running). Returns whether it writes. `wait`: return once
    /// the files are on disk (before a reload).
    async fn write_files(&mut self, state: &ProxyState, wait: bool) -> Result<bool, FilesError> {
        let config = render::config(state, &self.settings.render);
        let map = render::hosts_map(state);
        let changed = !self
            .written
            .as_ref()
            .is_some_and(|(c, m)| *c == config && *m == map);
        if changed {
            self.flush().await?;
            let files = self.files.clone();
            let text = (config, map);
            self.written = Some(text.clone());
            self.writing = Some(tokio::task::spawn_blocking(move || {
                files.write_text(&text.0, &text.1)?;
                debug!(config = %files.config_path().display(), "files written");
                Ok(())
            }));
        }
        if wait {
            self.flush().await?;
        }
        Ok(changed)
    }

    /// Wait for the files being written, if any. A failed write is reported here, and the
    /// next pass writes them again.
    pub async fn flush(&mut self) -> Result<(), FilesError> {
        let Some(writing) = self.writing.take() else {
            return Ok(());
        };
        let result = self.joined(writing.await);
        if result.is_err() {
            self.written = None;
        }
        result
    }

    /// Run `f` on the files on the blocking pool, after any write still running.
    async fn on_files(
        &mut self,
        f: fn(&Files) -> Result<(), FilesError>,
    ) -> Result<(), FilesError> {
        self.flush().await?;
        let files = self.files.clone();
        let done = tokio::task::spawn_blocking(move || f(&files)).await;
        self.joined(done)
    }

    /// A file task's outcome; a task that panicked is an error on the config dir.
    fn joined(
        &self,
        done: Result<Result<(), FilesError>, tokio::task::JoinError>,
    ) -> Result<(), FilesError> {
        done.unwrap_or_else(|e| {
            Err(FilesError {
                path: self.files.dir().to_owned(),
                source: std::io::Error::other(format!("file task failed: {e}")),
            })
        })
    }
}

/// Write an empty config if there is none, so that HAProxy can start before the first pass.
pub fn bootstrap_config(files: &mut Files, settings: &Settings) -> Result<bool, FilesError> {
    if files.config_path().exists() {
        return Ok(false);
    }
    let empty = ProxyState::default();
    files.write_text(
        &render::config(&empty, &settings.render),
        &render::hosts_map(&empty),
    )?;
    files.save_good()?;
    Ok(true)
}

/// When passes run.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Full pass even without a change: HAProxy-side drift is caught here.
    pub resync: Duration,
    /// How often `show info` checks that HAProxy is the same process.
    pub proxy_check: Duration,
    /// Minimum gap between two passes, so bursts coalesce.
    pub debounce: Duration,
    /// Retry delay after a failed pass, doubled up to `max_retry`.
    pub retry: Duration,
    pub max_retry: Duration,
}

/// Run passes forever: on each snapshot change, on the resync timer, when HAProxy restarts,
/// and after failures with capped backoff.
pub async fn run(
    mut reconciler: Reconciler,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    timing: Timing,
) {
    let mut resync = tokio::time::interval(timing.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut proxy_check = tokio::time::interval(timing.proxy_check);
    proxy_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = timing.retry;
    let mut pending = true;
    let mut pass_no: u64 = 0;
    loop {
        reconciler.observer.beat();
        if !pending {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        info!("snapshot source ended; stopping");
                        return;
                    }
                }
                _ = resync.tick() => {}
                _ = proxy_check.tick() => {
                    if !reconciler.proxy_is_same().await {
                        info!("haproxy changed or unreachable; reconciling");
                    } else {
                        continue;
                    }
                }
            }
        }
        let snap = snapshots.borrow_and_update().clone();
        reconciler.observer.snapshot(snap.clone());
        pass_no += 1;
        let span = info_span!("pass", n = pass_no);
        match reconciler.pass(&snap).instrument(span).await {
            Ok(_) => {
                pending = false;
                retry = timing.retry;
                if !timing.debounce.is_zero() {
                    tokio::time::sleep(timing.debounce).await;
                }
            }
            Err(e) => {
                if e.is_transient() {
                    warn!(error = %e, retry_ms = retry.as_millis() as u64, "pass failed; retrying");
                } else {
                    error!(error = %e, retry_ms = retry.as_millis() as u64, "pass failed");
                }
                pending = true;
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(timing.max_retry);
            }
        }
    }
}

impl Reconciler {
    /// Cheap liveness check: is HAProxy's worker the one the last pass saw?
    pub async fn proxy_is_same(&mut self) -> bool {
        match self.runtime.info().await {
            Ok(info) => {
                let v = info.version;
                self.observer
                    .haproxy(Some(format!("{}.{}.{}", v.major, v.minor, v.patch)));
                self.proxy.is_some_and(|(pid, _)| pid == info.pid)
            }
            Err(_) => {
                self.observer.haproxy(None);
                false
            }
        }
    }
}

/// One info line per server and host entry the plan changes (the first [`CHANGES_LOGGED`];
/// the rest are counted in one line): which service, task, slot, address and state.
fn log_changes(snap: &Snapshot, actual: &ProxyState, target: &ProxyState) {
    for b in target
        .backends
        .keys()
        .filter(|b| !actual.backends.contains_key(*b))
    {
        info!(service = %b, slots = target.backends[b].servers.len(), "backend created");
    }
    for b in actual
        .backends
        .keys()
        .filter(|b| !target.backends.contains_key(*b))
    {
        info!(service = %b, "backend removed");
    }
    let servers = changes::server_changes(actual, target, snap);
    let hosts = changes::host_changes(actual, target);
    let total = servers.len() + hosts.len();
    for c in servers.iter().take(CHANGES_LOGGED) {
        let old_addr = c.old_addr.map_or_else(|| "-".to_owned(), |a| a.to_string());
        let old_state = c.old_state.map_or("-", changes::admin_name);
        info!(
            service = %c.service,
            slot = %c.slot,
            task = c.task.as_deref().unwrap_or("-"),
            addr = %format!("{old_addr} -> {}", c.new_addr),
            state = %format!("{old_state} -> {}", changes::admin_name(c.new_state)),
            "server changed"
        );
    }
    for h in hosts
        .iter()
        .take(CHANGES_LOGGED.saturating_sub(servers.len()))
    {
        info!(
            route = %h.host,
            to = %format!("{} -> {}", h.old.as_deref().unwrap_or("-"), h.new.as_deref().unwrap_or("-")),
            "route changed"
        );
    }
    if total > CHANGES_LOGGED {
        info!(
            more = total - CHANGES_LOGGED,
            "further changes not logged one by one"
        );
    }
}
