//! Config and map files from a [`ProxyState`]: the base template (operator-tunable, under
//! `haproxy/`) plus one generated backend per service, and the hosts map. [`Files`] writes them
//! atomically and keeps the last good copy for rollback after a failed reload.
//!
//! Invariant: the rendered config, loaded by a fresh worker, holds the same servers, addresses
//! and admin states as the running worker after the planner's runtime commands, so a reload
//! never changes routing by itself. The one deliberate difference: a server in `Drain` is
//! rendered `disabled` (maint). Draining only matters for connections already open, and those
//! stay on the old worker; the new worker has none to that server, so "take nothing new" is all
//! that is left of the drain, which is exactly what maint gives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::codec::{push_server_keywords, read_server_keywords, SSL_VERIFY_REQUIRED};
use super::command::{CertPath, DefaultsName, MapPath, ServerKeywords};
use super::state::{Admin, BackendState, ProxyState};
use crate::model::{BackendName, BackendOptions, SectionOptions, ServerOptions};

/// The base template shipped in the repository (`haproxy/base.cfg`).
pub const BASE_TEMPLATE: &str = include_str!("../../haproxy/base.cfg");

/// Replaced by the admin socket path.
pub const ADMIN_SOCKET: &str = "{{admin_socket}}";
/// A line holding it is repeated once per bind address, the placeholder replaced by it.
pub const BIND: &str = "{{bind}}";
/// Replaced by the hosts map path.
pub const HOSTS_MAP: &str = "{{hosts_map}}";
/// A line holding it is repeated once per HTTPS bind address.
pub const HTTPS_BIND: &str = "{{https_bind}}";
/// Replaced by the unix socket of the terminating TLS bind (`unix@<path>`).
pub const HTTPS_INTERNAL: &str = "{{https_internal}}";
/// At the start of a line: the line is rendered, without it, only with HTTPS.
pub const IF_HTTPS: &str = "{{if_https}}";
/// Replaced by the crt-list path (on the HTTPS bind line).
pub const CRT_LIST: &str = "{{crt_list}}";
/// A line holding it (in `global`) becomes the `--tls-profile` lines
/// ([`super::tls_profile::TlsProfile::global_lines`]), each with the line's indentation.
pub const TLS_PROFILE: &str = "{{tls_profile}}";
/// Replaced by the ACL condition true for `--trusted-proxies` sources
/// ([`super::access::trusted_condition`]).
pub const TRUSTED_PROXIES: &str = "{{trusted_proxies}}";
/// Replaced by the ACL condition true for `--trusted-proxies` `proxy:` sources.
pub const PROXY_PROTOCOL_SOURCES: &str = "{{proxy_protocol_sources}}";

/// The HTTPS side of the frontend: where it listens and the crt-list it serves
/// ([`super::tls::CertFiles`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsSettings {
    /// `bind` addresses, e.g. `:443`.
    pub binds: Vec<String>,
    /// The crt-list file; its first entry is the default certificate.
    pub crt_list: PathBuf,
    /// The unix socket where the HTTPS entry hands TLS to the terminating bind.
    pub internal: PathBuf,
    /// `--tls-profile`: the protocols and suites the TLS bind accepts.
    pub tls_profile: super::tls_profile::TlsProfile,
}

/// What the generated config needs beside the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderSettings {
    /// The base template text (global, defaults, frontend); see `haproxy/base.cfg`.
    pub template: String,
    /// `bind` lines of the HTTP frontend, e.g. `:80` or `127.0.0.1:8080`.
    pub binds: Vec<String>,
    /// The admin socket path HAProxy listens on (`stats socket ... level admin`).
    pub admin_socket: PathBuf,
    /// The hosts map file, as the frontend's `map()` names it.
    pub hosts_map: MapPath,
    /// HTTPS binds; `None`: the template's HTTPS bind lines are left out.
    pub https: Option<HttpsSettings>,
    /// `--trusted-proxies`: sources whose PROXY header and `X-Forwarded-*` are believed.
    pub trusted_proxies: Vec<crate::model::access::TrustedProxy>,
}

/// Settings that would render a config HAProxy cannot load, or one that routes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("the template has no {placeholder} placeholder outside comments")]
    MissingPlaceholder { placeholder: &'static str },
    #[error("no bind address for the HTTP frontend")]
    NoBind,
    #[error("bind address {bind:?}: {reason}")]
    BadBind { bind: String, reason: &'static str },
    #[error("admin socket path {path}: {reason}")]
    BadAdminSocket { path: PathBuf, reason: &'static str },
    #[error("HTTPS file path {path}: must be UTF-8 without spaces, quotes or '#'")]
    BadCrtList { path: PathBuf },
}

/// A full-line comment: placeholders there are documentation, left as they are.
fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Characters that would end or change a config word.
fn has_syntax(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '#' | '"' | '\'' | '\\'))
}

