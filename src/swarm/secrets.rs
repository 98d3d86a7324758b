//! Docker secrets for the HTTPS certificates: what Docker lists (names and IDs, never data),
//! and the short-lived copy job that brings their data into swarm-lb's secrets volume.
//!
//! The Docker API never returns a secret's data; only a task the secret is mounted into can read
//! it. So a job (a Swarm service in `replicated-job` mode, one completion, no restart) is created
//! on swarm-lb's own node (`node.id==<id>`), with the named secrets mounted at `/run/secrets/<name>`
//! (uid/gid 0, mode 0400) and the secrets volume at [`JOB_OUT`]; it runs swarm-lb's own image with
//! the hidden `copy-secrets` subcommand, which copies them into the volume (0600, atomically) and
//! exits. The spec and the reading of the job's tasks are pure ([`CopyJob::spec`],
//! [`job_state`]); the calls are on [`super::Docker`].
//!
//! Removing a job's service does not remove its task's exited container on Docker 20.10 (seen
//! here: completed job containers were still listed half an hour later, holding the volume), so
//! swarm-lb removes that container itself, by the ID its task reports; the job's containers
//! carry the job's labels too, so leftovers are found at start.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    Mount, MountType, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicatedJob, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets,
    TaskSpecPlacement, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};

use super::{Docker, SwarmError};

/// Label on every copy job: `docker service ls --filter label=org.swarm-lb.role=secrets-job`.
pub const ROLE_LABEL: &str = "org.swarm-lb.role";
/// [`ROLE_LABEL`]'s value on copy jobs.
pub const ROLE_JOB: &str = "secrets-job";
/// Label naming the node a copy job belongs to.
pub const NODE_LABEL: &str = "org.swarm-lb.node";
/// Label naming the secrets volume a copy job writes to: with [`NODE_LABEL`], the swarm-lb it
/// belongs to (several can run on one node, e.g. one per service cluster), so each removes
/// only its own leftovers.
pub const VOLUME_LABEL: &str = "org.swarm-lb.volume";
/// Where the job mounts the secrets volume.
pub const JOB_OUT: &str = "/out";
/// Where Docker mounts the job's secrets (the default target directory on Linux).
pub const JOB_IN: &str = "/run/secrets";

/// A copy job to create: copies `secrets` (name, Docker secret ID) into `volume` on `node_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyJob {
    /// Service name, one per swarm-lb (node and volume): a second job of the same swarm-lb is
    /// refused by Docker (409), so two of its jobs never run at once.
    pub name: String,
    /// Image holding the swarm-lb binary as its entrypoint (swarm-lb's own).
    pub image: String,
    /// The Swarm node ID of swarm-lb's node (`GET /info` `Swarm.NodeID` of the local engine).
    pub node_id: String,
    /// The named (node-local) volume swarm-lb mounts at its secrets directory.
    pub volume: String,
    /// Secret name -> Docker secret ID.
    pub secrets: BTreeMap<String, String>,
}

impl CopyJob {
    /// The job for `secrets` on `node_id` into `volume`; its name is derived from both
    /// (`swarm-lb-secrets-<16 hex digits>`: a service name holds no `_` or `.`).
    pub fn new(
        image: &str,
        node_id: &str,
        volume: &str,
        secrets: BTreeMap<String, String>,
    ) -> CopyJob {
        CopyJob {
            name: format!("swarm-lb-secrets-{:016x}", fnv1a(&[node_id, volume])),
            image: image.to_string(),
            node_id: node_id.to_string(),
            volume: volume.to_string(),
            secrets,
        }
    }

