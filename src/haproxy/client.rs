//! The admin-socket client: one long-lived connection in prompt mode, commands pipelined, replies
//! read while writing, reconnect on failure and after every reload (an open session keeps an old
//! worker alive).

use std::path::{Path, PathBuf};

use super::codec::{Info, ParseError, ReplyError};
use super::command::{Command, MapPath};
use super::state::ProxyState;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("admin socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("admin socket {path}: no reply within {timeout_ms} ms")]
    Timeout { path: PathBuf, timeout_ms: u64 },
    #[error(
        "admin socket {path}: connection closed before all replies arrived ({missing} missing)"
    )]
    Closed { path: PathBuf, missing: usize },
    #[error("admin socket {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
}

impl ClientError {
    /// Worth a retry (socket gone during a reload, timeout) rather than a report.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ClientError::Parse { .. })
    }
}

pub struct Runtime {
    path: PathBuf,
}

impl Runtime {
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Send every command pipelined; one result per command, in order. A command HAProxy
    /// refused is an `Err` in its place; a transport failure fails the whole call.
    pub async fn execute(
        &mut self,
        cmds: &[Command],
    ) -> Result<Vec<Result<String, ReplyError>>, ClientError> {
        let _ = cmds;
        todo!("Runtime::execute")
    }

    /// Backends, servers and the hosts map as HAProxy holds them now.
    pub async fn actual(&mut self, map: &MapPath) -> Result<ProxyState, ClientError> {
        let _ = map;
        todo!("Runtime::actual")
    }

    pub async fn info(&mut self) -> Result<Info, ClientError> {
        todo!("Runtime::info")
    }

    /// Drop the connection (after a reload): the next call reconnects to the new worker.
    pub fn disconnect(&mut self) {}
}
