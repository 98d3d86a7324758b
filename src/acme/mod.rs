//! ACME (RFC 8555, issue 25, `docs/acme.md`): certificates that obtain and renew themselves.
//! [`settings`] checks what `--acme*` asks for at start; [`client`] runs one order against
//! the CA. The HTTP-01 answers live in HAProxy
//! ([`crate::haproxy::acme`]); the label is [`crate::model::labels::acme`].

pub mod client;
pub mod settings;

pub use client::{AcmeClient, AcmeError, Challenges, Credentials, HaproxyChallenges, Issued};
pub use settings::{AcmeSettings, AcmeSettingsError, Eab, HmacKey};
