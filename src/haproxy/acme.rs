//! The HTTP-01 challenge path in HAProxy (issue 25, `docs/acme.md`): the challenge map the
//! template's fixed rules read (`{{acme_map}}` in `haproxy/base.cfg`), its entries, and the
//! typed commands that put and take them at runtime (`add map` / `del map` through the one
//! encoder: no reload on any version).
//!
//! Protocol facts (RFC 8555): the CA fetches `http://<host>/.well-known/acme-challenge/<token>`
//! on port 80 (§8.3); the token is base64url without padding (§8.3, §8.1); the body must be the
//! key authorization `<token>.<base64url(JWK thumbprint)>` (§8.1, thumbprint per RFC 7638).
//!
//! The map holds two kinds of entries, which cannot collide (a key starting `/` is no host):
//! - `/.well-known/acme-challenge/<token>` -> the key authorization: answered `200`;
//! - `<host>` -> [`ACME_HOST`]: the host's certificate is ordered by swarm-lb, so a challenge
//!   path for it with no token entry is answered `404` by HAProxy, never routed to the service.
//!   Hosts without the marker keep reaching their service on that path (a passthrough service
//!   answering its own HTTP-01).

use super::command::{Command, MapPath};
use crate::model::{Host, MapKey, MapValue};

/// The challenge map's file name, beside the hosts map (the config dir both processes share).
pub const ACME_MAP_FILE: &str = "acme.map";

/// The path prefix of an HTTP-01 request (RFC 8555 §8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The value of a host's marker entry.
pub const ACME_HOST: &str = "acme";

/// The longest token accepted, in characters. RFC 8555 §8.3 asks for at least 128 bits of
/// entropy (22 base64url characters) and sets no maximum; CAs send 43 (Let's Encrypt, Pebble).
pub const MAX_TOKEN_LEN: usize = 128;

/// The challenge map beside `hosts_map` (`/etc/haproxy/acme.map` beside
/// `/etc/haproxy/hosts.map`).
pub fn acme_map(hosts_map: &MapPath) -> MapPath {
    let dir = hosts_map
        .as_str()
        .rsplit_once('/')
        .map_or("", |(dir, _)| dir);
    // The hosts map's directory already passed MapPath's check, and the file name is ours.
    MapPath::new(&format!("{dir}/{ACME_MAP_FILE}")).unwrap_or_else(|_| hosts_map.clone())
}

/// A challenge token (RFC 8555 §8.3: base64url, no padding). Its `Debug` hides the text: a
/// token names a pending authorization and stays out of logs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(String);

/// A key authorization (RFC 8555 §8.1): `<token>.<thumbprint>`, both base64url. Its `Debug`
/// hides the text.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyAuthorization(String);

