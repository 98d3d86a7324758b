//! Certificates on HAProxy's HTTPS bind: the files that mirror what the Runtime API holds, the
//! Runtime API's payload limit, and the self-signed default certificate.
//!
//! Layout, under the config dir: `certs/` (mode 0700) holds `default.pem` (the certificate
//! served for an unknown or absent SNI: the crt-list's first entry), one `<name>.pem` per
//! service certificate (certificate chain then key, mode 0600), and `crt-list`, which lists
//! them. The HTTPS `bind` reads `crt-list` at start, so a reload or a restart serves exactly
//! the certificates pushed at runtime (`new`/`set`/`commit ssl cert`, `add ssl crt-list`),
//! provided the files are written alongside every runtime change, as the map files are.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::capabilities::{Capabilities, Feature};
use super::codec::Version;
use super::command::{CertPath, Command, MapPathError, Pem, PemError};

/// Before 3.4, a CLI command line, payload included, must fit `tune.bufsize - tune.maxrewrite`
/// (16,384 - 1,024 bytes by default). A longer one gets NO reply and hangs the connection
/// (measured on 2.6.12: a 12.2 KB `set ssl cert` loaded, a 23.6 KB one hung).
pub const LINE_LIMIT_BEFORE_3_4: usize = 15_360;
/// From 3.4 a payload may reach `tune.cli.max-payload-size`, 128 KiB by default (measured on
/// 3.4.7: a 23.6 KB chain loaded; a 143 KB one got `The payload is too big.`).
pub const PAYLOAD_LIMIT_FROM_3_4: usize = 128 * 1024;

/// The most bytes a `set ssl cert` command (line, payload and terminators) may take on `version`.
pub fn payload_limit(version: Version) -> usize {
    if Capabilities::of(version).has(Feature::LargeCliPayload) {
        PAYLOAD_LIMIT_FROM_3_4
    } else {
        LINE_LIMIT_BEFORE_3_4
    }
}

/// A certificate too large to push through the Runtime API of this HAProxy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "certificate and key take {bytes} bytes, over the {limit}-byte Runtime API payload limit of \
     HAProxy {major}.{minor} ({knob}); use a shorter chain or raise {knob} in the template"
)]
pub struct PayloadTooLarge {
    pub bytes: usize,
    pub limit: usize,
    pub major: u16,
    pub minor: u16,
    pub knob: &'static str,
}

/// The commands that make HAProxy serve `pem` as `cert` on the binds of `list`: `new` (when
/// `fresh`), `set`, `commit`, and `add ssl crt-list` (when `fresh`). A rotation (`fresh` false)
/// replaces the certificate in place: the crt-list entry stays, so no handshake ever finds the
/// name unserved. Checked against [`payload_limit`] first, since an oversized command before
/// 3.4 hangs the connection instead of failing.
pub fn push_commands(
    list: &CertPath,
    cert: &CertPath,
    pem: Pem,
    fresh: bool,
    version: Version,
) -> Result<Vec<Command>, PayloadTooLarge> {
    let set = Command::SetSslCert {
        cert: cert.clone(),
        pem,
    };
    let limit = payload_limit(version);
    let bytes = set.wire_len();
    if bytes > limit {
        return Err(PayloadTooLarge {
            bytes,
            limit,
            major: version.major,
            minor: version.minor,
            knob: if limit == PAYLOAD_LIMIT_FROM_3_4 {
                "tune.cli.max-payload-size"
            } else {
                "tune.bufsize"
            },
        });
    }
    let mut cmds = Vec::with_capacity(4);
    if fresh {
        cmds.push(Command::NewSslCert { cert: cert.clone() });
    }
    cmds.push(set);
    cmds.push(Command::CommitSslCert { cert: cert.clone() });
    if fresh {
        cmds.push(Command::AddSslCrtList {
            list: list.clone(),
            cert: cert.clone(),
        });
    }
    Ok(cmds)
}

