//! Secrets delivery (`--secrets-delivery=job`): brings the data of the Docker secrets that the
//! `ssl_cert`/`ssl_key` labels name into `--secrets-dir`, a named volume of swarm-lb's, so that
//! [`super::tls`] reads them there as from any directory.
//!
//! The Docker API never returns a secret's data. So, when a label names a secret whose data is
//! not in the directory yet, or whose Docker ID changed since it was copied (removed and created
//! again under the same name), one short-lived job is created on swarm-lb's own node
//! ([`crate::swarm::secrets::CopyJob`]) for every such secret at once: it mounts them and the
//! volume, and swarm-lb's own binary (`swarm-lb copy-secrets`, [`copy_secrets`]) copies them
//! there, 0600 in a 0700 directory, each through a temporary file and a rename. swarm-lb waits
//! for the job's task with a deadline, removes the job, and records name -> ID in [`RECORD`].
//! A name Docker does not list is refused before any job. A copy no label names any more is
//! deleted (keys must not linger). At most one job at a time (one worker task; Docker refuses a
//! second service of the same name); a failed job is retried with capped backoff; jobs left by
//! a run that stopped mid-way are removed at start (only this swarm-lb's: same node and volume).
//!
//! Layout: [`plan`] (pure: what to copy, delete, refuse), [`copy_secrets`] (the job's side),
//! the record file, and [`spawn`]: the worker, the only part that talks to Docker and sleeps.
//! [`DeliveryHandle`] is the pass's side: it says what is wanted and reads each secret's status.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::fields;
use crate::swarm::secrets::{CopyJob, JobState};
use crate::swarm::{Docker, SwarmError};

/// The record of what was copied, name -> Docker secret ID, in the secrets directory (JSON,
/// 0600). A hidden name: Docker secret names start with a letter or digit.
pub const RECORD: &str = ".swarm-lb-secrets.json";

/// What one delivery round does, from what the labels want, what Docker lists, what was
/// copied (the record) and which files are in the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryPlan {
    /// Wanted names Docker does not list: refused, nothing copied.
    pub unknown: BTreeSet<String>,
    /// Wanted names to copy (missing, never recorded, or recorded under another ID):
    /// name -> the ID Docker lists now.
    pub copy: BTreeMap<String, String>,
    /// Wanted names whose copy is current.
    pub ready: BTreeSet<String>,
    /// Files to delete: copies nobody names any more, or of secrets Docker no longer lists.
    pub delete: BTreeSet<String>,
}

/// The round for `wanted` secret names. Pure.
pub fn plan(
    wanted: &BTreeSet<String>,
    docker: &BTreeMap<String, String>,
    record: &BTreeMap<String, String>,
    present: &BTreeSet<String>,
) -> DeliveryPlan {
    let mut p = DeliveryPlan::default();
    for name in wanted {
        match docker.get(name) {
            None => {
                p.unknown.insert(name.clone());
            }
            Some(id) if present.contains(name) && record.get(name) == Some(id) => {
                p.ready.insert(name.clone());
            }
            Some(id) => {
                p.copy.insert(name.clone(), id.clone());
            }
        }
    }
    p.delete = present
        .iter()
        .filter(|f| !wanted.contains(*f) || p.unknown.contains(*f))
        .cloned()
        .collect();
    p
}

/// Where a wanted secret is, as the pass sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretStatus {
    /// Not looked at yet, or its copy job runs: what HAProxy serves stays.
    Pending,
    /// Its current data is in the directory.
    Ready,
    /// Docker lists no secret of that name.
    Unknown,
    /// The copy job failed (retried); `why` is the job's task error or the engine's.
    Failed(String),
}

