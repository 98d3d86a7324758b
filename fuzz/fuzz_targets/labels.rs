//! Labels from whoever deploys a service: any bytes, read as `key=value` lines, become the
//! labels of two services in a snapshot; `desired` must never panic, and whatever it routes
//! must be made of checked names (the map keys and values it produces parse back).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use swarm_lb::model::{
    desired, DesiredTaskState, MapKey, MapValue, Network, Service, Settings, Snapshot, Task,
    TaskAddress, TaskState, Vip,
};

fn labels(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        // Most inputs should exercise swarm-lb's own labels.
        .map(|(k, v)| (format!("com.docker.lb.{k}"), v.to_owned()))
        .collect()
}

fn service(id: &str, labels: BTreeMap<String, String>) -> Service {
    Service {
        id: id.to_owned(),
        name: id.to_owned(),
        labels,
        networks: vec!["n1".to_owned()],
        vips: vec![Vip {
            network: "n1".to_owned(),
            addr: "10.0.0.100".parse().expect("ip"),
        }],
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text
        .split_once("\n--\n")
        .unwrap_or((&text, "hosts=a.example\nport=80"));
    let snap = Snapshot {
        services: swarm_lb::model::shared(vec![service("a", labels(a)), service("b", labels(b))]),
        tasks: swarm_lb::model::shared(vec![Task {
            id: "t1".to_owned(),
            service_id: "a".to_owned(),
            slot: Some(1),
            state: TaskState::Running,
            desired_state: DesiredTaskState::Running,
            addresses: vec![TaskAddress {
                network: "n1".to_owned(),
                addr: "10.0.0.5".parse().expect("ip"),
            }],
        }]),
        networks: vec![Network {
            id: "n1".to_owned(),
            name: "front".to_owned(),
            driver: "overlay".to_owned(),
            attachable: true,
            ingress: false,
        }],
    };
    let d = desired(&snap, &Settings::default(), &BTreeMap::new());
    for (key, value) in &d.hosts {
        assert_eq!(MapKey::parse(key.as_str()).as_ref(), Ok(key));
        assert_eq!(MapValue::parse(value.as_str()).as_ref(), Ok(value));
    }
    for e in d.errors.iter().chain(&d.warnings).chain(&d.notices) {
        let line = e.to_string();
        assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
    }
    // The last good routes fed back must give the same result (a pass is a fixed point).
    let again = desired(&snap, &Settings::default(), &d.routes);
    assert_eq!(again.hosts, d.hosts);
});