/// The commands that stop serving `cert`: out of the crt-list, then out of memory.
pub fn remove_commands(list: &CertPath, cert: &CertPath) -> Vec<Command> {
    vec![
        Command::DelSslCrtList {
            list: list.clone(),
            cert: cert.clone(),
        },
        Command::DelSslCert { cert: cert.clone() },
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum CertFilesError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate path: {0}")]
    Path(#[from] MapPathError),
    #[error("certificate name {name:?}: only letters, digits, '.', '-', '_' are allowed")]
    Name { name: String },
    #[error("generating the default certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("default certificate: {0}")]
    Pem(#[from] PemError),
}

/// The certificate directory and its crt-list; see the module doc.
#[derive(Debug, Clone)]
pub struct CertFiles {
    dir: PathBuf,
}

/// The default certificate's file name in [`CertFiles::dir`].
pub const DEFAULT_CERT: &str = "default.pem";
/// The crt-list's file name in [`CertFiles::dir`].
pub const CRT_LIST: &str = "crt-list";

impl CertFiles {
    /// `dir` is created (mode 0700) on first write.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_owned(),
        }
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn crt_list_path(&self) -> PathBuf {
        self.dir.join(CRT_LIST)
    }
    pub fn default_path(&self) -> PathBuf {
        self.dir.join(DEFAULT_CERT)
    }
    /// The crt-list as the Runtime API names it.
    pub fn crt_list(&self) -> Result<CertPath, CertFilesError> {
        Ok(CertPath::new(&self.crt_list_path().to_string_lossy())?)
    }
    /// The file (and Runtime API name) of certificate `name` (`<name>.pem`).
    pub fn cert(&self, name: &str) -> Result<CertPath, CertFilesError> {
        let ok = !name.is_empty()
            && name != "default"
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            && !name.starts_with('.');
        if !ok {
            return Err(CertFilesError::Name {
                name: name.to_owned(),
            });
        }
        Ok(CertPath::new(
            &self.dir.join(format!("{name}.pem")).to_string_lossy(),
        )?)
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertFilesError + '_ {
        move |source| CertFilesError::Io {
            path: path.to_owned(),
            source,
        }
    }

    fn ensure_dir(&self) -> Result<(), CertFilesError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(Self::io(&self.dir))?;
        // An existing dir keeps its mode: make sure keys are not listed to others.
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(Self::io(&self.dir))
    }

    /// Writes `text` to `path` atomically (a 0600 temp file renamed over it), so HAProxy never
    /// reads half a key and no reader but the owner ever can.
    fn write_private(path: &Path, text: &str) -> Result<(), CertFilesError> {
        let tmp = path.with_extension("tmp");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(Self::io(&tmp))?;
        // A leftover temp file from an older run may have another mode.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(Self::io(&tmp))?;
        fs::rename(&tmp, path).map_err(Self::io(path))
    }

    /// Writes the PEM file of `cert` (mode 0600).
    pub fn write_cert(&self, cert: &CertPath, pem: &Pem) -> Result<(), CertFilesError> {
        self.ensure_dir()?;
        Self::write_private(Path::new(cert.as_str()), &format!("{}\n", pem.as_str()))
    }

    /// Removes the PEM file of `cert`; a missing file is not an error.
    pub fn remove_cert(&self, cert: &CertPath) -> Result<(), CertFilesError> {
        match fs::remove_file(cert.as_str()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Self::io(self.dir())(e)),
            _ => Ok(()),
        }
    }

    /// Writes the crt-list: the default certificate first (HAProxy's default for the bind),
    /// then `certs` in the order given.
    pub fn write_crt_list<'a>(
        &self,
        certs: impl IntoIterator<Item = &'a CertPath>,
    ) -> Result<(), CertFilesError> {
        self.ensure_dir()?;
        let mut text = format!("{}\n", self.default_path().display());
        for cert in certs {
            text.push_str(cert.as_str());
            text.push('\n');
        }
        Self::write_private(&self.crt_list_path(), &text)
    }

    /// Makes sure a default certificate exists: `operator` (a PEM file holding certificate and
    /// key) is copied in when given; otherwise an existing `default.pem` is kept, or a
    /// self-signed one is generated. Returns whether one was generated now (the caller logs it).
    pub fn ensure_default(&self, operator: Option<&Pem>) -> Result<bool, CertFilesError> {
        self.ensure_dir()?;
        let path = self.default_path();
        if let Some(pem) = operator {
            Self::write_private(&path, &format!("{}\n", pem.as_str()))?;
            return Ok(false);
        }
        if path.exists() {
            return Ok(false);
        }
        let pem = self_signed(&["swarm-lb.invalid".to_owned()])?;
        Self::write_private(&path, &format!("{}\n", pem.as_str()))?;
        Ok(true)
    }
}