impl RenderSettings {
    /// Each of `placeholders` must stand on a line of the template that is not a comment.
    fn require_placeholders(&self, placeholders: &[&'static str]) -> Result<(), SettingsError> {
        for &placeholder in placeholders {
            let used = self
                .template
                .lines()
                .any(|l| !is_comment(l) && l.contains(placeholder));
            if !used {
                return Err(SettingsError::MissingPlaceholder { placeholder });
            }
        }
        Ok(())
    }

    /// Check once (at startup) what [`config`] takes on trust.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.require_placeholders(&[ADMIN_SOCKET, BIND, HOSTS_MAP])?;
        if !self.trusted_proxies.is_empty() {
            // A template without it would silently trust nobody.
            self.require_placeholders(&[TRUSTED_PROXIES, PROXY_PROTOCOL_SOURCES])?;
        }
        if self.binds.is_empty() {
            return Err(SettingsError::NoBind);
        }
        let https_binds = match &self.https {
            None => &[][..],
            Some(https) => {
                self.require_placeholders(&[HTTPS_BIND, HTTPS_INTERNAL, CRT_LIST, TLS_PROFILE])?;
                for path in [&https.crt_list, &https.internal] {
                    match path.to_str() {
                        Some(p) if !p.is_empty() && !has_syntax(p) => {}
                        _ => return Err(SettingsError::BadCrtList { path: path.clone() }),
                    }
                }
                &https.binds[..]
            }
        };
        for bind in self.binds.iter().chain(https_binds) {
            if bind.is_empty() || has_syntax(bind) {
                return Err(SettingsError::BadBind {
                    bind: bind.clone(),
                    reason: "must be one address word, without spaces, quotes or '#'",
                });
            }
        }
        match self.admin_socket.to_str() {
            None => Err(SettingsError::BadAdminSocket {
                path: self.admin_socket.clone(),
                reason: "not UTF-8",
            }),
            Some(p) if p.is_empty() || has_syntax(p) => Err(SettingsError::BadAdminSocket {
                path: self.admin_socket.clone(),
                reason: "must be a path without spaces, quotes or '#'",
            }),
            Some(_) => Ok(()),
        }
    }
}

/// The whole config text for `state`: [`config_for`] with named defaults, on every version.
/// HAProxy 2.4+ reads named defaults and `backend <b> from <defaults>` (checked without a
/// warning on 2.6.12, 3.0.11, 3.2 and 3.4.7), so one config serves all, and a config written
/// for 2.6 already has what 3.4 needs to create backends at runtime.
pub fn config(state: &ProxyState, settings: &RenderSettings) -> String {
    config_for(state, settings, true)
}

/// [`config`] that also keeps the sticky-cookie named defaults sections in `keep` (those the
/// running HAProxy loaded): a cookie name no service uses any more keeps its sections, so a
/// service taking it again later is created or changed at runtime on 3.4+, not by a reload
/// (a newcomer saw `sticky_session_cookie` y -> z -> y reload twice).
pub fn config_keeping(
    state: &ProxyState,
    settings: &RenderSettings,
    keep: &BTreeSet<DefaultsName>,
) -> String {
    render(state, settings, true, keep, &mut Sections::default())
}

/// [`config_keeping`] that formats again only the backends changed since the last render with
/// the same `sections` (at 10,000 services the config is ~20 MB, and one change touches one
/// backend). The same bytes as [`config_keeping`].
pub fn config_cached(
    state: &ProxyState,
    settings: &RenderSettings,
    keep: &BTreeSet<DefaultsName>,
    sections: &mut Sections,
) -> String {
    render(state, settings, true, keep, sections)
}

/// Backend sections as last rendered, each kept with the backend value it was rendered from:
/// a backend the state still shares ([`Arc::ptr_eq`]: nothing changed it, see
/// [`ProxyState::backends`]) is copied, not formatted. Holding the `Arc` keeps its address
/// from being reused by another value. For one [`RenderSettings`].
#[derive(Debug, Default)]
pub struct Sections {
    by_backend: HashMap<BackendName, Section>,
}

#[derive(Debug)]
struct Section {
    from: Arc<BackendState>,
    named_defaults: bool,
    text: String,
}

/// The whole config text for `state`.
///
/// `named_defaults` (HAProxy 3.4+, which creates backends at runtime from them): after the
/// template come named `defaults` sections, `swarm-lb.roundrobin` and `swarm-lb.source`
/// always, and one per sticky option set in `state` (see [`DefaultsName`]). Each repeats the
/// settings of the template's last `defaults` section (copied, not `from`: a defaults section
/// both used implicitly by the template's frontend and named by `from` draws a warning on
/// 3.4), then its balancing lines. Every backend then names its defaults explicitly
/// (`backend <b> from swarm-lb.<balance>`; the last defaults section would apply otherwise)
/// and keeps its own lines as before, so the section reads the same whether the backend was
/// created at runtime or loaded from this file.
///
/// Deterministic: the same state and settings give the same bytes (backends in name order,
/// servers in slot order, no timestamp), so an unchanged config is recognisable.
pub fn config_for(state: &ProxyState, settings: &RenderSettings, named_defaults: bool) -> String {
    render(
        state,
        settings,
        named_defaults,
        &BTreeSet::new(),
        &mut Sections::default(),
    )
}

