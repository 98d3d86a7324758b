//! Docker's JSON (services, tasks, networks, as the watcher lists them) on any bytes: an
//! error is fine, a panic is not; what converts goes through `desired` too.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use swarm_lb::model::{desired, Settings};
use swarm_lb::swarm::snapshot_from_json;

fuzz_target!(|data: &[u8]| {
    // Three bodies separated by NUL bytes; a missing one is an empty list.
    let mut parts = data.split(|b| *b == 0);
    let services = parts.next().filter(|p| !p.is_empty()).unwrap_or(b"[]");
    let tasks = parts.next().filter(|p| !p.is_empty()).unwrap_or(b"[]");
    let networks = parts.next().filter(|p| !p.is_empty()).unwrap_or(b"[]");
    if let Ok(snap) = snapshot_from_json(services, tasks, networks) {
        let _ = desired(&snap, &Settings::default(), &BTreeMap::new());
    }
});
