//! The pure core's input and first step: a [`Snapshot`] of Swarm (plain types, no bollard)
//! and [`desired`], which turns Interlock labels (`com.docker.lb.*`) into the routing Swarm
//! asks for. No I/O, no clock, no locks.

pub mod access;
pub mod cert;
mod desired;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod htpasswd;
pub mod labels;
mod names;
mod reason;
pub mod routes;
pub mod shaping;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub use desired::{desired, desired_cached, Change, DesiredCache};
pub use labels::{
    is_cookie_name, BackendOptions, BackendTls, CertSecrets, FailureLimit, HealthCheck, LabelError,
    Route, RouteTls, SectionOptions, ServerOptions,
};
pub use names::{
    BackendName, ContextRoot, Host, MapKey, MapValue, NameError, ServerName, BUCKETS, CATCH_ALL,
    MAX_ROOT_SEGMENTS, REDIRECT_CODES,
};
pub use reason::{Reason, UrlError};

pub type ServiceId = String;
pub type NetworkId = String;

/// A network by exact id, else by name. Docker allows two networks with one name: among
/// them, one that `prefer` accepts, then the lowest id, so the answer does not depend on the
/// order Docker listed them in. The one home of this rule: service targets (preferring
/// swarm-scoped networks) and the `com.docker.lb.network` label (preferring the service's
/// own networks) both resolve through it.
pub fn find_network<'a>(
    networks: &'a [Network],
    reference: &str,
    prefer: impl Fn(&Network) -> bool,
) -> Option<&'a Network> {
    networks.iter().find(|n| n.id == reference).or_else(|| {
        networks
            .iter()
            .filter(|n| n.name == reference)
            .min_by_key(|n| (!prefer(n), &n.id))
    })
}

/// A route in force: what the labels said (`route.network` as written, if at all) and the id
/// of the network it was resolved to, which a fallback to this route keeps even when the
/// labels no longer pick one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInForce {
    pub route: Route,
    pub network: NetworkId,
}

/// The tasks of each service (by service id) that `keep` takes, in snapshot order.
pub fn tasks_by_service(
    tasks: &[Arc<Task>],
    keep: impl Fn(&str) -> bool,
) -> HashMap<&str, Vec<&Arc<Task>>> {
    let mut by_service: HashMap<&str, Vec<&Arc<Task>>> = HashMap::new();
    for task in tasks.iter().filter(|t| keep(&t.service_id)) {
        by_service
            .entry(task.service_id.as_str())
            .or_default()
            .push(task);
    }
    by_service
}

/// `items` as the shared values a [`Snapshot`] holds (for building one by hand: tests,
/// benchmarks).
pub fn shared<T>(items: Vec<T>) -> Vec<Arc<T>> {
    items.into_iter().map(Arc::new).collect()
}

/// Everything the driver knows about Swarm at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Shared: a snapshot made from another (a listing merged, the fast path laid over it)
    /// copies a pointer per service and task it keeps, and compares them by address first.
    pub services: Vec<Arc<Service>>,
    /// Sorted by task id (see `swarm::convert::sort_tasks`), shared like `services`.
    pub tasks: Vec<Arc<Task>>,
    pub networks: Vec<Network>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub id: ServiceId,
    pub name: String,
    /// Service labels (`Spec.Labels`), not container labels.
    pub labels: BTreeMap<String, String>,
    /// Networks of the task template (`Spec.TaskTemplate.Networks[].Target`), as ids.
    pub networks: Vec<NetworkId>,
    /// `Endpoint.VirtualIPs`: one per network when the endpoint mode is `vip`.
    pub vips: Vec<Vip>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub network: NetworkId,
    pub addr: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub service_id: ServiceId,
    pub slot: Option<u64>,
    pub state: TaskState,
    pub desired_state: DesiredTaskState,
    /// `NetworksAttachments[].Addresses`, CIDR suffix stripped.
    pub addresses: Vec<TaskAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskAddress {
    pub network: NetworkId,
    pub addr: IpAddr,
}

/// `Status.State`, folded into what routing cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// new, pending, assigned, accepted, ready, preparing, starting
    Starting,
    Running,
    /// complete, shutdown, failed, rejected, remove, orphaned, or anything unknown
    Finished,
}

/// `DesiredState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesiredTaskState {
    Running,
    /// shutdown, remove, or anything else: Swarm is stopping (or will not start) the task.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub id: NetworkId,
    pub name: String,
    pub driver: String,
    pub attachable: bool,
    pub ingress: bool,
}

/// How a backend reaches the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Task IPs in pre-sized slots (`default`, `task`, or no label).
    Task,
    /// One server pinned at the service VIP.
    Vip,
}

/// Whether a server should take new traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointState {
    Ready,
    /// Swarm is stopping the task: finish what is in flight, take nothing new.
    Drain,
}

