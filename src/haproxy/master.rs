//! The master CLI (`-S` socket): `show proc`, and `reload` with completion detection (2.6:
//! poll `show proc` for a new worker or a higher failed count; 2.7+: the `Success=` reply).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::codec::{ParseError, ProcList};

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("master socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("master socket {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    #[error("reload failed: {log}")]
    ReloadFailed { log: String },
    #[error("reload did not complete within {timeout_ms} ms")]
    ReloadTimeout { timeout_ms: u64 },
}

impl MasterError {
    pub fn is_transient(&self) -> bool {
        matches!(self, MasterError::Io { .. } | MasterError::ReloadTimeout { .. })
    }
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub old_worker: Option<u32>,
    pub new_worker: u32,
    pub took: Duration,
}

pub struct Master {
    path: PathBuf,
}

impl Master {
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn show_proc(&self) -> Result<ProcList, MasterError> {
        todo!("Master::show_proc")
    }

    /// Reload and wait until the new worker runs, or the reload is known to have failed.
    pub async fn reload(&self, timeout: Duration) -> Result<Reloaded, MasterError> {
        let _ = timeout;
        todo!("Master::reload")
    }
}
