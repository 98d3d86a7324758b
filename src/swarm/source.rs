//! What the watcher reads from Docker, behind one narrow trait (as kube-runtime puts the API
//! server behind `ApiMode`): the event stream, the listings it takes and the fast path's
//! container inspection. [`Docker`] is the real one; the watcher's tests drive an in-memory
//! engine on tokio's paused clock.

use std::collections::BTreeSet;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use super::convert::{Listing, NetworkIndex, TaskContainer, Times};
use super::events::Event;
use super::{Docker, SwarmError};
use crate::model::{ServiceId, Task};

/// A full listing with the tasks' timestamps and the networks' index.
pub(super) type Full = (Listing, Times, NetworkIndex);
/// Some services as Docker lists them (their network targets unresolved) and their tasks.
pub(super) type Services = (Vec<bollard::models::Service>, Vec<Task>, Times);

/// Docker as the watcher sees it. Each call is one request (or one concurrent set) with no
/// deadline of its own: the watcher puts one on it.
pub(super) trait Source: Send + Sync {
    /// Where the Swarm state is read, for the log.
    fn endpoint(&self) -> String;
    /// The event stream from `since` (`seconds.nanoseconds`, engine time), lazy: the request
    /// goes out on the first poll. Ends (or fails) when the connection does.
    fn events(&self, since: String) -> BoxStream<'static, Result<Event, SwarmError>>;
    /// Services, tasks and networks.
    fn listing(&self) -> BoxFuture<'_, Result<Full, SwarmError>>;
    /// Every task.
    fn tasks(&self) -> BoxFuture<'_, Result<(Vec<Task>, Times), SwarmError>>;
    /// The services of `scope` that still exist, and their tasks.
    fn services<'a>(
        &'a self,
        scope: &'a BTreeSet<ServiceId>,
    ) -> BoxFuture<'a, Result<Services, SwarmError>>;
    /// The tasks of the services of `scope` (an error for a service Docker does not know).
    fn service_tasks<'a>(
        &'a self,
        scope: &'a BTreeSet<ServiceId>,
    ) -> BoxFuture<'a, Result<(Vec<Task>, Times), SwarmError>>;
    /// A task's container on this node: running, healthcheck, addresses.
    fn task_container<'a>(
        &'a self,
        container: &'a str,
    ) -> BoxFuture<'a, Result<TaskContainer, SwarmError>>;
}

impl Source for Docker {
    fn endpoint(&self) -> String {
        Docker::endpoint(self)
    }

    fn events(&self, since: String) -> BoxStream<'static, Result<Event, SwarmError>> {
        Docker::events(self, since)
    }

    fn listing(&self) -> BoxFuture<'_, Result<Full, SwarmError>> {
        Box::pin(self.listing_timed())
    }

    fn tasks(&self) -> BoxFuture<'_, Result<(Vec<Task>, Times), SwarmError>> {
        Box::pin(self.tasks_timed())
    }

    fn services<'a>(
        &'a self,
        scope: &'a BTreeSet<ServiceId>,
    ) -> BoxFuture<'a, Result<Services, SwarmError>> {
        Box::pin(self.services_timed(scope))
    }

    fn service_tasks<'a>(
        &'a self,
        scope: &'a BTreeSet<ServiceId>,
    ) -> BoxFuture<'a, Result<(Vec<Task>, Times), SwarmError>> {
        Box::pin(self.service_tasks_timed(scope))
    }

    fn task_container<'a>(
        &'a self,
        container: &'a str,
    ) -> BoxFuture<'a, Result<TaskContainer, SwarmError>> {
        Box::pin(Docker::task_container(self, container))
    }
}
