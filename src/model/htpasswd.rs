//! An htpasswd file, as `com.docker.lb.auth_basic` names it (issue 23; read by
//! `reconcile/auth.rs` from the secret the copy job delivers): parsed and checked before any
//! of it reaches HAProxy's config. Pure: the caller reads the file.
//!
//! HAProxy checks a `userlist` password with the system's crypt(3) (configuration.txt, 3.4
//! "Userlists"). Measured on Debian's 2.6.12 and 3.4.7 with files from Debian's `htpasswd`
//! (apache2-utils): bcrypt (`-B`, `$2y$`) and sha-512-crypt (`-5`, `$6$`) lines authenticate;
//! the MD5 `$apr1$` lines `htpasswd` writes by default never match (401, no warning), so
//! they are refused here by name. sha-256-crypt (`$5$`, `htpasswd -2`) is crypt(3)'s too.
//!
//! Nothing of a hash appears in an error: lines are named by number and user.

use std::fmt;

/// The hash schemes HAProxy can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    /// `$2y$`, `$2b$`, `$2a$`: bcrypt. Costly by design: HAProxy 3.4 warns at load that a
    /// cost-5 hash takes about 45 ms to check, and it checks on every request.
    Bcrypt,
    /// `$6$`: sha-512-crypt.
    Sha512Crypt,
    /// `$5$`: sha-256-crypt.
    Sha256Crypt,
}

/// One `user:hash` line.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub user: String,
    pub scheme: Scheme,
    hash: String,
}

impl Entry {
    /// The hash, for the `user <name> password <hash>` line of a userlist only.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

impl fmt::Debug for Entry {
    /// The hash is left out: a debug print must not leak it to a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("user", &self.user)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// Why a file is not an htpasswd file HAProxy can check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HtpasswdError {
    #[error("no user: an htpasswd file holds `user:hash` lines (htpasswd -B or -5)")]
    Empty,
    #[error("line {line}: not a `user:hash` line")]
    NotALine { line: usize },
    #[error(
        "line {line} (user {user:?}): {scheme} hashes cannot be checked by HAProxy; write the \
         file with `htpasswd -B` (bcrypt) or `htpasswd -5` (sha-512-crypt)"
    )]
    Unsupported {
        line: usize,
        user: String,
        scheme: &'static str,
    },
    #[error(
        "line {line}: user names are 1-64 letters, digits, '.', '_', '-' or '@' (what a \
         userlist line can hold)"
    )]
    BadUser { line: usize },
    #[error("line {line} (user {user:?}): the hash is malformed")]
    BadHash { line: usize, user: String },
    #[error("line {line}: user {user:?} is listed twice")]
    Duplicate { line: usize, user: String },
}

/// Most users one file may hold (each is a config line, and a bcrypt check per request).
pub const USERS_MAX: usize = 1000;

/// Reads an htpasswd file: `user:hash` per line; blank lines and `#` comments skipped; CRLF
/// endings taken. Every user once, every hash a scheme of [`Scheme`].
pub fn parse(text: &str) -> Result<Vec<Entry>, HtpasswdError> {
    let mut out: Vec<Entry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let (user, hash) = raw
            .split_once(':')
            .ok_or(HtpasswdError::NotALine { line })?;
        let user_ok = !user.is_empty()
            && user.len() <= 64
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if !user_ok {
            return Err(HtpasswdError::BadUser { line });
        }
        let user = user.to_owned();
        let scheme = scheme(hash).map_err(|scheme| HtpasswdError::Unsupported {
            line,
            user: user.clone(),
            scheme,
        })?;
        // crypt(3)'s alphabet and `$`: nothing that could end or change a config word.
        let hash_ok = hash.len() <= 256
            && hash
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '$' | '.' | '/' | '='));
        if !hash_ok {
            return Err(HtpasswdError::BadHash { line, user });
        }
        if out.iter().any(|e| e.user == user) {
            return Err(HtpasswdError::Duplicate { line, user });
        }
        out.push(Entry {
            user,
            scheme,
            hash: hash.to_owned(),
        });
        if out.len() > USERS_MAX {
            return Err(HtpasswdError::NotALine { line });
        }
    }
    if out.is_empty() {
        return Err(HtpasswdError::Empty);
    }
    Ok(out)
}

