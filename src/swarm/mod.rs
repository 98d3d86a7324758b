//! The only code that imports bollard. Lists services, tasks and networks into a
//! [`crate::model::Snapshot`]; follows the event stream (reconnect with `since`, backoff);
//! polls a service's tasks after an event touches it until they settle; resyncs periodically.
//! Also attaches and detaches the HAProxy container to networks.
//!
//! Layout: [`Docker`] (here) is the effect shell over bollard; `convert`, `events`, `settle`
//! and `overlay` are pure and tested on JSON captured from Docker 20.10 (API 1.41);
//! [`Watcher`] is the loop that turns events into snapshots. For tasks on this node it also
//! takes a fast path: container events are laid over the last task list at once (`overlay`),
//! ahead of Swarm's manager, whose task states trail the containers by tens of milliseconds.

pub mod acme;
pub mod agent;
pub mod apiproxy;
mod bounded;
mod convert;
mod error;
mod events;
#[cfg(test)]
mod fake_engine;
mod overlay;
pub mod proxy;
mod raw;
mod reconnect;
pub mod secrets;
mod settle;
mod source;
mod watcher;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures_util::{Stream, StreamExt};

use crate::model::{NetworkId, ServiceId, Snapshot, Task};

pub use agent::{AgentOptions, NodeAgent};
pub use convert::rfc3339;
pub use error::{BoxError, SwarmError};
pub use settle::SettleOptions;
pub use watcher::{WatchOptions, Watcher};

use convert::Listing;
use raw::Endpoint;

/// The bodies of `GET /services?status=true`, `GET /tasks` and `GET /networks` -> the
/// snapshot the watcher would publish for them, through the same conversion (malformed items
/// are skipped with a warning). For fuzzing and for tools that hold captured JSON.
///
/// Errors: a body that is not a JSON array of the expected shape.
pub fn snapshot_from_json(
    services: &[u8],
    tasks: &[u8],
    networks: &[u8],
) -> Result<Snapshot, serde_json::Error> {
    let networks: Vec<bollard::models::Network> = serde_json::from_slice(networks)?;
    let services: Vec<bollard::models::Service> = serde_json::from_slice(services)?;
    let tasks = convert::tasks(tasks)?;
    let (networks, index) = convert::networks(&networks);
    let (services, progress) = convert::services(&services, &index);
    Ok(convert::listing(services, progress, tasks, networks).snapshot)
}

/// bollard's default per-request timeout, kept for the requests made here too, and the
/// `after` of a timeout bollard reports.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to the Docker engine Swarm state is read from (services, tasks, networks and
/// their events: a manager), with the API version agreed with it; and, when that engine is not
/// the one on this node (a worker edge, `--manager`), a second connection to the local engine for
/// what only it knows or does: this node's container events and inspections, and attaching the
/// HAProxy container (a plain container on this node) to networks.
#[derive(Debug, Clone)]
pub struct Docker {
    inner: bollard::Docker,
    endpoint: Endpoint,
    api_version: String,
    /// The local engine when it is not the manager above; `None`: the same engine.
    node: Option<Box<Docker>>,
}

/// The event types read from each engine when the manager is a remote one: cluster-wide
/// types from the manager, the node-local ones (containers) from this node.
const CLUSTER_TYPES: [events::EventKind; 3] = [
    events::EventKind::Service,
    events::EventKind::Network,
    events::EventKind::Node,
];
const NODE_TYPES: [events::EventKind; 1] = [events::EventKind::Container];

