//! Docker's JSON -> the plain model types. Pure functions: no I/O, no clock.
//!
//! A malformed item (no id, a bad CIDR, a field of the wrong type) is skipped with a `warn!`
//! that names it; the rest of the list is kept. Only a reply that is not a list at all is an
//! error.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models;
use serde::Deserialize;
use tracing::{debug, warn};

use crate::observe::TaskTimes;

use crate::model::{
    DesiredTaskState, Network, NetworkId, Service, ServiceId, Snapshot, Task, TaskAddress,
    TaskState, Vip,
};

/// The `filters` value of `GET /tasks` that selects the tasks of `services` (Docker's filter
/// syntax: a JSON object of lists; `service` takes names or IDs).
pub(super) fn service_filter(services: &BTreeSet<ServiceId>) -> String {
    serde_json::json!({ "service": services }).to_string()
}

/// `tasks` (a listing's, sorted by id) with those of `services` replaced by `fresh`: what a
/// poll of some services' tasks makes of the last listing. Sorted by id.
pub(super) fn merge_service_tasks(
    tasks: Vec<Arc<Task>>,
    services: &BTreeSet<ServiceId>,
    fresh: Vec<Task>,
) -> Vec<Arc<Task>> {
    // A task of another service in the reply (a filter Docker did not apply) is dropped:
    // the listing of that service stays as it was.
    let fresh: Vec<Task> = fresh
        .into_iter()
        .filter(|t| services.contains(&t.service_id))
        .collect();
    let fresh = share(&tasks, fresh, |t| &t.id);
    let kept: Vec<Arc<Task>> = tasks
        .into_iter()
        .filter(|t| !services.contains(&t.service_id))
        .collect();
    merge_sorted(kept, fresh)
}

/// `sorted` (sorted by task id, as a [`Snapshot`] holds them) with `fresh` (a few, in any
/// order) put in their places: what [`sort_tasks`] gives of the two chained, in
/// O(len + fresh x log len) comparisons instead of a sort's (at 30,000 tasks a sort after
/// each poll of one service was a twentieth of a change's CPU).
pub(super) fn merge_sorted(sorted: Vec<Arc<Task>>, fresh: Vec<Arc<Task>>) -> Vec<Arc<Task>> {
    if fresh.is_empty() {
        return sorted;
    }
    let fresh = sort_tasks(fresh);
    let mut out = Vec::with_capacity(sorted.len() + fresh.len());
    let mut rest = &sorted[..];
    for task in fresh {
        let at = rest.partition_point(|t| t.id <= task.id);
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at..];
        out.push(task);
    }
    out.extend_from_slice(rest);
    out
}

/// `fresh` as shared values, each the value of `prev` (sorted by `key`) when equal to it: an
/// item a listing shows unchanged stays the same `Arc`, so snapshots compare it by address
/// and what is derived from it (the desired routing of a service) is not derived again.
pub(super) fn share<T: PartialEq>(
    prev: &[Arc<T>],
    fresh: Vec<T>,
    key: impl Fn(&T) -> &str,
) -> Vec<Arc<T>> {
    fresh
        .into_iter()
        .map(|item| {
            let old = prev
                .binary_search_by(|p| key(p).cmp(key(&item)))
                .ok()
                .map(|i| &prev[i]);
            match old {
                Some(old) if **old == item => old.clone(),
                _ => Arc::new(item),
            }
        })
        .collect()
}

/// `prev` with the services of `scope` as `raw` lists them now (those absent are gone) and
/// their tasks replaced by `tasks`: what a service event's listing makes of the last one.
pub(super) fn merge_services(
    prev: Listing,
    index: &NetworkIndex,
    scope: &BTreeSet<ServiceId>,
    raw: &[models::Service],
    tasks: Vec<Task>,
) -> Listing {
    let (fresh, fresh_progress) = services(raw, index);
    let Listing {
        snapshot,
        mut progress,
    } = prev;
    let fresh = share(&snapshot.services, fresh, |s| &s.id);
    let mut merged: Vec<_> = snapshot
        .services
        .into_iter()
        .filter(|s| !scope.contains(&s.id))
        .chain(fresh)
        .collect();
    merged.sort_by(|a, b| a.id.cmp(&b.id));
    progress.retain(|id, _| !scope.contains(id));
    progress.extend(fresh_progress);
    Listing {
        snapshot: Snapshot {
            services: merged,
            tasks: merge_service_tasks(snapshot.tasks, scope, tasks),
            networks: snapshot.networks,
        },
        progress,
    }
}

/// A snapshot plus what the watcher needs to tell whether a service has settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Listing {
    pub snapshot: Snapshot,
    pub progress: BTreeMap<ServiceId, ServiceProgress>,
}

/// What a service asks of Swarm, beyond the model's view of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ServiceProgress {
    /// Tasks the service wants running (`ServiceStatus.DesiredTasks`, else the replica count);
    /// `None` for jobs and whenever Docker does not say.
    pub desired_tasks: Option<u64>,
    /// A rolling update or rollback is in progress (`UpdateStatus.State`).
    pub updating: bool,
}

