//! The ACME worker (`docs/acme.md`): the effect shell around [`super::store`],
//! [`super::lease`], [`super::schedule`] and [`super::client`]. Two loops share one
//! [`AcmeHandle`]:
//!
//! - the **lister** lists the ACME configs and secrets every [`WorkerSettings::poll`] and
//!   publishes them ([`AcmeHandle::view`]): every edge's pass serves the challenge answers in
//!   it and the newest certificate per name set;
//! - the **orderer**, for each name set the pass wants ([`AcmeHandle::want`]) that Swarm holds
//!   no certificate for, or whose renewal time has come, takes the order lease and orders; the
//!   answers go to Swarm as configs (so the CA may reach any edge), the certificate and key
//!   to Swarm as secrets (the copy job brings them to every edge). A failed order keeps what
//!   is served, is a label problem of the service, and is retried with backoff.
//!
//! Nothing here logs a key, a token or a key authorization.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::ari::{window_fraction, Ari, AriAnswer};
use super::client::{
    self as acme_client, AcmeClient, AcmeError, Challenges, ChallengesError, Credentials, Patience,
};
use super::lease::{self, CreateRefused, Decision, Lease};
use super::schedule;
use super::settings::AcmeSettings;
use super::store::{self, AcmeView, StoredCert};
use crate::haproxy::acme::{KeyAuthorization, Token};
use crate::model::labels::{LabelError, SSL_ACME};
use crate::model::{Reason, WantedAcme};
use crate::observe::metrics::ResultLabels;
use crate::observe::Observer;
use crate::swarm::acme::{SwarmObject, KIND};
use crate::swarm::{Docker, SwarmError};

/// What the worker needs besides Docker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub acme: AcmeSettings,
    /// This edge in leases: `<node id>/<container id or hostname>`.
    pub holder: String,
    /// Where the copy job delivers secrets (the account's credentials are read there).
    pub secrets_dir: PathBuf,
    /// How often the ACME objects are listed: the delay for another edge's challenge answer
    /// to reach this edge's HAProxy (2 s).
    pub poll: Duration,
    /// How long an order may wait on the CA for validation and for the certificate (the
    /// holder extends its lease meanwhile, every `lease::EXTEND_EVERY_S`).
    pub patience: Patience,
}