/// Why a delivery round failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    /// The job's task ended without completing.
    #[error("copy job {job} for secrets {secrets} failed: {why}")]
    JobFailed {
        job: String,
        secrets: String,
        why: String,
    },
    /// The job's task did not complete within `--secrets-job-timeout`.
    #[error("copy job {job} for secrets {secrets} did not complete within {after_ms} ms")]
    JobTimeout {
        job: String,
        secrets: String,
        after_ms: u64,
    },
    /// The job completed, yet a secret's file is not in the directory (is --secrets-volume the
    /// volume mounted at --secrets-dir?).
    #[error("copy job {job} completed but {secret} is not in {dir}: is the job's volume the one mounted at --secrets-dir?")]
    NotDelivered {
        job: String,
        secret: String,
        dir: PathBuf,
    },
    /// The secrets directory or the record could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Delivery cannot be set up (start-up): what is missing and how to give it.
    #[error("--secrets-delivery=job: {0}")]
    Setup(String),
    /// The blocking pool dropped a file step (the runtime shutting down, or a panic in it).
    #[error("secrets directory step '{what}' did not finish: {source}")]
    Blocking {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Runs the file work `f` of the worker on tokio's blocking pool: reads, writes with fsync
/// and renames on a volume may take long, and must not hold a runtime thread (the reconciler
/// and the HTTP server run on the same two).
async fn on_disk<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, DeliveryError> + Send + 'static,
) -> Result<T, DeliveryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| DeliveryError::Blocking { what, source })?
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DeliveryError + 'a {
    move |source| DeliveryError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Docker's rule for secret names (`[a-zA-Z0-9]`, then `[a-zA-Z0-9-_.]`, at most 64): also
/// what keeps a name a plain file name.
pub fn is_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The job's side (`swarm-lb copy-secrets`): copies each of `names` from `from` into `to`,
/// mode 0600, through a temporary file in `to` renamed over the target (a reader sees the old
/// file or the new one, never a part); `to` is made 0700. Returns (name, bytes) per secret.
///
/// Errors: a name that is not a secret name, or a file that cannot be read or written (the
/// error names the path, never the content).
pub fn copy_secrets(
    from: &Path,
    to: &Path,
    names: &[String],
) -> Result<Vec<(String, usize)>, DeliveryError> {
    std::fs::create_dir_all(to).map_err(io("creating", to))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))
        .map_err(io("setting mode 0700 on", to))?;
    let mut copied = Vec::new();
    for name in names {
        if !is_secret_name(name) {
            return Err(DeliveryError::Setup(format!(
                "{name:?} is not a Docker secret name"
            )));
        }
        let source = from.join(name);
        let data = std::fs::read(&source).map_err(io("reading", &source))?;
        write_private(&to.join(name), &data)?;
        copied.push((name.clone(), data.len()));
    }
    Ok(copied)
}

/// Writes `data` to `path` with mode 0600 through `.<name>.tmp` beside it, synced, renamed.
fn write_private(path: &Path, data: &[u8]) -> Result<(), DeliveryError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{}.tmp", name.unwrap_or_default()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("creating", &tmp))?;
    file.write_all(data).map_err(io("writing", &tmp))?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io("renaming into place", path))
}

/// The record in `dir` (missing or unreadable: empty, so everything is copied again).
pub fn read_record(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read(dir.join(RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_record(dir: &Path, record: &BTreeMap<String, String>) -> Result<(), DeliveryError> {
    let body = serde_json::to_vec_pretty(record).unwrap_or_default();
    write_private(&dir.join(RECORD), &body)
}

/// Secret files in `dir`: regular files with a secret's name (the record and temporary files
/// start with a dot).
fn present(dir: &Path) -> Result<BTreeSet<String>, DeliveryError> {
    let entries = std::fs::read_dir(dir).map_err(io("listing", dir))?;
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_secret_name(n))
        .collect())
}

/// What the worker needs: where, with what, how long.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// `--secrets-dir`, as swarm-lb sees the volume.
    pub dir: PathBuf,
    /// The named volume mounted at `dir` (the job mounts it too).
    pub volume: String,
    /// The job's image (swarm-lb's own).
    pub image: String,
    /// This node's Swarm node ID.
    pub node_id: String,
    /// How long a job may take, from its creation to its task's completion.
    pub timeout: Duration,
    /// How often the job's tasks are read while it runs.
    pub poll: Duration,
    /// How often Docker's secret list is read again without a label change (a secret removed
    /// and created again under the same name is seen then).
    pub recheck: Duration,
    /// Retry delays after a failed round: first, doubled up to the cap.
    pub retry: Duration,
    pub max_retry: Duration,
}