/// The listed networks, for resolving `TaskTemplate.Networks[].Target`.
#[derive(Debug, Default, Clone)]
pub(super) struct NetworkIndex {
    networks: Vec<Network>,
    /// Swarm-scoped ones: services can only use these.
    swarm: BTreeSet<NetworkId>,
}

impl NetworkIndex {
    /// `Target` is an id or a name (depending on how the service was created); returns the
    /// id when known ([`crate::model::find_network`], a swarm network winning over a local
    /// one of the same name), else the target itself (a network listed a moment later, most
    /// likely).
    pub fn resolve(&self, target: &str) -> NetworkId {
        crate::model::find_network(&self.networks, target, |n| self.swarm.contains(&n.id))
            .map_or_else(|| target.to_string(), |n| n.id.clone())
    }
}

/// Sorts everything by id so that two listings of the same state compare equal.
pub(super) fn listing(
    mut services: Vec<Service>,
    progress: BTreeMap<ServiceId, ServiceProgress>,
    tasks: Vec<Task>,
    mut networks: Vec<Network>,
) -> Listing {
    services.sort_by(|a, b| a.id.cmp(&b.id));
    networks.sort_by(|a, b| a.id.cmp(&b.id));
    Listing {
        snapshot: Snapshot {
            services: services.into_iter().map(Arc::new).collect(),
            tasks: sort_tasks(tasks.into_iter().map(Arc::new).collect()),
            networks,
        },
        progress,
    }
}

/// `listing` with the services and tasks that `prev` holds unchanged shared with it (see
/// [`share`]): a full listing (a resync) leaves what did not change the same values.
pub(super) fn share_listing(prev: &Snapshot, listing: Listing) -> Listing {
    fn unshare<T: Clone>(v: Vec<Arc<T>>) -> Vec<T> {
        v.into_iter()
            .map(|a| Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()))
            .collect()
    }
    let Listing { snapshot, progress } = listing;
    let services = share(&prev.services, unshare(snapshot.services), |s| &s.id);
    let tasks = share(&prev.tasks, unshare(snapshot.tasks), |t| &t.id);
    Listing {
        snapshot: Snapshot {
            services,
            tasks,
            networks: snapshot.networks,
        },
        progress,
    }
}

pub(super) fn sort_tasks(mut tasks: Vec<Arc<Task>>) -> Vec<Arc<Task>> {
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    tasks
}

/// `GET /networks` -> model networks and the index used to resolve service targets.
pub(super) fn networks(raw: &[models::Network]) -> (Vec<Network>, NetworkIndex) {
    let mut out = Vec::with_capacity(raw.len());
    let mut swarm = BTreeSet::new();
    for n in raw {
        let (Some(id), Some(name)) = (non_empty(&n.id), non_empty(&n.name)) else {
            warn!(id = ?n.id, name = ?n.name, "network without id or name skipped");
            continue;
        };
        if n.scope.as_deref() == Some("swarm") {
            swarm.insert(id.to_string());
        }
        out.push(Network {
            id: id.to_string(),
            name: name.to_string(),
            driver: n.driver.clone().unwrap_or_default(),
            attachable: n.attachable.unwrap_or(false),
            ingress: n.ingress.unwrap_or(false),
        });
    }
    let index = NetworkIndex {
        networks: out.clone(),
        swarm,
    };
    (out, index)
}

/// `GET /services?status=true` -> model services, and the progress of each.
pub(super) fn services(
    raw: &[models::Service],
    index: &NetworkIndex,
) -> (Vec<Service>, BTreeMap<ServiceId, ServiceProgress>) {
    let mut out = Vec::with_capacity(raw.len());
    let mut progress = BTreeMap::new();
    for s in raw {
        let Some(id) = non_empty(&s.id) else {
            warn!(name = ?s.spec.as_ref().and_then(|sp| sp.name.as_deref()), "service without id skipped");
            continue;
        };
        let Some(spec) = &s.spec else {
            warn!(service = id, "service without spec skipped");
            continue;
        };
        let Some(name) = non_empty(&spec.name) else {
            warn!(service = id, "service without name skipped");
            continue;
        };
        let labels = spec
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // `Spec.Networks` is the deprecated place; engines still fill it for old clients.
        let targets = spec
            .task_template
            .as_ref()
            .and_then(|t| t.networks.as_ref())
            .filter(|n| !n.is_empty())
            .or(spec.networks.as_ref());
        let networks = targets
            .into_iter()
            .flatten()
            .filter_map(|n| match non_empty(&n.target) {
                Some(t) => Some(index.resolve(t)),
                None => {
                    warn!(service = name, "network attachment without target skipped");
                    None
                }
            })
            .collect();
        let vips = s
            .endpoint
            .as_ref()
            .and_then(|e| e.virtual_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| {
                let Some(network) = non_empty(&v.network_id) else {
                    warn!(service = name, "virtual IP without network skipped");
                    return None;
                };
                let Some(addr) = v.addr.as_deref() else {
                    warn!(
                        service = name,
                        network, "virtual IP without address skipped"
                    );
                    return None;
                };
                match parse_cidr_addr(addr) {
                    Some(addr) => Some(Vip {
                        network: network.to_string(),
                        addr,
                    }),
                    None => {
                        warn!(
                            service = name,
                            network, addr, "virtual IP with a bad address skipped"
                        );
                        None
                    }
                }
            })
            .collect();
        progress.insert(id.to_string(), service_progress(s));
        out.push(Service {
            id: id.to_string(),
            name: name.to_string(),
            labels,
            networks,
            vips,
        });
    }
    (out, progress)
}