/// Options that tune the desired state; they come from flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Network (name or id) used for services that sit on several networks and carry no
    /// `com.docker.lb.network` label.
    pub default_network: Option<String>,
    /// Interlock's `com.docker.lb.service_cluster`: this proxy serves only the services whose
    /// label equals it; `None` serves only services without the label. Several proxies (or
    /// test stacks) can thus share one Swarm without fighting over services.
    pub service_cluster: Option<String>,
    /// The template (`--template`) loads no Lua (no `{{lua}}` line and no plain `global`
    /// line), so HAProxy has no forward-auth action: `com.docker.lb.auth_forward` is refused on every service (an error naming it),
    /// never left unenforced.
    pub template_without_lua: bool,
    /// `--acme`: an ACME CA is configured, so `com.docker.lb.ssl_acme=true` orders
    /// certificates; without it the label is refused.
    pub acme: bool,
}

/// One routed backend as Swarm wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    pub service_id: ServiceId,
    pub mode: Mode,
    /// The network HAProxy reaches this backend on.
    pub network: NetworkId,
    /// Task mode: every task address that should be in a slot. Vip mode: exactly the VIP.
    pub endpoints: BTreeMap<SocketAddr, EndpointState>,
    /// Always the default in vip mode (Swarm's VIP spreads the traffic).
    pub options: BackendOptions,
}

/// The routing Swarm asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Shared with the cache of the pass that built them (a service that did not change is
    /// not copied).
    pub backends: BTreeMap<BackendName, Arc<BackendSpec>>,
    /// The content of the hosts map: route key (host, context root, bucket) -> what the
    /// frontend does (see [`MapKey`] and [`MapValue`], and `model::routes`).
    pub hosts: BTreeMap<MapKey, MapValue>,
    /// Networks the HAProxy container must be attached to.
    pub networks: BTreeSet<NetworkId>,
    /// The routes in force, per service: fed back as `last_good` on the next pass so that a
    /// service whose labels turn bad keeps its last good routing.
    /// Shared: the next pass's cache compares a service's last good route by address first.
    pub routes: BTreeMap<ServiceId, Arc<RouteInForce>>,
    /// Every problem that leaves a service unrouted, on its last good route, or without one of
    /// its hosts; each names its service and label. Sorted by service, then message.
    pub errors: Vec<LabelError>,
    /// Labels that are ignored (unknown, not offered in vip mode) and
    /// services kept on their last good route. The route works; the operator should know.
    /// Sorted like `errors`.
    pub warnings: Vec<LabelError>,
    /// Services whose labels ask for no routing (`com.docker.lb.*` labels but no hosts): an
    /// operator's choice, reported at info level. Sorted like `errors`.
    pub notices: Vec<LabelError>,
    /// `com.docker.lb.ssl_cert`/`ssl_key` of each routed service, by backend name: the pair
    /// to serve for its hosts (read and checked by the reconcile pass, which has the secrets).
    pub certs: BTreeMap<BackendName, WantedCert>,
    /// `com.docker.lb.ssl_acme=true` of each routed service, by backend name: the hosts to
    /// order a certificate for (the reconcile pass turns a stored one into a [`WantedCert`]).
    pub acme: BTreeMap<BackendName, WantedAcme>,
    /// Secrets the pass wants delivered beyond those the labels name (the ACME account).
    pub extra_secrets: BTreeSet<String>,
}

/// One service's automatic certificate, as its labels ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedAcme {
    pub service: String,
    /// Sorted, without duplicates; each a DNS name an ACME CA can certify over HTTP-01.
    pub hosts: Vec<Host>,
}

/// One service's certificate, as its labels ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedCert {
    pub service: String,
    pub secrets: labels::CertSecrets,
    /// The hosts the certificate must cover.
    pub hosts: Vec<Host>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, name: &str) -> Network {
        Network {
            id: id.into(),
            name: name.into(),
            driver: "overlay".into(),
            attachable: true,
            ingress: false,
        }
    }

    #[test]
    fn a_network_is_found_by_id_first_then_by_name_preferred_then_lowest_id_in_any_order() {
        let mut nets = vec![net("n3", "shared"), net("n2", "shared"), net("shared", "x")];
        for _ in 0..2 {
            let none = |_: &Network| false;
            assert_eq!(
                find_network(&nets, "shared", none).map(|n| &*n.id),
                Some("shared")
            );
            assert_eq!(
                find_network(&nets, "x", none).map(|n| &*n.id),
                Some("shared")
            );
            let mut by_name = nets.clone();
            by_name.retain(|n| n.id != "shared");
            assert_eq!(
                find_network(&by_name, "shared", none).map(|n| &*n.id),
                Some("n2")
            );
            let n3 = |n: &Network| n.id == "n3";
            assert_eq!(
                find_network(&by_name, "shared", n3).map(|n| &*n.id),
                Some("n3")
            );
            assert_eq!(find_network(&by_name, "absent", none), None);
            nets.reverse();
        }
    }
}
