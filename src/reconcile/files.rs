//! The background file writer: renders `haproxy.cfg` and `hosts.map` from what HAProxy holds
//! and writes them on the blocking pool, off the pass's path. It also knows each backend's
//! balancing options as HAProxy loaded them, which the Runtime API cannot show.
//!
//! A pass hands the state it left to [`FileWriter::mirror`], which returns at once: one job on
//! the blocking pool renders and writes the newest state handed over, then the next newest,
//! until none is waiting (states handed over while it writes are coalesced: only the last one
//! is written). At 10,000 services the config is ~20 MB; rendering it (only changed backends
//! are formatted again, [`render::Sections`]), comparing it and writing it with 4 fsyncs took
//! a pass ~100 ms before it left the pass's path. A reload waits for the job and writes its own
//! files ([`FileWriter::candidate`]); a write that failed is reported by the next `mirror` or
//! [`FileWriter::flush`], and the next state is written whole again.
//!
//! What the files guarantee: once the job is idle, they describe what HAProxy holds. Between a
//! change and the end of its write they lag, by [`MIRROR_EVERY`] (2 s) at most: writes are
//! spaced so that churn coalesces (a reload or a flush hurries the job). An HAProxy restarted by
//! anything other than this driver in that window loads the state before the change, and the
//! driver's next pass (a new worker means a full read) applies it again; a driver stopped in
//! that window finds HAProxy's state by its first pass's full read, whatever the files say.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::haproxy::render::{self, Files, FilesError, RenderSettings, Sections};
use crate::haproxy::{DefaultsName, ProxyState};
use crate::model::{BackendName, BackendOptions};

/// Each backend's balancing options.
type Options = BTreeMap<BackendName, BackendOptions>;

/// What the files on disk say, as last written (or read at start).
struct Written {
    /// Their digests, not their text (~20 MB at 10,000 services, held for good otherwise).
    digest: FilesDigest,
    /// The backend options of the config.
    options: Options,
}

/// SHA-256 of the config and of the map: two renders are the same files when these are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FilesDigest([u8; 32], [u8; 32]);

impl FilesDigest {
    fn of(config: &str, map: &str) -> Self {
        Self(Self::sha256(config), Self::sha256(map))
    }

    fn sha256(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref());
        out
    }
}

/// The config file as the last mirror write left it, if `sections` index it (its SHA-256 is
/// theirs); else nothing, and `sections` forgotten (a reload's candidate, a failed write or
/// anything else rewrote it), so that the render formats every backend.
fn previous_config(files: &Files, sections: &mut Sections) -> String {
    let Some(want) = sections.text_sha256().copied() else {
        return String::new();
    };
    match std::fs::read_to_string(files.config_path()) {
        Ok(text) if FilesDigest::sha256(&text) == want => text,
        _ => {
            sections.clear();
            String::new()
        }
    }
}

/// What the reconciler and the mirror job share.
#[derive(Default)]
struct Shared {
    /// The next state to mirror, with the named defaults to keep and the settings to render
    /// with (the basic-auth user lists change between passes; the newest wins).
    pending: Option<(Arc<ProxyState>, BTreeSet<DefaultsName>, Arc<RenderSettings>)>,
    /// A job is running: it takes `pending` until none is left, then clears this.
    running: bool,
    /// `None`: unknown (never read, or a write failed), so the next render is written.
    written: Option<Written>,
    /// The last job's failed write, reported by the next mirror or flush.
    failed: Option<FilesError>,
    /// Backend sections of the last render (only the mirror job renders with them).
    sections: Sections,
    /// When the job last wrote (or found the files already as rendered).
    last_write: Option<std::time::Instant>,
    /// Someone waits for the job ([`FileWriter::flush`], a reload): write without spacing.
    hurry: bool,
}

/// The least time between two mirror writes: states handed over meanwhile coalesce into the
/// next write. At 10,000 services one write renders, compares and writes ~20 MB twice (the
/// files and their last good copy, fsynced); one per change took a core's worth of CPU under
/// churn. The files lag HAProxy by this much at most (see the module doc for why that is safe).
pub const MIRROR_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) struct FileWriter {
    files: Files,
    render: Arc<RenderSettings>,
    shared: Arc<Mutex<Shared>>,
    /// Wakes the mirror job from its spacing wait when someone hurries it.
    wake: Arc<Condvar>,
    /// The last mirror job started; waited for by a reload and by [`FileWriter::flush`].
    writing: Option<JoinHandle<()>>,
    /// The state last handed to the mirror (none after a failed write): an equal one is not
    /// handed over again. Cheap to compare: the backends are shared (`Arc`).
    mirrored: Option<Arc<ProxyState>>,
    /// Each backend's options as in the config HAProxy loaded.
    loaded: Options,
    /// What the config HAProxy loaded (as far as known) says, read once per config (its
    /// text is not kept): whether it was rendered from the current template and settings
    /// (true when unknown; the user lists, the one setting that changes at run time, are
    /// left out of that comparison), whether it holds the backend CA bundle, its named
    /// defaults sections and its basic-auth user list sections (secret -> section text).
    loaded_template: bool,
    loaded_backend_ca: bool,
    loaded_defaults: BTreeSet<DefaultsName>,
    loaded_userlists: BTreeMap<String, String>,
}

