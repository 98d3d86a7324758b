//! Everything that speaks to HAProxy: typed runtime [`command`]s with one encoder and the nom
//! parsers for replies ([`codec`]), the admin-socket [`client`], the [`master`] CLI (reload
//! with completion detection), the [`render`]ing of config and map files, and the certificate files of the HTTPS bind
//! ([`tls`]). [`state`] is the
//! pure model of what HAProxy holds, shared with the planner; [`capabilities`] is the one table
//! of what each HAProxy version can do.

pub mod access;
pub mod acme;
pub mod auth;
pub mod capabilities;
pub mod client;
pub mod codec;
pub mod command;
pub mod lua;
pub mod master;
pub mod render;
pub mod shaping;
pub mod state;
pub mod tls;
pub mod tls_profile;

pub use capabilities::{Capabilities, Feature};
pub use client::{AdminClient, ClientError};
pub use command::{CertPath, Command, DefaultsName, MapPath, Pem, Query, ServerKeywords};
pub use master::{Master, MasterError};
pub use state::{Admin, BackendState, ProxyState, Server};
