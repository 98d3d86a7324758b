//! The network attacher: which networks the HAProxy container is on (cached: an inspection
//! per pass cost milliseconds), and attaching it to / detaching it from routed services'
//! networks.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::model::{Desired, NetworkId, Snapshot};
use crate::swarm::{self, SwarmError};

/// How long the HAProxy container's networks are trusted without inspecting it again (a
/// network someone detached by hand is re-attached within this).
const NETWORKS_TTL: Duration = Duration::from_secs(10);

/// Attach or detach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Attach,
    Detach,
}

pub(super) struct NetworkAttacher {
    /// The Docker engine and the HAProxy container on it; `None`: attach nothing.
    target: Option<(swarm::Docker, String)>,
    /// Networks (names or ids) never detached.
    keep: BTreeSet<String>,
    /// The container's networks (id, name) as last inspected or changed by this driver, and
    /// when inspected.
    cache: Option<(BTreeSet<(NetworkId, String)>, Instant)>,
}

impl NetworkAttacher {
    pub fn new(
        docker: Option<swarm::Docker>,
        container: Option<String>,
        keep: BTreeSet<String>,
    ) -> NetworkAttacher {
        NetworkAttacher {
            target: docker.zip(container),
            keep,
            cache: None,
        }
    }

    /// The networks the driver manages on the HAProxy container: overlay networks other than
    /// ingress and the kept ones. Without a container, the desired ones (nothing to attach).
    pub async fn managed(
        &mut self,
        snap: &Snapshot,
        desired: &Desired,
    ) -> Result<BTreeSet<NetworkId>, SwarmError> {
        let Some((docker, container)) = &self.target else {
            return Ok(desired.networks.clone());
        };
        let on = match &self.cache {
            Some((on, at)) if at.elapsed() < NETWORKS_TTL => on.clone(),
            _ => {
                let on: BTreeSet<(NetworkId, String)> = docker
                    .container_networks(container)
                    .await?
                    .into_iter()
                    .collect();
                self.cache = Some((on.clone(), Instant::now()));
                on
            }
        };
        let keep = &self.keep;
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

    pub async fn attach(&mut self, networks: &[NetworkId]) {
        self.change(Change::Attach, networks).await;
    }

    pub async fn detach(&mut self, networks: &[NetworkId]) {
        self.change(Change::Detach, networks).await;
    }

    /// One network that cannot be joined (or left) must not hold back every other service:
    /// its own routes stay unreachable, the log names it, and the next pass tries again.
    async fn change(&mut self, change: Change, networks: &[NetworkId]) {
        let Some((docker, container)) = &self.target else {
            return;
        };
        if !networks.is_empty() {
            // Done or not, the next pass looks again.
            self.cache = None;
        }
        for network in networks {
            let done = match change {
                Change::Attach => docker.connect_network(network, container).await,
                Change::Detach => docker.disconnect_network(network, container).await,
            };
            match (change, done) {
                (Change::Attach, Ok(())) => {
                    info!(network = %network, container = %container, "haproxy attached to network")
                }
                (Change::Attach, Err(e)) => {
                    error!(network = %network, container = %container, error = %e, "cannot attach haproxy to network")
                }
                (Change::Detach, Ok(())) => {
                    info!(network = %network, container = %container, "haproxy detached from network")
                }
                (Change::Detach, Err(e)) => {
                    warn!(network = %network, container = %container, error = %e, "cannot detach haproxy from network")
                }
            }
        }
    }
}