impl FileWriter {
    pub fn new(files: Files, render: RenderSettings) -> FileWriter {
        let on_disk = files.read().ok();
        let written = on_disk.as_ref().map(|(config, map)| written(config, map));
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
        let loaded_config = good.or(on_disk.map(|(config, _)| config));
        let mut writer = FileWriter {
            files,
            render: Arc::new(render),
            shared: Arc::new(Mutex::new(Shared {
                written,
                ..Shared::default()
            })),
            wake: Arc::new(Condvar::new()),
            writing: None,
            mirrored: None,
            loaded,
            loaded_template: true,
            loaded_backend_ca: false,
            loaded_defaults: BTreeSet::new(),
            loaded_userlists: BTreeMap::new(),
        };
        writer.set_loaded_config(loaded_config);
        writer
    }

    fn set_loaded_config(&mut self, config: Option<String>) {
        self.loaded_template = config
            .as_deref()
            .map_or(true, |c| render::from_template(c, &self.render));
        self.loaded_backend_ca = config.as_deref().is_some_and(render::loads_backend_ca);
        self.loaded_defaults = config
            .as_deref()
            .map(render::named_defaults)
            .unwrap_or_default();
        self.loaded_userlists = config
            .as_deref()
            .map(crate::haproxy::auth::loaded_sections)
            .unwrap_or_default();
    }

    /// The basic-auth user list sections HAProxy loaded (secret -> section text).
    pub fn loaded_userlists(&self) -> &BTreeMap<String, String> {
        &self.loaded_userlists
    }

    /// The entries of the user lists HAProxy loaded (to seed `AuthLists` at start).
    pub fn loaded_userlist_entries(&self) -> BTreeMap<String, Vec<crate::model::htpasswd::Entry>> {
        crate::haproxy::auth::section_lists(&self.loaded_userlists)
    }

    /// The user lists the files are rendered with from now on. A change is written by the
    /// next mirror even when HAProxy's state is the same (a list no service uses any more
    /// leaves the files).
    pub fn set_userlists(&mut self, lists: crate::haproxy::auth::Userlists) {
        if self.render.userlists != lists {
            self.render = Arc::new(RenderSettings {
                userlists: lists,
                ..(*self.render).clone()
            });
            self.mirrored = None;
        }
    }

    /// The secrets whose user lists the files hold and HAProxy has not loaded (so a reload
    /// is due); empty when every list is loaded.
    pub fn userlists_missing(&self) -> Vec<String> {
        self.render.userlists.missing_from(&self.loaded_userlists)
    }

    /// The named defaults sections HAProxy holds (from the config it loaded).
    pub fn loaded_defaults(&self) -> BTreeSet<DefaultsName> {
        self.loaded_defaults.clone()
    }

