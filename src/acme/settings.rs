//! What `--acme*` asks for, checked once at start ([`AcmeSettings::new`]): the directory, the
//! contact, the root that signs the ACME server's HTTPS certificate, and the external account
//! binding. Every value is refused with an error naming the flag; the EAB MAC key is read from
//! a file (a flag or env value would show in `ps` and `docker inspect`) into [`HmacKey`],
//! whose `Debug` prints nothing of it.

use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Let's Encrypt's production directory, the default `--acme-directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: use it first (its rate limits are far higher).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The ACME settings swarm-lb runs with (ACME is on when these exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The directory URL (RFC 8555 §7.1.1), `https://` (§6.1: ACME runs over HTTPS only).
    pub directory: String,
    /// The account's contact, `mailto:<address>` (§7.3); none: an account without contact.
    pub contact: Option<String>,
    /// A PEM file holding the one root certificate that signs the ACME server's HTTPS
    /// certificate (a private CA, Pebble); none: the host's trust store.
    pub ca_bundle: Option<PathBuf>,
    /// External account binding (§7.3.4), for CAs that require one.
    pub eab: Option<Eab>,
}

/// An external account binding: the key identifier and MAC key the CA gave out of band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eab {
    pub kid: String,
    pub hmac: HmacKey,
}

/// The EAB MAC key, decoded (RFC 8555 §7.3.4: the CA hands it over base64url-encoded). Its
/// `Debug` prints only that it is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacKey(Vec<u8>);

impl HmacKey {
    /// The raw key bytes, for signing the binding; never for display.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

/// A refused `--acme*` value; the message names the flag. Nothing of the MAC key is in it.
#[derive(Debug, thiserror::Error)]
pub enum AcmeSettingsError {
    #[error("--acme-directory {url:?}: {reason}")]
    BadDirectory { url: String, reason: &'static str },
    #[error("--acme-email {email:?}: {reason}")]
    BadEmail { email: String, reason: &'static str },
    #[error("--acme-ca-bundle {path}: {source}")]
    CaBundleUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--acme-ca-bundle {path}: holds {count} certificates; give the one root certificate \
         that signs the ACME server's HTTPS certificate"
    )]
    CaBundleCount { path: PathBuf, count: usize },
    #[error("--acme-eab-kid and --acme-eab-hmac-file go together: {missing} is missing")]
    HalfEab { missing: &'static str },
    #[error("--acme-eab-kid {kid:?}: {reason}")]
    BadEabKid { kid: String, reason: &'static str },
    #[error("--acme-eab-hmac-file {path}: {source}")]
    HmacUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--acme-eab-hmac-file {path}: the file must hold the MAC key as the CA gave it, \
         base64url (RFC 8555, 7.3.4), {len} bytes found that are not"
    )]
    BadHmac { path: PathBuf, len: usize },
}

/// The flags as given (`cli.rs`), before checking.
#[derive(Debug, Clone, Default)]
pub struct AcmeFlags<'a> {
    pub directory: &'a str,
    pub email: Option<&'a str>,
    pub ca_bundle: Option<&'a Path>,
    pub eab_kid: Option<&'a str>,
    pub eab_hmac_file: Option<&'a Path>,
}

impl AcmeSettings {
    /// Checks `flags` and reads the files they name. Errors: see [`AcmeSettingsError`].
    pub fn new(flags: &AcmeFlags<'_>) -> Result<Self, AcmeSettingsError> {
        let directory = check_directory(flags.directory)?;
        let contact = flags
            .email
            .filter(|e| !e.is_empty())
            .map(check_email)
            .transpose()?;
        let ca_bundle = flags.ca_bundle.map(check_ca_bundle).transpose()?;
        let eab = match (flags.eab_kid.filter(|k| !k.is_empty()), flags.eab_hmac_file) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(AcmeSettingsError::HalfEab {
                    missing: "--acme-eab-hmac-file",
                })
            }
            (None, Some(_)) => {
                return Err(AcmeSettingsError::HalfEab {
                    missing: "--acme-eab-kid",
                })
            }
            (Some(kid), Some(path)) => Some(Eab {
                kid: check_kid(kid)?,
                hmac: read_hmac(path)?,
            }),
        };
        Ok(Self {
            directory,
            contact,
            ca_bundle,
            eab,
        })
    }
}

fn check_directory(url: &str) -> Result<String, AcmeSettingsError> {
    let err = |reason| AcmeSettingsError::BadDirectory {
        url: url.chars().take(200).collect(),
        reason,
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(err(
            "must be an https:// URL (RFC 8555, 6.1: ACME runs over HTTPS)",
        ));
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("must not contain whitespace"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(err("needs a host (and no user info)"));
    }
    Ok(url.to_owned())
}

fn check_email(email: &str) -> Result<String, AcmeSettingsError> {
    let err = |reason| AcmeSettingsError::BadEmail {
        email: email.chars().take(200).collect(),
        reason,
    };
    let address = email.strip_prefix("mailto:").unwrap_or(email);
    if address
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '<' | '>' | '?'))
    {
        return Err(err(
            "one address without spaces, ',', '<', '>' or '?' (RFC 8555, 7.3: one mailto URL)",
        ));
    }
    let Some((local, domain)) = address.split_once('@') else {
        return Err(err("no '@'"));
    };
    if local.is_empty() || domain.contains('@') || !domain.contains('.') || domain.ends_with('.') {
        return Err(err("expected local@domain.tld"));
    }
    Ok(format!("mailto:{address}"))
}