/// What `--secrets-delivery=job` is given, for [`start`]: each `None` (or empty) is found by
/// inspecting swarm-lb's own container.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// `--secrets-dir`, as swarm-lb sees the volume; created (mode 0700) when missing.
    pub dir: PathBuf,
    /// `--secrets-volume`; else the named volume mounted at `dir` in swarm-lb's container.
    pub volume: Option<String>,
    /// `--secrets-job-image`; else swarm-lb's own container's image.
    pub image: Option<String>,
    /// `--self-container`; else [`own_container_id`] from `/proc/self/mountinfo` and
    /// `$HOSTNAME`.
    pub self_container: Option<String>,
    /// `--secrets-job-timeout`: how long a job may take.
    pub timeout: Duration,
    /// How often Docker's secret list is read again without a label change.
    pub recheck: Duration,
}

/// Why secrets delivery could not be set up ([`start`]): what is missing, and which flag
/// gives it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--secrets-delivery=job: cannot tell swarm-lb's own container; give --secrets-volume and --secrets-job-image, or --self-container")]
    OwnContainerUnknown,
    #[error("--secrets-delivery=job: inspecting swarm-lb's own container {id} (give --self-container, or --secrets-volume and --secrets-job-image)")]
    InspectOwn { id: String, source: SwarmError },
    #[error("--secrets-delivery=job: no named volume is mounted at --secrets-dir {} in swarm-lb's container; mount one there (docker-compose.yml does) or give --secrets-volume", dir.display())]
    NoVolume { dir: PathBuf },
    #[error("--secrets-delivery=job: no image for the copy job; give --secrets-job-image")]
    NoImage,
    #[error("--secrets-delivery=job: this node's Swarm node ID")]
    NodeId { source: SwarmError },
    #[error("creating --secrets-dir {}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("making --secrets-dir {} 0700", dir.display())]
    DirMode {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// How often a running job's tasks are read.
const JOB_POLL: Duration = Duration::from_millis(250);
/// Retry delays after a failed round: the first, and the cap.
const RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Sets up secrets delivery by copy jobs on this node (the volume, the image, the node, the
/// directory) and [`spawn`]s its worker: the pass's handle and the worker's task. Runs once,
/// at start-up (its file reads and writes block briefly).
///
/// Errors: [`StartError`], naming what is missing and the flag that gives it.
pub async fn start(
    docker: &Docker,
    req: JobRequest,
) -> Result<(DeliveryHandle, tokio::task::JoinHandle<()>), StartError> {
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let (mut volume, mut image) = (nonempty(req.volume), nonempty(req.image));
    if volume.is_none() || image.is_none() {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let hostname = std::env::var("HOSTNAME").ok();
        let id = nonempty(req.self_container)
            .or_else(|| own_container_id(&mountinfo, hostname.as_deref()))
            .ok_or(StartError::OwnContainerUnknown)?;
        let own = docker
            .own_container(&id)
            .await
            .map_err(|source| StartError::InspectOwn {
                id: id.clone(),
                source,
            })?;
        let dir = req.dir.to_string_lossy();
        volume = volume.or_else(|| {
            own.volumes
                .iter()
                .find(|(_, dest)| dest.trim_end_matches('/') == dir.trim_end_matches('/'))
                .map(|(name, _)| name.clone())
        });
        image = image.or_else(|| Some(own.image.clone()).filter(|i| !i.is_empty()));
    }
    let volume = volume.ok_or_else(|| StartError::NoVolume {
        dir: req.dir.clone(),
    })?;
    let image = image.ok_or(StartError::NoImage)?;
    let node_id = docker
        .local_node_id()
        .await
        .map_err(|source| StartError::NodeId { source })?;
    std::fs::create_dir_all(&req.dir).map_err(|source| StartError::CreateDir {
        dir: req.dir.clone(),
        source,
    })?;
    std::fs::set_permissions(&req.dir, std::fs::Permissions::from_mode(0o700)).map_err(
        |source| StartError::DirMode {
            dir: req.dir.clone(),
            source,
        },
    )?;
    info!(
        volume = %volume,
        image = %image,
        node = %node_id,
        dir = %req.dir.display(),
        "secrets delivery: copy jobs on this node"
    );
    Ok(spawn(
        docker.clone(),
        DeliverySettings {
            dir: req.dir,
            volume,
            image,
            node_id,
            timeout: req.timeout,
            poll: JOB_POLL,
            recheck: req.recheck,
            retry: RETRY,
            max_retry: MAX_RETRY,
        },
    ))
}

/// Where swarm-lb looks for itself: `--self-container`, else the container ID in
/// `/proc/self/mountinfo` (Docker bind-mounts `/etc/hostname` from
/// `<root>/containers/<id>/hostname`), else `$HOSTNAME` (Docker's default: the short ID).
pub fn own_container_id(mountinfo: &str, hostname: Option<&str>) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|line| line.split_once("/containers/").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('/'))
        .find(|(id, file)| {
            id.len() == 64
                && id.bytes().all(|b| b.is_ascii_hexdigit())
                && file.starts_with("hostname")
        })
        .map(|(id, _)| id.to_string())
        .or_else(|| hostname.filter(|h| !h.is_empty()).map(str::to_string))
}