    /// Whether the config HAProxy loaded holds the backend CA bundle in its CA store.
    pub fn loaded_backend_ca(&self) -> bool {
        self.loaded_backend_ca
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
    pub async fn worker_loaded_files(&mut self) {
        // Waited for: the files on disk are the mirror's last write once it is idle.
        let _ = self.wait_idle().await;
        let options = {
            let shared = self.shared.lock();
            shared.written.as_ref().map(|w| w.options.clone())
        };
        if let Some(options) = options {
            self.loaded = options;
            // The text is read back from disk (not kept between writes): what the new
            // worker loaded.
            self.set_loaded_config(self.files.read().ok().map(|(config, _)| config));
        }
    }

    /// Whether HAProxy runs a config rendered from the current template and settings: after an upgrade of swarm-lb (or a changed
    /// --template, --bind...) it is not, and the frontend HAProxy runs may not read the map
    /// the way this version writes it.
    pub fn template_loaded(&self) -> bool {
        self.loaded_template
    }

    /// Hand the state HAProxy holds now to the mirror job, which renders and writes the files
    /// on the blocking pool (see the module doc) and keeps them as the last good copy: they
    /// describe the running worker, runtime changes included (on 3.4+ the backends created
    /// without a reload), so a failed reload or a recovery puts these back, not the files of
    /// the last reload. Returns at once: whether the state was handed over (it differs from
    /// the last one); `Err` for an earlier write that failed.
    pub async fn mirror(&mut self, state: &ProxyState) -> Result<bool, FilesError> {
        if let Some(e) = self.shared.lock().failed.take() {
            self.mirrored = None;
            return Err(e);
        }
        if self.mirrored.as_deref() == Some(state) {
            return Ok(false);
        }
        // One copy, shared by what was handed over and the job (the hosts map is copied whole).
        let state = Arc::new(state.clone());
        self.mirrored = Some(state.clone());
        let start = {
            let mut shared = self.shared.lock();
            shared.pending = Some((state, self.loaded_defaults.clone(), self.render.clone()));
            let start = !std::mem::replace(&mut shared.running, true);
            if start {
                // A flush that found no job left this set: the new job spaces its writes.
                shared.hurry = false;
            }
            start
        };
        if start {
            let (shared, wake, files) =
                (self.shared.clone(), self.wake.clone(), self.files.clone());
            self.writing = Some(tokio::task::spawn_blocking(move || {
                mirror_job(&shared, &wake, &files)
            }));
        }
        Ok(true)
    }

    /// Render and write the files a reload is about to load; returns once they are on disk.
    /// They become the last good copy only if HAProxy accepts them ([`FileWriter::save_good`]).
    /// A mirror still waiting is dropped (the reload's files supersede it).
    pub async fn candidate(&mut self, state: &ProxyState) -> Result<bool, FilesError> {
        self.shared.lock().pending = None;
        self.flush().await?;
        let config = render::config_keeping(state, &self.render, &self.loaded_defaults);
        let map = render::hosts_map(state);
        let digest = FilesDigest::of(&config, &map);
        let changed = !self
            .shared
            .lock()
            .written
            .as_ref()
            .is_some_and(|w| w.digest == digest);
        // What a mirror of this state would write next is what is on disk after this.
        self.mirrored = None;
        if changed {
            let files = self.files.clone();
            let options = options_of(state);
            let done = tokio::task::spawn_blocking(move || {
                files
                    .write_text(&config, &map)
                    .map(|()| Written { digest, options })
            })
            .await;
            match self.joined(done) {
                Ok(w) => self.shared.lock().written = Some(w),
                Err(e) => {
                    self.shared.lock().written = None;
                    return Err(e);
                }
            }
        }
        Ok(changed)
    }

    /// Wait for the mirror job to write every state handed over. A failed write is reported
    /// here, and the next mirror writes the files again.
    pub async fn flush(&mut self) -> Result<(), FilesError> {
        self.wait_idle().await?;
        match self.shared.lock().failed.take() {
            Some(e) => {
                self.mirrored = None;
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Wait for the mirror job to end (it ends when no state is waiting).
    async fn wait_idle(&mut self) -> Result<(), FilesError> {
        let Some(writing) = self.writing.take() else {
            return Ok(());
        };
        self.shared.lock().hurry = true;
        self.wake.notify_all();
        self.joined(writing.await.map(Ok))
    }

    /// The files just written were accepted by a reload: keep them as the last good ones.
    pub async fn save_good(&mut self) -> Result<(), FilesError> {
        self.on_files(Files::save_good).await
    }

    /// A reload failed: put the last good files back, and remember what they say.
    pub async fn restore_good(&mut self) -> Result<(), FilesError> {
        self.on_files(Files::restore_good).await?;
        self.shared.lock().written = read(&self.files);
        self.mirrored = None;
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

    /// A file task's outcome; a task that panicked is an error on the config dir (and what
    /// the files say is unknown).
    fn joined<T>(
        &self,
        done: Result<Result<T, FilesError>, tokio::task::JoinError>,
    ) -> Result<T, FilesError> {
        done.unwrap_or_else(|e| {
            let mut shared = self.shared.lock();
            shared.written = None;
            shared.running = false;
            Err(FilesError {
                path: self.files.dir().to_owned(),
                source: std::io::Error::other(format!("file task failed: {e}")),
            })
        })
    }
}

/// The mirror job: render and write the newest waiting state until none is left. Blocking.
fn mirror_job(shared: &Mutex<Shared>, wake: &Condvar, files: &Files) {
    loop {
        let (state, keep, settings, mut sections, unchanged) = {
            let mut s = shared.lock();
            // Writes are spaced by MIRROR_EVERY; what is handed over meanwhile replaces
            // `pending`, so the wait coalesces.
            if let Some(until) = s.last_write.map(|at| at + MIRROR_EVERY) {
                while !s.hurry && std::time::Instant::now() < until {
                    wake.wait_until(&mut s, until);
                }
            }
            let Some((state, keep, settings)) = s.pending.take() else {
                s.running = false;
                s.hurry = false;
                return;
            };
            let sections = std::mem::take(&mut s.sections);
            (state, keep, settings, sections, s.written.take())
        };
        // The sections unchanged since the last write are copied from the file it wrote (as
        // long as it still holds those bytes), not held in memory (~20 MB at 10,000 services).
        let previous = previous_config(files, &mut sections);
        let config = render::config_cached(&state, &settings, &keep, &mut sections, &previous);
        drop(previous);
        let map = render::hosts_map(&state);
        let digest = FilesDigest::of(&config, &map);
        let same = unchanged.as_ref().is_some_and(|w| w.digest == digest);
        let outcome = if same {
            Ok(unchanged)
        } else {
            files
                .write_text(&config, &map)
                .and_then(|()| files.save_good())
                .map(|()| {
                    debug!(config = %files.config_path().display(), "files written");
                    Some(Written {
                        digest,
                        options: options_of(&state),
                    })
                })
        };
        match &outcome {
            // The file holds `config` (written now, or by the write `same` compared with).
            Ok(Some(written)) => sections.indexing(written.digest.0),
            _ => sections.clear(),
        }
        let mut s = shared.lock();
        s.sections = sections;
        s.last_write = Some(std::time::Instant::now());
        match outcome {
            Ok(written) => s.written = written,
            Err(e) => {
                s.written = None;
                s.failed = Some(e);
            }
        }
    }
}

/// The files on disk, with the options their config gives each backend.
fn read(files: &Files) -> Option<Written> {
    let (config, map) = files.read().ok()?;
    Some(written(&config, &map))
}

/// What files holding `config` and `map` say.
fn written(config: &str, map: &str) -> Written {
    Written {
        digest: FilesDigest::of(config, map),
        options: render::backend_options(config),
    }
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
            trusted_proxies: Vec::new(),
            userlists: Default::default(),
        }
    }

    fn one_host(host: &str) -> ProxyState {
        let mut s = ProxyState::default();
        s.hosts.insert(
            crate::model::MapKey::parse(&format!("{host}/")).expect("key"),
            crate::model::MapValue::parse("web").expect("value"),
        );
        s
    }

    #[tokio::test]
    async fn mirror_writes_are_spaced_and_coalesce_until_a_flush_hurries_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::new(dir.path());
        let mut writer = FileWriter::new(files.clone(), settings());
        assert!(writer.mirror(&one_host("a.example")).await.expect("mirror"));
        writer.flush().await.expect("first write");
        let map = || std::fs::read_to_string(files.map_path()).expect("map");
        assert!(map().contains("a.example/"), "{}", map());
        // Within MIRROR_EVERY of that write: handed over, not written yet; the newest of two
        // states handed over is the one written.
        assert!(writer.mirror(&one_host("b.example")).await.expect("mirror"));
        assert!(writer.mirror(&one_host("c.example")).await.expect("mirror"));
        assert!(map().contains("a.example/"), "still the first: {}", map());
        writer.flush().await.expect("hurried write");
        assert!(
            map().contains("c.example/") && !map().contains("b.example/"),
            "{}",
            map()
        );
    }

    proptest! {
        /// The writer keeps the options of the state it rendered instead of parsing the text
        /// back: both must agree.
        /// The cached render is a cache only: after rendering one state, a second one that
        /// shares some of its backends, changes some and drops some renders to exactly the
        /// bytes of an uncached render.
        #[test]
        fn a_render_reusing_the_sections_of_the_last_one_gives_the_same_bytes(
            first in crate::plan::strategy::proxy_state(),
            other in crate::plan::strategy::proxy_state(),
            keep_every in 1usize..4,
        ) {
            let mut sections = render::Sections::default();
            let none = BTreeSet::new();
            let text = render::config_cached(&first, &settings(), &none, &mut sections, "");
            let mut second = first.clone();
            second.backends = first
                .backends
                .iter()
                .enumerate()
                .filter(|(i, _)| i % keep_every == 0)
                .map(|(_, (n, b))| (n.clone(), b.clone()))
                .collect();
            second.backends.extend(other.backends.clone());
            second.hosts = other.hosts.clone();
            let text = render::config_cached(&second, &settings(), &none, &mut sections, &text);
            prop_assert_eq!(&text, &render::config_keeping(&second, &settings(), &none));
            let again = render::config_cached(&first, &settings(), &none, &mut sections, &text);
            prop_assert_eq!(&again, &render::config_keeping(&first, &settings(), &none));
            // Given a text too short for their places, the sections are formatted again.
            prop_assert_eq!(
                render::config_cached(&second, &settings(), &none, &mut sections, "garbage"),
                render::config_keeping(&second, &settings(), &none)
            );
        }

        #[test]
        fn the_options_of_a_rendered_state_are_those_its_config_gives(
            state in crate::plan::strategy::proxy_state()
        ) {
            let text = render::config(&state, &settings());
            prop_assert_eq!(options_of(&state), render::backend_options(&text));
        }
    }
}
