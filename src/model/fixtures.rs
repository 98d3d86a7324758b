//! Snapshots the unit tests of several modules build (test builds only): one home, so the
//! fixtures do not drift apart.

use super::{DesiredTaskState, Network, Service, Snapshot, Task, TaskAddress, TaskState};

/// A snapshot told apart from others by its number of networks (`n0`.. named `net0`..),
/// for tests of code that only passes snapshots along.
pub(crate) fn numbered(n: usize) -> Snapshot {
    Snapshot {
        networks: (0..n)
            .map(|i| Network {
                id: format!("n{i}"),
                name: format!("net{i}"),
                driver: "overlay".into(),
                attachable: true,
                ingress: false,
            })
            .collect(),
        ..Snapshot::default()
    }
}

/// A running task `id` of service `sid` in `slot`, at `ip` on network `n`.
pub(crate) fn task(id: &str, slot: u64, ip: &str, desired_state: DesiredTaskState) -> Task {
    Task {
        id: id.into(),
        service_id: "sid".into(),
        slot: Some(slot),
        state: TaskState::Running,
        desired_state,
        addresses: vec![TaskAddress {
            network: "n".into(),
            addr: ip.parse().expect("a test IP"),
        }],
    }
}

/// Service `web` (id `sid`, no labels) with `tasks`.
pub(crate) fn web(tasks: Vec<Task>) -> Snapshot {
    Snapshot {
        services: super::shared(vec![Service {
            id: "sid".into(),
            name: "web".into(),
            labels: Default::default(),
            networks: vec![],
            vips: vec![],
        }]),
        tasks: super::shared(tasks),
        networks: vec![],
    }
}