fn render(
    state: &ProxyState,
    settings: &RenderSettings,
    named_defaults: bool,
    keep: &BTreeSet<DefaultsName>,
    sections: &mut Sections,
) -> String {
    let admin = settings.admin_socket.to_string_lossy();
    let (trusted, proxy_sources) = super::access::trusted_conditions(&settings.trusted_proxies);
    let mut out = String::with_capacity(
        settings.template.len()
            + sections
                .by_backend
                .values()
                .map(|s| s.text.len())
                .sum::<usize>()
                .max(64 * state.backends.len()),
    );
    out.push_str(
        "# Generated by swarm-lb from its base template; rewritten on every change, do not edit.\n",
    );
    for line in settings.template.lines() {
        let line = match (line.strip_prefix(IF_HTTPS), &settings.https) {
            (Some(_), None) => continue,
            (Some(rest), Some(_)) => rest,
            (None, _) => line,
        };
        if is_comment(line) {
            out.push_str(line);
            out.push('\n');
        } else if line.contains(BIND) {
            for bind in &settings.binds {
                out.push_str(&line.replace(BIND, bind));
                out.push('\n');
            }
        } else if let (Some(https), true) = (&settings.https, line.contains(TLS_PROFILE)) {
            // The placeholder's line once per profile line (its indentation kept).
            for profile_line in https.tls_profile.global_lines() {
                out.push_str(&line.replace(TLS_PROFILE, &profile_line));
                out.push('\n');
            }
        } else if let Some(https) = &settings.https {
            let crt_list = https.crt_list.to_string_lossy();
            let internal = format!("unix@{}", https.internal.to_string_lossy());
            let line = line
                .replace(ADMIN_SOCKET, &admin)
                .replace(HOSTS_MAP, settings.hosts_map.as_str())
                .replace(TRUSTED_PROXIES, &trusted)
                .replace(PROXY_PROTOCOL_SOURCES, &proxy_sources)
                .replace(CRT_LIST, &crt_list)
                .replace(HTTPS_INTERNAL, &internal);
            let binds: &[String] = match line.contains(HTTPS_BIND) {
                true => &https.binds,
                false => &[],
            };
            if binds.is_empty() {
                out.push_str(&line);
                out.push('\n');
            }
            for bind in binds {
                out.push_str(&line.replace(HTTPS_BIND, bind));
                out.push('\n');
            }
        } else {
            let line = line
                .replace(ADMIN_SOCKET, &admin)
                .replace(HOSTS_MAP, settings.hosts_map.as_str())
                .replace(TRUSTED_PROXIES, &trusted)
                .replace(PROXY_PROTOCOL_SOURCES, &proxy_sources);
            out.push_str(&line);
            out.push('\n');
        }
    }
    if named_defaults {
        render_named_defaults(&mut out, state, settings, keep);
    }
    // Internal (`_`) backends belong to the template; the state never holds one, and skipping
    // them keeps a stray one from clashing with `_default`.
    let ca_file = backend_ca(&settings.hosts_map);
    let mut rendered = 0;
    for (name, backend) in state.backends.iter().filter(|(n, _)| !n.is_internal()) {
        rendered += 1;
        match sections.by_backend.get(name) {
            Some(s) if Arc::ptr_eq(&s.from, backend) && s.named_defaults == named_defaults => {
                out.push_str(&s.text);
            }
            _ => {
                let mut text = String::with_capacity(64 + 48 * backend.servers.len());
                render_section(&mut text, name, backend, named_defaults, &ca_file);
                out.push_str(&text);
                let section = Section {
                    from: backend.clone(),
                    named_defaults,
                    text,
                };
                sections.by_backend.insert(name.clone(), section);
            }
        }
    }
    // Each backend rendered is in the cache: more entries are backends that went.
    if sections.by_backend.len() > rendered {
        sections
            .by_backend
            .retain(|name, _| state.backends.contains_key(name));
    }
    out
}

/// One backend's section: its `backend` line, options and servers, after a blank line.
fn render_section(
    out: &mut String,
    name: &BackendName,
    backend: &BackendState,
    named_defaults: bool,
    ca_file: &CertPath,
) {
    out.push('\n');
    if backend.options.passthrough && !named_defaults {
        // The template's TCP defaults (see `haproxy/base.cfg`).
        let _ = writeln!(out, "backend {name} from {TCP_DEFAULTS}");
    } else if named_defaults {
        // The backend section writes its own cookie line.
        let from = DefaultsName::for_section(SectionOptions {
            sticky_cookie: None,
            ..backend.options.section()
        });
        match from {
            Some(from) => {
                let _ = writeln!(out, "backend {name} from {}", from.as_str());
            }
            None => {
                let _ = writeln!(out, "backend {name}");
            }
        }
    } else {
        let _ = writeln!(out, "backend {name}");
    }
    render_backend(out, name, backend, ca_file);
}