    /// The service spec: replicated job (one completion, no restart: swarm-lb retries itself
    /// with backoff), pinned to the node, secrets as files `/run/secrets/<name>` (root, 0400),
    /// the volume at [`JOB_OUT`], arguments `copy-secrets --from /run/secrets --to /out <names>`.
    pub fn spec(&self) -> ServiceSpec {
        let mut args: Vec<String> = ["copy-secrets", "--from", JOB_IN, "--to", JOB_OUT]
            .map(str::to_string)
            .to_vec();
        args.extend(self.secrets.keys().cloned());
        let secrets = self
            .secrets
            .iter()
            .map(|(name, id)| TaskSpecContainerSpecSecrets {
                file: Some(TaskSpecContainerSpecFile {
                    name: Some(name.clone()),
                    uid: Some("0".into()),
                    gid: Some("0".into()),
                    mode: Some(0o400),
                }),
                secret_id: Some(id.clone()),
                secret_name: Some(name.clone()),
            })
            .collect();
        let labels = self.labels();
        ServiceSpec {
            name: Some(self.name.clone()),
            labels: Some(labels),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(self.image.clone()),
                    labels: Some(self.labels()),
                    args: Some(args),
                    user: Some("0".into()),
                    secrets: Some(secrets),
                    mounts: Some(vec![Mount {
                        target: Some(JOB_OUT.into()),
                        source: Some(self.volume.clone()),
                        typ: Some(MountType::VOLUME),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                placement: Some(TaskSpecPlacement {
                    constraints: Some(vec![format!("node.id=={}", self.node_id)]),
                    ..Default::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated_job: Some(ServiceSpecModeReplicatedJob {
                    max_concurrent: Some(1),
                    total_completions: Some(1),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// FNV-1a (64 bits) of `parts`, each followed by a 0 byte: stable across builds and releases,
/// unlike std's hasher.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.bytes().chain([0])) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl CopyJob {
    /// The job's labels, on its service and its container: role, node, volume.
    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (ROLE_LABEL.to_string(), ROLE_JOB.to_string()),
            (NODE_LABEL.to_string(), self.node_id.clone()),
            (VOLUME_LABEL.to_string(), self.volume.clone()),
        ])
    }
}

/// The label filters that find one swarm-lb's jobs (services or containers).
fn own_filters(node_id: &str, volume: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![
            format!("{ROLE_LABEL}={ROLE_JOB}"),
            format!("{NODE_LABEL}={node_id}"),
            format!("{VOLUME_LABEL}={volume}"),
        ],
    )])
}

/// A job's state and the containers its tasks ran in (to remove them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub state: JobState,
    /// Container IDs the job's tasks report.
    pub containers: Vec<String>,
}

/// Where a copy job is, read from its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// No task yet, or one on its way (new, pending, assigned, preparing, starting, running).
    Running,
    /// The task completed (exit 0).
    Complete,
    /// The task failed, was rejected or went away; `why` is its `Status.Err` (or state).
    Failed { why: String },
}

/// The state of a job from its tasks (`GET /tasks?filters={"service":[id]}`): complete when one
/// task completed, failed when every task ended otherwise, running before.
fn job_state(tasks: &[bollard::models::Task]) -> JobState {
    let mut failure = None;
    let mut live = false;
    for task in tasks {
        let status = task.status.clone().unwrap_or_default();
        match status.state {
            Some(TaskState::COMPLETE) => return JobState::Complete,
            Some(
                s @ (TaskState::FAILED
                | TaskState::REJECTED
                | TaskState::SHUTDOWN
                | TaskState::ORPHANED
                | TaskState::REMOVE),
            ) => {
                let exit = status
                    .container_status
                    .and_then(|c| c.exit_code)
                    .filter(|c| *c != 0)
                    .map(|c| format!(", exit code {c}"))
                    .unwrap_or_default();
                let why = status
                    .err
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| format!("task {s}"));
                failure = Some(format!("{why}{exit}"));
            }
            _ => live = true,
        }
    }
    match failure {
        Some(why) if !live => JobState::Failed { why },
        _ => JobState::Running,
    }
}

/// What swarm-lb's own container tells about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnContainer {
    /// `Config.Image`, as it was started (e.g. `swarm-lb/swarm-lb:local`).
    pub image: String,
    /// Named volumes: (volume name, mount destination).
    pub volumes: Vec<(String, String)>,
}

impl Docker {
    /// Every Docker secret: name -> ID (`GET /secrets`; Docker never returns the data).
    ///
    /// Errors: the engine's ([`SwarmError::Api`], [`SwarmError::Unreachable`]).
    pub async fn secrets(&self) -> Result<BTreeMap<String, String>, SwarmError> {
        let list = self
            .inner
            .list_secrets(None::<bollard::query_parameters::ListSecretsOptions>)
            .await
            .map_err(self.err("list secrets"))?;
        Ok(list
            .into_iter()
            .filter_map(|s| Some((s.spec?.name?, s.id?)))
            .collect())
    }