fn service_progress(s: &models::Service) -> ServiceProgress {
    let mode = s.spec.as_ref().and_then(|sp| sp.mode.as_ref());
    let is_job = mode.is_some_and(|m| m.replicated_job.is_some() || m.global_job.is_some());
    let replicas = mode
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .and_then(|r| u64::try_from(r).ok());
    let from_status = s.service_status.as_ref().and_then(|st| st.desired_tasks);
    let desired_tasks = if is_job {
        None
    } else {
        from_status.or(replicas)
    };
    let updating = s
        .update_status
        .as_ref()
        .and_then(|u| u.state)
        .is_some_and(|st| {
            use models::ServiceUpdateStatusStateEnum as U;
            matches!(st, U::UPDATING | U::ROLLBACK_STARTED)
        });
    ServiceProgress {
        desired_tasks,
        updating,
    }
}

/// The part of a task this crate reads. bollard's `Task` lacks `NetworksAttachments`, so tasks
/// are decoded here, and leniently: states are strings (an unknown one folds to `Finished`).
#[derive(Debug, Deserialize)]
struct RawTask {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "ServiceID")]
    service_id: Option<String>,
    #[serde(rename = "Slot")]
    slot: Option<i64>,
    #[serde(rename = "Status")]
    status: Option<RawTaskStatus>,
    #[serde(rename = "DesiredState")]
    desired_state: Option<String>,
    #[serde(rename = "NetworksAttachments")]
    networks_attachments: Option<Vec<RawAttachment>>,
    #[serde(rename = "UpdatedAt")]
    updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawTaskStatus {
    #[serde(rename = "State")]
    state: Option<String>,
    #[serde(rename = "Timestamp")]
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawAttachment {
    #[serde(rename = "Network")]
    network: Option<RawAttachedNetwork>,
    #[serde(rename = "Addresses")]
    addresses: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct RawAttachedNetwork {
    #[serde(rename = "ID")]
    id: Option<String>,
}

/// Docker's timestamps of each task listed, by task id.
pub(super) type Times = Vec<(String, TaskTimes)>;

/// `GET /tasks` body -> model tasks. Err only if the body is not a JSON array.
pub(super) fn tasks(body: &[u8]) -> Result<Vec<Task>, serde_json::Error> {
    tasks_timed(body).map(|(tasks, _)| tasks)
}

/// [`tasks`], with each task's timestamps (for convergence metrics).
///
/// Each task is read straight from its slice of the body into the few fields routing needs
/// (the array is split into raw slices first, so that one malformed task is skipped, not the
/// listing): at 10,000 services, building a `serde_json::Value` tree of each 30,000-task
/// listing first took 15 % of the CPU of a run of changes.
pub(super) fn tasks_timed(body: &[u8]) -> Result<(Vec<Task>, Times), serde_json::Error> {
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body)?;
    let mut out = Vec::with_capacity(items.len());
    let mut times = Vec::with_capacity(items.len());
    for item in items {
        match serde_json::from_str::<RawTask>(item.get()) {
            Ok(raw) => {
                let t = task_times(&raw);
                if let Some(task) = task(raw) {
                    times.push((task.id.clone(), t));
                    out.push(task);
                }
            }
            Err(error) => {
                #[derive(Deserialize)]
                struct Named {
                    #[serde(rename = "ID")]
                    id: Option<String>,
                }
                let named = serde_json::from_str::<Named>(item.get())
                    .ok()
                    .and_then(|n| n.id);
                warn!(task = ?named, %error, "malformed task skipped")
            }
        }
    }
    Ok((out, times))
}

/// `Status.Timestamp` of a running task; `UpdatedAt` of a task Swarm is stopping.
fn task_times(raw: &RawTask) -> TaskTimes {
    let status = raw.status.as_ref();
    let running = status.and_then(|s| s.state.as_deref()) == Some("running");
    let stopping = raw.desired_state.as_deref().is_some_and(|d| d != "running");
    TaskTimes {
        running: status
            .and_then(|s| s.timestamp.as_deref())
            .filter(|_| running)
            .and_then(rfc3339),
        shutdown: raw
            .updated_at
            .as_deref()
            .filter(|_| stopping)
            .and_then(rfc3339),
    }
}

/// `2026-11-26T23:08:55.223422744Z` (UTC, as Docker writes times) -> a time. `None` for any
/// other form (Docker writes no offsets), for more than 9 fraction digits, and for a time
/// before the Unix epoch: Docker writes Go's zero time `0001-01-01T00:00:00Z` for "never".
pub fn rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':');
    let (h, mi, sec): (u64, u64, u64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || h > 23
        || mi > 59
        || sec > 60
        || frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let secs = days.checked_mul(86_400)? + h * 3600 + mi * 60 + sec;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

fn task(raw: RawTask) -> Option<Task> {
    let Some(id) = non_empty(&raw.id) else {
        warn!("task without id skipped");
        return None;
    };
    let Some(service_id) = non_empty(&raw.service_id) else {
        // Network-attachment tasks (a plain container on an attachable overlay) have no
        // service; they are not routable and not worth a warning.
        return None;
    };
    let Some(state) = raw.status.as_ref().and_then(|s| s.state.as_deref()) else {
        warn!(task = id, "task without state skipped");
        return None;
    };
    let Some(desired) = raw.desired_state.as_deref() else {
        warn!(task = id, "task without desired state skipped");
        return None;
    };
    let mut addresses = Vec::new();
    for att in raw.networks_attachments.iter().flatten() {
        let Some(network) = att.network.as_ref().and_then(|n| non_empty(&n.id)) else {
            warn!(task = id, "network attachment without network id skipped");
            continue;
        };
        for a in att.addresses.iter().flatten() {
            match parse_cidr_addr(a) {
                Some(addr) => addresses.push(TaskAddress {
                    network: network.to_string(),
                    addr,
                }),
                None => {
                    warn!(task = id, network, addr = %a, "task address that is not an IP skipped")
                }
            }
        }
    }
    Some(Task {
        id: id.to_string(),
        service_id: service_id.to_string(),
        // Global services' tasks have no slot (Docker omits it, or sends 0).
        slot: raw
            .slot
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0),
        state: task_state(state),
        desired_state: desired_state(desired),
        addresses,
    })
}