impl Docker {
    /// Connects to `endpoint` (`unix:///path`, a plain socket path, `tcp://host:port` or
    /// `http://host:port`), or when `None` to `$DOCKER_HOST`, else the default unix socket;
    /// then negotiates the API version (the engine here speaks at most 1.41).
    pub async fn connect(endpoint: Option<&str>) -> Result<Docker, SwarmError> {
        let from_env = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty());
        let spec = endpoint
            .map(str::to_string)
            .or(from_env)
            .unwrap_or_else(|| raw::DEFAULT_HOST.to_string());
        let endpoint = Endpoint::parse(&spec)?;
        let name = endpoint.to_string();
        let timeout = REQUEST_TIMEOUT.as_secs();
        let version = bollard::API_DEFAULT_VERSION;
        let inner = match &endpoint {
            Endpoint::Unix(path) => bollard::Docker::connect_with_unix(path, timeout, version),
            Endpoint::Tcp(authority) => {
                bollard::Docker::connect_with_http(&format!("http://{authority}"), timeout, version)
            }
        }
        .map_err(|e| SwarmError::from_bollard("connect", &name, e))?;
        let inner = inner
            .negotiate_version()
            .await
            .map_err(|e| SwarmError::from_bollard("negotiate API version", &name, e))?;
        let v = inner.client_version();
        Ok(Docker {
            inner,
            endpoint,
            api_version: format!("{}.{}", v.major_version, v.minor_version),
            node: None,
        })
    }

    /// Connects to this node's engine (`local`, as in [`Docker::connect`]) and, when `manager`
    /// is given, to that engine for Swarm state: services, tasks, networks and their events come
    /// from `manager`, container events, inspections and network attachments from `local`.
    /// Without `manager` the local engine does everything (it must then be a manager).
    ///
    /// Errors: either endpoint invalid or unreachable ([`SwarmError::InvalidEndpoint`],
    /// [`SwarmError::Unreachable`]).
    pub async fn connect_split(
        manager: Option<&str>,
        local: Option<&str>,
    ) -> Result<Docker, SwarmError> {
        let node = Docker::connect(local).await?;
        match manager.filter(|m| !m.trim().is_empty()) {
            None => Ok(node),
            Some(m) => {
                let mut cluster = Docker::connect(Some(m)).await?;
                if cluster.endpoint != node.endpoint {
                    cluster.node = Some(Box::new(node));
                }
                Ok(cluster)
            }
        }
    }

    /// The engine of this node: the one containers are inspected and attached through.
    fn local(&self) -> &Docker {
        self.node.as_deref().unwrap_or(self)
    }

    /// The local engine's endpoint when it differs from the manager's ([`Docker::endpoint`]).
    pub fn local_endpoint(&self) -> Option<String> {
        self.node.as_ref().map(|n| n.endpoint())
    }

    /// Checks that the Swarm-state engine is an active Swarm manager (`GET /info`:
    /// `Swarm.ControlAvailable`), so that a worker's socket given without `--manager` is a
    /// start-up error instead of a listing failure retried forever.
    ///
    /// Errors: [`SwarmError::NotManager`] naming the endpoint and the node's Swarm state, or
    /// the request's own error.
    pub async fn check_manager(&self) -> Result<(), SwarmError> {
        let info = self.inner.info().await.map_err(self.err("info"))?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.control_available == Some(true) {
            return Ok(());
        }
        let state = swarm
            .local_node_state
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into());
        Err(SwarmError::NotManager {
            endpoint: self.endpoint(),
            state,
        })
    }

    /// The engine, as `unix:///path` or `tcp://host:port`.
    pub fn endpoint(&self) -> String {
        self.endpoint.to_string()
    }

    /// The API version in use, e.g. `1.41`.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    fn err(&self, op: &'static str) -> impl FnOnce(bollard::errors::Error) -> SwarmError + '_ {
        move |e| SwarmError::from_bollard(op, &self.endpoint.to_string(), e)
    }

    /// Services, tasks and networks, listed concurrently.
    pub async fn snapshot(&self) -> Result<Snapshot, SwarmError> {
        Ok(self.listing().await?.snapshot)
    }

    async fn listing(&self) -> Result<Listing, SwarmError> {
        Ok(self.listing_timed().await?.0)
    }

    /// [`Docker::listing`] with the tasks' timestamps and the networks' index (which later
    /// per-service listings resolve network targets with).
    async fn listing_timed(
        &self,
    ) -> Result<(Listing, convert::Times, convert::NetworkIndex), SwarmError> {
        let services = async {
            let opts = bollard::query_parameters::ListServicesOptions {
                filters: None,
                // ServiceStatus.DesiredTasks: what a global service wants, too.
                status: Some(true),
            };
            self.inner
                .list_services(Some(opts))
                .await
                .map_err(self.err("list services"))
        };
        let networks = async {
            self.inner
                .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
                .await
                .map_err(self.err("list networks"))
        };
        let (services, (tasks, times), networks) =
            tokio::try_join!(services, self.tasks_timed(), networks)?;
        let (networks, index) = convert::networks(&networks);
        let (services, progress) = convert::services(&services, &index);
        Ok((
            convert::listing(services, progress, tasks, networks),
            times,
            index,
        ))
    }

    /// The services in `scope` (`GET /services?filters={"id":[...]}&status=true`: those that
    /// still exist) and their tasks (filtered likewise), with the tasks' timestamps: what one
    /// service event costs to read, where a full listing reads every service, task and network.
    async fn services_timed(
        &self,
        scope: &BTreeSet<ServiceId>,
    ) -> Result<(Vec<bollard::models::Service>, Vec<Task>, convert::Times), SwarmError> {
        let opts = bollard::query_parameters::ListServicesOptions {
            filters: Some(HashMap::from([(
                "id".to_string(),
                scope.iter().cloned().collect::<Vec<_>>(),
            )])),
            status: Some(true),
        };
        let services = self
            .inner
            .list_services(Some(opts))
            .await
            .map_err(self.err("list services"))?;
        // Docker's `id` filter matches prefixes: keep exact ids only.
        let services: Vec<_> = services
            .into_iter()
            .filter(|s| s.id.as_ref().is_some_and(|id| scope.contains(id)))
            .collect();
        let existing: BTreeSet<ServiceId> = services.iter().filter_map(|s| s.id.clone()).collect();
        if existing.is_empty() {
            return Ok((services, Vec::new(), convert::Times::default()));
        }
        let (tasks, times) = self.service_tasks_timed(&existing).await?;
        Ok((services, tasks, times))
    }

    /// Every task (`GET /tasks`, read here: bollard's model drops `NetworksAttachments`),
    /// unsorted. Cheaper than a [`Docker::snapshot`]: one request, no service status.
    pub async fn tasks(&self) -> Result<Vec<Task>, SwarmError> {
        Ok(self.tasks_timed().await?.0)
    }

    /// [`Docker::tasks`] with their timestamps.
    async fn tasks_timed(&self) -> Result<(Vec<Task>, convert::Times), SwarmError> {
        let path = format!("/v{}/tasks", self.api_version);
        self.tasks_at(&path, "list tasks").await
    }

    /// `GET <path>` (a `/tasks` query) decoded into tasks with their timestamps.
    async fn tasks_at(
        &self,
        path: &str,
        op: &'static str,
    ) -> Result<(Vec<Task>, convert::Times), SwarmError> {
        let body = raw::get(&self.endpoint, path, op, REQUEST_TIMEOUT).await?;
        convert::tasks_timed(&body).map_err(|e| SwarmError::Decode {
            op,
            source: e.into(),
        })
    }

    /// The tasks of `services` only (`GET /tasks?filters={"service":[<id>...]}`), with their
    /// timestamps: what polling a settling service costs, where [`Docker::tasks`] reads every
    /// task of the Swarm. Docker answers 404 for a service it does not know (removed since):
    /// the caller lists everything then.
    async fn service_tasks_timed(
        &self,
        services: &BTreeSet<ServiceId>,
    ) -> Result<(Vec<Task>, convert::Times), SwarmError> {
        let path = format!(
            "/v{}/tasks?filters={}",
            self.api_version,
            raw::query_value(&convert::service_filter(services))
        );
        self.tasks_at(&path, "list tasks of services").await
    }

    /// The event stream from `since` (`seconds.nanoseconds`, engine time), filtered to what
    /// the watcher acts on. Lazy: the request goes out on the first poll.
    /// With a separate local engine, the manager's cluster-wide events and the local engine's
    /// container events, merged; either stream ending ends the whole (an error item), so that
    /// the watcher reopens both from `since` and lists again: nothing is lost on either.
    fn events(
        &self,
        since: String,
    ) -> futures_util::stream::BoxStream<'static, Result<events::Event, SwarmError>> {
        let Some(node) = &self.node else {
            return self.events_of(since, &events::TYPES).boxed();
        };
        let ended = |endpoint: String| {
            futures_util::stream::once(async move {
                Err(SwarmError::Stream {
                    message: format!("the event stream of {endpoint} ended"),
                })
            })
        };
        let cluster = self
            .events_of(since.clone(), &CLUSTER_TYPES)
            .chain(ended(self.endpoint()));
        let local = node
            .events_of(since, &NODE_TYPES)
            .chain(ended(node.endpoint()));
        futures_util::stream::select(cluster, local).boxed()
    }

    fn events_of(
        &self,
        since: String,
        types: &[events::EventKind],
    ) -> impl Stream<Item = Result<events::Event, SwarmError>> + Send + 'static {
        let filters = HashMap::from([
            (
                "type".to_string(),
                types.iter().map(|k| k.as_str().to_string()).collect(),
            ),
            (
                "event".to_string(),
                events::ACTIONS.map(str::to_string).to_vec(),
            ),
        ]);
        let opts = bollard::query_parameters::EventsOptions {
            since: Some(since),
            until: None,
            filters: Some(filters),
        };
        let endpoint = self.endpoint.to_string();
        self.inner.events(Some(opts)).map(move |item| match item {
            Ok(m) => Ok(events::event(&m)),
            Err(e) => Err(SwarmError::from_bollard("events", &endpoint, e)),
        })
    }

    /// A task's container: whether it runs, whether it has a healthcheck, its addresses.
    async fn task_container(&self, container: &str) -> Result<convert::TaskContainer, SwarmError> {
        Ok(convert::task_container(
            &self.local().inspect_container(container).await?,
        ))
    }

    /// Network id -> name for every network `container` (id or name) is attached to.
    pub async fn container_networks(
        &self,
        container: &str,
    ) -> Result<BTreeMap<NetworkId, String>, SwarmError> {
        Ok(convert::container_networks(
            &self.local().inspect_container(container).await?,
        ))
    }

    async fn inspect_container(
        &self,
        container: &str,
    ) -> Result<bollard::models::ContainerInspectResponse, SwarmError> {
        self.inner
            .inspect_container(
                container,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(self.err("inspect container"))
    }

    /// Attaches `container` to `network` (ids or names). Already attached is success.
    pub async fn connect_network(&self, network: &str, container: &str) -> Result<(), SwarmError> {
        let req = bollard::models::NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: None,
        };
        let local = self.local();
        let res = local.inner.connect_network(network, req).await;
        settled_network_op(
            NetworkOp::Connect,
            res.map_err(local.err("connect network")),
        )
    }

    /// Detaches `container` from `network`. Not attached is success.
    pub async fn disconnect_network(
        &self,
        network: &str,
        container: &str,
    ) -> Result<(), SwarmError> {
        let req = bollard::models::NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(false),
        };
        let local = self.local();
        let res = local.inner.disconnect_network(network, req).await;
        settled_network_op(
            NetworkOp::Disconnect,
            res.map_err(local.err("disconnect network")),
        )
    }
}

