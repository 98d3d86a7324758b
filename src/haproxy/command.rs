//! Typed Runtime API commands. Only [`super::codec::encode`] turns them into text.

use std::net::SocketAddr;

use super::state::Admin;
use crate::model::{BackendName, Host, ServerName};

/// The path of a map file as HAProxy names it in `map(...)`; checked to hold no syntax.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapPath(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("map path {path:?}: {reason}")]
pub struct MapPathError {
    pub path: String,
    pub reason: &'static str,
}

impl MapPath {
    pub fn new(path: &str) -> Result<Self, MapPathError> {
        let err = |reason| MapPathError {
            path: path.to_owned(),
            reason,
        };
        if !path.starts_with('/') {
            return Err(err("must be absolute"));
        }
        if !path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
        {
            return Err(err("only letters, digits, '/', '.', '-', '_' are allowed"));
        }
        Ok(Self(path.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `set server <b>/<s> addr <ip> port <port>`
    SetAddr {
        backend: BackendName,
        server: ServerName,
        addr: SocketAddr,
    },
    /// `set server <b>/<s> state ready|drain|maint`
    SetState {
        backend: BackendName,
        server: ServerName,
        state: Admin,
    },
    /// `add server <b>/<s> <ip>:<port> <server options>`: the server starts in maint.
    AddServer {
        backend: BackendName,
        server: ServerName,
        addr: SocketAddr,
    },
    /// `add map <file> <key> <value>`
    AddMap {
        map: MapPath,
        key: Host,
        value: BackendName,
    },
    /// `set map <file> <key> <value>`
    SetMap {
        map: MapPath,
        key: Host,
        value: BackendName,
    },
    /// `del map <file> <key>`
    DelMap { map: MapPath, key: Host },
    /// `show servers state [<b>]`
    ShowServersState { backend: Option<BackendName> },
    /// `show map <file>`
    ShowMap { map: MapPath },
    /// `show info`
    ShowInfo,
}

impl Command {
    /// Whether the command changes HAProxy's state (the planner emits only these).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Command::ShowServersState { .. } | Command::ShowMap { .. } | Command::ShowInfo
        )
    }
}
