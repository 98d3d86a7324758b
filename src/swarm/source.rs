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

/// An engine in memory, for the watcher's tests: Docker's captured replies (1.41) as they
/// are, a task list and a container a test may replace, and one scripted event stream per
/// connection: it yields the line its test sends, then ends (or never ends, when no script
/// is left). No socket, no HTTP: the tests run on tokio's paused clock.
#[cfg(test)]
pub(super) mod memory {
    use std::collections::{BTreeSet, VecDeque};
    use std::sync::{Arc, Mutex};

    use futures_util::future::BoxFuture;
    use futures_util::stream::{self, BoxStream, StreamExt};
    use tokio::sync::{mpsc, oneshot};

    use super::{Full, Services, Source};
    use crate::model::{ServiceId, Task};
    use crate::swarm::convert::{self, TaskContainer, Times};
    use crate::swarm::events::{self, Event};
    use crate::swarm::SwarmError;

    pub const SERVICES: &str = include_str!("../../tests/fixtures/docker-1.41/services.json");
    pub const TASKS: &str = include_str!("../../tests/fixtures/docker-1.41/tasks.json");
    pub const NETWORKS: &str = include_str!("../../tests/fixtures/docker-1.41/networks.json");
    pub const EVENTS: &str = include_str!("../../tests/fixtures/docker-1.41/events.jsonl");
    pub const CONTAINER: &str =
        include_str!("../../tests/fixtures/docker-1.41/container-inspect.json");

    #[derive(Clone)]
    pub struct Engine {
        /// `GET /tasks`'s body.
        pub tasks: Arc<Mutex<String>>,
        /// Any container's inspection (JSON); empty: Docker answers 404.
        pub container: Arc<Mutex<String>>,
        /// One script per event stream opened, in order.
        pub scripts: Arc<Mutex<VecDeque<oneshot::Receiver<String>>>>,
        /// The `since` of every event stream opened.
        pub opened: mpsc::UnboundedSender<String>,
    }

    impl Engine {
        /// The captured engine, with these event scripts; and the `since` of each stream opened.
        pub fn new(
            scripts: impl IntoIterator<Item = oneshot::Receiver<String>>,
        ) -> (Engine, mpsc::UnboundedReceiver<String>) {
            let (opened, since) = mpsc::unbounded_channel();
            let engine = Engine {
                tasks: Arc::new(Mutex::new(TASKS.to_string())),
                container: Arc::default(),
                scripts: Arc::new(Mutex::new(scripts.into_iter().collect())),
                opened,
            };
            (engine, since)
        }

        fn decoded<T: serde::de::DeserializeOwned>(
            op: &'static str,
            json: &str,
        ) -> Result<T, SwarmError> {
            serde_json::from_str(json).map_err(|e| SwarmError::Decode {
                op,
                source: e.into(),
            })
        }

        fn all_tasks(&self) -> Result<(Vec<Task>, Times), SwarmError> {
            let body = self.tasks.lock().expect("tasks").clone();
            convert::tasks_timed(body.as_bytes()).map_err(|e| SwarmError::Decode {
                op: "list tasks",
                source: e.into(),
            })
        }

        fn tasks_of(&self, scope: &BTreeSet<ServiceId>) -> Result<(Vec<Task>, Times), SwarmError> {
            let (tasks, times) = self.all_tasks()?;
            let tasks: Vec<Task> = tasks
                .into_iter()
                .filter(|t| scope.contains(&t.service_id))
                .collect();
            let ids: BTreeSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
            let times = times
                .into_iter()
                .filter(|(id, _)| ids.contains(id.as_str()))
                .collect();
            Ok((tasks, times))
        }
    }

    impl Source for Engine {
        fn endpoint(&self) -> String {
            "memory".to_string()
        }

        fn events(&self, since: String) -> BoxStream<'static, Result<Event, SwarmError>> {
            let _ = self.opened.send(since);
            let script = self.scripts.lock().expect("scripts").pop_front();
            match script {
                Some(line) => stream::once(line)
                    .filter_map(|line| async move { line.ok() })
                    .map(|line| {
                        let message = Engine::decoded("events", &line)?;
                        Ok(events::event(&message))
                    })
                    .boxed(),
                None => stream::pending().boxed(),
            }
        }

        fn listing(&self) -> BoxFuture<'_, Result<Full, SwarmError>> {
            Box::pin(async move {
                let services: Vec<bollard::models::Service> =
                    Engine::decoded("list services", SERVICES)?;
                let networks: Vec<bollard::models::Network> =
                    Engine::decoded("list networks", NETWORKS)?;
                let (tasks, times) = self.all_tasks()?;
                let (networks, index) = convert::networks(&networks);
                let (services, progress) = convert::services(&services, &index);
                let listing = convert::listing(services, progress, tasks, networks);
                Ok((listing, times, index))
            })
        }

        fn tasks(&self) -> BoxFuture<'_, Result<(Vec<Task>, Times), SwarmError>> {
            Box::pin(async move { self.all_tasks() })
        }

        fn services<'a>(
            &'a self,
            scope: &'a BTreeSet<ServiceId>,
        ) -> BoxFuture<'a, Result<Services, SwarmError>> {
            Box::pin(async move {
                let services: Vec<bollard::models::Service> =
                    Engine::decoded("list services", SERVICES)?;
                let services: Vec<_> = services
                    .into_iter()
                    .filter(|s| s.id.as_ref().is_some_and(|id| scope.contains(id)))
                    .collect();
                let (tasks, times) = self.tasks_of(scope)?;
                Ok((services, tasks, times))
            })
        }

        fn service_tasks<'a>(
            &'a self,
            scope: &'a BTreeSet<ServiceId>,
        ) -> BoxFuture<'a, Result<(Vec<Task>, Times), SwarmError>> {
            Box::pin(async move { self.tasks_of(scope) })
        }

        fn task_container<'a>(
            &'a self,
            _container: &'a str,
        ) -> BoxFuture<'a, Result<TaskContainer, SwarmError>> {
            Box::pin(async move {
                let json = self.container.lock().expect("container").clone();
                if json.is_empty() {
                    return Err(SwarmError::Api {
                        op: "inspect container",
                        status: 404,
                        message: "no such container".to_string(),
                    });
                }
                let found: bollard::models::ContainerInspectResponse =
                    Engine::decoded("inspect container", &json)?;
                Ok(convert::task_container(&found))
            })
        }
    }
}
