//! The JSON bodies of the fake engine, shaped as Docker 20.10 (API 1.41) sends them: each is a
//! copy of an object captured from a real engine (`tests/fixtures/docker-1.41/`) with its ids,
//! names, labels, states, times and addresses replaced. Pure: time is passed in (ns since the
//! epoch).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{json, Value};

const SERVICES: &str = include_str!("../../../../tests/fixtures/docker-1.41/services.json");
const TASKS: &str = include_str!("../../../../tests/fixtures/docker-1.41/tasks.json");
const NETWORKS: &str = include_str!("../../../../tests/fixtures/docker-1.41/networks.json");
const CONTAINER: &str =
    include_str!("../../../../tests/fixtures/docker-1.41/container-inspect-task.json");

/// The one node of the fake Swarm (25 characters, as Docker's ids).
pub const NODE_ID: &str = "benchnode0000000000000000";
/// The attachable overlay every service is on.
pub const NETWORK_ID: &str = "benchnet00000000000000001";
pub const NETWORK_NAME: &str = "bench-net";
/// Its subnet: task addresses are on loopback, so nothing leaves the machine.
pub const SUBNET: &str = "127.16.0.0/12";
pub const IMAGE: &str = "swarm-lb-bench/app:1";

/// The fixtures, parsed once per engine.
pub struct Templates {
    service: Value,
    task: Value,
    container: Value,
    /// `GET /networks` with the fixture's `fx-lb-net` replaced by [`NETWORK_NAME`].
    pub networks: String,
    /// The network object embedded in each task's `NetworksAttachments`.
    attachment_network: Value,
}

impl Templates {
    pub fn new() -> anyhow::Result<Templates> {
        let first = |text: &str| -> anyhow::Result<Value> {
            let all: Vec<Value> = serde_json::from_str(text)?;
            all.into_iter()
                .next()
                .ok_or_else(|| anyhow::anyhow!("empty fixture"))
        };
        let service = first(SERVICES)?;
        let tasks: Vec<Value> = serde_json::from_str(TASKS)?;
        let task = tasks
            .iter()
            .find(|t| t["NetworksAttachments"].is_array())
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no task with NetworksAttachments in the fixture"))?;
        let mut attachment_network = task["NetworksAttachments"][0]["Network"].clone();
        attachment_network["ID"] = NETWORK_ID.into();
        attachment_network["Spec"]["Name"] = NETWORK_NAME.into();
        attachment_network["IPAMOptions"]["Configs"] =
            json!([{"Subnet": SUBNET, "Gateway": "127.16.0.1"}]);
        let mut networks: Vec<Value> = serde_json::from_str(NETWORKS)?;
        for n in &mut networks {
            if n["Name"] == "fx-lb-net" {
                n["Name"] = NETWORK_NAME.into();
                n["Id"] = NETWORK_ID.into();
                n["IPAM"]["Config"] = json!([{"Subnet": SUBNET, "Gateway": "127.16.0.1"}]);
            }
        }
        Ok(Templates {
            service,
            task,
            container: serde_json::from_str(CONTAINER)?,
            networks: serde_json::to_string(&networks)?,
            attachment_network,
        })
    }

    /// One item of `GET /services?status=true`.
    pub fn service(&self, s: &ServiceView<'_>) -> String {
        let mut v = self.service.clone();
        v["ID"] = s.id.into();
        v["Version"]["Index"] = s.version.into();
        v["CreatedAt"] = rfc3339(s.created_ns).into();
        v["UpdatedAt"] = rfc3339(s.updated_ns).into();
        let spec = self.service_spec(s.name, s.labels, s.replicas);
        match s.previous {
            Some((labels, replicas)) => {
                v["PreviousSpec"] = self.service_spec(s.name, labels, replicas);
            }
            None => {
                if let Some(o) = v.as_object_mut() {
                    o.remove("PreviousSpec");
                }
            }
        }
        v["Spec"] = spec;
        v["Endpoint"]["VirtualIPs"] =
            json!([{"NetworkID": NETWORK_ID, "Addr": format!("{}/12", s.vip)}]);
        v["ServiceStatus"] = json!({
            "RunningTasks": s.running,
            "DesiredTasks": s.replicas,
            "CompletedTasks": 0,
        });
        v.to_string()
    }

    fn service_spec(&self, name: &str, labels: &BTreeMap<String, String>, replicas: u64) -> Value {
        let mut spec = self.service["Spec"].clone();
        spec["Name"] = name.into();
        spec["Labels"] = json!(labels);
        spec["TaskTemplate"]["ContainerSpec"]["Image"] = IMAGE.into();
        spec["TaskTemplate"]["Networks"] = json!([{"Target": NETWORK_ID}]);
        spec["Mode"] = json!({"Replicated": {"Replicas": replicas}});
        spec
    }

