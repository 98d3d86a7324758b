//! What the ACME objects in Swarm are called, what their labels say, and what a listing of
//! them means (`docs/acme.md`, "One order per name across all edges"). Pure: names, labels
//! and decisions from listings and times passed in; the calls are `swarm::acme`'s.
//!
//! | object | kind | name | holds |
//! |---|---|---|---|
//! | config | `lock` | `swarm-lb.acme.lock.<digest>` ([`super::lease`]) | holder, expiry |
//! | config | `token` | `swarm-lb.acme.token.<sha-256 of the token, 32 hex>` | the key authorization |
//! | secret | `account` | `swarm-lb.acme.account.<sha-256 of the directory URL, 16 hex>` | the account's credentials (JSON) |
//! | secret | `cert` | `swarm-lb.acme.<digest>.<not-after, 8 hex>.crt` / `.key` | the chain / the key (PEM) |
//!
//! `<digest>` is the first 128 bits of SHA-256 over the sorted names joined by `,` (32 hex),
//! the lease's: every edge computes the same for the same names. Each name fits Docker's 64
//! characters and `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.

use std::collections::BTreeMap;

use crate::haproxy::acme::{KeyAuthorization, Token};
use crate::model::Host;
use crate::swarm::acme::{SwarmObject, KIND};

/// [`KIND`]'s value on lease configs.
pub const KIND_LOCK: &str = "lock";
/// [`KIND`]'s value on challenge-answer configs.
pub const KIND_TOKEN: &str = "token";
/// [`KIND`]'s value on the account secret.
pub const KIND_ACCOUNT: &str = "account";
/// [`KIND`]'s value on certificate and key secrets.
pub const KIND_CERT: &str = "cert";
/// Label on certificate secrets: the names' digest.
pub const DIGEST: &str = "com.docker.lb.acme.digest";
/// Label on certificate secrets: `crt` (the chain) or `key`.
pub const PART: &str = "com.docker.lb.acme.part";
/// Label on certificate secrets: the leaf's notBefore, unix seconds.
pub const NOT_BEFORE: &str = "com.docker.lb.acme.not_before";
/// Label on certificate secrets: the leaf's notAfter, unix seconds.
pub const NOT_AFTER: &str = "com.docker.lb.acme.not_after";
/// Label on a lease after a failed order: failures in a row for its names. The lease then
/// expires when the next attempt is due, so the backoff holds for every edge (one that takes
/// the lease over continues the count) and across restarts.
pub const FAILURES: &str = "com.docker.lb.acme.failures";
/// Label on the account secret and on certificates: the directory URL.
pub const DIRECTORY: &str = "com.docker.lb.acme.directory";
/// A challenge answer older than this (seconds) is a leftover of an edge that died mid-order:
/// any edge removes it.
pub const TOKEN_TTL_S: i64 = 600;
/// A certificate replaced by a newer one for the same names is removed this long (seconds)
/// after the newer one was stored: every edge has had it delivered and served by then (the
/// copy job takes seconds), and an edge restarting in between still finds a valid pair.
pub const SUPERSEDED_AFTER_S: i64 = 3600;

fn sha256_hex(text: &str, hex_digits: usize) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..hex_digits]
        .to_owned()
}

/// The digest of a name set (order and duplicates do not matter): 32 hex digits.
pub fn digest(hosts: &[Host]) -> String {
    let mut names: Vec<&str> = hosts.iter().map(Host::as_str).collect();
    names.sort_unstable();
    names.dedup();
    sha256_hex(&names.join(","), 32)
}

/// The config name of a challenge answer for `token`.
pub fn token_name(token: &Token) -> String {
    format!("swarm-lb.acme.token.{}", sha256_hex(token.as_str(), 32))
}

/// The labels of a challenge answer's config for an order of `hosts` (the names, for people
/// reading `docker config ls`).
pub fn token_labels(hosts: &[Host]) -> BTreeMap<String, String> {
    let mut names: Vec<&str> = hosts.iter().map(Host::as_str).collect();
    names.sort_unstable();
    names.dedup();
    BTreeMap::from([
        (KIND.to_owned(), KIND_TOKEN.to_owned()),
        (super::lease::HOSTS.to_owned(), names.join(",")),
    ])
}

/// The secret name of the account on `directory`.
pub fn account_name(directory: &str) -> String {
    format!("swarm-lb.acme.account.{}", sha256_hex(directory, 16))
}

/// The labels of the account secret.
pub fn account_labels(directory: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (KIND.to_owned(), KIND_ACCOUNT.to_owned()),
        (DIRECTORY.to_owned(), directory.to_owned()),
    ])
}

