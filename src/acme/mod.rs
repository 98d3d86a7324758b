//! ACME (RFC 8555, issue 25, `docs/acme.md`): certificates that obtain and renew themselves.
//! [`settings`] checks what `--acme*` asks for at start; [`client`] runs one order against
//! the CA; [`schedule`] says when to renew and when to retry (`ari` keeps the CA's renewal
//! information, RFC 9773); [`lease`] which edge orders. The HTTP-01 answers live in HAProxy
//! ([`crate::haproxy::acme`]); the label is [`crate::model::labels::acme`].

mod ari;
pub mod client;
pub mod lease;
pub mod schedule;
pub mod settings;
pub mod store;
pub mod worker;

pub use client::{AcmeClient, AcmeError, Challenges, Credentials, HaproxyChallenges, Issued};
pub use settings::{AcmeSettings, AcmeSettingsError, Eab, HmacKey};