/// The named defaults sections for `state` (see [`config_for`]): the balance-only ones for
/// HTTP and for passthrough (TCP), then two per sticky cookie name its backends use (one per
/// balance), in name order.
pub fn defaults_for(state: &ProxyState) -> BTreeSet<DefaultsName> {
    let mut out: BTreeSet<DefaultsName> =
        [(false, false), (true, false), (false, true), (true, true)]
            .into_iter()
            .filter_map(|(ip_hash, passthrough)| {
                DefaultsName::for_section(SectionOptions {
                    ip_hash,
                    passthrough,
                    sticky_cookie: None,
                })
            })
            .collect();
    // Both balances for each cookie name in use: turning `ip_hash` on or off for a sticky
    // service is then a new generation from 3.4, not a reload.
    for backend in state.backends.values() {
        if backend.options.sticky_cookie.is_some() {
            for ip_hash in [false, true] {
                out.extend(DefaultsName::for_section(SectionOptions {
                    ip_hash,
                    ..backend.options.section()
                }));
            }
        }
    }
    out
}

/// The non-comment lines of the template's last `defaults` section (HAProxy applies the last
/// one before a section to it), or with `name`, of the last one named so.
fn template_defaults<'a>(template: &'a str, name: Option<&str>) -> Vec<&'a str> {
    let mut body = Vec::new();
    let mut inside = false;
    for line in template.lines() {
        if line.trim().is_empty() || is_comment(line) {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            let mut words = line.split_whitespace();
            inside = words.next() == Some("defaults") && (name.is_none() || words.next() == name);
            if inside {
                body.clear();
            }
        } else if inside {
            body.push(line);
        }
    }
    body
}

fn render_named_defaults(
    out: &mut String,
    state: &ProxyState,
    settings: &RenderSettings,
    keep: &BTreeSet<DefaultsName>,
) {
    let http = template_defaults(&settings.template, None);
    let tcp = template_defaults(&settings.template, Some(TCP_DEFAULTS));
    out.push_str(
        "\n# Named defaults (HAProxy 3.4+ creates backends at runtime from them: `add backend <b> from\n\
         # <name>`): the template's defaults, then one option set each.\n",
    );
    // The balance-only sections first: the text up to them does not depend on the state (see
    // [`from_template_for`]).
    let mut all = defaults_for(state);
    all.extend(
        keep.iter()
            .filter(|d| d.section().sticky_cookie.is_some())
            .cloned(),
    );
    let (plain, sticky): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|d| d.section().sticky_cookie.is_none());
    let section = |out: &mut String, defaults: &DefaultsName| {
        let _ = writeln!(out, "defaults {}", defaults.as_str());
        let body = match defaults.section().passthrough {
            true => &tcp,
            false => &http,
        };
        for line in body {
            out.push_str(line);
            out.push('\n');
        }
        render_balance(out, defaults.section());
    };
    for defaults in &plain {
        section(out, defaults);
    }
    if settings.https.is_some() {
        // Unused by any proxy: it loads the backend CA bundle into HAProxy's CA store, where
        // `add server ... ca-file <it>` finds it (a runtime server cannot load a file:
        // `'ca-file' : unable to load <path>.`, measured on 2.6.12 and 3.4.7).
        let _ = writeln!(out, "defaults {BACKEND_CA_DEFAULTS}");
        for line in &http {
            out.push_str(line);
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "    {DEFAULT_SERVER}{SSL_VERIFY_REQUIRED}{}",
            backend_ca_path(settings).display()
        );
    }
    for defaults in &sticky {
        section(out, defaults);
    }
}

/// The named defaults section that loads the backend CA bundle (see
/// [`render_named_defaults`]); not a [`DefaultsName`] (no backend is created from it).
pub const BACKEND_CA_DEFAULTS: &str = "swarm-lb.backend-ca";

/// The names of the backends `template` declares itself (`backend <name>` lines): HAProxy
/// holds them, but they are not the driver's.
pub fn template_backends(template: &str) -> BTreeSet<&str> {
    template
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some(BACKEND), Some(name)) if !line.starts_with(char::is_whitespace) => Some(name),
                _ => None,
            }
        })
        .collect()
}

/// Whether a config [`config_for`] rendered loads the backend CA bundle for `add server`.
pub fn loads_backend_ca(config: &str) -> bool {
    let header = format!("defaults {BACKEND_CA_DEFAULTS}");
    config.lines().any(|line| line.trim_end() == header)
}

