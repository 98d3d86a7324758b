//! The generated files on disk ([`Files`]): `haproxy.cfg` and `hosts.map`, each replaced
//! atomically (temp file, fsync, rename, fsync of the directory), and their last good copies
//! for rollback after a failed reload; beside them the Lua files the config loads
//! ([`crate::haproxy::lua`]), written when missing or from another build. Blocking I/O.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::{config, hosts_map, RenderSettings};
use crate::haproxy::state::ProxyState;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FilesError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The generated files on disk: `haproxy.cfg` and `hosts.map` in one directory.
///
/// Blocking I/O (with fsync): call it from `spawn_blocking` in async code.
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
}

impl Files {
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_owned(),
        }
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("haproxy.cfg")
    }
    pub fn map_path(&self) -> PathBuf {
        self.dir.join("hosts.map")
    }
    /// Where [`Files::save_good`] keeps the copy of `path`.
    pub fn good_path(path: &Path) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(".good");
        path.with_file_name(name)
    }

    /// Write the map, then the config, each atomically: a reader (HAProxy loading) sees the
    /// old file or the new one, never a mix, and a crash leaves one of the two whole.
    pub fn write(&self, state: &ProxyState, settings: &RenderSettings) -> Result<(), FilesError> {
        self.write_text(&config(state, settings), &hosts_map(state))
    }

    /// [`Files::write`] for text already rendered (by [`config()`] and [`hosts_map`]).
    pub fn write_text(&self, config: &str, map: &str) -> Result<(), FilesError> {
        fs::create_dir_all(&self.dir).map_err(|source| FilesError {
            path: self.dir.clone(),
            source,
        })?;
        write_atomic(&self.map_path(), map.as_bytes())?;
        self.ensure_acme_map()?;
        self.ensure_lua()?;
        write_atomic(&self.config_path(), config.as_bytes())
    }

    /// Where the Lua file `name` ([`crate::haproxy::lua::LUA_FILES`]) is written.
    pub fn lua_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The config loads the Lua files from beside it: write each whose text on disk is not
    /// this build's (a missing one would make HAProxy refuse the config; an older one
    /// would run an older action).
    fn ensure_lua(&self) -> Result<(), FilesError> {
        for file in crate::haproxy::lua::LUA_FILES {
            let path = self.lua_path(file.name);
            if fs::read(&path).ok().as_deref() != Some(file.text.as_bytes()) {
                write_atomic(&path, file.text.as_bytes())?;
            }
        }
        Ok(())
    }

    /// The ACME challenge map (`{{acme_map}}`), beside the hosts map.
    pub fn acme_map_path(&self) -> PathBuf {
        self.dir.join(crate::haproxy::acme::ACME_MAP_FILE)
    }

    /// HAProxy refuses a config whose `map()` names a missing file: create the challenge map
    /// empty when it is missing, and never truncate it (its entries are written by the code
    /// that adds them at runtime, so a reload keeps pending challenges).
    fn ensure_acme_map(&self) -> Result<(), FilesError> {
        let path = self.acme_map_path();
        match path.try_exists() {
            Ok(true) => Ok(()),
            Ok(false) => write_atomic(&path, b""),
            Err(source) => Err(FilesError { path, source }),
        }
    }

    /// Replaces the challenge map's file with `text` ([`crate::haproxy::acme::map_text`]),
    /// atomically and readable by its owner only (it names pending challenge tokens).
    pub fn write_acme_map(&self, text: &str) -> Result<(), FilesError> {
        write_atomic(&self.acme_map_path(), text.as_bytes())
    }

    /// The config and map text on disk now, in that order.
    pub fn read(&self) -> Result<(String, String), FilesError> {
        let read =
            |path: PathBuf| fs::read_to_string(&path).map_err(|source| FilesError { path, source });
        Ok((read(self.config_path())?, read(self.map_path())?))
    }

    /// Keep the files on disk as the last good ones (call after HAProxy accepted them).
    pub fn save_good(&self) -> Result<(), FilesError> {
        for path in [self.map_path(), self.config_path()] {
            copy_atomic(&path, &Self::good_path(&path))?;
        }
        Ok(())
    }

    /// Put the last good files back (after HAProxy refused the new ones), so the files on disk
    /// describe what the running worker holds again.
    pub fn restore_good(&self) -> Result<(), FilesError> {
        for path in [self.map_path(), self.config_path()] {
            copy_atomic(&Self::good_path(&path), &path)?;
        }
        Ok(())
    }
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), FilesError> {
    let bytes = fs::read(from).map_err(|source| FilesError {
        path: from.to_owned(),
        source,
    })?;
    write_atomic(to, &bytes)
}

/// The mode of every generated file: the config holds the basic-auth user lists' password
/// hashes (`com.docker.lb.auth_basic`), so nobody but the owner (HAProxy and swarm-lb run as
/// root, see docker-compose.yml and `swarm::proxy`) may read it, nor its last good copy; the
/// map is kept the same for simplicity.
pub const FILE_MODE: u32 = 0o600;

/// Temp file in the same directory (mode [`FILE_MODE`]), fsync, rename over `path`, fsync the
/// directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| FilesError { path, source }
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(err(&tmp))?;
    // A temp file left by an older run keeps its mode through `open`: set it.
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .map_err(err(&tmp))?;
    file.write_all(bytes).map_err(err(&tmp))?;
    file.sync_all().map_err(err(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(err(path))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::render::fixtures::{settings, state};

    #[test]
    fn files_are_replaced_whole_and_the_last_good_copy_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path());
        let settings = settings(dir.path());
        files.write(&state(), &settings).unwrap();
        files.save_good().unwrap();
        let good = fs::read_to_string(files.config_path()).unwrap();

        files.write(&ProxyState::default(), &settings).unwrap();
        assert_ne!(fs::read_to_string(files.config_path()).unwrap(), good);
        assert_eq!(fs::read_to_string(files.map_path()).unwrap(), "");

        files.restore_good().unwrap();
        assert_eq!(files.read().unwrap(), (good, hosts_map(&state())));
        // No temp file is left behind.
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "acme.map",
                "forward_auth.lua",
                "haproxy.cfg",
                "haproxy.cfg.good",
                "headers.lua",
                "hosts.map",
                "hosts.map.good"
            ]
        );
        // The config may hold password hashes: owner only, the good copies too.
        for name in names {
            let mode = fs::metadata(dir.path().join(&name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn restoring_without_a_good_copy_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path());
        let err = files.restore_good().unwrap_err();
        assert_eq!(err.path, Files::good_path(&files.map_path()));
        assert_eq!(err.source.kind(), std::io::ErrorKind::NotFound);
    }
}