/// A token or key authorization the map cannot hold, or that breaks RFC 8555's syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("ACME token of {len} characters: {reason}")]
    BadToken { len: usize, reason: &'static str },
    #[error("ACME key authorization of {len} characters: {reason}")]
    BadKeyAuthorization { len: usize, reason: &'static str },
}

/// base64url's alphabet without padding (RFC 4648 §5), as RFC 8555 §6.1 requires.
fn is_base64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Token {
    pub fn new(raw: &str) -> Result<Self, ChallengeError> {
        let err = |reason| ChallengeError::BadToken {
            len: raw.len(),
            reason,
        };
        if raw.len() > MAX_TOKEN_LEN {
            return Err(err("longer than 128"));
        }
        if !is_base64url(raw) {
            return Err(err("not base64url (A-Z a-z 0-9 - _)"));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The request path the CA fetches.
    pub fn path(&self) -> String {
        format!("{CHALLENGE_PREFIX}{}", self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({} chars)", self.0.len())
    }
}

impl KeyAuthorization {
    /// `raw` must be `<token>.<thumbprint>` for this `token`.
    pub fn new(token: &Token, raw: &str) -> Result<Self, ChallengeError> {
        let err = |reason| ChallengeError::BadKeyAuthorization {
            len: raw.len(),
            reason,
        };
        let Some((head, thumbprint)) = raw.split_once('.') else {
            return Err(err("no '.' between token and thumbprint"));
        };
        if head != token.as_str() {
            return Err(err("does not start with its token"));
        }
        if !is_base64url(thumbprint) || thumbprint.len() > MAX_TOKEN_LEN {
            return Err(err("thumbprint not base64url"));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for KeyAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyAuthorization({} chars)", self.0.len())
    }
}

fn token_key(token: &Token) -> MapKey {
    // Base64url and the fixed prefix are all map characters.
    MapKey::parse(&token.path()).expect("a checked token makes a valid map key")
}

/// `add map <acme map> /.well-known/acme-challenge/<token> <key authorization>`: HAProxy
/// answers the CA's request for `token` with `key_authorization`.
pub fn put_token(map: &MapPath, token: &Token, key_authorization: &KeyAuthorization) -> Command {
    Command::AddMap {
        map: map.clone(),
        key: token_key(token),
        value: MapValue::acme(key_authorization.as_str()),
    }
}

/// `del map <acme map> /.well-known/acme-challenge/<token>`.
pub fn take_token(map: &MapPath, token: &Token) -> Command {
    Command::DelMap {
        map: map.clone(),
        key: token_key(token),
    }
}

fn host_key(host: &Host) -> MapKey {
    MapKey::parse(host.as_str()).expect("a host name is a valid map key")
}

/// `add map <acme map> <host> acme`: challenge paths for `host` no longer reach its service
/// (an unknown token is a 404).
pub fn mark_host(map: &MapPath, host: &Host) -> Command {
    Command::AddMap {
        map: map.clone(),
        key: host_key(host),
        value: MapValue::acme(ACME_HOST),
    }
}

/// `del map <acme map> <host>`.
pub fn unmark_host(map: &MapPath, host: &Host) -> Command {
    Command::DelMap {
        map: map.clone(),
        key: host_key(host),
    }
}

/// The challenge map file's text for `hosts` (each marked [`ACME_HOST`]) and `tokens`: one
/// `<key> <value>` line per entry, as HAProxy reads a map file. Written beside the runtime
/// edits ([`crate::haproxy::render::Files::write_acme_map`]) so that a reload, which loads the
/// file, keeps what the runtime API put.
pub fn map_text(hosts: &[Host], tokens: &[(Token, KeyAuthorization)]) -> String {
    let mut out = String::new();
    for host in hosts {
        out.push_str(host.as_str());
        out.push(' ');
        out.push_str(ACME_HOST);
        out.push('\n');
    }
    for (token, key_authorization) in tokens {
        out.push_str(CHALLENGE_PREFIX);
        out.push_str(token.as_str());
        out.push(' ');
        out.push_str(key_authorization.as_str());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::codec::encode;

    #[test]
    fn the_map_file_holds_one_line_per_host_and_token() {
        let token = Token::new(TOKEN).unwrap();
        let auth = KeyAuthorization::new(&token, &format!("{TOKEN}.{THUMB}")).unwrap();
        let host = Host::parse("a.example").unwrap();
        assert_eq!(
            map_text(&[host], &[(token, auth)]),
            format!("a.example acme\n/.well-known/acme-challenge/{TOKEN} {TOKEN}.{THUMB}\n")
        );
        assert_eq!(map_text(&[], &[]), "");
    }

    const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
    const THUMB: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    fn map() -> MapPath {
        acme_map(&MapPath::new("/etc/haproxy/hosts.map").unwrap())
    }

    #[test]
    fn the_challenge_map_sits_beside_the_hosts_map() {
        assert_eq!(map().as_str(), "/etc/haproxy/acme.map");
    }

    #[test]
    fn a_token_and_its_key_authorization_become_one_add_map_line_and_one_del_map_line() {
        let token = Token::new(TOKEN).unwrap();
        let auth = KeyAuthorization::new(&token, &format!("{TOKEN}.{THUMB}")).unwrap();
        assert_eq!(
            encode(&put_token(&map(), &token, &auth)),
            format!(
                "add map /etc/haproxy/acme.map /.well-known/acme-challenge/{TOKEN} {TOKEN}.{THUMB}"
            )
        );
        assert_eq!(
            encode(&take_token(&map(), &token)),
            format!("del map /etc/haproxy/acme.map /.well-known/acme-challenge/{TOKEN}")
        );
        let host = Host::parse("a.example").unwrap();
        assert_eq!(
            encode(&mark_host(&map(), &host)),
            "add map /etc/haproxy/acme.map a.example acme"
        );
        assert_eq!(
            encode(&unmark_host(&map(), &host)),
            "del map /etc/haproxy/acme.map a.example"
        );
    }

    #[test]
    fn tokens_and_key_authorizations_outside_rfc_8555_syntax_are_refused() {
        for bad in ["", "a b", "a;b", "a/b", "a=", "a\nb", &"a".repeat(129)] {
            assert!(Token::new(bad).is_err(), "{bad:?}");
        }
        let token = Token::new(TOKEN).unwrap();
        for bad in [
            TOKEN.to_owned(),
            format!("{TOKEN}."),
            format!("other.{THUMB}"),
            format!("{TOKEN}.{THUMB} x"),
            format!("{TOKEN}.{THUMB};del map"),
        ] {
            assert!(KeyAuthorization::new(&token, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn neither_debug_form_shows_the_text() {
        let token = Token::new(TOKEN).unwrap();
        let auth = KeyAuthorization::new(&token, &format!("{TOKEN}.{THUMB}")).unwrap();
        let shown = format!("{token:?} {auth:?}");
        assert!(!shown.contains(TOKEN) && !shown.contains(THUMB), "{shown}");
    }
}