    /// One item of `GET /tasks`.
    pub fn task(&self, t: &TaskView<'_>) -> String {
        let mut v = self.task.clone();
        v["ID"] = t.id.into();
        v["Version"]["Index"] = t.version.into();
        v["CreatedAt"] = rfc3339(t.created_ns).into();
        v["UpdatedAt"] = rfc3339(t.updated_ns).into();
        v["Spec"]["ContainerSpec"]["Image"] = IMAGE.into();
        v["Spec"]["Networks"] = json!([{"Target": NETWORK_ID}]);
        v["ServiceID"] = t.service_id.into();
        v["Slot"] = t.slot.into();
        v["NodeID"] = NODE_ID.into();
        v["DesiredState"] = t.desired.into();
        let status = &mut v["Status"];
        status["Timestamp"] = rfc3339(t.status_ns).into();
        status["State"] = t.state.into();
        status["Message"] = match t.state {
            "running" => "started",
            "starting" => "starting",
            "shutdown" => "shutdown",
            _ => "preparing",
        }
        .into();
        status["ContainerStatus"] = json!({
            "ContainerID": t.container_id,
            "PID": if t.state == "running" { 4242 } else { 0 },
            "ExitCode": if t.state == "shutdown" { 143 } else { 0 },
        });
        v["NetworksAttachments"] = json!([{
            "Network": self.attachment_network,
            "Addresses": [format!("{}/12", t.addr)],
        }]);
        v.to_string()
    }

    /// `GET /containers/{id}/json` of a task's container.
    pub fn container(&self, t: &TaskView<'_>, service_name: &str, running: bool) -> String {
        let mut v = self.container.clone();
        let task_name = format!("{service_name}.{}.{}", t.slot, t.id);
        v["Id"] = t.container_id.into();
        v["Name"] = format!("/{task_name}").into();
        v["Image"] = IMAGE.into();
        v["State"]["Running"] = running.into();
        v["State"]["Status"] = if running { "running" } else { "exited" }.into();
        v["State"]["StartedAt"] = rfc3339(t.status_ns).into();
        v["Config"]["Image"] = IMAGE.into();
        v["Config"]["Labels"] = json!({
            "com.docker.swarm.node.id": NODE_ID,
            "com.docker.swarm.service.id": t.service_id,
            "com.docker.swarm.service.name": service_name,
            "com.docker.swarm.task": "",
            "com.docker.swarm.task.id": t.id,
            "com.docker.swarm.task.name": task_name,
        });
        let mut endpoint = v["NetworkSettings"]["Networks"]
            .as_object()
            .and_then(|o| o.values().next().cloned())
            .unwrap_or_else(|| json!({}));
        endpoint["NetworkID"] = NETWORK_ID.into();
        endpoint["IPAddress"] = t.addr.to_string().into();
        endpoint["IPPrefixLen"] = 12.into();
        endpoint["IPAMConfig"] = json!({"IPv4Address": t.addr.to_string()});
        v["NetworkSettings"]["Networks"] = json!({ NETWORK_NAME: endpoint });
        v.to_string()
    }
}

/// What [`Templates::service`] needs of a service.
pub struct ServiceView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub version: u64,
    pub created_ns: i64,
    pub updated_ns: i64,
    pub labels: &'a BTreeMap<String, String>,
    pub replicas: u64,
    pub running: u64,
    pub previous: Option<(&'a BTreeMap<String, String>, u64)>,
    pub vip: Ipv4Addr,
}

/// What [`Templates::task`] needs of a task.
pub struct TaskView<'a> {
    pub id: &'a str,
    pub service_id: &'a str,
    pub slot: u64,
    pub container_id: &'a str,
    pub version: u64,
    pub created_ns: i64,
    pub updated_ns: i64,
    pub status_ns: i64,
    pub state: &'a str,
    pub desired: &'a str,
    pub addr: Ipv4Addr,
}

/// A container event of a task, as the engine sends it (`kill` carries `signal`, `die`
/// `exitCode`).
pub fn container_event(action: &str, t: &TaskView<'_>, service_name: &str, time_ns: i64) -> String {
    let task_name = format!("{service_name}.{}.{}", t.slot, t.id);
    let mut attrs = json!({
        "com.docker.swarm.node.id": NODE_ID,
        "com.docker.swarm.service.id": t.service_id,
        "com.docker.swarm.service.name": service_name,
        "com.docker.swarm.task": "",
        "com.docker.swarm.task.id": t.id,
        "com.docker.swarm.task.name": task_name,
        "image": IMAGE,
        "name": task_name,
    });
    match action {
        "kill" => attrs["signal"] = "15".into(),
        "die" => attrs["exitCode"] = "143".into(),
        _ => {}
    }
    json!({
        "status": action,
        "id": t.container_id,
        "from": IMAGE,
        "Type": "container",
        "Action": action,
        "Actor": {"ID": t.container_id, "Attributes": attrs},
        "scope": "local",
        "time": time_ns / 1_000_000_000,
        "timeNano": time_ns,
    })
    .to_string()
}

