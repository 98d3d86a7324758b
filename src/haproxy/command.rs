//! Typed Runtime API commands. Only [`super::codec::encode`] turns them into text, and only
//! [`super::codec::check_reply`] and the codec's parsers read what HAProxy answers.
//!
//! Every argument is a checked newtype or a number, so no command needs escaping and each
//! encodes to exactly one line.

use std::net::SocketAddr;

use super::state::Admin;
use crate::model::{BackendName, MapKey, MapValue, ServerName};

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
    /// `set server <b>/<s> addr <ip> port <port>` (IPv6 without brackets). HAProxy answers
    /// with a warning either way; the codec tells success (`IP changed from`, `no need to
    /// change the addr`) from refusal.
    SetAddr {
        backend: BackendName,
        server: ServerName,
        addr: SocketAddr,
    },
    /// `set server <b>/<s> state ready|drain|maint`; prints nothing on success.
    SetState {
        backend: BackendName,
        server: ServerName,
        state: Admin,
    },
    /// `add server <b>/<s> <ip>:<port> check` (IPv6 in brackets; options:
    /// [`super::codec::ADD_SERVER_OPTIONS`]). Needs a dynamic balance algorithm. The server
    /// starts in maint, and on 2.6 its check stays off (`show stat`: `no check`) until
    /// [`Command::EnableHealth`], which the planner sends right after it.
    AddServer {
        backend: BackendName,
        server: ServerName,
        addr: SocketAddr,
    },
    /// `enable health <b>/<s>`: start the health check of a server added at runtime (prints
    /// nothing on success). It persists through maint, so a free slot is checked once used.
    EnableHealth {
        backend: BackendName,
        server: ServerName,
    },
    /// `add map <file> <key> <value>`. HAProxy accepts a duplicate key (lookups return the
    /// first); use [`Command::SetMap`] for a key that exists.
    AddMap {
        map: MapPath,
        key: MapKey,
        value: MapValue,
    },
    /// `set map <file> <key> <value>`: every entry of the key; `entry not found.` if none.
    SetMap {
        map: MapPath,
        key: MapKey,
        value: MapValue,
    },
    /// `del map <file> <key>`: every entry of the key; `Key not found.` if none.
    DelMap { map: MapPath, key: MapKey },
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
