//! Checks a certificate/key pair named by `com.docker.lb.ssl_cert`/`ssl_key` before anything
//! is sent to HAProxy: the key is the certificate's, the certificate is valid now, and it
//! covers each of the service's hosts. Pure: the time is passed in.
//!
//! Parsing is x509-parser's (the Rusticata X.509 parser, no OpenSSL). The key is matched by its
//! public half: a PKCS#8 key (`PRIVATE KEY`, OpenSSL 3's default) through rcgen/ring, which
//! derive the SubjectPublicKeyInfo; a PKCS#1 RSA key (`RSA PRIVATE KEY`) by its modulus and
//! exponent; a SEC1 EC key (`EC PRIVATE KEY`) by the public point it carries. An encrypted key
//! is refused (HAProxy could not read it either without a passphrase).

use x509_parser::pem::Pem as X509Pem;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::Host;

/// What an accepted pair is, for logs and the status view (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The leaf's serial, hex as `openssl x509 -serial` prints it.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// DNS names (subject alternative names, else the common name).
    pub names: Vec<String>,
}

/// Why a pair is refused; its `Display` is the reason an error line gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertProblem {
    #[error("no PEM certificate in the secret")]
    NoCertificate,
    #[error("the certificate does not parse: {0}")]
    BadCertificate(String),
    #[error("no PEM private key in the secret")]
    NoKey,
    #[error("the private key is encrypted; give it unencrypted (the secret store protects it)")]
    EncryptedKey,
    #[error("the private key does not parse ({format})")]
    BadKey { format: &'static str },
    #[error("the key is not the certificate's key (their public keys differ)")]
    KeyMismatch,
    #[error("the certificate expired (not after {not_after}, unix seconds)")]
    Expired { not_after: i64 },
    #[error("the certificate is not valid yet (not before {not_before}, unix seconds)")]
    NotYetValid { not_before: i64 },
    #[error("the certificate does not cover host {host} (its names: {names})")]
    HostNotCovered { host: String, names: String },
}

/// The PEM blocks of `text`, in order: (label, DER).
fn blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    X509Pem::iter_from_buffer(text.as_bytes())
        .filter_map(Result::ok)
        .map(|p| (p.label, p.contents))
        .collect()
}

/// Checks `cert_pem` (leaf first, then any intermediates) against `key_pem` and `hosts` at
/// `now` (unix seconds): [`check_pair`], then [`valid_at`]. The catch-all host (default
/// backend) needs no name.
pub fn check(
    cert_pem: &str,
    key_pem: &str,
    hosts: &[Host],
    now: i64,
) -> Result<CertInfo, CertProblem> {
    let info = check_pair(cert_pem, key_pem, hosts)?;
    valid_at(&info, now)?;
    Ok(info)
}

/// Whether a checked certificate is valid at `now` (unix seconds): `Expired` after its
/// notAfter, `NotYetValid` before its notBefore.
pub fn valid_at(info: &CertInfo, now: i64) -> Result<(), CertProblem> {
    if now > info.not_after {
        return Err(CertProblem::Expired {
            not_after: info.not_after,
        });
    }
    if now < info.not_before {
        return Err(CertProblem::NotYetValid {
            not_before: info.not_before,
        });
    }
    Ok(())
}

/// Everything [`check`] checks but the clock: the PEM blocks, the key against the
/// certificate, and the hosts against its names; the validity period is returned, for
/// [`valid_at`]. What a caller may keep while the files do not change.
pub fn check_pair(cert_pem: &str, key_pem: &str, hosts: &[Host]) -> Result<CertInfo, CertProblem> {
    let certs = blocks(cert_pem);
    let Some((_, leaf_der)) = certs.iter().find(|(label, _)| label == "CERTIFICATE") else {
        return Err(CertProblem::NoCertificate);
    };
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| CertProblem::BadCertificate(e.to_string()))?;
    // A secret may hold the key alone or the pair; take the first key block.
    let keys = blocks(key_pem);
    let Some((label, key_der)) = keys
        .iter()
        .find(|(label, _)| label.ends_with("PRIVATE KEY"))
    else {
        return Err(CertProblem::NoKey);
    };
    if label.contains("ENCRYPTED") {
        return Err(CertProblem::EncryptedKey);
    }
    if !key_matches(label, key_der, &leaf)? {
        return Err(CertProblem::KeyMismatch);
    }
    let validity = leaf.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let names = dns_names(&leaf);
    for host in hosts.iter().filter(|h| !h.is_catch_all()) {
        if !names.iter().any(|n| covers(n, host.as_str())) {
            return Err(CertProblem::HostNotCovered {
                host: host.to_string(),
                names: if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                },
            });
        }
    }
    Ok(CertInfo {
        serial: leaf.raw_serial_as_string().replace(':', "").to_uppercase(),
        not_before,
        not_after,
        names,
    })
}

