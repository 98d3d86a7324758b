//! The background file writer: renders `haproxy.cfg` and `hosts.map` from what HAProxy holds
//! and writes them on the blocking pool, off the pass's path (4 fsyncs, tens of milliseconds
//! on a busy disk). It also knows each backend's balancing options as HAProxy loaded them,
//! which the Runtime API cannot show.

use std::collections::{BTreeMap, BTreeSet};

use tokio::task::JoinHandle;
use tracing::debug;

use crate::haproxy::render::{self, Files, FilesError, RenderSettings};
use crate::haproxy::{DefaultsName, ProxyState};
use crate::model::{BackendName, BackendOptions};

/// Each backend's balancing options.
type Options = BTreeMap<BackendName, BackendOptions>;

/// What the files on disk say, as last written (or read at start).
struct Written {
    config: String,
    map: String,
    /// The backend options of `config`.
    options: Options,
}

pub(super) struct FileWriter {
    files: Files,
    render: RenderSettings,
    /// `None`: unknown (never read, or a write failed), so the next render is written.
    written: Option<Written>,
    /// The last write, still running: the next write, a reload or [`FileWriter::flush`]
    /// waits for it.
    writing: Option<JoinHandle<Result<(), FilesError>>>,
    /// Each backend's options as in the config HAProxy loaded.
    loaded: Options,
    /// The config text HAProxy loaded (as far as known): the template check and the named
    /// defaults sections HAProxy holds are read from it.
    loaded_config: Option<String>,
}

impl FileWriter {
    pub fn new(files: Files, render: RenderSettings) -> FileWriter {
        let written = read(&files);
        // The last config HAProxy accepted from this driver, else the one on disk. Text from
        // an earlier run is the only source of its options; later ones come with the state.
        let good = std::fs::read_to_string(Files::good_path(&files.config_path())).ok();
        let mut loaded = match (&good, &written) {
            (Some(good), _) => render::backend_options(good),
            (None, Some(w)) => w.options.clone(),
            (None, None) => Options::new(),
        };
        // A backend in the last written config but not in the last reloaded one was created
        // at runtime (HAProxy 3.4+), with the options written.
        if let Some(w) = &written {
            for (name, options) in &w.options {
                loaded
                    .entry(name.clone())
                    .or_insert_with(|| options.clone());
            }
        }
        let loaded_config = good.or(written.as_ref().map(|w| w.config.clone()));
        FileWriter {
            files,
            render,
            written,
            writing: None,
            loaded,
            loaded_config,
        }
    }

    /// The named defaults sections HAProxy holds (from the config it loaded).
    pub fn loaded_defaults(&self) -> BTreeSet<DefaultsName> {
        self.loaded_config
            .as_deref()
            .map(render::named_defaults)
            .unwrap_or_default()
    }

    /// Whether the config HAProxy loaded holds the backend CA bundle in its CA store.
    pub fn loaded_backend_ca(&self) -> bool {
        self.loaded_config
            .as_deref()
            .is_some_and(render::loads_backend_ca)
    }