impl WorkerSettings {
    pub fn new(acme: AcmeSettings, holder: String, secrets_dir: PathBuf) -> Self {
        Self {
            acme,
            holder,
            secrets_dir,
            poll: Duration::from_secs(2),
            patience: Patience {
                ready: Duration::from_secs(45),
                certificate: Duration::from_secs(45),
            },
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    view: Arc<AcmeView>,
    /// Service -> the problem of its last order (cleared when it has a certificate).
    problems: BTreeMap<String, LabelError>,
    /// The challenge answers this edge's HAProxy holds (the pass says so).
    applied: BTreeSet<Token>,
    /// Answers this edge published and the lister has not listed yet.
    own: Vec<(Token, KeyAuthorization)>,
}

/// The pass's side of the worker: say which name sets are wanted, read what Swarm holds,
/// report which answers HAProxy holds, be woken when something changed.
#[derive(Debug, Clone)]
pub struct AcmeHandle {
    wanted: Arc<watch::Sender<BTreeMap<String, WantedAcme>>>,
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Notify>,
    applied: Arc<Notify>,
    account: String,
}

impl AcmeHandle {
    /// The name sets the labels ask certificates for now (by digest: two services with the
    /// same hosts share one).
    pub fn want<'a>(&self, wanted: impl IntoIterator<Item = &'a WantedAcme>) {
        let next: BTreeMap<String, WantedAcme> = wanted
            .into_iter()
            .map(|w| (store::digest(&w.hosts), w.clone()))
            .collect();
        self.wanted.send_if_modified(|w| {
            let differs = *w != next;
            if differs {
                *w = next;
            }
            differs
        });
    }

    /// The last listing of the ACME objects in Swarm.
    pub fn view(&self) -> Arc<AcmeView> {
        Arc::clone(&self.shared.lock().view)
    }

    /// Every challenge answer to serve: those listed, and this edge's own not listed yet.
    pub fn answers(&self) -> Vec<(Token, KeyAuthorization)> {
        let shared = self.shared.lock();
        let mut out: BTreeMap<Token, KeyAuthorization> = shared
            .view
            .tokens
            .iter()
            .map(|t| (t.0.clone(), t.1.clone()))
            .collect();
        out.extend(shared.own.iter().cloned());
        out.into_iter().collect()
    }

    /// The account secret's name (on the configured directory), when Swarm holds it: the
    /// pass asks the copy job for it.
    pub fn account_secret(&self) -> Option<String> {
        let shared = self.shared.lock();
        shared
            .view
            .accounts
            .contains_key(&self.account)
            .then(|| self.account.clone())
    }

    /// The services whose last order failed, with why.
    pub fn problems(&self) -> Vec<LabelError> {
        self.shared.lock().problems.values().cloned().collect()
    }

    /// The pass put `tokens` in HAProxy's challenge map (all it holds).
    pub fn applied(&self, tokens: BTreeSet<Token>) {
        let mut shared = self.shared.lock();
        if shared.applied != tokens {
            shared.applied = tokens;
            drop(shared);
            self.applied.notify_waiters();
        }
    }

    /// Resolves when the listing or a problem changed since the last time (a pass should run).
    pub fn changed(&self) -> impl Future<Output = ()> + Send + 'static {
        let n = Arc::clone(&self.changed);
        async move { n.notified().await }
    }

    fn publish_view(&self, view: AcmeView) {
        let mut shared = self.shared.lock();
        if *shared.view == view {
            return;
        }
        shared
            .own
            .retain(|(t, _)| !view.tokens.iter().any(|listed| &listed.0 == t));
        shared.view = Arc::new(view);
        drop(shared);
        self.changed.notify_one();
    }

    fn set_problem(&self, service: &str, problem: Option<LabelError>) {
        let mut shared = self.shared.lock();
        let changed = match problem {
            Some(p) => shared.problems.insert(service.to_owned(), p.clone()) != Some(p),
            None => shared.problems.remove(service).is_some(),
        };
        drop(shared);
        if changed {
            self.changed.notify_one();
        }
    }

    /// A handle with no worker, for the pass's tests: listings set by hand.
    pub fn detached(account: &str) -> (AcmeHandle, watch::Receiver<BTreeMap<String, WantedAcme>>) {
        let (tx, rx) = watch::channel(BTreeMap::new());
        (
            AcmeHandle {
                wanted: Arc::new(tx),
                shared: Arc::default(),
                changed: Arc::default(),
                applied: Arc::default(),
                account: account.to_owned(),
            },
            rx,
        )
    }

