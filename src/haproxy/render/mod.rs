//! Config and map files from a [`ProxyState`](super::ProxyState): the base template
//! (operator-tunable, under `haproxy/`) plus one generated backend per service, and the hosts
//! map. One job per file: `settings` (what rendering takes, checked once at start), `config`
//! (the config and map text, with the [`Sections`] cache that formats only the backends that
//! changed), `read_back` (what a config this module rendered says: named defaults, backend
//! options and failure limits, whether it follows the template) and `files` ([`Files`]:
//! written atomically with their fsyncs, the last good copy kept for rollback after a failed
//! reload). Everything is re-exported here: callers name `render::config`, `render::Files`,
//! never a submodule.
//!
//! Invariant: the rendered config, loaded by a fresh worker, holds the same servers, addresses
//! and admin states as the running worker after the planner's runtime commands, so a reload
//! never changes routing by itself. The one deliberate difference: a server in `Drain` is
//! rendered `disabled` (maint). Draining only matters for connections already open, and those
//! stay on the old worker; the new worker has none to that server, so "take nothing new" is all
//! that is left of the drain, which is exactly what maint gives.

use std::path::PathBuf;

use super::command::{CertPath, MapPath};

mod config;
mod files;
#[cfg(test)]
mod fixtures;
mod read_back;
mod settings;

pub use config::{
    config, config_cached, config_for, config_keeping, defaults_for, hosts_map, Sections,
};
pub use files::{Files, FilesError};
pub use read_back::{
    backend_options, from_template, from_template_for, loads_backend_ca, named_defaults,
    template_backends,
};
pub use settings::{
    template_loads_lua, HttpsSettings, RenderSettings, SettingsError, ACME_MAP, ADMIN_SOCKET, AUTH,
    BIND, CRT_LIST, HOSTS_MAP, HTTPS_BIND, HTTPS_INTERNAL, IF_HTTPS, LUA, PROXY_PROTOCOL_SOURCES,
    SHAPING, SHAPING_RESPONSES, TLS_PROFILE, TRUSTED_PROXIES,
};

/// The base template shipped in the repository (`haproxy/base.cfg`).
pub const BASE_TEMPLATE: &str = include_str!("../../../haproxy/base.cfg");

/// A full-line comment: placeholders there are documentation, left as they are.
fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// The named defaults section that loads the backend CA bundle (see
/// `config::render_named_defaults`); not a [`DefaultsName`](super::DefaultsName) (no
/// backend is created from it).
pub const BACKEND_CA_DEFAULTS: &str = "swarm-lb.backend-ca";

/// The CA bundle `ssl_backend_tls_verify=required` verifies tasks against: `backend-ca.pem`
/// beside the hosts map, in the config dir both processes share. The driver installs it at
/// start ([`super::tls::install_backend_ca`]). Not `@system-ca`: HAProxy images built
/// `FROM scratch` have no CA store, and a `ca-file` HAProxy cannot load fails the whole config.
pub fn backend_ca_path(settings: &RenderSettings) -> PathBuf {
    PathBuf::from(backend_ca(&settings.hosts_map).as_str())
}

/// [`backend_ca_path`] as HAProxy names it, beside the hosts map `map`.
pub fn backend_ca(map: &MapPath) -> CertPath {
    CertPath::beside(map, BACKEND_CA)
}

/// The file name of [`backend_ca_path`].
pub const BACKEND_CA: &str = "backend-ca.pem";

/// The template's named `defaults` section for TCP proxies.
pub const TCP_DEFAULTS: &str = "tcp_edge";

// Words both the renderer writes and the read-back reads.
const BACKEND: &str = "backend";
const COOKIE: &str = "cookie";
const DEFAULT_SERVER: &str = "default-server";
/// A backend's own connect timeout, in milliseconds (`com.docker.lb.timeout_connect` before
/// HAProxy 3.4).
const TIMEOUT_CONNECT: &str = "timeout connect";