/// The pass's side of delivery: say what is wanted, read statuses, be woken when they change.
#[derive(Debug, Clone)]
pub struct DeliveryHandle {
    wanted: Arc<watch::Sender<BTreeSet<String>>>,
    statuses: Arc<Mutex<BTreeMap<String, SecretStatus>>>,
    changed: Arc<Notify>,
}

impl DeliveryHandle {
    /// The secret names the labels name now; the worker acts when the set changes.
    pub fn want(&self, names: BTreeSet<String>) {
        self.wanted.send_if_modified(|w| {
            let differs = *w != names;
            if differs {
                *w = names;
            }
            differs
        });
    }

    /// Where `name` is (not looked at yet: [`SecretStatus::Pending`]).
    pub fn status(&self, name: &str) -> SecretStatus {
        self.statuses
            .lock()
            .get(name)
            .cloned()
            .unwrap_or(SecretStatus::Pending)
    }

    /// Resolves when a status changed since the last time this resolved (a pass should run).
    pub fn changed(&self) -> impl Future<Output = ()> + Send + 'static {
        let n = Arc::clone(&self.changed);
        async move { n.notified().await }
    }
}

impl DeliveryHandle {
    /// A handle with no worker: statuses set by hand, wants observed through the receiver.
    #[cfg(test)]
    pub(crate) fn detached() -> (DeliveryHandle, watch::Receiver<BTreeSet<String>>) {
        let (tx, rx) = watch::channel(BTreeSet::new());
        let handle = DeliveryHandle {
            wanted: Arc::new(tx),
            statuses: Arc::default(),
            changed: Arc::default(),
        };
        (handle, rx)
    }

    #[cfg(test)]
    pub(crate) fn set(&self, name: &str, status: SecretStatus) {
        self.statuses.lock().insert(name.to_string(), status);
    }
}

/// Starts the worker on the runtime (after removing this node's leftover jobs); the handle
/// drives it. The worker ends when every handle is dropped: its task (returned) ending while
/// a handle lives means it failed, which the caller supervises.
pub fn spawn(
    docker: Docker,
    settings: DeliverySettings,
) -> (DeliveryHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(BTreeSet::new());
    let handle = DeliveryHandle {
        wanted: Arc::new(tx),
        statuses: Arc::default(),
        changed: Arc::default(),
    };
    let worker = Worker {
        docker,
        settings,
        statuses: Arc::clone(&handle.statuses),
        changed: Arc::clone(&handle.changed),
    };
    let task = tokio::spawn(worker.run(rx));
    (handle, task)
}

struct Worker {
    docker: Docker,
    settings: DeliverySettings,
    statuses: Arc<Mutex<BTreeMap<String, SecretStatus>>>,
    changed: Arc<Notify>,
}

/// Label changes within this long are one round (several services updated together).
const GATHER: Duration = Duration::from_millis(100);