    /// Sets the listing by hand (tests).
    pub fn set_view(&self, view: AcmeView) {
        self.publish_view(view);
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Starts the worker: the handle, and its task (which ends only if it panics; the caller
/// supervises it with the daemon's other tasks).
pub fn spawn(
    docker: Docker,
    settings: WorkerSettings,
    observer: Option<Arc<Observer>>,
) -> (AcmeHandle, JoinHandle<()>) {
    let (tx, rx) = watch::channel(BTreeMap::new());
    let handle = AcmeHandle {
        wanted: Arc::new(tx),
        shared: Arc::default(),
        changed: Arc::default(),
        applied: Arc::default(),
        account: store::account_name(&settings.acme.directory),
    };
    let lister = list_loop(
        docker.clone(),
        handle.clone(),
        settings.poll,
        settings.acme.directory.clone(),
    );
    let orderer = Orderer {
        docker,
        handle: handle.clone(),
        settings,
        observer,
        client: None,
        failures: BTreeMap::new(),
        may_order: true,
        ari: Ari::default(),
    };
    let task = tokio::spawn(async move {
        tokio::join!(lister, orderer.run(rx));
    });
    (handle, task)
}

/// Extends the order lease named `name` every `every` ([`lease::EXTEND_EVERY_S`] in the
/// worker) while edge `me` orders (run beside the order, which it ends by returning): returns
/// what Swarm shows instead once the lease is gone or another edge's. A failed read or update
/// is tried again at the next tick (a stale version means another edge updated it: the next
/// read tells).
pub async fn keep_lease(docker: Docker, name: String, me: String, every: Duration) -> String {
    loop {
        tokio::time::sleep(every).await;
        let found = match docker.acme_configs().await {
            Ok(configs) => configs.into_iter().find(|c| c.name == name),
            Err(error) => {
                debug!(%error, "reading the order lease to extend it; trying again");
                continue;
            }
        };
        let Some(config) = found else {
            return "the lease was removed".to_owned();
        };
        match lease::extended(&config.labels, &me, unix_now()) {
            Ok(labels) => match docker.update_config_labels(&config, &labels).await {
                Ok(()) => debug!(lease = %name, "order lease extended"),
                Err(error) => debug!(%error, "extending the order lease; trying again"),
            },
            Err(holder) => return format!("held by {holder}"),
        }
    }
}

/// How often the holder extends its lease while it orders.
const EXTEND_EVERY: Duration = Duration::from_secs(lease::EXTEND_EVERY_S.unsigned_abs());

async fn list(docker: &Docker, directory: &str) -> Result<AcmeView, SwarmError> {
    let (configs, secrets) = tokio::join!(docker.acme_configs(), docker.acme_secrets());
    Ok(AcmeView::from_listing(&configs?, &secrets?, directory))
}

async fn list_loop(docker: Docker, handle: AcmeHandle, poll: Duration, directory: String) {
    let mut failing = false;
    loop {
        match list(&docker, &directory).await {
            Ok(view) => {
                if failing {
                    info!("ACME objects listed again");
                    failing = false;
                }
                handle.publish_view(view);
            }
            Err(error) if !failing => {
                warn!(%error, "listing the ACME configs and secrets failed; retrying");
                failing = true;
            }
            Err(error) => debug!(%error, "listing the ACME configs and secrets failed"),
        }
        tokio::time::sleep(poll).await;
    }
}

/// Why one name set was not ordered this round.
#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error(transparent)]
    Acme(#[from] AcmeError),
    #[error("storing in Swarm: {0}")]
    Swarm(#[from] SwarmError),
    #[error("the account secret is not readable: {0}")]
    Account(String),
    /// The order lease stopped being this edge's while it ordered (its extensions failed
    /// until it lapsed and another edge took it over): the order is dropped, the other edge's
    /// stands.
    #[error("the order lease is no longer this edge's ({0})")]
    LeaseLost(String),
}

struct Orderer {
    docker: Docker,
    handle: AcmeHandle,
    settings: WorkerSettings,
    observer: Option<Arc<Observer>>,
    client: Option<AcmeClient>,
    /// Digest -> failures in a row and when to try again (unix seconds).
    failures: BTreeMap<String, (u32, i64)>,
    /// False once Swarm refused this edge a lease create with 403 ([`CreateRefused::NotAllowed`]):
    /// it then never orders nor removes anything, and its orderer ends.
    may_order: bool,
    /// What the CA's renewal information said (RFC 9773), until asked again.
    ari: Ari,
}

impl Orderer {
    async fn run(mut self, mut wanted: watch::Receiver<BTreeMap<String, WantedAcme>>) {
        loop {
            let now = unix_now();
            let view = self.handle.view();
            self.clean(&view, now).await;
            let round: Vec<(String, WantedAcme)> = wanted
                .borrow_and_update()
                .iter()
                .map(|(d, w)| (d.clone(), w.clone()))
                .collect();
            self.failures
                .retain(|d, _| round.iter().any(|(digest, _)| digest == d));
            for (digest, want) in round {
                self.consider(&view, &digest, &want, now).await;
                if !self.may_order {
                    // The lister goes on: this edge answers challenges and serves certificates.
                    return;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.poll) => {}
                r = wanted.changed() => if r.is_err() { return },
            }
        }
    }

    /// Orders for `want` if Swarm holds no certificate for it or it is due, no other edge
    /// holds the lease, and no backoff is running.
    async fn consider(&mut self, view: &AcmeView, digest: &str, want: &WantedAcme, now: i64) {
        if let Some(cert) = view.serving(digest, now) {
            if !self.renewal_due(digest, cert, now).await {
                self.failures.remove(digest);
                self.handle.set_problem(&want.service, None);
                return;
            }
        }
        if self.failures.get(digest).is_some_and(|(_, at)| now < *at) {
            return;
        }
        // About to order: list again first, so that a certificate another edge stored since
        // the last listing (its lease already gone) is not ordered a second time.
        let fresh = match list(&self.docker, &self.settings.acme.directory).await {
            Ok(fresh) => fresh,
            Err(error) => {
                debug!(%error, "listing before an order; the next round tries again");
                return;
            }
        };
        let stored = fresh
            .serving(digest, now)
            .is_some_and(|c| !self.ari.due(digest, c, now));
        self.handle.publish_view(fresh.clone());
        if stored {
            return;
        }
        let name = lease::lease_name(&want.hosts);
        let me = self.settings.holder.clone();
        if let Some((failures, until)) = fresh
            .leases
            .get(&name)
            .and_then(|l| lease::backoff_held(&l.labels, &me, now))
        {
            // This edge's own wait after failed orders, kept in Swarm: it holds across a
            // restart under the same holder name and a label that went and came back.
            debug!(service = %want.service, failures, retry_in_s = until - now, "waiting after failed orders, as the lease says");
            self.failures.insert(digest.to_owned(), (failures, until));
            return;
        }
        let Some(lease_id) = self.take_lease(&fresh, want, now).await else {
            return;
        };
        // Failures another edge (or this one before a restart) had: the count goes on.
        let prior = fresh
            .leases
            .get(&lease::lease_name(&want.hosts))
            .and_then(|l| l.labels.get(store::FAILURES))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0);
        let docker = self.docker.clone();
        let result = tokio::select! {
            result = self.order(want) => result,
            lost = keep_lease(docker, name, me, EXTEND_EVERY) => Err(OrderError::LeaseLost(lost)),
        };
        if let Err(error @ OrderError::LeaseLost(_)) = &result {
            // Not this edge's failure to count or to hold the lease for: the new holder orders.
            info!(service = %want.service, %error, "stopped ordering: another edge holds the lease now");
            return;
        }
        if result.is_ok() {
            // This edge's next round (and its pass) see the new certificate at once.
            if let Ok(after) = list(&self.docker, &self.settings.acme.directory).await {
                self.handle.publish_view(after);
            }
            // Removed after the certificate is stored: an edge that lists no lease then lists
            // the certificate too (and lists again before it would order).
            if let Err(error) = self.docker.remove_config(&lease_id).await {
                debug!(%error, "removing the order lease; it lapses by itself");
            }
        }
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        if let Some(o) = &self.observer {
            o.metrics
                .acme_orders
                .get_or_create(&ResultLabels {
                    result: outcome.to_owned(),
                })
                .inc();
        }
        match result {
            Ok(()) => {
                self.failures.remove(digest);
                self.handle.set_problem(&want.service, None);
            }
            Err(error) => {
                let failures = self.failures.get(digest).map_or(0, |f| f.0).max(prior) + 1;
                // instant-acme keeps a refusal's Retry-After to itself: the doubling is the floor.
                let rate_limited = matches!(&error, OrderError::Acme(e) if e.is_rate_limited());
                let at = schedule::retry_at(unix_now(), failures, None, rate_limited);
                self.hold_lease(want, failures, at).await;
                warn!(
                    service = %want.service,
                    hosts = want.hosts.len(),
                    failures,
                    rate_limited,
                    retry_in_s = at - unix_now(),
                    %error,
                    "ACME order failed; the certificate served now (if any) stays"
                );
                self.failures.insert(digest.to_owned(), (failures, at));
                self.handle.set_problem(
                    &want.service,
                    Some(LabelError::invalid(
                        &want.service,
                        SSL_ACME,
                        "true",
                        Reason::AcmeOrderFailed {
                            error: error.to_string(),
                        },
                    )),
                );
            }
        }
    }

    /// After a failed order: the lease stays, held until the next attempt is due and carrying
    /// the count, so no edge orders these names before then (Swarm holds the backoff, not
    /// this process). If it cannot be updated it is removed, and the lease lapses as usual.
    async fn hold_lease(&self, want: &WantedAcme, failures: u32, retry_at: i64) {
        let name = lease::lease_name(&want.hosts);
        let found = match self.docker.acme_configs().await {
            Ok(configs) => configs.into_iter().find(|c| c.name == name),
            Err(_) => None,
        };
        let Some(config) = found else {
            return;
        };
        if lease::extended(&config.labels, &self.settings.holder, unix_now()).is_err() {
            // Another edge's by now: its order, its wait.
            return;
        }
        let mut labels = Lease {
            holder: self.settings.holder.clone(),
            expires: retry_at,
        }
        .labels(&want.hosts);
        labels.insert(KIND.to_owned(), store::KIND_LOCK.to_owned());
        labels.insert(store::FAILURES.to_owned(), failures.to_string());
        if let Err(error) = self.docker.update_config_labels(&config, &labels).await {
            debug!(%error, "keeping the lease through the backoff; removing it instead");
            let _ = self.docker.remove_config(&config.id).await;
        }
    }

    /// The lease for `want`'s names, if this edge gets it: the config's ID.
    async fn take_lease(&mut self, view: &AcmeView, want: &WantedAcme, now: i64) -> Option<String> {
        let name = lease::lease_name(&want.hosts);
        let found = view.leases.get(&name);
        let me = &self.settings.holder;
        let read = found.map(|c| (Lease::from_labels(&c.labels), c.created));
        let lease = Lease::new(me, now);
        let mut labels = lease.labels(&want.hosts);
        labels.insert(KIND.to_owned(), store::KIND_LOCK.to_owned());
        match lease::decide(read, me, now) {
            Decision::Create => match self.docker.create_config(&name, b"lease", &labels).await {
                Ok(id) => Some(id),
                Err(error) => {
                    match lease::create_refused(error.status()) {
                        CreateRefused::Taken => {
                            debug!(service = %want.service, "another edge took the order lease first")
                        }
                        CreateRefused::NotAllowed => {
                            info!(
                                holder = %me,
                                %error,
                                "this edge may not create the ACME order lease (403: a worker \
                                 edge behind the api-proxy), so it orders no certificate; the \
                                 edges with a manager's socket order, this one answers their \
                                 challenges and serves what they store"
                            );
                            self.may_order = false;
                        }
                        CreateRefused::Retry => debug!(%error, "creating the order lease"),
                    }
                    None
                }
            },
            Decision::Ours => found.map(|c| c.id.clone()),
            Decision::TakeOver => {
                let config: &SwarmObject = found?;
                match self.docker.update_config_labels(config, &labels).await {
                    Ok(()) => {
                        info!(service = %want.service, "took over a lapsed order lease");
                        Some(config.id.clone())
                    }
                    Err(error) => {
                        debug!(%error, "another edge took over the lapsed lease first");
                        None
                    }
                }
            }
            Decision::Wait { .. } => None,
        }
    }

    async fn client(&mut self) -> Result<&AcmeClient, OrderError> {
        if self.client.is_none() {
            self.client = Some(self.account().await?);
        }
        Ok(self.client.as_ref().expect("set above"))
    }

    /// The account: the one Swarm holds (read from the copy job's delivery), or a new one
    /// stored as a secret for every edge.
    async fn account(&self) -> Result<AcmeClient, OrderError> {
        let name = store::account_name(&self.settings.acme.directory);
        let path = self.settings.secrets_dir.join(&name);
        if self.handle.account_secret().is_some() {
            let text = tokio::fs::read_to_string(&path).await.map_err(|e| {
                OrderError::Account(format!(
                    "{name} is in Swarm but not delivered to {} yet ({})",
                    self.settings.secrets_dir.display(),
                    e.kind()
                ))
            })?;
            let credentials = Credentials::from_json(&text)
                .map_err(|e| OrderError::Account(format!("{name}: {e}")))?;
            return Ok(AcmeClient::restore(&self.settings.acme, credentials).await?);
        }
        let (client, credentials) = AcmeClient::create(&self.settings.acme).await?;
        let json = credentials
            .to_json()
            .map_err(|e| OrderError::Account(e.to_string()))?;
        let labels = store::account_labels(&self.settings.acme.directory);
        match self
            .docker
            .create_secret(&name, json.as_bytes(), &labels)
            .await
        {
            Ok(_) => info!(secret = %name, "ACME account stored in Swarm"),
            // Another edge stored its account first: both are valid, later orders use theirs.
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(client)
    }

    async fn order(&mut self, want: &WantedAcme) -> Result<(), OrderError> {
        info!(service = %want.service, hosts = want.hosts.len(), "ordering a certificate");
        let mut answers = SwarmAnswers {
            docker: self.docker.clone(),
            handle: self.handle.clone(),
            poll: self.settings.poll,
            ids: BTreeMap::new(),
            hosts: want.hosts.clone(),
        };
        let patience = self.settings.patience;
        let digest = store::digest(&want.hosts);
        let view = self.handle.view();
        let serving = view.serving(&digest, unix_now()).map(|c| c.crt.as_str());
        let replaces = self.ari.replaces(&digest, serving);
        let issued = self
            .client()
            .await?
            .order_replacing(&want.hosts, &mut answers, patience, replaces.as_ref())
            .await;
        let issued = match issued {
            Ok(issued) => issued,
            Err(e) => {
                // A new account next time, should the CA have dropped this one.
                if !e.is_transient() {
                    self.client = None;
                }
                return Err(e.into());
            }
        };
        let (not_before, not_after) = issued
            .validity()
            .map_err(|e| OrderError::Account(format!("the issued certificate: {e}")))?;
        let (crt, key) = store::cert_names(&want.hosts, not_after);
        let chain = issued.chain.clone();
        let key_pem = issued
            .pem()
            .map_err(|e| OrderError::Account(format!("the issued certificate: {e}")))?;
        // The key secret holds the key alone: the part after the chain in `pem()`.
        let key_only = key_pem
            .as_str()
            .find("-----BEGIN PRIVATE KEY-----")
            .or_else(|| key_pem.as_str().find("-----BEGIN EC PRIVATE KEY-----"))
            .map(|at| key_pem.as_str()[at..].to_owned())
            .ok_or_else(|| OrderError::Account("the issued key is not PEM".into()))?;
        // The key first: a chain is served only once both parts are listed.
        for (name, part, data) in [(&key, "key", key_only), (&crt, "crt", chain)] {
            let labels = store::cert_labels(
                &want.hosts,
                part,
                not_before,
                not_after,
                &self.settings.acme.directory,
            );
            match self
                .docker
                .create_secret(name, data.as_bytes(), &labels)
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
        info!(
            service = %want.service,
            secret = %crt,
            not_after,
            "certificate stored in Swarm; every edge serves it once delivered"
        );
        Ok(())
    }

    /// Removes leftovers: answers of orders that died, certificates expired or replaced.
    async fn clean(&self, view: &AcmeView, now: i64) {
        for id in view.stale_tokens(now) {
            if let Err(error) = self.docker.remove_config(id).await {
                debug!(%error, "removing a stale challenge answer");
            }
        }
        for cert in view.stale_certs(now) {
            for id in [&cert.crt_id, &cert.key_id] {
                match self.docker.remove_secret(id).await {
                    Ok(()) => {
                        info!(secret = %cert.crt, "removed an expired or replaced ACME certificate")
                    }
                    Err(error) => debug!(%error, "removing an old ACME certificate"),
                }
            }
        }
    }
}

impl Orderer {
    /// Whether `cert`, served for `digest`, is due at `now`: at a point of the CA's renewal
    /// window when its directory offers renewal information (RFC 9773), else at two thirds of
    /// its lifetime ([`schedule::renewal`]). Asks the CA when the last answer's `Retry-After`
    /// has passed; a failure only falls back to two thirds (logged at WARN).
    async fn renewal_due(&mut self, digest: &str, cert: &StoredCert, now: i64) -> bool {
        // Answers refreshed within a day are kept; others are of names no longer served.
        self.ari
            .known
            .retain(|_, a| a.next_ask.saturating_add(schedule::ARI_MAX_ASK_S) > now);
        let stale = self
            .ari
            .known
            .get(digest)
            .map_or(true, |a| a.crt != cert.crt || a.next_ask <= now);
        if stale {
            self.ask_ari(digest, cert, now).await;
        }
        self.ari.due(digest, cert, now)
    }

    async fn ask_ari(&mut self, digest: &str, cert: &StoredCert, now: i64) {
        // Asked with the stored account only: never an account created just for this. No
        // account yet means nothing was ordered here: the next round looks again.
        if self.client.is_none()
            && (self.handle.account_secret().is_none()
                || self.ari.directory_failed_until.is_some_and(|t| now < t))
        {
            return;
        }
        let mut answer = match self.ari.known.get(digest) {
            Some(a) if a.crt == cert.crt => a.clone(),
            _ => AriAnswer {
                crt: cert.crt.clone(),
                id: None,
                window: None,
                offered: false,
                next_ask: now,
                failing: false,
            },
        };
        if answer.id.is_none() {
            let path = self.settings.secrets_dir.join(&cert.crt);
            match tokio::fs::read_to_string(&path).await {
                Ok(chain) => match acme_client::certificate_id(&chain) {
                    Ok(id) => answer.id = Some(id),
                    Err(error) => {
                        warn!(
                            secret = %cert.crt,
                            %error,
                            "no ACME renewal information for this certificate; renewing at two thirds of its lifetime"
                        );
                        answer.next_ask =
                            schedule::ari_next_ask(now, Some(schedule::ARI_MAX_ASK_S));
                        self.ari.known.insert(digest.to_owned(), answer);
                        return;
                    }
                },
                // Not delivered yet (stored seconds ago): in a minute again.
                Err(error) => {
                    debug!(secret = %cert.crt, error = %error.kind(), "certificate not delivered yet for its renewal information");
                    answer.next_ask = now.saturating_add(60);
                    self.ari.known.insert(digest.to_owned(), answer);
                    return;
                }
            }
        }
        if let Err(error) = self.client().await {
            if self.ari.directory_failed_until.is_none() {
                warn!(
                    %error,
                    "the ACME account or directory is not available for renewal information; renewing at two thirds of the lifetime"
                );
            } else {
                debug!(%error, "the ACME account or directory is not available for renewal information");
            }
            self.ari.directory_failed_until = Some(schedule::ari_next_ask(now, None));
            return;
        }
        self.ari.directory_failed_until = None;
        let (Some(client), Some(id)) = (self.client.as_ref(), answer.id.clone()) else {
            return;
        };
        match client.renewal_info(&id).await {
            Ok(None) => {
                debug!(secret = %cert.crt, "the ACME CA offers no renewal information; renewing at two thirds of the lifetime");
                answer.offered = false;
                answer.window = None;
                answer.failing = false;
                answer.next_ask = schedule::ari_next_ask(now, Some(schedule::ARI_MAX_ASK_S));
            }
            Ok(Some(advice)) => {
                let fraction = window_fraction(&cert.crt);
                let (renew_at, basis) = schedule::renewal(
                    now,
                    cert.not_before,
                    cert.not_after,
                    Some(advice.window),
                    fraction,
                );
                if basis == schedule::Basis::TwoThirds {
                    warn!(
                        secret = %cert.crt,
                        window_start = advice.window.start,
                        window_end = advice.window.end,
                        not_before = cert.not_before,
                        not_after = cert.not_after,
                        "the ACME CA's renewal window is malformed or outside the certificate's validity; renewing at two thirds of the lifetime"
                    );
                } else if answer.window != Some(advice.window) {
                    info!(
                        secret = %cert.crt,
                        window_start = advice.window.start,
                        window_end = advice.window.end,
                        renew_at,
                        explanation = advice.explanation_url.as_deref().unwrap_or(""),
                        "ACME renewal window from the CA"
                    );
                }
                answer.offered = true;
                answer.window = Some(advice.window);
                answer.failing = false;
                answer.next_ask = schedule::ari_next_ask(now, Some(advice.retry_after_s));
            }
            Err(error) => {
                if answer.failing {
                    debug!(secret = %cert.crt, %error, "ACME renewal information failed again");
                } else {
                    warn!(
                        secret = %cert.crt,
                        %error,
                        retry_in_s = schedule::ARI_MIN_ASK_S,
                        "ACME renewal information failed; the last window (if any) or two thirds of the lifetime stands"
                    );
                }
                // The window the CA gave last (for this certificate) stands meanwhile.
                answer.failing = true;
                answer.next_ask = schedule::ari_next_ask(now, None);
            }
        }
        self.ari.known.insert(digest.to_owned(), answer);
    }
}

/// [`Challenges`] answered by every edge: each answer is a Docker config every edge's lister
/// lists and every pass puts in its HAProxy's challenge map.
struct SwarmAnswers {
    docker: Docker,
    handle: AcmeHandle,
    poll: Duration,
    ids: BTreeMap<Token, String>,
    /// The order's names (labelled on each answer, for people).
    hosts: Vec<crate::model::Host>,
}

impl Challenges for SwarmAnswers {
    async fn publish(
        &mut self,
        token: &Token,
        key_authorization: &KeyAuthorization,
    ) -> Result<(), ChallengesError> {
        let id = self
            .docker
            .create_config(
                &store::token_name(token),
                key_authorization.as_str().as_bytes(),
                &store::token_labels(&self.hosts),
            )
            .await?;
        self.ids.insert(token.clone(), id);
        {
            let mut shared = self.handle.shared.lock();
            shared.own.push((token.clone(), key_authorization.clone()));
        }
        self.handle.changed.notify_one();
        // This edge's HAProxy first (its pass reports what it applied), then one listing
        // period and a second more for the other edges' listers and passes.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let applied = self.handle.applied.notified();
            if self.handle.shared.lock().applied.contains(token) {
                break;
            }
            if tokio::time::timeout_at(deadline, applied).await.is_err() {
                return Err("this edge's HAProxy did not take the answer within 20 s".into());
            }
        }
        tokio::time::sleep(self.poll + Duration::from_secs(1)).await;
        Ok(())
    }

    async fn withdraw(&mut self, token: &Token) -> Result<(), ChallengesError> {
        self.handle.shared.lock().own.retain(|(t, _)| t != token);
        if let Some(id) = self.ids.remove(token) {
            self.docker.remove_config(&id).await?;
        }
        Ok(())
    }
}
