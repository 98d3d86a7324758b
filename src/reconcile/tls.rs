//! The certificates of the HTTPS bind, kept in step with the `ssl_cert`/`ssl_key` labels: each
//! wanted pair is read from the secrets directory, checked (`model::cert`), pushed through the
//! Runtime API when it differs from the file HAProxy loaded or was last sent, and mirrored to
//! that file (0600) and the crt-list; a certificate no service wants any more is removed the
//! same way. No reload, ever: a reload or restart reads the same files.
//!
//! The files are the record of what HAProxy holds (as the map files are for the maps): a pair
//! is pushed when its PEM differs from its file, and the file is written only after HAProxy
//! accepted it. A problem with one service's pair (secret missing, a check failing, HAProxy
//! refusing it) is logged once, naming service, label and reason, and leaves the others alone.
//!
//! With secrets delivery ([`super::secrets`]), each pass tells it which secrets the labels
//! name, and a pair is read only once both its secrets' current data is in the directory; until
//! then what HAProxy serves stays. A name Docker does not list, or a failed copy, is the pair's
//! error.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tracing::{error, info, warn};

use super::secrets::{DeliveryHandle, SecretStatus};
use super::stamp::FileStamp;
use crate::haproxy::command::PemError;
use crate::haproxy::tls::{self, CertFiles, CertFilesError};
use crate::haproxy::{AdminClient, CertPath, ClientError, Pem};
use crate::model::cert::{self, CertInfo};
use crate::model::labels::{LabelError, SSL_CERT};
use crate::model::Reason;
use crate::model::{Desired, WantedCert};
use crate::observe::Certificate;

/// Where the secrets' contents are read from, and the certificate files.
#[derive(Debug)]
pub struct TlsCerts {
    certs: CertFiles,
    /// One file per secret, named after it (`/run/secrets/<name>` when swarm-lb runs with the
    /// secrets mounted).
    secrets_dir: PathBuf,
    /// The problems of the last pass, by their text (logged once, when they appear).
    reported: BTreeMap<String, LabelError>,
    /// Secrets delivery into `secrets_dir` (`None`: the files are put there by other means).
    delivery: Option<DeliveryHandle>,
    /// Each served certificate's notAfter (unix seconds), by (service, certificate secret):
    /// `swarm_lb_certificate_expiry_timestamp_seconds`.
    expiries: BTreeMap<(String, String), i64>,
    /// What HAProxy serves for each service, as far as the pairs read say (the status view).
    served_certs: BTreeMap<String, Certificate>,
    /// Each service's pair as last read and checked, so that a pass reads and parses only the
    /// pairs whose files changed (issue 22: a pass costs two `stat`s per certificate).
    checked: BTreeMap<String, Checked>,
    /// Pairs read and checked so far (a test counts them).
    reads: u64,
}

/// A pair as last read: what was wanted, the files' stamps, and what checking them gave, the
/// validity period kept apart (it is compared with the clock at every pass).
#[derive(Debug)]
struct Checked {
    wanted: WantedCert,
    cert: FileStamp,
    key: FileStamp,
    /// The PEM and the checked certificate (its validity period included), or the
    /// time-independent refusal.
    outcome: Result<(Pem, CertInfo), LabelError>,
}

