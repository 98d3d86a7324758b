//! Names that end up inside HAProxy config or Runtime API commands. Each newtype can only be
//! built through a check, so a value that would smuggle syntax (spaces, `;`, `#`, newlines,
//! quotes, backslashes) never reaches the encoder or the renderer.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty")]
    Empty,
    #[error("longer than {max} characters")]
    TooLong { max: usize },
    #[error("character {ch:?} is not allowed (allowed: {allowed})")]
    BadChar { ch: char, allowed: &'static str },
    #[error("must start with a letter or digit")]
    BadStart,
    #[error("host label {label:?} is empty, too long or starts/ends with '-'")]
    BadHostLabel { label: String },
}

fn check(
    s: &str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.chars().count() > max {
        return Err(NameError::TooLong { max });
    }
    if let Some(ch) = s.chars().find(|c| !ok(*c)) {
        return Err(NameError::BadChar { ch, allowed });
    }
    Ok(())
}

/// A HAProxy backend name. Swarm service names (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 63) are
/// valid HAProxy identifiers; names the driver keeps for itself start with `_`, which a Swarm
/// service name cannot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendName(String);

const IDENT_CHARS: &str = "letters, digits, '-', '_', '.'";
fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

impl BackendName {
    /// A backend named after a Swarm service.
    pub fn for_service(name: &str) -> Result<Self, NameError> {
        check(name, 63, IDENT_CHARS, ident_char)?;
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(NameError::BadStart);
        }
        Ok(Self(name.to_owned()))
    }
    /// A backend of the driver's own (`_` prefix, cannot clash with a service).
    pub fn internal(suffix: &str) -> Result<Self, NameError> {
        let name = format!("_{suffix}");
        check(&name, 64, IDENT_CHARS, ident_char)?;
        Ok(Self(name))
    }
    /// Any identifier HAProxy reported (parsers use this; it still refuses syntax characters).
    pub fn parse(name: &str) -> Result<Self, NameError> {
        check(name, 127, IDENT_CHARS, |c| ident_char(c) || c == ':')?;
        Ok(Self(name.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_internal(&self) -> bool {
        self.0.starts_with('_')
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A server name inside a backend: slots `s1..sN`, or `vip`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerName(String);

impl ServerName {
    pub const VIP: &'static str = "vip";
    pub fn slot(n: usize) -> Self {
        Self(format!("s{n}"))
    }
    pub fn vip() -> Self {
        Self(Self::VIP.to_owned())
    }
    pub fn parse(name: &str) -> Result<Self, NameError> {
        check(name, 127, IDENT_CHARS, |c| ident_char(c) || c == ':')?;
        Ok(Self(name.to_owned()))
    }
    /// The slot number when this is a slot name (`s7` -> 7).
    pub fn slot_index(&self) -> Option<usize> {
        let digits = self.0.strip_prefix('s')?;
        // Exactly the form `slot(n)` writes: digits only (no sign), no leading zero.
        if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host name as matched against the lower-cased `Host` header (port stripped): RFC 1123
/// labels of `[a-z0-9-]`, dot separated, at most 253 characters. Upper case is folded, and one
/// trailing dot (an absolute name, RFC 1034 section 3.1: `a.example.` is `a.example`) is
/// dropped; the frontend drops it from the `Host` header the same way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Host(String);

/// The hosts map key of the service that takes every request whose host no service claims
/// (`com.docker.lb.default_backend=true`). Not a host name (a label cannot start with `-`),
/// so it never collides with one; the frontend looks it up when the host is not found.
pub const CATCH_ALL: &str = "-default-";

impl Host {
    /// The [`CATCH_ALL`] key.
    pub fn catch_all() -> Self {
        Self(CATCH_ALL.to_owned())
    }
    pub fn is_catch_all(&self) -> bool {
        self.0 == CATCH_ALL
    }

    /// Errors: empty, longer than 253, a character outside `[A-Za-z0-9.-]`, or a label that
    /// is empty (`a..b`, `.`, `a..` with two trailing dots), longer than 63 or starts or
    /// ends with `-`.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let absolute = raw.strip_suffix('.').filter(|rest| !rest.is_empty());
        let host = absolute.unwrap_or(raw).to_ascii_lowercase();
        check(&host, 253, "letters, digits, '-', '.'", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.')
        })?;
        for label in host.split('.') {
            if label.is_empty()
                || label.len() > 63
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return Err(NameError::BadHostLabel {
                    label: label.to_owned(),
                });
            }
        }
        Ok(Self(host))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_with_syntax_characters_are_refused() {
        for bad in ["a b", "a;b", "a#b", "a\nb", "", "-a", "a\"b", "a\\b", "a/b"] {
            assert!(BackendName::for_service(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            BackendName::for_service("web_1.v2-x").unwrap().as_str(),
            "web_1.v2-x"
        );
    }

    #[test]
    fn internal_backends_cannot_clash_with_services() {
        let b = BackendName::internal("default").unwrap();
        assert!(b.is_internal());
        assert!(BackendName::for_service(b.as_str()).is_err());
    }

    #[test]
    fn slot_names_round_trip_their_index() {
        assert_eq!(ServerName::slot(12).slot_index(), Some(12));
        assert_eq!(ServerName::vip().slot_index(), None);
        assert_eq!(ServerName::parse("s01").unwrap().slot_index(), None);
    }

    #[test]
    fn hosts_are_folded_and_checked_label_by_label() {
        assert_eq!(
            Host::parse("App.Example.COM").unwrap().as_str(),
            "app.example.com"
        );
        for bad in [
            "a..b", "-a.b", "a-.b", "a b", "a;b", "a#b", "a\nb", "a:80", "*.a", "",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_absolute_host_name_with_one_trailing_dot_is_the_same_host() {
        assert_eq!(
            Host::parse("A.Example.test.").unwrap().as_str(),
            "a.example.test"
        );
        assert_eq!(Host::parse("localhost.").unwrap().as_str(), "localhost");
        for bad in [".", "..", "a.example.test..", ".a.example"] {
            assert!(Host::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
