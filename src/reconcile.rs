//! The effect shell. One [`Reconciler::pass`] reads the whole desired state (from a Swarm
//! snapshot) and HAProxy's actual state, plans, applies (network attachments, runtime commands,
//! files, and a reload only when the plan says so), then re-reads HAProxy so that the files on
//! disk describe exactly what it holds. [`run`] drives passes: on every snapshot change (bursts
//! coalesce), on a resync timer, and when HAProxy restarts.
//!
//! The parts, one job each: [`control`] (when passes run), `labels` (last good routes, problems
//! logged once), `files` (the background file writer, and the backend options HAProxy
//! loaded), `networks` (the HAProxy container's networks), `hold` (a reload HAProxy refused,
//! held back), `retire` (backends retired at runtime, logged once), `known` (what the last pass left in HAProxy, for incremental reads), [`tls`]
//! (certificates read, checked, pushed and mirrored), [`auth`] (basic-auth user lists read,
//! checked and put in force) and [`secrets`] (Docker secrets copied into `--secrets-dir`). [`Reconciler`] ties them to the admin and master sockets.

pub mod acme;
pub mod auth;
mod control;
mod files;
mod hold;
mod known;
mod labels;
mod networks;
mod retire;
pub mod secrets;
mod stamp;
pub mod tls;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::{debug, info};

use crate::fields;
use crate::haproxy::codec::{ReplyError, Version};
use crate::haproxy::render::{self, Files, FilesError, RenderSettings};
use crate::haproxy::{
    AdminClient, BackendState, Capabilities, ClientError, Command, Feature, Master, MasterError,
    ProxyState,
};
use crate::model::{self, BackendOptions, Desired, Mode, Snapshot};
use crate::observe::changes::{self, ReloadReason};
use crate::observe::{Convergence, Observer};
use crate::plan::{self, Plan, PlanSettings, RuntimeBackends};
use crate::swarm::{self, SwarmError};

pub use control::{run, Passes, Timing};
use files::FileWriter;
use labels::LabelMemory;
use networks::NetworkAttacher;
use retire::Retirements;

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
    /// After a reload, the admin socket kept answering from another worker (the old one,
    /// whose listeners the new one had not taken over yet) until the deadline.
    #[error("after the reload, the admin socket still reached worker {answered}, not the new worker {want}, after {timeout_ms} ms")]
    WorkerNotReached {
        want: u32,
        answered: u32,
        timeout_ms: u64,
    },
    /// The reload this pass needs is the one HAProxy refused (the error logged then says
    /// why); runtime changes were applied, the reload waits (see `reconcile/hold.rs`).
    #[error("reload held back {wait_ms} ms more: HAProxy refused the same configuration {times} time(s) (the refusal logged before says why); runtime changes applied")]
    ReloadHeld { wait_ms: u64, times: u32 },
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
            ReconcileError::WorkerNotReached { .. } => true,
            // Passes go on (runtime changes); the reload itself waits in the hold.
            ReconcileError::ReloadHeld { .. } => true,
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
    /// A backend that goes was kept by this pass (see [`retire::RETIRE_AFTER`]): run a pass
    /// after this long, which retires it.
    pub next_pass_in: Option<Duration>,
}

impl Report {
    pub fn changed(&self) -> bool {
        self.commands > 0 || self.reloads > 0 || self.attached > 0 || self.detached > 0
    }
}

/// One pass's worth of effects, each part with one job: the admin and master sockets, the
/// label memory, the file writer and the network attacher, plus which HAProxy this is.
pub struct Reconciler {
    settings: Settings,
    admin: AdminClient,
    master: Master,
    labels: LabelMemory,
    files: FileWriter,
    networks: NetworkAttacher,
    /// HAProxy's identity (worker pid) and version, learnt from `show info`.
    proxy: Option<Proxy>,
    /// Metrics, health and status, shared with the HTTP handlers.
    observer: Arc<Observer>,
    convergence: Convergence,
    /// The backends the last passes found as desired (see [`plan::PlanCache`]).
    plan_cache: plan::PlanCache,
    /// The HTTPS bind's certificates (`None`: no HTTPS, or tests without it).
    tls: Option<tls::TlsCerts>,
    /// Basic-auth user lists (`None`: no secrets directory; a service with `auth_basic` then
    /// lets nobody in).
    auth: Option<auth::AuthLists>,
    acme: Option<acme::AcmeCerts>,
    /// A reload HAProxy refused, held back until what it loads changes or its wait is over.
    hold: hold::ReloadHold,
    /// Backends being retired at runtime (3.4+) whose retirement or wait was already logged.
    retirements: Retirements,
    /// The certificate problems of the last pass (status and metrics show them).
    cert_problems: Vec<model::LabelError>,
    /// When HAProxy is read in full, and what the last pass left in it (see [`known`]).
    reads: known::Reads,
}