/// The scheme of `hash`, or the name of one HAProxy cannot check.
fn scheme(hash: &str) -> Result<Scheme, &'static str> {
    let field = |prefix: &str| {
        hash.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty())
    };
    if ["$2y$", "$2b$", "$2a$"].iter().any(|p| field(p)) {
        Ok(Scheme::Bcrypt)
    } else if field("$6$") {
        Ok(Scheme::Sha512Crypt)
    } else if field("$5$") {
        Ok(Scheme::Sha256Crypt)
    } else if hash.starts_with("$apr1$") {
        Err("MD5 ($apr1$, htpasswd's default)")
    } else if hash.starts_with("{SHA}") {
        Err("SHA-1 ({SHA}, htpasswd -s)")
    } else if hash.starts_with('$') {
        Err("this")
    } else {
        Err("plain-text or DES-crypt")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shapes of what `htpasswd -B` / `-5` write (not real passwords' hashes).
    const BCRYPT: &str = "$2y$05$abcdefghijklmnopqrstuuJjX9o5m3wE3Vr2mN0m4mJ9gqH0lR1W6";
    const SHA512: &str = "$6$saltsalt$AbCdEfGh./0123456789";

    #[test]
    fn bcrypt_and_sha_crypt_lines_are_read_with_comments_blank_lines_and_crlf() {
        let text = format!("# users\r\nalice:{BCRYPT}\r\n\r\nbob:{SHA512}\n");
        let entries = parse(&text).expect("file");
        let users: Vec<(&str, Scheme)> = entries
            .iter()
            .map(|e| (e.user.as_str(), e.scheme))
            .collect();
        assert_eq!(
            users,
            [("alice", Scheme::Bcrypt), ("bob", Scheme::Sha512Crypt)]
        );
        assert_eq!(entries[0].hash(), BCRYPT);
    }

    #[test]
    fn hashes_haproxy_cannot_check_are_refused_by_name_without_the_hash() {
        for (line, scheme) in [
            ("carol:$apr1$U9rvXddp$abc", "MD5"),
            ("carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("carol:secret", "plain-text"),
            ("carol:$1$abc$def", "this"),
        ] {
            let err = parse(line).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(scheme), "{line}: {text}");
            assert!(text.contains("htpasswd -B"), "{text}");
            let hash = line.split_once(':').unwrap().1;
            assert!(!text.contains(hash), "the hash leaked: {text}");
        }
    }

    #[test]
    fn malformed_files_are_refused_naming_the_line() {
        assert_eq!(parse(""), Err(HtpasswdError::Empty));
        assert_eq!(parse("# only\n\n"), Err(HtpasswdError::Empty));
        assert_eq!(parse("no colon"), Err(HtpasswdError::NotALine { line: 1 }));
        assert_eq!(
            parse(&format!("a b:{BCRYPT}")),
            Err(HtpasswdError::BadUser { line: 1 })
        );
        assert!(matches!(
            parse("a:$6$x$y z"),
            Err(HtpasswdError::BadHash { line: 1, .. })
        ));
        assert!(matches!(
            parse(&format!("a:{BCRYPT}\na:{SHA512}")),
            Err(HtpasswdError::Duplicate { line: 2, .. })
        ));
    }

    #[test]
    fn a_debug_print_shows_no_hash() {
        let entries = parse(&format!("alice:{BCRYPT}")).expect("file");
        let shown = format!("{entries:?}");
        assert!(!shown.contains(BCRYPT), "{shown}");
        assert!(shown.contains("alice"));
    }
}