/// Folds `Status.State` as [`TaskState`] documents.
pub(super) fn task_state(s: &str) -> TaskState {
    match s {
        "new" | "allocated" | "pending" | "assigned" | "accepted" | "ready" | "preparing"
        | "starting" => TaskState::Starting,
        "running" => TaskState::Running,
        _ => TaskState::Finished,
    }
}

/// Folds `DesiredState` as [`DesiredTaskState`] documents.
pub(super) fn desired_state(s: &str) -> DesiredTaskState {
    match s {
        "running" => DesiredTaskState::Running,
        _ => DesiredTaskState::Shutdown,
    }
}

/// `10.0.1.5/24` or `10.0.1.5` (or an IPv6 form) -> the address; `None` if it is not one.
pub(super) fn parse_cidr_addr(s: &str) -> Option<IpAddr> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    if let Some(p) = prefix {
        let p: u8 = p.parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if p > max {
            return None;
        }
    }
    Some(ip)
}

/// `GET /containers/{id}/json` -> network id -> network name.
pub(super) fn container_networks(
    c: &models::ContainerInspectResponse,
) -> BTreeMap<NetworkId, String> {
    let mut out = BTreeMap::new();
    let nets = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref());
    for (name, ep) in nets.into_iter().flatten() {
        match non_empty(&ep.network_id) {
            Some(id) => {
                out.insert(id.to_string(), name.clone());
            }
            None => {
                // Normal for a container that has exited (a copy job's, say): nothing to route.
                debug!(container = ?c.name, network = name, "container network without id skipped")
            }
        }
    }
    out
}

/// What the fast path needs from a task's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TaskContainer {
    /// `State.Running`.
    pub running: bool,
    /// The container has a healthcheck (its own or its image's, not disabled with `NONE`):
    /// Swarm then calls the task running only once it is healthy.
    pub healthcheck: bool,
    /// `NetworkSettings.Networks[*]`: `NetworkID` with `IPAddress` and `GlobalIPv6Address`.
    pub addresses: Vec<TaskAddress>,
}