/// How often HAProxy is read in full at least, unless [`Reconciler::set_full_read_every`]
/// says otherwise (the daemon passes its `--resync`).
pub const FULL_READ_EVERY: Duration = Duration::from_secs(30);

/// What reaching HAProxy may do when its admin socket has nobody listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Fail with the socket's error: `swarm-lb plan` and any other read changes nothing.
    ReadOnly,
    /// Reload the last good files if the master still runs a worker (a pass).
    MayReload,
}

/// Applied changes logged one line each per pass, at most; the rest are counted.
const CHANGES_LOGGED: usize = 200;

/// The HAProxy worker the last pass talked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proxy {
    pid: u32,
    version: Version,
}

impl Reconciler {
    pub fn new(
        settings: Settings,
        admin: AdminClient,
        master: Master,
        files: Files,
        docker: Option<swarm::Docker>,
    ) -> Self {
        let networks = NetworkAttacher::new(
            docker,
            settings.haproxy_container.clone(),
            settings.keep_networks.clone(),
        );
        Self {
            files: FileWriter::new(files, settings.render.clone()),
            networks,
            labels: LabelMemory::default(),
            admin,
            master,
            proxy: None,
            observer: Arc::new(Observer::default()),
            convergence: Convergence::default(),
            plan_cache: plan::PlanCache::default(),
            tls: None,
            auth: None,
            acme: None,
            hold: hold::ReloadHold::default(),
            retirements: Retirements::default(),
            cert_problems: Vec::new(),
            reads: known::Reads::new(FULL_READ_EVERY),
            settings,
        }
    }

    /// Read HAProxy in full at least this often (the resync); passes between plan from
    /// what the last pass left and re-read only what they touched.
    pub fn set_full_read_every(&mut self, every: Duration) {
        self.reads.set_every(every);
    }

    /// The next pass reads HAProxy in full and compares it with what was known (the resync
    /// timer calls this).
    pub fn read_everything_next(&mut self) {
        self.reads.read_everything_next();
    }

    /// Keep the HTTPS bind's certificates in step with the TLS labels (see [`tls`]).
    pub fn with_tls(mut self, tls: tls::TlsCerts) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Read basic-auth user lists from their secrets (see [`auth`]); the lists HAProxy
    /// loaded (the config on disk) stand until the secrets are read.
    pub fn with_auth(mut self, mut lists: auth::AuthLists) -> Self {
        lists.seed(self.files.loaded_userlist_entries());
        self.auth = Some(lists);
        self
    }

    /// Automatic certificates (see [`acme`]): name sets wanted from the worker, the ones
    /// Swarm holds served like labelled pairs, the challenge map kept in step.
    pub fn with_acme(mut self, acme: acme::AcmeCerts) -> Self {
        self.acme = Some(acme);
        self
    }

    /// The ACME worker's handle, if `--acme` is on (a pass runs when it reports a change).
    pub fn acme_handle(&self) -> Option<&crate::acme::worker::AcmeHandle> {
        self.acme.as_ref().map(acme::AcmeCerts::handle)
    }

    /// The ACME step of planning: before the certificates' and the user lists' secrets are
    /// asked of the delivery, the certificates Swarm holds for `ssl_acme` services join them.
    fn settle_acme(&self, desired: &mut Desired) {
        if let Some(acme) = &self.acme {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            acme.settle(desired, now);
        }
    }

    /// The challenge-map step of a pass; its own failures are logged, never fail the pass.
    async fn apply_acme(&mut self, desired: &Desired) -> usize {
        let Some(acme) = self.acme.as_mut() else {
            return 0;
        };
        match acme.apply(&mut self.admin, desired).await {
            Ok(n) => n,
            Err(e) => {
                info!(error = %e, "ACME challenge map not brought in step; the next pass retries");
                0
            }
        }
    }

    /// The secrets delivery the certificates and user lists wait on, if any.
    pub fn delivery(&self) -> Option<&secrets::DeliveryHandle> {
        self.tls
            .as_ref()
            .and_then(|t| t.delivery())
            .or_else(|| self.auth.as_ref().and_then(|a| a.delivery()))
    }