/// The DNS subject alternative names, else the common names (what HAProxy matches SNI with).
fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = cert
        .extensions()
        .iter()
        .filter_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => Some(san),
            _ => None,
        })
        .flat_map(|san| san.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    names
}

/// Whether certificate name `name` covers `host` (RFC 6125: a `*.` wildcard covers exactly
/// one leftmost label).
fn covers(name: &str, host: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => name == host,
    }
}

/// Whether the private key `der` (PEM label `label`) is the public key of `cert`.
fn key_matches(label: &str, der: &[u8], cert: &X509Certificate<'_>) -> Result<bool, CertProblem> {
    use rcgen::PublicKeyData as _;
    let spki = cert.public_key();
    match label {
        "PRIVATE KEY" => {
            // `&[u8]` is taken as PKCS#8 DER.
            let pair = rcgen::KeyPair::try_from(der)
                .map_err(|_| CertProblem::BadKey { format: "PKCS#8" })?;
            Ok(pair.subject_public_key_info() == spki.raw)
        }
        "RSA PRIVATE KEY" => {
            // RSAPrivateKey ::= SEQUENCE { version, modulus, publicExponent, ... } (RFC 8017)
            let bad = CertProblem::BadKey { format: "PKCS#1" };
            let seq = der_value(der, 0x30).ok_or(bad.clone())?;
            let (_, rest) = der_tlv(seq, 0x02).ok_or(bad.clone())?;
            let (modulus, rest) = der_tlv(rest, 0x02).ok_or(bad.clone())?;
            let (exponent, _) = der_tlv(rest, 0x02).ok_or(bad)?;
            Ok(match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => {
                    unsigned(rsa.modulus) == unsigned(modulus)
                        && unsigned(rsa.exponent) == unsigned(exponent)
                }
                _ => false,
            })
        }
        "EC PRIVATE KEY" => {
            // ECPrivateKey ::= SEQUENCE { version, privateKey, [0] parameters OPTIONAL,
            //   [1] publicKey BIT STRING OPTIONAL } (RFC 5915)
            let bad = CertProblem::BadKey { format: "SEC1" };
            let mut rest = der_value(der, 0x30).ok_or(bad.clone())?;
            let mut point = None;
            while !rest.is_empty() {
                let tag = rest[0];
                let (value, next) = der_tlv(rest, tag).ok_or(bad.clone())?;
                if tag == 0xa1 {
                    let (bits, _) = der_tlv(value, 0x03).ok_or(bad.clone())?;
                    point = bits.get(1..);
                }
                rest = next;
            }
            let point = point.ok_or(CertProblem::BadKey {
                format: "SEC1 without its public key",
            })?;
            Ok(match spki.parsed() {
                Ok(PublicKey::EC(ec)) => ec.data() == point,
                _ => false,
            })
        }
        _ => Err(CertProblem::BadKey {
            format: "unknown PEM label",
        }),
    }
}

/// A big-endian integer without leading zero bytes.
fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The value of the DER element at the start of `der` if its tag is `tag`.
fn der_value(der: &[u8], tag: u8) -> Option<&[u8]> {
    der_tlv(der, tag).map(|(value, _)| value)
}