/// The balancing lines of a backend or named defaults section with `options` (the server
/// keywords go on `default-server` lines).
fn render_balance(out: &mut String, options: &SectionOptions) {
    // Both algorithms are dynamic: servers can be added at runtime (`add server`) and weights
    // change without a reload (`balance source` is, with consistent hashing).
    if options.ip_hash {
        out.push_str("    balance source\n    hash-type consistent\n");
    } else {
        out.push_str("    balance roundrobin\n");
    }
    if let Some(cookie) = &options.sticky_cookie {
        // Dynamic: each server's cookie is a hash of the key and its address, computed again
        // on `set server addr`, so slots refilled at runtime get the right cookie.
        let _ = writeln!(out, "    {COOKIE} {cookie} insert indirect nocache dynamic");
    }
}

/// The named defaults sections a config [`config_for`] rendered declares: those HAProxy
/// holds once it loaded that config.
pub fn named_defaults(config: &str) -> BTreeSet<DefaultsName> {
    config
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("defaults"), Some(name), None) if !line.starts_with(' ') => {
                    DefaultsName::parse(name)
                }
                _ => None,
            }
        })
        .collect()
}

fn render_backend(
    out: &mut String,
    name: &BackendName,
    backend: &BackendState,
    ca_file: &CertPath,
) {
    let options = &backend.options;
    if options.passthrough {
        // TLS passed through by SNI: bytes, not HTTP (health checks connect only).
        out.push_str(MODE_TCP);
    }
    render_balance(out, &options.section());
    if options.sticky_cookie.is_some() {
        // The service's name, whatever the backend's generation: a cookie stays good when the
        // service moves to a new generation (see `plan::generation`).
        let _ = writeln!(out, "    dynamic-cookie-key {}", name.service());
    }
    // Override the template's `default-server` for this backend's servers; `add server`
    // repeats the same keywords (those added at runtime inherit none).
    // TLS on a line of its own, the other keywords on one before it.
    let server = options.server();
    let tls = ServerOptions {
        backend_tls: server.backend_tls,
        ..ServerOptions::default()
    };
    let rest = ServerOptions {
        backend_tls: None,
        ..server
    };
    for part in [rest, tls] {
        if part != ServerOptions::default() {
            out.push_str("    ");
            out.push_str(DEFAULT_SERVER);
            push_server_keywords(out, &ServerKeywords::new(part, ca_file));
            out.push('\n');
        }
    }
    for server in &backend.servers {
        // SocketAddr prints IPv6 as `[addr]:port`, the form HAProxy reads.
        let _ = write!(out, "    server {} {} check", server.name, server.addr);
        match server.admin {
            Admin::Ready => {}
            // See the module doc: on a fresh worker drain and maint are the same.
            Admin::Drain | Admin::Maint => out.push_str(" disabled"),
        }
        out.push('\n');
    }
}

/// Whether `config` was rendered by [`config`] from `settings` (its template, binds and
/// paths), whatever backends it holds: the generated backends follow the template's text.
pub fn from_template(config_text: &str, settings: &RenderSettings) -> bool {
    from_template_for(config_text, settings, true)
}

/// [`from_template`] for a config rendered by [`config_for`] with `named_defaults`.
pub fn from_template_for(
    config_text: &str,
    settings: &RenderSettings,
    named_defaults: bool,
) -> bool {
    config_text.starts_with(&config_for(
        &ProxyState::default(),
        settings,
        named_defaults,
    ))
}

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

const MODE_TCP: &str = "    mode tcp\n";
/// The template's named `defaults` section for TCP proxies.
pub const TCP_DEFAULTS: &str = "tcp_edge";

const BACKEND: &str = "backend";
const COOKIE: &str = "cookie";
const DEFAULT_SERVER: &str = "default-server";

/// The balancing options of each backend in a config this module rendered (the Runtime API
/// cannot show them, so the driver learns what HAProxy loaded from the config it loaded).
/// Lines it did not write are ignored.
pub fn backend_options(config: &str) -> BTreeMap<BackendName, BackendOptions> {
    let mut out = BTreeMap::new();
    let mut current: Option<BackendName> = None;
    for line in config.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some(BACKEND), Some(name)) if !line.starts_with(' ') => {
                current = BackendName::parse(name).ok().filter(|n| !n.is_internal());
                if let Some(name) = &current {
                    out.insert(name.clone(), BackendOptions::default());
                }
            }
            (Some(first), _) if !line.starts_with(' ') && !first.starts_with('#') => {
                current = None;
            }
            (Some("mode"), Some("tcp")) => {
                if let Some(o) = current.as_ref().and_then(|n| out.get_mut(n)) {
                    o.passthrough = true;
                }
            }
            (Some("balance"), Some("source")) => {
                if let Some(o) = current.as_ref().and_then(|n| out.get_mut(n)) {
                    o.ip_hash = true;
                }
            }
            (Some(COOKIE), Some(cookie)) => {
                if let Some(o) = current.as_ref().and_then(|n| out.get_mut(n)) {
                    o.sticky_cookie = Some(cookie.to_owned());
                }
            }
            (Some(DEFAULT_SERVER), Some(_)) => {
                if let Some(o) = current.as_ref().and_then(|n| out.get_mut(n)) {
                    let mut server = o.server();
                    read_server_keywords(line, &mut server);
                    *o = BackendOptions::from_parts(o.section(), server);
                }
            }
            _ => {}
        }
    }
    out
}