    /// The basic-auth step of planning: each service's list in force into `desired`'s hosts
    /// map, the lists into the files' settings.
    fn settle_auth(&mut self, desired: &mut Desired) {
        if let Some(auth) = self.auth.as_mut() {
            let lists = auth.settle(desired, self.files.loaded_userlists());
            self.files.set_userlists(lists);
        }
    }

    /// Load the user lists HAProxy lacks (`missing`, secret names) by one reload of the state
    /// it holds, before any hosts map entry names them (see [`auth`]).
    async fn load_userlists(
        &mut self,
        actual: &ProxyState,
        missing: &[String],
    ) -> Result<(), ReconcileError> {
        info!(
            secrets = %missing.join(","),
            "basic-auth user lists haproxy has not loaded (a new secret, or one re-created): one reload"
        );
        self.reload_unless_held(actual, actual, false, Some(ReloadReason::UserLists))
            .await?;
        // What the new worker holds is read in full by the plan that follows.
        self.reads.forget();
        Ok(())
    }

    /// The certificate step of a pass; its own failures are logged, never fail the pass.
    async fn apply_certs(&mut self, desired: &Desired) -> usize {
        let Some(tls) = self.tls.as_mut() else {
            return 0;
        };
        match tls.apply(&mut self.admin, desired).await {
            Ok(n) => n,
            Err(e) => {
                info!(error = %e, "certificates not brought in step; the next pass retries");
                0
            }
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

    pub fn set_strategy(&mut self, strategy: Strategy) {
        self.settings.strategy = strategy;
    }

    /// The routing Swarm asks for; logs label problems once, when they appear.
    pub fn desired(&mut self, snap: &Snapshot) -> Desired {
        let desired = self.desired_change(snap).0;
        // No plan sees what changed here: the next pass's plan compares everything.
        self.labels.unplanned();
        desired
    }

    /// [`Reconciler::desired`] and what changed in it since the last call.
    fn desired_change(&mut self, snap: &Snapshot) -> (Desired, model::Change) {
        let (desired, change) = self.labels.desired(snap, &self.settings.model);
        if change == model::Change::All {
            // A patch changes no problem (see `model::DesiredCache::next`).
            self.observer.problems(&desired, &self.cert_problems, snap);
        }
        (desired, change)
    }

    /// Read HAProxy (and the container's managed networks) and plan, without applying:
    /// nothing here changes HAProxy, not even the reload a pass makes to get a lost admin
    /// socket back (that is an error here).
    pub async fn plan(
        &mut self,
        snap: &Snapshot,
    ) -> Result<(Desired, ProxyState, Plan), ReconcileError> {
        let planned = self.read_and_plan(snap, Reach::ReadOnly).await;
        // Not applied: the next pass's plan compares everything.
        self.labels.unplanned();
        planned
    }

    async fn read_and_plan(
        &mut self,
        snap: &Snapshot,
        reach: Reach,
    ) -> Result<(Desired, ProxyState, Plan), ReconcileError> {
        let (mut desired, change) = self.desired_change(snap);
        self.settle_acme(&mut desired);
        self.settle_auth(&mut desired);
        self.learn_proxy(reach).await?;
        // A read-only plan reads everything and leaves what the passes know alone.
        let (actual, known) = match reach {
            Reach::ReadOnly => (self.actual().await?, false),
            Reach::MayReload => self.actual_for_plan().await?,
        };
        // Only the backends whose endpoints changed are planned when HAProxy holds what the
        // last pass left (`plan::plan_cached`'s `only`).
        let only = match &change {
            model::Change::Backends(changed) if known => Some(changed),
            _ => None,
        };
        let attached = self.networks.managed(snap, &desired).await?;
        let settings = self.plan_settings();
        let hold = self.retirements.hold(Instant::now());
        let mut plan = plan::plan_cached(
            &actual,
            &attached,
            &desired,
            &settings,
            &mut self.plan_cache,
            &hold,
            only,
        );
        if !self.files.template_loaded() && !plan.reload {
            info!(
                "haproxy runs a config from another template or settings (an upgrade?); one reload"
            );
            plan.reload = true;
        }
        let missing = self.files.userlists_missing();
        if reach == Reach::ReadOnly && !missing.is_empty() && !plan.reload {
            info!(secrets = %missing.join(","), "basic-auth user lists haproxy has not loaded; one reload");
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
            // What HAProxy holds after a failed pass is not known: the next one reads it all.
            self.reads.forget();
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
        let samples = observer.with_task_times(|times| {
            convergence.observe_changed(snap, state, times, Some(changed), now)
        });
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

    /// The outline of [`Reconciler::pass`]: read and plan, certificates, networks attached,
    /// the plan logged, runtime commands, a reload if needed, HAProxy re-read, the files
    /// mirrored, networks detached, the pass observed. Each step is one call, in that order.
    async fn apply_pass(
        &mut self,
        snap: &Snapshot,
        started: Instant,
    ) -> Result<Report, ReconcileError> {
        let (mut desired, mut actual, mut plan) =
            self.read_and_plan(snap, Reach::MayReload).await?;
        let mut report = Report::default();
        let by_strategy = self.settings.strategy == Strategy::Reload;
        let missing = self.files.userlists_missing();
        if !missing.is_empty() && !plan.reload && !by_strategy {
            // A reload the plan does not make: first, so that the plan that follows may name
            // the lists in the hosts map.
            self.load_userlists(&actual, &missing).await?;
            report.reloads += 1;
            (desired, actual, plan) = self.read_and_plan(snap, Reach::MayReload).await?;
        }
        report.next_pass_in = self.retirements.note_held(&plan.held, Instant::now());
        report.commands += self.apply_certs(&desired).await;
        report.commands += self.apply_acme(&desired).await;
        self.note_cert_problems(snap, &desired);
        if plan.is_empty() {
            return self.finish_unchanged(snap, actual, report, started).await;
        }
        self.networks.attach(&plan.attach).await;
        report.attached = plan.attach.len();

        let reload = plan.reload || by_strategy;
        // A plan of server and map edits is logged, measured and re-read on the backends it
        // touched, not by comparing every backend (at 3,000 services 11 % of a change's CPU
        // went there). Retirements are never such plans.
        let touched = known::touched(&plan.runtime).filter(|_| !reload);
        let changed = self.log_plan(snap, &actual, &plan.target, touched.as_ref());
        if self.settings.strategy == Strategy::Runtime {
            self.apply_runtime(&plan).await?;
            report.commands = plan.runtime.len();
        }
        if reload {
            self.reload_unless_held(&actual, &plan.target, by_strategy, None)
                .await?;
            report.reloads += 1;
        }
        let now = self.read_applied(actual, touched).await?;
        report.files_written = self.mirror_applied(&now, &plan.target).await?;

        self.networks.detach(&plan.detach).await;
        report.detached = plan.detach.len();
        self.observe_pass(snap, &now, &changed, started);
        self.remember(now);
        log_applied(&plan, &report, started);
        Ok(report)
    }

    /// The certificate problems of this pass (after [`Reconciler::apply_certs`]) to status
    /// and metrics, when they changed.
    fn note_cert_problems(&mut self, snap: &Snapshot, desired: &Desired) {
        if let Some(tls) = &self.tls {
            // The served certificates: their expiry series and the status view's list.
            self.observer.cert_expiries(tls.expiries());
            self.observer.certificates(tls.served());
        }
        let mut certs = self
            .tls
            .as_ref()
            .map(tls::TlsCerts::problems)
            .unwrap_or_default();
        // Basic-auth problems are secret problems too: status and metrics show them alike.
        certs.extend(
            self.auth
                .as_ref()
                .map(auth::AuthLists::problems)
                .unwrap_or_default(),
        );
        // Failed ACME orders too.
        certs.extend(
            self.acme
                .as_ref()
                .map(acme::AcmeCerts::problems)
                .unwrap_or_default(),
        );
        if certs != self.cert_problems {
            self.cert_problems = certs;
            self.observer.problems(desired, &self.cert_problems, snap);
        }
    }

    /// The end of a pass with nothing to apply: the files must still say what HAProxy holds
    /// (first pass after a restart, say).
    async fn finish_unchanged(
        &mut self,
        snap: &Snapshot,
        actual: ProxyState,
        mut report: Report,
        started: Instant,
    ) -> Result<Report, ReconcileError> {
        report.files_written = self.files.mirror(&actual).await?;
        self.observe_pass(snap, &actual, &BTreeSet::new(), started);
        self.remember(actual);
        Ok(report)
    }

    /// Log the plan's changes from `actual` to `target` (only the backends in `touched`, when
    /// it is a plan of server and map edits) and return the names of the backends it changes.
    fn log_plan(
        &mut self,
        snap: &Snapshot,
        actual: &ProxyState,
        target: &ProxyState,
        touched: Option<&known::Touched<'_>>,
    ) -> BTreeSet<String> {
        let scoped = touched.map(|t| (actual.only(&t.backends), target.only(&t.backends)));
        let (seen, wanted) = match &scoped {
            Some((a, t)) => (a, t),
            None => (actual, target),
        };
        self.retirements.forget_done(actual);
        log_changes(snap, seen, wanted, &mut self.retirements);
        changes::changed_backends(seen, wanted)
    }

    /// Send the plan's runtime commands and note the backends they created or deleted. On a
    /// refusal or a lost socket, the files are brought in step with what HAProxy holds
    /// (some commands may have applied) and the error is returned.
    async fn apply_runtime(&mut self, plan: &Plan) -> Result<(), ReconcileError> {
        let result = self.execute(&plan.runtime).await;
        // Backends created or deleted at runtime (3.4+): their options are HAProxy's now
        // (those of a deletion that was refused are forgotten too: the next pass deletes
        // it again, and options do not matter for that).
        let created = plan.runtime.iter().filter_map(|cmd| match cmd {
            Command::AddBackend { backend, .. } => plan
                .target
                .backends
                .get(backend)
                .map(|b| (backend, Some(&b.options))),
            Command::DelBackend { backend } => Some((backend, None)),
            _ => None,
        });
        self.files.changed_at_runtime(created);
        if let Err(e) = result {
            // Some commands may have applied: the files still say what HAProxy holds.
            if let Ok(now) = self.actual().await {
                let _ = self.files.mirror(&now).await;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Reload HAProxy on `target` (`actual` before it, for the reason logged), unless it is
    /// the reload HAProxy refused and its hold has not run out ([`ReconcileError::ReloadHeld`]:
    /// the files stay the last good ones). A refusal starts or lengthens the hold.
    async fn reload_unless_held(
        &mut self,
        actual: &ProxyState,
        target: &ProxyState,
        by_strategy: bool,
        reason: Option<ReloadReason>,
    ) -> Result<(), ReconcileError> {
        let key = hold::reload_key(target, &self.settings.render.template);
        if let Some((wait, times)) = self.hold.held(key, Instant::now()) {
            // The files stay the last good ones: the target's would be refused again.
            return Err(ReconcileError::ReloadHeld {
                wait_ms: fields::ms(wait),
                times,
            });
        }
        let reason = reason.unwrap_or_else(|| changes::reload_reason(actual, target, by_strategy));
        info!(reason = %reason, backends = target.backends.len(), "reloading haproxy");
        match self.reload(target, reason).await {
            Ok(()) => {
                self.hold.accepted();
                Ok(())
            }
            Err(e) => {
                if matches!(e, ReconcileError::Master(MasterError::ReloadFailed { .. })) {
                    self.hold.refused(key, Instant::now());
                }
                Err(e)
            }
        }
    }

    /// Re-read HAProxy after applying: the files describe what HAProxy holds, not what we
    /// hoped it would. Only the backends a plan of server and map edits `touched` (on top of
    /// `actual`, what it held before); everything after a reload or a backend created or
    /// retired.
    async fn read_applied(
        &mut self,
        actual: ProxyState,
        touched: Option<known::Touched<'_>>,
    ) -> Result<ProxyState, ReconcileError> {
        match touched {
            Some(touched) => self.reread(actual, touched).await,
            None => self.full_actual().await,
        }
    }

    /// Hand `now` (what HAProxy holds after applying) to the file writer; whether files were
    /// written. A difference from the plan's `target` is checked by the next pass.
    async fn mirror_applied(
        &mut self,
        now: &ProxyState,
        target: &ProxyState,
    ) -> Result<bool, ReconcileError> {
        let written = self.files.mirror(now).await?;
        if now != target {
            debug!("haproxy differs from the plan target after applying (a reload renders drained servers as maint); next pass checks it");
        }
        Ok(written)
    }

    /// Wait for the files being written, if any. A failed write is reported here, and the
    /// next pass writes them again.
    pub async fn flush(&mut self) -> Result<(), FilesError> {
        self.files.flush().await
    }

    /// Cheap liveness check: is HAProxy's worker the one the last pass saw?
    pub async fn proxy_is_same(&mut self) -> bool {
        match self.admin.info().await {
            Ok(info) => {
                self.observer.haproxy(Some(version_text(info.version)));
                self.proxy.is_some_and(|p| p.pid == info.pid)
            }
            Err(_) => {
                self.observer.haproxy(None);
                false
            }
        }
    }

    /// Whether backends are created and deleted at runtime: HAProxy 3.4+ (`add backend ...
    /// from`, `del backend`) with the runtime strategy.
    fn runtime_backends(&self) -> bool {
        self.proxy
            .is_some_and(|p| Capabilities::of(p.version).has(Feature::RuntimeBackends))
            && self.settings.strategy == Strategy::Runtime
    }

    fn plan_settings(&self) -> PlanSettings {
        let mut s = self.settings.plan.clone();
        // From the named defaults sections of the config HAProxy loaded.
        if self.runtime_backends() {
            s.runtime_backends = RuntimeBackends {
                delete: true,
                defaults: self.files.loaded_defaults(),
                backend_ca: self.files.loaded_backend_ca(),
            };
        }
        s.connect_timeout_rule = self
            .proxy
            .is_some_and(|p| Capabilities::of(p.version).has(Feature::SetTimeoutConnect));
        // `add server` is GA from 2.6; older versions grow by reload.
        s.add_server = s.add_server
            && self
                .proxy
                .is_some_and(|p| Capabilities::of(p.version).has(Feature::AddServer));
        s
    }

    /// What HAProxy holds: its runtime state with the options of the config it loaded.
    ///
    /// Where backends are deleted at runtime (3.4+), also the driver's backends without any
    /// server, which `show servers state` does not list: one whose `del backend` was refused
    /// after its servers went (the next plan retires it, or fills and publishes it again), so
    /// that its name is never taken twice (`add backend` would answer `name is already used`).
    async fn actual(&mut self) -> Result<ProxyState, ReconcileError> {
        let mut state = self.admin.actual(&self.settings.plan.hosts_map).await?;
        if self.runtime_backends() {
            let template = render::template_backends(&self.settings.render.template);
            for name in self.admin.backends().await? {
                if name.is_internal()
                    || template.contains(name.as_str())
                    || state.backends.contains_key(&name)
                {
                    continue;
                }
                state.backends.insert(
                    name,
                    Arc::new(BackendState {
                        mode: Mode::Task,
                        servers: Vec::new(),
                        options: BackendOptions::default(),
                    }),
                );
            }
        }
        for (name, backend) in &mut state.backends {
            Arc::make_mut(backend).options = self.files.loaded(name);
        }
        Ok(state)
    }

    /// The state a pass plans from: what the last pass left ([`known`]) while it may be
    /// used, else a full read, compared with what was known (a difference is a repair).
    async fn actual_for_plan(&mut self) -> Result<(ProxyState, bool), ReconcileError> {
        let pid = self.proxy.map(|p| p.pid);
        match self.reads.start(pid, Instant::now()) {
            known::Start::Known(state) => Ok((state, true)),
            known::Start::FullRead { stale } => {
                let fresh = self.full_actual().await?;
                if let Some(k) = stale.filter(|k| Some(k.pid) == pid) {
                    if k.state != fresh {
                        let backends = k
                            .state
                            .backends
                            .iter()
                            .filter(|(n, b)| fresh.backends.get(*n) != Some(*b))
                            .count()
                            + fresh
                                .backends
                                .keys()
                                .filter(|n| !k.state.backends.contains_key(*n))
                                .count();
                        tracing::warn!(
                            backends,
                            hosts_differ = k.state.hosts != fresh.hosts,
                            "haproxy holds other than the incremental passes knew; planning from the full read"
                        );
                        self.observer.metrics.resync_repairs.inc();
                    }
                }
                Ok((fresh, false))
            }
        }
    }

    /// [`Reconciler::actual`], noting the time of the full read.
    async fn full_actual(&mut self) -> Result<ProxyState, ReconcileError> {
        let read_at = Instant::now();
        let state = self.actual().await?;
        self.reads.read_in_full(read_at);
        Ok(state)
    }

    /// `state` (what HAProxy held before a batch) brought up to date after the batch
    /// `touched` described applied without a refusal: the touched backends re-read, the map
    /// edits replayed (HAProxy accepted each). Anything unexpected reads everything.
    async fn reread(
        &mut self,
        mut state: ProxyState,
        touched: known::Touched<'_>,
    ) -> Result<ProxyState, ReconcileError> {
        if !touched.backends.is_empty() {
            let mut read = self.admin.backends_state(&touched.backends).await?;
            for name in &touched.backends {
                let Some(mut backend) = read.remove(name) else {
                    debug!(backend = %name, "a touched backend has no servers; reading everything");
                    return self.full_actual().await;
                };
                Arc::make_mut(&mut backend).options = self.files.loaded(name);
                // Unchanged, the known copy stays (shared with the plan's target).
                if state.backends.get(name) != Some(&backend) {
                    state.backends.insert(name.clone(), backend);
                }
            }
        }
        for cmd in touched.map_edits {
            if let Err(e) = state.apply(cmd) {
                debug!(error = %e, "a map edit does not replay; reading everything");
                return self.full_actual().await;
            }
        }
        Ok(state)
    }

    /// Keep `state` as what HAProxy holds after this pass (see [`known`]).
    fn remember(&mut self, state: ProxyState) {
        self.reads.remember(self.proxy.map(|p| p.pid), state);
    }

    /// `show info`: notice a restarted HAProxy (new pid) and learn its version.
    async fn learn_proxy(&mut self, reach: Reach) -> Result<(), ReconcileError> {
        let info = match self.admin.info().await {
            Ok(info) => info,
            Err(e) if e.is_nobody_listening() && reach == Reach::MayReload => {
                self.recover_admin_socket(e).await?;
                self.admin.info().await?
            }
            Err(e) => return Err(e.into()),
        };
        self.observer.haproxy(Some(version_text(info.version)));
        match self.proxy {
            Some(p) if p.pid == info.pid => {}
            Some(p) => {
                info!(
                    old_pid = p.pid,
                    new_pid = info.pid,
                    "haproxy worker changed"
                );
                self.files.worker_loaded_files().await;
            }
            None => {
                info!(pid = info.pid, version = %version_text(info.version), "haproxy found");
            }
        }
        self.proxy = Some(Proxy {
            pid: info.pid,
            version: info.version,
        });
        Ok(())
    }

    /// The admin socket has nobody listening while the master may still run a worker: a
    /// refused reload's new worker bound the socket's path and exited (measured on 3.4.7 with
    /// a `bind` that failed), so the serving worker can no longer be reached by path and no
    /// runtime change could ever apply. A reload of the files on disk (the last good ones: a
    /// failed reload put them back) gives the path to a new worker. When the master does not
    /// answer or runs no worker, HAProxy is down or starting: `lost` is the error, as before.
    async fn recover_admin_socket(&mut self, lost: ClientError) -> Result<(), ReconcileError> {
        let running = self
            .master
            .show_proc()
            .await
            .ok()
            .is_some_and(|p| p.serving_worker().is_some());
        if !running {
            return Err(lost.into());
        }
        tracing::warn!(
            error = %lost,
            "admin socket unreachable while haproxy runs a worker; reloading the last good files to get it back"
        );
        let result = self.master.reload(self.settings.reload_timeout).await;
        self.admin.disconnect();
        let reloaded = result?;
        info!(
            new_worker = reloaded.new_worker,
            "admin socket back after a reload of the last good files"
        );
        Ok(())
    }

    async fn execute(&mut self, cmds: &[Command]) -> Result<(), ReconcileError> {
        if cmds.is_empty() {
            return Ok(());
        }
        let replies = match self.admin.execute(cmds).await {
            Ok(r) => r,
            Err(e) => {
                for cmd in cmds {
                    self.observer.command(cmd.kind(), "error");
                }
                return Err(e.into());
            }
        };
        for (cmd, reply) in cmds.iter().zip(&replies) {
            let outcome = if reply.is_ok() { "ok" } else { "refused" };
            self.observer.command(cmd.kind(), outcome);
        }
        // A retirement (3.4+: a removed service's backend, or an old generation) that HAProxy
        // refuses waits for connections still on its servers: the pass goes on (see
        // [`retire`]).
        let refused = self.retirements.refusals(
            cmds.iter()
                .zip(replies)
                .filter_map(|(cmd, reply)| reply.err().map(|e| (cmd, e))),
        );
        let mut refused = refused.into_iter();
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
        self.files.candidate(target).await?;
        let result = self.master.reload(self.settings.reload_timeout).await;
        self.observer.reload(reason, result.is_ok());
        // The old session would keep the old worker alive.
        self.admin.disconnect();
        match result {
            Ok(r) => {
                // Master::reload logs the reload itself.
                self.files.worker_loaded_files().await;
                self.files.save_good().await?;
                self.reach_worker(r.new_worker).await?;
                // The worker this pass's full re-read sees (and remembers the state of).
                if let Some(p) = &mut self.proxy {
                    p.pid = r.new_worker;
                }
                Ok(())
            }
            Err(e) => {
                // The error itself is logged once, by whoever gets it.
                self.files.restore_good().await?;
                info!("restored the last good config after the failed reload");
                Err(e.into())
            }
        }
    }

    /// Make the admin session talk to the new worker. The stats socket is handed over from
    /// the old worker (`expose-fd listeners`), so until the old one stops listening a new
    /// connection may still land on it, and commands sent there would be lost with it.
    async fn reach_worker(&mut self, pid: u32) -> Result<(), ReconcileError> {
        let deadline = Instant::now() + self.settings.reload_timeout;
        let mut answered = None;
        loop {
            match self.admin.info().await {
                Ok(info) if info.pid == pid => return Ok(()),
                Ok(info) => {
                    debug!(
                        pid = info.pid,
                        want = pid,
                        "admin session reached the old worker"
                    );
                    answered = Some(info.pid);
                }
                Err(e) => debug!(error = %e, "admin socket not ready after reload"),
            }
            self.admin.disconnect();
            if Instant::now() >= deadline {
                return Err(match answered {
                    Some(old) => ReconcileError::WorkerNotReached {
                        want: pid,
                        answered: old,
                        timeout_ms: fields::ms(self.settings.reload_timeout),
                    },
                    None => ReconcileError::Client(ClientError::Timeout {
                        path: self.admin.path().to_owned(),
                        timeout_ms: fields::ms(self.settings.reload_timeout),
                    }),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `major.minor.patch`, as logged and shown.
fn version_text(v: Version) -> String {
    format!("{}.{}.{}", v.major, v.minor, v.patch)
}

/// The pass's one info line: the plan's summary and what [`Report`] counted.
fn log_applied(plan: &Plan, report: &Report, started: Instant) {
    info!(
        summary = %plan.summary(),
        commands = report.commands,
        reloads = report.reloads,
        attached = report.attached,
        detached = report.detached,
        took_us = fields::us(started.elapsed()),
        "plan applied"
    );
}

/// One info line per server and host entry the plan changes (the first [`CHANGES_LOGGED`];
/// the rest are counted in one line): which service, task, slot, address and state.
fn log_changes(
    snap: &Snapshot,
    actual: &ProxyState,
    target: &ProxyState,
    retirements: &mut Retirements,
) {
    for b in target
        .backends
        .keys()
        .filter(|b| !actual.backends.contains_key(*b))
    {
        info!(service = %b.service(), backend = %b, slots = target.backends[b].servers.len(), "backend created");
    }
    for b in actual
        .backends
        .keys()
        .filter(|b| !target.backends.contains_key(*b))
    {
        // Said once, when the retirement begins: one a connection holds is tried again on
        // later passes.
        let again = !retirements.begins(b);
        let replaced_by = target.serving(b.service()).map(|(n, _)| n);
        match (again, replaced_by) {
            (true, _) => debug!(service = %b.service(), backend = %b, "retirement tried again"),
            (false, Some(new)) => info!(
                service = %b.service(),
                backend = %b,
                new_backend = %new,
                "old backend generation retired (the service moved to the new one)"
            ),
            (false, None) => info!(service = %b.service(), backend = %b, "backend removed"),
        }
    }
    let servers = changes::server_changes(actual, target, snap);
    let hosts = changes::host_changes(actual, target);
    let total = servers.len() + hosts.len();
    for c in servers.iter().take(CHANGES_LOGGED) {
        let old_addr = c.old_addr.map_or_else(|| "-".to_owned(), |a| a.to_string());
        let old_state = c.old_state.map_or("-", changes::admin_name);
        info!(
            service = %c.service,
            backend = %c.backend,
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

/// Write an empty config if there is none, so that HAProxy can start before the first pass.
pub fn bootstrap_config(files: &mut Files, settings: &Settings) -> Result<bool, FilesError> {
    if files.config_path().exists() {
        return Ok(false);
    }
    files.write(&ProxyState::default(), &settings.render)?;
    files.save_good()?;
    Ok(true)
}
