//! `(actual, desired) -> Plan`: the runtime commands that take HAProxy from what it holds to
//! what Swarm asks for, and a reload only when a backend must appear or disappear (or grow
//! where `add server` is not available). Pure and deterministic; slot assignment lives here.

use std::collections::BTreeSet;

use crate::haproxy::{Command, MapPath, ProxyState};
use crate::model::{Desired, NetworkId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSettings {
    /// Slots are allocated in blocks of this many (the HAProxy ingress controller uses 42).
    pub block: usize,
    /// HAProxy accepts `add server` (2.6+): slots can grow without a reload.
    pub add_server: bool,
    /// The hosts map, as runtime map commands name it.
    pub hosts_map: MapPath,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Runtime commands, in order. When `reload` is set they are those for backends that
    /// survive the reload and are applied before it.
    pub runtime: Vec<Command>,
    /// Write `target` and reload: a backend appears or disappears, or must grow without
    /// `add server`.
    pub reload: bool,
    /// What HAProxy holds once the plan is applied, and so what the files must say.
    pub target: ProxyState,
    /// Networks to attach the HAProxy container to before routing, and to detach after.
    pub attach: Vec<NetworkId>,
    pub detach: Vec<NetworkId>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.runtime.is_empty() && !self.reload && self.attach.is_empty() && self.detach.is_empty()
    }
}

pub fn plan(
    actual: &ProxyState,
    attached: &BTreeSet<NetworkId>,
    desired: &Desired,
    settings: &PlanSettings,
) -> Plan {
    let _ = (actual, attached, desired, settings);
    todo!("plan::plan")
}