    /// Backends created (`Some` options) or deleted (`None`) through the Runtime API: their
    /// options are HAProxy's now, without a reload.
    pub fn changed_at_runtime<'a>(
        &mut self,
        changes: impl IntoIterator<Item = (&'a BackendName, Option<&'a BackendOptions>)>,
    ) {
        for (name, options) in changes {
            match options {
                Some(o) => {
                    self.loaded.insert(name.clone(), o.clone());
                }
                None => {
                    self.loaded.remove(name);
                }
            }
        }
    }

    /// The options HAProxy loaded for `backend` (default for one it has no config line of).
    pub fn loaded(&self, backend: &BackendName) -> BackendOptions {
        self.loaded.get(backend).cloned().unwrap_or_default()
    }

    /// A new worker loaded the files on disk, which are what was last written (after a
    /// reload by this driver, its target): their backend options are now HAProxy's.
    pub fn worker_loaded_files(&mut self) {
        if let Some(w) = &self.written {
            self.loaded = w.options.clone();
            self.loaded_config = Some(w.config.clone());
        }
    }

    /// Whether HAProxy runs a config rendered from the current template and settings: after an upgrade of swarm-lb (or a changed
    /// --template, --bind...) it is not, and the frontend HAProxy runs may not read the map
    /// the way this version writes it.
    pub fn template_loaded(&self) -> bool {
        self.loaded_config
            .as_deref()
            .map_or(true, |c| render::from_template(c, &self.render))
    }

    /// Render the files of what HAProxy holds now and, when their content changes, start
    /// writing them on the blocking pool (after any write still running), then keep them as the
    /// last good copy: they describe the running worker, runtime changes included (on 3.4+ the
    /// backends created without a reload), so a failed reload or a recovery puts these back, not
    /// the files of the last reload. Returns whether it writes.
    pub async fn mirror(&mut self, state: &ProxyState) -> Result<bool, FilesError> {
        self.write(state, Write::Mirror).await
    }

    /// Render and write the files a reload is about to load; returns once they are on disk.
    /// They become the last good copy only if HAProxy accepts them ([`FileWriter::save_good`]).
    pub async fn candidate(&mut self, state: &ProxyState) -> Result<bool, FilesError> {
        self.write(state, Write::Candidate).await
    }

    async fn write(&mut self, state: &ProxyState, kind: Write) -> Result<bool, FilesError> {
        let config = render::config_keeping(state, &self.render, &self.loaded_defaults());
        let map = render::hosts_map(state);
        let changed = !self
            .written
            .as_ref()
            .is_some_and(|w| w.config == config && w.map == map);
        if changed {
            self.flush().await?;
            let files = self.files.clone();
            let (config_text, map_text) = (config.clone(), map.clone());
            self.written = Some(Written {
                config,
                map,
                options: options_of(state),
            });
            self.writing = Some(tokio::task::spawn_blocking(move || {
                files.write_text(&config_text, &map_text)?;
                if kind == Write::Mirror {
                    files.save_good()?;
                }
                debug!(config = %files.config_path().display(), "files written");
                Ok(())
            }));
        }
        if kind == Write::Candidate {
            self.flush().await?;
        }
        Ok(changed)
    }

    /// Wait for the files being written, if any. A failed write is reported here, and the
    /// next pass writes them again.
    pub async fn flush(&mut self) -> Result<(), FilesError> {
        let Some(writing) = self.writing.take() else {
            return Ok(());
        };
        let result = self.joined(writing.await);
        if result.is_err() {
            self.written = None;
        }
        result
    }

    /// The files just written were accepted by a reload: keep them as the last good ones.
    pub async fn save_good(&mut self) -> Result<(), FilesError> {
        self.on_files(Files::save_good).await
    }

    /// A reload failed: put the last good files back, and remember what they say.
    pub async fn restore_good(&mut self) -> Result<(), FilesError> {
        self.on_files(Files::restore_good).await?;
        self.written = read(&self.files);
        Ok(())
    }

    /// Run `f` on the files on the blocking pool, after any write still running.
    async fn on_files(
        &mut self,
        f: fn(&Files) -> Result<(), FilesError>,
    ) -> Result<(), FilesError> {
        self.flush().await?;
        let files = self.files.clone();
        let done = tokio::task::spawn_blocking(move || f(&files)).await;
        self.joined(done)
    }

    /// A file task's outcome; a task that panicked is an error on the config dir.
    fn joined(
        &self,
        done: Result<Result<(), FilesError>, tokio::task::JoinError>,
    ) -> Result<(), FilesError> {
        done.unwrap_or_else(|e| {
            Err(FilesError {
                path: self.files.dir().to_owned(),
                source: std::io::Error::other(format!("file task failed: {e}")),
            })
        })
    }
}

/// Why the files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// What HAProxy holds: in the background, and the last good copy once on disk.
    Mirror,
    /// What a reload will load: waited for, good only once HAProxy accepts it.
    Candidate,
}

/// The files on disk, with the options their config gives each backend.
fn read(files: &Files) -> Option<Written> {
    let (config, map) = files.read().ok()?;
    let options = render::backend_options(&config);
    Some(Written {
        config,
        map,
        options,
    })
}

/// Each backend's options in `state`, as a config rendered from it gives them.
fn options_of(state: &ProxyState) -> Options {
    state
        .backends
        .iter()
        .map(|(name, b)| (name.clone(), b.options.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::MapPath;
    use proptest::prelude::*;

    fn settings() -> RenderSettings {
        RenderSettings {
            template: render::BASE_TEMPLATE.to_owned(),
            binds: vec![":80".to_owned()],
            admin_socket: "/run/admin.sock".into(),
            hosts_map: MapPath::new("/etc/haproxy/hosts.map").expect("valid"),
            https: None,
        }
    }

    proptest! {
        /// The writer keeps the options of the state it rendered instead of parsing the text
        /// back: both must agree.
        #[test]
        fn the_options_of_a_rendered_state_are_those_its_config_gives(
            state in crate::plan::strategy::proxy_state()
        ) {
            let text = render::config(&state, &settings());
            prop_assert_eq!(options_of(&state), render::backend_options(&text));
        }
    }
}
