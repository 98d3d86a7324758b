//! The config and hosts map text for a [`ProxyState`]: the template with its placeholders
//! filled, the named defaults sections, then one section per backend; [`Sections`] keeps the
//! sections last rendered so that a pass formats only the backends it changed. Pure: no I/O.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use super::{
    backend_ca, backend_ca_path, is_comment, RenderSettings, ACME_MAP, ADMIN_SOCKET, AUTH,
    BACKEND_CA_DEFAULTS, BIND, COOKIE, CRT_LIST, DEFAULT_SERVER, HOSTS_MAP, HTTPS_BIND,
    HTTPS_INTERNAL, IF_HTTPS, LUA, PROXY_PROTOCOL_SOURCES, SHAPING, SHAPING_RESPONSES,
    TCP_DEFAULTS, TIMEOUT_CONNECT, TLS_PROFILE, TRUSTED_PROXIES,
};
use crate::haproxy::codec::{push_server_keywords, SSL_VERIFY_REQUIRED};
use crate::haproxy::command::{CertPath, DefaultsName, ServerKeywords};
use crate::haproxy::state::{Admin, BackendState, ProxyState};
use crate::model::{BackendName, SectionOptions, ServerOptions};

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
    render(state, settings, true, keep, &mut Sections::default(), "")
}

/// [`config_keeping`] that formats again only the backends changed since the last render with
/// the same `sections`, copying the others from `previous`, the text that render gave (at
/// 10,000 services the config is ~20 MB, and one change touches one backend). The same bytes
/// as [`config_keeping`] provided `previous` is exactly the text `sections` index (the caller
/// checks it: [`Sections::text_sha256`]); `sections` then indexes the text returned. A place
/// beyond `previous` (a shorter text) is formatted again; any other text of the right length
/// would be copied as it is.
pub fn config_cached(
    state: &ProxyState,
    settings: &RenderSettings,
    keep: &BTreeSet<DefaultsName>,
    sections: &mut Sections,
    previous: &str,
) -> String {
    render(state, settings, true, keep, sections, previous)
}

/// Where each backend's section is in the text last rendered, with the backend value it was
/// rendered from: a backend the state still shares ([`Arc::ptr_eq`]: nothing changed it, see
/// [`ProxyState::backends`]) is copied from that text, not formatted. Holding the `Arc` keeps
/// its address from being reused by another value. For one [`RenderSettings`]. The text itself
/// is not held (at 10,000 services ~20 MB, a tenth of the daemon's memory): the caller keeps
/// it (the file writer: the config file as written, checked by its SHA-256, see
/// [`Sections::text_sha256`]) and hands it to the next [`config_cached`].
#[derive(Debug, Default)]
pub struct Sections {
    by_backend: HashMap<BackendName, Section>,
    /// The SHA-256 of the text the places index, as the caller recorded it.
    text_sha256: Option<[u8; 32]>,
}

impl Sections {
    /// The SHA-256 of the text these places index (as [`Sections::indexing`] recorded it), if
    /// any: the text to hand to the next [`config_cached`] must have it.
    pub fn text_sha256(&self) -> Option<&[u8; 32]> {
        self.text_sha256.as_ref()
    }

    /// Record that the text the last [`config_cached`] returned has this SHA-256 (it was
    /// written where the next render reads it from).
    pub fn indexing(&mut self, sha256: [u8; 32]) {
        self.text_sha256 = Some(sha256);
    }

    /// Forget every place (the text they index is gone): the next render formats all.
    pub fn clear(&mut self) {
        self.by_backend.clear();
        self.text_sha256 = None;
    }
}

#[derive(Debug)]
struct Section {
    from: Arc<BackendState>,
    named_defaults: bool,
    /// Byte range of the section in the text last rendered.
    at: std::ops::Range<usize>,
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
        "",
    )
}