/// `(value, rest)` of the DER element at the start of `der`, if its tag is `tag`.
fn der_tlv(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = der.split_first()?;
    if first != tag {
        return None;
    }
    let (&len0, mut rest) = rest.split_first()?;
    let len = if len0 < 0x80 {
        usize::from(len0)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const NOW: i64 = 1_800_000_000;

    fn host(h: &str) -> Host {
        Host::parse(h).unwrap()
    }

    /// A pair made by rcgen for `names`, valid from 1975 to 4096 (rcgen's default).
    fn pair(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_current_pair_covering_every_host_is_accepted() {
        let (cert, key) = pair(&["a.example", "*.b.example"]);
        let info = check(&cert, &key, &[host("a.example"), host("x.b.example")], NOW).unwrap();
        assert_eq!(info.names, ["a.example", "*.b.example"]);
        assert!(!info.serial.is_empty());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (cert, _) = pair(&["a.example"]);
        let (_, other) = pair(&["a.example"]);
        assert_eq!(
            check(&cert, &other, &[host("a.example")], NOW),
            Err(CertProblem::KeyMismatch)
        );
    }

    #[test]
    fn an_expired_or_future_certificate_is_refused() {
        let (cert, key) = pair(&["a.example"]);
        assert!(matches!(
            check(&cert, &key, &[], 70_000_000_000_000),
            Err(CertProblem::Expired { .. })
        ));
        assert!(matches!(
            check(&cert, &key, &[], 0),
            Err(CertProblem::NotYetValid { .. })
        ));
    }

    #[test]
    fn a_host_outside_the_names_is_refused_naming_it_and_wildcards_cover_one_label() {
        let (cert, key) = pair(&["*.b.example"]);
        for bad in ["b.example", "x.y.b.example", "a.example"] {
            assert_eq!(
                check(&cert, &key, &[host(bad)], NOW),
                Err(CertProblem::HostNotCovered {
                    host: bad.to_owned(),
                    names: "*.b.example".to_owned()
                }),
                "{bad}"
            );
        }
        assert!(check(&cert, &key, &[Host::catch_all()], NOW).is_ok());
    }

    #[test]
    fn garbage_and_encrypted_keys_are_refused_with_their_reason() {
        let (cert, key) = pair(&["a.example"]);
        assert_eq!(
            check("nonsense", &key, &[], NOW),
            Err(CertProblem::NoCertificate)
        );
        assert_eq!(check(&cert, "nonsense", &[], NOW), Err(CertProblem::NoKey));
        let encrypted = key.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY");
        assert_eq!(
            check(&cert, &encrypted, &[], NOW),
            Err(CertProblem::EncryptedKey)
        );
        let truncated = "-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(
            check(&cert, truncated, &[], NOW),
            Err(CertProblem::BadKey { .. })
        ));
    }

    /// OpenSSL's traditional key formats (PKCS#1 RSA, SEC1 EC), matched and mismatched.
    #[test]
    fn openssl_pkcs1_and_sec1_keys_are_matched_by_their_public_half() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &str| {
            let ok = Command::new("sh")
                .current_dir(dir.path())
                .args(["-c", args])
                .status()
                .expect("sh")
                .success();
            assert!(ok, "openssl is needed (apt-get install openssl): {args}");
        };
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        run("openssl genrsa -traditional -out rsa.key 2048 2>/dev/null");
        run("openssl req -x509 -key rsa.key -out rsa.crt -days 3 -subj /CN=a.example 2>/dev/null");
        run("openssl ecparam -name prime256v1 -genkey -noout -out ec.key 2>/dev/null");
        run("openssl req -x509 -key ec.key -out ec.crt -days 3 -subj /CN=a.example 2>/dev/null");
        assert!(read("rsa.key").contains("BEGIN RSA PRIVATE KEY"));
        assert!(read("ec.key").contains("BEGIN EC PRIVATE KEY"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let a = [host("a.example")];
        assert!(check(&read("rsa.crt"), &read("rsa.key"), &a, now).is_ok());
        assert!(check(&read("ec.crt"), &read("ec.key"), &a, now).is_ok());
        assert_eq!(
            check(&read("rsa.crt"), &read("ec.key"), &a, now),
            Err(CertProblem::KeyMismatch)
        );
        assert_eq!(
            check(&read("ec.crt"), &read("rsa.key"), &a, now),
            Err(CertProblem::KeyMismatch)
        );
    }
}
