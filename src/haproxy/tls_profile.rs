//! `--tls-profile`: the protocols and cipher suites the HTTPS side accepts, after Mozilla's
//! server-side TLS guidelines (<https://ssl-config.mozilla.org/guidelines/6.0.json> for
//! `modern` and `intermediate`; 6.0 has no `old`, so `old` is 5.8's). Written into the
//! config's `global` section as HAProxy's `ssl-default-bind-*` keywords (configuration.txt,
//! 3.1 "Process management and security"), which every `ssl` bind inherits: the TLS bind of
//! `frontend http` is the only one.
//!
//! Left out of Mozilla's lists: the hybrid post-quantum group `X25519MLKEM768` (6.0), which
//! needs OpenSSL 3.5 where Debian 12's HAProxy links 3.0 (an unknown group fails the config),
//! and the DHE suites (5.8 intermediate and old), which need a `ssl-dh-param-file`; the ECDHE
//! suites cover the same clients. OCSP stapling and HSTS are the certificate's and the
//! service's business.

use std::fmt;
use std::str::FromStr;

/// A Mozilla configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TlsProfile {
    /// TLS 1.3 only (clients from Firefox 63, Android 10, Chrome 70, Java 11, OpenSSL 1.1.1).
    Modern,
    /// TLS 1.2 with AEAD ECDHE suites only, and TLS 1.3 (clients from Firefox 31, Android 4.4.2,
    /// Chrome 49, IE 11 on Windows 10, Java 8u161).
    #[default]
    Intermediate,
    /// TLS 1.0 to 1.3 with CBC and RSA key exchange suites too (Windows XP IE8, Java 6):
    /// only for clients that cannot do better.
    Old,
}

/// The TLS 1.3 suites of every profile.
const CIPHERSUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// `intermediate`'s TLS 1.2 suites (OpenSSL names).
const INTERMEDIATE: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
];

/// `old`'s suites beyond `intermediate`'s, in the guideline's order (OpenSSL names).
const OLD_EXTRA: &[&str] = &[
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA256",
    "AES256-SHA256",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

/// Key exchange groups, preferred first.
const CURVES: &str = "X25519:prime256v1:secp384r1";

impl TlsProfile {
    /// The lowest protocol version accepted, as HAProxy's `ssl-min-ver` writes it.
    pub fn min_version(self) -> &'static str {
        match self {
            TlsProfile::Modern => "TLSv1.3",
            TlsProfile::Intermediate => "TLSv1.2",
            TlsProfile::Old => "TLSv1.0",
        }
    }

    /// The TLS 1.2 and older suites accepted (OpenSSL names); none for `modern`.
    pub fn ciphers(self) -> Vec<&'static str> {
        match self {
            TlsProfile::Modern => Vec::new(),
            TlsProfile::Intermediate => INTERMEDIATE.to_vec(),
            TlsProfile::Old => INTERMEDIATE.iter().chain(OLD_EXTRA).copied().collect(),
        }
    }

    /// The TLS 1.3 suites accepted.
    pub fn ciphersuites(self) -> &'static [&'static str] {
        CIPHERSUITES
    }

    /// The `global` lines, without indentation: curves, suites, options. `old` lowers
    /// OpenSSL 3's security level to 0 (`@SECLEVEL=0`), without which TLS 1.0 and 1.1 and the
    /// SHA-1 suites are refused whatever the list says; the client's order is preferred
    /// except in `old` (the guidelines' `server_preferred_order`); no session tickets (their
    /// key would never rotate).
    pub fn global_lines(self) -> Vec<String> {
        let mut out = vec![format!("ssl-default-bind-curves {CURVES}")];
        let ciphers = self.ciphers();
        if !ciphers.is_empty() {
            let seclevel = match self {
                TlsProfile::Old => ":@SECLEVEL=0",
                _ => "",
            };
            out.push(format!(
                "ssl-default-bind-ciphers {}{seclevel}",
                ciphers.join(":")
            ));
        }
        out.push(format!(
            "ssl-default-bind-ciphersuites {}",
            CIPHERSUITES.join(":")
        ));
        let prefer = match self {
            TlsProfile::Old => "",
            _ => "prefer-client-ciphers ",
        };
        out.push(format!(
            "ssl-default-bind-options {prefer}ssl-min-ver {} no-tls-tickets",
            self.min_version()
        ));
        out
    }
}

impl fmt::Display for TlsProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsProfile::Modern => "modern",
            TlsProfile::Intermediate => "intermediate",
            TlsProfile::Old => "old",
        })
    }
}

/// A value that is not a profile's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a TLS profile: accepted values are modern, intermediate and old")]
pub struct NotAProfile(String);

impl FromStr for TlsProfile {
    type Err = NotAProfile;

    fn from_str(s: &str) -> Result<TlsProfile, NotAProfile> {
        match s {
            "modern" => Ok(TlsProfile::Modern),
            "intermediate" => Ok(TlsProfile::Intermediate),
            "old" => Ok(TlsProfile::Old),
            other => Err(NotAProfile(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_nonsense_is_refused() {
        for p in [
            TlsProfile::Modern,
            TlsProfile::Intermediate,
            TlsProfile::Old,
        ] {
            assert_eq!(p.to_string().parse::<TlsProfile>(), Ok(p));
        }
        assert!("Modern".parse::<TlsProfile>().is_err());
        assert_eq!(TlsProfile::default(), TlsProfile::Intermediate);
    }

    #[test]
    fn intermediate_accepts_no_cbc_suite_and_nothing_below_tls_1_2() {
        let lines = TlsProfile::Intermediate.global_lines().join("\n");
        assert!(lines.contains("ssl-min-ver TLSv1.2"), "{lines}");
        for cbc in [
            "ECDHE-ECDSA-AES128-SHA",
            "ECDHE-ECDSA-AES128-SHA256",
            "ECDHE-ECDSA-AES256-SHA",
            "ECDHE-ECDSA-AES256-SHA384",
        ] {
            assert!(!TlsProfile::Intermediate.ciphers().contains(&cbc), "{cbc}");
        }
        assert!(TlsProfile::Old
            .ciphers()
            .contains(&"ECDHE-ECDSA-AES128-SHA"));
    }

    #[test]
    fn modern_writes_no_tls_1_2_suite_list() {
        let lines = TlsProfile::Modern.global_lines();
        assert!(lines
            .iter()
            .all(|l| !l.starts_with("ssl-default-bind-ciphers ")));
        assert!(lines
            .iter()
            .any(|l| l.ends_with("ssl-min-ver TLSv1.3 no-tls-tickets")));
    }
}