/// The hosts map file text for `state`: `key value` per line, sorted by key.
pub fn hosts_map(state: &ProxyState) -> String {
    let mut out = String::new();
    for (host, backend) in &state.hosts {
        let _ = writeln!(out, "{host} {backend}");
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FilesError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The generated files on disk: `haproxy.cfg` and `hosts.map` in one directory.
///
/// Blocking I/O (with fsync): call it from `spawn_blocking` in async code.
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
}

impl Files {
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_owned(),
        }
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("haproxy.cfg")
    }
    pub fn map_path(&self) -> PathBuf {
        self.dir.join("hosts.map")
    }
    /// Where [`Files::save_good`] keeps the copy of `path`.
    pub fn good_path(path: &Path) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(".good");
        path.with_file_name(name)
    }

    /// Write the map, then the config, each atomically: a reader (HAProxy loading) sees the
    /// old file or the new one, never a mix, and a crash leaves one of the two whole.
    pub fn write(&self, state: &ProxyState, settings: &RenderSettings) -> Result<(), FilesError> {
        self.write_text(&config(state, settings), &hosts_map(state))
    }

    /// [`Files::write`] for text already rendered (by [`config`] and [`hosts_map`]).
    pub fn write_text(&self, config: &str, map: &str) -> Result<(), FilesError> {
        fs::create_dir_all(&self.dir).map_err(|source| FilesError {
            path: self.dir.clone(),
            source,
        })?;
        write_atomic(&self.map_path(), map.as_bytes())?;
        write_atomic(&self.config_path(), config.as_bytes())
    }

    /// The config and map text on disk now, in that order.
    pub fn read(&self) -> Result<(String, String), FilesError> {
        let read =
            |path: PathBuf| fs::read_to_string(&path).map_err(|source| FilesError { path, source });
        Ok((read(self.config_path())?, read(self.map_path())?))
    }

    /// Keep the files on disk as the last good ones (call after HAProxy accepted them).
    pub fn save_good(&self) -> Result<(), FilesError> {
        for path in [self.map_path(), self.config_path()] {
            copy_atomic(&path, &Self::good_path(&path))?;
        }
        Ok(())
    }

    /// Put the last good files back (after HAProxy refused the new ones), so the files on disk
    /// describe what the running worker holds again.
    pub fn restore_good(&self) -> Result<(), FilesError> {
        for path in [self.map_path(), self.config_path()] {
            copy_atomic(&Self::good_path(&path), &path)?;
        }
        Ok(())
    }
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), FilesError> {
    let bytes = fs::read(from).map_err(|source| FilesError {
        path: from.to_owned(),
        source,
    })?;
    write_atomic(to, &bytes)
}

