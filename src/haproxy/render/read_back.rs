//! Reading back a config this module rendered: the named defaults sections and each
//! backend's options (balance, sticky cookie, failure limits, backend TLS), which the Runtime
//! API cannot show, so the driver learns what HAProxy loaded from the config it loaded; and
//! whether a config follows the current template. Lines it did not write are ignored. Pure.

use std::collections::{BTreeMap, BTreeSet};

use super::{config_for, RenderSettings, BACKEND, BACKEND_CA_DEFAULTS, COOKIE, DEFAULT_SERVER};
use crate::haproxy::codec::read_server_keywords;
use crate::haproxy::command::DefaultsName;
use crate::haproxy::state::ProxyState;
use crate::model::{BackendName, BackendOptions, SectionOptions};

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

/// Whether `config` was rendered by [`config()`](super::config()) from `settings` (its
/// template, binds and paths), whatever backends it holds: the generated backends follow
/// the template's text.
pub fn from_template(config_text: &str, settings: &RenderSettings) -> bool {
    from_template_for(config_text, settings, true)
}

/// [`from_template`] for a config rendered by [`config_for`] with `named_defaults`.
pub fn from_template_for(
    config_text: &str,
    settings: &RenderSettings,
    named_defaults: bool,
) -> bool {
    // The user lists are left out of the comparison: they change with the secrets, and
    // whether HAProxy loaded them is asked separately (`crate::haproxy::auth`).
    crate::haproxy::auth::starts_with_ignoring_auth(
        config_text,
        &config_for(&ProxyState::default(), settings, named_defaults),
    )
}

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
            (Some("option"), Some("httpchk")) => {
                if let Some(o) = current.as_ref().and_then(|n| out.get_mut(n)) {
                    let section = SectionOptions {
                        httpchk: true,
                        ..o.section()
                    };
                    *o = BackendOptions::from_parts(section, o.server());
                }
            }
            (Some("compression"), Some("algo")) => {
                if let Some(o) = current.as_ref().and_then(|n| out.get_mut(n)) {
                    o.compress = true;
                }
            }
            (Some("timeout"), Some("connect")) => {
                if let Some(o) = current.as_ref().and_then(|n| out.get_mut(n)) {
                    o.timeout_connect_ms = words.next().and_then(|ms| ms.parse().ok());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::render::fixtures::{settings, state};
    use crate::haproxy::render::{config, config_keeping, BASE_TEMPLATE};
    use std::path::Path;

    #[test]
    fn a_health_check_is_rendered_with_its_rules_and_interval_and_read_back() {
        let mut state = state();
        let web = BackendName::for_service("web").unwrap();
        let mut backend = (*state.backends[&web]).clone();
        backend.options.health_check = Some(crate::model::HealthCheck { interval_ms: 750 });
        backend.options.compress = true;
        state.backends.insert(web.clone(), backend.clone().into());
        let text = config(&state, &settings(Path::new("/run/swarm-lb")));
        assert!(
            text.contains(
                "backend web from swarm-lb.roundrobin.httpchk.compress\n    balance roundrobin\n    \
                 compression algo gzip deflate\n    compression type text/html text/plain \
                 text/css text/csv text/xml text/javascript application/javascript \
                 application/json application/xml application/xhtml+xml application/rss+xml \
                 application/atom+xml application/ld+json application/manifest+json \
                 image/svg+xml\n    option \
                 httpchk\n    http-check set-var(check.service) be_name,field(1,:)\n    http-check \
                 send meth GET uri-lf %[str($k:),concat(,check.service,),map(/run/swarm-lb/hosts.map),\
                 bytes(3),url_dec] hdr host %[str($kh:),concat(,check.service,),\
                 map(/run/swarm-lb/hosts.map),bytes(3),url_dec]\n    http-check expect status \
                 200-399\n    default-server inter 750ms\n"
            ),
            "{text}"
        );
        assert_eq!(backend_options(&text)[&web], backend.options);
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
}
