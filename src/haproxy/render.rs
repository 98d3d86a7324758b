//! Config and map files from a [`ProxyState`]: the base template (operator-tunable, under
//! `haproxy/`) plus one generated backend per service, and the hosts map. [`Files`] writes them
//! atomically and keeps the last good copy for rollback after a failed reload.

use std::path::{Path, PathBuf};

use super::command::MapPath;
use super::state::ProxyState;

/// What the generated config needs beside the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderSettings {
    /// The base template text (global, defaults, frontend); see `haproxy/base.cfg`.
    pub template: String,
    /// `bind` lines of the HTTP frontend, e.g. `:80` or `127.0.0.1:8080`.
    pub binds: Vec<String>,
    /// The admin socket path HAProxy listens on (`stats socket ... level admin`).
    pub admin_socket: PathBuf,
    /// The hosts map file, as the frontend's `map()` names it.
    pub hosts_map: MapPath,
}

/// The whole config text for `state`.
pub fn config(state: &ProxyState, settings: &RenderSettings) -> String {
    let _ = (state, settings);
    todo!("render::config")
}

/// The hosts map file text for `state`.
pub fn hosts_map(state: &ProxyState) -> String {
    let _ = state;
    todo!("render::hosts_map")
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FilesError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The generated files on disk: `haproxy.cfg` and `hosts.map` in one directory.
pub struct Files {
    dir: PathBuf,
}

impl Files {
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_owned(),
        }
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("haproxy.cfg")
    }
    pub fn map_path(&self) -> PathBuf {
        self.dir.join("hosts.map")
    }
}