/// The two secret names of a certificate for `hosts` valid until `not_after`: (chain, key).
pub fn cert_names(hosts: &[Host], not_after: i64) -> (String, String) {
    let stem = format!("swarm-lb.acme.{}.{:08x}", digest(hosts), not_after.max(0));
    (format!("{stem}.crt"), format!("{stem}.key"))
}

/// The labels of one part (`crt` or `key`) of a certificate for `hosts` from the CA at
/// `directory` (a certificate of another directory, e.g. the staging one, is never served).
pub fn cert_labels(
    hosts: &[Host],
    part: &str,
    not_before: i64,
    not_after: i64,
    directory: &str,
) -> BTreeMap<String, String> {
    let mut names: Vec<&str> = hosts.iter().map(Host::as_str).collect();
    names.sort_unstable();
    names.dedup();
    BTreeMap::from([
        (KIND.to_owned(), KIND_CERT.to_owned()),
        (DIGEST.to_owned(), digest(hosts)),
        (PART.to_owned(), part.to_owned()),
        (NOT_BEFORE.to_owned(), not_before.to_string()),
        (NOT_AFTER.to_owned(), not_after.to_string()),
        (super::lease::HOSTS.to_owned(), names.join(",")),
        (DIRECTORY.to_owned(), directory.to_owned()),
    ])
}

/// A stored certificate: its two secrets and the leaf's validity (from their labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCert {
    pub crt: String,
    pub key: String,
    pub crt_id: String,
    pub key_id: String,
    pub not_before: i64,
    pub not_after: i64,
    /// When it was stored (the later of its two secrets' creation), unix seconds.
    pub stored: i64,
    /// The names it certifies (its label), sorted.
    pub hosts: Vec<String>,
}

/// Everything ACME in one listing of configs and secrets labelled [`KIND`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcmeView {
    /// Challenge answers every edge serves, with their configs' IDs and creation times.
    pub tokens: Vec<(Token, KeyAuthorization, String, i64)>,
    /// Lease configs by name.
    pub leases: BTreeMap<String, SwarmObject>,
    /// Complete certificates (both parts listed) by digest, oldest first.
    pub certs: BTreeMap<String, Vec<StoredCert>>,
    /// Account secret names.
    pub accounts: BTreeMap<String, String>,
}

