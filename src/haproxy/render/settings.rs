//! What rendering takes beside the state ([`RenderSettings`]), the template's placeholders,
//! and the check run once at start that the settings render a config HAProxy can load
//! ([`RenderSettings::validate`]).

use std::path::PathBuf;

use super::is_comment;
use crate::haproxy::command::MapPath;

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
/// ([`crate::haproxy::tls_profile::TlsProfile::global_lines`]), each with the line's indentation.
pub const TLS_PROFILE: &str = "{{tls_profile}}";

/// Replaced by the ACL condition true for `--trusted-proxies` sources
/// ([`crate::haproxy::access::trusted_condition`]).
pub const TRUSTED_PROXIES: &str = "{{trusted_proxies}}";

/// Replaced by the ACL condition true for `--trusted-proxies` `proxy:` sources.
pub const PROXY_PROTOCOL_SOURCES: &str = "{{proxy_protocol_sources}}";
/// A line holding it becomes the basic-auth rules of `frontend http` ([`crate::haproxy::auth`]).
pub const AUTH: &str = "{{auth}}";
/// A line holding it becomes the shaping rules of `frontend http` ([`crate::haproxy::shaping`]).
pub const SHAPING: &str = "{{shaping}}";
/// A line holding it becomes the response side of the shaping rules
/// ([`crate::haproxy::shaping::response_rules`]), before the access rules; optional (without
/// it they open `{{shaping}}`, and HAProxy's own 403/429/401 carry no service headers).
pub const SHAPING_RESPONSES: &str = "{{shaping_responses}}";
/// A line holding it (in `global`) becomes the lines that load the Lua files swarm-lb ships
/// ([`crate::haproxy::lua::global_lines`]), each with the line's indentation; optional
/// (without it they follow the template's `global` line).
pub const LUA: &str = "{{lua}}";
/// Replaced by the ACME challenge map path ([`crate::haproxy::acme::acme_map`]); optional.
pub const ACME_MAP: &str = "{{acme_map}}";

/// The HTTPS side of the frontend: where it listens and the crt-list it serves
/// ([`crate::haproxy::tls::CertFiles`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsSettings {
    /// `bind` addresses, e.g. `:443`.
    pub binds: Vec<String>,
    /// The crt-list file; its first entry is the default certificate.
    pub crt_list: PathBuf,
    /// The unix socket where the HTTPS entry hands TLS to the terminating bind.
    pub internal: PathBuf,
    /// `--tls-profile`: the protocols and suites the TLS bind accepts.
    pub tls_profile: crate::haproxy::tls_profile::TlsProfile,
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
    /// The basic-auth user lists (`com.docker.lb.auth_basic`) written into the config: set
    /// by the reconcile pass from the secrets it read, empty at start.
    pub userlists: crate::haproxy::auth::Userlists,
}

/// Whether the config rendered from `template` loads the Lua files: the renderer puts their
/// lines where a [`LUA`] line stands (outside comments), else right after a plain `global`
/// line; a template with neither loads none.
pub fn template_loads_lua(template: &str) -> bool {
    template
        .lines()
        .any(|l| (!is_comment(l) && l.contains(LUA)) || l.trim_end() == "global")
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

/// Characters that would end or change a config word.
fn has_syntax(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '#' | '"' | '\'' | '\\'))
}

impl RenderSettings {
    /// Whether the rendered config loads the Lua files ([`template_loads_lua`]).
    pub fn loads_lua(&self) -> bool {
        template_loads_lua(&self.template)
    }

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

    /// Check once (at startup) what [`config()`](super::config()) takes on trust.
    pub fn validate(&self) -> Result<(), SettingsError> {
        // Without {{auth}} a service's user list would never be checked: the template must
        // carry the rules.
        self.require_placeholders(&[ADMIN_SOCKET, BIND, HOSTS_MAP, SHAPING, AUTH])?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::render::fixtures::settings;
    use std::path::Path;

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
        // Without the basic-auth rules a user list would never be checked.
        let mut s = good.clone();
        s.template = s.template.replace(AUTH, "");
        assert_eq!(
            s.validate(),
            Err(SettingsError::MissingPlaceholder { placeholder: AUTH })
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
}