/// Why the HTTPS bind's files could not be prepared ([`prepare`]).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The operator's default certificate (`--default-cert`) cannot be read.
    #[error("reading --default-cert {}", path.display())]
    ReadDefault {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The operator's default certificate is not a PEM HAProxy takes.
    #[error("--default-cert {}", path.display())]
    BadDefault { path: PathBuf, source: PemError },
    /// Writing the certificate files (default certificate, crt-list, CA bundle) failed.
    #[error(transparent)]
    Files(#[from] CertFilesError),
}

/// Before HAProxy can load a config with the HTTPS bind: the default certificate in `certs`
/// (`default_cert`, the operator's PEM file, copied in; else the one there kept; else a
/// self-signed one generated, with a warning), a crt-list (kept when it exists: a restart
/// serves the certificates of the last run), and the backend CA bundle at `ca` (a copy of
/// `ca_source`; missing: a warning, and verification fails closed). An empty `default_cert`
/// path counts as none (compose passes an unset variable as an empty value).
///
/// Errors: [`PrepareError`], naming the file.
pub fn prepare(
    certs: &CertFiles,
    default_cert: Option<&Path>,
    ca: &Path,
    ca_source: &Path,
) -> Result<(), PrepareError> {
    let operator = match default_cert.filter(|p| !p.as_os_str().is_empty()) {
        Some(path) => {
            let text = fs::read_to_string(path).map_err(|source| PrepareError::ReadDefault {
                path: path.to_owned(),
                source,
            })?;
            Some(Pem::new(&text).map_err(|source| PrepareError::BadDefault {
                path: path.to_owned(),
                source,
            })?)
        }
        None => None,
    };
    if certs.ensure_default(operator.as_ref())? {
        warn!(
            path = %certs.default_path().display(),
            "no --default-cert given: generated a self-signed default certificate (served for unknown names)"
        );
    }
    if !certs.crt_list_path().exists() {
        certs.write_crt_list(std::iter::empty())?;
    }
    if tls::install_backend_ca(ca, ca_source, certs)? {
        warn!(
            source = %ca_source.display(),
            "no CA bundle: ssl_backend_tls_verify=required fails closed (no task verifies)"
        );
    }
    Ok(())
}

/// A pair, or why it cannot be read yet.
#[derive(Debug)]
enum Pair {
    /// The PEM HAProxy takes, and the certificate's notAfter (unix seconds).
    Ready(Pem, i64),
    /// A secret's copy is on its way: keep what HAProxy serves.
    Pending,
}

impl TlsCerts {
    pub fn new(certs: CertFiles, secrets_dir: impl Into<PathBuf>) -> Self {
        Self {
            certs,
            secrets_dir: secrets_dir.into(),
            reported: BTreeMap::new(),
            delivery: None,
            expiries: BTreeMap::new(),
            served_certs: BTreeMap::new(),
            checked: BTreeMap::new(),
            reads: 0,
        }
    }

    /// Read the secrets only once `delivery` has copied their current data.
    pub fn with_delivery(mut self, delivery: DeliveryHandle) -> Self {
        self.delivery = Some(delivery);
        self
    }

    /// The delivery, if any (the control loop waits on its changes).
    pub fn delivery(&self) -> Option<&DeliveryHandle> {
        self.delivery.as_ref()
    }

    /// Brings HAProxy's certificates to `desired.certs`. Returns how many were pushed or
    /// removed. A transport failure is returned (the next pass retries); per-service problems
    /// are logged.
    pub async fn apply(
        &mut self,
        admin: &mut AdminClient,
        desired: &Desired,
    ) -> Result<usize, ClientError> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if let Some(delivery) = &self.delivery {
            // The htpasswd files of basic auth too: one wanted set for both users.
            delivery.want(super::auth::wanted_secrets(desired));
        }
        self.forget_unwanted(desired);
        let Ok(list) = self.certs.crt_list() else {
            return Ok(0);
        };
        let mut problems: BTreeMap<String, LabelError> = BTreeMap::new();
        let mut problem = |e: LabelError| {
            problems.insert(e.to_string(), e);
        };
        let mut served: BTreeSet<CertPath> = BTreeSet::new();
        let mut expiries = BTreeMap::new();
        // What the status view shows: a pair not (yet) pushed leaves the one HAProxy serves.
        let mut shown: BTreeMap<String, Certificate> = BTreeMap::new();
        let mut changes = 0;
        let mut version = None;
        for (backend, wanted) in &desired.certs {
            let Ok(path) = self.certs.cert(backend.as_str()) else {
                continue;
            };
            let key = (wanted.service.clone(), wanted.secrets.cert.clone());
            let pem = match self.read_pair(wanted, now) {
                Ok(Pair::Ready(pem, not_after)) => {
                    expiries.insert(key, not_after);
                    pem
                }
                Ok(Pair::Pending) => {
                    if fs::metadata(path.as_str()).is_ok() {
                        served.insert(path);
                        // Still served: its expiry as last read.
                        if let Some(t) = self.expiries.get(&key) {
                            expiries.insert(key, *t);
                        }
                        keep_shown(&self.served_certs, &wanted.service, &mut shown);
                    }
                    continue;
                }
                Err(e) => {
                    problem(e);
                    // What HAProxy serves stays (a rotation to a bad pair keeps the old one).
                    if fs::metadata(path.as_str()).is_ok() {
                        served.insert(path);
                        keep_shown(&self.served_certs, &wanted.service, &mut shown);
                    }
                    continue;
                }
            };
            let certificate = self.certificate(wanted);
            let on_disk = fs::read_to_string(path.as_str()).ok();
            if on_disk.as_deref() == Some(format!("{}\n", pem.as_str()).as_str()) {
                served.insert(path);
                shown.extend(certificate);
                continue;
            }
            let version = match version {
                Some(v) => v,
                None => *version.insert(admin.capabilities().await?.version),
            };
            let fresh = on_disk.is_none();
            let cmds = match tls::push_commands(&list, &path, pem.clone(), fresh, version) {
                Ok(cmds) => cmds,
                Err(too_large) => {
                    problem(cert_error(wanted, too_large.to_string()));
                    keep_shown(&self.served_certs, &wanted.service, &mut shown);
                    continue;
                }
            };
            let replies = admin.execute(&cmds).await?;
            if let Some(refusal) = replies.into_iter().find_map(Result::err) {
                // An open transaction would block the next `set`: drop it.
                let abort = [crate::haproxy::Command::AbortSslCert { cert: path.clone() }];
                let _ = admin.execute(&abort).await?;
                problem(cert_error(wanted, refusal.message));
                keep_shown(&self.served_certs, &wanted.service, &mut shown);
                continue;
            }
            if let Err(e) = self.certs.write_cert(&path, &pem) {
                error!(error = %e, "writing a certificate file");
            }
            info!(
                service = %wanted.service,
                secret = %wanted.secrets.cert,
                rotated = !fresh,
                "certificate served (runtime API, no reload)"
            );
            served.insert(path);
            shown.extend(certificate);
            changes += 1;
        }
        self.expiries = expiries;
        self.served_certs = shown;
        changes += self.remove_unwanted(admin, &list, &served).await?;
        if let Err(e) = self.certs.write_crt_list(&served) {
            error!(error = %e, "writing the crt-list");
        }
        for text in problems.keys() {
            if !self.reported.contains_key(text) {
                error!(error = %text, "certificate refused");
            }
        }
        for (text, e) in &self.reported {
            if !problems.contains_key(text) {
                info!(service = %e.service(), was = %text, "certificate problem gone (the labels, the secrets or the service changed, or the service was removed)");
            }
        }
        self.reported = problems;
        Ok(changes)
    }

    /// The certificate problems of the last pass (each names its service and label): shown in
    /// `status` and `swarm_lb_label_problems` with the label problems.
    pub fn problems(&self) -> Vec<LabelError> {
        self.reported.values().cloned().collect()
    }

    /// The certificates HAProxy serves for services after the last pass (status view).
    pub fn served(&self) -> Vec<Certificate> {
        self.served_certs.values().cloned().collect()
    }

    /// What the status view says of `wanted`'s pair, read good this pass (from its check).
    fn certificate(&self, wanted: &WantedCert) -> Option<(String, Certificate)> {
        let checked = self.checked.get(&wanted.service)?;
        let (_, info) = checked.outcome.as_ref().ok()?;
        Some((
            wanted.service.clone(),
            Certificate {
                service: wanted.service.clone(),
                secret: wanted.secrets.cert.clone(),
                serial: info.serial.clone(),
                names: info.names.clone(),
                not_after: info.not_after,
            },
        ))
    }

    /// The notAfter (unix seconds) of each certificate read good at the last pass, by
    /// (service, certificate secret); an expired or bad one is a problem instead.
    pub fn expiries(&self) -> &BTreeMap<(String, String), i64> {
        &self.expiries
    }

    /// Certificates on disk that no service wants: out of HAProxy, then off disk.
    async fn remove_unwanted(
        &mut self,
        admin: &mut AdminClient,
        list: &CertPath,
        served: &BTreeSet<CertPath>,
    ) -> Result<usize, ClientError> {
        let Ok(entries) = fs::read_dir(self.certs.dir()) else {
            return Ok(0);
        };
        let default = self.certs.default_path();
        let mut removed = 0;
        for entry in entries.flatten() {
            let file = entry.path();
            if file == default || !matches!(file.extension(), Some(e) if e == "pem") {
                continue;
            }
            let Ok(path) = CertPath::new(&file.to_string_lossy()) else {
                continue;
            };
            if served.contains(&path) {
                continue;
            }
            // A refusal means HAProxy does not hold it (a file left by an older run): the
            // file goes either way.
            let _ = admin.execute(&tls::remove_commands(list, &path)).await?;
            if let Err(e) = self.certs.remove_cert(&path) {
                error!(error = %e, "removing a certificate file");
            }
            info!(file = %path, "certificate removed (runtime API, no reload)");
            removed += 1;
        }
        Ok(removed)
    }

    /// The pair `wanted` names, read and checked; the error names service, label and reason.
    fn read_pair(&mut self, wanted: &WantedCert, now: i64) -> Result<Pair, LabelError> {
        if let Some(delivery) = &self.delivery {
            for (name, label) in [
                (&wanted.secrets.cert, SSL_CERT),
                (&wanted.secrets.key, crate::model::labels::SSL_KEY),
            ] {
                let reason = match delivery.status(name) {
                    SecretStatus::Ready => continue,
                    SecretStatus::Pending => return Ok(Pair::Pending),
                    SecretStatus::Unknown => Reason::SecretUnknown,
                    SecretStatus::Failed(why) => Reason::SecretDelivery { why },
                };
                return Err(LabelError::invalid(&wanted.service, label, name, reason));
            }
        }
        let unreadable = |name: &str, label: &str, e: std::io::Error| {
            LabelError::invalid(
                &wanted.service,
                label,
                name,
                Reason::SecretUnreadable {
                    why: e.kind().to_string(),
                },
            )
        };
        let key_label = crate::model::labels::SSL_KEY;
        let (cert_path, key_path) = (
            self.secrets_dir.join(&wanted.secrets.cert),
            self.secrets_dir.join(&wanted.secrets.key),
        );
        let cert_stamp =
            FileStamp::of(&cert_path).map_err(|e| unreadable(&wanted.secrets.cert, SSL_CERT, e))?;
        let key_stamp =
            FileStamp::of(&key_path).map_err(|e| unreadable(&wanted.secrets.key, key_label, e))?;
        let same = self
            .checked
            .get(&wanted.service)
            .filter(|c| c.wanted == *wanted && c.cert == cert_stamp && c.key == key_stamp);
        let outcome = match same {
            Some(c) => c.outcome.clone(),
            None => {
                let cert_pem = fs::read_to_string(&cert_path)
                    .map_err(|e| unreadable(&wanted.secrets.cert, SSL_CERT, e))?;
                let key_pem = fs::read_to_string(&key_path)
                    .map_err(|e| unreadable(&wanted.secrets.key, key_label, e))?;
                self.reads += 1;
                let outcome = checked_pair(wanted, &cert_pem, &key_pem);
                self.checked.insert(
                    wanted.service.clone(),
                    Checked {
                        wanted: wanted.clone(),
                        cert: cert_stamp,
                        key: key_stamp,
                        outcome: outcome.clone(),
                    },
                );
                outcome
            }
        };
        let (pem, info) = outcome?;
        cert::valid_at(&info, now).map_err(|p| p.label_error(&wanted.service, &wanted.secrets))?;
        Ok(Pair::Ready(pem, info.not_after))
    }

    /// Forget the pairs of services that no longer want a certificate.
    fn forget_unwanted(&mut self, desired: &Desired) {
        let services: BTreeSet<&str> = desired.certs.values().map(|w| w.service.as_str()).collect();
        self.checked
            .retain(|service, _| services.contains(service.as_str()));
    }
}