impl AcmeView {
    /// Reads a listing, for the CA at `directory`: certificates another directory issued
    /// (the staging one, before production) are left out, as are objects whose labels or data
    /// do not parse (a config anyone can create must never be served unchecked).
    pub fn from_listing(configs: &[SwarmObject], secrets: &[SwarmObject], directory: &str) -> Self {
        let mut view = AcmeView::default();
        for c in configs {
            match c.labels.get(KIND).map(String::as_str) {
                Some(KIND_LOCK) => {
                    view.leases.insert(c.name.clone(), c.clone());
                }
                Some(KIND_TOKEN) => {
                    if let Some(answer) = c.data.as_deref().and_then(parse_answer) {
                        if token_name(&answer.0) == c.name {
                            view.tokens
                                .push((answer.0, answer.1, c.id.clone(), c.created));
                        }
                    }
                }
                _ => {}
            }
        }
        let mut parts: BTreeMap<(String, String), [Option<&SwarmObject>; 2]> = BTreeMap::new();
        for s in secrets {
            match s.labels.get(KIND).map(String::as_str) {
                Some(KIND_ACCOUNT) => {
                    view.accounts.insert(s.name.clone(), s.id.clone());
                }
                Some(KIND_CERT)
                    if s.labels.get(DIRECTORY).map(String::as_str) == Some(directory) =>
                {
                    let (Some(digest), Some(stem)) = (
                        s.labels.get(DIGEST),
                        s.name
                            .strip_suffix(".crt")
                            .or_else(|| s.name.strip_suffix(".key")),
                    ) else {
                        continue;
                    };
                    let slot = match s.labels.get(PART).map(String::as_str) {
                        Some("crt") if s.name.ends_with(".crt") => 0,
                        Some("key") if s.name.ends_with(".key") => 1,
                        _ => continue,
                    };
                    parts.entry((digest.clone(), stem.to_owned())).or_default()[slot] = Some(s);
                }
                _ => {}
            }
        }
        for ((digest, _), pair) in parts {
            let [Some(crt), Some(key)] = pair else {
                continue;
            };
            let time = |label| crt.labels.get(label).and_then(|v| v.parse::<i64>().ok());
            let (Some(not_before), Some(not_after)) = (time(NOT_BEFORE), time(NOT_AFTER)) else {
                continue;
            };
            view.certs.entry(digest).or_default().push(StoredCert {
                crt: crt.name.clone(),
                key: key.name.clone(),
                crt_id: crt.id.clone(),
                key_id: key.id.clone(),
                not_before,
                not_after,
                stored: crt.created.max(key.created),
                hosts: crt
                    .labels
                    .get(super::lease::HOSTS)
                    .map(|h| h.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
            });
        }
        for list in view.certs.values_mut() {
            list.sort_by_key(|c| (c.not_after, c.stored));
        }
        view.tokens.sort_by(|a, b| a.0.cmp(&b.0));
        view
    }

    /// The certificate to serve for the names of `digest` at `now`: the one valid longest.
    pub fn serving(&self, digest: &str, now: i64) -> Option<&StoredCert> {
        self.certs
            .get(digest)?
            .iter()
            .rev()
            .find(|c| c.not_before <= now && now < c.not_after)
    }

    /// While a certificate for `hosts` is being ordered (the service's hosts changed): the
    /// valid certificate that covers the most of them and no other name, so the hosts it
    /// certifies stay on HTTPS meanwhile. `None` when none does.
    pub fn covering_part(&self, hosts: &[Host], now: i64) -> Option<&StoredCert> {
        let wanted: std::collections::BTreeSet<&str> = hosts.iter().map(Host::as_str).collect();
        self.certs
            .values()
            .flatten()
            .filter(|c| c.not_before <= now && now < c.not_after && !c.hosts.is_empty())
            .filter(|c| c.hosts.iter().all(|h| wanted.contains(h.as_str())))
            .max_by_key(|c| (c.hosts.len(), c.not_after))
    }

    /// The certificates to remove at `now`: expired ones, and ones a newer certificate for
    /// the same names replaced more than [`SUPERSEDED_AFTER_S`] ago.
    pub fn stale_certs(&self, now: i64) -> Vec<&StoredCert> {
        let mut out = Vec::new();
        for list in self.certs.values() {
            let newest = list.last();
            for c in list {
                let expired = c.not_after <= now;
                let replaced = newest.is_some_and(|n| {
                    n.crt != c.crt && n.stored.saturating_add(SUPERSEDED_AFTER_S) <= now
                });
                if expired || replaced {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Challenge answers left by an edge that died mid-order (older than [`TOKEN_TTL_S`]):
    /// their config IDs.
    pub fn stale_tokens(&self, now: i64) -> Vec<&str> {
        self.tokens
            .iter()
            .filter(|t| t.3.saturating_add(TOKEN_TTL_S) <= now)
            .map(|t| t.2.as_str())
            .collect()
    }
}

/// A challenge answer's config data: the key authorization, `<token>.<thumbprint>` (RFC 8555
/// §8.1), from which the token is read back. `None` unless both are in RFC 8555's syntax.
pub fn parse_answer(data: &[u8]) -> Option<(Token, KeyAuthorization)> {
    let text = std::str::from_utf8(data).ok()?.trim_end();
    let (token, _) = text.split_once('.')?;
    let token = Token::new(token).ok()?;
    let key_authorization = KeyAuthorization::new(&token, text).ok()?;
    Some((token, key_authorization))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
    const DIR: &str = "https://ca.example/dir";
    const THUMB: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    fn hosts(list: &[&str]) -> Vec<Host> {
        list.iter().map(|h| Host::parse(h).unwrap()).collect()
    }

    fn object(name: &str, labels: BTreeMap<String, String>, created: i64) -> SwarmObject {
        SwarmObject {
            id: format!("id-{name}"),
            version: 1,
            name: name.into(),
            labels,
            created,
            data: None,
        }
    }

    fn is_docker_name(name: &str) -> bool {
        name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    }

    #[test]
    fn every_name_is_a_docker_name_and_the_same_on_every_edge() {
        let a = hosts(&["b.example", "a.example"]);
        let b = hosts(&["a.example", "b.example", "a.example"]);
        assert_eq!(digest(&a), digest(&b));
        assert_eq!(
            digest(&a),
            super::super::lease::lease_name(&a)[super::super::lease::LEASE_PREFIX.len()..]
        );
        let (crt, key) = cert_names(&a, 4_102_444_800);
        let token = Token::new(&"A".repeat(128)).unwrap();
        for name in [
            crt.as_str(),
            key.as_str(),
            &token_name(&token),
            &account_name("https://acme-v02.api.letsencrypt.org/directory"),
        ] {
            assert!(is_docker_name(name), "{name}");
        }
        assert!(crt.ends_with(".crt") && key.ends_with(".key"));
    }

    #[test]
    fn a_listing_gives_complete_checked_certificates_and_answers_and_nothing_forged() {
        let names = hosts(&["a.example", "b.example"]);
        let d = digest(&names);
        let pair = |not_after: i64, created: i64| {
            let (crt, key) = cert_names(&names, not_after);
            [
                object(
                    &crt,
                    cert_labels(&names, "crt", not_after - 90, not_after, DIR),
                    created,
                ),
                object(
                    &key,
                    cert_labels(&names, "key", not_after - 90, not_after, DIR),
                    created,
                ),
            ]
        };
        let mut secrets: Vec<SwarmObject> = pair(1_000, 800).into();
        secrets.extend(pair(2_000, 1_900));
        // Half a pair (the key not stored yet): never served.
        secrets.push(pair(3_000, 2_900)[0].clone());
        secrets.push(object(
            &account_name("https://ca.example/dir"),
            account_labels("https://ca.example/dir"),
            0,
        ));
        let answer = format!("{TOKEN}.{THUMB}");
        let token = Token::new(TOKEN).unwrap();
        let good = SwarmObject {
            data: Some(answer.clone().into_bytes()),
            ..object(
                &token_name(&token),
                token_labels(&hosts(&["a.example"])),
                10,
            )
        };
        // A config named for another token, and one whose data is no key authorization.
        let misnamed = SwarmObject {
            data: Some(answer.into_bytes()),
            ..object(
                "swarm-lb.acme.token.0000",
                token_labels(&hosts(&["a.example"])),
                10,
            )
        };
        let garbage = SwarmObject {
            data: Some(b"<script>".to_vec()),
            ..object(
                &token_name(&Token::new("x").unwrap()),
                token_labels(&hosts(&["a.example"])),
                10,
            )
        };
        let view = AcmeView::from_listing(&[good, misnamed, garbage], &secrets, DIR);
        assert_eq!(view.tokens.len(), 1);
        assert_eq!(view.tokens[0].1.as_str(), format!("{TOKEN}.{THUMB}"));
        assert_eq!(view.certs[&d].len(), 2);
        assert_eq!(view.accounts.len(), 1);
        // The same listing for another directory (production after staging) serves nothing.
        let other = AcmeView::from_listing(&[], &secrets, "https://other.example/dir");
        assert!(other.certs.is_empty());
        assert_eq!(view.serving(&d, 1_950).map(|c| c.not_after), Some(2_000));
        assert_eq!(
            view.serving(&d, 950).map(|c| c.not_after),
            Some(1_000),
            "the newer is not valid yet"
        );
        assert_eq!(view.serving(&d, 2_000), None, "expired at notAfter");
        assert_eq!(view.serving("other", 950), None);
        // The older pair is removed an hour after the newer one was stored, or once expired.
        assert!(view.stale_certs(950).is_empty());
        let expired: Vec<i64> = view
            .stale_certs(1_950)
            .iter()
            .map(|c| c.not_after)
            .collect();
        assert_eq!(expired, vec![1_000]);
        let stale: Vec<i64> = view
            .stale_certs(1_900 + SUPERSEDED_AFTER_S)
            .iter()
            .map(|c| c.not_after)
            .collect();
        assert_eq!(stale, vec![1_000, 2_000], "at that time both have expired");
        assert_eq!(view.stale_tokens(10 + TOKEN_TTL_S - 1).len(), 0);
        assert_eq!(view.stale_tokens(10 + TOKEN_TTL_S).len(), 1);
    }

    #[test]
    fn a_superseded_certificate_still_valid_goes_an_hour_after_its_successor_came() {
        let names = hosts(&["a.example"]);
        let (c1, k1) = cert_names(&names, 100_000);
        let (c2, k2) = cert_names(&names, 200_000);
        let secrets = [
            object(&c1, cert_labels(&names, "crt", 0, 100_000, DIR), 0),
            object(&k1, cert_labels(&names, "key", 0, 100_000, DIR), 0),
            object(
                &c2,
                cert_labels(&names, "crt", 50_000, 200_000, DIR),
                60_000,
            ),
            object(
                &k2,
                cert_labels(&names, "key", 50_000, 200_000, DIR),
                60_000,
            ),
        ];
        let view = AcmeView::from_listing(&[], &secrets, DIR);
        assert!(view.stale_certs(60_000 + SUPERSEDED_AFTER_S - 1).is_empty());
        let stale = view.stale_certs(60_000 + SUPERSEDED_AFTER_S);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].crt, c1);
    }
}