fn render(
    state: &ProxyState,
    settings: &RenderSettings,
    named_defaults: bool,
    keep: &BTreeSet<DefaultsName>,
    sections: &mut Sections,
    previous: &str,
) -> String {
    // The places are about to index the text returned, whose digest the caller records.
    sections.text_sha256 = None;
    let admin = settings.admin_socket.to_string_lossy();
    let acme_map = crate::haproxy::acme::acme_map(&settings.hosts_map);
    let (trusted, proxy_sources) =
        crate::haproxy::access::trusted_conditions(&settings.trusted_proxies);
    let mut out = String::with_capacity(
        settings.template.len() + previous.len().max(64 * state.backends.len()),
    );
    out.push_str(
        "# Generated by swarm-lb from its base template; rewritten on every change, do not edit.\n",
    );
    // A template without `{{shaping_responses}}` gets those rules at the top of `{{shaping}}`.
    let responses_placed = settings
        .template
        .lines()
        .any(|l| !is_comment(l) && l.contains(SHAPING_RESPONSES));
    // A template without `{{lua}}` gets the Lua files loaded right after its `global` line.
    let lua_placed = settings
        .template
        .lines()
        .any(|l| !is_comment(l) && l.contains(LUA));
    let lua_lines = crate::haproxy::lua::global_lines(&settings.hosts_map);
    // Whether the Lua actions are loaded (the lines above, or `{{lua}}`): forward auth's
    // rules call its action only then.
    let lua_loaded = settings.loads_lua();
    for line in settings.template.lines() {
        if !lua_placed && line.trim_end() == "global" {
            out.push_str(line);
            out.push('\n');
            for lua in &lua_lines {
                let _ = writeln!(out, "    {lua}");
            }
            continue;
        }
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
        } else if line.contains(LUA) {
            for lua in &lua_lines {
                out.push_str(&line.replace(LUA, lua));
                out.push('\n');
            }
        } else if line.contains(AUTH) {
            let rules = crate::haproxy::auth::frontend_rules(
                settings.hosts_map.as_str(),
                &settings.userlists,
                lua_loaded,
            );
            for rule in rules {
                out.push_str(&line.replace(AUTH, &rule));
                out.push('\n');
            }
        } else if line.contains(SHAPING_RESPONSES) {
            for rule in crate::haproxy::shaping::response_rules(settings.hosts_map.as_str()) {
                out.push_str(&line.replace(SHAPING_RESPONSES, &rule));
                out.push('\n');
            }
        } else if line.contains(SHAPING) {
            let map = settings.hosts_map.as_str();
            let early = if responses_placed {
                Vec::new()
            } else {
                crate::haproxy::shaping::response_rules(map)
            };
            for rule in early
                .into_iter()
                .chain(crate::haproxy::shaping::frontend_rules(map))
            {
                out.push_str(&line.replace(SHAPING, &rule));
                out.push('\n');
            }
        } else if let Some(https) = &settings.https {
            let crt_list = https.crt_list.to_string_lossy();
            let internal = format!("unix@{}", https.internal.to_string_lossy());
            let line = line
                .replace(ADMIN_SOCKET, &admin)
                .replace(HOSTS_MAP, settings.hosts_map.as_str())
                .replace(ACME_MAP, acme_map.as_str())
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
                .replace(ACME_MAP, acme_map.as_str())
                .replace(TRUSTED_PROXIES, &trusted)
                .replace(PROXY_PROTOCOL_SOURCES, &proxy_sources);
            out.push_str(&line);
            out.push('\n');
        }
    }
    // The basic-auth user lists (they hold password hashes: the config file is 0600).
    out.push_str(&crate::haproxy::auth::sections(&settings.userlists));
    if named_defaults {
        render_named_defaults(&mut out, state, settings, keep);
    }
    // Internal (`_`) backends belong to the template; the state never holds one, and skipping
    // them keeps a stray one from clashing with `_default`.
    let ca_file = backend_ca(&settings.hosts_map);
    let mut rendered = 0;
    for (name, backend) in state.backends.iter().filter(|(n, _)| !n.is_internal()) {
        rendered += 1;
        let start = out.len();
        let kept = sections.by_backend.get_mut(name).and_then(|s| {
            let same = Arc::ptr_eq(&s.from, backend) && s.named_defaults == named_defaults;
            let text = previous.get(s.at.clone()).filter(|_| same)?;
            out.push_str(text);
            s.at = start..out.len();
            Some(())
        });
        if kept.is_none() {
            render_section(
                &mut out,
                name,
                backend,
                named_defaults,
                &ca_file,
                settings.hosts_map.as_str(),
            );
            let section = Section {
                from: backend.clone(),
                named_defaults,
                at: start..out.len(),
            };
            sections.by_backend.insert(name.clone(), section);
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
    hosts_map: &str,
) {
    out.push('\n');
    // The timeout rules (`crate::haproxy::shaping`), here unless the named defaults carry them.
    let mut shaping_rules = !backend.options.passthrough;
    if backend.options.passthrough && !named_defaults {
        // The template's TCP defaults (see `haproxy/base.cfg`).
        let _ = writeln!(out, "backend {name} from {TCP_DEFAULTS}");
    } else if named_defaults {
        // The backend section writes its own cookie line.
        let from = DefaultsName::for_section(SectionOptions {
            sticky_cookie: None,
            timeout_connect_ms: None,
            ..backend.options.section()
        });
        match from {
            Some(from) => {
                shaping_rules = false;
                let _ = writeln!(out, "backend {name} from {}", from.as_str());
            }
            None => {
                let _ = writeln!(out, "backend {name}");
            }
        }
    } else {
        let _ = writeln!(out, "backend {name}");
    }
    render_backend(out, name, backend, ca_file, hosts_map);
    if shaping_rules {
        crate::haproxy::shaping::push_backend_rules(out);
    }
}

/// The named defaults sections for `state` (see [`config_for`]): the balance-only ones for
/// HTTP and for passthrough (TCP), then two per sticky cookie name its backends use (one per
/// balance), in name order.
pub fn defaults_for(state: &ProxyState) -> BTreeSet<DefaultsName> {
    // HTTP with and without an HTTP health check and compression (every combination, so
    // that turning either on or off is a new generation from 3.4, not a reload), and TCP
    // (whose check stays a connect, and which is never compressed).
    let mut out: BTreeSet<DefaultsName> = http_sets()
        .chain(
            [(false, true), (true, true)].map(|(ip_hash, passthrough)| SectionOptions {
                ip_hash,
                passthrough,
                ..SectionOptions::default()
            }),
        )
        .filter_map(DefaultsName::for_section)
        .collect();
    // Every HTTP option set for each cookie name in use: turning `ip_hash`, `health_path` or
    // `compress` on or off for a sticky service is then a new generation from 3.4, not a
    // reload.
    for backend in state.backends.values() {
        if let Some(cookie) = &backend.options.sticky_cookie {
            out.extend(
                http_sets()
                    .map(|s| SectionOptions {
                        sticky_cookie: Some(cookie.clone()),
                        ..s
                    })
                    .filter_map(DefaultsName::for_section),
            );
        }
    }
    out
}

/// The HTTP section option sets without a cookie: both balances, with and without an HTTP
/// health check and compression.
fn http_sets() -> impl Iterator<Item = SectionOptions> {
    (0..8u8).map(|bits| SectionOptions {
        ip_hash: bits & 1 != 0,
        httpchk: bits & 2 != 0,
        compress: bits & 4 != 0,
        ..SectionOptions::default()
    })
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
        render_balance(out, defaults.section(), settings.hosts_map.as_str());
        if !defaults.section().passthrough {
            crate::haproxy::shaping::push_backend_rules(out);
        }
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

/// The balancing lines of a backend or named defaults section with `options` (the server
/// keywords go on `default-server` lines), and its health check's rules, which read the
/// path and host from `hosts_map`.
fn render_balance(out: &mut String, options: &SectionOptions, hosts_map: &str) {
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
    if options.compress {
        for line in COMPRESSION {
            out.push_str(line);
        }
    }
    if options.httpchk {
        for rule in crate::haproxy::shaping::health_check_rules(hosts_map) {
            out.push_str("    ");
            out.push_str(&rule);
            out.push('\n');
        }
    }
}

fn render_backend(
    out: &mut String,
    name: &BackendName,
    backend: &BackendState,
    ca_file: &CertPath,
    hosts_map: &str,
) {
    let options = &backend.options;
    if options.passthrough {
        // TLS passed through by SNI: bytes, not HTTP (health checks connect only).
        out.push_str(MODE_TCP);
    }
    render_balance(out, &options.section(), hosts_map);
    // `com.docker.lb.timeout_connect` before 3.4 (the planner clears it on 3.4+, where the
    // map entry and the `set-timeout connect` rule do the work).
    if let Some(ms) = options.timeout_connect_ms {
        let _ = writeln!(out, "    {TIMEOUT_CONNECT} {ms}");
    }
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

const MODE_TCP: &str = "    mode tcp\n";

/// `com.docker.lb.compress=true`: gzip or deflate, whichever the client's `Accept-Encoding`
/// prefers (the algorithms Debian's HAProxy offers besides `identity` and `raw-deflate`,
/// which browsers do not ask for), for the usual text types (a `Content-Type` starting with
/// one of them, parameters such as `charset` allowed). HAProxy never compresses a response
/// that has a `Content-Encoding` or `Cache-Control: no-transform`, a `HEAD`, a status other
/// than 200-203, or for a client that sends no `Accept-Encoding` (configuration.txt,
/// "compression", 2.6 to 3.4; `algo`/`type` are the 2.8+ `algo-res`/`type-res`).
const COMPRESSION: [&str; 2] = [
    "    compression algo gzip deflate\n", // crate::haproxy::shaping::COMPRESSION_ALGOS
    "    compression type text/html text/plain text/css text/csv text/xml text/javascript \
     application/javascript application/json application/xml application/xhtml+xml \
     application/rss+xml application/atom+xml application/ld+json application/manifest+json \
     image/svg+xml\n",
];

/// The hosts map file text for `state`: `key value` per line, sorted by key.
pub fn hosts_map(state: &ProxyState) -> String {
    let mut out = String::new();
    for (host, backend) in &state.hosts {
        let _ = writeln!(out, "{host} {backend}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::render::fixtures::{settings, state};
    use crate::haproxy::render::{backend_options, from_template, named_defaults};
    use crate::haproxy::state::PLACEHOLDER;
    use std::path::Path;

    #[test]
    fn named_defaults_repeat_the_templates_defaults_and_one_option_set_each() {
        let text = config(&state(), &settings(Path::new("/run/swarm-lb")));
        // The balance-only sections (HTTP with and without a health check, and passthrough),
        // then one per sticky option set in use (v6's; its failure limit and TLS are server keywords, which `add server` carries).
        let want: Vec<String> = named_defaults(&text)
            .iter()
            .map(|d| d.as_str().to_owned())
            .collect();
        assert_eq!(
            want,
            [
                "swarm-lb.roundrobin",
                "swarm-lb.roundrobin.compress",
                "swarm-lb.roundrobin.compress.cookie.sid",
                "swarm-lb.roundrobin.cookie.sid",
                "swarm-lb.roundrobin.httpchk",
                "swarm-lb.roundrobin.httpchk.compress",
                "swarm-lb.roundrobin.httpchk.compress.cookie.sid",
                "swarm-lb.roundrobin.httpchk.cookie.sid",
                "swarm-lb.source",
                "swarm-lb.source.compress",
                "swarm-lb.source.compress.cookie.sid",
                "swarm-lb.source.cookie.sid",
                "swarm-lb.source.httpchk",
                "swarm-lb.source.httpchk.compress",
                "swarm-lb.source.httpchk.compress.cookie.sid",
                "swarm-lb.source.httpchk.cookie.sid",
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
    fn a_backends_connect_timeout_is_its_own_section_line_and_reads_back() {
        let mut s = state();
        let web = s
            .backends
            .get_mut(&BackendName::parse("web").unwrap())
            .unwrap();
        std::sync::Arc::make_mut(web).options.timeout_connect_ms = Some(750);
        let text = config(&s, &settings(Path::new("/run/swarm-lb")));
        // Still from the named defaults (no defaults section holds a connect timeout).
        assert!(
            text.contains("backend web from swarm-lb.roundrobin\n    balance roundrobin\n    timeout connect 750\n"),
            "{text}"
        );
        let read = backend_options(&text);
        assert_eq!(
            read[&BackendName::parse("web").unwrap()].timeout_connect_ms,
            Some(750)
        );
        // 3.4's rule, in a block only 3.4 reads, in every named defaults section's rules.
        assert!(text.contains(
            "    .if version_atleast(3.4)\n    http-request set-timeout connect var(txn.t_connect) if { var(txn.t_connect) -m found }\n    .endif\n"
        ));
    }

    #[test]
    fn the_lua_files_load_where_lua_says_or_right_after_global_without_it() {
        let dir = Path::new("/run/swarm-lb");
        let load = "    lua-load-per-thread /run/swarm-lb/headers.lua\n";
        let text = config(&state(), &settings(dir));
        assert_eq!(text.matches(load).count(), 1, "{text}");
        let mut custom = settings(dir);
        custom.template = custom.template.replace(crate::haproxy::render::LUA, "");
        let text = config(&state(), &custom);
        assert!(
            text.contains(&format!(
                "\nglobal\n    .if version_atleast(2.7)\n    httpclient.retries 0\n    .endif\n    .if version_atleast(3.2)\n    tune.lua.bool-sample-conversion normal\n    .endif\n{load}"
            )),
            "{text}"
        );
        assert_eq!(text.matches(load).count(), 1);
    }

    #[test]
    fn the_hosts_map_is_one_sorted_line_per_host() {
        assert_eq!(
            hosts_map(&state()),
            "api.example.com/ api\nv6.example.com/ v6\nwww.example.com/ web\n"
        );
    }
}