fn check_ca_bundle(path: &Path) -> Result<PathBuf, AcmeSettingsError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| AcmeSettingsError::CaBundleUnreadable {
            path: path.to_owned(),
            source,
        })?;
    // instant-acme trusts the first certificate of the file only: a bundle of several would
    // silently ignore the others.
    let count = text.matches("-----BEGIN CERTIFICATE-----").count();
    if count != 1 {
        return Err(AcmeSettingsError::CaBundleCount {
            path: path.to_owned(),
            count,
        });
    }
    Ok(path.to_owned())
}

fn check_kid(kid: &str) -> Result<String, AcmeSettingsError> {
    if kid.len() > 256 || !kid.chars().all(|c| c.is_ascii_graphic()) {
        return Err(AcmeSettingsError::BadEabKid {
            kid: kid.chars().take(64).collect(),
            reason: "printable ASCII without spaces, at most 256 characters",
        });
    }
    Ok(kid.to_owned())
}

fn read_hmac(path: &Path) -> Result<HmacKey, AcmeSettingsError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| AcmeSettingsError::HmacUnreadable {
            path: path.to_owned(),
            source,
        })?;
    let encoded = text.trim().trim_end_matches('=');
    let bad = || AcmeSettingsError::BadHmac {
        path: path.to_owned(),
        len: text.len(),
    };
    if encoded.is_empty() {
        return Err(bad());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map(HmacKey)
        .map_err(|_| bad())
}

/// Whether `template` holds the challenge map placeholder on a line that is not a comment:
/// without it HAProxy cannot answer HTTP-01, so `--acme` is refused at start.
pub fn template_answers_challenges(template: &str) -> bool {
    template
        .lines()
        .any(|l| !l.trim_start().starts_with('#') && l.contains(crate::haproxy::render::ACME_MAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(directory: &str) -> AcmeFlags<'_> {
        AcmeFlags {
            directory,
            ..AcmeFlags::default()
        }
    }

    #[test]
    fn the_default_directory_alone_is_a_valid_setting() {
        let s = AcmeSettings::new(&flags(LETS_ENCRYPT)).unwrap();
        assert_eq!(s.directory, LETS_ENCRYPT);
        assert_eq!((s.contact, s.ca_bundle, s.eab), (None, None, None));
    }

    #[test]
    fn a_directory_that_is_not_https_or_has_no_host_is_refused_naming_the_flag() {
        for bad in [
            "http://acme.example/dir",
            "acme.example/dir",
            "https:///dir",
            "https://user@acme.example/dir",
            "https://acme.example/d ir",
        ] {
            let e = AcmeSettings::new(&flags(bad)).unwrap_err();
            assert!(e.to_string().starts_with("--acme-directory"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_email_becomes_one_mailto_contact_and_a_bad_one_is_refused() {
        let mut f = flags(LETS_ENCRYPT);
        f.email = Some("ops@a.example");
        let s = AcmeSettings::new(&f).unwrap();
        assert_eq!(s.contact.as_deref(), Some("mailto:ops@a.example"));
        f.email = Some("mailto:ops@a.example");
        assert_eq!(
            AcmeSettings::new(&f).unwrap().contact.as_deref(),
            Some("mailto:ops@a.example")
        );
        for bad in [
            "ops",
            "@a.example",
            "ops@localhost",
            "a@b.example,c@d.example",
            "ops @a.example",
        ] {
            f.email = Some(bad);
            let e = AcmeSettings::new(&f).unwrap_err();
            assert!(e.to_string().starts_with("--acme-email"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_ca_bundle_must_be_readable_and_hold_exactly_one_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.pem");
        let two = dir.path().join("two.pem");
        let cert = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        std::fs::write(&one, cert).unwrap();
        std::fs::write(&two, format!("{cert}{cert}")).unwrap();
        let mut f = flags(LETS_ENCRYPT);
        f.ca_bundle = Some(&one);
        assert_eq!(
            AcmeSettings::new(&f).unwrap().ca_bundle.as_deref(),
            Some(one.as_path())
        );
        f.ca_bundle = Some(&two);
        assert!(matches!(
            AcmeSettings::new(&f),
            Err(AcmeSettingsError::CaBundleCount { count: 2, .. })
        ));
        let missing = dir.path().join("missing.pem");
        f.ca_bundle = Some(&missing);
        let e = AcmeSettings::new(&f).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }

    #[test]
    fn eab_needs_both_halves_and_its_mac_key_never_shows_in_debug_or_errors() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("hmac");
        // base64url of the bytes "secret-mac-key".
        let encoded = "c2VjcmV0LW1hYy1rZXk";
        std::fs::write(&key_file, format!("{encoded}\n")).unwrap();
        let mut f = flags(LETS_ENCRYPT);
        f.eab_kid = Some("kid-1");
        assert!(matches!(
            AcmeSettings::new(&f),
            Err(AcmeSettingsError::HalfEab { .. })
        ));
        f.eab_hmac_file = Some(&key_file);
        let s = AcmeSettings::new(&f).unwrap();
        let eab = s.eab.as_ref().unwrap();
        assert_eq!(eab.kid, "kid-1");
        assert_eq!(eab.hmac.expose(), b"secret-mac-key");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains(encoded) && !shown.contains("secret-mac-key"),
            "{shown}"
        );
        assert!(shown.contains("redacted"), "{shown}");

        std::fs::write(&key_file, "not base64url!\n").unwrap();
        let e = AcmeSettings::new(&f).unwrap_err().to_string();
        assert!(e.starts_with("--acme-eab-hmac-file"), "{e}");
        assert!(!e.contains("not base64url!"), "{e}");
    }

    #[test]
    fn the_shipped_template_answers_challenges_and_a_comment_does_not_count() {
        assert!(template_answers_challenges(
            crate::haproxy::render::BASE_TEMPLATE
        ));
        assert!(!template_answers_challenges("# {{acme_map}}\nfrontend x\n"));
    }
}