impl Docker {
    /// Makes sure this node's HAProxy container exists and runs, through the local engine:
    /// a running container named `spec.name` is adopted untouched, a stopped one is started,
    /// a missing one is created from `spec` (the image pulled first if the engine lacks it)
    /// and started. Never stops, restarts, recreates or removes it: a swarm-lb restart or
    /// upgrade leaves HAProxy and its connections alone.
    ///
    /// Errors: the engine's ([`SwarmError::Api`] e.g. a host port taken, an image that cannot
    /// be pulled; [`SwarmError::Unreachable`]).
    pub async fn ensure_proxy(
        &self,
        spec: &proxy::ProxySpec,
    ) -> Result<proxy::ProxyOutcome, SwarmError> {
        let local = self.local();
        let mut outcome = proxy::ProxyOutcome::Created;
        match local.inspect_container(&spec.name).await {
            Ok(found) => {
                if found.state.and_then(|s| s.running) == Some(true) {
                    return Ok(proxy::ProxyOutcome::Adopted);
                }
                match local.start(&spec.name).await {
                    Ok(()) => return Ok(proxy::ProxyOutcome::Started),
                    // After its node's engine restarted, a stopped container attached to an
                    // overlay that is not on the node (yet, or any more) cannot start. It serves
                    // nothing: replace it (same spec and volumes, so the same config; swarm-lb
                    // attaches the networks it needs in its passes).
                    Err(SwarmError::Api {
                        status: 404,
                        ref message,
                        ..
                    }) if proxy::lost_network(message).is_some() => {
                        local.remove(&spec.name).await?;
                        outcome = proxy::ProxyOutcome::Recreated;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(SwarmError::Api { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        match local.create(spec).await {
            Err(SwarmError::Api { status: 404, .. }) => {
                local.pull(&spec.image).await?;
                local.create(spec).await?;
            }
            other => other?,
        }
        local.start(&spec.name).await?;
        Ok(outcome)
    }

    /// Removes a stopped container (its named volumes stay).
    async fn remove(&self, name: &str) -> Result<(), SwarmError> {
        let opts = bollard::query_parameters::RemoveContainerOptions {
            v: false,
            force: true,
            link: false,
        };
        self.inner
            .remove_container(name, Some(opts))
            .await
            .map_err(self.err("remove container"))
    }

    async fn create(&self, spec: &proxy::ProxySpec) -> Result<(), SwarmError> {
        use bollard::models::{
            ContainerCreateBody, HostConfig, Mount, MountType, PortBinding, RestartPolicy,
            RestartPolicyNameEnum,
        };
        let mut ports: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &spec.publish {
            ports
                .entry(format!("{}/tcp", p.container_port))
                .or_default()
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: p.host_ip.map(|ip| ip.to_string()),
                    host_port: Some(p.host_port.to_string()),
                });
        }
        let volume = |(source, target): &(String, String)| Mount {
            typ: Some(MountType::VOLUME),
            source: Some(source.clone()),
            target: Some(target.clone()),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.cmd.clone()),
            env: Some(spec.env.clone()),
            user: Some("root".into()),
            exposed_ports: Some(ports.keys().cloned().collect()),
            labels: Some(HashMap::from([(
                "org.swarm-lb.role".to_string(),
                "haproxy".to_string(),
            )])),
            host_config: Some(HostConfig {
                mounts: Some(vec![volume(&spec.run_volume), volume(&spec.config_volume)]),
                port_bindings: Some(ports),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::ALWAYS),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = bollard::query_parameters::CreateContainerOptions {
            name: Some(spec.name.clone()),
            platform: String::new(),
        };
        self.inner
            .create_container(Some(opts), body)
            .await
            .map(drop)
            .map_err(self.err("create container"))
    }

    async fn start(&self, name: &str) -> Result<(), SwarmError> {
        self.inner
            .start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(self.err("start container"))
    }

    async fn pull(&self, image: &str) -> Result<(), SwarmError> {
        let opts = bollard::query_parameters::CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let mut progress = self.inner.create_image(Some(opts), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(self.err("pull image"))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NetworkOp {
    Connect,
    Disconnect,
}

/// The engine reports "already there" / "already gone" as errors, with varying statuses
/// (409 or 403 for connect, 500 for disconnect on 20.10); only the message tells them apart.
fn settled_network_op(op: NetworkOp, res: Result<(), SwarmError>) -> Result<(), SwarmError> {
    match res {
        Err(SwarmError::Api { ref message, .. }) if already_done(op, message) => Ok(()),
        other => other,
    }
}

fn already_done(op: NetworkOp, message: &str) -> bool {
    match op {
        NetworkOp::Connect => {
            message.contains("is already attached to network")
                || message.contains("already exists in network")
        }
        NetworkOp::Disconnect => message.contains("is not connected to network"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, message: &str) -> Result<(), SwarmError> {
        Err(SwarmError::Api {
            op: "connect network",
            status,
            message: message.into(),
        })
    }

    #[test]
    fn attaching_twice_or_detaching_twice_is_success() {
        // Messages as Docker 20.10 sends them.
        assert!(settled_network_op(
            NetworkOp::Connect,
            api(409, "fx-probe is already attached to network fx-lb-net")
        )
        .is_ok());
        assert!(settled_network_op(
            NetworkOp::Connect,
            api(
                403,
                "endpoint with name fx-probe already exists in network bridge"
            )
        )
        .is_ok());
        assert!(settled_network_op(
            NetworkOp::Disconnect,
            api(
                500,
                "container 30160e9cb996 is not connected to network fx-lb-net"
            )
        )
        .is_ok());
    }

    #[test]
    fn other_network_errors_are_reported() {
        let not_attachable = "Could not attach to network ingress: rpc error: code = PermissionDenied desc = network ingress not manually attachable";
        assert!(settled_network_op(NetworkOp::Connect, api(500, not_attachable)).is_err());
        assert!(
            settled_network_op(NetworkOp::Connect, api(404, "No such container: nonexist"))
                .is_err()
        );
        assert!(settled_network_op(
            NetworkOp::Disconnect,
            api(409, "fx is already attached to network n")
        )
        .is_err());
    }
}

#[cfg(test)]
mod json_tests {
    use super::snapshot_from_json;

    const SERVICES: &[u8] = include_bytes!("../../tests/fixtures/docker-1.41/services.json");
    const TASKS: &[u8] = include_bytes!("../../tests/fixtures/docker-1.41/tasks.json");
    const NETWORKS: &[u8] = include_bytes!("../../tests/fixtures/docker-1.41/networks.json");

    #[test]
    fn captured_json_makes_a_snapshot_and_garbage_is_an_error_not_a_panic() {
        let snap = snapshot_from_json(SERVICES, TASKS, NETWORKS).expect("fixtures convert");
        assert!(!snap.services.is_empty() && !snap.tasks.is_empty() && !snap.networks.is_empty());
        for bad in [&b""[..], b"{", b"null", b"{}", b"[1,2", b"\xff"] {
            assert!(snapshot_from_json(bad, TASKS, NETWORKS).is_err(), "{bad:?}");
            assert!(
                snapshot_from_json(SERVICES, bad, NETWORKS).is_err(),
                "{bad:?}"
            );
            assert!(snapshot_from_json(SERVICES, TASKS, bad).is_err(), "{bad:?}");
        }
        // Items of the wrong shape are skipped, the rest kept.
        let snap = snapshot_from_json(b"[{}]", br#"[{"ID": 5}, {}]"#, b"[{}]").expect("arrays");
        assert_eq!(snap, Default::default());
    }
}