impl Worker {
    async fn run(self, mut wanted: watch::Receiver<BTreeSet<String>>) {
        self.remove_leftovers().await;
        let s = &self.settings;
        let mut backoff = Backoff::new(s.retry, s.max_retry).with_jitter();
        let mut next = Instant::now() + s.recheck;
        loop {
            tokio::select! {
                changed = wanted.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tokio::time::sleep(GATHER).await;
                }
                () = tokio::time::sleep_until(next) => {}
            }
            let want = wanted.borrow_and_update().clone();
            match self.round(&want).await {
                Ok(()) => {
                    backoff.reset();
                    next = Instant::now() + s.recheck;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    let retry_ms = fields::ms(delay);
                    match &e {
                        DeliveryError::Swarm(s) if s.is_transient() => {
                            warn!(error = %e, retry_ms, "secrets delivery failed; retrying")
                        }
                        _ => error!(error = %e, retry_ms, "secrets delivery failed; retrying"),
                    }
                    next = Instant::now() + delay;
                }
            }
        }
    }

    /// This swarm-lb's jobs, and their containers, left by a run that stopped while one ran.
    async fn remove_leftovers(&self) {
        let s = &self.settings;
        match self.docker.own_job_containers(&s.node_id, &s.volume).await {
            Ok(ids) => self.remove_containers(&ids).await,
            Err(e) => warn!(error = %e, "listing leftover secrets copy job containers"),
        }
        match self.docker.own_jobs(&s.node_id, &s.volume).await {
            Ok(ids) => {
                for id in ids {
                    match self.docker.remove_service(&id).await {
                        Ok(()) => info!(service = %id, "removed a leftover secrets copy job"),
                        Err(e) => {
                            warn!(service = %id, error = %e, "removing a leftover secrets copy job")
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "listing leftover secrets copy jobs"),
        }
    }

    /// Removes job containers (removing the job's service leaves them, holding the volume).
    async fn remove_containers(&self, ids: &[String]) {
        for id in ids {
            if let Err(e) = self.docker.remove_job_container(id).await {
                warn!(container = %id, error = %e, "removing a secrets copy job's container");
            }
        }
    }

    /// Sets the statuses of the wanted names (others dropped); wakes the pass on a change.
    fn publish(
        &self,
        want: &BTreeSet<String>,
        set: impl IntoIterator<Item = (String, SecretStatus)>,
    ) {
        let changed = {
            let mut statuses = self.statuses.lock();
            let before = statuses.clone();
            statuses.retain(|name, _| want.contains(name));
            for (name, status) in set {
                statuses.insert(name, status);
            }
            *statuses != before
        };
        if changed {
            self.changed.notify_one();
        }
    }

    async fn round(&self, want: &BTreeSet<String>) -> Result<(), DeliveryError> {
        let dir = &self.settings.dir;
        // Nothing named: every copy goes, and Docker need not be asked.
        let listed = match want.is_empty() {
            true => BTreeMap::new(),
            false => self.docker.secrets().await?,
        };
        let (mut record, present) = {
            let dir = dir.clone();
            on_disk("reading", move || Ok((read_record(&dir), present(&dir)?))).await?
        };
        let p = plan(want, &listed, &record, &present);
        let before = record.len();
        record.retain(|name, _| want.contains(name) && !p.delete.contains(name));
        let shrunk = record.len() != before;
        {
            let (dir, delete, record) = (dir.clone(), p.delete.clone(), record.clone());
            on_disk("deleting", move || {
                for name in &delete {
                    let path = dir.join(name);
                    std::fs::remove_file(&path).map_err(io("removing", &path))?;
                    info!(secret = %name, "secret copy deleted (no label names it, or Docker lists it no more)");
                }
                if shrunk {
                    write_record(&dir, &record)?;
                }
                Ok(())
            })
            .await?;
        }
        let failed = |name: &String| {
            matches!(
                self.statuses.lock().get(name),
                Some(SecretStatus::Failed(_))
            )
        };
        let statuses: Vec<(String, SecretStatus)> = p
            .unknown
            .iter()
            .map(|n| (n.clone(), SecretStatus::Unknown))
            .chain(p.ready.iter().map(|n| (n.clone(), SecretStatus::Ready)))
            // A failure stays shown while the retry runs.
            .chain(
                p.copy
                    .keys()
                    .filter(|n| !failed(n))
                    .map(|n| (n.clone(), SecretStatus::Pending)),
            )
            .collect();
        self.publish(want, statuses);
        if p.copy.is_empty() {
            return Ok(());
        }
        match self.copy(&p.copy).await {
            Ok(job) => {
                let missing = {
                    let (dir, names) = (dir.clone(), p.copy.keys().cloned().collect::<Vec<_>>());
                    on_disk("checking", move || {
                        Ok(names.into_iter().find(|n| !dir.join(n).is_file()))
                    })
                    .await?
                };
                if let Some(secret) = missing {
                    let e = DeliveryError::NotDelivered {
                        job,
                        secret,
                        dir: dir.clone(),
                    };
                    self.publish(
                        want,
                        p.copy
                            .keys()
                            .map(|n| (n.clone(), SecretStatus::Failed(e.to_string()))),
                    );
                    return Err(e);
                }
                record.extend(p.copy.clone());
                let dir = dir.clone();
                on_disk("recording", move || write_record(&dir, &record)).await?;
                self.publish(
                    want,
                    p.copy.keys().map(|n| (n.clone(), SecretStatus::Ready)),
                );
                Ok(())
            }
            Err(e) => {
                let why = e.to_string();
                self.publish(
                    want,
                    p.copy
                        .keys()
                        .map(|n| (n.clone(), SecretStatus::Failed(why.clone()))),
                );
                Err(e)
            }
        }
    }

    /// One job for `secrets`: created, waited for with the deadline, removed whatever happened.
    /// Returns the job's name.
    async fn copy(&self, secrets: &BTreeMap<String, String>) -> Result<String, DeliveryError> {
        let s = &self.settings;
        // A job of this node still there (a removal that failed) would make the create a 409.
        self.remove_leftovers().await;
        let job = CopyJob::new(&s.image, &s.node_id, &s.volume, secrets.clone());
        let names = secrets.keys().cloned().collect::<Vec<_>>().join(",");
        let started = Instant::now();
        let id = self.docker.create_job(&job).await?;
        info!(job = %job.name, secrets = %names, "secrets copy job created");
        let deadline = started + s.timeout;
        let mut containers = Vec::new();
        let outcome = loop {
            let status = self.docker.job_status(&id).await.map(|st| {
                containers = st.containers;
                st.state
            });
            match status {
                Ok(JobState::Complete) => break Ok(()),
                Ok(JobState::Failed { why }) => {
                    break Err(DeliveryError::JobFailed {
                        job: job.name.clone(),
                        secrets: names.clone(),
                        why,
                    })
                }
                Ok(JobState::Running) => {}
                Err(e) if e.is_transient() => {}
                Err(e) => break Err(e.into()),
            }
            if Instant::now() >= deadline {
                break Err(DeliveryError::JobTimeout {
                    job: job.name.clone(),
                    secrets: names.clone(),
                    after_ms: fields::ms(s.timeout),
                });
            }
            tokio::time::sleep(s.poll).await;
        };
        if let Err(e) = self.docker.remove_service(&id).await {
            warn!(job = %job.name, error = %e, "removing the secrets copy job (removed at the next job or start)");
        }
        self.remove_containers(&containers).await;
        outcome?;
        info!(
            job = %job.name,
            secrets = %names,
            took_ms = fields::ms(started.elapsed()),
            "secrets copied into the secrets volume"
        );
        Ok(job.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_wanted_secret_is_copied_when_missing_unrecorded_or_recreated_under_another_id() {
        let docker = map(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
        let record = map(&[("a", "1"), ("b", "old"), ("d", "4")]);
        // a: current; b: recreated; c: never copied; d: recorded but the file is gone.
        let p = plan(
            &set(&["a", "b", "c", "d"]),
            &docker,
            &record,
            &set(&["a", "b"]),
        );
        assert_eq!(p.ready, set(&["a"]));
        assert_eq!(p.copy, map(&[("b", "2"), ("c", "3"), ("d", "4")]));
        assert!(p.unknown.is_empty() && p.delete.is_empty(), "{p:?}");
    }

    #[test]
    fn a_name_docker_does_not_list_is_refused_and_its_old_copy_deleted() {
        let p = plan(
            &set(&["gone", "a"]),
            &map(&[("a", "1")]),
            &map(&[("gone", "9")]),
            &set(&["gone"]),
        );
        assert_eq!(p.unknown, set(&["gone"]));
        assert_eq!(p.copy, map(&[("a", "1")]));
        assert_eq!(p.delete, set(&["gone"]));
    }

    #[test]
    fn copies_no_label_names_are_deleted() {
        let docker = map(&[("a", "1"), ("old", "2")]);
        let p = plan(
            &set(&["a"]),
            &docker,
            &map(&[("a", "1"), ("old", "2")]),
            &set(&["a", "old", "stray"]),
        );
        assert_eq!(p.delete, set(&["old", "stray"]));
        assert_eq!(p.ready, set(&["a"]));
    }

    #[test]
    fn nothing_wanted_and_nothing_present_is_an_empty_round() {
        assert_eq!(
            plan(&set(&[]), &map(&[("a", "1")]), &map(&[]), &set(&[])),
            DeliveryPlan::default()
        );
    }

    #[test]
    fn copied_secrets_are_0600_in_a_0700_directory_and_replace_the_old_file_whole() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (from, to) = (tmp.path().join("in"), tmp.path().join("out"));
        std::fs::create_dir(&from).expect("in");
        std::fs::write(from.join("web.crt"), "CERT").expect("crt");
        std::fs::write(from.join("web.key"), "KEY").expect("key");
        let names = vec!["web.crt".to_string(), "web.key".to_string()];
        let copied = copy_secrets(&from, &to, &names).expect("copied");
        assert_eq!(copied, vec![("web.crt".into(), 4), ("web.key".into(), 3)]);
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&to), 0o700);
        assert_eq!(mode(&to.join("web.key")), 0o600);
        assert_eq!(
            std::fs::read_to_string(to.join("web.key")).expect("read"),
            "KEY"
        );
        std::fs::write(from.join("web.key"), "NEWKEY").expect("rotate");
        copy_secrets(&from, &to, &names[1..]).expect("again");
        assert_eq!(
            std::fs::read_to_string(to.join("web.key")).expect("read"),
            "NEWKEY"
        );
        // No temporary file is left beside them.
        assert_eq!(present(&to).expect("list"), set(&["web.crt", "web.key"]));
        assert_eq!(std::fs::read_dir(&to).expect("dir").count(), 2);
    }

    #[test]
    fn a_missing_secret_or_a_bad_name_fails_the_copy_naming_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let e =
            copy_secrets(tmp.path(), &tmp.path().join("o"), &["nope".into()]).expect_err("missing");
        assert!(e.to_string().contains("nope"), "{e}");
        for bad in ["../x", ".hidden", "a/b", ""] {
            assert!(
                copy_secrets(tmp.path(), &tmp.path().join("o"), &[bad.into()]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_record_survives_a_restart_and_a_missing_one_is_empty() {
        let tmp = tempfile::tempdir().expect("tmp");
        assert!(read_record(tmp.path()).is_empty());
        let record = map(&[("a", "1")]);
        write_record(tmp.path(), &record).expect("write");
        assert_eq!(read_record(tmp.path()), record);
        // The record is not a secret copy.
        assert!(present(tmp.path()).expect("list").is_empty());
    }

    #[test]
    fn swarm_lb_finds_its_own_container_id_in_mountinfo_else_the_hostname() {
        let id = "3f1c".repeat(16);
        let mountinfo = format!(
            "1 0 0:1 / / rw - overlay overlay rw\n\
             2 1 8:1 /var/lib/docker/containers/{id}/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda1 rw\n\
             3 1 8:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(own_container_id(&mountinfo, Some("abc")), Some(id));
        assert_eq!(own_container_id("", Some("abc")), Some("abc".into()));
        assert_eq!(own_container_id("", None), None);
    }

    #[test]
    fn the_worker_hears_of_a_change_of_the_wanted_names_only() {
        let (handle, mut rx) = DeliveryHandle::detached();
        handle.want(set(&["a", "b"]));
        assert!(rx.has_changed().expect("open"));
        rx.borrow_and_update();
        handle.want(set(&["b", "a"]));
        assert!(!rx.has_changed().expect("open"), "the same set again");
        assert_eq!(
            handle.status("a"),
            SecretStatus::Pending,
            "not looked at yet"
        );
        handle.set("a", SecretStatus::Unknown);
        assert_eq!(handle.status("a"), SecretStatus::Unknown);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_workers_file_steps_run_off_the_runtime_thread() {
        let runtime_thread = std::thread::current().id();
        let step_thread = on_disk("testing", || Ok(std::thread::current().id()))
            .await
            .expect("step");
        assert_ne!(step_thread, runtime_thread);
    }

    #[tokio::test]
    async fn a_panicking_file_step_is_an_error_naming_the_step() {
        let err = on_disk::<()>("listing", || panic!("disk on fire"))
            .await
            .expect_err("a panic is an error");
        assert!(
            matches!(
                err,
                DeliveryError::Blocking {
                    what: "listing",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn secret_names_follow_dockers_rule() {
        for ok in ["a", "web.crt", "web-key_2", "A1"] {
            assert!(is_secret_name(ok), "{ok}");
        }
        for bad in ["", ".a", "-a", "a/b", "a b", &"x".repeat(65)] {
            assert!(!is_secret_name(bad), "{bad:?}");
        }
    }
}