/// A `service update` event; `replicas` (old, new) when the update scaled it.
pub fn service_event(id: &str, name: &str, replicas: Option<(u64, u64)>, time_ns: i64) -> String {
    let mut attrs = json!({ "name": name });
    if let Some((old, new)) = replicas {
        attrs["replicas.old"] = old.to_string().into();
        attrs["replicas.new"] = new.to_string().into();
    }
    json!({
        "Type": "service",
        "Action": "update",
        "Actor": {"ID": id, "Attributes": attrs},
        "scope": "swarm",
        "time": time_ns / 1_000_000_000,
        "timeNano": time_ns,
    })
    .to_string()
}

/// `GET /version` of Docker 20.10.24.
pub fn version() -> String {
    json!({
        "Platform": {"Name": "Docker Engine - Community"},
        "Version": "20.10.24",
        "ApiVersion": "1.41",
        "MinAPIVersion": "1.12",
        "GitCommit": "5d6db84",
        "GoVersion": "go1.19.7",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": "6.1.0",
        "BuildTime": "2023-04-04T08:18:38.000000000+00:00",
    })
    .to_string()
}

/// `GET /info` of a one-node Swarm whose node is the manager.
pub fn info(containers: usize) -> String {
    json!({
        "ID": "BENC:HNOD:E000:0000:0000:0000:0000:0000:0000:0000:0000:0000",
        "Containers": containers,
        "ContainersRunning": containers,
        "ContainersPaused": 0,
        "ContainersStopped": 0,
        "Images": 1,
        "Driver": "overlay2",
        "Name": "bench",
        "ServerVersion": "20.10.24",
        "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
        "OSType": "linux",
        "Architecture": "x86_64",
        "NCPU": 2,
        "Swarm": {
            "NodeID": NODE_ID,
            "NodeAddr": "127.0.0.1",
            "LocalNodeState": "active",
            "ControlAvailable": true,
            "Error": "",
            "RemoteManagers": [{"NodeID": NODE_ID, "Addr": "127.0.0.1:2377"}],
            "Nodes": 1,
            "Managers": 1,
        },
    })
    .to_string()
}

/// `2026-11-26T21:37:54.962026451Z` from ns since the epoch (UTC).
pub fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_reads_back_as_the_same_instant() {
        let ns = 1_795_729_106_712_866_649;
        let text = rfc3339(ns);
        assert_eq!(text, "2026-11-26T21:38:26.712866649Z");
        let back = swarm_lb::swarm::rfc3339(&text).expect("parses");
        let back = back
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_nanos();
        assert_eq!(back, ns as u128);
    }

    #[test]
    fn generated_bodies_convert_to_a_snapshot_with_the_task_routed() {
        let t = Templates::new().expect("fixtures");
        let labels = BTreeMap::from([
            ("com.docker.lb.hosts".to_owned(), "s1.example".to_owned()),
            ("com.docker.lb.port".to_owned(), "8080".to_owned()),
        ]);
        let service = t.service(&ServiceView {
            id: "svc000000000000000000001",
            name: "s1",
            version: 3,
            created_ns: 1,
            updated_ns: 2,
            labels: &labels,
            replicas: 1,
            running: 1,
            previous: None,
            vip: Ipv4Addr::new(127, 31, 0, 1),
        });
        let task = t.task(&TaskView {
            id: "tsk000000000000000000001",
            service_id: "svc000000000000000000001",
            slot: 1,
            container_id: "c1",
            version: 4,
            created_ns: 1,
            updated_ns: 2,
            status_ns: 2,
            state: "running",
            desired: "running",
            addr: Ipv4Addr::new(127, 16, 1, 1),
        });
        let snap = swarm_lb::swarm::snapshot_from_json(
            format!("[{service}]").as_bytes(),
            format!("[{task}]").as_bytes(),
            t.networks.as_bytes(),
        )
        .expect("converts");
        assert_eq!(snap.services.len(), 1);
        assert_eq!(snap.tasks.len(), 1);
        assert_eq!(snap.tasks[0].addresses.len(), 1);
    }
}