/// Debian's CA bundle (package `ca-certificates`), the default source of
/// [`install_backend_ca`].
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Installs the CA bundle that `ssl_backend_tls_verify=required` verifies tasks against at
/// `dest` (mode 0644: certificates only): a copy of `source`. When `source` is missing, the
/// certificate part of the default certificate in `certs` is installed instead, so the config
/// still loads (a `ca-file` HAProxy cannot read fails the whole config) and verification fails
/// closed: no task certificate chains to it. Returns whether that fallback was used (the
/// caller warns).
pub fn install_backend_ca(
    dest: &Path,
    source: &Path,
    certs: &CertFiles,
) -> Result<bool, CertFilesError> {
    let (text, fallback) = match fs::read_to_string(source) {
        Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => (text, false),
        _ => {
            let default = certs.default_path();
            let pem = fs::read_to_string(&default).map_err(CertFiles::io(&default))?;
            let cert_only: String = pem
                .split_inclusive("-----END CERTIFICATE-----")
                .next()
                .unwrap_or_default()
                .to_owned();
            (format!("{}\n", cert_only.trim()), true)
        }
    };
    let tmp = dest.with_extension("tmp");
    fs::write(&tmp, text).map_err(CertFiles::io(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).map_err(CertFiles::io(&tmp))?;
    fs::rename(&tmp, dest).map_err(CertFiles::io(dest))?;
    Ok(fallback)
}

/// A self-signed certificate (ECDSA P-256, rcgen's default validity) for `names` (DNS
/// subject-alternative names; the first is also the common name), certificate then PKCS#8
/// key. For the default certificate and for tests; no client trusts it.
pub fn self_signed(names: &[String]) -> Result<Pem, CertFilesError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let text = format!("{}{}", cert.pem(), key.serialize_pem());
    Ok(Pem::new(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u16, minor: u16) -> Version {
        Version {
            major,
            minor,
            patch: 0,
        }
    }

    #[test]
    fn a_new_certificate_is_created_set_committed_and_listed_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles::new(dir.path());
        let list = files.crt_list().unwrap();
        let cert = files.cert("web").unwrap();
        let pem = self_signed(&["a.example".to_owned()]).unwrap();
        let cmds = push_commands(&list, &cert, pem, true, v(2, 6)).unwrap();
        let verbs: Vec<String> = cmds
            .iter()
            .map(|c| {
                super::super::codec::encode(c)
                    .split(' ')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(verbs, ["new ssl", "set ssl", "commit ssl", "add ssl"]);
    }

    #[test]
    fn a_rotation_replaces_the_certificate_in_place_without_touching_the_crt_list() {
        let list = CertPath::new("/c/crt-list").unwrap();
        let cert = CertPath::new("/c/web.pem").unwrap();
        let pem = self_signed(&["a.example".to_owned()]).unwrap();
        let cmds = push_commands(&list, &cert, pem, false, v(3, 0)).unwrap();
        assert_eq!(cmds.len(), 2);
        assert!(matches!(cmds[0], Command::SetSslCert { .. }));
        assert!(matches!(cmds[1], Command::CommitSslCert { .. }));
    }

    #[test]
    fn a_chain_over_the_line_limit_is_refused_before_3_4_and_accepted_from_3_4() {
        let list = CertPath::new("/c/crt-list").unwrap();
        let cert = CertPath::new("/c/web.pem").unwrap();
        let one = self_signed(&["a.example".to_owned()]).unwrap();
        let big = Pem::new(&one.as_str().repeat(40)).unwrap();
        let err = push_commands(&list, &cert, big.clone(), true, v(2, 6)).unwrap_err();
        assert_eq!(err.limit, LINE_LIMIT_BEFORE_3_4);
        assert!(err.to_string().contains("tune.bufsize"), "{err}");
        assert!(push_commands(&list, &cert, big, true, v(3, 4)).is_ok());
    }

    #[test]
    fn certificate_files_and_the_crt_list_are_readable_by_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles::new(dir.path().join("certs"));
        assert!(files.ensure_default(None).unwrap(), "generated");
        assert!(!files.ensure_default(None).unwrap(), "kept");
        let cert = files.cert("web").unwrap();
        let pem = self_signed(&["a.example".to_owned()]).unwrap();
        files.write_cert(&cert, &pem).unwrap();
        files.write_crt_list([&cert]).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(files.dir()), 0o700);
        assert_eq!(mode(Path::new(cert.as_str())), 0o600);
        assert_eq!(mode(&files.default_path()), 0o600);
        let list = fs::read_to_string(files.crt_list_path()).unwrap();
        assert_eq!(
            list.lines().collect::<Vec<_>>(),
            [files.default_path().to_str().unwrap(), cert.as_str()]
        );
    }

    #[test]
    fn without_a_ca_bundle_the_default_certificate_is_installed_so_verification_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles::new(dir.path().join("certs"));
        files.ensure_default(None).unwrap();
        let dest = dir.path().join("backend-ca.pem");
        let fallback = install_backend_ca(&dest, &dir.path().join("missing.crt"), &files).unwrap();
        assert!(fallback);
        let text = fs::read_to_string(&dest).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
        assert!(!text.contains("PRIVATE"), "no key in a world-readable file");
    }

    #[test]
    fn a_pem_payload_debug_form_hides_the_key() {
        let pem = self_signed(&["a.example".to_owned()]).unwrap();
        let shown = format!("{pem:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        let cmd = Command::SetSslCert {
            cert: CertPath::new("/c/web.pem").unwrap(),
            pem,
        };
        assert!(!format!("{cmd:?}").contains("PRIVATE"));
    }

    #[test]
    fn names_that_could_escape_the_directory_are_refused() {
        let files = CertFiles::new("/c");
        for bad in ["", "default", "../x", ".hidden", "a/b", "a b"] {
            assert!(files.cert(bad).is_err(), "{bad:?}");
        }
        assert_eq!(files.cert("web_1").unwrap().as_str(), "/c/web_1.pem");
    }
}