    /// This node's Swarm node ID (`GET /info` of the local engine: `Swarm.NodeID`).
    ///
    /// Errors: the engine's, or [`SwarmError::Api`] with status 0 when the node is in no Swarm.
    pub async fn local_node_id(&self) -> Result<String, SwarmError> {
        let local = self.local();
        let info = local.inner.info().await.map_err(local.err("info"))?;
        info.swarm
            .and_then(|s| s.node_id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| SwarmError::Api {
                op: "info",
                status: 0,
                message: "this node's engine reports no Swarm node ID".into(),
            })
    }

    /// swarm-lb's own container (`GET /containers/{id}/json` on the local engine): its image and
    /// named volumes.
    pub async fn own_container(&self, id: &str) -> Result<OwnContainer, SwarmError> {
        let found = self.local().inspect_container(id).await?;
        let image = found.config.and_then(|c| c.image).unwrap_or_default();
        let volumes = found
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| Some((m.name?, m.destination?)))
            .collect();
        Ok(OwnContainer { image, volumes })
    }

    /// Creates the copy job (`POST /services/create`); returns the service ID.
    pub async fn create_job(&self, job: &CopyJob) -> Result<String, SwarmError> {
        let created = self
            .inner
            .create_service(job.spec(), None)
            .await
            .map_err(self.err("create service"))?;
        created.id.ok_or_else(|| SwarmError::Api {
            op: "create service",
            status: 0,
            message: "the engine returned no service ID".into(),
        })
    }

    /// Where job `id` is, and its tasks' containers (`GET /tasks?filters={"service":[id]}`).
    pub async fn job_status(&self, id: &str) -> Result<JobStatus, SwarmError> {
        let opts = bollard::query_parameters::ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_string(),
                vec![id.to_string()],
            )])),
        };
        let tasks = self
            .inner
            .list_tasks(Some(opts))
            .await
            .map_err(self.err("list tasks"))?;
        let containers = tasks
            .iter()
            .filter_map(|t| {
                t.status
                    .as_ref()?
                    .container_status
                    .as_ref()?
                    .container_id
                    .clone()
            })
            .filter(|c| !c.is_empty())
            .collect();
        Ok(JobStatus {
            state: job_state(&tasks),
            containers,
        })
    }

    /// Removes a job's exited container on this node (`DELETE /containers/{id}?force=true`;
    /// its named volume stays). Already gone, or being removed, is success.
    pub async fn remove_job_container(&self, id: &str) -> Result<(), SwarmError> {
        let local = self.local();
        let opts = bollard::query_parameters::RemoveContainerOptions {
            v: false,
            force: true,
            link: false,
        };
        match local.inner.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) => match SwarmError::from_bollard("remove container", &local.endpoint(), e) {
                SwarmError::Api { status: 404, .. } => Ok(()),
                SwarmError::Api {
                    status: 409,
                    ref message,
                    ..
                } if message.contains("already in progress") => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Containers of this swarm-lb's jobs on this node, exited or not
    /// (`GET /containers/json?all=true&filters={"label":[...]}`): leftovers of a run that
    /// stopped while a job ran.
    pub async fn own_job_containers(
        &self,
        node_id: &str,
        volume: &str,
    ) -> Result<Vec<String>, SwarmError> {
        let local = self.local();
        let opts = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(own_filters(node_id, volume)),
            ..Default::default()
        };
        let list = local
            .inner
            .list_containers(Some(opts))
            .await
            .map_err(local.err("list containers"))?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Removes service `id` (`DELETE /services/{id}`); already gone is success.
    pub async fn remove_service(&self, id: &str) -> Result<(), SwarmError> {
        match self.inner.delete_service(id).await {
            Ok(()) => Ok(()),
            Err(e) => match SwarmError::from_bollard("remove service", &self.endpoint(), e) {
                SwarmError::Api { status: 404, .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// IDs of the copy jobs of the swarm-lb on node `node_id` with secrets volume `volume`
    /// (`GET /services?filters={"label":[...]}`): leftovers of a run that stopped while a job
    /// ran. Another swarm-lb's jobs (another node, or another volume) are not listed.
    pub async fn own_jobs(&self, node_id: &str, volume: &str) -> Result<Vec<String>, SwarmError> {
        let opts = bollard::query_parameters::ListServicesOptions {
            filters: Some(own_filters(node_id, volume)),
            status: None,
        };
        let services = self
            .inner
            .list_services(Some(opts))
            .await
            .map_err(self.err("list services"))?;
        Ok(services.into_iter().filter_map(|s| s.id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerStatus, Task, TaskStatus};

    fn job() -> CopyJob {
        CopyJob::new(
            "swarm-lb/swarm-lb:local",
            "abcdefghijklmnopqrstuvwxy",
            "proj_secrets",
            BTreeMap::from([
                ("web.crt".to_string(), "id1".to_string()),
                ("web.key".to_string(), "id2".to_string()),
            ]),
        )
    }

    #[test]
    fn the_copy_job_is_a_one_shot_job_pinned_to_the_node_with_root_only_secret_files() {
        let spec = job().spec();
        let name = spec.name.clone().expect("name");
        assert!(
            name.starts_with("swarm-lb-secrets-") && name.len() == 33,
            "{name}"
        );
        // Another swarm-lb on the node (another volume) has a job of its own.
        let other = CopyJob::new(
            "i",
            "abcdefghijklmnopqrstuvwxy",
            "other_secrets",
            BTreeMap::new(),
        );
        assert_ne!(other.name, name);
        assert_eq!(job().name, name, "stable");
        let mode = spec.mode.expect("mode").replicated_job.expect("job");
        assert_eq!(
            (mode.max_concurrent, mode.total_completions),
            (Some(1), Some(1))
        );
        let task = spec.task_template.expect("task");
        assert_eq!(
            task.placement.and_then(|p| p.constraints),
            Some(vec!["node.id==abcdefghijklmnopqrstuvwxy".to_string()])
        );
        assert_eq!(
            task.restart_policy.and_then(|r| r.condition),
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        let c = task.container_spec.expect("container");
        assert_eq!(
            c.args.expect("args").join(" "),
            "copy-secrets --from /run/secrets --to /out web.crt web.key"
        );
        let secrets = c.secrets.expect("secrets");
        assert_eq!(secrets.len(), 2);
        for s in &secrets {
            let file = s.file.clone().expect("file");
            assert_eq!(file.name, s.secret_name);
            assert_eq!(
                (file.uid.as_deref(), file.gid.as_deref()),
                (Some("0"), Some("0"))
            );
            assert_eq!(file.mode, Some(0o400));
        }
        let mount = &c.mounts.expect("mounts")[0];
        assert_eq!(mount.source.as_deref(), Some("proj_secrets"));
        assert_eq!(mount.target.as_deref(), Some(JOB_OUT));
        assert_eq!(
            c.labels, spec.labels,
            "the container carries the job's labels"
        );
        let labels = spec.labels.expect("labels");
        assert_eq!(labels.get(ROLE_LABEL).map(String::as_str), Some(ROLE_JOB));
        assert_eq!(
            labels.get(VOLUME_LABEL).map(String::as_str),
            Some("proj_secrets")
        );
    }

    fn task(state: TaskState, err: Option<&str>, exit: Option<i64>) -> Task {
        Task {
            status: Some(TaskStatus {
                state: Some(state),
                err: err.map(str::to_string),
                container_status: Some(ContainerStatus {
                    exit_code: exit,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_job_is_complete_failed_or_still_running_as_its_tasks_say() {
        assert_eq!(job_state(&[]), JobState::Running);
        assert_eq!(
            job_state(&[task(TaskState::RUNNING, None, None)]),
            JobState::Running
        );
        assert_eq!(
            job_state(&[task(TaskState::COMPLETE, None, Some(0))]),
            JobState::Complete
        );
        assert_eq!(
            job_state(&[task(
                TaskState::FAILED,
                Some("task: non-zero exit (1)"),
                Some(1)
            )]),
            JobState::Failed {
                why: "task: non-zero exit (1), exit code 1".into()
            }
        );
        assert_eq!(
            job_state(&[task(TaskState::REJECTED, Some("No such image: x"), None)]),
            JobState::Failed {
                why: "No such image: x".into()
            }
        );
        assert_eq!(
            job_state(&[task(TaskState::SHUTDOWN, None, None)]),
            JobState::Failed {
                why: "task shutdown".into()
            }
        );
    }
}