/// `GET /containers/{id}/json` of a task's container -> its state and addresses.
pub(super) fn task_container(c: &models::ContainerInspectResponse) -> TaskContainer {
    let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    let test = c
        .config
        .as_ref()
        .and_then(|c| c.healthcheck.as_ref())
        .and_then(|h| h.test.as_ref());
    // Swarm's own rule (executor/container/controller.go): no test, or `NONE`, is none.
    let healthcheck = test
        .and_then(|t| t.first())
        .is_some_and(|first| first != "NONE");
    let mut addresses = Vec::new();
    let nets = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref());
    // Sorted by network name, so the same container gives the same list.
    let nets: BTreeMap<&String, &models::EndpointSettings> = nets.into_iter().flatten().collect();
    for (name, ep) in nets {
        let Some(network) = non_empty(&ep.network_id) else {
            debug!(container = ?c.name, network = %name, "container network without id skipped");
            continue;
        };
        for a in [&ep.ip_address, &ep.global_ipv6_address] {
            let Some(a) = non_empty(a) else { continue };
            match parse_cidr_addr(a) {
                Some(addr) => addresses.push(TaskAddress {
                    network: network.to_string(),
                    addr,
                }),
                None => {
                    warn!(container = ?c.name, network, addr = a, "container address that is not an IP skipped")
                }
            }
        }
    }
    TaskContainer {
        running,
        healthcheck,
        addresses,
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICES: &str = include_str!("../../tests/fixtures/docker-1.41/services.json");
    const TASKS: &str = include_str!("../../tests/fixtures/docker-1.41/tasks.json");
    const TASKS_SCALING_DOWN: &str =
        include_str!("../../tests/fixtures/docker-1.41/tasks-scaling-down.json");
    const NETWORKS: &str = include_str!("../../tests/fixtures/docker-1.41/networks.json");
    const CONTAINER: &str = include_str!("../../tests/fixtures/docker-1.41/container-inspect.json");
    const TASK_CONTAINER: &str =
        include_str!("../../tests/fixtures/docker-1.41/container-inspect-task.json");
    const HEALTH_CONTAINER: &str =
        include_str!("../../tests/fixtures/docker-1.41/container-inspect-healthcheck.json");

    const LB_NET: &str = "ozmh1494lrjy2tkbzt8h8ykgd";
    const WEB: &str = "btrao17gkwp6g12j40iqj7crs";

    /// A running task of `service` with no address: what the merge tests move around.
    fn running(id: &str, service: &str) -> Task {
        Task {
            id: id.into(),
            service_id: service.into(),
            slot: None,
            state: TaskState::Running,
            desired_state: DesiredTaskState::Running,
            addresses: vec![],
        }
    }

    #[test]
    fn a_merge_keeps_the_shared_value_of_each_task_listed_unchanged() {
        let listed = crate::model::shared(vec![
            running("a1", "a"),
            running("b1", "b"),
            running("b2", "b"),
        ]);
        let scope = BTreeSet::from(["b".to_string()]);
        let mut moved = running("b2", "b");
        moved.slot = Some(7);
        let fresh = vec![running("b1", "b"), moved];
        let merged = merge_service_tasks(listed.clone(), &scope, fresh);
        assert!(
            Arc::ptr_eq(&merged[0], &listed[0]),
            "another service's task"
        );
        assert!(
            Arc::ptr_eq(&merged[1], &listed[1]),
            "listed again unchanged"
        );
        assert!(!Arc::ptr_eq(&merged[2], &listed[2]), "changed");
        assert_eq!(merged[2].slot, Some(7));
    }

    #[test]
    fn a_service_poll_replaces_that_services_tasks_and_keeps_the_others() {
        let listed = crate::model::shared(vec![
            running("a1", "a"),
            running("b1", "b"),
            running("b2", "b"),
        ]);
        let scope = BTreeSet::from(["b".to_string()]);
        let fresh = vec![running("b3", "b"), running("b1", "b"), running("c9", "c")];
        let merged = merge_service_tasks(listed, &scope, fresh);
        let ids: Vec<&str> = merged.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["a1", "b1", "b3"]);
        assert_eq!(service_filter(&scope), r#"{"service":["b"]}"#);
    }

    fn fixture_networks() -> (Vec<Network>, NetworkIndex) {
        let raw: Vec<models::Network> = serde_json::from_str(NETWORKS).expect("networks fixture");
        networks(&raw)
    }

    fn fixture_services() -> (Vec<Service>, BTreeMap<ServiceId, ServiceProgress>) {
        let (_, index) = fixture_networks();
        let raw: Vec<models::Service> = serde_json::from_str(SERVICES).expect("services fixture");
        services(&raw, &index)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn a_service_listing_replaces_the_named_services_drops_the_gone_and_keeps_the_rest() {
        let (networks, index) = fixture_networks();
        let raw: Vec<models::Service> = serde_json::from_str(SERVICES).expect("fixture");
        let (services, progress) = services(&raw, &index);
        assert!(services.len() >= 2, "the fixture has two services or more");
        let prev = listing(services.clone(), progress, vec![], networks);
        let (kept, gone) = (&services[0], &services[1]);
        // The second service is in the scope but no longer listed: removed.
        let scope = BTreeSet::from([kept.id.clone(), gone.id.clone()]);
        let still: Vec<models::Service> = raw
            .iter()
            .filter(|s| s.id.as_deref() == Some(kept.id.as_str()))
            .cloned()
            .collect();
        let prev_networks = prev.snapshot.networks.clone();
        let merged = merge_services(prev, &index, &scope, &still, vec![]);
        let ids: Vec<&str> = merged
            .snapshot
            .services
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert!(ids.contains(&kept.id.as_str()));
        assert!(!ids.contains(&gone.id.as_str()));
        assert_eq!(merged.snapshot.services.len(), services.len() - 1);
        assert!(!merged.progress.contains_key(&gone.id));
        assert_eq!(merged.snapshot.networks, prev_networks);
    }

    #[test]
    fn networks_keep_id_name_driver_and_flags() {
        let (nets, _) = fixture_networks();
        assert_eq!(nets.len(), 6);
        let lb = nets.iter().find(|n| n.id == LB_NET).expect("fx-lb-net");
        assert_eq!(
            lb,
            &Network {
                id: LB_NET.into(),
                name: "fx-lb-net".into(),
                driver: "overlay".into(),
                attachable: true,
                ingress: false,
            }
        );
        let ingress = nets.iter().find(|n| n.name == "ingress").expect("ingress");
        assert!(ingress.ingress && !ingress.attachable);
    }

    #[test]
    fn services_carry_spec_labels_network_ids_and_vips() {
        let (svcs, progress) = fixture_services();
        assert_eq!(svcs.len(), 3);
        let web = svcs.iter().find(|s| s.id == WEB).expect("fx-web");
        assert_eq!(web.name, "fx-web");
        assert_eq!(
            web.labels,
            BTreeMap::from([
                (
                    "com.docker.lb.hosts".to_string(),
                    "web.example.com".to_string()
                ),
                ("com.docker.lb.port".to_string(), "8080".to_string()),
            ])
        );
        assert_eq!(web.networks, vec![LB_NET.to_string()]);
        assert_eq!(
            web.vips,
            vec![Vip {
                network: LB_NET.into(),
                addr: ip("10.0.1.2")
            }]
        );
        assert_eq!(progress[WEB].desired_tasks, Some(2));
        assert!(!progress[WEB].updating);
    }

    #[test]
    fn a_service_created_with_a_network_name_gets_the_network_id() {
        let (_, index) = fixture_networks();
        let mut raw: Vec<models::Service> = serde_json::from_str(SERVICES).expect("fixture");
        let nets = raw[0]
            .spec
            .as_mut()
            .and_then(|s| s.task_template.as_mut())
            .and_then(|t| t.networks.as_mut())
            .expect("fixture has task template networks");
        nets[0].target = Some("fx-lb-net".into());
        let (svcs, _) = services(&raw, &index);
        assert_eq!(svcs[0].networks, vec![LB_NET.to_string()]);
    }

    #[test]
    fn an_unknown_network_target_is_kept_as_given() {
        let (_, index) = fixture_networks();
        assert_eq!(index.resolve("not-listed-yet"), "not-listed-yet");
        assert_eq!(index.resolve(LB_NET), LB_NET);
        assert_eq!(index.resolve("ingress"), "391emqgb84zx3txkktmaqi2i9");
    }

    #[test]
    fn a_swarm_network_wins_over_a_local_one_of_the_same_name() {
        let raw: Vec<models::Network> = serde_json::from_value(serde_json::json!([
            {"Id": "swarm1", "Name": "shared", "Scope": "swarm", "Driver": "overlay"},
            {"Id": "local1", "Name": "shared", "Scope": "local", "Driver": "bridge"},
        ]))
        .expect("json");
        assert_eq!(networks(&raw).1.resolve("shared"), "swarm1");
        let reversed: Vec<models::Network> = raw.into_iter().rev().collect();
        assert_eq!(networks(&reversed).1.resolve("shared"), "swarm1");
    }

    #[test]
    fn a_dnsrr_service_has_no_vips() {
        let raw: Vec<models::Service> = serde_json::from_value(serde_json::json!([{
            "ID": "dns1",
            "Spec": {"Name": "dns", "EndpointSpec": {"Mode": "dnsrr"},
                     "TaskTemplate": {"Networks": [{"Target": "n1"}]}},
            "Endpoint": {"Spec": {}}
        }]))
        .expect("json");
        let (svcs, progress) = services(&raw, &NetworkIndex::default());
        assert_eq!(svcs[0].vips, vec![]);
        assert_eq!(svcs[0].networks, vec!["n1".to_string()]);
        assert_eq!(progress["dns1"].desired_tasks, None);
    }

    #[test]
    fn services_missing_id_or_name_are_skipped_and_bad_vips_dropped() {
        let raw: Vec<models::Service> = serde_json::from_value(serde_json::json!([
            {"Spec": {"Name": "no-id"}},
            {"ID": "no-name", "Spec": {}},
            {"ID": "no-spec"},
            {"ID": "ok", "Spec": {"Name": "ok", "Mode": {"Replicated": {"Replicas": 3}}},
             "UpdateStatus": {"State": "updating"},
             "Endpoint": {"VirtualIPs": [
                {"NetworkID": "n1", "Addr": "10.0.0.300/24"},
                {"NetworkID": "n1", "Addr": "10.0.0.3/99"},
                {"Addr": "10.0.0.4/24"},
                {"NetworkID": "n1"},
                {"NetworkID": "n2", "Addr": "10.0.2.5/24"}
             ]}}
        ]))
        .expect("json");
        let (svcs, progress) = services(&raw, &NetworkIndex::default());
        assert_eq!(svcs.len(), 1);
        assert_eq!(
            svcs[0].vips,
            vec![Vip {
                network: "n2".into(),
                addr: ip("10.0.2.5")
            }]
        );
        assert_eq!(
            progress["ok"],
            ServiceProgress {
                desired_tasks: Some(3),
                updating: true
            }
        );
    }

    #[test]
    fn tasks_carry_state_desired_state_slot_and_addresses_without_prefix() {
        let ts = tasks(TASKS.as_bytes()).expect("tasks fixture");
        assert_eq!(ts.len(), 5);
        let t = ts
            .iter()
            .find(|t| t.id == "l4jr87dy66e2q3hp643mbj1h6")
            .expect("fx-web.2");
        assert_eq!(
            t,
            &Task {
                id: "l4jr87dy66e2q3hp643mbj1h6".into(),
                service_id: WEB.into(),
                slot: Some(2),
                state: TaskState::Running,
                desired_state: DesiredTaskState::Running,
                addresses: vec![TaskAddress {
                    network: LB_NET.into(),
                    addr: ip("10.0.1.11")
                }],
            }
        );
    }

    #[test]
    fn a_task_being_scaled_away_is_running_with_desired_shutdown() {
        let ts = tasks(TASKS_SCALING_DOWN.as_bytes()).expect("fixture");
        let t = ts
            .iter()
            .find(|t| t.id == "w5vy36ecbv9k27xvp4s6am9bn")
            .expect("fx-web.2 being removed");
        assert_eq!(t.state, TaskState::Running);
        assert_eq!(t.desired_state, DesiredTaskState::Shutdown);
        assert_eq!(t.addresses[0].addr, ip("10.0.1.4"));
    }

    #[test]
    fn every_docker_task_state_folds_as_the_model_says() {
        for s in [
            "new",
            "allocated",
            "pending",
            "assigned",
            "accepted",
            "ready",
            "preparing",
            "starting",
        ] {
            assert_eq!(task_state(s), TaskState::Starting, "{s}");
        }
        assert_eq!(task_state("running"), TaskState::Running);
        for s in [
            "complete", "shutdown", "failed", "rejected", "remove", "orphaned", "what",
        ] {
            assert_eq!(task_state(s), TaskState::Finished, "{s}");
        }
        assert_eq!(desired_state("running"), DesiredTaskState::Running);
        for s in ["shutdown", "remove", "ready", "complete", ""] {
            assert_eq!(desired_state(s), DesiredTaskState::Shutdown, "{s}");
        }
    }

    #[test]
    fn malformed_tasks_are_skipped_and_the_rest_kept() {
        let body = serde_json::json!([
            {"ID": "a", "ServiceID": "s", "Status": {"State": "running"}, "DesiredState": "running",
             "NetworksAttachments": [
                {"Network": {"ID": "n"}, "Addresses": ["10.0.0.2/24", "bogus", "10.0.0.3/40"]},
                {"Addresses": ["10.0.0.9/24"]}
             ]},
            {"ID": "b", "ServiceID": "s", "Slot": "one", "Status": {"State": "running"}, "DesiredState": "running"},
            {"ID": "c", "ServiceID": "s", "DesiredState": "running"},
            {"ID": "d", "ServiceID": "s", "Status": {"State": "running"}},
            {"ServiceID": "s", "Status": {"State": "running"}, "DesiredState": "running"},
            {"ID": "e", "Status": {"State": "running"}, "DesiredState": "running"},
            {"ID": "f", "ServiceID": "s", "Slot": 0, "Status": {"State": "brand-new"}, "DesiredState": "running"},
            17
        ])
        .to_string();
        let ts = tasks(body.as_bytes()).expect("an array");
        let ids: Vec<&str> = ts.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["a", "f"]);
        assert_eq!(
            ts[0].addresses,
            vec![TaskAddress {
                network: "n".into(),
                addr: ip("10.0.0.2")
            }]
        );
        assert_eq!(ts[1].slot, None);
        assert_eq!(ts[1].state, TaskState::Finished);
    }

    #[test]
    fn a_tasks_reply_that_is_not_a_list_is_an_error() {
        assert!(tasks(b"{\"message\":\"oops\"}").is_err());
        assert!(tasks(b"[{\"ID\":").is_err());
        assert!(tasks(b"").is_err());
    }

    #[test]
    fn cidr_addresses_parse_for_both_families_and_reject_garbage() {
        assert_eq!(parse_cidr_addr("10.0.1.5/24"), Some(ip("10.0.1.5")));
        assert_eq!(parse_cidr_addr("10.0.1.5"), Some(ip("10.0.1.5")));
        assert_eq!(parse_cidr_addr("fd00::5/64"), Some(ip("fd00::5")));
        assert_eq!(parse_cidr_addr("10.0.1.5/33"), None);
        assert_eq!(parse_cidr_addr("10.0.1.5/"), None);
        assert_eq!(parse_cidr_addr("/24"), None);
        assert_eq!(parse_cidr_addr(""), None);
        assert_eq!(parse_cidr_addr("host/24"), None);
    }

    #[test]
    fn container_networks_map_ids_to_names() {
        let c: models::ContainerInspectResponse = serde_json::from_str(CONTAINER).expect("fixture");
        assert_eq!(
            container_networks(&c),
            BTreeMap::from([(LB_NET.to_string(), "fx-lb-net".to_string())])
        );
        assert_eq!(
            container_networks(&models::ContainerInspectResponse::default()),
            BTreeMap::new()
        );
    }

    #[test]
    fn a_task_container_gives_its_addresses_and_whether_swarm_waits_for_health() {
        let c: models::ContainerInspectResponse =
            serde_json::from_str(TASK_CONTAINER).expect("fixture");
        assert_eq!(
            task_container(&c),
            TaskContainer {
                running: true,
                healthcheck: false,
                addresses: vec![TaskAddress {
                    network: "40arpvvkspefrs83sr5iz997k".into(),
                    addr: ip("10.0.28.5"),
                }],
            }
        );
        let h: models::ContainerInspectResponse =
            serde_json::from_str(HEALTH_CONTAINER).expect("fixture");
        let h = task_container(&h);
        assert!(h.running && h.healthcheck, "{h:?}");
        assert_eq!(h.addresses.len(), 1);
    }

    #[test]
    fn a_container_with_its_healthcheck_disabled_or_stopped_or_bare_is_read_as_such() {
        let c: models::ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "State": {"Running": false},
            "Config": {"Healthcheck": {"Test": ["NONE"]}},
            "NetworkSettings": {"Networks": {
                "a": {"NetworkID": "n1", "IPAddress": "10.0.0.2", "GlobalIPv6Address": "fd00::2"},
                "b": {"NetworkID": "", "IPAddress": "10.0.0.3"},
                "c": {"NetworkID": "n3", "IPAddress": "bogus"},
                "d": {"NetworkID": "n4", "IPAddress": ""}
            }}
        }))
        .expect("json");
        assert_eq!(
            task_container(&c),
            TaskContainer {
                running: false,
                healthcheck: false,
                addresses: vec![
                    TaskAddress {
                        network: "n1".into(),
                        addr: ip("10.0.0.2")
                    },
                    TaskAddress {
                        network: "n1".into(),
                        addr: ip("fd00::2")
                    },
                ],
            }
        );
        let bare = task_container(&models::ContainerInspectResponse::default());
        assert_eq!(
            (bare.running, bare.healthcheck, bare.addresses.len()),
            (false, false, 0)
        );
    }

    #[test]
    fn listings_of_the_same_state_in_another_order_are_equal() {
        let (svcs, progress) = fixture_services();
        let (nets, _) = fixture_networks();
        let ts = tasks(TASKS.as_bytes()).expect("fixture");
        let a = listing(svcs.clone(), progress.clone(), ts.clone(), nets.clone());
        let b = listing(
            svcs.into_iter().rev().collect(),
            progress,
            ts.into_iter().rev().collect(),
            nets.into_iter().rev().collect(),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn docker_times_parse_to_the_nanosecond_and_garbage_does_not() {
        // `docker inspect` printed UnixNano 1795734535223422744 for this UpdatedAt.
        let t = rfc3339("2026-11-26T23:08:55.223422744Z").expect("parses");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::new(1_795_734_535, 223_422_744)
        );
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        for bad in [
            "2024-02-29T12:00:00",
            "garbage",
            "",
            "2024-13-01T00:00:00Z",
            "2024-01-01T25:00:00Z",
            "2024-01-01T00:00:00.-5Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_running_task_gives_its_status_timestamp_and_a_stopping_one_its_update_time() {
        let body = br#"[
            {"ID":"t1","ServiceID":"s","DesiredState":"running","UpdatedAt":"2026-11-26T23:08:50Z",
             "Status":{"State":"running","Timestamp":"2026-11-26T23:08:51Z"}},
            {"ID":"t2","ServiceID":"s","DesiredState":"shutdown","UpdatedAt":"2026-11-26T23:08:55Z",
             "Status":{"State":"running","Timestamp":"2026-11-26T23:08:40Z"}},
            {"ID":"t3","ServiceID":"s","DesiredState":"running",
             "Status":{"State":"starting","Timestamp":"2026-11-26T23:08:41Z"}}
        ]"#;
        let (tasks, times) = tasks_timed(body).expect("parses");
        assert_eq!(tasks.len(), 3);
        let at = |s: &str| rfc3339(s).unwrap();
        let times: BTreeMap<_, _> = times.into_iter().collect();
        assert_eq!(times["t1"].running, Some(at("2026-11-26T23:08:51Z")));
        assert_eq!(times["t1"].shutdown, None);
        assert_eq!(times["t2"].shutdown, Some(at("2026-11-26T23:08:55Z")));
        assert_eq!(times["t3"], TaskTimes::default());
    }
}