/// The certificate the status view showed for `service` at the last pass, kept in `shown`:
/// HAProxy still serves it.
fn keep_shown(
    previous: &BTreeMap<String, Certificate>,
    service: &str,
    shown: &mut BTreeMap<String, Certificate>,
) {
    if let Some(c) = previous.get(service) {
        shown.insert(service.to_owned(), c.clone());
    }
}

/// `wanted`'s pair checked apart from the clock: its PEM and what checking found, or why not.
fn checked_pair(
    wanted: &WantedCert,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Pem, CertInfo), LabelError> {
    // The clock is the caller's (`cert::valid_at` at each pass).
    let info = cert::check_pair(cert_pem, key_pem, &wanted.hosts)
        .map_err(|p| p.label_error(&wanted.service, &wanted.secrets))?;
    let pem = Pem::new(&format!("{cert_pem}\n{key_pem}")).map_err(|e| {
        LabelError::invalid(
            &wanted.service,
            SSL_CERT,
            &wanted.secrets.cert,
            Reason::SecretUnreadable { why: e.to_string() },
        )
    })?;
    Ok((pem, info))
}

/// A pair HAProxy (or the payload limit) refused, as the line logged for it.
fn cert_error(wanted: &WantedCert, why: String) -> LabelError {
    LabelError::invalid(
        &wanted.service,
        SSL_CERT,
        &wanted.secrets.cert,
        Reason::PushRefused { why },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::CertSecrets;
    use crate::model::Host;

    fn wanted() -> WantedCert {
        WantedCert {
            service: "web".into(),
            secrets: CertSecrets {
                cert: "web.crt".into(),
                key: "web.key".into(),
            },
            hosts: vec![Host::parse("a.example").expect("host")],
        }
    }

    /// `wanted()`'s pair for `a.example`, written as the copy job writes (a new file each).
    fn write_pair(dir: &Path) {
        let pem = tls::self_signed(&["a.example".to_owned()]).expect("pair");
        let (cert, key) = pem
            .as_str()
            .split_once("-----END CERTIFICATE-----")
            .expect("cert then key");
        for (name, text) in [
            ("web.crt", format!("{cert}-----END CERTIFICATE-----\n")),
            ("web.key", key.trim_start().to_owned()),
        ] {
            let tmp = dir.join(format!("{name}.new"));
            std::fs::write(&tmp, text).expect("write");
            std::fs::rename(&tmp, dir.join(name)).expect("rename");
        }
    }

    #[test]
    fn a_pair_is_read_and_checked_again_only_when_its_files_change_but_the_clock_every_pass() {
        let dir = tempfile::tempdir().expect("tmp");
        write_pair(dir.path());
        let mut certs = TlsCerts::new(CertFiles::new(dir.path().join("certs")), dir.path());
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let not_after = match certs.read_pair(&wanted(), now) {
            Ok(Pair::Ready(_, not_after)) => not_after,
            other => panic!("{other:?}"),
        };
        for _ in 0..4 {
            assert!(matches!(
                certs.read_pair(&wanted(), now),
                Ok(Pair::Ready(..))
            ));
        }
        assert_eq!(certs.reads, 1, "five passes, one read");
        // The same files, later than their notAfter: expired, without reading them again.
        let e = certs
            .read_pair(&wanted(), not_after + 1)
            .expect_err("expired");
        assert!(e.to_string().contains("expired"), "{e}");
        assert_eq!(certs.reads, 1);
        // New secrets' data: read again.
        write_pair(dir.path());
        assert!(matches!(
            certs.read_pair(&wanted(), now),
            Ok(Pair::Ready(..))
        ));
        assert_eq!(certs.reads, 2);
        // Another host to cover is another check (the same files).
        let mut other = wanted();
        other.hosts = vec![Host::parse("b.example").expect("host")];
        let e = certs.read_pair(&other, now).expect_err("not covered");
        assert!(
            e.to_string().contains("does not cover host b.example"),
            "{e}"
        );
        assert_eq!(certs.reads, 3);
    }

    #[test]
    fn with_delivery_a_pair_waits_for_its_copies_and_a_secret_docker_lacks_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let (delivery, _rx) = DeliveryHandle::detached();
        let mut certs = TlsCerts::new(CertFiles::new(dir.path().join("certs")), dir.path())
            .with_delivery(delivery.clone());
        // Not copied yet: pending, no error (what HAProxy serves stays).
        assert!(matches!(certs.read_pair(&wanted(), 0), Ok(Pair::Pending)));
        delivery.set("web.crt", SecretStatus::Ready);
        delivery.set("web.key", SecretStatus::Unknown);
        let e = certs.read_pair(&wanted(), 0).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "service web: label com.docker.lb.ssl_key=\"web.key\": Docker lists no secret of that name (create it with `docker secret create`)"
        );
        delivery.set(
            "web.key",
            SecretStatus::Failed("copy job j failed: No such image".into()),
        );
        let e = certs.read_pair(&wanted(), 0).expect_err("refused");
        assert!(
            e.to_string()
                .contains("label com.docker.lb.ssl_key=\"web.key\""),
            "{e}"
        );
        assert!(e.to_string().contains("No such image"), "{e}");
    }
}