/// Temp file in the same directory, fsync, rename over `path`, fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| FilesError { path, source }
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = fs::File::create(&tmp).map_err(err(&tmp))?;
    file.write_all(bytes).map_err(err(&tmp))?;
    file.sync_all().map_err(err(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(err(path))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::state::{Server, PLACEHOLDER};
    use crate::model::{
        BackendName, BackendTls, FailureLimit, Host, MapKey, MapValue, Mode, ServerName,
    };
    use std::net::SocketAddr;

    fn settings(dir: &Path) -> RenderSettings {
        RenderSettings {
            template: BASE_TEMPLATE.to_owned(),
            binds: vec!["127.0.0.1:18080".into(), "127.0.0.1:18081".into()],
            admin_socket: dir.join("admin.sock"),
            hosts_map: MapPath::new(&dir.join("hosts.map").to_string_lossy()).unwrap(),
            https: None,
            trusted_proxies: Vec::new(),
        }
    }

    fn server(slot: usize, addr: &str, admin: Admin) -> Server {
        Server {
            name: ServerName::slot(slot),
            addr: addr.parse::<SocketAddr>().unwrap(),
            admin,
        }
    }

    /// Slots (used, drained, free), a VIP backend and an IPv6 backend.
    fn state() -> ProxyState {
        let mut s = ProxyState::default();
        s.backends.insert(
            BackendName::for_service("web").unwrap(),
            std::sync::Arc::new(BackendState {
                options: Default::default(),
                mode: Mode::Task,
                servers: vec![
                    server(1, "10.0.1.5:8080", Admin::Ready),
                    server(2, "10.0.1.6:8080", Admin::Drain),
                    Server::free(ServerName::slot(3)),
                ],
            }),
        );
        s.backends.insert(
            BackendName::for_service("api").unwrap(),
            std::sync::Arc::new(BackendState {
                options: Default::default(),
                mode: Mode::Vip,
                servers: vec![Server {
                    name: ServerName::vip(),
                    addr: "10.0.2.2:80".parse().unwrap(),
                    admin: Admin::Ready,
                }],
            }),
        );
        s.backends.insert(
            BackendName::for_service("v6").unwrap(),
            std::sync::Arc::new(BackendState {
                options: BackendOptions {
                    ip_hash: true,
                    sticky_cookie: Some("sid".into()),
                    failure_limit: Some(FailureLimit {
                        max_fails: 3,
                        fail_timeout_ms: 2500,
                    }),
                    backend_tls: Some(BackendTls { verify: true }),
                    passthrough: false,
                },
                mode: Mode::Task,
                servers: vec![server(1, "[fd00::5]:9000", Admin::Ready)],
            }),
        );
        for (host, be) in [
            ("www.example.com", "web"),
            ("api.example.com", "api"),
            ("v6.example.com", "v6"),
        ] {
            s.hosts.insert(
                MapKey::host(&Host::parse(host).unwrap()),
                MapValue::backend(&BackendName::for_service(be).unwrap(), 0),
            );
        }
        s
    }

    #[test]
    fn backend_options_are_rendered_and_read_back_from_the_config() {
        let state = state();
        let text = config(&state, &settings(Path::new("/run/swarm-lb")));
        assert!(
            text.contains(
                "backend v6 from swarm-lb.source\n    balance source\n    hash-type consistent\n    cookie sid insert \
                 indirect nocache dynamic\n    dynamic-cookie-key v6\n    default-server observe \
                 layer7 error-limit 3 on-error mark-down rise 2 fastinter 2500ms downinter 2500ms\n    \
                 default-server ssl verify required ca-file /run/swarm-lb/backend-ca.pem\n    server s1 \
                 [fd00::5]:9000 check\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "backend web from swarm-lb.roundrobin\n    balance roundrobin\n    server s1"
        ));
        let want: BTreeMap<BackendName, BackendOptions> = state
            .backends
            .iter()
            .map(|(n, b)| (n.clone(), b.options.clone()))
            .collect();
        assert_eq!(backend_options(&text), want);
        // The template's own sections (internal backends, the frontend) are not backends of
        // the driver's.
        assert_eq!(backend_options(BASE_TEMPLATE), BTreeMap::new());
    }

    #[test]
    fn sticky_sections_haproxy_loaded_are_kept_when_no_service_uses_their_cookie_any_more() {
        let settings = settings(Path::new("/run/swarm-lb"));
        let loaded = named_defaults(&config(&state(), &settings));
        assert!(loaded
            .iter()
            .any(|d| d.as_str() == "swarm-lb.source.cookie.sid"));
        // No sticky service left: the sid sections stay, balance-only ones as always.
        let text = config_keeping(&ProxyState::default(), &settings, &loaded);
        assert_eq!(named_defaults(&text), loaded);
        assert!(from_template(&text, &settings));
    }

    #[test]
    fn named_defaults_repeat_the_templates_defaults_and_one_option_set_each() {
        let text = config(&state(), &settings(Path::new("/run/swarm-lb")));
        // The balance-only sections (HTTP and passthrough), then one per sticky option set in
        // use (v6's; its failure limit and TLS are server keywords, which `add server` carries).
        let want: Vec<String> = named_defaults(&text)
            .iter()
            .map(|d| d.as_str().to_owned())
            .collect();
        assert_eq!(
            want,
            [
                "swarm-lb.roundrobin",
                "swarm-lb.roundrobin.cookie.sid",
                "swarm-lb.source",
                "swarm-lb.source.cookie.sid",
                "swarm-lb.tcp.roundrobin",
                "swarm-lb.tcp.source",
            ]
        );
        // The passthrough sections repeat the template's TCP defaults.
        let tcp = text
            .split("\ndefaults swarm-lb.tcp.roundrobin\n")
            .nth(1)
            .and_then(|rest| rest.split("\ndefaults ").next())
            .expect("the passthrough section");
        assert!(tcp.lines().any(|l| l == "    mode tcp"), "{tcp}");
        assert!(tcp.lines().any(|l| l == "    balance roundrobin"), "{tcp}");
        let section = text
            .split("\ndefaults swarm-lb.source.cookie.sid\n")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("the sticky section");
        for line in [
            "    mode http",
            "    retries 3",
            "    default-server inter 2s fastinter 500ms downinter 2s rise 2 fall 2 observe layer4 error-limit 3 on-error mark-down",
            "    balance source",
            "    hash-type consistent",
            "    cookie sid insert indirect nocache dynamic",
        ] {
            assert!(section.lines().any(|l| l == line), "{line:?} in {section}");
        }
        assert!(!section.contains('#'), "comments are not copied: {section}");
        // The text up to the named defaults does not depend on the state.
        assert!(from_template(&text, &settings(Path::new("/run/swarm-lb"))));
        // The options of the backends read back still ignore the defaults sections.
        assert_eq!(backend_options(&text).len(), 3);
    }

    #[test]
    fn rendering_is_deterministic() {
        let dir = Path::new("/run/swarm-lb");
        let a = config(&state(), &settings(dir));
        // Built again in another insertion order: the same bytes.
        let mut other = ProxyState::default();
        for (k, v) in state().backends.into_iter().rev() {
            other.backends.insert(k, v);
        }
        other.hosts = state().hosts;
        assert_eq!(a, config(&other, &settings(dir)));
        assert_eq!(hosts_map(&state()), hosts_map(&other));
    }

    #[test]
    fn backends_list_their_servers_in_slot_order_with_drained_and_free_ones_disabled() {
        let text = config(&state(), &settings(Path::new("/run/swarm-lb")));
        let web = "backend web from swarm-lb.roundrobin\n    balance roundrobin\n    server s1 10.0.1.5:8080 check\n    server s2 10.0.1.6:8080 check disabled\n    server s3 127.0.0.1:1 check disabled\n";
        assert!(text.contains(web), "{text}");
        assert!(text
            .contains("backend api from swarm-lb.roundrobin\n    balance roundrobin\n    server vip 10.0.2.2:80 check\n"));
        assert_eq!(PLACEHOLDER.to_string(), "127.0.0.1:1");
    }

    #[test]
    fn ipv6_servers_are_written_in_brackets() {
        let text = config(&state(), &settings(Path::new("/run/swarm-lb")));
        assert!(
            text.contains("    server s1 [fd00::5]:9000 check\n"),
            "{text}"
        );
    }

    #[test]
    fn placeholders_are_filled_and_the_bind_line_repeated() {
        let text = config(&state(), &settings(Path::new("/run/swarm-lb")));
        assert!(text.contains(
            "stats socket /run/swarm-lb/admin.sock mode 660 level admin expose-fd listeners\n"
        ));
        assert!(text.contains("    bind 127.0.0.1:18080\n    bind 127.0.0.1:18081\n"));
        assert!(text.contains("map_beg(/run/swarm-lb/hosts.map)\n"));
        assert!(text.contains("use_backend %[var(txn.backend)] if { var(txn.backend) -m found }"));
        let live: Vec<&str> = text.lines().filter(|l| !is_comment(l)).collect();
        assert!(live.iter().all(|l| !l.contains("{{")), "{text}");
    }

    #[test]
    fn the_hosts_map_is_one_sorted_line_per_host() {
        assert_eq!(
            hosts_map(&state()),
            "api.example.com/ api\nv6.example.com/ v6\nwww.example.com/ web\n"
        );
    }

    #[test]
    fn the_shipped_template_and_sane_settings_validate() {
        assert_eq!(settings(Path::new("/run/swarm-lb")).validate(), Ok(()));
    }

    #[test]
    fn settings_that_would_break_the_config_are_refused() {
        let good = settings(Path::new("/run/swarm-lb"));
        let mut s = good.clone();
        s.template = s.template.replace(HOSTS_MAP, "/etc/haproxy/hosts.map");
        assert_eq!(
            s.validate(),
            Err(SettingsError::MissingPlaceholder {
                placeholder: HOSTS_MAP
            })
        );
        let mut s = good.clone();
        s.binds.clear();
        assert_eq!(s.validate(), Err(SettingsError::NoBind));
        let mut s = good.clone();
        s.binds = vec![":80 # x".into()];
        assert!(matches!(s.validate(), Err(SettingsError::BadBind { .. })));
        let mut s = good;
        s.admin_socket = PathBuf::from("/run/a b.sock");
        assert!(matches!(
            s.validate(),
            Err(SettingsError::BadAdminSocket { .. })
        ));
    }

    #[test]
    fn files_are_replaced_whole_and_the_last_good_copy_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path());
        let settings = settings(dir.path());
        files.write(&state(), &settings).unwrap();
        files.save_good().unwrap();
        let good = fs::read_to_string(files.config_path()).unwrap();

        files.write(&ProxyState::default(), &settings).unwrap();
        assert_ne!(fs::read_to_string(files.config_path()).unwrap(), good);
        assert_eq!(fs::read_to_string(files.map_path()).unwrap(), "");

        files.restore_good().unwrap();
        assert_eq!(files.read().unwrap(), (good, hosts_map(&state())));
        // No temp file is left behind.
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "haproxy.cfg",
                "haproxy.cfg.good",
                "hosts.map",
                "hosts.map.good"
            ]
        );
    }

    #[test]
    fn restoring_without_a_good_copy_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path());
        let err = files.restore_good().unwrap_err();
        assert_eq!(err.path, Files::good_path(&files.map_path()));
        assert_eq!(err.source.kind(), std::io::ErrorKind::NotFound);
    }
}
