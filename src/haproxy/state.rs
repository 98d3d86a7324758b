//! What HAProxy holds, as plain data: backends with their servers in slot order, and the hosts
//! map. The same type describes the proxy as read back ("actual") and as it must be after a
//! plan ("target"), and [`ProxyState::apply`] is the pure model of a runtime command's effect,
//! which the planner's property tests replay.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::command::Command;
use crate::model::{BackendName, Host, Mode, ServerName};

/// The address of a free slot. Literal (a slot with a hostname refuses `set server addr` on
/// 2.6) and never `0.0.0.0`, which would mean "the client's original destination".
pub const PLACEHOLDER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1);

/// A server's administrative state, folded from `srv_admin_state`'s bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Admin {
    Ready,
    Drain,
    Maint,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: ServerName,
    pub addr: SocketAddr,
    pub admin: Admin,
}

impl Server {
    /// A slot holding nothing: placeholder address, in maintenance.
    pub fn free(name: ServerName) -> Self {
        Self {
            name,
            addr: PLACEHOLDER,
            admin: Admin::Maint,
        }
    }
    pub fn is_free(&self) -> bool {
        self.admin == Admin::Maint && self.addr == PLACEHOLDER
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendState {
    /// `Vip` when the backend's only server is named `vip`; `Task` (slots `s1..sN`) otherwise.
    pub mode: Mode,
    /// In slot order (`s1`, `s2`, ...), or the single `vip` server.
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyState {
    /// Only the driver's backends (named after services); internal `_` backends are left out.
    pub backends: BTreeMap<BackendName, BackendState>,
    /// The hosts map: lower-case host -> backend.
    pub hosts: BTreeMap<Host, BackendName>,
}

/// A runtime command that does not fit the state it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("no backend {backend}")]
    NoBackend { backend: BackendName },
    #[error("no server {backend}/{server}")]
    NoServer {
        backend: BackendName,
        server: ServerName,
    },
    #[error("server {backend}/{server} already exists")]
    ServerExists {
        backend: BackendName,
        server: ServerName,
    },
    #[error("map key {key} already present")]
    MapKeyExists { key: Host },
    #[error("map key {key} not present")]
    NoMapKey { key: Host },
    #[error("{command} does not change state")]
    NotAWrite { command: String },
}

impl ProxyState {
    /// The effect HAProxy gives `cmd`, modelled. Errors where HAProxy would refuse it.
    pub fn apply(&mut self, cmd: &Command) -> Result<(), ApplyError> {
        let _ = cmd;
        todo!("ProxyState::apply")
    }
}
